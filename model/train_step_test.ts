import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { createRng } from "../pipeline/rng.ts";
import {
  createModel,
  labelSmoothedCrossEntropy,
  ModelOptions,
} from "./amaut.ts";
import type { BatchStat } from "./amaut.ts";
import { createSgd } from "./sgd.ts";
import { multiviewStep } from "./train_step.ts";

const OPTIONS = ModelOptions.parse({
  width: 4,
  groups: [1, 1],
  embedDim: 16,
  depth: 1,
  heads: 2,
  mlpDim: 32,
  extend: 16,
  conv: 8,
  dropout: 0,
});
const DIMS = { nMels: 8, frames: 40, classes: 3 };

Deno.test("multiviewStep equals one SGD step on the gradient of the summed view losses", async () => {
  await tf.setBackend("cpu");
  const a = createModel(tf, OPTIONS, DIMS, createRng("m", 1));
  const b = createModel(tf, OPTIONS, DIMS, createRng("m", 1));
  const tokens = tf.randomNormal(
    [3 * 4, DIMS.frames, DIMS.nMels],
    0,
    1,
    "float32",
    7,
  ) as tf.Tensor3D;
  const labels = tf.tensor1d([0, 1, 2, 1], "int32");
  const sgdOptions = { momentum: 0, weightDecay: 1e-3, nesterov: false };
  // a: the shared step (one backward pass per view, gradients summed).
  const sgdA = createSgd(tf);
  const out = multiviewStep(tf, a, sgdA, tokens, labels, 3, {
    smoothing: 0.1,
    lr: 0.1,
    sgd: sgdOptions,
    rng: createRng("d", 0),
  });
  // b: one backward pass through the summed loss.
  const sgdB = createSgd(tf);
  const nameOf = new Map([...b.params].map(([n, v]) => [v.name, n]));
  const stats: BatchStat[] = [];
  const { value, grads } = tf.variableGrads(() => {
    let loss = tf.scalar(0);
    for (let v = 0; v < 3; v++) {
      const o = b.apply(tokens.slice([4 * v, 0, 0], [4, -1, -1]), {
        training: true,
        rng: createRng("d", 0).child(v),
      });
      stats.push(...o.batchStats);
      loss = loss.add(labelSmoothedCrossEntropy(tf, o.logits, labels, 0.1));
    }
    return loss as tf.Scalar;
  }, [...b.params.values()]);
  sgdB.step(
    Object.fromEntries(
      Object.entries(grads).map(([k, g]) => [nameOf.get(k)!, g]),
    ),
    b.params,
    0.1,
    sgdOptions,
  );
  tf.dispose([
    ...stats.flatMap((s) => [s.mean, s.variance]),
    ...Object.values(grads),
  ]);
  assert.ok(
    Math.abs((await out.loss.data())[0] - (await value.data())[0]) < 1e-5,
  );
  assert.deepEqual(out.lastLogits.shape, [4, 3]);
  for (const [name, w] of a.params) {
    const x = await w.data();
    const y = await b.params.get(name)!.data();
    let err = 0;
    for (let i = 0; i < x.length; i++) {
      err = Math.max(err, Math.abs(x[i] - y[i]));
    }
    assert.ok(err < 1e-5, `${name}: ${err}`);
  }
  tf.dispose([out.loss, out.lastLogits, value]);
  tf.dispose([tokens, labels]);
  a.dispose();
  b.dispose();
});

Deno.test("multiviewStep leaves only its returned loss and logits behind", async () => {
  await tf.setBackend("cpu");
  const model = createModel(tf, OPTIONS, DIMS, createRng("m", 2));
  const tokens = tf.randomNormal([
    2 * 4,
    DIMS.frames,
    DIMS.nMels,
  ]) as tf.Tensor3D;
  const labels = tf.tensor1d([0, 1, 2, 1], "int32");
  const sgd = createSgd(tf);
  for (let step = 0; step < 3; step++) {
    const before = tf.memory().numTensors;
    const out = multiviewStep(tf, model, sgd, tokens, labels, 2, {
      smoothing: 0.1,
      lr: 0.1,
      sgd: { momentum: 0, weightDecay: 0, nesterov: false },
      rng: createRng("d", step),
    });
    assert.equal(tf.memory().numTensors, before + 2);
    tf.dispose([out.loss, out.lastLogits]);
  }
  tf.dispose([tokens, labels]);
  model.dispose();
});
