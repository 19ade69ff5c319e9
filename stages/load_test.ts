import assert from "node:assert/strict";
import { LoadData, LoadOptions, stage } from "./load.ts";
import { classFrequencyHz } from "./_synthetic.ts";
import { createRng } from "../pipeline/rng.ts";
import type { Dataset, SourceContext } from "../pipeline/types.ts";

function open(data: Record<string, unknown>, seed = 0): Promise<Dataset> {
  const ctx = {
    rng: createRng("stage/load", seed),
  } as unknown as SourceContext;
  return stage.open(
    LoadData.parse({ layout: "synthetic", ...data }),
    LoadOptions.parse({}),
    ctx,
  );
}

async function channelsOf(
  ds: Dataset,
  split: string,
  index: number,
): Promise<Float32Array[]> {
  return (await ds.example(split, index))!.channels as Float32Array[];
}

const small = { sampleRateHz: 8000, durationSeconds: 0.25 };

Deno.test("load.open sizes each split as perClass times the class count", async () => {
  const ds = await open({
    ...small,
    classes: ["a", "b", "c", "d"],
    perClass: { train: 5, validation: 2, test: 0 },
  });
  assert.deepEqual(ds.splits, { train: 20, validation: 8, test: 0 });
  assert.deepEqual(ds.classes, ["a", "b", "c", "d"]);
  assert.deepEqual(ds.info, {
    layout: "synthetic",
    sampleRateHz: 8000,
    channels: 1,
  });
});

Deno.test("load examples are class-major with labels, rate and path", async () => {
  const ds = await open({
    ...small,
    classes: ["low", "high"],
    perClass: { train: 3, validation: 1, test: 1 },
  });
  const labels: number[] = [];
  const paths: string[] = [];
  for (let i = 0; i < ds.splits.train; i++) {
    const ex = await ds.example("train", i) as Record<string, unknown>;
    labels.push(ex.label as number);
    paths.push(ex.path as string);
    assert.equal(ex.sampleRate, 8000);
  }
  assert.deepEqual(labels, [0, 0, 0, 1, 1, 1]);
  assert.deepEqual(paths, [
    "synthetic:train/low/0",
    "synthetic:train/low/1",
    "synthetic:train/low/2",
    "synthetic:train/high/0",
    "synthetic:train/high/1",
    "synthetic:train/high/2",
  ]);
  assert.equal((await ds.example("test", 1))!.label, 1);
});

Deno.test("load gives bit-identical clips for the same seed and different ones otherwise", async () => {
  const a = await open(small, 3);
  const b = await open(small, 3);
  const c = await open(small, 4);
  const clipA = await channelsOf(a, "train", 5);
  assert.deepEqual(await channelsOf(b, "train", 5), clipA);
  assert.deepEqual(await channelsOf(a, "train", 5), clipA, "rereading repeats");
  assert.notDeepEqual(await channelsOf(c, "train", 5), clipA);
  assert.notDeepEqual(await channelsOf(a, "train", 6), clipA);
  assert.notDeepEqual(await channelsOf(a, "validation", 5), clipA);
});

Deno.test("load clips last sampleRateHz times durationSeconds without jitter", async () => {
  const ds = await open({ sampleRateHz: 8000, durationSeconds: 0.3 });
  for (let i = 0; i < ds.splits.train; i++) {
    const [ch] = await channelsOf(ds, "train", i);
    assert.equal(ch.length, 2400);
  }
});

Deno.test("load clip lengths stay within the jitter and vary", async () => {
  const ds = await open({ ...small, durationJitter: 0.2 });
  const lengths = new Set<number>();
  for (let i = 0; i < ds.splits.train; i++) {
    const [ch] = await channelsOf(ds, "train", i);
    assert.ok(ch.length >= 1600 && ch.length <= 2400, `length ${ch.length}`);
    lengths.add(ch.length);
  }
  assert.ok(lengths.size > 1, "jitter must change lengths");
});

Deno.test("load honours the channel count with equal-length channels", async () => {
  const ds = await open({ ...small, channels: 3 });
  const clip = await channelsOf(ds, "test", 0);
  assert.equal(clip.length, 3);
  for (const ch of clip) {
    assert.ok(ch instanceof Float32Array);
    assert.equal(ch.length, 2000);
  }
  assert.notDeepEqual(clip[0], clip[1], "noise is independent per channel");
});

