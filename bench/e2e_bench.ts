/**
 * End-to-end benchmark of a paper preset through the real pipeline
 * (`deno task bench e2e --preset sc1|cs [--backend …] [--epochs 1]
 * [--synth-dir DIR]`): writes (or reuses) a synthetic dataset in the preset's
 * published layout (`stages/datasets/synth.ts`), runs `presets/<preset>.yaml`
 * on it with `train.epochs` and `test_time_adaptation.epochs` set to
 * `--epochs`, and reports, per phase, wall seconds and clips/s:
 *
 * - `trainEpoch`: each training epoch (from `metrics.jsonl`: the epoch's
 *   own clock, clips of the train split seen);
 * - `validation`: each per-epoch evaluation (from the end of the epoch's
 *   progress bar to the epoch's log line; on the fused engine also its own
 *   `evalSeconds` and how they split into waiting for batches, enqueuing and
 *   readbacks, from `metrics.jsonl`);
 * - `ttau`: the `test_time_augmentation` stage (`rows`: eval forwards, one
 *   per view of each clip, what `ttauFraction` compares with the bound; clips = passes over the
 *   split × its clips);
 * - `ttdaEpoch` and `ttdaEvaluation`: each TTDA epoch's adaptation pass
 *   (its progress bar) and the evaluation after it (to its log line);
 * - `report`: the `report` stage (`rows`: the clips it scored itself, each
 *   model state on each reported split; `reportFraction` compares them over
 *   the whole stage with the bound).
 *
 * `stepBound` is the same machine's `bench train` figure for the preset
 * (fused engine on WebGPU: training clips/s of a warm 4-view step, and eval
 * forward clips/s), measured after the run in the same process; it is null
 * (with `stepBoundNote`) on cpu or when `--set` changes the model, since the
 * paper-size tfjs step on cpu takes minutes. The TTDA bound is `bench ttda`'s.
 * Train epochs carry `syncSeconds` (the epoch-end copy of the weights to the
 * host, counted in the epoch; on the fused engine only the last epoch does
 * the whole copy there, the others finish it during the next epoch's first
 * steps). `trainEpochFraction` compares the steady epoch with the bound: with
 * three epochs or more the one before the last (neither the first, which
 * compiles, nor the last, which copies at its end), else the last;
 * `lastTrainEpochFraction` is the last epoch's, and `trainStepsFraction` the
 * steady epoch's without its `syncSeconds`.
 * `gpuIdleFraction` is, per phase and for the whole run, 1 − the GPU time of
 * every fused-engine and front-end submit (timestamp queries,
 * `gpu/busy.ts`) over the wall time; null on cpu. `peakGpuMemoryMiB` is the
 * largest sum, sampled every 50 ms, of the engine's and front end's buffers
 * and tfjs's allocated GPU bytes. `phaseWindows` gives the train epochs', the
 * validations', TTAu's, the TTDA epochs' and the report's wall-clock windows in
 * seconds since the process started, to match a V8 `--prof` log to the phases.
 * `compile` counts the pipelines the run compiled and the host seconds spent
 * compiling them (`moduleSeconds` of it in WGSL parsing); null on cpu.
 *
 * Prints one JSON object (the pipeline's own progress goes to stderr).
 *
 * @module
 */
import type { Precision } from "../model/engine_choice.ts";
import { parseArgs } from "node:util";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { compile } from "../pipeline/compile.ts";
import { runPipeline, StageError } from "../pipeline/run.ts";
import {
  createProgressFactory,
  type ProgressFactory,
} from "../pipeline/progress.ts";
import { BUILTIN_STAGES } from "../stages/mod.ts";
import {
  type SynthLayout,
  type SynthOptions,
  type SynthSummary,
  writeSyntheticDataset,
} from "../stages/datasets/synth.ts";
import { benchTrain } from "./train_bench.ts";
import { benchTtda } from "./ttda_bench.ts";
import { type BackendChoice, selectBackend } from "../pipeline/backend.ts";
import { tfjsDevice } from "../gpu/engine.ts";
import { compileStats, runtimeBytes } from "../gpu/runtime.ts";
import { attachBusyMeter, idleFraction } from "../gpu/busy.ts";

