import assert from "node:assert/strict";
import { join } from "node:path";
import {
  combinations,
  parseVary,
  planGrid,
  runName,
  writeGridFolder,
} from "./expand.ts";
import { readGrid } from "./grid_file.ts";
import { compile } from "../pipeline/compile.ts";
import { BUILTIN_STAGES } from "../stages/mod.ts";
import { main } from "./cli.ts";

Deno.test("parseVary reads axes and refuses bad texts naming them", () => {
  assert.deepEqual(parseVary(["data.fold=0,1,2", "train.epochs=10, 20"]), [
    { key: "data.fold", values: ["0", "1", "2"] },
    { key: "train.epochs", values: ["10", "20"] },
  ]);
  assert.throws(
    () => parseVary(["data.fold"]),
    /Cannot use --vary "data.fold": write a dotted spec path/,
  );
  assert.throws(() => parseVary(["data.fold=0,,1"]), /has an empty value/);
  assert.throws(() => parseVary(["data.fold=0,0"]), /listed twice/);
  assert.throws(
    () => parseVary(["data.fold=0", "data.fold=1"]),
    /already varied/,
  );
});

Deno.test("combinations crosses axes, first slowest; runName is file-safe", () => {
  assert.deepEqual(
    combinations([{ key: "a.x", values: ["1", "2"] }, {
      key: "b.y",
      values: ["p", "q"],
    }]),
    [
      { "a.x": "1", "b.y": "p" },
      { "a.x": "1", "b.y": "q" },
      { "a.x": "2", "b.y": "p" },
      { "a.x": "2", "b.y": "q" },
    ],
  );
  assert.equal(runName("am", { "data.fold": "3" }, 2, 3), "am-fold3-r2");
  assert.equal(runName("cs", { "train.lr": "1e-3/x" }, 0, 1), "cs-lr1e-3_x");
});

Deno.test("planGrid expands folds × repeats with seeds, ensembling order and specs that compile to the recorded hash", async () => {
  const dir = await Deno.makeTempDir({ prefix: "grid_expand_test_" });
  const grid = await planGrid({
    specs: ["presets/tiny_grid.yaml"],
    vary: ["data.fold=0,1"],
    repeat: 3,
    set: ["train.epochs=1"],
  }, dir);
  assert.deepEqual(grid.runs.map((r) => r.name), [
    "tiny_grid-fold0-r0",
    "tiny_grid-fold0-r1",
    "tiny_grid-fold0-r2",
    "tiny_grid-fold1-r0",
    "tiny_grid-fold1-r1",
    "tiny_grid-fold1-r2",
  ]);
  assert.deepEqual(grid.runs.map((r) => r.seed), [3, 4, 5, 3, 4, 5]);
  // Only the last repeat ensembles (TTAu siblingRuns: true), after the others.
  assert.deepEqual(grid.runs.map((r) => r.after), [[], [], [0, 1], [], [], [
    3,
    4,
  ]]);
  assert.deepEqual(grid.axes, { "data.fold": ["0", "1"] });
  await writeGridFolder(dir, grid);
  const back = await readGrid(dir);
  assert.deepEqual(back, grid);
  const run = back.runs[5];
  assert.match(run.spec, /fold: 1/);
  assert.match(run.spec, /seed: 5/);
  assert.match(run.spec, /epochs: 1\n/);
  const c = await compile(join(dir, "specs", `${run.name}.yaml`), {
    builtins: BUILTIN_STAGES,
  });
  assert.equal(c.plan.specHash, run.specHash);
  await assert.rejects(
    writeGridFolder(dir, grid),
    /Cannot make a grid in .*: it already holds grid.json/,
  );
  const same = await planGrid({
    specs: ["presets/tiny_grid.yaml"],
    repeat: 2,
    sameSeed: true,
  }, dir);
  assert.deepEqual(same.runs.map((r) => r.seed), [3, 3]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("grid --dry-run prints the table; ablations add presets; a bad value is reported with its file and exit code 2", async () => {
  const lines: string[] = [];
  const write = Deno.stdout.writeSync;
  const ewrite = Deno.stderr.writeSync;
  const decoder = new TextDecoder();
  Deno.stdout.writeSync = (p: Uint8Array) => {
    lines.push(decoder.decode(p));
    return p.length;
  };
  Deno.stderr.writeSync = (p: Uint8Array) => {
    lines.push(decoder.decode(p));
    return p.length;
  };
  try {
    assert.equal(
      await main([
        "presets/cs.yaml",
        "--ablations",
        "presets/ablations/cs_cls*.yaml",
        "--repeat",
        "2",
        "--same-seed",
        "--dry-run",
      ]),
      0,
    );
    const text = lines.join("");
    assert.match(text, /cs-r0 +cs +– +0 +2025 +–/);
    assert.match(text, /cs-r1 +cs +– +1 +2025 +0/);
    assert.match(text, /cs_cls_distil-r1/);
    assert.match(text, /6 run\(s\)/);
    lines.length = 0;
    assert.equal(
      await main([
        "presets/tiny_grid.yaml",
        "--vary",
        "data.fold=-1",
        "--dry-run",
      ]),
      2,
    );
    assert.match(lines.join(""), /presets\/tiny_grid\.yaml/);
    assert.match(lines.join(""), /Cannot use -1 for "fold": it must be >= 0/);
    lines.length = 0;
    assert.equal(
      await main(["presets/tiny_grid.yaml", "--ablations", "nothing/*.yaml"]),
      2,
    );
    assert.match(
      lines.join(""),
      /Cannot use --ablations "nothing\/\*\.yaml": no file matches it/,
    );
  } finally {
    Deno.stdout.writeSync = write;
    Deno.stderr.writeSync = ewrite;
  }
});
