/**
 * The scheduler: runs a compiled plan in order with a shared context (plan,
 * seeded random streams, backend, logger, run folder). It opens the source,
 * feeds batches through the map stages (each batch's map pass in one
 * `tf.tidy`), runs the step stages, times every stage, and writes the run
 * folder: `plan.json`, `spec.yaml` (the fully resolved spec), `manifest.json`
 * and `log.jsonl`. On failure it names the stage, records it in the manifest
 * and keeps everything written so far.
 *
 * @module
 */
import { join } from "node:path";
import type { Tensor } from "@tensorflow/tfjs";
import type { CompiledPipeline, PlannedStage } from "./compile.ts";
import type {
  Batch,
  BatchOptions,
  DataAccess,
  Dataset,
  Example,
  MapContext,
  MapStage,
  PlannedClip,
  SourceStage,
  StepStage,
  Tf,
} from "./types.ts";
import { createRng } from "./rng.ts";
import type { Rng } from "./rng.ts";
import { createLogger } from "./logger.ts";
import type { Logger } from "./logger.ts";
import { createProgressFactory } from "./progress.ts";
import type { ProgressFactory } from "./progress.ts";
import { selectBackend } from "./backend.ts";
import type { BackendInfo } from "./backend.ts";
import { writeFileAtomic, writeJsonAtomic } from "./atomic.ts";
import { checkResume } from "./resume.ts";
import type { AcceptedResume } from "./resume.ts";
import {
  boundaryOf,
  createYielder,
  InterruptedError,
  interruptFromSignal,
} from "./interrupt.ts";
import type { Interrupt } from "./interrupt.ts";
import { checkLayouts, formatLayoutProblems } from "./layout_check.ts";
import { frontEndStageOf, type FrontEndUse, useFrontEnd } from "./front_end.ts";
import { createGpuFrontEnd } from "../gpu/frontend/segment.ts";

/** Thrown when a stage fails while running; names the stage. */
export class StageError extends Error {
  /** Name of the failed stage. */
  readonly stage: string;
  /** The run folder, with everything written before the failure. */
  readonly runDir: string;

  /**
   * @param stage Name of the failed stage.
   * @param runDir The run folder.
   * @param cause The original error.
   */
  constructor(stage: string, runDir: string, cause: unknown) {
    super(
      `Cannot finish stage "${stage}": ${
        cause instanceof Error ? cause.message : String(cause)
      }`,
      { cause },
    );
    this.name = "StageError";
    this.stage = stage;
    this.runDir = runDir;
  }
}

/** Thrown when the run folder cannot be created; nothing was written. */
export class RunFolderError extends Error {
  /**
   * @param message What failed and what to do.
   * @param cause The original error.
   */
  constructor(message: string, cause?: unknown) {
    super(message, { cause });
    this.name = "RunFolderError";
  }
}

/** Thrown when a run was interrupted; the run folder says `interrupted`. */
export class RunInterrupted extends Error {
  /** The stage that was running. */
  readonly stage: string;
  /** The run folder. */
  readonly runDir: string;
  /** What interrupted it (`SIGINT`, ...). */
  readonly reason: string;
  /** Where a resume picks up; undefined: the stage runs again from its start. */
  readonly restarts?: string;

  /**
   * @param stage The stage that was running.
   * @param runDir The run folder.
   * @param cause The {@linkcode InterruptedError} (or the abort reason).
   */
  constructor(stage: string, runDir: string, cause: InterruptedError) {
    super(
      `Interrupted (${cause.reason}) in stage "${stage}"; ${
        resumeNote(stage, cause.restarts)
      }`,
      { cause },
    );
    this.name = "RunInterrupted";
    this.stage = stage;
    this.runDir = runDir;
    this.reason = cause.reason;
    this.restarts = cause.restarts;
  }
}

function resumeNote(stage: string, restarts: string | undefined): string {
  return restarts
    ? `a resume restarts ${restarts}`
    : `a resume runs stage "${stage}" again from its start (it has no checkpoint to resume from)`;
}

/** The error and its causes, outermost first (at most 8 deep). */
function causeChain(error: unknown): unknown[] {
  const chain: unknown[] = [];
  for (let e = error; e && chain.length < 8;) {
    chain.push(e);
    e = (e as { cause?: unknown }).cause;
  }
  return chain;
}

