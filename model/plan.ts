/**
 * The AMAuT model description (issue 13): one ordered list of layers — kind,
 * parameter names, shapes and geometry — that the tfjs model
 * (`model/amaut.ts`) and the fused WebGPU graph (`gpu/graph/`) both walk,
 * plus every tensor with its PyTorch name, layout and initialiser (reference
 * §3–§6, authors' `AuT/lib/embed.py` and `AuT/lib/model.py`). Names,
 * constants and the conv output-length formula live here and nowhere else.
 *
 * Everything is plain data: nothing allocates a tensor.
 *
 * Shape legend: `t` frames, `c` channels, `k` tokens, `d` model width.
 *
 * @module
 */
import type { ModelDims, ModelOptions } from "./config.ts";
import { stateDict, type TensorSpec } from "./tensors.ts";

export {
  type Init,
  type Layout,
  shapeSize,
  type TensorSpec,
} from "./tensors.ts";

/**
 * PyTorch `Conv1d`/`MaxPool1d` output length, floor((t + 2·pad − k) / stride) + 1
 * (the one copy of this formula).
 *
 * @param t Input length (frames).
 * @param k Kernel.
 * @param stride Stride.
 * @param pad Padding per side.
 * @returns Output length (may be < 1 when the input is too short).
 */
export function convLength(
  t: number,
  k: number,
  stride: number,
  pad: number,
): number {
  return Math.floor((t + 2 * pad - k) / stride) + 1;
}

/** Geometry of a 1-D window over time (conv or pool), in frames. */
export interface Window {
  /** Kernel (taps). */
  readonly kernel: number;
  /** Stride. */
  readonly stride: number;
  /** Padding per side. */
  readonly pad: number;
  /** Input length. */
  readonly tIn: number;
  /** Output length ({@linkcode convLength}). */
  readonly tOut: number;
}

/** A BatchNorm1d module: γ/β parameters and running statistics. */
export interface BatchNormPlan {
  /** Module prefix, e.g. `transform.embedding.restnet.root.1`. */
  readonly module: string;
  /** γ `[c]`. */
  readonly weight: string;
  /** β `[c]`. */
  readonly bias: string;
  /** Running mean buffer `[c]`. */
  readonly runningMean: string;
  /** Running variance buffer `[c]`. */
  readonly runningVar: string;
  /** Channels c. */
  readonly channels: number;
  /** Added to the variance. */
  readonly eps: number;
  /** Running-statistics momentum m (PyTorch: running = (1 − m)·running + m·batch). */
  readonly momentum: number;
}

/** A LayerNorm module over the last axis. */
export interface LayerNormPlan {
  /** Module prefix. */
  readonly module: string;
  /** γ `[d]`. */
  readonly weight: string;
  /** β `[d]`. */
  readonly bias: string;
  /** Normalised width d. */
  readonly dim: number;
  /** Added to the variance. */
  readonly eps: number;
}

/** A linear layer `y = x·W + b`, weight `[cin, cout]` (a 1x1 conv's `[1, cin, cout]` alike). */
export interface LinearPlan {
  /** Weight name. */
  readonly weight: string;
  /** Bias name `[cout]`. */
  readonly bias: string;
  /** Input width. */
  readonly cin: number;
  /** Output width. */
  readonly cout: number;
}

/**
 * A weight-standardised conv (StdConv1d, no bias) followed by BatchNorm1d,
 * kernel `[k, cin, cout]`.
 */
export interface ConvBnPlan extends Window {
  /** Kernel name `[k, cin, cout]`. */
  readonly weight: string;
  /** Epsilon of the per-output-channel weight standardisation. */
  readonly stdEps: number;
  /** Input channels. */
  readonly cin: number;
  /** Output channels. */
  readonly cout: number;
  /** The BatchNorm after it. */
  readonly norm: BatchNormPlan;
}

/**
 * The CNN root: conv + BatchNorm + ReLU, then (`maxPool`) a max-pool padded
 * with −∞.
 */
export interface StemLayer {
  readonly kind: "stem";
  /** Module prefix. */
  readonly name: string;
  /** Conv + BatchNorm. */
  readonly conv: ConvBnPlan;
  /** Whether the max-pool runs (option `rootPool`). */
  readonly maxPool: boolean;
  /**
   * Max-pool window over the conv output; channels = `conv.cout`. Without
   * `maxPool` it passes the conv's length through (k1 s1 p0, `tOut` = `tIn`).
   */
  readonly pool: Window;
}

