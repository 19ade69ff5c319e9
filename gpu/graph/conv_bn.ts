/**
 * Forward and backward recorders of the CNN's unit, a weight-standardised
 * conv + BatchNorm (+ residual) (+ ReLU), and of a BatchNorm alone — shared
 * by the stem, the bottleneck blocks and the avg head. Training: the conv,
 * then BatchNorm on per-view batch statistics (kept for the backward and the
 * running-statistics update). Eval: running statistics; a conv the
 * `foldBatchNorms` pass marked (`passes.ts`) becomes one matmul over the
 * standardised kernel with the BatchNorm folded in (prepared once per weight
 * version), whose epilogue adds the residual and applies ReLU.
 *
 * The conv matmuls stay fp32 in mixed precision (issue 18): a standardised
 * kernel has zero mean per output channel and its inputs are mostly
 * post-ReLU, so its products cancel, and f16 operands moved tiny_fce's CNN
 * weight updates by 10–55 % of their norm against fp32 (≤ 0.4 % with fp32
 * convs and f16 everywhere else; `gpu/engine_mixed_test.ts`).
 *
 * @module
 */
import type { BatchNormPlan, ConvBnPlan } from "../../model/plan.ts";
import type { Region } from "../runtime.ts";
import {
  batchNormBackward,
  batchNormEval,
  batchNormForward,
  weightStdBackward,
  weightStdForward,
} from "../kernels/norm.ts";
import { col2im, im2col } from "../kernels/conv.ts";
import { foldBatchNorm } from "../kernels/fold.ts";
import type { Builder } from "./builder.ts";
import { isFolded } from "./passes.ts";

/** What a BatchNorm forward keeps for its backward. */
export interface BnSaved {
  readonly norm: BatchNormPlan;
  /** Input `[R·rows, c]`. */
  readonly x: Region;
  /** Output (bound for the ReLU mask). */
  readonly y: Region;
  /** Per-view mean and variance (training). */
  readonly stats?: Region;
  /** Rows per view. */
  readonly rows: number;
  readonly relu: boolean;
}

/**
 * BatchNorm (+ residual `r`) (+ ReLU) of `x` `[groups·rows, c]`.
 *
 * @returns The output and what the backward needs.
 */
export function bnForward(
  b: Builder,
  o: {
    norm: BatchNormPlan;
    x: Region;
    rows: number;
    relu: boolean;
    r?: Region;
  },
): BnSaved {
  const { norm, x, rows, relu, r } = o;
  const C = norm.channels;
  const y = b.act(`${norm.module}.y`, b.groups * rows * C);
  const residual = r !== undefined;
  if (!b.training) {
    b.op(
      batchNormEval({
        rows: b.groups * rows,
        channels: C,
        eps: norm.eps,
        relu,
        residual,
      }),
      {
        x,
        gb: b.gb(norm.module),
        running: b.arenas.runningOf(norm.module),
        r,
        y,
      },
    );
    return { norm, x, y, rows, relu };
  }
  const stats = b.act(`${norm.module}.stats`, b.groups * 2 * C);
  b.op(
    batchNormForward({
      groups: b.groups,
      rows,
      channels: C,
      eps: norm.eps,
      relu,
      residual,
    }),
    { x, gb: b.gb(norm.module), r, y, stats },
  );
  b.batchStats.push({ norm, stats, rows });
  return { norm, x, y, stats, rows, relu };
}

/**
 * BatchNorm backward: `dx` from `dy` (through the ReLU mask when the forward
 * had one), γ/β gradients accumulated, and with `dz` the gradient of the
 * residual input (the masked `dy`).
 */
export function bnBackward(
  b: Builder,
  o: { saved: BnSaved; dy: Region; dx: Region; dz?: Region },
): void {
  const { saved: s, dy, dx, dz } = o;
  if (!s.stats) {
    throw new Error(
      `Cannot record the backward of ${s.norm.module}: its forward was recorded without batch statistics (an eval graph); build a training graph`,
    );
  }
  b.op(
    batchNormBackward({
      groups: b.groups,
      rows: s.rows,
      channels: s.norm.channels,
      eps: s.norm.eps,
      relu: s.relu,
      residualGrad: dz !== undefined,
    }),
    {
      dy,
      y: s.relu ? s.y : undefined,
      x: s.x,
      stats: s.stats,
      gb: b.gb(s.norm.module),
      dx,
      dgb: b.dgb(s.norm.module),
      dz,
    },
  );
}

/** What a conv + BatchNorm forward keeps for its backward. */
export interface ConvBnSaved {
  readonly conv: ConvBnPlan;
  /** Input `[R·tIn, cin]`. */
  readonly x: Region;
  /** im2col columns (`x` itself for a 1x1 stride-1 conv). */
  readonly col: Region;
  /** Standardised kernel `[k·cin, cout]`. */
  readonly wh: Region;
  /** Its per-channel statistics. */
  readonly wstats: Region;
  /** The conv output (training) or the unit's output (folded). */
  readonly out: Region;
  /** The BatchNorm (absent when folded). */
  readonly bn?: BnSaved;
  /** The unit's output. */
  readonly y: Region;
}

