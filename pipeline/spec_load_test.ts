import assert from "node:assert/strict";
import { join } from "node:path";
import { loadSpec, stageEntryName } from "./spec_load.ts";

async function files(entries: Record<string, string>): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "spec_load_test_" });
  for (const [name, text] of Object.entries(entries)) {
    await Deno.mkdir(join(dir, name, ".."), { recursive: true });
    await Deno.writeTextFile(join(dir, name), text);
  }
  return dir;
}

const PARENT = `name: parent
runtime:
  seed: 1
  backend: cpu
data:
  layout: synthetic
  classes: [a, b]
stages:
  - use: load
  - use: mono_mix
  - use: describe_data
    with:
      batchSize: 8
`;

Deno.test("loadSpec merges an extends chain key by key, child over parent", async () => {
  const dir = await files({
    "base/parent.yaml": PARENT,
    "mid.yaml": "extends: base/parent.yaml\nname: mid\nruntime:\n  seed: 2\n",
    "child.yaml":
      "extends: ./mid.yaml\nname: child\ndata:\n  classes: [x, y, z]\n",
  });
  const { spec, issues } = await loadSpec(join(dir, "child.yaml"));
  assert.deepEqual(issues, []);
  assert.ok(spec);
  assert.equal(spec.value.name, "child");
  assert.deepEqual(spec.value.runtime, { seed: 2, backend: "cpu" });
  assert.deepEqual(spec.value.data, {
    layout: "synthetic",
    classes: ["x", "y", "z"],
  });
  assert.equal("extends" in spec.value, false);
  assert.equal(spec.chain.length, 3);
  // Origins point at the file and line that set each key.
  const seed = spec.origins.get("runtime.seed")!.value;
  assert.ok(seed.file.endsWith("mid.yaml"));
  assert.equal(seed.line, 4);
  const backend = spec.origins.get("runtime.backend")!.value;
  assert.ok(backend.file.endsWith("parent.yaml"));
  assert.equal(backend.line, 4);
  const classes = spec.origins.get("data.classes")!.value;
  assert.ok(classes.file.endsWith("child.yaml"));
  assert.equal(spec.origins.get("data.classes.0")!.value.line, 4);
});

Deno.test("loadSpec patches stages by name, drops null stages and renumbers origins", async () => {
  const dir = await files({
    "parent.yaml": PARENT,
    "child.yaml": `extends: parent.yaml
name: child
stages:
  mono_mix: null
  describe_data:
    with:
      splits: [test]
`,
  });
  const { spec, issues } = await loadSpec(join(dir, "child.yaml"));
  assert.deepEqual(issues, []);
  const stages = spec!.value.stages as Record<string, unknown>[];
  assert.deepEqual(stages.map(stageEntryName), ["load", "describe_data"]);
  assert.deepEqual(stages[1].with, { batchSize: 8, splits: ["test"] });
  // describe_data moved from index 2 to 1; its origins moved with it.
  const batch = spec!.origins.get("stages.1.with.batchSize")!.value;
  assert.ok(batch.file.endsWith("parent.yaml"));
  assert.equal(batch.line, 13);
  const splits = spec!.origins.get("stages.1.with.splits")!.value;
  assert.ok(splits.file.endsWith("child.yaml"));
  assert.equal(spec!.origins.has("stages.2.use"), false);
});

Deno.test("loadSpec replaces the stage list when a child gives a list", async () => {
  const dir = await files({
    "parent.yaml": PARENT,
    "child.yaml": "extends: parent.yaml\nname: child\nstages:\n  - use: load\n",
  });
  const { spec } = await loadSpec(join(dir, "child.yaml"));
  assert.deepEqual(spec!.value.stages, [{ use: "load" }]);
  assert.equal(spec!.origins.has("stages.1.use"), false);
});

Deno.test("loadSpec rejects a patch that is not a mapping", async () => {
  const dir = await files({
    "parent.yaml": PARENT,
    "child.yaml": "extends: parent.yaml\nname: child\nstages:\n  load: 3\n",
  });
  const { issues } = await loadSpec(join(dir, "child.yaml"));
  assert.equal(issues.length, 1);
  assert.equal(issues[0].code, "wrong_type");
  assert.equal(issues[0].line, 4);
});

Deno.test("loadSpec reports a top level that is not a mapping", async () => {
  const dir = await files({ "list.yaml": "- a\n- b\n" });
  const { spec, issues } = await loadSpec(join(dir, "list.yaml"));
  assert.equal(spec, undefined);
  assert.equal(issues[0].code, "wrong_type");
  assert.match(issues[0].message, /top level must be a mapping/);
});

Deno.test("stageEntryName uses name, then the id or the file stem of use", () => {
  assert.equal(stageEntryName({ use: "mel", name: "mel_a" }), "mel_a");
  assert.equal(stageEntryName({ use: "mono_mix" }), "mono_mix");
  assert.equal(stageEntryName({ use: "./stages/my-aug.ts" }), "my_aug");
  assert.equal(
    stageEntryName({ use: "https://example.org/pcen@1.2.0/pcen.ts?x=1" }),
    "pcen",
  );
});
