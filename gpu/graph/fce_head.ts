/**
 * Forward and backward recorders of the fce head (`FceHeadLayer`): a conv
 * over the embedding axis of the special tokens' rows, LayerNorm, fc.
 *
 * @module
 */
import type { FceHeadLayer } from "../../model/plan.ts";
import type { Region } from "../runtime.ts";
import { layerNormBackward, layerNormForward } from "../kernels/norm.ts";
import { mergeBackward, mergeForward } from "../kernels/model_ops.ts";
import type { Builder } from "./builder.ts";
import { linearBackward, linearForward } from "./linear.ts";

/** What the forward keeps for the backward. */
export interface FceHeadSaved {
  readonly layer: FceHeadLayer;
  /** Input rows, merged vector, its LayerNorm output and statistics. */
  readonly x: Region;
  readonly merged: Region;
  readonly hn: Region;
  readonly stats: Region;
}

const mergeOptions = (b: Builder, l: FceHeadLayer) => ({
  batch: b.rows,
  sequence: l.sequence,
  dim: l.dim,
  positions: l.positions,
  kernel: l.merge.kernel,
});

/** Records `x` `[R·sequence, d]` → logits `out` `[R, n]`. */
export function fceHeadForward(
  b: Builder,
  o: { layer: FceHeadLayer; x: Region; out: Region },
): FceHeadSaved {
  const { layer: l, x } = o;
  const R = b.rows;
  const merged = b.act("head.merge", R * l.dim);
  b.op(mergeForward(mergeOptions(b, l)), {
    z: x,
    w: b.param(l.merge.weight),
    bias: b.param(l.merge.bias),
    m: merged,
  });
  const hn = b.act("head.norm", R * l.dim);
  const stats = b.act("head.normstats", R * 2);
  b.op(layerNormForward({ rows: R, dim: l.dim, eps: l.norm.eps }), {
    x: merged,
    gb: b.gb(l.norm.module),
    y: hn,
    stats,
  });
  linearForward(b, { linear: l.fc, x: hn, rows: R, out: o.out });
  return { layer: l, x, merged, hn, stats };
}

/**
 * Records the backward from `dy` (the logits' gradient `[R, n]`).
 *
 * @returns The gradient of the input (cleared before each step: the merge
 *   backward accumulates into it).
 */
export function fceHeadBackward(
  b: Builder,
  o: { saved: FceHeadSaved; dy: Region },
): Region {
  const { layer: l, x, merged, hn, stats } = o.saved;
  const R = b.rows;
  const dx = b.act("final_norm.dy", R * l.sequence * l.dim);
  const dhn = b.act("head.dhn", R * l.dim);
  linearBackward(b, { linear: l.fc, x: hn, dy: o.dy, rows: R, dx: dhn });
  const dm = b.act("head.dm", R * l.dim);
  b.op(layerNormBackward({ rows: R, dim: l.dim }), {
    dy: dhn,
    x: merged,
    gb: b.gb(l.norm.module),
    stats,
    dx: dm,
    dgb: b.dgb(l.norm.module),
  });
  b.clears.push(dx);
  b.op(mergeBackward(mergeOptions(b, l)), {
    dm,
    w: b.param(l.merge.weight),
    z: x,
    dz: dx,
    dw: b.grad(l.merge.weight),
    dbias: b.grad(l.merge.bias),
  });
  return dx;
}
