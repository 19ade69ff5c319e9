/**
 * Mixed-precision fidelity experiment (issue 18's "mixed reaches the fp32
 * accuracy within 1 percentage point, mean of 3 seeds, no NaN/inf"):
 * `deno task bench fidelity --preset demo|sc1 [--seeds 3] [--backend webgpu]`
 * trains a preset with `train.precision` fp32 and mixed for each seed
 * (`runtime.seed` 1…N, or from `--first-seed`; both precisions from the same seed's initial weights
 * and data order) and prints per seed and on average the test accuracy of
 * the best checkpoint (the `train` stage's final evaluation, `summary.json`),
 * the mixed − fp32 difference in percentage points, and whether any run had
 * a non-finite loss or skipped steps (`metrics.jsonl`'s `skippedSteps`).
 *
 * `demo` runs `presets/demo.yaml` on its spoken digits (`data/demo_digits`);
 * `sc1` runs `presets/sc1.yaml` on `deno task synth`-style data written (or
 * reused) by the helper `bench e2e` uses. By default only the stages up to
 * `train` run (TTAu, TTDA and the report do not change the trained model);
 * `--full` runs the whole preset. `--epochs N` shortens training,
 * `--set path=value` adds overrides (the precision is set per run).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { compile, type CompiledPipeline } from "../pipeline/compile.ts";
import { runPipeline } from "../pipeline/run.ts";
import { createProgressFactory } from "../pipeline/progress.ts";
import { BUILTIN_STAGES } from "../stages/mod.ts";
import type { Precision } from "../model/engine_choice.ts";
import {
  type SynthOptions,
  writeSyntheticDataset,
} from "../stages/datasets/synth.ts";
import { E2E_PRESETS, synthOverrides } from "./e2e_bench.ts";

/** The presets of the experiment: the demo's own data, or synthetic data of SC1's layout. */
export const FIDELITY_PRESETS = ["demo", "sc1"] as const;

/** Parsed command line of {@linkcode benchFidelity}. */
export interface FidelityArgs {
  readonly preset: (typeof FIDELITY_PRESETS)[number];
  /** `runtime.seed` of each pair of runs. */
  readonly seeds: readonly number[];
  readonly backend: "auto" | "webgpu" | "cpu";
  /** `train.epochs` override (undefined: the preset's). */
  readonly epochs?: number;
  /** Extra `path=value` overrides. */
  readonly sets: readonly string[];
  /** Folder of the run folders. */
  readonly out: string;
  /** Run every stage of the preset (default: up to `train`). */
  readonly full: boolean;
  /** Clips per class of the synthetic SC1 data (preset `sc1`). */
  readonly synth: SynthOptions;
  /** Folder of the synthetic data (preset `sc1`). */
  readonly synthDir?: string;
  /** The accuracy tolerance in percentage points (default 1). */
  readonly tolerancePp: number;
}

/**
 * Reads the command line of `bench fidelity`.
 *
 * @param args `--preset demo|sc1` (demo), `--seeds N` (3: seeds S…S+N−1
 *   from `--first-seed S`, 1) or a comma list of seeds, `--backend auto|webgpu|cpu` (webgpu), `--epochs N`,
 *   `--set path=value` (repeatable), `--out DIR` (`runs/bench-fidelity`),
 *   `--full`, `--train/--validation/--test N` and `--synth-dir DIR` (sc1's
 *   synthetic data), `--tolerance PP` (1).
 * @returns The parsed arguments.
 * @throws {Error} "Cannot run bench fidelity: …" naming the bad option.
 */
