/**
 * Checks the keys a map stage provides against the layouts it declares
 * (`MapStage.layouts`): tensors by shape and dtype, arrays of per-example
 * values by length (`b`) and element type. The scheduler runs it once per
 * stage and phase, on the first batch, so it costs nothing afterwards.
 *
 * @module
 */
import type { Batch, KeyLayout, Tf } from "./types.ts";

/** One key that does not match its declared layout. */
export interface LayoutProblem {
  readonly key: string;
  /** The declared layout, as text (`[b, t, 80] float32`). */
  readonly expected: string;
  /** What the batch holds, as text (`[4, 50, 7] float32`). */
  readonly actual: string;
}

function showShape(shape: readonly (number | string)[]): string {
  return `[${shape.join(", ")}]`;
}

function showLayout(l: KeyLayout): string {
  return `${showShape(l.shape)}${l.dtype ? ` ${l.dtype}` : ""}`;
}

function elementType(v: unknown): string {
  if (v instanceof Float32Array) return "float32";
  if (v instanceof Float64Array) return "float64";
  if (v instanceof Int32Array || Number.isInteger(v)) return "int32";
  if (typeof v === "number") return "float32";
  if (typeof v === "boolean") return "bool";
  if (typeof v === "string") return "string";
  return typeof v;
}

/**
 * Compares a batch's keys with declared layouts.
 *
 * @param batch The batch after the stage.
 * @param layouts The stage's declared layouts by key.
 * @param tf The TensorFlow.js namespace (to recognise tensors).
 * @returns Every mismatch (empty when all match).
 */
export function checkLayouts(
  batch: Batch,
  layouts: Readonly<Record<string, KeyLayout>>,
  tf: Tf,
): LayoutProblem[] {
  const problems: LayoutProblem[] = [];
  const named = new Map<string, number>([["b", batch.size]]);
  for (const [key, layout] of Object.entries(layouts)) {
    const value = batch[key];
    const expected = showLayout(layout);
    let shape: number[];
    let dtype: string | undefined;
    if (value instanceof tf.Tensor) {
      shape = value.shape;
      dtype = value.dtype;
    } else if (Array.isArray(value)) {
      // Per-example values: axis 0 is the array, the rest the first element's.
      const first = value[0];
      shape = [value.length];
      if (first instanceof tf.Tensor) shape.push(...first.shape);
      else if (ArrayBuffer.isView(first) || Array.isArray(first)) {
        shape.push((first as ArrayLike<unknown>).length);
      }
      dtype = first instanceof tf.Tensor
        ? first.dtype
        : ArrayBuffer.isView(first)
        ? elementType(first)
        : elementType(Array.isArray(first) ? first[0] : first);
    } else {
      problems.push({
        key,
        expected,
        actual: value === undefined ? "nothing" : `a ${typeof value}`,
      });
      continue;
    }
    const actual = `${showShape(shape)}${dtype ? ` ${dtype}` : ""}`;
    let ok = shape.length === layout.shape.length &&
      (!layout.dtype || layout.dtype === dtype);
    if (ok) {
      layout.shape.forEach((axis, i) => {
        if (typeof axis === "number") {
          if (shape[i] !== axis) ok = false;
        } else if (named.has(axis)) {
          if (named.get(axis) !== shape[i]) ok = false;
        } else named.set(axis, shape[i]);
      });
    }
    if (!ok) problems.push({ key, expected, actual });
  }
  return problems;
}

/**
 * The error text for layout problems of a stage.
 *
 * @param stage The map stage's name.
 * @param phase The phase of the batch.
 * @param problems From {@linkcode checkLayouts}.
 * @param batchSize The batch's `size` (what `b` stands for).
 */
export function formatLayoutProblems(
  stage: string,
  phase: string,
  problems: readonly LayoutProblem[],
  batchSize: number,
): string {
  return `Cannot use the output of map stage "${stage}" (phase ${phase}): ${
    problems.map((p) =>
      `key "${p.key}" should be ${p.expected} and is ${p.actual}`
    ).join("; ")
  } (b = ${batchSize}, the batch size); fix the stage's apply or its declared layouts`;
}
