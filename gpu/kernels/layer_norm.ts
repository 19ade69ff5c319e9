/**
 * LayerNorm kernels of the fused WebGPU engine (`model/layers.ts`
 * `layerNorm` over the last axis) and its backward. Each row gets a
 * power-of-two slot of threads whose values stay in registers (unrolled
 * WGSL), so the variance is an exact second pass and the backward reads `dy`
 * and `x` once. The backward also writes per-slot column partials of dγ and
 * dβ, which `sumsFinal` of `norm_reduce.ts` sums.
 *
 * @module
 */
import type { KernelPlan, KernelStep } from "../runtime.ts";
import { readOnly, readWrite, storageBindings } from "./bindings.ts";
import { checkSize, grid2d } from "./grid.ts";
import {
  HEAD,
  PARTIALS,
  pow2ceil,
  sumsFinal,
  tree,
  WG,
} from "./norm_reduce.ts";
import { f32Literal } from "./wgsl.ts";

/**
 * Row layout of LayerNorm: `tpr` threads per row (a power of two in
 * 32…256, about `dim / perThread`), `rpw` rows per workgroup, `e` values per
 * thread. Measured on an H100 at d = 768: the forward is fastest with 6
 * values a thread (128 threads), the backward with 3 (256 threads).
 */
function lnLayout(
  dim: number,
  perThread: number,
): { tpr: number; rpw: number; e: number } {
  const tpr = Math.min(
    WG,
    Math.max(32, pow2ceil(Math.ceil(dim / perThread))),
  );
  return { tpr, rpw: WG / tpr, e: Math.ceil(dim / tpr) };
}

/**
 * WGSL constants of a row layout: `D` (and `DF` as f32), `ROWS`, `TPR`,
 * `RPW`, `RPS` (rows per slot, when given) and `NX` (grid width).
 */
function rowLayoutWgsl(
  dim: number,
  rows: number,
  tpr: number,
  rpw: number,
  workgroups: readonly [number, number, number],
  rps?: number,
): string {
  return [
    `const D = ${dim}u;`,
    `const DF: f32 = ${f32Literal(dim)};`,
    `const ROWS = ${rows}u;`,
    `const TPR = ${tpr}u;`,
    `const RPW = ${rpw}u;`,
    ...(rps === undefined ? [] : [`const RPS = ${rps}u;`]),
    `const NX = ${workgroups[0]}u;`,
  ].join("\n");
}

/** Per unrolled value j: column expression and whether it needs a bound check. */
function lnCols(dim: number, tpr: number, e: number) {
  return Array.from({ length: e }, (_, j) => ({
    j,
    col: `(lt + ${j * tpr}u)`,
    guard: (j + 1) * tpr > dim,
  }));
}

/**
 * Sum of `value` over the `tpr` threads of each row slot (an unrolled tree
 * over `red`); declares `result`, and ends with a barrier so `red` can be
 * reused at once. (A two-barrier variant — strided partials then a
 * broadcast — measured slower on an H100.)
 */
function rowSum(
  tpr: number,
  value: string,
  result: string,
  ind: string,
): string {
  return [
    `red[t] = ${value};`,
    "workgroupBarrier();",
    ...tree(tpr, "lt", 1, (u) => `red[t] += red[${u}];`).split("\n").map(
      (l) => l.trim(),
    ),
    `let ${result} = red[slot * TPR];`,
    "workgroupBarrier();",
  ].map((l) => ind + l).join("\n");
}

/** Options of {@linkcode layerNormForward}. */
export interface LayerNormForwardOptions {
  /** Rows. */
  readonly rows: number;
  /** Normalised (last) dimension d. */
  readonly dim: number;
  /** Added to the variance. */
  readonly eps: number;
}

/**
 * LayerNorm over the last axis with biased variance: `y = (x − mean)·rstd·γ
 * + β`, `rstd = 1/√(var + eps)`.
 *
 * Bindings: `x` (read, `[rows, d]`), `gb` (read, `[2d]`: γ then β), `y` (out,
 * `[rows, d]`), `stats` (out, `[rows][2]`: mean, rstd).
 *
 * @param o Sizes (elements) and eps.
 * @returns One dispatch (a slot of 32…256 threads per row).
 */
