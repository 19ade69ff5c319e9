/**
 * The AMAuT audio classifier in TensorFlow.js, a faithful port of the
 * authors' `FCETransform` + `AudioClassifier`/`FCEClassifier` (reference
 * §3–§6; GitHub `Andy-Shao/AMAuT` at `1c565c2`, `AuT/lib/model.py`,
 * `AuT/lib/embed.py`):
 *
 * 1. a 1-D ResNet over time with the mel bins as channels — weight-standardised
 *    root conv + BatchNorm + ReLU + max-pool, then post-activation
 *    bottleneck blocks (1x1, k7, 1x1) in groups, every group after the first
 *    halving the length — and a plain 1x1 conv to `embedDim`, giving K tokens;
 * 2. `[CLS, t_1 … t_K, TAL]` plus a learnable positional embedding, dropout;
 * 3. pre-norm transformer blocks (full attention, exact GELU) — by default with
 *    the authors' unused `ffn_norm` (the MLP sees the raw residual stream) —
 *    and a final LayerNorm;
 * 4. the `avg` head (mean over all tokens, fc, fc, BatchNorm, weight-normalised
 *    fc) for 1 s inputs, or the `fce` head (conv k15 over the embedding axis of
 *    the CLS/TAL pair, LayerNorm, fc) for longer ones.
 *
 * The forward walks the layer list of the model description
 * ({@linkcode modelPlan}, `model/plan.ts`: names, shapes, geometry) with one
 * function per layer kind (`model/forward.ts`), as the fused WebGPU engine
 * does (`gpu/graph/`).
 *
 * Input is `tokens` `[b, t, f]` (NWC, from the `tokenize` stage); output is
 * `logits` `[b, n]`. Parameters are keyed by their PyTorch state-dict names so
 * checkpoints move both ways ({@linkcode loadStateDict},
 * {@linkcode exportStateDict}); parity with the reference is tested against
 * PyTorch fixtures to 1e-4 (logits, loss) and 1e-3 (every gradient).
 *
 * ```ts
 * import assert from "node:assert/strict";
 * import * as tf from "@tensorflow/tfjs";
 * import { createRng } from "../pipeline/rng.ts";
 * import { createModel, ModelOptions } from "./amaut.ts";
 * await tf.setBackend("cpu");
 * const options = ModelOptions.parse({
 *   width: 4, groups: [0, 0], embedDim: 16, depth: 1, heads: 2, mlpDim: 32,
 *   extend: 16, conv: 8,
 * });
 * const model = createModel(tf, options, { nMels: 8, frames: 32, classes: 3 }, createRng("doc", 0));
 * const { logits } = model.apply(tf.zeros([2, 32, 8]), { training: false });
 * assert.deepEqual(logits.shape, [2, 3]);
 * logits.dispose();
 * model.dispose();
 * ```
 *
 * @module
 */
import type {
  Tensor,
  Tensor1D,
  Tensor2D,
  Tensor3D,
  Variable,
} from "@tensorflow/tfjs";
import type { Tf } from "../pipeline/types.ts";
import type { Rng } from "../pipeline/rng.ts";
import {
  type ModelDims,
  type ModelOptions,
  modelPlan,
  modelSummary,
  shapeSize,
  type TensorSpec,
} from "./config.ts";
import { batchNorm, type BatchStat } from "./layers.ts";
import { type ForwardContext, layerForward } from "./forward.ts";

export {
  type LayerSummary,
  type Layout,
  type ModelDims,
  ModelOptions,
  modelPlan,
  modelSummary,
  PAPER_MODELS,
  type PaperModel,
  parameterCount,
} from "./config.ts";
export type { BatchStat } from "./layers.ts";
export { labelSmoothedCrossEntropy } from "./loss.ts";

/** How {@linkcode AmautModel.apply} runs. */
export interface ApplyMode {
  /** BatchNorm on batch statistics and dropout active (true), or running statistics and no dropout. */
  readonly training: boolean;
  /** Embedding dropout in training; default: `options.dropout`. */
  readonly dropout?: number;
  /** Seeds the dropout masks; required in training when dropout > 0. */
  readonly rng?: Rng;
}

