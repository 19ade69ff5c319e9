import assert from "node:assert/strict";
import { isAbsolute, join, relative } from "node:path";
import {
  layout,
  SPEECH_COMMANDS_V1_CLASSES,
  SPEECH_COMMANDS_V2_CLASSES,
  SpeechCommandsData,
} from "./speech_commands.ts";
import { clipLines, problemLines, tempDir, text, wavs } from "./_testing.ts";

const CTX = { seed: 1 };

/** A tree with every class folder of `version` holding a.wav and b.wav, plus noise and lists. */
async function buildTree(
  root: string,
  version: 1 | 2,
  lists = {
    validation: "bed/a.wav\ndog/a.wav\n",
    test: "yes/a.wav\r\nwow/b.wav\r\n",
  },
) {
  const classes = version === 1
    ? SPEECH_COMMANDS_V1_CLASSES
    : SPEECH_COMMANDS_V2_CLASSES;
  await wavs(root, [
    ...classes.flatMap((c) => [`${c}/a.wav`, `${c}/b.wav`]),
    "_background_noise_/white_noise.wav",
  ]);
  await text(root, "bed/notes.txt", "not audio");
  await text(root, "LICENSE", "CC-BY-4.0");
  await text(root, "validation_list.txt", lists.validation);
  await text(root, "testing_list.txt", lists.test);
}

function parse(input: Record<string, unknown>): SpeechCommandsData {
  const r = SpeechCommandsData.safeParse({
    layout: "speech_commands",
    ...input,
  });
  if (!r.success) throw new Error(JSON.stringify(r.error.issues));
  return r.data;
}

Deno.test("speech_commands v1: lists give validation/test, the rest is train, noise skipped", async () => {
  await using dir = await tempDir();
  const root = dir.path;
  await buildTree(root, 1);
  // root given relative to the working directory
  const result = await layout.index(
    parse({ root: relative(Deno.cwd(), root), version: 1 }),
    CTX,
  );
  assert.deepEqual(result.problems, []);
  const index = result.index!;
  assert.deepEqual(index.classes, SPEECH_COMMANDS_V1_CLASSES);
  assert.equal(index.classes.length, 30);
  assert.deepEqual(index.classes.slice(0, 3), ["zero", "one", "two"]);
  assert.equal(index.classes[10], "bed");
  assert.equal(index.classes[29], "wow");
  assert.deepEqual(clipLines(result, "validation", root), [
    "bed/a.wav=10",
    "dog/a.wav=11",
  ]);
  assert.deepEqual(clipLines(result, "test", root), [
    "wow/b.wav=29",
    "yes/a.wav=17",
  ]);
  const train = clipLines(result, "train", root);
  assert.equal(train.length, 60 - 4);
  assert.ok(!train.includes("bed/a.wav=10"), "validation file not in train");
  assert.ok(train.includes("bed/b.wav=10"));
  assert.ok(train.includes("zero/a.wav=0"));
  assert.ok(!train.some((l) => l.startsWith("_background_noise_")));
  assert.ok(!train.some((l) => l.includes("notes.txt")));
  for (const clips of Object.values(index.splits)) {
    for (const c of clips) assert.ok(isAbsolute(c.path));
    const paths = clips.map((c) => c.path);
    assert.deepEqual(paths, [...paths].sort());
  }
  assert.deepEqual(Object.keys(index.splits).sort(), [
    "test",
    "train",
    "validation",
  ]);
  assert.deepEqual(index.info, {
    layout: "speech_commands",
    root,
    version: 1,
  });
});

Deno.test("speech_commands v2: 35 classes, the last five appended in order", async () => {
  await using dir = await tempDir();
  const root = dir.path;
  await buildTree(root, 2, {
    validation: "visual/a.wav\n",
    test: "backward/b.wav\n",
  });
  const result = await layout.index(parse({ root }), CTX);
  assert.deepEqual(result.problems, []);
  const index = result.index!;
  assert.equal(index.classes.length, 35);
  assert.deepEqual(index.classes.slice(30), [
    "backward",
    "forward",
    "follow",
    "learn",
    "visual",
  ]);
  assert.deepEqual(clipLines(result, "validation", root), ["visual/a.wav=34"]);
  assert.deepEqual(clipLines(result, "test", root), ["backward/b.wav=30"]);
  assert.equal(index.splits.train.length, 70 - 2);
  assert.equal(index.info.version, 2);
});

Deno.test("speech_commands: missing root is the only problem", async () => {
  await using dir = await tempDir();
  const root = join(dir.path, "nope");
  const result = await layout.index(parse({ root }), CTX);
  assert.equal(result.index, undefined);
  assert.equal(result.problems.length, 1);
  assert.equal(result.problems[0].path, root);
  assert.match(result.problems[0].message, /^Cannot find the Speech Commands/);
});

