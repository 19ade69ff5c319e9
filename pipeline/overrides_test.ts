import assert from "node:assert/strict";
import { applyOverrides, parseOverrides } from "./overrides.ts";
import type { LocatedSpec } from "./spec_load.ts";

function spec(): LocatedSpec {
  return {
    file: "x.yaml",
    chain: ["x.yaml"],
    unset: [],
    origins: new Map(),
    value: {
      name: "x",
      runtime: { seed: 1 },
      data: { layout: "synthetic" },
      stages: [
        { use: "load" },
        { use: "describe_data", with: { batchSize: 8 } },
        { use: "./train.ts", name: "train" },
      ],
    },
  };
}

Deno.test("parseOverrides parses values as YAML scalars and flow collections", () => {
  const { overrides, issues } = parseOverrides([
    "a.b=5",
    "a.c=0.5",
    "a.d=true",
    "a.e=text",
    "a.f=[1, 2]",
    "a.g=",
    "a.h=x=y",
  ]);
  assert.deepEqual(issues, []);
  assert.deepEqual(overrides.map((o) => o.value), [
    5,
    0.5,
    true,
    "text",
    [1, 2],
    "",
    "x=y",
  ]);
  assert.deepEqual(overrides[0].path, ["a", "b"]);
});

Deno.test("parseOverrides rejects texts without = or with empty path segments", () => {
  const { issues } = parseOverrides(["seed", "a..b=1", "=3"]);
  assert.equal(issues.length, 3);
  for (const i of issues) {
    assert.equal(i.code, "bad_override");
    assert.ok(i.file.startsWith("--set "));
  }
});

Deno.test("applyOverrides routes envelope keys, stage names and stages.<name|index>", () => {
  const s = spec();
  const { overrides } = parseOverrides([
    "runtime.seed=7",
    "train.epochs=5",
    "stages.describe_data.with.batchSize=4",
    "stages.0.with.x=1",
    "data.root=/data",
  ]);
  assert.deepEqual(applyOverrides(s, overrides), []);
  const stages = s.value.stages as Record<string, Record<string, unknown>>[];
  assert.equal((s.value.runtime as Record<string, unknown>).seed, 7);
  assert.deepEqual(stages[2].with, { epochs: 5 });
  assert.deepEqual(stages[1].with, { batchSize: 4 });
  assert.deepEqual(stages[0].with, { x: 1 });
  assert.equal((s.value.data as Record<string, unknown>).root, "/data");
  assert.equal(
    s.origins.get("stages.2.with.epochs")!.value.file,
    "--set train.epochs=5",
  );
  assert.equal(
    s.origins.get("stages.2.with")!.value.file,
    "--set train.epochs=5",
  );
});

Deno.test("applyOverrides reports unknown stage names with a did-you-mean", () => {
  const s = spec();
  const { overrides } = parseOverrides([
    "trian.epochs=5",
    "stages.nope.with.a=1",
    "stages.9.use=x",
  ]);
  const issues = applyOverrides(s, overrides);
  assert.equal(issues.length, 3);
  assert.equal(issues[0].code, "bad_override");
  assert.equal(issues[0].file, "--set trian.epochs=5");
  assert.equal(issues[0].hint, 'did you mean "train"?');
  assert.match(issues[1].message, /has no stage "nope"/);
  assert.match(issues[2].message, /has no stage "9"/);
});

Deno.test("applyOverrides refuses to nest under a plain value", () => {
  const s = spec();
  const { overrides } = parseOverrides(["runtime.seed.x=1"]);
  const issues = applyOverrides(s, overrides);
  assert.equal(issues.length, 1);
  assert.match(issues[0].message, /"runtime.seed" is a value, not a mapping/);
  assert.equal((s.value.runtime as Record<string, unknown>).seed, 1);
});
