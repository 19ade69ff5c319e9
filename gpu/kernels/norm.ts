/**
 * Normalisation kernels of the fused WebGPU engine, computing exactly the
 * functions of `model/layers.ts` and their gradients:
 *
 * - BatchNorm (`batchNorm`) in training mode with statistics per *group*
 *   (each training view normalised with its own batch mean and biased
 *   variance), optionally fused with a residual add and ReLU; its backward;
 *   eval mode with running statistics; the PyTorch running-statistics update
 *   (`updateRunningStats` of `model/amaut.ts`).
 * - LayerNorm (`layerNorm`) over the last axis and its backward.
 * - Weight standardisation of conv kernels (`standardizeKernel`) per output
 *   channel and its backward.
 *
 * Column statistics (BatchNorm over rows, weight standardisation over the
 * kernel's rows) use a two-stage reduction: one workgroup per (row chunk,
 * 32-column tile, group) with threads along the columns (coalesced), each
 * thread running Welford's update over its rows and the workgroup merging
 * the (count, mean, M2) triples Chan-style, then one small kernel merging the
 * chunks into mean and biased variance — numerically safe, one read of the
 * input. Backward column sums (Σ dz, Σ dz·x̂) use the same chunking with plain
 * sums. LayerNorm gives each row a power-of-two slot of threads whose values
 * stay in registers (unrolled WGSL), so the variance is an exact second pass
 * and the backward reads `dy` and `x` once. Its backward also writes
 * per-slot column partials of dγ and dβ which a second kernel sums. Every dispatch binds at most 8 storage buffers (WebGPU's default
 * limit).
 *
 * All arrays are float32, row-major; sizes are baked into the WGSL. Scratch
 * regions (private to a plan): `normPartials` (per-chunk partial results) and
 * `normSums` (per-group column sums of a backward pass).
 *
 * @module
 */
import type { KernelPlan, KernelSpec, KernelStep } from "../runtime.ts";

/** Threads per workgroup of every kernel here. */
const WG = 256;
/** Scratch name: per-chunk partial results of a two-stage column reduction. */
const PARTIALS = "normPartials";
/** Scratch name: per-group column sums (Σ dz·x̂ then Σ dz) of a backward pass. */
const SUMS = "normSums";
/** Column tile × chunk lanes of the second (chunk-merging) stage. */
const FINAL_TC = 8;
const FINAL_TR = WG / FINAL_TC;
/** WebGPU's default maxStorageBuffersPerShaderStage: no dispatch binds more. */
const MAX_BINDINGS = 8;
/** Stage-one workgroups aimed for (enough to fill an H100 several times over). */
const TARGET_WORKGROUPS = 1024;

// ---- helpers ----------------------------------------------------------------

function positiveInt(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 1) {
    throw new RangeError(
      `norm kernels: ${name} must be a positive integer, got ${v}`,
    );
  }
}

/** A WGSL f32 literal. */
function lit(v: number): string {
  if (!Number.isFinite(v)) {
    throw new RangeError(`norm kernels: constant ${v} is not finite`);
  }
  const s = String(v);
  return /[.eE]/.test(s) ? s : `${s}.0`;
}

/** A binding list: WGSL declarations (identifier = binding name) and names. */
function bindings(
  list: readonly (readonly [string, "read" | "read_write"] | false)[],
): { decls: string; bind: string[] } {
  const bind: string[] = [];
  const lines: string[] = [];
  for (const e of list) {
    if (!e) continue;
    lines.push(
      `@group(0) @binding(${bind.length}) var<storage, ${e[1]}> ${
        e[0]
      }: array<f32>;`,
    );
    bind.push(e[0]);
  }
  if (bind.length > MAX_BINDINGS) {
    throw new Error(
      `norm kernels: ${bind.length} storage bindings exceed WebGPU's default limit of ${MAX_BINDINGS}`,
    );
  }
  return { decls: lines.join("\n"), bind };
}

/** A 2-D grid of `n` workgroups (x ≤ 65,535). */
function grid(n: number): [number, number, number] {
  const x = Math.max(1, Math.min(n, 65535));
  const y = Math.ceil(n / x);
  if (y > 65535) {
    throw new RangeError(`norm kernels: ${n} workgroups is too many`);
  }
  return [x, y, 1];
}