Deno.test("load samples stay within [-1, 1] even with heavy noise", async () => {
  const ds = await open({ ...small, noiseLevel: 1, channels: 2 });
  let clipped = 0;
  for (let i = 0; i < 6; i++) {
    for (const ch of await channelsOf(ds, "train", i)) {
      for (const v of ch) {
        assert.ok(v >= -1 && v <= 1, `sample ${v}`);
        if (Math.abs(v) === 1) clipped++;
      }
    }
  }
  assert.ok(clipped > 0, "noise level 1 must reach the clip limits");
});

Deno.test("load clips have their class frequency within 5%", async () => {
  const rate = 16000;
  const classes = ["a", "b", "c", "d"];
  const ds = await open({
    classes,
    sampleRateHz: rate,
    durationSeconds: 1,
    noiseLevel: 0,
    perClass: { train: 2, validation: 0, test: 0 },
  });
  for (let i = 0; i < ds.splits.train; i++) {
    const ex = await ds.example("train", i) as Record<string, unknown>;
    const [ch] = ex.channels as Float32Array[];
    // sin(x) + 0.3·sin(2x) crosses zero upwards once per period.
    let up = 0;
    for (let j = 1; j < ch.length; j++) if (ch[j - 1] < 0 && ch[j] >= 0) up++;
    const measured = up / (ch.length / rate);
    const expected = classFrequencyHz(ex.label as number, classes.length, rate);
    assert.ok(
      Math.abs(measured - expected) <= 0.05 * expected,
      `clip ${i}: measured ${measured} Hz, expected ${expected} Hz`,
    );
  }
});

Deno.test("classFrequencyHz spans 150 Hz to min(4 kHz, 0.35·rate)", () => {
  assert.equal(classFrequencyHz(0, 3, 16000), 150);
  assert.ok(Math.abs(classFrequencyHz(2, 3, 16000) - 4000) < 1e-9);
  assert.ok(
    Math.abs(classFrequencyHz(1, 3, 16000) - Math.sqrt(150 * 4000)) < 1e-9,
  );
  assert.ok(Math.abs(classFrequencyHz(1, 2, 8000) - 2800) < 1e-9);
});

Deno.test("load rejects an out-of-range index with a RangeError naming the split", async () => {
  const ds = await open({
    ...small,
    perClass: { train: 2, validation: 1, test: 1 },
  });
  for (const index of [6, -1]) {
    await assert.rejects(
      () => ds.example("train", index),
      (e: unknown) =>
        e instanceof RangeError &&
        e.message ===
          `Cannot read example ${index} of split "train": it has 6 examples`,
    );
  }
});

Deno.test("load rejects an unknown split with a RangeError naming the split", async () => {
  const ds = await open(small);
  await assert.rejects(
    () => ds.example("dev", 0),
    (e: unknown) =>
      e instanceof RangeError &&
      e.message === 'Cannot read example 0 of split "dev": it has 0 examples',
  );
});

Deno.test("load rejects split names inherited from Object.prototype", async () => {
  const ds = await open(small);
  for (const split of ["constructor", "toString", "__proto__"]) {
    await assert.rejects(
      () => ds.example(split, 0),
      (e: unknown) =>
        e instanceof RangeError &&
        e.message ===
          `Cannot read example 0 of split "${split}": it has 0 examples`,
      `split "${split}" must be rejected`,
    );
  }
});

Deno.test("LoadData.safeParse rejects an unknown layout and unknown keys", () => {
  assert.equal(LoadData.safeParse({ layout: "folder" }).success, false);
  assert.equal(LoadData.safeParse({}).success, false);
  const extra = LoadData.safeParse({ layout: "synthetic", sampleRate: 8000 });
  assert.equal(extra.success, false);
  const nested = LoadData.safeParse({
    layout: "synthetic",
    perClass: { train: 1, dev: 2 },
  });
  assert.equal(nested.success, false);
  const ok = LoadData.safeParse({ layout: "synthetic" });
  assert.ok(ok.success);
  assert.deepEqual(ok.data, {
    layout: "synthetic",
    classes: ["low", "mid", "high"],
    sampleRateHz: 16000,
    durationSeconds: 1,
    durationJitter: 0,
    channels: 1,
    perClass: { train: 8, validation: 2, test: 2 },
    noiseLevel: 0.05,
  });
});
