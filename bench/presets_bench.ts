/**
 * Every paper preset and every ablation end to end on `deno task synth` data
 * (`deno task bench presets [--epochs 1] [--backend auto] [--only sc1,cs_cls]
 * [--set path=value] [--data DIR] [--out DIR]`): writes (or reuses) one small
 * synthetic dataset per published layout, with its background noise clips,
 * runs each spec of `presets/*.yaml` (those with a paper layout) and
 * `presets/ablations/*.yaml` on it with `train.epochs` and
 * `test_time_adaptation.epochs` set to `--epochs`, one after another in one
 * process (so GPU kernels compile once per shape), and prints one JSON
 * object: per spec, `ok` or the failed stage and its error, the wall
 * seconds, the training epoch's seconds and the clips of each split (each
 * outcome is also written to stderr as a `presets: {…}` line when its run
 * ends).
 *
 * A failing spec does not stop the others.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { basename, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { compile } from "../pipeline/compile.ts";
import { runPipeline, StageError } from "../pipeline/run.ts";
import { BUILTIN_STAGES } from "../stages/mod.ts";
import {
  SYNTH_LAYOUTS,
  type SynthLayout,
  type SynthOptions,
  type SynthSummary,
  writeSyntheticDataset,
} from "../stages/datasets/synth.ts";

/** Data sizes per layout: a couple of training batches, a few test clips. */
export const PRESET_SYNTH: Readonly<Record<SynthLayout, SynthOptions>> = {
  "speech_commands": { train: 2, validation: 1, test: 1 },
  audiomnist: { perSpeaker: 1 },
  vocalsound: { train: 6, validation: 2, test: 2 },
  cochlscene: { train: 3, validation: 1, test: 1 },
};

/** One spec's outcome. */
export interface PresetRun {
  /** The spec file, relative to `presets/`. */
  readonly spec: string;
  readonly layout: string;
  readonly status: "ok" | "failed";
  /** Wall seconds of the run (compile to the last stage). */
  readonly seconds: number;
  /** The first training epoch's seconds (from `metrics.jsonl`). */
  readonly trainEpochSeconds?: number;
  readonly splits?: Readonly<Record<string, number>>;
  readonly failed?: { readonly stage: string; readonly error: string };
  readonly runDir?: string;
}

/** The paper presets and ablations, as paths relative to `presets/`. */
export async function presetSpecs(presetsDir: string): Promise<string[]> {
  const out: string[] = [];
  for (const sub of ["", "ablations"]) {
    const dir = join(presetsDir, sub);
    const names = [];
    for await (const e of Deno.readDir(dir)) {
      if (e.isFile && e.name.endsWith(".yaml")) names.push(e.name);
    }
    out.push(...names.sort().map((n) => sub ? `${sub}/${n}` : n));
  }
  return out;
}

/**
 * The overrides that point a compiled spec at a synthetic dataset.
 *
 * @param synth The dataset.
 * @param stageIds The spec's stage ids (epochs are set only where the stage exists).
 * @param epochs Training and TTDA epochs.
 */
export function synthOverrides(
  synth: SynthSummary,
  stageIds: readonly string[],
  epochs: number,
): string[] {
  const data = Object.entries(synth.data).filter(([k]) => k !== "layout")
    .map(([k, v]) =>
      `data.${k}=${typeof v === "string" ? v : JSON.stringify(v)}`
    );
  return [
    ...data,
    ...(synth.backgroundNoise
      ? [`load.backgroundNoise=${synth.backgroundNoise}`]
      : []),
    ...(stageIds.includes("train") ? [`train.epochs=${epochs}`] : []),
    ...(stageIds.includes("test_time_adaptation")
      ? [`test_time_adaptation.epochs=${epochs}`]
      : []),
  ];
}

/**
 * Runs the benchmark.
 *
 * @param args See the module doc.
 */
