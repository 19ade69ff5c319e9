/**
 * Functional building blocks of the AMAuT model in TF.js ops, each matching
 * its PyTorch counterpart in the authors' code to float32 rounding:
 * weight-standardised `conv1d` with explicit PyTorch padding, BatchNorm with
 * batch or running statistics, LayerNorm, exact GELU, multi-head attention,
 * and max-pooling padded with −Infinity (reference §3, §5, §15).
 *
 * Layouts are TF.js-native: activations NWC `[b, t, c]`, conv kernels
 * `[k, in, out]`, linear weights `[in, out]`. Every tensor stays at rank ≤ 4
 * and means are written as `sum · (1/n)` rather than `tf.mean`, whose gradient
 * uploads a `ones` tensor from the CPU on WebGPU (webgpu-notes §5).
 *
 * @module
 */
import type {
  Tensor,
  Tensor1D,
  Tensor2D,
  Tensor3D,
  Tensor4D,
} from "@tensorflow/tfjs";
import type { Tf } from "../pipeline/types.ts";
import { convLength } from "./plan.ts";

/**
 * Standardises a conv kernel per output channel over `[k, in]` with biased
 * variance (StdConv1d, `AuT/lib/embed.py`): `(w − mean) / sqrt(var + eps)`.
 *
 * @param tf The TF.js namespace.
 * @param w Kernel `[k, in, out]`.
 * @param eps Added to the variance (reference: 1e-5).
 * @returns The standardised kernel `[k, in, out]`.
 */
export function standardizeKernel(
  tf: Tf,
  w: Tensor3D,
  eps: number,
): Tensor3D {
  return tf.tidy(() => {
    const n = w.shape[0] * w.shape[1];
    const mean = tf.mul(tf.sum(w, [0, 1], true), 1 / n);
    const centred = tf.sub(w, mean);
    const variance = tf.mul(tf.sum(tf.square(centred), [0, 1], true), 1 / n);
    return tf.mul(centred, tf.rsqrt(tf.add(variance, eps))) as Tensor3D;
  });
}

/**
 * PyTorch `Conv1d` on NWC input: zero-pads the time axis by `pad` on each
 * side, then runs a 'valid' convolution. Kernel-1 stride-1 convs run as one
 * matmul.
 *
 * @param tf The TF.js namespace.
 * @param x Input `[b, t, in]`.
 * @param w Kernel `[k, in, out]`.
 * @param options `stride`, `pad` (per side) and an optional `bias` `[out]`.
 * @returns Output `[b, t', out]`, t' = floor((t + 2·pad − k) / stride) + 1.
 */
export function conv1d(
  tf: Tf,
  x: Tensor3D,
  w: Tensor3D,
  options: { stride?: number; pad?: number; bias?: Tensor1D } = {},
): Tensor3D {
  const { stride = 1, pad = 0, bias } = options;
  return tf.tidy(() => {
    let y: Tensor3D;
    if (w.shape[0] === 1 && stride === 1 && pad === 0) {
      const [b, t, cin] = x.shape;
      const cout = w.shape[2];
      y = tf.reshape(
        tf.matMul(tf.reshape(x, [b * t, cin]), tf.reshape(w, [cin, cout])),
        [b, t, cout],
      );
    } else {
      // A sum over the kernel taps of shifted slices × per-tap matmuls, in a
      // time-major layout so every slice is contiguous. tfjs's cpu
      // Conv2DBackpropFilter is a naive loop (~80 % of a training step),
      // gather-based im2col backpropagates through a slow UnsortedSegmentSum,
      // and strided slices are element-by-element on cpu; contiguous slices
      // and matmuls are cheap on every backend. Stride s: split time into its
      // s phases once ([s, t/s, b, c]) and slice one phase per tap.
      const [b, t, cin] = x.shape;
      const [k, , cout] = w.shape;
      const tp = t + 2 * pad;
      const tout = convLength(t, k, stride, pad);
      const rows = Math.ceil(tp / stride);
      const timeMajor = tf.pad(
        tf.transpose(x, [1, 0, 2]),
        [[pad, pad + rows * stride - tp], [0, 0], [0, 0]],
      ); // [rows·s, b, cin]
      const phases = stride === 1
        ? tf.reshape(timeMajor, [1, rows, b, cin])
        : tf.transpose(tf.reshape(timeMajor, [rows, stride, b, cin]), [
          1,
          0,
          2,
          3,
        ]);
      let acc: Tensor | undefined;
      for (let j = 0; j < k; j++) {
        const tap = tf.reshape(
          tf.slice(phases, [j % stride, Math.floor(j / stride), 0, 0], [
            1,
            tout,
            b,
            cin,
          ]),
          [tout * b, cin],
        );
        const term = tf.matMul(
          tap,
          tf.reshape(tf.slice(w, [j, 0, 0], [1, cin, cout]), [cin, cout]),
        );
        acc = acc ? tf.add(acc, term) : term;
      }
      y = tf.transpose(tf.reshape(acc!, [tout, b, cout]), [1, 0, 2]);
    }
    return bias ? tf.add(y, bias) : y;
  });
}

