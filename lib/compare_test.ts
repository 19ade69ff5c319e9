import assert from "node:assert/strict";
import { tinyTrainSpec } from "../tests/_tiny_run.ts";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { compile, runPipeline } from "../pipeline/mod.ts";
import type { Stage } from "../pipeline/mod.ts";
import { BUILTIN_STAGES } from "../stages/mod.ts";
import { stage as report } from "../stages/report.ts";
import { compareRuns, optionDiff } from "./compare.ts";

const SPEC = tinyTrainSpec({
  name: "tiny-compare",
  seed: 7,
  perClass: [4, 2, 2],
  batchSize: 8,
  extraStages: "  - use: report\n",
});

async function tinyRun(dir: string, overrides: string[]): Promise<string> {
  await tf.setBackend("cpu");
  const compiled = await compile(join(dir, "spec.yaml"), {
    builtins: { ...BUILTIN_STAGES, report: report as Stage },
    overrides: [`runtime.outputDir=${join(dir, "runs")}`, ...overrides],
  });
  return (await runPipeline(compiled, {})).runDir;
}

Deno.test("compare prints two runs side by side with the options that differ", async () => {
  const dir = await Deno.makeTempDir({ prefix: "compare_test_" });
  await Deno.writeTextFile(join(dir, "spec.yaml"), SPEC);
  const a = await tinyRun(dir, []);
  const b = await tinyRun(dir, ["train.lr=0.01", "train.model.groups=[2,1]"]);
  const text = await compareRuns(a, b);
  const line = (label: string) =>
    text.split("\n").find((l) => l.trimStart().startsWith(label + " "));
  assert.match(line("name") ?? "", /tiny-compare\s+tiny-compare/);
  const hashes = (line("spec hash") ?? "").match(/sha256-[0-9a-f]+/g);
  assert.equal(hashes?.length, 2);
  assert.notEqual(hashes![0], hashes![1]);
  assert.match(line("backend") ?? "", /cpu\s+cpu/);
  for (const s of ["train", "validation", "test"]) {
    assert.match(line(s) ?? "", /\d+\.\d\d\s+\d+\.\d\d/, `${s} accuracies`);
  }
  assert.match(
    line("macro-F1 % (headline state)") ?? "",
    /\d+\.\d\d\s+\d+\.\d\d/,
  );
  assert.match(
    line("headline state") ?? "",
    /trained, best \(epoch 1\)\s+trained, best \(epoch 1\)/,
  );
  // Every model state has its own row, named.
  for (const id of ["trained-best", "trained-last"]) {
    assert.match(
      line(`${id} on test`) ?? "",
      /\d+\.\d\d \(\d+\.\d\d\) epoch 1\s+\d+\.\d\d \(\d+\.\d\d\) epoch 1/,
      id,
    );
  }
  assert.match(line("best epoch") ?? "", /1\s+1/);
  assert.match(text, /timings \(s\)/);
  assert.match(text, /options that differ \(2\)/);
  assert.match(line("train.lr") ?? "", /0\.05\s+0\.01/);
  assert.match(line("train.model.groups") ?? "", /\[1,1\]\s+\[2,1\]/);
  assert.ok(!text.includes("runtime.outputDir"));

  // The task entry point, as `deno task compare` runs it.
  const cli = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "_tools/compare.ts", a, b],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(cli.code, 0, new TextDecoder().decode(cli.stderr));
  assert.match(new TextDecoder().decode(cli.stdout), /options that differ/);

  // A folder without the files: a clear error naming it.
  const empty = join(dir, "empty");
  await Deno.mkdir(empty);
  await assert.rejects(
    compareRuns(a, empty),
    new RegExp(
      `Cannot compare "${empty}": it lacks summary\\.json, manifest\\.json, plan\\.json`,
    ),
  );
  await Deno.remove(join(b, "summary.json"));
  const failed = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "_tools/compare.ts", a, b],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(failed.code, 1);
  assert.match(
    new TextDecoder().decode(failed.stderr),
    new RegExp(`Cannot compare "${b}": it lacks summary\\.json`),
  );
  await assert.rejects(
    compareRuns(a, join(dir, "nope")),
    /Cannot compare ".*nope": no such run folder \(\/.*\/nope\)/,
  );
});

Deno.test("optionDiff reports added, removed and changed options by dotted path", () => {
  const a = {
    runtime: { seed: 1, outputDir: "x" },
    data: { root: "d" },
    stages: [{ name: "train", options: { lr: 1, model: { depth: 2 } } }],
  };
  const b = {
    runtime: { seed: 2, outputDir: "y" },
    data: { root: "d" },
    stages: [
      { name: "train", options: { lr: 1, model: { depth: 3 } } },
      { name: "report", options: { split: "test" } },
    ],
  };
  assert.deepEqual(optionDiff(a, b), [
    ["report.split", undefined, "test"],
    ["runtime.seed", 1, 2],
    ["train.model.depth", 2, 3],
  ]);
});