/** A built AMAuT model: its variables and forward pass. */
export interface AmautModel {
  /** The options it was built with. */
  readonly options: ModelOptions;
  /** The data sizes it was built for. */
  readonly dims: ModelDims;
  /** Trainable parameters by PyTorch state-dict name (the names of `model/plan.ts`), as tf.Variable in TF.js layouts (conv `[k, in, out]`, linear `[in, out]`, weight-norm g `[1, out]`). */
  readonly params: ReadonlyMap<string, Variable>;
  /** BatchNorm running_mean / running_var buffers by PyTorch name (non-trainable variables). */
  readonly buffers: ReadonlyMap<string, Variable>;
  /**
   * Forward pass. `tokens` `[b, frames, nMels]` (NWC, what the `tokenize`
   * stage gives). Training: BatchNorm uses batch statistics and dropout is
   * active; the batch statistics are returned so the caller can update the
   * running statistics after computing gradients
   * ({@linkcode updateRunningStats}). Eval: running statistics, no dropout,
   * no statistics returned.
   *
   * Intermediate tensors are freed. The returned stats tensors are
   * `tf.keep`-ed so they survive an enclosing `tf.tidy` or
   * `tf.variableGrads`: the caller disposes them (`tf.dispose(batchStats)`).
   *
   * @throws {RangeError} On a token shape other than `[b, frames, nMels]`,
   *   training with batch · length < 2 at some BatchNorm, or dropout without `rng`.
   */
  apply(
    tokens: Tensor3D,
    mode: ApplyMode,
  ): { logits: Tensor2D; batchStats: BatchStat[] };
  /** Layers with per-example output shapes (for `--dry-run`), and the parameter count. */
  summary(): {
    layers: { name: string; shape: number[] }[];
    parameters: number;
  };
  /** Disposes every variable. */
  dispose(): void;
}

let modelCounter = 0;

/** Uniform draws per chunk of a uniform initialiser (512 KiB of float64). */
const UNIFORM_CHUNK = 65536;

/**
 * A tensor's initial values from its initialiser (exported for tests).
 *
 * @param spec The tensor's shape and initialiser.
 * @param rng The tensor's own stream (`rng.child(name)` in createModel).
 * @param done Values drawn so far (a `rowNorm` initialiser reads its `of`).
 * @returns The values, row-major in `spec.shape`.
 */
export function initialValues(
  spec: TensorSpec,
  rng: Rng,
  done: ReadonlyMap<string, Float32Array>,
): Float32Array {
  const n = shapeSize(spec.shape);
  const out = new Float32Array(n);
  const init = spec.init;
  switch (init.kind) {
    case "const":
      out.fill(init.value);
      break;
    case "uniform": {
      // (2·next() − 1)·bound, drawn in chunks with fillUniform (the same
      // stream as next(), inlined): ~7× faster than a next() per value,
      // which took ~2.8 s for the paper models' ~100 M weights.
      const u = new Float64Array(Math.min(n, UNIFORM_CHUNK));
      for (let at = 0; at < n; at += u.length) {
        const count = Math.min(u.length, n - at);
        rng.fillUniform(u, 1, 0, count);
        for (let i = 0; i < count; i++) {
          out[at + i] = (2 * u[i] - 1) * init.bound;
        }
      }
      break;
    }
    case "normal":
      for (let i = 0; i < n; i++) out[i] = rng.normal() * init.std;
      break;
    case "truncNormal":
      // torch.nn.init.trunc_normal_(std, a, b): bounds are absolute values.
      for (let i = 0; i < n; i++) {
        let v: number;
        do v = rng.normal() * init.std; while (v < init.lo || v > init.hi);
        out[i] = v;
      }
      break;
    case "rowNorm": {
      // g = ‖v‖ per output, so the initial weight equals v (PyTorch
      // weight_norm; the authors' Xavier re-init is a no-op on it).
      const v = done.get(init.of);
      if (!v) {
        throw new Error(
          `Cannot initialise ${spec.name}: it needs ${init.of} first; list ${init.of} before it in the parameter specs`,
        );
      }
      const outs = n;
      const ins = v.length / outs;
      for (let o = 0; o < outs; o++) {
        let s = 0;
        for (let i = 0; i < ins; i++) s += v[i * outs + o] ** 2;
        out[o] = Math.sqrt(s);
      }
      break;
    }
  }
  return out;
}

