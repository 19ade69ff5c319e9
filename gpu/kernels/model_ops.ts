/**
 * Model-specific kernels of the fused WebGPU training engine: the parts of
 * AMAuT (`model/amaut.ts`) around the CNN and the transformer, each with its
 * gradient.
 *
 * - {@linkcode tokensForward} / {@linkcode tokensBackward}: the token
 *   assembly (`[CLS, t_1 … t_K, TAL]` or special tokens first), the
 *   positional embedding and inverted dropout with a counter-based hash mask
 *   ({@linkcode dropoutKeep} is the same hash in TypeScript);
 * - {@linkcode weightNormForward} / {@linkcode weightNormBackward}: the avg
 *   head's weight-normalised fc3 (`model/layers.ts` `weightNorm`);
 * - {@linkcode mergeForward} / {@linkcode mergeBackward}: the fce head's
 *   conv over the embedding axis of the special tokens (`classifier.merge`);
 * - {@linkcode crossEntropy}: label-smoothed cross-entropy summed over views
 *   (`model/loss.ts`), its logits gradient and the step's metrics;
 * - {@linkcode sgdUpdate}: one fused PyTorch SGD step over a flat parameter
 *   arena (`model/sgd.ts`), with {@linkcode sgdHyper} building its
 *   hyper-parameter array.
 *
 * Every generator returns a {@linkcode KernelPlan} whose binding names are
 * documented on the function; sizes are baked into the WGSL.
 *
 * @module
 */
import type { KernelPlan, KernelStep } from "../runtime.ts";

const WG = 256;
const MAX_GROUPS = 65535;

/** A WGSL float literal of a number (rounded to f32, always with a `.` or exponent). */
function f32(x: number): string {
  if (!Number.isFinite(x)) throw new RangeError(`not a finite number: ${x}`);
  const s = String(Math.fround(x));
  return /[.e]/.test(s) ? s : `${s}.0`;
}

/** Workgroup grid covering `n` threads of 256: `[x, y, 1]` with x ≤ 65,535. */
function grid(n: number): [number, number, number] {
  const groups = Math.max(1, Math.ceil(n / WG));
  const x = Math.min(groups, MAX_GROUPS);
  const y = Math.ceil(groups / x);
  if (y > MAX_GROUPS) throw new RangeError(`too many elements: ${n}`);
  return [x, y, 1];
}

/** WGSL prologue of a 1-thread-per-element kernel over the grid of {@linkcode grid}. */
function flatIndex(n: number): string {
  const [x] = grid(n);
  return `@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let e = (wid.y * ${x}u + wid.x) * ${WG}u + lid.x;
  if (e >= ${n}u) { return; }`;
}

function checkInt(what: string, n: number, min: number): void {
  if (!Number.isInteger(n) || n < min) {
    throw new RangeError(`${what} must be an integer ≥ ${min}, got ${n}`);
  }
}

// ---------------------------------------------------------------------------
// Dropout hash

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

/** WGSL declarations and the `keepScale(index)` function of a dropout mask (binding index `b` for "step"). */
function dropoutWgsl(rate: number, binding: number): string {
  return `@group(0) @binding(${binding}) var<storage, read> step: array<u32>;
${WGSL_HASH}
fn keepScale(index: u32) -> f32 {
  return select(0.0, ${f32(1 / (1 - rate))}, dropoutHash(step[0], index) >= ${
    dropThreshold(rate)
  }u);
}`;
}

// ---------------------------------------------------------------------------
// Tokens

/** Sizes of the token assembly. */
export interface TokensOptions {
  /** Clips in the batch. */
  readonly batch: number;
  /** Embedded (CNN) tokens per clip, K. */
  readonly k: number;
  /** Embedding width (floats per token). */
  readonly dim: number;
  /** Sequence length, K + number of special tokens. */
  readonly sequence: number;
  /** Position of the first embedded token in the sequence. */
  readonly embStart: number;
  /** Sequence position of special token i (distinct, outside the embedded run). */
  readonly specialPositions: readonly number[];
  /** Dropout rate in [0, 1); 0 turns dropout (and the "step" binding) off. */
  readonly dropout: number;
}

