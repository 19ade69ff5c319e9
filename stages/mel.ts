/**
 * The `mel` map stage: log-mel features of a batch, `[b, nMels, frames]`, as
 * the AMAuT reference computes them with torchaudio — centred STFT with
 * reflect padding, periodic Hann of `winLength` centred in `nFft`, power 2,
 * Slaney-scale filterbank without area normalisation, `10·log10(max(x,
 * 1e-10))` clamped at `topDb` below each clip's maximum, divided by
 * `scaleDivisor`, then right-padded with 0.0 or cropped to `targetFrames`
 * (reference §2; `lib/mel.ts` holds the numerics).
 *
 * The whole batch is computed in a few tensor ops on the active backend: on
 * WebGPU a gather of frames and one matmul with a window·cos/sin basis, on the
 * cpu backend fft.js. A clip at another sample rate than `sampleRateHz` stops
 * the run: AMAuT never resamples.
 *
 * Takes `waveform` (`[s]` per example) and `sampleRate`, provides `features`
 * (a `[b, nMels, frames]` tensor).
 *
 * ```yaml
 * - use: mel        # Speech Commands (16 kHz, 1 s)
 *   with: { sampleRateHz: 16000, nFft: 1024, winLength: 400, hopLength: 155, nMels: 80 }
 * ```
 *
 * @module
 */
import * as z from "zod";
import { defineStage } from "../pipeline/define_stage.ts";
import type { Batch } from "../pipeline/types.ts";
import { melFeatures } from "../lib/mel.ts";

/** Options of the `mel` stage. */
export const MelStageOptions = z.strictObject({
  sampleRateHz: z.int().min(1).describe(
    "Sample rate every clip must have, in Hz (torchaudio: sample_rate); AMAuT never resamples",
  ),
  nFft: z.int().min(16).refine((n) => (n & (n - 1)) === 0, {
    message: "it must be a power of two",
  }).describe("FFT size in samples (torchaudio: n_fft)"),
  winLength: z.int().min(2).describe(
    "Window length in samples, at most nFft (torchaudio: win_length)",
  ),
  hopLength: z.int().min(1).describe(
    "Hop between frames in samples (torchaudio: hop_length)",
  ),
  nMels: z.int().min(1).describe("Mel bands (torchaudio: n_mels)"),
  fMinHz: z.number().min(0).default(0).describe(
    "Lowest filter edge in Hz (torchaudio: f_min)",
  ),
  fMaxHz: z.number().positive().optional().describe(
    "Highest filter edge in Hz; default: floor(sampleRateHz / 2) (torchaudio: f_max)",
  ),
  topDb: z.number().positive().default(80).describe(
    "Dynamic range kept below each clip's maximum, in dB (torchaudio: top_db)",
  ),
  scaleDivisor: z.number().positive().default(40).describe(
    "The dB values are divided by this (reference: top_db // max_out = 40)",
  ),
  targetFrames: z.int().min(1).optional().describe(
    "Frames after right-padding with 0.0 or cropping; default: 1 + floor(samples / hopLength)",
  ),
  stft: z.enum(["auto", "fft", "matmul"]).default("auto").describe(
    "STFT method: fft (CPU, fft.js), matmul (a DFT basis on the backend), auto: matmul on WebGPU, else fft",
  ),
}).superRefine((o, ctx) => {
  if (o.winLength > o.nFft) {
    ctx.addIssue({
      code: "custom",
      path: ["winLength"],
      message: `it must be <= nFft (${o.nFft})`,
    });
  }
  const nyquist = Math.floor(o.sampleRateHz / 2);
  if (o.fMaxHz !== undefined && o.fMaxHz > nyquist) {
    ctx.addIssue({
      code: "custom",
      path: ["fMaxHz"],
      message: `it must be <= sampleRateHz / 2 (${nyquist})`,
    });
  }
  if (o.fMinHz >= (o.fMaxHz ?? nyquist)) {
    ctx.addIssue({
      code: "custom",
      path: ["fMinHz"],
      message: `it must be below fMaxHz (${o.fMaxHz ?? nyquist})`,
    });
  }
});
/** Parsed options of the `mel` stage. */
export type MelStageOptions = z.infer<typeof MelStageOptions>;

/**
 * Stops the run when a clip of the batch is not at the stage's sample rate
 * (AMAuT never resamples); shared by the stage and the fused front end.
 *
 * @param batch The batch (`sampleRate` per example, `path` when known).
 * @param options The stage's options.
 * @throws {Error} "Cannot compute mel features of …", naming the file.
 */
export function checkMelRates(
  batch: Batch,
  options: Pick<MelStageOptions, "sampleRateHz">,
): void {
  const rates = batch.sampleRate as number[];
  const paths = batch.path as string[] | undefined;
  rates.forEach((rate, i) => {
    if (rate !== options.sampleRateHz) {
      throw new Error(
        `Cannot compute mel features of ${
          paths ? `"${paths[i]}"` : `example ${i}`
        }: it is ${rate} Hz and the mel stage expects ${options.sampleRateHz} Hz (AMAuT never resamples; set sampleRateHz to the dataset's rate)`,
      );
    }
  });
}

/** The `mel` stage. */
export const stage = defineStage<MelStageOptions>({
  id: "mel",
  version: "1.0.0",
  api: 1,
  kind: "map",
  summary: "Compute log-mel features of a batch as the reference does",
  options: MelStageOptions,
  takes: ["waveform", "sampleRate"],
  provides: ["features"],
  layouts: (o) => ({
    features: { shape: ["b", o.nMels, "t"], dtype: "float32" },
  }),
  apply(batch, options, ctx) {
    const waves = batch.waveform as Float32Array[];
    checkMelRates(batch, options);
    const method = options.stft === "auto"
      ? (ctx.backend.name === "webgpu" ? "matmul" : "fft")
      : options.stft;
    return { ...batch, features: melFeatures(ctx.tf, waves, options, method) };
  },
});
