/**
 * Dynamic loss scaling on the fused engine (issue 18, mixed precision), with
 * its state on the GPU so that no step waits for a readback: the state
 * buffer ({@linkcode LOSS_SCALE_WORDS} u32 words, layout in
 * {@linkcode LossScaleWord}), the scan that flags an inf or NaN gradient
 * ({@linkcode nonFiniteScan}), the policy update
 * ({@linkcode lossScaleUpdate}, PyTorch GradScaler's, as
 * `model/loss_scale.ts`) and the multiplication of the loss gradient seed
 * by the scale ({@linkcode lossScaleSeed}). The SGD step that divides the
 * scale out and skips a flagged step is `sgdUpdate` with `lossScale: true`
 * (`sgd.ts`).
 *
 * A mixed-precision step records, in order: the loss kernel, then
 * `lossScaleSeed` on its logits gradient (backward list head:
 * `recordLossScaleSeed` of `gpu/graph/loss.ts`); the backward pass; then
 * `nonFiniteScan` over the gradient arena, the running-statistics updates,
 * `sgdUpdate({ …, lossScale: true })` and `lossScaleUpdate` (update list:
 * `recordUpdate(b, lossScale)` of `gpu/graph/sgd.ts`). None of this is in
 * the default fp32 graph: the graph integration comes with
 * `train.precision: mixed`.
 *
 * @module
 */
import type { KernelPlan } from "../runtime.ts";
import {
  type LossScaleOptions,
  type LossScaleState,
  MIN_LOSS_SCALE,
  resolveLossScaleOptions,
} from "../../model/loss_scale.ts";
import { readOnly, readWrite, storageBindings } from "./bindings.ts";
import {
  checkSize,
  itemMainWgsl,
  MAX_GRID_DIM,
  WORKGROUP_SIZE as WG,
} from "./grid.ts";
import { f32Literal } from "./wgsl.ts";

/** Word indices of the loss-scale state buffer (u32 words). */
export const LossScaleWord = {
  /** The scale, float32 bits. */
  scale: 0,
  /** Good steps since the scale last changed. */
  goodSteps: 1,
  /** Overflow flag of the step in progress: set by the scan, cleared by the update. */
  found: 2,
  /** Steps skipped in all. */
  skippedSteps: 3,
  /** 1 when the last updated step was skipped. */
  lastSkipped: 4,
  /** 1 while a skipped first-momentum step waits for the next taken step. */
  firstPending: 5,
  /** Steps updated in all. */
  steps: 6,
} as const;

/** Words of the loss-scale state buffer (the last one is spare, 0). */
export const LOSS_SCALE_WORDS = 8;

/** Bit mask of a float32's exponent: all ones means inf or NaN. */
const EXP_MASK = "0x7f800000u";

/** Most workgroups of the scan's grid-stride loops (≈ one H100 full of 256-thread groups). */
export const SCAN_MAX_WORKGROUPS = 1024;

/**
 * The state buffer's words for a state.
 *
 * @param s The state (`scale` a float32 value).
 * @returns {@linkcode LOSS_SCALE_WORDS} u32 words.
 */
export function encodeLossScaleState(s: LossScaleState): Uint32Array {
  const w = new Uint32Array(LOSS_SCALE_WORDS);
  new Float32Array(w.buffer, 4 * LossScaleWord.scale, 1)[0] = s.scale;
  w[LossScaleWord.goodSteps] = s.goodSteps;
  w[LossScaleWord.skippedSteps] = s.skippedSteps;
  w[LossScaleWord.lastSkipped] = s.lastSkipped ? 1 : 0;
  w[LossScaleWord.firstPending] = s.firstPending ? 1 : 0;
  w[LossScaleWord.steps] = s.steps;
  return w;
}

/**
 * The state from the buffer's words (as read back; a set overflow flag of a
 * step still in progress is not part of the state).
 *
 * @param words At least {@linkcode LOSS_SCALE_WORDS} 32-bit words (u32, or
 *   the f32 view `Runtime.read` returns).
 * @returns The state.
 */
export function decodeLossScaleState(
  words: Uint32Array | Float32Array,
): LossScaleState {
  const u = new Uint32Array(words.buffer, words.byteOffset, LOSS_SCALE_WORDS);
  return {
    scale: new Float32Array(u.buffer, u.byteOffset, 1)[0],
    goodSteps: u[LossScaleWord.goodSteps],
    skippedSteps: u[LossScaleWord.skippedSteps],
    lastSkipped: u[LossScaleWord.lastSkipped] !== 0,
    firstPending: u[LossScaleWord.firstPending] !== 0,
    steps: u[LossScaleWord.steps],
  };
}

