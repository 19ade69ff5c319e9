/**
 * The `test_time_adaptation` step stage (TTDA): AMAuT's unsupervised
 * test-time domain adaptation (reference §9, paper Eqs. 5–9, Table 11).
 *
 * Per epoch it draws shuffled batches of the test split in phase `adapt`
 * (labels are never used for adaptation), so an `augment` entry with
 * `phases: [adapt]` makes the TTDA views. Each view gets its own forward pass
 * in training mode (BatchNorm on batch statistics, embedding dropout active);
 * the views' TTDA losses `α·NM + β·EN + γ·GEN` (see `model/ttda_loss.ts`) are
 * summed, one gradient is taken, the BatchNorm running statistics move
 * towards the batch's, and one SGD step updates *all* parameters with a
 * per-module learning rate: `lr·featureLrDecay` for the feature extractor and
 * transformer (`transform.*`), `lr·classifierLrDecay` for the head
 * (`classifier.*`), times the Eq. 6 schedule with the reference's timing (see
 * {@linkcode ttdaLearningRateFactor}). SGD has the training quirks (§8):
 * momentum and weight decay are off until the scheduler first runs (the
 * first epoch), then 0.9 and 1e-3, coupled; no Nesterov. After every epoch
 * the test split is evaluated (eval mode, running statistics, plain `eval`
 * pipeline) and its accuracy recorded in `ttda_metrics.jsonl`.
 *
 * `engine` picks who runs the steps, as in `train`: on the webgpu backend
 * (`auto` or `fused`) each step is one recorded graph of the fused engine
 * (`gpu/ttda_fused.ts`: same losses, gradients, per-module learning rates,
 * schedule and BatchNorm behaviour; the loss is read once per epoch) and the
 * per-epoch evaluation its eval graph; `tfjs` (and any run on the cpu
 * backend) runs them op by op with tfjs.
 *
 * **The model is adapted in place**: the `model` value the `train` stage
 * provided holds the adapted weights (and re-estimated BatchNorm statistics)
 * afterwards — copying a 100M-parameter model is not cheap. The last epoch's
 * weights are the result (as the reference, which saves the latest weights);
 * the best epoch by test accuracy is reported too but is optimistic, since it
 * is chosen on the very split it is measured on. There is no mid-run
 * checkpoint: a resumed run adapts from scratch.
 *
 * Takes `tokens` (`[b, t, f]` per batch, views stacked view-major) and
 * `model`; provides `ttda` (`{ before, final, best, epochs }`, see
 * {@linkcode TtdaResult}).
 *
 * ```yaml
 * - use: augment
 *   name: ttda_views
 *   phases: [adapt]
 *   with:
 *     views:
 *       - { name: right, chain: [{ type: pad, seconds: 1, position: center }, { type: roll, direction: right }] }
 *       - { name: left, chain: [{ type: pad, seconds: 1, position: center }, { type: roll, direction: left }] }
 * # ... fixed_length, mel, tokenize, train ...
 * - use: test_time_adaptation
 *   with: { epochs: 50, batchSize: 70, lr: 0.0001, featureLrDecay: 0.55, classifierLrDecay: 1.0 }
 * ```
 *
 * @module
 */
import { join } from "node:path";
import * as z from "zod";
import type { Tensor3D } from "@tensorflow/tfjs";
import { defineStage } from "../pipeline/define_stage.ts";
import { writeFileAtomic } from "../pipeline/atomic.ts";
import type { StepContext } from "../pipeline/types.ts";
import type { AmautModel } from "../model/amaut.ts";
import { checkTrainBatchFits } from "../model/eval_chunks.ts";
import { createSgd, referenceSgdOptions } from "../model/sgd.ts";
import type { SgdOptions } from "../model/sgd.ts";
import { tfjsTtdaStep } from "../model/ttda_step.ts";
import { checkSchedule, eq6Decay } from "../model/schedule.ts";
import { evaluate } from "../model/evaluate.ts";
import { engineLabel } from "../model/scorer.ts";
import {
  checkPrecision,
  fusedDevice,
  stagePrecisionUse,
} from "../model/engine_choice.ts";
import { createFusedTtda, type FusedTtda } from "../gpu/ttda_fused.ts";

