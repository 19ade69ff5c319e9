/**
 * Tests of `train.precision: mixed` (issue 18) through the pipeline: the
 * refusals on the cpu backend and with the tfjs engine, and a run on the
 * fused WebGPU engine (Mesa llvmpipe offers `shader-f16`) that writes the
 * loss scale and the skipped steps into `metrics.jsonl` and the loss-scaling
 * state into the checkpoint's optimizer group.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { compile, runPipeline } from "../pipeline/mod.ts";
import { BUILTIN_STAGES } from "./mod.ts";
import { loadCheckpoint } from "../model/checkpoint.ts";
import { gpuTests } from "../gpu/testing.ts";

const SPEC = `name: tiny-train-mixed
runtime: { backend: cpu, seed: 3 }
data: { layout: synthetic, sampleRateHz: 8000, durationSeconds: 0.5, perClass: { train: 8, validation: 3, test: 3 } }
stages:
  - use: load
  - use: mono_mix
  - use: augment
    with:
      views:
        - { name: shift, chain: [{ type: pad, seconds: 0.5 }, { type: roll }] }
        - { name: noise, chain: [{ type: noise }, { type: pad, seconds: 0.5 }] }
  - use: fixed_length
    with: { seconds: 0.5 }
  - use: mel
    with: { sampleRateHz: 8000, nFft: 256, winLength: 200, hopLength: 80, nMels: 16 }
  - use: tokenize
  - use: train
    with:
      epochs: 2
      batchSize: 8
      lr: 0.05
      lrCardinality: 2
      readEvery: 2
      evalBatchSize: 3
      precision: mixed
      model: { width: 4, groups: [1, 1], embedDim: 16, depth: 1, heads: 2, mlpDim: 32, extend: 16, conv: 8, dropout: 0.1 }
`;

async function setup(overrides: string[] = []) {
  const dir = await Deno.makeTempDir({ prefix: "train_mixed_test_" });
  await Deno.writeTextFile(join(dir, "spec.yaml"), SPEC);
  return await compile(join(dir, "spec.yaml"), {
    builtins: BUILTIN_STAGES,
    overrides: [`runtime.outputDir=${join(dir, "runs")}`, ...overrides],
  });
}

Deno.test("train with precision mixed is refused on the cpu backend and with the tfjs engine, saying what to do", async () => {
  await tf.setBackend("cpu");
  await assert.rejects(runPipeline(await setup(), {}), {
    message:
      'Cannot finish stage "train": Cannot train with precision mixed: it needs the fused WebGPU engine, and this run uses the "cpu" backend; select the webgpu backend (runtime.backend: webgpu), or use --set train.precision=fp32',
  });
  await assert.rejects(
    runPipeline(await setup(["train.engine=tfjs"]), {}),
    /^StageError: Cannot finish stage "train": Cannot train with precision mixed: engine "tfjs" runs in float32 only; .* or use --set train\.precision=fp32$/,
  );
});

Deno.test({
  name:
    "train with precision mixed on the fused WebGPU engine finishes and records the loss scale in metrics.jsonl and the checkpoint",
  ignore: !gpuTests,
  async fn() {
    try {
      const compiled = await setup(["runtime.backend=webgpu"]);
      const run = await runPipeline(compiled, {});
      const lines = (await Deno.readTextFile(join(run.runDir, "metrics.jsonl")))
        .trim().split("\n").map((l) => JSON.parse(l));
      const train = lines.filter((l) => l.split === "train");
      assert.equal(train.length, 2);
      for (const l of train) {
        assert.ok(Number.isFinite(l.loss) && l.loss > 0, `loss ${l.loss}`);
        // PyTorch's initial scale 2¹⁶, halved per skipped step, doubled
        // only after 2000 good ones: a power of two ≤ 2¹⁶.
        assert.ok(
          Number.isInteger(Math.log2(l.lossScale)) && l.lossScale <= 2 ** 16,
          `lossScale ${l.lossScale}`,
        );
        assert.equal(l.lossScale, 2 ** 16 / 2 ** l.skippedSteps);
      }
      // validation lines carry no loss-scaling figures
      assert.ok(
        lines.filter((l) => l.split !== "train").every((l) =>
          l.lossScale === undefined
        ),
      );
      const summary = JSON.parse(
        await Deno.readTextFile(join(run.runDir, "summary.json")),
      );
      assert.ok(Number.isFinite(summary.validation.loss));
      // the checkpoint keeps the state for a resume
      const last = await loadCheckpoint(
        tf,
        join(run.runDir, "checkpoints"),
        "last",
      );
      const saved = last.groups.optimizer?.get("lossScale");
      const values = saved ? Array.from(await saved.data()) : [];
      tf.dispose(Object.values(last.groups).flatMap((g) => [...g.values()]));
      assert.equal(values.length, 6);
      assert.equal(values[0], train[1].lossScale);
      assert.equal(values[2], train[1].skippedSteps);
    } finally {
      await tf.setBackend("cpu");
    }
  },
});
