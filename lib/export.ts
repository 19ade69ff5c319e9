/**
 * Exports a finished run as a self-describing model package that
 * `lib/inference.ts` loads without the training code path:
 *
 * - `model.json`: `{ format: "amaut-model", version: 1, name, labels,
 *   sampleRateHz, lengthSamples, clip, mel, model: { options, dims },
 *   weightsManifest, source }` — the labels, the sample rate, the
 *   `fixed_length` length (samples, or seconds × rate) and long-clip rule,
 *   the mel options, the model options and sizes, and a tfjs weights
 *   manifest;
 * - `weights.bin`: every parameter and BatchNorm buffer (by PyTorch
 *   state-dict name, TF.js layouts) as little-endian float32, in manifest
 *   order.
 *
 * The options come from the run's `plan.json` (the eval-phase `fixed_length`,
 * `mel` and the `train` stage), the labels from `manifest.json`, the weights
 * from `checkpoints/best` (or `--which last`). A run whose evaluation path
 * holds a map stage the package cannot repeat is refused, naming the stage.
 * Both files are written atomically, the weights first.
 *
 * The command line is `deno task export` (`_tools/export.ts`).
 *
 * @module
 */
import { basename, join, resolve } from "node:path";
import type { Tf } from "../pipeline/types.ts";
import { writeFileAtomic, writeJsonAtomic } from "../pipeline/atomic.ts";
import { createRng } from "../pipeline/rng.ts";
import { createModel } from "../model/amaut.ts";
import { ModelOptions } from "../model/config.ts";
import { loadCheckpoint, modelSignature } from "../model/checkpoint.ts";
import { frameCount } from "./mel.ts";
import {
  PACKAGE_CONFIG_FILE,
  PACKAGE_FORMAT,
  PACKAGE_VERSION,
  type PackageConfig,
  parsePackageConfig,
} from "./inference.ts";

/** The weights file of an exported package. */
export const WEIGHTS_FILE = "weights.bin";

/** An exported package held in memory. */
export interface ModelPackage {
  /** The content of `model.json`. */
  readonly config: PackageConfig;
  /** The content of `weights.bin`. */
  readonly weights: Uint8Array;
}

/** Options of {@linkcode exportRun}. */
export interface ExportOptions {
  /** Which checkpoint: `best` (default) or `last`. */
  readonly which?: "best" | "last";
}

/** One stage entry of a run's `plan.json` (the parts read here). */
interface PlanStage {
  readonly name: string;
  readonly id: string;
  readonly kind: string;
  readonly options: Record<string, unknown>;
  readonly phases?: readonly string[];
}

/** Map stages whose evaluation-phase work the package repeats. */
const REPEATED = new Set(["mono_mix", "fixed_length", "mel", "tokenize"]);

async function readJson(
  path: string,
): Promise<Record<string, unknown> | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
  return JSON.parse(text);
}

/**
 * Builds the package of a run folder in memory.
 *
 * @param tfjs TensorFlow.js (any backend; used to build the model once to
 *   check the sizes against the checkpoint).
 * @param runDir The run folder.
 * @param options Which checkpoint.
 * @throws {Error} Naming the folder, when it is not a finished run with a
 *   train stage and a checkpoint, or its evaluation path cannot be repeated.
 */
