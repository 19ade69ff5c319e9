/**
 * Evaluation forwards sized to the GPU's buffer limits: the largest
 * activation one clip adds to a forward pass of the model (from its
 * structural plan), and eval-mode logits computed in chunks of clips so that
 * no tensor exceeds the device's largest binding (`largestTensorBytes`).
 * In eval mode BatchNorm uses its running statistics, so chunking changes
 * nothing but the passes; a training step cannot be chunked this way
 * (BatchNorm's batch statistics), so {@linkcode checkTrainBatchFits} says
 * how far to lower the batch instead.
 *
 * At the paper's CochlScene shapes (1471 frames, 64 mels, width 64,
 * d 768, MLP 3072, 94 tokens) the largest activation is the MLP's
 * `94 × 3072` hidden layer, 1.1 MiB a clip: a 2 GiB binding holds ~1,850
 * clips, llvmpipe's 128 MiB ~115.
 *
 * @module
 */
import type { Tensor2D, Tensor3D } from "@tensorflow/tfjs";
import type { Tf } from "../pipeline/types.ts";
import { largestTensorBytes } from "../pipeline/gpu_limits.ts";
import { chunkRanges, formatBytes, itemsPerChunk } from "../lib/chunks.ts";
import { type ModelDims, type ModelOptions, modelPlan } from "./config.ts";
import type { AmautModel } from "./amaut.ts";

/**
 * Bytes (float32) of the largest activation one clip adds to a forward pass
 * of the model: the padded CNN input, each conv's input and output (the
 * time-major padded copy included), the CNN's tokens, the attention scores,
 * the query/key/value and MLP activations, and the head's.
 *
 * @param options Model options.
 * @param dims Data sizes (frames of the clips actually passed).
 */
export function largestActivationBytes(
  options: ModelOptions,
  dims: ModelDims,
): number {
  const plan = modelPlan(options, dims);
  // Every conv's padded input and output, from the model description.
  const convs = plan.layers.flatMap((l) =>
    l.kind === "stem"
      ? [l.conv]
      : l.kind === "bottleneck"
      ? [l.conv1, l.conv2, l.conv3, ...(l.shortcut ? [l.shortcut] : [])]
      : []
  );
  const stem = plan.layers.find((l) => l.kind === "stem");
  const sizes = [
    ...convs.flatMap((c) => [
      (c.tIn + 2 * c.pad) * c.cin,
      c.tOut * c.cout,
    ]),
    ...(stem && stem.kind === "stem"
      ? [(stem.pool.tIn + 2 * stem.pool.pad) * stem.conv.cout] // max-pool input, padded
      : []),
    plan.tokens * Math.max(plan.cnnChannels, options.embedDim),
    plan.sequence * Math.max(options.embedDim, options.mlpDim),
    options.heads * plan.sequence * plan.sequence,
    options.head === "fce"
      ? options.embedDim * options.conv
      : Math.max(options.extend, options.embedDim),
  ];
  return 4 * Math.max(...sizes);
}

/**
 * Eval-mode logits of `tokens` `[b, frames, nMels]`, `[b, classes]`, in
 * chunks of clips so that no activation exceeds `limitBytes`. Each chunk's
 * intermediates are freed; only the logits are returned.
 *
 * @param tf TensorFlow.js.
 * @param model The model.
 * @param tokens The batch.
 * @param limitBytes Largest tensor allowed (default: the device's largest
 *   binding; `Infinity` on cpu, where nothing is chunked).
 * @throws RangeError when one clip alone exceeds the limit.
 */
export function evalLogits(
  tf: Tf,
  model: AmautModel,
  tokens: Tensor3D,
  limitBytes: number = largestTensorBytes(tf),
): Tensor2D {
  const [b, frames] = tokens.shape;
  const size = limitBytes === Infinity ? b : itemsPerChunk(
    largestActivationBytes(model.options, { ...model.dims, frames }),
    limitBytes,
    `clip's model activations (${frames} frames)`,
  );
  const ranges = chunkRanges(b, size);
  if (ranges.length <= 1) {
    return tf.tidy(() =>
      model.apply(tokens, { training: false }).logits as Tensor2D
    );
  }
  const parts = ranges.map(([start, end]) =>
    tf.tidy(() =>
      model.apply(tokens.slice([start, 0, 0], [end - start, -1, -1]), {
        training: false,
      }).logits as Tensor2D
    )
  );
  const out = tf.concat(parts, 0) as Tensor2D;
  tf.dispose(parts);
  return out;
}

/**
 * Checks that a training step on `batch` clips of `frames` frames fits the
 * device's buffer limits; throws an Error that names the largest batch that
 * does, for `what` (e.g. "test_time_adaptation.batchSize").
 *
 * @returns The largest batch that fits (`Infinity` on cpu).
 */
export function checkTrainBatchFits(
  tf: Tf,
  model: AmautModel,
  batch: number,
  frames: number,
  what: string,
  limitBytes: number = largestTensorBytes(tf),
): number {
  if (limitBytes === Infinity) return Infinity;
  const perClip = largestActivationBytes(model.options, {
    ...model.dims,
    frames,
  });
  const most = Math.floor(limitBytes / perClip);
  if (batch > most) {
    throw new Error(
      `Cannot take a training step on ${batch} clips of ${frames} frames: its largest activation (${
        formatBytes(batch * perClip)
      }) exceeds this GPU's ${
        formatBytes(limitBytes)
      } buffer limit; set ${what} to at most ${Math.max(1, most)}`,
    );
  }
  return most;
}
