/**
 * Fused multi-head attention forward for eval graphs of the fused engine:
 * per clip and head, `O = softmax(scale · Q·Kᵀ) · V` in one dispatch, with
 * the scores kept in workgroup memory instead of written to a
 * `[clips·heads·queries·keys]` buffer and read back by a softmax and a
 * second batched matmul (three dispatches, 0.9–1 ms of a CS eval forward
 * on an H100 with the 94-token sequences of the presets).
 *
 * A workgroup takes one clip, one head and a block of query rows. It stages
 * the block's queries and the head's keys in workgroup memory (key rows
 * padded by one `vec4` so threads reading different rows hit different
 * banks), computes the block's scores with 4 × 4 register tiles, the row
 * maxima and sums (per thread, then per row) while the values replace the
 * keys, and accumulates `Σ_j exp(s_j − max)·v_j / Σ_j exp(s_j − max)`. The
 * softmax is the same max-shifted form as `softmaxRows` (no online
 * rescaling), so the result matches the unfused path to float rounding.
 * Training keeps the unfused path: its backward needs the probabilities.
 *
 * The key/value rows of a head must fit the device's workgroup storage
 * (`T·(dh/4 + 1)·16` bytes plus the block's queries and scores); {@linkcode attentionBlock}
 * says whether they do (about 1,000 tokens of 64 dims at 64 KiB).
 *
 * @module
 */
import type { KernelPlan } from "../runtime.ts";
import { readOnly, readWrite, storageBindings } from "./bindings.ts";
import { MAX_GRID_DIM } from "./grid.ts";
import { f32Literal as f } from "./wgsl.ts";

/** Sizes and layout of {@linkcode attention}. Strides and offsets are in f32 elements. */
export interface AttentionOptions {
  /** Clips. */
  readonly batch: number;
  /** Heads; head h uses columns `h·headDim …` of every row. */
  readonly heads: number;
  /** Query (and output) rows per clip. */
  readonly queries: number;
  /** Key and value rows per clip. */
  readonly keys: number;
  /** Values per head row (a multiple of 4). */
  readonly headDim: number;
  /** Row strides of the Q, K, V and output bindings (multiples of 4). */
  readonly ldq: number;
  readonly ldk: number;
  readonly ldv: number;
  readonly ldo: number;
  /** Element offsets of the first row in the Q, K and V bindings (multiples of 4; default 0). */
  readonly offsetQ?: number;
  readonly offsetK?: number;
  readonly offsetV?: number;
  /** Score scale, usually `1/√headDim`. */
  readonly scale: number;
  /** The device's `maxComputeWorkgroupStorageSize` in bytes. */
  readonly storageBytes: number;
}

const THREADS = 256;
const MAX_BLOCK = 32;

const u = (x: number): string => `${x}u`;
const cdiv = (a: number, b: number): number => Math.ceil(a / b);

/** Workgroup bytes used with a block of `qb` query rows. */
function storageOf(o: AttentionOptions, qb: number): number {
  const kv = o.keys * (o.headDim / 4 + 1) * 16;
  return kv + qb * o.headDim * 4 + qb * o.keys * 4 + 2 * THREADS * 4;
}

function check(o: AttentionOptions): void {
  const bad = (msg: string): never => {
    throw new RangeError(`Cannot build the attention kernel: ${msg}`);
  };
  for (
    const key of [
      "batch",
      "heads",
      "queries",
      "keys",
      "headDim",
      "ldq",
      "ldk",
      "ldv",
      "ldo",
      "storageBytes",
    ] as const
  ) {
    const v = o[key];
    if (!Number.isInteger(v) || v < 1) {
      bad(`${key} must be a positive integer, got ${v}`);
    }
  }
  const width = o.heads * o.headDim;
  for (const key of ["ldq", "ldk", "ldv", "ldo"] as const) {
    if (o[key] % 4 !== 0 || o[key] < width) {
      bad(
        `${key} (${
          o[key]
        }) must be a multiple of 4 and at least heads·headDim = ${width}`,
      );
    }
  }
  for (const key of ["offsetQ", "offsetK", "offsetV"] as const) {
    const v = o[key] ?? 0;
    if (!Number.isInteger(v) || v < 0 || v % 4 !== 0) {
      bad(`${key} must be a non-negative multiple of 4, got ${v}`);
    }
  }
  if (o.headDim % 4 !== 0) {
    bad(`headDim must be a multiple of 4, got ${o.headDim}`);
  }
  if (!Number.isFinite(o.scale)) bad(`scale must be finite, got ${o.scale}`);
  if (o.batch > MAX_GRID_DIM || o.heads > MAX_GRID_DIM) {
    bad(`batch and heads must be at most 65,535`);
  }
}

