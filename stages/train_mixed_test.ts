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
import { runPipeline } from "../pipeline/mod.ts";
import { setupTinyTrain } from "./train_testing.ts";
import { loadCheckpoint } from "../model/checkpoint.ts";
import { gpuTests } from "../gpu/testing.ts";

// The train stage's tiny spec, its evaluation batches dividing every split
// (fewer eval graphs for llvmpipe to compile), in mixed precision.
const setup = async (overrides: string[] = []) =>
  (await setupTinyTrain(
    ["train.evalBatchSize=3", "train.precision=mixed", ...overrides],
    "train_mixed_test_",
  )).compiled;

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