/** The first {@linkcode StageError} in an error's cause chain. */
function stageErrorIn(error: unknown): StageError | undefined {
  return causeChain(error).find((e) => e instanceof StageError) as
    | StageError
    | undefined;
}

/** The first {@linkcode InterruptedError} in an error's cause chain. */
function interruptedIn(error: unknown): InterruptedError | undefined {
  return causeChain(error).find((e) => e instanceof InterruptedError) as
    | InterruptedError
    | undefined;
}

/** How to run. */
export interface RunOptions {
  /** Receives human-readable lines (the CLI passes stderr). */
  readonly console?: (line: string) => void;
  /** Live progress bars (a terminal) instead of periodic lines. */
  readonly interactive?: boolean;
  /** Seconds between plain progress lines. Default 10. */
  readonly progressIntervalSeconds?: number;
  /** Print debug lines. */
  readonly verbose?: boolean;
  /** Use this run folder instead of `<outputDir>/<name>-<timestamp>`. */
  readonly runDir?: string;
  /** Continue the run in this folder (`--resume`): steps resume from their checkpoints there. */
  readonly resume?: string;
  /** Run folders of earlier repeats of this spec (`--repeat`), given to steps as `values.siblingRuns` (e.g. the ensemble of TTAu's Mlt). */
  readonly siblingRuns?: readonly string[];
  /** Cancels the run (as an interrupt: steps stop at their next boundary). */
  readonly signal?: AbortSignal;
  /** The interrupt switch (the CLI's signal handlers); takes precedence over `signal`. */
  readonly interrupt?: Interrupt;
  /** Extra facts recorded under these keys in `manifest.json` (e.g. `grid`: the grid task, its GPU pinning and attempt). */
  readonly manifestExtra?: Readonly<Record<string, unknown>>;
  /** Makes the progress displays of the steps (default: bars or plain lines on `console`); `deno task bench e2e` wraps it to time phases. */
  readonly progress?: ProgressFactory;
}

/** What a finished run returns. */
export interface RunResult {
  readonly runDir: string;
  /** Values provided by the step stages. */
  readonly values: Readonly<Record<string, unknown>>;
  /** Wall time of each stage in milliseconds (map stages: summed over batches). */
  readonly timings: Readonly<Record<string, number>>;
  readonly backend: BackendInfo;
}

/** `YYYYMMDD-HHMMSS` in UTC. */
function timestamp(date: Date): string {
  const p = (n: number) => String(n).padStart(2, "0");
  return `${date.getUTCFullYear()}${p(date.getUTCMonth() + 1)}${
    p(date.getUTCDate())
  }-${p(date.getUTCHours())}${p(date.getUTCMinutes())}${
    p(date.getUTCSeconds())
  }`;
}

/**
 * Creates `<outputDir>/<name>-<timestamp>[-n]`, never reusing a folder.
 *
 * @throws {RunFolderError} When the folder cannot be created (read-only, not a folder).
 */
export async function createRunDir(
  outputDir: string,
  name: string,
  now = new Date(),
): Promise<string> {
  const base = join(outputDir, `${name}-${timestamp(now)}`);
  try {
    await Deno.mkdir(outputDir, { recursive: true });
    for (let n = 1;; n++) {
      const dir = n === 1 ? base : `${base}-${n}`;
      try {
        await Deno.mkdir(dir);
        return dir;
      } catch (error) {
        if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
      }
    }
  } catch (error) {
    throw new RunFolderError(
      `Cannot create a run folder in "${outputDir}": ${
        (error as Error).message
      }; make it writable or choose another with --set runtime.outputDir=<folder>`,
      error,
    );
  }
}

/** Collects the tensors held directly by a batch's fields (or arrays of them). */
function tensorsOf(batch: Batch, tf: Tf): Tensor[] {
  const out: Tensor[] = [];
  for (const v of Object.values(batch)) {
    if (v instanceof tf.Tensor) out.push(v);
    else if (Array.isArray(v) && v.length > 0 && v[0] instanceof tf.Tensor) {
      for (const t of v) if (t instanceof tf.Tensor) out.push(t);
    }
  }
  return out;
}

