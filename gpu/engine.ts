/**
 * The fused WebGPU training engine (issue 8): owns a model's parameters,
 * gradients, SGD momentum and BatchNorm running statistics on the GPU, and
 * runs whole training steps (`gpu/graph/`) and eval forwards as
 * recorded dispatch lists — one submit per step, nothing read back until
 * asked. Weights move to and from a tfjs {@linkcode AmautModel} with
 * {@linkcode FusedEngine.upload} / {@linkcode FusedEngine.download}, so
 * checkpoints and export keep using the tfjs model; evaluation runs on the
 * eval graphs (`model/scorer.ts`), and TTDA steps (issue 14) run as training
 * graphs with the TTDA loss instead of the cross-entropy
 * ({@linkcode FusedEngine.ttdaStep}).
 *
 * @module
 */
import type { Tensor, Variable } from "@tensorflow/tfjs";
import type { Tf } from "../pipeline/types.ts";
import type { AmautModel } from "../model/amaut.ts";
import type { ModelDims, ModelOptions } from "../model/config.ts";
import type { Sgd, SgdOptions } from "../model/sgd.ts";
import {
  createRuntime,
  mappedCopy,
  type ProfileEntry,
  type ReadTiming,
  type Region,
  type Runtime,
  SHADER_F16,
} from "./runtime.ts";
import { type Arenas, createArenas } from "./graph/arenas.ts";
import {
  createBufferPool,
  type Graph,
  type GraphSettings,
} from "./graph/builder.ts";
import { DEFAULT_SMOOTHING } from "./graph/loss.ts";
import { buildGraph } from "./graph/model.ts";
import { sgdHyper } from "./kernels/model_ops.ts";
import type { TtdaLossOptions } from "../model/ttda_loss.ts";
import type { LossScaleOptions, LossScaleState } from "../model/loss_scale.ts";
import { resolveLossScaleOptions } from "../model/loss_scale.ts";
import {
  createLossScaleState,
  type LossScaleMetrics,
  lossScaleMetrics,
  readLossScale,
  writeLossScaleState,
} from "./loss_scale.ts";
import { decodeLossScaleState } from "./kernels/loss_scale.ts";

/** Settings of one fused step (as {@linkcode multiviewStep}'s, with an integer dropout seed). */
export interface FusedStepSettings {
  /** Label smoothing ε. */
  readonly smoothing: number;
  /** Learning rate: one for all tensors or a function of the parameter name. */
  readonly lr: number | ((name: string) => number);
  /** Momentum, weight decay, Nesterov, dampening of this step. */
  readonly sgd: SgdOptions;
  /** Seed of the dropout masks (u32). */
  readonly seed: number;
  /** Embedding dropout rate (default: the model's `dropout` option). */
  readonly dropout?: number;
}

/**
 * Settings of one fused TTDA step (the `test_time_adaptation` stage's:
 * loss rates, per-parameter learning rate, SGD options, dropout seed).
 */
export interface FusedTtdaSettings {
  /** α, β, γ and q of the TTDA loss. */
  readonly rates: TtdaLossOptions;
  /** Learning rate: one for all tensors or a function of the parameter name (per-module lr). */
  readonly lr: number | ((name: string) => number);
  /** Momentum, weight decay, Nesterov, dampening of this step. */
  readonly sgd: SgdOptions;
  /** Seed of the dropout masks (u32). */
  readonly seed: number;
  /** Embedding dropout rate (default: the model's `dropout` option). */
  readonly dropout?: number;
}

/** Token input: host data, or a tfjs tensor on the same WebGPU device. */
export type TokenInput = Float32Array | Tensor;

/** Summed training metrics since the last read. */
export interface FusedMetrics {
  /** Sum over steps of the step's summed-over-views mean loss. */
  readonly lossSum: number;
  /** Correct predictions of the last view. */
  readonly correct: number;
  /** Clips counted (per view). */
  readonly count: number;
  /**
   * Mixed precision only: the loss scale after the last step enqueued, the
   * steps skipped for inf/NaN gradients since the run started and whether
   * the last one was skipped (never reset).
   */
  readonly lossScale?: LossScaleMetrics;
}

