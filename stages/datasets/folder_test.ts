import assert from "node:assert/strict";
import { join } from "node:path";
import { FolderData, layout } from "./folder.ts";
import { clipLines, problemLines, tempDir, text, wavs } from "./_testing.ts";
import type { IndexResult } from "./types.ts";

function parse(input: Record<string, unknown>): FolderData {
  const r = FolderData.safeParse({ layout: "folder", ...input });
  if (!r.success) throw new Error(JSON.stringify(r.error.issues));
  return r.data;
}

const names = (prefix: string, n: number) =>
  Array.from(
    { length: n },
    (_, i) => `${prefix}${String(i).padStart(2, "0")}.wav`,
  );

/** cat: 10 clips (3 in a subfolder), dog: 10 clips, a hidden folder. */
async function buildFolders(root: string) {
  await wavs(root, [
    ...names("cat/c", 7),
    ...names("cat/more/m", 3),
    ...names("dog/d", 10),
    ".cache/x.wav",
  ]);
  await text(root, "cat/notes.txt", "not audio");
}

/** Per split, clip counts per label. */
function counts(result: IndexResult): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const [split, clips] of Object.entries(result.index!.splits)) {
    const n = new Array(result.index!.classes.length).fill(0);
    for (const c of clips) n[c.label]++;
    out[split] = n;
  }
  return out;
}

Deno.test("folder: class folders sorted, searched recursively, stratified seeded split", async () => {
  await using dir = await tempDir();
  const root = dir.path;
  await buildFolders(root);
  const result = await layout.index(parse({ root }), { seed: 7 });
  assert.deepEqual(result.problems, []);
  const index = result.index!;
  assert.deepEqual(index.classes, ["cat", "dog"]);
  assert.deepEqual(counts(result), {
    train: [8, 8],
    validation: [1, 1],
    test: [1, 1],
  });
  const all = [
    ...clipLines(result, "train", root),
    ...clipLines(result, "validation", root),
    ...clipLines(result, "test", root),
  ].sort();
  assert.equal(all.length, 20);
  assert.ok(all.includes("cat/more/m02.wav=0"));
  assert.ok(all.includes("dog/d09.wav=1"));
  assert.ok(!all.some((l) => l.includes(".cache")));
  for (const clips of Object.values(index.splits)) {
    const paths = clips.map((c) => c.path);
    assert.deepEqual(paths, [...paths].sort());
  }
  assert.deepEqual(index.info, {
    layout: "folder",
    root,
    source: "folders",
    splitBy: "seed",
    seed: 7,
    fractions: { validation: 0.1, test: 0.1 },
  });
});

Deno.test("folder: the same seed gives the same split, other seeds differ", async () => {
  await using dir = await tempDir();
  const root = dir.path;
  await buildFolders(root);
  const data = parse({ root, split: { validation: 0.2, test: 0.3 } });
  const a = await layout.index(data, { seed: 1 });
  const b = await layout.index(data, { seed: 1 });
  assert.deepEqual(a, b);
  assert.deepEqual(counts(a), {
    train: [5, 5],
    validation: [2, 2],
    test: [3, 3],
  });
  const tests = new Set<string>();
  for (let seed = 1; seed <= 4; seed++) {
    const r = await layout.index(data, { seed });
    tests.add(clipLines(r, "test", root).join());
  }
  assert.ok(tests.size > 1, "different seeds give different splits");
});

Deno.test("folder: classes gives the order; other folders are ignored", async () => {
  await using dir = await tempDir();
  const root = dir.path;
  await buildFolders(root);
  await wavs(root, ["bird/b.wav"]);
  const result = await layout.index(
    parse({ root, classes: ["dog", "cat"] }),
    { seed: 1 },
  );
  assert.deepEqual(result.problems, []);
  assert.deepEqual(result.index!.classes, ["dog", "cat"]);
  assert.ok(
    clipLines(result, "train", root).every((l) =>
      l.startsWith("dog/") ? l.endsWith("=0") : l.endsWith("=1")
    ),
  );
  assert.deepEqual(result.index!.info.ignoredFolders, ["bird"]);
});

