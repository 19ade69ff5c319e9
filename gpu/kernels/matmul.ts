/**
 * General fp32 matrix multiply for the fused WebGPU engine:
 * `C = alpha·op(A)·op(B)` with optional transposes, row strides, two-level
 * batch strides (attention heads), and a fused epilogue (bias, residual,
 * accumulate, exact-erf GELU with the pre-activation kept).
 *
 * The WGSL is generated per shape with every size baked in: a workgroup
 * computes a `BM×BN` tile of C, each of its threads a block of 4-row ×
 * 4-column groups held in separate `vec4` accumulator variables, with the
 * K loop fully unrolled over a `BK = 16` slice staged in workgroup memory
 * (both tiles stored k-major, so the inner loop reads one `vec4` of A and
 * one of B per 4×4 outer product); in long K loops the next slice is
 * prefetched into registers while the current one is multiplied
 * (webgpu-notes §7). With two stages (wide products with short K slices
 * by default, measured faster there on an H100; `stages` overrides) the A
 * and B slices are double-buffered in workgroup memory instead: every iteration prefetches the next slice into
 * registers, multiplies the current buffer and stores the registers into
 * the other one, so one barrier per slice suffices instead of two (the
 * buffer is picked by an offset computed once per slice). This doubles the
 * workgroup memory (`2·(BM + BN)·BK·4` bytes, 32 KiB for 128×128); a tile
 * that would exceed {@linkcode MAX_WORKGROUP_BYTES} is refused. Global loads
 * and C stores use `vec4` where the layout allows it (contiguous extent,
 * leading dimension and batch strides multiples of 4); edges are
 * bounds-checked only along the dimensions that are not tile multiples.
 *
 * The tile (128×128, 128×64, 64×128, 64×64 or 32×32) and a split of K are
 * chosen from the shape by a small H100 cost model; when the split is used
 * the partial products go to a scratch region and a second dispatch sums
 * them and applies the epilogue.
 *
 * @module
 */
import type { KernelPlan, KernelStep } from "../runtime.ts";

/**
 * Options of {@linkcode matmul}. Sizes and strides are in f32 elements.
 *
 * `C` (m×n) = `alpha · op(A) · op(B)` (+ `bias`) (+ `r`), where op(A) is
 * m×k and op(B) is k×n; with `accumulate` the result is added to C.
 */
export interface MatmulOptions {
  /** Rows of C and of op(A). */
  readonly m: number;
  /** Columns of C and of op(B). */
  readonly n: number;
  /** Contraction length (columns of op(A), rows of op(B)). */
  readonly k: number;
  /** A stored as `[k][m]` (element (i, kk) at `kk*lda + i`); default `[m][k]` (at `i*lda + kk`). */
  readonly transA?: boolean;
  /** B stored as `[n][k]` (element (kk, j) at `j*ldb + kk`); default `[k][n]` (at `kk*ldb + j`). */
  readonly transB?: boolean;
  /** Row stride of the stored A (default: its row length, k or m). */
  readonly lda?: number;
  /** Row stride of the stored B (default: its row length, n or k). */
  readonly ldb?: number;
  /** Row stride of C, `r` and `pre` (default n). */
  readonly ldc?: number;
  /** Number of independent products (default 1); batch z = zo·batchInner + zi. */
  readonly batch?: number;
  /** Inner batch count (default 1; must divide batch), e.g. attention heads. */
  readonly batchInner?: number;
  /**
   * Element offset of A's batch z is `zo*strideA[0] + zi*strideA[1]`
   * (default dense: `[batchInner*rowsA*lda, rowsA*lda]`).
   */
  readonly strideA?: readonly [number, number];
  /** As strideA, for B. */
  readonly strideB?: readonly [number, number];
  /** As strideA, for C (and `r`, `pre`). */
  readonly strideC?: readonly [number, number];
  /**
   * Element offsets of the first stored element of A, B and C (and `r`,
   * `pre`) in their bindings (default 0): e.g. the query, key and value
   * columns of one packed projection output.
   */
  readonly offsetA?: number;
  readonly offsetB?: number;
  readonly offsetC?: number;
  /** Scale of the product (default 1). */
  readonly alpha?: number;
  /** Add `bias[j]` (binding "bias", n elements) to every row. */
  readonly bias?: boolean;
  /** Add `r[i][j]` (binding "r", same layout as C): C = r + alpha·AB (+ bias). */
  readonly residual?: boolean;
  /** C += alpha·AB (+ bias) instead of C = …; excludes `residual` and `gelu`. */
  readonly accumulate?: boolean;
  /**
   * Epilogue GELU: writes the pre-activation to binding "pre" (same layout
   * as C) and `0.5x(1 + erf(x/√2))` of it to C (erf accurate to ~2e-7).
   */
  readonly gelu?: boolean;
  /**
   * With `gelu`: also write the pre-activation to binding "pre" (default
   * true; training keeps it for the backward pass, eval graphs drop it).
   */
  readonly keepPre?: boolean;
  /**
   * Epilogue ReLU after bias and residual: C = max(0, r + alpha·AB + bias)
   * (folded conv + BatchNorm + ReLU in eval graphs). Excludes `accumulate`
   * and `gelu`.
   */
  readonly relu?: boolean;
  /**
   * Tuning/test override: number of K slices (split-K; 1 disables it).
   * Default: chosen from the shape.
   */
  readonly splitK?: number;
  /**
   * Tuning/test override: workgroup tile `[BM, BN]`, one of
   * [128,128], [128,64], [64,128], [64,64], [32,32]. Default: from the shape.
   */
  readonly tile?: readonly [number, number];
  /**
   * Tuning/test override: workgroup-memory buffers of the K slices. 1: one
   * buffer (two barriers per 16-wide K slice; long K loops prefetch the
   * next slice into registers); 2: double-buffered (one barrier per slice,
   * twice the workgroup memory: `2·(BM + BN)·64` bytes, 32 KiB for
   * 128×128). Default: 2 for wide products (n ≥ 1024, B not transposed)
   * whose K slice per workgroup is at most 768, else 1
   * ({@linkcode chosenStages}). The label of a 2-stage kernel contains ` s2`.
   */
  readonly stages?: 1 | 2;
}

