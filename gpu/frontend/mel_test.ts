/**
 * Tests of the GPU log-mel kernels (`mel.ts`): the torchaudio fixtures, a
 * batch of rows of different lengths against `lib/mel.ts` `melFeatures` on
 * the cpu backend, the tables against `melFilterbank`/`paddedHann`, and the
 * refusals.
 *
 * @module
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import {
  dbClampPlan,
  dbClampWorkgroups,
  fromOrderedBits,
  melFrontEndPlan,
  melTables,
  orderedBits,
  stftMelFits,
  stftMelPlan,
  stftMelThreads,
  stftMelWorkgroupBytes,
  stftMelWorkgroups,
} from "./mel.ts";
import {
  frameCount,
  melFeatures,
  melFilterbank,
  type MelOptions,
  paddedHann,
} from "../../lib/mel.ts";
import { readWav } from "../../lib/wav.ts";
import {
  loadMelCases,
  melOptionsOf,
  readMelBlob,
} from "../../lib/mel_fixture.ts";
import { selectBackend } from "../../pipeline/backend.ts";
import type { Runtime } from "../runtime.ts";
import {
  asInt32,
  gpuTest,
  maxAbsDiff,
  randomArray,
  runPlan,
} from "../testing.ts";

const FIXTURES = new URL(
  "../../../shared/fixtures/reference/",
  import.meta.url,
);

const cases = await loadMelCases(FIXTURES);

/** llvmpipe's `maxComputeWorkgroupStorageSize` (the smallest we meet). */
const LLVMPIPE_WORKGROUP_BYTES = 32 * 1024;

/**
 * Runs melFrontEndPlan (stftMelPlan, dbClampPlan) on a batch laid out at `rowStride`;
 * returns the features `[rows][frames][nMels]` and the peaks after the clamp.
 */
async function gpuMel(
  rt: Runtime,
  waves: readonly Float32Array[],
  options: MelOptions & { targetFrames: number },
  withPeaks = false,
): Promise<
  { out: Float32Array; peakBefore: Uint32Array; peakAfter: Uint32Array }
> {
  const rows = waves.length;
  const rowStride = Math.max(...waves.map((w) => w.length));
  const wave = new Float32Array(rows * rowStride);
  waves.forEach((w, r) => wave.set(w, r * rowStride));
  const lengths = Uint32Array.from(waves, (w) => w.length);
  const frames = options.targetFrames;
  const gridFrames = Math.max(
    ...waves.map((w) => frameCount(w.length, options.hopLength)),
  );
  const o = {
    ...options,
    frames,
    rowStride,
    rows,
    gridFrames,
    workgroupStorageBytes: LLVMPIPE_WORKGROUP_BYTES,
    topDb: options.topDb ?? 80,
    scaleDivisor: options.scaleDivisor ?? 40,
  };
  const stft = stftMelPlan(o);
  const both = melFrontEndPlan(o);
  assert.deepEqual(both.steps.slice(0, 1), stft.steps);
  const tables = melTables(options);
  // "out" starts as NaN: every element must be written by the two plans.
  const out0 = new Float32Array(rows * frames * options.nMels).fill(NaN);
  const inputs = {
    wave,
    lengths,
    ...tables,
    peak: new Uint32Array(rows),
    out: out0,
  };
  // With peaks: first the STFT alone (its peaks), then both plans in one run.
  const first = withPeaks
    ? await runPlan(rt, stft, inputs, ["peak"])
    : { peak: new Float32Array(rows) };
  const res = await runPlan(rt, both, inputs, ["out", "peak"]);
  if (withPeaks) {
    // Replayed on the same buffers (the next batch), the plan gives the same.
    const twice = { steps: [...both.steps, ...both.steps] };
    const again = await runPlan(rt, twice, inputs, ["out", "peak"]);
    assert.deepEqual(again.out, res.out);
    assert.deepEqual(again.peak, res.peak);
  }
  return {
    out: res.out,
    peakBefore: new Uint32Array(asInt32(first.peak).buffer),
    peakAfter: new Uint32Array(asInt32(res.peak).buffer),
  };
}

