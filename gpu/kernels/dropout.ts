/**
 * The embedding dropout's mask: a counter-based hash of (seed, element
 * index), the same in TypeScript ({@linkcode dropoutKeep}, for references
 * and tests) and in WGSL ({@linkcode dropoutWgsl}), so a backward pass
 * regenerates its forward's mask from the seed alone.
 *
 * @module
 */
import { readOnly } from "./bindings.ts";
import { f32Literal } from "./wgsl.ts";

const HASH_SEED_SALT = 0x9e3779b9;

/** lowbias32 (Chris Wellons): a well-mixing 32-bit integer hash. */
function lowbias32(x: number): number {
  x >>>= 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  x ^= x >>> 16;
  return x >>> 0;
}

/** The drop threshold: an element is kept when its hash is ≥ this (u32). */
function dropThreshold(rate: number): number {
  return Math.min(0xffffffff, Math.round(rate * 4294967296));
}

/** The 32-bit hash of (seed, index) behind the dropout masks. */
function dropoutHash(seed: number, index: number): number {
  const s = seed >>> 0;
  const a = lowbias32((s ^ HASH_SEED_SALT) >>> 0);
  return lowbias32((lowbias32((index + a) >>> 0) ^ s) >>> 0);
}

/**
 * Whether the dropout mask keeps element `index` for `seed` — exactly what
 * the WGSL of {@linkcode tokensForward} / {@linkcode tokensBackward}
 * computes: a counter-based hash `h(seed, index)` (u32) and keep iff
 * `h ≥ round(rate · 2³²)`, so an element is kept with probability ≈ 1 − rate.
 *
 * @param seed The step's seed (u32; binding "step"[0]).
 * @param index Flat element index in `z` (row · dim + column, u32).
 * @param rate Drop probability in [0, 1).
 * @returns True when kept (then scaled by 1 / (1 − rate)).
 */
export function dropoutKeep(
  seed: number,
  index: number,
  rate: number,
): boolean {
  return dropoutHash(seed, index) >= dropThreshold(rate);
}

/** The dropout seed binding: "step" (read, `array<u32>`, seed at [0]). */
export const DROPOUT_STEP = readOnly("step", "u32");

const WGSL_HASH = `fn lowbias32(v: u32) -> u32 {
  var x = v;
  x = x ^ (x >> 16u);
  x = x * 0x7feb352du;
  x = x ^ (x >> 15u);
  x = x * 0x846ca68bu;
  x = x ^ (x >> 16u);
  return x;
}
fn dropoutHash(seed: u32, index: u32) -> u32 {
  let a = lowbias32(seed ^ 0x${HASH_SEED_SALT.toString(16)}u);
  return lowbias32(lowbias32(index + a) ^ seed);
}`;

/**
 * WGSL `keepScale(index)` of a dropout mask (and the hash it calls); the
 * kernel binds the seed as "step" ({@linkcode DROPOUT_STEP}).
 */
export function dropoutWgsl(rate: number): string {
  return `${WGSL_HASH}
fn keepScale(index: u32) -> f32 {
  return select(0.0, ${
    f32Literal(1 / (1 - rate))
  }, dropoutHash(step[0], index) >= ${dropThreshold(rate)}u);
}`;
}
