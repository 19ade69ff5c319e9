/**
 * AMAuT model configuration: the options schema (the train stage's `model:`
 * key), the sizes that come from the data, the paper's five configurations,
 * and the parameter plan every other model function is built from — names,
 * layouts and initialisers of every tensor, the CNN's block and length
 * schedule, and the analytic parameter count (reference §3–§6, authors'
 * `AuT/lib/embed.py` and `AuT/lib/model.py`).
 *
 * Everything here is plain data: nothing allocates a tensor, so
 * {@linkcode parameterCount} and {@linkcode modelSummary} are safe for a
 * 100M-parameter model on any machine.
 *
 * Shape legend: `b` batch, `t` frames, `f` mel bins, `k` tokens, `d` model
 * width, `n` classes, `c` channels.
 *
 * @module
 */
import * as z from "zod";

const isOdd = (n: number): boolean => n % 2 === 1;

/**
 * Options of the AMAuT model (the train stage's `model:` key). Defaults are
 * the paper's Speech Commands model (1 s inputs); {@linkcode PAPER_MODELS}
 * holds all five dataset configurations.
 */
export const ModelOptions = z.strictObject({
  width: z.int().min(1).default(128).describe(
    "Root channels of the 1-D CNN (reference: width); 128 for 1 s inputs, 64 for 10 s inputs",
  ),
  groups: z.array(z.int().min(0)).min(1).default([6, 12]).describe(
    "Extra bottleneck blocks per CNN group after the group's first block (reference: num_layers); every group after the first halves the length",
  ),
  kernelSize: z.int().min(1).refine(isOdd, { message: "it must be odd" })
    .default(7).describe(
      "Kernel of the middle conv of each bottleneck block, odd, padding (k - 1) / 2 (7 in the paper, 3 for the conv3 ablation)",
    ),
  tokens: z.int().min(1).optional().describe(
    "Tokens out of the CNN, K (reference: embed_num); default: derived from the frame count; when set it must equal the derived count",
  ),
  embedDim: z.int().min(1).default(768).describe(
    "Transformer width d, also the output channels of the CNN's 1x1 head conv (reference: hidden_size)",
  ),
  depth: z.int().min(1).default(12).describe("Transformer blocks"),
  heads: z.int().min(1).default(12).describe(
    "Attention heads; embedDim must be a multiple of it",
  ),
  mlpDim: z.int().min(1).default(3072).describe(
    "Hidden width of each transformer block's MLP",
  ),
  dropout: z.number().min(0).lt(1).default(0.15).describe(
    "Dropout probability applied after adding the positional embedding (paper Eq. 4)",
  ),
  tokenMode: z.enum(["cls+tal", "cls", "cls+distil"]).default("cls+tal")
    .describe(
      "Special tokens: cls+tal = [CLS, tokens, TAL] (the paper), cls = [CLS, tokens], cls+distil = [CLS, DIST, tokens] as in DeiT (no teacher; Table 5 ablations)",
    ),
  head: z.enum(["avg", "fce"]).default("avg").describe(
    "Classifier: avg = mean over all tokens + 3 FC with BatchNorm and weight norm (1 s inputs), fce = conv over the special tokens + LayerNorm + FC (longer inputs)",
  ),
  extend: z.int().min(1).default(2048).describe(
    "Output width of the avg head's first FC layer",
  ),
  conv: z.int().min(1).default(256).describe(
    "Output width of the avg head's second FC layer and its BatchNorm",
  ),
  mergeKernel: z.int().min(1).refine(isOdd, { message: "it must be odd" })
    .default(15).describe(
      "Kernel of the fce head's conv over the embedding axis, odd, padding (k - 1) / 2",
    ),
  ffnNorm: z.boolean().default(false).describe(
    "Feed the MLP the ffn_norm output (fixed pre-norm); false reproduces the authors' bug where ffn_norm is computed and discarded (AuT/lib/model.py)",
  ),
  bnEps: z.number().positive().default(1e-6).describe(
    "BatchNorm epsilon of the CNN root, the bottleneck norms and the avg head",
  ),
  shortcutBnEps: z.number().positive().default(1e-5).describe(
    "BatchNorm epsilon of the projection shortcuts (ds_gn; PyTorch default)",
  ),
  bnMomentum: z.number().gt(0).max(1).default(0.1).describe(
    "BatchNorm running-statistics momentum, PyTorch convention: running = (1 - m) * running + m * batch",
  ),
  lnEps: z.number().positive().default(1e-6).describe(
    "LayerNorm epsilon of the transformer and the fce head",
  ),
  stdConvEps: z.number().positive().default(1e-5).describe(
    "Epsilon of the per-output-channel weight standardisation of the CNN convs (StdConv1d)",
  ),
}).superRefine((o, ctx) => {
  if (o.embedDim % o.heads !== 0) {
    ctx.addIssue({
      code: "custom",
      path: ["heads"],
      message: `embedDim (${o.embedDim}) must be a multiple of it`,
    });
  }
});
/** Parsed model options (every default filled in). */
export type ModelOptions = z.infer<typeof ModelOptions>;

