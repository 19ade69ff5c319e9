/**
 * Per-file predictions of one model state on one split, and the
 * `predictions/<split>.<state>.csv` files the report writes from them: one
 * row per clip in split order — `path,label,predicted,correct`, then the
 * top-k labels with their probabilities (`top1,p1,top2,p2,…`).
 *
 * A model state is one set of scores the run produced: the trained model's
 * best and last checkpoints, each TTAu mode (Orig, Aug = views merged, Mlt,
 * Hyb), and the TTDA-adapted weights ({@linkcode STATE_IDS}).
 *
 * @module
 */

/** Ids of the model states, in the order reports list them. */
export const STATE_IDS = [
  "trained-best",
  "trained-last",
  "ttau-orig",
  "ttau-aug",
  "ttau-mlt",
  "ttau-hyb",
  "ttda-final",
] as const;
/** A model state id. */
export type StateId = (typeof STATE_IDS)[number];

/** The scores of one model state on one split. */
export interface StateScores {
  readonly id: StateId;
  /** For people: `trained, best (epoch 7)`, `TTAu Aug (3 views merged)`, `TTDA final (epoch 50)`. */
  readonly label: string;
  readonly split: string;
  /** The clips, in split order (as the source names them). */
  readonly paths: readonly string[];
  /** True class index per clip. */
  readonly labels: readonly number[];
  /** Probabilities, row-major `[n, classes]`. */
  readonly probabilities: Float32Array;
  /** Mean cross-entropy (nats), when the state has logits. */
  readonly loss?: number;
  /** 1-based epoch of the weights, for trained and TTDA states. */
  readonly epoch?: number;
  /** A caveat worth printing beside the numbers. */
  readonly note?: string;
}

/** The `k` most probable classes of one row, most probable first (ties: lower index). */
export function topK(
  row: ArrayLike<number>,
  k: number,
): { index: number; probability: number }[] {
  const order = Array.from({ length: row.length }, (_, i) => i).sort((a, b) =>
    row[b] - row[a] || a - b
  );
  return order.slice(0, k).map((index) => ({
    index,
    probability: row[index],
  }));
}

/** Quotes a CSV field when it holds a comma, quote or line break (RFC 4180). */
export function csvField(text: string): string {
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/**
 * The CSV text of a state's predictions.
 *
 * @param state The scores.
 * @param classes Class names by index.
 * @param top How many top labels to list per clip (at most the class count).
 * @returns The CSV text, header first, `\n` line ends.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { predictionsCsv } from "./predictions.ts";
 * const csv = predictionsCsv({
 *   id: "trained-best", label: "trained", split: "test",
 *   paths: ["a.wav"], labels: [1],
 *   probabilities: new Float32Array([0.25, 0.75]),
 * }, ["no", "yes"], 2);
 * assert.equal(csv, "path,label,predicted,correct,top1,p1,top2,p2\na.wav,yes,yes,1,yes,0.750000,no,0.250000\n");
 * ```
 */
export function predictionsCsv(
  state: StateScores,
  classes: readonly string[],
  top: number,
): string {
  const n = classes.length;
  const k = Math.min(top, n);
  const head = ["path", "label", "predicted", "correct"];
  for (let i = 1; i <= k; i++) head.push(`top${i}`, `p${i}`);
  const lines = [head.join(",")];
  state.labels.forEach((label, r) => {
    const row = state.probabilities.subarray(r * n, (r + 1) * n);
    const best = topK(row, k);
    const cells = [
      state.paths[r] ?? "",
      classes[label],
      classes[best[0].index],
      best[0].index === label ? "1" : "0",
      ...best.flatMap((b) => [classes[b.index], b.probability.toFixed(6)]),
    ];
    lines.push(cells.map(csvField).join(","));
  });
  return lines.join("\n") + "\n";
}

/** The file name of a state's predictions, relative to the run folder. */
export function predictionsFile(split: string, id: StateId): string {
  return `predictions/${split}.${id}.csv`;
}
