/**
 * The trainer interface: one training engine behind four calls, so the
 * `train` stage's loop is the same whichever engine runs the steps.
 * `step` runs (or enqueues) one multiview training step, `metrics` reads the
 * training loss and accuracy summed since the last reset, `evaluate` scores a
 * split with the engine's current weights, and `sync` brings the tfjs model
 * and optimizer up to date and returns them as checkpoint groups; `load`
 * goes the other way (resume, best weights).
 *
 * Implementations: {@linkcode createTfjsTrainer} (`model/trainer_tfjs.ts`,
 * op by op on any tfjs backend) and `createFusedTrainer`
 * (`gpu/trainer_fused.ts`, whole steps as recorded WebGPU graphs).
 *
 * @module
 */
import type { Tensor, Tensor3D, Variable } from "@tensorflow/tfjs";
import type { Batch, DataAccess } from "../pipeline/types.ts";
import type { AmautModel } from "./amaut.ts";
import type { Sgd } from "./sgd.ts";
import type { StepSettings } from "./train_step.ts";
import type { Evaluation } from "./evaluate.ts";
import { LOSS_SCALE_CHECKPOINT_KEY } from "./loss_scale.ts";

/** One training batch: views stacked view-major, labels of one view. */
export interface TrainBatch {
  /** `[views·clips, frames, nMels]`, views stacked view-major. */
  readonly tokens: Tensor3D;
  /** Labels of one view (`clips` ints; every view shares them). */
  readonly labels: readonly number[];
  /** Number of views V. */
  readonly views: number;
}

/**
 * Settings of one training step: `multiviewStep`'s (label
 * smoothing, learning rate, SGD options, dropout randomness). The tfjs
 * trainer draws view v's dropout from `rng.child(v)`, the fused trainer one
 * u32 mask seed from `rng`.
 */
export type TrainStepSettings = StepSettings;

/** Training metrics summed since the last reset. */
export interface TrainMetrics {
  /** Mean over steps of the per-view mean label-smoothed loss (0 before any step). */
  readonly loss: number;
  /** Fraction of clips the last view of each step predicted right (0 before any step). */
  readonly accuracy: number;
  /** Steps taken. */
  readonly steps: number;
  /** Clips trained on (one view's worth per step). */
  readonly clips: number;
  /** Mixed precision: the loss scale after the last step (dimensionless). */
  readonly lossScale?: number;
  /** Mixed precision: steps skipped for inf/NaN gradients since the run started. */
  readonly skippedSteps?: number;
}

/**
 * Model and optimizer tensors by group, as checkpoints store them:
 * `params` and `buffers` by state-dict name, `optimizer` the SGD momentum
 * buffers by parameter name.
 */
export interface TrainerState {
  readonly params: ReadonlyMap<string, Tensor>;
  readonly buffers: ReadonlyMap<string, Tensor>;
  readonly optimizer: ReadonlyMap<string, Tensor>;
}

/** A training engine holding a model and its optimizer. */
export interface Trainer {
  /** Which engine runs the steps. */
  readonly engine: "tfjs" | "fused";
  /** The tfjs model; it holds the trained weights after {@linkcode Trainer.sync}. */
  readonly model: AmautModel;
  /**
   * Runs (tfjs) or enqueues (fused) one training step: a forward and
   * backward pass per view, BatchNorm running-statistics updates, one SGD
   * step on the summed gradient.
   */
  step(batch: TrainBatch, settings: TrainStepSettings): Promise<void>;
  /**
   * Reads the training metrics summed since the last reset (a device read:
   * it waits for the enqueued steps).
   *
   * @param reset Start the sums afresh after reading (default true).
   */
  metrics(reset?: boolean): Promise<TrainMetrics>;
  /**
   * Eval-mode loss and accuracy of the current weights on a split.
   *
   * @param data The batched data.
   * @param split Split name.
   * @param batchSize Clips per evaluation batch.
   */
  evaluate(
    data: DataAccess,
    split: string,
    batchSize: number,
  ): Promise<Evaluation>;
  /**
   * Copies the engine's weights, running statistics and momentum into the
   * tfjs model and optimizer (a no-op for the tfjs engine) and returns them
   * as checkpoint groups (owned by the trainer: do not dispose).
   */
  sync(): Promise<TrainerState>;
  /**
   * {@linkcode sync} in two parts, for engines that can snapshot their
   * state apart from the tfjs model (the fused engine; absent elsewhere):
   * takes the snapshot now and returns the function that puts it into the
   * tfjs model and returns it. Steps taken in between do not change what it
   * returns, and run on the GPU while its host copy runs. Call the function
   * before the next sync, load or dispose.
   */
  readonly syncLater?: () => Promise<() => Promise<TrainerState>>;
  /**
   * Replaces the weights and running statistics (and, when given, the
   * momentum buffers) with copies of `state`'s; the caller keeps ownership
   * of the tensors it passes.
   *
   * @throws {Error} Naming a parameter or buffer `state` lacks.
   */
  load(state: LoadableState): Promise<void>;
  /** Frees the engine and the optimizer's buffers (not the model). */
  dispose(): void;
}