/** `[b][nMels][frames]` → `[b][frames][nMels]`. */
function transpose(
  a: ArrayLike<number>,
  b: number,
  nMels: number,
  frames: number,
): Float32Array {
  const out = new Float32Array(a.length);
  for (let r = 0; r < b; r++) {
    for (let m = 0; m < nMels; m++) {
      for (let t = 0; t < frames; t++) {
        out[(r * frames + t) * nMels + m] = a[(r * nMels + m) * frames + t];
      }
    }
  }
  return out;
}

Deno.test("melTables: window, twiddles and the sparse filterbank of lib/mel.ts", () => {
  const options: MelOptions = {
    sampleRateHz: 16000,
    nFft: 1024,
    winLength: 400,
    hopLength: 155,
    nMels: 80,
  };
  const { window, twiddle, bands, weights } = melTables(options);
  assert.deepEqual(window, Float32Array.from(paddedHann(400, 1024)));
  assert.equal(twiddle.length, 1024);
  assert.deepEqual([twiddle[0], twiddle[1]], [1, -0]);
  assert.equal(twiddle[2 * 256], Math.fround(Math.cos(Math.PI / 2)));
  assert.equal(twiddle[2 * 256 + 1], -1);
  assert.equal(
    twiddle[2 * 100 + 1],
    Math.fround(-Math.sin((2 * Math.PI * 100) / 1024)),
  );
  // Rebuild the dense filterbank from the bands: equal to melFilterbank.
  const fb = melFilterbank(options);
  const dense = new Float32Array(fb.length);
  for (let m = 0; m < 80; m++) {
    const [start, count, off] = bands.slice(3 * m, 3 * m + 3);
    assert.ok(count > 0, `band ${m} is empty`);
    for (let i = 0; i < count; i++) {
      dense[(start + i) * 80 + m] = weights[off + i];
    }
  }
  assert.deepEqual(dense, fb);
  assert.equal(bands[3 * 79 + 2] + bands[3 * 79 + 1], weights.length);
  // Many bands on few bins: some bands are empty (count 0), which is allowed.
  const tight = melTables({ ...options, nFft: 64, nMels: 40 });
  const counts = Array.from({ length: 40 }, (_, m) => tight.bands[3 * m + 1]);
  assert.ok(counts.includes(0), "expected an empty band");
  const fbTight = melFilterbank({ ...options, nFft: 64, nMels: 40 });
  for (let m = 0; m < 40; m++) {
    let s = 0;
    for (let k = 0; k < 33; k++) s += fbTight[k * 40 + m];
    assert.equal(counts[m] === 0, s === 0);
  }
});

Deno.test("orderedBits keeps the order of floats and round-trips", () => {
  const xs = [-1e30, -100, -80.5, -1, -1e-20, -0, 0, 1e-20, 3, 99.75, 1e30]
    .map(Math.fround);
  const us = xs.map(orderedBits);
  for (let i = 1; i < us.length; i++) assert.ok(us[i - 1] <= us[i]);
  assert.ok(us.every((u) => u > 0), "0 (the reset value) is below every float");
  for (const x of xs) assert.equal(fromOrderedBits(orderedBits(x)), x);
});

