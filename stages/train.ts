/**
 * The `train` step stage: AMAuT's training loop (reference §7–§8), inline and
 * readable. Per batch it splits the stacked views (see `augment`), runs one
 * forward pass per view — so BatchNorm statistics are per view — sums the
 * views' label-smoothed cross-entropies (ε 0.1, Eq. 1 and 13), takes one
 * gradient and one SGD step with the reference's quirks (momentum and weight
 * decay off in the first epoch, then 0.9 and 1e-3, coupled; Nesterov off
 * unless asked), and the Eq. 6 learning rate `lr0·(1 + γ·e/C)^(−0.75)`
 * updated after each epoch. After every epoch it evaluates the selection
 * split, keeps the best checkpoint (ties go to the later epoch) and the last,
 * and appends to `metrics.jsonl`. At the end it evaluates the best weights on
 * every split and writes `summary.json`.
 *
 * Takes `tokens` (`[b, t, f]` per batch, views stacked) and `label`; provides
 * `model` (the trained model, best weights), `metrics` and `summary`.
 *
 * ```yaml
 * - use: train
 *   with:
 *     epochs: 50
 *     batchSize: 32
 *     lr: 0.001
 *     lrCardinality: 50
 *     model: { head: avg }
 * ```
 *
 * @module
 */
import { join } from "node:path";
import * as z from "zod";
import type { Tensor, Tensor3D, Variable } from "@tensorflow/tfjs";
import { defineStage } from "../pipeline/define_stage.ts";
import { writeFileAtomic, writeJsonAtomic } from "../pipeline/atomic.ts";
import type { Batch, StepContext } from "../pipeline/types.ts";
import {
  createModel,
  labelSmoothedCrossEntropy,
  ModelOptions,
  modelSummary,
} from "../model/amaut.ts";
import type { AmautModel, ModelDims } from "../model/amaut.ts";
import { createSgd, referenceSgdOptions } from "../model/sgd.ts";
import { multiviewStep } from "../model/train_step.ts";
import { evalLogits } from "../model/eval_chunks.ts";
import { learningRateAt } from "../model/schedule.ts";
import { argmaxRows } from "../lib/metrics.ts";
import {
  createFusedEngine,
  type FusedEngine,
  tfjsDevice,
} from "../gpu/engine.ts";
import {
  checkCompatible,
  loadCheckpoint,
  modelSignature,
  saveCheckpoint,
} from "../model/checkpoint.ts";

/** Options of the `train` stage. */
export const TrainOptions = z.strictObject({
  model: ModelOptions.default(ModelOptions.parse({})).describe(
    "The AMAuT model (CNN tokenizer, transformer, head)",
  ),
  epochs: z.int().min(1).default(50).describe("Training epochs"),
  batchSize: z.int().min(1).default(32).describe(
    "Clips per batch (each view of a clip is a separate forward pass of this size)",
  ),
  evalBatchSize: z.int().min(1).default(64).describe(
    "Clips per evaluation batch",
  ),
  lr: z.number().positive().default(1e-3).describe("Initial learning rate lr0"),
  lrGamma: z.number().min(0).default(10).describe(
    "γ of the schedule lr0·(1 + γ·e/C)^−power",
  ),
  lrCardinality: z.int().min(1).default(50).describe(
    "C of the schedule (reference: 40, 50 or 80 per dataset)",
  ),
  lrPower: z.number().positive().default(0.75).describe(
    "Power of the schedule",
  ),
  momentum: z.number().min(0).max(1).default(0.9).describe(
    "SGD momentum from the second epoch on (the first epoch runs without, as the reference)",
  ),
  weightDecay: z.number().min(0).default(1e-3).describe(
    "Coupled L2 weight decay from the second epoch on",
  ),
  nesterov: z.boolean().default(false).describe(
    "Nesterov momentum (the reference intends it but never enables it: a typo)",
  ),
  labelSmoothing: z.number().min(0).max(1).default(0.1).describe(
    "Label smoothing ε",
  ),
  selectOn: z.string().min(1).default("validation").describe(
    "Split whose accuracy picks the best checkpoint (AudioMNIST's reference uses test)",
  ),
  readEvery: z.int().min(1).default(10).describe(
    "Steps between reads of the loss from the device (reads stall a GPU)",
  ),
  engine: z.enum(["auto", "fused", "tfjs"]).default("auto").describe(
    "Training-step engine: fused = the whole step as one recorded WebGPU graph (gpu/, far faster), tfjs = op by op; auto = fused on the webgpu backend, tfjs on cpu",
  ),
  limitBatches: z.int().min(1).optional().describe(
    "Stop each epoch after this many batches (quick runs)",
  ),
});
/** Parsed options of the `train` stage. */
export type TrainOptions = z.infer<typeof TrainOptions>;

