/**
 * Convolution and pooling kernels of the fused WebGPU engine, on
 * time-major activations `[batch·time][channels]`:
 *
 * - {@linkcode im2col} unfolds the time windows of a PyTorch-padded 1-D
 *   convolution into rows, so `conv1d(x, W) = im2col(x) · W` with the kernel
 *   stored `[k][cin][cout]` = `[k·cin][cout]` (as `model/layers.ts` `conv1d`);
 * - {@linkcode col2im} is its adjoint (the input gradient), written as a
 *   gather so no atomics are needed;
 * - {@linkcode maxPoolForward} / {@linkcode maxPoolBackward} are PyTorch's
 *   `MaxPool1d` with −Infinity padding and its gradient through the saved
 *   argmax (first maximum wins).
 *
 * One thread per output element — per 4 channels when `cin` (`channels`) is
 * a multiple of 4, binding the arrays as `array<vec4<f32>>` /
 * `array<vec4<i32>>` — on a 2-D grid of 256-thread workgroups, so
 * consecutive threads write consecutive addresses.
 *
 * @module
 */
import type { KernelPlan } from "../runtime.ts";
import { kernelStep, readOnly, readWrite } from "./bindings.ts";
import {
  checkSize,
  gridFor,
  linearGroupWgsl,
  MAIN_HEADER,
  WORKGROUP_SIZE,
} from "./grid.ts";

/** Geometry shared by the convolution and pooling kernels. */
export interface Window1d {
  /** Batch size. */
  readonly batch: number;
  /** Input time steps per example. */
  readonly tIn: number;
  /** Window length (kernel taps). */
  readonly k: number;
  /** Window stride in time steps. */
  readonly stride: number;
  /** Zero (conv) or −Infinity (pool) padding per side, in time steps. */
  readonly pad: number;
}

/**
 * Output length of a padded 1-D window op: `floor((tIn + 2·pad − k) / stride) + 1`.
 *
 * @throws {RangeError} On non-integer sizes or an empty output.
 */
export function outLength(o: Window1d): number {
  for (
    const [name, v, min] of [
      ["batch", o.batch, 1],
      ["tIn", o.tIn, 1],
      ["k", o.k, 1],
      ["stride", o.stride, 1],
      ["pad", o.pad, 0],
    ] as const
  ) {
    checkSize(name, v, min);
  }
  const tOut = Math.floor((o.tIn + 2 * o.pad - o.k) / o.stride) + 1;
  if (tOut < 1) {
    throw new RangeError(
      `Cannot build a window op: window k=${o.k} does not fit tIn=${o.tIn} with pad ${o.pad}; use a shorter window or more padding`,
    );
  }
  return tOut;
}

const checkChannels = (name: string, c: number): void => checkSize(name, c);

const consts = (
  o: Window1d,
  tOut: number,
  c4: number,
): string =>
  `const TIN: i32 = ${o.tIn};
const TOUT: i32 = ${tOut};
const K: i32 = ${o.k};
const S: i32 = ${o.stride};
const PAD: i32 = ${o.pad};
const C: u32 = ${c4}u;`;

/**
 * im2col for a PyTorch-padded 1-D convolution:
 * `col[b·tOut + t][j·cin + c] = x[b·tIn + t·stride + j − pad][c]`, zero
 * where the time index falls outside `0 … tIn−1`; `tOut` =
 * {@linkcode outLength}. Then `conv1d(x, W) = col · W` for `W` `[k·cin][cout]`.
 *
 * Bindings: `x` (read, `[batch·tIn][cin]`), `col` (out,
 * `[batch·tOut][k·cin]`).
 *
 * @param o Geometry and `cin` (input channels).
 * @returns One dispatch, no scratch.
 */