/** Builds a batch from examples: each key becomes an array over examples. */
export function assembleBatch(
  examples: readonly Example[],
  split: string,
  phase: Batch["phase"],
): Batch {
  const fields: Record<string, unknown[]> = {};
  examples.forEach((ex, i) => {
    for (const [k, v] of Object.entries(ex)) {
      (fields[k] ??= new Array(examples.length))[i] = v;
    }
  });
  return { ...fields, size: examples.length, split, phase };
}

interface MapEntry {
  readonly name: string;
  /** Phases it runs in; undefined: every phase. */
  readonly phases?: readonly string[];
  readonly stage: MapStage;
  readonly options: unknown;
  readonly log: Logger;
  /** Stage id and module origin (only built-in stages fuse). */
  readonly id: string;
  readonly origin: PlannedStage["origin"];
}

/** The scheduler's record of a planned map stage. */
function mapEntry(p: PlannedStage, stage: MapStage, log: Logger): MapEntry {
  return {
    name: p.name,
    phases: p.phases,
    stage,
    options: p.options,
    log: log.withStage(p.name),
    id: p.id,
    origin: p.origin,
  };
}

/** Batches whose clips are read and decoded ahead of the one in use. */
const FETCH_AHEAD = 3;

/** Prefetched batch starts kept at once (older ones are dropped). */
const PREFETCHES_KEPT = 4;

/**
 * What decides a `batches` call's examples and their order (not the map
 * stages' randomness): split, batch size, shuffle (and its epoch), limit,
 * and dropLast.
 */
function readKey(split: string, o: BatchOptions): string {
  const shuffle = o.shuffle ?? o.phase === "fit";
  return JSON.stringify([
    split,
    o.batchSize,
    shuffle ? o.epoch ?? 0 : null,
    o.limit ?? null,
    o.dropLast ?? false,
  ]);
}

/**
 * Builds the batched data access for step stages (exported for tests).
 *
 * @param dataset The dataset.
 * @param maps The planned map stages, in order.
 * @param env The run's TF.js, backend, seed, timings and fused front end.
 * @returns Batches through the map stages, and prefetches of their clips.
 */
