import assert from "node:assert/strict";
import { tinyTrainSpec } from "../tests/_tiny_run.ts";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { compile, runPipeline } from "../pipeline/mod.ts";
import { BUILTIN_STAGES } from "../stages/mod.ts";
import { loadPackage, memoryLoader } from "../lib/inference.ts";
import { exportRun } from "../lib/export.ts";
import { main } from "./export.ts";

const SPEC = tinyTrainSpec({ name: "tiny-export" });

async function tinyRun(spec = SPEC) {
  await tf.setBackend("cpu");
  const dir = await Deno.makeTempDir({ prefix: "export_test_" });
  await Deno.writeTextFile(join(dir, "spec.yaml"), spec);
  const compiled = await compile(join(dir, "spec.yaml"), {
    builtins: BUILTIN_STAGES,
    overrides: [`runtime.outputDir=${join(dir, "runs")}`],
  });
  const { runDir } = await runPipeline(compiled, {});
  return { dir, runDir };
}

Deno.test("export writes a self-describing package: model.json with labels, rate, length, mel options, and a tfjs weights manifest", async () => {
  const { dir, runDir } = await tinyRun();
  const out = join(dir, "out");
  assert.equal(await main([runDir, out]), 0);
  const config = JSON.parse(await Deno.readTextFile(join(out, "model.json")));
  assert.equal(config.format, "amaut-model");
  assert.equal(config.version, 1);
  assert.equal(config.name, "tiny-export");
  assert.deepEqual(config.labels, ["low", "mid", "high"]);
  assert.equal(config.sampleRateHz, 8000);
  assert.equal(config.lengthSamples, 4000);
  assert.equal(config.clip, "head");
  assert.equal(config.mel.nFft, 256);
  assert.equal(config.mel.hopLength, 80);
  assert.deepEqual(config.model.dims, { nMels: 16, frames: 51, classes: 3 });
  assert.equal(config.model.options.embedDim, 16);
  const [group] = config.weightsManifest;
  assert.deepEqual(group.paths, ["weights.bin"]);
  const names = group.weights.map((w: { name: string }) => w.name);
  assert.ok(names.includes("transform.pos_embed"));
  assert.ok(names.some((n: string) => n.endsWith("running_var")));
  const bytes = await Deno.readFile(join(out, "weights.bin"));
  const size = group.weights.reduce(
    (n: number, w: { shape: number[] }) =>
      n + w.shape.reduce((a, b) => a * b, 1),
    0,
  );
  assert.equal(bytes.byteLength, 4 * size);
  // The tfjs weights format: tf.io.decodeWeights reads it as is.
  const decoded = tf.io.decodeWeights(bytes.slice().buffer, group.weights);
  assert.deepEqual(Object.keys(decoded), names);
  tf.dispose(Object.values(decoded));
  // No temporary files are left behind.
  assert.deepEqual(
    [...Deno.readDirSync(out)].map((e) => e.name).sort(),
    ["model.json", "weights.bin"],
  );
  // --which last works too; a truncated weights file is refused.
  assert.equal(await main([runDir, join(dir, "last"), "--which", "last"]), 0);
  const pkg = await exportRun(tf, runDir);
  await assert.rejects(
    loadPackage(
      tf,
      memoryLoader({
        "model.json": JSON.stringify(pkg.config),
        "weights.bin": pkg.weights.slice(0, 100),
      }),
    ),
    /weights.bin holds 100 bytes, too few/,
  );
});

Deno.test("export exits 2 on a bad command line and 1 when the run cannot be exported", async () => {
  const dir = await Deno.makeTempDir({ prefix: "export_test_" });
  const { runDir } = await tinyRun();
  assert.equal(await main([dir]), 2);
  assert.equal(await main([dir, join(dir, "out")]), 1);
  assert.equal(await main([runDir, join(dir, "out"), "--which", "worst"]), 2);
});
