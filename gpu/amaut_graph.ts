/**
 * The AMAuT model as a static WebGPU graph (issue 8): the forward pass, the
 * hand-written backward pass and the SGD update of one training step over all
 * views at once, recorded once into dispatch lists and replayed every step
 * in long compute passes (`gpu/runtime.ts`). It computes what
 * `model/train_step.ts` computes with tfjs — per-view BatchNorm statistics
 * (grouped moments), the summed label-smoothed cross-entropy of the views,
 * the running-statistics updates in view order, PyTorch SGD — in about a
 * thousand dispatches and one submit instead of tens of thousands of tfjs
 * ops.
 *
 * Parameters, their gradients and SGD momentum live in three flat arenas
 * with identical layouts, so the optimizer is one dispatch. BatchNorm and
 * LayerNorm γ and β are stored next to each other (`<module>.gb`), running
 * mean and variance likewise (`<module>.running`). Activations have their
 * own buffers, allocated once per graph.
 *
 * @module
 */
import type { ModelDims, ModelOptions, ModelPlan } from "../model/config.ts";
import { modelPlan, shapeSize } from "../model/config.ts";
import type {
  AnyKernelPlan,
  Dispatch,
  KernelPlan,
  PlanBindings,
  Region,
  Runtime,
} from "./runtime.ts";
import { planRegions } from "./runtime.ts";
import { matmul, type MatmulOptions } from "./kernels/matmul.ts";
import {
  batchNormBackward,
  batchNormEval,
  batchNormForward,
  layerNormBackward,
  layerNormForward,
  runningStatsUpdate,
  weightStdBackward,
  weightStdForward,
} from "./kernels/norm.ts";
import {
  col2im,
  im2col,
  maxPoolBackward,
  maxPoolForward,
} from "./kernels/conv.ts";
import {
  columnSum,
  gelu,
  geluBackward,
  meanRows,
  meanRowsBackward,
  softmaxBackward,
  softmaxRows,
} from "./kernels/elementwise.ts";
import {
  crossEntropy,
  mergeBackward,
  mergeForward,
  sgdUpdate,
  tokensBackward,
  tokensForward,
  weightNormBackward,
  weightNormForward,
} from "./kernels/model_ops.ts";
import { gatherRows, scatterRows } from "./kernels/rows.ts";
import { foldBatchNorm } from "./kernels/fold.ts";
import {
  attention,
  attentionBlock,
  type AttentionOptions,
} from "./kernels/attention.ts";
import { packColumns } from "./kernels/pack.ts";

/** Where one parameter lives in the arenas. */
export interface ParamSlot {
  /** PyTorch state-dict name. */
  readonly name: string;
  /** Offset in floats within the arena. */
  readonly offset: number;
  /** Element count. */
  readonly size: number;
  /** Whether it receives a gradient (false: the authors' unused ffn_norm). */
  readonly trained: boolean;
}

/** The flat parameter, gradient and momentum arenas of a model. */
export interface Arenas {
  /** Parameters. */
  readonly params: Region;
  /** Gradients (cleared at the start of every step). */
  readonly grads: Region;
  /** SGD momentum buffers. */
  readonly momentum: Region;
  /** BatchNorm running statistics (`<module>.running`: mean then variance). */
  readonly running: Region;
  /** Per-parameter slots in plan order. */
  readonly slots: readonly ParamSlot[];
  /** Running-statistics slots by buffer name (`….running_mean` / `….running_var`). */
  readonly runningSlots: ReadonlyMap<string, { offset: number; size: number }>;
  /** Bindable parameter region by name (`<module>.gb` for norms). */
  param(name: string): Region;
  /** Bindable gradient region by name. */
  grad(name: string): Region;
  /** Bindable running-statistics region of a BatchNorm module. */
  runningOf(module: string): Region;
}

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
  /** Labels (i32 `[perView]`), training only. */
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

const NORM_SUFFIX = /\.(attention_norm|ffn_norm|tf_norm|norm)$/;

/** Module prefix of a norm parameter, or undefined. */
function normModule(
  name: string,
  plan: ModelPlan,
): string | undefined {
  const m = /^(.*)\.(weight|bias)$/.exec(name);
  if (!m) return undefined;
  const mod = m[1];
  if (plan.batchNorms.has(mod) || NORM_SUFFIX.test(mod)) return mod;
  return undefined;
}

/**
 * Allocates the arenas of a model.
 *
 * @param rt The runtime.
 * @param options Model options.
 * @param dims Data sizes.
 * @returns The arenas (zeroed).
 */
export function createArenas(
  rt: Runtime,
  options: ModelOptions,
  dims: ModelDims,
): Arenas {
  const plan = modelPlan(options, dims);
  const parts: { name: string; floats: number }[] = [];
  const where = new Map<string, { part: string; at: number; size: number }>();
  for (const spec of plan.params) {
    const size = shapeSize(spec.shape);
    const mod = normModule(spec.name, plan);
    if (mod) {
      const part = `${mod}.gb`;
      if (!parts.some((p) => p.name === part)) {
        parts.push({ name: part, floats: 2 * size });
      }
      where.set(spec.name, {
        part,
        at: spec.name.endsWith(".weight") ? 0 : size,
        size,
      });
    } else {
      parts.push({ name: spec.name, floats: size });
      where.set(spec.name, { part: spec.name, at: 0, size });
    }
  }
  const params = rt.arena("params", parts);
  const grads = rt.arena("grads", parts);
  const momentum = rt.arena("momentum", parts);
  const runningParts = [...plan.batchNorms.keys()].map((m) => ({
    name: `${m}.running`,
    floats: 2 *
      shapeSize(
        plan.buffers.find((b) => b.name === `${m}.running_mean`)!.shape,
      ),
  }));
  const running = rt.arena("running", runningParts);
  const slots: ParamSlot[] = plan.params.map((spec) => {
    const w = where.get(spec.name)!;
    return {
      name: spec.name,
      offset: params.parts.get(w.part)!.offset / 4 + w.at,
      size: w.size,
      trained: options.ffnNorm || !spec.name.includes(".ffn_norm."),
    };
  });
  const runningSlots = new Map<string, { offset: number; size: number }>();
  for (const m of plan.batchNorms.keys()) {
    const r = running.parts.get(`${m}.running`)!;
    const c = r.size / 8;
    runningSlots.set(`${m}.running_mean`, { offset: r.offset / 4, size: c });
    runningSlots.set(`${m}.running_var`, { offset: r.offset / 4 + c, size: c });
  }
  const get = (a: typeof params, name: string, what: string): Region => {
    const r = a.parts.get(name);
    if (!r) throw new Error(`fused engine: no ${what} "${name}"`);
    return r;
  };
  return {
    params: params.whole,
    grads: grads.whole,
    momentum: momentum.whole,
    running: running.whole,
    slots,
    runningSlots,
    param: (n) => get(params, n, "parameter"),
    grad: (n) => get(grads, n, "gradient"),
    runningOf: (m) => get(running, `${m}.running`, "BatchNorm"),
  };
}