/**
 * A post-activation bottleneck block: relu(bn1(conv1 1x1)) → relu(bn2(conv2
 * k, stride)) → bn3(conv3 1x1), plus the shortcut (identity, or 1x1 conv
 * with the stride + BatchNorm), then ReLU.
 */
export interface BottleneckLayer {
  readonly kind: "bottleneck";
  /** State-dict prefix, `transform.embedding.restnet.layers.<i>`. */
  readonly name: string;
  /** Input channels. */
  readonly cin: number;
  /** Output channels. */
  readonly cout: number;
  /** Bottleneck channels. */
  readonly cmid: number;
  /** Stride of the middle conv and of the shortcut. */
  readonly stride: number;
  /** Input length. */
  readonly tIn: number;
  /** Output length. */
  readonly tOut: number;
  readonly conv1: ConvBnPlan;
  readonly conv2: ConvBnPlan;
  readonly conv3: ConvBnPlan;
  /** Projection shortcut (first block of a group when the shape changes). */
  readonly shortcut?: ConvBnPlan;
}

/** The CNN's plain 1x1 conv (with bias) to the model width: K tokens per clip. */
export interface PatchEmbedLayer {
  readonly kind: "patchEmbed";
  /** Weight `[1, cin, d]` (used as `[cin, d]`) and bias. */
  readonly linear: LinearPlan;
  /** Tokens per clip, K. */
  readonly tokens: number;
}

/** Special tokens around the embedded ones, positional embedding, dropout. */
export interface TokensLayer {
  readonly kind: "tokens";
  /** Positional embedding `[1, T, d]`. */
  readonly posEmbed: string;
  /** Special tokens `[1, 1, d]`, in state-dict order. */
  readonly special: readonly string[];
  /** Sequence position of each special token (same order). */
  readonly positions: readonly number[];
  /** Position of the first embedded token. */
  readonly embStart: number;
  /** Embedded tokens per clip, K. */
  readonly tokens: number;
  /** Sequence length T = K + special tokens. */
  readonly sequence: number;
  /** Width d. */
  readonly dim: number;
}

/** A pre-norm transformer block: z + o(attention(LN1 z)), then + fc2(gelu(fc1(m))). */
export interface TransformerLayer {
  readonly kind: "transformer";
  /** Module prefix, `transform.layers.<i>`. */
  readonly name: string;
  /** Width d. */
  readonly dim: number;
  /** Attention heads. */
  readonly heads: number;
  /** MLP hidden width. */
  readonly mlpDim: number;
  /** Sequence length T. */
  readonly sequence: number;
  readonly attentionNorm: LayerNormPlan;
  readonly q: LinearPlan;
  readonly k: LinearPlan;
  readonly v: LinearPlan;
  readonly o: LinearPlan;
  /** The ffn_norm module (its parameters exist either way). */
  readonly ffnNorm: LayerNormPlan;
  /** Whether the MLP reads ffn_norm's output (false: the authors' bug, m = z). */
  readonly useFfnNorm: boolean;
  readonly fc1: LinearPlan;
  readonly fc2: LinearPlan;
}

/** The transformer's final LayerNorm over every token. */
export interface FinalNormLayer {
  readonly kind: "finalNorm";
  readonly norm: LayerNormPlan;
  /** Sequence length T. */
  readonly sequence: number;
}

/** The avg head: mean over tokens, fc1, fc2, BatchNorm, weight-normalised fc3. */
export interface AvgHeadLayer {
  readonly kind: "avgHead";
  /** Tokens averaged, T. */
  readonly sequence: number;
  readonly fc1: LinearPlan;
  readonly fc2: LinearPlan;
  readonly norm: BatchNormPlan;
  /** fc3 with weight norm: gain g `[1, n]`, direction v `[cin, n]`, bias. */
  readonly fc3: LinearPlan & { readonly gain: string };
}

/**
 * The fce head: a conv over the embedding axis of the special tokens
 * (in-channels = special tokens, one out-channel, padding (k − 1) / 2),
 * LayerNorm, fc.
 */