Deno.test("folder: missing root", async () => {
  await using dir = await tempDir();
  const root = join(dir.path, "nothing");
  const result = await layout.index(parse({ root }), { seed: 1 });
  assert.deepEqual(problemLines(result, root), [
    ".: Cannot find the dataset folder",
  ]);
});

Deno.test("folder: fractions summing to 1 and classes without clips, together", async () => {
  await using dir = await tempDir();
  const root = dir.path;
  await buildFolders(root);
  await Deno.mkdir(join(root, "empty"));
  const result = await layout.index(
    parse({
      root,
      classes: ["cat", "empty", "ghost"],
      split: { validation: 0.5, test: 0.5 },
    }),
    { seed: 1 },
  );
  assert.equal(result.index, undefined);
  assert.deepEqual(problemLines(result, root), [
    ".: Split fractions validation 0.5 + test 0.5 leave no clips for train: their sum must be below 1",
    'empty: Class "empty" has no clips: its folder holds no .wav files',
    'ghost: Class "ghost" has no clips: cannot find its folder',
  ]);
});

Deno.test("folder: too few clips leave a split empty, with a hint", async () => {
  await using dir = await tempDir();
  const root = dir.path;
  await wavs(root, ["a/1.wav", "a/2.wav", "b/1.wav", "b/2.wav"]);
  const result = await layout.index(parse({ root }), { seed: 1 });
  assert.deepEqual(problemLines(result, root), [
    '.: Split "validation" has no clips: too few clips per class for the split fractions (validation 0.1, test 0.1)',
    '.: Split "test" has no clips: too few clips per class for the split fractions (validation 0.1, test 0.1)',
  ]);
});

Deno.test("folder: a root without class folders", async () => {
  await using dir = await tempDir();
  const root = dir.path;
  await wavs(root, ["loose.wav", "only/1.wav"]);
  const result = await layout.index(parse({ root }), { seed: 1 });
  assert.deepEqual(problemLines(result, root), [
    '.: Cannot find a second class folder besides "only": a classifier needs at least 2 classes',
  ]);
});

Deno.test("folder manifest: header, split column, quoted commas, CRLF", async () => {
  await using dir = await tempDir();
  const root = dir.path;
  await wavs(root, ["clips/a,1.wav", "clips/b.wav", "clips/c.wav", "d.wav"]);
  await text(
    root,
    "lists/all.csv",
    'path,label,split\r\n"clips/a,1.wav",yes,train\r\nclips/b.wav,no,validation\r\n' +
      'clips/c.wav, "yes" ,test\r\n\r\nd.wav,no,train\r\n',
  );
  const result = await layout.index(
    parse({ root, manifest: "lists/all.csv" }),
    { seed: 1 },
  );
  assert.deepEqual(result.problems, []);
  assert.deepEqual(result.index!.classes, ["no", "yes"]);
  assert.deepEqual(clipLines(result, "train", root), [
    "clips/a,1.wav=1",
    "d.wav=0",
  ]);
  assert.deepEqual(clipLines(result, "validation", root), ["clips/b.wav=0"]);
  assert.deepEqual(clipLines(result, "test", root), ["clips/c.wav=1"]);
  assert.deepEqual(result.index!.info, {
    layout: "folder",
    root,
    source: "manifest",
    manifest: join(root, "lists/all.csv"),
    splitBy: "manifest",
  });
});

Deno.test("folder manifest: header-less, no split column, seeded split, classes order", async () => {
  await using dir = await tempDir();
  const root = dir.path;
  const files = [...names("x/", 10), ...names("y/", 10)];
  await wavs(root, files);
  await text(
    root,
    "m.csv",
    files.map((f) => `${f},${f[0] === "x" ? "ex" : "why"}`).join("\n"),
  );
  const data = parse({ root, manifest: "m.csv", classes: ["why", "ex"] });
  const result = await layout.index(data, { seed: 3 });
  assert.deepEqual(result.problems, []);
  assert.deepEqual(result.index!.classes, ["why", "ex"]);
  assert.deepEqual(counts(result), {
    train: [8, 8],
    validation: [1, 1],
    test: [1, 1],
  });
  assert.deepEqual(result, await layout.index(data, { seed: 3 }));
  assert.equal(result.index!.info.splitBy, "seed");
});

