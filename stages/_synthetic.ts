/**
 * Synthetic labelled audio for demos and tests: each class is a tone family
 * (a fundamental plus its second harmonic) at its own frequency, with seeded
 * detuning, phase, amplitude and white noise, so a classifier can learn it and
 * no dataset has to be downloaded. Private to the `load` stage.
 *
 * @module
 */
import * as z from "zod";
import type { Rng } from "../pipeline/rng.ts";

/** `data:` options of the `synthetic` layout. */
export const SyntheticData = z.strictObject({
  layout: z.literal("synthetic").describe(
    "Generated tones, one frequency per class (no files needed)",
  ),
  classes: z.array(
    // Numbers are names too: `classes: [0, 1]` means "0" and "1".
    z.union([z.string().min(1), z.number()]).transform(String),
  ).min(2).default(["low", "mid", "high"])
    .describe(
      'Class names (numbers such as 0 mean the name "0"); class i gets the i-th tone frequency',
    ),
  sampleRateHz: z.int().min(1000).max(384000).default(16000).describe(
    "Sample rate of the generated audio in Hz",
  ),
  durationSeconds: z.number().positive().max(60).default(1).describe(
    "Length of each clip in seconds",
  ),
  durationJitter: z.number().min(0).max(0.9).default(0).describe(
    "Relative spread of clip lengths: each clip lasts durationSeconds·(1 ± U·jitter)",
  ),
  channels: z.int().min(1).max(8).default(1).describe(
    "Channels per clip (the tone is shared, the noise is independent per channel)",
  ),
  perClass: z.strictObject({
    train: z.int().min(0).default(8).describe("Training clips per class"),
    validation: z.int().min(0).default(2).describe(
      "Validation clips per class",
    ),
    test: z.int().min(0).default(2).describe("Test clips per class"),
  }).default({ train: 8, validation: 2, test: 2 }).describe(
    "Clips per class and split",
  ),
  fold: z.int().min(0).optional().describe(
    "Which draw of clips (like a cross-validation fold, for grids that vary data.fold): each fold generates different clips; absent or 0: the original draw",
  ),
  noiseLevel: z.number().min(0).max(1).default(0.05).describe(
    "Standard deviation of the added white noise (full scale = 1)",
  ),
});
/** Parsed `synthetic` layout options. */
export type SyntheticData = z.infer<typeof SyntheticData>;

/** Tone frequency of class `k` of `n` in Hz: log-spaced from 150 Hz up to 4 kHz (or 0.35·rate). */
export function classFrequencyHz(
  k: number,
  n: number,
  sampleRateHz: number,
): number {
  const low = 150;
  const high = Math.min(4000, 0.35 * sampleRateHz);
  return n === 1 ? low : low * Math.pow(high / low, k / (n - 1));
}

/**
 * Generates one clip: channels-first sample arrays in [-1, 1].
 *
 * @param label Class index.
 * @param options The layout options.
 * @param rng The clip's own seeded stream.
 */
export function synthesizeClip(
  label: number,
  options: SyntheticData,
  rng: Rng,
): Float32Array[] {
  const rate = options.sampleRateHz;
  const jitter = options.durationJitter * (2 * rng.next() - 1);
  const length = Math.max(
    1,
    Math.round(rate * options.durationSeconds * (1 + jitter)),
  );
  const f = classFrequencyHz(label, options.classes.length, rate) *
    (1 + 0.03 * (2 * rng.next() - 1));
  const phase = 2 * Math.PI * rng.next();
  const amplitude = 0.2 + 0.5 * rng.next();
  const tone = new Float32Array(length);
  const w = (2 * Math.PI * f) / rate;
  for (let i = 0; i < length; i++) {
    tone[i] = amplitude *
      (Math.sin(w * i + phase) + 0.3 * Math.sin(2 * w * i + 2 * phase));
  }
  const out: Float32Array[] = [];
  for (let c = 0; c < options.channels; c++) {
    const gain = c === 0 ? 1 : 0.8 + 0.2 * rng.next();
    const ch = new Float32Array(length);
    for (let i = 0; i < length; i++) {
      const v = gain * tone[i] + options.noiseLevel * rng.normal();
      ch[i] = Math.max(-1, Math.min(1, v));
    }
    out.push(ch);
  }
  return out;
}
