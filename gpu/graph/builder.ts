/**
 * The graph builder of the fused engine: the lists a graph records into
 * (prepare, forward, backward, update), ops (a kernel plan with its bindings
 * by name), activations (virtual regions given physical buffers by liveness
 * once the whole graph is known), pinned regions, and the final recording
 * into dispatch lists (`gpu/runtime.ts`). The layer modules beside it
 * (`stem.ts`, `bottleneck.ts`, …) record their forward and backward through
 * a {@linkcode Builder}; `model.ts` walks the model description with them.
 *
 * @module
 */
import type {
  AnyKernelPlan,
  Dispatch,
  KernelPlan,
  PlanBindings,
  Region,
  Runtime,
} from "../runtime.ts";
import { planRegions } from "../runtime.ts";
import { matmul, type MatmulOptions } from "../kernels/matmul.ts";
import { castToF16, halfWords } from "../kernels/cast.ts";
import { type Arenas, gbOf } from "./arenas.ts";
import type { BatchNormPlan } from "../../model/plan.ts";
import type { TtdaLossOptions } from "../../model/ttda_loss.ts";
import type { LossScaleRecord } from "./sgd.ts";

/** One kernel plan with its regions by binding name. */
export interface Op {
  readonly plan: AnyKernelPlan;
  readonly bind: Readonly<Record<string, Region | undefined>>;
}

/** Settings of a graph. */
export interface GraphSettings {
  /** Views per step (training) — BatchNorm statistics are per view. */
  readonly views: number;
  /** Clips per view. */
  readonly perView: number;
  /** Training step (forward, backward, update) or eval forward only. */
  readonly training: boolean;
  /** Label smoothing ε (training; default 0.1). */
  readonly smoothing?: number;
  /**
   * Training objective: absent, the label-smoothed cross-entropy; given,
   * TTDA's unsupervised loss with these rates (no labels).
   */
  readonly ttda?: TtdaLossOptions;
  /** Embedding dropout rate in training (default `options.dropout`). */
  readonly dropout?: number;
  /** Physical buffers to draw activations from (shared by an engine's graphs). */
  readonly pool?: BufferPool;
  /**
   * Workgroup-memory stages of every matmul (`MatmulOptions.stages`; default:
   * the kernel's shape rule, `chosenStages` in `gpu/kernels/matmul.ts`); for
   * tuning comparisons.
   */
  readonly matmulStages?: 1 | 2;
  /**
   * Numeric precision of the matmuls (default "fp32"). "mixed" (issue 18):
   * every matmul reads f16 operands and accumulates in f32 — weights are cast
   * to an f16 copy once per step (training: in the forward list; eval: once
   * per weight version, in the prepare list), activations and gradients that
   * feed a matmul are cast to f16 by the op that first needs them (a forward
   * activation's f16 copy is kept for the backward), outputs, biases,
   * residuals, norms, softmax, losses, gradients and SGD stay f32. Needs the
   * device's `shader-f16`.
   */
  readonly precision?: Precision;
  /**
   * Dynamic loss scaling of a training graph (mixed precision): the loss
   * seed is multiplied by the scale (`recordLossScaleSeed`) and the update
   * is the loss-scaled one (`recordUpdate(b, lossScale)`, which skips a
   * step with inf/NaN gradients and lowers the scale).
   */
  readonly lossScale?: LossScaleRecord;
}

/** Numeric precision of a graph's matmuls (see {@linkcode GraphSettings.precision}). */
export type Precision = "fp32" | "mixed";

/** A recorded graph. */
export interface Graph {
  /**
   * Dispatch lists: prepare (eval graphs: weight standardisation, to run
   * after the weights change), forward, backward and update (training only).
   */
  readonly lists: {
    prepare: Dispatch[];
    forward: Dispatch[];
    backward: Dispatch[];
    update: Dispatch[];
  };
  /** Input tokens `[rows·frames, nMels]`. */
  readonly input: Region;
  /** Logits `[rows, classes]`. */
  readonly logits: Region;
  /** Labels (i32 `[perView]`), training with the cross-entropy only. */
  readonly labels?: Region;
  /** Loss metrics (`[lossSum, correct, count, 0]`), training only. */
  readonly metrics?: Region;
  /** Dropout seed (u32 `[1]`), training only. */
  readonly step?: Region;
  /** SGD hyper-parameters, training only. */
  readonly hyper?: Region;
  /** Regions to clear before each step (gradients, accumulators). */
  readonly clears: readonly Region[];
  /** Total rows (views · per view). */
  readonly rows: number;
}

/**
 * Physical activation buffers shared by the graphs of one engine. Graphs
 * run one after another, never overlapping, and keep nothing in these
 * buffers between runs, so each graph may use all of them.
 */
export interface BufferPool {
  /** The buffers (region size = buffer size). */
  readonly buffers: Region[];
}

/** An empty {@linkcode BufferPool}. */
export function createBufferPool(): BufferPool {
  return { buffers: [] };
}

