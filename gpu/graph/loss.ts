/**
 * Recorder of the training loss: the label-smoothed cross-entropy summed
 * over views of each view's batch mean (`model/loss.ts`), its gradient with
 * respect to the logits, and the loss and accuracy counters — one kernel,
 * so forward and backward are one op at the head of the backward list.
 *
 * @module
 */
import type { Region } from "../runtime.ts";
import { crossEntropy } from "../kernels/model_ops.ts";
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
