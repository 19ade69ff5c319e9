/**
 * What a dataset layout produces: an index of clip files per split with their
 * labels, built from the folder structure and split lists alone (no audio is
 * decoded), and every structural problem found on the way.
 *
 * @module
 */
import type { OptionsSchema } from "../../pipeline/types.ts";

/** One clip of a split: its file and class index. */
export interface ClipRef {
  /** Absolute path of the WAV file. */
  readonly path: string;
  /** Class index into {@linkcode DatasetIndex.classes}. */
  readonly label: number;
}

/** The clips of a dataset, by split. */
export interface DatasetIndex {
  /** Class names in id order (label i is classes[i]). */
  readonly classes: readonly string[];
  /** Clips per split; split names are `train`, `validation`, `test`. */
  readonly splits: Readonly<Record<string, readonly ClipRef[]>>;
  /** Facts worth recording (layout, root, fold, version, ...). */
  readonly info: Readonly<Record<string, unknown>>;
}

/** A structural problem: the path it concerns and what is wrong. */
export interface DataProblem {
  /** The file or folder concerned. */
  readonly path: string;
  /** What is wrong, sentence case, no final period. */
  readonly message: string;
}

/** What indexing returns: the index when it could be built, and every problem. */
export interface IndexResult {
  readonly index?: DatasetIndex;
  readonly problems: readonly DataProblem[];
  /** Files left out before a seeded split ({@linkcode IndexContext.exclude}), with the reason. */
  readonly excluded?: readonly {
    readonly path: string;
    readonly reason: string;
  }[];
}

/** Context of indexing. */
export interface IndexContext {
  /** The run's seed, for layouts that draw a split. */
  readonly seed: number;
  /**
   * Bad files to leave out before a seeded split is drawn (`onBadFile:
   * skip`), so that skipping a file and deleting it give the same split:
   * given candidate paths, resolves path → reason for the bad ones.
   */
  readonly exclude?: (
    paths: readonly string[],
  ) => Promise<ReadonlyMap<string, string>>;
}

/** A dataset layout: its `data:` schema and its indexer. */
export interface Layout<D = unknown> {
  /** The `data.layout` value. */
  readonly id: string;
  /** Schema of the whole `data:` section for this layout (with `layout` as a literal). */
  readonly data: OptionsSchema<D>;
  /** Builds the index. Never throws for data problems: it reports them. */
  index(data: D, ctx: IndexContext): Promise<IndexResult>;
  /**
   * The dataset's own folder of background-noise clips, relative to its
   * root (Speech Commands' `_background_noise_`): `load` uses it when its
   * `backgroundNoise` option is unset, so `--set data.root=...` moves both.
   */
  readonly noiseFolder?: string;
  /** The class names the `data:` section implies without reading files (undefined: unknown). */
  classes?(data: D): readonly string[] | undefined;
}
