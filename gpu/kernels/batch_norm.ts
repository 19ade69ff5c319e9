/**
 * BatchNorm kernels of the fused WebGPU engine, computing exactly
 * `model/layers.ts` `batchNorm` and its gradient: training mode with
 * statistics per *group* (each training view normalised with its own batch
 * mean and biased variance), optionally fused with a residual add and ReLU;
 * its backward; eval mode with running statistics; the PyTorch
 * running-statistics update (`updateRunningStats` of `model/amaut.ts`).
 * Column statistics and sums use the two-stage reductions of
 * `norm_reduce.ts`. All arrays are float32, row-major; sizes are baked into
 * the WGSL.
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
  HEAD,
  PARTIALS,
  SUMS,
  sumsFinal,
  sumsPartial,
  welfordFinal,
  welfordPartial,
  WG,
} from "./norm_reduce.ts";
import { f32Literal } from "./wgsl.ts";

/** Checked sizes and the row chunking of a training-mode BatchNorm. */
function trainingLayout(
  o: { groups: number; rows: number; channels: number; chunkRows?: number },
): { G: number; R: number; C: number; chunkRows: number; nChunks: number } {
  const { groups: G, rows: R, channels: C } = o;
  checkSize("BatchNorm groups", G);
  checkSize("BatchNorm rows", R);
  checkSize("BatchNorm channels", C);
  const { tr, tiles } = colTile(C);
  return { G, R, C, ...chunking(G, R, tiles, tr, o.chunkRows) };
}

/** Options of {@linkcode batchNormForward}. */
export interface BatchNormForwardOptions {
  /** Groups (training views), each normalised with its own statistics. */
  readonly groups: number;
  /** Rows per group (batch × time of one view). */
  readonly rows: number;
  /** Channels C. */
  readonly channels: number;
  /** Added to the variance. */
  readonly eps: number;
  /** Apply ReLU after the (residual) add. */
  readonly relu?: boolean;
  /** Add the residual input `r` before the ReLU. */
  readonly residual?: boolean;
  /** Rows per partial-reduction chunk (tuning and tests; default from the sizes). */
  readonly chunkRows?: number;
}

/**
 * Training-mode BatchNorm with per-group batch statistics, optionally fused
 * with a residual add and ReLU: per group g (rows g·rows … (g+1)·rows − 1)
 * `y = bn(x) (+ r)`, then `relu`, with `bn(x) = (x − mean)·γ/√(var + eps) + β`
 * and the biased variance.
 *
 * Bindings: `x` (read, `[groups·rows, C]`), `gb` (read, `[2C]`: γ then β),
 * `r` (read, `[groups·rows, C]`, only if `residual`), `y` (out,
 * `[groups·rows, C]`), `stats` (out, `[groups][2][C]`: mean then biased
 * variance). Scratch: `normPartials` (`groups·chunks·2·C`).
 *
 * @param o Sizes (elements), eps and fused options.
 * @returns Three dispatches: chunk statistics, their merge, the normalisation.
 */
export function batchNormForward(
  o: BatchNormForwardOptions,
): KernelPlan<"x" | "gb" | "y" | "stats", "r"> {
  const { G, R, C, chunkRows, nChunks } = trainingLayout(o);
  const partial = welfordPartial({
    groups: G,
    rows: R,
    cols: C,
    src: "x",
    chunkRows,
    nChunks,
    label: "bn_fwd_partial",
  });
  const final = welfordFinal({
    groups: G,
    rows: R,
    cols: C,
    chunkRows,
    nChunks,
    outs: ["stats"],
    out:
      "stats[(g * 2u) * C + c] = mean;\n    stats[(g * 2u + 1u) * C + c] = vr;",
    label: "bn_fwd_stats",
  });
  const b = storageBindings([
    readOnly("x"),
    readOnly("gb"),
    o.residual ? readOnly("r") : false,
    readOnly("stats"),
    readWrite("y"),
  ]);
  const apply = elementwise(
    G * R * C,
    b,
    `const C = ${C}u;\nconst RC = ${R * C}u;\nconst EPS: f32 = ${
      f32Literal(o.eps)
    };`,
    `  let c = i % C;
  let g = i / RC;
  let scale = gb[c] * inverseSqrt(stats[(g * 2u + 1u) * C + c] + EPS);
  var v = (x[i] - stats[(g * 2u) * C + c]) * scale + gb[C + c];
${o.residual ? "  v += r[i];\n" : ""}${
      o.relu ? "  v = max(v, 0.0);\n" : ""
    }  y[i] = v;`,
    `bn_fwd_apply${o.residual ? "_res" : ""}${o.relu ? "_relu" : ""}`,
  );
  return {
    steps: [partial, final, apply],
    scratch: { [PARTIALS]: G * nChunks * 2 * C },
  };
}

