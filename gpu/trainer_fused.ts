/**
 * The fused WebGPU {@linkcode Trainer}: training steps and eval forwards run
 * on a {@linkcode FusedEngine} (whole steps as recorded dispatch lists, one
 * submit each, nothing read back until asked). The weights live on the GPU
 * while training; `sync` copies them, the running statistics and the
 * momentum back into the tfjs model and optimizer (for checkpoints and later
 * stages), `load` copies a checkpoint's up. In mixed precision the
 * loss-scaling state travels with the optimizer state (the `optimizer`
 * group's `lossScale` entry, `model/loss_scale.ts`), so a resume continues
 * it, and `metrics` reports the scale and the skipped steps.
 *
 * @module
 */
import type { Tf } from "../pipeline/types.ts";
import type { AmautModel } from "../model/amaut.ts";
import { createSgd } from "../model/sgd.ts";
import { evaluateEngine } from "../model/scorer.ts";
import { loadState, stateOf, type Trainer } from "../model/trainer.ts";
import {
  LOSS_SCALE_CHECKPOINT_KEY,
  lossScaleFromValues,
  lossScaleToValues,
} from "../model/loss_scale.ts";
import type { Tensor } from "@tensorflow/tfjs";
import {
  createFusedEngine,
  type EngineSettings,
  type FusedEngine,
} from "./engine.ts";

/** Options of {@linkcode createFusedTrainer}. */
export interface FusedTrainerOptions {
  /** A WebGPU device; default: tfjs's WebGPU device (the webgpu backend). */
  readonly device?: GPUDevice;
  /** Graph choices of the engine (see {@linkcode createFusedEngine}). */
  readonly engine?: EngineSettings;
  /** Receives one line after the first step: the dispatches per step. */
  readonly log?: (line: string) => void;
}

/**
 * Creates a fused trainer: an engine for the model's structure, with the
 * model's weights and a fresh SGD optimizer (no momentum) uploaded.
 *
 * @param tf TensorFlow.js (reads and writes the tfjs model's tensors).
 * @param model The model to train (receives the weights on `sync`; not disposed by the trainer).
 * @param options Device, engine settings, log.
 * @returns The trainer.
 * @throws {Error} Without a WebGPU device.
 */
export async function createFusedTrainer(
  tf: Tf,
  model: AmautModel,
  options: FusedTrainerOptions = {},
): Promise<Trainer> {
  const sgd = createSgd(tf);
  let engine: FusedEngine;
  try {
    engine = createFusedEngine(
      tf,
      model.options,
      model.dims,
      options.device,
      options.engine,
    );
    await engine.upload(model, sgd);
  } catch (e) {
    sgd.dispose();
    throw e;
  }
  let steps = 0;
  let clips = 0;
  let views = 1;
  let stepped = false;
  // the loss-scaling state of the last sync (mixed precision), owned here
  let scaleTensor: Tensor | undefined;
  // The snapshot is taken now (the arenas and the loss-scaling state, one
  // map); the returned function puts it into the tfjs model.
  const syncLater = async () => {
    const put = await engine.downloadLater(model, sgd);
    return () => {
      const scale = put();
      const state = stateOf(model, sgd);
      if (!scale) return Promise.resolve(state);
      scaleTensor?.dispose();
      scaleTensor = tf.keep(
        tf.tensor1d(lossScaleToValues(scale), "float32"),
      );
      return Promise.resolve({
        ...state,
        optimizer: new Map([
          ...state.optimizer,
          [LOSS_SCALE_CHECKPOINT_KEY, scaleTensor],
        ]),
      });
    };
  };
  return {
    engine: "fused",
    model,
    async step(batch, settings) {
      await engine.step(batch.tokens, batch.labels, batch.views, {
        smoothing: settings.smoothing,
        lr: settings.lr,
        sgd: settings.sgd,
        seed: settings.rng.int(0x7fffffff),
      });
      if (!stepped) {
        stepped = true;
        options.log?.(
          `engine: fused WebGPU graph, ${
            engine.counts(batch.views, batch.labels.length).total
          } dispatches per step`,
        );
      }
      steps++;
      clips += batch.labels.length;
      views = batch.views;
    },
    async metrics(reset = true) {
      const m = await engine.metrics(reset);
      const out = {
        // The engine sums each step's summed-over-views mean loss.
        loss: m.lossSum / views / Math.max(1, steps),
        accuracy: m.correct / Math.max(1, m.count),
        steps,
        clips,
        ...(m.lossScale && {
          lossScale: m.lossScale.lossScale,
          skippedSteps: m.lossScale.skippedSteps,
        }),
      };
      if (reset) {
        steps = 0;
        clips = 0;
      }
      return out;
    },
    evaluate(data, split, batchSize) {
      // Batches back to back on the eval graph, one readback per group.
      return evaluateEngine(engine, model.dims.classes, data, split, batchSize);
    },
    async sync() {
      return await (await syncLater())();
    },
    syncLater,
    async load(state) {
      const saved = state.optimizer?.get(LOSS_SCALE_CHECKPOINT_KEY);
      const scale = saved && engine.precision === "mixed"
        ? lossScaleFromValues(await saved.data(), "the checkpoint")
        : undefined;
      loadState(model, sgd, state);
      await engine.upload(model, state.optimizer ? sgd : undefined);
      if (scale) engine.setLossScaleState(scale);
    },
    dispose() {
      engine.destroy();
      sgd.dispose();
      scaleTensor?.dispose();
    },
  };
}
