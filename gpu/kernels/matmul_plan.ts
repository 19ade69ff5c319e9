/**
 * The shape side of the fused engine's matmul (`matmul.ts`): its options,
 * their resolution into a checked {@linkcode Layout}, the workgroup tiles,
 * and the choice of tile, split of K and workgroup-memory stages by a small
 * H100 cost model. Tiles are checked against the workgroup memory with the
 * tiles' element size (f16 operands are staged as f16 unless `staging:
 * "f32"`: half the bytes)
 * and the K-slice depth `bk`; the automatic two stages are taken only
 * where they fit.
 *
 * @module
 */
import { MAX_GRID_DIM } from "./grid.ts";

/**
 * Options of {@linkcode matmul}. Sizes, strides and offsets are in elements
 * (f32, or f16 for f16 operands and outputs).
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
  /**
   * Element type of the stored A and B (default "f32"). "f16": bindings
   * "a" and "b" hold IEEE halves (`array<f16>`, `vec4<f16>` where the
   * layout allows), staged in workgroup memory as f16 (half the bytes of
   * f32, so deeper K slices fit: `bk`), converted to f32 when read from
   * workgroup memory and multiplied into f32 accumulators (unless
   * `packedK`); the epilogue runs in f32. Needs the device's `shader-f16`
   * (the runtime refuses the kernel at record time without it). The label
   * contains ` f16`.
   */
  readonly operands?: "f32" | "f16";
  /**
   * Store C, "r" (residual) and "pre" as f16 halves (default false: f32),
   * rounded to nearest even exactly as `Math.f16round` (overflow to ±inf);
   * "bias" and the split-K scratch stay f32. Needs `shader-f16`. The label
   * contains ` >f16`.
   */
  readonly outF16?: boolean;
  /**
   * With f16 operands: products of `packedK` consecutive k (2, 4 or 8) are
   * multiplied and summed in f16 (`vec4<f16>` fma: 2× the f32 rate on an
   * H100's CUDA cores) and each such partial sum is added to the f32
   * accumulators; 0 (default) converts the operands to f32 first. Costs
   * precision: every partial carries about `packedK·2⁻¹¹` relative error,
   * and overflows beyond ±65,504. The label contains ` p<packedK>`.
   */
  readonly packedK?: 0 | 2 | 4 | 8;
  /**
   * Depth of the K slice staged in workgroup memory per barrier: 16
   * (default) or 32 (half the barriers, twice the unrolled code; with f16
   * operands a 32-deep slice takes the bytes of a 16-deep f32 one). The
   * label contains ` bk32`.
   */
  readonly bk?: 16 | 32;
  /**
   * With f16 operands: element type of the workgroup-memory tiles. "f16"
   * (default) halves their bytes and widens each value as the inner loop
   * reads it; "f32" widens each value once as it is staged (f32-sized
   * tiles, the f32 kernel's inner loop; global loads stay f16). The label
   * contains ` sf32`.
   */
  readonly staging?: "f16" | "f32";
}

