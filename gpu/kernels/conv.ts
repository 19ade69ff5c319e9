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
import { convLength } from "../../model/plan.ts";
import type { KernelPlan } from "../runtime.ts";
import {
  type BindingNames,
  kernelStep,
  readOnly,
  readWrite,
  type StorageBinding,
} from "./bindings.ts";
import { checkSize, itemMainWgsl } from "./grid.ts";

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
 * Output length of a padded 1-D window op (`model/plan.ts`
 * {@linkcode convLength}), with the sizes checked.
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
  const tOut = convLength(o.tIn, o.k, o.stride, o.pad);
  if (tOut < 1) {
    throw new RangeError(
      `Cannot build a window op: window k=${o.k} does not fit tIn=${o.tIn} with pad ${o.pad}; use a shorter window or more padding`,
    );
  }
  return tOut;
}

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

/** Per-kernel types and sizes of a window kernel (see {@linkcode windowKernel}). */
interface WindowTypes {
  /** Channels per thread unit: `channels / 4` with vec4 arrays, else `channels`. */
  readonly c4: number;
  /** Element type of the float arrays. */
  readonly t: "f32" | "vec4<f32>";
  /** Element type of the index arrays. */
  readonly ti: "i32" | "vec4<i32>";
}

/**
 * One window kernel: one thread per item (per 4 channels when `channels` is
 * a multiple of 4) over `batch · rows(tOut) · c4` items, the geometry baked
 * in as constants (`TIN`, `TOUT`, `K`, `S`, `PAD`, `C`), `i` the item index,
 * and `body` the rest of `main`.
 */
function windowKernel<const B extends readonly (StorageBinding | false)[]>(
  name: string,
  o: Window1d & { accumulate?: boolean },
  channels: number,
  rows: (tOut: number) => number,
  bindings: (w: WindowTypes) => B,
  body: (w: WindowTypes) => string,
): KernelPlan<BindingNames<B>> {
  checkSize(`${name} channels`, channels);
  const tOut = outLength(o);
  const v4 = channels % 4 === 0;
  const w: WindowTypes = {
    c4: v4 ? channels / 4 : channels,
    t: v4 ? "vec4<f32>" : "f32",
    ti: v4 ? "vec4<i32>" : "i32",
  };
  const items = o.batch * rows(tOut) * w.c4;
  const { workgroups, main } = itemMainWgsl(items, "N");
  const label =
    `${name} b${o.batch} t${o.tIn} c${channels} k${o.k} s${o.stride} p${o.pad}${
      o.accumulate ? " acc" : ""
    }`;
  const step = kernelStep(
    label,
    workgroups,
    bindings(w),
    (decls) =>
      `// ${label}
${decls}
${consts(o, tOut, w.c4)}
const N: u32 = ${items}u;
${main}
${body(w)}}
`,
  );
  return { steps: [step] };
}

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
  return windowKernel(
    "im2col",
    o,
    o.cin,
    (tOut) => tOut * o.k,
    (w) => [readOnly("x", w.t), readWrite("col", w.t)],
    (w) =>
      `  let row = i / ${o.k * w.c4}u;
  let rem = i % ${o.k * w.c4}u;
  let j = i32(rem / C);
  let c = rem % C;
  let b = row / u32(TOUT);
  let src = i32(row % u32(TOUT)) * S + j - PAD;
  var v = ${w.t}(0.0);
  if (src >= 0 && src < TIN) {
    v = x[(b * u32(TIN) + u32(src)) * C + c];
  }
  col[i] = v;
`,
  );
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
  const acc = o.accumulate ?? false;
  return windowKernel(
    "col2im",
    o,
    o.cin,
    () => o.tIn,
    (w) => [readOnly("dcol", w.t), readWrite("dx", w.t)],
    (w) =>
      `  let row = i / C;
  let c = i % C;
  let b = row / u32(TIN);
  let tp = i32(row % u32(TIN)) + PAD;
  // Output steps q with q·S = tp − j: j runs up from tp − S·qmax (qmax the
  // largest valid q) in steps of S while j < K and q ≥ 0 (j ≤ tp).
  let qmax = min(tp / S, TOUT - 1);
  var sum = ${w.t}(0.0);
  for (var j = tp - S * qmax; j < K && j <= tp; j += S) {
    let q = (tp - j) / S;
    sum += dcol[(b * u32(TOUT) + u32(q)) * u32(K) * C + u32(j) * C + c];
  }
  dx[i] = ${acc ? "dx[i] + sum" : "sum"};
`,
  );
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
  return windowKernel(
    "maxPoolForward",
    o,
    o.channels,
    (tOut) => tOut,
    (w) => [readOnly("x", w.t), readWrite("y", w.t), readWrite("arg", w.ti)],
    (w) =>
      `  let row = i / C;
  let c = i % C;
  let b = row / u32(TOUT);
  let start = i32(row % u32(TOUT)) * S - PAD;
  let lo = max(start, 0);
  let hi = min(start + K, TIN);
  var best = ${w.t}(bitcast<f32>(0xff800000u));
  var at = ${w.ti}(lo);
  for (var s = lo; s < hi; s++) {
    let v = x[(b * u32(TIN) + u32(s)) * C + c];
    let take = (v > best) | (v != v);
    best = select(best, v, take);
    at = select(at, ${w.ti}(s), take);
  }
  y[i] = best;
  arg[i] = at;
`,
  );
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
  const acc = o.accumulate ?? false;
  return windowKernel(
    "maxPoolBackward",
    o,
    o.channels,
    () => o.tIn,
    (w) => [readOnly("dy", w.t), readOnly("arg", w.ti), readWrite("dx", w.t)],
    (w) =>
      `  let row = i / C;
  let c = i % C;
  let b = row / u32(TIN);
  let tt = i32(row % u32(TIN));
  let tp = tt + PAD;
  // Windows w with w·S ≤ tp ≤ w·S + K − 1.
  let a = tp - K + 1;
  let wlo = select((a + S - 1) / S, 0, a <= 0);
  let whi = min(tp / S, TOUT - 1);
  var sum = ${w.t}(0.0);
  for (var w = wlo; w <= whi; w++) {
    let o = (b * u32(TOUT) + u32(w)) * C + c;
    sum += select(${w.t}(0.0), dy[o], arg[o] == ${w.ti}(tt));
  }
  dx[i] = ${acc ? "dx[i] + sum" : "sum"};
`,
  );
}
