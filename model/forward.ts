/**
 * The tfjs forward of each layer kind of the model description
 * (`model/plan.ts`): one function per kind, reading every parameter name and
 * geometry from its layer entry. {@linkcode AmautModel.apply} in
 * `model/amaut.ts` walks the layer list through {@linkcode layerForward};
 * the fused WebGPU graph (`gpu/graph/`) walks the same list.
 *
 * @module
 */
import type { Tensor, Tensor1D, Tensor2D, Tensor3D } from "@tensorflow/tfjs";
import type { Tf } from "../pipeline/types.ts";
import type {
  AvgHeadLayer,
  BatchNormPlan,
  BottleneckLayer,
  ConvBnPlan,
  FceHeadLayer,
  FinalNormLayer,
  LayerNormPlan,
  LayerPlan,
  LinearPlan,
  PatchEmbedLayer,
  StemLayer,
  TokensLayer,
  TransformerLayer,
} from "./plan.ts";
import {
  conv1d,
  dropout,
  gelu,
  layerNorm,
  linear,
  maxPool1d,
  multiHeadAttention,
  standardizeKernel,
  weightNorm,
} from "./layers.ts";

/** What a layer's forward needs besides its input (one per `apply` call). */
export interface ForwardContext {
  /** The TF.js namespace. */
  readonly tf: Tf;
  /** A parameter by state-dict name. */
  param<T extends Tensor>(name: string): T;
  /** BatchNorm of `x` (batch statistics in training, which it records). */
  batchNorm<T extends Tensor>(x: T, plan: BatchNormPlan): T;
  /** Embedding dropout rate (0 in eval). */
  readonly dropout: number;
  /** Draws the dropout seed (called only when `dropout` > 0). */
  seed(): number;
}

/** LayerNorm of `x` with a module's γ and β. */
function norm<T extends Tensor>(c: ForwardContext, x: T, n: LayerNormPlan): T {
  return layerNorm(c.tf, x, c.param(n.weight), c.param(n.bias), n.eps);
}

/** `x·W + b` with a linear module's parameters. */
function dense<T extends Tensor2D | Tensor3D>(
  c: ForwardContext,
  x: T,
  l: LinearPlan,
): T {
  return linear(c.tf, x, c.param(l.weight), c.param(l.bias));
}

/** BatchNorm(StdConv1d(x)), `[b, tIn, cin]` → `[b, tOut, cout]`. */
export function convBnForward(
  c: ForwardContext,
  x: Tensor3D,
  conv: ConvBnPlan,
): Tensor3D {
  const w = standardizeKernel(c.tf, c.param(conv.weight), conv.stdEps);
  const y = conv1d(c.tf, x, w, { stride: conv.stride, pad: conv.pad });
  return c.batchNorm(y, conv.norm);
}

/**
 * The CNN root: max-pool(ReLU(BN(conv(x)))), or ReLU(BN(conv(x))) without
 * `maxPool`, `[b, t, f]` → `[b, pool.tOut, c]`.
 */
export function stemForward(
  c: ForwardContext,
  l: StemLayer,
  x: Tensor3D,
): Tensor3D {
  const y = c.tf.relu(convBnForward(c, x, l.conv));
  if (!l.maxPool) return y;
  return maxPool1d(c.tf, y, l.pool.kernel, l.pool.stride, l.pool.pad);
}

/** A bottleneck block, `[b, tIn, cin]` → `[b, tOut, cout]`. */
export function bottleneckForward(
  c: ForwardContext,
  l: BottleneckLayer,
  x: Tensor3D,
): Tensor3D {
  const { tf } = c;
  let y = tf.relu(convBnForward(c, x, l.conv1));
  y = tf.relu(convBnForward(c, y, l.conv2));
  y = convBnForward(c, y, l.conv3);
  const shortcut = l.shortcut ? convBnForward(c, x, l.shortcut) : x;
  return tf.relu(tf.add(shortcut, y));
}

/** The 1x1 conv to the model width, `[b, K, c]` → `[b, K, d]`. */
export function patchEmbedForward(
  c: ForwardContext,
  l: PatchEmbedLayer,
  x: Tensor3D,
): Tensor3D {
  return conv1d(c.tf, x, c.param(l.linear.weight), {
    bias: c.param(l.linear.bias),
  });
}

