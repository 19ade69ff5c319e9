/**
 * Element-wise and small-reduction kernels of the fused WebGPU engine:
 * exact (erf) GELU and its gradient, column sums (bias gradients), row
 * softmax and its gradient, the mean over time and its gradient, `add` and
 * scaled `copy`. Every generator returns a {@linkcode KernelPlan} whose
 * binding names are documented on the function; all sizes are element
 * counts baked into the WGSL.
 *
 * Large element counts (tens of millions) run on a 2-D grid of 256-thread
 * workgroups (`grid2d` of `grid.ts`); when the element count is a multiple of 4
 * the element-wise kernels bind their arrays as `array<vec4<f32>>` (a
 * region of `n` floats is then exactly `n / 4` vectors).
 *
 * @module
 */
import type { KernelPlan } from "../runtime.ts";
import {
  readOnly,
  readWrite,
  type StorageBinding,
  storageBindings,
} from "./bindings.ts";
import {
  checkSize as checkN,
  grid2d,
  itemMainWgsl,
  linearGroupWgsl,
  MAIN_HEADER,
  MAX_GRID_DIM,
  WORKGROUP_SIZE,
} from "./grid.ts";
import { erfWgsl, f32Literal } from "./wgsl.ts";

/**
 * Builds a one-step element-wise plan: one thread per element (or per
 * vec4 when `n % 4 == 0`), `body(T)` computing from `i` (the element /
 * vector index).
 */
function elementwise<N extends string>(
  label: string,
  n: number,
  bindings: readonly StorageBinding<N>[],
  body: (t: string) => string,
  helpers: (t: string) => string = () => "",
  vec = true,
): KernelPlan<N> {
  checkN(`${label} element count`, n);
  const v4 = vec && n % 4 === 0;
  const t = v4 ? "vec4<f32>" : "f32";
  const items = v4 ? n / 4 : n;
  const { workgroups, main } = itemMainWgsl(items, "N");
  const { decls, bind } = storageBindings(
    bindings.map((b) => ({ ...b, type: t } as const)),
  );
  const code = `// ${label}
${decls}
const N: u32 = ${items}u;
${helpers(t)}
${main}
${body(t)}
}
`;
  return { steps: [{ spec: { code, workgroups, label }, bind }] };
}

/**
 * An {@linkcode elementwise} kernel over `o.n` elements that stores into its
 * output or, when `o.accumulate`, adds into it: checks `o.n` and labels the
 * kernel `<name> n<n>[ acc]<suffix>`.
 *
 * @param name Kernel name (and of `n` in the size error).
 * @param o `n`: element count; `accumulate`: add into the output.
 * @param bindings Storage bindings, the output last.
 * @param body WGSL of the loop body for element type `t`; `store(out, v)`
 *   writes the statement `out[i] = v` (`out[i] = out[i] + v` when
 *   accumulating).
 * @param helpers WGSL before the entry point.
 * @param suffix More of the label (options that change the code).
 */
function accumulating<N extends string>(
  name: string,
  o: { n: number; accumulate?: boolean },
  bindings: readonly StorageBinding<N>[],
  body: (t: string, store: (out: string, v: string) => string) => string,
  helpers?: (t: string) => string,
  suffix = "",
): KernelPlan<N> {
  checkN(`${name} n`, o.n);
  const acc = o.accumulate ?? false;
  const store = (out: string, v: string) =>
    `  ${out}[i] = ${acc ? `${out}[i] + ${v}` : v};`;
  return elementwise(
    `${name} n${o.n}${acc ? " acc" : ""}${suffix}`,
    o.n,
    bindings,
    (t) => body(t, store),
    helpers,
  );
}

/**
 * Exact GELU, `y = 0.5·x·(1 + erf(x/√2))` (PyTorch's `nn.GELU()` and
 * `model/layers.ts` `gelu`), with a float32 erf accurate to about 1 ulp
 * (max abs error ≈ 1.2e-7).
 *
 * Bindings: `x` (read, `[n]`), `y` (out, `[n]`).
 *
 * @param o `n`: element count.
 * @returns One dispatch, no scratch.
 */
export function gelu(o: { n: number }): KernelPlan<"x" | "y"> {
  checkN("gelu n", o.n);
  return elementwise(
    `gelu n${o.n}`,
    o.n,
    [readOnly("x"), readWrite("y")],
    (t) =>
      `  let v = x[i];
  y[i] = ${t}(0.5) * v * (${t}(1.0) + erf_(v * ${t}(${Math.SQRT1_2})));`,
    erfWgsl,
  );
}

