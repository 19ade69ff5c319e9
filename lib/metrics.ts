/**
 * Classification metrics from labels and predictions: the confusion matrix,
 * per-class precision, recall, F1 and support, accuracy and macro-F1, plus
 * the argmax of row-major logits.
 *
 * Zero division gives 0: a class never predicted has precision 0, a class
 * absent from the labels has recall 0, and F1 is 0 when precision + recall
 * is 0 (scikit-learn's `zero_division=0`). Macro averages weigh every class
 * equally, including classes with no support.
 *
 * @module
 */

/** Metrics of one class. */
export interface ClassMetrics {
  /** Class name. */
  readonly name: string;
  /** True positives / predicted positives (0 when never predicted). */
  readonly precision: number;
  /** True positives / actual positives (0 when the class has no examples). */
  readonly recall: number;
  /** Harmonic mean of precision and recall (0 when both are 0). */
  readonly f1: number;
  /** Examples whose label is this class. */
  readonly support: number;
}

/** What {@linkcode classificationReport} returns. */
export interface ClassificationReport {
  /** Per-class metrics, in class order. */
  readonly perClass: readonly ClassMetrics[];
  /** Correct predictions / examples (NaN when there are none). */
  readonly accuracy: number;
  /** Unweighted mean of the per-class F1. */
  readonly macroF1: number;
  /** Unweighted mean of the per-class precision. */
  readonly macroPrecision: number;
  /** Unweighted mean of the per-class recall. */
  readonly macroRecall: number;
  /** Number of examples. */
  readonly total: number;
  /** The confusion matrix: `matrix[label][prediction]`. */
  readonly confusion: number[][];
}

function checkInputs(
  labels: readonly number[],
  predictions: readonly number[],
  n: number,
): void {
  if (labels.length !== predictions.length) {
    throw new RangeError(
      `Cannot compare ${labels.length} labels with ${predictions.length} predictions: the counts differ`,
    );
  }
  for (
    const [what, values] of [["label", labels], [
      "prediction",
      predictions,
    ]] as const
  ) {
    for (const v of values) {
      if (!Number.isInteger(v) || v < 0 || v >= n) {
        throw new RangeError(
          `Cannot use ${what} ${v}: it must be an integer class index in [0, ${n})`,
        );
      }
    }
  }
}

/**
 * The confusion matrix: `matrix[label][prediction]` counts examples.
 *
 * @param labels True class index per example.
 * @param predictions Predicted class index per example.
 * @param classes Class names (only their count matters).
 * @returns A `classes.length` × `classes.length` matrix of counts.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { confusionMatrix } from "./metrics.ts";
 * assert.deepEqual(confusionMatrix([0, 0, 1], [0, 1, 1], ["a", "b"]), [
 *   [1, 1],
 *   [0, 1],
 * ]);
 * ```
 */
export function confusionMatrix(
  labels: readonly number[],
  predictions: readonly number[],
  classes: readonly string[],
): number[][] {
  const n = classes.length;
  checkInputs(labels, predictions, n);
  const m = Array.from({ length: n }, () => new Array<number>(n).fill(0));
  for (let i = 0; i < labels.length; i++) m[labels[i]][predictions[i]]++;
  return m;
}

/**
 * Per-class precision, recall, F1 and support, accuracy and macro averages.
 * Zero divisions give 0 (see the module doc).
 *
 * @param labels True class index per example.
 * @param predictions Predicted class index per example.
 * @param classes Class names; label `i` is `classes[i]`.
 * @returns The report, with the confusion matrix.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { classificationReport } from "./metrics.ts";
 * const r = classificationReport([0, 0, 1, 1], [0, 1, 1, 1], ["a", "b"]);
 * assert.equal(r.accuracy, 0.75);
 * assert.equal(r.perClass[1].precision, 2 / 3);
 * ```
 */
export function classificationReport(
  labels: readonly number[],
  predictions: readonly number[],
  classes: readonly string[],
): ClassificationReport {
  const confusion = confusionMatrix(labels, predictions, classes);
  const n = classes.length;
  const div = (a: number, b: number) => (b === 0 ? 0 : a / b);
  let correct = 0;
  const perClass = classes.map((name, c) => {
    const tp = confusion[c][c];
    correct += tp;
    const support = confusion[c].reduce((s, v) => s + v, 0);
    let predicted = 0;
    for (let r = 0; r < n; r++) predicted += confusion[r][c];
    const precision = div(tp, predicted);
    const recall = div(tp, support);
    const f1 = div(2 * precision * recall, precision + recall);
    return { name, precision, recall, f1, support };
  });
  const mean = (key: "precision" | "recall" | "f1") =>
    n === 0 ? 0 : perClass.reduce((s, c) => s + c[key], 0) / n;
  return {
    perClass,
    accuracy: labels.length ? correct / labels.length : NaN,
    macroF1: mean("f1"),
    macroPrecision: mean("precision"),
    macroRecall: mean("recall"),
    total: labels.length,
    confusion,
  };
}

/**
 * Index of the largest value of each row of row-major `[rows, columns]`
 * values (the first on ties).
 *
 * @param values Row-major values, e.g. logits.
 * @param columns Values per row (the class count).
 * @returns One index per row.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { argmaxRows } from "./metrics.ts";
 * assert.deepEqual(argmaxRows(new Float32Array([0, 2, 1, 5, 5, 0]), 3), [1, 0]);
 * ```
 */
export function argmaxRows(
  values: ArrayLike<number>,
  columns: number,
): number[] {
  if (!(columns >= 1) || values.length % columns !== 0) {
    throw new RangeError(
      `Cannot split ${values.length} values into rows of ${columns}`,
    );
  }
  const out: number[] = [];
  for (let r = 0; r < values.length; r += columns) {
    let best = 0;
    for (let c = 1; c < columns; c++) {
      if (values[r + c] > values[r + best]) best = c;
    }
    out.push(best);
  }
  return out;
}