function checkTokens(o: TokensOptions): void {
  checkInt("batch", o.batch, 1);
  checkInt("k", o.k, 1);
  checkInt("dim", o.dim, 1);
  checkInt("embStart", o.embStart, 0);
  if (!(o.dropout >= 0 && o.dropout < 1)) {
    throw new RangeError(`dropout must be in [0, 1), got ${o.dropout}`);
  }
  if (o.sequence !== o.k + o.specialPositions.length) {
    throw new RangeError(
      `sequence ${o.sequence} ≠ k ${o.k} + ${o.specialPositions.length} special tokens`,
    );
  }
  if (o.embStart + o.k > o.sequence) {
    throw new RangeError(`embedded tokens overrun the sequence`);
  }
  const seen = new Set<number>();
  for (const p of o.specialPositions) {
    if (
      !Number.isInteger(p) || p < 0 || p >= o.sequence || seen.has(p) ||
      (p >= o.embStart && p < o.embStart + o.k)
    ) {
      throw new RangeError(
        `special positions [${o.specialPositions}] must be distinct positions outside the embedded tokens`,
      );
    }
    seen.add(p);
  }
}

/**
 * The token assembly forward: `z` row (b, s) = `emb[b·k + s − embStart]`
 * when embStart ≤ s < embStart + k, else special token i's vector where
 * `specialPositions[i] = s`; plus `pos[s]`; then inverted dropout (keep with
 * probability 1 − p, scale 1/(1 − p); mask of {@linkcode dropoutKeep} with
 * seed `step[0]` and the flat index of the element in `z`).
 *
 * Bindings: "emb" (read, `[batch·k][dim]`), "special0" … "special{S−1}"
 * (read, `[dim]` each), "pos" (read, `[sequence][dim]`), "step" (read,
 * `array<u32>`, seed at [0]; only when dropout > 0), "z" (write,
 * `[batch·sequence][dim]`). One dispatch, no scratch.
 *
 * @param o Sizes and dropout rate.
 * @returns The plan.
 * @throws {RangeError} On inconsistent sizes or positions.
 */
export function tokensForward(o: TokensOptions): KernelPlan {
  checkTokens(o);
  const { batch, k, dim, sequence, embStart } = o;
  const S = o.specialPositions.length;
  const n = batch * sequence * dim;
  const drop = o.dropout > 0;
  const decl: string[] = [
    `@group(0) @binding(0) var<storage, read> emb: array<f32>;`,
  ];
  const bind = ["emb"];
  for (let i = 0; i < S; i++) {
    decl.push(
      `@group(0) @binding(${bind.length}) var<storage, read> special${i}: array<f32>;`,
    );
    bind.push(`special${i}`);
  }
  decl.push(
    `@group(0) @binding(${bind.length}) var<storage, read> pos: array<f32>;`,
  );
  bind.push("pos");
  if (drop) {
    decl.push(dropoutWgsl(o.dropout, bind.length));
    bind.push("step");
  }
  decl.push(
    `@group(0) @binding(${bind.length}) var<storage, read_write> z: array<f32>;`,
  );
  bind.push("z");
  const branches = o.specialPositions.map((p, i) =>
    ` else if (s == ${p}u) { v = special${i}[c]; }`
  ).join("");
  const code = `// tokensForward
${decl.join("\n")}
${flatIndex(n)}
  let row = e / ${dim}u;
  let c = e % ${dim}u;
  let b = row / ${sequence}u;
  let s = row % ${sequence}u;
  var v = 0.0;
  if (s >= ${embStart}u && s < ${embStart + k}u) {
    v = emb[(b * ${k}u + s - ${embStart}u) * ${dim}u + c];
  }${branches}
  v = v + pos[s * ${dim}u + c];
  z[e] = ${drop ? "v * keepScale(e)" : "v"};
}
`;
  return {
    steps: [{
      spec: { code, workgroups: grid(n), label: "tokensForward" },
      bind,
    }],
  };
}

/**
 * The token assembly backward, as separate dispatches so that gradients
 * living in one buffer are never bound twice:
 *
 * 1. bindings "dz" (read, `[batch·sequence][dim]`), ["step"], "demb"
 *    (write, `[batch·k][dim]`): `demb = dz` rows of the embedded tokens,
 *    times the dropout mask and scale;
 * 2. "dz", ["step"], "dpos" (read_write, `[sequence][dim]`, accumulated):
 *    `dpos[s] += Σ_b mask·dz[b, s]`;
 * 3. one per special token i: "dz", ["step"], "dspecial{i}" (read_write,
 *    `[dim]`, accumulated): `dspecial_i += Σ_b mask·dz[b, specialPositions[i]]`.
 *
 * "step" (read, `array<u32>`) is bound (second) only when dropout > 0 and
 * must hold the forward's seed, so the same mask is regenerated. No scratch.
 *
 * @param o The forward's options.
 * @returns The plan (2 + S steps in the order above).
 * @throws {RangeError} On inconsistent sizes or positions.
 */
