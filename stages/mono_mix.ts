/**
 * The `mono_mix` map stage: averages a clip's channels into one waveform
 * (AMAuT paper, Eq. 2: x[t] = (1/C)·Σ_c x_c[t]). Single-channel clips pass
 * through unchanged (no copy).
 *
 * Takes `channels` (`[c][s]` per example), provides `waveform` (`[s]`).
 *
 * ```yaml
 * - use: mono_mix
 * ```
 *
 * @module
 */
import * as z from "zod";
import { defineStage } from "../pipeline/define_stage.ts";

/** Options of the `mono_mix` stage (none). */
export const MonoMixOptions = z.strictObject({});
/** Parsed options of the `mono_mix` stage. */
export type MonoMixOptions = z.infer<typeof MonoMixOptions>;

/**
 * Averages channels sample by sample.
 *
 * @param channels Channels-first samples of one clip, all the same length.
 * @returns The mono waveform.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { mixToMono } from "./mono_mix.ts";
 * const mono = mixToMono([new Float32Array([1, 0]), new Float32Array([0, 0.5])]);
 * assert.deepEqual([...mono], [0.5, 0.25]);
 * ```
 */
export function mixToMono(channels: readonly Float32Array[]): Float32Array {
  if (channels.length === 0) {
    throw new RangeError("Cannot mix a clip with no channels: it is empty");
  }
  if (channels.length === 1) return channels[0];
  const length = channels[0].length;
  const out = new Float32Array(length);
  for (const ch of channels) {
    if (ch.length !== length) {
      throw new RangeError(
        `Cannot mix channels of different lengths: ${length} and ${ch.length} samples`,
      );
    }
    for (let i = 0; i < length; i++) out[i] += ch[i];
  }
  const scale = 1 / channels.length;
  for (let i = 0; i < length; i++) out[i] *= scale;
  return out;
}

/** The `mono_mix` stage. */
export const stage = defineStage<MonoMixOptions>({
  id: "mono_mix",
  version: "1.0.0",
  api: 1,
  kind: "map",
  summary: "Mix multi-channel clips down to mono by averaging channels",
  options: MonoMixOptions,
  takes: ["channels"],
  provides: ["waveform"],
  layouts: () => ({ waveform: { shape: ["b", "s"], dtype: "float32" } }),
  apply(batch) {
    const channels = batch.channels as Float32Array[][];
    return { ...batch, waveform: channels.map(mixToMono) };
  },
});
