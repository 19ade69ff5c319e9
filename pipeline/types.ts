/**
 * The stage contract shared by built-in and external stages, the values that
 * flow between them, and the contexts the scheduler hands them.
 *
 * Three kinds of stage:
 * - `source`: turns the spec's `data:` section into a random-access dataset of
 *   examples (plain typed arrays and metadata, never tensors). Exactly one, first.
 * - `map`: a synchronous function of one batch, run per batch by the scheduler
 *   inside one `tf.tidy` (so it may create tensors freely).
 * - `step`: works on the whole run (training, adaptation, reports), pulling
 *   batches through the map stages and returning run values for later steps.
 *
 * Shape legend used in docs: `b` batch, `c` channels, `s` samples, `t` frames,
 * `f` mel bins, `k` tokens, `d` model width, `n` classes.
 *
 * @module
 */
import type { Rng } from "./rng.ts";
import type { Logger } from "./logger.ts";
import type { ProgressFactory } from "./progress.ts";
import type { BackendInfo } from "./backend.ts";

/** The TensorFlow.js namespace as stages receive it. */
export type Tf = typeof import("@tensorflow/tfjs");

/** The pipeline API major version a stage targets. */
export const STAGE_API = 1;

/**
 * Anything with zod-compatible `safeParse`: the options schema of a stage.
 * Built-in stages use zod 4; external stages may bring their own zod copy.
 */
export interface OptionsSchema<O> {
  safeParse(
    input: unknown,
  ):
    | { success: true; data: O }
    | { success: false; error: { issues: readonly SchemaIssue[] } };
}

/** The part of a zod issue the diagnostics need. */
export interface SchemaIssue {
  readonly code: string;
  readonly path: readonly PropertyKey[];
  readonly message: string;
  readonly expected?: string;
  readonly values?: readonly unknown[];
  readonly keys?: readonly string[];
  readonly minimum?: number | bigint;
  readonly maximum?: number | bigint;
  readonly inclusive?: boolean;
  readonly origin?: string;
  readonly discriminator?: string;
  readonly options?: readonly unknown[];
  readonly note?: string;
}

/**
 * The phase a batch is drawn for. By convention `fit` (training) and `eval`
 * (validation and test); steps may use others (e.g. `adapt` for test-time
 * adaptation), and map stages run only in the phases they list.
 */
export type Phase = string;

/** Fields every stage contract has. */
export interface StageBase<O> {
  /** Stable id, `^[a-z][a-z0-9_]*$`; equals the file stem for built-ins. */
  readonly id: string;
  /** Semver of this stage's contract (options, keys and their shapes). */
  readonly version: string;
  /** Pipeline API major this stage targets; must be {@linkcode STAGE_API}. */
  readonly api: typeof STAGE_API;
  /** One line, sentence case, no final period. */
  readonly summary: string;
  /** Options schema: the single source of defaults, docs and errors. */
  readonly options: OptionsSchema<O>;
  /** Keys this stage reads, in the order it uses them. */
  readonly takes: readonly string[];
  /** Keys this stage writes. */
  readonly provides: readonly string[];
  /**
   * Options that may differ when a run is resumed (`--resume`): `any` value,
   * or `grow` (a number that may only increase, e.g. `train`'s `epochs`, to
   * extend a finished run). Any other difference refuses the resume.
   */
  readonly resumeMayChange?: Readonly<Record<string, "any" | "grow">>;
}

/**
 * Declared layout of a key a map stage provides, checked by the scheduler on
 * the first batch of every phase. Axes are numbers (fixed sizes) or names:
 * `b` is the batch's `size`, and other names (`t`, `f`, ...) must agree
 * between the keys of one stage.
 */
export interface KeyLayout {
  /** Axis sizes or names, e.g. `["b", "t", 80]`. */
  readonly shape: readonly (number | string)[];
  /** Tensor dtype (`float32`, `int32`), or for arrays the element type. */
  readonly dtype?: "float32" | "int32" | "bool" | "string";
}

/** One example as a source yields it: plain arrays and metadata. */
export type Example = Readonly<Record<string, unknown>>;

/**
 * A batch of examples: every per-example key holds an array of `size` values
 * (or a tensor whose first axis is `b`), plus `size`, `split` and `phase`.
 */
export interface Batch {
  readonly size: number;
  readonly split: string;
  readonly phase: Phase;
  readonly [key: string]: unknown;
}