/**
 * GELU gradient: `dx = dy·(Φ(x) + x·φ(x))` with Φ the standard normal CDF
 * `0.5·(1 + erf(x/√2))` and φ its density.
 *
 * Bindings: `dy` (read, `[n]`), `x` (read, `[n]`, the pre-activation),
 * `dx` (out, `[n]`; `+=` when `accumulate`).
 *
 * @param o `n`: element count; `accumulate`: add into `dx`.
 * @returns One dispatch, no scratch.
 */
export function geluBackward(
  o: { n: number; accumulate?: boolean },
): KernelPlan<"dy" | "x" | "dx"> {
  return accumulating(
    "geluBackward",
    o,
    [readOnly("dy"), readOnly("x"), readWrite("dx")],
    (t, store) =>
      `  let v = x[i];
  let cdf = ${t}(0.5) * (${t}(1.0) + erf_(v * ${t}(${Math.SQRT1_2})));
  let pdf = ${t}(${1 / Math.sqrt(2 * Math.PI)}) * exp(${t}(-0.5) * v * v);
  let g = dy[i] * (cdf + v * pdf);
${store("dx", "g")}`,
    erfWgsl,
  );
}

/** Columns per workgroup tile of the column reductions. */
const TILE_COLS = 32;
/** Row lanes per workgroup of the column reductions (256 / 32). */
const ROW_LANES = WORKGROUP_SIZE / TILE_COLS;

/**
 * One column-reduction dispatch over `x` `[rows][cols]`: workgroup
 * `(tile, chunk)` sums rows `chunk·rpc … min(rows, (chunk+1)·rpc) − 1` of a
 * 32-column tile (8 row lanes × 32 columns, coalesced 128-byte row
 * segments, a workgroup-memory tree over the lanes) and writes
 * `out[chunk·cols + col] = scale·sum (+ out[…])`.
 */
function columnReduce<I extends string, O extends string>(o: {
  label: string;
  input: I;
  output: O;
  rows: number;
  cols: number;
  rpc: number;
  chunks: number;
  scale: number;
  accumulate: boolean;
}): KernelPlan<I | O> {
  const tiles = Math.ceil(o.cols / TILE_COLS);
  if (tiles > MAX_GRID_DIM || o.chunks > MAX_GRID_DIM) {
    throw new RangeError(
      `Cannot build kernel ${o.label}: ${tiles} column tiles × ${o.chunks} row chunks exceed the 65,535-workgroup grid limit`,
    );
  }
  const { decls, bind } = storageBindings([
    readOnly(o.input, "f32", "src"),
    readWrite(o.output, "f32", "dst"),
  ]);
  const tree: string[] = [];
  for (let off = ROW_LANES / 2; off >= 1; off /= 2) {
    tree.push(`  if (ly < ${off}u) { sh[li] += sh[li + ${off * TILE_COLS}u]; }
  workgroupBarrier();`);
  }
  const value = o.scale === 1 ? "sh[lx]" : `${f32Literal(o.scale)} * sh[lx]`;
  const code = `// ${o.label}
${decls}
const ROWS: u32 = ${o.rows}u;
const COLS: u32 = ${o.cols}u;
const RPC: u32 = ${o.rpc}u;
var<workgroup> sh: array<f32, ${WORKGROUP_SIZE}>;
${MAIN_HEADER}
  let lx = li % ${TILE_COLS}u;
  let ly = li / ${TILE_COLS}u;
  let col = wid.x * ${TILE_COLS}u + lx;
  let r0 = wid.y * RPC;
  let r1 = min(r0 + RPC, ROWS);
  var a0 = 0.0;
  var a1 = 0.0;
  var a2 = 0.0;
  var a3 = 0.0;
  if (col < COLS) {
    var r = r0 + ly;
    for (; r + ${3 * ROW_LANES}u < r1; r += ${4 * ROW_LANES}u) {
      a0 += src[r * COLS + col];
      a1 += src[(r + ${ROW_LANES}u) * COLS + col];
      a2 += src[(r + ${2 * ROW_LANES}u) * COLS + col];
      a3 += src[(r + ${3 * ROW_LANES}u) * COLS + col];
    }
    for (; r < r1; r += ${ROW_LANES}u) {
      a0 += src[r * COLS + col];
    }
  }
  sh[li] = (a0 + a1) + (a2 + a3);
  workgroupBarrier();
${tree.join("\n")}
  if (ly == 0u && col < COLS) {
    let at = wid.y * COLS + col;
    dst[at] = ${o.accumulate ? `dst[at] + ` : ""}${value};
  }
}
`;
  return {
    steps: [{
      spec: { code, workgroups: [tiles, o.chunks, 1], label: o.label },
      bind,
    }],
  };
}

