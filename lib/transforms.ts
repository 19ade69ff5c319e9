/**
 * Waveform transforms of AMAuT's multiview augmentation, exactly as the
 * reference applies them (`lib/wavUtils.py`; reference §7, §9, §10):
 *
 * - {@linkcode roll}: circular shift (`torch.roll`), by `trunc((2U−1)·f·L)`
 *   samples (both directions), `trunc(U·f·L)` (right), `trunc(−U·f·L)` (left),
 *   or a fixed `trunc(±f·L)` (TTAu);
 * - {@linkcode addNoise}: `x + scale·U[0,1)` (the reference's positive,
 *   DC-biased "Gaussian" noise) or true Gaussian `x + scale·N(0,1)`;
 * - {@linkcode mixBackground}: `y = x + a·n` with a random crop `n` of a noise
 *   clip and `a = sqrt(‖x‖²/‖n‖² · 10^(−snr/10))` (torchaudio `add_noise`).
 *
 * All randomness comes from the `Rng` passed in. Inputs are never modified.
 *
 * @module
 */
import type { Rng } from "../pipeline/rng.ts";

/** Direction of a roll: positive shifts move samples right (later). */
export type RollDirection = "both" | "left" | "right";

/**
 * The shift in samples the reference draws for a roll of up to `fraction`
 * of `length`.
 *
 * @param length Clip length in samples.
 * @param fraction Maximum shift as a fraction of the length (reference: 0.17).
 * @param direction `both`: `trunc((2U−1)·f·L)`; `right`: `trunc(U·f·L)`; `left`: `trunc(−U·f·L)`.
 * @param rng Source of U; omit for the fixed shift `trunc(±f·L)` (`right` or `left` only).
 */
export function rollShift(
  length: number,
  fraction: number,
  direction: RollDirection,
  rng?: Rng,
): number {
  if (!rng) {
    if (direction === "both") {
      throw new RangeError(
        "Cannot make a fixed roll in both directions: choose left or right",
      );
    }
    return Math.trunc((direction === "right" ? 1 : -1) * fraction * length);
  }
  const u = rng.next();
  const factor = direction === "both"
    ? 2 * u - 1
    : direction === "right"
    ? u
    : -u;
  return Math.trunc(factor * fraction * length);
}

/**
 * Circular shift: `out[i] = x[(i − shift) mod L]` (`torch.roll`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { roll } from "./transforms.ts";
 * assert.deepEqual([...roll(new Float32Array([1, 2, 3, 4]), 1)], [4, 1, 2, 3]);
 * ```
 */
export function roll(x: Float32Array, shift: number): Float32Array {
  const n = x.length;
  if (n === 0) return x.slice();
  const s = ((shift % n) + n) % n;
  const out = new Float32Array(n);
  out.set(x.subarray(n - s), 0);
  out.set(x.subarray(0, n - s), s);
  return out;
}

/**
 * Adds per-sample noise: `uniform` is `scale·U[0,1)` (positive, as the
 * reference's `torch.rand_like`), `gaussian` is `scale·N(0,1)`.
 */
export function addNoise(
  x: Float32Array,
  kind: "uniform" | "gaussian",
  scale: number,
  rng: Rng,
): Float32Array {
  const out = new Float32Array(x.length);
  if (kind === "uniform") {
    const u = new Float64Array(x.length);
    rng.fillUniform(u, scale);
    for (let i = 0; i < x.length; i++) out[i] = x[i] + u[i];
  } else {
    for (let i = 0; i < x.length; i++) out[i] = x[i] + scale * rng.normal();
  }
  return out;
}

/**
 * Mixes a random crop of `noise` into `x` at `snrDb` (torchaudio
 * `add_noise`). The crop starts uniformly in `[0, noise.length − x.length)`;
 * a noise clip shorter than `x` is repeated. A silent clip or crop leaves
 * `x` unchanged.
 *
 * @param x The clip.
 * @param noise The noise samples (used at their own rate: never resampled).
 * @param snrDb Signal-to-noise ratio of the result in dB.
 * @param rng Source of the crop position.
 */
export function mixBackground(
  x: Float32Array,
  noise: Float32Array,
  snrDb: number,
  rng: Rng,
): Float32Array {
  const n = x.length;
  if (noise.length === 0) {
    throw new RangeError("Cannot mix an empty noise clip");
  }
  const start = noise.length > n ? rng.int(noise.length - n) : 0;
  let ex = 0;
  let en = 0;
  const crop = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const v = noise[(start + i) % noise.length];
    crop[i] = v;
    en += v * v;
    ex += x[i] * x[i];
  }
  if (ex === 0 || en === 0) return x.slice();
  const a = Math.sqrt((ex / en) * Math.pow(10, -snrDb / 10));
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = x[i] + a * crop[i];
  return out;
}

/** Signal-to-noise ratio in dB of `mixed` against the clean `x` (for tests and reports). */
export function measuredSnrDb(x: Float32Array, mixed: Float32Array): number {
  let ex = 0;
  let en = 0;
  for (let i = 0; i < x.length; i++) {
    ex += x[i] * x[i];
    en += (mixed[i] - x[i]) ** 2;
  }
  return 10 * Math.log10(ex / en);
}