export async function benchPresets(args: string[]): Promise<unknown> {
  const { values } = parseArgs({
    args,
    options: {
      epochs: { type: "string", default: "1" },
      backend: { type: "string", default: "auto" },
      only: { type: "string" },
      set: { type: "string", multiple: true, default: [] },
      data: { type: "string", default: join("runs", "bench-presets", "data") },
      out: { type: "string", default: join("runs", "bench-presets") },
    },
  });
  const epochs = Number(values.epochs);
  if (!Number.isInteger(epochs) || epochs < 1) {
    throw new Error(
      `Cannot run the presets with --epochs "${values.epochs}": give a positive integer`,
    );
  }
  if (!["auto", "webgpu", "cpu"].includes(values.backend)) {
    throw new Error(
      `Cannot use --backend "${values.backend}": use auto, webgpu or cpu`,
    );
  }
  const presetsDir = fileURLToPath(new URL("../presets/", import.meta.url));
  let specs = await presetSpecs(presetsDir);
  if (values.only) {
    const wanted = values.only.split(",").map((s) => s.trim());
    const unknown = wanted.filter((w) =>
      !specs.some((s) => basename(s, ".yaml") === w)
    );
    if (unknown.length) {
      throw new Error(
        `Cannot run ${
          unknown.map((u) => `"${u}"`).join(", ")
        }: no such preset or ablation (they are ${
          specs.map((s) => basename(s, ".yaml")).join(", ")
        })`,
      );
    }
    specs = specs.filter((s) => wanted.includes(basename(s, ".yaml")));
  }
  const datasets = new Map<string, SynthSummary>();
  const runs: PresetRun[] = [];
  const stderr = (line: string) =>
    Deno.stderr.writeSync(new TextEncoder().encode(line + "\n"));
  // Each outcome also goes to stderr at once, so a cut-off run keeps them.
  const record = (r: PresetRun) => {
    runs.push(r);
    stderr(`presets: ${JSON.stringify(r)}`);
  };
  const t0 = performance.now();
  for (const spec of specs) {
    const file = join(presetsDir, spec);
    const probe = await compile(file, { builtins: BUILTIN_STAGES });
    const layout = (probe.plan.data as { layout?: string }).layout ?? "";
    if (!(SYNTH_LAYOUTS as readonly string[]).includes(layout)) continue;
    const version = (probe.plan.data as { version?: 1 | 2 }).version;
    const key = `${layout}${version ? `-v${version}` : ""}`;
    let synth = datasets.get(key);
    if (!synth) {
      synth = await writeSyntheticDataset(
        layout as SynthLayout,
        join(values.data, key),
        {
          ...PRESET_SYNTH[layout as SynthLayout],
          ...(version ? { version } : {}),
          backgroundNoise: true,
        },
      );
      datasets.set(key, synth);
    }
    const overrides = [
      ...synthOverrides(synth, probe.plan.stages.map((s) => s.id), epochs),
      `runtime.backend=${values.backend}`,
      `runtime.outputDir=${resolve(values.out)}`,
      ...values.set,
    ];
    const start = performance.now();
    stderr(`== ${spec} (${layout})`);
    try {
      const compiled = await compile(file, {
        builtins: BUILTIN_STAGES,
        overrides,
      });
      const result = await runPipeline(compiled, { console: stderr });
      const metrics = (await Deno.readTextFile(
        join(result.runDir, "metrics.jsonl"),
      ).catch(() => "")).split("\n").filter((l) => l.trim()).map((l) =>
        JSON.parse(l) as { split: string; seconds?: number }
      );
      const manifest = JSON.parse(
        await Deno.readTextFile(join(result.runDir, "manifest.json")),
      );
      record({
        spec,
        layout,
        status: "ok",
        seconds: round((performance.now() - start) / 1000),
        ...(metrics.find((m) => m.split === "train")?.seconds !== undefined
          ? {
            trainEpochSeconds: round(
              metrics.find((m) => m.split === "train")!.seconds!,
            ),
          }
          : {}),
        splits: manifest.data?.splits,
        runDir: result.runDir,
      });
    } catch (error) {
      record({
        spec,
        layout,
        status: "failed",
        seconds: round((performance.now() - start) / 1000),
        failed: error instanceof StageError
          ? { stage: error.stage, error: error.message }
          : { stage: "compile", error: (error as Error).message },
        ...(error instanceof StageError ? { runDir: error.runDir } : {}),
      });
    }
  }
  return {
    bench: "presets",
    backend: values.backend,
    epochs,
    deno: Deno.version.deno,
    seconds: round((performance.now() - t0) / 1000),
    ok: runs.filter((r) => r.status === "ok").length,
    failed: runs.filter((r) => r.status === "failed").length,
    runs,
  };
}

const round = (x: number) => Number(x.toFixed(2));