/** The presets this bench runs, with their layout and default data sizes. */
export const E2E_PRESETS: Readonly<
  Record<string, { layout: SynthLayout; synth: SynthOptions }>
> = {
  sc1: {
    layout: "speech_commands",
    synth: { version: 1, train: 20, validation: 4, test: 4 },
  },
  cs: {
    layout: "cochlscene",
    synth: { train: 8, validation: 2, test: 2, backgroundNoise: true },
  },
};

/** One timed phase. */
export interface PhaseTiming {
  /** 1-based epoch, for per-epoch phases. */
  readonly epoch?: number;
  /** Wall seconds. */
  readonly seconds: number;
  /** Clips processed (each pass over a clip counts once). */
  readonly clips: number;
  /** clips / seconds. */
  readonly clipsPerSecond: number;
  /** Train epochs: of `seconds`, the weights' copy to the host for the checkpoints. */
  readonly syncSeconds?: number;
  /** Train epochs (fused, all but the last): the copy's host time during the next epoch's first steps. */
  readonly syncLaterSeconds?: number;
  /** TTAu: eval-forward rows (clips × views of each pass); report: clips it scored. */
  readonly rows?: number;
  /** TTAu and report: rows / seconds. */
  readonly rowsPerSecond?: number;
  /** Report: seconds of its scoring (checkpoint reads included). */
  readonly scoringSeconds?: number;
  /** Validation (fused engine): the evaluation's own seconds, from metrics.jsonl. */
  readonly evalSeconds?: number;
  /** Validation (fused engine): of `evalSeconds`, waiting for batches (decoding, the front end). */
  readonly dataSeconds?: number;
  /** Validation (fused engine): of `evalSeconds`, enqueuing the eval graph. */
  readonly enqueueSeconds?: number;
  /** Validation (fused engine): of `evalSeconds`, reading logits back. */
  readonly readSeconds?: number;
  /** TTAu and report (fused engine): seconds their scorer ran (`scorerTiming`). */
  readonly scoredSeconds?: number;
  /** TTAu and report (fused engine): the scorer's engine set-up before it. */
  readonly setupSeconds?: number;
}

/** A progress bar as the bench saw it: label, total, wall-clock start and end (ms since the epoch). */
export interface BarRecord {
  readonly label: string;
  readonly total: number;
  readonly start: number;
  end?: number;
}

/** One record of `log.jsonl` (the fields the bench reads). */
export interface LogRecord {
  readonly time: string;
  readonly stage?: string;
  readonly message?: string;
  readonly event?: string;
}

const round = (x: number, digits = 3) => Number(x.toFixed(digits));

function phase(seconds: number, clips: number, epoch?: number): PhaseTiming {
  return {
    ...(epoch !== undefined ? { epoch } : {}),
    seconds: round(seconds),
    clips,
    clipsPerSecond: round(seconds > 0 ? clips / seconds : 0, 1),
  };
}

/**
 * Eval-forward rows of the TTAu stage: each pass of its views (bars `TTAu
 * model i/n`) scores every clip once per view, the passes of the plain
 * pipeline (labels ending in `(eval)`-like phase names) once. The view count
 * comes from the stage's summary line (`… × 3 views, merge …`).
 *
 * @returns `rows` and `rowsPerSecond`, or nothing when the line is missing.
 */
export function ttauRows(
  ttauBars: readonly BarRecord[],
  records: readonly LogRecord[],
  seconds: number,
): { rows: number; rowsPerSecond: number } | Record<string, never> {
  const line = records.find((r) =>
    r.stage === "test_time_augmentation" && /^TTAu on /.test(r.message ?? "")
  );
  const views = /× (\d+) views?\b/.exec(line?.message ?? "");
  if (!views) return {};
  const rows = ttauBars.reduce(
    (n, b) => n + b.total * (/\(\w+\)$/.test(b.label) ? 1 : Number(views[1])),
    0,
  );
  return {
    rows,
    rowsPerSecond: round(seconds > 0 ? rows / seconds : 0, 1),
  };
}