export function layerNormForward(
  o: LayerNormForwardOptions,
): KernelPlan<"x" | "gb" | "y" | "stats"> {
  checkSize("rows", o.rows);
  checkSize("dim", o.dim);
  const D = o.dim;
  const { tpr, rpw, e } = lnLayout(D, 8);
  const cols = lnCols(D, tpr, e);
  const workgroups = grid2d(Math.ceil(o.rows / rpw));
  const b = storageBindings([
    readOnly("x"),
    readOnly("gb"),
    readWrite("y"),
    readWrite("stats"),
  ]);
  const ok = (c: { j: number; guard: boolean }) =>
    c.guard ? `ok${c.j}` : "true";
  const code = `// ln_fwd
${b.decls}
${rowLayoutWgsl(D, o.rows, tpr, rpw, workgroups)}
const EPS: f32 = ${f32Literal(o.eps)};
var<workgroup> red: array<f32, ${WG}>;

${HEAD}
  let slot = t / TPR;
  let lt = t % TPR;
  let row = (wid.y * NX + wid.x) * RPW + slot;
  let ok = row < ROWS;
  let base = row * D;
${
    cols.map((c) =>
      `  var v${c.j} = 0.0;${c.guard ? `\n  let ok${c.j} = ${c.col} < D;` : ""}`
    ).join("\n")
  }
  if (ok) {
${
    cols.map((c) =>
      c.guard
        ? `    if (ok${c.j}) {\n      v${c.j} = x[base + ${c.col}];\n    }`
        : `    v${c.j} = x[base + ${c.col}];`
    ).join("\n")
  }
  }
${rowSum(tpr, cols.map((c) => `v${c.j}`).join(" + "), "s1", "  ")}
  let mean = s1 / DF;
  var q = 0.0;
${
    cols.map((c) =>
      `  let d${c.j} = v${c.j} - mean;\n` +
      (c.guard
        ? `  if (ok${c.j}) {\n    q += d${c.j} * d${c.j};\n  }`
        : `  q += d${c.j} * d${c.j};`)
    ).join("\n")
  }
${rowSum(tpr, "q", "s2", "  ")}
  let rstd = inverseSqrt(s2 / DF + EPS);
  if (ok) {
${
    cols.map((c) => {
      const w =
        `y[base + ${c.col}] = d${c.j} * rstd * gb[${c.col}] + gb[D + ${c.col}];`;
      return c.guard ? `    if (${ok(c)}) {\n      ${w}\n    }` : `    ${w}`;
    }).join("\n")
  }
    if (lt == 0u) {
      stats[row * 2u] = mean;
      stats[row * 2u + 1u] = rstd;
    }
  }
}
`;
  return {
    steps: [{ spec: { code, workgroups, label: "ln_fwd" }, bind: b.bind }],
  };
}

/** Options of {@linkcode layerNormBackward}. */
export interface LayerNormBackwardOptions {
  /** Rows. */
  readonly rows: number;
  /** Normalised (last) dimension d. */
  readonly dim: number;
  /** `dx += …` instead of `dx = …`. */
  readonly accumulateDx?: boolean;
  /** Rows per partial of dγβ (tuning and tests; default from the sizes). */
  readonly chunkRows?: number;
}

/**
 * Backward of {@linkcode layerNormForward}: with `g = dy·γ` and `x̂ =
 * (x − mean)·rstd`, `dx = rstd·(g − mean_d(g) − x̂·mean_d(g·x̂))`; `dγ +=
 * Σ_rows dy·x̂`, `dβ += Σ_rows dy`.
 *
 * Bindings: `dy` (read, `[rows, d]`), `x` (read, `[rows, d]`), `gb` (read,
 * `[2d]`), `stats` (read, `[rows][2]`: mean, rstd from the forward), `dx`
 * (out, `[rows, d]`, `+=` if `accumulateDx`), `dgb` (read_write, `[2d]`: dγ
 * then dβ, always `+=`). Scratch: `normPartials` (`partials·2·d`).
 *
 * @param o Sizes (elements) and options.
 * @returns Two dispatches: dx with per-slot column partials, their sum into dgb.
 */
