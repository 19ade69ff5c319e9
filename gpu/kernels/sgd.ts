/**
 * One fused PyTorch SGD step (`model/sgd.ts`) over the fused engine's flat
 * parameter arena, and the hyper-parameter array it reads; opt-in, the
 * variant of a loss-scaled (mixed-precision) step that divides the scale
 * out of the gradients and skips a step flagged as overflowing
 * (`loss_scale.ts`).
 *
 * @module
 */
import type { KernelPlan } from "../runtime.ts";
import { readOnly, readWrite, storageBindings } from "./bindings.ts";
import { checkSize, gridFor, itemMainWgsl } from "./grid.ts";
import { LossScaleWord } from "./loss_scale.ts";

/** One parameter tensor in the flat arena (offset and size in floats). */
export interface SgdSegment {
  /** First element. */
  readonly offset: number;
  /** Elements. */
  readonly size: number;
}

/** Layout of the flat parameter arena. */
export interface SgdOptions {
  /** Floats in the params / grads / momentum arenas. */
  readonly total: number;
  /** The parameter tensors, sorted by offset, non-overlapping; gaps are left alone. */
  readonly segments: readonly SgdSegment[];
  /**
   * Loss-scaled step (mixed precision; default false): bind the loss-scale
   * state as "lossScale" (`loss_scale.ts`); the gradients are multiplied by
   * `1/scale` and the whole step is skipped while its overflow flag is set.
   */
  readonly lossScale?: boolean;
}

/** Hyper-parameters of one SGD step, for {@linkcode sgdHyper}. */
export interface SgdHyperOptions {
  /** Momentum μ (0 = off: momentum buffers untouched). */
  readonly momentum: number;
  /** Coupled L2 weight decay λ. */
  readonly weightDecay: number;
  /** Dampening τ. */
  readonly dampening: number;
  /** Nesterov momentum. */
  readonly nesterov: boolean;
  /** First step with momentum on: the buffer starts as the gradient. */
  readonly first: boolean;
  /** Learning rate of each segment, in segment order. */
  readonly lrs: readonly number[];
}

/** Index of segment i's learning rate in the hyper array. */
const HYPER_LR = 8;

/**
 * Builds the "hyper" array of {@linkcode sgdUpdate}: `[0]` μ, `[1]` λ,
 * `[2]` τ, `[3]` nesterov (0/1), `[4]` first (0/1), `[5…7]` 0, then
 * `[8 + i]` the learning rate of segment i.
 *
 * @param o Hyper-parameters and per-segment learning rates.
 * @returns `8 + lrs.length` floats.
 */
export function sgdHyper(o: SgdHyperOptions): Float32Array {
  const h = new Float32Array(HYPER_LR + o.lrs.length);
  h[0] = o.momentum;
  h[1] = o.weightDecay;
  h[2] = o.dampening;
  h[3] = o.nesterov ? 1 : 0;
  h[4] = o.first ? 1 : 0;
  h.set(o.lrs, HYPER_LR);
  return h;
}

/** A branch tree (binary search unrolled into WGSL) setting `seg` or returning for gaps. */
function segmentTree(o: SgdOptions): string {
  type Run = { start: number; seg: number };
  const runs: Run[] = [];
  let at = 0;
  o.segments.forEach((s, i) => {
    if (s.size === 0) return;
    if (s.offset > at) runs.push({ start: at, seg: -1 });
    runs.push({ start: s.offset, seg: i });
    at = s.offset + s.size;
  });
  if (at < o.total) runs.push({ start: at, seg: -1 });
  const out: string[] = [];
  const walk = (lo: number, hi: number, pad: string): void => {
    if (lo === hi) {
      out.push(
        runs[lo].seg < 0 ? `${pad}return;` : `${pad}seg = ${runs[lo].seg}u;`,
      );
      return;
    }
    const mid = (lo + hi + 1) >> 1;
    out.push(`${pad}if (e < ${runs[mid].start}u) {`);
    walk(lo, mid - 1, pad + " ");
    out.push(`${pad}} else {`);
    walk(mid, hi, pad + " ");
    out.push(`${pad}}`);
  };
  if (runs.length === 0) return "  return;";
  walk(0, runs.length - 1, "  ");
  return out.join("\n");
}

