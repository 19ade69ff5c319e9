/**
 * Test-time domain adaptation on the fused WebGPU engine (issue 14): the
 * `test_time_adaptation` stage's step — every view's forward in training
 * mode, the TTDA loss `α·NM + β·EN + γ·GEN` summed over the views, one
 * backward, the running statistics in view order, SGD with a learning rate
 * per parameter — as one recorded graph per batch shape
 * ({@linkcode FusedEngine.ttdaStep}), and the per-epoch evaluation as the
 * engine's eval graph. The weights live on the GPU while adapting;
 * {@linkcode FusedTtda.sync} copies them and the running statistics into the
 * tfjs model. In mixed precision (`precision: "mixed"`) the step's matmuls
 * take f16 operands with f32 accumulation and the loss is scaled dynamically,
 * as in training: a step with inf/NaN gradients is skipped and the scale
 * lowered ({@linkcode FusedTtda.loss} reports both).
 *
 * @module
 */
import type { Tensor3D } from "@tensorflow/tfjs";
import type { DataAccess, Tf } from "../pipeline/types.ts";
import type { AmautModel } from "../model/amaut.ts";
import type { Evaluation } from "../model/evaluate.ts";
import type { Precision } from "../model/engine_choice.ts";
import type { LossScaleMetrics } from "./loss_scale.ts";
import { evaluateEngine } from "../model/scorer.ts";
import {
  createFusedEngine,
  type FusedEngine,
  type FusedTtdaSettings,
} from "./engine.ts";

/** A model being adapted on the fused engine. */
export interface FusedTtda {
  /**
   * Enqueues one TTDA step (returns at once; nothing is read back).
   *
   * @param tokens `[views·perView, frames, nMels]`, views stacked view-major.
   * @param views Number of views V.
   * @param settings Loss rates, learning rate per parameter name, SGD options, dropout seed.
   */
  step(
    tokens: Tensor3D | Float32Array,
    views: number,
    settings: FusedTtdaSettings,
  ): Promise<void>;
  /**
   * Reads and resets the losses since the last read.
   *
   * @returns The sum over steps of each step's loss (summed over views), the
   *   steps, and in mixed precision the loss scale after the last step and
   *   the steps skipped since adaptation started.
   */
  loss(): Promise<
    { lossSum: number; steps: number; lossScale?: LossScaleMetrics }
  >;
  /** Momentum buffers the engine's optimizer holds (one per trained tensor once momentum ran, else 0). */
  momentumBuffers(): number;
  /** Accuracy and mean cross-entropy of a split with the current weights (eval graph, running statistics). */
  evaluate(
    data: DataAccess,
    split: string,
    batchSize: number,
  ): Promise<Evaluation>;
  /** Copies the adapted weights and running statistics into the tfjs model. */
  sync(): Promise<void>;
  /** Frees the engine (not the model). */
  dispose(): void;
}

/**
 * Puts a model on a fused engine for adaptation, with a fresh optimizer (no
 * momentum until a step asks for it, as the tfjs stage's new `createSgd`).
 *
 * @param tf TensorFlow.js (reads and writes the tfjs model's tensors).
 * @param model The model to adapt (receives the weights on `sync`).
 * @param options `device`: a WebGPU device (default: tfjs's, on the webgpu
 *   backend); `precision`: `fp32` (default) or `mixed` (f16 matmul operands,
 *   f32 accumulation, dynamic loss scaling with PyTorch GradScaler's defaults).
 * @returns The adapter.
 * @throws {Error} Without a WebGPU device; in mixed precision on a device
 *   without `shader-f16`.
 */
export async function createFusedTtda(
  tf: Tf,
  model: AmautModel,
  options: { device?: GPUDevice; precision?: Precision } = {},
): Promise<FusedTtda> {
  const engine: FusedEngine = createFusedEngine(
    tf,
    model.options,
    model.dims,
    options.device,
    { precision: options.precision ?? "fp32" },
  );
  try {
    await engine.upload(model);
  } catch (e) {
    engine.destroy();
    throw e;
  }
  let steps = 0;
  let momentum = false;
  const trained = engine.arenas.slots.filter((s) => s.trained).length;
  return {
    async step(tokens, views, settings) {
      const rows = tokens instanceof Float32Array
        ? tokens.length / (model.dims.frames * model.dims.nMels)
        : tokens.shape[0];
      if (!Number.isInteger(rows / views) || rows % views !== 0) {
        throw new RangeError(
          `Cannot run a fused TTDA step: ${rows} clips do not split into ${views} views`,
        );
      }
      await engine.ttdaStep(tokens, views, rows / views, settings);
      if (settings.sgd.momentum !== 0) momentum = true;
      steps++;
    },
    async loss() {
      const m = await engine.metrics(true);
      const out = {
        lossSum: m.lossSum,
        steps,
        ...(m.lossScale ? { lossScale: m.lossScale } : {}),
      };
      steps = 0;
      return out;
    },
    momentumBuffers: () => momentum ? trained : 0,
    evaluate(data, split, batchSize) {
      // Batches back to back on the eval graph, one readback per group.
      return evaluateEngine(engine, model.dims.classes, data, split, batchSize);
    },
    async sync() {
      await engine.download(model);
    },
    dispose() {
      engine.destroy();
    },
  };
}
