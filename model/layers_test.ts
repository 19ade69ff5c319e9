import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import {
  batchNorm,
  conv1d,
  gelu,
  layerNorm,
  maxPool1d,
  standardizeKernel,
  weightNorm,
} from "./layers.ts";

const close = (a: ArrayLike<number>, b: number[], tol = 1e-5) => {
  assert.equal(a.length, b.length);
  for (let i = 0; i < b.length; i++) {
    assert.ok(Math.abs(a[i] - b[i]) <= tol, `[${i}] ${a[i]} vs ${b[i]}`);
  }
};

Deno.test("standardizeKernel: per output channel over [k, in], biased variance", async () => {
  await tf.setBackend("cpu");
  // One output channel with values 1..4 over k=2, in=2: mean 2.5, var 1.25.
  const w = tf.tensor3d([1, 5, 2, 6, 3, 7, 4, 8], [2, 2, 2]);
  const s = standardizeKernel(tf, w, 1e-5);
  const d = 1 / Math.sqrt(1.25 + 1e-5);
  close(await s.data(), [
    -1.5 * d,
    -1.5 * d,
    -0.5 * d,
    -0.5 * d,
    0.5 * d,
    0.5 * d,
    1.5 * d,
    1.5 * d,
  ]);
  tf.dispose([w, s]);
});

Deno.test("conv1d pads like PyTorch and maxPool1d pads with -Infinity", async () => {
  await tf.setBackend("cpu");
  const x = tf.tensor3d([-5, -4, -3, -2, -1], [1, 5, 1]);
  // Kernel [1, 1, 1] over 3 taps, pad 1: sums of neighbours with zero edges.
  const y = conv1d(tf, x, tf.ones([3, 1, 1]) as tf.Tensor3D, { pad: 1 });
  close(await y.data(), [-9, -12, -9, -6, -3]);
  // Stride 2: floor((5 + 2 − 3) / 2) + 1 = 3 outputs.
  const z = conv1d(tf, x, tf.ones([3, 1, 1]) as tf.Tensor3D, {
    pad: 1,
    stride: 2,
  });
  close(await z.data(), [-9, -9, -3]);
  // All-negative input: zero padding would win the max, −∞ padding does not.
  const p = maxPool1d(tf, x, 3, 2, 1);
  close(await p.data(), [-4, -2, -1]);
  tf.dispose([x, y, z, p]);
});

Deno.test("batchNorm: batch statistics in training, running ones in eval", async () => {
  await tf.setBackend("cpu");
  const x = tf.tensor3d([1, 2, 3, 4], [2, 2, 1]);
  const p = {
    weight: tf.tensor1d([2]),
    bias: tf.tensor1d([1]),
    runningMean: tf.tensor1d([1]),
    runningVar: tf.tensor1d([4]),
  };
  const train = batchNorm(tf, x, p, 0, true);
  assert.equal(train.count, 4);
  close(await train.mean!.data(), [2.5]);
  close(await train.variance!.data(), [1.25]);
  const s = 2 / Math.sqrt(1.25);
  close(await train.y.data(), [
    -1.5 * s + 1,
    -0.5 * s + 1,
    0.5 * s + 1,
    1.5 * s + 1,
  ]);
  const ev = batchNorm(tf, x, p, 0, false);
  close(await ev.y.data(), [1, 2, 3, 4]);
  assert.throws(
    () => batchNorm(tf, tf.ones([1, 3]), p, 0, true),
    /Cannot run BatchNorm in training mode on 1 value per channel/,
  );
  tf.dispose([
    x,
    train.y,
    train.mean!,
    train.variance!,
    ev.y,
    ...Object.values(p),
  ]);
});

Deno.test("layerNorm, exact GELU and weightNorm", async () => {
  await tf.setBackend("cpu");
  const x = tf.tensor2d([[1, 3]]);
  const ln = layerNorm(
    tf,
    x,
    tf.ones([2]) as tf.Tensor1D,
    tf.zeros([2]) as tf.Tensor1D,
    0,
  );
  close(await ln.data(), [-1, 1]);
  const g = gelu(tf, tf.tensor1d([-1, 0, 1, 2]));
  // 0.5·x·(1 + erf(x/√2)) (values from PyTorch's exact GELU).
  close(await g.data(), [-0.15865525, 0, 0.84134475, 1.95449974], 1e-6);
  const w = weightNorm(
    tf,
    tf.tensor2d([[2, 1]]),
    tf.tensor2d([[3, 0], [4, 5]]),
  );
  close(await w.data(), [1.2, 0, 1.6, 1]);
  tf.dispose([x, ln, g, w]);
});
