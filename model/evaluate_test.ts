import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { createRng } from "../pipeline/rng.ts";
import { createModel } from "./amaut.ts";
import { evaluate, evaluateLogits } from "./evaluate.ts";
import {
  memoryData,
  memorySplit,
  TINY_DIMS,
  TINY_OPTIONS,
} from "./trainer_testing.ts";

/** Mean cross-entropy and accuracy of logits rows, in float64 from the softmax definition. */
function score(
  logits: Float32Array,
  labels: readonly number[],
  classes: number,
) {
  let loss = 0;
  let hits = 0;
  labels.forEach((y, i) => {
    const row = Array.from(logits.subarray(i * classes, (i + 1) * classes));
    const z = row.reduce((s, v) => s + Math.exp(v), 0);
    loss -= Math.log(Math.exp(row[y]) / z);
    if (row.indexOf(Math.max(...row)) === y) hits++;
  });
  return { loss: loss / labels.length, accuracy: hits / labels.length };
}

Deno.test("evaluate and evaluateLogits give the mean cross-entropy and accuracy of the eval-mode logits, in split order", async () => {
  await tf.setBackend("cpu");
  const model = createModel(tf, TINY_OPTIONS, TINY_DIMS, createRng("m", 4));
  const split = memorySplit(8, TINY_DIMS, 4);
  const data = memoryData(tf, { test: split }, TINY_DIMS);
  const x = tf.tensor3d(split.tokens, [8, TINY_DIMS.frames, TINY_DIMS.nMels]);
  const all = model.apply(x, { training: false }).logits;
  const logits = Float32Array.from(await all.data());
  tf.dispose([x, all]);
  const want = score(logits, split.labels, TINY_DIMS.classes);
  try {
    const tensors = tf.memory().numTensors;
    const kept = await evaluate({ tf, data }, model, "test", 3, {
      keepLogits: true,
    });
    assert.equal(tf.memory().numTensors, tensors, "evaluate leaked tensors");
    assert.ok(
      Math.abs(kept.loss - want.loss) <= 1e-5 * want.loss,
      `${kept.loss} vs ${want.loss}`,
    );
    assert.equal(kept.accuracy, want.accuracy);
    assert.deepEqual(kept.labels, split.labels);
    assert.equal(kept.logits.length, 8 * TINY_DIMS.classes);
    for (let i = 0; i < logits.length; i++) {
      assert.ok(Math.abs(kept.logits[i] - logits[i]) <= 1e-5, `logit ${i}`);
    }
    assert.equal(
      (await evaluate({ tf, data }, model, "test", 3)).logits.length,
      0,
    );

    // The host scoring of the fused path, fed the tfjs model's logits.
    const rows: number[] = [];
    const host = await evaluateLogits(data, "test", 3, async (tokens, n) => {
      rows.push(n);
      const out = model.apply(tokens, { training: false }).logits;
      const values = Float32Array.from(await out.data());
      out.dispose();
      return values;
    });
    assert.deepEqual(rows, [3, 3, 2]);
    assert.ok(
      Math.abs(host.loss - want.loss) <= 1e-5 * want.loss,
      `${host.loss} vs ${want.loss}`,
    );
    assert.equal(host.accuracy, want.accuracy);
    assert.deepEqual(host.labels, split.labels);
    assert.deepEqual(host.logits, kept.logits);
  } finally {
    model.dispose();
  }
});

Deno.test("evaluate on an empty split gives NaN loss and accuracy", async () => {
  await tf.setBackend("cpu");
  const model = createModel(tf, TINY_OPTIONS, TINY_DIMS, createRng("m", 5));
  const data = memoryData(tf, {
    none: { tokens: new Float32Array(0), labels: [] },
  }, TINY_DIMS);
  try {
    const r = await evaluate({ tf, data }, model, "none", 4);
    assert.ok(Number.isNaN(r.loss) && Number.isNaN(r.accuracy));
    const h = await evaluateLogits(
      data,
      "none",
      4,
      () => Promise.reject(new Error("no batch expected")),
    );
    assert.ok(Number.isNaN(h.loss) && Number.isNaN(h.accuracy));
  } finally {
    model.dispose();
  }
});
