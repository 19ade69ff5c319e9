/**
 * Inference with an exported AMAuT model package (see `lib/export.ts`),
 * without the training code path: the package's `model.json` names the
 * labels, the sample rate, the fixed length and the mel options, and its
 * weights (tfjs weights-manifest format, little-endian float32) fill a model
 * built with `createModel`.
 *
 * {@linkcode loadPackage} takes fetch-style loaders, so the same code runs in
 * Deno and in a browser ({@linkcode fetchLoader} reads a package over HTTP);
 * {@linkcode loadPackageFromDir} is the Deno convenience for a folder.
 * `predict` repeats the evaluation path exactly: fixed length (centred zero
 * pad, head clip), log-mel features (the `fft` STFT on the cpu backend,
 * `matmul` on WebGPU, unless the package names one), tokens
 * `[b, frames, nMels]`, the model in eval mode (BatchNorm running statistics,
 * no dropout), softmax. With `precision: "mixed"` the forwards run on the
 * fused WebGPU engine's eval graph with f16 matmul operands and f32
 * accumulation (as `train.precision: mixed`); it needs the webgpu backend and
 * `shader-f16`, and is refused otherwise.
 *
 * The package layout:
 *
 * - `model.json`: `{ format: "amaut-model", version: 1, name, labels,
 *   sampleRateHz, lengthSamples, clip, mel, model: { options, dims },
 *   weightsManifest }`;
 * - `weights.bin`: every parameter and BatchNorm buffer, by PyTorch
 *   state-dict name, in TF.js layouts, in manifest order.
 *
 * ```ts ignore
 * import * as tf from "@tensorflow/tfjs";
 * import { loadPackageFromDir } from "./inference.ts";
 * const model = await loadPackageFromDir(tf, "out/digits");
 * const [probabilities] = await model.predict([new Float32Array(17640)]);
 * console.log(model.labels[probabilities.indexOf(Math.max(...probabilities))]);
 * model.dispose();
 * ```
 *
 * @module
 */
import * as z from "zod";
import type { Tensor, Tensor3D } from "@tensorflow/tfjs";
import type { Tf } from "../pipeline/types.ts";
import { createRng } from "../pipeline/rng.ts";
import { createModel } from "../model/amaut.ts";
import { ModelOptions } from "../model/config.ts";
import { evalLogits } from "../model/eval_chunks.ts";
import { frameCount, melFeatures, type StftMethod } from "./mel.ts";
import type { Precision, PrecisionUse } from "../model/engine_choice.ts";

/** The `format` tag of a package's `model.json`. */
export const PACKAGE_FORMAT = "amaut-model";
/** The package format version this module reads and writes. */
export const PACKAGE_VERSION = 1;
/** The file name of a package's config. */
export const PACKAGE_CONFIG_FILE = "model.json";

const WeightEntry = z.object({
  name: z.string().min(1),
  shape: z.array(z.int().min(0)),
  dtype: z.literal("float32"),
});

/** Schema of a package's `model.json`. */
export const PackageConfig = z.looseObject({
  format: z.literal(PACKAGE_FORMAT),
  version: z.literal(PACKAGE_VERSION),
  name: z.string(),
  labels: z.array(z.string()).min(1),
  sampleRateHz: z.int().min(1),
  lengthSamples: z.int().min(1).nullable(),
  clip: z.enum(["head", "none"]),
  mel: z.looseObject({
    sampleRateHz: z.int().min(1),
    nFft: z.int().min(2),
    winLength: z.int().min(2),
    hopLength: z.int().min(1),
    nMels: z.int().min(1),
    fMinHz: z.number().min(0).optional(),
    fMaxHz: z.number().positive().optional(),
    topDb: z.number().positive().optional(),
    scaleDivisor: z.number().positive().optional(),
    targetFrames: z.int().min(1).optional(),
    stft: z.enum(["auto", "fft", "matmul"]).optional(),
  }),
  model: z.object({
    options: z.unknown(),
    dims: z.object({
      nMels: z.int().min(1),
      frames: z.int().min(1),
      classes: z.int().min(1),
    }),
  }),
  weightsManifest: z.array(z.object({
    paths: z.array(z.string().min(1)).min(1),
    weights: z.array(WeightEntry),
  })).min(1),
});
/** A package's `model.json`. */
export type PackageConfig = z.infer<typeof PackageConfig>;

