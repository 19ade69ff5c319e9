import assert from "node:assert/strict";
import { basename, isAbsolute, join } from "node:path";
import { AudioMnistData, layout } from "./audiomnist.ts";
import { clipLines, problemLines, tempDir, wavs } from "./_testing.ts";

const CTX = { seed: 1 };
const pad = (n: number) => String(n).padStart(2, "0");

// The official folds, written out independently of the module.
const TEST_SPEAKERS = [
  [26, 52, 60, 18, 32, 42, 5, 13, 22, 33, 45, 51],
  [28, 56, 7, 19, 35, 1, 6, 16, 23, 34, 46, 53],
  [36, 57, 9, 24, 37, 2, 8, 17, 29, 39, 48, 54],
  [43, 58, 14, 25, 38, 3, 10, 20, 30, 40, 49, 55],
  [12, 47, 59, 15, 27, 41, 4, 11, 21, 31, 44, 50],
];
const ALL = Array.from({ length: 60 }, (_, i) => i + 1);
const asc = (xs: number[]) => [...xs].sort((a, b) => a - b);

/** Speaker s holds `${s % 10}_ss_0.wav` and `${(s + 3) % 10}_ss_1.wav`. */
async function buildTree(root: string, speakers = ALL) {
  await wavs(
    root,
    speakers.flatMap((s) => [
      `${pad(s)}/${s % 10}_${pad(s)}_0.wav`,
      `${pad(s)}/${(s + 3) % 10}_${pad(s)}_1.wav`,
    ]),
  );
  await Deno.writeTextFile(join(root, "audioMNIST_meta.txt"), "{}");
}

function parse(input: Record<string, unknown>): AudioMnistData {
  const r = AudioMnistData.safeParse({ layout: "audiomnist", ...input });
  if (!r.success) throw new Error(JSON.stringify(r.error.issues));
  return r.data;
}

/** Speakers present in a split, from the clip file names. */
function speakersOf(clips: readonly { path: string }[]): number[] {
  return asc([
    ...new Set(clips.map((c) => Number(basename(c.path).split("_")[1]))),
  ]);
}

Deno.test("audiomnist: every fold has the official test, validation and train speakers", async () => {
  await using dir = await tempDir();
  const root = dir.path;
  await buildTree(root);
  for (let fold = 0; fold < 5; fold++) {
    const test = asc(TEST_SPEAKERS[fold]);
    const validation = asc(TEST_SPEAKERS[(fold + 4) % 5]);
    const rest = ALL.filter((s) =>
      !test.includes(s) && !validation.includes(s)
    );
    assert.equal(rest.length, 36);
    for (const trainOn of ["train", "trainValidation"] as const) {
      const result = await layout.index(parse({ root, fold, trainOn }), CTX);
      assert.deepEqual(result.problems, []);
      const { splits, info } = result.index!;
      const train = trainOn === "train" ? rest : asc([...rest, ...validation]);
      assert.deepEqual(speakersOf(splits.test), test, `fold ${fold} test`);
      assert.deepEqual(speakersOf(splits.validation), validation);
      assert.deepEqual(speakersOf(splits.train), train);
      assert.equal(splits.train.length, train.length * 2);
      assert.equal(splits.validation.length, 24);
      assert.equal(splits.test.length, 24);
      assert.deepEqual(info, {
        layout: "audiomnist",
        root,
        fold,
        trainOn,
        trainSpeakers: train,
        validationSpeakers: validation,
        testSpeakers: test,
      });
    }
  }
});