/** One line of `metrics.jsonl`. */
export interface EpochMetrics {
  readonly epoch: number;
  readonly split: string;
  readonly loss: number;
  readonly accuracy: number;
  readonly lr?: number;
  readonly seconds?: number;
  readonly clipsPerSecond?: number;
  /** `tf.memory().numTensors` when the epoch started (a leak shows as growth). */
  readonly tensorsAtStart?: number;
}

/** Splits a view-stacked batch field into per-view slices (view-major). */
function viewsOf(batch: Batch): number {
  const names = batch.viewNames as string[] | undefined;
  return names?.length ?? 1;
}

/**
 * Accuracy and mean (unsmoothed) cross-entropy of the model on a split, with
 * running BatchNorm stats. Loss and hits accumulate on the device and are read
 * once at the end; the logits are read back per batch only when asked
 * (`keepLogits`), else `logits` is empty. With `engine` (holding the same
 * weights as `model`) the forward passes run on the fused engine's eval
 * graph, and each batch's logits are read back and scored on the host.
 */
export async function evaluate(
  ctx: StepContext,
  model: AmautModel,
  split: string,
  batchSize: number,
  { keepLogits = false, engine }: {
    keepLogits?: boolean;
    engine?: FusedEngine;
  } = {},
): Promise<
  { loss: number; accuracy: number; logits: Float32Array; labels: number[] }
> {
  const { tf } = ctx;
  if (engine) return await evaluateFused(ctx, engine, split, batchSize);
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
  const flat = new Float32Array(logitRows.reduce((n, r) => n + r.length, 0));
  let offset = 0;
  for (const r of logitRows) {
    flat.set(r, offset);
    offset += r.length;
  }
  return {
    loss: count ? l / count : NaN,
    accuracy: count ? c / count : NaN,
    logits: flat,
    labels,
  };
}

/** {@linkcode evaluate} on the fused engine. */
async function evaluateFused(
  ctx: StepContext,
  engine: FusedEngine,
  split: string,
  batchSize: number,
): Promise<
  { loss: number; accuracy: number; logits: Float32Array; labels: number[] }
> {
  const rows: Float32Array[] = [];
  const labels: number[] = [];
  let lossSum = 0;
  let correct = 0;
  for await (
    const batch of ctx.data.batches(split, {
      batchSize,
      phase: "eval",
      shuffle: false,
    })
  ) {
    const y = batch.label as number[];
    const logits = await engine.evalLogits(batch.tokens as Tensor3D, y.length);
    const n = logits.length / y.length;
    const predicted = argmaxRows(logits, n);
    y.forEach((label, i) => {
      const row = logits.subarray(i * n, (i + 1) * n);
      const max = row[predicted[i]];
      let sum = 0;
      for (const v of row) sum += Math.exp(v - max);
      lossSum += Math.log(sum) + max - row[label];
      if (predicted[i] === label) correct++;
    });
    rows.push(logits);
    labels.push(...y);
  }
  const flat = new Float32Array(rows.reduce((n, r) => n + r.length, 0));
  let offset = 0;
  for (const r of rows) {
    flat.set(r, offset);
    offset += r.length;
  }
  const count = labels.length;
  return {
    loss: count ? lossSum / count : NaN,
    accuracy: count ? correct / count : NaN,
    logits: flat,
    labels,
  };
}

function groups(model: AmautModel, sgd: ReturnType<typeof createSgd>) {
  return {
    params: model.params as ReadonlyMap<string, Tensor>,
    buffers: model.buffers as ReadonlyMap<string, Tensor>,
    optimizer: sgd.buffers,
  };
}