export function parseFidelityArgs(args: readonly string[]): FidelityArgs {
  const { values } = parseArgs({
    args: [...args],
    options: {
      preset: { type: "string", default: "demo" },
      seeds: { type: "string", default: "3" },
      "first-seed": { type: "string", default: "1" },
      backend: { type: "string", default: "webgpu" },
      epochs: { type: "string" },
      set: { type: "string", multiple: true, default: [] },
      out: { type: "string", default: join("runs", "bench-fidelity") },
      full: { type: "boolean", default: false },
      train: { type: "string" },
      validation: { type: "string" },
      test: { type: "string" },
      "synth-dir": { type: "string" },
      tolerance: { type: "string", default: "1" },
    },
  });
  const bad = (why: string) => new Error(`Cannot run bench fidelity: ${why}`);
  const preset = values.preset as FidelityArgs["preset"];
  if (!FIDELITY_PRESETS.includes(preset)) {
    throw bad(
      `--preset must be ${
        FIDELITY_PRESETS.join(" or ")
      }, not "${values.preset}"`,
    );
  }
  const whole = (flag: string, v: string, min: number) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) {
      throw bad(`--${flag} must be a whole number >= ${min}, not "${v}"`);
    }
    return n;
  };
  const first = whole("first-seed", values["first-seed"], 0);
  const seeds = values.seeds.includes(",")
    ? values.seeds.split(",").map((s) => whole("seeds", s.trim(), 0))
    : Array.from(
      { length: whole("seeds", values.seeds, 1) },
      (_, i) => first + i,
    );
  if (new Set(seeds).size !== seeds.length) {
    throw bad(`--seeds lists a seed twice: "${values.seeds}"`);
  }
  if (!["auto", "webgpu", "cpu"].includes(values.backend)) {
    throw bad(`--backend must be auto, webgpu or cpu, not "${values.backend}"`);
  }
  for (const s of values.set) {
    if (/^(stages\.)?train\.(with\.)?precision=/.test(s)) {
      throw bad(
        `--set ${s}: the bench sets train.precision itself (fp32 and mixed per seed)`,
      );
    }
    if (/^runtime\.seed=/.test(s)) {
      throw bad(`--set ${s}: use --seeds to choose the seeds`);
    }
  }
  const tolerancePp = Number(values.tolerance);
  if (!(tolerancePp >= 0)) {
    throw bad(`--tolerance must be a number >= 0, not "${values.tolerance}"`);
  }
  const clips = (flag: "train" | "validation" | "test") => {
    const v = values[flag];
    return v === undefined ? E2E_PRESETS.sc1.synth[flag] : whole(flag, v, 1);
  };
  const synth: SynthOptions = {
    ...E2E_PRESETS.sc1.synth,
    train: clips("train"),
    validation: clips("validation"),
    test: clips("test"),
  };
  return {
    preset,
    seeds,
    backend: values.backend as FidelityArgs["backend"],
    epochs: values.epochs === undefined
      ? undefined
      : whole("epochs", values.epochs, 1),
    sets: values.set,
    out: values.out,
    full: values.full,
    synth,
    synthDir: values["synth-dir"],
    tolerancePp,
  };
}

/** One training run of the experiment. */
export interface FidelityRun {
  readonly seed: number;
  readonly precision: Precision;
  /** Test accuracy of the best checkpoint, in [0, 1] (absent when the run failed). */
  readonly testAccuracy?: number;
  readonly validationAccuracy?: number;
  readonly bestEpoch?: number;
  /** True when a `metrics.jsonl` loss was NaN or infinite, or the run stopped on one. */
  readonly nonFinite: boolean;
  /** Mixed precision: steps skipped for inf/NaN gradients over the run. */
  readonly skippedSteps?: number;
  /** Mixed precision: the loss scale at the end. */
  readonly lossScale?: number;
  readonly seconds: number;
  readonly runDir?: string;
  /** Why the run failed. */
  readonly error?: string;
}

