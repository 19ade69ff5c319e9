/**
 * The `fixed_length` map stage: brings every waveform to the same number of
 * samples, as the AMAuT reference does before its mel transform
 * (`AudioPadding` and `AudioClip` in the authors' `lib/wavUtils.py`).
 *
 * - Shorter clips are zero-padded to the length. The head pad is uniform in
 *   {0 … deficit} when training (`AudioPadding(random_shift=True)`), and
 *   `floor(deficit / 2)` — centred — when evaluating; the rest goes to the tail.
 * - Longer clips are cut to their first samples with `clip: head`
 *   (`AudioClip(mode='head')`, used for VocalSound after padding); with
 *   `clip: none` they pass unchanged, as the reference's padding never crops.
 *
 * The length is given in `samples`, or in `seconds` (times each clip's
 * sample rate, rounded). Takes and provides `waveform` (`[s]` per example).
 *
 * Before a run (and in `deno task data`) it warns when more than 2 % of the
 * clips would be cut or be mostly padding ({@linkcode lengthWarnings}).
 *
 * ```yaml
 * - use: fixed_length
 *   with: { seconds: 1 }             # 16000 samples at 16 kHz
 * - use: fixed_length
 *   with: { samples: 160000, clip: head }
 * ```
 *
 * @module
 */
import * as z from "zod";
import { defineStage } from "../pipeline/define_stage.ts";
import type { Rng } from "../pipeline/rng.ts";

import { displayPath } from "../pipeline/spec_load.ts";

/** One clip's length, for {@linkcode lengthWarnings}. */
export interface ClipLength {
  /** The file, as the layout names it. */
  readonly path: string;
  /** Samples per channel. */
  readonly samples: number;
  /** Sample rate in Hz. */
  readonly sampleRateHz: number;
}

const PadPosition = z.enum(["random", "center", "end"]);

/** Options of the `fixed_length` stage. */
export const FixedLengthOptions = z.strictObject({
  samples: z.int().min(1).optional().describe(
    "Target length in samples (give samples or seconds)",
  ),
  seconds: z.number().positive().optional().describe(
    "Target length in seconds, times each clip's sample rate (give samples or seconds)",
  ),
  pad: z.strictObject({
    fit: PadPosition.default("random").describe(
      "Where the padding goes when training: random head pad, centred, or all at the end",
    ),
    eval: PadPosition.default("center").describe(
      "Where the padding goes in every other phase (evaluation, adaptation)",
    ),
  }).default({ fit: "random", eval: "center" }).describe(
    "Position of the zero padding of short clips, per phase",
  ),
  clip: z.enum(["head", "none"]).default("head").describe(
    "Longer clips: keep the first samples (head) or leave them unchanged (none)",
  ),
}).refine((o) => (o.samples === undefined) !== (o.seconds === undefined), {
  message: "give exactly one of samples and seconds",
});
/** Parsed options of the `fixed_length` stage. */
export type FixedLengthOptions = z.infer<typeof FixedLengthOptions>;

/**
 * Pads or clips one waveform to `length` samples.
 *
 * @param waveform The samples.
 * @param length Target length in samples.
 * @param position Where the zero padding goes (`random` draws the head pad from `rng`).
 * @param clip What to do with longer clips.
 * @param rng Source of the random head pad.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fitLength } from "./fixed_length.ts";
 * const out = fitLength(new Float32Array([1, 2]), 5, "center", "head");
 * assert.deepEqual([...out], [0, 1, 2, 0, 0]);
 * ```
 */
export function fitLength(
  waveform: Float32Array,
  length: number,
  position: "random" | "center" | "end",
  clip: "head" | "none",
  rng?: Rng,
): Float32Array {
  const deficit = length - waveform.length;
  if (deficit === 0) return waveform;
  if (deficit < 0) {
    return clip === "head" ? waveform.slice(0, length) : waveform;
  }
  const out = new Float32Array(length);
  out.set(waveform, padHead(deficit, position, rng));
  return out;
}

/**
 * Zeros in front of a clip padded by `deficit` samples: uniform in
 * `0 … deficit` (`random`, one draw of `rng`), `floor(deficit / 2)`
 * (`center`) or 0 (`end`).
 *
 * @param deficit Samples missing, > 0.
 * @param position Where the padding goes.
 * @param rng Source of the random head pad.
 * @throws {TypeError} `random` without an rng.
 */
export function padHead(
  deficit: number,
  position: "random" | "center" | "end",
  rng?: Rng,
): number {
  if (position === "center") return Math.floor(deficit / 2);
  if (position === "end") return 0;
  if (!rng) {
    throw new TypeError(
      "Cannot fit the length with random padding: no rng given; pass an rng",
    );
  }
  return rng.int(deficit + 1);
}