/** Dispatches per recorded list of a graph. */
export interface DispatchCounts {
  /** Run once after the weights change (eval graphs: weight standardisation). */
  readonly prepare: number;
  readonly forward: number;
  readonly backward: number;
  readonly update: number;
  readonly total: number;
}

/** Graph choices of an engine (see {@linkcode createFusedEngine}). */
export interface EngineSettings
  extends Pick<GraphSettings, "matmulStages" | "precision"> {
  /**
   * Dynamic loss scaling of mixed precision (`model/loss_scale.ts`; default
   * PyTorch GradScaler's: scale 2¹⁶, growth 2 every 2000 good steps,
   * backoff 0.5). Ignored in fp32.
   */
  readonly lossScale?: Partial<LossScaleOptions>;
}

/**
 * Refuses mixed precision on a device without `shader-f16`.
 *
 * @param device The engine's device.
 * @param action What runs, for the error ("train", "adapt", "evaluate", "predict").
 * @param fix How to run in fp32 instead (default `use --set train.precision=fp32`).
 * @throws {Error} "Cannot <action> with precision mixed: …", naming the
 *   feature and the fix.
 */
export function checkMixedPrecision(
  device: GPUDevice,
  action = "train",
  fix = "use --set train.precision=fp32",
): void {
  if (device.features.has(SHADER_F16)) return;
  throw new Error(
    `Cannot ${action} with precision mixed: this WebGPU device lacks the feature "${SHADER_F16}" (its adapter does not offer it), which the f16 matmuls need; ${fix}`,
  );
}

/**
 * Eval forwards enqueued back to back, each batch's logits copied aside on
 * the GPU, and read back together (see {@linkcode FusedEngine.evalGroup}).
 */
export interface EvalGroup {
  /**
   * Enqueues one eval forward of `rows` clips and the copy of its logits;
   * returns once enqueued (nothing is read back).
   *
   * @throws {RangeError} When its logits exceed the group's room.
   */
  add(tokens: TokenInput, rows: number): Promise<void>;
  /** Logit values (f32) that still fit. */
  readonly room: number;
  /** Forwards enqueued since the last read. */
  readonly pending: number;
  /** Reads every pending forward's logits `[rows, classes]` in one readback, in order. */
  read(): Promise<Float32Array[]>;
  /** Frees the group's readback buffer (pending logits are dropped). */
  destroy(): void;
}

