/**
 * Column packing for eval graphs of the fused engine: several row-major
 * matrices with the same row count side by side in one, so that one matmul
 * replaces several that share their left operand (the key, value and query
 * projections of a transformer block read the same LayerNorm output). Eval
 * graphs pack once per weight version, in their `prepare` list.
 *
 * @module
 */
import type { KernelPlan } from "../runtime.ts";
import { kernelStep, readOnly, readWrite } from "./bindings.ts";
import { itemMainWgsl } from "./grid.ts";

/** Sizes of {@linkcode packColumns}. */
export interface PackOptions {
  /** Rows of every part and of the packed matrix. */
  readonly rows: number;
  /** Columns of each part, in packed order (at most 7 parts). */
  readonly widths: readonly number[];
}

/**
 * Packs `[rows][widths[s]]` matrices into one `[rows][Σ widths]`: part s
 * goes to columns `Σ_{t<s} widths[t] …`. Bindings: "src0", "src1", … (read,
 * one per part), "out" (written).
 *
 * @param o Rows and the parts' column counts.
 * @returns One dispatch.
 * @throws {RangeError} On non-positive sizes or more than 7 parts.
 */
export function packColumns(
  o: PackOptions,
): KernelPlan<"out" | `src${number}`> {
  const bad = (msg: string): never => {
    throw new RangeError(`Cannot build kernel packColumns: ${msg}`);
  };
  if (!Number.isInteger(o.rows) || o.rows < 1) {
    bad(`rows must be a positive integer, got ${o.rows}`);
  }
  if (o.widths.length < 1 || o.widths.length > 7) {
    bad(`needs 1 to 7 parts, got ${o.widths.length}`);
  }
  for (const w of o.widths) {
    if (!Number.isInteger(w) || w < 1) {
      bad(`widths must be positive integers, got [${o.widths}]`);
    }
  }
  const width = o.widths.reduce((a, b) => a + b, 0);
  const n = o.rows * width;
  const { workgroups, main } = itemMainWgsl(n);
  let start = 0;
  const branches = o.widths.map((w, s) => {
    const line = `${s ? "} else " : ""}if (col < ${start + w}u) {
    out[i] = src${s}[row * ${w}u + col - ${start}u];`;
    start += w;
    return line;
  });
  const step = kernelStep(
    `packColumns r${o.rows} [${o.widths}]`,
    workgroups,
    [
      ...o.widths.map((_, s) => readOnly(`src${s}` as `src${number}`)),
      readWrite("out"),
    ],
    (decls) =>
      `${decls}
${main}
  let row = i / ${width}u;
  let col = i % ${width}u;
  ${branches.join("\n  ")}
  }
}`,
  );
  return { steps: [step] };
}
