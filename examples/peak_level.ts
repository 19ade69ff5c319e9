/**
 * An example external stage: measures the peak level of every clip in dBFS
 * and writes a per-class summary to `peak_level.json` in the run folder.
 *
 * ```yaml
 * - use: ./peak_level.ts
 *   with: { split: test }
 * ```
 *
 * @module
 */
import { join } from "node:path";
import * as z from "zod";
import { defineStage, writeJsonAtomic } from "../mod.ts";

/** Options, with defaults and descriptions (they become the JSON Schema). */
export const PeakLevelOptions = z.strictObject({
  split: z.string().default("train").describe("Split to measure"),
  floorDb: z.number().max(0).default(-120).describe(
    "Level reported for silent clips, in dBFS",
  ),
});

/** The stage: a module that exports `stage` is all a spec needs. */
export const stage = defineStage({
  id: "peak_level",
  version: "1.0.0",
  api: 1,
  kind: "step",
  summary: "Measure the peak level of each clip in dBFS",
  options: PeakLevelOptions,
  takes: ["waveform", "label"],
  provides: ["peakLevelDb"],
  async run(options, ctx) {
    const byClass: Record<string, number[]> = {};
    for await (
      const batch of ctx.data.batches(options.split, {
        batchSize: 32,
        phase: "eval",
      })
    ) {
      const waves = batch.waveform as Float32Array[];
      const labels = batch.label as number[];
      waves.forEach((w, i) => {
        const peak = w.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
        const db = peak > 0 ? 20 * Math.log10(peak) : options.floorDb;
        (byClass[ctx.data.classes[labels[i]]] ??= []).push(db);
      });
    }
    const peakLevelDb = Object.fromEntries(
      Object.entries(byClass).map(([c, v]) => [c, Math.max(...v)]),
    );
    await writeJsonAtomic(join(ctx.runDir, "peak_level.json"), peakLevelDb);
    ctx.log.info(`peak levels (dBFS): ${JSON.stringify(peakLevelDb)}`);
    return { peakLevelDb };
  },
});