/** Share of clips above which {@linkcode lengthWarnings} warns (2 %). */
export const LENGTH_WARN_SHARE = 0.02;
/** A clip shorter than this share of the length is "mostly padding". */
export const MOSTLY_PADDING_SHARE = 0.5;
/** Files named as examples in a warning. */
const EXAMPLES = 3;

/**
 * Warnings about what `fixed_length` will do to a dataset, from its clip
 * lengths (file headers): one when more than {@linkcode LENGTH_WARN_SHARE}
 * of the clips are longer than the length and cut (`clip: head`), one when
 * more than that share are shorter than {@linkcode MOSTLY_PADDING_SHARE} of
 * it and so become mostly zero padding. Each gives the count, the share, the
 * count per split, a few files with their lengths, and the option to change.
 *
 * @param options The stage's options.
 * @param splits Clip lengths by split.
 * @param stageName The stage's name in the spec (for `--set name.seconds=…`).
 * @returns Zero, one or two warning lines.
 */
export function lengthWarnings(
  options: FixedLengthOptions,
  splits: Readonly<Record<string, readonly ClipLength[]>>,
  stageName = "fixed_length",
): string[] {
  const target = (c: ClipLength) =>
    options.samples ?? Math.round(options.seconds! * c.sampleRateHz);
  const all = Object.entries(splits).flatMap(([split, clips]) =>
    clips.map((c) => ({ split, ...c }))
  );
  if (all.length === 0) return [];
  const length = options.samples !== undefined
    ? `${options.samples} samples`
    : `${options.seconds} s`;
  const secs = (c: ClipLength) => (c.samples / c.sampleRateHz).toFixed(2);
  const describe = (group: typeof all) => {
    const perSplit = Object.keys(splits).map((s) =>
      `${s} ${group.filter((c) => c.split === s).length}`
    ).join(", ");
    const examples = group.slice(0, EXAMPLES).map((c) =>
      `${displayPath(c.path)} (${secs(c)} s)`
    ).join(", ");
    return `${group.length} of ${all.length} clips (${
      (100 * group.length / all.length).toFixed(1)
    } %; ${perSplit}), e.g. ${examples}${group.length > EXAMPLES ? ", …" : ""}`;
  };
  const out: string[] = [];
  const cut = options.clip === "head"
    ? all.filter((c) => c.samples > target(c))
    : [];
  if (cut.length > LENGTH_WARN_SHARE * all.length) {
    out.push(
      `${stageName}: ${
        describe(cut)
      } are longer than ${length} and lose their end (clip: head); raise ${stageName}.${
        options.samples !== undefined ? "samples" : "seconds"
      } to keep more, or set ${stageName}.clip: none to keep them whole`,
    );
  }
  const padded = all.filter((c) =>
    c.samples < MOSTLY_PADDING_SHARE * target(c)
  );
  if (padded.length > LENGTH_WARN_SHARE * all.length) {
    out.push(
      `${stageName}: ${
        describe(padded)
      } are shorter than half of ${length} and become mostly zero padding; lower ${stageName}.${
        options.samples !== undefined ? "samples" : "seconds"
      } if that is not intended`,
    );
  }
  return out;
}

/** The `fixed_length` stage. */
export const stage = defineStage<FixedLengthOptions>({
  id: "fixed_length",
  version: "1.0.0",
  api: 1,
  kind: "map",
  summary: "Pad or clip waveforms to a fixed number of samples",
  options: FixedLengthOptions,
  takes: ["waveform", "sampleRate"],
  provides: ["waveform"],
  layouts: (o) => ({
    waveform: { shape: ["b", o.samples ?? "s"], dtype: "float32" },
  }),
  checkData(options, dataset, stageName) {
    const rate = dataset.info.sampleRateHz;
    if (!dataset.durations || typeof rate !== "number") return [];
    return lengthWarnings(
      options,
      Object.fromEntries(
        Object.keys(dataset.splits).map((split) => [
          split,
          dataset.durations!(split).map((c) => ({
            path: c.path,
            samples: Math.round(c.seconds * rate),
            sampleRateHz: rate,
          })),
        ]),
      ),
      stageName,
    );
  },
  apply(batch, options, ctx) {
    const waves = batch.waveform as Float32Array[];
    const rates = batch.sampleRate as number[];
    const position = batch.phase === "fit" ? options.pad.fit : options.pad.eval;
    return {
      ...batch,
      waveform: waves.map((w, i) =>
        fitLength(
          w,
          options.samples ?? Math.round(options.seconds! * rates[i]),
          position,
          options.clip,
          ctx.rng,
        )
      ),
    };
  },
});