/** Reads the files of a package by name (`model.json`, `weights.bin`). */
export interface PackageLoader {
  /** The text of a file. */
  text(name: string): Promise<string>;
  /** The bytes of a file. */
  bytes(name: string): Promise<Uint8Array>;
}

/** A loaded model package, ready to predict. */
export interface LoadedModel {
  /** The package's config, as read. */
  readonly config: PackageConfig;
  /** Class labels, in the order of the probabilities. */
  readonly labels: readonly string[];
  /** The sample rate every clip must have, in Hz (AMAuT never resamples). */
  readonly sampleRateHz: number;
  /** Samples every clip is padded or clipped to; `null` when the pipeline had no `fixed_length`. */
  readonly lengthSamples: number | null;
  /** Numeric precision of the forwards (`fp32`: the tfjs model; `mixed`: the fused engine). */
  readonly precision: Precision;
  /** Softmax probabilities per clip (mono, at `sampleRateHz`), in input order. */
  predict(waves: readonly Float32Array[]): Promise<Float32Array[]>;
  /** Frees the model's tensors. */
  dispose(): void;
}

/** Options of {@linkcode loadPackage}. */
export interface LoadOptions {
  /** Clips per forward pass (default 32). */
  readonly batchSize?: number;
  /**
   * `fp32` (default): the tfjs model in float32; `mixed`: the fused WebGPU
   * eval graph with f16 matmul operands and f32 accumulation (webgpu backend
   * with `shader-f16` only).
   */
  readonly precision?: Precision;
}

/** The refusal wording of `predict --precision mixed`. */
const PREDICT_PRECISION: PrecisionUse = {
  action: "predict",
  fix: "--precision fp32",
  backend: "--backend webgpu",
};

/** What the evaluation path does to a clip's length. */
export type LengthChange = "exact" | "padded" | "clipped" | "kept";

/**
 * What the evaluation path does to a clip of `samples` samples: nothing
 * (`exact`, or no fixed length), centred zero padding (`padded`), keeping the
 * head (`clipped`), or leaving a longer clip whole (`kept`, `clip: none`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { lengthChange } from "./inference.ts";
 * assert.equal(lengthChange(100, 200, "head"), "padded");
 * assert.equal(lengthChange(300, 200, "head"), "clipped");
 * assert.equal(lengthChange(300, 200, "none"), "kept");
 * ```
 */
export function lengthChange(
  samples: number,
  lengthSamples: number | null,
  clip: "head" | "none",
): LengthChange {
  if (lengthSamples === null || samples === lengthSamples) return "exact";
  if (samples < lengthSamples) return "padded";
  return clip === "head" ? "clipped" : "kept";
}

/**
 * Brings a clip to the package's length as evaluation does (the
 * `fixed_length` stage's eval phase): centred zero padding
 * (`floor(deficit / 2)` at the head), or the first `lengthSamples` samples.
 *
 * @param wave Mono samples.
 * @param lengthSamples Target length; `null` leaves the clip as it is.
 * @param clip What happens to longer clips.
 */
export function fitForEval(
  wave: Float32Array,
  lengthSamples: number | null,
  clip: "head" | "none",
): Float32Array {
  if (lengthSamples === null) return wave;
  const deficit = lengthSamples - wave.length;
  if (deficit === 0) return wave;
  if (deficit < 0) return clip === "head" ? wave.slice(0, lengthSamples) : wave;
  const out = new Float32Array(lengthSamples);
  out.set(wave, Math.floor(deficit / 2));
  return out;
}

/** Row-wise softmax of `[b, n]` logits in float64, as float32 rows. */
function softmaxRows(logits: Float32Array, n: number): Float32Array[] {
  const rows: Float32Array[] = [];
  for (let r = 0; r * n < logits.length; r++) {
    const row = logits.subarray(r * n, (r + 1) * n);
    let max = -Infinity;
    for (const v of row) max = Math.max(max, v);
    const e = Array.from(row, (v) => Math.exp(v - max));
    const sum = e.reduce((a, b) => a + b, 0);
    rows.push(Float32Array.from(e, (v) => v / sum));
  }
  return rows;
}