Deno.test("speech_commands: missing list files are reported by name", async () => {
  await using dir = await tempDir();
  const root = dir.path;
  await buildTree(root, 1);
  await Deno.remove(join(root, "validation_list.txt"));
  await Deno.remove(join(root, "testing_list.txt"));
  const result = await layout.index(parse({ root, version: 1 }), CTX);
  assert.equal(result.index, undefined);
  assert.deepEqual(problemLines(result, root), [
    "validation_list.txt: Cannot find validation_list.txt: the extracted archive has it next to the word folders",
    "testing_list.txt: Cannot find testing_list.txt: the extracted archive has it next to the word folders",
  ]);
});

Deno.test("speech_commands: missing class folder, extra folders, bad list entries and an empty split together", async () => {
  await using dir = await tempDir();
  const root = dir.path;
  await buildTree(root, 1, {
    validation: "dog/a.wav\ndog/zzz.wav\nfoo/a.wav\nbed/a.wav\n",
    test: "backward/a.wav\n",
  });
  await Deno.remove(join(root, "bed"), { recursive: true });
  await wavs(root, ["backward/a.wav", "misc/x.wav"]);
  const result = await layout.index(parse({ root, version: 1 }), CTX);
  assert.equal(result.index, undefined);
  assert.deepEqual(problemLines(result, root), [
    'bed: Cannot find class folder "bed": the layout needs all 30 classes of Speech Commands v1',
    'backward: Unexpected folder "backward": it is a class of Speech Commands v2 only; set version: 2',
    'misc: Unexpected folder "misc": it is not one of the 30 classes of Speech Commands v1',
    'dog/zzz.wav: Line 2 of validation_list.txt names a missing file "dog/zzz.wav"',
    'validation_list.txt: Line 3 of validation_list.txt names "foo/a.wav" of unknown class "foo"',
    'testing_list.txt: Line 1 of testing_list.txt names "backward/a.wav" of class "backward", which only Speech Commands v2 has; set version: 2',
    '.: Split "test" has no clips',
  ]);
});

Deno.test("speech_commands: an empty list file gives an empty-split problem", async () => {
  await using dir = await tempDir();
  const root = dir.path;
  await buildTree(root, 2, { validation: "\n", test: "cat/a.wav\n" });
  const result = await layout.index(parse({ root }), CTX);
  assert.deepEqual(problemLines(result, root), [
    '.: Split "validation" has no clips',
  ]);
});

Deno.test("speech_commands: a v1 tree indexed as v2 misses the five v2 folders", async () => {
  await using dir = await tempDir();
  const root = dir.path;
  await buildTree(root, 1);
  const result = await layout.index(parse({ root }), CTX);
  assert.deepEqual(
    problemLines(result, root),
    ["backward", "forward", "follow", "learn", "visual"].map((c) =>
      `${c}: Cannot find class folder "${c}": the layout needs all 35 classes of Speech Commands v2`
    ),
  );
});

Deno.test("speech_commands: duplicate list lines count once and results repeat", async () => {
  await using dir = await tempDir();
  const root = dir.path;
  await buildTree(root, 1, {
    validation: "bed/a.wav\nbed/a.wav\n./dog/a.wav\n",
    test: "yes/a.wav\n",
  });
  const a = await layout.index(parse({ root, version: 1 }), CTX);
  const b = await layout.index(parse({ root, version: 1 }), CTX);
  assert.deepEqual(clipLines(a, "validation", root), [
    "bed/a.wav=10",
    "dog/a.wav=11",
  ]);
  assert.deepEqual(a, b);
});

Deno.test("SpeechCommandsData: defaults, unknown keys and bad values", () => {
  assert.deepEqual(parse({ root: "x" }), {
    layout: "speech_commands",
    root: "x",
    version: 2,
  });
  const bad = (input: Record<string, unknown>) =>
    SpeechCommandsData.safeParse({ layout: "speech_commands", ...input })
      .success;
  assert.equal(bad({ root: "x", version: 3 }), false);
  assert.equal(bad({ root: "x", version: "2" }), false);
  assert.equal(bad({ root: "x", extra: 1 }), false);
  assert.equal(bad({}), false);
  assert.equal(bad({ root: "" }), false);
  assert.equal(
    SpeechCommandsData.safeParse({ layout: "audiomnist", root: "x" }).success,
    false,
  );
  for (const [key, field] of Object.entries(SpeechCommandsData.shape)) {
    assert.ok(field.description, `${key} has a description`);
  }
});
