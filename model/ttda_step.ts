/**
 * One tfjs test-time adaptation step over a view-stacked batch, the step of
 * the `test_time_adaptation` stage's tfjs engine, also used by
 * `deno task bench ttda` and the fused TTDA parity test: one training-mode
 * forward per view, the views' TTDA losses summed, the gradient of the
 * trainable (lr > 0) parameters (summed per view, see
 * {@linkcode ttdaGradients}), the BatchNorm running statistics updated in
 * view order, then one SGD step with a per-parameter learning rate.
 *
 * @module
 */
import type { Tensor, Tensor2D, Tensor3D, Variable } from "@tensorflow/tfjs";
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
  /**
   * Called when reading the loss back fails; may throw a clearer error (the
   * default rethrows `error`). Nothing is applied then.
   */
  readonly onReadError?: (error: unknown) => never;
  /**
   * Called with the summed loss before the step is applied; throwing skips
   * the step (the model is left as it was).
   */
  readonly check?: (loss: number) => void;
}

/**
 * The TTDA loss of a batch of `views` equal views (`tokens` `[views·b, …]`)
 * and its gradients, one view at a time: the loss is a sum over views, each
 * with its own BatchNorm statistics and dropout stream, so the summed
 * per-view gradients equal the joint ones (to rounding) with only one view's
 * activations alive (CS: 70 clips of 10 s, not 140). Appends each view's
 * batch statistics to `o.stats` (the caller disposes them).
 *
 * @param tf The tfjs namespace.
 * @param model The model (training-mode forward).
 * @param tokens `[views·B, frames, nMels]`, view-major.
 * @param views Number of views V (B = rows / V).
 * @param o Dropout rng, loss rates, the variables to differentiate and the
 *   list the batch statistics are appended to.
 * @returns The summed loss (a scalar) and the summed gradients by variable name.
 */
export function ttdaGradients(
  tf: Tf,
  model: AmautModel,
  tokens: Tensor3D,
  views: number,
  o: {
    rng: Rng;
    rates: TtdaLossOptions;
    vars: Variable[];
    stats: BatchStat[];
  },
): { value: Tensor; grads: Record<string, Tensor> } {
  const b = tokens.shape[0] / views;
  let value: Tensor = tf.scalar(0);
  const grads: Record<string, Tensor> = {};
  for (let v = 0; v < views; v++) {
    const part = tf.variableGrads(() => {
      const view = tokens.slice([v * b, 0, 0], [b, -1, -1]);
      const out = model.apply(view, { training: true, rng: o.rng.child(v) });
      o.stats.push(...out.batchStats); // kept by apply
      return ttdaLoss(tf, out.logits as Tensor2D, o.rates);
    }, o.vars);
    const sum = tf.add(value, part.value);
    tf.dispose([value, part.value]);
    value = sum;
    for (const [n, g] of Object.entries(part.grads)) {
      const prev = grads[n];
      grads[n] = prev ? tf.add(prev, g) : g;
      if (prev) tf.dispose([prev, g]);
    }
  }
  return { value, grads };
}

/**
 * Takes one TTDA step on `model` in place.
 *
 * @param tf The tfjs namespace.
 * @param model The model to adapt.
 * @param sgd The optimiser (keeps the momentum buffers).
 * @param tokens `[views·B, frames, nMels]`, view-major.
 * @param views Number of views V (B = rows / V).
 * @param settings Rates, learning rates, SGD options, dropout rng and the
 *   optional read-error and loss hooks.
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
  const stats: BatchStat[] = [];
  const { value, grads } = ttdaGradients(tf, model, tokens, views, {
    rng: settings.rng,
    rates: settings.rates,
    vars: trainable.map(([, v]) => v),
    stats,
  });
  try {
    let l: number;
    try {
      l = (await value.data())[0];
    } catch (error) {
      if (settings.onReadError) settings.onReadError(error);
      throw error;
    }
    settings.check?.(l);
    updateRunningStats(tf, model, stats);
    sgd.step(
      Object.fromEntries(
        Object.entries(grads).map(([n, g]) => [nameOf.get(n) ?? n, g]),
      ),
      model.params,
      settings.lr,
      settings.sgd,
    );
    return l;
  } finally {
    tf.dispose([
      value,
      ...Object.values(grads),
      ...stats.flatMap((s) => [s.mean, s.variance]),
    ] as Tensor[]);
  }
}
