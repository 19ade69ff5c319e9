import assert from "node:assert/strict";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { tinyTrainSpec } from "../tests/_tiny_run.ts";
import { compile, runPipeline } from "../pipeline/mod.ts";
import { BUILTIN_STAGES } from "../stages/mod.ts";
import { exportRun } from "./export.ts";

async function tinyRun() {
  await tf.setBackend("cpu");
  const dir = await Deno.makeTempDir({ prefix: "export_test_" });
  await Deno.writeTextFile(
    join(dir, "spec.yaml"),
    tinyTrainSpec({ name: "tiny-export" }),
  );
  const compiled = await compile(join(dir, "spec.yaml"), {
    builtins: BUILTIN_STAGES,
    overrides: [`runtime.outputDir=${join(dir, "runs")}`],
  });
  const { runDir } = await runPipeline(compiled, {});
  return { dir, runDir };
}

Deno.test("exportRun refuses a folder without a train stage or checkpoints, naming the folder", async () => {
  const dir = await Deno.makeTempDir({ prefix: "export_test_" });
  await assert.rejects(
    exportRun(tf, dir),
    /Cannot export ".*": it has no plan.json/,
  );
  await Deno.writeTextFile(
    join(dir, "plan.json"),
    JSON.stringify({ name: "x", stages: [{ id: "load", kind: "source" }] }),
  );
  await assert.rejects(
    exportRun(tf, dir),
    new RegExp(`Cannot export "${dir}": its pipeline has no train stage`),
  );
  const { runDir } = await tinyRun();
  await Deno.remove(join(runDir, "checkpoints"), { recursive: true });
  await assert.rejects(
    exportRun(tf, runDir),
    new RegExp(`Cannot export "${runDir}": it has no checkpoints/best.json`),
  );
});
