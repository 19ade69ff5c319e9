/**
 * The evaluation entry point for a trained model on either engine: given a
 * model's weights and the run's engine choice (`auto`, `fused`, `tfjs`, as
 * the `train` stage's `engine`), a {@linkcode Scorer} returns the eval-mode
 * logits (BatchNorm running statistics, no dropout) of a stream of batches,
 * in order. On the webgpu backend (`auto` or `fused`) the fused engine's eval
 * graph runs them: one engine per model shape for the scorer's life, the
 * weights uploaded into it per call (ensemble members and checkpoints reuse
 * its compiled graphs), batches enqueued back to back with one readback per
 * group. Otherwise (the cpu backend, or `tfjs`) the tfjs model runs them.
 * The `test_time_augmentation` and `report` stages create one scorer per run
 * of the stage and dispose it at its end.
 *
 * @module
 */
import { evalLogits } from "./eval_chunks.ts";
import type { Tensor2D, Tensor3D } from "@tensorflow/tfjs";
import type { Batch, DataAccess, Tf } from "../pipeline/types.ts";
import type { AmautModel } from "./amaut.ts";
import {
  concatRows,
  type EvalTiming,
  evaluate,
  type Evaluation,
  evaluationOf,
} from "./evaluate.ts";

export { concatRows };
import {
  createFusedEngine,
  type EvalGroup,
  type FusedEngine,
} from "../gpu/engine.ts";
import {
  checkPrecision,
  type EngineChoice,
  fusedDevice,
  type Precision,
  type PrecisionUse,
  stagePrecisionUse,
} from "./engine_choice.ts";

export type { EngineChoice };

/** The tokens of one batch to score. */
export interface ScoreInput {
  /** `[rows, frames, nMels]` tokens. */
  readonly tokens: Tensor3D;
  /** True when the scorer should dispose `tokens` once used (a slice made for it). */
  readonly owned?: boolean;
}

/** Options of {@linkcode createScorer}. */
export interface ScorerOptions {
  /** A WebGPU device for the fused engine; default: tfjs's (the webgpu backend). */
  readonly device?: GPUDevice;
  /** Batches per readback on the fused engine (default {@linkcode READ_GROUP_BATCHES}). */
  readonly group?: number;
  /**
   * Numeric precision of the fused eval graph (default `fp32`); `mixed`: f16
   * matmul operands with f32 accumulation, as `train.precision: mixed`.
   */
  readonly precision?: Precision;
  /** Who asks, for the refusal of `mixed` (default: `evaluate`, `--set report.precision=fp32`). */
  readonly precisionUse?: PrecisionUse;
}

/** Scores models on one engine. */
export interface Scorer {
  /** The engine that runs the forwards. */
  readonly engine: "fused" | "tfjs";
  /** Numeric precision of the forwards (`mixed` only on the fused engine). */
  readonly precision: Precision;
  /**
   * Eval-mode logits of `model`'s current weights on each batch, in order.
   * `visit` sees each batch before it is scored (labels, checks, progress;
   * it may throw to stop); `tokensOf` picks the tokens to score.
   *
   * @param model The model whose weights are scored (unchanged).
   * @param batches The batches (their tensors valid until the next one is drawn).
   * @param tokensOf The tokens of a batch to score.
   * @param visit Called with each batch, before its tokens are scored.
   * @param timing Where the host's time went, added to (fused engine only).
   * @returns Logits `[rows, classes]` row-major per batch.
   */
  logits<B>(
    model: AmautModel,
    batches: AsyncIterable<B>,
    tokensOf: (batch: B) => ScoreInput,
    visit?: (batch: B) => void | Promise<void>,
    timing?: EvalTiming,
  ): Promise<Float32Array[]>;
  /** Frees the fused engines (their GPU buffers). */
  dispose(): void;
}

/**
 * Creates a scorer for the run's engine choice.
 *
 * @param tf The TF.js namespace.
 * @param choice `auto` (fused on webgpu, tfjs otherwise), `fused` or `tfjs`.
 * @param options A device for the fused engine, batches per readback, the
 *   precision of the fused eval graph.
 * @returns The scorer.
 * @throws {Error} For `fused` without a WebGPU device, and for `precision:
 *   mixed` where it cannot run (the tfjs engine, no WebGPU, no `shader-f16`).
 */
export function createScorer(
  tf: Tf,
  choice: EngineChoice,
  options: ScorerOptions = {},
): Scorer {
  const device = fusedDevice(tf, choice, "evaluate", options.device);
  const precision = options.precision ?? "fp32";
  checkPrecision(
    tf,
    choice,
    precision,
    device,
    options.precisionUse ?? stagePrecisionUse("report", "evaluate"),
  );
  if (!device) return tfjsScorer(tf);
  return fusedScorer(
    tf,
    device,
    Math.max(1, options.group ?? READ_GROUP_BATCHES),
    precision,
  );
}