export interface FceHeadLayer {
  readonly kind: "fceHead";
  /** Sequence positions read (the special tokens). */
  readonly positions: readonly number[];
  /** Rows per clip of its input, T. */
  readonly sequence: number;
  /** Merge conv: weight `[k, specials, 1]`, bias `[1]`, window over d. */
  readonly merge: {
    readonly weight: string;
    readonly bias: string;
    readonly kernel: number;
    readonly pad: number;
  };
  readonly norm: LayerNormPlan;
  readonly fc: LinearPlan;
  /** Width d. */
  readonly dim: number;
}

/** One layer of the model description. */
export type LayerPlan =
  | StemLayer
  | BottleneckLayer
  | PatchEmbedLayer
  | TokensLayer
  | TransformerLayer
  | FinalNormLayer
  | AvgHeadLayer
  | FceHeadLayer;

/** The head layer. */
export type HeadLayer = AvgHeadLayer | FceHeadLayer;

/** Everything about a model's structure that does not need tensors. */
export interface ModelPlan {
  /** The layers in forward order. */
  readonly layers: readonly LayerPlan[];
  /** Bottleneck blocks in order (a view of `layers`). */
  readonly blocks: readonly BottleneckLayer[];
  /** Channels out of the CNN (width · 2^(1 + groups)). */
  readonly cnnChannels: number;
  /** Tokens out of the CNN, K. */
  readonly tokens: number;
  /** Special tokens in sequence order of their state-dict names. */
  readonly special: readonly string[];
  /** Sequence positions the fce head reads (the special tokens). */
  readonly specialPositions: readonly number[];
  /** Transformer sequence length (K + special tokens). */
  readonly sequence: number;
  /** Trainable parameters in state-dict order. */
  readonly params: readonly TensorSpec[];
  /** BatchNorm running statistics in state-dict order. */
  readonly buffers: readonly TensorSpec[];
  /** BatchNorm modules in state-dict order, by prefix. */
  readonly batchNorms: ReadonlyMap<string, BatchNormPlan>;
  /** Norm modules whose γ and β sit together (BatchNorm and LayerNorm), by parameter name. */
  readonly normOf: ReadonlyMap<string, BatchNormPlan | LayerNormPlan>;
  /** Parameters no output depends on (the unused ffn_norm): no gradient, no update. */
  readonly frozen: ReadonlySet<string>;
}

const batchNormPlan = (
  module: string,
  channels: number,
  eps: number,
  momentum: number,
): BatchNormPlan => ({
  module,
  weight: `${module}.weight`,
  bias: `${module}.bias`,
  runningMean: `${module}.running_mean`,
  runningVar: `${module}.running_var`,
  channels,
  eps,
  momentum,
});

const layerNormPlan = (
  module: string,
  dim: number,
  eps: number,
): LayerNormPlan => ({
  module,
  weight: `${module}.weight`,
  bias: `${module}.bias`,
  dim,
  eps,
});

const linearPlan = (
  module: string,
  cin: number,
  cout: number,
): LinearPlan => ({
  weight: `${module}.weight`,
  bias: `${module}.bias`,
  cin,
  cout,
});