/** Special tokens, positional embedding and dropout, `[b, K, d]` → `[b, T, d]`. */
export function tokensForward(
  c: ForwardContext,
  l: TokensLayer,
  x: Tensor3D,
): Tensor3D {
  const { tf } = c;
  const b = x.shape[0];
  const special = l.special.map((name) =>
    tf.broadcastTo(c.param<Tensor3D>(name), [b, 1, l.dim]) as Tensor3D
  );
  // special tokens before the embedded ones, or around them (cls+tal)
  const parts = special.filter((_, i) => l.positions[i] < l.embStart);
  parts.push(x, ...special.filter((_, i) => l.positions[i] > l.embStart));
  let z = tf.add(tf.concat(parts, 1), c.param(l.posEmbed)) as Tensor3D;
  if (c.dropout > 0) z = dropout(tf, z, c.dropout, c.seed());
  return z;
}

/** A pre-norm transformer block, `[b, T, d]` → `[b, T, d]`. */
export function transformerForward(
  c: ForwardContext,
  l: TransformerLayer,
  x: Tensor3D,
): Tensor3D {
  const { tf } = c;
  const h = norm(c, x, l.attentionNorm);
  const P = <T extends Tensor>(name: string) => c.param<T>(name);
  let z = tf.add(
    x,
    multiHeadAttention(tf, h, {
      qw: P(l.q.weight),
      qb: P(l.q.bias),
      kw: P(l.k.weight),
      kb: P(l.k.bias),
      vw: P(l.v.weight),
      vb: P(l.v.bias),
      ow: P(l.o.weight),
      ob: P(l.o.bias),
    }, l.heads),
  ) as Tensor3D;
  // The authors compute ffn_norm(x) and discard it (AuT/lib/model.py).
  const m = l.useFfnNorm ? norm(c, z, l.ffnNorm) : z;
  const hidden = gelu(tf, dense(c, m, l.fc1));
  z = tf.add(z, dense(c, hidden, l.fc2)) as Tensor3D;
  return z;
}

/** The final LayerNorm, `[b, T, d]`. */
export function finalNormForward(
  c: ForwardContext,
  l: FinalNormLayer,
  x: Tensor3D,
): Tensor3D {
  return norm(c, x, l.norm);
}

/** The avg head, `[b, T, d]` → logits `[b, n]`. */
export function avgHeadForward(
  c: ForwardContext,
  l: AvgHeadLayer,
  z: Tensor3D,
): Tensor2D {
  const { tf } = c;
  let h = tf.mul(tf.sum(z, 1), 1 / l.sequence) as Tensor2D;
  h = dense(c, h, l.fc1);
  h = dense(c, h, l.fc2);
  h = c.batchNorm(h, l.norm);
  const w = weightNorm(tf, c.param(l.fc3.gain), c.param(l.fc3.weight));
  return linear(tf, h, w, c.param<Tensor1D>(l.fc3.bias));
}

/** The fce head, `[b, T, d]` → logits `[b, n]`. */
export function fceHeadForward(
  c: ForwardContext,
  l: FceHeadLayer,
  z: Tensor3D,
): Tensor2D {
  const { tf } = c;
  const b = z.shape[0];
  const picked = l.positions.map((pos) =>
    tf.slice(z, [0, pos, 0], [b, 1, l.dim])
  );
  const pair = tf.transpose(tf.concat(picked, 1), [0, 2, 1]); // [b, d, n]
  const merged = conv1d(tf, pair as Tensor3D, c.param(l.merge.weight), {
    pad: l.merge.pad,
    bias: c.param(l.merge.bias),
  }); // [b, d, 1]
  const h = norm(c, tf.reshape(merged, [b, l.dim]) as Tensor2D, l.norm);
  return dense(c, h, l.fc);
}

/**
 * The forward of any layer: `[b, …]` in, `[b, …]` out (logits `[b, n]`
 * after a head).
 *
 * @param c The context.
 * @param l The layer.
 * @param x Its input (the previous layer's output; tokens first).
 */
export function layerForward(
  c: ForwardContext,
  l: LayerPlan,
  x: Tensor3D,
): Tensor3D | Tensor2D {
  switch (l.kind) {
    case "stem":
      return stemForward(c, l, x);
    case "bottleneck":
      return bottleneckForward(c, l, x);
    case "patchEmbed":
      return patchEmbedForward(c, l, x);
    case "tokens":
      return tokensForward(c, l, x);
    case "transformer":
      return transformerForward(c, l, x);
    case "finalNorm":
      return finalNormForward(c, l, x);
    case "avgHead":
      return avgHeadForward(c, l, x);
    case "fceHead":
      return fceHeadForward(c, l, x);
  }
}