function checkFileName(name: string): void {
  if (name === "" || name === "." || name === ".." || /[\\/]/.test(name)) {
    throw new Error(
      `Cannot load the model package: weights path "${name}" is not a plain file name`,
    );
  }
}

/**
 * Parses and checks a package's `model.json` text.
 *
 * @param text The file's text.
 * @param where Where it came from, for error messages (e.g. a quoted folder).
 * @throws {Error} Naming the place and the first problem.
 */
export function parsePackageConfig(
  text: string,
  where = "",
): PackageConfig {
  const fail = (why: string): never => {
    throw new Error(
      `Cannot load the model package${where ? ` ${where}` : ""}: ${why}`,
    );
  };
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    fail(
      `${PACKAGE_CONFIG_FILE} is not valid JSON (${(error as Error).message})`,
    );
  }
  const format = (raw as { format?: unknown } | null)?.format;
  if (format !== PACKAGE_FORMAT) {
    fail(
      `${PACKAGE_CONFIG_FILE} has format ${
        JSON.stringify(format)
      }, expected "${PACKAGE_FORMAT}"`,
    );
  }
  const parsed = PackageConfig.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const at = issue.path.length ? ` at ${issue.path.join(".")}` : "";
    return fail(`${PACKAGE_CONFIG_FILE} is malformed${at}: ${issue.message}`);
  }
  const config = parsed.data;
  if (config.labels.length !== config.model.dims.classes) {
    fail(
      `it has ${config.labels.length} labels for a model of ${config.model.dims.classes} classes`,
    );
  }
  if (config.mel.sampleRateHz !== config.sampleRateHz) {
    fail(
      `its mel options are for ${config.mel.sampleRateHz} Hz, the package for ${config.sampleRateHz} Hz`,
    );
  }
  return config;
}

/**
 * Loads a model package through `loader` and builds the model.
 *
 * @param tf TensorFlow.js on the backend to predict with.
 * @param loader Reads `model.json` and the weight files by name.
 * @param options Batch size of the forward passes.
 * @returns The model; call `dispose()` when done.
 * @throws {Error} When the config is malformed, the weights are missing,
 *   truncated or of other shapes than the model.
 */
