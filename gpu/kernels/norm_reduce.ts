/**
 * Column reductions shared by the normalisation kernels (`batch_norm.ts`,
 * `layer_norm.ts`, `weight_std.ts`).
 *
 * Column statistics (BatchNorm over rows, weight standardisation over the
 * kernel's rows) use a two-stage reduction: one workgroup per (row chunk,
 * 32-column tile, group) with threads along the columns (coalesced), each
 * thread running Welford's update over its rows and the workgroup merging
 * the (count, mean, M2) triples Chan-style, then one small kernel merging the
 * chunks into mean and biased variance — numerically safe, one read of the
 * input. Backward column sums (Σ dz, Σ dz·x̂) use the same chunking with plain
 * sums.
 *
 * Scratch regions (private to a plan): `normPartials` (per-chunk partial
 * results) and `normSums` (per-group column sums of a backward pass).
 *
 * @module
 */
import type { KernelSpec, KernelStep } from "../runtime.ts";
import {
  readOnly,
  readWrite,
  type StorageBinding,
  storageBindings,
} from "./bindings.ts";
import { checkSize, grid2d, MAX_GRID_DIM } from "./grid.ts";

/** Threads per workgroup of every kernel here. */
export const WG = 256;
/** Scratch name: per-chunk partial results of a two-stage column reduction. */
export const PARTIALS = "normPartials";
/** Scratch name: per-group column sums (Σ dz·x̂ then Σ dz) of a backward pass. */
export const SUMS = "normSums";
/** Column tile × chunk lanes of the second (chunk-merging) stage. */
export const FINAL_TC = 8;
export const FINAL_TR = WG / FINAL_TC;
/** Stage-one workgroups aimed for (enough to fill an H100 several times over). */
export const TARGET_WORKGROUPS = 1024;

/** Smallest power of two ≥ n. */
export const pow2ceil = (n: number): number => 2 ** Math.ceil(Math.log2(n));

/** Stage-one tile: `tc` columns × `tr` row lanes (256 threads). */
export function colTile(
  cols: number,
): { tc: number; tr: number; tiles: number } {
  const tc = cols >= 32 ? 32 : 16;
  return { tc, tr: WG / tc, tiles: Math.ceil(cols / tc) };
}

/**
 * Rows per chunk of a column reduction: enough chunks for about
 * {@linkcode TARGET_WORKGROUPS} workgroups, at least 4 rows per lane.
 */
export function chunking(
  groups: number,
  rows: number,
  tiles: number,
  tr: number,
  chunkRows?: number,
): { chunkRows: number; nChunks: number } {
  let cr: number;
  if (chunkRows !== undefined) {
    checkSize("chunkRows", chunkRows);
    cr = Math.min(chunkRows, rows);
  } else {
    const want = Math.ceil(TARGET_WORKGROUPS / (groups * tiles));
    const most = Math.ceil(rows / (tr * 4));
    cr = Math.ceil(rows / Math.max(1, Math.min(want, most)));
  }
  const nChunks = Math.ceil(rows / cr);
  if (nChunks > MAX_GRID_DIM) {
    throw new RangeError(
      `Cannot build a normalisation kernel: ${nChunks} row chunks exceed the 65,535-workgroup grid limit; pass a larger chunkRows`,
    );
  }
  return { chunkRows: cr, nChunks };
}