/** Options of the `test_time_adaptation` stage (defaults: the reference's AM/VS/CS values). */
export const TtdaOptions = z.strictObject({
  epochs: z.int().min(1).default(50).describe(
    "Adaptation epochs (reference: 50; SC2 80)",
  ),
  batchSize: z.int().min(1).default(70).describe(
    "Clips per adaptation batch (each view of a clip is a separate forward pass of this size)",
  ),
  split: z.string().min(1).default("test").describe(
    "Split to adapt on and evaluate after every epoch (the reference adapts on the test split)",
  ),
  phase: z.string().min(1).default("adapt").describe(
    "Phase the adaptation batches are drawn in: map stages listing it (e.g. augment with phases: [adapt]) make the views",
  ),
  lr: z.number().positive().default(1e-4).describe(
    "Base learning rate lr0 before the per-module decays",
  ),
  featureLrDecay: z.number().min(0).default(0.55).describe(
    "lr multiplier of the feature extractor and transformer (transform.*; reference auT_lr_decay: 0.55, SC 0.45)",
  ),
  classifierLrDecay: z.number().min(0).default(1.0).describe(
    "lr multiplier of the classifier head (classifier.*; reference auC_lr_decay: 1.0, SC 0.45)",
  ),
  lrGamma: z.number().min(0).default(30).describe(
    "γ of the schedule lr0·(1 + γ·e/C)^−power (reference TTDA: 30)",
  ),
  lrCardinality: z.int().min(1).default(50).describe(
    "C of the schedule",
  ),
  lrStopBefore: z.int().min(0).default(25).describe(
    "The reference's lr_threshold: the schedule stops updating once the finished epoch e (0-based) reaches C − lrStopBefore",
  ),
  lrPower: z.number().min(0).default(0.75).describe(
    "Power of the schedule (hard-coded 0.75 in the reference)",
  ),
  alpha: z.number().min(0).default(1.0).describe(
    "α, weight of the NM (nuclear-norm surrogate) term; 0 skips it (reference nucnm_rate)",
  ),
  beta: z.number().min(0).default(0.5).describe(
    "β, weight of the EN (entropy) term; 0 skips it (reference ent_rate)",
  ),
  gamma: z.number().min(0).default(0.5).describe(
    "γ, weight of the GEN (Tsallis entropy) term; 0 skips it (reference gent_rate)",
  ),
  q: z.number().positive().default(1.1).refine((q) => q !== 1, {
    message: "q must not be 1 (GEN divides by q − 1)",
  }).describe("q of the GEN term (reference gent_q: 1.1; SC1 0.8)"),
  momentum: z.number().min(0).max(1).default(0.9).describe(
    "SGD momentum once the scheduler has run (the first epoch runs without, as the reference)",
  ),
  weightDecay: z.number().min(0).default(1e-3).describe(
    "Coupled L2 weight decay once the scheduler has run",
  ),
  nesterov: z.boolean().default(false).describe(
    "Nesterov momentum (the reference intends it but never enables it: a typo)",
  ),
  evalBatchSize: z.int().min(1).default(32).describe(
    "Clips per evaluation batch (reference: 32)",
  ),
  engine: z.enum(["auto", "fused", "tfjs"]).default("auto").describe(
    "Engine of the adaptation steps and per-epoch evaluations: fused = each step as one recorded WebGPU graph and evaluations on the fused eval graph (gpu/, far faster), tfjs = the tfjs model op by op; auto = fused on the webgpu backend, tfjs on cpu",
  ),
  precision: z.enum(["fp32", "mixed"]).default("fp32").describe(
    "Numeric precision of the fused adaptation steps and evaluations: fp32 = float32 throughout (the reference's); mixed = f16 matmul operands with f32 accumulation and dynamic loss scaling, as train.precision: mixed (the scale and skipped steps in ttda_metrics.jsonl); needs the fused engine on the webgpu backend and an adapter with shader-f16, else refused. Independent of train.precision",
  ),
});
/** Parsed options of the `test_time_adaptation` stage. */
export type TtdaOptions = z.infer<typeof TtdaOptions>;

/** Schedule settings of {@linkcode ttdaLearningRateFactor}. */
export interface TtdaSchedule {
  /** γ (reference TTDA 30). */
  readonly gamma: number;
  /** C, epochs (reference 50). */
  readonly cardinality: number;
  /** The reference's `lr_threshold` (25): updates stop once `e ≥ C − stopBefore`. */
  readonly stopBefore: number;
  /** Exponent (default 0.75). */
  readonly power?: number;
}