function tfjsScorer(tf: Tf): Scorer {
  return {
    engine: "tfjs",
    precision: "fp32",
    async logits(model, batches, tokensOf, visit) {
      const out: Float32Array[] = [];
      for await (const batch of batches) {
        await visit?.(batch);
        const input = tokensOf(batch);
        let logits: Tensor2D;
        try {
          // In chunks within the GPU's buffer limits (one pass when it fits).
          logits = tf.tidy(() =>
            evalLogits(tf, model, input.tokens)
          ) as Tensor2D;
        } finally {
          if (input.owned) input.tokens.dispose();
        }
        out.push(await logits.data() as Float32Array);
        logits.dispose();
      }
      return out;
    },
    dispose() {},
  };
}

function fusedScorer(
  tf: Tf,
  device: GPUDevice,
  group: number,
  precision: Precision,
): Scorer {
  const engines = new Map<string, FusedEngine>();
  const engineOf = (model: AmautModel): FusedEngine => {
    const key = JSON.stringify([model.options, model.dims]);
    let engine = engines.get(key);
    if (!engine) {
      engine = createFusedEngine(tf, model.options, model.dims, device, {
        precision,
      });
      engines.set(key, engine);
    }
    return engine;
  };
  return {
    engine: "fused",
    precision,
    async logits(model, batches, tokensOf, visit, timing) {
      const t0 = performance.now();
      const engine = engineOf(model);
      await engine.upload(model);
      if (timing) {
        timing.setupSeconds = (timing.setupSeconds ?? 0) +
          (performance.now() - t0) / 1000;
      }
      return await engineLogits(
        engine,
        model.dims.classes,
        batches,
        tokensOf,
        visit,
        group,
        timing,
      );
    },
    dispose() {
      for (const engine of engines.values()) engine.destroy();
      engines.clear();
    },
  };
}

/** A zeroed {@linkcode EvalTiming}, to pass to scorings that add to it. */
export function evalTiming(): EvalTiming {
  return {
    seconds: 0,
    dataSeconds: 0,
    enqueueSeconds: 0,
    readSeconds: 0,
    batches: 0,
    setupSeconds: 0,
  };
}

/**
 * Where scorings spent the host's time, for a log line: `12 batches in 0.10
 * s (waiting for batches 0.02 s, enqueuing 0.01 s, readbacks 0.07 s), after
 * 0.12 s of engine set-up`.
 *
 * @param t The timings (seconds).
 */
export function formatEvalTiming(t: EvalTiming): string {
  const s = (x: number) => `${x.toFixed(2)} s`;
  return `${t.batches} batches in ${s(t.seconds)} (waiting for batches ${
    s(t.dataSeconds)
  }, enqueuing ${s(t.enqueueSeconds)}, readbacks ${s(t.readSeconds)}), after ${
    s(t.setupSeconds ?? 0)
  } of engine set-up`;
}

/**
 * How a scorer's engine is named in logs.
 *
 * @param scorer The scorer (and its precision, when known).
 * @returns "the fused WebGPU eval graph" (with ", mixed precision" in mixed) or "the tfjs model".
 */
export function engineLabel(
  scorer: Pick<Scorer, "engine"> & { readonly precision?: Precision },
): string {
  if (scorer.engine !== "fused") return "the tfjs model";
  return scorer.precision === "mixed"
    ? "the fused WebGPU eval graph (mixed precision: f16 matmul operands)"
    : "the fused WebGPU eval graph";
}

/**
 * Eval-mode logits of an engine's current weights on each batch, in order:
 * batches enqueued back to back, read back once per `group` batches.
 *
 * @param engine The fused engine (weights uploaded).
 * @param classes Logits per row (the model's classes).
 * @param batches The batches (their tensors valid until the next one is drawn).
 * @param tokensOf The tokens of a batch to score.
 * @param visit Called with each batch, before its tokens are scored.
 * @param group Batches per readback (of the first batch's size).
 * @returns Logits `[rows, classes]` row-major per batch.
 */