/** Unrolled tree reduction over `lanes` lanes `stride` threads apart. */
export function tree(
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

/** `main` header of the 256-thread normalisation kernels (`t`, `wid`). */
export const HEAD =
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

/** Sizes and label of one dispatch of a chunked column reduction. */
export interface ChunkedReduction {
  /** Groups (statistics per group). */
  readonly groups: number;
  /** Rows per group. */
  readonly rows: number;
  /** Columns. */
  readonly cols: number;
  /** Rows per chunk. */
  readonly chunkRows: number;
  /** Chunks per group. */
  readonly nChunks: number;
  /** Profile label. */
  readonly label: string;
}

/**
 * WGSL constants of a chunked column reduction: `R` rows, `C` columns, `CR`
 * rows per chunk, `NK` chunks, `TC` × `TR` the workgroup's column × row
 * lanes.
 */
function chunkConstsWgsl(
  o: { rows: number; cols: number; chunkRows: number; nChunks: number },
  tc: number,
  tr: number,
): string {
  return `const R = ${o.rows}u;
const C = ${o.cols}u;
const CR = ${o.chunkRows}u;
const NK = ${o.nChunks}u;
const TC = ${tc}u;
const TR = ${tr}u;`;
}

/**
 * Stage one of a chunked column reduction: workgroup (chunk `k`, column
 * tile, group `g`) reduces rows `k·CR … min(R, (k+1)·CR) − 1` of its
 * columns; `body` (WGSL inside `main`, knowing `lc`, `lr`, `c`, `k`, `g`,
 * `r1`) leaves the two per-column results named by `results` in thread
 * `lr == 0`'s variables, which go to `normPartials[g][k][2][cols]`.
 */
function chunkStage(
  o: ChunkedReduction & {
    inputs: readonly StorageBinding[];
    prelude: string;
    body: (tc: number, tr: number) => string;
    results: readonly [string, string];
  },
): KernelStep {
  const { tc, tr, tiles } = colTile(o.cols);
  const b = storageBindings([...o.inputs, readWrite(PARTIALS)]);
  const code = `// ${o.label}
${b.decls}
${chunkConstsWgsl(o, tc, tr)}
${o.prelude}

${HEAD}
  let lc = t % TC;
  let lr = t / TC;
  let c = wid.y * TC + lc;
  let k = wid.x;
  let g = wid.z;
  let r1 = min(k * CR + CR, R);
${o.body(tc, tr)}
  if (lr == 0u && c < C) {
    let o = ((g * NK + k) * 2u) * C + c;
    ${PARTIALS}[o] = ${o.results[0]};
    ${PARTIALS}[o + C] = ${o.results[1]};
  }
}
`;
  return {
    spec: { code, workgroups: [o.nChunks, tiles, o.groups], label: o.label },
    bind: b.bind,
  };
}

/**
 * Stage one of column statistics: per (chunk, column tile, group) the
 * chunk's mean and M2 per column → `normPartials[g][k][2][cols]`.
 */
export function welfordPartial(
  o: ChunkedReduction & { src: string },
): KernelStep {
  return chunkStage({
    ...o,
    inputs: [readOnly(o.src)],
    prelude: WELFORD_SHARED,
    body: (tc, tr) =>
      `  var n = 0.0;
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
${tree(tr, "lr", tc, (u) => `merge(t, ${u});`)}`,
    results: ["sm[t]", "sq[t]"],
  });
}

/**
 * Stage two of column statistics: merges the chunks of each group and runs
 * `out` (WGSL using `g`, `c`, `mean`, `vr` = biased variance) once per
 * (group, column).
 */
export function welfordFinal(
  o: ChunkedReduction & {
    outs: readonly string[];
    out: string;
    consts?: string;
  },
): KernelStep {
  const b = storageBindings([
    readOnly(PARTIALS),
    ...o.outs.map((n) => readWrite(n)),
  ]);
  const code = `// ${o.label}
${b.decls}
${chunkConstsWgsl(o, FINAL_TC, FINAL_TR)}
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
export function sumsPartial(
  o: ChunkedReduction & {
    inputs: readonly string[];
    consts?: string;
    pre: string;
    body: string;
  },
): KernelStep {
  return chunkStage({
    ...o,
    inputs: o.inputs.map((n) => readOnly(n)),
    prelude: `${o.consts ?? ""}
var<workgroup> wa: array<f32, ${WG}>;
var<workgroup> wb: array<f32, ${WG}>;`,
    body: (tc, tr) =>
      `  var a = 0.0;
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
${tree(tr, "lr", tc, (u) => `wa[t] += wa[${u}]; wb[t] += wb[${u}];`)}`,
    results: ["wa[t]", "wb[t]"],
  });
}

/**
 * Stage two of backward column sums: for each group in turn, sums its chunks
 * (4 independent loads in flight per thread) and runs `out` (WGSL using `g`,
 * `c`, `sa` = Σ dz·x̂, `sb` = Σ dz) once per column; then `end` (WGSL using
 * `c`, `ta`, `tb` = the sums over all groups) once per column. One
 * workgroup per 8 columns covers every group, so `end` may accumulate.
 */
export function sumsFinal(o: {
  groups: number;
  cols: number;
  nChunks: number;
  outs: readonly StorageBinding[];
  out: string;
  end: string;
  label: string;
}): KernelStep {
  const b = storageBindings([readOnly(PARTIALS), ...o.outs]);
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
export function elementwise(
  n: number,
  b: { decls: string; bind: string[] },
  consts: string,
  body: string,
  label: string,
): KernelStep {
  const workgroups = grid2d(Math.ceil(n / WG));
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
