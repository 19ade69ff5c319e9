/**
 * Forward and backward recorders of the CNN root (`StemLayer`): conv +
 * BatchNorm + ReLU, then (`maxPool`) a max-pool padded with −∞ whose argmax
 * the backward routes the gradient through.
 *
 * @module
 */
import type { StemLayer } from "../../model/plan.ts";
import type { Region } from "../runtime.ts";
import { maxPoolBackward, maxPoolForward } from "../kernels/conv.ts";
import type { Builder } from "./builder.ts";
import {
  bnBackward,
  convBackward,
  convBnForward,
  type ConvBnSaved,
} from "./conv_bn.ts";

/** What the stem's forward keeps for its backward. */
export interface StemSaved {
  readonly layer: StemLayer;
  readonly conv: ConvBnSaved;
  /** Argmax of each pooled value (absent without `maxPool`). */
  readonly arg?: Region;
}

const poolOptions = (b: Builder, l: StemLayer) => ({
  batch: b.rows,
  tIn: l.pool.tIn,
  channels: l.conv.cout,
  k: l.pool.kernel,
  stride: l.pool.stride,
  pad: l.pool.pad,
});

/**
 * Records the stem: `x` `[R·frames, nMels]` → `y` `[R·pool.tOut, c]`.
 */
export function stemForward(
  b: Builder,
  o: { layer: StemLayer; x: Region },
): { y: Region; saved: StemSaved } {
  const l = o.layer;
  const conv = convBnForward(b, { conv: l.conv, x: o.x, relu: true });
  if (!l.maxPool) return { y: conv.y, saved: { layer: l, conv } };
  const floats = b.rows * l.pool.tOut * l.conv.cout;
  const y = b.act("pool.y", floats);
  const arg = b.act("pool.arg", floats);
  b.op(maxPoolForward(poolOptions(b, l)), { x: conv.y, y, arg });
  return { y, saved: { layer: l, conv, arg } };
}

/** Records the stem's backward from `dy` (the gradient of its output); the input needs none. */
export function stemBackward(
  b: Builder,
  o: { saved: StemSaved; dy: Region },
): void {
  const { layer: l, conv, arg } = o.saved;
  const floats = b.rows * l.conv.tOut * l.conv.cout;
  let dPool = o.dy;
  if (arg) {
    dPool = b.act("root.dy", floats);
    b.op(maxPoolBackward(poolOptions(b, l)), { dy: o.dy, arg, dx: dPool });
  }
  const dh = b.act("root.dh", floats);
  bnBackward(b, { saved: conv.bn!, dy: dPool, dx: dh });
  convBackward(b, { saved: conv, dh });
}