/** Sizes of {@linkcode nonFiniteScan}. */
export interface NonFiniteScanOptions {
  /**
   * Floats of each region to scan, one binding each (`grads0`, `grads1`, …;
   * at most 7). A region whose length is a multiple of 4 is read as vec4.
   */
  readonly sizes: readonly number[];
  /** Most workgroups (default {@linkcode SCAN_MAX_WORKGROUPS}). */
  readonly maxWorkgroups?: number;
}

/** The WGSL loop of one region: 4 loads in flight per iteration, then the rest. */
function scanRegionWgsl(name: string, count: number, vec: boolean): string {
  const bits = (j: string) =>
    vec
      ? `(bitcast<vec4<u32>>(${name}[${j}]) & vec4<u32>(${EXP_MASK}))`
      : `(bitcast<u32>(${name}[${j}]) & ${EXP_MASK})`;
  return `  // ${name}: ${count} ${vec ? "vec4" : "scalars"}
  j = t;
  for (; j + 3u * S < ${count}u; j += 4u * S) {
    let a = ${bits("j")};
    let b = ${bits("j + S")};
    let c = ${bits("j + 2u * S")};
    let d = ${bits("j + 3u * S")};
    m${vec ? "4" : ""} = max(m${vec ? "4" : ""}, max(max(a, b), max(c, d)));
  }
  for (; j < ${count}u; j += S) {
    m${vec ? "4" : ""} = max(m${vec ? "4" : ""}, ${bits("j")});
  }`;
}

/**
 * Scans gradient regions for inf or NaN and sets the state's overflow flag
 * when one holds any (the flag is never cleared here: several scans may
 * feed one step; {@linkcode lossScaleUpdate} clears it). The test is on the
 * bits — exponent all ones — since a compiler may fold `x != x` away. Large
 * finite values (65504, 3e38) and denormals are not flagged.
 *
 * Bindings: "grads0" … (read, `[sizes[i]]`, as `array<vec4<f32>>` when the
 * size is a multiple of 4), "lossScale" (read_write, `atomic<u32>`,
 * {@linkcode LOSS_SCALE_WORDS} words; only the overflow word is written,
 * with `atomicOr`, by the threads that found one). One dispatch of at most
 * `maxWorkgroups` 256-thread groups on a 1-D grid, grid-stride loops with
 * four independent loads per iteration; each thread keeps the maximum of
 * the masked exponent bits, so the inner loop is a load, an `and` and a
 * `max` per element. No scratch.
 *
 * @param o Region sizes in floats.
 * @returns The plan.
 * @throws {RangeError} On no region, more than 7, or a size out of 1…2³¹ − 1.
 */
export function nonFiniteScan(
  o: NonFiniteScanOptions,
): KernelPlan<`grads${number}` | "lossScale"> {
  if (o.sizes.length < 1 || o.sizes.length > 7) {
    throw new RangeError(
      `Cannot build the non-finite scan: it takes 1 to 7 regions, got ${o.sizes.length}; scan the others in a second dispatch`,
    );
  }
  o.sizes.forEach((n, i) => checkSize(`scan region ${i} size`, n, 1));
  if (o.sizes.some((n) => n >= 2 ** 31)) {
    throw new RangeError(
      "Cannot build the non-finite scan: a region holds 2³¹ floats or more; split it into several regions",
    );
  }
  const cap = o.maxWorkgroups ?? SCAN_MAX_WORKGROUPS;
  checkSize("scan maxWorkgroups", cap, 1);
  const regions = o.sizes.map((n, i) => ({
    name: `grads${i}` as const,
    vec: n % 4 === 0,
    count: n % 4 === 0 ? n / 4 : n,
  }));
  const most = Math.max(...regions.map((r) => r.count));
  const groups = Math.min(cap, MAX_GRID_DIM, Math.ceil(most / WG));
  const b = storageBindings([
    ...regions.map((r) => readOnly(r.name, r.vec ? "vec4<f32>" : "f32")),
    readWrite("lossScale", "atomic<u32>"),
  ]);
  const code = `// nonFiniteScan
${b.decls}
const S = ${groups * WG}u;
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let t = gid.x;
  var j = 0u;
  var m = 0u;
  var m4 = vec4<u32>(0u);
${regions.map((r) => scanRegionWgsl(r.name, r.count, r.vec)).join("\n")}
  m = max(m, max(max(m4.x, m4.y), max(m4.z, m4.w)));
  if (m == ${EXP_MASK}) {
    atomicOr(&lossScale[${LossScaleWord.found}], 1u);
  }
}
`;
  return {
    steps: [{
      spec: { code, workgroups: [groups, 1, 1], label: "nonFiniteScan" },
      bind: b.bind,
    }],
  };
}

