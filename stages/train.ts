/**
 * The `train` step stage: AMAuT's training loop (reference §7–§8) as one flat
 * loop over a {@linkcode Trainer} — tfjs op by op (`model/trainer_tfjs.ts`) or
 * the fused WebGPU engine (`gpu/trainer_fused.ts`), chosen by `engine`. Per
 * batch the trainer splits the stacked views (see `augment`), runs one
 * forward pass per view — so BatchNorm statistics are per view — sums the
 * views' label-smoothed cross-entropies (ε 0.1, Eq. 1 and 13), takes one
 * gradient and one SGD step with the reference's quirks (momentum and weight
 * decay off in the first epoch, then 0.9 and 1e-3, coupled; Nesterov off
 * unless asked), and the Eq. 6 learning rate `lr0·(1 + γ·e/C)^(−0.75)`
 * updated after each epoch. After every epoch it reads the training metrics,
 * syncs the weights into the tfjs model, evaluates the selection
 * split, keeps the best checkpoint (ties go to the later epoch) and the last,
 * and appends to `metrics.jsonl`. The checkpoint's values are copied to the
 * host before the next epoch starts; hashing and writing them (and
 * `metrics.jsonl`) go on in the background while it trains, one save at a
 * time, awaited before the next save, at an interrupt or error (so a stopped
 * run keeps a consistent `last` and `metrics.jsonl`), and before the end. At
 * the end it evaluates the best weights on every split and writes
 * `summary.json`.
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
import type { Tensor3D } from "@tensorflow/tfjs";
import { defineStage } from "../pipeline/define_stage.ts";
import { writeFileAtomic, writeJsonAtomic } from "../pipeline/atomic.ts";
import type { StepContext, Tf } from "../pipeline/types.ts";
import { InterruptedError } from "../pipeline/interrupt.ts";
import { createModel, ModelOptions, modelSummary } from "../model/amaut.ts";
import type { AmautModel, ModelDims } from "../model/amaut.ts";
import { referenceSgdOptions } from "../model/sgd.ts";
import { learningRateAt } from "../model/schedule.ts";
import { trainBatch, type Trainer, withFallback } from "../model/trainer.ts";
import { createTfjsTrainer } from "../model/trainer_tfjs.ts";
import { createFusedTrainer } from "../gpu/trainer_fused.ts";
import { isBindingLimitError } from "../gpu/runtime.ts";
import { checkPrecision, fusedDevice } from "../model/engine_choice.ts";
import {
  checkCompatible,
  type CheckpointMeta,
  type CheckpointSnapshot,
  loadCheckpoint,
  modelSignature,
  snapshotCheckpoint,
  writeCheckpoint,
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
  readEvery: z.int().min(1).default(50).describe(
    "Steps between reads of the loss from the device (a NaN loss is caught at most 2·readEvery steps late). On Deno each read waits until the GPU has finished everything queued, so the GPU idles while the host prepares the next batch: fewer reads, less idle time",
  ),
  engine: z.enum(["auto", "fused", "tfjs"]).default("auto").describe(
    "Training-step engine: fused = the whole step as one recorded WebGPU graph (gpu/, far faster), tfjs = op by op; auto = fused on the webgpu backend, tfjs on cpu",
  ),
  precision: z.enum(["fp32", "mixed"]).default("fp32").describe(
    "Numeric precision (fused engine only): fp32 = float32 throughout (the reference's); mixed = f16 matmul operands with f32 accumulation in the transformer, patch embedding and heads (convolutions, norms, softmax, losses, master weights, gradients and SGD stay f32), with dynamic loss scaling (skipped steps and the scale in metrics.jsonl); needs the webgpu backend and an adapter with shader-f16, else refused. Applies to the evaluation inside training too",
  ),
  limitBatches: z.int().min(1).optional().describe(
    "Stop each epoch after this many batches (quick runs)",
  ),
});
/** Parsed options of the `train` stage. */
export type TrainOptions = z.infer<typeof TrainOptions>;