Deno.test("audiomnist: defaults to fold 0 and train+validation; labels are the file digits", async () => {
  await using dir = await tempDir();
  const root = dir.path;
  await buildTree(root);
  const result = await layout.index(parse({ root }), CTX);
  const index = result.index!;
  assert.deepEqual(index.classes, [
    "0",
    "1",
    "2",
    "3",
    "4",
    "5",
    "6",
    "7",
    "8",
    "9",
  ]);
  assert.equal(index.info.fold, 0);
  assert.equal(index.info.trainOn, "trainValidation");
  assert.equal(index.splits.train.length, 96);
  assert.deepEqual(clipLines(result, "test", root).slice(0, 4), [
    "05/5_05_0.wav=5",
    "05/8_05_1.wav=8",
    "13/3_13_0.wav=3",
    "13/6_13_1.wav=6",
  ]);
  for (const clips of Object.values(index.splits)) {
    for (const c of clips) {
      assert.ok(isAbsolute(c.path));
      assert.equal(c.label, Number(basename(c.path)[0]));
    }
    const paths = clips.map((c) => c.path);
    assert.deepEqual(paths, [...paths].sort());
  }
});

Deno.test("audiomnist: missing root", async () => {
  await using dir = await tempDir();
  const root = join(dir.path, "AudioMNIST", "data");
  const result = await layout.index(parse({ root }), CTX);
  assert.equal(result.index, undefined);
  assert.deepEqual(problemLines(result, root), [
    ".: Cannot find the AudioMNIST data folder (AudioMNIST/data, holding the speaker folders 01 to 60)",
  ]);
});

Deno.test("audiomnist: bad names, wrong speaker, digit out of range and missing speakers together", async () => {
  await using dir = await tempDir();
  const root = dir.path;
  await buildTree(root, ALL.filter((s) => ![5, 13, 60, 2].includes(s)));
  await wavs(root, [
    "01/1-01-0.wav",
    "01/3_02_0.wav",
    "01/12_01_0.wav",
  ]);
  await Deno.writeTextFile(join(root, "01", "notes.txt"), "x");
  const result = await layout.index(parse({ root, fold: 0 }), CTX);
  assert.equal(result.index, undefined);
  assert.deepEqual(problemLines(result, root), [
    '01/1-01-0.wav: File name "1-01-0.wav" does not match {digit}_{speaker}_{index}.wav',
    '01/12_01_0.wav: Digit 12 in "12_01_0.wav" is out of range 0 to 9',
    '01/3_02_0.wav: File "3_02_0.wav" names speaker 02 but lies in the folder of speaker 01',
    '01/notes.txt: File name "notes.txt" does not match {digit}_{speaker}_{index}.wav',
    ".: Cannot find speaker 02 that the train split of fold 0 needs",
    ".: Cannot find speakers 05, 13, 60 that the test split of fold 0 needs",
  ]);
});

Deno.test("audiomnist: a missing validation fold is reported once, and an empty speaker folder counts as missing", async () => {
  await using dir = await tempDir();
  const root = dir.path;
  const validation = TEST_SPEAKERS[4]; // validation of fold 0
  await buildTree(root, ALL.filter((s) => !validation.includes(s)));
  await Deno.mkdir(join(root, "12"));
  const result = await layout.index(parse({ root, trainOn: "train" }), CTX);
  assert.deepEqual(problemLines(result, root), [
    ".: Cannot find speakers 04, 11, 12, 15, 21, 27, 31, 41, 44, 47, 50, 59 that the validation split of fold 0 needs",
  ]);
});

Deno.test("AudioMnistData: defaults, unknown keys and bad values", () => {
  assert.deepEqual(parse({ root: "x" }), {
    layout: "audiomnist",
    root: "x",
    fold: 0,
    trainOn: "trainValidation",
  });
  const ok = (input: Record<string, unknown>) =>
    AudioMnistData.safeParse({ layout: "audiomnist", ...input }).success;
  assert.equal(ok({ root: "x", fold: 4, trainOn: "train" }), true);
  assert.equal(ok({ root: "x", fold: 5 }), false);
  assert.equal(ok({ root: "x", fold: -1 }), false);
  assert.equal(ok({ root: "x", fold: 1.5 }), false);
  assert.equal(ok({ root: "x", trainOn: "all" }), false);
  assert.equal(ok({ root: "x", folds: 1 }), false);
  assert.equal(ok({}), false);
  for (const [key, field] of Object.entries(AudioMnistData.shape)) {
    assert.ok(field.description, `${key} has a description`);
  }
});
