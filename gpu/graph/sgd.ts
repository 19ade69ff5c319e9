/**
 * Recorder of the update list of a training step: every BatchNorm's
 * running statistics from the step's per-view batch statistics (in forward
 * order, views in order), then one fused PyTorch SGD step over the whole
 * parameter arena (`model/sgd.ts`), the unused parameters left out.
 *
 * @module
 */
import type { Region } from "../runtime.ts";
import { runningStatsUpdate } from "../kernels/norm.ts";
import { sgdUpdate } from "../kernels/model_ops.ts";
import type { Builder } from "./builder.ts";

/**
 * Records the update and asks for the gradients to be cleared before each
 * step.
 *
 * @returns The SGD hyper-parameter region (`sgdHyper` of
 *   `gpu/kernels/model_ops.ts`, one learning rate per trained slot).
 */
export function recordUpdate(b: Builder): Region {
  const { arenas } = b;
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
  b.op(sgdUpdate({ total: arenas.params.size / 4, segments }), {
    params: arenas.params,
    grads: arenas.grads,
    momentum: arenas.momentum,
    hyper,
  });
  b.clears.unshift(arenas.grads);
  return hyper;
}
