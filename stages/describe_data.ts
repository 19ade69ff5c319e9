/**
 * The `describe_data` step stage: reads every clip of the chosen splits
 * through the map stages before it and writes `data_summary.json` — clips per
 * split and class, sample rates, channel counts and durations (min, median,
 * max in seconds) — and logs a short table. A cheap first run on a new dataset.
 *
 * Takes `label` and `sampleRate` (plus `waveform` or `channels` for
 * durations), provides `dataSummary`.
 *
 * ```yaml
 * - use: describe_data
 *   with: { splits: [train, test], batchSize: 64 }
 * ```
 *
 * @module
 */
import { join } from "node:path";
import * as z from "zod";
import { defineStage } from "../pipeline/define_stage.ts";
import { writeJsonAtomic } from "../pipeline/atomic.ts";

/** Options of the `describe_data` stage. */
export const DescribeDataOptions = z.strictObject({
  splits: z.array(z.string().min(1)).min(1).optional().describe(
    "Splits to describe; default: every split of the dataset",
  ),
  batchSize: z.int().min(1).default(64).describe(
    "Clips read per batch",
  ),
});
/** Parsed options of the `describe_data` stage. */
export type DescribeDataOptions = z.infer<typeof DescribeDataOptions>;

/** Summary of one split. */
export interface SplitSummary {
  readonly clips: number;
  readonly perClass: Record<string, number>;
  readonly sampleRatesHz: number[];
  readonly channels: number[];
  readonly durationSeconds: { min: number; median: number; max: number };
}

/**
 * Min, median and max of a list of numbers (median of an even count: mean of the middle two).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { minMedianMax } from "./describe_data.ts";
 * assert.deepEqual(minMedianMax([3, 1, 2, 10]), { min: 1, median: 2.5, max: 10 });
 * ```
 */
export function minMedianMax(
  values: readonly number[],
): { min: number; median: number; max: number } {
  if (values.length === 0) return { min: 0, median: 0, max: 0 };
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  const median = s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
  return { min: s[0], median, max: s[s.length - 1] };
}

/** The `describe_data` stage. */
export const stage = defineStage<DescribeDataOptions>({
  id: "describe_data",
  version: "0.1.0",
  api: 1,
  kind: "step",
  summary: "Count clips per split and class and measure rates and durations",
  options: DescribeDataOptions,
  takes: ["label", "sampleRate"],
  provides: ["dataSummary"],
  async run(options, ctx) {
    const splits = options.splits ?? Object.keys(ctx.data.splits);
    const summary: Record<string, SplitSummary> = {};
    for (const split of splits) {
      const perClass: Record<string, number> = Object.fromEntries(
        ctx.data.classes.map((c) => [c, 0]),
      );
      const rates = new Set<number>();
      const channelCounts = new Set<number>();
      const durations: number[] = [];
      const bar = ctx.progress({
        label: `describe ${split}`,
        total: ctx.data.splits[split],
        unit: "clips",
      });
      for await (
        const batch of ctx.data.batches(split, {
          batchSize: options.batchSize,
          phase: "eval",
          shuffle: false,
        })
      ) {
        const labels = batch.label as number[];
        const sampleRates = batch.sampleRate as number[];
        const waves = batch.waveform as Float32Array[] | undefined;
        const chans = batch.channels as Float32Array[][] | undefined;
        for (let i = 0; i < batch.size; i++) {
          perClass[ctx.data.classes[labels[i]]] += 1;
          rates.add(sampleRates[i]);
          if (chans) channelCounts.add(chans[i].length);
          const samples = waves?.[i]?.length ?? chans?.[i]?.[0]?.length;
          if (samples !== undefined) durations.push(samples / sampleRates[i]);
        }
        bar.tick(batch.size);
        if (ctx.signal.aborted) throw ctx.signal.reason;
      }
      bar.done();
      summary[split] = {
        clips: Object.values(perClass).reduce((a, b) => a + b, 0),
        perClass,
        sampleRatesHz: [...rates].sort((a, b) => a - b),
        channels: [...channelCounts].sort((a, b) => a - b),
        durationSeconds: minMedianMax(durations),
      };
      const d = summary[split].durationSeconds;
      ctx.log.info(
        `${split}: ${summary[split].clips} clips, rates ${
          summary[split].sampleRatesHz.join("/")
        } Hz, duration ${d.min.toFixed(3)}/${d.median.toFixed(3)}/${
          d.max.toFixed(3)
        } s (min/median/max)`,
      );
    }
    await writeJsonAtomic(join(ctx.runDir, "data_summary.json"), {
      classes: ctx.data.classes,
      splits: summary,
    });
    return { dataSummary: summary };
  },
});
