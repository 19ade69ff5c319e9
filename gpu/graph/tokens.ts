/**
 * Forward and backward recorders of the token layer (`TokensLayer`): the
 * special tokens placed around the embedded ones, the positional embedding
 * added, then inverted dropout from a per-step seed (training).
 *
 * @module
 */
import type { TokensLayer } from "../../model/plan.ts";
import type { Region } from "../runtime.ts";
import { tokensBackward, tokensForward } from "../kernels/model_ops.ts";
import type { Builder } from "./builder.ts";

/** What the forward keeps for the backward. */
export interface TokensSaved {
  readonly layer: TokensLayer;
  /** Dropout seed (u32 `[1]`) when dropout is on. */
  readonly step?: Region;
  readonly dropout: number;
}

const kernelOptions = (b: Builder, l: TokensLayer, dropout: number) => ({
  batch: b.rows,
  k: l.tokens,
  dim: l.dim,
  sequence: l.sequence,
  embStart: l.embStart,
  specialPositions: l.positions,
  dropout,
});

/**
 * Records `x` `[R·K, d]` → `z` `[R·T, d]`. Training graphs get a seed
 * region (`step`) whether or not `dropout` is on.
 */
export function tokensLayerForward(
  b: Builder,
  o: { layer: TokensLayer; x: Region; dropout: number },
): { y: Region; saved: TokensSaved; step?: Region } {
  const { layer: l, dropout } = o;
  const step = b.training ? b.pinned("step", 4) : undefined;
  const y = b.act("z0", b.rows * l.sequence * l.dim);
  b.op(tokensForward(kernelOptions(b, l, dropout)), {
    emb: o.x,
    pos: b.param(l.posEmbed),
    step: dropout > 0 ? step : undefined,
    z: y,
    ...Object.fromEntries(l.special.map((s, i) => [`special${i}`, b.param(s)])),
  });
  return {
    y,
    saved: { layer: l, step: dropout > 0 ? step : undefined, dropout },
    step,
  };
}

/**
 * Records the backward from `dy` `[R·T, d]`: positional and special-token
 * gradients accumulated.
 *
 * @returns The gradient of the embedded tokens `[R·K, d]`.
 */
export function tokensLayerBackward(
  b: Builder,
  o: { saved: TokensSaved; dy: Region },
): Region {
  const { layer: l, step, dropout } = o.saved;
  const dx = b.act("embed.d", b.rows * l.tokens * l.dim);
  b.op(tokensBackward(kernelOptions(b, l, dropout)), {
    dz: o.dy,
    step,
    demb: dx,
    dpos: b.grad(l.posEmbed),
    ...Object.fromEntries(l.special.map((s, i) => [`dspecial${i}`, b.grad(s)])),
  });
  return dx;
}
