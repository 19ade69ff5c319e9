import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import type { Batch, MapContext } from "../pipeline/types.ts";
import { stage } from "./tokenize.ts";

const ctx = { tf } as unknown as MapContext;

Deno.test("tokenize turns [b, nMels, frames] features into [b, frames, nMels] tokens", async () => {
  await tf.setBackend("cpu");
  const features = tf.tensor3d([[[1, 2, 3], [4, 5, 6]]]); // b=1, nMels=2, frames=3
  const batch: Batch = { size: 1, split: "train", phase: "fit", features };
  const tokens = stage.apply(batch, {}, ctx).tokens as tf.Tensor;
  assert.deepEqual(tokens.shape, [1, 3, 2]);
  assert.deepEqual(await tokens.array(), [[[1, 4], [2, 5], [3, 6]]]);
  tf.dispose([features, tokens]);
});

Deno.test("tokenize refuses input that is not a rank-3 features tensor", () => {
  const batch: Batch = {
    size: 1,
    split: "train",
    phase: "fit",
    features: [[1]],
  };
  assert.throws(
    () => stage.apply(batch, {}, ctx),
    /features must be a \[b, nMels, frames\] tensor/,
  );
});