function assign(
  targets: ReadonlyMap<string, Variable>,
  values: ReadonlyMap<string, Tensor> | undefined,
  what: string,
) {
  if (!values) return;
  for (const [name, v] of targets) {
    const t = values.get(name);
    if (!t) {
      throw new Error(
        `Cannot restore ${what} "${name}": the checkpoint lacks it`,
      );
    }
    v.assign(t);
  }
}

/** Model dimensions from the first training example and the class count. */
async function dimsOf(
  data: StepContext["data"],
): Promise<ModelDims> {
  for await (
    const b of data.batches("train", { batchSize: 1, phase: "eval", limit: 1 })
  ) {
    const tokens = b.tokens as Tensor3D;
    if (!tokens || tokens.rank !== 3) {
      throw new Error(
        "Cannot train: tokens must be a [b, frames, nMels] tensor (put tokenize before train)",
      );
    }
    const [, frames, nMels] = tokens.shape;
    return { nMels, frames, classes: data.classes.length };
  }
  throw new Error("Cannot train: the train split is empty");
}

/** The `train` stage. */
export const stage = defineStage<TrainOptions>({
  id: "train",
  version: "1.0.0",
  api: 1,
  kind: "step",
  summary: "Train an AMAuT model with the reference's multiview recipe",
  options: TrainOptions,
  takes: ["tokens", "label"],
  provides: ["model", "metrics", "summary"],
  async describe(options, ctx) {
    const dims = await dimsOf(ctx.data);
    const s = modelSummary(options.model, dims);
    const width = Math.max(...s.layers.map((l) => l.name.length));
    return [
      `model dims ${JSON.stringify(dims)}`,
      ...s.layers.map((l) =>
        `  ${l.name.padEnd(width)}  [${l.shape.join(", ")}]`
      ),
      `parameters: ${s.parameters}`,
    ].join("\n");
  },
  async run(options, ctx) {
    const { tf, log } = ctx;
    if (!(options.selectOn in ctx.data.splits)) {
      throw new Error(
        `Cannot select checkpoints on split "${options.selectOn}": the dataset has splits ${
          Object.keys(ctx.data.splits).map((s) => `"${s}"`).join(", ")
        }`,
      );
    }
    // Dimensions come from the first batch (frames and mel bins) and the dataset (classes).
    let dims: ModelDims | undefined;
    for await (
      const b of ctx.data.batches("train", {
        batchSize: 1,
        phase: "eval",
        limit: 1,
      })
    ) {
      const [, frames, nMels] = (b.tokens as Tensor3D).shape;
      dims = { nMels, frames, classes: ctx.data.classes.length };
    }
    if (!dims) throw new Error("Cannot train: the train split is empty");
    const model = createModel(tf, options.model, dims, ctx.rng.child("init"));
    const summary = model.summary();
    log.info(
      `model: ${summary.parameters.toLocaleString("en-US")} parameters, dims ${
        JSON.stringify(dims)
      }`,
    );
    const sgd = createSgd(tf);
    const signature = modelSignature(model.params);
    const checkpoints = join(ctx.runDir, "checkpoints");
    await Deno.mkdir(checkpoints, { recursive: true });

    let history: EpochMetrics[] = [];
    let start = 0;
    let best = { epoch: -1, accuracy: -Infinity };
    if (ctx.resume) {
      const ckpt = await loadCheckpoint(tf, checkpoints, "last").catch((e) => {
        throw new Error(`Cannot resume: ${(e as Error).message}`);
      });
      checkCompatible(ckpt.meta, {
        specHash: ctx.specHash,
        modelSignature: signature,
      });
      assign(model.params, ckpt.groups.params, "parameter");
      assign(model.buffers, ckpt.groups.buffers, "buffer");
      sgd.load(ckpt.groups.optimizer ?? new Map()); // the optimizer now owns these
      tf.dispose([
        ...ckpt.groups.params.values(),
        ...ckpt.groups.buffers.values(),
      ]);
      history = (ckpt.meta.history as EpochMetrics[] | undefined) ?? [];
      best = (ckpt.meta.best as typeof best | undefined) ?? best;
      start = ckpt.meta.epoch + 1;
      log.info(
        `resuming after epoch ${ckpt.meta.epoch + 1} of ${options.epochs}`,
      );
    }

    const fused = options.engine === "fused" ||
      (options.engine === "auto" && tfjsDevice(tf) !== undefined);
    if (fused && !tfjsDevice(tf)) {
      throw new Error(
        `Cannot train with engine "fused": it needs the webgpu backend, and this run uses "${tf.getBackend()}" (use engine: tfjs or auto)`,
      );
    }
    const engine = fused
      ? createFusedEngine(tf, options.model, dims)
      : undefined;
    if (engine) await engine.upload(model, sgd);
    const final: Record<string, { accuracy: number; loss: number }> = {};
    try {
      const writeMetrics = () =>
        writeFileAtomic(
          join(ctx.runDir, "metrics.jsonl"),
          history.map((m) => JSON.stringify(m)).join("\n") + "\n",
        );
      const smoothing = options.labelSmoothing;
      const checkLoss = (l: number, epoch: number, step: number) => {
        if (!Number.isFinite(l)) {
          throw new Error(
            `Cannot continue training: the loss is ${l} at epoch ${
              epoch + 1
            }, step ${step}; the last good checkpoint is ${
              join(checkpoints, "last")
            }`,
          );
        }
      };

      for (let epoch = start; epoch < options.epochs; epoch++) {
        const lr = learningRateAt(epoch, {
          lr0: options.lr,
          gamma: options.lrGamma,
          cardinality: options.lrCardinality,
          power: options.lrPower,
        });
        const sgdOptions = referenceSgdOptions(epoch, options);
        const epochStart = performance.now();
        const total = Math.ceil(ctx.data.splits.train / options.batchSize);
        const steps = Math.min(total, options.limitBatches ?? total);
        const bar = ctx.progress({
          label: `train epoch ${epoch + 1}/${options.epochs}`,
          total: Math.min(ctx.data.splits.train, steps * options.batchSize),
          unit: "clips",
        });
        let lossSum: Tensor = tf.scalar(0);
        let hits: Tensor = tf.scalar(0, "int32");
        let clips = 0;
        let step = 0;
        let fusedViews = 1;
        const startTensors = tf.memory().numTensors;
        for await (
          const batch of ctx.data.batches("train", {
            batchSize: options.batchSize,
            phase: "fit",
            epoch,
            limit: options.limitBatches
              ? options.limitBatches * options.batchSize
              : undefined,
          })
        ) {
          const V = viewsOf(batch);
          const b = batch.size / V;
          const tokens = batch.tokens as Tensor3D;
          const labels = (batch.label as number[]).slice(0, b);
          if (engine) {
            await engine.step(tokens, labels, V, {
              smoothing,
              lr,
              sgd: sgdOptions,
              seed: ctx.rng.child("dropout", epoch, step).int(0x7fffffff),
            });
            if (epoch === start && step === 0) {
              log.info(
                `engine: fused WebGPU graph, ${
                  engine.counts(V, b).total
                } dispatches per step`,
              );
            }
            clips += b;
            step++;
            fusedViews = V;
            if (step % options.readEvery === 0 || step === steps) {
              const m = await engine.metrics(false);
              const l = m.lossSum / V / step;
              checkLoss(l, epoch, step);
              bar.tick(b, {
                loss: l,
                accuracy: m.correct / Math.max(1, m.count),
              });
            } else bar.tick(b);
            if (ctx.signal.aborted) throw ctx.signal.reason;
            continue;
          }
          const labelsT = tf.tensor1d(labels, "int32");
          const { loss: value, lastLogits } = multiviewStep(
            tf,
            model,
            sgd,
            tokens,
            labelsT,
            V,
            {
              smoothing,
              lr,
              sgd: sgdOptions,
              rng: ctx.rng.child("dropout", epoch, step),
            },
          );
          const stepHits = tf.tidy(() =>
            tf.equal(tf.argMax(lastLogits, 1), labelsT).sum()
          );
          const nextLoss = tf.tidy(() => lossSum.add(value.div(V)));
          const nextHits = hits.add(stepHits);
          tf.dispose([
            lossSum,
            hits,
            value,
            stepHits,
            lastLogits,
            labelsT,
          ]);
          lossSum = nextLoss;
          hits = nextHits;
          clips += b;
          step++;
          if (step % options.readEvery === 0 || step === steps) {
            const l = (await lossSum.data())[0] / step;
            const acc = (await hits.data())[0] / clips;
            checkLoss(l, epoch, step);
            bar.tick(b, { loss: l, accuracy: acc });
          } else bar.tick(b);
          if (ctx.signal.aborted) throw ctx.signal.reason;
        }
        let trainLoss: number;
        let trainAccuracy: number;
        if (engine) {
          const m = await engine.metrics(true);
          trainLoss = m.lossSum / fusedViews / Math.max(1, step);
          trainAccuracy = m.correct / Math.max(1, m.count);
          // Checkpoints and later stages use the tfjs model.
          await engine.download(model, sgd);
        } else {
          trainLoss = (await lossSum.data())[0] / Math.max(1, step);
          trainAccuracy = (await hits.data())[0] / Math.max(1, clips);
        }
        tf.dispose([lossSum, hits]);
        const seconds = (performance.now() - epochStart) / 1000;
        bar.done({ loss: trainLoss, accuracy: trainAccuracy });
        if (tf.memory().numTensors > startTensors) {
          log.debug(
            `tensors grew by ${
              tf.memory().numTensors - startTensors
            } during epoch ${epoch + 1}`,
          );
        }
        const evaluation = await evaluate(
          ctx,
          model,
          options.selectOn,
          options.evalBatchSize,
          { engine },
        );
        history.push(
          {
            epoch,
            split: "train",
            loss: trainLoss,
            accuracy: trainAccuracy,
            lr,
            seconds,
            clipsPerSecond: clips / seconds,
            tensorsAtStart: startTensors,
          },
          {
            epoch,
            split: options.selectOn,
            loss: evaluation.loss,
            accuracy: evaluation.accuracy,
          },
        );
        log.info(
          `epoch ${epoch + 1}/${options.epochs}: train loss ${
            trainLoss.toFixed(4)
          } acc ${
            (100 * trainAccuracy).toFixed(1)
          }%, ${options.selectOn} loss ${evaluation.loss.toFixed(4)} acc ${
            (100 * evaluation.accuracy).toFixed(1)
          }%, lr ${lr.toExponential(3)}, ${
            (clips / seconds).toFixed(1)
          } clips/s`,
        );
        const improved = evaluation.accuracy >= best.accuracy; // ties go to the later epoch
        if (improved) best = { epoch, accuracy: evaluation.accuracy };
        const meta = {
          epoch,
          specHash: ctx.specHash,
          modelSignature: signature,
          // Every random stream of the run derives from the seed and its labels
          // (epoch, batch), so this state plus the epoch resumes them exactly.
          rngState: ctx.rng.state(),
          history,
          best,
        };
        if (improved) {
          await saveCheckpoint(checkpoints, "best", meta, groups(model, sgd));
        }
        await saveCheckpoint(checkpoints, "last", meta, groups(model, sgd));
        await writeMetrics();
      }
      // Final evaluation with the best weights on every split.
      const bestCkpt = await loadCheckpoint(tf, checkpoints, "best");
      assign(model.params, bestCkpt.groups.params, "parameter");
      assign(model.buffers, bestCkpt.groups.buffers, "buffer");
      tf.dispose(
        Object.values(bestCkpt.groups).flatMap((g) => [...g.values()]),
      );
      if (engine) await engine.upload(model);
      for (const split of Object.keys(ctx.data.splits)) {
        const r = await evaluate(ctx, model, split, options.evalBatchSize, {
          engine,
        });
        final[split] = { accuracy: r.accuracy, loss: r.loss };
        log.info(
          `${split} accuracy ${(100 * r.accuracy).toFixed(2)}% (best epoch ${
            best.epoch + 1
          })`,
        );
      }
    } finally {
      engine?.destroy();
    }
    sgd.dispose();
    const summaryJson = {
      bestEpoch: best.epoch + 1,
      selectedOn: options.selectOn,
      parameters: summary.parameters,
      ...final,
    };
    await writeJsonAtomic(join(ctx.runDir, "summary.json"), summaryJson);
    return { model, metrics: history, summary: summaryJson };
  },
});
