import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import type { Tensor } from "@tensorflow/tfjs";
import { readWav } from "./wav.ts";
import {
  frameCount,
  hzToMelSlaney,
  melFeatures,
  melFilterbank,
  melToHzSlaney,
  paddedHann,
  powerSpectrogram,
  stftBytesPerClip,
} from "./mel.ts";
import type { MelOptions, StftMethod } from "./mel.ts";
import {
  largestTensorBytes,
  probeAdapter,
  selectBackend,
} from "../pipeline/backend.ts";
import { gpuTests } from "../gpu/testing.ts";
import { loadMelCases, melOptionsOf, readMelBlob } from "./mel_fixture.ts";

const FIXTURES = new URL("../../shared/fixtures/reference/", import.meta.url);

const cases = await loadMelCases(FIXTURES);
const blob = (file: string) => readMelBlob(FIXTURES, file);

/** Largest |a − b|. */
function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Largest relative error where the reference exceeds `floor` of its maximum. */
function maxRel(
  got: ArrayLike<number>,
  ref: ArrayLike<number>,
  floor: number,
): number {
  let peak = 0;
  for (let i = 0; i < ref.length; i++) peak = Math.max(peak, ref[i]);
  let m = 0;
  for (let i = 0; i < ref.length; i++) {
    if (ref[i] > floor * peak) {
      m = Math.max(m, Math.abs(got[i] - ref[i]) / ref[i]);
    }
  }
  return m;
}

Deno.test("Slaney mel scale: linear below 1 kHz (15 mel at 1 kHz), logarithmic above, invertible", () => {
  assert.ok(Math.abs(hzToMelSlaney(1000) - 15) < 1e-12);
  assert.ok(Math.abs(hzToMelSlaney(500) - 7.5) < 1e-12);
  for (const hz of [0, 100, 999, 1000, 4000, 22050]) {
    assert.ok(
      Math.abs(melToHzSlaney(hzToMelSlaney(hz)) - hz) < 1e-9 * Math.max(1, hz),
    );
  }
});

Deno.test("paddedHann is periodic and centred in nFft", () => {
  const w = paddedHann(400, 1024);
  assert.equal(w[311], 0);
  assert.equal(w[312], 0); // periodic Hann starts at 0
  assert.ok(Math.abs(w[512] - 1) < 1e-12); // n = 200 of 400: the peak
  assert.equal(w[712], 0);
  assert.equal(frameCount(16000, 155), 104);
});

for (const [name, c] of Object.entries(cases)) {
  Deno.test(`mel parity with torchaudio: ${name} filterbank, power and features (cpu, fft)`, async () => {
    const options = melOptionsOf(c);
    const fb = melFilterbank(options);
    assert.ok(
      maxAbs(fb, await blob(`${name}.fbank.f32`)) <= 2e-5,
      "filterbank",
    );
    const wav = await readWav(new URL(c.wav, FIXTURES).pathname);
    assert.equal(wav.sampleRateHz, c.sample_rate);
    assert.equal(wav.channels[0].length, c.samples);
    // Power: the reference stores mel power [n_mels, frames] before dB.
    const power = powerSpectrogram(wav.channels[0], options);
    const frames = frameCount(c.samples, c.hop_length);
    assert.equal(frames, c.power_shape[1]);
    const nBins = c.n_fft / 2 + 1;
    const melPower = new Float64Array(c.n_mels * frames);
    for (let t = 0; t < frames; t++) {
      for (let m = 0; m < c.n_mels; m++) {
        let s = 0;
        for (let k = 0; k < nBins; k++) {
          s += power[t * nBins + k] * fb[k * c.n_mels + m];
        }
        melPower[m * frames + t] = s;
      }
    }
    const rel = maxRel(melPower, await blob(`${name}.power.f32`), 1e-6);
    assert.ok(rel <= 1e-3, `power relative error ${rel}`);
    await selectBackend("cpu");
    const feats = tf.tidy(() =>
      melFeatures(tf, [wav.channels[0]], options, "fft")
    );
    assert.deepEqual(feats.shape, [1, ...c.feature_shape]);
    const err = maxAbs(await feats.data(), await blob(`${name}.feature.f32`));
    feats.dispose();
    assert.ok(err <= 2e-3, `feature max abs error ${err}`);
  });
}

const gpu = await probeAdapter();
for (const name of ["sc_16k_1s", "am_48k_1s"]) {
  Deno.test({
    name: `mel parity on WebGPU (matmul STFT): ${name}`,
    ignore: gpu === undefined,
    async fn() {
      const c = cases[name];
      const wav = await readWav(new URL(c.wav, FIXTURES).pathname);
      await selectBackend("webgpu");
      try {
        const feats = tf.tidy(() =>
          melFeatures(tf, [wav.channels[0]], melOptionsOf(c), "matmul")
        );
        const err = maxAbs(
          await feats.data(),
          await blob(`${name}.feature.f32`),
        );
        feats.dispose();
        assert.ok(err <= 2e-3, `feature max abs error ${err}`);
      } finally {
        await selectBackend("cpu");
      }
    },
  });
}