export function tokensBackward(o: TokensOptions): KernelPlan {
  checkTokens(o);
  const { batch, k, dim, sequence, embStart } = o;
  const drop = o.dropout > 0;
  const head = (out: string): { decl: string; bind: string[] } => {
    const bind = ["dz"];
    let decl = `@group(0) @binding(0) var<storage, read> dz: array<f32>;\n`;
    if (drop) {
      decl += dropoutWgsl(o.dropout, 1) + "\n";
      bind.push("step");
    }
    decl +=
      `@group(0) @binding(${bind.length}) var<storage, read_write> ${out}: array<f32>;`;
    bind.push(out);
    return { decl, bind };
  };
  const masked = (index: string): string =>
    drop ? `dz[${index}] * keepScale(${index})` : `dz[${index}]`;
  const steps: KernelStep[] = [];

  // demb
  {
    const n = batch * k * dim;
    const { decl, bind } = head("demb");
    const code = `// tokensBackward demb
${decl}
${flatIndex(n)}
  let row = e / ${dim}u;
  let c = e % ${dim}u;
  let b = row / ${k}u;
  let t = row % ${k}u;
  let i = (b * ${sequence}u + t + ${embStart}u) * ${dim}u + c;
  demb[e] = ${masked("i")};
}
`;
    steps.push({
      spec: { code, workgroups: grid(n), label: "tokensBackward.demb" },
      bind,
    });
  }
  // dpos
  {
    const n = sequence * dim;
    const { decl, bind } = head("dpos");
    const code = `// tokensBackward dpos
${decl}
${flatIndex(n)}
  var acc = 0.0;
  for (var b = 0u; b < ${batch}u; b++) {
    let i = b * ${sequence * dim}u + e;
    acc += ${masked("i")};
  }
  dpos[e] += acc;
}
`;
    steps.push({
      spec: { code, workgroups: grid(n), label: "tokensBackward.dpos" },
      bind,
    });
  }
  // dspecial
  o.specialPositions.forEach((p, si) => {
    const { decl, bind } = head(`dspecial${si}`);
    const code = `// tokensBackward dspecial (position ${p})
${decl}
${flatIndex(dim)}
  var acc = 0.0;
  for (var b = 0u; b < ${batch}u; b++) {
    let i = (b * ${sequence}u + ${p}u) * ${dim}u + e;
    acc += ${masked("i")};
  }
  dspecial${si}[e] += acc;
}
`;
    steps.push({
      spec: {
        code,
        workgroups: grid(dim),
        label: "tokensBackward.dspecial",
      },
      bind,
    });
  });
  return { steps };
}

// ---------------------------------------------------------------------------
// Weight norm

/** Sizes of a weight-normalised linear weight. */
export interface WeightNormOptions {
  /** Input features (rows of v and w). */
  readonly in: number;
  /** Output features (columns; g and norms have this length). */
  readonly out: number;
}

function checkWeightNorm(o: WeightNormOptions): void {
  checkInt("in", o.in, 1);
  checkInt("out", o.out, 1);
}

/** WGSL of a 256-thread workgroup tree reduction of `red[lid]` into red[0]. */
const TREE = `  workgroupBarrier();
  for (var h = ${WG / 2}u; h > 0u; h = h >> 1u) {
    if (lid.x < h) { red[lid.x] += red[lid.x + h]; }
    workgroupBarrier();
  }`;

/**
 * Weight norm forward (PyTorch `weight_norm` over dim 0 of the TF.js
 * `[in][out]` layout): `norms[j] = ‖v[:, j]‖₂` and
 * `w[i][j] = g[j] · v[i][j] / norms[j]`.
 *
 * Bindings: "g" (read, `[out]`), "v" (read, `[in][out]`), "w" (write,
 * `[in][out]`), "norms" (write, `[out]`; kept for the backward). One
 * workgroup per column, no scratch.
 *
 * @param o Sizes.
 * @returns The plan.
 */
