/**
 * The `tokenize` map stage: AMAuT's horizontal tokenisation. Each STFT frame
 * becomes a token and the mel bins become its channels, in the NWC layout the
 * model's 1-D CNN consumes (TF.js `conv1d` is `[batch, width, channels]`):
 * `features` `[b, f, t]` → `tokens` `[b, t, f]` (reference §3:
 * `FrequenceTokenTransformer`, mel bins are the Conv1d channel axis).
 *
 * ```yaml
 * - use: tokenize
 * ```
 *
 * @module
 */
import * as z from "zod";
import type { Tensor3D } from "@tensorflow/tfjs";
import { defineStage } from "../pipeline/define_stage.ts";

/** Options of the `tokenize` stage (none). */
export const TokenizeOptions = z.strictObject({});
/** Parsed options of the `tokenize` stage. */
export type TokenizeOptions = z.infer<typeof TokenizeOptions>;

/** The `tokenize` stage. */
export const stage = defineStage<TokenizeOptions>({
  id: "tokenize",
  version: "1.0.0",
  api: 1,
  kind: "map",
  summary: "Turn mel frames into tokens with mel bins as channels",
  options: TokenizeOptions,
  takes: ["features"],
  provides: ["tokens"],
  layouts: () => ({ tokens: { shape: ["b", "t", "f"], dtype: "float32" } }),
  apply(batch, _options, ctx) {
    const features = batch.features as Tensor3D;
    if (!(features instanceof ctx.tf.Tensor) || features.rank !== 3) {
      throw new TypeError(
        "Cannot tokenize: features must be a [b, nMels, frames] tensor (put mel before tokenize)",
      );
    }
    return { ...batch, tokens: ctx.tf.transpose(features, [0, 2, 1]) };
  },
});
