/**
 * Dynamic loss scaling (issue 18, mixed precision): the policy of PyTorch's
 * `torch.amp.GradScaler` as plain TypeScript. The loss gradient is
 * multiplied by `scale` before the backward pass so that small f16
 * gradients do not flush to zero; the optimizer divides it out again. A
 * step whose gradients hold an inf or NaN is skipped (weights and momentum
 * untouched) and the scale backs off; after `growthInterval` good steps in
 * a row it grows.
 *
 * This module is the reference the fused engine's GPU kernels
 * (`gpu/kernels/loss_scale.ts`) are tested against, and the one place the
 * options are checked. Scales are float32 values (the GPU holds them as
 * float32), so every product is rounded with `Math.fround`.
 *
 * @module
 */

/** Options of dynamic loss scaling (PyTorch GradScaler's, same defaults). */
export interface LossScaleOptions {
  /** Scale of the first step (dimensionless, > 0; default 2¹⁶). */
  readonly initScale: number;
  /** Factor applied after `growthInterval` good steps in a row (> 1; default 2). */
  readonly growthFactor: number;
  /** Factor applied after a step with an inf or NaN gradient (in (0, 1); default 0.5). */
  readonly backoffFactor: number;
  /** Good steps in a row before the scale grows (integer ≥ 1; default 2000). */
  readonly growthInterval: number;
}

/** PyTorch GradScaler's defaults. */
export const DEFAULT_LOSS_SCALE: LossScaleOptions = {
  initScale: 2 ** 16,
  growthFactor: 2,
  backoffFactor: 0.5,
  growthInterval: 2000,
};

/**
 * Smallest scale the policy keeps (2⁻¹²⁶, the smallest normal float32):
 * backing off never goes below it, so `1/scale` stays finite. PyTorch lets
 * the scale reach 0 after ~150 overflowing steps in a row, where its
 * unscaling turns every gradient into NaN.
 */
export const MIN_LOSS_SCALE = 2 ** -126;

/** Largest finite float32. */
const MAX_F32 = 3.4028234663852886e38;

/**
 * The loss-scaling state, as the GPU holds it (`gpu/kernels/loss_scale.ts`).
 */
export interface LossScaleState {
  /** Current scale (a float32 value). */
  readonly scale: number;
  /** Good steps since the scale last changed (PyTorch's growth tracker). */
  readonly goodSteps: number;
  /** Steps skipped so far because a gradient was inf or NaN. */
  readonly skippedSteps: number;
  /** Whether the last step was skipped. */
  readonly lastSkipped: boolean;
  /**
   * A skipped step was the first one with momentum on: the next step that
   * is taken starts the momentum buffers from its gradient (PyTorch creates
   * them at the first step that runs).
   */
  readonly firstPending: boolean;
  /** Steps seen (taken or skipped). */
  readonly steps: number;
}

/**
 * Checks loss-scaling options and fills in the defaults.
 *
 * @param o Options, each optional.
 * @param where What the options belong to, for the error (default
 *   `"loss scaling"`), e.g. `"train.lossScale"`.
 * @returns Complete options.
 * @throws {RangeError} On a value out of range, naming it and what to do.
 */
export function resolveLossScaleOptions(
  o: Partial<LossScaleOptions> = {},
  where = "loss scaling",
): LossScaleOptions {
  const r = { ...DEFAULT_LOSS_SCALE, ...o };
  const bad = (key: string, want: string, got: number) =>
    new RangeError(
      `Cannot use ${where}: ${key} must be ${want}, got ${got}; fix it or leave it out for the default`,
    );
  const init = Math.fround(r.initScale);
  if (!(init >= MIN_LOSS_SCALE && init <= MAX_F32)) {
    throw bad("initScale", "a finite float32 number ≥ 2⁻¹²⁶", r.initScale);
  }
  if (!(r.growthFactor > 1 && Number.isFinite(r.growthFactor))) {
    throw bad("growthFactor", "a finite number > 1", r.growthFactor);
  }
  if (!(r.backoffFactor > 0 && r.backoffFactor < 1)) {
    throw bad("backoffFactor", "a number in (0, 1)", r.backoffFactor);
  }
  if (
    !Number.isInteger(r.growthInterval) || r.growthInterval < 1 ||
    r.growthInterval >= 2 ** 31
  ) {
    throw bad("growthInterval", "an integer in 1…2³¹ − 1", r.growthInterval);
  }
  return r;
}