/**
 * Builds an AMAuT model with the reference's initialisation (reference §5–§6:
 * PyTorch defaults for convs and q/k/v/o; Xavier-uniform MLP weights with
 * N(0, 1e-6) biases; trunc-normal(0.02) tokens and positional embedding;
 * Xavier-normal fc2 with zero bias; fc3 g = ‖v‖, zero bias; BatchNorm and
 * LayerNorm γ = 1, β = 0, running mean 0, variance 1). Each tensor draws from
 * `rng.child(name)`, so values depend only on the seed and the name.
 *
 * @param tf The TF.js namespace.
 * @param options Parsed model options.
 * @param dims Data sizes.
 * @param rng Seeded stream for the initialisation.
 * @param settings `init: "none"` leaves every parameter and buffer at zero
 *   (filled on the device, no host values): for a model whose weights are
 *   assigned next (a checkpoint's), where drawing ~100 M initial values on
 *   the host takes seconds. Default `"reference"`.
 * @returns The model; call `dispose()` when done.
 * @throws {RangeError} When the options do not fit the data sizes.
 */
export function createModel(
  tf: Tf,
  options: ModelOptions,
  dims: ModelDims,
  rng: Rng,
  settings: { readonly init?: "reference" | "none" } = {},
): AmautModel {
  const plan = modelPlan(options, dims);
  const initialise = (settings.init ?? "reference") === "reference";
  let prefix: string;
  const registered = tf.engine().registeredVariables;
  do prefix = `amaut${modelCounter++}`; while (
    `${prefix}/${plan.params[0].name}` in registered
  );
  const values = new Map<string, Float32Array>();
  for (const spec of initialise ? plan.params : []) {
    if (spec.init.kind !== "rowNorm") {
      values.set(spec.name, initialValues(spec, rng.child(spec.name), values));
    }
  }
  for (const spec of initialise ? plan.params : []) {
    if (spec.init.kind === "rowNorm") {
      values.set(spec.name, initialValues(spec, rng.child(spec.name), values));
    }
  }
  const makeVariable = (
    spec: TensorSpec,
    data: Float32Array | undefined,
    trainable: boolean,
  ): Variable => {
    const initial = data
      ? tf.tensor(data, [...spec.shape], "float32")
      : tf.zeros([...spec.shape], "float32");
    const v = tf.variable(initial, trainable, `${prefix}/${spec.name}`);
    initial.dispose();
    return v;
  };
  const params = new Map<string, Variable>();
  for (const spec of plan.params) {
    params.set(spec.name, makeVariable(spec, values.get(spec.name), true));
  }
  const buffers = new Map<string, Variable>();
  for (const spec of plan.buffers) {
    buffers.set(
      spec.name,
      makeVariable(
        spec,
        initialise ? initialValues(spec, rng, values) : undefined,
        false,
      ),
    );
  }
  values.clear();

  const P = <T extends Tensor>(name: string): T => {
    const v = params.get(name);
    if (!v) {
      throw new Error(
        `Cannot build AMAuT: the model has no parameter ${name}; check the parameter specs`,
      );
    }
    return v as unknown as T;
  };
  const B = (name: string): Tensor1D => {
    const v = buffers.get(name);
    if (!v) {
      throw new Error(
        `Cannot build AMAuT: the model has no buffer ${name}; check the parameter specs`,
      );
    }
    return v as unknown as Tensor1D;
  };

  const apply = (
    tokens: Tensor3D,
    mode: ApplyMode,
  ): { logits: Tensor2D; batchStats: BatchStat[] } => {
    const training = mode.training;
    const rate = training ? (mode.dropout ?? options.dropout) : 0;
    if (!(rate >= 0 && rate < 1)) {
      throw new RangeError(
        `Cannot run AMAuT: dropout must be in [0, 1), got ${rate}; set a rate in [0, 1)`,
      );
    }
    if (rate > 0 && !mode.rng) {
      throw new RangeError(
        "Cannot train AMAuT with dropout: mode.rng is missing; pass mode.rng to seed the masks",
      );
    }
    if (
      tokens.rank !== 3 || tokens.shape[1] !== dims.frames ||
      tokens.shape[2] !== dims.nMels
    ) {
      throw new RangeError(
        `Cannot run AMAuT: tokens must be [b, ${dims.frames}, ${dims.nMels}] ([b, frames, nMels]), got [${tokens.shape}]; tokenize with the model's frames and nMels`,
      );
    }
    const stats: BatchStat[] = [];
    const context: ForwardContext = {
      tf,
      param: P,
      batchNorm: (x, n) => {
        const r = batchNorm(
          tf,
          x,
          {
            weight: P(n.weight),
            bias: P(n.bias),
            runningMean: B(n.runningMean),
            runningVar: B(n.runningVar),
          },
          n.eps,
          training,
        );
        if (training) {
          stats.push({
            name: n.module,
            mean: tf.keep(r.mean!),
            variance: tf.keep(r.variance!),
            count: r.count,
          });
        }
        return r.y;
      },
      dropout: rate,
      seed: () => mode.rng!.int(0x7fffffff),
    };
    let logits: Tensor2D;
    try {
      logits = tf.tidy(() => {
        let x: Tensor3D | Tensor2D = tokens;
        for (const layer of plan.layers) {
          x = layerForward(context, layer, x as Tensor3D);
        }
        return x as Tensor2D;
      });
    } catch (error) {
      tf.dispose(stats.flatMap((s) => [s.mean, s.variance]));
      throw error;
    }
    return { logits, batchStats: stats };
  };

  let disposed = false;
  return {
    options,
    dims,
    params,
    buffers,
    apply,
    summary() {
      const { layers } = modelSummary(options, dims);
      let parameters = 0;
      for (const v of params.values()) parameters += v.size;
      return { layers, parameters };
    },
    dispose() {
      if (disposed) return;
      disposed = true;
      for (const v of params.values()) v.dispose();
      for (const v of buffers.values()) v.dispose();
    },
  };
}

