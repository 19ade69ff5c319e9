/**
 * A random-access dataset of WAV files from a layout's index: header scan
 * before any training (bad files, mixed sample rates), streaming decode
 * through a worker pool with bounded memory, an optional in-memory cache of
 * decoded audio (as int16 for 16-bit sources, exact), `onBadFile: skip`, and
 * background-noise folders loaded once. Private to the `load` stage.
 *
 * @module
 */
import { join, resolve } from "node:path";
import type { Dataset, Example } from "../pipeline/types.ts";
import type { Logger } from "../pipeline/logger.ts";
import { createDecodePool, decodeWorkers } from "../lib/decode_pool.ts";
import type { DecodedAudio } from "../lib/decode_pool.ts";
import { readWav, readWavHeader, WavError } from "../lib/wav.ts";
import { floatOfPcm16, pcm16Of } from "../lib/pcm16.ts";
import type { WavInfo } from "../lib/wav.ts";
import type { ClipRef, DataProblem, DatasetIndex } from "./datasets/types.ts";
import { minMedianMax } from "./describe_data.ts";

/** Thrown when a dataset cannot be opened; lists every problem found. */
export class DataError extends Error {
  /** Every problem, each naming its path. */
  readonly problems: readonly DataProblem[];

  /**
   * @param what The dataset, e.g. `dataset "speech_commands" at /data/sc`.
   * @param problems Every problem found.
   */
  constructor(what: string, problems: readonly DataProblem[]) {
    const shown = problems.slice(0, 20).map((p) => `  ${p.path}: ${p.message}`);
    if (problems.length > 20) {
      shown.push(`  ... and ${problems.length - 20} more`);
    }
    super(
      `Cannot open ${what}: ${problems.length} problem${
        problems.length === 1 ? "" : "s"
      }\n${shown.join("\n")}`,
    );
    this.name = "DataError";
    this.problems = problems;
  }
}

/** How the dataset reads its files (the `load` stage's options). */
export interface AudioDatasetOptions {
  readonly onBadFile: "fail" | "skip";
  readonly scanHeaders: boolean;
  readonly workers: number | "auto";
  readonly cacheMegabytes: number;
  readonly backgroundNoise?: string;
  /** Files the layout left out before its split (bad, with `onBadFile: skip`). */
  readonly skippedBeforeSplit?: readonly {
    readonly path: string;
    readonly reason: string;
  }[];
}

/**
 * Reads the headers of `paths` and names the unreadable ones (for layouts
 * that leave bad files out before a seeded split).
 *
 * @param paths WAV files.
 * @returns Path → reason, for the bad files only.
 */
export async function findBadFiles(
  paths: readonly string[],
): Promise<Map<string, string>> {
  const results = await mapLimit([...paths], 64, async (path) => {
    try {
      await readWavHeader(path);
      return undefined;
    } catch (error) {
      if (
        error instanceof WavError || error instanceof Deno.errors.NotFound
      ) {
        return (error as Error).message;
      }
      throw error;
    }
  });
  const bad = new Map<string, string>();
  results.forEach((reason, i) => {
    if (reason !== undefined) bad.set(paths[i], reason);
  });
  return bad;
}

/** A background noise clip, mono, at its own rate (never resampled). */
export interface NoiseClip {
  readonly samples: Float32Array;
  readonly sampleRateHz: number;
}

/** Facts from the header scan. */
interface HeaderFacts {
  readonly sampleRatesHz: number[];
  readonly channels: number[];
  readonly bitsPerSample: number[];
  readonly durationSeconds: Record<
    string,
    { min: number; median: number; max: number }
  >;
}

async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const run = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, run));
  return out;
}

function mono(channels: readonly Float32Array[]): Float32Array {
  if (channels.length === 1) return channels[0];
  const out = new Float32Array(channels[0].length);
  for (const c of channels) for (let i = 0; i < out.length; i++) out[i] += c[i];
  for (let i = 0; i < out.length; i++) out[i] /= channels.length;
  return out;
}

/**
 * Loads every `.wav` of a folder (sorted by name) as mono noise clips keyed by
 * file stem (`pink_noise`, `dude_miaowing`, ...).
 *
 * @param dir The folder, relative to the working directory or absolute.
 */
export async function loadNoiseFolder(
  dir: string,
): Promise<Record<string, NoiseClip>> {
  const abs = resolve(dir);
  let names: string[];
  try {
    names = [...Deno.readDirSync(abs)].filter((e) =>
      e.isFile && e.name.toLowerCase().endsWith(".wav")
    )
      .map((e) => e.name).sort();
  } catch {
    throw new DataError(`background noise folder "${dir}"`, [{
      path: abs,
      message: "Cannot read the folder: it does not exist or is not readable",
    }]);
  }
  if (names.length === 0) {
    throw new DataError(`background noise folder "${dir}"`, [{
      path: abs,
      message: "Cannot use the folder: it holds no .wav files",
    }]);
  }
  const out: Record<string, NoiseClip> = {};
  for (const name of names) {
    const d = await readWav(join(abs, name));
    out[name.replace(/\.wav$/i, "")] = {
      samples: mono(d.channels),
      sampleRateHz: d.sampleRateHz,
    };
  }
  return out;
}