/** The experiment's verdict (see {@linkcode summariseFidelity}). */
export interface FidelitySummary {
  /** Per seed: both test accuracies in percent and mixed − fp32 in points. */
  readonly perSeed: {
    seed: number;
    fp32: number | null;
    mixed: number | null;
    diffPp: number | null;
  }[];
  /** Mean test accuracy in percent over the seeds where both runs finished. */
  readonly meanFp32: number | null;
  readonly meanMixed: number | null;
  /** meanMixed − meanFp32, percentage points. */
  readonly diffPp: number | null;
  /** True when mixed's mean is at most `tolerancePp` below fp32's (above is fine). */
  readonly withinTolerance: boolean;
  readonly tolerancePp: number;
  /** Any run with a non-finite loss. */
  readonly nonFinite: boolean;
  /** Skipped steps summed over the mixed runs. */
  readonly skippedSteps: number;
  /** Runs that failed. */
  readonly failed: number;
}

const pct = (x: number) => Number((100 * x).toFixed(2));

/**
 * Aggregates the runs: per-seed accuracies and differences, the means over
 * the seeds where both precisions finished, and the verdict.
 *
 * @param runs The runs (any order).
 * @param tolerancePp How far (percentage points) mixed's mean may fall below fp32's.
 * @returns The summary; `withinTolerance` is false when a run failed, had a
 *   non-finite loss, or no seed finished in both precisions.
 */
export function summariseFidelity(
  runs: readonly FidelityRun[],
  tolerancePp = 1,
): FidelitySummary {
  const seeds = [...new Set(runs.map((r) => r.seed))];
  const accuracy = (seed: number, p: Precision) => {
    const r = runs.find((x) => x.seed === seed && x.precision === p);
    return r?.testAccuracy === undefined ? null : r.testAccuracy;
  };
  const perSeed = seeds.map((seed) => {
    const a = accuracy(seed, "fp32");
    const b = accuracy(seed, "mixed");
    return {
      seed,
      fp32: a === null ? null : pct(a),
      mixed: b === null ? null : pct(b),
      diffPp: a === null || b === null
        ? null
        : Number((100 * (b - a)).toFixed(2)),
    };
  });
  const both = seeds.filter((s) =>
    accuracy(s, "fp32") !== null && accuracy(s, "mixed") !== null
  );
  const mean = (p: Precision) =>
    both.length === 0
      ? null
      : both.reduce((n, s) => n + accuracy(s, p)!, 0) / both.length;
  const f = mean("fp32");
  const m = mean("mixed");
  const diff = f === null || m === null ? null : 100 * (m - f);
  const nonFinite = runs.some((r) => r.nonFinite);
  const failed = runs.filter((r) => r.error !== undefined).length;
  return {
    perSeed,
    meanFp32: f === null ? null : pct(f),
    meanMixed: m === null ? null : pct(m),
    diffPp: diff === null ? null : Number(diff.toFixed(2)),
    withinTolerance: diff !== null && diff >= -tolerancePp && !nonFinite &&
      failed === 0,
    tolerancePp,
    nonFinite,
    skippedSteps: runs.reduce((n, r) => n + (r.skippedSteps ?? 0), 0),
    failed,
  };
}

/** The compiled pipeline cut after its `train` stage. */
function throughTrain(compiled: CompiledPipeline): CompiledPipeline {
  const at = compiled.plan.stages.findIndex((s) => s.id === "train");
  if (at < 0) {
    throw new Error(
      "Cannot run bench fidelity: the preset has no train stage",
    );
  }
  return {
    ...compiled,
    plan: { ...compiled.plan, stages: compiled.plan.stages.slice(0, at + 1) },
    modules: compiled.modules.slice(0, at + 1),
  };
}