for (const method of ["fft", "matmul"] as StftMethod[]) {
  Deno.test(`melFeatures (${method}) batches clips of any length, padding or cropping to targetFrames`, async () => {
    await selectBackend("cpu");
    const rate = 8000;
    const tone = (n: number, f: number) =>
      Float32Array.from(
        { length: n },
        (_, i) => 0.5 * Math.sin((2 * Math.PI * f * i) / rate),
      );
    const options: MelOptions = {
      sampleRateHz: rate,
      nFft: 256,
      winLength: 200,
      hopLength: 80,
      nMels: 20,
      targetFrames: 30,
    };
    const waves = [tone(2000, 440), tone(3000, 1000), tone(2000, 2000)];
    const batch = tf.tidy(() => melFeatures(tf, waves, options, method));
    assert.deepEqual(batch.shape, [3, 20, 30]);
    const one = tf.tidy(() => melFeatures(tf, [waves[1]], options, method));
    const rows = await batch.array();
    assert.ok(
      maxAbs(rows[1].flat(), (await one.array())[0].flat()) < 1e-5,
      "order kept across length groups",
    );
    // 2000 samples → 26 frames: frames 26..29 are the 0.0 padding.
    assert.deepEqual(
      rows[0].map((r) => r.slice(26)),
      rows[0].map(() => [0, 0, 0, 0]),
    );
    // 3000 samples → 38 frames, cropped to 30.
    assert.equal(rows[1][0].length, 30);
    // Each clip is scaled by its own maximum: the loudest cell is max/40, the floor max/40 − 2.
    const flat = rows[2].flat().slice();
    const hi = Math.max(...flat);
    const lo = Math.min(...rows[2].map((r) => r.slice(0, 26)).flat());
    assert.ok(Math.abs(hi - lo - 2) < 1e-5, `range ${hi - lo}`);
    batch.dispose();
    one.dispose();
    assert.throws(
      () =>
        tf.tidy(() =>
          melFeatures(
            tf,
            waves,
            { ...options, targetFrames: undefined },
            method,
          )
        ),
      /different lengths \(2000 and 3000 samples\)/,
    );
  });
}

/** Five 0.25 s clips of different tones at 8 kHz, with their mel options. */
function chunkCase() {
  const rate = 8000;
  const waves = [300, 700, 1100, 1900, 2600].map((f) =>
    Float32Array.from(
      { length: 2000 },
      (_, i) => 0.4 * Math.sin((2 * Math.PI * f * i) / rate),
    )
  );
  const options: MelOptions = {
    sampleRateHz: rate,
    nFft: 256,
    winLength: 200,
    hopLength: 80,
    nMels: 20,
  };
  return { waves, options };
}

/** Kernels run by `f` and the bytes of the largest tensor one of them wrote. */
async function kernelsOf(f: () => Tensor) {
  const prof = await tf.profile(() => tf.tidy(f));
  const bytes = (s: number[]) => 4 * s.reduce((a, b) => a * b, 1);
  const names = prof.kernels.map((k) => k.name);
  const largest = Math.max(
    ...prof.kernels.flatMap((k) =>
      k.outputShapes.map((s) => bytes(s as number[]))
    ),
  );
  tf.dispose(prof.result as Tensor);
  return {
    names,
    largest,
    matmuls: names.filter((n) => n === "BatchMatMul").length,
  };
}

Deno.test("melFeatures (matmul) in chunks equals one pass, and names a clip that cannot fit", async () => {
  await selectBackend("cpu");
  const { waves, options } = chunkCase();
  const perClip = stftBytesPerClip(2000, options);
  // 26 frames · 2 · 129 bins · 4 bytes: the spectrum is the largest tensor.
  assert.equal(perClip, 26 * 258 * 4);
  const whole = tf.tidy(() => melFeatures(tf, waves, options, "matmul"));
  assert.equal(
    (await kernelsOf(() => melFeatures(tf, waves, options, "matmul"))).largest,
    5 * perClip,
  );
  const before = tf.memory().numTensors;
  // Two clips per chunk: chunks of 2, 2 and 1, each an STFT and a filterbank matmul.
  const limit = 2 * perClip + 100;
  const chunked = tf.tidy(() =>
    melFeatures(tf, waves, options, "matmul", limit)
  );
  // Only the result outlives the call: each chunk's intermediates are freed.
  assert.equal(tf.memory().numTensors, before + 1);
  const run = await kernelsOf(() =>
    melFeatures(tf, waves, options, "matmul", limit)
  );
  assert.equal(run.matmuls, 6);
  assert.equal(run.largest, 2 * perClip);
  assert.deepEqual(chunked.shape, whole.shape);
  assert.ok(maxAbs(await chunked.data(), await whole.data()) < 1e-6);
  tf.dispose([whole, chunked]);
  assert.throws(
    () => tf.tidy(() => melFeatures(tf, waves, options, "matmul", perClip - 1)),
    /^RangeError: Cannot fit one 2000-sample clip's STFT \(26\.2 KiB\) in the GPU's 26\.2 KiB buffer limit/,
  );
});

Deno.test({
  name: "melFeatures on WebGPU chunks to a capped buffer limit and matches cpu",
  ignore: !gpuTests,
  async fn() {
    const { waves, options } = chunkCase();
    await selectBackend("cpu");
    const expected = tf.tidy(() => melFeatures(tf, waves, options, "fft"));
    const want = await expected.data();
    expected.dispose();
    // A cap of 60 KiB fits two clips' spectra (26.2 KiB each) per pass.
    const { backend } = await selectBackend("webgpu", {
      maxBufferBytes: 60 * 1024,
    });
    try {
      assert.deepEqual(backend.limits, {
        maxStorageBufferBindingSize: 60 * 1024,
        maxBufferSize: 60 * 1024,
      });
      assert.equal(largestTensorBytes(tf), 60 * 1024);
      const run = await kernelsOf(() =>
        melFeatures(tf, waves, options, "matmul")
      );
      assert.equal(run.matmuls, 6);
      assert.ok(run.largest <= 60 * 1024, `largest tensor ${run.largest} B`);
      const got = tf.tidy(() => melFeatures(tf, waves, options, "matmul"));
      const err = maxAbs(await got.data(), want);
      got.dispose();
      backend.checkErrors();
      assert.ok(err <= 2e-3, `max abs error ${err}`);
    } finally {
      await selectBackend("cpu");
    }
  },
});
