/**
 * One tfjs test-time adaptation step over a view-stacked batch, shared by
 * `deno task bench ttda` (its tfjs engine) and the fused TTDA parity test:
 * one training-mode forward per view, the views' TTDA losses summed, one
 * gradient of the trainable (lr > 0) parameters, the BatchNorm running
 * statistics updated in view order, then one SGD step with a per-parameter
 * learning rate — the step the `test_time_adaptation` stage takes.
 *
 * @module
 */
import type { Scalar, Tensor, Tensor2D, Tensor3D } from "@tensorflow/tfjs";
import type { Tf } from "../pipeline/types.ts";
import type { Rng } from "../pipeline/rng.ts";
import type { AmautModel, BatchStat } from "./amaut.ts";
import { updateRunningStats } from "./amaut.ts";
import type { Sgd, SgdOptions } from "./sgd.ts";
import { ttdaLoss, type TtdaLossOptions } from "./ttda_loss.ts";

/** Settings of one TTDA step. */
export interface TtdaStepSettings {
  /** The TTDA loss rates (α, β, γ, q). */
  readonly rates: TtdaLossOptions;
  /** Learning rate of a parameter tensor by name (0 freezes it). */
  readonly lr: (name: string) => number;
  /** Momentum, weight decay and Nesterov of the SGD step. */
  readonly sgd: SgdOptions;
  /** Dropout randomness; view v draws from `rng.child(v)`. */
  readonly rng: Rng;
}

/**
 * Takes one TTDA step on `model` in place.
 *
 * @param tf The tfjs namespace.
 * @param model The model to adapt.
 * @param sgd The optimiser (keeps the momentum buffers).
 * @param tokens `[views·B, frames, nMels]`, view-major.
 * @param views Number of views V (B = rows / V).
 * @param settings Rates, learning rates, SGD options and dropout rng.
 * @returns The summed loss of the views (before the step).
 */
export async function tfjsTtdaStep(
  tf: Tf,
  model: AmautModel,
  sgd: Sgd,
  tokens: Tensor3D,
  views: number,
  settings: TtdaStepSettings,
): Promise<number> {
  const trainable = [...model.params].filter(([n]) => settings.lr(n) > 0);
  const nameOf = new Map(trainable.map(([n, v]) => [v.name, n]));
  const b = tokens.shape[0] / views;
  const stats: BatchStat[] = [];
  const { value, grads } = tf.variableGrads(() => {
    let loss: Tensor = tf.scalar(0);
    for (let v = 0; v < views; v++) {
      const view = tokens.slice([v * b, 0, 0], [b, -1, -1]);
      const out = model.apply(view, {
        training: true,
        rng: settings.rng.child(v),
      });
      stats.push(...out.batchStats);
      loss = loss.add(ttdaLoss(tf, out.logits as Tensor2D, settings.rates));
    }
    return loss as Scalar;
  }, trainable.map(([, v]) => v));
  const l = (await value.data())[0];
  updateRunningStats(tf, model, stats);
  sgd.step(
    Object.fromEntries(
      Object.entries(grads).map(([n, g]) => [nameOf.get(n) ?? n, g]),
    ),
    model.params,
    settings.lr,
    settings.sgd,
  );
  tf.dispose([
    value,
    ...Object.values(grads),
    ...stats.flatMap((s) => [s.mean, s.variance]),
  ] as Tensor[]);
  return l;
}