/** The list an op goes to. */
export type ListName = "prepare" | "forward" | "backward" | "update";

/** Batch statistics of one BatchNorm in a training forward, for the running-statistics update. */
export interface BatchStatRecord {
  /** The BatchNorm. */
  readonly norm: BatchNormPlan;
  /** Per view: mean and biased variance, `[views, 2, channels]`. */
  readonly stats: Region;
  /** Rows per view. */
  readonly rows: number;
}

/** What the layer recorders record through. */
export interface Builder {
  /** The runtime. */
  readonly rt: Runtime;
  /** The model's arenas. */
  readonly arenas: Arenas;
  /** Training graph (batch statistics, backward) or eval graph. */
  readonly training: boolean;
  /** BatchNorm groups: views in training, 1 in eval. */
  readonly groups: number;
  /** Clips per group. */
  readonly perView: number;
  /** Clips in all, R = groups · perView. */
  readonly rows: number;
  /** Ops so far, per list. */
  readonly lists: Readonly<Record<ListName, Op[]>>;
  /** BatchNorm statistics of the training forward, in forward order. */
  readonly batchStats: BatchStatRecord[];
  /** Regions cleared before each step. */
  readonly clears: Region[];
  /** Makes `list` the one {@linkcode Builder.op} appends to. */
  into(list: ListName): void;
  /**
   * Appends an op to the current list (or to `list`). Typed by the plan's
   * binding names: a misspelt, missing or extra name is a compile error (and
   * `planRegions` checks again at record time).
   */
  op<N extends string, O extends string = never>(
    plan: KernelPlan<N, O>,
    bind: NoInfer<PlanBindings<N, O>>,
    list?: ListName,
  ): void;
  /** Whether the matmuls take f16 operands (`precision: "mixed"`). */
  readonly mixed: boolean;
  /**
   * The f16 copy of a matmul operand (mixed precision; the region itself in
   * fp32 or when it already holds halves). A weight (a parameter, or a
   * region the prepare list writes) is cast once per step in training (the
   * forward list) and once per weight version in eval (the prepare list); an
   * activation is cast in the current list. Copies made in the forward or
   * prepare list are kept and returned again (the backward reuses the
   * forward's f16 activations); in the backward every call casts afresh
   * (gradients change in place), so cast a gradient once and pass the copy.
   */
  half(x: Region): Region;
  /**
   * A matmul op (`gpu/kernels/matmul.ts` bindings a, b, c, bias, r, pre);
   * with mixed precision `a` and `b` go through {@linkcode Builder.half}
   * and the kernel reads them as f16, unless `precision` is "fp32" (the
   * convolutions: see `conv_bn.ts`).
   */
  mm(
    o: MatmulOptions,
    bind: {
      a: Region;
      b: Region;
      c: Region;
      bias?: Region;
      r?: Region;
      pre?: Region;
    },
    precision?: Precision,
  ): void;
  /** An activation or temporary of `floats` elements (buffer assigned by liveness). */
  act(label: string, floats: number): Region;
  /** A region of its own, kept for the graph's life (inputs, outputs, prepared weights). */
  pinned(label: string, floats: number): Region;
  /** A parameter by name. */
  param(name: string): Region;
  /** A parameter's gradient by name. */
  grad(name: string): Region;
  /** A norm module's γ and β (`<module>.gb`). */
  gb(module: string): Region;
  /** Their gradient. */
  dgb(module: string): Region;
}

/** A region whose buffer is assigned by {@linkcode planBuffers}. */
type VirtualRegion = {
  buffer: GPUBuffer;
  offset: number;
  size: number;
  label: string;
};

/**
 * Creates a builder for one graph.
 *
 * @param rt The runtime.
 * @param arenas The model's arenas.
 * @param settings Views, clips per view, training or eval, matmul stages.
 */