export function weightNormForward(o: WeightNormOptions): KernelPlan {
  checkWeightNorm(o);
  const code = `// weightNormForward
@group(0) @binding(0) var<storage, read> g: array<f32>;
@group(0) @binding(1) var<storage, read> v: array<f32>;
@group(0) @binding(2) var<storage, read_write> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> norms: array<f32>;
var<workgroup> red: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let j = wid.x;
  var acc = 0.0;
  for (var i = lid.x; i < ${o.in}u; i += ${WG}u) {
    let x = v[i * ${o.out}u + j];
    acc += x * x;
  }
  red[lid.x] = acc;
${TREE}
  let norm = sqrt(red[0]);
  let scale = g[j] / norm;
  for (var i = lid.x; i < ${o.in}u; i += ${WG}u) {
    w[i * ${o.out}u + j] = v[i * ${o.out}u + j] * scale;
  }
  if (lid.x == 0u) { norms[j] = norm; }
}
`;
  return {
    steps: [{
      spec: { code, workgroups: [o.out, 1, 1], label: "weightNormForward" },
      bind: ["g", "v", "w", "norms"],
    }],
  };
}

/**
 * Weight norm backward, two dispatches with their own bindings (one
 * workgroup per column each, no scratch), both accumulating:
 *
 * 1. "dw" (read, `[in][out]`), "v" (read, `[in][out]`), "norms" (read,
 *    `[out]`), "dg" (read_write, `[out]`):
 *    `dg[j] += Σ_i dw[i][j]·v[i][j] / ‖v_j‖`;
 * 2. "dw", "g" (read, `[out]`), "v", "norms", "dv" (read_write, `[in][out]`):
 *    `dv[:, j] += (g_j/‖v_j‖)·(dw[:, j] − v[:, j]·(Σ_i dw[i][j]·v[i][j])/‖v_j‖²)`.
 *
 * @param o Sizes.
 * @returns The plan (dg step, then dv step).
 */
export function weightNormBackward(o: WeightNormOptions): KernelPlan {
  checkWeightNorm(o);
  const dot = `  var acc = 0.0;
  for (var i = lid.x; i < ${o.in}u; i += ${WG}u) {
    acc += dw[i * ${o.out}u + j] * v[i * ${o.out}u + j];
  }
  red[lid.x] = acc;
${TREE}
  let dot = red[0];`;
  const prologue = `var<workgroup> red: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let j = wid.x;`;
  const dgCode = `// weightNormBackward dg
@group(0) @binding(0) var<storage, read> dw: array<f32>;
@group(0) @binding(1) var<storage, read> v: array<f32>;
@group(0) @binding(2) var<storage, read> norms: array<f32>;
@group(0) @binding(3) var<storage, read_write> dg: array<f32>;
${prologue}
${dot}
  if (lid.x == 0u) { dg[j] += dot / norms[j]; }
}
`;
  const dvCode = `// weightNormBackward dv
@group(0) @binding(0) var<storage, read> dw: array<f32>;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read> norms: array<f32>;
@group(0) @binding(4) var<storage, read_write> dv: array<f32>;
${prologue}
${dot}
  let norm = norms[j];
  let scale = g[j] / norm;
  let proj = dot / (norm * norm);
  for (var i = lid.x; i < ${o.in}u; i += ${WG}u) {
    let at = i * ${o.out}u + j;
    dv[at] += scale * (dw[at] - v[at] * proj);
  }
}
`;
  return {
    steps: [
      {
        spec: {
          code: dgCode,
          workgroups: [o.out, 1, 1],
          label: "weightNormBackward.dg",
        },
        bind: ["dw", "v", "norms", "dg"],
      },
      {
        spec: {
          code: dvCode,
          workgroups: [o.out, 1, 1],
          label: "weightNormBackward.dv",
        },
        bind: ["dw", "g", "v", "norms", "dv"],
      },
    ],
  };
}

// ---------------------------------------------------------------------------
// Merge conv (fce head)

/** Sizes of the fce head's merge conv. */
export interface MergeOptions {
  /** Clips in the batch. */
  readonly batch: number;
  /** Sequence length (rows of z per clip). */
  readonly sequence: number;
  /** Embedding width: the conv's signal length and output length. */
  readonly dim: number;
  /** Sequence positions of the conv's input channels (C = length, usually 2). */
  readonly positions: readonly number[];
  /** Conv kernel size (odd; padding (kernel − 1)/2, stride 1). */
  readonly kernel: number;
}