/**
 * One fused PyTorch SGD step (`model/sgd.ts`) over a flat arena of `total`
 * floats whose `segments` are the parameter tensors (gaps untouched). Per
 * element of segment i: `g = grad + λ·w`; if μ ≠ 0 {`buf = first ? g :
 * μ·buf + (1 − τ)·g`; `g = nesterov ? g + μ·buf : buf`}; `w −= lr_i·g`.
 * With μ = 0 the momentum buffers are neither read nor written.
 *
 * Bindings: "params" (read_write, `[total]`), "grads" (read, `[total]`),
 * "momentum" (read_write, `[total]`), "hyper" (read, `[8 + segments]`, see
 * {@linkcode sgdHyper}). One dispatch, one thread per element; the segment
 * of an element is found by a binary search unrolled into WGSL branches
 * (uniform within a warp except at boundaries). No scratch.
 *
 * With `lossScale`, also "lossScale" (read, u32, the state of
 * `loss_scale.ts`): when its overflow flag is set nothing is written (a
 * skipped step: weights and momentum untouched); otherwise `grad` is first
 * multiplied by `1/scale` (exact for the power-of-two scales of the default
 * policy; at scale 1 the gradient is used as it is, so the step is
 * bit-identical to the plain kernel's), and a step is also the first with
 * momentum while the state says a skipped first step is pending.
 *
 * @param o Arena size and segments (offsets and sizes in floats).
 * @returns The plan.
 * @throws {RangeError} On unsorted, overlapping or out-of-range segments.
 */
export function sgdUpdate(
  o: SgdOptions,
): KernelPlan<"params" | "grads" | "momentum" | "hyper", "lossScale"> {
  checkSize("total", o.total, 1);
  let end = 0;
  for (const s of o.segments) {
    checkSize("segment offset", s.offset, 0);
    checkSize("segment size", s.size, 0);
    if (s.offset < end || s.offset + s.size > o.total) {
      throw new RangeError(
        `Cannot build the SGD kernel: segments must be sorted, non-overlapping and inside 0…${o.total}: {offset ${s.offset}, size ${s.size}}`,
      );
    }
    end = s.offset + s.size;
  }
  if (o.total >= 2 ** 32) {
    throw new RangeError(
      "Cannot build the SGD kernel: the arena holds over 2³² floats; split the parameters",
    );
  }
  const b = storageBindings([
    readWrite("params"),
    readOnly("grads"),
    readWrite("momentum"),
    readOnly("hyper"),
    o.lossScale === true && readOnly("lossScale", "u32"),
  ]);
  const W = LossScaleWord;
  // The loss-scaled variant: skip a flagged step, unscale the gradient.
  const scaled = o.lossScale === true;
  const code = `// sgdUpdate${scaled ? " lossScale" : ""}
${b.decls}
${itemMainWgsl(o.total, undefined, "e").main}${
    scaled
      ? `
  if (lossScale[${W.found}] != 0u) { return; }
  let inv = 1.0 / bitcast<f32>(lossScale[${W.scale}]);
  let raw = grads[e];
  // At scale 1 the gradient itself, so that no contraction differs.
  let unscaled = select(raw * inv, raw, inv == 1.0);
  let first = hyper[4] != 0.0 || lossScale[${W.firstPending}] != 0u;`
      : ""
  }
  var seg = 0u;
${segmentTree(o)}
  let lr = hyper[${HYPER_LR}u + seg];
  let mu = hyper[0];
  let w = params[e];
  var g = ${scaled ? "unscaled" : "grads[e]"} + hyper[1] * w;
  if (mu != 0.0) {
    var buf: f32;
    if (${scaled ? "first" : "hyper[4] != 0.0"}) {
      buf = g;
    } else {
      buf = mu * momentum[e] + (1.0 - hyper[2]) * g;
    }
    momentum[e] = buf;
    g = select(buf, g + mu * buf, hyper[3] != 0.0);
  }
  params[e] = w - lr * g;
}
`;
  return {
    steps: [{
      spec: {
        code,
        workgroups: gridFor(o.total).workgroups,
        label: scaled ? "sgdUpdate lossScale" : "sgdUpdate",
      },
      bind: b.bind,
    }],
  };
}
