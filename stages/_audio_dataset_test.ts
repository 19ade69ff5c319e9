import assert from "node:assert/strict";
import { pcm16Of } from "../lib/pcm16.ts";
import { join } from "node:path";
import { createLogger } from "../pipeline/logger.ts";
import { encodeWav, toneInt16 } from "../tests/_fixtures.ts";
import {
  DataError,
  loadNoiseFolder,
  openAudioDataset,
} from "./_audio_dataset.ts";
import type { AudioDatasetOptions } from "./_audio_dataset.ts";
import type { DatasetIndex } from "./datasets/types.ts";

const OPTIONS: AudioDatasetOptions = {
  onBadFile: "fail",
  scanHeaders: true,
  workers: 0,
  cacheMegabytes: 0,
};

/** Writes files and returns an index with one clip per file (label = position % 2). */
async function tree(
  files: Record<string, Uint8Array>,
): Promise<{ dir: string; index: DatasetIndex }> {
  const dir = await Deno.makeTempDir({ prefix: "audio_dataset_test_" });
  const clips = [];
  let i = 0;
  for (const [name, bytes] of Object.entries(files)) {
    await Deno.writeFile(join(dir, name), bytes);
    clips.push({ path: join(dir, name), label: i++ % 2 });
  }
  return {
    dir,
    index: {
      classes: ["a", "b"],
      splits: { train: clips, test: clips.slice(0, 1) },
      info: { layout: "test" },
    },
  };
}

const lines: string[] = [];
const log = createLogger({ console: (l) => lines.push(l) });
const rate = 8000;
const int16 = (f = 440, n = 800) =>
  encodeWav([toneInt16(n, f, rate)], { sampleRateHz: rate });

Deno.test("openAudioDataset decodes stereo, 24-bit, float and extensible files to the same scale", async () => {
  const tone = toneInt16(400, 300, rate);
  const { index } = await tree({
    "mono16.wav": encodeWav([tone], { sampleRateHz: rate }),
    "stereo16.wav": encodeWav([tone, tone.map((v) => -v)], {
      sampleRateHz: rate,
    }),
    "mono24.wav": encodeWav([Array.from(tone, (v) => v * 256)], {
      sampleRateHz: rate,
      encoding: "pcm24",
    }),
    "float.wav": encodeWav([Array.from(tone, (v) => v / 32768)], {
      sampleRateHz: rate,
      encoding: "float32",
    }),
    "ext.wav": encodeWav([tone], { sampleRateHz: rate, extensible: true }),
  });
  const ds = await openAudioDataset("test data", index, OPTIONS, log);
  assert.deepEqual(ds.splits, { train: 5, test: 1 });
  assert.equal(ds.info.sampleRateHz, rate);
  const headers = ds.info.headers as {
    channels: number[];
    bitsPerSample: number[];
  };
  assert.deepEqual(headers.channels, [1, 2]);
  assert.deepEqual(headers.bitsPerSample, [16, 24, 32]);
  const expected = Float32Array.from(tone, (v) => v / 32768);
  for (let i = 0; i < 5; i++) {
    const ex = (await ds.example("train", i))!;
    const channels = ex.channels as Float32Array[];
    assert.deepEqual(channels[0], expected, `example ${i} (${ex.path})`);
    assert.equal(ex.sampleRate, rate);
    assert.equal(ex.label, i % 2);
  }
  const stereo = (await ds.example("train", 1))!.channels as Float32Array[];
  assert.equal(stereo.length, 2);
  assert.deepEqual(
    stereo[1],
    Float32Array.from(tone, (v) => (0 - v) / 32768 + 0),
  );
  assert.deepEqual(ds.labels!("train"), [0, 1, 0, 1, 0]);
  await ds.close?.();
});

Deno.test("openAudioDataset names every bad file before reading any audio (onBadFile fail)", async () => {
  const good = int16();
  const { dir, index } = await tree({
    "good.wav": good,
    "empty.wav": new Uint8Array(0),
    "text.wav": new TextEncoder().encode("not audio at all, just text"),
    "cut.wav": good.slice(0, good.length - 100),
  });
  const error = await openAudioDataset("test data", index, OPTIONS, log).then(
    () => undefined,
    (e) => e,
  );
  assert.ok(error instanceof DataError);
  assert.deepEqual(
    error.problems.map((p) => p.path),
    ["empty.wav", "text.wav", "cut.wav"].map((f) => join(dir, f)),
  );
  assert.match(error.problems[0].message, /the file is empty/);
  assert.match(error.problems[1].message, /not a RIFF\/WAVE file/);
  assert.match(error.problems[2].message, /truncated/);
  assert.match(error.message, /^Cannot open test data: 3 problems\n/);
  assert.match(error.message, /set `onBadFile: skip`/);
});