export function dataAccess(
  dataset: Dataset,
  maps: readonly MapEntry[],
  env: {
    tf: Tf;
    backend: BackendInfo;
    seed: number;
    timings: Record<string, number>;
    /** Run folder, for errors. */
    runDir: string;
    /** `stage/phase` pairs whose layouts were checked (shared by the run). */
    checked: Set<string>;
    /** Lets signals in between batches (the map pass of a batch is synchronous). */
    pause?: () => Promise<void>;
    /** The fused front end, when the run has one. */
    frontEnd?: FrontEndUse;
  },
): DataAccess {
  // The examples of every batch of a call, in order, and how to read one.
  const readPlan = (split: string, o: BatchOptions) => {
    const total = Object.hasOwn(dataset.splits, split)
      ? dataset.splits[split]
      : undefined;
    if (total === undefined) {
      throw new Error(
        `Cannot read split "${split}": the dataset has splits ${
          Object.keys(dataset.splits).map((s) => `"${s}"`).join(", ")
        }`,
      );
    }
    if (!(o.batchSize >= 1)) {
      throw new RangeError(
        `Cannot use batch size ${o.batchSize}: it must be >= 1`,
      );
    }
    const epoch = o.epoch ?? 0;
    const n = Math.min(total, o.limit ?? total);
    const order = Array.from({ length: total }, (_, i) => i);
    if (o.shuffle ?? o.phase === "fit") {
      const rng = createRng(`shuffle/${split}/${epoch}`, env.seed);
      for (let i = order.length - 1; i > 0; i--) {
        const j = rng.int(i + 1);
        [order[i], order[j]] = [order[j], order[i]];
      }
    }
    order.length = n;
    const count = o.dropLast
      ? Math.floor(n / o.batchSize)
      : Math.ceil(n / o.batchSize);
    const read = async (b: number) =>
      (await Promise.all(
        order.slice(b * o.batchSize, (b + 1) * o.batchSize).map((i) =>
          dataset.example(split, i)
        ),
      )).filter((e): e is Example => e !== undefined);
    // A batch read ahead may fail before it is awaited: its error is
    // thrown where it is awaited, not as an unhandled rejection.
    const fetch = (b: number) => {
      const p = read(b);
      p.catch(() => {});
      return p;
    };
    return { epoch, count, fetch };
  };
  // Batch starts read ahead by `prefetch`, by readKey, oldest first.
  const primed = new Map<string, Promise<Example[]>[]>();
  return {
    classes: dataset.classes,
    splits: dataset.splits,
    info: dataset.info,
    prefetch(split: string, o: BatchOptions) {
      const key = readKey(split, o);
      if (primed.has(key)) return;
      let plan: ReturnType<typeof readPlan>;
      try {
        plan = readPlan(split, o);
      } catch {
        return; // batches() with the same arguments says why
      }
      const { count, fetch } = plan;
      const first: Promise<Example[]>[] = [];
      for (let k = 0; k < Math.min(FETCH_AHEAD, count); k++) {
        first.push(fetch(k));
      }
      primed.set(key, first);
      while (primed.size > PREFETCHES_KEPT) {
        primed.delete(primed.keys().next().value!);
      }
    },
    async *batches(split: string, o: BatchOptions) {
      const { epoch, count, fetch } = readPlan(split, o);
      const key = readKey(split, o);
      const ready = primed.get(key);
      primed.delete(key);
      const active = maps.filter((m) =>
        !m.phases || m.phases.includes(o.phase)
      );
      const fusion = env.frontEnd
        ? env.frontEnd.fusion(o.phase, active)
        : { count: 0 };
      const fusedFrom = active.length - fusion.count;
      // Stages that hand the decoded arrays on unwritten (a mono clip's
      // channel is its waveform): the 16-bit samples attached to them hold.
      const sourcesIntact = active.slice(0, fusedFrom).every((m) =>
        m.id === "mono_mix" && m.origin === "builtin"
      );
      let previous: Batch | undefined;
      // Decoding runs FETCH_AHEAD batches ahead, so the workers keep going
      // while the host waits on the device (a GPU read blocks the thread);
      // a prefetch of the same reads started the first ones earlier.
      const pending: Promise<Example[]>[] = ready ?? [];
      for (let k = pending.length; k < Math.min(FETCH_AHEAD, count); k++) {
        pending.push(fetch(k));
      }
      try {
        for (let b = 0; b < count; b++) {
          const examples = await pending.shift()!;
          await env.pause?.();
          if (b + FETCH_AHEAD < count) pending.push(fetch(b + FETCH_AHEAD));
          if (previous) env.tf.dispose(tensorsOf(previous, env.tf));
          previous = undefined;
          if (examples.length === 0) continue; // every clip of it was skipped
          let batch = assembleBatch(examples, split, o.phase);
          env.tf.tidy(() => {
            const rngOf = (name: string) =>
              createRng(`map/${name}/${split}/${epoch}/${b}`, env.seed);
            for (const [k, m] of active.entries()) {
              if (k === fusedFrom && env.frontEnd) {
                const fused = active.slice(k);
                const t0 = performance.now();
                let out: Batch | undefined;
                try {
                  out = env.frontEnd.run(batch, fused, {
                    tf: env.tf,
                    phase: o.phase,
                    split,
                    epoch,
                    batchIndex: b,
                    assets: dataset.assets ?? {},
                    sourcesIntact,
                  }, rngOf);
                } catch (error) {
                  throw new StageError(
                    frontEndStageOf(error, fused),
                    env.runDir,
                    error,
                  );
                }
                const key = `${fused.map((f) => f.name).join("+")} (fused)`;
                env.timings[key] = (env.timings[key] ?? 0) +
                  performance.now() - t0;
                if (out) {
                  checkOnce(fused[fused.length - 1], out, o.phase, env);
                  batch = out;
                  break;
                }
              }
              const t0 = performance.now();
              try {
                batch = applyMap(m, batch, {
                  stageName: m.name,
                  rng: rngOf(m.name),
                  log: m.log,
                  tf: env.tf,
                  backend: env.backend,
                  assets: dataset.assets ?? {},
                  phase: o.phase,
                  split,
                  epoch,
                  batchIndex: b,
                }, env);
              } catch (error) {
                throw error instanceof StageError
                  ? error
                  : new StageError(m.name, env.runDir, error);
              }
              env.timings[m.name] = (env.timings[m.name] ?? 0) +
                performance.now() - t0;
            }
            return tensorsOf(batch, env.tf);
          });
          env.backend.checkErrors();
          previous = batch;
          yield batch;
        }
      } finally {
        if (previous) env.tf.dispose(tensorsOf(previous, env.tf));
        await Promise.all(pending.map((p) => p.catch(() => {})));
      }
    },
  };
}

