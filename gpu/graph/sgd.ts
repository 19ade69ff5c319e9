/**
 * Recorder of the update list of a training step: every BatchNorm's
 * running statistics from the step's per-view batch statistics (in forward
 * order, views in order), then one fused PyTorch SGD step over the whole
 * parameter arena (`model/sgd.ts`), the unused parameters left out. Opt-in
 * (mixed precision, issue 18): a loss-scaled update — the scan of the
 * gradient arena for inf/NaN first, the SGD step that unscales and skips a
 * flagged step, and the loss-scale policy update last
 * (`gpu/kernels/loss_scale.ts`).
 *
 * @module
 */
import type { Region } from "../runtime.ts";
import { runningStatsUpdate } from "../kernels/norm.ts";
import { sgdUpdate } from "../kernels/model_ops.ts";
import { lossScaleUpdate, nonFiniteScan } from "../kernels/loss_scale.ts";
import type { LossScaleOptions } from "../../model/loss_scale.ts";
import type { Builder } from "./builder.ts";

/** The loss scaling of a mixed-precision step. */
export interface LossScaleRecord {
  /** The state region (`createLossScaleState` of `gpu/loss_scale.ts`). */
  readonly state: Region;
  /** Options (`model/loss_scale.ts`; PyTorch's defaults), as given to the state. */
  readonly options?: Partial<LossScaleOptions>;
}

/**
 * Records the update and asks for the gradients to be cleared before each
 * step.
 *
 * @param b The builder (its current list: "update").
 * @param lossScale Given (a mixed-precision step whose loss seed was
 *   scaled, `recordLossScaleSeed` of `loss.ts`): the scan of the whole
 *   gradient arena (its gaps are cleared with it, so they stay finite),
 *   then the running statistics (BatchNorm updates them in the forward
 *   pass, as PyTorch, so a skipped step keeps them), the loss-scaled SGD
 *   step and the policy update. Absent: the fp32 update, unchanged.
 * @returns The SGD hyper-parameter region (`sgdHyper` of
 *   `gpu/kernels/model_ops.ts`, one learning rate per trained slot).
 */
export function recordUpdate(
  b: Builder,
  lossScale?: LossScaleRecord,
): Region {
  const { arenas } = b;
  if (lossScale) {
    b.op(nonFiniteScan({ sizes: [arenas.grads.size / 4] }), {
      grads0: arenas.grads,
      lossScale: lossScale.state,
    });
  }
  for (const r of b.batchStats) {
    b.op(
      runningStatsUpdate({
        groups: b.groups,
        channels: r.norm.channels,
        momentum: r.norm.momentum,
        count: r.rows,
      }),
      { stats: r.stats, running: arenas.runningOf(r.norm.module) },
    );
  }
  const segments = arenas.slots.filter((s) => s.trained).map((s) => ({
    offset: s.offset,
    size: s.size,
  }));
  const hyper = b.pinned("hyper", 8 + segments.length);
  b.op(
    sgdUpdate({
      total: arenas.params.size / 4,
      segments,
      lossScale: lossScale !== undefined,
    }),
    {
      params: arenas.params,
      grads: arenas.grads,
      momentum: arenas.momentum,
      hyper,
      lossScale: lossScale?.state,
    },
  );
  if (lossScale) {
    b.op(lossScaleUpdate(lossScale.options), {
      lossScale: lossScale.state,
      hyper,
    });
  }
  b.clears.unshift(arenas.grads);
  return hyper;
}
