import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { createRng } from "../pipeline/rng.ts";
import { createModel, ModelOptions } from "../model/amaut.ts";
import { loadModelFixture } from "../model/fixture.ts";
import { createFusedEngine, evalChunks, evalGraphRows } from "./engine.ts";
import { fixtureParity, stepParity } from "./parity.ts";
import { gpuTests, testRuntime } from "./testing.ts";

const FIXTURES = new URL(
  "../../shared/fixtures/reference/model/",
  import.meta.url,
);

for (const name of ["tiny_avg", "tiny_fce"]) {
  Deno.test({
    name:
      `fused engine matches the PyTorch fixture ${name}: eval logits, 2-view loss, every gradient`,
    ignore: !gpuTests,
    async fn() {
      await tf.setBackend("cpu");
      const rt = (await testRuntime())!;
      const f = await loadModelFixture(FIXTURES, name);
      const r = await fixtureParity(tf, rt.device, f);
      assert.ok(
        r.evalLogitsMaxAbs <= 1e-3,
        `eval logits ${r.evalLogitsMaxAbs}`,
      );
      assert.ok(r.lossRelative <= 1e-4, `loss ${r.lossRelative}`);
      assert.ok(
        r.worstGradient.relative <= 1e-3,
        `${r.worstGradient.name}: relative error ${r.worstGradient.relative}`,
      );
      assert.ok(r.zeroGradientNorm.ours < 1e-4, JSON.stringify(r));
      assert.equal(r.gradients, Object.keys(f.grads).length);
    },
  });
}

// The step and eval tests run on the fixtures' configurations and batch
// shapes (2 views × 4 clips, eval batches of 4): their kernels are the ones
// the fixture tests compiled already, which matters on llvmpipe, where LLVM
// spends about a second compiling each distinct kernel the first time.
const CONFIGS = { avg: "tiny_avg", fce: "tiny_fce" } as const;

/**
 * Standard-normal tokens of `rows` clips and the tfjs model's eval-mode
 * logits for them (the caller disposes `x`).
 */
async function evalReference(
  model: ReturnType<typeof createModel>,
  dims: { frames: number; nMels: number },
  rows: number,
  seed: number,
) {
  const rng = createRng("eval", seed);
  const data = Float32Array.from(
    { length: rows * dims.frames * dims.nMels },
    () => rng.normal(),
  );
  const x = tf.tensor3d(data, [rows, dims.frames, dims.nMels]);
  const ref = model.apply(x, { training: false }).logits;
  const want = await ref.data();
  ref.dispose();
  return { data, x, want };
}

/** Largest absolute difference of two arrays of the same length. */
function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let err = 0;
  for (let i = 0; i < a.length; i++) err = Math.max(err, Math.abs(a[i] - b[i]));
  return err;
}

// Model variants on top of a fixture's configuration: the layer options
// (e.g. the root convolution's geometry) run through both engines.
const STEP_CASES = [
  ["avg head", "avg", {}],
  ["fce head", "fce", {}],
  [
    "root conv kernel 5, stride 3, padding 1",
    "avg",
    { rootKernel: 5, rootStride: 3, rootPadding: 1 },
  ],
  ["no max-pool after the root conv", "avg", { rootPool: false }],
] as const;

for (const [label, head, extra] of STEP_CASES) {
  Deno.test({
    name:
      `fused engine: two SGD steps (momentum, weight decay, per-tensor lr) equal the tfjs cpu step, ${label} (${
        CONFIGS[head]
      })`,
    ignore: !gpuTests,
    async fn() {
      await tf.setBackend("cpu");
      const rt = (await testRuntime())!;
      const f = await loadModelFixture(FIXTURES, CONFIGS[head]);
      assert.equal(f.options.head, head);
      const r = await stepParity(
        tf,
        rt.device,
        // a variant's token count follows from its geometry
        ModelOptions.parse(
          Object.keys(extra).length
            ? { ...f.options, ...extra, tokens: undefined }
            : f.options,
        ),
        f.dims,
        { views: 2, perView: f.labels.length, steps: 2 },
      );
      assert.ok(
        Math.abs(r.loss.fused - r.loss.tfjs) <= 1e-4 * Math.abs(r.loss.tfjs),
        JSON.stringify(r.loss),
      );
      // float32 sums in another order: relative to each tensor's norm.
      assert.ok(r.worstWeight.relative <= 1e-4, JSON.stringify(r.worstWeight));
      assert.ok(
        r.worstMomentum.relative <= 1e-3,
        JSON.stringify(r.worstMomentum),
      );
      assert.ok(r.zeroGradientMaxAbs <= 1e-5, `${r.zeroGradientMaxAbs}`);
      assert.ok(r.evalLogitsMaxAbs <= 1e-4, `eval ${r.evalLogitsMaxAbs}`);
      assert.equal(r.momentumBuffers.fused, r.momentumBuffers.tfjs);
    },
  });
}