/** Applies one map stage; checks its declared layouts once per phase. */
function applyMap(
  m: MapEntry,
  batch: Batch,
  ctx: MapContext,
  env: { tf: Tf; checked: Set<string> },
): Batch {
  const out = m.stage.apply(batch, m.options, ctx);
  checkOnce(m, out, ctx.phase, env);
  return out;
}

/** Checks a map stage's declared layouts on its output, once per phase. */
function checkOnce(
  m: MapEntry,
  out: Batch,
  phase: string,
  env: { tf: Tf; checked: Set<string> },
): void {
  const once = `${m.name}/${phase}`;
  if (m.stage.layouts && !env.checked.has(once)) {
    env.checked.add(once);
    const problems = checkLayouts(out, m.stage.layouts(m.options), env.tf);
    if (problems.length > 0) {
      throw new Error(
        formatLayoutProblems(m.name, phase, problems, out.size),
      );
    }
  }
}

/**
 * The run's fused front end: on the webgpu backend unless
 * `runtime.frontEnd` is `tfjs`; `fused` without WebGPU stops the run.
 */
function frontEndFor(
  tf: Tf,
  backend: BackendInfo,
  choice: "auto" | "fused" | "tfjs",
) {
  if (choice === "tfjs") return undefined;
  const made = backend.name === "webgpu" ? createGpuFrontEnd(tf) : undefined;
  if (!made && choice === "fused") {
    throw new Error(
      `Cannot fuse the front end (runtime.frontEnd: fused): it needs the webgpu backend, and this run uses ${backend.name} (${backend.reason}); set runtime.frontEnd to auto or tfjs`,
    );
  }
  return made;
}

function versions(tf: Tf): Record<string, string> {
  return {
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    typescript: Deno.version.typescript,
    tfjs: tf.version.tfjs,
  };
}

/**
 * Opens only the source of a compiled pipeline (for data reports): the
 * dataset as the run would see it, on the cpu backend, without a run folder.
 *
 * @param compiled The output of `compile()`.
 * @param options Where log lines go.
 * @returns The opened dataset; close it when done.
 */
export async function openSource(
  compiled: CompiledPipeline,
  options: { console?: (line: string) => void; verbose?: boolean } = {},
): Promise<Dataset> {
  const { plan, modules } = compiled;
  const { tf, backend } = await selectBackend("cpu");
  const log = createLogger({
    console: options.console,
    verbose: options.verbose,
  });
  const name = plan.stages[0].name;
  const source = modules[0] as SourceStage;
  try {
    return await source.open(plan.data, plan.stages[0].options, {
      stageName: name,
      rng: createRng(`stage/${name}`, plan.runtime.seed),
      log: log.withStage(name),
      tf,
      backend,
      assets: {},
      specDir: compiled.specDir,
      dataOrigins: compiled.dataOrigins,
    });
  } finally {
    log.close();
  }
}

/**
 * The warnings of the map stages' `checkData` hooks about an opened dataset
 * (e.g. `fixed_length` cutting many clips), in spec order, without repeats.
 *
 * @param compiled The output of `compile()`.
 * @param dataset The dataset its source opened.
 * @returns Warning lines, each naming the option that changes it.
 */
export function dataWarnings(
  compiled: CompiledPipeline,
  dataset: Dataset,
): string[] {
  const out: string[] = [];
  compiled.modules.forEach((m, i) => {
    if (m.kind !== "map" || !m.checkData) return;
    const p = compiled.plan.stages[i];
    for (const w of m.checkData(p.options, dataset, p.name)) {
      if (!out.includes(w)) out.push(w);
    }
  });
  return out;
}

