import assert from "node:assert/strict";
import type { LoadedModel } from "../lib/inference.ts";
import { checkRate, wavToMono } from "./classify.ts";

/** A stand-in with only what the rate check reads. */
const model = { sampleRateHz: 22050 } as unknown as LoadedModel;

/** A 16-bit PCM WAV of `channels` channels of `frames` zero samples. */
function wav(rateHz: number, channels: number, frames: number): Uint8Array {
  const data = channels * frames * 2;
  const b = new DataView(new ArrayBuffer(44 + data));
  const text = (at: number, s: string) =>
    [...s].forEach((c, i) => b.setUint8(at + i, c.charCodeAt(0)));
  text(0, "RIFF");
  b.setUint32(4, 36 + data, true);
  text(8, "WAVE");
  text(12, "fmt ");
  b.setUint32(16, 16, true);
  b.setUint16(20, 1, true);
  b.setUint16(22, channels, true);
  b.setUint32(24, rateHz, true);
  b.setUint32(28, rateHz * channels * 2, true);
  b.setUint16(32, channels * 2, true);
  b.setUint16(34, 16, true);
  text(36, "data");
  b.setUint32(40, data, true);
  return new Uint8Array(b.buffer);
}

Deno.test("checkRate refuses another rate, naming both", () => {
  checkRate(22050, model, "x");
  assert.throws(
    () => checkRate(48000, model, "the recording"),
    /Cannot classify the recording: it is 48000 Hz and the model expects 22050 Hz/,
  );
});

Deno.test("wavToMono decodes, checks the rate and mixes to mono", () => {
  const mono = wavToMono(wav(22050, 2, 100), "a.wav", model);
  assert.equal(mono.length, 100);
  assert.throws(
    () => wavToMono(wav(16000, 1, 100), "b.wav", model),
    /"b.wav": it is 16000 Hz and the model expects 22050 Hz/,
  );
});
