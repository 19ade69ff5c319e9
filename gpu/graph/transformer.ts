/**
 * Forward and backward recorders of a pre-norm transformer block
 * (`TransformerLayer`): z_mid = z + o(softmax(q·kᵀ/√dh)·v) over LN1(z), then
 * z_out = z_mid + fc2(gelu(fc1(m))) with m = z_mid or LN2(z_mid). Attention
 * runs per clip and head as strided batched matmuls over `[rows, d]`
 * activations. A block the `trimLastBlock` pass gave `queries` computes its
 * output for those rows only; with `packedQkv` (eval) keys, values and
 * queries come from one matmul over weights packed once per weight version.
 *
 * @module
 */
import type { Region } from "../runtime.ts";
import { layerNormBackward, layerNormForward } from "../kernels/norm.ts";
import {
  gelu,
  geluBackward,
  softmaxBackward,
  softmaxRows,
} from "../kernels/elementwise.ts";
import { gatherRows, scatterRows } from "../kernels/rows.ts";
import { packColumns } from "../kernels/pack.ts";
import type { Builder } from "./builder.ts";
import type { GraphTransformer } from "./passes.ts";
import { linearBackward, linearForward } from "./linear.ts";

/** Where the d columns of a projection sit in its rows: row stride and first column. */
interface Cols {
  readonly ld: number;
  readonly off: number;
}

/**
 * A block's sizes — R clips, width d, T rows per clip, tq query rows per clip
 * (T unless trimmed), rq = R·tq and rowsT = R·T — and its per-clip, per-head
 * attention products.
 */
function blockOf(b: Builder, l: GraphTransformer) {
  const R = b.rows;
  const H = l.heads;
  const T = l.sequence;
  const d = l.dim;
  const dh = d / H;
  const tq = l.queries?.length ?? T;
  const own: Cols = { ld: d, off: 0 };
  const batchHeads = { batch: R * H, batchInner: H };
  const probStride: [number, number] = [H * tq * T, tq * T];
  /** Batch strides of per-clip, per-head blocks of `rows` rows laid out as `c`. */
  const headStride = (rows: number, c = own): [number, number] => [
    rows * c.ld,
    dh,
  ];
  return {
    R,
    d,
    T,
    dh,
    tq,
    rq: R * tq,
    rowsT: R * T,
    own,
    /**
     * Per clip and head: `out` [tq × T] = alpha · Xq · Xkᵀ, with Xq (tq
     * rows) and Xk (T rows), head h at columns `off + h·dh…`.
     */
    scores(xq: Region, xk: Region, out: Region, alpha = 1, lq = own, lk = own) {
      b.mm({
        m: tq,
        n: T,
        k: dh,
        transB: true,
        lda: lq.ld,
        ldb: lk.ld,
        ...batchHeads,
        strideA: headStride(tq, lq),
        strideB: headStride(T, lk),
        strideC: probStride,
        offsetA: lq.off,
        offsetB: lk.off,
        alpha,
      }, { a: xq, b: xk, c: out });
    },
    /**
     * Per clip and head, with P [tq × T]: `out` = P · X (tq rows out of T
     * rows of X), or with `transposed` Pᵀ · X (T rows out of tq rows of X).
     */
    mix(p: Region, x: Region, out: Region, transposed: boolean, lx = own) {
      b.mm(
        transposed
          ? {
            m: T,
            n: dh,
            k: tq,
            transA: true,
            lda: T,
            ldb: lx.ld,
            ldc: d,
            ...batchHeads,
            strideA: probStride,
            strideB: headStride(tq, lx),
            strideC: headStride(T),
            offsetB: lx.off,
          }
          : {
            m: tq,
            n: dh,
            k: T,
            ldb: lx.ld,
            ldc: d,
            ...batchHeads,
            strideA: probStride,
            strideB: headStride(T, lx),
            strideC: headStride(tq),
            offsetB: lx.off,
          },
        { a: p, b: x, c: out },
      );
    },
  };
}

/** What a block's forward keeps for its backward. */
export interface TransformerSaved {
  readonly layer: GraphTransformer;
  /** Input `[R·T, d]`, LN1 output and statistics. */
  readonly z: Region;
  readonly h: Region;
  readonly ln1: Region;
  /** LN1 output of the query rows (`h` unless trimmed). */
  readonly hq: Region;
  readonly q: Region;
  readonly k: Region;
  readonly v: Region;
  /** Attention probabilities `[R, H, tq, T]`. */
  readonly p: Region;
  /** Attention output before `o`. */
  readonly a: Region;
  readonly zMid: Region;
  /** MLP input and LN2 statistics (with ffn_norm). */
  readonly m: Region;
  readonly ln2?: Region;
  /** fc1 pre-activation (training). */
  readonly pre?: Region;
}