/** A random-access dataset opened by a source stage. */
export interface Dataset {
  /** Class names; label `i` is `classes[i]`. */
  readonly classes: readonly string[];
  /** Number of examples per split, e.g. `{ train: 100, validation: 20, test: 20 }`. */
  readonly splits: Readonly<Record<string, number>>;
  /** Facts about the data worth recording (sample rate, layout, root). */
  readonly info: Readonly<Record<string, unknown>>;
  /**
   * Reads example `index` of `split` (async I/O lives here). Resolves
   * `undefined` when the example was skipped (a bad file with
   * `onBadFile: skip`); the scheduler drops it from its batch.
   */
  example(split: string, index: number): Promise<Example | undefined>;
  /** Labels of a split in index order, when known without reading audio. */
  labels?(split: string): readonly number[];
  /**
   * Each clip's file and length in seconds, in index order, when known from
   * headers (lets map stages warn before a run: {@linkcode MapStage.checkData}).
   */
  durations?(
    split: string,
  ): readonly { readonly path: string; readonly seconds: number }[];
  /** Dataset-level resources for later stages (e.g. `backgroundNoise`). */
  readonly assets?: Readonly<Record<string, unknown>>;
  /** Every example skipped so far, with the reason. */
  skipped?(): readonly { readonly path: string; readonly reason: string }[];
  /** Releases files, workers or caches. */
  close?(): Promise<void>;
}

/** What every stage callback receives from the scheduler. */
export interface StageContext {
  /** The stage's name in the spec (`name:` or its id). */
  readonly stageName: string;
  /** Seeded random stream of this stage. */
  readonly rng: Rng;
  /** Structured logger (writes `log.jsonl` and the console). */
  readonly log: Logger;
  /** The TensorFlow.js namespace, already on the chosen backend. */
  readonly tf: Tf;
  /** The chosen backend and adapter. */
  readonly backend: BackendInfo;
  /** Dataset-level resources the source provided (e.g. `backgroundNoise`); empty for the source itself. */
  readonly assets: Readonly<Record<string, unknown>>;
}

/** Context of a source stage's `open`. */
export interface SourceContext extends StageContext {
  /** Directory of the named spec file. */
  readonly specDir: string;
  /**
   * Keys of `data:` inherited through `extends:`, with where a parent spec
   * wrote them (`{ classes: { file, line, … } }`), so data errors can say
   * where a conflicting value came from.
   */
  readonly dataOrigins?: Readonly<
    Record<string, { file: string; line: number; column: number }>
  >;
}

/** Context of a map stage's `apply` for one batch. */
export interface MapContext extends StageContext {
  readonly phase: Phase;
  readonly split: string;
  /** Epoch the batch is drawn for (0-based). */
  readonly epoch: number;
  /** Index of the batch within its epoch. */
  readonly batchIndex: number;
}

/** Options for drawing batches of a split through the map stages. */
export interface BatchOptions {
  /** Examples per batch. */
  readonly batchSize: number;
  /** The phase: map stages run only when it is one of their phases (`fit`, `eval`, ...). */
  readonly phase: Phase;
  /** Shuffle with the run's seed (per epoch). Default: true for `fit`. */
  readonly shuffle?: boolean;
  /** Epoch number, which seeds the shuffle and the map stages' randomness. */
  readonly epoch?: number;
  /** Drop a final incomplete batch. Default false. */
  readonly dropLast?: boolean;
  /** Stop after this many examples (for quick runs). */
  readonly limit?: number;
}

/** Batched access to the dataset through the map stages. */
export interface DataAccess {
  readonly classes: readonly string[];
  readonly splits: Readonly<Record<string, number>>;
  readonly info: Readonly<Record<string, unknown>>;
  /**
   * Yields batches of `split` after the map stages. Tensors in a batch stay
   * valid until the next batch is requested; clone what you keep.
   */
  batches(split: string, options: BatchOptions): AsyncIterable<Batch>;
  /**
   * Starts reading and decoding the first batches of a later
   * `batches(split, options)` call (any phase; the same split, batch size,
   * shuffle and epoch, limit and dropLast), so that they are ready when it
   * starts: call it before the host waits on the GPU (the end of an epoch,
   * a readback). Only the clips are read ahead, not the map stages. The
   * last four prefetches are kept; never throws (the later call reports a
   * bad split or size).
   */
  prefetch?(split: string, options: BatchOptions): void;
}