/** The CNN layers (reference §3): stem, then bottleneck groups. */
function cnnLayers(
  options: ModelOptions,
  dims: ModelDims,
): { stem: StemLayer; blocks: BottleneckLayer[]; channels: number } {
  const cnn = "transform.embedding.restnet";
  const convBn = (
    weight: string,
    norm: string,
    cin: number,
    cout: number,
    window: Omit<Window, "tOut">,
    eps = options.bnEps,
  ): ConvBnPlan => ({
    ...window,
    tOut: convLength(window.tIn, window.kernel, window.stride, window.pad),
    weight,
    stdEps: options.stdConvEps,
    cin,
    cout,
    norm: batchNormPlan(norm, cout, eps, options.bnMomentum),
  });
  const root = convBn(
    `${cnn}.root.0.weight`,
    `${cnn}.root.1`,
    dims.nMels,
    options.width,
    {
      kernel: options.rootKernel,
      stride: options.rootStride,
      pad: options.rootPadding,
      tIn: dims.frames,
    },
  );
  const pool = options.rootPool
    ? { kernel: 6, stride: 2, pad: 2, tIn: root.tOut }
    : { kernel: 1, stride: 1, pad: 0, tIn: root.tOut };
  const stem: StemLayer = {
    kind: "stem",
    name: `${cnn}.root`,
    conv: root,
    maxPool: options.rootPool,
    pool: {
      ...pool,
      tOut: convLength(pool.tIn, pool.kernel, pool.stride, pool.pad),
    },
  };
  if (root.tOut < 1 || stem.pool.tOut < 1) {
    throw new RangeError(
      `Cannot build the model: ${dims.frames} frames are too few for the CNN root (conv k${root.kernel} s${root.stride} p${root.pad}, ${
        options.rootPool
          ? `max-pool k${pool.kernel} s${pool.stride} p${pool.pad}`
          : "no max-pool"
      }); use longer clips or more mel frames, or a smaller rootKernel/rootStride`,
    );
  }
  let w = options.width;
  let t = stem.pool.tOut;
  const blocks: BottleneckLayer[] = [];
  const k = options.kernelSize;
  options.groups.forEach((extra, g) => {
    const cout = g === 0 ? 4 * w : 2 * w;
    const cmid = g === 0 ? w : w / 2;
    if (!Number.isInteger(cmid)) {
      throw new RangeError(
        `Cannot build the model: width ${options.width} cannot be halved for group ${g}; use an even width`,
      );
    }
    for (let j = 0; j <= extra; j++) {
      const first = j === 0;
      const cin = first ? w : cout;
      const stride = first && g > 0 ? 2 : 1;
      const p = `${cnn}.layers.${blocks.length}`;
      const one = { kernel: 1, stride: 1, pad: 0 };
      const conv2 = convBn(`${p}.conv2.weight`, `${p}.norm2`, cmid, cmid, {
        kernel: k,
        stride,
        pad: (k - 1) / 2,
        tIn: t,
      });
      blocks.push({
        kind: "bottleneck",
        name: p,
        cin,
        cout,
        cmid,
        stride,
        tIn: t,
        tOut: conv2.tOut,
        conv1: convBn(`${p}.conv1.weight`, `${p}.norm1`, cin, cmid, {
          ...one,
          tIn: t,
        }),
        conv2,
        conv3: convBn(`${p}.conv3.weight`, `${p}.norm3`, cmid, cout, {
          ...one,
          tIn: conv2.tOut,
        }),
        shortcut: first && (stride !== 1 || cin !== cout)
          ? convBn(
            `${p}.downsample.weight`,
            `${p}.ds_gn`,
            cin,
            cout,
            { kernel: 1, stride, pad: 0, tIn: t },
            options.shortcutBnEps,
          )
          : undefined,
      });
      t = conv2.tOut;
    }
    w = cout;
  });
  return { stem, blocks, channels: w };
}

/** The transformer and head layers (reference §4–§6). */
function tokenLayers(
  options: ModelOptions,
  dims: ModelDims,
  tokens: number,
  cnnChannels: number,
): LayerPlan[] {
  const d = options.embedDim;
  const lnEps = options.lnEps;
  const special = options.tokenMode === "cls+tal"
    ? ["transform.cls_token", "transform.tail_token"]
    : options.tokenMode === "cls"
    ? ["transform.cls_token"]
    : ["transform.cls_token", "transform.dist_token"];
  const sequence = tokens + special.length;
  // cls+tal wraps the embedded tokens; the others put the specials first.
  const tal = options.tokenMode === "cls+tal";
  const positions = tal ? [0, sequence - 1] : special.map((_, i) => i);
  const out: LayerPlan[] = [
    {
      kind: "patchEmbed",
      linear: linearPlan("transform.embedding.patch_embedding", cnnChannels, d),
      tokens,
    },
    {
      kind: "tokens",
      posEmbed: "transform.pos_embed",
      special,
      positions,
      embStart: tal ? 1 : special.length,
      tokens,
      sequence,
      dim: d,
    },
  ];
  for (let l = 0; l < options.depth; l++) {
    const p = `transform.layers.${l}`;
    const a = `${p}.attention`;
    out.push({
      kind: "transformer",
      name: p,
      dim: d,
      heads: options.heads,
      mlpDim: options.mlpDim,
      sequence,
      attentionNorm: layerNormPlan(`${p}.attention_norm`, d, lnEps),
      q: linearPlan(`${a}.q`, d, d),
      k: linearPlan(`${a}.k`, d, d),
      v: linearPlan(`${a}.v`, d, d),
      o: linearPlan(`${a}.o`, d, d),
      ffnNorm: layerNormPlan(`${p}.ffn_norm`, d, lnEps),
      useFfnNorm: options.ffnNorm,
      fc1: linearPlan(`${p}.ffn.fc1`, d, options.mlpDim),
      fc2: linearPlan(`${p}.ffn.fc2`, options.mlpDim, d),
    });
  }
  out.push({
    kind: "finalNorm",
    norm: layerNormPlan("transform.tf_norm", d, lnEps),
    sequence,
  });
  const n = dims.classes;
  if (options.head === "avg") {
    const fc3 = "classifier.fc3.parametrizations.weight";
    out.push({
      kind: "avgHead",
      sequence,
      fc1: linearPlan("classifier.fc1", d, options.extend),
      fc2: linearPlan("classifier.fc2", options.extend, options.conv),
      norm: batchNormPlan(
        "classifier.bn2",
        options.conv,
        options.bnEps,
        options.bnMomentum,
      ),
      fc3: {
        weight: `${fc3}.original1`,
        gain: `${fc3}.original0`,
        bias: "classifier.fc3.bias",
        cin: options.conv,
        cout: n,
      },
    });
  } else {
    out.push({
      kind: "fceHead",
      positions,
      sequence,
      merge: {
        weight: "classifier.merge.weight",
        bias: "classifier.merge.bias",
        kernel: options.mergeKernel,
        pad: (options.mergeKernel - 1) / 2,
      },
      norm: layerNormPlan("classifier.norm", d, lnEps),
      fc: linearPlan("classifier.fc", d, n),
      dim: d,
    });
  }
  return out;
}