/**
 * Query rows per workgroup for these sizes (a power of two up to 32, no
 * larger than needed for `queries`), or `undefined` when a head's keys do
 * not fit the workgroup storage even with one query row per workgroup —
 * then use the unfused path (scores matmul, softmax, matmul).
 *
 * @param o Sizes; `storageBytes` is the device limit.
 * @returns The block, or undefined when the kernel cannot run.
 */
export function attentionBlock(o: AttentionOptions): number | undefined {
  check(o);
  let qb = 1;
  while (qb < MAX_BLOCK && qb < o.queries) qb *= 2;
  for (; qb >= 1; qb /= 2) {
    if (storageOf(o, qb) <= o.storageBytes) return qb;
  }
  return undefined;
}

/**
 * Plans the fused attention forward. Bindings: "q", "k", "v" (read; may be
 * the same buffer, e.g. one packed projection output: row `b·queries + i`
 * of Q at `offsetQ + (b·queries + i)·ldq`, row `b·keys + j` of K and V
 * likewise), "o" (written: `[batch·queries]` rows of stride `ldo`, head h
 * at columns `h·headDim…`; other columns untouched).
 *
 * Phases of a workgroup (256 threads, `qb` query rows): stage the block's
 * queries and the head's keys; scores, each thread a 4-query × 4-key
 * register tile (so every staged `vec4` read feeds several products);
 * row maxima, exponentials and sums with `256/qb` threads per row while the
 * values replace the keys; the output, each thread 4 query rows × one
 * `vec4` of values.
 *
 * @param o Sizes, strides, scale and the device's workgroup storage.
 * @returns One dispatch.
 * @throws {RangeError} On bad sizes, or when the keys of one head do not
 *   fit the workgroup storage ({@linkcode attentionBlock} is undefined).
 */
