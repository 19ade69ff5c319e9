/**
 * Tests of the fused engine in mixed precision (issue 18: f16 matmul
 * operands, f32 accumulation, dynamic loss scaling) against the same engine
 * in fp32, on the PyTorch fixtures' tiny configurations and batch shapes
 * (2 views × 4 clips, eval batches of 4), on whatever adapter exists (Mesa
 * llvmpipe offers `shader-f16`).
 *
 * @module
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { createRng } from "../pipeline/rng.ts";
import { createModel } from "../model/amaut.ts";
import { loadModelFixture, structurallyZero } from "../model/fixture.ts";
import type { ModelDims, ModelOptions } from "../model/config.ts";
import { createSgd } from "../model/sgd.ts";
import {
  createFusedEngine,
  type EngineSettings,
  type FusedEngine,
} from "./engine.ts";
import { gpuTests, testRuntime } from "./testing.ts";
import { fixtureParity, relativeError } from "./parity.ts";

const FIXTURES = new URL(
  "../../shared/fixtures/reference/model/",
  import.meta.url,
);

const SGD = { momentum: 0.9, weightDecay: 1e-3, nesterov: false };
const lr = (name: string) => name.startsWith("classifier") ? 3e-3 : 1e-3;

/** Two engines, fp32 and mixed, on the same freshly initialised weights. */
async function pair(
  options: ModelOptions,
  dims: ModelDims,
  device: GPUDevice,
  mixed: EngineSettings = { precision: "mixed" },
) {
  const opts = { ...options, dropout: 0 };
  const model = createModel(tf, opts, dims, createRng("mixed", 3));
  const sgd = createSgd(tf);
  const fp32 = createFusedEngine(tf, opts, dims, device);
  const half = createFusedEngine(tf, opts, dims, device, mixed);
  await fp32.upload(model, sgd);
  await half.upload(model, sgd);
  return {
    fp32,
    half,
    dispose() {
      fp32.destroy();
      half.destroy();
      model.dispose();
      sgd.dispose();
    },
  };
}

/** Standard-normal tokens of `rows` clips and labels of one view. */
function batch(dims: ModelDims, rows: number, perView: number, seed: number) {
  const rng = createRng("mixed/tokens", seed);
  const data = Float32Array.from(
    { length: rows * dims.frames * dims.nMels },
    () => rng.normal(),
  );
  const labels = Array.from(
    { length: perView },
    (_, i) => (i * 7 + 1 + seed) % dims.classes,
  );
  return { data, labels };
}

const step = (e: FusedEngine, b: ReturnType<typeof batch>, seed: number) =>
  e.step(b.data, b.labels, 2, { smoothing: 0.1, lr, sgd: SGD, seed });

/** Per parameter tensor: the relative error of the mixed update against the fp32 one. */
function updateErrors(
  e: FusedEngine,
  head: ModelOptions["head"],
  before: Float32Array,
  fp32: Float32Array,
  mixed: Float32Array,
) {
  // Structurally zero gradients are float32 noise in both runs.
  const slots = e.arenas.slots.filter((s) =>
    s.trained && !structurallyZero(s.name, head)
  );
  return slots.map((s) => {
    const at = (a: Float32Array) =>
      a.subarray(s.offset, s.offset + s.size).map((v, i) =>
        v - before[s.offset + i]
      );
    return { name: s.name, ...relativeError(at(mixed), at(fp32)) };
  });
}