/** A workgroup tile configuration. */
interface TileConfig {
  /** Tile rows / columns of C per workgroup. */
  readonly bm: number;
  readonly bn: number;
  /** Threads along columns (x) and rows (y); each owns bn/wx columns, bm/wy rows. */
  readonly wx: number;
  readonly wy: number;
  /** Relative per-SM throughput when the SM is full (128×128 = 1). */
  readonly rate: number;
  /** Workgroups resident per SM (register-limited estimate). */
  readonly occ: number;
}

const BK = 16;
/**
 * Workgroup-memory stages when `stages` is not given: double-buffered for
 * wide products (n ≥ 1024) with a K slice per workgroup of at most 768 and
 * B not transposed, else one buffer. Measured in the CS training step and
 * eval forward on an H100 (same call, each kernel's total): two stages took
 * 3–13 % less on such products (the q/k/v and fc1 projections, the CNN's
 * widening 1×1 convolutions) and 11–26 % more on narrow (n ≤ 256) and
 * transposed-B ones.
 */
function autoStages(L: Layout, chunk: number): 1 | 2 {
  return !L.transB && L.n >= 1024 && chunk <= 768 ? 2 : 1;
}
/**
 * Workgroup memory a tile may use, in bytes (llvmpipe's limit; WebGPU's
 * default is 16 KiB, and the engine requests the adapter's: 48 KiB on H100).
 */
export const MAX_WORKGROUP_BYTES = 32768;
/** Register prefetch of the next K slice pays off only for long K loops (H100). */
const PREFETCH_MIN_TILES = 16;
const TILES: readonly TileConfig[] = [
  { bm: 128, bn: 128, wx: 16, wy: 16, rate: 1.0, occ: 2 },
  { bm: 128, bn: 64, wx: 16, wy: 16, rate: 0.8, occ: 3 },
  { bm: 64, bn: 128, wx: 16, wy: 16, rate: 0.8, occ: 3 },
  { bm: 64, bn: 64, wx: 16, wy: 16, rate: 0.6, occ: 5 },
  { bm: 32, bn: 32, wx: 8, wy: 8, rate: 0.3, occ: 16 },
];

/** H100 model constants for the tile/split choice. */
const SMS = 132;
const SM_FLOPS = 23e12 / SMS;
const MEM_BYTES_PER_S = 2.5e12;
const DISPATCH_S = 5e-6;
const WAVE_S = 2e-6;
/** Least K-slice length a split may leave per workgroup. */
const MIN_SLICE = 256;
const MAX_SPLIT = 64;
const MAX_GRID = 65535;

const cdiv = (a: number, b: number): number => Math.ceil(a / b);
const isNat = (x: unknown): x is number =>
  typeof x === "number" && Number.isInteger(x) && x >= 1;
const isIdx = (x: unknown): x is number =>
  typeof x === "number" && Number.isInteger(x) && x >= 0;

/** WGSL literal of a u32. */
const u = (x: number): string => `${x}u`;
/** WGSL literal of an f32. */
const f = (x: number): string => {
  const s = Math.fround(x).toString();
  return /[.eE]/.test(s) ? s : `${s}.0`;
};

/** Resolved shape and layout. */
interface Layout {
  m: number;
  n: number;
  k: number;
  transA: boolean;
  transB: boolean;
  lda: number;
  ldb: number;
  ldc: number;
  batch: number;
  bi: number;
  sA: readonly [number, number];
  sB: readonly [number, number];
  sC: readonly [number, number];
  /** Element offsets of A, B, C. */
  oA: number;
  oB: number;
  oC: number;
  alpha: number;
  bias: boolean;
  residual: boolean;
  accumulate: boolean;
  gelu: boolean;
  /** gelu and the pre-activation is written to "pre". */
  pre: boolean;
  relu: boolean;
  /** vec4 access possible for A, B, C (and r, pre). */
  vecA: boolean;
  vecB: boolean;
  vecC: boolean;
}