export function attention(
  o: AttentionOptions,
): KernelPlan<"q" | "k" | "v" | "o"> {
  const qb = attentionBlock(o);
  if (qb === undefined) {
    throw new RangeError(
      `Cannot build the attention kernel: ${o.keys} keys of ${o.headDim} values need ${
        storageOf(o, 1)
      } bytes of workgroup storage, over the device's ${o.storageBytes}; use the unfused path (attentionBlock is undefined)`,
    );
  }
  const T = o.keys;
  const tq = o.queries;
  const dv = o.headDim / 4; // vec4 per head row
  const ks = dv + 1; // padded row stride of keys/values in workgroup memory
  // scores: query groups of QG rows × key lanes; KC keys per lane and pass
  const QG = Math.min(4, qb);
  const NQ = qb / QG;
  const NK = THREADS / NQ;
  const KC = Math.min(4, cdiv(T, NK));
  const passes = cdiv(T, NK * KC);
  // softmax: tpr threads per row
  const tpr = THREADS / qb;
  const perRow = cdiv(T, tpr);
  // output: OQ rows × one vec4 per item; items may exceed the threads
  const OQ = QG;
  const items = (qb / OQ) * dv;
  const itemPasses = cdiv(items, THREADS);
  const oq = (o.offsetQ ?? 0) / 4;
  const ok = (o.offsetK ?? 0) / 4;
  const ov = (o.offsetV ?? 0) / 4;
  const label =
    `attention b${o.batch} h${o.heads} q${tq} t${T} d${o.headDim} qb${qb}`;
  const range = (n: number) => Array.from({ length: n }, (_, i) => i);
  const ind = (lines: string[], pad: string) => lines.join(`\n${pad}`);
  // scores: acc{i}_{s} for query i of the group, key s of the pass
  const scoreDecl = range(QG).flatMap((i) =>
    range(KC).map((s) => `var acc${i}_${s} = 0.0;`)
  );
  const scoreBody = range(dv).flatMap((c) => [
    "{",
    ...range(QG).map((i) =>
      `let q${i} = QS[(qr + ${u(i)}) * ${u(dv)} + ${u(c)}];`
    ),
    ...range(KC).map((s) => `let k${s} = KV[kr${s} + ${u(c)}];`),
    ...range(QG).flatMap((i) =>
      range(KC).map((s) => `acc${i}_${s} = acc${i}_${s} + dot(q${i}, k${s});`)
    ),
    "}",
  ]);
  const scoreStore = range(KC).flatMap((s) => [
    `if (j${s} < ${u(T)}) {`,
    ...range(QG).map((i) =>
      `  S[(qr + ${u(i)}) * ${u(T)} + j${s}] = ${f(o.scale)} * acc${i}_${s};`
    ),
    `}`,
  ]);
  /**
   * Copies the head's T rows of K or V into KV: all loads first, then the
   * stores (independent loads in flight together), up to 16 per thread;
   * longer sequences loop.
   */
  const stage = (src: "k" | "v", off: number, ld: number): string => {
    const n = T * dv;
    const per = cdiv(n, THREADS);
    const at = (e: string) =>
      `${src}[${u(off)} + (clip * ${u(T)} + ${e} / ${u(dv)}) * ${
        u(ld / 4)
      } + hcol + ${e} % ${u(dv)}]`;
    const to = (e: string) =>
      `KV[(${e} / ${u(dv)}) * ${u(ks)} + ${e} % ${u(dv)}]`;
    if (per > 16) {
      return `for (var e = tid; e < ${u(n)}; e = e + ${u(THREADS)}) {
    ${to("e")} = ${at("e")};
  }`;
    }
    const lines: string[] = [];
    for (let i = 0; i < per; i++) {
      const guard = (i + 1) * THREADS > n;
      lines.push(`let e${i} = tid + ${u(i * THREADS)};`);
      lines.push(`var x${i} = vec4<f32>(0.0);`);
      lines.push(
        guard
          ? `if (e${i} < ${u(n)}) { x${i} = ${at(`e${i}`)}; }`
          : `x${i} = ${at(`e${i}`)};`,
      );
    }
    for (let i = 0; i < per; i++) {
      const guard = (i + 1) * THREADS > n;
      lines.push(
        guard
          ? `if (e${i} < ${u(n)}) { ${to(`e${i}`)} = x${i}; }`
          : `${to(`e${i}`)} = x${i};`,
      );
    }
    return `{\n    ${lines.join("\n    ")}\n  }`;
  };
  // value accumulation: chunks of 8 keys, loads before the FMAs
  const mix = (j: string, count: number): string[] => [
    ...range(count).map((t) =>
      `let x${t} = KV[(${j} + ${u(t)}) * ${u(ks)} + c];`
    ),
    ...range(count).flatMap((t) =>
      range(OQ).map((i) =>
        `o${i} = fma(vec4<f32>(S[(orow + ${u(i)}) * ${u(T)} + ${j} + ${
          u(t)
        }]), x${t}, o${i});`
      )
    ),
  ];
  const CH = 8;
  const full = Math.floor(T / CH) * CH;
  const { decls, bind } = storageBindings([
    readOnly("q", "vec4<f32>"),
    readOnly("k", "vec4<f32>"),
    readOnly("v", "vec4<f32>"),
    readWrite("o", "vec4<f32>"),
  ]);
  const code = `// ${label}
${decls}
var<workgroup> QS: array<vec4<f32>, ${qb * dv}>;
var<workgroup> KV: array<vec4<f32>, ${T * ks}>;
var<workgroup> S: array<f32, ${qb * T}>;
var<workgroup> RMAX: array<f32, ${THREADS}>;
var<workgroup> RSUM: array<f32, ${THREADS}>;

@compute @workgroup_size(${THREADS})
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let tid = lid.x;
  let head = wid.y;
  let clip = wid.z;
  let q0 = wid.x * ${u(qb)};
  let hcol = head * ${u(dv)};
  // stage the block's queries (zeros past the last) and the head's keys
  for (var e = tid; e < ${u(qb * dv)}; e = e + ${u(THREADS)}) {
    let i = q0 + e / ${u(dv)};
    var x = vec4<f32>(0.0);
    if (i < ${u(tq)}) {
      x = q[${u(oq)} + (clip * ${u(tq)} + i) * ${u(o.ldq / 4)} + hcol + e % ${
    u(dv)
  }];
    }
    QS[e] = x;
  }
  ${stage("k", ok, o.ldk)}
  workgroupBarrier();
  // scores: rows qr…qr+${QG - 1}, keys kl + (p·${KC} + s)·${NK}
  {
    let qr = (tid / ${u(NK)}) * ${u(QG)};
    let kl = tid % ${u(NK)};
    for (var p = 0u; p < ${u(passes)}; p = p + 1u) {
      ${
    ind(
      range(KC).flatMap((s) => [
        `let j${s} = kl + (p * ${u(KC)} + ${u(s)}) * ${u(NK)};`,
        `let kr${s} = min(j${s}, ${u(T - 1)}) * ${u(ks)};`,
      ]),
      "      ",
    )
  }
      ${ind(scoreDecl, "      ")}
      ${ind(scoreBody, "      ")}
      ${ind(scoreStore, "      ")}
    }
  }
  workgroupBarrier();
  // the values replace the keys; row maxima meanwhile
  ${stage("v", ov, o.ldv)}
  let r = tid / ${u(tpr)};
  let lane = tid % ${u(tpr)};
  var m = -3.402823e38;
  for (var s = 0u; s < ${u(perRow)}; s = s + 1u) {
    let j = lane + s * ${u(tpr)};
    if (j < ${u(T)}) {
      m = max(m, S[r * ${u(T)} + j]);
    }
  }
  RMAX[tid] = m;
  workgroupBarrier();
  var rm = RMAX[r * ${u(tpr)}];
  for (var i = 1u; i < ${u(tpr)}; i = i + 1u) {
    rm = max(rm, RMAX[r * ${u(tpr)} + i]);
  }
  var part = 0.0;
  for (var s = 0u; s < ${u(perRow)}; s = s + 1u) {
    let j = lane + s * ${u(tpr)};
    if (j < ${u(T)}) {
      let e = exp(S[r * ${u(T)} + j] - rm);
      S[r * ${u(T)} + j] = e;
      part = part + e;
    }
  }
  RSUM[tid] = part;
  workgroupBarrier();
  // output: rows orow…orow+${OQ - 1}, value vec4 c
  for (var w = tid; w < ${u(items * itemPasses)}; w = w + ${u(THREADS)}) {
    if (w < ${u(items)}) {
      let orow = (w / ${u(dv)}) * ${u(OQ)};
      let c = w % ${u(dv)};
      ${ind(range(OQ).map((i) => `var o${i} = vec4<f32>(0.0);`), "      ")}
      for (var j = 0u; j < ${u(full)}; j = j + ${u(CH)}) {
        ${ind(mix("j", CH), "        ")}
      }
      {
        ${ind(mix(u(full), T - full), "        ")}
      }
      ${
    ind(
      range(OQ).flatMap((i) => [
        `if (q0 + orow + ${u(i)} < ${u(tq)}) {`,
        `  var sum = 0.0;`,
        `  for (var t = 0u; t < ${u(tpr)}; t = t + 1u) {`,
        `    sum = sum + RSUM[(orow + ${u(i)}) * ${u(tpr)} + t];`,
        `  }`,
        `  o[(clip * ${u(tq)} + q0 + orow + ${u(i)}) * ${
          u(o.ldo / 4)
        } + hcol + c] = o${i} / sum;`,
        `}`,
      ]),
      "      ",
    )
  }
    }
  }
}
`;
  return {
    steps: [{
      spec: {
        code,
        workgroups: [cdiv(tq, qb), o.heads, o.batch],
        label,
      },
      bind,
    }],
  };
}