/** Scratch name of {@linkcode columnSum}'s per-chunk partial sums. */
export const COLUMN_SUM_SCRATCH = "columnSum.partial";

/**
 * Column sums (bias gradients): `out[j] = scale·Σ_i x[i][j]`.
 *
 * Up to 2,048 rows run as one dispatch; more run in two stages: stage 1
 * splits the rows into `chunks` (≥ 128 rows each, about 2,048 workgroups
 * in all) and writes per-chunk sums to the scratch region
 * `"columnSum.partial"` (`[chunks][cols]` floats); stage 2 sums the chunks.
 *
 * Bindings: `x` (read, `[rows][cols]`), `out` (out, `[cols]`; `+=` when
 * `accumulate`), plus scratch `"columnSum.partial"` when two-stage.
 *
 * @param o `rows`, `cols`: shape of `x`; `accumulate`: add into `out`;
 *   `scale`: factor applied to the sums (default 1).
 * @returns One or two dispatches.
 */
export function columnSum(o: {
  rows: number;
  cols: number;
  accumulate?: boolean;
  scale?: number;
}): KernelPlan<"x" | "out"> {
  checkN("columnSum rows", o.rows);
  checkN("columnSum cols", o.cols);
  const scale = o.scale ?? 1;
  const accumulate = o.accumulate ?? false;
  const tiles = Math.ceil(o.cols / TILE_COLS);
  const name = `columnSum ${o.rows}x${o.cols}${accumulate ? " acc" : ""}${
    scale === 1 ? "" : ` s${scale}`
  }`;
  const chunks = o.rows <= 2048 ? 1 : Math.max(
    1,
    Math.min(Math.ceil(2048 / tiles), Math.ceil(o.rows / 128)),
  );
  if (chunks === 1) {
    return columnReduce({
      label: name,
      input: "x",
      output: "out",
      rows: o.rows,
      cols: o.cols,
      rpc: o.rows,
      chunks: 1,
      scale,
      accumulate,
    });
  }
  const rpc = Math.ceil(o.rows / chunks);
  const used = Math.ceil(o.rows / rpc);
  const s1 = columnReduce({
    label: `${name} stage1`,
    input: "x",
    output: COLUMN_SUM_SCRATCH,
    rows: o.rows,
    cols: o.cols,
    rpc,
    chunks: used,
    scale: 1,
    accumulate: false,
  });
  const s2 = columnReduce({
    label: `${name} stage2`,
    input: COLUMN_SUM_SCRATCH,
    output: "out",
    rows: used,
    cols: o.cols,
    rpc: used,
    chunks: 1,
    scale,
    accumulate,
  });
  return {
    steps: [...s1.steps, ...s2.steps],
    scratch: { [COLUMN_SUM_SCRATCH]: used * o.cols },
  };
}

/**
 * Mean over time: `y[b][d] = (1/t)·Σ_τ x[b·t + τ][d]`.
 *
 * Bindings: `x` (read, `[batch·t][dim]`), `y` (out, `[batch][dim]`).
 *
 * @param o `batch`, `t` (time steps), `dim` (channels).
 * @returns One dispatch (a 32-column × batch grid), no scratch.
 */
export function meanRows(
  o: { batch: number; t: number; dim: number },
): KernelPlan<"x" | "y"> {
  checkN("meanRows batch", o.batch);
  checkN("meanRows t", o.t);
  checkN("meanRows dim", o.dim);
  return columnReduce({
    label: `meanRows b${o.batch} t${o.t} d${o.dim}`,
    input: "x",
    output: "y",
    rows: o.batch * o.t,
    cols: o.dim,
    rpc: o.t,
    chunks: o.batch,
    scale: 1 / o.t,
    accumulate: false,
  });
}

/**
 * Gradient of {@linkcode meanRows}: `dx[b·t + τ][d] = dy[b][d] / t`.
 *
 * Bindings: `dy` (read, `[batch][dim]`), `dx` (out, `[batch·t][dim]`;
 * `+=` when `accumulate`).
 *
 * @param o `batch`, `t`, `dim`; `accumulate`: add into `dx`.
 * @returns One dispatch, no scratch.
 */
