/**
 * The tfjs {@linkcode Trainer}: training steps op by op on any tfjs backend
 * ({@linkcode multiviewStep}), metrics summed on the device (read only when
 * asked), evaluation with the tfjs model ({@linkcode evaluate}). The model
 * and the optimizer always hold the current weights, so `sync` reads
 * nothing.
 *
 * @module
 */
import type { Tensor } from "@tensorflow/tfjs";
import type { Tf } from "../pipeline/types.ts";
import type { AmautModel } from "./amaut.ts";
import { createSgd } from "./sgd.ts";
import { multiviewStep } from "./train_step.ts";
import { evaluate } from "./evaluate.ts";
import {
  loadState,
  stateOf,
  type TrainBatch,
  type Trainer,
  type TrainStepSettings,
} from "./trainer.ts";

/**
 * Creates a tfjs trainer for a model, with a fresh SGD optimizer (no
 * momentum buffers until a step with momentum).
 *
 * @param tf TensorFlow.js on the chosen backend.
 * @param model The model to train (updated in place; not disposed by the trainer).
 * @returns The trainer.
 */
export function createTfjsTrainer(tf: Tf, model: AmautModel): Trainer {
  const sgd = createSgd(tf);
  // Sum over steps of the per-view mean loss, and the last view's hits.
  let lossSum: Tensor = tf.scalar(0);
  let hits: Tensor = tf.scalar(0, "int32");
  let steps = 0;
  let clips = 0;
  const step = (batch: TrainBatch, settings: TrainStepSettings) => {
    const labelsT = tf.tensor1d(batch.labels as number[], "int32");
    const { loss, lastLogits } = multiviewStep(
      tf,
      model,
      sgd,
      batch.tokens,
      labelsT,
      batch.views,
      settings,
    );
    const stepHits = tf.tidy(() =>
      tf.equal(tf.argMax(lastLogits, 1), labelsT).sum()
    );
    const nextLoss = tf.tidy(() => lossSum.add(loss.div(batch.views)));
    const nextHits = hits.add(stepHits);
    tf.dispose([lossSum, hits, loss, stepHits, lastLogits, labelsT]);
    lossSum = nextLoss;
    hits = nextHits;
    steps++;
    clips += batch.labels.length;
  };
  return {
    engine: "tfjs",
    model,
    step(batch, settings) {
      return settled(() => step(batch, settings));
    },
    async metrics(reset = true) {
      const m = {
        loss: (await lossSum.data())[0] / Math.max(1, steps),
        accuracy: (await hits.data())[0] / Math.max(1, clips),
        steps,
        clips,
      };
      if (reset) {
        tf.dispose([lossSum, hits]);
        lossSum = tf.scalar(0);
        hits = tf.scalar(0, "int32");
        steps = 0;
        clips = 0;
      }
      return m;
    },
    evaluate(data, split, batchSize) {
      return evaluate({ tf, data }, model, split, batchSize);
    },
    sync() {
      return Promise.resolve(stateOf(model, sgd));
    },
    load(state) {
      return settled(() => loadState(model, sgd, state));
    },
    dispose() {
      tf.dispose([lossSum, hits]);
      sgd.dispose();
    },
  };
}

/** Runs synchronous work as a promise: its throw becomes a rejection. */
function settled(work: () => void): Promise<void> {
  try {
    work();
    return Promise.resolve();
  } catch (e) {
    return Promise.reject(e);
  }
}
