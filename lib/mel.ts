/**
 * Log-mel features exactly as the AMAuT reference computes them with
 * torchaudio (`MelSpectrogram(mel_scale="slaney", norm=None)`, then
 * `AmplitudeToDB(top_db=80)` divided by 40, then frame padding):
 *
 * 1. reflect-pad `nFft / 2` samples on each side (`center=True`);
 * 2. frames every `hopLength` samples; a periodic Hann window of `winLength`
 *    centred in `nFft`; power spectrum |STFT|² of `nFft / 2 + 1` bins;
 * 3. a Slaney-scale triangular filterbank without area normalisation;
 * 4. `10·log10(max(x, 1e-10))`, clamped at `topDb` below the clip's maximum,
 *    divided by `scaleDivisor` (40 = top_db // max_out in the reference);
 * 5. right-pad frames with 0.0, or crop, to `targetFrames`.
 *
 * The STFT runs batched on the active TensorFlow.js backend: on WebGPU as a
 * gather of frames and one matmul with a fixed window·cos/sin basis; on the
 * cpu backend through `npm:fft.js` (tfjs's own cpu FFT takes minutes for a
 * 10 s clip). Either way the filterbank, dB scaling and padding are tensor ops.
 *
 * The matmul form runs in chunks of clips sized so that its largest tensor
 * (the `[clips·frames, 2·(nFft/2+1)]` spectrum, 12 MB per 10 s CochlScene
 * clip) stays within {@linkcode MEL_CHUNK_BYTES} and the device's buffer
 * limits (`largestTensorBytes`): a batch of 140 such clips would otherwise
 * need a 1.7 GB tensor and ~7 GB of transient buffers at once.
 *
 * @module
 */
// @ts-types="./fft_js.d.ts"
import FFT from "fft.js";
import type { Tensor, Tensor2D, Tensor3D } from "@tensorflow/tfjs";
import type { Tf } from "../pipeline/types.ts";
import { largestTensorBytes } from "../pipeline/gpu_limits.ts";
import { chunkRanges, itemsPerChunk } from "./chunks.ts";

/**
 * Working budget of one chunk of the matmul STFT, in bytes of its largest
 * tensor (256 MiB: 21 ten-second 44.1 kHz clips, 300 one-second 16 kHz ones).
 */
export const MEL_CHUNK_BYTES = 256 * 2 ** 20;

/** Mel options (the reference's names in comments). */
export interface MelOptions {
  /** Sample rate in Hz (`sample_rate`). */
  readonly sampleRateHz: number;
  /** FFT size (`n_fft`). */
  readonly nFft: number;
  /** Window length in samples (`win_length`), ≤ nFft. */
  readonly winLength: number;
  /** Hop in samples (`hop_length`). */
  readonly hopLength: number;
  /** Mel bands (`n_mels`). */
  readonly nMels: number;
  /** Lowest filter edge in Hz (`f_min`, default 0). */
  readonly fMinHz?: number;
  /** Highest filter edge in Hz (`f_max`, default `floor(sampleRateHz / 2)`). */
  readonly fMaxHz?: number;
  /** Dynamic range kept below each clip's maximum, in dB (`top_db`, default 80). */
  readonly topDb?: number;
  /** Divisor of the dB values (reference: top_db // max_out = 40). */
  readonly scaleDivisor?: number;
  /** Frames after padding with 0.0 or cropping; default: the STFT's own count. */
  readonly targetFrames?: number;
}

/** How the STFT is computed: `fft` (fft.js on the CPU) or `matmul` (a DFT basis on the backend). */
export type StftMethod = "fft" | "matmul";

const F_SP = 200 / 3;
const MIN_LOG_HZ = 1000;
const MIN_LOG_MEL = MIN_LOG_HZ / F_SP;
const LOG_STEP = Math.log(6.4) / 27;

/** Hz → mel on the Slaney scale (linear below 1 kHz, logarithmic above). */
export function hzToMelSlaney(hz: number): number {
  return hz >= MIN_LOG_HZ
    ? MIN_LOG_MEL + Math.log(hz / MIN_LOG_HZ) / LOG_STEP
    : hz / F_SP;
}