const pow2ceil = (n: number): number => 2 ** Math.ceil(Math.log2(n));

/** Stage-one tile: `tc` columns × `tr` row lanes (256 threads). */
function colTile(cols: number): { tc: number; tr: number; tiles: number } {
  const tc = cols >= 32 ? 32 : 16;
  return { tc, tr: WG / tc, tiles: Math.ceil(cols / tc) };
}

/**
 * Rows per chunk of a column reduction: enough chunks for about
 * {@linkcode TARGET_WORKGROUPS} workgroups, at least 4 rows per lane.
 */
function chunking(
  groups: number,
  rows: number,
  tiles: number,
  tr: number,
  chunkRows?: number,
): { chunkRows: number; nChunks: number } {
  let cr: number;
  if (chunkRows !== undefined) {
    positiveInt("chunkRows", chunkRows);
    cr = Math.min(chunkRows, rows);
  } else {
    const want = Math.ceil(TARGET_WORKGROUPS / (groups * tiles));
    const most = Math.ceil(rows / (tr * 4));
    cr = Math.ceil(rows / Math.max(1, Math.min(want, most)));
  }
  const nChunks = Math.ceil(rows / cr);
  if (nChunks > 65535) {
    throw new RangeError(`norm kernels: ${nChunks} row chunks is too many`);
  }
  return { chunkRows: cr, nChunks };
}

/** Unrolled tree reduction over `lanes` lanes `stride` threads apart. */
function tree(
  lanes: number,
  lane: string,
  stride: number,
  step: (other: string) => string,
): string {
  const out: string[] = [];
  for (let s = lanes / 2; s >= 1; s /= 2) {
    out.push(
      `  if (${lane} < ${s}u) { ${step(`t + ${s * stride}u`)} }`,
      "  workgroupBarrier();",
    );
  }
  return out.join("\n");
}

const HEAD =
  `@compute @workgroup_size(${WG})\nfn main(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>) {`;

/** Shared (count, mean, M2) arrays and the Chan merge of slot b into a. */
const WELFORD_SHARED = `var<workgroup> sn: array<f32, ${WG}>;
var<workgroup> sm: array<f32, ${WG}>;
var<workgroup> sq: array<f32, ${WG}>;

fn merge(a: u32, b: u32) {
  let nb = sn[b];
  if (nb > 0.0) {
    let na = sn[a];
    let n = na + nb;
    let d = sm[b] - sm[a];
    sm[a] = sm[a] + d * (nb / n);
    sq[a] = sq[a] + sq[b] + d * d * (na * nb / n);
    sn[a] = n;
  }
}`;

/**
 * Stage one of column statistics: per (chunk, column tile, group) the
 * chunk's mean and M2 per column → `normPartials[g][k][2][cols]`.
 */
function welfordPartial(o: {
  groups: number;
  rows: number;
  cols: number;
  src: string;
  chunkRows: number;
  nChunks: number;
  label: string;
}): KernelStep {
  const { tc, tr, tiles } = colTile(o.cols);
  const b = bindings([[o.src, "read"], [PARTIALS, "read_write"]]);
  const code = `// ${o.label}
${b.decls}
const R = ${o.rows}u;
const C = ${o.cols}u;
const CR = ${o.chunkRows}u;
const NK = ${o.nChunks}u;
const TC = ${tc}u;
const TR = ${tr}u;
${WELFORD_SHARED}

${HEAD}
  let lc = t % TC;
  let lr = t / TC;
  let c = wid.y * TC + lc;
  let k = wid.x;
  let g = wid.z;
  let r1 = min(k * CR + CR, R);
  var n = 0.0;
  var m = 0.0;
  var q = 0.0;
  if (c < C) {
    for (var r = k * CR + lr; r < r1; r += TR) {
      let v = ${o.src}[(g * R + r) * C + c];
      n += 1.0;
      let d = v - m;
      m += d / n;
      q += d * (v - m);
    }
  }
  sn[t] = n;
  sm[t] = m;
  sq[t] = q;
  workgroupBarrier();
${tree(tr, "lr", tc, (u) => `merge(t, ${u});`)}
  if (lr == 0u && c < C) {
    let o = ((g * NK + k) * 2u) * C + c;
    ${PARTIALS}[o] = sm[t];
    ${PARTIALS}[o + C] = sq[t];
  }
}
`;
  return {
    spec: { code, workgroups: [o.nChunks, tiles, o.groups], label: o.label },
    bind: b.bind,
  };
}