/**
 * Whether the reference's `lr_scheduler` has run before 0-based epoch `k`:
 * it is called after every epoch `e` and returns early (changing nothing,
 * momentum and weight decay included) when `e ≥ C − stopBefore`, so it has
 * run iff `k ≥ 1` and `C − stopBefore ≥ 1`.
 *
 * @param epoch 0-based epoch index.
 * @param schedule C and the threshold.
 */
export function ttdaSchedulerHasRun(
  epoch: number,
  schedule: Pick<TtdaSchedule, "cardinality" | "stopBefore">,
): boolean {
  return epoch >= 1 && schedule.cardinality - schedule.stopBefore >= 1;
}

/**
 * The schedule factor in effect during 0-based epoch `k` of TTDA, with the
 * reference's timing (`lr_scheduler(epoch=e, threshold=T)` after epoch `e`,
 * setting `lr = lr0·(1 + γe/C)^−power` only while `e < C − T`):
 * - `k = 0` (or `C − T ≤ 0`, the scheduler never updating) → 1;
 * - otherwise `(1 + γ·min(k − 1, C − T − 1)/C)^−power`.
 *
 * With γ 30, C 50, T 25: 1 in epochs 0 and 1, then decaying until epoch 25,
 * frozen from there on at `(1 + 30·24/50)^−0.75 ≈ 0.1286`.
 *
 * @param epoch 0-based epoch index (integer ≥ 0).
 * @param schedule γ, C, the threshold T and the power.
 * @returns The factor (dimensionless) that multiplies each parameter's lr0.
 * @throws {RangeError} On an invalid epoch or schedule setting.
 */
export function ttdaLearningRateFactor(
  epoch: number,
  schedule: TtdaSchedule,
): number {
  const { cardinality, stopBefore } = schedule;
  checkSchedule("the TTDA learning rate", epoch, schedule);
  if (!Number.isInteger(stopBefore) || stopBefore < 0) {
    throw new RangeError(
      `Cannot compute the TTDA learning rate: invalid lr threshold ${stopBefore}, must be an integer ≥ 0`,
    );
  }
  if (!ttdaSchedulerHasRun(epoch, schedule)) return 1;
  return eq6Decay(Math.min(epoch - 1, cardinality - stopBefore - 1), schedule);
}

/**
 * The SGD settings in effect during 0-based TTDA epoch `k`: PyTorch defaults
 * (no momentum, no weight decay) until the reference's scheduler first runs,
 * then the given momentum, weight decay and Nesterov (via
 * {@linkcode referenceSgdOptions}).
 *
 * @param epoch 0-based epoch index.
 * @param options Momentum, weight decay, Nesterov, C and the threshold.
 */
export function ttdaSgdOptions(
  epoch: number,
  options: {
    momentum: number;
    weightDecay: number;
    nesterov: boolean;
    cardinality: number;
    stopBefore: number;
  },
): SgdOptions {
  return referenceSgdOptions(
    ttdaSchedulerHasRun(epoch, options) ? epoch : 0,
    options,
  );
}

/**
 * The lr multiplier of a parameter by module: `featureLrDecay` for
 * `transform.*` (CNN, tokens, positional embedding, transformer),
 * `classifierLrDecay` for `classifier.*`.
 *
 * @param name PyTorch state-dict name of the parameter.
 * @param decays The two multipliers.
 * @throws {Error} On a name in neither module.
 */
export function moduleLrDecay(
  name: string,
  decays: { featureLrDecay: number; classifierLrDecay: number },
): number {
  if (name.startsWith("transform.")) return decays.featureLrDecay;
  if (name.startsWith("classifier.")) return decays.classifierLrDecay;
  throw new Error(
    `Cannot pick a TTDA learning rate for parameter "${name}": it is in neither transform.* nor classifier.*`,
  );
}