/** Sizes that come from the data, not the spec. */
export interface ModelDims {
  /** Mel bins per frame, the CNN's input channels. */
  readonly nMels: number;
  /** Frames per clip after spectrogram padding. */
  readonly frames: number;
  /** Classes. */
  readonly classes: number;
}

/** One of the paper's configurations. */
export interface PaperModel {
  /** Model options. */
  readonly options: ModelOptions;
  /** Data sizes (reference §0). */
  readonly dims: ModelDims;
}

/**
 * The paper's five models (reference §0): AudioMNIST, Speech Commands v0.01
 * and v0.02, VocalSound (10 s) and CochlScene. Their parameter counts are
 * 99,126,548 / 103,070,780 / 103,072,070 / 97,005,989 / 100,976,556.
 */
export const PAPER_MODELS: Readonly<
  Record<"am" | "sc1" | "sc2" | "vs" | "cs", PaperModel>
> = Object.freeze({
  am: {
    options: ModelOptions.parse({ width: 128, groups: [6, 8], head: "avg" }),
    dims: { nMels: 80, frames: 160, classes: 10 },
  },
  sc1: {
    options: ModelOptions.parse({ width: 128, groups: [6, 12], head: "avg" }),
    dims: { nMels: 80, frames: 104, classes: 30 },
  },
  sc2: {
    options: ModelOptions.parse({ width: 128, groups: [6, 12], head: "avg" }),
    dims: { nMels: 80, frames: 104, classes: 35 },
  },
  vs: {
    options: ModelOptions.parse({ width: 64, groups: [6, 4, 8], head: "fce" }),
    dims: { nMels: 64, frames: 1040, classes: 6 },
  },
  cs: {
    options: ModelOptions.parse({ width: 64, groups: [6, 4, 12], head: "fce" }),
    dims: { nMels: 64, frames: 1471, classes: 13 },
  },
});

/**
 * How a tensor is laid out here relative to PyTorch: `conv` ours `[k, in,
 * out]` vs `[out, in, k]`; `linear` ours `[in, out]` vs `[out, in]`; `gain`
 * (weight-norm g) ours `[1, out]` vs `[out, 1]`; `same` identical.
 */
export type Layout = "conv" | "linear" | "gain" | "same";

/** How a tensor is initialised (reference §5 "Init"). */
export type Init =
  | { readonly kind: "uniform"; readonly bound: number }
  | { readonly kind: "normal"; readonly std: number }
  | {
    readonly kind: "truncNormal";
    readonly std: number;
    readonly lo: number;
    readonly hi: number;
  }
  | { readonly kind: "const"; readonly value: number }
  /** Weight-norm gain: the per-output L2 norm of the named `v`, so w = v. */
  | { readonly kind: "rowNorm"; readonly of: string };

/** One parameter or buffer of the model. */
export interface TensorSpec {
  /** PyTorch state-dict name. */
  readonly name: string;
  /** Shape here (TF.js layout). */
  readonly shape: readonly number[];
  /** Shape in the PyTorch state dict. */
  readonly torchShape: readonly number[];
  /** Layout relation between the two. */
  readonly layout: Layout;
  /** Initialiser. */
  readonly init: Init;
}

/** One bottleneck block of the CNN. */
export interface BlockPlan {
  /** State-dict prefix, `transform.embedding.restnet.layers.<i>`. */
  readonly prefix: string;
  /** Input channels. */
  readonly cin: number;
  /** Output channels. */
  readonly cout: number;
  /** Bottleneck channels. */
  readonly cmid: number;
  /** Stride of the middle conv and of the shortcut. */
  readonly stride: number;
  /** Whether the shortcut is a 1x1 conv + BatchNorm. */
  readonly projection: boolean;
  /** Output length. */
  readonly length: number;
}