/**
 * Stage two of column statistics: merges the chunks of each group and runs
 * `out` (WGSL using `g`, `c`, `mean`, `vr` = biased variance) once per
 * (group, column).
 */
function welfordFinal(o: {
  groups: number;
  rows: number;
  cols: number;
  chunkRows: number;
  nChunks: number;
  outs: readonly string[];
  out: string;
  consts?: string;
  label: string;
}): KernelStep {
  const b = bindings([
    [PARTIALS, "read"],
    ...o.outs.map((n) => [n, "read_write"] as const),
  ]);
  const code = `// ${o.label}
${b.decls}
const R = ${o.rows}u;
const C = ${o.cols}u;
const CR = ${o.chunkRows}u;
const NK = ${o.nChunks}u;
const TC = ${FINAL_TC}u;
const TR = ${FINAL_TR}u;
${o.consts ?? ""}
${WELFORD_SHARED}

${HEAD}
  let lc = t % TC;
  let lr = t / TC;
  let c = wid.x * TC + lc;
  let g = wid.y;
  var n = 0.0;
  var m = 0.0;
  var q = 0.0;
  if (c < C) {
    for (var k = lr; k < NK; k += TR) {
      let o = ((g * NK + k) * 2u) * C + c;
      let mb = ${PARTIALS}[o];
      let qb = ${PARTIALS}[o + C];
      let nb = f32(min(CR, R - k * CR));
      let nn = n + nb;
      let d = mb - m;
      m += d * (nb / nn);
      q += qb + d * d * (n * nb / nn);
      n = nn;
    }
  }
  sn[t] = n;
  sm[t] = m;
  sq[t] = q;
  workgroupBarrier();
${tree(FINAL_TR, "lr", FINAL_TC, (u) => `merge(t, ${u});`)}
  if (lr == 0u && c < C) {
    let mean = sm[t];
    let vr = sq[t] / f32(R);
    ${o.out}
  }
}
`;
  return {
    spec: {
      code,
      workgroups: [Math.ceil(o.cols / FINAL_TC), o.groups, 1],
      label: o.label,
    },
    bind: b.bind,
  };
}

/**
 * Stage one of backward column sums: per (chunk, column tile, group)
 * Σ dzv·xhv and Σ dzv → `normPartials[g][k][2][cols]`. `pre` runs once per
 * column (`g`, `c` known), `body` per element `i` and defines `dzv`, `xhv`.
 */
function sumsPartial(o: {
  groups: number;
  rows: number;
  cols: number;
  inputs: readonly string[];
  consts?: string;
  pre: string;
  body: string;
  chunkRows: number;
  nChunks: number;
  label: string;
}): KernelStep {
  const { tc, tr, tiles } = colTile(o.cols);
  const b = bindings([
    ...o.inputs.map((n) => [n, "read"] as const),
    [PARTIALS, "read_write"],
  ]);
  const code = `// ${o.label}
${b.decls}
const R = ${o.rows}u;
const C = ${o.cols}u;
const CR = ${o.chunkRows}u;
const NK = ${o.nChunks}u;
const TC = ${tc}u;
const TR = ${tr}u;
${o.consts ?? ""}
var<workgroup> wa: array<f32, ${WG}>;
var<workgroup> wb: array<f32, ${WG}>;

${HEAD}
  let lc = t % TC;
  let lr = t / TC;
  let c = wid.y * TC + lc;
  let k = wid.x;
  let g = wid.z;
  let r1 = min(k * CR + CR, R);
  var a = 0.0;
  var b = 0.0;
  if (c < C) {
    ${o.pre}
    for (var r = k * CR + lr; r < r1; r += TR) {
      let i = (g * R + r) * C + c;
      ${o.body}
      a += dzv * xhv;
      b += dzv;
    }
  }
  wa[t] = a;
  wb[t] = b;
  workgroupBarrier();
${tree(tr, "lr", tc, (u) => `wa[t] += wa[${u}]; wb[t] += wb[${u}];`)}
  if (lr == 0u && c < C) {
    let o = ((g * NK + k) * 2u) * C + c;
    ${PARTIALS}[o] = wa[t];
    ${PARTIALS}[o + C] = wb[t];
  }
}
`;
  return {
    spec: { code, workgroups: [o.nChunks, tiles, o.groups], label: o.label },
    bind: b.bind,
  };
}