function resolve(o: MatmulOptions): Layout {
  const bad = (msg: string): never => {
    throw new RangeError(`matmul: ${msg}`);
  };
  for (const key of ["m", "n", "k"] as const) {
    if (!isNat(o[key])) bad(`${key} must be a positive integer, got ${o[key]}`);
  }
  const { m, n, k } = o;
  const transA = o.transA ?? false;
  const transB = o.transB ?? false;
  const rowA = transA ? m : k;
  const rowsA = transA ? k : m;
  const rowB = transB ? k : n;
  const rowsB = transB ? n : k;
  const lda = o.lda ?? rowA;
  const ldb = o.ldb ?? rowB;
  const ldc = o.ldc ?? n;
  if (!isNat(lda) || lda < rowA) {
    bad(`lda ${lda} must be an integer ≥ the stored row length ${rowA}`);
  }
  if (!isNat(ldb) || ldb < rowB) {
    bad(`ldb ${ldb} must be an integer ≥ the stored row length ${rowB}`);
  }
  if (!isNat(ldc) || ldc < n) bad(`ldc ${ldc} must be an integer ≥ n = ${n}`);
  const batch = o.batch ?? 1;
  const bi = o.batchInner ?? 1;
  if (!isNat(batch)) bad(`batch must be a positive integer, got ${batch}`);
  if (!isNat(bi) || batch % bi !== 0) {
    bad(`batchInner ${bi} must be a positive integer dividing batch ${batch}`);
  }
  if (batch > MAX_GRID) bad(`batch ${batch} exceeds ${MAX_GRID}`);
  const stride = (
    name: string,
    s: readonly [number, number] | undefined,
    size: number,
  ): readonly [number, number] => {
    if (s === undefined) return [bi * size, size];
    if (s.length !== 2 || !isIdx(s[0]) || !isIdx(s[1])) {
      bad(`${name} must be two non-negative integers, got ${s}`);
    }
    return [s[0], s[1]];
  };
  const sA = stride("strideA", o.strideA, rowsA * lda);
  const sB = stride("strideB", o.strideB, rowsB * ldb);
  const sC = stride("strideC", o.strideC, m * ldc);
  const alpha = o.alpha ?? 1;
  if (typeof alpha !== "number" || !Number.isFinite(alpha)) {
    bad(`alpha must be a finite number, got ${alpha}`);
  }
  const bias = o.bias ?? false;
  const residual = o.residual ?? false;
  const accumulate = o.accumulate ?? false;
  const gelu = o.gelu ?? false;
  if (residual && accumulate) bad("residual and accumulate are exclusive");
  if (gelu && accumulate) bad("gelu and accumulate are exclusive");
  const relu = o.relu ?? false;
  if (o.keepPre === false && !gelu) bad("keepPre needs gelu");
  const pre = gelu && (o.keepPre ?? true);
  if (relu && (accumulate || gelu)) {
    bad("relu excludes accumulate and gelu");
  }
  const offset = (name: string, v: number | undefined): number => {
    if (v === undefined) return 0;
    if (!isIdx(v)) bad(`${name} must be a non-negative integer, got ${v}`);
    return v;
  };
  const oA = offset("offsetA", o.offsetA);
  const oB = offset("offsetB", o.offsetB);
  const oC = offset("offsetC", o.offsetC);
  const big = Math.max(
    oA + (batch / bi - 1) * sA[0] + (bi - 1) * sA[1] + rowsA * lda,
    oB + (batch / bi - 1) * sB[0] + (bi - 1) * sB[1] + rowsB * ldb,
    oC + (batch / bi - 1) * sC[0] + (bi - 1) * sC[1] + m * ldc,
  );
  if (big >= 2 ** 32) bad(`operands span ${big} elements, beyond u32 indexing`);
  const al4 = (...xs: number[]) => xs.every((x) => x % 4 === 0);
  return {
    m,
    n,
    k,
    transA,
    transB,
    lda,
    ldb,
    ldc,
    batch,
    bi,
    sA,
    sB,
    sC,
    oA,
    oB,
    oC,
    alpha,
    bias,
    residual,
    accumulate,
    gelu,
    pre,
    relu,
    vecA: al4(rowA, lda, oA, ...sA),
    vecB: al4(rowB, ldb, oB, ...sB),
    vecC: al4(n, ldc, oC, ...sC),
  };
}

/** Normalised split: slice length (multiple of BK) and the resulting count. */
function sliceOf(k: number, split: number): { chunk: number; split: number } {
  const chunk = cdiv(cdiv(k, split), BK) * BK;
  return { chunk, split: cdiv(k, chunk) };
}

/** Estimated seconds of one configuration on an H100 (rough model). */
function cost(L: Layout, t: TileConfig, split: number): number {
  const { chunk, split: s } = sliceOf(L.k, split);
  const wgs = cdiv(L.m, t.bm) * cdiv(L.n, t.bn) * L.batch * s;
  const perSm = cdiv(wgs, SMS);
  const wgFlops = 2 * t.bm * t.bn * (chunk + 2 * BK); // + prologue/epilogue
  const smRate = SM_FLOPS * t.rate;
  let time: number;
  if (perSm <= t.occ) {
    // all resident at once; a partly filled SM hides latency less well
    time = perSm * wgFlops / (smRate * Math.sqrt(perSm / t.occ));
  } else {
    time = cdiv(perSm, t.occ) * t.occ * wgFlops / smRate;
  }
  time += cdiv(perSm, t.occ) * WAVE_S;
  if (s > 1) {
    const outs = L.m * L.n * L.batch;
    const extra = 1 + (L.residual || L.accumulate ? 1 : 0) + (L.pre ? 1 : 0);
    time += DISPATCH_S + (2 * s + extra) * outs * 4 / MEM_BYTES_PER_S;
  }
  return time;
}

