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
  MapStage,
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
  /** Cancels the run. */
  readonly signal?: AbortSignal;
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

/** Creates `<outputDir>/<name>-<timestamp>[-n]`, never reusing a folder. */
export async function createRunDir(
  outputDir: string,
  name: string,
  now = new Date(),
): Promise<string> {
  await Deno.mkdir(outputDir, { recursive: true });
  const base = join(outputDir, `${name}-${timestamp(now)}`);
  for (let n = 1;; n++) {
    const dir = n === 1 ? base : `${base}-${n}`;
    try {
      await Deno.mkdir(dir);
      return dir;
    } catch (error) {
      if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
    }
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
}

/** The scheduler's record of a planned map stage. */
function mapEntry(p: PlannedStage, stage: MapStage, log: Logger): MapEntry {
  return {
    name: p.name,
    phases: p.phases,
    stage,
    options: p.options,
    log: log.withStage(p.name),
  };
}

/** Builds the batched data access for step stages. */
function dataAccess(
  dataset: Dataset,
  maps: readonly MapEntry[],
  env: {
    tf: Tf;
    backend: BackendInfo;
    seed: number;
    timings: Record<string, number>;
  },
): DataAccess {
  return {
    classes: dataset.classes,
    splits: dataset.splits,
    info: dataset.info,
    async *batches(split: string, o: BatchOptions) {
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
      const active = maps.filter((m) =>
        !m.phases || m.phases.includes(o.phase)
      );
      const fetch = async (b: number) =>
        (await Promise.all(
          order.slice(b * o.batchSize, (b + 1) * o.batchSize).map((i) =>
            dataset.example(split, i)
          ),
        )).filter((e): e is Example => e !== undefined);
      let previous: Batch | undefined;
      let pending = count > 0 ? fetch(0) : undefined;
      try {
        for (let b = 0; b < count; b++) {
          const examples = await pending!;
          pending = b + 1 < count ? fetch(b + 1) : undefined;
          if (previous) env.tf.dispose(tensorsOf(previous, env.tf));
          previous = undefined;
          if (examples.length === 0) continue; // every clip of it was skipped
          let batch = assembleBatch(examples, split, o.phase);
          env.tf.tidy(() => {
            for (const m of active) {
              const t0 = performance.now();
              batch = m.stage.apply(batch, m.options, {
                stageName: m.name,
                rng: createRng(
                  `map/${m.name}/${split}/${epoch}/${b}`,
                  env.seed,
                ),
                log: m.log,
                tf: env.tf,
                backend: env.backend,
                assets: dataset.assets ?? {},
                phase: o.phase,
                split,
                epoch,
                batchIndex: b,
              });
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
        await pending?.catch(() => {});
      }
    },
  };
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
    });
  } finally {
    log.close();
  }
}

/**
 * Describes the step stages for `--dry-run`: opens the source (cpu backend,
 * no run folder) and lets each step with a `describe` hook look at the data
 * through the map stages declared before it (e.g. to print a model summary).
 *
 * @param compiled The output of `compile()`.
 * @returns One text per describing step, by stage name.
 */
export async function describeSteps(
  compiled: CompiledPipeline,
  options: { console?: (line: string) => void } = {},
): Promise<Record<string, string>> {
  const { plan, modules } = compiled;
  const describing = modules.some((m) => m.kind === "step" && m.describe);
  if (!describing) return {};
  const dataset = await openSource(compiled, options);
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
  const runDir = options.resume ?? options.runDir ??
    await createRunDir(plan.runtime.outputDir, plan.name);
  if (options.resume) {
    const stat = await Deno.stat(join(runDir, "plan.json")).catch(() =>
      undefined
    );
    if (!stat) {
      throw new StageError(
        "resume",
        runDir,
        new Error(
          `Cannot resume "${runDir}": it holds no plan.json, so it is not a run folder`,
        ),
      );
    }
  } else if (options.runDir) await Deno.mkdir(runDir, { recursive: true });
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
    specHash: plan.specHash,
    specFiles: plan.specFiles,
    overrides: plan.overrides,
    status: "running",
    startedAt: started.toISOString(),
    stages: plan.stages.map((s) => ({
      name: s.name,
      id: s.id,
      version: s.version,
      origin: s.origin,
      ...(s.specifier ? { specifier: s.specifier } : {}),
      ...(s.integrity ? { integrity: s.integrity } : {}),
    })),
  };
  const saveManifest = () =>
    writeJsonAtomic(join(runDir, "manifest.json"), {
      ...manifest,
      timingsMs: timings,
    });
  await saveManifest();
  log.event("run:start", {
    runDir,
    plan: plan.name,
    specHash: plan.specHash,
    ...(options.resume ? { resume: true } : {}),
  });
  log.info(`run folder ${runDir}`);

  let current = "backend";
  let dataset: Dataset | undefined;
  const recordSkipped = () => {
    const skipped = dataset?.skipped?.() ?? [];
    if (skipped.length === 0) return;
    manifest.skipped = skipped;
    log.warn(`skipped ${skipped.length} bad file(s); listed in manifest.json`);
  };
  const abort = new AbortController();
  const onAbort = () => abort.abort(options.signal?.reason);
  options.signal?.addEventListener("abort", onAbort);
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
    let t0 = performance.now();
    log.event("stage:start", { stage: current, kind: "source" });
    dataset = await source.open(plan.data, sourcePlan.options, {
      ...base(current),
      specDir: compiled.specDir,
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
        signal: abort.signal,
        resume: options.resume !== undefined,
        specHash: plan.specHash,
      });
      backend.checkErrors();
      Object.assign(values, out);
      timings[current] = performance.now() - t0;
      log.event("stage:end", { stage: current, ms: timings[current] });
      await saveManifest();
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
    const failure = error instanceof StageError
      ? error
      : new StageError(current, runDir, error);
    recordSkipped();
    manifest.status = "failed";
    manifest.failedStage = failure.stage;
    manifest.error = failure.message;
    manifest.finishedAt = new Date().toISOString();
    await saveManifest().catch(() => {});
    log.error(failure.message, {
      stack: error instanceof Error ? error.stack : undefined,
    });
    log.event("run:end", { status: "failed", stage: failure.stage });
    throw failure;
  } finally {
    options.signal?.removeEventListener("abort", onAbort);
    await dataset?.close?.().catch(() => {});
    log.close();
  }
}
