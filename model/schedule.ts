/**
 * The training learning-rate schedule: the paper's Eq. 6,
 * `lr(e) = lr0 · (1 + γ·e/C)^(−power)`, with the reference code's update
 * timing (spec §8). The reference calls its `lr_scheduler` *after* epoch `e`
 * (0-based) with `e = 0, 1, …`, and stops calling it once `e ≥ C − 1`, so the
 * rate in effect during epoch `k` is one step behind Eq. 6 and freezes at
 * epoch `C − 1`.
 *
 * @module
 */

/** Settings of {@linkcode learningRateAt}. */
export interface ScheduleOptions {
  /** Initial learning rate (per unit gradient, > 0 in practice; reference 1e-3). */
  readonly lr0: number;
  /** Decay speed γ (dimensionless, ≥ 0; reference 10 for training). */
  readonly gamma: number;
  /** Cardinality C (epochs, integer ≥ 1): the schedule's time scale and freeze point. */
  readonly cardinality: number;
  /** Decay exponent (dimensionless, ≥ 0; default 0.75, hard-coded in the reference). */
  readonly power?: number;
}

/**
 * Learning rate in effect during 0-based epoch `k`:
 * - `k = 0` → `lr0`;
 * - `1 ≤ k ≤ C − 1` → `lr0 · (1 + γ(k − 1)/C)^(−power)`;
 * - `k ≥ C` → frozen at the `k = C − 1` value.
 *
 * @param epoch 0-based epoch index (integer ≥ 0).
 * @param options `lr0`, `gamma`, `cardinality` (C) and `power` (default 0.75).
 * @returns The learning rate, in the units of `lr0`.
 * @throws {RangeError} On a negative or fractional epoch, a cardinality that
 *   is not an integer ≥ 1, or a non-finite or negative lr0, gamma or power.
 */
export function learningRateAt(
  epoch: number,
  options: ScheduleOptions,
): number {
  const { lr0, cardinality } = options;
  checkSchedule("the learning rate", epoch, options, [["lr0", lr0]]);
  const k = Math.min(epoch, cardinality - 1);
  if (k === 0) return lr0;
  return lr0 * eq6Decay(k - 1, options);
}

/**
 * Eq. 6's decay factor after `e` scheduler updates: `(1 + γ·e/C)^(−power)`.
 *
 * @param e Scheduler updates so far (integer ≥ 0).
 * @param options γ, C and the power (default 0.75).
 * @returns The factor (dimensionless, in (0, 1]) that multiplies lr0.
 */
export function eq6Decay(
  e: number,
  options: Omit<ScheduleOptions, "lr0">,
): number {
  return Math.pow(
    1 + (options.gamma * e) / options.cardinality,
    -(options.power ?? 0.75),
  );
}

/**
 * Checks a schedule's epoch and settings, as {@linkcode learningRateAt} and
 * the TTDA schedule need them.
 *
 * @param what What is being computed, for the message ("the learning rate").
 * @param epoch 0-based epoch index (must be an integer ≥ 0).
 * @param options γ, C (an integer ≥ 1) and the power.
 * @param more Further `[name, value]` settings that must be finite and ≥ 0.
 * @throws {RangeError} `Cannot compute <what>: invalid …` naming the setting.
 */
export function checkSchedule(
  what: string,
  epoch: number,
  options: Omit<ScheduleOptions, "lr0">,
  more: ReadonlyArray<readonly [string, number]> = [],
): void {
  const { gamma, cardinality } = options;
  if (!Number.isInteger(epoch) || epoch < 0) {
    throw new RangeError(
      `Cannot compute ${what}: invalid epoch ${epoch}, must be an integer ≥ 0`,
    );
  }
  if (!Number.isInteger(cardinality) || cardinality < 1) {
    throw new RangeError(
      `Cannot compute ${what}: invalid lr cardinality ${cardinality}, must be an integer ≥ 1`,
    );
  }
  const finite: ReadonlyArray<readonly [string, number]> = [
    ...more,
    ["lr gamma", gamma],
    ["lr power", options.power ?? 0.75],
  ];
  for (const [name, value] of finite) {
    if (!Number.isFinite(value) || value < 0) {
      throw new RangeError(
        `Cannot compute ${what}: invalid ${name} ${value}, must be a finite number ≥ 0`,
      );
    }
  }
}