/**
 * Moves the BatchNorm running statistics towards a batch's, PyTorch-style:
 * running_mean = (1 − m)·running_mean + m·mean and running_var = (1 − m)·
 * running_var + m·var·n/(n − 1) (unbiased). Call it after computing the
 * gradients of the step whose forward produced `stats`; it does not dispose
 * them.
 *
 * @param tf The TF.js namespace.
 * @param model The model whose buffers to update.
 * @param stats Batch statistics from {@linkcode AmautModel.apply} in training.
 * @param momentum m; default `model.options.bnMomentum` (0.1).
 * @throws {Error} When a stat names no BatchNorm of the model.
 */
export function updateRunningStats(
  tf: Tf,
  model: AmautModel,
  stats: readonly BatchStat[],
  momentum: number = model.options.bnMomentum,
): void {
  for (const s of stats) {
    const mean = model.buffers.get(`${s.name}.running_mean`);
    const variance = model.buffers.get(`${s.name}.running_var`);
    if (!mean || !variance) {
      throw new Error(
        `Cannot update running stats: the model has no BatchNorm ${s.name}; pass batch stats of this model`,
      );
    }
    const unbiased = s.count > 1 ? s.count / (s.count - 1) : 1;
    tf.tidy(() => {
      mean.assign(
        tf.add(tf.mul(mean, 1 - momentum), tf.mul(s.mean, momentum)),
      );
      variance.assign(
        tf.add(
          tf.mul(variance, 1 - momentum),
          tf.mul(s.variance, momentum * unbiased),
        ),
      );
    });
  }
}

/** A tensor in a PyTorch state dict: shape and row-major float32 data. */
export interface StateTensor {
  /** PyTorch shape. */
  readonly shape: readonly number[];
  /** Values, row-major. */
  readonly data: Float32Array;
}

const sameShape = (a: readonly number[], b: readonly number[]): boolean =>
  a.length === b.length && a.every((x, i) => x === b[i]);

function specsOf(model: AmautModel): Map<string, TensorSpec> {
  const plan = modelPlan(model.options, model.dims);
  return new Map([...plan.params, ...plan.buffers].map((s) => [s.name, s]));
}