/**
 * Stage two of backward column sums: for each group in turn, sums its chunks
 * (4 independent loads in flight per thread) and runs `out` (WGSL using `g`,
 * `c`, `sa` = Σ dz·x̂, `sb` = Σ dz) once per column; then `end` (WGSL using
 * `c`, `ta`, `tb` = the sums over all groups) once per column. One
 * workgroup per 8 columns covers every group, so `end` may accumulate.
 */
function sumsFinal(o: {
  groups: number;
  cols: number;
  nChunks: number;
  outs: readonly (readonly [string, "read" | "read_write"])[];
  out: string;
  end: string;
  label: string;
}): KernelStep {
  const b = bindings([[PARTIALS, "read"], ...o.outs]);
  const u = [0, 1, 2, 3];
  const code = `// ${o.label}
${b.decls}
const C = ${o.cols}u;
const G = ${o.groups}u;
const NK = ${o.nChunks}u;
const TC = ${FINAL_TC}u;
const TR = ${FINAL_TR}u;
var<workgroup> wa: array<f32, ${WG}>;
var<workgroup> wb: array<f32, ${WG}>;

${HEAD}
  let lc = t % TC;
  let lr = t / TC;
  let c = wid.x * TC + lc;
  var ta = 0.0;
  var tb = 0.0;
  for (var g = 0u; g < G; g++) {
${u.map((j) => `    var a${j} = 0.0;\n    var b${j} = 0.0;`).join("\n")}
    if (c < C) {
      var k = lr;
      while (k + ${3 * FINAL_TR}u < NK) {
${
    u.map((j) =>
      `        let o${j} = ((g * NK + k + ${j * FINAL_TR}u) * 2u) * C + c;
        a${j} += ${PARTIALS}[o${j}];
        b${j} += ${PARTIALS}[o${j} + C];`
    ).join("\n")
  }
        k += ${4 * FINAL_TR}u;
      }
      while (k < NK) {
        let o = ((g * NK + k) * 2u) * C + c;
        a0 += ${PARTIALS}[o];
        b0 += ${PARTIALS}[o + C];
        k += TR;
      }
    }
    wa[t] = (a0 + a1) + (a2 + a3);
    wb[t] = (b0 + b1) + (b2 + b3);
    workgroupBarrier();
${
    tree(
      FINAL_TR,
      "lr",
      FINAL_TC,
      (v) => `wa[t] += wa[${v}]; wb[t] += wb[${v}];`,
    ).replace(/^ {2}/gm, "    ")
  }
    if (lr == 0u && c < C) {
      let sa = wa[t];
      let sb = wb[t];
      ${o.out}
      ta += sa;
      tb += sb;
    }
    workgroupBarrier();
  }
  if (lr == 0u && c < C) {
    ${o.end}
  }
}
`;
  return {
    spec: {
      code,
      workgroups: [Math.ceil(o.cols / FINAL_TC), 1, 1],
      label: o.label,
    },
    bind: b.bind,
  };
}

/** One thread per element `i < n` (`i` known, early return beyond `n`). */
function elementwise(
  n: number,
  b: { decls: string; bind: string[] },
  consts: string,
  body: string,
  label: string,
): KernelStep {
  const workgroups = grid(Math.ceil(n / WG));
  const code = `// ${label}
${b.decls}
const N = ${n}u;
const NX = ${workgroups[0]}u;
${consts}

${HEAD}
  let i = (wid.y * NX + wid.x) * ${WG}u + t;
  if (i >= N) {
    return;
  }
${body}
}
`;
  const spec: KernelSpec = { code, workgroups, label };
  return { spec, bind: b.bind };
}