/** One line of `metrics.jsonl`. */
export interface EpochMetrics {
  /** 1-based: the epoch just finished (as the log and `summary.json`'s `bestEpoch` count). */
  readonly epoch: number;
  readonly split: string;
  readonly loss: number;
  readonly accuracy: number;
  readonly lr?: number;
  /**
   * Wall seconds of the training epoch, the weights' copy to the host
   * included; on an evaluation line (fused engine), of the evaluation.
   */
  readonly seconds?: number;
  /** Evaluation lines (fused engine): of `seconds`, waiting for batches (decoding, the front end). */
  readonly dataSeconds?: number;
  /** Evaluation lines (fused engine): of `seconds`, enqueuing the eval graph. */
  readonly enqueueSeconds?: number;
  /** Evaluation lines (fused engine): of `seconds`, reading logits back (each read waits for the GPU's queue to empty). */
  readonly readSeconds?: number;
  /**
   * Of `seconds`, the copy of the weights (and momentum) from the device to
   * the host at the epoch's end, for the checkpoints. On the fused engine,
   * every epoch but the last only snapshots them on the device here; the
   * host copy runs during the next epoch's first steps (`syncLaterSeconds`).
   */
  readonly syncSeconds?: number;
  /**
   * Fused engine, every epoch but the last: host seconds of the epoch-end
   * copy spent after the next epoch's first steps were enqueued (the GPU runs
   * them meanwhile), not part of `seconds`.
   */
  readonly syncLaterSeconds?: number;
  /**
   * Seconds the epoch's checkpoint save took: the copy of the values to the
   * host (which the next epoch waits for) plus hashing and writing `last`
   * (and linking `best`), which overlap the next epoch. Absent for the last
   * epoch a resumed run's checkpoint recorded (the save was timed after).
   */
  readonly checkpointSeconds?: number;
  readonly clipsPerSecond?: number;
  /** `tf.memory().numTensors` when the epoch started (a leak shows as growth). */
  readonly tensorsAtStart?: number;
  /** `precision: mixed`: the loss scale at the epoch's end. */
  readonly lossScale?: number;
  /** `precision: mixed`: steps skipped for inf/NaN gradients since the run started. */
  readonly skippedSteps?: number;
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

/**
 * The trainer of `engine`: fused on the webgpu backend (`auto` or `fused`),
 * tfjs otherwise.
 *
 * @throws {Error} For `fused` on a backend other than webgpu, and for
 *   `precision: mixed` where it cannot run.
 */
async function createTrainer(
  tf: Tf,
  model: AmautModel,
  engine: TrainOptions["engine"],
  log: StepContext["log"],
  precision: TrainOptions["precision"] = "fp32",
): Promise<Trainer> {
  const device = fusedDevice(tf, engine, "train");
  checkPrecision(tf, engine, precision, device);
  if (!device) return createTfjsTrainer(tf, model);
  const fused = await createFusedTrainer(tf, model, {
    device,
    log: (line) => log.info(line),
    engine: { precision },
  });
  // auto: a model whose fused graph the device's limits cannot hold trains
  // op by op instead (said once) — in fp32 only: mixed precision never
  // falls back to the float32 tfjs engine.
  return engine === "auto" && precision === "fp32"
    ? withFallback(
      fused,
      () => createTfjsTrainer(tf, model),
      isBindingLimitError,
      (line) => log.warn(line),
    )
    : fused;
}

/**
 * Loads the `last` checkpoint into the trainer (weights, running statistics,
 * momentum) after checking it belongs to this spec and model.
 *
 * @returns The checkpoint's metadata.
 * @throws {Error} Starting "Cannot resume" when it is missing or unreadable,
 *   or saying what differs when it is another spec's or model's.
 */
async function resume(
  tf: Tf,
  trainer: Trainer,
  checkpoints: string,
  expected: { specHash: string; modelSignature: string },
): Promise<CheckpointMeta> {
  const ckpt = await loadCheckpoint(tf, checkpoints, "last").catch((e) => {
    throw new Error(`Cannot resume: ${(e as Error).message}`);
  });
  try {
    checkCompatible(ckpt.meta, expected);
    await trainer.load({
      params: ckpt.groups.params,
      buffers: ckpt.groups.buffers,
      optimizer: ckpt.groups.optimizer ?? new Map(),
    });
  } finally {
    tf.dispose(Object.values(ckpt.groups).flatMap((g) => [...g.values()]));
  }
  return ckpt.meta;
}

/**
 * Writes an epoch's record from its snapshot: `checkpoints/last` (and
 * `checkpoints/best`, a hard link to the same data, when it improved; written
 * first, as its own index), then `metrics.jsonl` (the history up to this
 * epoch, with this epoch's `checkpointSeconds`), each atomically.
 *
 * @param history The history up to this epoch (the snapshot's).
 * @param trainAt Index in `history` of this epoch's train line.
 * @param copySeconds Seconds {@linkcode snapshotCheckpoint} took.
 * @returns The save's seconds (`checkpointSeconds`).
 * @throws {Error} "Cannot save the checkpoint of epoch N", naming the file.
 */
async function writeEpoch(
  runDir: string,
  snapshot: CheckpointSnapshot,
  improved: boolean,
  history: readonly EpochMetrics[],
  trainAt: number,
  copySeconds: number,
  log: StepContext["log"],
): Promise<number> {
  const start = performance.now();
  const where = join(snapshot.dir, snapshot.name);
  try {
    const report = await writeCheckpoint(snapshot, {
      alsoAs: improved ? ["best"] : [],
    });
    for (const { name, reason } of report.copied) {
      log.debug(
        `checkpoint: ${
          join(snapshot.dir, `${name}.bin`)
        } is a copy of ${where}.bin, not a hard link (${reason})`,
      );
    }
  } catch (error) {
    throw new Error(
      `Cannot save the checkpoint of epoch ${
        snapshot.meta.epoch + 1
      } to ${where}: ${
        (error as Error).message
      }; the checkpoint before it is kept: free disk space or fix the folder, then resume the run with --resume`,
    );
  }
  const checkpointSeconds = copySeconds + (performance.now() - start) / 1000;
  const lines = history.map((m, i) =>
    i === trainAt ? { ...m, checkpointSeconds } : m
  );
  const metricsPath = join(runDir, "metrics.jsonl");
  try {
    await writeFileAtomic(
      metricsPath,
      lines.map((m) => JSON.stringify(m)).join("\n") + "\n",
    );
  } catch (error) {
    throw new Error(
      `Cannot write ${metricsPath}: ${
        (error as Error).message
      }; the checkpoint of epoch ${
        snapshot.meta.epoch + 1
      } is saved: free disk space or fix the folder, then resume the run with --resume`,
    );
  }
  return checkpointSeconds;
}

/** Checkpoint saves running while training goes on, one at a time. */
interface BackgroundSaves {
  /** Starts `save` in the background; call {@linkcode settle} first. */
  start(save: () => Promise<void>): void;
  /** Throws the error of a save that failed, once. */
  check(): void;
  /** Waits for the save in flight, then throws its error, once. */
  settle(): Promise<void>;
}

/**
 * Runs checkpoint saves in the background, one at a time; a failure is kept
 * (never an unhandled rejection) and thrown once, by the next
 * {@linkcode BackgroundSaves.check} or {@linkcode BackgroundSaves.settle}.
 */
function backgroundSaves(): BackgroundSaves {
  let pending: Promise<void> | undefined;
  let failed: Error | undefined;
  const check = () => {
    const error = failed;
    failed = undefined;
    if (error) throw error;
  };
  return {
    start(save) {
      if (pending) {
        throw new Error(
          "Cannot start a checkpoint save while another runs: settle it first",
        );
      }
      const running: Promise<void> = save().catch((error) => {
        failed = error instanceof Error ? error : new Error(String(error));
      }).finally(() => {
        if (pending === running) pending = undefined;
      });
      pending = running;
    },
    check,
    async settle() {
      await pending;
      check();
    },
  };
}

/** Loads the `best` checkpoint's weights and running statistics into the trainer. */
async function loadBest(
  tf: Tf,
  trainer: Trainer,
  checkpoints: string,
): Promise<void> {
  // Weights and running statistics only: the momentum is not read.
  const best = await loadCheckpoint(tf, checkpoints, "best", {
    groups: ["params", "buffers"],
  });
  try {
    await trainer.load({
      params: best.groups.params,
      buffers: best.groups.buffers,
    });
  } finally {
    tf.dispose(Object.values(best.groups).flatMap((g) => [...g.values()]));
  }
}

/**
 * Steps of the next epoch enqueued before the fused engine's epoch-end
 * snapshot is copied into the tfjs model: the GPU runs them while the host
 * copies (~0.5 s for a paper model's weights and momentum; 8 SC1 steps are
 * about 0.45 s of GPU work on an H100, 8 CS steps about 2 s).
 */
export const SYNC_LATER_STEPS = 8;

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
  // A resume may extend a run (more epochs) or switch engines; see pipeline/resume.ts.
  resumeMayChange: { epochs: "grow", engine: "any", readEvery: "any" },
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
    const dims = await dimsOf(ctx.data);
    const model = createModel(tf, options.model, dims, ctx.rng.child("init"));
    const summary = model.summary();
    log.info(
      `model: ${summary.parameters.toLocaleString("en-US")} parameters, dims ${
        JSON.stringify(dims)
      }`,
    );
    const signature = modelSignature(model.params);
    const checkpoints = join(ctx.runDir, "checkpoints");
    await Deno.mkdir(checkpoints, { recursive: true });
    const trainer = await createTrainer(
      tf,
      model,
      options.engine,
      log,
      options.precision,
    );
    let history: EpochMetrics[] = [];
    let start = 0;
    let best = { epoch: -1, accuracy: -Infinity };
    const hasLast = await Deno.stat(join(checkpoints, "last.json")).then(
      () => true,
      () => false,
    );
    const final: Record<string, { accuracy: number; loss: number }> = {};
    const saves = backgroundSaves();
    // An epoch whose record waits for the next epoch's first steps.
    let pendingEpoch: (() => Promise<void>) | undefined;
    const completePending = async () => {
      const complete = pendingEpoch;
      pendingEpoch = undefined;
      await complete?.();
    };
    try {
      if (ctx.resume && !hasLast) {
        log.info(
          "no checkpoint yet (the run stopped before its first epoch ended): training starts afresh",
        );
      } else if (ctx.resume) {
        const meta = await resume(tf, trainer, checkpoints, {
          specHash: ctx.specHash,
          modelSignature: signature,
        });
        history = (meta.history as EpochMetrics[] | undefined) ?? [];
        best = (meta.best as typeof best | undefined) ?? best;
        start = meta.epoch + 1;
        log.info(`resuming after epoch ${meta.epoch + 1} of ${options.epochs}`);
      }
      const checkLoss = (l: number, epoch: number, step: number) => {
        if (!Number.isFinite(l)) {
          throw new Error(
            `Cannot continue training: the loss is ${l} at epoch ${
              epoch + 1
            }, step ${step}; ${
              epoch > 0
                ? `the last good checkpoint is ${join(checkpoints, "last")}`
                : "no checkpoint exists yet (the first is written when epoch 1 ends)"
            }; try a lower lr`,
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
        const sgd = referenceSgdOptions(epoch, options);
        const epochStart = performance.now();
        const total = Math.ceil(ctx.data.splits.train / options.batchSize);
        const steps = Math.min(total, options.limitBatches ?? total);
        const bar = ctx.progress({
          label: `train epoch ${epoch + 1}/${options.epochs}`,
          total: Math.min(ctx.data.splits.train, steps * options.batchSize),
          unit: "clips",
        });
        const startTensors = tf.memory().numTensors;
        let step = 0;
        let pendingRead:
          | Promise<{ m: { loss: number; accuracy: number }; at: number }>
          | undefined;
        const trainReads = (epoch: number) => ({
          batchSize: options.batchSize,
          phase: "fit" as const,
          epoch,
          limit: options.limitBatches
            ? options.limitBatches * options.batchSize
            : undefined,
        });
        for await (
          const batch of ctx.data.batches("train", trainReads(epoch))
        ) {
          // Step boundary: a Ctrl-C stops the run here.
          await ctx.boundary(
            epoch > 0
              ? `epoch ${epoch + 1}, from the checkpoint of epoch ${epoch}`
              : undefined,
          );
          saves.check(); // the previous epoch's save failed: stop

          const train = trainBatch(batch);
          await trainer.step(train, {
            smoothing: options.labelSmoothing,
            lr,
            sgd,
            rng: ctx.rng.child("dropout", epoch, step),
          });
          step++;
          if (step === steps) {
            // The evaluation's and the next epoch's first clips decode
            // while the host waits for the GPU to finish this epoch.
            ctx.data.prefetch?.(options.selectOn, {
              batchSize: options.evalBatchSize,
              phase: "eval",
              shuffle: false,
            });
            if (epoch + 1 < options.epochs) {
              ctx.data.prefetch?.("train", trainReads(epoch + 1));
            }
          }
          // The previous epoch's record, once enough steps are queued to
          // keep the GPU busy during its host copy.
          if (step === Math.min(SYNC_LATER_STEPS, steps)) {
            await completePending();
          }
          if (step % options.readEvery === 0 || step === steps) {
            // The read is issued now and awaited at the next read point (or
            // at once at the epoch's last step). On Deno issuing it already
            // waits for the GPU queue to empty; awaiting it later lets its
            // ~10 ms settle-down overlap the next steps.
            const read = trainer.metrics(false).then((m) => ({ m, at: step }));
            const shown = step === steps ? read : pendingRead;
            pendingRead = step === steps ? undefined : read;
            const done = shown && await shown;
            if (done) {
              checkLoss(done.m.loss, epoch, done.at);
              bar.tick(train.labels.length, {
                loss: done.m.loss,
                accuracy: done.m.accuracy,
              });
            } else bar.tick(train.labels.length);
          } else bar.tick(train.labels.length);
        }
        await completePending(); // an epoch without steps
        if (pendingRead) {
          const { m, at } = await pendingRead;
          pendingRead = undefined;
          checkLoss(m.loss, epoch, at);
        }
        const train = await trainer.metrics(true);
        const syncStart = performance.now();
        // Checkpoints and later stages use the tfjs model. The fused engine
        // snapshots its state now and fills the tfjs model later, while the
        // next epoch's first steps run on the GPU (see completeEpoch).
        const lastEpoch = epoch === options.epochs - 1;
        const syncLater = lastEpoch ? undefined : trainer.syncLater;
        const stateLater = syncLater
          ? await syncLater()
          : await trainer.sync().then((state) => () => Promise.resolve(state));
        const syncSeconds = (performance.now() - syncStart) / 1000;
        const seconds = (performance.now() - epochStart) / 1000;
        bar.done({ loss: train.loss, accuracy: train.accuracy });
        if (tf.memory().numTensors > startTensors) {
          log.debug(
            `tensors grew by ${
              tf.memory().numTensors - startTensors
            } during epoch ${epoch + 1}`,
          );
        }
        const evaluation = await trainer.evaluate(
          ctx.data,
          options.selectOn,
          options.evalBatchSize,
        );
        // metrics.jsonl counts epochs from 1, as the log and summary.json do.
        history.push(
          {
            epoch: epoch + 1,
            split: "train",
            loss: train.loss,
            accuracy: train.accuracy,
            lr,
            seconds,
            syncSeconds,
            clipsPerSecond: train.clips / seconds,
            tensorsAtStart: startTensors,
            ...(train.lossScale !== undefined && {
              lossScale: train.lossScale,
              skippedSteps: train.skippedSteps,
            }),
          },
          {
            epoch: epoch + 1,
            split: options.selectOn,
            loss: evaluation.loss,
            accuracy: evaluation.accuracy,
            ...(evaluation.timing && {
              seconds: evaluation.timing.seconds,
              dataSeconds: evaluation.timing.dataSeconds,
              enqueueSeconds: evaluation.timing.enqueueSeconds,
              readSeconds: evaluation.timing.readSeconds,
            }),
          },
        );
        log.info(
          `epoch ${epoch + 1}/${options.epochs}: train loss ${
            train.loss.toFixed(4)
          } acc ${
            (100 * train.accuracy).toFixed(1)
          }%, ${options.selectOn} loss ${evaluation.loss.toFixed(4)} acc ${
            (100 * evaluation.accuracy).toFixed(1)
          }%, lr ${lr.toExponential(3)}, ${
            (train.clips / seconds).toFixed(1)
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
        const record = history.slice();
        const trainAt = record.length - 2;
        const complete = async () => {
          const finishStart = performance.now();
          const state = await stateLater();
          const finishSeconds = (performance.now() - finishStart) / 1000;
          if (syncLater) {
            // Host time of the sync spent during the next epoch's first
            // steps (the epoch's `syncSeconds` is the part before them).
            history[trainAt] = {
              ...history[trainAt],
              syncLaterSeconds: finishSeconds,
            };
            record[trainAt] = history[trainAt];
          }
          // One save at a time, in epoch order; the earlier epochs' lines
          // now carry their saves' checkpointSeconds.
          await saves.settle();
          for (let i = 0; i < trainAt; i++) record[i] = history[i];
          // The values are copied to the host now (the next epoch's steps
          // change the tensors); hashing and writing them overlap its
          // training.
          const copyStart = performance.now();
          const snapshot = await snapshotCheckpoint(
            checkpoints,
            "last",
            meta,
            { ...state },
          );
          const copySeconds = (performance.now() - copyStart) / 1000;
          saves.start(async () => {
            const checkpointSeconds = await writeEpoch(
              ctx.runDir,
              snapshot,
              improved,
              record,
              trainAt,
              copySeconds,
              log,
            );
            // Later checkpoints and metrics.jsonl carry it too.
            history[trainAt] = { ...history[trainAt], checkpointSeconds };
          });
        };
        if (syncLater) pendingEpoch = complete;
        else await complete();
      }
      await completePending();
      await saves.settle();
      // Final evaluation with the best weights on every split.
      await loadBest(tf, trainer, checkpoints);
      for (const split of Object.keys(ctx.data.splits)) {
        const r = await trainer.evaluate(
          ctx.data,
          split,
          options.evalBatchSize,
        );
        final[split] = { accuracy: r.accuracy, loss: r.loss };
        log.info(
          `${split} accuracy ${(100 * r.accuracy).toFixed(2)}% (best epoch ${
            best.epoch + 1
          })`,
        );
      }
    } catch (error) {
      // The record of an epoch waiting for the next one's first steps is
      // written, and a save still in flight ends first, so that a stopped
      // run keeps the `last` checkpoint and metrics.jsonl of the epoch it
      // names.
      const unsaved = await completePending().then(
        () => undefined,
        (e: Error) => e,
      );
      if (unsaved) log.error(unsaved.message);
      const failed = await saves.settle().then(
        () => undefined,
        (e: Error) => e,
      );
      if (failed) {
        // An interrupt would claim a checkpoint that is not there: the
        // save's error is the one to show.
        if (error instanceof InterruptedError) throw failed;
        log.error(failed.message);
      }
      throw error;
    } finally {
      trainer.dispose();
    }
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