/** Everything about a model's structure that does not need tensors. */
export interface ModelPlan {
  /** Length after the root conv (k14, s2, p6). */
  readonly rootLength: number;
  /** Length after the root max-pool (k6, s2, p2): the first group's length. */
  readonly poolLength: number;
  /** Bottleneck blocks in order. */
  readonly blocks: readonly BlockPlan[];
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
  /** BatchNorm module prefixes with their epsilon. */
  readonly batchNorms: ReadonlyMap<string, number>;
}

/** PyTorch conv output length. */
function convLength(l: number, k: number, s: number, p: number): number {
  return Math.floor((l + 2 * p - k) / s) + 1;
}

/**
 * Builds the structural plan of a model: CNN schedule, sequence layout, and
 * every parameter and buffer with its PyTorch name, shapes and initialiser.
 *
 * @param options Parsed model options.
 * @param dims Data sizes.
 * @returns The plan.
 * @throws {RangeError} When the frames are too few for the CNN, or
 *   `options.tokens` disagrees with the derived K.
 */
export function modelPlan(options: ModelOptions, dims: ModelDims): ModelPlan {
  const { nMels, frames, classes } = dims;
  for (const [key, value] of Object.entries(dims)) {
    if (!Number.isInteger(value) || value < 1) {
      throw new RangeError(`Model dims: ${key} must be a positive integer`);
    }
  }
  const d = options.embedDim;
  const params: TensorSpec[] = [];
  const buffers: TensorSpec[] = [];
  const batchNorms = new Map<string, number>();

  const uniform = (fanIn: number): Init => ({
    kind: "uniform",
    bound: 1 / Math.sqrt(fanIn),
  });
  const same = (name: string, shape: number[], init: Init): void => {
    params.push({ name, shape, torchShape: shape, layout: "same", init });
  };
  // PyTorch default Conv1d init: kaiming_uniform(a=√5) = U(±1/√fan_in).
  const conv = (
    name: string,
    cout: number,
    cin: number,
    k: number,
    init: Init = uniform(cin * k),
  ): void => {
    params.push({
      name,
      shape: [k, cin, cout],
      torchShape: [cout, cin, k],
      layout: "conv",
      init,
    });
  };
  const linear = (
    name: string,
    cin: number,
    cout: number,
    init: Init = uniform(cin),
  ): void => {
    params.push({
      name,
      shape: [cin, cout],
      torchShape: [cout, cin],
      layout: "linear",
      init,
    });
  };
  const bn = (prefix: string, c: number, eps: number): void => {
    same(`${prefix}.weight`, [c], { kind: "const", value: 1 });
    same(`${prefix}.bias`, [c], { kind: "const", value: 0 });
    for (const [stat, value] of [["running_mean", 0], ["running_var", 1]]) {
      buffers.push({
        name: `${prefix}.${stat}`,
        shape: [c],
        torchShape: [c],
        layout: "same",
        init: { kind: "const", value: value as number },
      });
    }
    batchNorms.set(prefix, eps);
  };
  const ln = (prefix: string): void => {
    same(`${prefix}.weight`, [d], { kind: "const", value: 1 });
    same(`${prefix}.bias`, [d], { kind: "const", value: 0 });
  };
  const trunc: Init = { kind: "truncNormal", std: 0.02, lo: -2, hi: 2 };

  // Special tokens and positional embedding (reference §4).
  const special = options.tokenMode === "cls+tal"
    ? ["transform.cls_token", "transform.tail_token"]
    : options.tokenMode === "cls"
    ? ["transform.cls_token"]
    : ["transform.cls_token", "transform.dist_token"];

  // CNN (reference §3).
  const cnn = "transform.embedding.restnet";
  const rootLength = convLength(frames, 14, 2, 6);
  const poolLength = convLength(rootLength, 6, 2, 2);
  if (rootLength < 1 || poolLength < 1) {
    throw new RangeError(
      `Model dims: ${frames} frames are too few for the CNN root (conv k14 s2 p6, max-pool k6 s2 p2)`,
    );
  }
  let w = options.width;
  let length = poolLength;
  const blocks: BlockPlan[] = [];
  const k = options.kernelSize;
  const half = (k - 1) / 2;
  options.groups.forEach((extra, g) => {
    const cout = g === 0 ? 4 * w : 2 * w;
    const cmid = g === 0 ? w : w / 2;
    const stride = g === 0 ? 1 : 2;
    if (!Number.isInteger(cmid)) {
      throw new RangeError(
        `Model options: width ${options.width} cannot be halved for group ${g}`,
      );
    }
    for (let j = 0; j <= extra; j++) {
      const first = j === 0;
      const cin = first ? w : cout;
      const s = first ? stride : 1;
      length = convLength(length, k, s, half);
      blocks.push({
        prefix: `${cnn}.layers.${blocks.length}`,
        cin,
        cout,
        cmid,
        stride: s,
        projection: first && (s !== 1 || cin !== cout),
        length,
      });
    }
    w = cout;
  });
  const cnnChannels = w;
  const tokens = length;
  if (tokens < 1) {
    throw new RangeError(
      `Model dims: ${frames} frames leave no tokens after ${options.groups.length} CNN groups`,
    );
  }
  if (options.tokens !== undefined && options.tokens !== tokens) {
    throw new RangeError(
      `Model options: tokens is ${options.tokens} but ${frames} frames give K = ${tokens} tokens`,
    );
  }
  const sequence = tokens + special.length;
  const specialPositions = options.tokenMode === "cls+tal"
    ? [0, sequence - 1]
    : options.tokenMode === "cls"
    ? [0]
    : [0, 1];

  // State-dict order of FCETransform: pos_embed, tokens, embedding, tf_norm, layers.
  same("transform.pos_embed", [1, sequence, d], trunc);
  for (const name of special) same(name, [1, 1, d], trunc);
  conv(`${cnn}.root.0.weight`, options.width, nMels, 14);
  bn(`${cnn}.root.1`, options.width, options.bnEps);
  for (const b of blocks) {
    conv(`${b.prefix}.conv1.weight`, b.cmid, b.cin, 1);
    bn(`${b.prefix}.norm1`, b.cmid, options.bnEps);
    conv(`${b.prefix}.conv2.weight`, b.cmid, b.cmid, k);
    bn(`${b.prefix}.norm2`, b.cmid, options.bnEps);
    conv(`${b.prefix}.conv3.weight`, b.cout, b.cmid, 1);
    bn(`${b.prefix}.norm3`, b.cout, options.bnEps);
    if (b.projection) {
      conv(`${b.prefix}.downsample.weight`, b.cout, b.cin, 1);
      bn(`${b.prefix}.ds_gn`, b.cout, options.shortcutBnEps);
    }
  }
  conv("transform.embedding.patch_embedding.weight", d, cnnChannels, 1);
  same("transform.embedding.patch_embedding.bias", [d], uniform(cnnChannels));
  ln("transform.tf_norm");
  const xavierUniform = (fanIn: number, fanOut: number): Init => ({
    kind: "uniform",
    bound: Math.sqrt(6 / (fanIn + fanOut)),
  });
  for (let l = 0; l < options.depth; l++) {
    const p = `transform.layers.${l}`;
    ln(`${p}.attention_norm`);
    for (const m of ["q", "k", "v", "o"]) {
      linear(`${p}.attention.${m}.weight`, d, d);
      same(`${p}.attention.${m}.bias`, [d], uniform(d));
    }
    const tiny: Init = { kind: "normal", std: 1e-6 };
    linear(
      `${p}.ffn.fc1.weight`,
      d,
      options.mlpDim,
      xavierUniform(d, options.mlpDim),
    );
    same(`${p}.ffn.fc1.bias`, [options.mlpDim], tiny);
    linear(
      `${p}.ffn.fc2.weight`,
      options.mlpDim,
      d,
      xavierUniform(options.mlpDim, d),
    );
    same(`${p}.ffn.fc2.bias`, [d], tiny);
    ln(`${p}.ffn_norm`);
  }

  // Classifier (reference §6).
  if (options.head === "avg") {
    const { extend, conv: width2 } = options;
    linear("classifier.fc1.weight", d, extend);
    same("classifier.fc1.bias", [extend], uniform(d));
    linear("classifier.fc2.weight", extend, width2, {
      kind: "normal",
      std: Math.sqrt(2 / (extend + width2)),
    });
    same("classifier.fc2.bias", [width2], { kind: "const", value: 0 });
    bn("classifier.bn2", width2, options.bnEps);
    same("classifier.fc3.bias", [classes], { kind: "const", value: 0 });
    const v = "classifier.fc3.parametrizations.weight.original1";
    params.push({
      name: "classifier.fc3.parametrizations.weight.original0",
      shape: [1, classes],
      torchShape: [classes, 1],
      layout: "gain",
      init: { kind: "rowNorm", of: v },
    });
    linear(v, width2, classes);
  } else {
    const m = options.mergeKernel;
    conv("classifier.merge.weight", 1, special.length, m);
    same("classifier.merge.bias", [1], uniform(special.length * m));
    ln("classifier.norm");
    linear("classifier.fc.weight", d, classes);
    same("classifier.fc.bias", [classes], uniform(d));
  }
  return {
    rootLength,
    poolLength,
    blocks,
    cnnChannels,
    tokens,
    special,
    specialPositions,
    sequence,
    params,
    buffers,
    batchNorms,
  };
}