/** Reads a finished (or failed) run's figures from its folder. */
async function runFigures(runDir: string) {
  const text = (name: string) =>
    Deno.readTextFile(join(runDir, name)).catch(() => undefined);
  const summary = JSON.parse(await text("summary.json") ?? "null") as
    | Record<string, { accuracy?: number } | number>
    | null;
  const lines = ((await text("metrics.jsonl")) ?? "").trim().split("\n")
    .filter((l) => l !== "").map((l) =>
      JSON.parse(l) as {
        split: string;
        loss: number | null;
        lossScale?: number;
        skippedSteps?: number;
      }
    );
  const train = lines.filter((l) => l.split === "train");
  const last = train[train.length - 1];
  const accuracyOf = (split: string) => {
    const s = summary?.[split];
    return typeof s === "object" ? s.accuracy : undefined;
  };
  return {
    testAccuracy: accuracyOf("test"),
    validationAccuracy: accuracyOf("validation"),
    bestEpoch: typeof summary?.bestEpoch === "number"
      ? summary.bestEpoch
      : undefined,
    // JSON writes NaN and ±Infinity as null.
    nonFinite: lines.some((l) => l.loss === null || !Number.isFinite(l.loss)),
    skippedSteps: last?.skippedSteps,
    lossScale: last?.lossScale,
  };
}

/**
 * Runs the experiment (see the module doc).
 *
 * @param args The command line (see {@linkcode parseFidelityArgs}).
 * @returns JSON: the arguments, every run, and the summary.
 */
export async function benchFidelity(args: string[]): Promise<unknown> {
  const a = parseFidelityArgs(args);
  const base: string[] = [];
  let specPath: string;
  if (a.preset === "sc1") {
    const key = Object.entries(a.synth)
      .sort(([x], [y]) => (x < y ? -1 : 1)).map(([k, v]) => `${k}${v}`)
      .join("-");
    const synth = await writeSyntheticDataset(
      E2E_PRESETS.sc1.layout,
      a.synthDir ?? join("runs", "bench-e2e", `synth-sc1-${key}`),
      a.synth,
    );
    base.push(...synthOverrides(E2E_PRESETS.sc1.layout, synth));
    specPath = fileURLToPath(new URL("../presets/sc1.yaml", import.meta.url));
  } else {
    specPath = fileURLToPath(new URL("../presets/demo.yaml", import.meta.url));
  }
  base.push(
    `runtime.backend=${a.backend}`,
    `runtime.outputDir=${resolve(a.out)}`,
    ...(a.epochs === undefined ? [] : [`train.epochs=${a.epochs}`]),
  );
  const stderr = (line: string) =>
    Deno.stderr.writeSync(new TextEncoder().encode(line + "\n"));
  const runs: FidelityRun[] = [];
  for (const seed of a.seeds) {
    for (const precision of ["fp32", "mixed"] as const) {
      stderr(`fidelity: ${a.preset} seed ${seed} ${precision}`);
      const compiled = await compile(specPath, {
        builtins: BUILTIN_STAGES,
        overrides: [
          ...base,
          `runtime.seed=${seed}`,
          `train.precision=${precision}`,
          ...a.sets,
        ],
      });
      const t0 = performance.now();
      let runDir: string | undefined;
      let error: string | undefined;
      try {
        const run = await runPipeline(
          a.full ? compiled : throughTrain(compiled),
          {
            console: stderr,
            progress: createProgressFactory({
              interactive: false,
              write: stderr,
            }),
          },
        );
        runDir = run.runDir;
      } catch (e) {
        error = (e as Error).message;
        runDir = (e as { runDir?: string }).runDir;
      }
      const seconds = Number(((performance.now() - t0) / 1000).toFixed(1));
      const figures = runDir ? await runFigures(runDir) : undefined;
      runs.push({
        seed,
        precision,
        ...figures,
        nonFinite: (figures?.nonFinite ?? false) ||
          /loss is (NaN|-?Infinity)|non-finite/i.test(error ?? ""),
        seconds,
        ...(runDir ? { runDir } : {}),
        ...(error ? { error } : {}),
      });
    }
  }
  return {
    bench: "fidelity",
    preset: a.preset,
    backend: a.backend,
    seeds: a.seeds,
    epochs: a.epochs ?? "preset",
    stages: a.full ? "all" : "through train",
    sets: a.sets,
    metric:
      "test accuracy (%) of the best checkpoint: the train stage's final evaluation (summary.json), in the run's precision",
    runs,
    summary: summariseFidelity(runs, a.tolerancePp),
  };
}