export function im2col(
  o: Window1d & { cin: number },
): KernelPlan<"x" | "col"> {
  checkChannels("im2col cin", o.cin);
  const tOut = outLength(o);
  const v4 = o.cin % 4 === 0;
  const c4 = v4 ? o.cin / 4 : o.cin;
  const t = v4 ? "vec4<f32>" as const : "f32";
  const items = o.batch * tOut * o.k * c4;
  const { workgroups } = gridFor(items);
  const label =
    `im2col b${o.batch} t${o.tIn} c${o.cin} k${o.k} s${o.stride} p${o.pad}`;
  const step = kernelStep(
    label,
    workgroups,
    [readOnly("x", t), readWrite("col", t)],
    (decls) =>
      `// ${label}
${decls}
${consts(o, tOut, c4)}
const N: u32 = ${items}u;
${MAIN_HEADER}
  let i = ${linearGroupWgsl(workgroups)} * ${WORKGROUP_SIZE}u + li;
  if (i >= N) { return; }
  let row = i / ${o.k * c4}u;
  let rem = i % ${o.k * c4}u;
  let j = i32(rem / C);
  let c = rem % C;
  let b = row / u32(TOUT);
  let src = i32(row % u32(TOUT)) * S + j - PAD;
  var v = ${t}(0.0);
  if (src >= 0 && src < TIN) {
    v = x[(b * u32(TIN) + u32(src)) * C + c];
  }
  col[i] = v;
}
`,
  );
  return { steps: [step] };
}

/**
 * col2im, the adjoint of {@linkcode im2col} (the convolution's input
 * gradient), as a gather: `dx[b·tIn + t][c] = Σ_j dcol[b·tOut + q][j·cin + c]`
 * over taps `j` with `t + pad − j = q·stride`, `0 ≤ q < tOut`.
 *
 * Bindings: `dcol` (read, `[batch·tOut][k·cin]`), `dx` (out,
 * `[batch·tIn][cin]`; `+=` when `accumulate`).
 *
 * @param o Geometry, `cin`, and `accumulate`: add into `dx`.
 * @returns One dispatch, no scratch.
 */
export function col2im(
  o: Window1d & { cin: number; accumulate?: boolean },
): KernelPlan<"dcol" | "dx"> {
  checkChannels("col2im cin", o.cin);
  const tOut = outLength(o);
  const acc = o.accumulate ?? false;
  const v4 = o.cin % 4 === 0;
  const c4 = v4 ? o.cin / 4 : o.cin;
  const t = v4 ? "vec4<f32>" as const : "f32";
  const items = o.batch * o.tIn * c4;
  const { workgroups } = gridFor(items);
  const label =
    `col2im b${o.batch} t${o.tIn} c${o.cin} k${o.k} s${o.stride} p${o.pad}${
      acc ? " acc" : ""
    }`;
  const step = kernelStep(
    label,
    workgroups,
    [readOnly("dcol", t), readWrite("dx", t)],
    (decls) =>
      `// ${label}
${decls}
${consts(o, tOut, c4)}
const N: u32 = ${items}u;
${MAIN_HEADER}
  let i = ${linearGroupWgsl(workgroups)} * ${WORKGROUP_SIZE}u + li;
  if (i >= N) { return; }
  let row = i / C;
  let c = i % C;
  let b = row / u32(TIN);
  let tp = i32(row % u32(TIN)) + PAD;
  // Output steps q with q·S = tp − j: j runs up from tp − S·qmax (qmax the
  // largest valid q) in steps of S while j < K and q ≥ 0 (j ≤ tp).
  let qmax = min(tp / S, TOUT - 1);
  var sum = ${t}(0.0);
  for (var j = tp - S * qmax; j < K && j <= tp; j += S) {
    let q = (tp - j) / S;
    sum += dcol[(b * u32(TOUT) + u32(q)) * u32(K) * C + u32(j) * C + c];
  }
  dx[i] = ${acc ? "dx[i] + sum" : "sum"};
}
`,
  );
  return { steps: [step] };
}

/**
 * PyTorch `MaxPool1d(k, stride, pad)` (padding counts as −Infinity, as in
 * `model/layers.ts` `maxPool1d`), saving the argmax: `y[b·tOut + w][c] =
 * max_j x[b·tIn + w·stride + j − pad][c]` and `arg` = that input time index
 * (`0 … tIn−1`; the first maximum wins; NaN propagates as in PyTorch).
 *
 * Bindings: `x` (read, `[batch·tIn][channels]`), `y` (out,
 * `[batch·tOut][channels]`), `arg` (out, `array<i32>`,
 * `[batch·tOut][channels]`).
 *
 * @param o Geometry and `channels`.
 * @returns One dispatch, no scratch.
 */
