/**
 * Forward and backward recorders of a linear layer (`LinearPlan`, weight
 * `[cin, cout]`): `y = x·W + b` with an optional matmul epilogue (residual,
 * GELU), and `dx = dy·Wᵀ`, `dW += xᵀ·dy`, `db += Σ dy`. Used by the patch
 * embedding, the transformer blocks and the heads.
 *
 * @module
 */
import type { LinearPlan } from "../../model/plan.ts";
import type { Region } from "../runtime.ts";
import type { MatmulOptions } from "../kernels/matmul.ts";
import { columnSum } from "../kernels/elementwise.ts";
import type { Builder } from "./builder.ts";

/**
 * Records `out = x·W + b` (+ `r`) over `rows` rows; `epilogue` adds matmul
 * options (`residual`, `gelu`, `keepPre` with `pre`).
 */
export function linearForward(
  b: Builder,
  o: {
    linear: LinearPlan;
    x: Region;
    rows: number;
    out: Region;
    epilogue?: Pick<MatmulOptions, "residual" | "gelu" | "keepPre">;
    r?: Region;
    pre?: Region;
  },
): void {
  const l = o.linear;
  b.mm({ m: o.rows, n: l.cout, k: l.cin, bias: true, ...o.epilogue }, {
    a: o.x,
    b: b.param(l.weight),
    bias: b.param(l.bias),
    c: o.out,
    r: o.r,
    pre: o.pre,
  });
}

/**
 * Records the backward of a linear layer over `rows` rows: with `dx` the
 * input gradient (`accumulateDx`: added), then the accumulated weight and
 * bias gradients.
 */
export function linearBackward(
  b: Builder,
  o: {
    linear: LinearPlan;
    x: Region;
    dy: Region;
    rows: number;
    dx?: Region;
    accumulateDx?: boolean;
  },
): void {
  const { linear: l, x, dy, rows, dx, accumulateDx = false } = o;
  // mixed precision: one f16 copy of dy for both products
  const dyh = b.half(dy);
  if (dx) {
    b.mm(
      { m: rows, n: l.cin, k: l.cout, transB: true, accumulate: accumulateDx },
      { a: dyh, b: b.param(l.weight), c: dx },
    );
  }
  b.mm({ m: l.cin, n: l.cout, k: rows, transA: true, accumulate: true }, {
    a: x,
    b: dyh,
    c: b.grad(l.weight),
  });
  b.op(columnSum({ rows, cols: l.cout, accumulate: true }), {
    x: dy,
    out: b.grad(l.bias),
  });
}
