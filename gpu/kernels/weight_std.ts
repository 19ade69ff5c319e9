/**
 * Weight standardisation of conv kernels (`model/layers.ts`
 * `standardizeKernel`) per output channel and its backward, on the
 * two-stage column reductions of `norm_reduce.ts`.
 *
 * @module
 */
import type { KernelPlan } from "../runtime.ts";
import { readOnly, readWrite, storageBindings } from "./bindings.ts";
import { checkSize } from "./grid.ts";
import {
  chunking,
  colTile,
  elementwise,
  PARTIALS,
  SUMS,
  sumsFinal,
  sumsPartial,
  welfordFinal,
  welfordPartial,
} from "./norm_reduce.ts";
import { f32Literal } from "./wgsl.ts";

/** Options of {@linkcode weightStdForward}. */
export interface WeightStdForwardOptions {
  /** Kernel rows (k·cin): the axis standardised over. */
  readonly rows: number;
  /** Kernel columns (cout): one mean and variance each. */
  readonly cols: number;
  /** Added to the variance (reference: 1e-5). */
  readonly eps: number;
  /** Rows per partial-reduction chunk (tuning and tests; default from the sizes). */
  readonly chunkRows?: number;
}

/**
 * Checks the sizes and picks the column tiles and row chunks that both
 * passes of a weight standardisation use.
 */
function tiling(o: { rows: number; cols: number; chunkRows?: number }) {
  checkSize("rows", o.rows);
  checkSize("cols", o.cols);
  const { rows, cols } = o;
  const { tr, tiles } = colTile(cols);
  const { chunkRows, nChunks } = chunking(1, rows, tiles, tr, o.chunkRows);
  return { rows, cols, chunkRows, nChunks };
}

/**
 * Weight standardisation of a conv kernel stored `[k·cin, cout]`, per output
 * channel over its rows with biased variance (`standardizeKernel`):
 * `ŵ = (w − μ)/√(var + eps)`.
 *
 * Bindings: `w` (read, `[rows, cols]`), `wh` (out, `[rows, cols]`), `stats`
 * (out, `[cols][2]`: mean, rstd). Scratch: `normPartials` (`chunks·2·cols`).
 *
 * @param o Sizes (elements) and eps.
 * @returns Three dispatches: chunk statistics, their merge, the standardisation.
 */
export function weightStdForward(
  o: WeightStdForwardOptions,
): KernelPlan<"w" | "wh" | "stats"> {
  const { rows: R, cols: C, chunkRows, nChunks } = tiling(o);
  const partial = welfordPartial({
    groups: 1,
    rows: R,
    cols: C,
    src: "w",
    chunkRows,
    nChunks,
    label: "wstd_fwd_partial",
  });
  const final = welfordFinal({
    groups: 1,
    rows: R,
    cols: C,
    chunkRows,
    nChunks,
    outs: ["stats"],
    consts: `const EPS: f32 = ${f32Literal(o.eps)};`,
    out:
      "stats[c * 2u] = mean;\n    stats[c * 2u + 1u] = inverseSqrt(vr + EPS);",
    label: "wstd_fwd_stats",
  });
  const apply = elementwise(
    R * C,
    storageBindings([readOnly("w"), readOnly("stats"), readWrite("wh")]),
    `const C = ${C}u;`,
    `  let c = i % C;
  wh[i] = (w[i] - stats[c * 2u]) * stats[c * 2u + 1u];`,
    "wstd_fwd_apply",
  );
  return {
    steps: [partial, final, apply],
    scratch: { [PARTIALS]: nChunks * 2 * C },
  };
}

/** Options of {@linkcode weightStdBackward}. */
export interface WeightStdBackwardOptions {
  /** Kernel rows (k·cin). */
  readonly rows: number;
  /** Kernel columns (cout). */
  readonly cols: number;
  /** `dw += …` instead of `dw = …`. */
  readonly accumulate?: boolean;
  /** Rows per partial-reduction chunk (tuning and tests; default from the sizes). */
  readonly chunkRows?: number;
}

/**
 * Backward of {@linkcode weightStdForward}: per column `dw = rstd·(dŵ −
 * mean_rows(dŵ) − ŵ·mean_rows(dŵ·ŵ))`.
 *
 * Bindings: `dwh` (read, `[rows, cols]`), `wh` (read, `[rows, cols]`, the
 * forward output), `stats` (read, `[cols][2]`: mean, rstd), `dw` (out,
 * `[rows, cols]`, `+=` if `accumulate`). Scratch: `normPartials`
 * (`chunks·2·cols`), `normSums` (`2·cols`).
 *
 * @param o Sizes (elements) and options.
 * @returns Three dispatches: chunk sums, their totals, dw.
 */
export function weightStdBackward(
  o: WeightStdBackwardOptions,
): KernelPlan<"dwh" | "wh" | "stats" | "dw"> {
  const { rows: R, cols: C, chunkRows, nChunks } = tiling(o);
  const partial = sumsPartial({
    groups: 1,
    rows: R,
    cols: C,
    inputs: ["dwh", "wh"],
    pre: "",
    body: "let dzv = dwh[i];\n      let xhv = wh[i];",
    chunkRows,
    nChunks,
    label: "wstd_bwd_partial",
  });
  const final = sumsFinal({
    groups: 1,
    cols: C,
    nChunks,
    outs: [readWrite(SUMS)],
    out: `${SUMS}[c] = sa;\n      ${SUMS}[C + c] = sb;`,
    end: "",
    label: "wstd_bwd_sums",
  });
  const apply = elementwise(
    R * C,
    storageBindings([
      readOnly("dwh"),
      readOnly("wh"),
      readOnly("stats"),
      readOnly(SUMS),
      readWrite("dw"),
    ]),
    `const C = ${C}u;\nconst RF: f32 = ${f32Literal(R)};`,
    `  let c = i % C;
  let v = stats[c * 2u + 1u] * (dwh[i] - ${SUMS}[C + c] / RF - wh[i] * (${SUMS}[c] / RF));
  dw[i] ${o.accumulate ? "+=" : "="} v;`,
    `wstd_bwd_apply${o.accumulate ? "_acc" : ""}`,
  );
  return {
    steps: [partial, final, apply],
    scratch: { [PARTIALS]: nChunks * 2 * C, [SUMS]: 2 * C },
  };
}