/**
 * PyTorch `MaxPool1d(k, stride, padding)` on NWC input: pads the time axis
 * with −Infinity (as PyTorch does), then pools with 'valid' windows.
 *
 * @param tf The TF.js namespace.
 * @param x Input `[b, t, c]`.
 * @param k Window.
 * @param stride Stride.
 * @param pad Padding per side.
 * @returns Output `[b, floor((t + 2·pad − k) / stride) + 1, c]`.
 */
export function maxPool1d(
  tf: Tf,
  x: Tensor3D,
  k: number,
  stride: number,
  pad: number,
): Tensor3D {
  return tf.tidy(() => {
    const padded = pad > 0
      ? tf.pad(x, [[0, 0], [pad, pad], [0, 0]], -Infinity)
      : x;
    const [b, t, c] = padded.shape;
    const pooled = tf.maxPool(
      tf.reshape(padded, [b, 1, t, c]) as Tensor4D,
      [1, k],
      [1, stride],
      "valid",
    );
    return tf.reshape(pooled, [b, pooled.shape[2], c]) as Tensor3D;
  });
}

/**
 * Batch statistics of one BatchNorm in training mode. A type alias (not an
 * interface) so that `{ logits, batchStats }` is a `tf.TensorContainer` and
 * `tf.tidy(() => model.apply(...))` type-checks.
 */
export type BatchStat = {
  /** BatchNorm module prefix, e.g. `"transform.embedding.restnet.root.1"`. */
  readonly name: string;
  /** Per-channel batch mean `[c]`. */
  readonly mean: Tensor1D;
  /** Per-channel biased batch variance `[c]`, as used in the forward pass. */
  readonly variance: Tensor1D;
  /** Elements per channel, for the unbiased correction n / (n − 1). */
  readonly count: number;
};

/** The per-module tensors of a BatchNorm. */
export interface BatchNormParams {
  /** γ `[c]`. */
  readonly weight: Tensor1D;
  /** β `[c]`. */
  readonly bias: Tensor1D;
  /** Running mean `[c]`. */
  readonly runningMean: Tensor1D;
  /** Running variance `[c]`. */
  readonly runningVar: Tensor1D;
}

/**
 * BatchNorm over every axis but the last (channels-last `BatchNorm1d`).
 * Training: normalises with the batch mean and biased variance (gradients
 * flow through both) and returns them; eval: uses the running statistics.
 *
 * @param tf The TF.js namespace.
 * @param x Input `[b, c]` or `[b, t, c]`.
 * @param p γ, β and running statistics.
 * @param eps Added to the variance.
 * @param training Whether to use batch statistics.
 * @returns The output and, in training, the batch mean, variance and count.
 * @throws {RangeError} In training with a single value per channel (as PyTorch).
 */
export function batchNorm<T extends Tensor>(
  tf: Tf,
  x: T,
  p: BatchNormParams,
  eps: number,
  training: boolean,
): { y: T; mean?: Tensor1D; variance?: Tensor1D; count: number } {
  const axes = x.shape.slice(0, -1).map((_, i) => i);
  const count = x.shape.slice(0, -1).reduce((a, b) => a * b, 1);
  if (!training) {
    const y = tf.tidy(() => {
      const scale = tf.mul(p.weight, tf.rsqrt(tf.add(p.runningVar, eps)));
      return tf.add(tf.mul(tf.sub(x, p.runningMean), scale), p.bias) as T;
    });
    return { y, count };
  }
  if (count < 2) {
    throw new RangeError(
      `Cannot run BatchNorm in training mode on 1 value per channel (input shape [${x.shape}]); use a batch of at least 2 clips`,
    );
  }
  const mean = tf.mul(tf.sum(x, axes), 1 / count) as Tensor1D;
  const centred = tf.sub(x, mean);
  const variance = tf.mul(
    tf.sum(tf.square(centred), axes),
    1 / count,
  ) as Tensor1D;
  const scale = tf.mul(p.weight, tf.rsqrt(tf.add(variance, eps)));
  const y = tf.add(tf.mul(centred, scale), p.bias) as T;
  return { y, mean, variance, count };
}

/**
 * LayerNorm over the last axis with biased variance.
 *
 * @param tf The TF.js namespace.
 * @param x Input `[..., d]`.
 * @param weight γ `[d]`.
 * @param bias β `[d]`.
 * @param eps Added to the variance (reference: 1e-6).
 * @returns Normalised `[..., d]`.
 */
export function layerNorm<T extends Tensor>(
  tf: Tf,
  x: T,
  weight: Tensor1D,
  bias: Tensor1D,
  eps: number,
): T {
  return tf.tidy(() => {
    const d = x.shape[x.rank - 1];
    const mean = tf.mul(tf.sum(x, -1, true), 1 / d);
    const centred = tf.sub(x, mean);
    const variance = tf.mul(tf.sum(tf.square(centred), -1, true), 1 / d);
    const normed = tf.mul(centred, tf.rsqrt(tf.add(variance, eps)));
    return tf.add(tf.mul(normed, weight), bias) as T;
  });
}