export async function exportRun(
  tfjs: Tf,
  runDir: string,
  options: ExportOptions = {},
): Promise<ModelPackage> {
  const which = options.which ?? "best";
  const fail = (why: string): never => {
    throw new Error(`Cannot export "${runDir}": ${why}`);
  };
  const info = await Deno.stat(runDir).catch(() => undefined);
  if (!info?.isDirectory) fail(`no such folder (${resolve(runDir)})`);
  const plan = await readJson(join(runDir, "plan.json")) ??
    fail("it has no plan.json (not a run folder)");
  const manifest = await readJson(join(runDir, "manifest.json"));
  const summary = await readJson(join(runDir, "summary.json"));
  const stages = (plan.stages ?? []) as PlanStage[];
  const trainAt = stages.findIndex((s) => s.id === "train");
  if (trainAt < 0) {
    fail("its pipeline has no train stage, so there is no model to export");
  }
  // The evaluation path: map stages before train that run in phase eval.
  const evalMaps = stages.slice(0, trainAt).filter((s) =>
    s.kind === "map" && (!s.phases || s.phases.includes("eval"))
  );
  for (const s of evalMaps) {
    if (!REPEATED.has(s.id)) {
      fail(
        `stage "${s.name}" (${s.id}) runs in evaluation before train, and a model package repeats only ${
          [...REPEATED].join(", ")
        }`,
      );
    }
  }
  const find = (id: string) => evalMaps.find((s) => s.id === id);
  const mel = find("mel")?.options ??
    fail("its evaluation path has no mel stage");
  if (!find("tokenize")) fail("its evaluation path has no tokenize stage");
  const fixed = find("fixed_length")?.options;
  const sampleRateHz = mel.sampleRateHz as number;
  const lengthSamples = fixed
    ? (fixed.samples as number | undefined) ??
      Math.round((fixed.seconds as number) * sampleRateHz)
    : null;
  const clip = (fixed?.clip as "head" | "none" | undefined) ?? "none";
  const targetFrames = mel.targetFrames as number | undefined;
  const hopLength = mel.hopLength as number;
  const frames = targetFrames ??
    (lengthSamples !== null ? frameCount(lengthSamples, hopLength) : fail(
      "its pipeline fixes neither the clip length (fixed_length) nor the frame count (mel targetFrames), so the model's input size is unknown",
    ));
  const labels = ((manifest?.data as { classes?: string[] } | undefined)
    ?.classes ??
    (plan.data as { classes?: string[] } | undefined)?.classes) ??
    fail("neither manifest.json nor plan.json names the classes");
  const train = stages[trainAt];
  const modelOptions = ModelOptions.parse(
    (train.options as { model?: unknown }).model ?? {},
  );
  const dims = { nMels: mel.nMels as number, frames, classes: labels.length };

  const dir = join(runDir, "checkpoints");
  const index = await Deno.stat(join(dir, `${which}.json`)).catch(() =>
    undefined
  );
  if (!index) {
    fail(
      `it has no checkpoints/${which}.json (the train stage never finished an epoch)`,
    );
  }
  // Parameters and running statistics only: the momentum is not exported.
  const ckpt = await loadCheckpoint(tfjs, dir, which, {
    groups: ["params", "buffers"],
  });
  // Every weight is assigned from the checkpoint below.
  const model = createModel(tfjs, modelOptions, dims, createRng("export", 0), {
    init: "none",
  });
  try {
    if (modelSignature(model.params) !== ckpt.meta.modelSignature) {
      fail(
        `its checkpoints/${which} does not fit a model of dims ${
          JSON.stringify(dims)
        } built from plan.json`,
      );
    }
    const entries: { name: string; shape: number[]; dtype: "float32" }[] = [];
    const chunks: Float32Array[] = [];
    const groups = [
      [model.params, ckpt.groups.params, "parameter"],
      [model.buffers, ckpt.groups.buffers, "buffer"],
    ] as const;
    for (const [targets, values, what] of groups) {
      for (const [name, v] of targets) {
        const t = values?.get(name) ??
          fail(`its checkpoints/${which} lacks ${what} "${name}"`);
        if (t.dtype !== "float32") {
          fail(`${what} "${name}" is ${t.dtype}, not float32`);
        }
        entries.push({ name, shape: [...v.shape], dtype: "float32" });
        chunks.push(await t.data() as Float32Array);
      }
    }
    const weights = new Uint8Array(
      chunks.reduce((n, c) => n + 4 * c.length, 0),
    );
    const view = new DataView(weights.buffer);
    let offset = 0;
    for (const c of chunks) {
      for (let i = 0; i < c.length; i++, offset += 4) {
        view.setFloat32(offset, c[i], true);
      }
    }
    const melOptions: Record<string, unknown> = {};
    for (
      const key of [
        "sampleRateHz",
        "nFft",
        "winLength",
        "hopLength",
        "nMels",
        "fMinHz",
        "fMaxHz",
        "topDb",
        "scaleDivisor",
        "targetFrames",
        "stft",
      ]
    ) {
      if (mel[key] !== undefined) melOptions[key] = mel[key];
    }
    const config = {
      format: PACKAGE_FORMAT,
      version: PACKAGE_VERSION,
      name: String(plan.name ?? basename(runDir)),
      labels,
      sampleRateHz,
      lengthSamples,
      clip,
      mel: melOptions,
      model: { options: modelOptions, dims },
      weightsManifest: [{ paths: [WEIGHTS_FILE], weights: entries }],
      source: {
        run: basename(runDir),
        checkpoint: which,
        epoch: ckpt.meta.epoch + 1,
        specHash: plan.specHash,
        ...(summary ? { summary } : {}),
      },
    };
    // Round-trip through the loader's own schema, so a bad export fails here.
    return {
      config: parsePackageConfig(JSON.stringify(config), `of "${runDir}"`),
      weights,
    };
  } finally {
    model.dispose();
    tfjs.dispose(Object.values(ckpt.groups).flatMap((g) => [...g.values()]));
  }
}

/**
 * Writes a package to `outDir` (created if needed): `weights.bin`, then
 * `model.json`, each atomically.
 *
 * @param outDir The package folder.
 * @param pkg The package.
 */
export async function writePackage(
  outDir: string,
  pkg: ModelPackage,
): Promise<void> {
  await Deno.mkdir(outDir, { recursive: true });
  await writeFileAtomic(join(outDir, WEIGHTS_FILE), pkg.weights);
  await writeJsonAtomic(join(outDir, PACKAGE_CONFIG_FILE), pkg.config);
}