/** One line of `ttda_metrics.jsonl`. */
export interface TtdaEpochMetrics {
  /** 1-based: adaptation epochs completed (0 would be the model before adaptation). */
  readonly epoch: number;
  /** Test accuracy after this epoch (eval mode), in [0, 1]. */
  readonly accuracy: number;
  /** Mean adaptation loss per batch (summed over views). */
  readonly loss: number;
  /** Mean cross-entropy on the evaluated split (for information; not used). */
  readonly evalLoss: number;
  /** lr of the feature extractor and transformer in this epoch. */
  readonly featureLr: number;
  /** lr of the classifier in this epoch. */
  readonly classifierLr: number;
  /** SGD momentum and weight decay in this epoch. */
  readonly momentum: number;
  readonly weightDecay: number;
  readonly seconds: number;
  /** `tf.memory().numTensors` when the epoch started (a leak shows as growth). */
  readonly tensorsAtStart: number;
  /** SGD momentum buffers held after the epoch. */
  readonly momentumBuffers: number;
  /** `precision: mixed`: the loss scale at the epoch's end. */
  readonly lossScale?: number;
  /** `precision: mixed`: steps skipped for inf/NaN gradients since adaptation started. */
  readonly skippedSteps?: number;
}

/** What the stage provides as `ttda`. */
export interface TtdaResult {
  /** Accuracy and cross-entropy on the split before adaptation (epoch 0). */
  readonly before: { epoch: 0; accuracy: number; loss: number };
  /** After the last epoch: the weights the model holds now. */
  readonly final: { epoch: number; accuracy: number };
  /** The epoch with the highest test accuracy (ties: the later); optimistic. */
  readonly best: {
    epoch: number;
    accuracy: number;
    note: "chosen by test accuracy: optimistic";
  };
  readonly split: string;
  readonly epochs: readonly TtdaEpochMetrics[];
}

function modelOf(ctx: StepContext): AmautModel {
  const model = ctx.values.model as AmautModel | undefined;
  if (
    !model || !(model.params instanceof Map) ||
    typeof model.apply !== "function"
  ) {
    throw new Error(
      "Cannot adapt: no trained model (put a train stage before test_time_adaptation)",
    );
  }
  return model;
}

const pct = (x: number) => `${(100 * x).toFixed(2)}%`;

/**
 * The fused adapter for `engine` on the webgpu backend (`auto` or `fused`),
 * undefined for the tfjs path.
 *
 * @throws {Error} For `fused` on a backend other than webgpu, and for
 *   `precision: mixed` where it cannot run.
 */
async function fusedFor(
  ctx: StepContext,
  model: AmautModel,
  engine: TtdaOptions["engine"],
  precision: TtdaOptions["precision"],
): Promise<FusedTtda | undefined> {
  const device = fusedDevice(ctx.tf, engine, "adapt");
  checkPrecision(
    ctx.tf,
    engine,
    precision,
    device,
    stagePrecisionUse(ctx.stageName, "adapt"),
  );
  if (!device) return undefined;
  return await createFusedTtda(ctx.tf, model, { device, precision });
}