export async function loadPackage(
  tf: Tf,
  loader: PackageLoader,
  options: LoadOptions = {},
): Promise<LoadedModel> {
  const config = parsePackageConfig(await loader.text(PACKAGE_CONFIG_FILE));
  const parsedOptions = ModelOptions.safeParse(config.model.options);
  if (!parsedOptions.success) {
    const issue = parsedOptions.error.issues[0];
    throw new Error(
      `Cannot load the model package: ${PACKAGE_CONFIG_FILE} has invalid model options at ${
        issue.path.join(".")
      }: ${issue.message}`,
    );
  }
  const modelOptions = parsedOptions.data;
  const dims = config.model.dims;

  // The weights: each manifest group spans the concatenation of its paths.
  const values = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const group of config.weightsManifest) {
    const parts: Uint8Array[] = [];
    for (const path of group.paths) {
      checkFileName(path);
      parts.push(await loader.bytes(path));
    }
    const total = parts.reduce((n, p) => n + p.byteLength, 0);
    const bytes = new Uint8Array(total);
    let at = 0;
    for (const p of parts) {
      bytes.set(p, at);
      at += p.byteLength;
    }
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let offset = 0;
    for (const w of group.weights) {
      const size = w.shape.reduce((a, b) => a * b, 1);
      if (offset + 4 * size > total) {
        throw new Error(
          `Cannot load the model package: ${
            group.paths.join(" + ")
          } holds ${total} bytes, too few for weight "${w.name}" at byte ${offset}`,
        );
      }
      const data = new Float32Array(size);
      for (let i = 0; i < size; i++) {
        data[i] = view.getFloat32(offset + 4 * i, true);
      }
      offset += 4 * size;
      if (values.has(w.name)) {
        throw new Error(
          `Cannot load the model package: weight "${w.name}" is listed twice`,
        );
      }
      values.set(w.name, { shape: w.shape, data });
    }
    if (offset !== total) {
      throw new Error(
        `Cannot load the model package: ${
          group.paths.join(" + ")
        } holds ${total} bytes, the manifest describes ${offset}`,
      );
    }
  }

  // Every weight is assigned from the package below.
  const model = createModel(tf, modelOptions, dims, createRng("inference", 0), {
    init: "none",
  });
  try {
    for (const [name, v] of [...model.params, ...model.buffers]) {
      const w = values.get(name);
      if (!w) {
        throw new Error(
          `Cannot load the model package: it lacks weight "${name}"`,
        );
      }
      if (w.shape.join(",") !== v.shape.join(",")) {
        throw new Error(
          `Cannot load the model package: weight "${name}" has shape [${
            w.shape.join(", ")
          }], the model needs [${v.shape.join(", ")}]`,
        );
      }
      const t = tf.tensor(w.data, w.shape, "float32");
      v.assign(t);
      t.dispose();
      values.delete(name);
    }
    if (values.size > 0) {
      throw new Error(
        `Cannot load the model package: weight "${
          [...values.keys()][0]
        }" belongs to no part of the model`,
      );
    }
  } catch (error) {
    model.dispose();
    throw error;
  }

  const precision = options.precision ?? "fp32";
  // Mixed precision: the fused engine's eval graph (loaded only then, so the
  // fp32 path stays free of the engine).
  let fused:
    | {
      logits(tokens: Tensor3D, rows: number): Promise<Float32Array>;
      destroy(): void;
    }
    | undefined;
  if (precision === "mixed") {
    try {
      fused = await mixedForward(tf, model);
    } catch (error) {
      model.dispose();
      throw error;
    }
  }

  const mel = config.mel;
  const batchSize = Math.max(1, options.batchSize ?? 32);
  const method = (): StftMethod =>
    config.mel.stft === "fft" || config.mel.stft === "matmul"
      ? config.mel.stft
      : tf.getBackend() === "webgpu"
      ? "matmul"
      : "fft";

  const predict = async (
    waves: readonly Float32Array[],
  ): Promise<Float32Array[]> => {
    const fitted = waves.map((w) =>
      fitForEval(w, config.lengthSamples, config.clip)
    );
    fitted.forEach((w, i) => {
      const frames = frameCount(w.length, mel.hopLength);
      if (mel.targetFrames === undefined && frames !== dims.frames) {
        throw new RangeError(
          `Cannot predict clip ${i}: its ${w.length} samples give ${frames} frames, the model takes ${dims.frames}`,
        );
      }
      if (w.length <= mel.nFft / 2) {
        throw new RangeError(
          `Cannot predict clip ${i}: it has ${w.length} samples, the mel transform needs more than ${
            mel.nFft / 2
          }`,
        );
      }
    });
    const out: Float32Array[] = [];
    for (let start = 0; start < fitted.length; start += batchSize) {
      const batch = fitted.slice(start, start + batchSize);
      if (fused) {
        const tokens = tf.tidy(() =>
          tf.transpose(melFeatures(tf, batch, mel, method()), [0, 2, 1])
        ) as Tensor3D;
        try {
          const data = await fused.logits(tokens, batch.length);
          out.push(...softmaxRows(data, dims.classes));
        } finally {
          tokens.dispose();
        }
        continue;
      }
      const logits = tf.tidy(() => {
        const features = melFeatures(tf, batch, mel, method()); // [b, nMels, frames]
        const tokens = tf.transpose(features, [0, 2, 1]) as Tensor3D;
        return evalLogits(tf, model, tokens) as Tensor; // chunked to the GPU's limits
      });
      const data = await logits.data() as Float32Array;
      logits.dispose();
      out.push(...softmaxRows(data, dims.classes));
    }
    return out;
  };

  return {
    config,
    labels: config.labels,
    sampleRateHz: config.sampleRateHz,
    lengthSamples: config.lengthSamples,
    precision,
    predict,
    dispose: () => {
      fused?.destroy();
      model.dispose();
    },
  };
}

