/**
 * WAV writing: mono 16-bit PCM with the canonical 44-byte header, the format
 * the published datasets ship (Speech Commands, AudioMNIST, VocalSound,
 * CochlScene). Samples in [-1, 1] are stored as `round(v · 32768)` clamped to
 * the int16 range, so `lib/wav.ts` (torchaudio's `v / 32768`) reads back each
 * sample within half a quantisation step.
 *
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeWavPcm16 } from "./wav_encode.ts";
 * const bytes = encodeWavPcm16(new Float32Array([0, 0.5, -1]), 16000);
 * assert.equal(bytes.length, 44 + 3 * 2);
 * ```
 *
 * @module
 */

/**
 * Encodes mono samples as a 16-bit PCM WAV file.
 *
 * @param samples Samples in [-1, 1] (values outside are clipped).
 * @param sampleRateHz Sample rate in Hz (a positive integer).
 * @returns The file's bytes: 44-byte header, then `2 · samples.length` bytes.
 * @throws RangeError when the rate is not a positive integer or the data
 *   would exceed the 4 GiB a RIFF file can address.
 */
export function encodeWavPcm16(
  samples: ArrayLike<number>,
  sampleRateHz: number,
): Uint8Array {
  const pcm = new Int16Array(samples.length);
  for (let i = 0; i < samples.length; i++) {
    const v = Math.round(samples[i] * 32768);
    pcm[i] = Number.isNaN(v) ? 0 : Math.max(-32768, Math.min(32767, v));
  }
  return encodeWavInt16(pcm, sampleRateHz);
}

/**
 * Encodes mono int16 samples, stored as they are, as a 16-bit PCM WAV file.
 *
 * @param samples Int16 sample values (full scale ±32768).
 * @param sampleRateHz Sample rate in Hz (a positive integer).
 * @returns The file's bytes: 44-byte header, then `2 · samples.length` bytes.
 * @throws RangeError when the rate is not a positive integer or the data
 *   would exceed the 4 GiB a RIFF file can address.
 */
export function encodeWavInt16(
  samples: Int16Array,
  sampleRateHz: number,
): Uint8Array {
  if (!Number.isInteger(sampleRateHz) || sampleRateHz <= 0) {
    throw new RangeError(
      `Cannot encode a WAV at ${sampleRateHz} Hz: the rate must be a positive integer`,
    );
  }
  const dataBytes = samples.length * 2;
  if (36 + dataBytes > 0xffffffff) {
    throw new RangeError(
      `Cannot encode ${samples.length} samples in one WAV: RIFF sizes stop at 4 GiB`,
    );
  }
  const bytes = new Uint8Array(44 + dataBytes);
  const view = new DataView(bytes.buffer);
  const ascii = (at: number, s: string) => {
    for (let i = 0; i < s.length; i++) bytes[at + i] = s.charCodeAt(i);
  };
  ascii(0, "RIFF");
  view.setUint32(4, 36 + dataBytes, true);
  ascii(8, "WAVE");
  ascii(12, "fmt ");
  view.setUint32(16, 16, true); // fmt chunk size
  view.setUint16(20, 1, true); // PCM
  view.setUint16(22, 1, true); // mono
  view.setUint32(24, sampleRateHz, true);
  view.setUint32(28, sampleRateHz * 2, true); // byte rate
  view.setUint16(32, 2, true); // block align
  view.setUint16(34, 16, true); // bits per sample
  ascii(36, "data");
  view.setUint32(40, dataBytes, true);
  for (let i = 0; i < samples.length; i++) {
    view.setInt16(44 + 2 * i, samples[i], true);
  }
  return bytes;
}