/** Workgroup memory of a tile's K-slice buffers, in bytes. */
const tileBytes = (t: TileConfig, stages: number): number =>
  stages * (t.bm + t.bn) * BK * 4;

/**
 * Picks the tile and split: overrides first, else the cheapest by
 * {@linkcode cost} among the tiles whose buffers fit the workgroup memory.
 */
function choose(
  L: Layout,
  o: MatmulOptions,
): { t: TileConfig; chunk: number; split: number; stages: 1 | 2 } {
  const stages = o.stages ?? 1; // tiles are filtered for 1; 2 fits every tile
  if (stages !== 1 && stages !== 2) {
    throw new RangeError(`matmul: stages must be 1 or 2, got ${o.stages}`);
  }
  let tiles = TILES.filter((t) => tileBytes(t, stages) <= MAX_WORKGROUP_BYTES);
  if (o.tile !== undefined) {
    const t = TILES.find((c) => c.bm === o.tile![0] && c.bn === o.tile![1]);
    if (!t) {
      throw new RangeError(
        `matmul: tile ${o.tile} is not one of ${
          TILES.map((c) => `[${c.bm},${c.bn}]`).join(" ")
        }`,
      );
    }
    if (tileBytes(t, stages) > MAX_WORKGROUP_BYTES) {
      throw new RangeError(
        `matmul: tile [${t.bm},${t.bn}] with stages ${stages} needs ${
          tileBytes(t, stages)
        } bytes of workgroup memory, over ${MAX_WORKGROUP_BYTES}`,
      );
    }
    tiles = [t];
  }
  if (o.splitK !== undefined && !isNat(o.splitK)) {
    throw new RangeError(
      `matmul: splitK must be a positive integer, got ${o.splitK}`,
    );
  }
  const maxSplit = Math.max(
    1,
    Math.min(
      MAX_SPLIT,
      Math.floor(L.k / MIN_SLICE),
      Math.floor(MAX_GRID / L.batch),
    ),
  );
  let best: { t: TileConfig; chunk: number; split: number } | undefined;
  let bestCost = Infinity;
  for (const t of tiles) {
    if (cdiv(L.m, t.bm) > MAX_GRID || cdiv(L.n, t.bn) > MAX_GRID) continue;
    const splits = o.splitK !== undefined
      ? [o.splitK]
      : Array.from({ length: maxSplit }, (_, i) => i + 1);
    for (const s0 of splits) {
      const { chunk, split } = sliceOf(L.k, s0);
      if (L.batch * split > MAX_GRID) continue;
      const c = cost(L, t, s0);
      if (c < bestCost) {
        bestCost = c;
        best = { t, chunk, split };
      }
    }
  }
  if (!best) {
    throw new RangeError(
      `matmul: no tile configuration fits the 65,535-workgroup grid limit (m=${L.m}, n=${L.n}, batch=${L.batch}, splitK=${o.splitK})`,
    );
  }
  return { ...best, stages: o.stages ?? autoStages(L, best.chunk) };
}

/**
 * The workgroup-memory stages {@linkcode matmul} uses for these options:
 * `o.stages` when given, else its shape rule (two for wide products with
 * short K slices, see the module doc).
 *
 * @param o Shape, layout and overrides.
 * @returns 1 or 2.
 */
export function chosenStages(o: MatmulOptions): 1 | 2 {
  return choose(resolve(o), o).stages;
}

/** WGSL of erf/GELU for f32 and vec4 (|error of erf| ≲ 2e-7). */
function geluWgsl(): string {
  const body = (T: string) => `
fn erf_${T === "f32" ? "1" : "4"}(x: ${T}) -> ${T} {
  // |x| < 0.5: Taylor series (no cancellation); else Abramowitz–Stegun 7.1.26
  let ax = abs(x);
  let x2 = x * x;
  let small = x * (1.1283791670955126 + x2 * (-0.3761263890318375 + x2 * (0.11283791670955126
    + x2 * (-0.02686617064513125 + x2 * (0.005223977625442188 + x2 * (-0.0008548327023450852
    + x2 * 0.00012055332981789664))))));
  let t = 1.0 / (1.0 + 0.3275911 * ax);
  let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027
    + t * 1.061405429))));
  let large = sign(x) * (1.0 - poly * exp(-x2));
  return select(large, small, ax < ${T}(0.5));
}
fn gelu_${T === "f32" ? "1" : "4"}(x: ${T}) -> ${T} {
  return 0.5 * x * (1.0 + erf_${
    T === "f32" ? "1" : "4"
  }(x * 0.7071067811865476));
}`;
  return body("f32") + body("vec4<f32>");
}

/** Storage declaration of one binding. */
const decl = (
  i: number,
  name: string,
  vec: boolean,
  write: boolean,
): string =>
  `@group(0) @binding(${i}) var<storage, ${
    write ? "read_write" : "read"
  }> ${name}: array<${vec ? "vec4<f32>" : "f32"}>;`;