export function createBuilder(
  rt: Runtime,
  arenas: Arenas,
  settings: GraphSettings,
): Builder & { readonly virtuals: readonly VirtualRegion[] } {
  const groups = settings.training ? settings.views : 1;
  const lists: Record<ListName, Op[]> = {
    prepare: [],
    forward: [],
    backward: [],
    update: [],
  };
  let current: ListName = "forward";
  const virtuals: VirtualRegion[] = [];
  const op: Builder["op"] = (plan, bind, list = current) =>
    lists[list].push({ plan, bind: bind as Op["bind"] });
  const mixed = settings.precision === "mixed";
  const act = (label: string, floats: number): Region => {
    const region: VirtualRegion = {
      buffer: undefined as unknown as GPUBuffer,
      offset: 0,
      size: Math.max(1, floats) * 4,
      label,
    };
    virtuals.push(region);
    return region;
  };
  /** Regions holding halves, and the kept f16 copies of f32 regions. */
  const halves = new Set<Region>();
  const copies = new Map<Region, Region>();
  const half = (x: Region): Region => {
    if (!mixed || halves.has(x)) return x;
    const kept = copies.get(x);
    if (kept) return kept;
    const n = x.size / 4;
    const weight = x.buffer === arenas.params.buffer ||
      lists.prepare.some((o) => Object.values(o.bind).includes(x));
    const list: ListName = weight
      ? (settings.training ? "forward" : "prepare")
      : current;
    const y = weight || list === "prepare"
      ? rt.alloc(`${x.label}.f16`, halfWords(n))
      : act(`${x.label}.f16`, halfWords(n));
    op(castToF16({ n }), { x, y }, list);
    halves.add(y);
    if (list !== "backward") copies.set(x, y);
    return y;
  };
  return {
    rt,
    arenas,
    training: settings.training,
    groups,
    perView: settings.perView,
    rows: groups * settings.perView,
    lists,
    batchStats: [],
    clears: [],
    virtuals,
    into(list) {
      current = list;
    },
    op,
    mixed,
    half,
    mm(o, bind, precision) {
      const staged = settings.matmulStages
        ? { stages: settings.matmulStages, ...o }
        : o;
      if (!mixed || precision === "fp32") return op(matmul(staged), bind);
      const a = half(bind.a);
      const b = half(bind.b);
      op(matmul({ ...staged, operands: "f16" }), { ...bind, a, b });
    },
    act,
    pinned: (label, floats) => rt.alloc(label, floats),
    param: (name) => arenas.param(name),
    grad: (name) => arenas.grad(name),
    gb: (module) => arenas.param(gbOf(module)),
    dgb: (module) => arenas.grad(gbOf(module)),
  };
}

/**
 * Assigns physical buffers to virtual regions by liveness: a region is live
 * from the first to the last op that binds it (from the start for regions
 * cleared before the step); a buffer is reused once every region in it is
 * dead, best fit by size. New buffers join the pool.
 */
function planBuffers(
  rt: Runtime,
  pool: BufferPool,
  virtuals: readonly VirtualRegion[],
  ops: readonly Op[],
  clears: readonly Region[],
): void {
  const first = new Map<Region, number>();
  const last = new Map<Region, number>();
  const isVirtual = new Set<Region>(virtuals);
  ops.forEach((o, i) => {
    for (const r of Object.values(o.bind)) {
      if (!r || !isVirtual.has(r)) continue;
      if (!first.has(r)) first.set(r, i);
      last.set(r, i);
    }
  });
  for (const r of clears) if (isVirtual.has(r)) first.set(r, -1);
  const order = virtuals.filter((r) => first.has(r)).sort((a, b) =>
    first.get(a)! - first.get(b)!
  );
  const free = [...pool.buffers];
  const live: { region: VirtualRegion; physical: Region }[] = [];
  for (const region of order) {
    const start = first.get(region)!;
    for (let i = live.length - 1; i >= 0; i--) {
      if (last.get(live[i].region)! < start) {
        free.push(live[i].physical);
        live.splice(i, 1);
      }
    }
    let best = -1;
    free.forEach((b, i) => {
      if (b.size >= region.size && (best < 0 || b.size < free[best].size)) {
        best = i;
      }
    });
    let physical: Region;
    if (best >= 0) physical = free.splice(best, 1)[0];
    else {
      physical = rt.alloc(`pool${pool.buffers.length}`, region.size / 4);
      pool.buffers.push(physical);
    }
    region.buffer = physical.buffer;
    live.push({ region, physical });
  }
}

/**
 * Gives the builder's activations buffers from `pool` (by liveness), the
 * kernels' scratch regions theirs, and records every list.
 *
 * @param b The builder, every op appended.
 * @param pool Physical buffers shared by an engine's graphs.
 * @returns Dispatch lists by name.
 * @throws {Error} When a kernel needs a binding no op provides.
 */
export function recordLists(
  b: Builder & { readonly virtuals: readonly VirtualRegion[] },
  pool: BufferPool,
): Graph["lists"] {
  const all = [
    ...b.lists.prepare,
    ...b.lists.forward,
    ...b.lists.backward,
    ...b.lists.update,
  ];
  planBuffers(b.rt, pool, b.virtuals, all, b.clears);
  const scratch = new Map<string, number>();
  for (const o of all) {
    for (const [name, floats] of Object.entries(o.plan.scratch ?? {})) {
      scratch.set(name, Math.max(scratch.get(name) ?? 0, floats));
    }
  }
  const scratchRegions = new Map<string, Region>();
  for (const [name, floats] of scratch) {
    scratchRegions.set(name, b.pinned(`scratch:${name}`, floats));
  }
  const record = (list: readonly Op[]): Dispatch[] => {
    const out: Dispatch[] = [];
    for (const o of list) {
      const regions = planRegions(o.plan, o.bind, (n) => scratchRegions.get(n));
      o.plan.steps.forEach((step, i) =>
        b.rt.record(out, step.spec, regions[i])
      );
    }
    return out;
  };
  return {
    prepare: record(b.lists.prepare),
    forward: record(b.lists.forward),
    backward: record(b.lists.backward),
    update: record(b.lists.update),
  };
}