/** Converts between PyTorch and TF.js layouts (each conversion is its own inverse up to shape). */
function convert(
  tf: Tf,
  t: Tensor,
  spec: TensorSpec,
  toTorch: boolean,
): Tensor {
  switch (spec.layout) {
    case "conv":
      return tf.transpose(t, [2, 1, 0]);
    case "linear":
      return tf.transpose(t, [1, 0]);
    case "gain":
      return tf.reshape(t, [...(toTorch ? spec.torchShape : spec.shape)]);
    case "same":
      return tf.clone(t);
  }
}

/**
 * Loads a PyTorch state dict (the authors' `auT` and `cls` dicts merged, with
 * their `transform.`/`classifier.` prefixes) into the model, converting
 * layouts; BatchNorm running statistics included, `num_batches_tracked`
 * entries ignored. Nothing is assigned unless every key checks out.
 *
 * @param tf The TF.js namespace.
 * @param model The model to fill.
 * @param state Tensors by PyTorch name, in PyTorch shapes.
 * @throws {Error} Naming the first missing, unexpected or mis-shaped key.
 */
export function loadStateDict(
  tf: Tf,
  model: AmautModel,
  state: Readonly<Record<string, StateTensor>>,
): void {
  const specs = specsOf(model);
  for (const [name, spec] of specs) {
    const entry = state[name];
    if (!entry) {
      throw new Error(
        `Cannot load the state dict: missing key "${name}"; load a state dict of the same model configuration`,
      );
    }
    if (!sameShape(entry.shape, spec.torchShape)) {
      throw new Error(
        `Cannot load the state dict: key "${name}" has shape [${entry.shape}], expected [${spec.torchShape}]; load a state dict of the same model configuration`,
      );
    }
    if (entry.data.length !== shapeSize(spec.torchShape)) {
      throw new Error(
        `Cannot load the state dict: key "${name}" has ${entry.data.length} values for shape [${entry.shape}]; check the file is complete`,
      );
    }
  }
  for (const name of Object.keys(state)) {
    if (!specs.has(name) && !name.endsWith(".num_batches_tracked")) {
      throw new Error(
        `Cannot load the state dict: unexpected key "${name}"; load a state dict of the same model configuration`,
      );
    }
  }
  for (const [name, spec] of specs) {
    const target = model.params.get(name) ?? model.buffers.get(name)!;
    tf.tidy(() => {
      const t = tf.tensor(state[name].data, [...spec.torchShape], "float32");
      target.assign(convert(tf, t, spec, false));
    });
  }
}

/**
 * Converts a tensor shaped like one of the model's parameters (a parameter,
 * its gradient, an optimiser slot) to the PyTorch layout.
 *
 * @param tf The TF.js namespace.
 * @param model The model.
 * @param name PyTorch state-dict name.
 * @param t Tensor in the TF.js layout of that parameter.
 * @returns A new tensor in the PyTorch layout.
 * @throws {Error} When the model has no such parameter or buffer.
 */
export function toTorchLayout(
  tf: Tf,
  model: AmautModel,
  name: string,
  t: Tensor,
): Tensor {
  const spec = specsOf(model).get(name);
  if (!spec) {
    throw new Error(
      `Cannot convert to the PyTorch layout: unknown key "${name}"; pass a parameter or buffer name of this model`,
    );
  }
  return convert(tf, t, spec, true);
}

/**
 * Reads every parameter and buffer back in PyTorch layouts (the inverse of
 * {@linkcode loadStateDict}), e.g. for checkpoints.
 *
 * @param tf The TF.js namespace.
 * @param model The model.
 * @returns Tensors by PyTorch name.
 */
export async function exportStateDict(
  tf: Tf,
  model: AmautModel,
): Promise<Record<string, StateTensor>> {
  const out: Record<string, StateTensor> = {};
  for (const [name, spec] of specsOf(model)) {
    const source = model.params.get(name) ?? model.buffers.get(name)!;
    const t = convert(tf, source, spec, true);
    try {
      out[name] = {
        shape: [...spec.torchShape],
        data: new Float32Array(await t.data()),
      };
    } finally {
      t.dispose();
    }
  }
  return out;
}