/**
 * Epilogue code storing one unit (a vec4 when `vec`, else a scalar) of the
 * finished sum `acc` to C at index `ci` (in units of the C binding), for
 * column `col` (first column of the unit).
 */
function epilogue(
  L: Layout,
  vec: boolean,
  acc: string,
  ci: string,
  col: string,
  ind: string,
): string {
  const T = vec ? "vec4<f32>" : "f32";
  const lines: string[] = [];
  let v = L.alpha === 1 ? acc : `${f(L.alpha)} * ${acc}`;
  if (L.bias) {
    v += vec
      ? ` + vec4<f32>(bias[${col}], bias[${col} + 1u], bias[${col} + 2u], bias[${col} + 3u])`
      : ` + bias[${col}]`;
  }
  if (L.residual) v = `r[${ci}] + ${v}`;
  if (L.relu) v = `max(${v}, ${T}(0.0))`;
  lines.push(`let v: ${T} = ${v};`);
  if (L.gelu) {
    if (L.pre) lines.push(`pre[${ci}] = v;`);
    lines.push(`c[${ci}] = gelu_${vec ? "4" : "1"}(v);`);
  } else if (L.accumulate) {
    lines.push(`c[${ci}] = c[${ci}] + v;`);
  } else {
    lines.push(`c[${ci}] = v;`);
  }
  return lines.map((l) => ind + l).join("\n");
}

/** Bindings of a plan's final (epilogue) step after the operands. */
function epilogueBindings(L: Layout, first: number): {
  decls: string[];
  names: string[];
} {
  const decls: string[] = [];
  const names: string[] = [];
  let i = first;
  if (L.bias) {
    decls.push(decl(i++, "bias", false, false));
    names.push("bias");
  }
  if (L.residual) {
    decls.push(decl(i++, "r", L.vecC, false));
    names.push("r");
  }
  decls.push(decl(i++, "c", L.vecC, true));
  names.push("c");
  if (L.pre) {
    decls.push(decl(i++, "pre", L.vecC, true));
    names.push("pre");
  }
  return { decls, names };
}

/** Operand offset expression `base + zo*s0 + zi*s1` (elements). */
function batchOffset(
  L: Layout,
  s: readonly [number, number],
  base: number,
): string {
  const parts: string[] = base ? [u(base)] : [];
  if (L.batch / L.bi > 1 && s[0] !== 0) parts.push(`zo * ${u(s[0])}`);
  if (L.bi > 1 && s[1] !== 0) parts.push(`zi * ${u(s[1])}`);
  return parts.length ? parts.join(" + ") : "0u";
}

/**
 * Code loading one operand's tile slice into prefetch registers `p{X}{i}`
 * (vec4 each) and storing them into workgroup memory `As`/`Bs` at a vec4
 * offset (`store(off)`: `off` is "" or a WGSL term ending in " + ").
 */
function operandCode(
  X: "a" | "b",
  L: Layout,
  t: TileConfig,
  kChecked: boolean,
): {
  setup: string;
  load: string;
  store: (off: string) => string;
  regs: number;
} {
  const nt = t.wx * t.wy;
  const isA = X === "a";
  const D = isA ? t.bm : t.bn; // tile extent along m (A) or n (B)
  const MN = isA ? L.m : L.n;
  const ld = isA ? L.lda : L.ldb;
  const vec = isA ? L.vecA : L.vecB;
  const contigK = isA ? !L.transA : L.transB; // stored rows run along k
  const mnChecked = MN % D !== 0;
  const origin = isA ? "row0" : "col0";
  const S = isA ? "As" : "Bs";
  const units = D * BK / 4;
  const per = units / nt;
  const setup: string[] = [];
  const load: string[] = [];
  const store: string[] = [];
  for (let p = 0; p < per; p++) {
    const uu = `(tid + ${u(p * nt)})`;
    const R = `p${X}${p}`;
    if (!contigK) {
      // stored [k][mn]: unit = 4 consecutive mn at one kk; no transpose
      const q = D / 4;
      setup.push(`let ${X}k${p} = ${uu} / ${u(q)};`);
      setup.push(`let ${X}d${p} = (${uu} % ${u(q)}) * 4u;`);
      setup.push(
        `let ${X}i${p} = off${X} + ${X}k${p} * ${
          u(ld)
        } + ${origin} + ${X}d${p};`,
      );
      const idx = `${X}i${p} + KV * ${u(ld)}`;
      const kOk = kChecked ? `KV + ${X}k${p} < ${u(L.k)}` : "";
      const mnOk = (j: number) =>
        mnChecked ? `${origin} + ${X}d${p} + ${u(j)} < ${u(MN)}` : "";
      load.push(loadUnit(X, R, idx, vec, kOk, mnOk));
      store.push(`${S}[OFF${X}k${p} * ${u(q)} + ${X}d${p} / 4u] = ${R};`);
    } else {
      // stored [mn][k]: unit = 4 consecutive kk of one mn row; transposed store
      setup.push(`let ${X}r${p} = ${uu} / ${u(BK / 4)};`);
      setup.push(`let ${X}k${p} = (${uu} % ${u(BK / 4)}) * 4u;`);
      setup.push(
        `let ${X}i${p} = off${X} + (${origin} + ${X}r${p}) * ${
          u(ld)
        } + ${X}k${p};`,
      );
      const idx = `${X}i${p} + KV`;
      const rowOk = mnChecked ? `${origin} + ${X}r${p} < ${u(MN)}` : "";
      const kOk = (j: number) =>
        kChecked ? `KV + ${X}k${p} + ${u(j)} < ${u(L.k)}` : "";
      load.push(loadUnit(X, R, idx, vec, rowOk, kOk));
      const q = D / 4;
      for (let j = 0; j < 4; j++) {
        store.push(
          `${S}[OFF(${X}k${p} + ${u(j)}) * ${
            u(q)
          } + ${X}r${p} / 4u][${X}r${p} % 4u] = ${R}.${"xyzw"[j]};`,
        );
      }
    }
  }
  return {
    setup: setup.join("\n  "),
    load: load.join("\n"),
    store: (off: string) => store.join("\n      ").replaceAll("OFF", off),
    regs: per,
  };
}

