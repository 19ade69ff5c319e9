/**
 * Classifies WAV files with a trained AMAuT model: the top-k labels with
 * their probabilities per file.
 *
 * `--model` names a run folder (exported in memory, `checkpoints/best`, or
 * `checkpoints/last` with `--which last`) or a package folder written by
 * `deno task export`. The report's `predictions/<split>.trained-best.csv`
 * (and `trained-last`) rows agree with it on the same files. Each file is read, mixed to
 * mono and run through the evaluation path (`lib/inference.ts`): a clip
 * shorter than the model's length is zero-padded, centred; a longer one keeps
 * its head; the output says so. A file at another sample rate than the
 * model's is refused, naming both rates (AMAuT never resamples), unless
 * `--resample` is given: then it is resampled with a Hann-windowed sinc
 * interpolator (16 zero crossings each side, low-pass at the lower Nyquist
 * frequency when downsampling) and the output says so.
 *
 * The command line is `deno task predict` (`_tools/predict.ts`).
 *
 * @module
 */
import { join, resolve } from "node:path";
import { readWav } from "./wav.ts";
import { mixToMono } from "../stages/mono_mix.ts";
import {
  type LengthChange,
  lengthChange,
  type LoadedModel,
  type LoadOptions,
  loadPackage,
  loadPackageFromDir,
  memoryLoader,
  PACKAGE_CONFIG_FILE,
} from "./inference.ts";
import { exportRun, WEIGHTS_FILE } from "./export.ts";
import { resample } from "./resample.ts";

/** One file's result. */
export interface FileResult {
  readonly file: string;
  readonly ok: boolean;
  /** Why the file failed (when `ok` is false). */
  readonly error?: string;
  /** The file's own sample rate. */
  readonly sampleRateHz?: number;
  /** Samples per channel in the file (before any resampling). */
  readonly samples?: number;
  /** Set when the clip was resampled to the model's rate. */
  readonly resampledFromHz?: number;
  /** What the evaluation path did to the clip's length. */
  readonly length?: LengthChange;
  /** Human-readable notes: resampling, padding, clipping. */
  readonly notes?: readonly string[];
  /** The top-k labels, most probable first. */
  readonly top?: readonly { label: string; probability: number }[];
  /** Every label's probability. */
  readonly probabilities?: Readonly<Record<string, number>>;
}

/**
 * Loads a model from a package folder (`model.json`) or a run folder
 * (`plan.json`, exported in memory).
 *
 * @param tf TensorFlow.js on the backend to predict with.
 * @param dir The folder.
 * @param which A run folder's checkpoint: `best` (default) or `last`.
 * @param options `precision`: `fp32` (default, the tfjs model) or `mixed`
 *   (the fused WebGPU eval graph with f16 matmul operands; refused without
 *   the webgpu backend or `shader-f16`), and the batch size.
 */
export async function loadModel(
  tf: Parameters<typeof loadPackage>[0],
  dir: string,
  which: "best" | "last" = "best",
  options: LoadOptions = {},
): Promise<LoadedModel> {
  const exists = (name: string) =>
    Deno.stat(join(dir, name)).then(() => true, () => false);
  if (await exists(PACKAGE_CONFIG_FILE)) {
    return loadPackageFromDir(tf, dir, options);
  }
  if (await exists("plan.json")) {
    const pkg = await exportRun(tf, dir, { which });
    return loadPackage(
      tf,
      memoryLoader({
        [PACKAGE_CONFIG_FILE]: JSON.stringify(pkg.config),
        [WEIGHTS_FILE]: pkg.weights,
      }),
      options,
    );
  }
  const isDir = await Deno.stat(dir).then((i) => i.isDirectory, () => false);
  throw new Error(
    isDir
      ? `Cannot load the model "${dir}": it holds neither ${PACKAGE_CONFIG_FILE} (a package from deno task export) nor plan.json (a run folder)`
      : `Cannot load the model "${dir}": no such folder (${resolve(dir)})`,
  );
}

/**
 * Predicts one WAV file.
 *
 * @param model The loaded model.
 * @param file Path of the WAV file.
 * @param options `top` labels to keep, `resample` to accept other rates.
 */
export async function predictFile(
  model: LoadedModel,
  file: string,
  options: { top: number; resample: boolean },
): Promise<FileResult> {
  try {
    const wav = await readWav(file);
    let wave = mixToMono(wav.channels);
    const notes: string[] = [];
    let resampledFromHz: number | undefined;
    if (wav.sampleRateHz !== model.sampleRateHz) {
      if (!options.resample) {
        throw new Error(
          `Cannot predict "${file}": it is ${wav.sampleRateHz} Hz and the model expects ${model.sampleRateHz} Hz (AMAuT never resamples; pass --resample to resample it)`,
        );
      }
      wave = resample(wave, wav.sampleRateHz, model.sampleRateHz);
      resampledFromHz = wav.sampleRateHz;
      notes.push(
        `resampled from ${wav.sampleRateHz} Hz to ${model.sampleRateHz} Hz (windowed sinc)`,
      );
    }
    const target = model.lengthSamples;
    const change = lengthChange(wave.length, target, model.config.clip);
    const secs = (n: number) => (n / model.sampleRateHz).toFixed(3);
    if (change === "padded") {
      notes.push(
        `padded from ${wave.length} to ${target} samples (${
          secs(wave.length)
        } s to ${secs(target!)} s, centred zero padding, as in evaluation)`,
      );
    } else if (change === "clipped") {
      notes.push(
        `clipped from ${wave.length} to ${target} samples (${
          secs(wave.length)
        } s to ${secs(target!)} s, first samples kept, as in evaluation)`,
      );
    } else if (change === "kept") {
      notes.push(
        `longer than the model's ${target} samples and kept whole (clip: none, as in evaluation)`,
      );
    }
    const [p] = await model.predict([wave]);
    const order = [...p.keys()].sort((a, b) => p[b] - p[a]);
    return {
      file,
      ok: true,
      sampleRateHz: wav.sampleRateHz,
      samples: wav.info.frames,
      ...(resampledFromHz ? { resampledFromHz } : {}),
      length: change,
      notes,
      top: order.slice(0, options.top).map((i) => ({
        label: model.labels[i],
        probability: p[i],
      })),
      probabilities: Object.fromEntries(
        model.labels.map((l, i) => [l, p[i]]),
      ),
    };
  } catch (error) {
    const message = (error as Error).message;
    return {
      file,
      ok: false,
      error: message.startsWith("Cannot")
        ? message
        : `Cannot predict "${file}": ${message}`,
    };
  }
}

/** Formats one result as text lines. */
export function formatResult(r: FileResult): string {
  if (!r.ok) return `${r.file}\n  error: ${r.error}`;
  const width = Math.max(...r.top!.map((t) => t.label.length));
  return [
    r.file,
    ...r.notes!.map((n) => `  note: ${n}`),
    ...r.top!.map((t, i) =>
      `  ${i + 1}. ${t.label.padEnd(width)}  ${t.probability.toFixed(4)}`
    ),
  ].join("\n");
}