/**
 * The scorer's host timings a stage logged in its line `<prefix>: scored 12
 * batches in 0.10 s (waiting for batches 0.02 s, enqueuing 0.01 s, readbacks
 * 0.07 s), after 0.12 s of engine set-up` (TTAu and the report on the fused
 * engine), in seconds; nothing when the stage logged none.
 *
 * @param records The run's log records.
 * @param stage The stage's name.
 */
export function scorerTiming(
  records: readonly LogRecord[],
  stage: string,
):
  | {
    scoredSeconds: number;
    dataSeconds: number;
    enqueueSeconds: number;
    readSeconds: number;
    setupSeconds: number;
  }
  | Record<string, never> {
  for (const r of records) {
    if (r.stage !== stage) continue;
    const m =
      /scored \d+ batches in ([\d.]+) s \(waiting for batches ([\d.]+) s, enqueuing ([\d.]+) s, readbacks ([\d.]+) s\), after ([\d.]+) s of engine set-up/
        .exec(r.message ?? "");
    if (!m) continue;
    const [scoredSeconds, dataSeconds, enqueueSeconds, readSeconds, setup] = m
      .slice(1).map(Number);
    return {
      scoredSeconds,
      dataSeconds,
      enqueueSeconds,
      readSeconds,
      setupSeconds: setup,
    };
  }
  return {};
}

/**
 * Eval-forward rows of the report stage: the clips it scored itself (each
 * model state it loads, on each reported split), from its line `report:
 * scored 3 model states on test: 1800 clips in 2.41 s (…)`.
 *
 * @returns `rows`, `rowsPerSecond` over the whole stage and
 *   `scoringSeconds` (and `loadSeconds`, its wait for checkpoint reads), or
 *   nothing when the line is missing.
 */
export function reportRows(
  records: readonly LogRecord[],
  seconds: number,
):
  | {
    rows: number;
    rowsPerSecond: number;
    scoringSeconds: number;
    loadSeconds?: number;
  }
  | Record<string, never> {
  for (const r of records) {
    if (r.stage !== "report") continue;
    const message = r.message ?? "";
    const m =
      /^report: scored \d+ model states? on .*: (\d+) clips in ([\d.]+) s/
        .exec(message);
    if (!m) continue;
    const rows = Number(m[1]);
    const load = /([\d.]+) s of it waiting for checkpoints/.exec(message);
    return {
      rows,
      rowsPerSecond: round(seconds > 0 ? rows / seconds : 0, 1),
      scoringSeconds: Number(m[2]),
      ...(load ? { loadSeconds: Number(load[1]) } : {}),
    };
  }
  return {};
}

/**
 * The evaluation after each bar whose label matches `bar`: from the bar's
 * end to the first log record of `stage` after it whose message matches
 * `line` (the epoch's summary line, logged right after the evaluation).
 *
 * @param clips Clips of the evaluated split.
 */
export function evaluationsAfter(
  bars: readonly BarRecord[],
  records: readonly LogRecord[],
  bar: RegExp,
  stage: string,
  line: RegExp,
  clips: number,
): PhaseTiming[] {
  const out: PhaseTiming[] = [];
  for (const [i, b] of bars.filter((x) => bar.test(x.label)).entries()) {
    const end = b.end === undefined
      ? undefined
      : lineAfter(records, stage, line, b.end);
    if (end === undefined) continue;
    out.push(phase(Math.max(0, end - b.end!) / 1000, clips, i + 1));
  }
  return out;
}

/**
 * When the stage first logged a line matching `line` at or after `from` (ms
 * since the epoch); undefined when it did not.
 */
function lineAfter(
  records: readonly LogRecord[],
  stage: string,
  line: RegExp,
  from: number,
): number | undefined {
  const r = records.find((r) =>
    r.stage === stage && r.message !== undefined && line.test(r.message) &&
    Date.parse(r.time) >= from - 1
  );
  return r ? Date.parse(r.time) : undefined;
}

/**
 * When the stage `name` ran: its stage:start and stage:end events, in ms
 * since the epoch; undefined when either is missing.
 */
export function stageSpan(
  records: readonly LogRecord[],
  name: string | undefined,
): [number, number] | undefined {
  const at = (event: string) =>
    records.find((r) => r.event === event && r.stage === name);
  const [start, end] = [at("stage:start"), at("stage:end")];
  return start && end
    ? [Date.parse(start.time), Date.parse(end.time)]
    : undefined;
}