/**
 * Loads 4 consecutive stored elements starting at element index `idx` into
 * register `R`, zero where `all` (a condition for the whole unit) or
 * `each(j)` (one per element) fails; empty conditions are always true.
 */
function loadUnit(
  X: string,
  R: string,
  idx: string,
  vec: boolean,
  all: string,
  each: (j: number) => string,
): string {
  const ind = "      ";
  const wrap = (cond: string, body: string) =>
    cond ? `if (${cond}) { ${body} }` : body;
  if (vec) {
    // contiguous extent is a multiple of 4: the unit is wholly in or out
    const conds = [all, each(0)].filter((c) => c).join(" && ");
    const body = `${R} = ${X}[(${idx}) / 4u];`;
    return conds
      ? `${ind}${R} = vec4<f32>(0.0);\n${ind}${wrap(conds, body)}`
      : `${ind}${body}`;
  }
  const anyEach = [0, 1, 2, 3].some((j) => each(j));
  if (!anyEach) {
    const body =
      `let e = ${idx}; ${R} = vec4<f32>(${X}[e], ${X}[e + 1u], ${X}[e + 2u], ${X}[e + 3u]);`;
    return all
      ? `${ind}${R} = vec4<f32>(0.0);\n${ind}if (${all}) { ${body} }`
      : `${ind}{ ${body} }`;
  }
  const parts = [0, 1, 2, 3].map((j) =>
    `${ind}  ${wrap(each(j), `${R}.${"xyzw"[j]} = ${X}[e + ${u(j)}];`)}`
  );
  const inner = `${ind}  let e = ${idx};\n${parts.join("\n")}`;
  return `${ind}${R} = vec4<f32>(0.0);\n` +
    (all
      ? `${ind}if (${all}) {\n${inner}\n${ind}}`
      : `${ind}{\n${inner}\n${ind}}`);
}

/**
 * The main (tiled) kernel. With `split > 1` it writes raw partial sums to
 * "splitk"; with `stages` 2 the K slices are double-buffered.
 */