export async function engineLogits<B>(
  engine: FusedEngine,
  classes: number,
  batches: AsyncIterable<B>,
  tokensOf: (batch: B) => ScoreInput,
  visit?: (batch: B) => void | Promise<void>,
  group = READ_GROUP_BATCHES,
  timing?: EvalTiming,
): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  let pending: EvalGroup | undefined;
  const start = performance.now();
  let at = start;
  const spent = (key: "dataSeconds" | "enqueueSeconds" | "readSeconds") => {
    const now = performance.now();
    if (timing) timing[key] += (now - at) / 1000;
    at = now;
  };
  const read = async (group: EvalGroup) => {
    spent("enqueueSeconds");
    const logits = await group.read();
    spent("readSeconds");
    return logits;
  };
  try {
    for await (const batch of batches) {
      spent("dataSeconds");
      if (timing) timing.batches++;
      await visit?.(batch);
      const input = tokensOf(batch);
      try {
        const rows = input.tokens.shape[0];
        const floats = rows * classes;
        if (pending && pending.room < floats) {
          out.push(...await read(pending));
          if (pending.room < floats) { // a batch larger than the first
            pending.destroy();
            pending = undefined;
          }
        }
        pending ??= engine.evalGroup(floats * Math.max(1, group));
        await pending.add(input.tokens, rows);
      } finally {
        if (input.owned) input.tokens.dispose();
      }
      spent("enqueueSeconds");
    }
    spent("dataSeconds");
    if (pending) out.push(...await read(pending));
  } finally {
    pending?.destroy();
    if (timing) timing.seconds += (performance.now() - start) / 1000;
  }
  return out;
}

/**
 * Batches whose logits are read back together. On Deno a read waits until
 * the GPU has finished everything queued and then sleeps about 10 ms, so
 * reads are kept rare (64 batches of 32 rows × 30 classes are 240 KiB).
 */
export const READ_GROUP_BATCHES = 64;

/**
 * Accuracy and mean cross-entropy of a split (phase `eval`, split order) with
 * an engine's current weights: its eval graph, one readback per group of
 * batches, scored on the host.
 *
 * @param engine The fused engine (weights uploaded).
 * @param classes Logits per row (the model's classes).
 * @param data The data.
 * @param split Split name.
 * @param batchSize Clips per evaluation batch.
 * @returns Loss (nats per clip), accuracy, logits and labels.
 */
export async function evaluateEngine(
  engine: FusedEngine,
  classes: number,
  data: DataAccess,
  split: string,
  batchSize: number,
): Promise<Evaluation> {
  const timing = evalTiming();
  const evaluation = await evaluateSplit(
    data,
    split,
    batchSize,
    (batches, tokensOf, visit) =>
      engineLogits(
        engine,
        classes,
        batches,
        tokensOf,
        visit,
        READ_GROUP_BATCHES,
        timing,
      ),
  );
  return { ...evaluation, timing };
}

/**
 * Accuracy and mean cross-entropy of a model on a split (phase `eval`, split
 * order) on the scorer's engine: the tfjs path is {@linkcode evaluate}
 * itself; the fused path scores the eval graph's logits on the host.
 *
 * @param ctx TF.js and the data.
 * @param scorer The engine that scores.
 * @param model The model (unchanged).
 * @param split Split name.
 * @param batchSize Clips per evaluation batch.
 * @returns Loss (nats per clip), accuracy, labels; logits on the fused path (and on the tfjs path with `keepLogits`).
 */
export async function evaluateOn(
  ctx: { readonly tf: Tf; readonly data: DataAccess },
  scorer: Scorer,
  model: AmautModel,
  split: string,
  batchSize: number,
  { keepLogits = false }: { keepLogits?: boolean } = {},
): Promise<Evaluation> {
  if (scorer.engine === "tfjs") {
    return await evaluate(ctx, model, split, batchSize, { keepLogits });
  }
  return await evaluateSplit(
    ctx.data,
    split,
    batchSize,
    (batches, tokensOf, visit) =>
      scorer.logits(model, batches, tokensOf, visit),
  );
}

/** Scores a split's eval batches (split order) with `logitsOf`'s logits, on the host. */
async function evaluateSplit(
  data: DataAccess,
  split: string,
  batchSize: number,
  logitsOf: (
    batches: AsyncIterable<Batch>,
    tokensOf: (batch: Batch) => ScoreInput,
    visit: (batch: Batch) => void,
  ) => Promise<Float32Array[]>,
): Promise<Evaluation> {
  const labels: number[] = [];
  const reads = { batchSize, phase: "eval", shuffle: false } as const;
  const parts = await logitsOf(
    data.batches(split, reads),
    (batch) => ({ tokens: batch.tokens as Tensor3D }),
    (batch) => {
      // The next pass over the split (the next evaluation, TTAu, the
      // report) finds its first clips decoded.
      if (labels.length === 0) data.prefetch?.(split, reads);
      labels.push(...batch.label as number[]);
    },
  );
  return evaluationOf(concatRows(parts), labels);
}