export function layerNormBackward(
  o: LayerNormBackwardOptions,
): KernelPlan<"dy" | "x" | "gb" | "stats" | "dx" | "dgb"> {
  checkSize("rows", o.rows);
  checkSize("dim", o.dim);
  const D = o.dim;
  const { tpr, rpw, e } = lnLayout(D, 4);
  const cols = lnCols(D, tpr, e);
  let rps: number;
  if (o.chunkRows !== undefined) {
    checkSize("chunkRows", o.chunkRows);
    rps = o.chunkRows;
  } else {
    rps = Math.max(1, Math.ceil(o.rows / (rpw * 1024)));
  }
  const nWg = Math.ceil(o.rows / (rpw * rps));
  const nParts = nWg * rpw;
  const workgroups = grid2d(nWg);
  const b = storageBindings([
    readOnly("dy"),
    readOnly("x"),
    readOnly("gb"),
    readOnly("stats"),
    readWrite("dx"),
    readWrite(PARTIALS),
  ]);
  const guarded = (c: { j: number; guard: boolean }, s: string, ind: string) =>
    c.guard ? `${ind}if (ok${c.j}) {\n${ind}  ${s}\n${ind}}` : `${ind}${s}`;
  const code = `// ln_bwd
${b.decls}
${rowLayoutWgsl(D, o.rows, tpr, rpw, workgroups, rps)}
var<workgroup> red: array<vec2<f32>, ${WG}>;

${HEAD}
  let slot = t / TPR;
  let lt = t % TPR;
  let wg = wid.y * NX + wid.x;
${
    cols.map((c) =>
      (c.guard ? `  let ok${c.j} = ${c.col} < D;\n` : "") +
      `  var gm${c.j} = 0.0;\n` +
      guarded(c, `gm${c.j} = gb[${c.col}];`, "  ") +
      `\n  var pg${c.j} = 0.0;\n  var pb${c.j} = 0.0;`
    ).join("\n")
  }
  for (var s = 0u; s < RPS; s++) {
    let row = (wg * RPS + s) * RPW + slot;
    let ok = row < ROWS;
    let base = row * D;
    var mean = 0.0;
    var rstd = 0.0;
${
    cols.map((c) => `    var dy${c.j} = 0.0;\n    var xh${c.j} = 0.0;`).join(
      "\n",
    )
  }
    if (ok) {
      mean = stats[row * 2u];
      rstd = stats[row * 2u + 1u];
${
    cols.map((c) =>
      guarded(
        c,
        `dy${c.j} = dy[base + ${c.col}];${
          c.guard ? "\n        " : "\n      "
        }xh${c.j} = (x[base + ${c.col}] - mean) * rstd;`,
        "      ",
      )
    ).join("\n")
  }
    }
${cols.map((c) => `    let g${c.j} = dy${c.j} * gm${c.j};`).join("\n")}
${
    rowSum(
      tpr,
      `vec2<f32>(${cols.map((c) => `g${c.j}`).join(" + ")}, ${
        cols.map((c) => `g${c.j} * xh${c.j}`).join(" + ")
      })`,
      "tot",
      "    ",
    )
  }
    let m1 = tot.x / DF;
    let m2 = tot.y / DF;
    if (ok) {
${
    cols.map((c) =>
      guarded(
        c,
        `dx[base + ${c.col}] ${
          o.accumulateDx ? "+=" : "="
        } rstd * (g${c.j} - m1 - xh${c.j} * m2);`,
        "      ",
      )
    ).join("\n")
  }
    }
${
    cols.map((c) =>
      `    pg${c.j} += dy${c.j} * xh${c.j};\n    pb${c.j} += dy${c.j};`
    ).join("\n")
  }
  }
  let p = (wg * RPW + slot) * 2u * D;
${
    cols.map((c) =>
      guarded(
        c,
        `${PARTIALS}[p + ${c.col}] = pg${c.j};${
          c.guard ? "\n    " : "\n  "
        }${PARTIALS}[p + D + ${c.col}] = pb${c.j};`,
        "  ",
      )
    ).join("\n")
  }
}
`;
  const dx: KernelStep = {
    spec: {
      code,
      workgroups,
      label: `ln_bwd${o.accumulateDx ? "_acc" : ""}`,
    },
    bind: b.bind,
  };
  const final = sumsFinal({
    groups: 1,
    cols: D,
    nChunks: nParts,
    outs: [readWrite("dgb")],
    out: "",
    end: "dgb[c] += ta;\n    dgb[C + c] += tb;",
    label: "ln_bwd_dgb",
  });
  return { steps: [dx, final], scratch: { [PARTIALS]: nParts * 2 * D } };
}