/** WGSL test of a float32's bits: inf or NaN. */
const nonFiniteWgsl = (x: string) =>
  `((bitcast<u32>(${x}) & ${EXP_MASK}) == ${EXP_MASK})`;

/**
 * The policy step of {@linkcode lossScaleStep} (`model/loss_scale.ts`) on
 * the GPU, after the step's SGD update: reads and clears the overflow flag;
 * on overflow `scale ← max(scale·backoff, 2⁻¹²⁶)`, the good-step counter
 * resets, the skipped count grows, and a skipped first-momentum step
 * (`hyper[4]`, `sgdHyper` of `sgd.ts`) leaves the momentum start pending;
 * otherwise the counter grows and at `growthInterval` resets with
 * `scale ← scale·growth` (kept when finite). Products round to float32, as
 * the reference's `Math.fround`.
 *
 * Bindings: "lossScale" (read_write, u32, {@linkcode LOSS_SCALE_WORDS}
 * words), "hyper" (read, the SGD hyper-parameters; only `[4]`, first, is
 * read). One thread. No scratch.
 *
 * @param options Loss-scaling options (checked by
 *   `resolveLossScaleOptions`; PyTorch's defaults).
 * @returns The plan.
 * @throws {RangeError} On an option out of range.
 */
export function lossScaleUpdate(
  options: Partial<LossScaleOptions> = {},
): KernelPlan<"lossScale" | "hyper"> {
  const o = resolveLossScaleOptions(options);
  const W = LossScaleWord;
  const b = storageBindings([
    readWrite("lossScale", "u32"),
    readOnly("hyper"),
  ]);
  const code = `// lossScaleUpdate
${b.decls}
@compute @workgroup_size(1)
fn main() {
  let scale = bitcast<f32>(lossScale[${W.scale}]);
  lossScale[${W.steps}] += 1u;
  if (lossScale[${W.found}] != 0u) {
    lossScale[${W.found}] = 0u;
    lossScale[${W.scale}] = bitcast<u32>(max(scale * ${
    f32Literal(o.backoffFactor)
  }, ${f32Literal(MIN_LOSS_SCALE)}));
    lossScale[${W.goodSteps}] = 0u;
    lossScale[${W.skippedSteps}] += 1u;
    lossScale[${W.lastSkipped}] = 1u;
    if (hyper[4] != 0.0) { lossScale[${W.firstPending}] = 1u; }
    return;
  }
  lossScale[${W.lastSkipped}] = 0u;
  lossScale[${W.firstPending}] = 0u;
  let good = lossScale[${W.goodSteps}] + 1u;
  if (good >= ${o.growthInterval}u) {
    let grown = scale * ${f32Literal(o.growthFactor)};
    if (!${nonFiniteWgsl("grown")}) {
      lossScale[${W.scale}] = bitcast<u32>(grown);
    }
    lossScale[${W.goodSteps}] = 0u;
  } else {
    lossScale[${W.goodSteps}] = good;
  }
}
`;
  return {
    steps: [{
      spec: { code, workgroups: [1, 1, 1], label: "lossScaleUpdate" },
      bind: b.bind,
    }],
  };
}

/**
 * Multiplies the loss gradient seed (the logits gradient the loss kernel
 * wrote, `gpu/graph/loss.ts`) by the current scale, in place, so the
 * backward pass runs on `scale·∂L/∂logits`. The loss metrics stay unscaled.
 *
 * Bindings: "dlogits" (read_write, `[n]`), "lossScale" (read, u32,
 * {@linkcode LOSS_SCALE_WORDS} words). One thread per element. No scratch.
 *
 * @param o `n`: floats of the seed (rows × classes).
 * @returns The plan.
 */
export function lossScaleSeed(
  o: { readonly n: number },
): KernelPlan<"dlogits" | "lossScale"> {
  checkSize("loss seed n", o.n, 1);
  const b = storageBindings([
    readWrite("dlogits"),
    readOnly("lossScale", "u32"),
  ]);
  const { workgroups, main } = itemMainWgsl(o.n);
  const code = `// lossScaleSeed
${b.decls}
${main}
  dlogits[i] = dlogits[i] * bitcast<f32>(lossScale[${LossScaleWord.scale}]);
}
`;
  return {
    steps: [{
      spec: { code, workgroups, label: "lossScaleSeed" },
      bind: b.bind,
    }],
  };
}