Deno.test("folder manifest: missing manifest", async () => {
  await using dir = await tempDir();
  const root = dir.path;
  const result = await layout.index(
    parse({ root, manifest: "gone.csv" }),
    { seed: 1 },
  );
  assert.deepEqual(problemLines(result, root), [
    "gone.csv: Cannot find manifest gone.csv",
  ]);
});

Deno.test("folder manifest: bad rows are reported with line numbers, together", async () => {
  await using dir = await tempDir();
  const root = dir.path;
  await wavs(root, ["a.wav", "b.wav", "c.wav"]);
  await text(
    root,
    "m.csv",
    [
      "path,label,split",
      "a.wav,cat,train",
      "b.wav,cow,train",
      "c.wav,dog,val",
      "missing.wav,dog,test",
      "c.wav,dog",
      '"multi',
      'line.wav",dog,test',
      "a.wav,,train",
    ].join("\n"),
  );
  const result = await layout.index(
    parse({ root, manifest: "m.csv", classes: ["cat", "dog", "bird"] }),
    { seed: 1 },
  );
  assert.equal(result.index, undefined);
  assert.deepEqual(problemLines(result, root), [
    'm.csv: Line 4 of m.csv has unknown split "val": expected train, validation or test',
    'missing.wav: Line 5 of m.csv names a missing file "missing.wav"',
    "m.csv: Line 6 of m.csv has 2 fields: expected 3 (path,label,split)",
    'multi\nline.wav: Line 7 of m.csv names a missing file "multi\nline.wav"',
    "m.csv: Line 9 of m.csv has an empty label",
    'm.csv: 1 row of m.csv has a label not in classes: "cow" (1 row from line 3); classes lists cat, dog, bird',
  ]);
});

Deno.test("folder manifest: an empty split from the split column; fractions checked only without it", async () => {
  await using dir = await tempDir();
  const root = dir.path;
  await wavs(root, ["a.wav", "b.wav"]);
  await text(root, "m.csv", "a.wav,cat,train\nb.wav,dog,validation\n");
  const result = await layout.index(
    parse({
      root,
      manifest: "m.csv",
      split: { validation: 0.6, test: 0.6 },
    }),
    { seed: 1 },
  );
  assert.deepEqual(problemLines(result, root), [
    'm.csv: Split "test" has no clips',
  ]);
  await text(root, "n.csv", "a.wav,cat\nb.wav,dog\n");
  const seeded = await layout.index(
    parse({ root, manifest: "n.csv", split: { validation: 0.6, test: 0.6 } }),
    { seed: 1 },
  );
  assert.deepEqual(problemLines(seeded, root), [
    ".: Split fractions validation 0.6 + test 0.6 leave no clips for train: their sum must be below 1",
  ]);
});

Deno.test("FolderData: defaults, unknown keys and bad values", () => {
  assert.deepEqual(parse({ root: "x" }), {
    layout: "folder",
    root: "x",
    split: { validation: 0.1, test: 0.1 },
  });
  assert.deepEqual(parse({ root: "x", split: { test: 0.2 } }).split, {
    validation: 0.1,
    test: 0.2,
  });
  const ok = (input: Record<string, unknown>) =>
    FolderData.safeParse({ layout: "folder", ...input }).success;
  assert.equal(ok({ root: "x", manifest: "m.csv", classes: ["a", "b"] }), true);
  assert.equal(ok({}), false);
  assert.equal(ok({ root: "x", extra: true }), false);
  assert.equal(ok({ root: "x", split: { train: 0.8 } }), false);
  assert.equal(ok({ root: "x", split: { validation: 1 } }), false);
  assert.equal(ok({ root: "x", split: { test: 0 } }), false);
  assert.equal(ok({ root: "x", classes: ["a", "a"] }), false);
  assert.equal(ok({ root: "x", classes: ["a"] }), false);
  assert.equal(ok({ root: "x", manifest: "" }), false);
  for (const [key, field] of Object.entries(FolderData.shape)) {
    assert.ok(field.description, `${key} has a description`);
  }
  for (
    const [key, field] of Object.entries(FolderData.shape.split.unwrap().shape)
  ) {
    assert.ok(field.description, `split.${key} has a description`);
  }
});
