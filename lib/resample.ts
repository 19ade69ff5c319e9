/**
 * Band-limited resampling of a mono clip (Hann-windowed sinc interpolation),
 * used by `deno task predict --resample`; AMAuT itself never resamples.
 *
 * @module
 */

/** Zero crossings of the sinc kernel on each side. */
const SINC_ZEROS = 16;

/**
 * Resamples a clip from `fromHz` to `toHz` by band-limited interpolation: each
 * output sample is the input convolved with a Hann-windowed sinc of
 * {@linkcode SINC_ZEROS} zero crossings each side, whose cut-off is the lower
 * of the two Nyquist frequencies (so downsampling is anti-aliased). The output
 * has `round(length · toHz / fromHz)` samples; samples beyond the ends count
 * as zero.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { resample } from "./resample.ts";
 * assert.equal(resample(new Float32Array(16000), 16000, 8000).length, 8000);
 * ```
 */
export function resample(
  wave: Float32Array,
  fromHz: number,
  toHz: number,
): Float32Array {
  if (fromHz === toHz) return wave;
  const ratio = toHz / fromHz;
  const cutoff = Math.min(1, ratio); // relative to the input's Nyquist
  const radius = SINC_ZEROS / cutoff; // in input samples
  const out = new Float32Array(Math.round(wave.length * ratio));
  for (let i = 0; i < out.length; i++) {
    const t = i / ratio;
    const lo = Math.max(0, Math.ceil(t - radius));
    const hi = Math.min(wave.length - 1, Math.floor(t + radius));
    let s = 0;
    for (let j = lo; j <= hi; j++) {
      const d = t - j;
      const x = Math.PI * cutoff * d;
      const sinc = x === 0 ? 1 : Math.sin(x) / x;
      const window = 0.5 + 0.5 * Math.cos((Math.PI * d) / radius);
      s += wave[j] * cutoff * sinc * window;
    }
    out[i] = s;
  }
  return out;
}
