/**
 * Test helpers for the trainers and evaluation: a tiny AMAuT configuration,
 * in-memory token splits served as {@linkcode DataAccess} eval batches, and
 * view-stacked training batches, all seeded.
 *
 * @module
 */
import type { Tensor } from "@tensorflow/tfjs";
import type { DataAccess, Tf } from "../pipeline/types.ts";
import { createRng } from "../pipeline/rng.ts";
import { type ModelDims, ModelOptions } from "./config.ts";
import type { TrainBatch } from "./trainer.ts";

/**
 * The sizes of a tiny AMAuT (width 4, two blocks of embedding width 16),
 * the other options at their defaults: spread into `ModelOptions.parse`.
 */
export const TINY_SIZES = {
  width: 4,
  groups: [0, 1],
  embedDim: 16,
  depth: 2,
  heads: 2,
  mlpDim: 32,
  extend: 24,
  conv: 8,
} as const;

/** A tiny model without dropout (two blocks, avg head), as the engine tests use. */
export const TINY_OPTIONS: ModelOptions = ModelOptions.parse({
  ...TINY_SIZES,
  dropout: 0,
});

/** Token sizes of {@linkcode TINY_OPTIONS}'s data: 24 frames × 6 mel bins, 3 classes. */
export const TINY_DIMS: ModelDims = { nMels: 6, frames: 24, classes: 3 };

/** One split held in memory: tokens `[clips, frames, nMels]` row-major and labels. */
export interface MemorySplit {
  readonly tokens: Float32Array;
  readonly labels: readonly number[];
}

/**
 * Seeded tokens of `clips` clips whose label shifts their mean (so a model
 * can learn them) and labels cycling through the classes.
 *
 * @param clips Clip count.
 * @param dims Token sizes and class count.
 * @param seed Seed of the values.
 */
export function memorySplit(
  clips: number,
  dims: ModelDims,
  seed: number,
): MemorySplit {
  const rng = createRng("trainer-testing", seed);
  const per = dims.frames * dims.nMels;
  const labels = Array.from({ length: clips }, (_, i) => i % dims.classes);
  const tokens = new Float32Array(clips * per);
  for (let c = 0; c < clips; c++) {
    for (let i = 0; i < per; i++) {
      tokens[c * per + i] = rng.normal() + 0.5 * labels[c];
    }
  }
  return { tokens, labels };
}

/**
 * Serves splits as eval batches in split order (the only kind evaluation
 * asks for); each batch's tensor is disposed when the next is requested.
 *
 * @param tf TF.js.
 * @param splits Splits by name.
 * @param dims Token sizes and class count.
 */
export function memoryData(
  tf: Tf,
  splits: Readonly<Record<string, MemorySplit>>,
  dims: ModelDims,
): DataAccess {
  const per = dims.frames * dims.nMels;
  return {
    classes: Array.from({ length: dims.classes }, (_, i) => `c${i}`),
    splits: Object.fromEntries(
      Object.entries(splits).map(([name, s]) => [name, s.labels.length]),
    ),
    info: {},
    async *batches(split, options) {
      const s = splits[split];
      if (!s) {
        throw new Error(
          `Cannot read split "${split}" of the in-memory data: it has ${
            Object.keys(splits).join(", ")
          }`,
        );
      }
      for (let at = 0; at < s.labels.length; at += options.batchSize) {
        const label = s.labels.slice(at, at + options.batchSize);
        const tokens = tf.tensor3d(
          s.tokens.slice(at * per, (at + label.length) * per),
          [label.length, dims.frames, dims.nMels],
        );
        try {
          yield {
            size: label.length,
            split,
            phase: options.phase,
            tokens,
            label,
          };
        } finally {
          tokens.dispose();
        }
      }
    },
  };
}

/**
 * A training batch of `views` views of the same `clips` clips: view v is
 * the split's tokens plus seeded noise (the caller disposes `tokens`).
 *
 * @param tf TF.js.
 * @param split Clips and labels.
 * @param dims Token sizes.
 * @param views View count.
 * @param seed Seed of the views' noise.
 */
export function viewBatch(
  tf: Tf,
  split: MemorySplit,
  dims: ModelDims,
  views: number,
  seed: number,
): TrainBatch {
  const rng = createRng("trainer-testing/views", seed);
  const n = split.tokens.length;
  const stacked = new Float32Array(views * n);
  for (let v = 0; v < views; v++) {
    for (let i = 0; i < n; i++) {
      stacked[v * n + i] = split.tokens[i] + 0.1 * rng.normal();
    }
  }
  return {
    tokens: tf.tensor3d(stacked, [
      views * split.labels.length,
      dims.frames,
      dims.nMels,
    ]),
    labels: split.labels,
    views,
  };
}

/**
 * Copies every tensor of a map to host arrays (a snapshot that outlives it).
 *
 * @param tensors Tensors by name.
 */
export async function snapshot(
  tensors: ReadonlyMap<string, Tensor>,
): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const [name, t] of tensors) {
    out.set(name, Float32Array.from(await t.data()));
  }
  return out;
}

/**
 * The tensor whose relative L2 error ‖got − want‖ / ‖want‖ is largest
 * (Infinity when the names or sizes differ), leaving out the names `skip`
 * picks; and the largest absolute difference over those left out.
 *
 * @param got Snapshot under test.
 * @param want Reference snapshot.
 * @param skip Names compared by absolute difference only (e.g. tensors
 *   whose gradient is zero in exact arithmetic, so only rounding noise).
 */
export function worstRelative(
  got: ReadonlyMap<string, Float32Array>,
  want: ReadonlyMap<string, Float32Array>,
  skip: (name: string) => boolean = () => false,
): { name: string; relative: number; skippedMaxAbs: number } {
  let worst = { name: "", relative: 0, skippedMaxAbs: 0 };
  if (got.size !== want.size) {
    return { name: "(names)", relative: Infinity, skippedMaxAbs: Infinity };
  }
  for (const [name, w] of want) {
    const g = got.get(name);
    if (!g || g.length !== w.length) {
      return { name, relative: Infinity, skippedMaxAbs: Infinity };
    }
    let d2 = 0;
    let w2 = 0;
    let maxAbs = 0;
    for (let i = 0; i < w.length; i++) {
      const d = Math.abs(g[i] - w[i]);
      d2 += d * d;
      w2 += w[i] * w[i];
      maxAbs = Number.isNaN(d) ? Infinity : Math.max(maxAbs, d);
    }
    if (skip(name)) {
      worst.skippedMaxAbs = Math.max(worst.skippedMaxAbs, maxAbs);
      continue;
    }
    const relative = Number.isNaN(d2)
      ? Infinity
      : Math.sqrt(d2) / Math.max(Math.sqrt(w2), 1e-30);
    if (relative > worst.relative) worst = { ...worst, name, relative };
  }
  return worst;
}
