/**
 * AMAuT model configuration: the options schema (the train stage's `model:`
 * key), the sizes that come from the data, the paper's five configurations,
 * the analytic parameter count and the layer summary. The model description
 * both engines walk — layers, names, shapes, geometry, every tensor's layout
 * and initialiser — is {@linkcode modelPlan} (`model/plan.ts`, re-exported
 * here; reference §3–§6, authors' `AuT/lib/embed.py` and `AuT/lib/model.py`).
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
import { modelPlan, shapeSize } from "./plan.ts";

export {
  type BatchNormPlan,
  type BottleneckLayer,
  type ConvBnPlan,
  convLength,
  type Init,
  type LayerNormPlan,
  type LayerPlan,
  type Layout,
  type LinearPlan,
  type ModelPlan,
  modelPlan,
  shapeSize,
  type TensorSpec,
} from "./plan.ts";

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
  rootKernel: z.int().min(1).default(14).describe(
    "Kernel of the CNN's root conv, in frames (14 in the paper)",
  ),
  rootStride: z.int().min(1).default(2).describe(
    "Stride of the CNN's root conv, in frames (2 in the paper)",
  ),
  rootPadding: z.int().min(0).default(6).describe(
    "Zero padding of the CNN's root conv on each side, in frames (6 in the paper)",
  ),
  rootPool: z.boolean().default(true).describe(
    "Max-pool (kernel 6, stride 2, padding 2) after the CNN's root conv, as in the paper; false skips it, so every later layer sees about twice the frames and K about doubles",
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
  const layers: LayerSummary[] = [
    { name: "input", shape: [dims.frames, dims.nMels] },
  ];
  for (const l of plan.layers) {
    switch (l.kind) {
      case "stem":
        layers.push(
          { name: l.name, shape: [l.conv.tOut, l.conv.cout] },
          {
            name: l.name.replace(/root$/, "pool"),
            shape: [l.pool.tOut, l.conv.cout],
          },
        );
        break;
      case "bottleneck":
        layers.push({ name: l.name, shape: [l.tOut, l.cout] });
        break;
      case "patchEmbed":
        layers.push({
          name: l.linear.weight.replace(/\.weight$/, ""),
          shape: [l.tokens, l.linear.cout],
        });
        break;
      case "tokens":
        layers.push({
          name: "transform.tokens+pos_embed",
          shape: [l.sequence, l.dim],
        });
        break;
      case "transformer":
        layers.push({ name: l.name, shape: [l.sequence, l.dim] });
        break;
      case "finalNorm":
        layers.push({ name: l.norm.module, shape: [l.sequence, l.norm.dim] });
        break;
      case "avgHead":
        layers.push(
          { name: "classifier.avgpool", shape: [l.fc1.cin] },
          { name: "classifier.fc1", shape: [l.fc1.cout] },
          { name: "classifier.fc2", shape: [l.fc2.cout] },
          { name: l.norm.module, shape: [l.norm.channels] },
          { name: "classifier.fc3", shape: [l.fc3.cout] },
        );
        break;
      case "fceHead":
        layers.push(
          { name: "classifier.tokens", shape: [l.dim, l.positions.length] },
          { name: "classifier.merge", shape: [l.dim] },
          { name: l.norm.module, shape: [l.dim] },
          { name: "classifier.fc", shape: [l.fc.cout] },
        );
        break;
    }
  }
  let parameters = 0;
  for (const p of plan.params) parameters += shapeSize(p.shape);
  return { layers, parameters };
}