/**
 * The eval forward of `model` on the fused engine in mixed precision, after
 * the refusals of `predict --precision mixed` (no webgpu backend, no
 * `shader-f16`).
 */
async function mixedForward(tf: Tf, model: ReturnType<typeof createModel>) {
  const { checkPrecision } = await import("../model/engine_choice.ts");
  const { createFusedEngine, tfjsDevice } = await import("../gpu/engine.ts");
  const device = tfjsDevice(tf);
  checkPrecision(tf, "auto", "mixed", device, PREDICT_PRECISION);
  const engine = createFusedEngine(tf, model.options, model.dims, device, {
    precision: "mixed",
  });
  try {
    await engine.upload(model);
  } catch (error) {
    engine.destroy();
    throw error;
  }
  return {
    logits: (tokens: Tensor3D, rows: number) => engine.evalLogits(tokens, rows),
    destroy: () => engine.destroy(),
  };
}

/**
 * A loader that reads a package over HTTP(S) relative to `base` (e.g.
 * `new URL("model/", location.href)` in a browser). Fails on a non-2xx
 * answer, naming the URL and the status.
 *
 * @param base The package folder's URL; a trailing slash is added if missing.
 * @param fetchFn The fetch to use (default: the global one).
 */
export function fetchLoader(
  base: string | URL,
  fetchFn: typeof fetch = fetch,
): PackageLoader {
  const root = new URL(String(base).endsWith("/") ? base : `${base}/`);
  const get = async (name: string) => {
    const url = new URL(name, root);
    const response = await fetchFn(url);
    if (!response.ok) {
      await response.body?.cancel();
      throw new Error(
        `Cannot load the model package: GET ${url} answered ${response.status} ${response.statusText}`,
      );
    }
    return response;
  };
  return {
    text: async (name) => (await get(name)).text(),
    bytes: async (name) =>
      new Uint8Array(await (await get(name)).arrayBuffer()),
  };
}

/**
 * A loader over files held in memory (e.g. a package exported on the fly).
 *
 * @param files File contents by name; strings are UTF-8 text.
 */
export function memoryLoader(
  files: Readonly<Record<string, string | Uint8Array>>,
): PackageLoader {
  const get = (name: string) => {
    if (!(name in files)) {
      throw new Error(`Cannot load the model package: it lacks ${name}`);
    }
    return files[name];
  };
  return {
    text: (name) => {
      const f = get(name);
      return Promise.resolve(
        typeof f === "string" ? f : new TextDecoder().decode(f),
      );
    },
    bytes: (name) => {
      const f = get(name);
      return Promise.resolve(
        typeof f === "string" ? new TextEncoder().encode(f) : f,
      );
    },
  };
}

/**
 * Deno convenience: loads the package in folder `dir` (`model.json` and its
 * weight files). Error messages name the folder.
 *
 * @param tf TensorFlow.js on the backend to predict with.
 * @param dir The package folder.
 * @param options Batch size of the forward passes.
 */
export async function loadPackageFromDir(
  tf: Tf,
  dir: string,
  options: LoadOptions = {},
): Promise<LoadedModel> {
  const path = (name: string) => `${dir.replace(/[\\/]+$/, "")}/${name}`;
  const read = async <T>(name: string, f: (p: string) => Promise<T>) => {
    try {
      return await f(path(name));
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) {
        throw new Error(
          `Cannot load the model package "${dir}": it lacks ${name}${
            name === PACKAGE_CONFIG_FILE
              ? " (not a package folder: make one with deno task export)"
              : ""
          }`,
        );
      }
      throw error;
    }
  };
  try {
    return await loadPackage(tf, {
      text: (name) => read(name, Deno.readTextFile),
      bytes: (name) => read(name, Deno.readFile),
    }, options);
  } catch (error) {
    const message = (error as Error).message;
    const prefix = "Cannot load the model package: ";
    if (message.startsWith(prefix)) {
      throw new Error(
        `Cannot load the model package "${dir}": ${
          message.slice(prefix.length)
        }`,
        { cause: error },
      );
    }
    throw error;
  }
}