export function maxPoolForward(
  o: Window1d & { channels: number },
): KernelPlan<"x" | "y" | "arg"> {
  checkChannels("maxPoolForward channels", o.channels);
  const tOut = outLength(o);
  const v4 = o.channels % 4 === 0;
  const c4 = v4 ? o.channels / 4 : o.channels;
  const t = v4 ? "vec4<f32>" as const : "f32";
  const ti = v4 ? "vec4<i32>" as const : "i32";
  const items = o.batch * tOut * c4;
  const { workgroups } = gridFor(items);
  const label =
    `maxPoolForward b${o.batch} t${o.tIn} c${o.channels} k${o.k} s${o.stride} p${o.pad}`;
  const step = kernelStep(
    label,
    workgroups,
    [readOnly("x", t), readWrite("y", t), readWrite("arg", ti)],
    (decls) =>
      `// ${label}
${decls}
${consts(o, tOut, c4)}
const N: u32 = ${items}u;
${MAIN_HEADER}
  let i = ${linearGroupWgsl(workgroups)} * ${WORKGROUP_SIZE}u + li;
  if (i >= N) { return; }
  let row = i / C;
  let c = i % C;
  let b = row / u32(TOUT);
  let start = i32(row % u32(TOUT)) * S - PAD;
  let lo = max(start, 0);
  let hi = min(start + K, TIN);
  var best = ${t}(bitcast<f32>(0xff800000u));
  var at = ${ti}(lo);
  for (var s = lo; s < hi; s++) {
    let v = x[(b * u32(TIN) + u32(s)) * C + c];
    let take = (v > best) | (v != v);
    best = select(best, v, take);
    at = select(at, ${ti}(s), take);
  }
  y[i] = best;
  arg[i] = at;
}
`,
  );
  return { steps: [step] };
}

/**
 * Gradient of {@linkcode maxPoolForward} as a gather:
 * `dx[b·tIn + t][c] = Σ dy[b·tOut + w][c]` over the windows `w` that contain
 * `t` and whose `arg[b·tOut + w][c] == t`.
 *
 * Bindings: `dy` (read, `[batch·tOut][channels]`), `arg` (read,
 * `array<i32>`, `[batch·tOut][channels]`), `dx` (out,
 * `[batch·tIn][channels]`; `+=` when `accumulate`).
 *
 * @param o Geometry, `channels`, and `accumulate`: add into `dx`.
 * @returns One dispatch, no scratch.
 */
export function maxPoolBackward(
  o: Window1d & { channels: number; accumulate?: boolean },
): KernelPlan<"dy" | "arg" | "dx"> {
  checkChannels("maxPoolBackward channels", o.channels);
  const tOut = outLength(o);
  const acc = o.accumulate ?? false;
  const v4 = o.channels % 4 === 0;
  const c4 = v4 ? o.channels / 4 : o.channels;
  const t = v4 ? "vec4<f32>" as const : "f32";
  const ti = v4 ? "vec4<i32>" as const : "i32";
  const items = o.batch * o.tIn * c4;
  const { workgroups } = gridFor(items);
  const label =
    `maxPoolBackward b${o.batch} t${o.tIn} c${o.channels} k${o.k} s${o.stride} p${o.pad}${
      acc ? " acc" : ""
    }`;
  const step = kernelStep(
    label,
    workgroups,
    [readOnly("dy", t), readOnly("arg", ti), readWrite("dx", t)],
    (decls) =>
      `// ${label}
${decls}
${consts(o, tOut, c4)}
const N: u32 = ${items}u;
${MAIN_HEADER}
  let i = ${linearGroupWgsl(workgroups)} * ${WORKGROUP_SIZE}u + li;
  if (i >= N) { return; }
  let row = i / C;
  let c = i % C;
  let b = row / u32(TIN);
  let tt = i32(row % u32(TIN));
  let tp = tt + PAD;
  // Windows w with w·S ≤ tp ≤ w·S + K − 1.
  let a = tp - K + 1;
  let wlo = select((a + S - 1) / S, 0, a <= 0);
  let whi = min(tp / S, TOUT - 1);
  var sum = ${t}(0.0);
  for (var w = wlo; w <= whi; w++) {
    let o = (b * u32(TOUT) + u32(w)) * C + c;
    sum += select(${t}(0.0), dy[o], arg[o] == ${ti}(tt));
  }
  dx[i] = ${acc ? "dx[i] + sum" : "sum"};
}
`,
  );
  return { steps: [step] };
}
