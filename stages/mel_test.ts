import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { selectBackend } from "../pipeline/backend.ts";
import type { Batch, MapContext } from "../pipeline/types.ts";
import { MelStageOptions, stage } from "./mel.ts";

const { backend } = await selectBackend("cpu");
const ctx = { tf, backend } as unknown as MapContext;
const tone = (n: number) =>
  Float32Array.from({ length: n }, (_, i) => Math.sin(i / 3));
const options = MelStageOptions.parse({
  sampleRateHz: 8000,
  nFft: 256,
  winLength: 200,
  hopLength: 80,
  nMels: 16,
});

Deno.test("mel stage gives [b, nMels, frames] features for a batch", () => {
  const batch: Batch = {
    size: 2,
    split: "train",
    phase: "fit",
    waveform: [tone(4000), tone(4000)],
    sampleRate: [8000, 8000],
  };
  const out = tf.tidy(() => {
    const o = stage.apply(batch, options, ctx);
    return o.features as tf.Tensor;
  });
  assert.deepEqual(out.shape, [2, 16, 51]);
  out.dispose();
});

Deno.test("mel stage refuses a clip at another sample rate, naming it", () => {
  const batch: Batch = {
    size: 1,
    split: "train",
    phase: "fit",
    waveform: [tone(4000)],
    sampleRate: [16000],
    path: ["x/y.wav"],
  };
  assert.throws(
    () => tf.tidy(() => stage.apply(batch, options, ctx).features as tf.Tensor),
    /"x\/y\.wav": it is 16000 Hz and the mel stage expects 8000 Hz/,
  );
});

Deno.test("mel options check window, band edges and FFT size with positions", () => {
  const issues = (o: Record<string, unknown>) => {
    const r = MelStageOptions.safeParse({
      sampleRateHz: 16000,
      nFft: 512,
      winLength: 400,
      hopLength: 160,
      nMels: 40,
      ...o,
    });
    return r.success
      ? []
      : r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
  };
  assert.deepEqual(issues({}), []);
  assert.deepEqual(issues({ winLength: 600 }), [
    "winLength: it must be <= nFft (512)",
  ]);
  assert.deepEqual(issues({ fMaxHz: 9000 }), [
    "fMaxHz: it must be <= sampleRateHz / 2 (8000)",
  ]);
  assert.deepEqual(issues({ nFft: 500, winLength: 400 }), [
    "nFft: it must be a power of two",
  ]);
  assert.deepEqual(issues({ fMinHz: 8000 }), [
    "fMinHz: it must be below fMaxHz (8000)",
  ]);
});