/**
 * Builds the model description: the layers in forward order with their
 * geometry, and every parameter and buffer with its PyTorch name, shapes
 * and initialiser.
 *
 * @param options Parsed model options.
 * @param dims Data sizes.
 * @returns The plan.
 * @throws {RangeError} When the frames are too few for the CNN, or
 *   `options.tokens` disagrees with the derived K.
 */
export function modelPlan(options: ModelOptions, dims: ModelDims): ModelPlan {
  for (const [key, value] of Object.entries(dims)) {
    if (!Number.isInteger(value) || value < 1) {
      throw new RangeError(
        `Cannot build the model: dims.${key} must be a positive integer, got ${value}`,
      );
    }
  }
  const { stem, blocks, channels } = cnnLayers(options, dims);
  const tokens = blocks.length ? blocks[blocks.length - 1].tOut : 0;
  if (tokens < 1) {
    throw new RangeError(
      `Cannot build the model: ${dims.frames} frames leave no tokens after ${options.groups.length} CNN groups; use longer clips or fewer groups`,
    );
  }
  if (options.tokens !== undefined && options.tokens !== tokens) {
    throw new RangeError(
      `Cannot build the model: tokens is ${options.tokens} but ${dims.frames} frames give K = ${tokens} tokens; set model.tokens to ${tokens} or leave it out`,
    );
  }
  const layers: LayerPlan[] = [
    stem,
    ...blocks,
    ...tokenLayers(options, dims, tokens, channels),
  ];
  const { params, buffers, batchNorms } = stateDict(layers);
  const tokenLayer = layers.find((l) => l.kind === "tokens") as TokensLayer;
  const normOf = new Map<string, BatchNormPlan | LayerNormPlan>();
  const frozen = new Set<string>();
  const addNorm = (n: BatchNormPlan | LayerNormPlan) => {
    normOf.set(n.weight, n);
    normOf.set(n.bias, n);
  };
  for (const l of layers) {
    switch (l.kind) {
      case "stem":
        addNorm(l.conv.norm);
        break;
      case "bottleneck":
        for (const c of [l.conv1, l.conv2, l.conv3, l.shortcut]) {
          if (c) addNorm(c.norm);
        }
        break;
      case "transformer":
        addNorm(l.attentionNorm);
        addNorm(l.ffnNorm);
        if (!l.useFfnNorm) {
          frozen.add(l.ffnNorm.weight).add(l.ffnNorm.bias);
        }
        break;
      case "finalNorm":
      case "avgHead":
      case "fceHead":
        addNorm(l.norm);
        break;
    }
  }
  return {
    layers,
    blocks,
    cnnChannels: channels,
    tokens,
    special: tokenLayer.special,
    specialPositions: tokenLayer.positions,
    sequence: tokenLayer.sequence,
    params,
    buffers,
    batchNorms,
    normOf,
    frozen,
  };
}