/**
 * Samples in [-1, 1) that are exact multiples of 1/32768, as int16. A plain
 * loop: `Int16Array.from` with a map function is ~25× slower in V8 (a second
 * for a batch of 32 ten-second clips at 44.1 kHz).
 */
function toInt16(c: Float32Array): Int16Array {
  const out = new Int16Array(c.length);
  for (let i = 0; i < c.length; i++) out[i] = Math.round(c[i] * 32768);
  return out;
}

/** A cache entry: int16 when exact, else float32. */
type Cached = { rate: number; int16?: Int16Array[]; float?: Float32Array[] };

/**
 * Opens a dataset over an index of WAV files.
 *
 * @param what The dataset named in errors, e.g. `dataset "cochlscene" at /data/cs`.
 * @param index Clips per split from the layout.
 * @param options Reading options.
 * @param log For warnings (skipped files, worker fallback).
 * @throws {DataError} For bad files (with `onBadFile: fail`), mixed sample
 *   rates, an unreadable noise folder, or splits left empty by skipping.
 */
export async function openAudioDataset(
  what: string,
  index: DatasetIndex,
  options: AudioDatasetOptions,
  log: Logger,
): Promise<Dataset> {
  const skipped: { path: string; reason: string }[] = [];
  for (const s of options.skippedBeforeSplit ?? []) {
    skipped.push({ ...s });
    log.warn(`skipping ${s.path}: ${s.reason} (left out before the split)`);
  }
  let splits: Record<string, readonly ClipRef[]> = { ...index.splits };
  let facts: HeaderFacts | undefined;
  let rate: number | undefined;
  /** Per clip of each split (index order), from the header scan. */
  let clipSeconds: Record<string, { path: string; seconds: number }[]> = {};

  if (options.scanHeaders) {
    const all = Object.entries(splits).flatMap(([split, clips]) =>
      clips.map((c) => ({ split, clip: c }))
    );
    const headers = await mapLimit(all, 64, async ({ clip }) => {
      try {
        return await readWavHeader(clip.path);
      } catch (error) {
        if (
          error instanceof WavError || error instanceof Deno.errors.NotFound
        ) {
          return { bad: (error as Error).message };
        }
        throw error;
      }
    });
    const bad: DataProblem[] = [];
    const byRate = new Map<number, Set<string>>();
    const channels = new Set<number>();
    const bits = new Set<number>();
    const durations: Record<string, number[]> = {};
    const keep: Record<string, ClipRef[]> = {};
    const seconds: Record<string, { path: string; seconds: number }[]> = {};
    all.forEach(({ split, clip }, i) => {
      const h = headers[i] as WavInfo | { bad: string };
      keep[split] ??= [];
      durations[split] ??= [];
      if ("bad" in h) {
        bad.push({ path: clip.path, message: h.bad });
        return;
      }
      keep[split].push(clip);
      (seconds[split] ??= []).push({
        path: clip.path,
        seconds: h.durationSeconds,
      });
      if (!byRate.has(h.sampleRateHz)) byRate.set(h.sampleRateHz, new Set());
      byRate.get(h.sampleRateHz)!.add(clip.path);
      channels.add(h.channels);
      bits.add(h.bitsPerSample);
      durations[split].push(h.durationSeconds);
    });
    if (bad.length > 0 && options.onBadFile === "fail") {
      throw new DataError(
        what,
        bad.map((b) => ({
          ...b,
          message:
            `${b.message} (set \`onBadFile: skip\` in the load stage to skip bad files)`,
        })),
      );
    }
    for (const b of bad) {
      skipped.push({ path: b.path, reason: b.message });
      log.warn(`skipping ${b.path}: ${b.message}`);
    }
    if (byRate.size > 1) {
      const rates = [...byRate.entries()].map(([r, p]) => [r, [...p]] as const)
        .sort((a, b) => b[1].length - a[1].length);
      throw new DataError(what, [{
        path: rates[1][1][0],
        message:
          `Cannot mix sample rates in one dataset (AMAuT never resamples): ${
            rates.map(([r, p]) =>
              `${r} Hz in ${p.length} file${p.length === 1 ? "" : "s"} (e.g. ${
                p[0]
              })`
            ).join(", ")
          }`,
      }]);
    }
    const empty = Object.entries(keep).filter(([, c]) => c.length === 0);
    if (empty.length > 0) {
      throw new DataError(
        what,
        empty.map(([s]) => ({
          path: `${s} split`,
          message: "Cannot use an empty split: every file of it was skipped",
        })),
      );
    }
    splits = keep;
    clipSeconds = seconds;
    rate = byRate.keys().next().value;
    facts = {
      sampleRatesHz: [...byRate.keys()],
      channels: [...channels].sort((a, b) => a - b),
      bitsPerSample: [...bits].sort((a, b) => a - b),
      durationSeconds: Object.fromEntries(
        Object.entries(durations).map(([s, d]) => [s, minMedianMax(d)]),
      ),
    };
  }

  const assets: Record<string, unknown> = {};
  if (options.backgroundNoise) {
    const noise = await loadNoiseFolder(options.backgroundNoise);
    assets.backgroundNoise = noise;
    log.info(
      `background noise: ${
        Object.entries(noise).map(([n, c]) =>
          `${n} (${
            (c.samples.length / c.sampleRateHz).toFixed(1)
          } s at ${c.sampleRateHz} Hz)`
        ).join(", ")
      }`,
    );
  }

  const pool = createDecodePool(
    decodeWorkers(options.workers),
    (reason) => log.warn(`${reason}; decoding on the main thread`),
  );
  const cache = new Map<string, Cached>();
  let cacheBytes = 0;
  const cacheLimit = options.cacheMegabytes * 1024 * 1024;
  let cacheFullLogged = false;
  const remember = (path: string, d: DecodedAudio) => {
    if (cacheLimit <= 0) return;
    const exact16 = d.encoding === "pcm" && d.bitsPerSample <= 16;
    const bytes = d.channels.reduce((n, c) => n + c.length, 0) *
      (exact16 ? 2 : 4);
    if (cacheBytes + bytes > cacheLimit) {
      if (!cacheFullLogged) {
        cacheFullLogged = true;
        log.info(
          `audio cache full at ${options.cacheMegabytes} MB; later clips are read from disk`,
        );
      }
      return;
    }
    cacheBytes += bytes;
    cache.set(
      path,
      exact16
        ? {
          rate: d.sampleRateHz,
          // 16-bit sources come with their integers (shared, never written).
          int16: d.channels.map((c) => pcm16Of(c) ?? toInt16(c)),
        }
        : { rate: d.sampleRateHz, float: d.channels.map((c) => c.slice()) },
    );
  };
  const fromCache = (c: Cached): DecodedAudio => ({
    sampleRateHz: c.rate,
    channels: c.int16
      ? c.int16.map(floatOfPcm16)
      : c.float!.map((x) => x.slice()),
    bitsPerSample: c.int16 ? 16 : 32,
    encoding: c.int16 ? "pcm" : "float",
  });

  const counts = Object.fromEntries(
    Object.entries(splits).map(([s, c]) => [s, c.length]),
  );
  return {
    classes: index.classes,
    splits: counts,
    info: {
      ...index.info,
      ...(rate !== undefined ? { sampleRateHz: rate } : {}),
      ...(facts ? { headers: facts } : {}),
      ...(options.backgroundNoise
        ? { backgroundNoise: resolve(options.backgroundNoise) }
        : {}),
    },
    assets,
    labels: (split) => (splits[split] ?? []).map((c) => c.label),
    ...(options.scanHeaders
      ? { durations: (split: string) => clipSeconds[split] ?? [] }
      : {}),
    skipped: () => skipped,
    async example(split: string, i: number): Promise<Example | undefined> {
      const clips = Object.hasOwn(splits, split) ? splits[split] : undefined;
      if (!clips || i < 0 || i >= clips.length) {
        throw new RangeError(
          `Cannot read example ${i} of split "${split}": it has ${
            clips?.length ?? 0
          } examples`,
        );
      }
      const clip = clips[i];
      let audio: DecodedAudio;
      const hit = cache.get(clip.path);
      if (hit) audio = fromCache(hit);
      else {
        try {
          audio = await pool.decode(clip.path);
        } catch (error) {
          if (!(error instanceof WavError) || options.onBadFile === "fail") {
            throw error;
          }
          if (!skipped.some((s) => s.path === clip.path)) {
            skipped.push({ path: clip.path, reason: error.message });
            log.warn(`skipping ${clip.path}: ${error.message}`);
          }
          return undefined;
        }
        rate ??= audio.sampleRateHz;
        if (audio.sampleRateHz !== rate) {
          throw new DataError(what, [{
            path: clip.path,
            message:
              `Cannot mix sample rates in one dataset (AMAuT never resamples): this file is ${audio.sampleRateHz} Hz, earlier files ${rate} Hz`,
          }]);
        }
        remember(clip.path, audio);
      }
      return {
        channels: audio.channels,
        sampleRate: audio.sampleRateHz,
        label: clip.label,
        path: clip.path,
      };
    },
    close() {
      pool.close();
      return Promise.resolve();
    },
  };
}