/**
 * The state before the first step.
 *
 * @param o Complete options ({@linkcode resolveLossScaleOptions}).
 */
export function initialLossScaleState(o: LossScaleOptions): LossScaleState {
  return {
    scale: Math.fround(o.initScale),
    goodSteps: 0,
    skippedSteps: 0,
    lastSkipped: false,
    firstPending: false,
    steps: 0,
  };
}

/**
 * One step of the policy (PyTorch's `_amp_update_scale_`): on an inf or NaN
 * gradient the step is skipped, `scale ← max(scale·backoff, 2⁻¹²⁶)` and the
 * good-step counter resets; otherwise the counter grows, and when it
 * reaches `growthInterval` it resets and `scale ← scale·growth` (kept only
 * when finite). Products are rounded to float32.
 *
 * @param s The state before the step.
 * @param overflow Whether the step's gradients held an inf or NaN.
 * @param o Complete options.
 * @param first Whether the step was the first with momentum on (its
 *   skipping leaves the momentum start pending).
 * @returns The state after the step.
 */
export function lossScaleStep(
  s: LossScaleState,
  overflow: boolean,
  o: LossScaleOptions,
  first = false,
): LossScaleState {
  const steps = s.steps + 1;
  if (overflow) {
    return {
      scale: Math.max(
        Math.fround(s.scale * Math.fround(o.backoffFactor)),
        MIN_LOSS_SCALE,
      ),
      goodSteps: 0,
      skippedSteps: s.skippedSteps + 1,
      lastSkipped: true,
      firstPending: first || s.firstPending,
      steps,
    };
  }
  const good = s.goodSteps + 1;
  let scale = s.scale;
  let goodSteps = good;
  if (good >= o.growthInterval) {
    const grown = Math.fround(s.scale * Math.fround(o.growthFactor));
    if (Number.isFinite(grown)) scale = grown;
    goodSteps = 0;
  }
  return {
    scale,
    goodSteps,
    skippedSteps: s.skippedSteps,
    lastSkipped: false,
    firstPending: false,
    steps,
  };
}

/**
 * Name of the loss-scaling state in a checkpoint's `optimizer` group (next
 * to the momentum buffers, which are named after parameters): a float32
 * tensor of {@linkcode lossScaleToValues}.
 */
export const LOSS_SCALE_CHECKPOINT_KEY = "lossScale";

/**
 * A state as the 6 float32 values a checkpoint stores: scale, good steps,
 * skipped steps, last skipped (0/1), momentum start pending (0/1), steps.
 * Counters are exact up to 2²⁴ steps.
 *
 * @param s The state.
 */
export function lossScaleToValues(s: LossScaleState): Float32Array {
  return Float32Array.of(
    s.scale,
    s.goodSteps,
    s.skippedSteps,
    s.lastSkipped ? 1 : 0,
    s.firstPending ? 1 : 0,
    s.steps,
  );
}

/**
 * The state of a checkpoint's values ({@linkcode lossScaleToValues}).
 *
 * @param v The values.
 * @param where The checkpoint, for the error.
 * @throws {Error} "Cannot resume the loss scaling …" when they are not 6
 *   values with a positive finite scale and whole non-negative counters.
 */
export function lossScaleFromValues(
  v: ArrayLike<number>,
  where: string,
): LossScaleState {
  const whole = (x: number) => Number.isInteger(x) && x >= 0;
  if (
    v.length !== 6 || !(v[0] >= MIN_LOSS_SCALE && Number.isFinite(v[0])) ||
    ![v[1], v[2], v[5]].every(whole) ||
    ![v[3], v[4]].every((x) => x === 0 || x === 1)
  ) {
    throw new Error(
      `Cannot resume the loss scaling from ${where}: its "${LOSS_SCALE_CHECKPOINT_KEY}" entry is not [scale, goodSteps, skippedSteps, lastSkipped, firstPending, steps] (got [${
        Array.from(v).join(", ")
      }]); resume from an intact checkpoint or start the run afresh`,
    );
  }
  return {
    scale: v[0],
    goodSteps: v[1],
    skippedSteps: v[2],
    lastSkipped: v[3] === 1,
    firstPending: v[4] === 1,
    steps: v[5],
  };
}
