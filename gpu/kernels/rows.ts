/**
 * Row selection for the fused engine: gather the rows of chosen sequence
 * positions out of a `[batch·sequence][dim]` activation into a compact
 * `[batch·P][dim]` one, and scatter such rows back (zeros elsewhere, or added
 * in place). The fce head reads only the special tokens, so the last
 * transformer block computes its queries, output projection and MLP for
 * those rows alone (`gpu/graph/transformer.ts`).
 *
 * @module
 */
import type { KernelPlan } from "../runtime.ts";
import { readOnly, readWrite, storageBindings } from "./bindings.ts";
import { checkSize, itemMainWgsl } from "./grid.ts";

/** Sizes of a row selection. */
export interface RowsOptions {
  /** Clips. */
  readonly batch: number;
  /** Rows per clip in the full layout. */
  readonly sequence: number;
  /** Values per row. */
  readonly dim: number;
  /** Selected positions within a clip, in compact order. */
  readonly positions: readonly number[];
}

function check(o: RowsOptions): void {
  for (
    const [k, v] of [["batch", o.batch], ["sequence", o.sequence], [
      "dim",
      o.dim,
    ]] as const
  ) {
    checkSize(`row selection ${k}`, v);
  }
  if (o.positions.length === 0) {
    throw new RangeError(
      "Cannot build a row selection kernel: no positions selected; pass at least one",
    );
  }
  const seen = new Set<number>();
  for (const p of o.positions) {
    if (!Number.isInteger(p) || p < 0 || p >= o.sequence || seen.has(p)) {
      throw new RangeError(
        `Cannot build a row selection kernel: positions must be distinct integers in 0…${
          o.sequence - 1
        }, got [${o.positions}]`,
      );
    }
    seen.add(p);
  }
}

/** The bindings of both kernels: `x` read, `y` written. */
const XY = storageBindings([readOnly("x"), readWrite("y")]);

/** A one-step plan of `n` threads running `body` (WGSL using `i`, `x`, `y`, `SEL`, `POS`). */
function rowsPlan(
  label: string,
  o: RowsOptions,
  n: number,
  body: string,
): KernelPlan<"x" | "y"> {
  const { workgroups, main } = itemMainWgsl(n);
  const code = `${selectionWgsl(o)}
${XY.decls}
${main}
${body}
}`;
  return { steps: [{ spec: { code, workgroups, label }, bind: XY.bind }] };
}

/** WGSL: `SEL` (position → compact index or -1) as a const array. */
function selectionWgsl(o: RowsOptions): string {
  const slot = Array.from(
    { length: o.sequence },
    (_, s) => o.positions.indexOf(s),
  );
  return `const SEL = array<i32, ${o.sequence}>(${
    slot.map((v) => `${v}`).join(", ")
  });
const POS = array<u32, ${o.positions.length}>(${
    o.positions.map((p) => `${p}u`).join(", ")
  });`;
}

/**
 * Gathers the selected rows: `y[b·P + i] = x[b·sequence + positions[i]]`.
 * Bindings: "x" (read, `[batch·sequence][dim]`), "y" (out, `[batch·P][dim]`).
 *
 * @param o Sizes and positions.
 */
export function gatherRows(o: RowsOptions): KernelPlan<"x" | "y"> {
  check(o);
  const P = o.positions.length;
  return rowsPlan(
    `gatherRows b${o.batch} s${o.sequence}→${P} d${o.dim}`,
    o,
    o.batch * P * o.dim,
    `  let row = i / ${o.dim}u;
  let col = i % ${o.dim}u;
  let b = row / ${P}u;
  let p = POS[row % ${P}u];
  y[i] = x[(b * ${o.sequence}u + p) * ${o.dim}u + col];`,
  );
}

/**
 * Scatters compact rows back into the full layout. Without `accumulate`
 * every row of `y` is written (the selected rows from `x`, the others 0);
 * with it, `x` is added to the selected rows and the others stay as they
 * are. Bindings: "x" (read, `[batch·P][dim]`), "y" (`[batch·sequence][dim]`).
 *
 * @param o Sizes, positions and `accumulate`.
 */
export function scatterRows(
  o: RowsOptions & { accumulate?: boolean },
): KernelPlan<"x" | "y"> {
  check(o);
  const P = o.positions.length;
  const acc = o.accumulate ?? false;
  const rows = acc ? o.batch * P : o.batch * o.sequence;
  const body = acc
    ? `  let row = i / ${o.dim}u;
  let col = i % ${o.dim}u;
  let b = row / ${P}u;
  let p = POS[row % ${P}u];
  let at = (b * ${o.sequence}u + p) * ${o.dim}u + col;
  y[at] = y[at] + x[i];`
    : `  let row = i / ${o.dim}u;
  let col = i % ${o.dim}u;
  let b = row / ${o.sequence}u;
  let slot = SEL[row % ${o.sequence}u];
  if (slot < 0) { y[i] = 0.0; return; }
  y[i] = x[(b * ${P}u + u32(slot)) * ${o.dim}u + col];`;
  return rowsPlan(
    `scatterRows b${o.batch} ${P}→s${o.sequence} d${o.dim}${acc ? " acc" : ""}`,
    o,
    rows * o.dim,
    body,
  );
}