/** What {@linkcode Trainer.load} takes: a checkpoint's groups; `optimizer` optional. */
export interface LoadableState {
  readonly params: ReadonlyMap<string, Tensor>;
  readonly buffers: ReadonlyMap<string, Tensor>;
  readonly optimizer?: ReadonlyMap<string, Tensor>;
}

/**
 * The training view of a pipeline batch: the `tokens` as they come (views
 * stacked view-major by `augment`) and one view's labels.
 *
 * @param batch A `fit`-phase batch with `tokens` and `label`.
 * @returns Tokens, one view's labels, and the view count.
 */
export function trainBatch(batch: Batch): TrainBatch {
  const views = (batch.viewNames as string[] | undefined)?.length ?? 1;
  const clips = batch.size / views;
  return {
    tokens: batch.tokens as Tensor3D,
    labels: (batch.label as number[]).slice(0, clips),
    views,
  };
}

/**
 * Copies `state` into the model's variables and (when it has `optimizer`)
 * the optimizer: the shared half of {@linkcode Trainer.load}.
 *
 * @param model The model whose variables are assigned.
 * @param sgd The optimizer (it copies the momentum buffers).
 * @param state The values; the caller keeps ownership.
 * @throws {Error} Naming a parameter or buffer `state` lacks (nothing is
 *   assigned then).
 */
export function loadState(
  model: AmautModel,
  sgd: Sgd,
  state: LoadableState,
): void {
  assignWeights(
    model,
    state,
    (group, name) =>
      `Cannot restore ${
        group === "params" ? "parameter" : "buffer"
      } "${name}": the checkpoint lacks it`,
  );
  if (state.optimizer) {
    // the loss-scaling state (mixed precision) is no momentum buffer
    sgd.load(
      new Map(
        [...state.optimizer].filter(([name]) =>
          name !== LOSS_SCALE_CHECKPOINT_KEY
        ),
      ),
    );
  }
}

/**
 * The model's and optimizer's tensors as checkpoint groups.
 *
 * @param model The model.
 * @param sgd Its optimizer.
 */
export function stateOf(model: AmautModel, sgd: Sgd): TrainerState {
  return {
    params: model.params as ReadonlyMap<string, Tensor>,
    buffers: model.buffers as ReadonlyMap<string, Tensor>,
    optimizer: sgd.buffers,
  };
}

/**
 * Copies a checkpoint's parameters and buffers into the model's variables,
 * after checking that every one is there (a refused state changes nothing).
 *
 * @param model The model whose variables are assigned.
 * @param groups The values by group; the caller keeps ownership.
 * @param missing The error text for a variable `groups` lacks.
 * @throws {Error} With `missing`'s text for the first variable lacking.
 */
export function assignWeights(
  model: AmautModel,
  groups: Readonly<
    Partial<Record<"params" | "buffers", ReadonlyMap<string, Tensor>>>
  >,
  missing: (group: "params" | "buffers", name: string) => string,
): void {
  const pairs = (["params", "buffers"] as const).flatMap((group) =>
    [...model[group]].map(([name, v]): [Variable, Tensor] => {
      const t = groups[group]?.get(name);
      if (!t) throw new Error(missing(group, name));
      return [v, t];
    })
  );
  // A variable given as its own value stays as it is: tfjs's `assign` frees
  // the old data before taking the new, so a self-assignment would leave the
  // variable pointing at freed memory (the fused trainer's `sync` hands over
  // the model's own variables).
  for (const [v, t] of pairs) if (t.dataId !== v.dataId) v.assign(t);
}

/**
 * A trainer that starts on `primary` (the fused engine) and moves to the
 * trainer `fallback` makes when `primary`'s first step fails in a way
 * `movable` accepts (a graph the device's limits cannot hold: the failure
 * comes while recording, before anything ran), carrying the state over
 * (weights, running statistics, momentum of a resumed run). Later failures,
 * and the first one when `movable` refuses it, are thrown as they are.
 *
 * @param primary The trainer to try first.
 * @param fallback Makes the other trainer (once, when needed).
 * @param movable Whether a first-step error allows the move.
 * @param note Receives one line when the move happens.
 */
export function withFallback(
  primary: Trainer,
  fallback: () => Trainer | Promise<Trainer>,
  movable: (error: unknown) => boolean,
  note: (line: string) => void,
): Trainer {
  let current = primary;
  let stepped = false;
  const wrapper: Trainer = {
    get engine() {
      return current.engine;
    },
    get model() {
      return current.model;
    },
    async step(batch, settings) {
      if (stepped) return await current.step(batch, settings);
      try {
        await current.step(batch, settings);
      } catch (error) {
        if (current !== primary || !movable(error)) throw error;
        const state = await primary.sync();
        const next = await fallback();
        await next.load(state);
        primary.dispose();
        current = next;
        note(
          `engine: the ${primary.engine} engine cannot run this model here (${
            (error as Error).message
          }); training on the ${next.engine} engine instead`,
        );
        await current.step(batch, settings);
      }
      stepped = true;
    },
    metrics: (reset) => current.metrics(reset),
    evaluate: (data, split, batchSize) =>
      current.evaluate(data, split, batchSize),
    sync: () => current.sync(),
    // Only while the current trainer has it (the tfjs one does not).
    get syncLater() {
      return current.syncLater;
    },
    load: (state) => current.load(state),
    dispose: () => current.dispose(),
  };
  return wrapper;
}
