/**
 * Identity helpers that give stage authors type inference for their options:
 * `export const stage = defineStage({ ... })`.
 *
 * @module
 */
import type { MapStage, SourceStage, Stage, StepStage } from "./types.ts";

/**
 * Returns the stage unchanged; exists so `options` types flow into callbacks.
 *
 * @example
 * ```ts
 * import * as z from "zod";
 * import { defineStage } from "./define_stage.ts";
 * const stage = defineStage({
 *   id: "gain", version: "1.0.0", api: 1, kind: "map",
 *   summary: "Scale waveforms by a constant gain",
 *   options: z.strictObject({ gain: z.number().default(1) }),
 *   takes: ["waveform"], provides: ["waveform"],
 *   apply(batch, { gain }) {
 *     const w = batch.waveform as Float32Array[];
 *     return { ...batch, waveform: w.map((x) => x.map((v) => v * gain)) };
 *   },
 * });
 * ```
 */
export function defineStage<O, D>(stage: SourceStage<O, D>): SourceStage<O, D>;
export function defineStage<O>(stage: MapStage<O>): MapStage<O>;
export function defineStage<O>(stage: StepStage<O>): StepStage<O>;
export function defineStage(stage: Stage): Stage {
  return stage;
}
