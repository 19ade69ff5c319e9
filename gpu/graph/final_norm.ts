/**
 * Forward and backward recorders of the transformer's final LayerNorm
 * (`FinalNormLayer`), over every token row (or the trimmed rows).
 *
 * @module
 */
import type { FinalNormLayer } from "../../model/plan.ts";
import type { Region } from "../runtime.ts";
import { layerNormBackward, layerNormForward } from "../kernels/norm.ts";
import type { Builder } from "./builder.ts";

/** What the forward keeps for the backward. */
export interface FinalNormSaved {
  readonly layer: FinalNormLayer;
  readonly x: Region;
  readonly stats: Region;
}

/** Records `x` `[R·T, d]` → `y` `[R·T, d]`. */
export function finalNormForward(
  b: Builder,
  o: { layer: FinalNormLayer; x: Region },
): { y: Region; saved: FinalNormSaved } {
  const { layer: l, x } = o;
  const rows = b.rows * l.sequence;
  const y = b.act("final_norm.y", rows * l.norm.dim);
  const stats = b.act("final_norm.stats", rows * 2);
  b.op(layerNormForward({ rows, dim: l.norm.dim, eps: l.norm.eps }), {
    x,
    gb: b.gb(l.norm.module),
    y,
    stats,
  });
  return { y, saved: { layer: l, x, stats } };
}

/**
 * Records the backward from `dy`.
 *
 * @returns The gradient of the input (a new region).
 */
export function finalNormBackward(
  b: Builder,
  o: { saved: FinalNormSaved; dy: Region },
): Region {
  const { layer: l, x, stats } = o.saved;
  const rows = b.rows * l.sequence;
  const dx = b.act("dz", rows * l.norm.dim);
  b.op(layerNormBackward({ rows, dim: l.norm.dim }), {
    dy: o.dy,
    x,
    gb: b.gb(l.norm.module),
    stats,
    dx,
    dgb: b.dgb(l.norm.module),
  });
  return dx;
}