/**
 * Describes the step stages for `--dry-run`: opens the source (cpu backend,
 * no run folder) and lets each step with a `describe` hook look at the data
 * through the map stages declared before it (e.g. to print a model summary).
 * When the data cannot be opened (not downloaded yet) and `planned` says
 * what a clip looks like, the source's stand-in of silent clips is used
 * instead (`SourceStage.planned`), and `note` tells the caller so.
 *
 * @param compiled The output of `compile()`.
 * @param options Where log lines go; the planned clip for absent data; `note`
 *   receives one line when the stand-in is used.
 * @returns One text per describing step, by stage name.
 * @throws The source's error when the data is absent and no stand-in exists.
 */
export async function describeSteps(
  compiled: CompiledPipeline,
  options: {
    console?: (line: string) => void;
    planned?: PlannedClip;
    note?: (line: string) => void;
  } = {},
): Promise<Record<string, string>> {
  const { plan, modules } = compiled;
  const describing = modules.some((m) => m.kind === "step" && m.describe);
  if (!describing) return {};
  let dataset: Dataset;
  try {
    dataset = await openSource(compiled, { console: options.console });
  } catch (error) {
    const source = modules[0] as SourceStage;
    const stand = options.planned &&
      source.planned?.(plan.data, plan.stages[0].options, options.planned);
    if (!stand || !options.planned) throw error;
    const why = (error as Error).message.split("\n")[0];
    options.note?.(
      `the data cannot be opened (${why}); the summary below is planned from the spec: ${stand.classes.length} classes, silent ${options.planned.seconds} s clips at ${options.planned.sampleRateHz} Hz`,
    );
    dataset = stand;
  }
  const { tf, backend } = await selectBackend("cpu");
  const log = createLogger({ console: options.console });
  const maps: MapEntry[] = [];
  const out: Record<string, string> = {};
  try {
    for (let i = 1; i < plan.stages.length; i++) {
      const p = plan.stages[i];
      const stage = modules[i];
      if (stage.kind === "map") {
        maps.push(mapEntry(p, stage, log));
      } else if (stage.kind === "step" && stage.describe) {
        const data = dataAccess(dataset, [...maps], {
          tf,
          backend,
          seed: plan.runtime.seed,
          timings: {},
          runDir: "",
          checked: new Set(),
        });
        out[p.name] = await stage.describe(p.options, { tf, data });
      }
    }
  } finally {
    log.close();
    await dataset.close?.();
  }
  return out;
}

/**
 * Runs a compiled pipeline.
 *
 * @param compiled The output of `compile()`.
 * @param options Console, progress and run-folder settings.
 * @returns The run folder, step values, timings and backend.
 * @throws {StageError} When a stage fails; the run folder keeps what was written.
 */