// ---- BatchNorm ----------------------------------------------------------------

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
export function batchNormForward(o: BatchNormForwardOptions): KernelPlan {
  const { groups: G, rows: R, channels: C } = o;
  positiveInt("groups", G);
  positiveInt("rows", R);
  positiveInt("channels", C);
  const { tr, tiles } = colTile(C);
  const { chunkRows, nChunks } = chunking(G, R, tiles, tr, o.chunkRows);
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
  const b = bindings([
    ["x", "read"],
    ["gb", "read"],
    o.residual ? ["r", "read"] : false,
    ["stats", "read"],
    ["y", "read_write"],
  ]);
  const apply = elementwise(
    G * R * C,
    b,
    `const C = ${C}u;\nconst RC = ${R * C}u;\nconst EPS: f32 = ${lit(o.eps)};`,
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
export function batchNormBackward(o: BatchNormBackwardOptions): KernelPlan {
  const { groups: G, rows: R, channels: C } = o;
  positiveInt("groups", G);
  positiveInt("rows", R);
  positiveInt("channels", C);
  const { tr, tiles } = colTile(C);
  const { chunkRows, nChunks } = chunking(G, R, tiles, tr, o.chunkRows);
  const eps = `const EPS: f32 = ${lit(o.eps)};`;
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
    outs: [[SUMS, "read_write"], ["dgb", "read_write"]],
    out:
      `${SUMS}[(g * 2u) * C + c] = sa;\n      ${SUMS}[(g * 2u + 1u) * C + c] = sb;`,
    end: "dgb[c] += ta;\n    dgb[C + c] += tb;",
    label: "bn_bwd_sums",
  });
  const b = bindings([
    ["dy", "read"],
    o.relu ? ["y", "read"] : false,
    ["x", "read"],
    ["stats", "read"],
    ["gb", "read"],
    [SUMS, "read"],
    ["dx", "read_write"],
    o.residualGrad ? ["dz", "read_write"] : false,
  ]);
  const apply = elementwise(
    G * R * C,
    b,
    `const C = ${C}u;
const RC = ${R * C}u;
const RF: f32 = ${lit(R)};
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
export function batchNormEval(o: BatchNormEvalOptions): KernelPlan {
  positiveInt("rows", o.rows);
  positiveInt("channels", o.channels);
  const C = o.channels;
  const b = bindings([
    ["x", "read"],
    ["gb", "read"],
    ["running", "read"],
    o.residual ? ["r", "read"] : false,
    ["y", "read_write"],
  ]);
  const apply = elementwise(
    o.rows * C,
    b,
    `const C = ${C}u;\nconst EPS: f32 = ${lit(o.eps)};`,
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
export function runningStatsUpdate(o: RunningStatsOptions): KernelPlan {
  positiveInt("groups", o.groups);
  positiveInt("channels", o.channels);
  positiveInt("count", o.count);
  const C = o.channels;
  const unbiased = o.count > 1 ? o.count / (o.count - 1) : 1;
  const b = bindings([["stats", "read"], ["running", "read_write"]]);
  const code = `// bn_running_update
${b.decls}
const C = ${C}u;
const G = ${o.groups}u;
const KEEP: f32 = ${lit(1 - o.momentum)};
const MOM: f32 = ${lit(o.momentum)};
const MOMV: f32 = ${lit(o.momentum * unbiased)};

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

// ---- LayerNorm ----------------------------------------------------------------

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
    ...tree(tpr, "lt", 1, (u) => `red[t] += red[${u}];`).split("\n").map((l) =>
      l.trim()
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
export function layerNormForward(o: LayerNormForwardOptions): KernelPlan {
  positiveInt("rows", o.rows);
  positiveInt("dim", o.dim);
  const D = o.dim;
  const { tpr, rpw, e } = lnLayout(D, 8);
  const cols = lnCols(D, tpr, e);
  const workgroups = grid(Math.ceil(o.rows / rpw));
  const b = bindings([
    ["x", "read"],
    ["gb", "read"],
    ["y", "read_write"],
    ["stats", "read_write"],
  ]);
  const ok = (c: { j: number; guard: boolean }) =>
    c.guard ? `ok${c.j}` : "true";
  const code = `// ln_fwd
${b.decls}
const D = ${D}u;
const DF: f32 = ${lit(D)};
const ROWS = ${o.rows}u;
const TPR = ${tpr}u;
const RPW = ${rpw}u;
const NX = ${workgroups[0]}u;
const EPS: f32 = ${lit(o.eps)};
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
export function layerNormBackward(o: LayerNormBackwardOptions): KernelPlan {
  positiveInt("rows", o.rows);
  positiveInt("dim", o.dim);
  const D = o.dim;
  const { tpr, rpw, e } = lnLayout(D, 4);
  const cols = lnCols(D, tpr, e);
  let rps: number;
  if (o.chunkRows !== undefined) {
    positiveInt("chunkRows", o.chunkRows);
    rps = o.chunkRows;
  } else {
    rps = Math.max(1, Math.ceil(o.rows / (rpw * 1024)));
  }
  const nWg = Math.ceil(o.rows / (rpw * rps));
  const nParts = nWg * rpw;
  const workgroups = grid(nWg);
  const b = bindings([
    ["dy", "read"],
    ["x", "read"],
    ["gb", "read"],
    ["stats", "read"],
    ["dx", "read_write"],
    [PARTIALS, "read_write"],
  ]);
  const guarded = (c: { j: number; guard: boolean }, s: string, ind: string) =>
    c.guard ? `${ind}if (ok${c.j}) {\n${ind}  ${s}\n${ind}}` : `${ind}${s}`;
  const code = `// ln_bwd
${b.decls}
const D = ${D}u;
const DF: f32 = ${lit(D)};
const ROWS = ${o.rows}u;
const TPR = ${tpr}u;
const RPW = ${rpw}u;
const RPS = ${rps}u;
const NX = ${workgroups[0]}u;
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
    outs: [["dgb", "read_write"]],
    out: "",
    end: "dgb[c] += ta;\n    dgb[C + c] += tb;",
    label: "ln_bwd_dgb",
  });
  return { steps: [dx, final], scratch: { [PARTIALS]: nParts * 2 * D } };
}

// ---- weight standardisation ---------------------------------------------------

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
export function weightStdForward(o: WeightStdForwardOptions): KernelPlan {
  positiveInt("rows", o.rows);
  positiveInt("cols", o.cols);
  const { rows: R, cols: C } = o;
  const { tr, tiles } = colTile(C);
  const { chunkRows, nChunks } = chunking(1, R, tiles, tr, o.chunkRows);
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
    consts: `const EPS: f32 = ${lit(o.eps)};`,
    out:
      "stats[c * 2u] = mean;\n    stats[c * 2u + 1u] = inverseSqrt(vr + EPS);",
    label: "wstd_fwd_stats",
  });
  const apply = elementwise(
    R * C,
    bindings([["w", "read"], ["stats", "read"], ["wh", "read_write"]]),
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
export function weightStdBackward(o: WeightStdBackwardOptions): KernelPlan {
  positiveInt("rows", o.rows);
  positiveInt("cols", o.cols);
  const { rows: R, cols: C } = o;
  const { tr, tiles } = colTile(C);
  const { chunkRows, nChunks } = chunking(1, R, tiles, tr, o.chunkRows);
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
    outs: [[SUMS, "read_write"]],
    out: `${SUMS}[c] = sa;\n      ${SUMS}[C + c] = sb;`,
    end: "",
    label: "wstd_bwd_sums",
  });
  const apply = elementwise(
    R * C,
    bindings([
      ["dwh", "read"],
      ["wh", "read"],
      ["stats", "read"],
      [SUMS, "read"],
      ["dw", "read_write"],
    ]),
    `const C = ${C}u;\nconst RF: f32 = ${lit(R)};`,
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