/** Number of elements of a shape. */
export function shapeSize(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * Trainable parameters of a model, counted from its plan; allocates no
 * tensor. Includes the `ffn_norm` parameters even when they are unused
 * (`ffnNorm: false`), as the reference's counts do.
 *
 * @param options Parsed model options.
 * @param dims Data sizes.
 * @returns The parameter count.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { PAPER_MODELS, parameterCount } from "./config.ts";
 * const { options, dims } = PAPER_MODELS.sc1;
 * assert.equal(parameterCount(options, dims), 103_070_780);
 * ```
 */
export function parameterCount(options: ModelOptions, dims: ModelDims): number {
  let total = 0;
  for (const p of modelPlan(options, dims).params) total += shapeSize(p.shape);
  return total;
}

/** One row of {@linkcode modelSummary}. */
export interface LayerSummary {
  /** Module name (PyTorch prefix where one exists). */
  readonly name: string;
  /** Output shape per example, TF.js layout (no batch axis). */
  readonly shape: number[];
}

/**
 * The model's layers with their per-example output shapes, and the parameter
 * count; allocates no tensor (for `--dry-run`).
 *
 * @param options Parsed model options.
 * @param dims Data sizes.
 * @returns Layers in forward order and the parameter count.
 */
export function modelSummary(
  options: ModelOptions,
  dims: ModelDims,
): { layers: LayerSummary[]; parameters: number } {
  const plan = modelPlan(options, dims);
  const d = options.embedDim;
  const cnn = "transform.embedding.restnet";
  const layers: LayerSummary[] = [
    { name: "input", shape: [dims.frames, dims.nMels] },
    { name: `${cnn}.root`, shape: [plan.rootLength, options.width] },
    { name: `${cnn}.pool`, shape: [plan.poolLength, options.width] },
    ...plan.blocks.map((b) => ({ name: b.prefix, shape: [b.length, b.cout] })),
    {
      name: "transform.embedding.patch_embedding",
      shape: [plan.tokens, d],
    },
    { name: "transform.tokens+pos_embed", shape: [plan.sequence, d] },
  ];
  for (let l = 0; l < options.depth; l++) {
    layers.push({ name: `transform.layers.${l}`, shape: [plan.sequence, d] });
  }
  layers.push({ name: "transform.tf_norm", shape: [plan.sequence, d] });
  if (options.head === "avg") {
    layers.push(
      { name: "classifier.avgpool", shape: [d] },
      { name: "classifier.fc1", shape: [options.extend] },
      { name: "classifier.fc2", shape: [options.conv] },
      { name: "classifier.bn2", shape: [options.conv] },
      { name: "classifier.fc3", shape: [dims.classes] },
    );
  } else {
    layers.push(
      { name: "classifier.tokens", shape: [d, plan.special.length] },
      { name: "classifier.merge", shape: [d] },
      { name: "classifier.norm", shape: [d] },
      { name: "classifier.fc", shape: [dims.classes] },
    );
  }
  let parameters = 0;
  for (const p of plan.params) parameters += shapeSize(p.shape);
  return { layers, parameters };
}