export async function runPipeline(
  compiled: CompiledPipeline,
  options: RunOptions = {},
): Promise<RunResult> {
  const { plan, modules } = compiled;
  // A resume is accepted (or refused) before anything in the folder is written.
  const resumed: AcceptedResume | undefined = options.resume
    ? await checkResume(options.resume, compiled)
    : undefined;
  let runDir: string;
  if (options.resume) runDir = options.resume;
  else if (options.runDir) {
    runDir = options.runDir;
    await Deno.mkdir(runDir, { recursive: true }).catch((error) => {
      throw new RunFolderError(
        `Cannot create the run folder "${runDir}": ${
          (error as Error).message
        }; make its parent writable or choose another folder`,
        error,
      );
    });
  } else runDir = await createRunDir(plan.runtime.outputDir, plan.name);
  // The hash the run's checkpoints carry: the original spec's, across resumes.
  const runSpecHash = resumed?.runSpecHash ?? plan.specHash;
  await writeJsonAtomic(join(runDir, "plan.json"), plan);
  await writeFileAtomic(
    join(runDir, "spec.yaml"),
    `# Fully resolved spec of this run (extends merged, overrides and defaults applied)\n${compiled.resolvedYaml}`,
  );
  const log = createLogger({
    file: join(runDir, "log.jsonl"),
    console: options.console,
    verbose: options.verbose,
  });
  const write = options.console ?? (() => {});
  const progress: ProgressFactory = options.progress ?? createProgressFactory({
    interactive: options.interactive ?? false,
    write,
    intervalSeconds: options.progressIntervalSeconds,
  });
  const started = new Date();
  const timings: Record<string, number> = {};
  const manifest: Record<string, unknown> = {
    name: plan.name,
    specHash: runSpecHash,
    specFiles: plan.specFiles,
    overrides: plan.overrides,
    status: "running",
    startedAt: started.toISOString(),
    ...options.manifestExtra,
    stages: plan.stages.map((s) => ({
      name: s.name,
      id: s.id,
      version: s.version,
      origin: s.origin,
      ...(s.specifier ? { specifier: s.specifier } : {}),
      ...(s.integrity ? { integrity: s.integrity } : {}),
    })),
  };
  if (resumed) {
    const earlier = Array.isArray(resumed.manifest.resumes)
      ? resumed.manifest.resumes
      : [];
    manifest.resumes = [...earlier, {
      at: started.toISOString(),
      previousStatus: resumed.manifest.status ?? "unknown",
      specHash: plan.specHash,
      changes: resumed.changes,
    }];
    if (typeof resumed.manifest.startedAt === "string") {
      manifest.firstStartedAt = resumed.manifest.firstStartedAt ??
        resumed.manifest.startedAt;
    }
  }
  const interrupt = options.interrupt ?? interruptFromSignal(options.signal);
  let current = "backend";
  // What the signal thread writes when a signal arrives, in case a second one
  // ends the process before the run can stop itself and say more.
  const updateLastWords = () =>
    interrupt.setLastWords(
      manifest.status !== "running" ? undefined : {
        path: join(runDir, "manifest.json"),
        text: JSON.stringify(
          {
            ...manifest,
            timingsMs: timings,
            status: "interrupted",
            interrupted: {
              stage: current,
              reason: "signal",
              hardStop: true,
              resume:
                "a resume picks up from the stage's last checkpoint, or runs it again from its start when it keeps none",
            },
          },
          null,
          2,
        ) + "\n",
      },
    );
  const saveManifest = async () => {
    await writeJsonAtomic(join(runDir, "manifest.json"), {
      ...manifest,
      timingsMs: timings,
    });
    updateLastWords();
  };
  await saveManifest();
  log.event("run:start", {
    runDir,
    plan: plan.name,
    specHash: plan.specHash,
    ...(resumed ? { resume: true, changes: resumed.changes } : {}),
  });
  log.info(`run folder ${runDir}`);
  for (const note of compiled.notes) log.warn(note);
  for (const c of resumed?.changes ?? []) {
    log.info(
      `resume changes ${c.path}: ${JSON.stringify(c.before)} → ${
        JSON.stringify(c.after)
      }`,
    );
  }

  let dataset: Dataset | undefined;
  const recordSkipped = () => {
    const skipped = dataset?.skipped?.() ?? [];
    if (skipped.length === 0) return;
    manifest.skipped = skipped;
    log.warn(`skipped ${skipped.length} bad file(s); listed in manifest.json`);
  };
  const checked = new Set<string>();
  const pause = createYielder();
  let disposeFrontEnd = () => {};
  try {
    const { tf, backend } = await selectBackend(plan.runtime.backend);
    manifest.backend = {
      name: backend.name,
      requested: backend.requested,
      reason: backend.reason,
      ...(backend.adapter ? { adapter: backend.adapter } : {}),
    };
    manifest.versions = versions(tf);
    log.info(`backend ${backend.name}: ${backend.reason}`);
    const fusedFrontEnd = frontEndFor(tf, backend, plan.runtime.frontEnd);
    const frontEndLines: string[] = [];
    if (fusedFrontEnd) disposeFrontEnd = () => fusedFrontEnd.dispose();
    const frontEnd = fusedFrontEnd &&
      useFrontEnd(fusedFrontEnd, (line) => {
        log.info(line);
        frontEndLines.push(line);
        manifest.frontEnd = frontEndLines;
      });
    log.event("backend", manifest.backend as Record<string, unknown>);
    await saveManifest();

    const seed = plan.runtime.seed;
    const rngOf = (name: string): Rng => createRng(`stage/${name}`, seed);
    const base = (name: string) => ({
      stageName: name,
      rng: rngOf(name),
      log: log.withStage(name),
      tf,
      backend,
      assets: dataset?.assets ?? {},
    });

    // Source.
    const sourcePlan = plan.stages[0];
    const source = modules[0] as SourceStage;
    current = sourcePlan.name;
    updateLastWords();
    let t0 = performance.now();
    log.event("stage:start", { stage: current, kind: "source" });
    dataset = await source.open(plan.data, sourcePlan.options, {
      ...base(current),
      specDir: compiled.specDir,
      dataOrigins: compiled.dataOrigins,
    });
    timings[current] = performance.now() - t0;
    log.event("stage:end", { stage: current, ms: timings[current] });
    log.info(
      `data: ${dataset.classes.length} classes; ${
        Object.entries(dataset.splits).map(([s, n]) => `${s} ${n}`).join(", ")
      }`,
      { classes: dataset.classes, splits: dataset.splits },
    );
    manifest.data = {
      classes: dataset.classes,
      splits: dataset.splits,
      info: dataset.info,
    };
    const warnings = dataWarnings(compiled, dataset);
    for (const w of warnings) log.warn(w);
    if (warnings.length) manifest.dataWarnings = warnings;

    const maps: MapEntry[] = [];
    const values: Record<string, unknown> = {
      classes: dataset.classes,
      dataset: dataset.info,
      siblingRuns: options.siblingRuns ?? [],
    };
    for (let i = 1; i < plan.stages.length; i++) {
      const p = plan.stages[i];
      const stage = modules[i];
      current = p.name;
      updateLastWords();
      if (stage.kind === "map") {
        // Map stages apply to batches drawn by later steps, in spec order.
        maps.push(mapEntry(p, stage, log));
        continue;
      }
      const step = stage as StepStage;
      // A step sees only the map stages declared before it.
      const view: DataAccess = dataAccess(dataset, [...maps], {
        tf,
        backend,
        seed,
        timings,
        runDir,
        checked,
        pause,
        frontEnd,
      });
      t0 = performance.now();
      log.event("stage:start", { stage: current, kind: "step" });
      log.info(`stage ${current} (${p.id}@${p.version})`);
      const out = await step.run(p.options, {
        ...base(current),
        runDir,
        values: { ...values },
        data: view,
        progress,
        signal: interrupt.signal,
        boundary: boundaryOf(interrupt, pause),
        resume: options.resume !== undefined,
        specHash: runSpecHash,
      });
      backend.checkErrors();
      Object.assign(values, out);
      timings[current] = performance.now() - t0;
      log.event("stage:end", { stage: current, ms: timings[current] });
      await saveManifest();
      if (interrupt.reason !== undefined && i + 1 < plan.stages.length) {
        current = plan.stages[i + 1].name;
        throw new InterruptedError(interrupt.reason);
      }
    }
    recordSkipped();
    manifest.status = "ok";
    manifest.finishedAt = new Date().toISOString();
    await saveManifest();
    log.event("run:end", { status: "ok", timingsMs: timings });
    log.info(
      `done in ${((Date.now() - started.getTime()) / 1000).toFixed(1)} s`,
    );
    return { runDir, values, timings, backend };
  } catch (error) {
    const interrupted = interruptedIn(error);
    if (interrupted) {
      const stop = new RunInterrupted(current, runDir, interrupted);
      recordSkipped();
      manifest.status = "interrupted";
      manifest.interrupted = {
        stage: current,
        reason: interrupted.reason,
        resume: resumeNote(current, interrupted.restarts),
      };
      manifest.finishedAt = new Date().toISOString();
      await saveManifest().catch(() => {});
      log.event("run:end", { status: "interrupted", stage: current });
      throw stop;
    }
    const failure = stageErrorIn(error) ??
      new StageError(current, runDir, error);
    recordSkipped();
    manifest.status = "failed";
    manifest.failedStage = failure.stage;
    manifest.error = failure.message;
    manifest.finishedAt = new Date().toISOString();
    await saveManifest().catch(() => {});
    // The one console line of the failure (callers must not print it again).
    log.error(failure.message, {
      stack: error instanceof Error ? error.stack : undefined,
    });
    log.event("run:end", { status: "failed", stage: failure.stage });
    throw failure;
  } finally {
    interrupt.setLastWords(undefined);
    disposeFrontEnd();
    await dataset?.close?.().catch(() => {});
    log.close();
  }
}
