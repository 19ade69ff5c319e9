/**
 * The TTDA (test-time domain adaptation) objective of AMAuT (reference §9,
 * paper Eqs. 5 and 7–9), exactly as the authors' `tta.py` codes it. All three
 * terms work on the softmax probabilities `p` (`[b, n]`) of one view's logits:
 *
 * - NM (Eq. 7, the CoNMix surrogate, no SVD):
 *   `L_NM = −(1/n) Σ_c sqrt(Σ_b p_bc²)`;
 * - EN (Eq. 8): `L_EN = (1/b) Σ_b −Σ_c p_bc·log(p_bc + 1e−6)`;
 * - GEN (Eq. 9, Tsallis): `L_GEN = (1/b) Σ_b (1 − Σ_c p_bc^q)/(q − 1)`;
 *
 * and the total is `α·L_NM + β·L_EN + γ·L_GEN` (Eq. 5), a term being skipped
 * (not even computed) when its rate is 0. The TTDA stage sums the total over
 * the views.
 *
 * @module
 */
import type { Scalar, Tensor2D } from "@tensorflow/tfjs";
import type { Tf } from "../pipeline/types.ts";

/** The ε inside EN's logarithm (the reference's `entropy(..., epsilon=1e-6)`). */
export const ENTROPY_EPSILON = 1e-6;

function checkProbabilities(what: string, p: Tensor2D): void {
  if (p.rank !== 2) {
    throw new RangeError(
      `Cannot compute ${what}: probabilities must be [b, n], got [${
        p.shape.join(", ")
      }]`,
    );
  }
}

/**
 * NM, the reference's nuclear-norm surrogate: the negative mean over classes
 * of each class's L2 norm over the batch, `−(1/n) Σ_c sqrt(Σ_b p_bc²)`.
 * Minimising it favours confident and diverse predictions.
 *
 * @param tf The TF.js namespace.
 * @param p Probabilities `[b, n]` (rows sum to 1).
 * @returns The scalar loss (dimensionless, ≤ 0).
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import * as tf from "@tensorflow/tfjs";
 * import { nuclearNormSurrogate } from "./ttda_loss.ts";
 * await tf.setBackend("cpu");
 * const v = nuclearNormSurrogate(tf, tf.tensor2d([[1, 0], [0, 1]]));
 * assert.ok(Math.abs((await v.data())[0] + 1) < 1e-6);
 * ```
 */
export function nuclearNormSurrogate(tf: Tf, p: Tensor2D): Scalar {
  checkProbabilities("nuclearNormSurrogate", p);
  return tf.tidy(() =>
    tf.neg(tf.mean(tf.sqrt(tf.sum(tf.square(p), 0)))) as Scalar
  );
}

/**
 * EN, the mean Shannon entropy of the rows (natural log), with the
 * reference's `+1e−6` inside the log: `(1/b) Σ_b −Σ_c p_bc·log(p_bc + 1e−6)`.
 *
 * @param tf The TF.js namespace.
 * @param p Probabilities `[b, n]`.
 * @returns The scalar loss (nats).
 */
export function entropy(tf: Tf, p: Tensor2D): Scalar {
  checkProbabilities("entropy", p);
  return tf.tidy(() =>
    tf.neg(
      tf.mean(tf.sum(tf.mul(p, tf.log(tf.add(p, ENTROPY_EPSILON))), 1)),
    ) as Scalar
  );
}

/**
 * GEN, the mean Tsallis (generalized) entropy of the rows:
 * `(1/b) Σ_b (1 − Σ_c p_bc^q)/(q − 1)`.
 *
 * @param tf The TF.js namespace.
 * @param p Probabilities `[b, n]`.
 * @param q Entropic index (reference 1.1, SC1 0.8); must not be 1 (the
 *   Shannon limit is {@linkcode entropy}).
 * @returns The scalar loss (dimensionless).
 * @throws {RangeError} When q is 1 or not finite.
 */
export function generalizedEntropy(tf: Tf, p: Tensor2D, q: number): Scalar {
  checkProbabilities("generalizedEntropy", p);
  if (!Number.isFinite(q) || q === 1) {
    throw new RangeError(
      `Cannot compute generalizedEntropy: q must be a finite number other than 1, got ${q}`,
    );
  }
  return tf.tidy(() =>
    tf.div(
      tf.mean(tf.sub(1, tf.sum(tf.pow(p, q), 1))),
      q - 1,
    ) as Scalar
  );
}

/** Rates of the TTDA objective (reference `nucnm_rate`, `ent_rate`, `gent_rate`, `gent_q`). */
export interface TtdaLossOptions {
  /** α, weight of NM (≥ 0; 0 skips the term). */
  readonly alpha: number;
  /** β, weight of EN (≥ 0; 0 skips the term). */
  readonly beta: number;
  /** γ, weight of GEN (≥ 0; 0 skips the term). */
  readonly gamma: number;
  /** q of GEN (≠ 1; unused when γ = 0). */
  readonly q: number;
}

/**
 * The TTDA loss of one view (Eq. 5): `α·NM + β·EN + γ·GEN` on
 * `softmax(logits)`, skipping every term whose rate is 0 (all three 0 give a
 * constant 0). Differentiable w.r.t. the logits.
 *
 * @param tf The TF.js namespace.
 * @param logits Scores `[b, n]`.
 * @param options The rates α, β, γ and GEN's q.
 * @returns The scalar loss.
 * @throws {RangeError} On a negative or non-finite rate, or q = 1 with γ > 0.
 */
export function ttdaLoss(
  tf: Tf,
  logits: Tensor2D,
  options: TtdaLossOptions,
): Scalar {
  const { alpha, beta, gamma, q } = options;
  const rates = [["alpha", alpha], ["beta", beta], ["gamma", gamma]] as const;
  for (const [what, rate] of rates) {
    if (!Number.isFinite(rate) || rate < 0) {
      throw new RangeError(
        `Cannot compute ttdaLoss: ${what} must be a finite number ≥ 0, got ${rate}`,
      );
    }
  }
  if (gamma > 0 && (!Number.isFinite(q) || q === 1)) {
    throw new RangeError(
      `Cannot compute ttdaLoss: q must be a finite number other than 1, got ${q}`,
    );
  }
  checkProbabilities("ttdaLoss", logits);
  return tf.tidy(() => {
    const p = tf.softmax(logits) as Tensor2D;
    let total: Scalar = tf.scalar(0);
    if (alpha !== 0) {
      total = tf.add(total, tf.mul(nuclearNormSurrogate(tf, p), alpha));
    }
    if (beta !== 0) total = tf.add(total, tf.mul(entropy(tf, p), beta));
    if (gamma !== 0) {
      total = tf.add(total, tf.mul(generalizedEntropy(tf, p, q), gamma));
    }
    return total;
  });
}
