/**
 * Layout checks of map-stage outputs: tensors and per-example arrays, fixed
 * and named axes, dtypes, and the error text.
 *
 * @module
 */
import assert from "node:assert/strict";
import { checkLayouts, formatLayoutProblems } from "./layout_check.ts";
import type { Batch } from "./types.ts";
import { selectBackend } from "./backend.ts";

const { tf } = await selectBackend("cpu");

const batch = (fields: Record<string, unknown>, size = 2): Batch => ({
  size,
  split: "train",
  phase: "fit",
  ...fields,
});

Deno.test("checkLayouts passes matching tensors and arrays, binding named axes across keys", () => {
  tf.tidy(() => {
    const b = batch({
      tokens: tf.zeros([2, 5, 8]),
      features: tf.zeros([2, 8, 5]),
      waveform: [new Float32Array(100), new Float32Array(100)],
      label: [0, 1],
    });
    assert.deepEqual(
      checkLayouts(b, {
        tokens: { shape: ["b", "t", 8], dtype: "float32" },
        features: { shape: ["b", 8, "t"] },
        waveform: { shape: ["b", "s"], dtype: "float32" },
        label: { shape: ["b"], dtype: "int32" },
      }, tf),
      [],
    );
  });
});

Deno.test("checkLayouts names the key, expected and actual layout of each mismatch", () => {
  tf.tidy(() => {
    const b = batch({
      tokens: tf.zeros([2, 5, 7]),
      features: tf.zeros([2, 8, 6]),
      label: [0.5, 1],
    });
    const problems = checkLayouts(b, {
      tokens: { shape: ["b", "t", 8], dtype: "float32" },
      features: { shape: ["b", 8, "t"] }, // t is 5 from tokens
      label: { shape: ["b"], dtype: "int32" },
      missing: { shape: ["b"] },
    }, tf);
    assert.deepEqual(problems, [
      {
        key: "tokens",
        expected: "[b, t, 8] float32",
        actual: "[2, 5, 7] float32",
      },
      { key: "features", expected: "[b, 8, t]", actual: "[2, 8, 6] float32" },
      { key: "label", expected: "[b] int32", actual: "[2] float32" },
      { key: "missing", expected: "[b]", actual: "nothing" },
    ]);
    assert.equal(
      formatLayoutProblems("my_stage", "fit", problems.slice(0, 1), 2),
      'Cannot use the output of map stage "my_stage" (phase fit): key "tokens" should be [b, t, 8] float32 and is [2, 5, 7] float32 (b = 2, the batch size); fix the stage\'s apply or its declared layouts',
    );
  });
});

Deno.test("checkLayouts holds b to the batch size", () => {
  tf.tidy(() => {
    const problems = checkLayouts(
      batch({ tokens: tf.zeros([3, 5, 8]) }, 2),
      { tokens: { shape: ["b", "t", 8] } },
      tf,
    );
    assert.equal(problems.length, 1);
    assert.equal(problems[0].actual, "[3, 5, 8] float32");
  });
});