/** Options of {@linkcode batchNormBackward}. */
export interface BatchNormBackwardOptions {
  /** Groups (training views), as in the forward. */
  readonly groups: number;
  /** Rows per group. */
  readonly rows: number;
  /** Channels C. */
  readonly channels: number;
  /** Added to the variance (as in the forward). */
  readonly eps: number;
  /** The forward applied ReLU: mask `dy` by `y > 0`. */
  readonly relu?: boolean;
  /** Also write the masked gradient `dz` (what flows into the residual input). */
  readonly residualGrad?: boolean;
  /** `dx += …` instead of `dx = …`. */
  readonly accumulateDx?: boolean;
  /** Rows per partial-reduction chunk (tuning and tests; default from the sizes). */
  readonly chunkRows?: number;
}

/**
 * Backward of {@linkcode batchNormForward}, per group: `dz = relu ? dy·(y>0)
 * : dy`, `x̂ = (x − mean)·rstd`, `dx = γ·rstd·(dz − mean_rows(dz) −
 * x̂·mean_rows(dz·x̂))`; `dγ += Σ dz·x̂`, `dβ += Σ dz` summed over all groups.
 *
 * Bindings: `dy` (read, `[groups·rows, C]`), `y` (read, forward output, only
 * if `relu`), `x` (read, forward input), `stats` (read, `[groups][2][C]`
 * from the forward), `gb` (read, `[2C]`), `dx` (out, `[groups·rows, C]`, `+=`
 * if `accumulateDx`), `dgb` (read_write, `[2C]`: dγ then dβ, always `+=`),
 * `dz` (out, `[groups·rows, C]`, only if `residualGrad`). Scratch:
 * `normPartials` (`groups·chunks·2·C`), `normSums` (`groups·2·C`).
 *
 * @param o Sizes (elements), eps and fused options.
 * @returns Three dispatches: chunk sums, their per-group totals, dx (and dγβ).
 */
export function batchNormBackward(
  o: BatchNormBackwardOptions,
): KernelPlan<"dy" | "x" | "stats" | "gb" | "dx" | "dgb", "y" | "dz"> {
  const { G, R, C, chunkRows, nChunks } = trainingLayout(o);
  const eps = `const EPS: f32 = ${f32Literal(o.eps)};`;
  const dzExpr = o.relu ? "select(0.0, dy[i], y[i] > 0.0)" : "dy[i]";
  const partial = sumsPartial({
    groups: G,
    rows: R,
    cols: C,
    inputs: ["dy", ...(o.relu ? ["y"] : []), "x", "stats"],
    consts: eps,
    pre: `let mu = stats[(g * 2u) * C + c];
    let rs = inverseSqrt(stats[(g * 2u + 1u) * C + c] + EPS);`,
    body: `let dzv = ${dzExpr};
      let xhv = (x[i] - mu) * rs;`,
    chunkRows,
    nChunks,
    label: `bn_bwd_partial${o.relu ? "_relu" : ""}`,
  });
  const final = sumsFinal({
    groups: G,
    cols: C,
    nChunks,
    outs: [readWrite(SUMS), readWrite("dgb")],
    out:
      `${SUMS}[(g * 2u) * C + c] = sa;\n      ${SUMS}[(g * 2u + 1u) * C + c] = sb;`,
    end: "dgb[c] += ta;\n    dgb[C + c] += tb;",
    label: "bn_bwd_sums",
  });
  const b = storageBindings([
    readOnly("dy"),
    o.relu ? readOnly("y") : false,
    readOnly("x"),
    readOnly("stats"),
    readOnly("gb"),
    readOnly(SUMS),
    readWrite("dx"),
    o.residualGrad ? readWrite("dz") : false,
  ]);
  const apply = elementwise(
    G * R * C,
    b,
    `const C = ${C}u;
const RC = ${R * C}u;
const RF: f32 = ${f32Literal(R)};
${eps}`,
    `  let c = i % C;
  let g = i / RC;
  let rs = inverseSqrt(stats[(g * 2u + 1u) * C + c] + EPS);
  let dzv = ${dzExpr};
  let xhv = (x[i] - stats[(g * 2u) * C + c]) * rs;
  let sa = ${SUMS}[(g * 2u) * C + c];
  let sb = ${SUMS}[(g * 2u + 1u) * C + c];
  let v = gb[c] * rs * (dzv - sb / RF - xhv * (sa / RF));
  dx[i] ${o.accumulateDx ? "+=" : "="} v;
${o.residualGrad ? "  dz[i] = dzv;" : ""}`,
    `bn_bwd_apply${o.relu ? "_relu" : ""}${o.residualGrad ? "_dz" : ""}${
      o.accumulateDx ? "_acc" : ""
    }`,
  );
  return {
    steps: [partial, final, apply],
    scratch: { [PARTIALS]: G * nChunks * 2 * C, [SUMS]: G * 2 * C },
  };
}