export function meanRowsBackward(o: {
  batch: number;
  t: number;
  dim: number;
  accumulate?: boolean;
}): KernelPlan<"dy" | "dx"> {
  checkN("meanRowsBackward batch", o.batch);
  checkN("meanRowsBackward t", o.t);
  checkN("meanRowsBackward dim", o.dim);
  const acc = o.accumulate ?? false;
  const v4 = o.dim % 4 === 0;
  const d = v4 ? o.dim / 4 : o.dim;
  return elementwise(
    `meanRowsBackward b${o.batch} t${o.t} d${o.dim}${acc ? " acc" : ""}`,
    o.batch * o.t * o.dim,
    [readOnly("dy"), readWrite("dx")],
    (t) =>
      `  let g = ${t}(${f32Literal(1 / o.t)}) * dy[(i / ${
        d * o.t
      }u) * ${d}u + i % ${d}u];
  dx[i] = ${acc ? "dx[i] + g" : "g"};`,
    undefined,
    v4,
  );
}

/**
 * `y = a + b` (or `y += a + b` when `accumulate`), element-wise.
 *
 * Bindings: `a` (read, `[n]`), `b` (read, `[n]`), `y` (out, `[n]`).
 *
 * @param o `n`: element count; `accumulate`: add into `y`.
 * @returns One dispatch, no scratch.
 */
export function add(
  o: { n: number; accumulate?: boolean },
): KernelPlan<"a" | "b" | "y"> {
  return accumulating(
    "add",
    o,
    [readOnly("a"), readOnly("b"), readWrite("y")],
    (_, store) => store("y", "(a[i] + b[i])"),
  );
}

/**
 * `y = scale·x` (or `y += scale·x` when `accumulate`), element-wise.
 *
 * Bindings: `x` (read, `[n]`), `y` (out, `[n]`).
 *
 * @param o `n`: element count; `accumulate`: add into `y`; `scale`
 *   (default 1).
 * @returns One dispatch, no scratch.
 */
export function copy(
  o: { n: number; accumulate?: boolean; scale?: number },
): KernelPlan<"x" | "y"> {
  const scale = o.scale ?? 1;
  return accumulating(
    "copy",
    o,
    [readOnly("x"), readWrite("y")],
    (t, store) =>
      store("y", scale === 1 ? "x[i]" : `${t}(${f32Literal(scale)}) * x[i]`),
    undefined,
    scale === 1 ? "" : ` s${scale}`,
  );
}

/**
 * Row layout of the softmax kernels: `lanes` threads (a power of two ≤ 256)
 * share a row, each holding `per` elements in registers (column
 * `e·lanes + lane`); a workgroup holds `256 / lanes` rows.
 *
 * @param cols Row length.
 * @returns Lanes per row and elements per lane.
 */
export function softmaxLayout(cols: number): { lanes: number; per: number } {
  checkN("softmax cols", cols);
  let lanes = 1;
  while (lanes < WORKGROUP_SIZE && lanes * 4 < cols) lanes *= 2;
  const per = Math.ceil(cols / lanes);
  if (per > 64) {
    throw new RangeError(
      `Cannot build a softmax kernel over ${cols} columns: at most 16,384 fit a workgroup's registers`,
    );
  }
  return { lanes, per };
}

/** Shared WGSL of the softmax kernels: row/lane indices and a tree reduce. */
function softmaxFrame(rows: number, cols: number) {
  const { lanes, per } = softmaxLayout(cols);
  const rpw = WORKGROUP_SIZE / lanes;
  const groups = Math.ceil(rows / rpw);
  const workgroups = grid2d(groups);
  const head = `const ROWS: u32 = ${rows}u;
const COLS: u32 = ${cols}u;
var<workgroup> sh: array<f32, ${WORKGROUP_SIZE}>;
${MAIN_HEADER}
  let lane = li % ${lanes}u;
  let row = ${linearGroupWgsl(workgroups)} * ${rpw}u + li / ${lanes}u;
  let ok = row < ROWS;
  let base = min(row, ROWS - 1u) * COLS;`;
  /** Reduces `expr` over the lanes of a row with `op`; result in `name`. */
  const reduce = (name: string, expr: string, op: "max" | "+"): string => {
    const steps: string[] = [];
    for (let off = lanes / 2; off >= 1; off /= 2) {
      const rhs = op === "max"
        ? `max(sh[li], sh[li + ${off}u])`
        : `sh[li] + sh[li + ${off}u]`;
      steps.push(`  if (lane < ${off}u) { sh[li] = ${rhs}; }
  workgroupBarrier();`);
    }
    return `  sh[li] = ${expr};
  workgroupBarrier();
${steps.join("\n")}
  let ${name} = sh[li - lane];
  workgroupBarrier();`;
  };
  /** Per-element column index and whether it is in range (text). */
  const cells = Array.from({ length: per }, (_, e) => ({
    e,
    col: `(${e * lanes}u + lane)`,
    always: (e + 1) * lanes <= cols,
  }));
  return { lanes, per, workgroups, head, reduce, cells };
}