/** Context of a step stage's `run`. */
export interface StepContext extends StageContext {
  /** The run folder; write files there (atomically: see `writeFileAtomic`). */
  readonly runDir: string;
  /** Values provided by earlier steps (and `classes`, `dataset`). */
  readonly values: Readonly<Record<string, unknown>>;
  /** The dataset, batched through the map stages. */
  readonly data: DataAccess;
  /** Progress reporting for long loops. */
  readonly progress: ProgressFactory;
  /** Aborts when the run is interrupted (Ctrl-C, SIGTERM). */
  readonly signal: AbortSignal;
  /**
   * Call at every step boundary (e.g. before each training step): lets
   * pending signals in (it yields to the event loop every 50 ms or so) and
   * throws an `InterruptedError` when the run was interrupted, so the step
   * stops there. `restarts` says where a resume picks up (e.g. `"epoch 3,
   * from the checkpoint of epoch 2"`); omitted: a resume runs this step
   * from its start.
   */
  boundary(restarts?: string): Promise<void>;
  /** True when the run continues an earlier one in the same folder (`--resume`): steps pick up their checkpoints. */
  readonly resume: boolean;
  /** The compiled plan's spec hash, for checkpoints. */
  readonly specHash: string;
}

/** A source stage. */
export interface SourceStage<O = unknown, D = unknown> extends StageBase<O> {
  readonly kind: "source";
  /** Schema of the spec's `data:` section. */
  readonly data: OptionsSchema<D>;
  /**
   * Keys of `data:` (`data`) and of the options (`options`) that hold file
   * paths: the compiler resolves each relative one against the directory of
   * the spec file that wrote it (the working directory for `--set`), so the
   * stage receives absolute paths.
   */
  readonly pathKeys?: {
    readonly data?: readonly string[];
    readonly options?: readonly string[];
  };
  /** Opens the dataset the `data:` section describes. */
  open(data: D, options: O, ctx: SourceContext): Promise<Dataset>;
  /**
   * A stand-in for `--dry-run` when the data is absent: silent clips of the
   * given length and rate with the classes the `data:` section implies, so
   * the map stages and a step's `describe` see the real shapes. Undefined
   * when the classes cannot be known without the files.
   */
  planned?(data: D, options: O, clip: PlannedClip): Dataset | undefined;
}

/** The clip a planned dataset stands in with (see `SourceStage.planned`). */
export interface PlannedClip {
  /** Length in seconds. */
  readonly seconds: number;
  /** Sample rate in Hz. */
  readonly sampleRateHz: number;
}

/** A map stage: synchronous, per batch. */
export interface MapStage<O = unknown> extends StageBase<O> {
  readonly kind: "map";
  /** Phases this stage runs in (`augment` is `["fit"]`). Default: both. */
  readonly phases?: readonly Phase[];
  /** Transforms one batch. Must be synchronous so the scheduler can tidy it. */
  apply(batch: Batch, options: O, ctx: MapContext): Batch;
  /**
   * Layouts of the keys it provides, given its options; the scheduler checks
   * them after the stage's first batch in each phase and names the stage,
   * key, expected and actual shape when they differ.
   */
  layouts?(options: O): Readonly<Record<string, KeyLayout>>;
  /**
   * Optional look at the opened dataset before any batch (the start of a run
   * and `deno task data`): returns warnings about what this stage will do to
   * it under `options` (e.g. `fixed_length` cutting many clips), each naming
   * the option that changes it; `stageName` is the stage's name in the spec.
   */
  checkData?(options: O, dataset: Dataset, stageName: string): string[];
}

/** What a step's `describe` gets: the data as the step would see it. */
export interface DescribeContext {
  readonly tf: Tf;
  readonly data: DataAccess;
}

/** A step stage: whole-run work. */
export interface StepStage<O = unknown> extends StageBase<O> {
  readonly kind: "step";
  /** Optional text for `--dry-run` (e.g. a model summary); may draw a batch from `ctx.data`. */
  describe?(options: O, ctx: DescribeContext): Promise<string>;
  /** Runs the step; returns the values it provides. */
  run(options: O, ctx: StepContext): Promise<Record<string, unknown>>;
}

/** Any stage. */
export type Stage<O = unknown> = SourceStage<O> | MapStage<O> | StepStage<O>;