for (const name of ["tiny_avg", "tiny_fce"]) {
  Deno.test({
    name:
      `mixed precision matches the PyTorch fixture ${name}: the 2-view training loss and every gradient`,
    ignore: !gpuTests,
    async fn() {
      await tf.setBackend("cpu");
      const rt = (await testRuntime())!;
      const f = await loadModelFixture(FIXTURES, name);
      const r = await fixtureParity(tf, rt.device, f, {
        precision: "mixed",
        lossScale: { initScale: 2 ** 10 },
      });
      // Measured on llvmpipe: loss 7e-5 / 9e-5, worst gradient 4e-3 / 9e-3.
      // The fixture's eval logits are not compared: its BatchNorm running
      // statistics are PyTorch's initial 0 and 1, so the eval-mode CNN
      // output reaches ~4e7, past f16's 65,504 (see the docs).
      assert.ok(r.lossRelative <= 1e-3, `loss ${r.lossRelative}`);
      assert.ok(
        r.worstGradient.relative <= 2e-2,
        JSON.stringify(r.worstGradient),
      );
      assert.equal(r.gradients, Object.keys(f.grads).length);
    },
  });
  Deno.test({
    name:
      `mixed precision (${name}): one step's loss and weight update match fp32, eval logits within 1e-2, steps stay finite`,
    ignore: !gpuTests,
    async fn() {
      await tf.setBackend("cpu");
      const rt = (await testRuntime())!;
      const f = await loadModelFixture(FIXTURES, name);
      const perView = f.labels.length;
      // 2¹⁰: a scale the tiny model's scaled gradients fit in f16 with
      // (PyTorch's 2¹⁶ may skip the first steps until it backs off).
      const engines = await pair(f.options, f.dims, rt.device, {
        precision: "mixed",
        lossScale: { initScale: 2 ** 10 },
      });
      const { fp32, half } = engines;
      try {
        const before = await rt.read(fp32.arenas.params);
        const b0 = batch(f.dims, 2 * perView, perView, 0);
        await step(fp32, b0, 0);
        await step(half, b0, 0);
        const m32 = await fp32.metrics();
        const m16 = await half.metrics();
        assert.equal(m32.lossScale, undefined);
        assert.deepEqual(m16.lossScale, {
          lossScale: 2 ** 10,
          skippedSteps: 0,
          lastStepSkipped: false,
        });
        const lossRel = Math.abs(m16.lossSum - m32.lossSum) /
          Math.abs(m32.lossSum);
        assert.ok(lossRel <= 1e-2, `loss ${m16.lossSum} vs ${m32.lossSum}`);
        // The update (lr·gradient, momentum starts at the gradient) of every
        // tensor, relative to its norm: f16 operands carry 2⁻¹¹ relative
        // rounding each, compounded over the backward's chain of products
        // (worst measured on llvmpipe: 7.3e-3, a q bias of tiny_avg; 3.9e-3
        // tiny_fce); 2e-2 leaves room for another adapter's summation order.
        const errors = updateErrors(
          half,
          f.options.head,
          before,
          await rt.read(fp32.arenas.params),
          await rt.read(half.arenas.params),
        );
        const worst = errors.reduce((a, e) => e.relative > a.relative ? e : a);
        assert.ok(worst.relative <= 2e-2, JSON.stringify(worst));
        // Eval forward of the updated weights, relative to the largest logit.
        const e = batch(f.dims, perView, perView, 9);
        const want = await fp32.evalLogits(e.data, perView);
        const got = await half.evalLogits(e.data, perView);
        const r = relativeError(got, want);
        assert.ok(r.relative <= 1e-2, `eval logits ${JSON.stringify(r)}`);
        // More steps stay finite, none skipped.
        for (let s = 1; s <= 4; s++) {
          await step(half, batch(f.dims, 2 * perView, perView, s), s);
        }
        const m = await half.metrics();
        assert.ok(Number.isFinite(m.lossSum) && m.lossSum > 0, `${m.lossSum}`);
        assert.equal(m.lossScale?.skippedSteps, 0);
        const weights = await rt.read(half.arenas.params);
        assert.ok(weights.every(Number.isFinite), "weights stay finite");
      } finally {
        engines.dispose();
      }
    },
  });
}

Deno.test({
  name:
    "mixed precision: an overflowing loss scale skips the step (weights and momentum unchanged) and halves the scale; the state can be saved and restored",
  ignore: !gpuTests,
  async fn() {
    await tf.setBackend("cpu");
    const rt = (await testRuntime())!;
    const f = await loadModelFixture(FIXTURES, "tiny_avg");
    const perView = f.labels.length;
    // 2¹⁰⁰·∂L/∂logits is far past f16's 65,504: inf in the first f16 cast.
    const engines = await pair(f.options, f.dims, rt.device, {
      precision: "mixed",
      lossScale: { initScale: 2 ** 100 },
    });
    const { half } = engines;
    try {
      const before = await rt.read(half.arenas.params);
      await step(half, batch(f.dims, 2 * perView, perView, 0), 0);
      const m = await half.metrics();
      assert.deepEqual(m.lossScale, {
        lossScale: 2 ** 99,
        skippedSteps: 1,
        lastStepSkipped: true,
      });
      const after = await rt.read(half.arenas.params);
      assert.deepEqual(
        new Uint32Array(after.buffer),
        new Uint32Array(before.buffer),
        "weights of a skipped step",
      );
      const momentum = await rt.read(half.arenas.momentum);
      assert.ok(momentum.every((v) => v === 0), "momentum of a skipped step");
      const saved = await half.lossScaleState();
      assert.equal(saved?.scale, 2 ** 99);
      assert.equal(saved?.skippedSteps, 1);
      // A resume continues from the saved state.
      half.setLossScaleState({ ...saved!, scale: 2 ** 8, lastSkipped: false });
      await step(half, batch(f.dims, 2 * perView, perView, 1), 1);
      const next = await half.lossScaleState();
      assert.equal(next?.scale, 2 ** 8);
      assert.equal(next?.skippedSteps, 1);
      assert.equal(next?.lastSkipped, false);
      const moved = await rt.read(half.arenas.params);
      assert.ok(moved.some((v, i) => v !== before[i]), "a good step trains");
    } finally {
      engines.dispose();
    }
  },
});

Deno.test({
  name:
    "mixed precision is refused on a device without shader-f16, naming the feature and the fix",
  ignore: !gpuTests,
  async fn() {
    await tf.setBackend("cpu");
    const f = await loadModelFixture(FIXTURES, "tiny_avg");
    const adapter = (await navigator.gpu.requestAdapter())!;
    const plain = await adapter.requestDevice(); // no optional features
    try {
      assert.equal(plain.features.has("shader-f16"), false);
      assert.throws(
        () =>
          createFusedEngine(tf, f.options, f.dims, plain, {
            precision: "mixed",
          }),
        {
          message:
            'Cannot train with precision mixed: this WebGPU device lacks the feature "shader-f16" (its adapter does not offer it), which the f16 matmuls need; use --set train.precision=fp32',
        },
      );
      // fp32 needs nothing more
      createFusedEngine(tf, f.options, f.dims, plain).destroy();
    } finally {
      plain.destroy();
    }
  },
});
