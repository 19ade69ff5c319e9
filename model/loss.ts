/**
 * The AMAuT training loss: cross-entropy with label smoothing (reference §8,
 * paper Eq. 13; authors' `AuT/lib/loss.py`). The target is
 * (1 − ε)·onehot + ε/C and the loss is the batch mean of
 * −Σ target·log_softmax(logits). Training sums it over the views (Eq. 1).
 *
 * @module
 */
import type { Scalar, Tensor1D, Tensor2D } from "@tensorflow/tfjs";
import type { Tf } from "../pipeline/types.ts";

/**
 * Label-smoothed cross-entropy, averaged over the batch.
 *
 * @param tf The TF.js namespace.
 * @param logits Scores `[b, n]`.
 * @param labels Class ids `[b]`, int32.
 * @param epsilon Smoothing ε (reference: 0.1); 0 gives plain cross-entropy.
 * @returns The scalar loss.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import * as tf from "@tensorflow/tfjs";
 * import { labelSmoothedCrossEntropy } from "./loss.ts";
 * await tf.setBackend("cpu");
 * const loss = labelSmoothedCrossEntropy(
 *   tf,
 *   tf.tensor2d([[0, 0]]),
 *   tf.tensor1d([1], "int32"),
 * );
 * assert.ok(Math.abs((await loss.data())[0] - Math.LN2) < 1e-6);
 * ```
 */
export function labelSmoothedCrossEntropy(
  tf: Tf,
  logits: Tensor2D,
  labels: Tensor1D,
  epsilon = 0.1,
): Scalar {
  const [b, n] = logits.shape;
  if (labels.rank !== 1 || labels.shape[0] !== b) {
    throw new RangeError(
      `Cannot compute labelSmoothedCrossEntropy: labels [${labels.shape}] do not match logits [${logits.shape}]; pass one label per logits row`,
    );
  }
  return tf.tidy(() => {
    const logp = tf.logSoftmax(logits);
    const target = tf.add(
      tf.mul(tf.oneHot(tf.cast(labels, "int32"), n), 1 - epsilon),
      epsilon / n,
    );
    return tf.mul(tf.sum(tf.mul(target, logp)), -1 / b) as Scalar;
  });
}
