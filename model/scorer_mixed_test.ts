/**
 * Tests of the scorer's `precision` (issue 18: the `precision` option of
 * `test_time_augmentation` and `report`): its refusals, and on the fused
 * engine (Mesa llvmpipe offers `shader-f16`) mixed-precision eval logits
 * within 1e-2 relative of fp32's on a tiny model trained a few steps first,
 * so that its BatchNorm running statistics track its activations (an
 * untrained model's eval forward can leave f16's range, see
 * docs/model_and_training.md).
 *
 * @module
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { createRng } from "../pipeline/rng.ts";
import { createModel } from "./amaut.ts";
import { createSgd } from "./sgd.ts";
import { createScorer, engineLabel, evaluateOn } from "./scorer.ts";
import { stagePrecisionUse } from "./engine_choice.ts";
import {
  memoryData,
  memorySplit,
  TINY_DIMS,
  TINY_OPTIONS,
} from "./trainer_testing.ts";
import { scoreModel } from "../stages/report.ts";
import { createFusedEngine } from "../gpu/engine.ts";
import { relativeError } from "../gpu/parity.ts";
import { gpuTests, testRuntime } from "../gpu/testing.ts";

Deno.test("scorer: precision mixed is refused on the cpu backend and with the tfjs engine, naming the stage option", async () => {
  await tf.setBackend("cpu");
  assert.throws(
    () =>
      createScorer(tf, "auto", {
        precision: "mixed",
        precisionUse: stagePrecisionUse("test_time_augmentation", "evaluate"),
      }),
    {
      message:
        'Cannot evaluate with precision mixed: it needs the fused WebGPU engine, and this run uses the "cpu" backend; select the webgpu backend (runtime.backend: webgpu), or use --set test_time_augmentation.precision=fp32',
    },
  );
  assert.throws(
    () => createScorer(tf, "tfjs", { precision: "mixed" }),
    /^Error: Cannot evaluate with precision mixed: engine "tfjs" runs in float32 only; .*, or use --set report\.precision=fp32$/,
  );
  const fp32 = createScorer(tf, "auto", { precision: "fp32" });
  assert.equal(fp32.engine, "tfjs");
  assert.equal(fp32.precision, "fp32");
});

Deno.test({
  name:
    "scorer: mixed-precision eval logits of a trained tiny model are within 1e-2 relative of fp32's (evaluation and report scoring)",
  ignore: !gpuTests,
  async fn() {
    await tf.setBackend("cpu");
    const rt = (await testRuntime())!;
    const model = createModel(tf, TINY_OPTIONS, TINY_DIMS, createRng("mx", 4));
    const sgd = createSgd(tf);
    // A few fp32 training steps on the fused engine, so that the running
    // statistics are the data's.
    const trainer = createFusedEngine(tf, TINY_OPTIONS, TINY_DIMS, rt.device);
    try {
      await trainer.upload(model, sgd);
      for (let s = 0; s < 6; s++) {
        const b = memorySplit(8, TINY_DIMS, 100 + s);
        await trainer.step(b.tokens, b.labels, 1, {
          smoothing: 0.1,
          lr: 0.05,
          sgd: { momentum: 0.9, weightDecay: 1e-3, nesterov: false },
          seed: s,
        });
      }
      await trainer.download(model);
    } finally {
      trainer.destroy();
    }
    const data = memoryData(
      tf,
      { test: memorySplit(13, TINY_DIMS, 7) },
      TINY_DIMS,
    );
    const fp32 = createScorer(tf, "fused", { device: rt.device });
    const mixed = createScorer(tf, "auto", {
      device: rt.device,
      precision: "mixed",
    });
    try {
      assert.equal(mixed.engine, "fused");
      assert.equal(mixed.precision, "mixed");
      assert.match(engineLabel(mixed), /mixed precision/);
      assert.doesNotMatch(engineLabel(fp32), /mixed/);
      const ctx = { tf, data };
      const want = await evaluateOn(ctx, fp32, model, "test", 4);
      const got = await evaluateOn(ctx, mixed, model, "test", 4);
      assert.equal(got.logits.length, 13 * TINY_DIMS.classes);
      assert.ok(got.logits.every(Number.isFinite), "non-finite mixed logits");
      const r = relativeError(got.logits, want.logits);
      assert.ok(r.relative <= 1e-2, `eval logits ${JSON.stringify(r)}`);
      // f16 operands do change the logits (this is not the fp32 graph).
      assert.ok(r.relative > 0, "mixed logits equal fp32's bit for bit");
      assert.deepEqual(got.labels, want.labels);
      assert.ok(Math.abs(got.loss - want.loss) <= 1e-2 * want.loss);
      // The report's per-state scoring goes through the same engine.
      const rctx = { data, signal: new AbortController().signal };
      const g = await scoreModel(rctx, mixed, model, "test", 5);
      const w = await scoreModel(rctx, fp32, model, "test", 5);
      assert.ok(
        relativeError(g.probabilities, w.probabilities).relative <= 1e-2,
      );
    } finally {
      fp32.dispose();
      mixed.dispose();
      model.dispose();
      sgd.dispose();
    }
  },
});