/** The bars opened while the stage `name` ran (between its stage:start and stage:end events). */
export function barsOfStage(
  bars: readonly BarRecord[],
  records: readonly LogRecord[],
  name: string,
): BarRecord[] {
  const span = stageSpan(records, name);
  if (!span) return [];
  const [a, b] = span;
  return bars.filter((x) => x.start >= a - 1 && x.start <= b + 1);
}

/** Reads a JSONL file; missing file → []. */
async function readJsonl<T>(path: string): Promise<T[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
  return text.split("\n").filter((l) => l.trim() !== "").map((l) =>
    JSON.parse(l) as T
  );
}

/**
 * The overrides that point a preset at a synthetic dataset: its root, the
 * Speech Commands version, the background noise folder.
 *
 * @param layout The dataset layout.
 * @param synth What {@linkcode writeSyntheticDataset} wrote (or reused).
 * @returns `path=value` overrides.
 */
export function synthOverrides(
  layout: SynthLayout,
  synth: SynthSummary,
): string[] {
  return [
    `data.root=${synth.root}`,
    ...(layout === "speech_commands"
      ? [`data.version=${synth.options.version}`]
      : []),
    `load.backgroundNoise=${synth.backgroundNoise}`,
  ];
}

/** The `--synth-dir` default: one folder per preset and data options. */
function defaultSynthDir(preset: string, o: SynthOptions): string {
  const key = Object.entries(o).filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([k, v]) => `${k}${v}`).join("-");
  return join("runs", "bench-e2e", `synth-${preset}-${key}`);
}

/** What the step bound measures, from the run's `--set` overrides. */
export interface StepBoundPlan {
  /** True when an override changes the model or its input (no bound then). */
  readonly modelChanged: boolean;
  /** `train.precision` of the run: bench train's precision. */
  readonly trainPrecision: Precision;
  /** `test_time_adaptation.precision` of the run: bench ttda's precision. */
  readonly ttdaPrecision: Precision;
}

const PRECISION_SET =
  /^(?:stages\.)?(train|test_time_adaptation|test_time_augmentation|report)\.(?:with\.)?precision=(.*)$/;

/**
 * Reads the `--set` overrides for the step bound: those that change the
 * model or its input (a `train`, `mel` or `tokenize` option other than
 * `epochs`, `limitBatches`, `readEvery` and `precision`) rule the paper-shape
 * bound out; a stage's `precision` (train, TTAu, TTDA, report) does not, and
 * the bound is then measured in the train and TTDA stages' precisions.
 *
 * @param sets The `--set path=value` overrides.
 * @returns Whether the model changed and the bound's precisions.
 * @throws {Error} For a precision other than fp32 or mixed, naming the override.
 */
export function stepBoundPlan(sets: readonly string[]): StepBoundPlan {
  const precision: Record<string, Precision> = {};
  for (const s of sets) {
    const m = PRECISION_SET.exec(s);
    if (!m) continue;
    const value = m[2].trim();
    if (value !== "fp32" && value !== "mixed") {
      throw new Error(
        `Cannot run bench e2e: --set ${s} must be fp32 or mixed`,
      );
    }
    precision[m[1]] = value;
  }
  const modelChanged = sets.some((s) =>
    /^(stages\.)?(train|mel|tokenize)\./.test(s) &&
    !/^(stages\.)?train\.(with\.)?(epochs|limitBatches|readEvery|precision)=/
      .test(s)
  );
  return {
    modelChanged,
    trainPrecision: precision.train ?? "fp32",
    ttdaPrecision: precision.test_time_adaptation ?? "fp32",
  };
}

/**
 * Runs the end-to-end benchmark.
 *
 * @param args `--preset sc1|cs`, `--backend auto|webgpu|cpu` (auto),
 *   `--epochs N` (1), `--synth-dir DIR`, `--train/--validation/--test N`
 *   (clips per class; preset defaults), `--seconds S`, `--sample-rate HZ`,
 *   `--set path=value` (repeatable: extra overrides, e.g. a tiny model on
 *   cpu), `--out DIR` (run folders; `runs/bench-e2e`), `--no-step-bound`.
 */
