import assert from "node:assert/strict";
import { encodeWavPcm16 } from "./wav_encode.ts";
import { decodeWav } from "./wav.ts";

Deno.test("encodeWavPcm16 round-trips through the WAV reader within half a step", () => {
  const samples = new Float32Array(1000).map((_, i) => Math.sin(i / 7) * 0.9);
  const bytes = encodeWavPcm16(samples, 22050);
  const wav = decodeWav(bytes, "x.wav");
  assert.equal(wav.sampleRateHz, 22050);
  assert.equal(wav.channels.length, 1);
  assert.equal(wav.channels[0].length, 1000);
  for (let i = 0; i < samples.length; i++) {
    assert.ok(Math.abs(wav.channels[0][i] - samples[i]) <= 0.5 / 32768 + 1e-7);
  }
});

Deno.test("encodeWavPcm16 clips out-of-range samples and writes NaN as 0", () => {
  const wav = decodeWav(
    encodeWavPcm16([2, -2, 1, -1, NaN], 8000),
    "x.wav",
  );
  assert.deepEqual(Array.from(wav.channels[0]), [
    32767 / 32768,
    -1,
    32767 / 32768,
    -1,
    0,
  ]);
});

Deno.test("encodeWavPcm16 rejects a rate that is not a positive integer", () => {
  assert.throws(
    () => encodeWavPcm16([0], 44.1),
    /^RangeError: Cannot encode a WAV at 44.1 Hz: the rate must be a positive integer$/,
  );
});
