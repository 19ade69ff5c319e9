/**
 * Recorders of the losses of a training graph: the label-smoothed
 * cross-entropy summed over views of each view's batch mean
 * (`model/loss.ts`), or TTDA's unsupervised `α·NM + β·EN + γ·GEN` summed over
 * views (`model/ttda_loss.ts`); each with its gradient with respect to the
 * logits and the loss counters — one kernel, so forward and backward are one
 * op at the head of the backward list. Opt-in (mixed precision, issue 18):
 * the multiplication of that logits gradient — the seed of the backward
 * pass — by the loss scale ({@linkcode recordLossScaleSeed}).
 *
 * @module
 */
import type { Region } from "../runtime.ts";
import { crossEntropy } from "../kernels/model_ops.ts";
import { lossScaleSeed } from "../kernels/loss_scale.ts";
import { ttdaLossKernel } from "../kernels/ttda_loss.ts";
import type { TtdaLossOptions } from "../../model/ttda_loss.ts";
import type { Builder } from "./builder.ts";

/** Label smoothing ε of a training graph unless its settings say otherwise. */
export const DEFAULT_SMOOTHING = 0.1;

/**
 * Records the loss of `logits` `[R, classes]` against one view's labels.
 *
 * @returns The logits' gradient, and the labels (i32 `[perView]`) and
 *   metrics (`[lossSum, correct, count, 0]`) regions the host writes and reads.
 */
export function recordLoss(
  b: Builder,
  o: { logits: Region; classes: number; smoothing?: number },
): { dlogits: Region; labels: Region; metrics: Region } {
  const labels = b.pinned("labels", b.perView);
  const metrics = b.pinned("metrics", 4);
  const dlogits = b.act("dlogits", b.rows * o.classes);
  b.op(
    crossEntropy({
      rows: b.rows,
      classes: o.classes,
      perView: b.perView,
      smoothing: o.smoothing ?? DEFAULT_SMOOTHING,
    }),
    { logits: o.logits, labels, dlogits, metrics },
  );
  return { dlogits, labels, metrics };
}

/**
 * Records the TTDA loss of `logits` `[R, classes]` (views of `perView`
 * clips, view-major; no labels).
 *
 * @param b The builder.
 * @param o The logits, class count and the rates α, β, γ and q.
 * @returns The logits' gradient and the metrics region (`[lossSum, 0,
 *   count, 0]`: the loss summed over views, accumulated per step).
 */
export function recordTtdaLoss(
  b: Builder,
  o: { logits: Region; classes: number; rates: TtdaLossOptions },
): { dlogits: Region; metrics: Region } {
  const metrics = b.pinned("metrics", 4);
  const dlogits = b.act("dlogits", b.rows * o.classes);
  b.op(
    ttdaLossKernel({
      rows: b.rows,
      classes: o.classes,
      perView: b.perView,
      ...o.rates,
    }),
    { logits: o.logits, dlogits, metrics },
  );
  return { dlogits, metrics };
}

/**
 * Records the multiplication of the backward pass's seed, the logits
 * gradient of {@linkcode recordLoss} or {@linkcode recordTtdaLoss}, by the
 * current loss scale (`gpu/kernels/loss_scale.ts`), in place: record it
 * right after the loss and before the first backward op. The loss metrics
 * stay unscaled. Not part of the fp32 graph; pair it with `recordUpdate(b,
 * lossScale)` (`sgd.ts`), which divides the scale out again.
 *
 * @param b The builder (its current list: "backward").
 * @param o The seed (`[rows, classes]`) and the loss-scale state region.
 */
export function recordLossScaleSeed(
  b: Builder,
  o: { dlogits: Region; lossScale: Region },
): void {
  b.op(lossScaleSeed({ n: o.dlogits.size / 4 }), {
    dlogits: o.dlogits,
    lossScale: o.lossScale,
  });
}
