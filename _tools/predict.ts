/**
 * Classifies WAV files with a trained AMAuT model: the top-k labels with
 * their probabilities per file, as text or JSON (`--json`).
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
 * Usage:
 *
 * ```sh
 * deno task predict --model runs/<dir> [--top 3] [--json] [--resample] [--backend auto|cpu|webgpu] a.wav b.wav ...
 * ```
 *
 * Exit codes: 0 every file predicted; 1 the model or a file could not be
 * read or predicted (the other files are still predicted); 2 bad command line.
 *
 * @module
 */
// deno-lint-ignore-file no-console -- a command-line tool: printing is its job
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { selectBackend } from "../pipeline/backend.ts";
import type { BackendChoice } from "../pipeline/backend.ts";
import { readWav } from "../lib/wav.ts";
import { mixToMono } from "../stages/mono_mix.ts";
import {
  type LengthChange,
  lengthChange,
  type LoadedModel,
  loadPackage,
  loadPackageFromDir,
  memoryLoader,
  PACKAGE_CONFIG_FILE,
} from "../lib/inference.ts";
import { exportRun, WEIGHTS_FILE } from "./export.ts";

/** Zero crossings of the sinc kernel on each side. */
const SINC_ZEROS = 16;

/**
 * Resamples a clip from `fromHz` to `toHz` by band-limited interpolation: each
 * output sample is the input convolved with a Hann-windowed sinc of
 * {@linkcode SINC_ZEROS} zero crossings each side, whose cut-off is the lower
 * of the two Nyquist frequencies (so downsampling is anti-aliased). The output
 * has `round(length · toHz / fromHz)` samples; samples beyond the ends count
 * as zero.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { resample } from "./predict.ts";
 * assert.equal(resample(new Float32Array(16000), 16000, 8000).length, 8000);
 * ```
 */
export function resample(
  wave: Float32Array,
  fromHz: number,
  toHz: number,
): Float32Array {
  if (fromHz === toHz) return wave;
  const ratio = toHz / fromHz;
  const cutoff = Math.min(1, ratio); // relative to the input's Nyquist
  const radius = SINC_ZEROS / cutoff; // in input samples
  const out = new Float32Array(Math.round(wave.length * ratio));
  for (let i = 0; i < out.length; i++) {
    const t = i / ratio;
    const lo = Math.max(0, Math.ceil(t - radius));
    const hi = Math.min(wave.length - 1, Math.floor(t + radius));
    let s = 0;
    for (let j = lo; j <= hi; j++) {
      const d = t - j;
      const x = Math.PI * cutoff * d;
      const sinc = x === 0 ? 1 : Math.sin(x) / x;
      const window = 0.5 + 0.5 * Math.cos((Math.PI * d) / radius);
      s += wave[j] * cutoff * sinc * window;
    }
    out[i] = s;
  }
  return out;
}

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
 */
export async function loadModel(
  tf: Parameters<typeof loadPackage>[0],
  dir: string,
  which: "best" | "last" = "best",
): Promise<LoadedModel> {
  const exists = (name: string) =>
    Deno.stat(join(dir, name)).then(() => true, () => false);
  if (await exists(PACKAGE_CONFIG_FILE)) return loadPackageFromDir(tf, dir);
  if (await exists("plan.json")) {
    const pkg = await exportRun(tf, dir, { which });
    return loadPackage(
      tf,
      memoryLoader({
        [PACKAGE_CONFIG_FILE]: JSON.stringify(pkg.config),
        [WEIGHTS_FILE]: pkg.weights,
      }),
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
          `it is ${wav.sampleRateHz} Hz and the model expects ${model.sampleRateHz} Hz (AMAuT never resamples; pass --resample to resample it)`,
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

const USAGE =
  "usage: deno task predict --model <run or package folder> [--which best|last] [--top 3] [--json] [--resample] [--backend auto|cpu|webgpu] a.wav ...";

/**
 * The command line.
 *
 * @param args Command-line arguments.
 * @returns The exit code: 0 ok, 1 the model or some file failed, 2 bad command line.
 */
export async function main(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      strict: true,
      options: {
        model: { type: "string" },
        top: { type: "string", default: "3" },
        json: { type: "boolean", default: false },
        resample: { type: "boolean", default: false },
        backend: { type: "string", default: "auto" },
        which: { type: "string", default: "best" },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (error) {
    console.error(`${(error as Error).message}\n${USAGE}`);
    return 2;
  }
  const v = parsed.values;
  if (v.help) {
    console.log(USAGE);
    return 0;
  }
  const bad = (why: string) => {
    console.error(`${why}\n${USAGE}`);
    return 2;
  };
  if (!v.model) return bad("--model is required");
  const top = Number(v.top);
  if (!Number.isInteger(top) || top < 1) {
    return bad(`--top must be a whole number >= 1, not "${v.top}"`);
  }
  if (!["auto", "cpu", "webgpu"].includes(v.backend)) {
    return bad(`--backend must be auto, cpu or webgpu, not "${v.backend}"`);
  }
  if (v.which !== "best" && v.which !== "last") {
    return bad(`--which must be best or last, not "${v.which}"`);
  }
  if (parsed.positionals.length === 0) return bad("no WAV files given");

  let model: LoadedModel;
  try {
    const { tf } = await selectBackend(v.backend as BackendChoice);
    model = await loadModel(tf, v.model, v.which);
  } catch (error) {
    console.error((error as Error).message);
    return 1;
  }
  const results: FileResult[] = [];
  try {
    for (const file of parsed.positionals) {
      const r = await predictFile(model, file, {
        top: Math.min(top, model.labels.length),
        resample: v.resample,
      });
      results.push(r);
      if (!v.json) {
        if (r.ok) console.log(formatResult(r));
        else console.error(formatResult(r));
      } else if (!r.ok) console.error(r.error);
    }
  } finally {
    model.dispose();
  }
  if (v.json) {
    console.log(JSON.stringify(
      {
        model: {
          name: model.config.name,
          labels: model.labels,
          sampleRateHz: model.sampleRateHz,
          lengthSamples: model.lengthSamples,
        },
        results,
      },
      null,
      2,
    ));
  }
  return results.every((r) => r.ok) ? 0 : 1;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