/** Records a block: `z` `[R·T, d]` → `y` `[R·tq, d]` (tq = T, or the trimmed query rows). */
export function transformerForward(
  b: Builder,
  o: { layer: GraphTransformer; z: Region },
): { y: Region; saved: TransformerSaved } {
  const { layer: l, z } = o;
  const heads = blockOf(b, l);
  const { R, d, T, dh, tq, rq, rowsT } = heads;
  const p = l.name;
  const h = b.act(`${p}.h`, rowsT * d);
  const ln1 = b.act(`${p}.ln1`, rowsT * 2);
  b.op(layerNormForward({ rows: rowsT, dim: d, eps: l.attentionNorm.eps }), {
    x: z,
    gb: b.gb(l.attentionNorm.module),
    y: h,
    stats: ln1,
  });
  let zq = z;
  let hq = h;
  if (l.queries) {
    const rows = { batch: R, sequence: T, dim: d, positions: l.queries };
    zq = b.act(`${p}.zq`, rq * d);
    hq = b.act(`${p}.hq`, rq * d);
    b.op(gatherRows(rows), { x: z, y: zq });
    b.op(gatherRows(rows), { x: h, y: hq });
  }
  const proj = (w: typeof l.q, x: Region, rows: number) => {
    const out = b.act(w.weight, rows * d);
    linearForward(b, { linear: w, x, rows, out });
    return out;
  };
  const a = b.act(`${p}.attention.out`, rq * d);
  let q: Region;
  let k: Region;
  let v: Region;
  let lq = heads.own;
  let lk = heads.own;
  let lv = heads.own;
  if (l.packedQkv) {
    // keys, values and queries from one matmul over the packed weights
    const w = b.pinned(`${p}.kvq.weight`, d * 3 * d);
    const bias = b.pinned(`${p}.kvq.bias`, 3 * d);
    const pack = (part: "weight" | "bias", out: Region, rows: number) =>
      b.op(
        packColumns({ rows, widths: [d, d, d] }),
        {
          src0: b.param(l.k[part]),
          src1: b.param(l.v[part]),
          src2: b.param(l.q[part]),
          out,
        },
        "prepare",
      );
    pack("weight", w, d);
    pack("bias", bias, 1);
    if (!l.queries) {
      const kvq = b.act(`${p}.kvq`, rowsT * 3 * d);
      b.mm({ m: rowsT, n: 3 * d, k: d, bias: true }, {
        a: h,
        b: w,
        bias,
        c: kvq,
      });
      q = k = v = kvq;
      lk = { ld: 3 * d, off: 0 };
      lv = { ld: 3 * d, off: d };
      lq = { ld: 3 * d, off: 2 * d };
    } else {
      // trimmed block: keys and values of every row (the first 2d packed
      // columns), queries of the kept rows only
      const kv = b.act(`${p}.kv`, rowsT * 2 * d);
      b.mm({ m: rowsT, n: 2 * d, k: d, ldb: 3 * d, bias: true }, {
        a: h,
        b: w,
        bias,
        c: kv,
      });
      q = proj(l.q, hq, rq);
      k = v = kv;
      lk = { ld: 2 * d, off: 0 };
      lv = { ld: 2 * d, off: d };
    }
  } else {
    q = proj(l.q, hq, rq);
    k = proj(l.k, h, rowsT);
    v = proj(l.v, h, rowsT);
  }
  const scores = b.act(`${p}.scores`, R * l.heads * tq * T);
  heads.scores(q, k, scores, 1 / Math.sqrt(dh), lq, lk);
  const probs = b.act(`${p}.p`, R * l.heads * tq * T);
  b.op(softmaxRows({ rows: R * l.heads * tq, cols: T }), {
    s: scores,
    p: probs,
  });
  heads.mix(probs, v, a, false, lv);
  const zMid = b.act(`${p}.zmid`, rq * d);
  linearForward(b, {
    linear: l.o,
    x: a,
    rows: rq,
    out: zMid,
    epilogue: { residual: true },
    r: zq,
  });
  let m = zMid;
  let ln2: Region | undefined;
  if (l.useFfnNorm) {
    m = b.act(`${p}.m`, rq * d);
    ln2 = b.act(`${p}.ln2`, rq * 2);
    b.op(layerNormForward({ rows: rq, dim: d, eps: l.ffnNorm.eps }), {
      x: zMid,
      gb: b.gb(l.ffnNorm.module),
      y: m,
      stats: ln2,
    });
  }
  // eval graphs need only the GELU output, not the pre-activation
  const pre = b.training ? b.act(`${p}.pre`, rq * l.mlpDim) : undefined;
  const f = b.act(`${p}.f`, rq * l.mlpDim);
  linearForward(b, {
    linear: l.fc1,
    x: m,
    rows: rq,
    out: f,
    epilogue: { gelu: true, keepPre: b.training },
    pre,
  });
  const y = b.act(`${p}.zout`, rq * d);
  linearForward(b, {
    linear: l.fc2,
    x: f,
    rows: rq,
    out: y,
    epilogue: { residual: true },
    r: zMid,
  });
  return {
    y,
    saved: { layer: l, z, h, ln1, hq, q, k, v, p: probs, a, zMid, m, ln2, pre },
  };
}

