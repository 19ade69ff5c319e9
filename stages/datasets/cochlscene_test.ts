import assert from "node:assert/strict";
import { join } from "node:path";
import { COCHLSCENE_CLASSES, CochlSceneData, layout } from "./cochlscene.ts";
import { clipLines, problemLines, tempDir, text, wavs } from "./_testing.ts";

const CTX = { seed: 1 };
const FOLDERS = ["Train", "Val", "Test"];

/** Every split folder holds every class folder with one clip (train: two). */
async function buildTree(root: string) {
  await wavs(
    root,
    FOLDERS.flatMap((s) =>
      COCHLSCENE_CLASSES.flatMap((c) =>
        s === "Train"
          ? [`${s}/${c}/${c}_b.wav`, `${s}/${c}/${c}_a.wav`]
          : [`${s}/${c}/${c}_a.wav`]
      )
    ),
  );
  await text(root, "Train/Bus/readme.txt", "not audio");
}

function parse(input: Record<string, unknown>): CochlSceneData {
  const r = CochlSceneData.safeParse({ layout: "cochlscene", ...input });
  if (!r.success) throw new Error(JSON.stringify(r.error.issues));
  return r.data;
}

Deno.test("cochlscene: Train/Val/Test folders, 13 classes in reference order", async () => {
  await using dir = await tempDir();
  const root = dir.path;
  await buildTree(root);
  const result = await layout.index(parse({ root }), CTX);
  assert.deepEqual(result.problems, []);
  const index = result.index!;
  assert.deepEqual(index.classes, [
    "Bus",
    "Car",
    "Elevator",
    "Park",
    "Restaurant",
    "Street",
    "SubwayStation",
    "Cafe",
    "CrowdedIndoor",
    "Kitchen",
    "ResidentialArea",
    "Restroom",
    "Subway",
  ]);
  assert.equal(index.splits.train.length, 26);
  assert.equal(index.splits.validation.length, 13);
  assert.equal(index.splits.test.length, 13);
  assert.deepEqual(clipLines(result, "train", root).slice(0, 4), [
    "Train/Bus/Bus_a.wav=0",
    "Train/Bus/Bus_b.wav=0",
    "Train/Cafe/Cafe_a.wav=7",
    "Train/Cafe/Cafe_b.wav=7",
  ]);
  assert.ok(
    clipLines(result, "validation", root).includes(
      "Val/Subway/Subway_a.wav=12",
    ),
  );
  assert.ok(
    clipLines(result, "test", root).includes(
      "Test/SubwayStation/SubwayStation_a.wav=6",
    ),
  );
  for (const clips of Object.values(index.splits)) {
    const paths = clips.map((c) => c.path);
    assert.deepEqual(paths, [...paths].sort());
  }
  assert.deepEqual(index.info, { layout: "cochlscene", root });
});

Deno.test("cochlscene: missing root", async () => {
  await using dir = await tempDir();
  const root = join(dir.path, "CochlScene");
  const result = await layout.index(parse({ root }), CTX);
  assert.deepEqual(problemLines(result, root), [
    ".: Cannot find the CochlScene folder (holding Train, Val and Test)",
  ]);
});

Deno.test("cochlscene: missing split folder, missing class folder, extra folder and empty split together", async () => {
  await using dir = await tempDir();
  const root = dir.path;
  await buildTree(root);
  await Deno.remove(join(root, "Val"), { recursive: true });
  await Deno.remove(join(root, "Train/Kitchen"), { recursive: true });
  await Deno.mkdir(join(root, "Train/Beach"));
  for (const c of COCHLSCENE_CLASSES) {
    await Deno.remove(join(root, "Test", c, `${c}_a.wav`));
  }
  const result = await layout.index(parse({ root }), CTX);
  assert.equal(result.index, undefined);
  assert.deepEqual(problemLines(result, root), [
    'Train/Kitchen: Cannot find class folder "Train/Kitchen": the layout needs all 13 classes of CochlScene',
    'Train/Beach: Unexpected folder "Train/Beach": it is not one of the 13 classes of CochlScene',
    'Val: Cannot find split folder "Val"',
    '.: Split "test" has no clips',
  ]);
});

Deno.test("CochlSceneData: required root, unknown keys rejected", () => {
  assert.deepEqual(parse({ root: "x" }), { layout: "cochlscene", root: "x" });
  const ok = (input: Record<string, unknown>) =>
    CochlSceneData.safeParse({ layout: "cochlscene", ...input }).success;
  assert.equal(ok({}), false);
  assert.equal(ok({ root: "x", version: 1 }), false);
  for (const [key, field] of Object.entries(CochlSceneData.shape)) {
    assert.ok(field.description, `${key} has a description`);
  }
});