/** Mel → Hz on the Slaney scale. */
export function melToHzSlaney(mel: number): number {
  return mel >= MIN_LOG_MEL
    ? MIN_LOG_HZ * Math.exp(LOG_STEP * (mel - MIN_LOG_MEL))
    : mel * F_SP;
}

/** `linspace(start, stop, n)` rounded to float32 as torch computes it. */
function linspace32(start: number, stop: number, n: number): Float64Array {
  const out = new Float64Array(n);
  const step = n > 1 ? (stop - start) / (n - 1) : 0;
  // torch.linspace fills the first half from start and the second from stop.
  const half = Math.floor(n / 2);
  for (let i = 0; i < n; i++) {
    out[i] = Math.fround(
      i < half ? start + step * i : stop - step * (n - 1 - i),
    );
  }
  return out;
}

/**
 * The triangular mel filterbank, `[nFft / 2 + 1, nMels]` row-major, as
 * torchaudio's `melscale_fbanks(..., norm=None, mel_scale="slaney")` builds it
 * in float32.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { melFilterbank } from "./mel.ts";
 * const fb = melFilterbank({ sampleRateHz: 16000, nFft: 1024, winLength: 400, hopLength: 155, nMels: 80 });
 * assert.equal(fb.length, 513 * 80);
 * ```
 */
export function melFilterbank(options: MelOptions): Float32Array {
  const nBins = options.nFft / 2 + 1;
  const fMin = options.fMinHz ?? 0;
  const fMax = options.fMaxHz ?? Math.floor(options.sampleRateHz / 2);
  const freqs = linspace32(0, Math.floor(options.sampleRateHz / 2), nBins);
  const mels = linspace32(
    hzToMelSlaney(fMin),
    hzToMelSlaney(fMax),
    options.nMels + 2,
  );
  const f = Array.from(mels, (m) => Math.fround(melToHzSlaney(m)));
  const out = new Float32Array(nBins * options.nMels);
  for (let m = 0; m < options.nMels; m++) {
    const lowDiff = Math.fround(f[m + 1] - f[m]);
    const highDiff = Math.fround(f[m + 2] - f[m + 1]);
    for (let k = 0; k < nBins; k++) {
      const down = Math.fround(-Math.fround(f[m] - freqs[k]) / lowDiff);
      const up = Math.fround(Math.fround(f[m + 2] - freqs[k]) / highDiff);
      out[k * options.nMels + m] = Math.max(0, Math.min(down, up));
    }
  }
  return out;
}

/** Periodic Hann window of `winLength`, zero-padded symmetrically to `nFft`. */
export function paddedHann(winLength: number, nFft: number): Float64Array {
  const out = new Float64Array(nFft);
  const left = Math.floor((nFft - winLength) / 2);
  for (let n = 0; n < winLength; n++) {
    out[left + n] = 0.5 - 0.5 * Math.cos((2 * Math.PI * n) / winLength);
  }
  return out;
}

/** STFT frame count with centre padding: `1 + floor(samples / hopLength)`. */
export function frameCount(samples: number, hopLength: number): number {
  return 1 + Math.floor(samples / hopLength);
}

/**
 * Stops when a clip is too short for a centred STFT (reflect padding needs
 * more than `nFft / 2` samples).
 *
 * @param samples The clip's length.
 * @param nFft FFT size.
 * @throws {RangeError} "Cannot compute a centred STFT of …".
 */
export function checkLength(samples: number, nFft: number): void {
  if (samples <= nFft / 2) {
    throw new RangeError(
      `Cannot compute a centred STFT of ${samples} samples with nFft ${nFft}: reflect padding needs more than ${
        nFft / 2
      } samples`,
    );
  }
}

/** Index of the sample read at position `i` of the reflect-padded signal. */
function reflect(i: number, n: number): number {
  if (i < 0) return -i;
  if (i >= n) return 2 * (n - 1) - i;
  return i;
}

/**
 * The error for a batch of clips of different lengths without
 * `targetFrames` (their features cannot be stacked).
 *
 * @param a One length in samples.
 * @param b Another.
 */