Deno.test("openAudioDataset skips and lists bad files with onBadFile skip", async () => {
  const { dir, index } = await tree({
    "a.wav": int16(),
    "bad.wav": new Uint8Array(10),
    "b.wav": int16(),
  });
  const ds = await openAudioDataset("test data", index, {
    ...OPTIONS,
    onBadFile: "skip",
  }, log);
  assert.deepEqual(ds.splits, { train: 2, test: 1 });
  assert.deepEqual(ds.skipped!().map((s) => s.path), [join(dir, "bad.wav")]);
  assert.deepEqual([
    (await ds.example("train", 0))!.path,
    (await ds.example("train", 1))!.path,
  ], [
    join(dir, "a.wav"),
    join(dir, "b.wav"),
  ]);
});

Deno.test("openAudioDataset refuses mixed sample rates, naming a file of each rate", async () => {
  const { dir, index } = await tree({
    "a.wav": int16(),
    "b.wav": int16(),
    "odd.wav": encodeWav([toneInt16(100, 440, 16000)], { sampleRateHz: 16000 }),
  });
  const error = await openAudioDataset("test data", index, OPTIONS, log).then(
    () => undefined,
    (e) => e,
  );
  assert.ok(error instanceof DataError);
  assert.equal(error.problems[0].path, join(dir, "odd.wav"));
  assert.match(
    error.problems[0].message,
    /8000 Hz in 2 files \(e\.g\. .*a\.wav\), 16000 Hz in 1 file/,
  );
  assert.match(error.problems[0].message, /never resamples/);
});

Deno.test("openAudioDataset without a header scan still refuses a second rate when decoding", async () => {
  const { index } = await tree({
    "a.wav": int16(),
    "odd.wav": encodeWav([toneInt16(100, 440, 16000)], { sampleRateHz: 16000 }),
  });
  const ds = await openAudioDataset("test data", index, {
    ...OPTIONS,
    scanHeaders: false,
  }, log);
  await ds.example("train", 0);
  await assert.rejects(
    ds.example("train", 1),
    /this file is 16000 Hz, earlier files 8000 Hz/,
  );
});

Deno.test("worker decoding gives the same samples as main-thread decoding; the cache is exact and keeps 16-bit integers", async () => {
  const { index } = await tree({
    "a.wav": int16(300),
    "b.wav": encodeWav(
      [Array.from(toneInt16(800, 500, rate), (v) => v * 256)],
      { sampleRateHz: rate, encoding: "pcm24" },
    ),
    "c.wav": int16(700),
  });
  const plain = await openAudioDataset("t", index, OPTIONS, log);
  const pooled = await openAudioDataset("t", index, {
    ...OPTIONS,
    workers: 2,
    cacheMegabytes: 1,
  }, log);
  try {
    for (let round = 0; round < 2; round++) { // round 1 reads from the cache
      const got = await Promise.all(
        [0, 1, 2].map((i) => pooled.example("train", i)),
      );
      for (let i = 0; i < 3; i++) {
        const want = (await plain.example("train", i))!
          .channels as Float32Array[];
        const have = got[i]!.channels as Float32Array[];
        assert.deepEqual(have, want);
        // 16-bit files carry their integers, from disk and from the cache.
        assert.deepEqual(
          pcm16Of(have[0]),
          i === 1 ? undefined : pcm16Of(want[0]),
          `clip ${i}, round ${round}`,
        );
      }
    }
  } finally {
    await pooled.close?.();
  }
});

Deno.test("loadNoiseFolder loads every WAV as mono by stem and refuses empty folders", async () => {
  const { dir } = await tree({
    "pink_noise.wav": encodeWav([
      toneInt16(160, 100, 16000),
      toneInt16(160, 100, 16000).map((v) => -v),
    ], {
      sampleRateHz: 16000,
    }),
    "white_noise.wav": int16(),
    "readme.md": new Uint8Array(3),
  });
  const noise = await loadNoiseFolder(dir);
  assert.deepEqual(Object.keys(noise), ["pink_noise", "white_noise"]);
  assert.equal(noise.pink_noise.sampleRateHz, 16000);
  assert.ok(
    noise.pink_noise.samples.every((v) => v === 0),
    "stereo mixed to mono by channel mean",
  );
  assert.equal(noise.white_noise.samples.length, 800);
  const empty = await Deno.makeTempDir();
  await assert.rejects(loadNoiseFolder(empty), /holds no \.wav files/);
  await assert.rejects(loadNoiseFolder(join(empty, "nope")), /does not exist/);
});
