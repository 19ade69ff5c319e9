/**
 * The browser page's classification path, without the DOM: decode a WAV
 * (`lib/wav.ts`), mix it to mono, refuse a sample rate other than the
 * model's (naming both; the browser never resamples), and run the exported
 * package's evaluation path (`lib/inference.ts`), plus the log-mel features
 * of the same fitted clip for drawing. Browser-safe (no Deno APIs), so
 * `web/app.ts` bundles it and Deno tests can import it.
 *
 * @module
 */
import type { Tf } from "../pipeline/types.ts";
import { fitForEval, type LoadedModel } from "../lib/inference.ts";
import { melFeatures, type StftMethod } from "../lib/mel.ts";
import { decodeWav } from "../lib/wav.ts";
import { mixToMono } from "../stages/mono_mix.ts";

/** A log-mel spectrogram: `nMels` rows of `frames` values, row-major. */
export interface Spectrogram {
  /** Mel bands (rows; row 0 is the lowest band). */
  readonly nMels: number;
  /** Frames (columns). */
  readonly frames: number;
  /** `values[m * frames + t]`: the scaled log-mel value of band m, frame t. */
  readonly values: Float32Array;
}

/** One clip's classification. */
export interface Classification {
  /** The labels, in the order of `probabilities`. */
  readonly labels: readonly string[];
  /** Softmax probability per label. */
  readonly probabilities: number[];
  /** The most probable label. */
  readonly top: string;
  /** The tfjs backend that ran the model. */
  readonly backend: string;
  /** Samples of the clip before the evaluation path fitted it. */
  readonly samples: number;
  /** The clip's sample rate in Hz (always the model's). */
  readonly sampleRateHz: number;
}

/**
 * The STFT method `loadPackage`'s `predict` uses: the package's own choice,
 * else `matmul` on WebGPU and `fft` elsewhere.
 */
export function stftMethod(tf: Tf, model: LoadedModel): StftMethod {
  const named = model.config.mel.stft;
  if (named === "fft" || named === "matmul") return named;
  return tf.getBackend() === "webgpu" ? "matmul" : "fft";
}

/**
 * Checks that a clip's rate is the model's.
 *
 * @param rateHz The clip's sample rate.
 * @param model The loaded package.
 * @param what What the clip is, for the message (e.g. `"clip.wav"`).
 * @throws {RangeError} Naming both rates.
 */
export function checkRate(
  rateHz: number,
  model: LoadedModel,
  what: string,
): void {
  if (rateHz !== model.sampleRateHz) {
    throw new RangeError(
      `Cannot classify ${what}: it is ${rateHz} Hz and the model expects ${model.sampleRateHz} Hz (AMAuT never resamples; convert it first)`,
    );
  }
}

/**
 * Decodes WAV bytes to one mono clip at the model's rate.
 *
 * @throws {WavError} When the bytes are not a readable WAV.
 * @throws {RangeError} When the rate differs from the model's.
 */
export function wavToMono(
  bytes: Uint8Array,
  name: string,
  model: LoadedModel,
): Float32Array {
  const wav = decodeWav(bytes, name);
  checkRate(wav.sampleRateHz, model, `"${name}"`);
  return mixToMono(wav.channels);
}

/** Classifies one mono clip at the model's rate. */
export async function classifyWave(
  tf: Tf,
  model: LoadedModel,
  wave: Float32Array,
): Promise<Classification> {
  const [p] = await model.predict([wave]);
  const probabilities = Array.from(p);
  let best = 0;
  probabilities.forEach((v, i) => {
    if (v > probabilities[best]) best = i;
  });
  return {
    labels: model.labels,
    probabilities,
    top: model.labels[best],
    backend: tf.getBackend(),
    samples: wave.length,
    sampleRateHz: model.sampleRateHz,
  };
}

/**
 * The log-mel features the model sees for `wave` (fitted to the package's
 * length as evaluation does), for drawing.
 */
export async function spectrogram(
  tf: Tf,
  model: LoadedModel,
  wave: Float32Array,
): Promise<Spectrogram> {
  const fitted = fitForEval(wave, model.lengthSamples, model.config.clip);
  const features = tf.tidy(() =>
    melFeatures(tf, [fitted], model.config.mel, stftMethod(tf, model))
  ); // [1, nMels, frames]
  const [, nMels, frames] = features.shape;
  const values = await features.data() as Float32Array;
  features.dispose();
  return { nMels, frames, values };
}