export function unequalLengths(a: number, b: number): RangeError {
  return new RangeError(
    `Cannot stack mel features of clips of different lengths (${a} and ${b} samples) without targetFrames: add fixed_length before mel, or set targetFrames`,
  );
}

/**
 * Power spectrogram of one clip on the CPU (fft.js, float64 arithmetic),
 * `[frames, nFft / 2 + 1]` row-major.
 *
 * @param wave The samples.
 * @param options STFT options (`nFft`, `winLength`, `hopLength`).
 */
export function powerSpectrogram(
  wave: Float32Array,
  options: Pick<MelOptions, "nFft" | "winLength" | "hopLength">,
): Float32Array {
  const { nFft, hopLength } = options;
  checkLength(wave.length, nFft);
  const window = paddedHann(options.winLength, nFft);
  const frames = frameCount(wave.length, hopLength);
  const nBins = nFft / 2 + 1;
  const fft = new FFT(nFft);
  const frame = new Float64Array(nFft);
  const spectrum = fft.createComplexArray() as number[];
  const out = new Float32Array(frames * nBins);
  const pad = nFft / 2;
  const lo = Math.floor((nFft - options.winLength) / 2);
  const hi = lo + options.winLength;
  for (let t = 0; t < frames; t++) {
    const start = t * hopLength - pad;
    frame.fill(0);
    for (let j = lo; j < hi; j++) {
      frame[j] = wave[reflect(start + j, wave.length)] * window[j];
    }
    fft.realTransform(spectrum, frame);
    for (let k = 0; k < nBins; k++) {
      const re = spectrum[2 * k];
      const im = spectrum[2 * k + 1];
      out[t * nBins + k] = re * re + im * im;
    }
  }
  return out;
}

/** One mel filter's nonzero span: bins `start … start + weights.length − 1`. */
export interface FilterSpan {
  readonly start: number;
  readonly weights: Float32Array;
}

/** The nonzero span of every filter of a `[nBins, nMels]` filterbank. */
export function filterSpans(
  fb: Float32Array,
  nBins: number,
  nMels: number,
): FilterSpan[] {
  const spans: FilterSpan[] = [];
  for (let m = 0; m < nMels; m++) {
    let lo = -1;
    let hi = -1;
    for (let k = 0; k < nBins; k++) {
      if (fb[k * nMels + m] !== 0) {
        if (lo < 0) lo = k;
        hi = k;
      }
    }
    const weights = lo < 0
      ? new Float32Array(0)
      : new Float32Array(hi - lo + 1);
    for (let k = lo; lo >= 0 && k <= hi; k++) {
      weights[k - lo] = fb[k * nMels + m];
    }
    spans.push({ start: Math.max(0, lo), weights });
  }
  return spans;
}

const spansCache = new Map<string, FilterSpan[]>();

/**
 * Mel power of one clip on the CPU, `[frames, nMels]` row-major: the power
 * spectrogram (fft.js) projected on the filterbank using only each filter's
 * nonzero bins (a few per filter), in float64.
 *
 * @param wave The samples.
 * @param options Mel options.
 */
export function melPower(
  wave: Float32Array,
  options: MelOptions,
): Float32Array {
  const key = JSON.stringify([
    options.sampleRateHz,
    options.nFft,
    options.nMels,
    options.fMinHz,
    options.fMaxHz,
  ]);
  const nBins = options.nFft / 2 + 1;
  let spans = spansCache.get(key);
  if (!spans) {
    spans = filterSpans(melFilterbank(options), nBins, options.nMels);
    spansCache.set(key, spans);
  }
  const power = powerSpectrogram(wave, options);
  const frames = power.length / nBins;
  const out = new Float32Array(frames * options.nMels);
  for (let t = 0; t < frames; t++) {
    const row = t * nBins;
    for (let m = 0; m < options.nMels; m++) {
      const { start, weights } = spans[m];
      let s = 0;
      for (let j = 0; j < weights.length; j++) {
        s += power[row + start + j] * weights[j];
      }
      out[t * options.nMels + m] = s;
    }
  }
  return out;
}

