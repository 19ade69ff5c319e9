import assert from "node:assert/strict";
import { dirname, join, relative } from "node:path";
import { LAYOUTS } from "./mod.ts";
import type { IndexResult } from "./types.ts";
import { tempDir } from "./_testing.ts";
import {
  NOISE_NAMES,
  resolveSynthOptions,
  synthClip,
  type SynthLayout,
  type SynthOptions,
  type SynthSummary,
  writeSyntheticDataset,
} from "./synth.ts";
import { readWav } from "../../lib/wav.ts";
import { loadNoiseFolder } from "../_audio_dataset.ts";
import { classFrequencyHz } from "../_synthetic.ts";
import { createRng } from "../../pipeline/rng.ts";

const CTX = { seed: 1 };
/** Small and fast: 8 kHz, 50 ms clips, 0.1 s noise clips. */
const TINY: SynthOptions = {
  sampleRateHz: 8000,
  seconds: 0.05,
  noiseSeconds: 0.1,
};

/** Indexes the written dataset with the layout's own loader. */
async function indexWith(
  summary: SynthSummary,
  extra: Record<string, unknown> = {},
): Promise<IndexResult> {
  const layout = LAYOUTS[summary.layout];
  const parsed = layout.data.safeParse({ ...summary.data, ...extra });
  if (!parsed.success) throw new Error(JSON.stringify(parsed.error.issues));
  // deno-lint-ignore no-explicit-any -- each layout's own parsed data
  return await layout.index(parsed.data as any, CTX);
}

/** Clips per class of a split. */
function perClass(result: IndexResult, split: string): number[] {
  const counts = new Array(result.index!.classes.length).fill(0);
  for (const c of result.index!.splits[split]) counts[c.label]++;
  return counts;
}

/** Every file under `dir`, relative, sorted. */
async function listFiles(dir: string, under = dir): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    const path = join(dir, e.name);
    if (e.isDirectory) out.push(...await listFiles(path, under));
    else out.push(relative(under, path));
  }
  return out.sort();
}

const SPLITS = ["train", "validation", "test"] as const;

function assertCounts(
  result: IndexResult,
  summary: SynthSummary,
  classes: number,
  expected: Record<(typeof SPLITS)[number], number>,
) {
  assert.deepEqual(result.problems, []);
  assert.equal(result.index!.classes.length, classes);
  assert.equal(summary.classes, classes);
  for (const split of SPLITS) {
    assert.equal(result.index!.splits[split].length, expected[split], split);
  }
  assert.deepEqual(summary.clips, expected);
}

Deno.test("synth speech_commands v1 loads through the layout with its lists and noise", async () => {
  await using dir = await tempDir();
  const root = join(dir.path, "sc1");
  const summary = await writeSyntheticDataset("speech_commands", root, {
    ...TINY,
    version: 1,
    train: 3,
    validation: 1,
    test: 2,
  });
  assert.equal(summary.reused, false);
  assert.deepEqual(summary.data, {
    layout: "speech_commands",
    root,
    version: 1,
  });
  const result = await indexWith(summary);
  assertCounts(result, summary, 30, { train: 90, validation: 30, test: 60 });
  assert.deepEqual(perClass(result, "train"), new Array(30).fill(3));
  assert.deepEqual(perClass(result, "test"), new Array(30).fill(2));
  // The lists name word/<8 hex>_nohash_<n>.wav, as the archive's do.
  const lines = (await Deno.readTextFile(join(root, "testing_list.txt")))
    .trim().split("\n");
  assert.equal(lines.length, 60);
  for (const l of lines) {
    assert.match(l, /^[a-z]+\/[0-9a-f]{8}_nohash_\d+\.wav$/);
  }
  // Speakers of the three splits are disjoint.
  const speakers = (split: string) =>
    new Set(
      result.index!.splits[split].map((c) =>
        c.path.split("/").pop()!.slice(0, 8)
      ),
    );
  const train = speakers("train");
  for (const s of speakers("test")) assert.ok(!train.has(s));
  // The background noise folder loads like the real one.
  assert.equal(summary.backgroundNoise, join(root, "_background_noise_"));
  const noise = await loadNoiseFolder(summary.backgroundNoise!);
  assert.deepEqual(Object.keys(noise).sort(), [...NOISE_NAMES]);
  for (const clip of Object.values(noise)) {
    assert.equal(clip.sampleRateHz, 16000);
    assert.equal(clip.samples.length, 1600);
  }
  // Clips decode at the requested rate and length.
  const wav = await readWav(result.index!.splits.validation[0].path);
  assert.equal(wav.sampleRateHz, 8000);
  assert.equal(wav.channels[0].length, 400);
});