/**
 * Exact (erf) GELU: 0.5·x·(1 + erf(x/√2)), PyTorch's `nn.GELU()` default.
 *
 * @param tf The TF.js namespace.
 * @param x Input.
 * @returns GELU(x).
 */
export function gelu<T extends Tensor>(tf: Tf, x: T): T {
  return tf.tidy(() =>
    tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1)) as T
  );
}

/**
 * Linear layer on the last axis: `x · W + b`.
 *
 * @param tf The TF.js namespace.
 * @param x Input `[n, in]` or `[b, t, in]`.
 * @param w Weight `[in, out]`.
 * @param b Bias `[out]`.
 * @returns Output `[n, out]` or `[b, t, out]`.
 */
export function linear<T extends Tensor2D | Tensor3D>(
  tf: Tf,
  x: T,
  w: Tensor2D,
  b?: Tensor1D,
): T {
  return tf.tidy(() => {
    const cin = x.shape[x.rank - 1];
    const flat = x.rank === 2 ? x as Tensor2D : tf.reshape(x, [-1, cin]);
    let y: Tensor2D = tf.matMul(flat as Tensor2D, w);
    if (b) y = tf.add(y, b);
    if (x.rank === 2) return y as T;
    const [batch, t] = x.shape;
    return tf.reshape(y, [batch, t, w.shape[1]]) as T;
  });
}

/** The projections of one attention layer. */
export interface AttentionParams {
  /** Query weight `[d, d]` and bias `[d]`. */
  readonly qw: Tensor2D;
  readonly qb: Tensor1D;
  /** Key weight and bias. */
  readonly kw: Tensor2D;
  readonly kb: Tensor1D;
  /** Value weight and bias. */
  readonly vw: Tensor2D;
  readonly vb: Tensor1D;
  /** Output weight and bias. */
  readonly ow: Tensor2D;
  readonly ob: Tensor1D;
}

/**
 * Full (non-causal) multi-head self-attention, softmax(QKᵀ/√dh)V, as
 * `F.scaled_dot_product_attention` without mask or dropout, with separate
 * q/k/v/o projections. Heads run as a batched matmul on `[b·h, t, dh]`.
 *
 * @param tf The TF.js namespace.
 * @param x Input `[b, t, d]`.
 * @param p Projections.
 * @param heads Number of heads.
 * @returns Output `[b, t, d]`.
 */
export function multiHeadAttention(
  tf: Tf,
  x: Tensor3D,
  p: AttentionParams,
  heads: number,
): Tensor3D {
  return tf.tidy(() => {
    const [b, t, d] = x.shape;
    const dh = d / heads;
    const flat = tf.reshape(x, [b * t, d]) as Tensor2D;
    const split = (w: Tensor2D, bias: Tensor1D): Tensor3D =>
      tf.reshape(
        tf.transpose(
          tf.reshape(linear(tf, flat, w, bias), [b, t, heads, dh]),
          [0, 2, 1, 3],
        ),
        [b * heads, t, dh],
      );
    const q = tf.mul(split(p.qw, p.qb), 1 / Math.sqrt(dh)) as Tensor3D;
    const k = split(p.kw, p.kb);
    const v = split(p.vw, p.vb);
    const attn = tf.softmax(tf.matMul(q, k, false, true));
    const out = tf.reshape(
      tf.transpose(
        tf.reshape(tf.matMul(attn, v), [b, heads, t, dh]),
        [0, 2, 1, 3],
      ),
      [b * t, d],
    ) as Tensor2D;
    return tf.reshape(linear(tf, out, p.ow, p.ob), [b, t, d]) as Tensor3D;
  });
}

/**
 * Weight-normalised weight, w = g · v / ‖v‖ per output column (PyTorch
 * `parametrizations.weight_norm` with dim 0, in the `[in, out]` layout).
 *
 * @param tf The TF.js namespace.
 * @param g Gain `[1, out]`.
 * @param v Direction `[in, out]`.
 * @returns Weight `[in, out]`.
 */
export function weightNorm(tf: Tf, g: Tensor2D, v: Tensor2D): Tensor2D {
  return tf.tidy(() => {
    const norm = tf.sqrt(tf.sum(tf.square(v), 0, true));
    return tf.mul(v, tf.div(g, norm)) as Tensor2D;
  });
}

/**
 * Inverted dropout with a seeded mask: keeps each element with probability
 * 1 − rate and scales kept ones by 1 / (1 − rate).
 *
 * @param tf The TF.js namespace.
 * @param x Input.
 * @param rate Drop probability in [0, 1).
 * @param seed Integer seed of the mask.
 * @returns The masked input (x itself when rate is 0).
 */
export function dropout<T extends Tensor>(
  tf: Tf,
  x: T,
  rate: number,
  seed: number,
): T {
  if (rate === 0) return x;
  return tf.tidy(() => {
    const keep = 1 - rate;
    const u = tf.randomUniform(x.shape, 0, 1, "float32", seed);
    const mask = tf.mul(tf.floor(tf.add(u, keep)), 1 / keep);
    return tf.mul(x, mask) as T;
  });
}