Deno.test("stftMelPlan refuses sizes the fused front end cannot run", () => {
  const ok = {
    nFft: 1024,
    winLength: 400,
    hopLength: 155,
    nMels: 80,
    frames: 104,
    rowStride: 16000,
    workgroupStorageBytes: 48 * 1024,
  };
  assert.equal(stftMelPlan(ok).steps.length, 1);
  assert.ok(stftMelFits(ok));
  assert.ok(!stftMelFits({ ...ok, nFft: 1000 }));
  assert.throws(
    () => stftMelPlan({ ...ok, nFft: 1000 }),
    /^RangeError: Cannot build kernel: the fused mel front end cannot run: nFft 1000 is not a power of two ≥ 4; compute mel on tfjs instead$/,
  );
  const bytes = stftMelWorkgroupBytes(8192);
  assert.equal(bytes, 4 * (2 * (4096 + 128) + 4096 + 2 + 256));
  assert.ok(!stftMelFits({ nFft: 8192, workgroupStorageBytes: 48 * 1024 }));
  assert.ok(stftMelFits({ nFft: 2048, workgroupStorageBytes: 32 * 1024 }));
  assert.throws(
    () => stftMelPlan({ ...ok, nFft: 8192, winLength: 8000 }),
    new RegExp(
      `the fused mel front end cannot run: nFft 8192 needs ${bytes} bytes of workgroup memory, over the device's maxComputeWorkgroupStorageSize of 49152`,
    ),
  );
  assert.throws(
    () => stftMelPlan({ ...ok, winLength: 2000 }),
    /Cannot build kernel: winLength 2000 exceeds nFft 1024/,
  );
  assert.throws(
    () => stftMelWorkgroups(70000, 4),
    /Cannot build kernel: stftMel grid of 70000 frames × 4 rows exceeds 65,535/,
  );
  assert.throws(
    () =>
      dbClampPlan({
        frames: 10,
        nMels: 8,
        topDb: 80,
        scaleDivisor: 0,
        hopLength: 4,
      }),
    /Cannot build kernel: dbClamp scaleDivisor must be a finite number > 0, got 0/,
  );
});

Deno.test("stftMelPlan and dbClampPlan: rows change only the grid, not the WGSL", () => {
  const o = {
    nFft: 256,
    winLength: 200,
    hopLength: 64,
    nMels: 20,
    frames: 16,
    rowStride: 1300,
    workgroupStorageBytes: 32 * 1024,
  };
  const a = stftMelPlan({ ...o, rows: 1 }).steps[0];
  const b = stftMelPlan({ ...o, rows: 128, gridFrames: 21 }).steps[0];
  assert.equal(a.spec.code, b.spec.code);
  assert.match(a.spec.code, /@workgroup_size\(64\)/);
  assert.deepEqual([256, 1024, 2048, 8192].map(stftMelThreads), [
    64,
    128,
    256,
    256,
  ]);
  assert.deepEqual(b.spec.workgroups, [21, 128, 1]);
  assert.deepEqual(b.bind, [
    "wave",
    "lengths",
    "window",
    "twiddle",
    "bands",
    "weights",
    "peak",
    "out",
  ]);
  const c = {
    frames: 16,
    nMels: 20,
    topDb: 80,
    scaleDivisor: 40,
    hopLength: 64,
  };
  const p1 = dbClampPlan(c);
  const p2 = dbClampPlan({ ...c, rows: 9 });
  assert.deepEqual(
    p1.steps.map((s) => s.spec.code),
    p2.steps.map((s) => s.spec.code),
  );
  assert.deepEqual(p2.steps[0].spec.workgroups, dbClampWorkgroups(c, 9));
  assert.deepEqual(p2.steps[0].spec.workgroups, [2, 9, 1]);
  assert.deepEqual(p2.steps[1].spec.workgroups, [1, 9, 1]);
});