Deno.test("synth speech_commands v2 writes the 35 words", async () => {
  await using dir = await tempDir();
  const summary = await writeSyntheticDataset(
    "speech_commands",
    join(dir.path, "sc2"),
    { ...TINY, train: 1, backgroundNoise: false },
  );
  const result = await indexWith(summary);
  assertCounts(result, summary, 35, { train: 35, validation: 35, test: 35 });
  assert.equal(summary.backgroundNoise, undefined);
  // Indexed as version 1 it is refused: the v2-only words are there.
  const v1 = await indexWith(summary, { version: 1 });
  assert.ok(
    v1.problems.some((p) =>
      p.message.includes("class of Speech Commands v2 only")
    ),
  );
});

Deno.test("synth audiomnist writes all 60 speakers, its metadata, and every fold splits", async () => {
  await using dir = await tempDir();
  const root = join(dir.path, "AudioMNIST", "data");
  const summary = await writeSyntheticDataset("audiomnist", root, {
    sampleRateHz: 8000,
    seconds: 0.02,
    perSpeaker: 2,
  });
  const result = await indexWith(summary);
  // Fold 0 with trainOn trainValidation (the defaults): 48 / 12 / 12 speakers.
  assertCounts(result, summary, 10, {
    train: 960,
    validation: 240,
    test: 240,
  });
  assert.deepEqual(perClass(result, "test"), new Array(10).fill(24));
  for (const fold of [1, 4]) {
    const other = await indexWith(summary, { fold, trainOn: "train" });
    assert.deepEqual(other.problems, []);
    assert.equal(other.index!.splits.train.length, 720);
    assert.equal(other.index!.splits.test.length, 240);
  }
  const meta = JSON.parse(
    await Deno.readTextFile(join(root, "audioMNIST_meta.txt")),
  );
  assert.equal(Object.keys(meta).length, 60);
  assert.ok("gender" in meta["01"] && "recordingroom" in meta["60"]);
  const files = await listFiles(root);
  assert.ok(files.includes("07/3_07_1.wav"));
});