function checkMerge(o: MergeOptions): void {
  checkInt("batch", o.batch, 1);
  checkInt("sequence", o.sequence, 1);
  checkInt("dim", o.dim, 1);
  checkInt("kernel", o.kernel, 1);
  if (o.kernel % 2 !== 1) {
    throw new RangeError(`merge kernel must be odd, got ${o.kernel}`);
  }
  if (o.positions.length < 1) throw new RangeError("merge needs a position");
  for (const p of o.positions) {
    if (!Number.isInteger(p) || p < 0 || p >= o.sequence) {
      throw new RangeError(`merge position ${p} outside 0…${o.sequence - 1}`);
    }
  }
}

/**
 * The fce head's merge conv forward (`classifier.merge`: conv1d over the
 * embedding axis, C = positions.length input channels, one output channel,
 * kernel stored `[kernel][C][1]`, zero padding (kernel − 1)/2):
 * `m[b][i] = bias + Σ_j Σ_c w[j·C + c] · z[b·sequence + positions[c]][i + j − (kernel−1)/2]`.
 *
 * Bindings: "z" (read, `[batch·sequence][dim]`), "w" (read, `[kernel·C]`),
 * "bias" (read, `[1]`), "m" (write, `[batch][dim]`). No scratch.
 *
 * @param o Sizes.
 * @returns The plan.
 */
export function mergeForward(o: MergeOptions): KernelPlan {
  checkMerge(o);
  const { batch, sequence, dim, kernel } = o;
  const C = o.positions.length;
  const half = (kernel - 1) / 2;
  const n = batch * dim;
  const taps = o.positions.map((p, c) =>
    `      acc += w[j * ${C}u + ${c}u] * z[(b * ${sequence}u + ${p}u) * ${dim}u + u32(t)];`
  ).join("\n");
  const code = `// mergeForward
@group(0) @binding(0) var<storage, read> z: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
${flatIndex(n)}
  let b = e / ${dim}u;
  let i = i32(e % ${dim}u);
  var acc = 0.0;
  for (var j = 0u; j < ${kernel}u; j++) {
    let t = i + i32(j) - ${half};
    if (t >= 0 && t < ${dim}) {
${taps}
    }
  }
  m[e] = acc + bias[0];
}
`;
  return {
    steps: [{
      spec: { code, workgroups: grid(n), label: "mergeForward" },
      bind: ["z", "w", "bias", "m"],
    }],
  };
}

/**
 * The merge conv backward, three dispatches with their own bindings, all
 * accumulating:
 *
 * 1. "dm" (read, `[batch][dim]`), "w" (read, `[kernel·C]`), "dz"
 *    (read_write, `[batch·sequence][dim]`): adds the gradient to the rows of
 *    the selected tokens (other rows untouched; a position listed twice gets
 *    both channels' gradients);
 * 2. "dm", "z" (read, `[batch·sequence][dim]`), "dw" (read_write,
 *    `[kernel·C]`): `dw[j·C + c] += Σ_b Σ_i dm[b][i]·z[b, positions[c], i + j − half]`
 *    (one workgroup per weight);
 * 3. "dm", "dbias" (read_write, `[1]`): `dbias[0] += Σ dm` (one workgroup).
 *
 * @param o Sizes.
 * @returns The plan (dz, dw, dbias steps). No scratch.
 */
