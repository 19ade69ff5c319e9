/** Tests of the compile pool (worker threads that compile WGSL first). */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { compileWorkers, createCompilePool } from "./compile_pool.ts";
import { createFusedEngine } from "./engine.ts";
import { requestEngineDevice } from "./runtime.ts";
import { gpuTests } from "./testing.ts";
import { createModel } from "../model/amaut.ts";
import { createRng } from "../pipeline/rng.ts";
import { loadModelFixture } from "../model/fixture.ts";

const FIXTURES = new URL(
  "../../shared/fixtures/reference/model/",
  import.meta.url,
);

/** A small kernel whose text differs with `k`, so each is a new module. */
const kernel = (k: number) =>
  `@group(0) @binding(0) var<storage, read_write> a: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  if (g.x < arrayLength(&a)) { a[g.x] = a[g.x] * ${k + 1}.0 + 0.5; }
}`;

Deno.test("compileWorkers leaves two cores and uses at most 8", () => {
  assert.deepEqual([1, 2, 3, 4, 10, 64].map(compileWorkers), [
    0,
    0,
    1,
    2,
    8,
    8,
  ]);
});

Deno.test("createCompilePool refuses a worker count that is not a whole number ≥ 1", () => {
  assert.throws(
    () => createCompilePool(0),
    /Cannot start a compile pool of 0 workers: give a whole number ≥ 1/,
  );
});

Deno.test({
  name:
    "compile pool: workers compile every module they are given, and report a bad one as failed",
  ignore: !gpuTests,
  async fn() {
    const pool = createCompilePool(2);
    try {
      const codes = [0, 1, 2, 3, 4].map(kernel);
      assert.deepEqual(await pool.warm(codes), { done: 5, failed: 0 });
      assert.deepEqual(await pool.warm(["not wgsl"]), { done: 0, failed: 1 });
      assert.deepEqual(await pool.warm([]), { done: 0, failed: 0 });
    } finally {
      pool.close();
    }
  },
});

Deno.test({
  name:
    "fused engine with compile workers: a new eval graph is compiled on the workers first and gives the tfjs model's logits",
  ignore: !gpuTests,
  async fn() {
    await tf.setBackend("cpu");
    // A device of its own, so that no kernel of the graph is compiled yet.
    const device = await requestEngineDevice();
    const f = await loadModelFixture(FIXTURES, "tiny_avg");
    const model = createModel(tf, f.options, f.dims, createRng("tiny", 6));
    const engine = createFusedEngine(tf, f.options, f.dims, device, {
      compileWorkers: 2,
    });
    try {
      const rows = 3;
      const rng = createRng("eval", 3);
      const data = Float32Array.from(
        { length: rows * f.dims.frames * f.dims.nMels },
        () => rng.normal(),
      );
      const x = tf.tensor3d(data, [rows, f.dims.frames, f.dims.nMels]);
      const ref = model.apply(x, { training: false }).logits;
      const want = await ref.data();
      tf.dispose([x, ref]);
      await engine.upload(model);
      const ours = await engine.evalLogits(data, rows);
      assert.equal(ours.length, want.length);
      let err = 0;
      for (let i = 0; i < want.length; i++) {
        err = Math.max(err, Math.abs(ours[i] - want[i]));
      }
      assert.ok(err <= 1e-4, `eval logits max abs error ${err}`);
      assert.ok(engine.runtime.stats().pipelines >= 16);
    } finally {
      engine.destroy();
      model.dispose();
      device.destroy();
    }
  },
});