function mainKernel(
  L: Layout,
  t: TileConfig,
  chunk: number,
  split: number,
  stages: 1 | 2,
): KernelStep {
  const { m, n, k } = L;
  const gm = t.bm / t.wy / 4; // vec4 groups per thread
  const gn = t.bn / t.wx / 4;
  const kChecked = k % BK !== 0;
  const A = operandCode("a", L, t, kChecked);
  const B = operandCode("b", L, t, kChecked);
  const splitMode = split > 1;
  const lines: string[] = [];
  const label = `matmul ${t.bm}x${t.bn}${
    stages === 2 ? " s2" : ""
  } m${m} n${n} k${k}${L.transA ? " tA" : ""}${L.transB ? " tB" : ""}${
    L.batch > 1 ? ` b${L.batch}` : ""
  }${splitMode ? ` split${split}` : ""}${L.relu ? " relu" : ""}`;
  lines.push(`// ${label}`);
  lines.push(decl(0, "a", L.vecA, false));
  lines.push(decl(1, "b", L.vecB, false));
  let names = ["a", "b"];
  const vecOut = splitMode ? n % 4 === 0 : L.vecC;
  if (splitMode) {
    lines.push(decl(2, "splitk", vecOut, true));
    names.push("splitk");
  } else {
    const e = epilogueBindings(L, 2);
    lines.push(...e.decls);
    names = names.concat(e.names);
    if (L.gelu) lines.push(geluWgsl());
  }
  const unitsA = t.bm * BK / 4; // vec4s of one K-slice buffer of A
  const unitsB = t.bn * BK / 4;
  lines.push(`var<workgroup> As: array<vec4<f32>, ${stages * unitsA}>;`);
  lines.push(`var<workgroup> Bs: array<vec4<f32>, ${stages * unitsB}>;`);
  lines.push(`@compute @workgroup_size(${t.wx}, ${t.wy})
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let tx = lid.x;
  let ty = lid.y;
  let tid = ty * ${u(t.wx)} + tx;
  let row0 = wid.y * ${u(t.bm)};
  let col0 = wid.x * ${u(t.bn)};
  let z = wid.z % ${u(L.batch)};
  let zo = z / ${u(L.bi)};
  let zi = z % ${u(L.bi)};
  let offa = ${batchOffset(L, L.sA, L.oA)};
  let offb = ${batchOffset(L, L.sB, L.oB)};
  let kBeg = (wid.z / ${u(L.batch)}) * ${u(chunk)};
  let kEnd = min(kBeg + ${u(chunk)}, ${u(k)});
  ${A.setup}
  ${B.setup}`);
  for (let i = 0; i < A.regs; i++) lines.push(`  var pa${i}: vec4<f32>;`);
  for (let i = 0; i < B.regs; i++) lines.push(`  var pb${i}: vec4<f32>;`);
  const accs: string[] = [];
  for (let g = 0; g < gm; g++) {
    for (let q = 0; q < 4; q++) {
      for (let h = 0; h < gn; h++) accs.push(`c${g}_${q}_${h}`);
    }
  }
  lines.push(
    accs.map((c) => `  var ${c} = vec4<f32>(0.0);`).join("\n"),
  );
  /**
   * Multiply-accumulate of one K slice, fully unrolled; `ra`/`rb` are the
   * thread's vec4 index in `As`/`Bs`: "ty"/"tx" plus the buffer's offset.
   */
  const multiply = (ra: string, rb: string): string => {
    const blocks: string[] = [];
    for (let kk = 0; kk < BK; kk++) {
      const body: string[] = [];
      for (let g = 0; g < gm; g++) {
        body.push(`let a${g} = As[${u(kk * t.bm / 4 + g * t.wy)} + ${ra}];`);
      }
      for (let h = 0; h < gn; h++) {
        body.push(`let b${h} = Bs[${u(kk * t.bn / 4 + h * t.wx)} + ${rb}];`);
      }
      for (let g = 0; g < gm; g++) {
        for (let q = 0; q < 4; q++) {
          for (let h = 0; h < gn; h++) {
            const c = `c${g}_${q}_${h}`;
            body.push(
              `${c} = fma(vec4<f32>(a${g}.${"xyzw"[q]}), b${h}, ${c});`,
            );
          }
        }
      }
      blocks.push(`    {\n      ${body.join("\n      ")}\n    }`);
    }
    return blocks.join("\n");
  };
  const load = (kv: string): string =>
    `${A.load.replaceAll("KV", kv)}\n${B.load.replaceAll("KV", kv)}`;
  const store = (offA: string, offB: string): string =>
    `      ${A.store(offA)}\n      ${B.store(offB)}`;
  if (stages === 2) {
    // Double-buffered: slice s lives in buffer cur = s % 2, selected by a
    // runtime offset computed once per slice (the loads keep their constant
    // offsets; one copy of the unrolled slice also compiles several times
    // faster on llvmpipe than the loop unrolled by two). While buffer cur is
    // multiplied, the next slice goes global → registers → buffer 1 − cur;
    // the one barrier per slice both publishes buffer 1 − cur and ends the
    // reads of buffer cur before the next iteration overwrites it.
    lines.push(`  {
${load("kBeg")}
${store("", "")}
  }
  workgroupBarrier();
  var cur = 0u;
  for (var k0 = kBeg; k0 < kEnd; k0 = k0 + ${u(BK)}) {
    let kn = k0 + ${u(BK)};
    if (kn < kEnd) {
${load("kn")}
    }
    let ra = cur * ${u(unitsA)} + ty;
    let rb = cur * ${u(unitsB)} + tx;
${multiply("ra", "rb")}
    if (kn >= kEnd) {
      break;
    }
    cur = 1u - cur;
    let oa = cur * ${u(unitsA)};
    let ob = cur * ${u(unitsB)};
${store("oa + ", "ob + ")}
    workgroupBarrier();
  }`);
  } else {
    if (chunk >= PREFETCH_MIN_TILES * BK) {
      // prologue: first slice into registers
      lines.push(`  {
${load("kBeg")}
  }
  for (var k0 = kBeg; k0 < kEnd; k0 = k0 + ${u(BK)}) {
    {
${store("", "")}
    }
    workgroupBarrier();
    if (k0 + ${u(BK)} < kEnd) {
      let kn = k0 + ${u(BK)};
${load("kn")}
    }`);
    } else {
      lines.push(`  for (var k0 = kBeg; k0 < kEnd; k0 = k0 + ${u(BK)}) {
    {
${load("k0")}
${store("", "")}
    }
    workgroupBarrier();`);
    }
    lines.push(multiply("ty", "tx"));
    lines.push(`    workgroupBarrier();
  }`);
  }
  // epilogue
  const mChecked = m % t.bm !== 0;
  const nChecked = n % t.bn !== 0;
  if (!splitMode) lines.push(`  let offc = ${batchOffset(L, L.sC, L.oC)};`);
  else lines.push(`  let offc = wid.z * ${u(m * n)};`); // (split, batch) → dense slab
  const ldOut = splitMode ? n : L.ldc;
  for (let g = 0; g < gm; g++) {
    for (let q = 0; q < 4; q++) {
      const rowBody: string[] = [];
      rowBody.push(`let base = offc + row * ${u(ldOut)};`);
      for (let h = 0; h < gn; h++) {
        const acc = `c${g}_${q}_${h}`;
        const store = (vec: boolean, accX: string, colX: string, ci: string) =>
          splitMode
            ? `        splitk[${ci}] = ${accX};`
            : epilogue(L, vec, accX, ci, colX, "        ");
        const parts: string[] = [];
        if (vecOut) {
          const s = store(true, acc, "col", "(base + col) / 4u");
          parts.push(
            nChecked
              ? `if (col < ${u(n)}) {\n${s}\n      }`
              : `{\n${s}\n      }`,
          );
        } else {
          for (let j = 0; j < 4; j++) {
            const s = store(
              false,
              `${acc}.${"xyzw"[j]}`,
              `(col + ${u(j)})`,
              `base + col + ${u(j)}`,
            );
            parts.push(
              nChecked
                ? `if (col + ${u(j)} < ${u(n)}) {\n${s}\n      }`
                : `{\n${s}\n      }`,
            );
          }
        }
        rowBody.push(
          `{\n      let col = col0 + ${u(h * 4 * t.wx)} + tx * 4u;\n      ${
            parts.join("\n      ")
          }\n      }`,
        );
      }
      const rb = rowBody.join("\n      ");
      const rowDecl = `let row = row0 + ${u(g * 4 * t.wy + q)} + ty * 4u;`;
      lines.push(
        mChecked
          ? `  {\n    ${rowDecl}\n    if (row < ${
            u(m)
          }) {\n      ${rb}\n    }\n  }`
          : `  {\n    ${rowDecl}\n    ${rb}\n  }`,
      );
    }
  }
  lines.push("}");
  const grid: [number, number, number] = [
    cdiv(n, t.bn),
    cdiv(m, t.bm),
    L.batch * split,
  ];
  return {
    spec: { code: lines.join("\n") + "\n", workgroups: grid, label },
    bind: names,
  };
}