/** The `test_time_adaptation` stage. */
export const stage = defineStage<TtdaOptions>({
  id: "test_time_adaptation",
  version: "1.0.0",
  api: 1,
  kind: "step",
  summary:
    "Adapt a trained model to the test split without labels (TTDA: NM + EN + GEN losses)",
  options: TtdaOptions,
  takes: ["tokens", "model"],
  provides: ["ttda"],
  // A resume may switch engines (same function; TTDA restarts anyway).
  resumeMayChange: { engine: "any", precision: "any" },
  async run(options, ctx) {
    const { tf, log } = ctx;
    const model = modelOf(ctx);
    const { split } = options;
    if (!(split in ctx.data.splits)) {
      throw new Error(
        `Cannot adapt on split "${split}": the dataset has splits ${
          Object.keys(ctx.data.splits).map((s) => `"${s}"`).join(", ")
        }`,
      );
    }
    const schedule: TtdaSchedule = {
      gamma: options.lrGamma,
      cardinality: options.lrCardinality,
      stopBefore: options.lrStopBefore,
      power: options.lrPower,
    };
    const decayOf = new Map(
      [...model.params.keys()].map((n) => [n, moduleLrDecay(n, options)]),
    );
    // Parameters with lr 0 never change: leave them out of the gradient.
    if (![...decayOf.values()].some((d) => d > 0)) {
      throw new Error(
        "Cannot adapt: featureLrDecay and classifierLrDecay are both 0, so no parameter would change",
      );
    }
    const rates = {
      alpha: options.alpha,
      beta: options.beta,
      gamma: options.gamma,
      q: options.q,
    };
    const metricsFile = join(ctx.runDir, "ttda_metrics.jsonl");

    const fused = await fusedFor(
      ctx,
      model,
      options.engine,
      options.precision,
    );
    const evalReads = {
      batchSize: options.evalBatchSize,
      phase: "eval",
      shuffle: false,
    } as const;
    const adaptReads = (k: number) =>
      ({
        batchSize: options.batchSize,
        phase: options.phase,
        epoch: k,
        shuffle: true,
      }) as const;
    const evaluateNow = () =>
      fused
        ? fused.evaluate(ctx.data, split, options.evalBatchSize)
        : evaluate(ctx, model, split, options.evalBatchSize);
    log.info(
      `TTDA engine: ${
        fused
          ? `fused WebGPU graph${
            options.precision === "mixed"
              ? " (mixed precision: f16 matmul operands, dynamic loss scaling)"
              : ""
          }`
          : "tfjs (op by op)"
      }`,
    );
    log.info(
      `TTDA evaluations: scored on ${
        engineLabel({
          engine: fused ? "fused" : "tfjs",
          precision: options.precision,
        })
      }`,
    );
    // The first epoch's clips decode while the GPU scores the model before.
    ctx.data.prefetch?.(split, evalReads);
    if (options.epochs > 0) ctx.data.prefetch?.(split, adaptReads(0));
    const pre = await evaluateNow().catch((e) => {
      fused?.dispose();
      throw e;
    });
    const before = {
      epoch: 0 as const,
      accuracy: pre.accuracy,
      loss: pre.loss,
    };
    log.info(
      `TTDA on "${split}" (${
        ctx.data.splits[split]
      } clips), ${options.epochs} epochs: before adaptation ${
        pct(before.accuracy)
      }; the model is adapted in place`,
    );

    const history: TtdaEpochMetrics[] = [];
    let best = { epoch: 0, accuracy: -Infinity };
    const sgd = createSgd(tf);
    let warnedViews = false;
    try {
      for (let k = 0; k < options.epochs; k++) {
        const factor = ttdaLearningRateFactor(k, schedule);
        const base = options.lr * factor;
        const sgdOptions = ttdaSgdOptions(k, {
          ...options,
          cardinality: options.lrCardinality,
          stopBefore: options.lrStopBefore,
        });
        const lrOf = (name: string) => base * decayOf.get(name)!;
        const epochStart = performance.now();
        const startTensors = tf.memory().numTensors;
        const bar = ctx.progress({
          label: `TTDA epoch ${k + 1}/${options.epochs}`,
          total: ctx.data.splits[split],
          unit: "clips",
        });
        let lossSum = 0;
        let step = 0;
        // The clips of this epoch's evaluation and of the next epoch's
        // first batches are decoded while the GPU adapts, after this
        // epoch's own (the workers take requests in order).
        ctx.data.prefetch?.(split, adaptReads(k));
        ctx.data.prefetch?.(split, evalReads);
        if (k + 1 < options.epochs) {
          ctx.data.prefetch?.(split, adaptReads(k + 1));
        }
        for await (const batch of ctx.data.batches(split, adaptReads(k))) {
          const names = batch.viewNames as string[] | undefined;
          const views = names?.length ?? 1;
          if (!warnedViews) {
            warnedViews = true;
            const msg = `TTDA views: ${
              names ? names.join(", ") : "none (one unaugmented pass)"
            }`;
            if (views === 1) {
              log.warn(
                `${msg}; the reference uses 2 (add an augment entry with phases: [${options.phase}])`,
              );
            } else log.info(msg);
          }
          const b = batch.size / views;
          const tokens = batch.tokens as Tensor3D;
          if (!tokens || tokens.rank !== 3) {
            throw new Error(
              "Cannot adapt: tokens must be a [b, frames, nMels] tensor (put tokenize before test_time_adaptation)",
            );
          }
          const rng = ctx.rng.child("dropout", k, step);
          if (fused) {
            // Enqueued; the loss is read (and checked) once per epoch.
            await fused.step(tokens, views, {
              rates,
              lr: lrOf,
              sgd: sgdOptions,
              seed: rng.int(0x7fffffff),
            });
            step++;
            bar.tick(b);
            await ctx.boundary();
            continue;
          }
          // A training step cannot be chunked (BatchNorm's batch statistics):
          // say how far to lower the batch instead of failing on the GPU.
          checkTrainBatchFits(
            tf,
            model,
            b,
            tokens.shape[1],
            "test_time_adaptation.batchSize",
          );
          const l = await tfjsTtdaStep(tf, model, sgd, tokens, views, {
            rates,
            lr: lrOf,
            sgd: sgdOptions,
            rng,
            // A failed readback only says "validation error occurred": name
            // the GPU error behind it (e.g. out of memory) when one was recorded.
            onReadError: (error) => {
              try {
                ctx.backend.checkErrors();
              } catch (gpu) {
                throw new Error(
                  `Cannot take TTDA step ${step + 1} of epoch ${
                    k + 1
                  } on ${views} view(s) of ${b} clips: ${
                    (gpu as Error).message
                  }; lower test_time_adaptation.batchSize (the tfjs step keeps every activation of one view for its gradient)`,
                  { cause: gpu },
                );
              }
              throw error;
            },
            check: (l) => {
              if (!Number.isFinite(l)) {
                throw new Error(
                  `Cannot continue test-time adaptation: the loss is ${l} at epoch ${
                    k + 1
                  }, step ${
                    step + 1
                  }; this step was not applied, but the model was adapted in place by the earlier ones (try a lower lr)`,
                );
              }
            },
          });
          lossSum += l;
          step++;
          bar.tick(b, { loss: lossSum / step });
          await ctx.boundary(); // a Ctrl-C stops here; TTDA keeps no checkpoint
        }
        let scaling: { lossScale: number; skippedSteps: number } | undefined;
        if (fused) {
          const read = await fused.loss();
          lossSum = read.lossSum;
          if (read.lossScale) {
            scaling = {
              lossScale: read.lossScale.lossScale,
              skippedSteps: read.lossScale.skippedSteps,
            };
          }
          if (step && !Number.isFinite(lossSum)) {
            throw new Error(
              `Cannot continue test-time adaptation: the loss is ${lossSum} in epoch ${
                k + 1
              }; the model was adapted in place by this epoch's steps (try a lower lr)`,
            );
          }
        }
        const loss = step ? lossSum / step : NaN;
        bar.done({ loss });
        const seconds = (performance.now() - epochStart) / 1000;
        const evaluation = await evaluateNow();
        const line: TtdaEpochMetrics = {
          epoch: k + 1,
          accuracy: evaluation.accuracy,
          loss,
          evalLoss: evaluation.loss,
          featureLr: base * options.featureLrDecay,
          classifierLr: base * options.classifierLrDecay,
          momentum: sgdOptions.momentum,
          weightDecay: sgdOptions.weightDecay,
          seconds,
          tensorsAtStart: startTensors,
          momentumBuffers: fused ? fused.momentumBuffers() : sgd.buffers.size,
          ...scaling,
        };
        history.push(line);
        if (evaluation.accuracy >= best.accuracy) {
          best = { epoch: k + 1, accuracy: evaluation.accuracy };
        }
        log.info(
          `TTDA epoch ${k + 1}/${options.epochs}: loss ${
            loss.toFixed(4)
          }, ${split} accuracy ${pct(evaluation.accuracy)}, lr ${
            line.featureLr.toExponential(3)
          } (features) / ${line.classifierLr.toExponential(3)} (classifier)${
            scaling
              ? `, loss scale ${scaling.lossScale} (${scaling.skippedSteps} steps skipped)`
              : ""
          }`,
        );
        await writeFileAtomic(
          metricsFile,
          history.map((m) => JSON.stringify(m)).join("\n") + "\n",
        );
      }
    } finally {
      sgd.dispose();
      if (fused) {
        // The model value holds the adapted weights, as on the tfjs path.
        try {
          await fused.sync();
        } finally {
          fused.dispose();
        }
      }
    }

    const last = history[history.length - 1];
    const ttda: TtdaResult = {
      before,
      final: { epoch: last.epoch, accuracy: last.accuracy },
      best: {
        epoch: best.epoch,
        accuracy: best.accuracy,
        note: "chosen by test accuracy: optimistic",
      },
      split,
      epochs: history,
    };
    log.info(
      `TTDA final (epoch ${last.epoch}, the weights kept): ${split} accuracy ${
        pct(last.accuracy)
      } (before: ${pct(before.accuracy)})`,
    );
    log.info(
      `TTDA best epoch by ${split} accuracy (epoch ${best.epoch}): ${
        pct(best.accuracy)
      } — optimistic: chosen on the split it is measured on; report the final number`,
    );
    return { ttda };
  },
});