// (b) Rows of different lengths: padding (row 0), cropping (row 2), against
// melFeatures on the cpu backend (fft.js in float64).
gpuTest(
  "stftMel + dbClamp: rows of different lengths, padded and cropped, match melFeatures (cpu)",
  async (rt) => {
    const rate = 8000;
    const options = {
      sampleRateHz: rate,
      nFft: 256,
      winLength: 200,
      hopLength: 64,
      nMels: 20,
      targetFrames: 16,
    };
    // Tones plus noise, lengths → 11, 16, 21 frames. Row 2 is near silence
    // (−100 dB) until sample 1000 and loud after: its peak lies in frames
    // 16…20, which the output crops, and its quiet frames sit on the clamp
    // floor peak − 80 dB, so a peak taken over the kept frames only would fail.
    const waves = [700, 1000, 1300].map((n, r) => {
      const noise = randomArray(n, 7 + r, 0.05);
      return Float32Array.from(noise, (x, i) => {
        const gain = r === 2 && i < 1000 ? 1e-4 : 1;
        return gain *
          (x + 0.5 * Math.sin((2 * Math.PI * (300 + 700 * r) * i) / rate));
      });
    });
    await selectBackend("cpu");
    const ref = tf.tidy(() => melFeatures(tf, waves, options, "fft"));
    const want = transpose(await ref.data(), 3, 20, 16);
    ref.dispose();
    const got = await gpuMel(rt, waves, options, true);
    const err = maxAbsDiff(got.out, want);
    // llvmpipe: 3e-7.
    assert.ok(err <= 1e-5, `max abs error ${err}`);
    // Row 0 has 11 frames: the rest is exactly the 0.0 padding.
    assert.ok(got.out.slice(11 * 20, 16 * 20).every((v) => v === 0));
    assert.ok(got.out.slice(0, 11 * 20).some((v) => v !== 0));
    // Peaks were set by the STFT and reset by the clamp.
    assert.ok(got.peakBefore.every((u) => u > 0x80000000));
    assert.deepEqual([...got.peakAfter], [0, 0, 0]);
    // Row 2's peak comes from its cropped frames: above every kept value, and
    // its first frames sit on the floor (peak − 80 dB) / 40.
    const peak2 = fromOrderedBits(got.peakBefore[2]);
    const row2 = got.out.slice(2 * 16 * 20, 3 * 16 * 20);
    assert.ok(Math.max(...row2) * 40 < peak2 - 1, `peak ${peak2}`);
    assert.ok(Math.abs(row2[0] - (peak2 - 80) / 40) < 1e-5);
  },
);

// More bands than 128 (one thread per band) on few bins (some bands empty).
gpuTest(
  "stftMel + dbClamp: 160 bands on 129 bins, empty bands included, match melFeatures (cpu)",
  async (rt) => {
    const options = {
      sampleRateHz: 8000,
      nFft: 256,
      winLength: 256,
      hopLength: 100,
      nMels: 160,
      targetFrames: 9,
    };
    const tables = melTables(options);
    assert.ok(
      tables.bands.some((_, i) => i % 3 === 1 && tables.bands[i] === 0),
    );
    const waves = [randomArray(900, 3, 0.3)];
    await selectBackend("cpu");
    const ref = tf.tidy(() => melFeatures(tf, waves, options, "fft"));
    const want = transpose(await ref.data(), 1, 160, 9);
    ref.dispose();
    const got = await gpuMel(rt, waves, options);
    const err = maxAbsDiff(got.out, want);
    assert.ok(err <= 1e-5, `max abs error ${err}`);
  },
);

// (a) The torchaudio fixtures (each fits llvmpipe's 32 KiB of workgroup memory).
for (const [name, c] of Object.entries(cases)) {
  gpuTest(`stftMel + dbClamp parity with torchaudio: ${name}`, async (rt) => {
    assert.ok(
      stftMelFits({
        nFft: c.n_fft,
        workgroupStorageBytes: LLVMPIPE_WORKGROUP_BYTES,
      }),
    );
    const wav = await readWav(new URL(c.wav, FIXTURES).pathname);
    const got = await gpuMel(rt, [wav.channels[0]], melOptionsOf(c));
    const ref = await readMelBlob(FIXTURES, `${name}.feature.f32`);
    const want = transpose(ref, 1, c.n_mels, c.target_frames);
    const err = maxAbsDiff(got.out, want);
    // llvmpipe: 6e-6 (1 s clips) to 1.7e-5 (cs_44k_10s).
    assert.ok(err <= 2e-3, `feature max abs error ${err}`);
  });
}
