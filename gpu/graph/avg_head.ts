/**
 * Forward and backward recorders of the avg head (`AvgHeadLayer`): mean
 * over the tokens, fc1, fc2, BatchNorm, and fc3 with weight norm
 * (w = g · v / ‖v‖ per output, recomputed every step).
 *
 * @module
 */
import type { AvgHeadLayer } from "../../model/plan.ts";
import type { Region } from "../runtime.ts";
import {
  columnSum,
  meanRows,
  meanRowsBackward,
} from "../kernels/elementwise.ts";
import { weightNormBackward, weightNormForward } from "../kernels/model_ops.ts";
import type { Builder } from "./builder.ts";
import { bnBackward, bnForward, type BnSaved } from "./conv_bn.ts";
import { linearBackward, linearForward } from "./linear.ts";

/** What the forward keeps for the backward. */
export interface AvgHeadSaved {
  readonly layer: AvgHeadLayer;
  /** Token mean, fc1 output, the BatchNorm, its output, fc3's weight and column norms. */
  readonly hm: Region;
  readonly h1: Region;
  readonly bn: BnSaved;
  readonly w3: Region;
  readonly norms: Region;
}

/** Records `x` `[R·T, d]` → logits `out` `[R, n]`. */
export function avgHeadForward(
  b: Builder,
  o: { layer: AvgHeadLayer; x: Region; out: Region },
): AvgHeadSaved {
  const l = o.layer;
  const R = b.rows;
  const hm = b.act("head.mean", R * l.fc1.cin);
  b.op(meanRows({ batch: R, t: l.sequence, dim: l.fc1.cin }), {
    x: o.x,
    y: hm,
  });
  const h1 = b.act("head.fc1", R * l.fc1.cout);
  linearForward(b, { linear: l.fc1, x: hm, rows: R, out: h1 });
  const h2 = b.act("head.fc2", R * l.fc2.cout);
  linearForward(b, { linear: l.fc2, x: h1, rows: R, out: h2 });
  const bn = bnForward(b, {
    norm: l.norm,
    x: h2,
    rows: b.perView,
    relu: false,
  });
  const { cin, cout } = l.fc3;
  const w3 = b.act("head.w3", cin * cout);
  const norms = b.act("head.w3norms", cout);
  b.op(weightNormForward({ in: cin, out: cout }), {
    g: b.param(l.fc3.gain),
    v: b.param(l.fc3.weight),
    w: w3,
    norms,
  });
  b.mm({ m: R, n: cout, k: cin, bias: true }, {
    a: bn.y,
    b: w3,
    bias: b.param(l.fc3.bias),
    c: o.out,
  });
  return { layer: l, hm, h1, bn, w3, norms };
}

/**
 * Records the backward from `dy` (the logits' gradient `[R, n]`).
 *
 * @returns The gradient of the input `[R·T, d]`.
 */
export function avgHeadBackward(
  b: Builder,
  o: { saved: AvgHeadSaved; dy: Region },
): Region {
  const { layer: l, hm, h1, bn, w3, norms } = o.saved;
  const R = b.rows;
  const d = l.fc1.cin;
  const { cin, cout } = l.fc3;
  const dx = b.act("final_norm.dy", R * l.sequence * d);
  const dh3 = b.act("head.dh3", R * cin);
  const dw3 = b.act("dw3", cin * cout);
  const dyh = b.half(o.dy); // mixed precision: one f16 copy for both
  b.mm({ m: R, n: cin, k: cout, transB: true }, { a: dyh, b: w3, c: dh3 });
  b.mm({ m: cin, n: cout, k: R, transA: true }, { a: bn.y, b: dyh, c: dw3 });
  b.op(columnSum({ rows: R, cols: cout, accumulate: true }), {
    x: o.dy,
    out: b.grad(l.fc3.bias),
  });
  b.op(weightNormBackward({ in: cin, out: cout }), {
    dw: dw3,
    g: b.param(l.fc3.gain),
    v: b.param(l.fc3.weight),
    norms,
    dg: b.grad(l.fc3.gain),
    dv: b.grad(l.fc3.weight),
  });
  const dh2 = b.act("head.dh2", R * cin);
  bnBackward(b, { saved: bn, dy: dh3, dx: dh2 });
  const dh1 = b.act("head.dh1", R * l.fc2.cin);
  linearBackward(b, { linear: l.fc2, x: h1, dy: dh2, rows: R, dx: dh1 });
  const dhm = b.act("head.dhm", R * d);
  linearBackward(b, { linear: l.fc1, x: hm, dy: dh1, rows: R, dx: dhm });
  b.op(meanRowsBackward({ batch: R, t: l.sequence, dim: d }), {
    dy: dhm,
    dx,
  });
  return dx;
}