/** The engine. */
export interface FusedEngine {
  /** The runtime (device, allocation statistics). */
  readonly runtime: Runtime;
  /** Parameter arenas. */
  readonly arenas: Arenas;
  /** Copies the model's parameters and running statistics, and the optimizer's momentum, to the GPU. */
  upload(model: AmautModel, sgd?: Sgd): Promise<void>;
  /** Copies parameters, running statistics and (with `sgd`) momentum back into the tfjs model and optimizer. */
  download(
    model: AmautModel,
    sgd?: Sgd,
    timing?: DownloadTiming,
  ): Promise<void>;
  /**
   * {@linkcode download} in two parts: snapshots the arenas now (a GPU copy
   * into a kept staging buffer, then its map) and returns the function that
   * puts the snapshot into the tfjs model and optimizer. Steps enqueued in
   * between run on the GPU while that function's host copy (~0.5 s for a
   * paper model) runs, and do not change the snapshot. Call the function
   * before the next download; it returns the loss-scaling state taken with
   * the snapshot (mixed precision; undefined in fp32).
   */
  downloadLater(
    model: AmautModel,
    sgd?: Sgd,
    timing?: DownloadTiming,
  ): Promise<() => LossScaleState | undefined>;
  /**
   * Enqueues one training step: forward and backward over all views at
   * once, running-statistics updates, SGD. Returns at once; the GPU works
   * while the caller prepares the next batch.
   *
   * @param tokens `[views·perView, frames, nMels]` view-major.
   * @param labels Labels of one view (`perView` ints).
   * @param views Number of views V.
   * @param settings Smoothing, learning rate, SGD options, dropout seed.
   */
  step(
    tokens: TokenInput,
    labels: readonly number[],
    views: number,
    settings: FusedStepSettings,
  ): Promise<void>;
  /**
   * Enqueues one TTDA step (test-time adaptation, no labels): forward over
   * all views in training mode (per-view BatchNorm statistics, dropout),
   * the TTDA loss summed over views and its backward, running-statistics
   * updates in view order, SGD with a learning rate per parameter. Returns
   * at once; {@linkcode FusedEngine.metrics}' `lossSum` sums the steps'
   * losses and `count` their clips per view.
   *
   * @param tokens `[views·perView, frames, nMels]` view-major.
   * @param views Number of views V.
   * @param perView Clips per view.
   * @param settings Loss rates, learning rate, SGD options, dropout seed.
   */
  ttdaStep(
    tokens: TokenInput,
    views: number,
    perView: number,
    settings: FusedTtdaSettings,
  ): Promise<void>;
  /**
   * Reads (and by default resets) the summed loss and accuracy counters, and
   * in mixed precision the loss-scaling figures.
   */
  metrics(reset?: boolean): Promise<FusedMetrics>;
  /** Numeric precision of the engine's matmuls. */
  readonly precision: "fp32" | "mixed";
  /**
   * Mixed precision: the loss-scaling state after every step enqueued so far
   * (one readback), to save with the optimizer state; undefined in fp32.
   */
  lossScaleState(): Promise<LossScaleState | undefined>;
  /**
   * Mixed precision: continues from a saved loss-scaling state (a resume);
   * ignored in fp32.
   *
   * @throws {RangeError} On a scale that is not a finite float32 ≥ 2⁻¹²⁶.
   */
  setLossScaleState(state: LossScaleState): void;
  /**
   * Eval forward (running statistics, no dropout) of `rows` clips.
   *
   * @returns Logits `[rows, classes]`.
   */
  evalLogits(tokens: TokenInput, rows: number): Promise<Float32Array>;
  /**
   * A group of eval forwards with one readback: room for `floats` logit
   * values (rows × classes summed over its batches).
   */
  evalGroup(floats: number): EvalGroup;
  /** Enqueues an eval forward without reading it back (for timing). */
  evalEnqueue(tokens: TokenInput, rows: number): Promise<void>;
  /** Waits until the GPU has finished everything enqueued. */
  sync(): Promise<void>;
  /** Dispatch counts of the training graph for V views × perView. */
  counts(views: number, perView: number, training?: boolean): DispatchCounts;
  /** Per-kernel GPU time (timestamp queries) of one training step. */
  profile(
    tokens: TokenInput,
    labels: readonly number[],
    views: number,
    settings: FusedStepSettings,
  ): Promise<ProfileEntry[]>;
  /** Per-kernel GPU time (timestamp queries) of one eval forward of `rows` clips. */
  profileEval(tokens: TokenInput, rows: number): Promise<ProfileEntry[]>;
  /** Frees every GPU buffer. */
  destroy(): void;
}

/** Where a {@linkcode FusedEngine.download} spent its time, in milliseconds (filled in by it). */
export interface DownloadTiming extends ReadTiming {
  /** Making the tfjs tensors and assigning them (weights, buffers, momentum). */
  assignMs: number;
}

interface WebGpuBackendLike {
  device: GPUDevice;
  tensorMap: { get(id: object): { resource?: GPUBuffer } | undefined };
  uploadToGPU(id: object): void;
  commandEncoder: GPUCommandEncoder | null;
  endComputePassEncoder(): void;
  submitQueue(): void;
}

