/**
 * One AMAuT training step over a view-stacked batch, shared by the `train`
 * stage and `deno task bench train`: a forward and backward pass per view (so
 * BatchNorm statistics are per view, as in the reference), the views'
 * gradients summed — the gradient of the summed loss, Eq. 1 — then the
 * BatchNorm running-stat updates and one SGD step. Doing the backward pass
 * view by view frees each view's activations before the next, so peak memory
 * is that of one view, not four.
 *
 * @module
 */
import type {
  Scalar,
  Tensor,
  Tensor1D,
  Tensor2D,
  Tensor3D,
} from "@tensorflow/tfjs";
import type { Tf } from "../pipeline/types.ts";
import type { Rng } from "../pipeline/rng.ts";
import type { AmautModel, BatchStat } from "./amaut.ts";
import { labelSmoothedCrossEntropy, updateRunningStats } from "./amaut.ts";
import type { Sgd, SgdOptions } from "./sgd.ts";

/** Settings of one step. */
export interface StepSettings {
  /** Label smoothing ε. */
  readonly smoothing: number;
  /** Learning rate (one per parameter tensor: a number or a function of the name). */
  readonly lr: number | ((name: string) => number);
  /** Momentum, weight decay and Nesterov of this epoch. */
  readonly sgd: SgdOptions;
  /** Dropout randomness of this step (view v uses `rng.child(v)`). */
  readonly rng: Rng;
}

/**
 * Runs one training step.
 *
 * @param tf TensorFlow.js on the chosen backend.
 * @param model The model (updated in place).
 * @param sgd The optimizer (its momentum buffers are updated).
 * @param tokens `[V·b, frames, nMels]`, views stacked view-major.
 * @param labels `[b]` int32 labels (the same for every view).
 * @param views Number of views V.
 * @param settings Smoothing, learning rate, SGD options, dropout randomness.
 * @returns The summed loss over the views and the last view's logits
 *   (the reference's training accuracy uses them); the caller disposes both.
 */
export function multiviewStep(
  tf: Tf,
  model: AmautModel,
  sgd: Sgd,
  tokens: Tensor3D,
  labels: Tensor1D,
  views: number,
  settings: StepSettings,
): { loss: Scalar; lastLogits: Tensor2D } {
  const b = tokens.shape[0] / views;
  const vars = [...model.params.values()];
  const nameOf = new Map([...model.params].map(([n, v]) => [v.name, n]));
  const stats: BatchStat[] = [];
  const total = new Map<string, Tensor>();
  let loss: Scalar = tf.scalar(0);
  let lastLogits: Tensor2D | undefined;
  for (let v = 0; v < views; v++) {
    const { value, grads } = tf.variableGrads(() => {
      const view = views === 1
        ? tokens
        : tokens.slice([v * b, 0, 0], [b, -1, -1]);
      const out = model.apply(view, {
        training: true,
        rng: settings.rng.child(v),
      });
      stats.push(...out.batchStats); // kept by apply; disposed below
      if (v === views - 1) lastLogits = tf.keep(out.logits);
      return labelSmoothedCrossEntropy(
        tf,
        out.logits,
        labels,
        settings.smoothing,
      ) as Scalar;
    }, vars);
    for (const [varName, g] of Object.entries(grads)) {
      const name = nameOf.get(varName) ?? varName;
      const before = total.get(name);
      if (before) {
        total.set(name, tf.add(before, g));
        tf.dispose([before, g]);
      } else total.set(name, g);
    }
    const next = tf.add(loss, value) as Scalar;
    tf.dispose([loss, value]);
    loss = next;
  }
  updateRunningStats(tf, model, stats);
  tf.dispose(stats.flatMap((s) => [s.mean, s.variance]));
  sgd.step(Object.fromEntries(total), model.params, settings.lr, settings.sgd);
  tf.dispose([...total.values()]);
  return { loss, lastLogits: lastLogits! };
}