for (const head of ["avg", "fce"] as const) {
  Deno.test({
    name:
      `fused engine: eval logits equal the tfjs model's (cls tokens, ${head} head); dispatch counts are reported`,
    ignore: !gpuTests,
    async fn() {
      await tf.setBackend("cpu");
      const rt = (await testRuntime())!;
      const f = await loadModelFixture(FIXTURES, CONFIGS[head]);
      const options = ModelOptions.parse({ ...f.options, tokenMode: "cls" });
      const dims = f.dims;
      const rows = f.labels.length;
      const model = createModel(tf, options, dims, createRng("tiny", 4));
      const engine = createFusedEngine(tf, options, dims, rt.device);
      try {
        const { data, x, want } = await evalReference(model, dims, rows, 1);
        x.dispose();
        await engine.upload(model);
        const err = maxAbs(await engine.evalLogits(data, rows), want);
        assert.ok(err <= 1e-4, `eval logits max abs error ${err}`);
        const c = engine.counts(2, rows);
        assert.equal(c.total, c.forward + c.backward + c.update);
        assert.ok(
          c.forward > 10 && c.backward > c.forward && c.update >= 2,
          JSON.stringify(c),
        );
        // eval graphs fold BatchNorm and pack Q/K/V: fewer forward
        // dispatches, and a prepare list
        const e = engine.counts(1, rows, false);
        assert.ok(e.forward < c.forward && e.prepare > 0, JSON.stringify(e));
      } finally {
        engine.destroy();
        model.dispose();
      }
    },
  });
}

Deno.test({
  name:
    "fused engine: a batch over 32 rows runs in chunks on one eval graph, partial batches reuse it, and the logits equal the tfjs model's",
  ignore: !gpuTests,
  async fn() {
    await tf.setBackend("cpu");
    const rt = (await testRuntime())!;
    const f = await loadModelFixture(FIXTURES, CONFIGS.avg);
    const dims = f.dims;
    const model = createModel(tf, f.options, dims, createRng("tiny", 5));
    const engine = createFusedEngine(tf, f.options, dims, rt.device);
    try {
      const rows = 37;
      const { data, x, want } = await evalReference(model, dims, rows, 2);
      await engine.upload(model);
      const ours = await engine.evalLogits(data, rows);
      assert.ok(maxAbs(ours, want) <= 1e-4, `chunked ${maxAbs(ours, want)}`);
      const pipelines = engine.runtime.stats().pipelines;
      // A group: the 37-row batch as a tensor (chunks 32 + 5), then the
      // last 3 rows alone; no new graph, so no new pipeline.
      const group = engine.evalGroup(40 * dims.classes);
      await group.add(x, rows);
      const tail = x.slice([34, 0, 0], [3, -1, -1]);
      await group.add(tail, 3);
      const [all, last] = await group.read();
      group.destroy();
      tf.dispose([x, tail]);
      assert.ok(maxAbs(all, want) <= 1e-4, `group ${maxAbs(all, want)}`);
      const wantLast = want.subarray(34 * dims.classes);
      assert.ok(
        maxAbs(last, wantLast) <= 1e-4,
        `tail ${maxAbs(last, wantLast)}`,
      );
      assert.equal(engine.runtime.stats().pipelines, pipelines);
    } finally {
      engine.destroy();
      model.dispose();
    }
  },
});

Deno.test({
  name:
    "fused engine: a token array of the wrong size is refused with the expected shape",
  ignore: !gpuTests,
  async fn() {
    await tf.setBackend("cpu");
    const rt = (await testRuntime())!;
    const f = await loadModelFixture(FIXTURES, CONFIGS.avg);
    const engine = createFusedEngine(tf, f.options, f.dims, rt.device);
    const { frames, nMels } = f.dims;
    try {
      await assert.rejects(
        () => engine.evalLogits(new Float32Array(7), 2),
        new RegExp(
          `expected ${
            2 * frames * nMels
          } token values \\(2 × ${frames} × ${nMels}\\), got 7`,
        ),
      );
    } finally {
      engine.destroy();
    }
  },
});

Deno.test("evalChunks: batches over 32 rows run in chunks of 32, and a chunk reuses the smallest built graph that holds it", () => {
  assert.deepEqual([1, 2, 3, 5, 8, 24, 32, 33].map(evalGraphRows), [
    1,
    2,
    4,
    8,
    8,
    32,
    32,
    32,
  ]);
  // Nothing built: a batch of 24 builds the 32-row graph.
  assert.deepEqual(evalChunks(24, []), [{ at: 0, rows: 24, graphRows: 32 }]);
  // TTAu's 3 views × 32 clips: three chunks on one graph.
  assert.deepEqual(evalChunks(96, []), [
    { at: 0, rows: 32, graphRows: 32 },
    { at: 32, rows: 32, graphRows: 32 },
    { at: 64, rows: 32, graphRows: 32 },
  ]);
  // A last partial batch (and a partial chunk) runs on the built 32-row graph.
  assert.deepEqual(evalChunks(1, [32]), [{ at: 0, rows: 1, graphRows: 32 }]);
  assert.deepEqual(evalChunks(65, [32]), [
    { at: 0, rows: 32, graphRows: 32 },
    { at: 32, rows: 32, graphRows: 32 },
    { at: 64, rows: 1, graphRows: 32 },
  ]);
  // The smallest built graph that holds the chunk; a larger chunk builds.
  assert.deepEqual(evalChunks(3, [8, 32]), [{ at: 0, rows: 3, graphRows: 8 }]);
  assert.deepEqual(evalChunks(12, [8]), [{ at: 0, rows: 12, graphRows: 16 }]);
  assert.deepEqual(evalChunks(40, [8]), [
    { at: 0, rows: 32, graphRows: 32 },
    { at: 32, rows: 8, graphRows: 8 },
  ]);
});