/**
 * The GPU device of tfjs's current backend, when it is WebGPU.
 *
 * @param tf The TF.js namespace.
 * @returns The device, or undefined on other backends.
 */
export function tfjsDevice(tf: Tf): GPUDevice | undefined {
  if (tf.getBackend() !== "webgpu") return undefined;
  return (tf.backend() as unknown as WebGpuBackendLike).device;
}

/**
 * Rows of the largest eval graph: a batch of more rows (TTAu's clips × views,
 * a large `evalBatchSize`) runs in chunks of this many rows, one after the
 * other on the same graph — rows are independent in eval mode, so the logits
 * are the same, and a run compiles one eval graph instead of one per batch
 * size.
 */
export const EVAL_CHUNK_ROWS = 32;

/**
 * Rows of the eval graph built for a chunk of `rows` (≤
 * {@linkcode EVAL_CHUNK_ROWS}) when no built graph holds it: the next power
 * of two up to 32.
 *
 * @param rows Clips (view rows) in the chunk.
 */
export function evalGraphRows(rows: number): number {
  return 2 **
    Math.ceil(Math.log2(Math.min(EVAL_CHUNK_ROWS, Math.max(1, rows))));
}

/**
 * The chunks a batch of `rows` runs in on the eval graphs, and each chunk's
 * graph rows: the smallest graph already built (`built`) that holds the
 * chunk, else a new one of {@linkcode evalGraphRows}, which later chunks
 * reuse. A run's partial last batches thus share its full batches' graph.
 *
 * @param rows Rows of the batch.
 * @param built Rows of the eval graphs already built (not changed).
 * @returns `{at, rows, graphRows}` per chunk, in row order.
 */
export function evalChunks(
  rows: number,
  built: readonly number[],
): { at: number; rows: number; graphRows: number }[] {
  const have = [...built].sort((a, b) => a - b);
  const out: { at: number; rows: number; graphRows: number }[] = [];
  for (let at = 0; at < rows; at += EVAL_CHUNK_ROWS) {
    const n = Math.min(EVAL_CHUNK_ROWS, rows - at);
    let graphRows = have.find((r) => r >= n);
    if (graphRows === undefined) {
      graphRows = evalGraphRows(n);
      have.push(graphRows);
      have.sort((a, b) => a - b);
    }
    out.push({ at, rows: n, graphRows });
  }
  return out;
}

/**
 * Creates an engine for a model's structure on a device.
 *
 * @param tf The TF.js namespace (reads tensors, builds the synced variables).
 * @param options Model options.
 * @param dims Data sizes.
 * @param device A WebGPU device; default: tfjs's WebGPU device.
 * @param settings `matmulStages` (1 or 2; default the kernel's):
 *   workgroup-memory stages of every matmul, for tuning comparisons;
 *   `precision` ("fp32" default, or "mixed": f16 matmul operands, f32
 *   accumulation, dynamic loss scaling) and its `lossScale` options.
 * @throws {Error} Without a device, or "Cannot train with precision mixed"
 *   on a device without `shader-f16`.
 */