export function mergeBackward(o: MergeOptions): KernelPlan {
  checkMerge(o);
  const { batch, sequence, dim, kernel } = o;
  const C = o.positions.length;
  const half = (kernel - 1) / 2;
  const steps: KernelStep[] = [];
  // dz: one thread per (b, t), one accumulator per distinct position.
  {
    const n = batch * dim;
    const distinct = [...new Set(o.positions)];
    const body = distinct.map((p, d) => {
      const channels = o.positions.map((q, c) => q === p ? c : -1).filter((
        c,
      ) => c >= 0);
      const terms = channels.map((c) =>
        `      a${d} += w[j * ${C}u + ${c}u] * g;`
      ).join("\n");
      return { p, d, terms };
    });
    const code = `// mergeBackward dz
@group(0) @binding(0) var<storage, read> dm: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> dz: array<f32>;
${flatIndex(n)}
  let b = e / ${dim}u;
  let t = i32(e % ${dim}u);
${body.map(({ d }) => `  var a${d} = 0.0;`).join("\n")}
  for (var j = 0u; j < ${kernel}u; j++) {
    let i = t - i32(j) + ${half};
    if (i >= 0 && i < ${dim}) {
      let g = dm[b * ${dim}u + u32(i)];
${body.map(({ terms }) => terms).join("\n")}
    }
  }
${
      body.map(({ p, d }) =>
        `  dz[(b * ${sequence}u + ${p}u) * ${dim}u + u32(t)] += a${d};`
      ).join("\n")
    }
}
`;
    steps.push({
      spec: { code, workgroups: grid(n), label: "mergeBackward.dz" },
      bind: ["dm", "w", "dz"],
    });
  }
  // dw: one workgroup per weight (j, c), reducing over batch·dim.
  {
    const positions = o.positions.map((p) => `${p}u`).join(", ");
    const code = `// mergeBackward dw
@group(0) @binding(0) var<storage, read> dm: array<f32>;
@group(0) @binding(1) var<storage, read> z: array<f32>;
@group(0) @binding(2) var<storage, read_write> dw: array<f32>;
const POS = array<u32, ${C}>(${positions});
var<workgroup> red: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let j = wid.x / ${C}u;
  let p = POS[wid.x % ${C}u];
  let shift = i32(j) - ${half};
  var acc = 0.0;
  for (var e = lid.x; e < ${batch * dim}u; e += ${WG}u) {
    let b = e / ${dim}u;
    let t = i32(e % ${dim}u) + shift;
    if (t >= 0 && t < ${dim}) {
      acc += dm[e] * z[(b * ${sequence}u + p) * ${dim}u + u32(t)];
    }
  }
  red[lid.x] = acc;
${TREE}
  if (lid.x == 0u) { dw[wid.x] += red[0]; }
}
`;
    steps.push({
      spec: {
        code,
        workgroups: [kernel * C, 1, 1],
        label: "mergeBackward.dw",
      },
      bind: ["dm", "z", "dw"],
    });
  }
  // dbias
  {
    const code = `// mergeBackward dbias
@group(0) @binding(0) var<storage, read> dm: array<f32>;
@group(0) @binding(1) var<storage, read_write> dbias: array<f32>;
var<workgroup> red: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_id) lid: vec3<u32>) {
  var acc = 0.0;
  for (var e = lid.x; e < ${batch * dim}u; e += ${WG}u) {
    acc += dm[e];
  }
  red[lid.x] = acc;
${TREE}
  if (lid.x == 0u) { dbias[0] += red[0]; }
}
`;
    steps.push({
      spec: { code, workgroups: [1, 1, 1], label: "mergeBackward.dbias" },
      bind: ["dm", "dbias"],
    });
  }
  return { steps };
}

// ---------------------------------------------------------------------------
// Cross-entropy

/** Sizes of the training loss. */
export interface CrossEntropyOptions {
  /** Logit rows: views · perView, view-major. */
  readonly rows: number;
  /** Classes (logits per row). */
  readonly classes: number;
  /** Clips per view (labels length). */
  readonly perView: number;
  /** Label smoothing ε in [0, 1]. */
  readonly smoothing: number;
}

/**
 * Label-smoothed cross-entropy summed over views of each view's batch mean
 * (`model/loss.ts`, summed as in training), its gradient and metrics.
 * Row r's label is `labels[r % perView]`; target = (1 − ε)·onehot + ε/classes.
 *
 * Bindings: "logits" (read, `[rows][classes]`), "labels" (read,
 * `array<i32>`, `[perView]`), "dlogits" (write, `[rows][classes]`:
 * (softmax − target)/perView), "metrics" (read_write, `[4]`, accumulated:
 * [0] += loss (Σ over views of the mean), [1] += correct argmax predictions
 * of the last view (first maximum wins), [2] += perView, [3] untouched).
 * One 256-thread workgroup with a fixed-order tree reduction
 * (deterministic), no scratch.
 *
 * @param o Sizes and ε.
 * @returns The plan.
 */
