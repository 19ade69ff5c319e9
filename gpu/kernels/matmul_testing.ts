/**
 * The float64 reference of the matmul tests (`matmul_test.ts`,
 * `matmul_f16_test.ts`): the options resolved independently of
 * `matmul_plan.ts`, operand spans, and C (and the GELU pre-activation)
 * computed in float64 with the same epilogue semantics.
 *
 * @module
 */
import type { MatmulOptions } from "./matmul.ts";
import type { Layout } from "./matmul_plan.ts";
import { gelu64 } from "../testing.ts";

/**
 * Everything `matmul` resolves, for the reference (computed here from the
 * options, independently of `matmul_plan.ts`).
 */
export type Resolved =
  & Pick<
    Layout,
    | "m"
    | "n"
    | "k"
    | "lda"
    | "ldb"
    | "ldc"
    | "batch"
    | "bi"
    | "sA"
    | "sB"
    | "sC"
    | "oA"
    | "oB"
    | "oC"
  >
  & { tA: boolean; tB: boolean };

export function resolved(o: MatmulOptions): Resolved {
  const tA = o.transA ?? false;
  const tB = o.transB ?? false;
  const lda = o.lda ?? (tA ? o.m : o.k);
  const ldb = o.ldb ?? (tB ? o.k : o.n);
  const ldc = o.ldc ?? o.n;
  const batch = o.batch ?? 1;
  const bi = o.batchInner ?? 1;
  const rowsA = tA ? o.k : o.m;
  const rowsB = tB ? o.n : o.k;
  return {
    m: o.m,
    n: o.n,
    k: o.k,
    tA,
    tB,
    lda,
    ldb,
    ldc,
    batch,
    bi,
    sA: o.strideA ?? [bi * rowsA * lda, rowsA * lda],
    sB: o.strideB ?? [bi * rowsB * ldb, rowsB * ldb],
    sC: o.strideC ?? [bi * o.m * ldc, o.m * ldc],
    oA: o.offsetA ?? 0,
    oB: o.offsetB ?? 0,
    oC: o.offsetC ?? 0,
  };
}

/** Elements a strided operand spans (from element 0 of its binding). */
export function span(
  R: Resolved,
  s: readonly [number, number],
  rows: number,
  ld: number,
  offset: number,
): number {
  return offset + (R.batch / R.bi - 1) * s[0] + (R.bi - 1) * s[1] + rows * ld;
}

/**
 * Float64 reference: expected c and pre given the inputs (any numeric
 * arrays: f16 operands are passed as their values), and per element of C
 * `abs`, `|alpha|·Σ|a·b|` (the scale of the rounding error of a sum of
 * products).
 */
export function reference(
  o: MatmulOptions,
  x: Record<string, ArrayLike<number>>,
): { c: Float64Array; pre?: Float64Array; abs: Float64Array } {
  const R = resolved(o);
  const c = Float64Array.from(x.c);
  const abs = new Float64Array(c.length);
  const pre = x.pre ? Float64Array.from(x.pre) : undefined;
  const alpha = o.alpha ?? 1;
  for (let z = 0; z < R.batch; z++) {
    const zo = Math.floor(z / R.bi);
    const zi = z % R.bi;
    const oa = R.oA + zo * R.sA[0] + zi * R.sA[1];
    const ob = R.oB + zo * R.sB[0] + zi * R.sB[1];
    const oc = R.oC + zo * R.sC[0] + zi * R.sC[1];
    for (let i = 0; i < R.m; i++) {
      for (let j = 0; j < R.n; j++) {
        let s = 0;
        let sa = 0;
        for (let kk = 0; kk < R.k; kk++) {
          const av = x.a[oa + (R.tA ? kk * R.lda + i : i * R.lda + kk)];
          const bv = x.b[ob + (R.tB ? j * R.ldb + kk : kk * R.ldb + j)];
          s += av * bv;
          sa += Math.abs(av * bv);
        }
        let v = alpha * s;
        if (o.bias) v += x.bias[j];
        const ci = oc + i * R.ldc + j;
        abs[ci] = Math.abs(alpha) * sa;
        if (o.residual) v += x.r[ci];
        if (o.relu) v = Math.max(v, 0);
        if (o.gelu) {
          if (o.keepPre !== false) pre![ci] = v;
          c[ci] = gelu64(v);
        } else if (o.accumulate) c[ci] += v;
        else c[ci] = v;
      }
    }
  }
  return { c, pre, abs };
}

/** Split-K over a two-level strided batch with transposed A (both matmul tests). */
export const STRIDED_SPLIT_K: MatmulOptions = {
  m: 9,
  n: 7,
  k: 40,
  splitK: 2,
  batch: 4,
  batchInner: 2,
  lda: 44,
  strideA: [3600, 1770],
  transA: true,
  strideC: [200, 70],
};