export function createFusedEngine(
  tf: Tf,
  options: ModelOptions,
  dims: ModelDims,
  device: GPUDevice | undefined = tfjsDevice(tf),
  settings: EngineSettings = {},
): FusedEngine {
  if (!device) {
    throw new Error(
      "Cannot start the fused engine: it needs WebGPU; select the webgpu backend or pass a GPUDevice",
    );
  }
  const precision = settings.precision ?? "fp32";
  if (precision === "mixed") checkMixedPrecision(device);
  const scaleOptions = precision === "mixed"
    ? resolveLossScaleOptions(settings.lossScale ?? {})
    : undefined;
  const rt = createRuntime(device);
  const arenas = createArenas(rt, options, dims);
  const lossScale = scaleOptions
    ? createLossScaleState(rt, scaleOptions)
    : undefined;
  const graphs = new Map<string, Graph>();
  const pool = createBufferPool();
  let momentumStarted = false;
  // Bumped whenever the weights change; eval graphs re-standardise once after.
  let weightsVersion = 0;
  const prepared = new Map<Graph, number>();
  const evalLists = (g: Graph) => {
    if (prepared.get(g) === weightsVersion) return [g.lists.forward];
    prepared.set(g, weightsVersion);
    return [g.lists.prepare, g.lists.forward];
  };
  const graphOf = (
    training: boolean,
    views: number,
    perView: number,
    smoothing = DEFAULT_SMOOTHING,
    dropout = options.dropout,
    ttda?: TtdaLossOptions,
  ): Graph => {
    const objective = ttda
      ? `ttda:${ttda.alpha}:${ttda.beta}:${ttda.gamma}:${ttda.q}`
      : `ce:${smoothing}`;
    const key = `${training}:${views}:${perView}:${objective}:${dropout}`;
    let g = graphs.get(key);
    if (!g) {
      g = buildGraph(rt, arenas, options, dims, {
        training,
        views,
        perView,
        smoothing,
        ttda,
        dropout,
        pool,
        matmulStages: settings.matmulStages,
        precision,
        lossScale: training && lossScale
          ? { state: lossScale, options: scaleOptions }
          : undefined,
      });
      graphs.set(key, g);
    }
    return g;
  };
  const rowFloats = dims.frames * dims.nMels;

  /**
   * Puts values `from`…`from + count` of a tensor at `target`: a GPU-to-GPU
   * copy command when the tensor lives on this device (tfjs on WebGPU), else
   * a host write (and undefined).
   */
  const place = async (
    t: Tensor,
    target: Region,
    from = 0,
    count = t.size,
  ): Promise<((e: GPUCommandEncoder) => void) | undefined> => {
    const backend = tf.backend() as unknown as WebGpuBackendLike;
    if (tf.getBackend() === "webgpu" && backend.device === device) {
      const id = t.dataId as object;
      backend.uploadToGPU(id);
      const source = backend.tensorMap.get(id)?.resource;
      if (source) {
        if (backend.commandEncoder) {
          backend.endComputePassEncoder();
          backend.submitQueue();
        }
        return (e) =>
          e.copyBufferToBuffer(
            source,
            from * 4,
            target.buffer,
            target.offset,
            count * 4,
          );
      }
    }
    const data = (await t.data()) as Float32Array;
    rt.write(target, data.subarray(from, from + count));
    return undefined;
  };

  /**
   * Stages the tokens of rows `at`…`at + n` of a batch of `rows`: a GPU copy
   * command, or a host write.
   */
  const stage = async (
    tokens: TokenInput,
    rows: number,
    target: Region,
    at = 0,
    n = rows,
  ): Promise<((e: GPUCommandEncoder) => void) | undefined> => {
    const floats = rows * rowFloats;
    if (tokens instanceof Float32Array) {
      if (tokens.length !== floats) {
        throw new RangeError(
          `Cannot run the fused engine: expected ${floats} token values (${rows} × ${dims.frames} × ${dims.nMels}), got ${tokens.length}; pass tokens of the batch shape`,
        );
      }
      rt.write(
        target,
        tokens.subarray(at * rowFloats, (at + n) * rowFloats),
      );
      return undefined;
    }
    if (tokens.size !== floats) {
      throw new RangeError(
        `Cannot run the fused engine: tokens [${tokens.shape}] do not match [${rows}, ${dims.frames}, ${dims.nMels}]; pass tokens of the batch shape`,
      );
    }
    return await place(tokens, target, at * rowFloats, n * rowFloats);
  };

  /** The slot of one tensor inside an arena, as a region. */
  const slotIn = (
    arena: Region,
    slot: { offset: number; size: number },
    label: string,
  ): Region => ({
    buffer: arena.buffer,
    offset: slot.offset * 4,
    size: slot.size * 4,
    label,
  });

  const prepareStep = async (
    tokens: TokenInput,
    labels: readonly number[] | undefined,
    views: number,
    perView: number,
    settings: Omit<FusedStepSettings, "smoothing"> & {
      smoothing?: number;
      rates?: TtdaLossOptions;
    },
  ) => {
    const g = graphOf(
      true,
      views,
      perView,
      settings.smoothing,
      settings.dropout,
      settings.rates,
    );
    const copy = await stage(tokens, views * perView, g.input);
    if (labels) rt.write(g.labels!, Int32Array.from(labels));
    rt.write(g.step!, Uint32Array.of(settings.seed >>> 0));
    const lrOf = typeof settings.lr === "number"
      ? () => settings.lr as number
      : settings.lr;
    const lrs = arenas.slots.filter((s) => s.trained).map((s) => lrOf(s.name));
    const momentum = settings.sgd.momentum;
    rt.write(
      g.hyper!,
      sgdHyper({
        momentum,
        weightDecay: settings.sgd.weightDecay,
        dampening: settings.sgd.dampening ?? 0,
        nesterov: settings.sgd.nesterov,
        first: momentum !== 0 && !momentumStarted,
        lrs,
      }),
    );
    if (momentum !== 0) momentumStarted = true;
    const before = (e: GPUCommandEncoder) => {
      for (const c of g.clears) {
        e.clearBuffer(c.buffer, c.offset, Math.ceil(c.size / 4) * 4);
      }
      copy?.(e);
    };
    const lists = [g.lists.forward, g.lists.backward, g.lists.update];
    // The caller runs (or profiles) the step next: the weights change.
    weightsVersion++;
    return { lists, before };
  };

  // Rows of the eval graphs built so far (see evalChunks).
  const evalBuilt: number[] = [];
  /**
   * Enqueues the eval forward of a batch, chunk by chunk
   * ({@linkcode evalChunks}); `copyOut` encodes, in the chunk's own
   * submit, the commands that take its logits (rows `at`…`at + n` of the
   * batch), and `after` runs once the chunk is submitted, before the next.
   */
  const enqueueEval = async (
    tokens: TokenInput,
    rows: number,
    after?: (g: Graph, at: number, n: number) => void | Promise<void>,
    copyOut?: (
      g: Graph,
      at: number,
      n: number,
    ) => (e: GPUCommandEncoder) => void,
  ) => {
    const chunks = evalChunks(rows, evalBuilt);
    // A tensor that is not on this device is read to the host once, not
    // once per chunk (a size mismatch is left to stage's error).
    const onDevice = tf.getBackend() === "webgpu" &&
      (tf.backend() as unknown as WebGpuBackendLike).device === device;
    const input = chunks.length > 1 && !(tokens instanceof Float32Array) &&
        !onDevice && tokens.size === rows * rowFloats
      ? (await tokens.data()) as Float32Array
      : tokens;
    for (const c of chunks) {
      if (!evalBuilt.includes(c.graphRows)) evalBuilt.push(c.graphRows);
      const g = graphOf(false, 1, c.graphRows);
      const copy = await stage(input, rows, g.input, c.at, c.rows);
      rt.run(evalLists(g), copy, copyOut?.(g, c.at, c.rows));
      await after?.(g, c.at, c.rows);
    }
  };

  const readRegion = (
    whole: Float32Array,
    slot: { offset: number; size: number },
  ) => whole.subarray(slot.offset, slot.offset + slot.size);

  // The arenas' values, read back, into the tfjs model and optimizer.
  const putInto = (
    model: AmautModel,
    sgd: Sgd | undefined,
    [params, running, momentum]: Float32Array[],
    timing?: DownloadTiming,
  ) => {
    const t0 = performance.now();
    const assign = (v: Variable, data: Float32Array) =>
      tf.tidy(() => v.assign(tf.tensor(data, v.shape, "float32")));
    for (const slot of arenas.slots) {
      assign(model.params.get(slot.name)!, readRegion(params, slot));
    }
    for (const [name, slot] of arenas.runningSlots) {
      assign(model.buffers.get(name)!, readRegion(running, slot));
    }
    if (sgd && momentum) {
      const map = new Map<string, Tensor>();
      for (const slot of arenas.slots) {
        if (!slot.trained) continue;
        const v = model.params.get(slot.name)!;
        map.set(
          slot.name,
          tf.tensor(readRegion(momentum, slot), v.shape, "float32"),
        );
      }
      sgd.load(map);
      tf.dispose([...map.values()]);
    }
    if (timing) timing.assignMs = performance.now() - t0;
  };

  const downloadLater = async (
    model: AmautModel,
    sgd?: Sgd,
    timing?: DownloadTiming,
  ) => {
    // One map for all (each map drains the queue and sleeps ~10 ms on
    // Deno); the tensors are views of its one copy, not copies of their own.
    const withMomentum = sgd !== undefined && momentumStarted;
    const regions = withMomentum
      ? [arenas.params, arenas.running, arenas.momentum]
      : [arenas.params, arenas.running];
    const take = await rt.readManyLater(
      lossScale ? [...regions, lossScale] : regions,
      { timing, keepStaging: true },
    );
    return () => {
      const values = take();
      putInto(model, sgd, values.slice(0, regions.length), timing);
      return lossScale
        ? decodeLossScaleState(values[regions.length])
        : undefined;
    };
  };

  return {
    runtime: rt,
    arenas,
    async upload(model, sgd) {
      // Momentum starts at zero (its own submit, so that host writes queued
      // below land after it); tensors then come over as GPU-to-GPU copies in
      // one submit — a readback per tensor would cost ~12 ms each on WebGPU.
      const clear = device.createCommandEncoder();
      clear.clearBuffer(arenas.momentum.buffer, 0, arenas.momentum.size);
      device.queue.submit([clear.finish()]);
      const copies: ((e: GPUCommandEncoder) => void)[] = [];
      const put = async (t: Tensor, target: Region) => {
        const copy = await place(t, target);
        if (copy) copies.push(copy);
      };
      for (const slot of arenas.slots) {
        const v = model.params.get(slot.name);
        if (!v) {
          throw new Error(
            `Cannot start the fused engine: the model has no parameter ${slot.name}; build the engine from the same model configuration`,
          );
        }
        await put(v, slotIn(arenas.params, slot, slot.name));
        const m = sgd?.buffers.get(slot.name);
        if (m) await put(m, slotIn(arenas.momentum, slot, slot.name));
      }
      for (const [name, slot] of arenas.runningSlots) {
        const v = model.buffers.get(name);
        if (!v) {
          throw new Error(
            `Cannot start the fused engine: the model has no buffer ${name}; build the engine from the same model configuration`,
          );
        }
        await put(v, slotIn(arenas.running, slot, name));
      }
      rt.run([], (e) => copies.forEach((copy) => copy(e)));
      momentumStarted = (sgd?.buffers.size ?? 0) > 0;
      weightsVersion++;
    },
    async download(model, sgd, timing) {
      (await downloadLater(model, sgd, timing))();
    },
    downloadLater,

    async step(tokens, labels, views, settings) {
      const { lists, before } = await prepareStep(
        tokens,
        labels,
        views,
        labels.length,
        settings,
      );
      rt.run(lists, before);
    },
    async ttdaStep(tokens, views, perView, settings) {
      const { lists, before } = await prepareStep(
        tokens,
        undefined,
        views,
        perView,
        settings,
      );
      rt.run(lists, before);
    },
    async metrics(reset = true) {
      let lossSum = 0;
      let correct = 0;
      let count = 0;
      // Every graph's sums and the loss-scaling state in one map (each map
      // drains the queue and sleeps ~10 ms on Deno).
      const regions = [...graphs.values()].flatMap((g) =>
        g.metrics ? [g.metrics] : []
      );
      const values = await rt.readMany(
        lossScale ? [...regions, lossScale] : regions,
      );
      regions.forEach((region, i) => {
        const m = values[i];
        lossSum += m[0];
        correct += m[1];
        count += m[2];
        if (reset) rt.write(region, new Float32Array(4));
      });
      if (!lossScale) return { lossSum, correct, count };
      return {
        lossSum,
        correct,
        count,
        lossScale: lossScaleMetrics(
          decodeLossScaleState(values[regions.length]),
        ),
      };
    },
    precision,
    async lossScaleState() {
      return lossScale ? await readLossScale(rt, lossScale) : undefined;
    },
    setLossScaleState(state) {
      if (lossScale) writeLossScaleState(rt, lossScale, state);
    },
    async evalLogits(tokens, rows) {
      const out = new Float32Array(rows * dims.classes);
      await enqueueEval(tokens, rows, async (g, at, n) => {
        const logits = await rt.read(g.logits);
        out.set(logits.subarray(0, n * dims.classes), at * dims.classes);
      });
      return out;
    },
    async evalEnqueue(tokens, rows) {
      await enqueueEval(tokens, rows);
    },
    evalGroup(floats) {
      const capacity = Math.max(1, Math.floor(floats));
      let target: GPUBuffer | undefined;
      let used = 0;
      const sizes: number[] = [];
      return {
        get room() {
          return capacity - used;
        },
        get pending() {
          return sizes.length;
        },
        async add(tokens, rows) {
          const n = rows * dims.classes;
          if (n > capacity - used) {
            throw new RangeError(
              `Cannot add ${n} logits to an eval group with room for ${
                capacity - used
              }: read the group first`,
            );
          }
          target ??= device.createBuffer({
            label: "eval group logits",
            size: capacity * 4,
            usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
          });
          const dest = target;
          const start = used * 4;
          await enqueueEval(
            tokens,
            rows,
            undefined,
            (g, at, chunk) => (e) =>
              e.copyBufferToBuffer(
                g.logits.buffer,
                g.logits.offset,
                dest,
                start + at * dims.classes * 4,
                chunk * dims.classes * 4,
              ),
          );
          used += n;
          sizes.push(n);
        },
        async read() {
          if (!target || sizes.length === 0) return [];
          const buffer = target;
          target = undefined;
          await buffer.mapAsync(GPUMapMode.READ, 0, used * 4);
          const all = new Float32Array(mappedCopy(buffer, 0, used * 4));
          buffer.unmap();
          buffer.destroy();
          const out: Float32Array[] = [];
          let offset = 0;
          for (const n of sizes) {
            out.push(all.subarray(offset, offset + n));
            offset += n;
          }
          used = 0;
          sizes.length = 0;
          return out;
        },
        destroy() {
          target?.destroy();
          target = undefined;
          used = 0;
          sizes.length = 0;
        },
      };
    },
    async sync() {
      await device.queue.onSubmittedWorkDone();
    },
    counts(views, perView, training = true) {
      const g = graphOf(training, views, perView);
      const prepare = g.lists.prepare.length;
      const forward = g.lists.forward.length;
      const backward = g.lists.backward.length;
      const update = g.lists.update.length;
      return {
        prepare,
        forward,
        backward,
        update,
        total: forward + backward + update,
      };
    },
    async profile(tokens, labels, views, settings) {
      const { lists, before } = await prepareStep(
        tokens,
        labels,
        views,
        labels.length,
        settings,
      );
      return await rt.profile(lists, before);
    },
    async profileEval(tokens, rows) {
      const g = graphOf(false, 1, rows);
      const copy = await stage(tokens, rows, g.input);
      return await rt.profile(evalLists(g), copy);
    },
    destroy() {
      rt.destroy();
      graphs.clear();
    },
  };
}