/** Second split-K dispatch: sums the slices of "splitk" and applies the epilogue. */
function reduceKernel(L: Layout, split: number): KernelStep {
  const { m, n } = L;
  const vec = L.vecC; // implies n % 4 == 0, so the dense partials align too
  const w = vec ? 4 : 1;
  const total = L.batch * m * n / w; // units per slice
  const groups = cdiv(total, 256);
  const gx = Math.min(groups, MAX_GRID);
  const gy = cdiv(groups, gx);
  if (gy > MAX_GRID) {
    throw new RangeError(`matmul: ${L.batch * m * n} outputs are too many`);
  }
  const label = `matmul reduce m${m} n${n} b${L.batch} split${split}`;
  const e = epilogueBindings(L, 1);
  const T = vec ? "vec4<f32>" : "f32";
  const code = `// ${label}
${decl(0, "splitk", vec, false)}
${e.decls.join("\n")}
${L.gelu ? geluWgsl() : ""}
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let e = (wid.y * ${u(gx)} + wid.x) * 256u + lid.x;
  if (e >= ${u(total)}) { return; }
  var acc: ${T} = splitk[e];
  for (var s = 1u; s < ${u(split)}; s = s + 1u) {
    acc = acc + splitk[s * ${u(total)} + e];
  }
  let el = e * ${u(w)};
  let z = el / ${u(m * n)};
  let rem = el % ${u(m * n)};
  let row = rem / ${u(n)};
  let col = rem % ${u(n)};
  let zo = z / ${u(L.bi)};
  let zi = z % ${u(L.bi)};
  let ci = (${batchOffset(L, L.sC, L.oC)} + row * ${u(L.ldc)} + col) / ${u(w)};
${epilogue(L, vec, "acc", "ci", "col", "  ")}
}
`;
  return {
    spec: { code, workgroups: [gx, gy, 1], label },
    bind: ["splitk", ...e.names],
  };
}

/**
 * Plans `C = alpha·op(A)·op(B)` (+ bias, residual, accumulate, GELU) for a
 * fixed shape; the tile and split-K are chosen for an H100 unless
 * overridden.
 *
 * Bindings, in order: "a" (A), "b" (B), "bias" (n elements, with `bias`),
 * "r" (residual, layout of C, with `residual`), "c" (C, read and written
 * with `accumulate`), "pre" (pre-activation, layout of C, with `gelu`
 * unless `keepPre` is false).
 * With split-K there are two steps — the first binds "a", "b" and the
 * scratch "splitk" (`split·batch·m·n` floats), the second "splitk" and the
 * epilogue names.
 *
 * @param o Shape, layout and epilogue.
 * @returns The plan (one or two dispatches).
 * @throws {RangeError} On inconsistent options (non-positive sizes, strides
 *   shorter than rows, batchInner not dividing batch, residual or gelu with
 *   accumulate, an unknown tile, stages other than 1 or 2, a tile whose
 *   buffers exceed {@linkcode MAX_WORKGROUP_BYTES} with the stages asked
 *   for, a grid over 65,535 workgroups).
 */
export function matmul(o: MatmulOptions): KernelPlan {
  const L = resolve(o);
  const { t, chunk, split, stages } = choose(L, o);
  const main = mainKernel(L, t, chunk, split, stages);
  if (split === 1) return { steps: [main] };
  return {
    steps: [main, reduceKernel(L, split)],
    scratch: { splitk: split * L.batch * L.m * L.n },
  };
}
