/**
 * Rewrites of the model description's layer list (`model/plan.ts`) that the
 * fused graph applies before recording, each exact:
 *
 * - {@linkcode trimLastBlock} (fce head, training and eval): the head reads
 *   only the special tokens, so the last transformer block computes queries,
 *   attention output and MLP for those rows alone, and the final LayerNorm
 *   and the head see the compact rows;
 * - {@linkcode foldBatchNorms} (eval): every conv + BatchNorm becomes one
 *   matmul over the standardised kernel with the BatchNorm folded in;
 * - {@linkcode packQkv} (eval): keys, values and queries come from one
 *   matmul over packed weights.
 *
 * The layer recorders read the marks these passes leave
 * ({@linkcode isFolded}, {@linkcode GraphTransformer}).
 *
 * @module
 */
import type {
  BottleneckLayer,
  ConvBnPlan,
  LayerPlan,
  StemLayer,
  TransformerLayer,
} from "../../model/plan.ts";

/** A conv + BatchNorm as the graph records it. */
export type GraphConvBn = ConvBnPlan & {
  /** BatchNorm folded into the kernel and a bias (eval). */
  readonly folded?: boolean;
};

/** A transformer block as the graph records it. */
export type GraphTransformer = TransformerLayer & {
  /** Sequence positions whose outputs are needed (default: all). */
  readonly queries?: readonly number[];
  /** Keys, values and queries from one packed matmul (eval). */
  readonly packedQkv?: boolean;
};

/** Whether the conv's BatchNorm is folded. */
export function isFolded(c: ConvBnPlan): boolean {
  return (c as GraphConvBn).folded === true;
}

/**
 * Trims the last transformer block to the rows the fce head reads; the
 * final norm and the head then work on those rows only, in order.
 *
 * @param layers The layer list.
 * @returns The rewritten list (unchanged without an fce head).
 */
export function trimLastBlock(layers: readonly LayerPlan[]): LayerPlan[] {
  const head = layers[layers.length - 1];
  let last = -1;
  layers.forEach((l, i) => {
    if (l.kind === "transformer") last = i;
  });
  if (head.kind !== "fceHead" || last < 0) return [...layers];
  const kept = head.positions.length;
  return layers.map((l, i): LayerPlan => {
    if (i === last) {
      return { ...l, queries: head.positions } as GraphTransformer;
    }
    if (l.kind === "finalNorm") return { ...l, sequence: kept };
    if (l === head) {
      return {
        ...head,
        sequence: kept,
        positions: head.positions.map((_, j) => j),
      };
    }
    return l;
  });
}

/**
 * Marks every conv + BatchNorm of the CNN as folded (eval only: it uses the
 * running statistics).
 *
 * @param layers The layer list.
 * @returns The rewritten list.
 */
export function foldBatchNorms(layers: readonly LayerPlan[]): LayerPlan[] {
  const fold = (c: ConvBnPlan): GraphConvBn => ({ ...c, folded: true });
  return layers.map((l): LayerPlan => {
    if (l.kind === "stem") return { ...l, conv: fold(l.conv) } as StemLayer;
    if (l.kind !== "bottleneck") return l;
    return {
      ...l,
      conv1: fold(l.conv1),
      conv2: fold(l.conv2),
      conv3: fold(l.conv3),
      shortcut: l.shortcut && fold(l.shortcut),
    } as BottleneckLayer;
  });
}

/**
 * Marks every transformer block to compute keys, values and queries with
 * one matmul over packed weights (eval: the packing runs once per weight
 * version).
 *
 * @param layers The layer list.
 * @returns The rewritten list.
 */
export function packQkv(layers: readonly LayerPlan[]): LayerPlan[] {
  return layers.map((l): LayerPlan =>
    l.kind === "transformer" ? { ...l, packedQkv: true } as GraphTransformer : l
  );
}

/**
 * The layer list a graph records: trimmed for an fce head; in eval, folded
 * and packed as well.
 *
 * @param layers The model description's layers.
 * @param training Training graph (no eval-only rewrites).
 */
export function graphLayers(
  layers: readonly LayerPlan[],
  training: boolean,
): LayerPlan[] {
  const trimmed = trimLastBlock(layers);
  return training ? trimmed : packQkv(foldBatchNorms(trimmed));
}