/** A workgroup tile configuration. */
export interface TileConfig {
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

/** Default depth of a K slice (elements of K per workgroup-memory slice). */
export const BK = 16;
/**
 * Workgroup-memory stages when `stages` is not given: double-buffered for
 * wide products (n ≥ 1024) with a K slice per workgroup of at most 768 and
 * B not transposed, else one buffer. Measured in the CS training step and
 * eval forward on an H100 (same call, each kernel's total): two stages took
 * 3–13 % less on such products (the q/k/v and fc1 projections, the CNN's
 * widening 1×1 convolutions) and 11–26 % more on narrow (n ≤ 256) and
 * transposed-B ones.
 */
function autoStages(L: Layout, t: TileConfig, chunk: number): 1 | 2 {
  return !L.transB && L.n >= 1024 && chunk <= 768 &&
      tileBytes(L, t, 2) <= MAX_WORKGROUP_BYTES
    ? 2
    : 1;
}
/**
 * Workgroup memory a tile may use, in bytes (llvmpipe's limit; WebGPU's
 * default is 16 KiB, and the engine requests the adapter's: 48 KiB on H100).
 */
export const MAX_WORKGROUP_BYTES = 32768;
/** Register prefetch of the next K slice pays off only for long K loops (H100). */
export const PREFETCH_MIN_TILES = 16;
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

export const cdiv = (a: number, b: number): number => Math.ceil(a / b);
const isNat = (x: unknown): x is number =>
  typeof x === "number" && Number.isInteger(x) && x >= 1;
const isIdx = (x: unknown): x is number =>
  typeof x === "number" && Number.isInteger(x) && x >= 0;

/** WGSL literal of a u32. */
export const u = (x: number): string => `${x}u`;

/** Resolved shape and layout. */
export interface Layout {
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
  /** A and B stored as f16. */
  f16: boolean;
  /** f16 A and B staged as f16 in workgroup memory. */
  stage16: boolean;
  /** f16 A, B not vec4-aligned but even: `vec2<f16>` loads. */
  pairA: boolean;
  pairB: boolean;
  /** C, r and pre stored as f16. */
  outF16: boolean;
  /** k steps summed in f16 before each f32 accumulate (0: products in f32). */
  packedK: number;
  /** K slice depth. */
  bk: number;
}

export function resolve(o: MatmulOptions): Layout {
  const bad = (msg: string): never => {
    throw new RangeError(`Cannot plan matmul: ${msg}`);
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
  if (batch > MAX_GRID_DIM) bad(`batch ${batch} exceeds ${MAX_GRID_DIM}`);
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
  const operands = o.operands ?? "f32";
  if (operands !== "f32" && operands !== "f16") {
    bad(`operands must be "f32" or "f16", got ${operands}`);
  }
  const outF16 = o.outF16 ?? false;
  if (typeof outF16 !== "boolean") bad(`outF16 must be a boolean`);
  const packedK = o.packedK ?? 0;
  if (![0, 2, 4, 8].includes(packedK)) {
    bad(`packedK must be 0, 2, 4 or 8, got ${packedK}`);
  }
  if (packedK && operands !== "f16") bad('packedK needs operands: "f16"');
  const staging = o.staging ?? operands;
  if (staging !== "f32" && staging !== "f16") {
    bad(`staging must be "f32" or "f16", got ${staging}`);
  }
  if (staging === "f16" && operands !== "f16") {
    bad('staging: "f16" needs operands: "f16"');
  }
  if (packedK && staging !== "f16") bad('packedK needs staging: "f16"');
  const bk = o.bk ?? BK;
  if (bk !== 16 && bk !== 32) bad(`bk must be 16 or 32, got ${bk}`);
  const al4 = (...xs: number[]) => xs.every((x) => x % 4 === 0);
  const al2 = (...xs: number[]) => xs.every((x) => x % 2 === 0);
  const vecA = al4(rowA, lda, oA, ...sA);
  const vecB = al4(rowB, ldb, oB, ...sB);
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
    vecA,
    vecB,
    vecC: al4(n, ldc, oC, ...sC),
    f16: operands === "f16",
    stage16: staging === "f16",
    pairA: operands === "f16" && !vecA && al2(rowA, lda, oA, ...sA),
    pairB: operands === "f16" && !vecB && al2(rowB, ldb, oB, ...sB),
    outF16,
    packedK,
    bk,
  };
}

/** Normalised split: slice length (multiple of bk) and the resulting count. */
function sliceOf(
  k: number,
  split: number,
  bk: number,
): { chunk: number; split: number } {
  const chunk = cdiv(cdiv(k, split), bk) * bk;
  return { chunk, split: cdiv(k, chunk) };
}

/** Estimated seconds of one configuration on an H100 (rough model). */
function cost(L: Layout, t: TileConfig, split: number): number {
  const { chunk, split: s } = sliceOf(L.k, split, L.bk);
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

/**
 * Workgroup memory of a tile's K-slice buffers, in bytes: f16 operands are
 * staged as f16 (2 bytes) unless `staging: "f32"`, so they fit twice the
 * slice depth or stages.
 */
const tileBytes = (L: Layout, t: TileConfig, stages: number): number =>
  stages * (t.bm + t.bn) * L.bk * (L.stage16 ? 2 : 4);

/**
 * Picks the tile and split: overrides first, else the cheapest by
 * {@linkcode cost} among the tiles whose buffers fit the workgroup memory.
 */
export function choose(
  L: Layout,
  o: MatmulOptions,
): { t: TileConfig; chunk: number; split: number; stages: 1 | 2 } {
  const stages = o.stages ?? 1; // filtered for 1; auto 2 only where it fits
  if (stages !== 1 && stages !== 2) {
    throw new RangeError(
      `Cannot plan matmul: stages must be 1 or 2, got ${o.stages}`,
    );
  }
  let tiles = TILES.filter((t) =>
    tileBytes(L, t, stages) <= MAX_WORKGROUP_BYTES
  );
  if (o.tile !== undefined) {
    const t = TILES.find((c) => c.bm === o.tile![0] && c.bn === o.tile![1]);
    if (!t) {
      throw new RangeError(
        `Cannot plan matmul: tile ${o.tile} is not one of ${
          TILES.map((c) => `[${c.bm},${c.bn}]`).join(" ")
        }`,
      );
    }
    if (tileBytes(L, t, stages) > MAX_WORKGROUP_BYTES) {
      throw new RangeError(
        `Cannot plan matmul: tile [${t.bm},${t.bn}] with stages ${stages}${
          L.bk !== BK ? ` and bk ${L.bk}` : ""
        } needs ${
          tileBytes(L, t, stages)
        } bytes of workgroup memory, over ${MAX_WORKGROUP_BYTES}; use fewer stages, a smaller tile or bk, or f16 operands`,
      );
    }
    tiles = [t];
  }
  if (o.splitK !== undefined && !isNat(o.splitK)) {
    throw new RangeError(
      `Cannot plan matmul: splitK must be a positive integer, got ${o.splitK}`,
    );
  }
  const maxSplit = Math.max(
    1,
    Math.min(
      MAX_SPLIT,
      Math.floor(L.k / MIN_SLICE),
      Math.floor(MAX_GRID_DIM / L.batch),
    ),
  );
  let best: { t: TileConfig; chunk: number; split: number } | undefined;
  let bestCost = Infinity;
  for (const t of tiles) {
    if (cdiv(L.m, t.bm) > MAX_GRID_DIM || cdiv(L.n, t.bn) > MAX_GRID_DIM) {
      continue;
    }
    const splits = o.splitK !== undefined
      ? [o.splitK]
      : Array.from({ length: maxSplit }, (_, i) => i + 1);
    for (const s0 of splits) {
      const { chunk, split } = sliceOf(L.k, s0, L.bk);
      if (L.batch * split > MAX_GRID_DIM) continue;
      const c = cost(L, t, s0);
      if (c < bestCost) {
        bestCost = c;
        best = { t, chunk, split };
      }
    }
  }
  if (!best) {
    throw new RangeError(
      `Cannot plan matmul: no tile configuration fits the 65,535-workgroup grid limit (m=${L.m}, n=${L.n}, batch=${L.batch}, splitK=${o.splitK})`,
    );
  }
  return {
    ...best,
    stages: o.stages ?? autoStages(L, best.t, best.chunk),
  };
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
