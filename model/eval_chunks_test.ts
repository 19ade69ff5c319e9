import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import type { Tensor, Tensor3D } from "@tensorflow/tfjs";
import { createRng } from "../pipeline/rng.ts";
import { largestTensorBytes, selectBackend } from "../pipeline/backend.ts";
import { gpuTests } from "../gpu/testing.ts";
import { createModel, ModelOptions, PAPER_MODELS } from "./amaut.ts";
import {
  checkTrainBatchFits,
  evalLogits,
  largestActivationBytes,
} from "./eval_chunks.ts";

await selectBackend("cpu");

function tinyModel(head: "avg" | "fce") {
  const options = ModelOptions.parse({
    width: 4,
    groups: [1, 1],
    embedDim: 16,
    depth: 1,
    heads: 2,
    mlpDim: 40,
    extend: 16,
    conv: 8,
    head,
  });
  const dims = { nMels: 8, frames: 64, classes: 3 };
  return createModel(tf, options, dims, createRng("eval_chunks", 1));
}

Deno.test("largestActivationBytes bounds the largest tensor a clip adds to a forward pass", async () => {
  for (const head of ["avg", "fce"] as const) {
    const model = tinyModel(head);
    const b = 6;
    const x = tf.randomNormal([b, 64, 8], 0, 1, "float32", 3) as Tensor3D;
    const prof = await tf.profile(() =>
      tf.tidy(() => model.apply(x, { training: false }).logits)
    );
    // The largest kernel output that grows with the batch, per clip.
    const largest = Math.max(
      ...prof.kernels.filter((k) => k.name !== "Identity").flatMap((k) =>
        k.outputShapes.map((s) =>
          4 * (s as number[]).reduce((p, q) => p * q, 1)
        )
      ),
    ) / b;
    tf.dispose([prof.result as Tensor, x]);
    const estimate = largestActivationBytes(model.options, model.dims);
    assert.ok(estimate >= largest, `${head}: ${estimate} < ${largest}`);
    assert.ok(estimate <= 3 * largest, `${head}: ${estimate} ≫ ${largest}`);
    model.dispose();
  }
  // CochlScene: the MLP's 94 × 3072 hidden layer, 1.1 MiB a clip.
  const cs = PAPER_MODELS.cs;
  assert.equal(largestActivationBytes(cs.options, cs.dims), 4 * 94 * 3072);
});

Deno.test("evalLogits in chunks equals one pass; a clip that cannot fit is named", async () => {
  const model = tinyModel("avg");
  const x = tf.randomNormal([5, 64, 8], 0, 1, "float32", 4) as Tensor3D;
  const perClip = largestActivationBytes(model.options, model.dims);
  const whole = evalLogits(tf, model, x); // cpu: Infinity, one pass
  const before = tf.memory().numTensors;
  const chunked = evalLogits(tf, model, x, 2 * perClip); // 2 + 2 + 1
  assert.equal(tf.memory().numTensors, before + 1);
  assert.deepEqual(chunked.shape, [5, 3]);
  const [a, c] = [await whole.data(), await chunked.data()];
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - c[i]) < 1e-5);
  assert.throws(
    () => evalLogits(tf, model, x, perClip - 4),
    /^RangeError: Cannot fit one clip's model activations \(64 frames\)/,
  );
  tf.dispose([whole, chunked, x]);
  model.dispose();
});

Deno.test("checkTrainBatchFits names the largest batch that fits", () => {
  const model = tinyModel("fce");
  const perClip = largestActivationBytes(model.options, model.dims);
  assert.equal(checkTrainBatchFits(tf, model, 70, 64, "x"), Infinity); // cpu
  assert.equal(
    checkTrainBatchFits(tf, model, 10, 64, "x", 10 * perClip),
    10,
  );
  assert.throws(
    () =>
      checkTrainBatchFits(
        tf,
        model,
        70,
        64,
        "test_time_adaptation.batchSize",
        10 * perClip + 5,
      ),
    /^Error: Cannot take a training step on 70 clips of 64 frames: its largest activation \(.+\) exceeds this GPU's .+ buffer limit; set test_time_adaptation.batchSize to at most 10$/,
  );
  model.dispose();
});

Deno.test({
  name:
    "evalLogits on WebGPU with a capped buffer limit runs in chunks and matches cpu",
  ignore: !gpuTests,
  async fn() {
    await selectBackend("cpu");
    const model = tinyModel("fce");
    const x = tf.randomNormal([5, 64, 8], 0, 1, "float32", 5) as Tensor3D;
    const want = evalLogits(tf, model, x);
    const expected = await want.data();
    want.dispose();
    const values = new Map(
      [...model.params, ...model.buffers].map(([n, v]) => [n, v.dataSync()]),
    );
    const xs = x.dataSync();
    x.dispose();
    model.dispose();
    const perClip = largestActivationBytes(model.options, model.dims);
    const cap = Math.max(1024, 2 * perClip);
    await selectBackend("webgpu", { maxBufferBytes: cap });
    try {
      assert.equal(largestTensorBytes(tf), cap);
      const gpuModel = tinyModel("fce");
      for (const [n, v] of [...gpuModel.params, ...gpuModel.buffers]) {
        v.assign(tf.tensor(values.get(n)!, v.shape));
      }
      const gx = tf.tensor3d(xs, [5, 64, 8]);
      const prof = await tf.profile(() => evalLogits(tf, gpuModel, gx));
      const largest = Math.max(
        ...prof.kernels.filter((k) => k.name !== "Identity").flatMap((k) =>
          k.outputShapes.map((s) =>
            4 * (s as number[]).reduce((p, q) => p * q, 1)
          )
        ),
      );
      assert.ok(largest <= cap, `largest tensor ${largest} B > cap ${cap} B`);
      const got = await (prof.result as Tensor).data();
      for (let i = 0; i < expected.length; i++) {
        assert.ok(Math.abs(got[i] - expected[i]) < 1e-3, `logit ${i}`);
      }
      tf.dispose([prof.result as Tensor, gx]);
      gpuModel.dispose();
    } finally {
      await selectBackend("cpu");
    }
  },
});
