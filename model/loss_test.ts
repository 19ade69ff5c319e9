import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { labelSmoothedCrossEntropy } from "./loss.ts";

Deno.test("labelSmoothedCrossEntropy matches hand-computed values", async () => {
  await tf.setBackend("cpu");
  const logits = tf.tensor2d([[1, 2, 3], [0, 0, 0]]);
  const labels = tf.tensor1d([2, 0], "int32");
  // Row 1: lse = 3 + ln(1 + e^-1 + e^-2); target (ε/3, ε/3, 1 − ε + ε/3),
  // loss = lse − Σ target·x = lse − 2.9 (ε = 0.1) or lse − 3 (ε = 0).
  // Row 2: ln 3 for any ε.
  const lse = 3 + Math.log(1 + Math.exp(-1) + Math.exp(-2));
  const cases: [number, number][] = [
    [0.1, (lse - 2.9 + Math.log(3)) / 2],
    [0, (lse - 3 + Math.log(3)) / 2],
    [1, (lse - 2 + Math.log(3)) / 2],
  ];
  for (const [eps, expected] of cases) {
    const loss = labelSmoothedCrossEntropy(tf, logits, labels, eps);
    assert.deepEqual(loss.shape, []);
    const v = (await loss.data())[0];
    assert.ok(Math.abs(v - expected) < 1e-6, `ε=${eps}: ${v} vs ${expected}`);
    loss.dispose();
  }
  const dflt = labelSmoothedCrossEntropy(tf, logits, labels);
  assert.ok(Math.abs((await dflt.data())[0] - cases[0][1]) < 1e-6);
  tf.dispose([logits, labels, dflt]);
});

Deno.test("labelSmoothedCrossEntropy gradient is (softmax − target) / b", async () => {
  await tf.setBackend("cpu");
  const logits = tf.tensor2d([[1, 2, 3]]);
  const labels = tf.tensor1d([0], "int32");
  const g = tf.grad((x: tf.Tensor) =>
    labelSmoothedCrossEntropy(tf, x as tf.Tensor2D, labels)
  )(logits);
  const p = [1, 2, 3].map(Math.exp);
  const s = p.reduce((a, b) => a + b);
  const target = [0.9 + 0.1 / 3, 0.1 / 3, 0.1 / 3];
  const got = await g.data();
  for (let i = 0; i < 3; i++) {
    assert.ok(Math.abs(got[i] - (p[i] / s - target[i])) < 1e-6);
  }
  tf.dispose([logits, labels, g]);
});

Deno.test("labelSmoothedCrossEntropy rejects labels that do not match", async () => {
  await tf.setBackend("cpu");
  const logits = tf.zeros([2, 3]) as tf.Tensor2D;
  const labels = tf.tensor1d([0], "int32");
  assert.throws(
    () => labelSmoothedCrossEntropy(tf, logits, labels),
    /do not match/,
  );
  tf.dispose([logits, labels]);
});