/**
 * Records a block's backward from `dy`, the gradient of its output rows.
 * Untrimmed blocks update `dy` in place into the gradient of their input;
 * a trimmed block scatters its rows into a new full-rows gradient.
 *
 * @returns The gradient of the input `[R·T, d]`.
 * @throws {Error} For a packed block (eval only).
 */
export function transformerBackward(
  b: Builder,
  o: { saved: TransformerSaved; dy: Region },
): Region {
  const s = o.saved;
  const l = s.layer;
  if (l.packedQkv) {
    throw new Error(
      "Cannot record the backward of a packed Q/K/V block: packing is an eval-only pass; build the training graph from the unpacked layers",
    );
  }
  const heads = blockOf(b, l);
  const { R, d, T, dh, tq, rq, rowsT } = heads;
  const mlp = l.mlpDim;
  const dzl = o.dy;
  const dz = l.queries ? b.act("dz", rowsT * d) : dzl;
  const dF = b.act("dF", rq * mlp);
  const dPre = b.act("dPre", rq * mlp);
  // z_out = z_mid + fc2(gelu(fc1(m)))
  // GELU is cheap: recompute its output rather than keep it per layer.
  const f = b.act("gelu", rq * mlp);
  b.op(gelu({ n: rq * mlp }), { x: s.pre!, y: f });
  linearBackward(b, { linear: l.fc2, x: f, dy: dzl, rows: rq, dx: dF });
  b.op(geluBackward({ n: rq * mlp }), { dy: dF, x: s.pre!, dx: dPre });
  if (l.useFfnNorm) {
    const dM = b.act("dM", rq * d);
    linearBackward(b, { linear: l.fc1, x: s.m, dy: dPre, rows: rq, dx: dM });
    b.op(layerNormBackward({ rows: rq, dim: d, accumulateDx: true }), {
      dy: dM,
      x: s.zMid,
      gb: b.gb(l.ffnNorm.module),
      stats: s.ln2!,
      dx: dzl,
      dgb: b.dgb(l.ffnNorm.module),
    });
  } else {
    linearBackward(b, {
      linear: l.fc1,
      x: s.m,
      dy: dPre,
      rows: rq,
      dx: dzl,
      accumulateDx: true,
    });
  }
  // dzl now holds d z_mid; z_mid = z + o(attention(LN1(z)))
  const dA = b.act("dA", rq * d);
  linearBackward(b, { linear: l.o, x: s.a, dy: dzl, rows: rq, dx: dA });
  const dP = b.act("dP", R * l.heads * tq * T);
  const dAh = b.half(dA); // mixed precision: one f16 copy for both products
  heads.scores(dAh, s.v, dP);
  const dV = b.act("dV", rowsT * d);
  heads.mix(s.p, dAh, dV, true);
  const dS = b.act("dS", R * l.heads * tq * T);
  b.op(
    softmaxBackward({
      rows: R * l.heads * tq,
      cols: T,
      scale: 1 / Math.sqrt(dh),
    }),
    { dp: dP, p: s.p, ds: dS },
  );
  const dQ = b.act("dQ", rq * d);
  const dSh = b.half(dS);
  heads.mix(dSh, s.k, dQ, false);
  const dK = b.act("dK", rowsT * d);
  heads.mix(dSh, s.q, dK, true);
  // dH = d LN1(z): keys and values from every row, queries from rq rows.
  const dH = b.act("dH", rowsT * d);
  const trimmed = l.queries !== undefined;
  const dHq = trimmed ? b.act("dHq", rq * d) : dH;
  linearBackward(b, { linear: l.q, x: s.hq, dy: dQ, rows: rq, dx: dHq });
  linearBackward(b, {
    linear: l.k,
    x: s.h,
    dy: dK,
    rows: rowsT,
    dx: dH,
    accumulateDx: !trimmed,
  });
  linearBackward(b, {
    linear: l.v,
    x: s.h,
    dy: dV,
    rows: rowsT,
    dx: dH,
    accumulateDx: true,
  });
  if (l.queries) {
    const rows = { batch: R, sequence: T, dim: d, positions: l.queries };
    b.op(scatterRows({ ...rows, accumulate: true }), { x: dHq, y: dH });
    // Only the query rows carry the residual gradient: dz = scatter(dzl).
    b.op(scatterRows(rows), { x: dzl, y: dz });
  }
  b.op(layerNormBackward({ rows: rowsT, dim: d, accumulateDx: true }), {
    dy: dH,
    x: s.z,
    gb: b.gb(l.attentionNorm.module),
    stats: s.ln1,
    dx: dz,
    dgb: b.dgb(l.attentionNorm.module),
  });
  return dz;
}
