/**
 * The host side of the fused engine's dynamic loss scaling (issue 18):
 * allocating the GPU state buffer the kernels of
 * `gpu/kernels/loss_scale.ts` keep, and reading it at the trainer's read
 * points (the loss reads, every `readEvery` steps, and the epoch end) — the
 * steps themselves never wait for it. {@linkcode lossScaleMetrics} gives the
 * figures a `metrics.jsonl` line reports.
 *
 * @module
 */
import type { Region, Runtime } from "./runtime.ts";
import {
  initialLossScaleState,
  type LossScaleOptions,
  type LossScaleState,
  MIN_LOSS_SCALE,
  resolveLossScaleOptions,
} from "../model/loss_scale.ts";
import {
  decodeLossScaleState,
  encodeLossScaleState,
  LOSS_SCALE_WORDS,
} from "./kernels/loss_scale.ts";

/**
 * Allocates the loss-scale state buffer and writes its first state
 * (queued before the next submit).
 *
 * @param rt The runtime.
 * @param options Loss-scaling options (checked; PyTorch's defaults).
 * @param state The state to start from: default the initial state of
 *   `options` (a resumed run passes the state it saved).
 * @returns The region to bind as "lossScale" ({@linkcode LOSS_SCALE_WORDS}
 *   u32 words).
 * @throws {RangeError} On an option out of range.
 */
export function createLossScaleState(
  rt: Runtime,
  options: Partial<LossScaleOptions> = {},
  state?: LossScaleState,
): Region {
  const resolved = resolveLossScaleOptions(options);
  const region = rt.alloc("lossScale", LOSS_SCALE_WORDS);
  writeLossScaleState(rt, region, state ?? initialLossScaleState(resolved));
  return region;
}

/**
 * Overwrites the state (for example after a resume); queued before the
 * next submit, so steps already submitted see the old one.
 *
 * @param rt The runtime.
 * @param region The state region of {@linkcode createLossScaleState}.
 * @param state The new state.
 * @throws {RangeError} On a scale that is not a finite float32 ≥ 2⁻¹²⁶.
 */
export function writeLossScaleState(
  rt: Runtime,
  region: Region,
  state: LossScaleState,
): void {
  const scale = Math.fround(state.scale);
  if (!(scale >= MIN_LOSS_SCALE && Number.isFinite(scale))) {
    throw new RangeError(
      `Cannot set the loss scale to ${state.scale}: it must be a finite float32 ≥ 2⁻¹²⁶; start from the initial state`,
    );
  }
  rt.write(region, encodeLossScaleState({ ...state, scale }));
}

/**
 * Reads the state after every step submitted so far (one readback; call it
 * where the trainer reads its loss anyway).
 *
 * @param rt The runtime.
 * @param region The state region.
 * @returns The scale, counters and whether the last step was skipped.
 */
export async function readLossScale(
  rt: Runtime,
  region: Region,
): Promise<LossScaleState> {
  return decodeLossScaleState(await rt.read(region));
}

/** The loss-scaling figures of one `metrics.jsonl` line. */
export interface LossScaleMetrics {
  /** Loss scale after the last step (dimensionless). */
  readonly lossScale: number;
  /** Steps skipped for inf or NaN gradients since the run started. */
  readonly skippedSteps: number;
  /** Whether the last step was skipped. */
  readonly lastStepSkipped: boolean;
}

/**
 * The figures of a state that a `metrics.jsonl` line reports.
 *
 * @param s A state read by {@linkcode readLossScale}.
 */
export function lossScaleMetrics(s: LossScaleState): LossScaleMetrics {
  return {
    lossScale: s.scale,
    skippedSteps: s.skippedSteps,
    lastStepSkipped: s.lastSkipped,
  };
}
