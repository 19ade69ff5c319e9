import assert from "node:assert/strict";
import { join } from "node:path";
import { layout, VocalSoundData } from "./vocalsound.ts";
import { clipLines, problemLines, tempDir, text, wavs } from "./_testing.ts";

const CTX = { seed: 1 };
const MIDS = [
  "/m/01j3sz",
  "/m/07plz5l",
  "/m/01b_21",
  "/m/0dl9sf8",
  "/m/01hsr_",
  "/m/07ppn3j",
];

const entries = (xs: [string, string][]) =>
  JSON.stringify({
    data: xs.map(([wav, labels]) => ({
      wav: `/data/sls/scratch/vocalsound/audio_16k/${wav}`,
      labels,
    })),
  });

/** Six train clips (one per class), two validation, one test. */
async function buildTree(root: string) {
  await wavs(root, [
    ...MIDS.map((_, i) => `audio_16k/f${i}_tr.wav`),
    "audio_16k/m0_va.wav",
    "audio_16k/m1_va.wav",
    "audio_16k/m2_te.wav",
  ]);
  // train entries listed out of order: the index sorts them by path
  await text(
    root,
    "datafiles/tr.json",
    entries(
      MIDS.map((mid, i) => [`f${i}_tr.wav`, mid] as [string, string])
        .reverse(),
    ),
  );
  await text(
    root,
    "datafiles/val.json",
    entries([["m1_va.wav", MIDS[1]], ["m0_va.wav", MIDS[3]]]),
  );
  await text(root, "datafiles/te.json", entries([["m2_te.wav", MIDS[5]]]));
  await text(root, "class_labels_indices_vs.csv", "index,mid,display_name\n");
}

function parse(input: Record<string, unknown>): VocalSoundData {
  const r = VocalSoundData.safeParse({ layout: "vocalsound", ...input });
  if (!r.success) throw new Error(JSON.stringify(r.error.issues));
  return r.data;
}

Deno.test("vocalsound: splits from the json files, labels from the mids", async () => {
  await using dir = await tempDir();
  const root = dir.path;
  await buildTree(root);
  const result = await layout.index(parse({ root }), CTX);
  assert.deepEqual(result.problems, []);
  const index = result.index!;
  assert.deepEqual(index.classes, [
    "Laughter",
    "Sigh",
    "Cough",
    "Throat clearing",
    "Sneeze",
    "Sniff",
  ]);
  assert.deepEqual(clipLines(result, "train", root), [
    "audio_16k/f0_tr.wav=0",
    "audio_16k/f1_tr.wav=1",
    "audio_16k/f2_tr.wav=2",
    "audio_16k/f3_tr.wav=3",
    "audio_16k/f4_tr.wav=4",
    "audio_16k/f5_tr.wav=5",
  ]);
  assert.deepEqual(clipLines(result, "validation", root), [
    "audio_16k/m0_va.wav=3",
    "audio_16k/m1_va.wav=1",
  ]);
  assert.deepEqual(clipLines(result, "test", root), ["audio_16k/m2_te.wav=5"]);
  assert.deepEqual(index.info, { layout: "vocalsound", root });
});

Deno.test("vocalsound: missing root", async () => {
  await using dir = await tempDir();
  const root = join(dir.path, "missing");
  const result = await layout.index(parse({ root }), CTX);
  assert.equal(result.index, undefined);
  assert.equal(result.problems.length, 1);
  assert.match(result.problems[0].message, /^Cannot find the VocalSound/);
});

Deno.test("vocalsound: missing json, invalid json, unknown mid and missing audio together", async () => {
  await using dir = await tempDir();
  const root = dir.path;
  await buildTree(root);
  await Deno.remove(join(root, "datafiles/te.json"));
  await text(root, "datafiles/val.json", '{"data": [');
  await text(
    root,
    "datafiles/tr.json",
    entries([
      ["f0_tr.wav", MIDS[0]],
      ["f1_tr.wav", "/m/zzz"],
      ["gone.wav", MIDS[2]],
    ]),
  );
  const result = await layout.index(parse({ root }), CTX);
  assert.equal(result.index, undefined);
  const lines = problemLines(result, root);
  assert.equal(lines.length, 4);
  assert.match(
    lines[0],
    /^datafiles\/tr\.json: Unknown label "\/m\/zzz" in entry data\[1\] of datafiles\/tr\.json: expected \/m\/01j3sz \(Laughter\), /,
  );
  assert.equal(
    lines[1],
    'audio_16k/gone.wav: Cannot find audio file "gone.wav" named by entry data[2] of datafiles/tr.json',
  );
  assert.match(
    lines[2],
    /^datafiles\/val\.json: Cannot parse datafiles\/val\.json as JSON: \S/,
  );
  assert.equal(
    lines[3],
    "datafiles/te.json: Cannot find split file datafiles/te.json",
  );
});

Deno.test("vocalsound: malformed entries, a missing audio folder and an empty split", async () => {
  await using dir = await tempDir();
  const root = dir.path;
  await buildTree(root);
  await Deno.remove(join(root, "audio_16k"), { recursive: true });
  await text(root, "datafiles/te.json", '{"data": []}');
  await text(root, "datafiles/val.json", '{"rows": []}');
  await text(
    root,
    "datafiles/tr.json",
    JSON.stringify({ data: [{ labels: MIDS[0] }, { wav: "a.wav" }] }),
  );
  const result = await layout.index(parse({ root }), CTX);
  assert.deepEqual(problemLines(result, root), [
    'audio_16k: Cannot find audio folder "audio_16k"',
    'datafiles/tr.json: No "wav" string in entry data[0] of datafiles/tr.json',
    'datafiles/tr.json: No "labels" string in entry data[1] of datafiles/tr.json',
    'datafiles/val.json: Expected {"data": [...]} in datafiles/val.json',
    '.: Split "train" has no clips',
    '.: Split "test" has no clips',
  ]);
});

Deno.test("VocalSoundData: required root, unknown keys rejected", () => {
  assert.deepEqual(parse({ root: "x" }), { layout: "vocalsound", root: "x" });
  const ok = (input: Record<string, unknown>) =>
    VocalSoundData.safeParse({ layout: "vocalsound", ...input }).success;
  assert.equal(ok({}), false);
  assert.equal(ok({ root: "x", sampleRate: 16000 }), false);
  assert.equal(
    VocalSoundData.safeParse({ layout: "vocal", root: "x" }).success,
    false,
  );
  for (const [key, field] of Object.entries(VocalSoundData.shape)) {
    assert.ok(field.description, `${key} has a description`);
  }
});