interface Op {
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
  /** Label smoothing ε (training). */
  readonly smoothing?: number;
  /** Embedding dropout rate in training (default `options.dropout`). */
  readonly dropout?: number;
  /** Physical buffers to draw activations from (shared by an engine's graphs). */
  readonly pool?: BufferPool;
  /**
   * Eval graphs: the fused attention kernel (`gpu/kernels/attention.ts`)
   * instead of a scores matmul, a softmax and a value matmul per block,
   * where a head's keys fit the workgroup storage (default false: on an
   * H100 the kernel took 102 µs a CS block against about 95 µs unfused). Eval
   * graphs compute keys, values and queries with one packed matmul either
   * way.
   */
  readonly fusedAttention?: boolean;
  /**
   * Workgroup-memory stages of every matmul (`MatmulOptions.stages`; default:
   * the kernel's shape rule, `chosenStages` in `gpu/kernels/matmul.ts`); for
   * tuning comparisons.
   */
  readonly matmulStages?: 1 | 2;
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

/** A region whose buffer is assigned by {@linkcode planBuffers}. */
type VirtualRegion = {
  buffer: GPUBuffer;
  offset: number;
  size: number;
  label: string;
};

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
 * Builds and records a graph.
 *
 * @param rt The runtime.
 * @param arenas The model's arenas (shared by all graphs of a model).
 * @param options Model options.
 * @param dims Data sizes.
 * @param settings Views, clips per view, training or eval.
 * @returns The recorded graph.
 */
export function buildGraph(
  rt: Runtime,
  arenas: Arenas,
  options: ModelOptions,
  dims: ModelDims,
  settings: GraphSettings,
): Graph {
  const plan = modelPlan(options, dims);
  const training = settings.training;
  const G = training ? settings.views : 1;
  const b = settings.perView;
  const R = G * b;
  const d = options.embedDim;
  const H = options.heads;
  const dh = d / H;
  const T = plan.sequence;
  const K = plan.tokens;
  const n = dims.classes;
  const dropout = training ? (settings.dropout ?? options.dropout) : 0;
  const pool = settings.pool ?? createBufferPool();

  const prep: Op[] = [];
  const fwd: Op[] = [];
  const bwd: Op[] = [];
  const upd: Op[] = [];
  let ops = fwd;
  // Typed by the plan's binding names: a misspelt, missing or extra name is
  // a compile error (and planRegions checks again at record time).
  const op = <N extends string, O extends string = never>(
    plan: KernelPlan<N, O>,
    bind: NoInfer<PlanBindings<N, O>>,
  ) => ops.push({ plan, bind: bind as Op["bind"] });
  // Activations and temporaries are virtual until the whole graph is known;
  // then planBuffers() gives each a physical buffer from the pool, reusing
  // buffers whose contents are dead (static liveness over the op order).
  const virtuals: VirtualRegion[] = [];
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
  // Kept for the whole graph, across steps (inputs, outputs, accumulators).
  const pinned = (label: string, floats: number): Region =>
    rt.alloc(label, floats);
  const temp = act;
  const P = (name: string) => arenas.param(name);
  const Gr = (name: string) => arenas.grad(name);
  const gb = (module: string) => arenas.param(`${module}.gb`);
  const dgb = (module: string) => arenas.grad(`${module}.gb`);

  const mm = (
    o: MatmulOptions,
    bind: {
      a: Region;
      b: Region;
      c: Region;
      bias?: Region;
      r?: Region;
      pre?: Region;
    },
  ) =>
    op(
      matmul(
        settings.matmulStages ? { stages: settings.matmulStages, ...o } : o,
      ),
      bind,
    );

  // ---- forward -------------------------------------------------------------
  const input = pinned("input", R * dims.frames * dims.nMels);
  interface BnRec {
    name: string;
    stats: Region;
    rows: number;
    channels: number;
  }
  const bnRecs: BnRec[] = [];
  const bnFwd = (
    x: Region,
    rows: number, // per group
    C: number,
    name: string,
    relu: boolean,
    r?: Region,
  ): Region => {
    const eps = plan.batchNorms.get(name)!;
    const y = act(`${name}.y`, G * rows * C);
    if (training) {
      const stats = act(`${name}.stats`, G * 2 * C);
      op(
        batchNormForward({
          groups: G,
          rows,
          channels: C,
          eps,
          relu,
          residual: r !== undefined,
        }),
        { x, gb: gb(name), r, y, stats },
      );
      bnRecs.push({ name, stats, rows, channels: C });
      return y;
    }
    op(
      batchNormEval({
        rows: G * rows,
        channels: C,
        eps,
        relu,
        residual: r !== undefined,
      }),
      { x, gb: gb(name), running: arenas.runningOf(name), r, y },
    );
    return y;
  };

  interface ConvRec {
    x: Region;
    out: Region;
    col: Region;
    wh: Region;
    wstats: Region;
    w: string;
    tIn: number;
    tOut: number;
    cin: number;
    cout: number;
    k: number;
    stride: number;
    pad: number;
  }
  const stdConv = (
    x: Region,
    tIn: number,
    cin: number,
    cout: number,
    k: number,
    stride: number,
    pad: number,
    w: string,
  ): { out: Region; rec: ConvRec } => {
    const tOut = Math.floor((tIn + 2 * pad - k) / stride) + 1;
    // Eval graphs standardise the weights once per weight version (the
    // `prepare` list) and keep the result; training recomputes them per step.
    const wh = training
      ? act(`${w}.std`, k * cin * cout)
      : pinned(`${w}.std`, k * cin * cout);
    const wstats = training
      ? act(`${w}.stdstats`, 2 * cout)
      : pinned(`${w}.stdstats`, 2 * cout);
    (training ? fwd : prep).push({
      plan: weightStdForward({
        rows: k * cin,
        cols: cout,
        eps: options.stdConvEps,
      }),
      bind: { w: P(w), wh, stats: wstats },
    });
    let col = x;
    if (!(k === 1 && stride === 1 && pad === 0)) {
      col = act(`${w}.col`, R * tOut * k * cin);
      op(im2col({ batch: R, tIn, cin, k, stride, pad }), { x, col });
    }
    const out = act(`${w}.out`, R * tOut * cout);
    mm({ m: R * tOut, n: cout, k: k * cin }, { a: col, b: wh, c: out });
    return {
      out,
      rec: { x, out, col, wh, wstats, w, tIn, tOut, cin, cout, k, stride, pad },
    };
  };

  /**
   * Conv + BatchNorm (+ residual) (+ ReLU). Training: the conv, then
   * BatchNorm on batch statistics. Eval: the BatchNorm is folded into the
   * standardised kernel and a bias once per weight version, so the whole
   * thing is one matmul whose epilogue adds the residual and applies ReLU.
   */
  const convBn = (
    x: Region,
    tIn: number,
    cin: number,
    cout: number,
    k: number,
    stride: number,
    pad: number,
    w: string,
    bn: string,
    relu: boolean,
    r?: Region,
  ): { y: Region; rec: ConvRec } => {
    if (training) {
      const c = stdConv(x, tIn, cin, cout, k, stride, pad, w);
      const y = bnFwd(c.out, b * c.rec.tOut, cout, bn, relu, r);
      return { y, rec: c.rec };
    }
    const tOut = Math.floor((tIn + 2 * pad - k) / stride) + 1;
    const wh = pinned(`${w}.folded`, k * cin * cout);
    const wstats = pinned(`${w}.stdstats`, 2 * cout);
    const bias = pinned(`${bn}.folded_bias`, cout);
    prep.push({
      plan: weightStdForward({
        rows: k * cin,
        cols: cout,
        eps: options.stdConvEps,
      }),
      bind: { w: P(w), wh, stats: wstats },
    });
    prep.push({
      plan: foldBatchNorm({
        rows: k * cin,
        cols: cout,
        eps: plan.batchNorms.get(bn)!,
      }),
      bind: { w: wh, gb: gb(bn), running: arenas.runningOf(bn), bias },
    });
    let col = x;
    if (!(k === 1 && stride === 1 && pad === 0)) {
      col = act(`${w}.col`, R * tOut * k * cin);
      op(im2col({ batch: R, tIn, cin, k, stride, pad }), { x, col });
    }
    const y = act(`${bn}.y`, R * tOut * cout);
    mm({
      m: R * tOut,
      n: cout,
      k: k * cin,
      bias: true,
      residual: r !== undefined,
      relu,
    }, { a: col, b: wh, bias, r, c: y });
    return {
      y,
      rec: {
        x,
        out: y,
        col,
        wh,
        wstats,
        w,
        tIn,
        tOut,
        cin,
        cout,
        k,
        stride,
        pad,
      },
    };
  };

  const cnn = "transform.embedding.restnet";
  const root = convBn(
    input,
    dims.frames,
    dims.nMels,
    options.width,
    14,
    2,
    6,
    `${cnn}.root.0.weight`,
    `${cnn}.root.1`,
    true,
  );
  const pooled = act("pool.y", R * plan.poolLength * options.width);
  const poolArg = act("pool.arg", R * plan.poolLength * options.width);
  const poolOpts = {
    batch: R,
    tIn: plan.rootLength,
    channels: options.width,
    k: 6,
    stride: 2,
    pad: 2,
  };
  op(maxPoolForward(poolOpts), { x: root.y, y: pooled, arg: poolArg });

  interface BlockRec {
    blk: (typeof plan.blocks)[number];
    x: Region;
    tIn: number;
    c1: ConvRec;
    y1: Region;
    c2: ConvRec;
    y2: Region;
    c3: ConvRec;
    out: Region;
    ds?: { conv: ConvRec; y: Region };
  }
  const blocks: BlockRec[] = [];
  let x = pooled;
  let t = plan.poolLength;
  const half = (options.kernelSize - 1) / 2;
  for (const blk of plan.blocks) {
    const p = blk.prefix;
    const c1 = convBn(
      x,
      t,
      blk.cin,
      blk.cmid,
      1,
      1,
      0,
      `${p}.conv1.weight`,
      `${p}.norm1`,
      true,
    );
    const y1 = c1.y;
    const c2 = convBn(
      y1,
      t,
      blk.cmid,
      blk.cmid,
      options.kernelSize,
      blk.stride,
      half,
      `${p}.conv2.weight`,
      `${p}.norm2`,
      true,
    );
    const t2 = c2.rec.tOut;
    const y2 = c2.y;
    let shortcut = x;
    let ds: BlockRec["ds"];
    if (blk.projection) {
      const cd = convBn(
        x,
        t,
        blk.cin,
        blk.cout,
        1,
        blk.stride,
        0,
        `${p}.downsample.weight`,
        `${p}.ds_gn`,
        false,
      );
      ds = { conv: cd.rec, y: cd.y };
      shortcut = cd.y;
    }
    const c3 = convBn(
      y2,
      t2,
      blk.cmid,
      blk.cout,
      1,
      1,
      0,
      `${p}.conv3.weight`,
      `${p}.norm3`,
      true,
      shortcut,
    );
    const out = c3.y;
    blocks.push({
      blk,
      x,
      tIn: t,
      c1: c1.rec,
      y1,
      c2: c2.rec,
      y2,
      c3: c3.rec,
      out,
      ds,
    });
    x = out;
    t = t2;
  }
  const cnnOut = x;
  const cnnC = plan.cnnChannels;
  const emb = act("embed", R * K * d);
  mm({ m: R * K, n: d, k: cnnC, bias: true }, {
    a: cnnOut,
    b: P("transform.embedding.patch_embedding.weight"),
    bias: P("transform.embedding.patch_embedding.bias"),
    c: emb,
  });

  const specials = plan.special;
  const tokenOpts = {
    batch: R,
    k: K,
    dim: d,
    sequence: T,
    embStart: options.tokenMode === "cls+tal" ? 1 : specials.length,
    specialPositions: options.tokenMode === "cls+tal"
      ? [0, T - 1]
      : specials.map((_, i) => i),
    dropout,
  };
  const stepBuf = training ? pinned("step", 4) : undefined;
  const z0 = act("z0", R * T * d);
  {
    op(tokensForward(tokenOpts), {
      emb,
      pos: P("transform.pos_embed"),
      step: dropout > 0 ? stepBuf : undefined,
      z: z0,
      ...Object.fromEntries(specials.map((s, i) => [`special${i}`, P(s)])),
    });
  }

  interface LayerRec {
    z: Region; // input of the layer
    h: Region; // LN1 output
    ln1: Region;
    /** Query rows per clip (T, or the special tokens in a trimmed last block). */
    tq: number;
    /** Query/output rows in all (R·tq). */
    rq: number;
    zq: Region; // residual input of the query rows
    hq: Region; // LN1 output of the query rows
    q: Region;
    k: Region;
    v: Region;
    p: Region;
    a: Region;
    zMid: Region;
    m: Region; // MLP input (zMid or LN2 output)
    ln2?: Region;
    pre?: Region; // fc1 pre-activation (training only)
    zOut: Region;
  }
  const layers: LayerRec[] = [];
  let z = z0;
  const rowsT = R * T;
  // The fce head reads only the special tokens, so the last block computes
  // queries, attention output and MLP for those rows alone (exact: no other
  // row of its output is used).
  const trim = options.head === "fce";
  const special = {
    batch: R,
    sequence: T,
    dim: d,
    positions: plan.specialPositions,
  };
  const batchHeads = { batch: R * H, batchInner: H };
  const probStride = (tq: number): [number, number] => [H * tq * T, tq * T];
  /** Where the d columns of a projection sit in its rows: row stride and first column. */
  interface Cols {
    ld: number;
    off: number;
  }
  const own: Cols = { ld: d, off: 0 };
  /** Batch strides of per-clip, per-head blocks of `rows` rows laid out as `l`. */
  const headStride = (rows: number, l = own): [number, number] => [
    rows * l.ld,
    dh,
  ];
  /**
   * Per clip and head: `out` [tq × T] = alpha · Xq · Xkᵀ, with Xq (tq rows)
   * and Xk (T rows) row-major, head h at columns `off + h·dh…` of rows of
   * stride `ld` (default `[rows][d]`).
   */
  const headScores = (
    tq: number,
    xq: Region,
    xk: Region,
    out: Region,
    alpha = 1,
    lq = own,
    lk = own,
  ) =>
    mm({
      m: tq,
      n: T,
      k: dh,
      transB: true,
      lda: lq.ld,
      ldb: lk.ld,
      ...batchHeads,
      strideA: headStride(tq, lq),
      strideB: headStride(T, lk),
      strideC: probStride(tq),
      offsetA: lq.off,
      offsetB: lk.off,
      alpha,
    }, { a: xq, b: xk, c: out });
  /**
   * Per clip and head, with P [tq × T]: `out` = P · X (tq rows out of T
   * rows of X), or with `transposed` Pᵀ · X (T rows out of tq rows of X).
   */
  const headMix = (
    tq: number,
    p: Region,
    x: Region,
    out: Region,
    transposed: boolean,
    lx = own,
  ) =>
    transposed
      ? mm({
        m: T,
        n: dh,
        k: tq,
        transA: true,
        lda: T,
        ldb: lx.ld,
        ldc: d,
        ...batchHeads,
        strideA: probStride(tq),
        strideB: headStride(tq, lx),
        strideC: headStride(T),
        offsetB: lx.off,
      }, { a: p, b: x, c: out })
      : mm({
        m: tq,
        n: dh,
        k: T,
        ldb: lx.ld,
        ldc: d,
        ...batchHeads,
        strideA: probStride(tq),
        strideB: headStride(T, lx),
        strideC: headStride(tq),
        offsetB: lx.off,
      }, { a: p, b: x, c: out });
  // Eval: fused attention where a head's keys fit the workgroup storage.
  /** Fused attention over clips' rows: queries `tq` per clip, K at column 0 and V at d of the K/V rows (stride ldkv), Q at offsetQ. */
  const attOpts = (
    tq: number,
    ldq: number,
    ldkv: number,
    offsetQ: number,
  ): AttentionOptions => ({
    batch: R,
    heads: H,
    queries: tq,
    keys: T,
    headDim: dh,
    ldq,
    ldk: ldkv,
    ldv: ldkv,
    ldo: d,
    offsetQ,
    offsetK: 0,
    offsetV: d,
    scale: 1 / Math.sqrt(dh),
    storageBytes: rt.device.limits.maxComputeWorkgroupStorageSize,
  });
  const fusedAtt = !training && (settings.fusedAttention ?? false) &&
    dh % 4 === 0 &&
    attentionBlock(attOpts(T, 3 * d, 3 * d, 2 * d)) !== undefined;
  for (let l = 0; l < options.depth; l++) {
    const p = `transform.layers.${l}`;
    const last = trim && l === options.depth - 1;
    const tq = last ? plan.specialPositions.length : T;
    const rq = R * tq;
    const h = act(`${p}.h`, rowsT * d);
    const ln1 = act(`${p}.ln1`, rowsT * 2);
    op(layerNormForward({ rows: rowsT, dim: d, eps: options.lnEps }), {
      x: z,
      gb: gb(`${p}.attention_norm`),
      y: h,
      stats: ln1,
    });
    let zq = z;
    let hq = h;
    if (last) {
      zq = act(`${p}.zq`, rq * d);
      hq = act(`${p}.hq`, rq * d);
      op(gatherRows(special), { x: z, y: zq });
      op(gatherRows(special), { x: h, y: hq });
    }
    const a = `${p}.attention`;
    const proj = (w: string, x: Region, rows: number) => {
      const out = act(`${a}.${w}`, rows * d);
      mm({ m: rows, n: d, k: d, bias: true }, {
        a: x,
        b: P(`${a}.${w}.weight`),
        bias: P(`${a}.${w}.bias`),
        c: out,
      });
      return out;
    };
    let q: Region;
    let k: Region;
    let v: Region;
    let probs: Region;
    const att = act(`${a}.out`, rq * d);
    if (!training) {
      // keys, values and queries from one matmul over the packed weights
      const w = pinned(`${a}.kvq.weight`, d * 3 * d);
      const bias = pinned(`${a}.kvq.bias`, 3 * d);
      const parts = (suffix: string, out: Region, rows: number) =>
        prep.push({
          plan: packColumns({ rows, widths: [d, d, d] }),
          bind: {
            src0: P(`${a}.k.${suffix}`),
            src1: P(`${a}.v.${suffix}`),
            src2: P(`${a}.q.${suffix}`),
            out,
          },
        });
      parts("weight", w, d);
      parts("bias", bias, 1);
      let lq: Cols;
      let lk: Cols;
      let lv: Cols;
      if (!last) {
        const kvq = act(`${a}.kvq`, rowsT * 3 * d);
        mm({ m: rowsT, n: 3 * d, k: d, bias: true }, {
          a: h,
          b: w,
          bias,
          c: kvq,
        });
        q = k = v = kvq;
        lk = { ld: 3 * d, off: 0 };
        lv = { ld: 3 * d, off: d };
        lq = { ld: 3 * d, off: 2 * d };
      } else {
        // trimmed block: keys and values of every row (the first 2d packed
        // columns), queries of the special rows only
        const kv = act(`${a}.kv`, rowsT * 2 * d);
        mm({ m: rowsT, n: 2 * d, k: d, ldb: 3 * d, bias: true }, {
          a: h,
          b: w,
          bias,
          c: kv,
        });
        q = proj("q", hq, rq);
        k = v = kv;
        lk = { ld: 2 * d, off: 0 };
        lv = { ld: 2 * d, off: d };
        lq = own;
      }
      if (fusedAtt) {
        op(attention(attOpts(tq, lq.ld, lk.ld, lq.off)), { q, k, v, o: att });
        probs = att;
      } else {
        const scores = act(`${a}.scores`, R * H * tq * T);
        headScores(tq, q, k, scores, 1 / Math.sqrt(dh), lq, lk);
        probs = act(`${a}.p`, R * H * tq * T);
        op(softmaxRows({ rows: R * H * tq, cols: T }), { s: scores, p: probs });
        headMix(tq, probs, v, att, false, lv);
      }
    } else {
      q = proj("q", hq, rq);
      k = proj("k", h, rowsT);
      v = proj("v", h, rowsT);
      const scores = act(`${a}.scores`, R * H * tq * T);
      headScores(tq, q, k, scores, 1 / Math.sqrt(dh));
      probs = act(`${a}.p`, R * H * tq * T);
      op(softmaxRows({ rows: R * H * tq, cols: T }), { s: scores, p: probs });
      headMix(tq, probs, v, att, false);
    }
    const zMid = act(`${p}.zmid`, rq * d);
    mm({ m: rq, n: d, k: d, bias: true, residual: true }, {
      a: att,
      b: P(`${a}.o.weight`),
      bias: P(`${a}.o.bias`),
      r: zq,
      c: zMid,
    });
    let mIn = zMid;
    let ln2: Region | undefined;
    if (options.ffnNorm) {
      mIn = act(`${p}.m`, rq * d);
      ln2 = act(`${p}.ln2`, rq * 2);
      op(layerNormForward({ rows: rq, dim: d, eps: options.lnEps }), {
        x: zMid,
        gb: gb(`${p}.ffn_norm`),
        y: mIn,
        stats: ln2,
      });
    }
    // eval graphs need only the GELU output, not the pre-activation
    const pre = training ? act(`${p}.pre`, rq * options.mlpDim) : undefined;
    const f = act(`${p}.f`, rq * options.mlpDim);
    mm({
      m: rq,
      n: options.mlpDim,
      k: d,
      bias: true,
      gelu: true,
      keepPre: training,
    }, {
      a: mIn,
      b: P(`${p}.ffn.fc1.weight`),
      bias: P(`${p}.ffn.fc1.bias`),
      c: f,
      pre,
    });
    const zOut = act(`${p}.zout`, rq * d);
    mm({ m: rq, n: d, k: options.mlpDim, bias: true, residual: true }, {
      a: f,
      b: P(`${p}.ffn.fc2.weight`),
      bias: P(`${p}.ffn.fc2.bias`),
      r: zMid,
      c: zOut,
    });
    layers.push({
      z,
      h,
      ln1,
      tq,
      rq,
      zq,
      hq,
      q,
      k,
      v,
      p: probs,
      a: att,
      zMid,
      m: mIn,
      ln2,
      pre,
      zOut,
    });
    z = zOut;
  }
  // Rows out of the transformer: every token, or the special ones (trimmed).
  const rowsOut = trim ? R * plan.specialPositions.length : rowsT;
  const zf = act("tf_norm.y", rowsOut * d);
  const lnf = act("tf_norm.stats", rowsOut * 2);
  op(layerNormForward({ rows: rowsOut, dim: d, eps: options.lnEps }), {
    x: z,
    gb: gb("transform.tf_norm"),
    y: zf,
    stats: lnf,
  });
  // The fce head's view of zf: compact rows in special-token order.
  const mergeOpts = {
    batch: R,
    sequence: trim ? plan.specialPositions.length : T,
    dim: d,
    positions: trim
      ? plan.specialPositions.map((_, i) => i)
      : plan.specialPositions,
    kernel: options.mergeKernel,
  };

  const logits = pinned("logits", R * n);
  interface HeadRec {
    hm?: Region;
    h1?: Region;
    h2?: Region;
    h3?: Region;
    w3?: Region;
    norms?: Region;
    merged?: Region;
    hn?: Region;
    lnh?: Region;
  }
  const head: HeadRec = {};
  if (options.head === "avg") {
    const hm = act("head.mean", R * d);
    op(meanRows({ batch: R, t: T, dim: d }), { x: zf, y: hm });
    const h1 = act("head.fc1", R * options.extend);
    mm({ m: R, n: options.extend, k: d, bias: true }, {
      a: hm,
      b: P("classifier.fc1.weight"),
      bias: P("classifier.fc1.bias"),
      c: h1,
    });
    const h2 = act("head.fc2", R * options.conv);
    mm({ m: R, n: options.conv, k: options.extend, bias: true }, {
      a: h1,
      b: P("classifier.fc2.weight"),
      bias: P("classifier.fc2.bias"),
      c: h2,
    });
    const h3 = bnFwd(h2, b, options.conv, "classifier.bn2", false);
    const w3 = act("head.w3", options.conv * n);
    const norms = act("head.w3norms", n);
    op(weightNormForward({ in: options.conv, out: n }), {
      g: P("classifier.fc3.parametrizations.weight.original0"),
      v: P("classifier.fc3.parametrizations.weight.original1"),
      w: w3,
      norms,
    });
    mm({ m: R, n, k: options.conv, bias: true }, {
      a: h3,
      b: w3,
      bias: P("classifier.fc3.bias"),
      c: logits,
    });
    Object.assign(head, { hm, h1, h2, h3, w3, norms });
  } else {
    const merged = act("head.merge", R * d);
    op(mergeForward(mergeOpts), {
      z: zf,
      w: P("classifier.merge.weight"),
      bias: P("classifier.merge.bias"),
      m: merged,
    });
    const hn = act("head.norm", R * d);
    const lnh = act("head.normstats", R * 2);
    op(layerNormForward({ rows: R, dim: d, eps: options.lnEps }), {
      x: merged,
      gb: gb("classifier.norm"),
      y: hn,
      stats: lnh,
    });
    mm({ m: R, n, k: d, bias: true }, {
      a: hn,
      b: P("classifier.fc.weight"),
      bias: P("classifier.fc.bias"),
      c: logits,
    });
    Object.assign(head, { merged, hn, lnh });
  }

  const clears: Region[] = [];
  let labels: Region | undefined;
  let metrics: Region | undefined;
  let hyper: Region | undefined;
  if (training) {
    // ---- loss and backward ------------------------------------------------
    ops = bwd;
    labels = pinned("labels", b);
    metrics = pinned("metrics", 4);
    const dlogits = act("dlogits", R * n);
    op(
      crossEntropy({
        rows: R,
        classes: n,
        perView: b,
        smoothing: settings.smoothing ?? 0.1,
      }),
      { logits, labels, dlogits, metrics },
    );
    // linear backward: dx = dy·Wᵀ, dW += xᵀ·dy, db += Σ dy.
    const linBwd = (
      xIn: Region,
      dy: Region,
      rows: number,
      cin: number,
      cout: number,
      w: Region,
      dw: Region,
      db: Region | undefined,
      dx: Region | undefined,
      accumulateDx = false,
    ) => {
      if (dx) {
        mm(
          { m: rows, n: cin, k: cout, transB: true, accumulate: accumulateDx },
          {
            a: dy,
            b: w,
            c: dx,
          },
        );
      }
      mm({ m: cin, n: cout, k: rows, transA: true, accumulate: true }, {
        a: xIn,
        b: dy,
        c: dw,
      });
      if (db) {
        op(columnSum({ rows, cols: cout, accumulate: true }), {
          x: dy,
          out: db,
        });
      }
    };
    /** linBwd for the linear layer `module` (its `.weight` and `.bias`). */
    const linearBackward = (
      module: string,
      xIn: Region,
      dy: Region,
      rows: number,
      cin: number,
      cout: number,
      dx: Region | undefined,
      accumulateDx = false,
    ) =>
      linBwd(
        xIn,
        dy,
        rows,
        cin,
        cout,
        P(`${module}.weight`),
        Gr(`${module}.weight`),
        Gr(`${module}.bias`),
        dx,
        accumulateDx,
      );
    const bnBwd = (
      name: string,
      dy: Region,
      y: Region | undefined,
      xIn: Region,
      rows: number,
      C: number,
      dx: Region,
      dz?: Region,
    ) => {
      const rec = bnRecs.find((r) => r.name === name)!;
      op(
        batchNormBackward({
          groups: G,
          rows,
          channels: C,
          eps: plan.batchNorms.get(name)!,
          relu: y !== undefined,
          residualGrad: dz !== undefined,
        }),
        {
          dy,
          y,
          x: xIn,
          stats: rec.stats,
          gb: gb(name),
          dx,
          dgb: dgb(name),
          dz,
        },
      );
    };

    const dzf = act("tf_norm.dy", rowsOut * d);
    if (options.head === "avg") {
      const dh3 = act("head.dh3", R * options.conv);
      const dw3 = temp("dw3", options.conv * n);
      mm({ m: R, n: options.conv, k: n, transB: true }, {
        a: dlogits,
        b: head.w3!,
        c: dh3,
      });
      mm({ m: options.conv, n, k: R, transA: true }, {
        a: head.h3!,
        b: dlogits,
        c: dw3,
      });
      op(columnSum({ rows: R, cols: n, accumulate: true }), {
        x: dlogits,
        out: Gr("classifier.fc3.bias"),
      });
      const wn = weightNormBackward({ in: options.conv, out: n });
      op(wn, {
        dw: dw3,
        g: P("classifier.fc3.parametrizations.weight.original0"),
        v: P("classifier.fc3.parametrizations.weight.original1"),
        norms: head.norms!,
        dg: Gr("classifier.fc3.parametrizations.weight.original0"),
        dv: Gr("classifier.fc3.parametrizations.weight.original1"),
      });
      const dh2 = act("head.dh2", R * options.conv);
      bnBwd("classifier.bn2", dh3, undefined, head.h2!, b, options.conv, dh2);
      const dh1 = act("head.dh1", R * options.extend);
      linearBackward(
        "classifier.fc2",
        head.h1!,
        dh2,
        R,
        options.extend,
        options.conv,
        dh1,
      );
      const dhm = act("head.dhm", R * d);
      linearBackward(
        "classifier.fc1",
        head.hm!,
        dh1,
        R,
        d,
        options.extend,
        dhm,
      );
      op(meanRowsBackward({ batch: R, t: T, dim: d }), { dy: dhm, dx: dzf });
    } else {
      const dhn = act("head.dhn", R * d);
      linearBackward("classifier.fc", head.hn!, dlogits, R, d, n, dhn);
      const dm = act("head.dm", R * d);
      op(layerNormBackward({ rows: R, dim: d }), {
        dy: dhn,
        x: head.merged!,
        gb: gb("classifier.norm"),
        stats: head.lnh!,
        dx: dm,
        dgb: dgb("classifier.norm"),
      });
      clears.push(dzf);
      op(mergeBackward(mergeOpts), {
        dm,
        w: P("classifier.merge.weight"),
        z: zf,
        dz: dzf,
        dw: Gr("classifier.merge.weight"),
        dbias: Gr("classifier.merge.bias"),
      });
    }
    // final LayerNorm; dz is the gradient of the current block's output
    // (compact special rows for a trimmed last block, then every row).
    const dz = act("dz", rowsT * d);
    let dzTop = dz;
    if (trim) dzTop = act("dz.special", rowsOut * d);
    op(layerNormBackward({ rows: rowsOut, dim: d }), {
      dy: dzf,
      x: z,
      gb: gb("transform.tf_norm"),
      stats: lnf,
      dx: dzTop,
      dgb: dgb("transform.tf_norm"),
    });
    for (let l = options.depth - 1; l >= 0; l--) {
      const L = layers[l];
      const p = `transform.layers.${l}`;
      const a = `${p}.attention`;
      const { tq, rq } = L;
      const dzl = rq === rowsT ? dz : dzTop;
      const dF = temp("dF", rq * options.mlpDim);
      const dPre = temp("dPre", rq * options.mlpDim);
      // z_out = z_mid + fc2(gelu(fc1(m)))
      // GELU is cheap: recompute its output rather than keep it per layer.
      const f = temp("gelu", rq * options.mlpDim);
      op(gelu({ n: rq * options.mlpDim }), { x: L.pre!, y: f });
      linearBackward(`${p}.ffn.fc2`, f, dzl, rq, options.mlpDim, d, dF);
      op(geluBackward({ n: rq * options.mlpDim }), {
        dy: dF,
        x: L.pre!,
        dx: dPre,
      });
      if (options.ffnNorm) {
        const dM = temp("dM", rq * d);
        linearBackward(`${p}.ffn.fc1`, L.m, dPre, rq, d, options.mlpDim, dM);
        op(layerNormBackward({ rows: rq, dim: d, accumulateDx: true }), {
          dy: dM,
          x: L.zMid,
          gb: gb(`${p}.ffn_norm`),
          stats: L.ln2!,
          dx: dzl,
          dgb: dgb(`${p}.ffn_norm`),
        });
      } else {
        linearBackward(
          `${p}.ffn.fc1`,
          L.m,
          dPre,
          rq,
          d,
          options.mlpDim,
          dzl,
          true,
        );
      }
      // dzl now holds d z_mid; z_mid = z + o(attention(LN1(z)))
      const dA = temp("dA", rq * d);
      linearBackward(`${a}.o`, L.a, dzl, rq, d, d, dA);
      const dP = temp("dP", R * H * tq * T);
      headScores(tq, dA, L.v, dP);
      const dV = temp("dV", rowsT * d);
      headMix(tq, L.p, dA, dV, true);
      const dS = temp("dS", R * H * tq * T);
      op(
        softmaxBackward({
          rows: R * H * tq,
          cols: T,
          scale: 1 / Math.sqrt(dh),
        }),
        { dp: dP, p: L.p, ds: dS },
      );
      const dQ = temp("dQ", rq * d);
      headMix(tq, dS, L.k, dQ, false);
      const dK = temp("dK", rowsT * d);
      headMix(tq, dS, L.q, dK, true);
      // dH = d LN1(z): keys and values from every row, queries from rq rows.
      const dH = temp("dH", rowsT * d);
      const trimmed = rq !== rowsT;
      const dHq = trimmed ? temp("dHq", rq * d) : dH;
      linearBackward(`${a}.q`, L.hq, dQ, rq, d, d, dHq);
      linearBackward(`${a}.k`, L.h, dK, rowsT, d, d, dH, !trimmed);
      linearBackward(`${a}.v`, L.h, dV, rowsT, d, d, dH, true);
      if (trimmed) {
        op(scatterRows({ ...special, accumulate: true }), { x: dHq, y: dH });
        // Only the query rows carry the residual gradient: dz = scatter(dzl).
        op(scatterRows(special), { x: dzl, y: dz });
      }
      op(layerNormBackward({ rows: rowsT, dim: d, accumulateDx: true }), {
        dy: dH,
        x: L.z,
        gb: gb(`${p}.attention_norm`),
        stats: L.ln1,
        dx: dz,
        dgb: dgb(`${p}.attention_norm`),
      });
    }
    // tokens
    const demb = act("embed.d", R * K * d);
    {
      op(tokensBackward(tokenOpts), {
        dz,
        step: dropout > 0 ? stepBuf : undefined,
        demb,
        dpos: Gr("transform.pos_embed"),
        ...Object.fromEntries(specials.map((s, i) => [`dspecial${i}`, Gr(s)])),
      });
    }
    let dOut = act("cnn.dout", R * K * cnnC);
    linearBackward(
      "transform.embedding.patch_embedding",
      cnnOut,
      demb,
      R * K,
      cnnC,
      d,
      dOut,
    );

    const dwh = (n: number) => temp("dwh", n);
    const convBwd = (
      c: ConvRec,
      dy: Region,
      dx: Region | undefined,
      accumulate: boolean,
    ) => {
      const kc = c.k * c.cin;
      const dW = dwh(kc * c.cout);
      // im2col is cheap: recompute it rather than keep every conv's columns.
      let col = c.x;
      if (c.col !== c.x) {
        col = temp("col", R * c.tOut * kc);
        op(
          im2col({
            batch: R,
            tIn: c.tIn,
            cin: c.cin,
            k: c.k,
            stride: c.stride,
            pad: c.pad,
          }),
          { x: c.x, col },
        );
      }
      mm({ m: kc, n: c.cout, k: R * c.tOut, transA: true }, {
        a: col,
        b: dy,
        c: dW,
      });
      op(weightStdBackward({ rows: kc, cols: c.cout, accumulate: true }), {
        dwh: dW,
        wh: c.wh,
        stats: c.wstats,
        dw: Gr(c.w),
      });
      if (!dx) return;
      if (c.col === c.x) {
        mm({ m: R * c.tIn, n: c.cin, k: c.cout, transB: true, accumulate }, {
          a: dy,
          b: c.wh,
          c: dx,
        });
      } else {
        const dcol = temp("dcol", R * c.tOut * kc);
        mm({ m: R * c.tOut, n: kc, k: c.cout, transB: true }, {
          a: dy,
          b: c.wh,
          c: dcol,
        });
        op(
          col2im({
            batch: R,
            tIn: c.tIn,
            cin: c.cin,
            k: c.k,
            stride: c.stride,
            pad: c.pad,
            accumulate,
          }),
          {
            dcol,
            dx,
          },
        );
      }
    };
    for (let i = blocks.length - 1; i >= 0; i--) {
      const B = blocks[i];
      const p = B.blk.prefix;
      const t2 = B.c2.tOut;
      const dh3 = act(`${p}.dh3`, R * t2 * B.blk.cout);
      const dx = act(`${p}.dx`, R * B.tIn * B.blk.cin);
      if (B.ds) {
        const dres = act(`${p}.dres`, R * t2 * B.blk.cout);
        bnBwd(
          `${p}.norm3`,
          dOut,
          B.out,
          B.c3.out,
          b * t2,
          B.blk.cout,
          dh3,
          dres,
        );
        const dhd = act(`${p}.dhd`, R * t2 * B.blk.cout);
        bnBwd(
          `${p}.ds_gn`,
          dres,
          undefined,
          B.ds.conv.out,
          b * t2,
          B.blk.cout,
          dhd,
        );
        convBwd(B.ds.conv, dhd, dx, false);
      } else {
        // identity shortcut: the masked gradient goes straight to dx.
        bnBwd(`${p}.norm3`, dOut, B.out, B.c3.out, b * t2, B.blk.cout, dh3, dx);
      }
      const dy2 = act(`${p}.dy2`, R * t2 * B.blk.cmid);
      convBwd(B.c3, dh3, dy2, false);
      const dh2 = act(`${p}.dh2`, R * t2 * B.blk.cmid);
      bnBwd(`${p}.norm2`, dy2, B.y2, B.c2.out, b * t2, B.blk.cmid, dh2);
      const dy1 = act(`${p}.dy1`, R * B.tIn * B.blk.cmid);
      convBwd(B.c2, dh2, dy1, false);
      const dh1 = act(`${p}.dh1`, R * B.tIn * B.blk.cmid);
      bnBwd(`${p}.norm1`, dy1, B.y1, B.c1.out, b * B.tIn, B.blk.cmid, dh1);
      convBwd(B.c1, dh1, dx, true);
      dOut = dx;
    }
    const dRoot = act("root.dy", R * plan.rootLength * options.width);
    op(maxPoolBackward(poolOpts), { dy: dOut, arg: poolArg, dx: dRoot });
    const dRootH = act("root.dh", R * plan.rootLength * options.width);
    bnBwd(
      `${cnn}.root.1`,
      dRoot,
      root.y,
      root.rec.out,
      b * plan.rootLength,
      options.width,
      dRootH,
    );
    convBwd(root.rec, dRootH, undefined, false);

    // ---- update -------------------------------------------------------------
    ops = upd;
    for (const r of bnRecs) {
      op(
        runningStatsUpdate({
          groups: G,
          channels: r.channels,
          momentum: options.bnMomentum,
          count: r.rows,
        }),
        { stats: r.stats, running: arenas.runningOf(r.name) },
      );
    }
    const segments = arenas.slots.filter((s) => s.trained).map((s) => ({
      offset: s.offset,
      size: s.size,
    }));
    hyper = pinned("hyper", 8 + segments.length);
    op(sgdUpdate({ total: arenas.params.size / 4, segments }), {
      params: arenas.params,
      grads: arenas.grads,
      momentum: arenas.momentum,
      hyper,
    });
    clears.unshift(arenas.grads);
  }

  // ---- plan buffers and record ---------------------------------------------
  planBuffers(rt, pool, virtuals, [...prep, ...fwd, ...bwd, ...upd], clears);
  const scratch = new Map<string, number>();
  for (const o of [...prep, ...fwd, ...bwd, ...upd]) {
    for (const [name, floats] of Object.entries(o.plan.scratch ?? {})) {
      scratch.set(name, Math.max(scratch.get(name) ?? 0, floats));
    }
  }
  const scratchRegions = new Map<string, Region>();
  for (const [name, floats] of scratch) {
    scratchRegions.set(name, pinned(`scratch:${name}`, floats));
  }
  const record = (list: Op[]): Dispatch[] => {
    const out: Dispatch[] = [];
    for (const o of list) {
      const regions = planRegions(o.plan, o.bind, (n) => scratchRegions.get(n));
      o.plan.steps.forEach((step, i) => rt.record(out, step.spec, regions[i]));
    }
    return out;
  };
  const lists = {
    prepare: record(prep),
    forward: record(fwd),
    backward: record(bwd),
    update: record(upd),
  };
  return {
    lists,
    input,
    logits,
    labels,
    metrics,
    step: stepBuf,
    hyper,
    clears,
    rows: R,
  };
}