export function crossEntropy(o: CrossEntropyOptions): KernelPlan {
  checkInt("rows", o.rows, 1);
  checkInt("classes", o.classes, 1);
  checkInt("perView", o.perView, 1);
  if (o.rows % o.perView !== 0) {
    throw new RangeError(
      `rows ${o.rows} is not a multiple of perView ${o.perView}`,
    );
  }
  if (!(o.smoothing >= 0 && o.smoothing <= 1)) {
    throw new RangeError(`smoothing must be in [0, 1], got ${o.smoothing}`);
  }
  const { rows, classes, perView } = o;
  const eps = o.smoothing;
  const code = `// crossEntropy
@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> labels: array<i32>;
@group(0) @binding(2) var<storage, read_write> dlogits: array<f32>;
@group(0) @binding(3) var<storage, read_write> metrics: array<f32>;
var<workgroup> red: array<f32, ${WG}>;
var<workgroup> hits: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_id) lid: vec3<u32>) {
  var loss = 0.0;
  var correct = 0.0;
  for (var r = lid.x; r < ${rows}u; r += ${WG}u) {
    let base = r * ${classes}u;
    let label = u32(labels[r % ${perView}u]);
    var mx = logits[base];
    var arg = 0u;
    for (var c = 1u; c < ${classes}u; c++) {
      let x = logits[base + c];
      if (x > mx) { mx = x; arg = c; }
    }
    var sum = 0.0;
    var dotT = 0.0;
    for (var c = 0u; c < ${classes}u; c++) {
      let x = logits[base + c] - mx;
      sum += exp(x);
      dotT += select(${f32(eps / classes)}, ${
    f32(1 - eps + eps / classes)
  }, c == label) * x;
    }
    loss += log(sum) - dotT;
    let inv = 1.0 / sum;
    for (var c = 0u; c < ${classes}u; c++) {
      let p = exp(logits[base + c] - mx) * inv;
      let t = select(${f32(eps / classes)}, ${
    f32(1 - eps + eps / classes)
  }, c == label);
      dlogits[base + c] = (p - t) * ${f32(1 / perView)};
    }
    if (r >= ${rows - perView}u && arg == label) { correct += 1.0; }
  }
  red[lid.x] = loss;
  hits[lid.x] = correct;
  workgroupBarrier();
  for (var h = ${WG / 2}u; h > 0u; h = h >> 1u) {
    if (lid.x < h) {
      red[lid.x] += red[lid.x + h];
      hits[lid.x] += hits[lid.x + h];
    }
    workgroupBarrier();
  }
  if (lid.x == 0u) {
    metrics[0] += red[0] * ${f32(1 / perView)};
    metrics[1] += hits[0];
    metrics[2] += ${f32(perView)};
  }
}
`;
  return {
    steps: [{
      spec: { code, workgroups: [1, 1, 1], label: "crossEntropy" },
      bind: ["logits", "labels", "dlogits", "metrics"],
    }],
  };
}

// ---------------------------------------------------------------------------
// SGD

/** One parameter tensor in the flat arena (offset and size in floats). */
export interface SgdSegment {
  /** First element. */
  readonly offset: number;
  /** Elements. */
  readonly size: number;
}

/** Layout of the flat parameter arena. */
export interface SgdOptions {
  /** Floats in the params / grads / momentum arenas. */
  readonly total: number;
  /** The parameter tensors, sorted by offset, non-overlapping; gaps are left alone. */
  readonly segments: readonly SgdSegment[];
}

/** Hyper-parameters of one SGD step, for {@linkcode sgdHyper}. */
export interface SgdHyperOptions {
  /** Momentum μ (0 = off: momentum buffers untouched). */
  readonly momentum: number;
  /** Coupled L2 weight decay λ. */
  readonly weightDecay: number;
  /** Dampening τ. */
  readonly dampening: number;
  /** Nesterov momentum. */
  readonly nesterov: boolean;
  /** First step with momentum on: the buffer starts as the gradient. */
  readonly first: boolean;
  /** Learning rate of each segment, in segment order. */
  readonly lrs: readonly number[];
}

/** Index of segment i's learning rate in the hyper array. */
const HYPER_LR = 8;

/**
 * Builds the "hyper" array of {@linkcode sgdUpdate}: `[0]` μ, `[1]` λ,
 * `[2]` τ, `[3]` nesterov (0/1), `[4]` first (0/1), `[5…7]` 0, then
 * `[8 + i]` the learning rate of segment i.
 *
 * @param o Hyper-parameters and per-segment learning rates.
 * @returns `8 + lrs.length` floats.
 */