/** Options of {@linkcode batchNormEval}. */
export interface BatchNormEvalOptions {
  /** Rows (all of them: statistics do not depend on groups). */
  readonly rows: number;
  /** Channels C. */
  readonly channels: number;
  /** Added to the running variance. */
  readonly eps: number;
  /** Apply ReLU after the (residual) add. */
  readonly relu?: boolean;
  /** Add the residual input `r` before the ReLU. */
  readonly residual?: boolean;
}

/**
 * Eval-mode BatchNorm with running statistics: `y = (x − μ_run)·γ/√(σ²_run +
 * eps) + β (+ r)`, then `relu`.
 *
 * Bindings: `x` (read, `[rows, C]`), `gb` (read, `[2C]`: γ then β), `running`
 * (read, `[2C]`: running mean then running variance), `r` (read,
 * `[rows, C]`, only if `residual`), `y` (out, `[rows, C]`).
 *
 * @param o Sizes (elements), eps and fused options.
 * @returns One elementwise dispatch.
 */
export function batchNormEval(
  o: BatchNormEvalOptions,
): KernelPlan<"x" | "gb" | "running" | "y", "r"> {
  checkSize("rows", o.rows);
  checkSize("channels", o.channels);
  const C = o.channels;
  const b = storageBindings([
    readOnly("x"),
    readOnly("gb"),
    readOnly("running"),
    o.residual ? readOnly("r") : false,
    readWrite("y"),
  ]);
  const apply = elementwise(
    o.rows * C,
    b,
    `const C = ${C}u;\nconst EPS: f32 = ${f32Literal(o.eps)};`,
    `  let c = i % C;
  let scale = gb[c] * inverseSqrt(running[C + c] + EPS);
  var v = (x[i] - running[c]) * scale + gb[C + c];
${o.residual ? "  v += r[i];\n" : ""}${
      o.relu ? "  v = max(v, 0.0);\n" : ""
    }  y[i] = v;`,
    `bn_eval${o.residual ? "_res" : ""}${o.relu ? "_relu" : ""}`,
  );
  return { steps: [apply] };
}

/** Options of {@linkcode runningStatsUpdate}. */
export interface RunningStatsOptions {
  /** Groups whose statistics are applied, in order. */
  readonly groups: number;
  /** Channels C. */
  readonly channels: number;
  /** Momentum m (PyTorch convention: running = (1 − m)·running + m·batch). */
  readonly momentum: number;
  /** Rows per group n (the variance is made unbiased by n/(n − 1); 1 for n = 1). */
  readonly count: number;
}

/**
 * PyTorch's running-statistics update, applied for groups g = 0, 1, … in
 * order: `mean ← (1 − m)·mean + m·mean_g`, `var ← (1 − m)·var +
 * m·n/(n − 1)·var_g` (as `updateRunningStats` of `model/amaut.ts`).
 *
 * Bindings: `stats` (read, `[groups][2][C]`: batch mean then biased variance),
 * `running` (read_write, `[2C]`: running mean then running variance).
 *
 * @param o Groups, channels, momentum and rows per group.
 * @returns One dispatch (one thread per channel).
 */
export function runningStatsUpdate(
  o: RunningStatsOptions,
): KernelPlan<"stats" | "running"> {
  checkSize("groups", o.groups);
  checkSize("channels", o.channels);
  checkSize("count", o.count);
  const C = o.channels;
  const unbiased = o.count > 1 ? o.count / (o.count - 1) : 1;
  const b = storageBindings([readOnly("stats"), readWrite("running")]);
  const code = `// bn_running_update
${b.decls}
const C = ${C}u;
const G = ${o.groups}u;
const KEEP: f32 = ${f32Literal(1 - o.momentum)};
const MOM: f32 = ${f32Literal(o.momentum)};
const MOMV: f32 = ${f32Literal(o.momentum * unbiased)};

${HEAD}
  let c = wid.x * ${WG}u + t;
  if (c >= C) {
    return;
  }
  var m = running[c];
  var v = running[C + c];
  for (var g = 0u; g < G; g++) {
    m = m * KEEP + stats[(g * 2u) * C + c] * MOM;
    v = v * KEEP + stats[(g * 2u + 1u) * C + c] * MOMV;
  }
  running[c] = m;
  running[C + c] = v;
}
`;
  return {
    steps: [{
      spec: {
        code,
        workgroups: [Math.ceil(C / WG), 1, 1],
        label: "bn_running_update",
      },
      bind: b.bind,
    }],
  };
}