/**
 * Row softmax, `p[r][j] = exp(s[r][j] − m_r) / Σ_k exp(s[r][k] − m_r)` with
 * `m_r` the row max (as `tf.softmax` in `multiHeadAttention`).
 *
 * Bindings: `s` (read, `[rows][cols]`), `p` (out, `[rows][cols]`).
 *
 * @param o `rows`, `cols` (cols ≤ 16,384; a row is spread over up to 256
 *   threads, each holding ≤ 64 values in registers).
 * @returns One dispatch, no scratch.
 */
export function softmaxRows(
  o: { rows: number; cols: number },
): KernelPlan<"s" | "p"> {
  checkN("softmaxRows rows", o.rows);
  const f = softmaxFrame(o.rows, o.cols);
  const lines: string[] = [];
  const ninf = "bitcast<f32>(0xff800000u)";
  for (const c of f.cells) {
    lines.push(
      c.always
        ? `  let v${c.e} = s[base + ${c.col}];`
        : `  var v${c.e} = ${ninf};
  if (${c.col} < COLS) { v${c.e} = s[base + ${c.col}]; }`,
    );
  }
  const mx = f.cells.map((c) => `v${c.e}`).reduce((a, b) => `max(${a}, ${b})`);
  lines.push(f.reduce("m", mx, "max"));
  for (const c of f.cells) {
    lines.push(
      c.always
        ? `  let e${c.e} = exp(v${c.e} - m);`
        : `  let e${c.e} = select(0.0, exp(v${c.e} - m), ${c.col} < COLS);`,
    );
  }
  lines.push(f.reduce("z", f.cells.map((c) => `e${c.e}`).join(" + "), "+"));
  lines.push("  let inv = 1.0 / z;\n  if (!ok) { return; }");
  for (const c of f.cells) {
    const st = `p[base + ${c.col}] = e${c.e} * inv;`;
    lines.push(c.always ? `  ${st}` : `  if (${c.col} < COLS) { ${st} }`);
  }
  const label = `softmaxRows ${o.rows}x${o.cols}`;
  const { decls, bind } = storageBindings([readOnly("s"), readWrite("p")]);
  const code = `// ${label}
${decls}
${f.head}
${lines.join("\n")}
}
`;
  return {
    steps: [{
      spec: { code, workgroups: f.workgroups, label },
      bind,
    }],
  };
}

/**
 * Softmax gradient: `ds[r][j] = scale·p[r][j]·(dp[r][j] − Σ_k dp[r][k]·p[r][k])`
 * (`scale` folds in, for example, attention's 1/√dh).
 *
 * Bindings: `dp` (read, `[rows][cols]`), `p` (read, `[rows][cols]`, the
 * softmax output), `ds` (out, `[rows][cols]`).
 *
 * @param o `rows`, `cols` (as {@linkcode softmaxRows}); `scale` (default 1).
 * @returns One dispatch, no scratch.
 */
export function softmaxBackward(
  o: { rows: number; cols: number; scale?: number },
): KernelPlan<"dp" | "p" | "ds"> {
  checkN("softmaxBackward rows", o.rows);
  const scale = o.scale ?? 1;
  const f = softmaxFrame(o.rows, o.cols);
  const lines: string[] = [];
  for (const c of f.cells) {
    lines.push(
      c.always
        ? `  let g${c.e} = dp[base + ${c.col}];
  let q${c.e} = p[base + ${c.col}];`
        : `  var g${c.e} = 0.0;
  var q${c.e} = 0.0;
  if (${c.col} < COLS) {
    g${c.e} = dp[base + ${c.col}];
    q${c.e} = p[base + ${c.col}];
  }`,
    );
  }
  lines.push(
    f.reduce("dot", f.cells.map((c) => `g${c.e} * q${c.e}`).join(" + "), "+"),
  );
  lines.push("  if (!ok) { return; }");
  const sc = scale === 1 ? "" : `${f32Literal(scale)} * `;
  for (const c of f.cells) {
    const st = `ds[base + ${c.col}] = ${sc}q${c.e} * (g${c.e} - dot);`;
    lines.push(c.always ? `  ${st}` : `  if (${c.col} < COLS) { ${st} }`);
  }
  const label = `softmaxBackward ${o.rows}x${o.cols}${
    scale === 1 ? "" : ` s${scale}`
  }`;
  const { decls, bind } = storageBindings([
    readOnly("dp"),
    readOnly("p"),
    readWrite("ds"),
  ]);
  const code = `// ${label}
${decls}
${f.head}
${lines.join("\n")}
}
`;
  return {
    steps: [{
      spec: { code, workgroups: f.workgroups, label },
      bind,
    }],
  };
}