export function sgdHyper(o: SgdHyperOptions): Float32Array {
  const h = new Float32Array(HYPER_LR + o.lrs.length);
  h[0] = o.momentum;
  h[1] = o.weightDecay;
  h[2] = o.dampening;
  h[3] = o.nesterov ? 1 : 0;
  h[4] = o.first ? 1 : 0;
  h.set(o.lrs, HYPER_LR);
  return h;
}

/** A branch tree (binary search unrolled into WGSL) setting `seg` or returning for gaps. */
function segmentTree(o: SgdOptions): string {
  type Run = { start: number; seg: number };
  const runs: Run[] = [];
  let at = 0;
  o.segments.forEach((s, i) => {
    if (s.size === 0) return;
    if (s.offset > at) runs.push({ start: at, seg: -1 });
    runs.push({ start: s.offset, seg: i });
    at = s.offset + s.size;
  });
  if (at < o.total) runs.push({ start: at, seg: -1 });
  const out: string[] = [];
  const walk = (lo: number, hi: number, pad: string): void => {
    if (lo === hi) {
      out.push(
        runs[lo].seg < 0 ? `${pad}return;` : `${pad}seg = ${runs[lo].seg}u;`,
      );
      return;
    }
    const mid = (lo + hi + 1) >> 1;
    out.push(`${pad}if (e < ${runs[mid].start}u) {`);
    walk(lo, mid - 1, pad + " ");
    out.push(`${pad}} else {`);
    walk(mid, hi, pad + " ");
    out.push(`${pad}}`);
  };
  if (runs.length === 0) return "  return;";
  walk(0, runs.length - 1, "  ");
  return out.join("\n");
}

/**
 * One fused PyTorch SGD step (`model/sgd.ts`) over a flat arena of `total`
 * floats whose `segments` are the parameter tensors (gaps untouched). Per
 * element of segment i: `g = grad + λ·w`; if μ ≠ 0 {`buf = first ? g :
 * μ·buf + (1 − τ)·g`; `g = nesterov ? g + μ·buf : buf`}; `w −= lr_i·g`.
 * With μ = 0 the momentum buffers are neither read nor written.
 *
 * Bindings: "params" (read_write, `[total]`), "grads" (read, `[total]`),
 * "momentum" (read_write, `[total]`), "hyper" (read, `[8 + segments]`, see
 * {@linkcode sgdHyper}). One dispatch, one thread per element; the segment
 * of an element is found by a binary search unrolled into WGSL branches
 * (uniform within a warp except at boundaries). No scratch.
 *
 * @param o Arena size and segments (offsets and sizes in floats).
 * @returns The plan.
 * @throws {RangeError} On unsorted, overlapping or out-of-range segments.
 */
export function sgdUpdate(o: SgdOptions): KernelPlan {
  checkInt("total", o.total, 1);
  let end = 0;
  for (const s of o.segments) {
    checkInt("segment offset", s.offset, 0);
    checkInt("segment size", s.size, 0);
    if (s.offset < end || s.offset + s.size > o.total) {
      throw new RangeError(
        `SGD segments must be sorted, non-overlapping and inside 0…${o.total}: {offset ${s.offset}, size ${s.size}}`,
      );
    }
    end = s.offset + s.size;
  }
  if (o.total >= 2 ** 32) throw new RangeError("SGD arena over 2³² floats");
  const code = `// sgdUpdate
@group(0) @binding(0) var<storage, read_write> params: array<f32>;
@group(0) @binding(1) var<storage, read> grads: array<f32>;
@group(0) @binding(2) var<storage, read_write> momentum: array<f32>;
@group(0) @binding(3) var<storage, read> hyper: array<f32>;
${flatIndex(o.total)}
  var seg = 0u;
${segmentTree(o)}
  let lr = hyper[${HYPER_LR}u + seg];
  let mu = hyper[0];
  let w = params[e];
  var g = grads[e] + hyper[1] * w;
  if (mu != 0.0) {
    var buf: f32;
    if (hyper[4] != 0.0) {
      buf = g;
    } else {
      buf = mu * momentum[e] + (1.0 - hyper[2]) * g;
    }
    momentum[e] = buf;
    g = select(buf, g + mu * buf, hyper[3] != 0.0);
  }
  params[e] = w - lr * g;
}
`;
  return {
    steps: [{
      spec: { code, workgroups: grid(o.total), label: "sgdUpdate" },
      bind: ["params", "grads", "momentum", "hyper"],
    }],
  };
}
