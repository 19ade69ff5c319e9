/**
 * Evaluation of an AMAuT model on a split: accuracy and mean (unsmoothed)
 * cross-entropy in eval mode (BatchNorm running statistics, no dropout), as
 * the `train` stage scores epochs and the `report` and `test_time_adaptation`
 * stages score models. {@linkcode evaluate} runs the tfjs model;
 * {@linkcode evaluateLogits} scores logits from any forward pass (the fused
 * engine's eval graph) on the host.
 *
 * @module
 */
import { evalLogits } from "./eval_chunks.ts";
import type { Tensor, Tensor3D } from "@tensorflow/tfjs";
import type { DataAccess, Tf } from "../pipeline/types.ts";
import type { AmautModel } from "./amaut.ts";
import { labelSmoothedCrossEntropy } from "./amaut.ts";
import { argmaxRows } from "../lib/metrics.ts";

/** The scores of a model on one split. */
export interface Evaluation {
  /** Mean cross-entropy per clip (nats; NaN on an empty split). */
  readonly loss: number;
  /** Fraction of clips whose top logit is their label (NaN on an empty split). */
  readonly accuracy: number;
  /** Logits `[clips, classes]` row-major, in split order; empty unless kept. */
  readonly logits: Float32Array;
  /** Labels in split order. */
  readonly labels: number[];
  /** Where the host's time went (fused engine only). */
  readonly timing?: EvalTiming;
}

/**
 * Where an evaluation on the fused engine spent the host's time, in seconds:
 * waiting for the next batch (decoding and the front end), enqueuing the
 * eval graph, and in readbacks (each waits until the GPU's queue is empty).
 */
export interface EvalTiming {
  /** The whole evaluation. */
  seconds: number;
  /** Waiting for batches from the data pipeline. */
  dataSeconds: number;
  /** Enqueuing each batch's eval graph. */
  enqueueSeconds: number;
  /** Reading logits back. */
  readSeconds: number;
  /** Batches scored. */
  batches: number;
  /**
   * Before the first batch: making the engine (first use of a scorer) and
   * uploading the model's weights (scorers only).
   */
  setupSeconds?: number;
}

/** What evaluation reads: the TF.js namespace and the batched data. */
export interface EvalContext {
  readonly tf: Tf;
  readonly data: DataAccess;
}

/**
 * Accuracy and mean cross-entropy of the tfjs model on a split. Loss and hits
 * accumulate on the device and are read once at the end; the logits are read
 * back per batch only when asked (`keepLogits`), else `logits` is empty.
 *
 * @param ctx TF.js and the data.
 * @param model The model (unchanged).
 * @param split Split name.
 * @param batchSize Clips per evaluation batch.
 * @param options `keepLogits` (default false): also return every logit.
 * @returns Loss, accuracy, logits and labels.
 */
export async function evaluate(
  ctx: EvalContext,
  model: AmautModel,
  split: string,
  batchSize: number,
  { keepLogits = false }: { keepLogits?: boolean } = {},
): Promise<Evaluation> {
  const { tf } = ctx;
  let lossSum: Tensor = tf.scalar(0);
  let correct: Tensor = tf.scalar(0, "int32");
  let count = 0;
  const logitRows: Float32Array[] = [];
  const labels: number[] = [];
  for await (
    const batch of ctx.data.batches(split, {
      batchSize,
      phase: "eval",
      shuffle: false,
    })
  ) {
    const y = batch.label as number[];
    const out = tf.tidy(() => {
      const labelsT = tf.tensor1d(y, "int32");
      const logits = evalLogits(tf, model, batch.tokens as Tensor3D);
      const loss = labelSmoothedCrossEntropy(tf, logits, labelsT, 0).mul(
        y.length,
      );
      const hits = tf.equal(tf.argMax(logits, 1), labelsT).sum();
      return { logits, loss, hits };
    });
    const nextLoss = lossSum.add(out.loss);
    const nextCorrect = correct.add(out.hits);
    tf.dispose([lossSum, correct, out.loss, out.hits]);
    lossSum = nextLoss;
    correct = nextCorrect;
    if (keepLogits) logitRows.push(await out.logits.data() as Float32Array);
    out.logits.dispose();
    labels.push(...y);
    count += y.length;
  }
  const [l, c] = [(await lossSum.data())[0], (await correct.data())[0]];
  tf.dispose([lossSum, correct]);
  return {
    loss: count ? l / count : NaN,
    accuracy: count ? c / count : NaN,
    logits: concatRows(logitRows),
    labels,
  };
}

/**
 * Accuracy and mean cross-entropy of a split from a forward pass that
 * returns logits on the host (the fused engine's eval graph), scored in
 * float64 on the host. Every logit is kept.
 *
 * @param data The batched data.
 * @param split Split name.
 * @param batchSize Clips per evaluation batch.
 * @param forward Eval-mode logits `[rows, classes]` of a `[rows, frames, nMels]` batch.
 * @returns Loss, accuracy, logits and labels.
 */
export async function evaluateLogits(
  data: DataAccess,
  split: string,
  batchSize: number,
  forward: (tokens: Tensor3D, rows: number) => Promise<Float32Array>,
): Promise<Evaluation> {
  const rows: Float32Array[] = [];
  const labels: number[] = [];
  for await (
    const batch of data.batches(split, {
      batchSize,
      phase: "eval",
      shuffle: false,
    })
  ) {
    const y = batch.label as number[];
    rows.push(await forward(batch.tokens as Tensor3D, y.length));
    labels.push(...y);
  }
  return evaluationOf(concatRows(rows), labels);
}

/**
 * Accuracy and mean cross-entropy of logits against their labels, scored in
 * float64 on the host.
 *
 * @param logits Logits `[labels.length, classes]` row-major.
 * @param labels One label per row.
 * @returns Loss (nats per clip), accuracy, the logits and labels (NaN scores when empty).
 */
export function evaluationOf(
  logits: Float32Array,
  labels: number[],
): Evaluation {
  const count = labels.length;
  let lossSum = 0;
  let correct = 0;
  if (count) {
    const n = logits.length / count;
    const predicted = argmaxRows(logits, n);
    labels.forEach((label, i) => {
      const row = logits.subarray(i * n, (i + 1) * n);
      const max = row[predicted[i]];
      let sum = 0;
      for (const v of row) sum += Math.exp(v - max);
      lossSum += Math.log(sum) + max - row[label];
      if (predicted[i] === label) correct++;
    });
  }
  return {
    loss: count ? lossSum / count : NaN,
    accuracy: count ? correct / count : NaN,
    logits,
    labels,
  };
}

/**
 * Concatenates row-major parts into one array.
 *
 * @param parts Arrays in order.
 * @returns Their values, one after another.
 */
export function concatRows(parts: readonly Float32Array[]): Float32Array {
  const flat = new Float32Array(parts.reduce((n, r) => n + r.length, 0));
  let offset = 0;
  for (const r of parts) {
    flat.set(r, offset);
    offset += r.length;
  }
  return flat;
}