const isPointwise = (c: ConvBnPlan) =>
  c.kernel === 1 && c.stride === 1 && c.pad === 0;

/** im2col of `x` into a new activation, or `x` for a pointwise conv. */
function columns(b: Builder, c: ConvBnPlan, x: Region): Region {
  if (isPointwise(c)) return x;
  const col = b.act(`${c.weight}.col`, b.rows * c.tOut * c.kernel * c.cin);
  b.op(im2col(im2colOptions(b, c)), { x, col });
  return col;
}

const im2colOptions = (b: Builder, c: ConvBnPlan) => ({
  batch: b.rows,
  tIn: c.tIn,
  cin: c.cin,
  k: c.kernel,
  stride: c.stride,
  pad: c.pad,
});

/**
 * Conv + BatchNorm (+ residual `r`) (+ ReLU) of `x` `[R·tIn, cin]` →
 * `[R·tOut, cout]`.
 *
 * @returns The output `y` and what the backward needs.
 */
export function convBnForward(
  b: Builder,
  o: { conv: ConvBnPlan; x: Region; relu: boolean; r?: Region },
): ConvBnSaved {
  const { conv: c, x, relu, r } = o;
  const kc = c.kernel * c.cin;
  const std = weightStdForward({ rows: kc, cols: c.cout, eps: c.stdEps });
  if (isFolded(c)) {
    const wh = b.pinned(`${c.weight}.folded`, kc * c.cout);
    const wstats = b.pinned(`${c.weight}.stdstats`, 2 * c.cout);
    const bias = b.pinned(`${c.norm.module}.folded_bias`, c.cout);
    b.op(std, { w: b.param(c.weight), wh, stats: wstats }, "prepare");
    b.op(
      foldBatchNorm({ rows: kc, cols: c.cout, eps: c.norm.eps }),
      {
        w: wh,
        gb: b.gb(c.norm.module),
        running: b.arenas.runningOf(c.norm.module),
        bias,
      },
      "prepare",
    );
    const col = columns(b, c, x);
    const y = b.act(`${c.norm.module}.y`, b.rows * c.tOut * c.cout);
    b.mm(
      {
        m: b.rows * c.tOut,
        n: c.cout,
        k: kc,
        bias: true,
        residual: r !== undefined,
        relu,
      },
      { a: col, b: wh, bias, r, c: y },
      "fp32",
    );
    return { conv: c, x, col, wh, wstats, out: y, y };
  }
  // Eval graphs standardise the weights once per weight version (the
  // prepare list) and keep the result; training recomputes them per step.
  const keep = b.training ? b.act : b.pinned;
  const wh = keep(`${c.weight}.std`, kc * c.cout);
  const wstats = keep(`${c.weight}.stdstats`, 2 * c.cout);
  b.op(
    std,
    { w: b.param(c.weight), wh, stats: wstats },
    b.training ? "forward" : "prepare",
  );
  const col = columns(b, c, x);
  const out = b.act(`${c.weight}.out`, b.rows * c.tOut * c.cout);
  b.mm(
    { m: b.rows * c.tOut, n: c.cout, k: kc },
    { a: col, b: wh, c: out },
    "fp32",
  );
  const bn = bnForward(b, {
    norm: c.norm,
    x: out,
    rows: b.perView * c.tOut,
    relu,
    r,
  });
  return { conv: c, x, col, wh, wstats, out, bn, y: bn.y };
}

/**
 * Conv backward from the gradient `dh` of the conv output (BatchNorm
 * backward done by the caller): the kernel gradient through the weight
 * standardisation (accumulated), and with `dx` the input gradient
 * (`accumulate`: added to `dx`).
 */
export function convBackward(
  b: Builder,
  o: { saved: ConvBnSaved; dh: Region; dx?: Region; accumulate?: boolean },
): void {
  const { saved: s, dh, dx, accumulate = false } = o;
  const c = s.conv;
  const kc = c.kernel * c.cin;
  const R = b.rows;
  const dW = b.act("dwh", kc * c.cout);
  // im2col is cheap: recompute it rather than keep every conv's columns.
  let col = s.x;
  if (s.col !== s.x) {
    col = b.act("col", R * c.tOut * kc);
    b.op(im2col(im2colOptions(b, c)), { x: s.x, col });
  }
  b.mm({ m: kc, n: c.cout, k: R * c.tOut, transA: true }, {
    a: col,
    b: dh,
    c: dW,
  }, "fp32");
  b.op(weightStdBackward({ rows: kc, cols: c.cout, accumulate: true }), {
    dwh: dW,
    wh: s.wh,
    stats: s.wstats,
    dw: b.grad(c.weight),
  });
  if (!dx) return;
  if (s.col === s.x) {
    b.mm({ m: R * c.tIn, n: c.cin, k: c.cout, transB: true, accumulate }, {
      a: dh,
      b: s.wh,
      c: dx,
    }, "fp32");
    return;
  }
  const dcol = b.act("dcol", R * c.tOut * kc);
  b.mm({ m: R * c.tOut, n: kc, k: c.cout, transB: true }, {
    a: dh,
    b: s.wh,
    c: dcol,
  }, "fp32");
  b.op(col2im({ ...im2colOptions(b, c), accumulate }), { dcol, dx });
}