export async function benchE2e(args: string[]): Promise<unknown> {
  const { values } = parseArgs({
    args,
    options: {
      preset: { type: "string", default: "sc1" },
      backend: { type: "string", default: "auto" },
      epochs: { type: "string", default: "1" },
      "synth-dir": { type: "string" },
      train: { type: "string" },
      validation: { type: "string" },
      test: { type: "string" },
      seconds: { type: "string" },
      "sample-rate": { type: "string" },
      set: { type: "string", multiple: true, default: [] },
      out: { type: "string", default: join("runs", "bench-e2e") },
      "no-step-bound": { type: "boolean", default: false },
    },
  });
  const preset = E2E_PRESETS[values.preset];
  if (!preset) {
    throw new Error(
      `Cannot benchmark preset "${values.preset}" end to end: use ${
        Object.keys(E2E_PRESETS).join(" or ")
      }`,
    );
  }
  if (!["auto", "webgpu", "cpu"].includes(values.backend)) {
    throw new Error(
      `Cannot use --backend "${values.backend}": use auto, webgpu or cpu`,
    );
  }
  // What the step bound will measure (a bad precision is refused now).
  const bound = stepBoundPlan(values.set);
  const epochs = Number(values.epochs);
  if (!Number.isInteger(epochs) || epochs < 1) {
    throw new Error(
      `--epochs must be a positive integer, got "${values.epochs}"`,
    );
  }
  const num = (flag: string, v: string | undefined) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n)) {
      throw new Error(`--${flag} takes a number, got "${v}"`);
    }
    return n;
  };
  const synthOptions: SynthOptions = Object.fromEntries(
    Object.entries({
      ...preset.synth,
      train: num("train", values.train) ?? preset.synth.train,
      validation: num("validation", values.validation) ??
        preset.synth.validation,
      test: num("test", values.test) ?? preset.synth.test,
      seconds: num("seconds", values.seconds),
      sampleRateHz: num("sample-rate", values["sample-rate"]),
    }).filter(([, v]) => v !== undefined),
  );
  const synthDir = values["synth-dir"] ??
    defaultSynthDir(values.preset, synthOptions);
  const t0 = performance.now();
  const synth: SynthSummary = await writeSyntheticDataset(
    preset.layout,
    synthDir,
    synthOptions,
  );
  const synthSeconds = (performance.now() - t0) / 1000;

  const overrides = [
    ...synthOverrides(preset.layout, synth),
    `train.epochs=${epochs}`,
    `test_time_adaptation.epochs=${epochs}`,
    `runtime.backend=${values.backend}`,
    `runtime.outputDir=${resolve(values.out)}`,
    ...values.set,
  ];
  const specPath = fileURLToPath(
    new URL(`../presets/${values.preset}.yaml`, import.meta.url),
  );
  const compiled = await compile(specPath, {
    builtins: BUILTIN_STAGES,
    overrides,
  });

  const bars: BarRecord[] = [];
  const stderr = (line: string) =>
    Deno.stderr.writeSync(new TextEncoder().encode(line + "\n"));
  const plain = createProgressFactory({ interactive: false, write: stderr });
  const progress: ProgressFactory = (o) => {
    const record: BarRecord = {
      label: o.label,
      total: o.total ?? 0,
      start: Date.now(),
    };
    bars.push(record);
    const inner = plain(o);
    return {
      tick: (n, m) => inner.tick(n, m),
      done: (m) => {
        record.end = Date.now();
        inner.done(m);
      },
    };
  };
  // GPU busy time of every engine and front-end submit over the run, and
  // the peak of GPU memory (engine and front-end buffers plus tfjs's).
  const gpu = values.backend === "cpu" ? undefined : await (async () => {
    const { tf } = await selectBackend(values.backend as BackendChoice);
    const device = tfjsDevice(tf);
    if (!device) return undefined;
    let peak = 0;
    const sample = () => {
      const m = tf.memory() as { numBytesInGPUAllocated?: number };
      peak = Math.max(
        peak,
        runtimeBytes(device) + (m.numBytesInGPUAllocated ?? 0),
      );
    };
    const timer = setInterval(sample, 50);
    return {
      device,
      meter: attachBusyMeter(device),
      stop: () => {
        clearInterval(timer);
        sample();
        return peak;
      },
    };
  })();
  const meter = gpu?.meter;
  const compileBefore = gpu ? compileStats(gpu.device) : undefined;
  const runStart = performance.now();
  const runStartMs = Date.now();
  // A failed run still reports the phases it finished, with the error.
  let runDir: string;
  let failure: { stage: string; error: string } | undefined;
  try {
    runDir = (await runPipeline(compiled, { console: stderr, progress }))
      .runDir;
  } catch (error) {
    if (!(error instanceof StageError)) throw error;
    runDir = error.runDir;
    failure = { stage: error.stage, error: error.message };
  }
  const wallSeconds = (performance.now() - runStart) / 1000;
  const runEndMs = Date.now();
  const busy = meter ? await meter.stop() : undefined;
  const peakBytes = gpu?.stop();
  // Pipeline compilation during the run (host time; Deno compiles synchronously).
  const compilation = gpu && compileBefore
    ? (() => {
      const after = compileStats(gpu.device);
      return {
        pipelines: after.pipelines - compileBefore.pipelines,
        seconds: round(
          (after.moduleMs + after.pipelineMs - compileBefore.moduleMs -
            compileBefore.pipelineMs) / 1000,
        ),
        moduleSeconds: round((after.moduleMs - compileBefore.moduleMs) / 1000),
        wgslChars: after.wgslChars - compileBefore.wgslChars,
      };
    })()
    : null;

  const manifest = JSON.parse(
    await Deno.readTextFile(join(runDir, "manifest.json")),
  );
  const timings = (manifest.timingsMs ?? {}) as Record<string, number>;
  const backendName = (manifest.backend?.name ?? "cpu") as string;
  const splits = (manifest.data?.splits ?? {}) as Record<string, number>;
  const records = await readJsonl<LogRecord>(join(runDir, "log.jsonl"));
  const metrics = await readJsonl<
    {
      epoch: number;
      split: string;
      seconds?: number;
      syncSeconds?: number;
      syncLaterSeconds?: number;
      clipsPerSecond?: number;
      dataSeconds?: number;
      enqueueSeconds?: number;
      readSeconds?: number;
    }
  >(join(runDir, "metrics.jsonl"));
  const trainEpoch = metrics.filter((m) =>
    m.split === "train" && m.seconds !== undefined
  ).map((m, i) =>
    m.syncSeconds === undefined
      ? phase(m.seconds!, Math.round(m.clipsPerSecond! * m.seconds!), i + 1)
      : {
        ...phase(m.seconds!, Math.round(m.clipsPerSecond! * m.seconds!), i + 1),
        syncSeconds: round(m.syncSeconds),
        ...(m.syncLaterSeconds !== undefined &&
          { syncLaterSeconds: round(m.syncLaterSeconds) }),
      }
  );
  const selectOn = (compiled.plan.stages.find((s) => s.id === "train")
    ?.options as { selectOn?: string } | undefined)?.selectOn ?? "validation";
  // Each validation's own breakdown (fused engine) from metrics.jsonl.
  const evalLines = metrics.filter((m) =>
    m.split === selectOn && m.dataSeconds !== undefined
  );
  const validation = evaluationsAfter(
    bars,
    records,
    /^train epoch/,
    "train",
    /^epoch \d+/,
    splits[selectOn] ?? 0,
  ).map((p) => {
    const m = evalLines.find((l) => l.epoch === p.epoch);
    return m
      ? {
        ...p,
        evalSeconds: round(m.seconds!),
        dataSeconds: round(m.dataSeconds!),
        enqueueSeconds: round(m.enqueueSeconds!),
        readSeconds: round(m.readSeconds!),
      }
      : p;
  });
  const ttdaSplit =
    (compiled.plan.stages.find((s) => s.id === "test_time_adaptation")
      ?.options as { split?: string } | undefined)?.split ?? "test";
  const ttdaEpoch = bars.filter((b) => /^TTDA epoch/.test(b.label) && b.end)
    .map((b, i) => phase((b.end! - b.start) / 1000, b.total, i + 1));
  const ttdaEvaluation = evaluationsAfter(
    bars,
    records,
    /^TTDA epoch/,
    "test_time_adaptation",
    /^TTDA epoch \d+/,
    splits[ttdaSplit] ?? 0,
  );
  // Wall-clock windows of the phases (ms since the epoch), for the idle fraction.
  const trainBars = bars.filter((b) => /^train epoch/.test(b.label) && b.end);
  const ttdaBars = bars.filter((b) => /^TTDA epoch/.test(b.label) && b.end);
  const stageWindow = (id: string) =>
    stageSpan(records, compiled.plan.stages.find((s) => s.id === id)?.name);
  const idle = (w: [number, number] | undefined) =>
    busy && w ? round(idleFraction(busy, w[0], w[1])) : null;
  const gpuIdleFraction = busy
    ? {
      run: idle([runStartMs, runEndMs]),
      trainEpoch: trainBars.map((b) => idle([b.start, b.end!])),
      ttau: idle(stageWindow("test_time_augmentation")),
      ttdaEpoch: ttdaBars.map((b) => idle([b.start, b.end!])),
      report: idle(stageWindow("report")),
    }
    : null;
  // The same windows in seconds since this process started (for matching a
  // V8 `--prof` log's tick times to the phases).
  const since = (w: [number, number] | undefined) =>
    w
      ? [
        round((w[0] - performance.timeOrigin) / 1000),
        round((w[1] - performance.timeOrigin) / 1000),
      ]
      : null;
  // Validation: from a train epoch's end to its log line (as evaluationsAfter).
  const validationWindows = trainBars.map((b) => {
    const end = lineAfter(records, "train", /^epoch \d+/, b.end!);
    return end === undefined ? null : since([b.end!, end]);
  });
  const phaseWindows = {
    trainEpoch: trainBars.map((b) => since([b.start, b.end!])),
    validation: validationWindows,
    ttau: since(stageWindow("test_time_augmentation")),
    ttdaEpoch: ttdaBars.map((b) => since([b.start, b.end!])),
    report: since(stageWindow("report")),
  };
  const stageMs = (id: string) => {
    const name = compiled.plan.stages.find((s) => s.id === id)?.name;
    return name === undefined ? undefined : timings[name];
  };
  const ttauMs = stageMs("test_time_augmentation");
  const ttauBars = ttauMs === undefined ? [] : barsOfStage(
    bars,
    records,
    compiled.plan.stages.find((s) => s.id === "test_time_augmentation")!
      .name,
  );
  const ttau = ttauMs === undefined ? null : {
    ...phase(ttauMs / 1000, ttauBars.reduce((n, b) => n + b.total, 0)),
    ...ttauRows(ttauBars, records, ttauMs / 1000),
    ...scorerTiming(records, "test_time_augmentation"),
  };
  const reportMs = stageMs("report");
  const reportSplit = (compiled.plan.stages.find((s) => s.id === "report")
    ?.options as { split?: string } | undefined)?.split ?? "test";
  const report = reportMs === undefined ? null : {
    ...phase(reportMs / 1000, splits[reportSplit] ?? 0),
    ...reportRows(records, reportMs / 1000),
    ...scorerTiming(records, "report"),
  };

  // The step bound: the same machine's `bench train` at the preset's shapes.
  const modelChanged = bound.modelChanged;
  let stepBound: Record<string, unknown> | null = null;
  let stepBoundNote: string | undefined;
  if (values["no-step-bound"]) stepBoundNote = "skipped (--no-step-bound)";
  else if (backendName !== "webgpu") {
    stepBoundNote =
      "measured on webgpu only: the paper-size tfjs step on cpu takes minutes";
  } else if (modelChanged) {
    stepBoundNote =
      "not measured: --set changes the model or its input, so bench train's paper shapes do not apply";
  } else {
    const boundArgs = [
      "--preset",
      values.preset,
      "--backend",
      values.backend,
      "--steps",
      "5",
    ];
    const bench = await benchTrain([
      ...boundArgs,
      "--precision",
      bound.trainPrecision,
    ]) as {
      results: {
        clipsPerSecond: number;
        evalForwardMs: number;
        batch: number;
      }[];
    };
    const r = bench.results[0];
    const ttda = (await benchTtda([
      ...boundArgs,
      "--precision",
      bound.ttdaPrecision,
    ]) as {
      results: { clipsPerSecond: number }[];
    }).results[0];
    const evalCps = r.batch / r.evalForwardMs * 1000;
    const last = <T>(list: readonly T[]) => list[list.length - 1];
    const steady = <T>(list: readonly T[]) =>
      list.length >= 3 ? list[list.length - 2] : last(list);
    const fraction = (p: PhaseTiming | null | undefined, bound: number) =>
      p ? round(p.clipsPerSecond / bound) : null;
    stepBound = {
      // bench train (its eval forward too) in train.precision, bench ttda
      // in test_time_adaptation.precision, as the run set them.
      precision: { train: bound.trainPrecision, ttda: bound.ttdaPrecision },
      trainClipsPerSecond: r.clipsPerSecond,
      evalForwardClipsPerSecond: round(evalCps, 1),
      ttdaClipsPerSecond: ttda.clipsPerSecond,
      trainEpochFraction: fraction(steady(trainEpoch), r.clipsPerSecond),
      lastTrainEpochFraction: fraction(last(trainEpoch), r.clipsPerSecond),
      // The same without the epoch-end copy of the weights to the host (a
      // fixed cost per epoch, large against the bench's small epochs).
      trainStepsFraction: (() => {
        const p = steady(trainEpoch);
        if (!p || p.syncSeconds === undefined) return null;
        const s = p.seconds - p.syncSeconds;
        return s > 0 ? round(p.clips / s / r.clipsPerSecond) : null;
      })(),
      validationFraction: fraction(last(validation), evalCps),
      // TTAu runs one eval forward per view of each clip: its bound is rows.
      ttauFraction: ttau?.rowsPerSecond === undefined
        ? fraction(ttau, evalCps)
        : round(ttau.rowsPerSecond / evalCps),
      // The same over its scorer's time only: without the stage's loading of
      // its members' checkpoints, engine set-up and outputs.
      ttauScoringFraction: ttau?.rows !== undefined && ttau.scoredSeconds
        ? round(ttau.rows / ttau.scoredSeconds / evalCps)
        : null,
      ttdaEpochFraction: fraction(last(ttdaEpoch), ttda.clipsPerSecond),
      ttdaEvaluationFraction: fraction(last(ttdaEvaluation), evalCps),
      // The report's own scorings (rows) over the whole stage.
      reportFraction: report?.rowsPerSecond === undefined
        ? null
        : round(report.rowsPerSecond / evalCps),
      note:
        "bench train and bench ttda in the same process after the run: fused engine, warm 4-view steps of 32 clips, eval forward of 32, TTDA steps of 2 views × 70",
    };
  }
  return {
    bench: "e2e",
    preset: values.preset,
    backend: backendName,
    adapter: manifest.backend?.adapter?.description ?? null,
    deno: Deno.version.deno,
    epochs,
    runDir,
    ...(failure ? { failed: failure } : {}),
    synth: {
      root: synth.root,
      reused: synth.reused,
      seconds: round(synthSeconds),
      clips: synth.clips,
      options: synth.options,
    },
    splits,
    overrides,
    wallSeconds: round(wallSeconds),
    stageSeconds: Object.fromEntries(
      Object.entries(timings).map(([k, v]) => [k, round(v / 1000)]),
    ),
    phases: { trainEpoch, validation, ttau, ttdaEpoch, ttdaEvaluation, report },
    stepBound,
    ...(stepBoundNote ? { stepBoundNote } : {}),
    peakGpuMemoryMiB: peakBytes === undefined
      ? null
      : Math.round(peakBytes / 2 ** 20),
    gpuIdleFraction,
    compile: compilation,
    phaseWindows,
    gpuIdleNote: busy
      ? "1 − GPU time of the fused engine's and front end's submits (timestamp queries) / wall time, per phase; work tfjs queues itself is not timed"
      : "not measured: needs WebGPU with timestamp-query",
  };
}
