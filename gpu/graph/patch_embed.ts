/**
 * Forward and backward recorders of the patch embedding (`PatchEmbedLayer`):
 * the CNN's 1x1 conv with bias to the model width, one matmul over every
 * token row.
 *
 * @module
 */
import type { PatchEmbedLayer } from "../../model/plan.ts";
import type { Region } from "../runtime.ts";
import type { Builder } from "./builder.ts";
import { linearBackward, linearForward } from "./linear.ts";

/** What the forward keeps for the backward. */
export interface PatchEmbedSaved {
  readonly layer: PatchEmbedLayer;
  /** The CNN output `[R·K, c]`. */
  readonly x: Region;
}

/** Records `x` `[R·K, c]` → `y` `[R·K, d]`. */
export function patchEmbedForward(
  b: Builder,
  o: { layer: PatchEmbedLayer; x: Region },
): { y: Region; saved: PatchEmbedSaved } {
  const l = o.layer;
  const rows = b.rows * l.tokens;
  const y = b.act("embed", rows * l.linear.cout);
  linearForward(b, { linear: l.linear, x: o.x, rows, out: y });
  return { y, saved: { layer: l, x: o.x } };
}

/**
 * Records the backward from `dy` `[R·K, d]`.
 *
 * @returns The gradient of the CNN output.
 */
export function patchEmbedBackward(
  b: Builder,
  o: { saved: PatchEmbedSaved; dy: Region },
): Region {
  const { layer: l, x } = o.saved;
  const rows = b.rows * l.tokens;
  const dx = b.act("cnn.dout", rows * l.linear.cin);
  linearBackward(b, { linear: l.linear, x, dy: o.dy, rows, dx });
  return dx;
}