/** Cached per-options constants (filterbank, DFT basis, frame indices) as tensors. */
interface Constants {
  fb: Tensor2D;
  basis?: Tensor2D;
}

const constantsCache = new WeakMap<Tf, Map<string, Constants>>();

function constants(
  tf: Tf,
  options: MelOptions,
  withBasis: boolean,
): Constants | undefined {
  if (!withBasis) return undefined;
  const key = JSON.stringify([
    options.sampleRateHz,
    options.nFft,
    options.winLength,
    options.nMels,
    options.fMinHz,
    options.fMaxHz,
    withBasis,
    tf.getBackend(),
  ]);
  let byKey = constantsCache.get(tf);
  if (!byKey) constantsCache.set(tf, byKey = new Map());
  const hit = byKey.get(key);
  if (hit && !hit.fb.isDisposed) return hit;
  const nBins = options.nFft / 2 + 1;
  const made: Constants = {
    fb: tf.keep(tf.tensor2d(melFilterbank(options), [nBins, options.nMels])),
  };
  if (withBasis) {
    // Window·cos and −window·sin over the window's support only (the rest is zero).
    const lo = Math.floor((options.nFft - options.winLength) / 2);
    const window = paddedHann(options.winLength, options.nFft);
    const basis = new Float32Array(options.winLength * 2 * nBins);
    for (let j = 0; j < options.winLength; j++) {
      const n = lo + j;
      for (let k = 0; k < nBins; k++) {
        const angle = (2 * Math.PI * ((k * n) % options.nFft)) / options.nFft;
        basis[j * 2 * nBins + k] = window[n] * Math.cos(angle);
        basis[j * 2 * nBins + nBins + k] = -window[n] * Math.sin(angle);
      }
    }
    made.basis = tf.keep(tf.tensor2d(basis, [options.winLength, 2 * nBins]));
  }
  byKey.set(key, made);
  return made;
}

/**
 * Power spectrograms of equal-length clips on the backend (matmul with a DFT
 * basis), `[b, frames, nFft / 2 + 1]`.
 */
function powerOnBackend(
  tf: Tf,
  waves: readonly Float32Array[],
  options: MelOptions,
  basis: Tensor2D,
): Tensor3D {
  const { nFft, hopLength, winLength } = options;
  const b = waves.length;
  const length = waves[0].length;
  checkLength(length, nFft);
  const frames = frameCount(length, hopLength);
  const nBins = nFft / 2 + 1;
  const lo = Math.floor((nFft - winLength) / 2);
  const flat = new Float32Array(b * length);
  waves.forEach((w, i) => flat.set(w, i * length));
  const x = tf.tensor2d(flat, [b, length]);
  const padded = tf.mirrorPad(x, [[0, 0], [nFft / 2, nFft / 2]], "reflect");
  // Frame t covers padded[t·hop + lo + j], j < winLength.
  const idx = new Int32Array(frames * winLength);
  for (let t = 0; t < frames; t++) {
    for (let j = 0; j < winLength; j++) {
      idx[t * winLength + j] = t * hopLength + lo + j;
    }
  }
  const framed = tf.gather(padded, tf.tensor1d(idx, "int32"), 1); // [b, frames·win]
  const spec = tf.matMul(framed.reshape([b * frames, winLength]), basis); // [b·frames, 2·nBins]
  const re = spec.slice([0, 0], [-1, nBins]);
  const im = spec.slice([0, nBins], [-1, nBins]);
  return re.square().add(im.square()).reshape([b, frames, nBins]) as Tensor3D;
}

/**
 * Bytes of the largest tensor the matmul STFT makes per clip of `samples`
 * samples: the spectrum (`frames · 2·nBins`), the gathered frames
 * (`frames · winLength`) or the padded signal, whichever is largest.
 */
export function stftBytesPerClip(samples: number, options: MelOptions): number {
  const frames = frameCount(samples, options.hopLength);
  const nBins = options.nFft / 2 + 1;
  return 4 * Math.max(
    frames * 2 * nBins,
    frames * options.winLength,
    samples + options.nFft,
  );
}

