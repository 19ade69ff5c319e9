import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { createRng } from "../pipeline/rng.ts";
import { createModel, type ModelDims, ModelOptions } from "../model/amaut.ts";
import { loadModelFixture } from "../model/fixture.ts";
import { createFusedEngine } from "./engine.ts";
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

const TINY = {
  width: 4,
  groups: [0, 1],
  embedDim: 16,
  depth: 2,
  heads: 2,
  mlpDim: 32,
  extend: 24,
  conv: 8,
};
const DIMS: ModelDims = { nMels: 6, frames: 24, classes: 3 };

const STEP_CASES = [
  ["avg head", { head: "avg" }],
  ["fce head", { head: "fce" }],
  [
    "root conv kernel 5, stride 3, padding 1",
    { rootKernel: 5, rootStride: 3, rootPadding: 1 },
  ],
  ["no max-pool after the root conv", { rootPool: false }],
] as const;

for (const [label, extra] of STEP_CASES) {
  Deno.test({
    name:
      `fused engine: two SGD steps (momentum, weight decay, per-tensor lr) equal the tfjs cpu step, ${label}`,
    ignore: !gpuTests,
    async fn() {
      await tf.setBackend("cpu");
      const rt = (await testRuntime())!;
      const r = await stepParity(
        tf,
        rt.device,
        ModelOptions.parse({ ...TINY, ...extra }),
        DIMS,
        { views: 2, perView: 3, steps: 2 },
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
      const options = ModelOptions.parse({ ...TINY, head, tokenMode: "cls" });
      const model = createModel(tf, options, DIMS, createRng("tiny", 4));
      const engine = createFusedEngine(tf, options, DIMS, rt.device);
      try {
        const rng = createRng("eval", 1);
        const data = Float32Array.from(
          { length: 5 * DIMS.frames * DIMS.nMels },
          () => rng.normal(),
        );
        const x = tf.tensor3d(data, [5, DIMS.frames, DIMS.nMels]);
        const ref = model.apply(x, { training: false }).logits;
        const want = await ref.data();
        tf.dispose([x, ref]);
        await engine.upload(model);
        const ours = await engine.evalLogits(data, 5);
        let err = 0;
        for (let i = 0; i < want.length; i++) {
          err = Math.max(err, Math.abs(ours[i] - want[i]));
        }
        assert.equal(ours.length, want.length);
        assert.ok(err <= 1e-4, `eval logits max abs error ${err}`);
        const c = engine.counts(2, 3);
        assert.equal(c.total, c.forward + c.backward + c.update);
        assert.ok(
          c.forward > 10 && c.backward > c.forward && c.update >= 2,
          JSON.stringify(c),
        );
        // eval graphs fold BatchNorm and pack Q/K/V: fewer forward
        // dispatches, and a prepare list
        const e = engine.counts(1, 5, false);
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
    "fused engine: a token array of the wrong size is refused with the expected shape",
  ignore: !gpuTests,
  async fn() {
    await tf.setBackend("cpu");
    const rt = (await testRuntime())!;
    const engine = createFusedEngine(
      tf,
      ModelOptions.parse(TINY),
      DIMS,
      rt.device,
    );
    try {
      await assert.rejects(
        () => engine.evalLogits(new Float32Array(7), 2),
        /expected 288 token values \(2 × 24 × 6\), got 7/,
      );
    } finally {
      engine.destroy();
    }
  },
});