Deno.test("synth vocalsound writes datafiles/*.json and audio_16k", async () => {
  await using dir = await tempDir();
  const root = join(dir.path, "vocalsound_16k");
  const summary = await writeSyntheticDataset("vocalsound", root, {
    ...TINY,
    train: 3,
    validation: 1,
    test: 2,
  });
  const result = await indexWith(summary);
  assertCounts(result, summary, 6, { train: 18, validation: 6, test: 12 });
  assert.deepEqual(perClass(result, "train"), new Array(6).fill(3));
  const te = JSON.parse(
    await Deno.readTextFile(join(root, "datafiles", "te.json")),
  );
  assert.equal(te.data.length, 12);
  assert.match(te.data[0].wav, /audio_16k\/[fm]\d{4}_\d+_[a-z]+\.wav$/);
  assert.match(te.data[0].labels, /^\/m\//);
  // Jittered lengths: at most `seconds`, at least (1 − jitter)·seconds.
  for (const c of result.index!.splits.train) {
    const n = (await readWav(c.path)).channels[0].length;
    assert.ok(n <= 400 && n >= 0.7 * 400 - 1, `${n} samples`);
  }
});

Deno.test("synth cochlscene writes Train/Val/Test class folders, noise on request", async () => {
  await using dir = await tempDir();
  const root = join(dir.path, "CochlScene");
  const summary = await writeSyntheticDataset("cochlscene", root, {
    ...TINY,
    train: 2,
    validation: 1,
    test: 1,
    backgroundNoise: true,
  });
  const result = await indexWith(summary);
  assertCounts(result, summary, 13, { train: 26, validation: 13, test: 13 });
  assert.deepEqual(perClass(result, "train"), new Array(13).fill(2));
  assert.ok(
    (await listFiles(root)).includes("Val/Bus/Bus_user0005_000.wav"),
  );
  // The preset borrows Speech Commands' noise; the folder sits beside Train.
  assert.equal(
    Object.keys(await loadNoiseFolder(summary.backgroundNoise!)).length,
    6,
  );
});

Deno.test("synth output is deterministic: same options give the same bytes, another seed others", async () => {
  await using dir = await tempDir();
  const options: SynthOptions = { ...TINY, train: 1 };
  const a = join(dir.path, "a");
  const b = join(dir.path, "b");
  await writeSyntheticDataset("cochlscene", a, options);
  await writeSyntheticDataset("cochlscene", b, options);
  const files = await listFiles(a);
  assert.deepEqual(await listFiles(b), files);
  for (const f of files) {
    assert.deepEqual(
      await Deno.readFile(join(a, f)),
      await Deno.readFile(join(b, f)),
      f,
    );
  }
  const c = join(dir.path, "c");
  await writeSyntheticDataset("cochlscene", c, { ...options, seed: 5 });
  const clip = "Train/Park/Park_user0001_000.wav";
  assert.notDeepEqual(
    await Deno.readFile(join(a, clip)),
    await Deno.readFile(join(c, clip)),
  );
});

Deno.test("synth reuses its own folder, refuses others, and leaves no temporary folder", async () => {
  await using dir = await tempDir();
  const root = join(dir.path, "vs");
  const options: SynthOptions = { ...TINY, test: 2 };
  const first = await writeSyntheticDataset("vocalsound", root, options);
  const record = await Deno.readTextFile(join(root, "synth.json"));
  // Same options (defaults spelled out or not): reused, nothing rewritten.
  const again = await writeSyntheticDataset("vocalsound", root, {
    ...options,
    train: 4,
    seed: 0,
  });
  assert.equal(again.reused, true);
  assert.deepEqual(again.clips, first.clips);
  assert.equal(await Deno.readTextFile(join(root, "synth.json")), record);
  // Other options: refused, naming the record.
  await assert.rejects(
    writeSyntheticDataset("vocalsound", root, { ...options, test: 3 }),
    (e: Error) => {
      assert.match(e.message, /^Cannot write the synthetic dataset to /);
      assert.match(e.message, /synth\.json records layout vocalsound/);
      return true;
    },
  );
  // A folder with other files: refused, untouched.
  const other = join(dir.path, "mine");
  await Deno.mkdir(other);
  await Deno.writeTextFile(join(other, "notes.txt"), "keep");
  await assert.rejects(
    writeSyntheticDataset("cochlscene", other, TINY),
    /the folder exists and is not empty; remove it or choose another/,
  );
  assert.equal(await Deno.readTextFile(join(other, "notes.txt")), "keep");
  // An empty folder is filled.
  const empty = join(dir.path, "empty");
  await Deno.mkdir(empty);
  const filled = await writeSyntheticDataset("cochlscene", empty, {
    ...TINY,
    train: 1,
  });
  assert.equal(filled.clips.train, 13);
  const left = [...Deno.readDirSync(dirname(root))].map((e) => e.name);
  assert.deepEqual(left.filter((n) => n.endsWith(".tmp")), []);
});

Deno.test("synth options: defaults per layout, errors name the option and its flag", () => {
  assert.deepEqual(resolveSynthOptions("cochlscene"), {
    train: 4,
    validation: 1,
    test: 1,
    seconds: 10,
    jitter: 0,
    sampleRateHz: 44100,
    seed: 0,
    noiseLevel: 0.02,
    noiseSeconds: 10,
    backgroundNoise: false,
  });
  assert.equal(resolveSynthOptions("speech_commands").version, 2);
  assert.equal(resolveSynthOptions("speech_commands").backgroundNoise, true);
  assert.equal(resolveSynthOptions("audiomnist").perSpeaker, 1);
  assert.throws(
    () => resolveSynthOptions("cochlscene", { train: 0 }),
    /^RangeError: Cannot synthesise cochlscene: train \(--train\) must be an integer from 1 to 100000, got 0$/,
  );
  assert.throws(
    () => resolveSynthOptions("audiomnist", { train: 2 }),
    /train \(--train\) does not apply: AudioMNIST splits by speaker; set perSpeaker \(--per-speaker\)/,
  );
  assert.throws(
    () => resolveSynthOptions("vocalsound", { version: 1 }),
    /version \(--version\) does not apply: only Speech Commands has versions/,
  );
  assert.throws(
    () => resolveSynthOptions("speech_commands", { seconds: 0 }),
    /seconds \(--seconds\) must be a number above 0 and at most 60, got 0/,
  );
  assert.throws(
    () => resolveSynthOptions("folder" as SynthLayout),
    /Cannot synthesise layout "folder": use one of speech_commands, audiomnist, vocalsound, cochlscene/,
  );
});

/** Power of `x` at frequency `f` (Goertzel). */
function powerAt(x: Float32Array, f: number, rate: number): number {
  const c = 2 * Math.cos((2 * Math.PI * f) / rate);
  let s1 = 0;
  let s2 = 0;
  for (const v of x) {
    const s = v + c * s1 - s2;
    s2 = s1;
    s1 = s;
  }
  return s1 * s1 + s2 * s2 - c * s1 * s2;
}

Deno.test("synth clips are class-dependent: each tone class is loudest at its own frequency", () => {
  const rate = 16000;
  const classes = 30;
  // Labels 0, 3, 6, ... are the steady tones.
  for (const label of [0, 3, 6, 9]) {
    const x = synthClip(label, classes, rate, rate, createRng(`t${label}`, 0), {
      noiseLevel: 0,
    });
    const own = powerAt(x, classFrequencyHz(label, classes, rate), rate);
    const next = powerAt(x, classFrequencyHz(label + 3, classes, rate), rate);
    assert.ok(own > 20 * next, `label ${label}: ${own} vs ${next}`);
  }
  // Chirps sweep up: more power at 1.4·f than a steady tone of f has.
  const f = classFrequencyHz(1, classes, rate);
  const chirp = synthClip(1, classes, rate, rate, createRng("c", 0), {
    noiseLevel: 0,
  });
  const tone = synthClip(0, 1, rate, rate, createRng("c", 0), {
    noiseLevel: 0,
  });
  assert.ok(powerAt(chirp, 1.4 * f, rate) > 100 * powerAt(tone, 1.4 * f, rate));
});