/**
 * Log-mel features of a batch, `[b, nMels, frames]` (frames = `targetFrames`
 * when given). Clips may differ in length when `targetFrames` is set: each
 * length is computed as its own group and padded or cropped to the target.
 * Must run inside `tf.tidy` (or dispose the result's intermediates yourself).
 *
 * @param tf TensorFlow.js on the chosen backend.
 * @param waves Mono clips.
 * @param options Mel options.
 * @param method `fft` (CPU, fft.js) or `matmul` (on the backend).
 * @param chunkBytes Largest tensor of one matmul-STFT chunk, in bytes
 *   (default: the smaller of {@linkcode MEL_CHUNK_BYTES} and the device's
 *   largest binding).
 * @throws RangeError when one clip's STFT alone exceeds `chunkBytes`.
 */
export function melFeatures(
  tf: Tf,
  waves: readonly Float32Array[],
  options: MelOptions,
  method: StftMethod,
  chunkBytes: number = Math.min(MEL_CHUNK_BYTES, largestTensorBytes(tf)),
): Tensor3D {
  if (waves.length === 0) {
    throw new RangeError("Cannot compute mel features of an empty batch");
  }
  const c = constants(tf, options, method === "matmul");
  const topDb = options.topDb ?? 80;
  const divisor = options.scaleDivisor ?? 40;
  const nBins = options.nFft / 2 + 1;
  // Group clips by length (usually one group: fixed-length clips).
  const groups = new Map<number, number[]>();
  waves.forEach((w, i) => {
    if (!groups.has(w.length)) groups.set(w.length, []);
    groups.get(w.length)!.push(i);
  });
  if (groups.size > 1 && options.targetFrames === undefined) {
    const [a, b] = [...groups.keys()];
    throw unequalLengths(a, b);
  }
  const parts: Tensor3D[] = [];
  const order: number[] = [];
  for (const [length, members] of groups) {
    const frames = frameCount(length, options.hopLength);
    let mel: Tensor;
    if (method === "matmul") {
      const size = itemsPerChunk(
        stftBytesPerClip(length, options),
        chunkBytes,
        `${length}-sample clip's STFT`,
      );
      // Each chunk in its own tidy: only its mel power outlives it.
      const chunks = chunkRanges(members.length, size).map(([a, b]) =>
        tf.tidy(() => {
          const power = powerOnBackend(
            tf,
            members.slice(a, b).map((i) => waves[i]),
            options,
            c!.basis!,
          );
          return tf.matMul(power.reshape([(b - a) * frames, nBins]), c!.fb)
            .reshape([b - a, frames, options.nMels]) as Tensor3D;
        })
      );
      mel = chunks.length === 1 ? chunks[0] : tf.concat(chunks, 0);
    } else {
      const flat = new Float32Array(members.length * frames * options.nMels);
      members.forEach((i, g) =>
        flat.set(melPower(waves[i], options), g * frames * options.nMels)
      );
      mel = tf.tensor3d(flat, [members.length, frames, options.nMels]);
    }
    const db = tf.mul(tf.log(tf.maximum(mel, 1e-10)), 10 / Math.LN10);
    const peak = tf.max(db, [1, 2], true);
    const scaled = tf.div(tf.maximum(db, tf.sub(peak, topDb)), divisor);
    let feats = tf.transpose(scaled, [0, 2, 1]) as Tensor3D; // [g, nMels, frames]
    const target = options.targetFrames ?? frames;
    if (target > frames) {
      feats = tf.pad(feats, [[0, 0], [0, 0], [0, target - frames]], 0);
    } else if (target < frames) {
      feats = tf.slice(feats, [0, 0, 0], [-1, -1, target]);
    }
    parts.push(feats);
    order.push(...members);
  }
  const stacked = parts.length === 1 ? parts[0] : tf.concat(parts, 0);
  if (groups.size === 1) return stacked;
  // Restore the input order.
  const inverse = new Int32Array(order.length);
  order.forEach((src, pos) => inverse[src] = pos);
  return tf.gather(stacked, tf.tensor1d(inverse, "int32"), 0) as Tensor3D;
}
