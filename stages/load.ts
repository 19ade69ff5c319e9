/**
 * The `load` source stage: opens the dataset described by the spec's `data:`
 * section and yields clips at their native sample rate (AMAuT never
 * resamples), channels first, with their labels.
 *
 * Provides per example: `channels` (`[c][s]` Float32Arrays in [-1, 1], integer
 * PCM scaled as torchaudio does, e.g. int16/32768), `sampleRate` (Hz), `label`
 * (class index), `path` (the file). Dataset-level asset: `backgroundNoise`
 * (mono clips by file stem) when `backgroundNoise:` names a folder.
 *
 * Layouts (`data.layout`): `speech_commands` (v1 30 classes, v2 35),
 * `audiomnist` (five speaker folds), `vocalsound`, `cochlscene`, `folder`
 * (your own data: class folders or a CSV manifest) and `synthetic`
 * (generated tones, for demos and tests). The folder structure and split
 * lists are checked when the dataset opens, and with `scanHeaders` every WAV
 * header too, so bad files and mixed sample rates stop the run before any
 * training, each named.
 *
 * `data.root` and `backgroundNoise` are relative to the spec file that writes
 * them (as `extends:` is; `--set` values to the working directory); a
 * layout's own files (e.g. the folder layout's `manifest`) are relative to
 * `root`, since they belong to the dataset.
 *
 * ```yaml
 * data:
 *   layout: speech_commands
 *   root: data/speech_commands_v0.01
 *   version: 1
 * stages:
 *   - use: load
 *     with: { workers: 2, backgroundNoise: data/speech_commands_v0.01/_background_noise_ }
 * ```
 *
 * @module
 */
import { join, resolve } from "node:path";
import * as z from "zod";
import { defineStage } from "../pipeline/define_stage.ts";
import type { Dataset, PlannedClip, SourceContext } from "../pipeline/types.ts";
import type { Rng } from "../pipeline/rng.ts";
import { synthesizeClip, SyntheticData } from "./_synthetic.ts";
import { LAYOUTS } from "./datasets/mod.ts";
import type { DataProblem, Layout } from "./datasets/types.ts";
import {
  DataError,
  findBadFiles,
  loadNoiseFolder,
  openAudioDataset,
} from "./_audio_dataset.ts";

type AnyObject = z.ZodObject<{ layout: z.ZodLiteral<string> }>;

/** `data:` schema: one entry per layout, chosen by `layout`. */
export const LoadData = z.discriminatedUnion("layout", [
  SyntheticData,
  ...Object.values(LAYOUTS).map((l) => l.data as unknown as AnyObject),
] as [AnyObject, ...AnyObject[]]);
/** Parsed `data:` section. */
export type LoadData = { layout: string; [key: string]: unknown };

/** Options of the `load` stage (`with:`). */
export const LoadOptions = z.strictObject({
  onBadFile: z.enum(["fail", "skip"]).default("fail").describe(
    "A corrupt, truncated, empty or non-WAV file stops the run (fail) or is skipped and listed (skip)",
  ),
  scanHeaders: z.boolean().default(true).describe(
    "Read every WAV header when the dataset opens, so bad files and mixed sample rates are found before training",
  ),
  workers: z.union([z.literal("auto"), z.int().min(0).max(32)]).default(
    "auto",
  ).describe(
    "Decoding threads (0: decode on the main thread); auto: the machine's cores less two, between 2 and 8",
  ),
  cacheMegabytes: z.number().min(0).default(0).describe(
    "Keep decoded audio in memory up to this many MiB (int16 for 16-bit files); 0 disables the cache",
  ),
  backgroundNoise: z.string().min(1).optional().describe(
    "Folder of WAV files loaded once as background noise for augmentation (e.g. Speech Commands' _background_noise_)",
  ),
});
/** Parsed options of the `load` stage. */
export type LoadOptions = z.infer<typeof LoadOptions>;

/** The `load` stage. */
export const stage = defineStage<LoadOptions, LoadData>({
  id: "load",
  version: "1.0.0",
  api: 1,
  kind: "source",
  summary: "Load a dataset's clips at their native sample rate",
  options: LoadOptions,
  // Decoding threads and the cache change speed, never the data.
  resumeMayChange: { workers: "any", cacheMegabytes: "any" },
  data: LoadData as unknown as z.ZodType<LoadData>,
  takes: [],
  provides: ["channels", "sampleRate", "label", "path"],
  pathKeys: { data: ["root"], options: ["backgroundNoise"] },
  async open(data, options, ctx): Promise<Dataset> {
    if (data.layout === "synthetic") {
      const synthetic = SyntheticData.parse(data);
      const dataset = openSynthetic(synthetic, ctx.rng);
      if (!options.backgroundNoise) return dataset;
      return {
        ...dataset,
        assets: {
          backgroundNoise: await loadNoiseFolder(options.backgroundNoise),
        },
      };
    }
    const layout = (LAYOUTS as Readonly<Record<string, Layout>>)[data.layout];
    // The compiler made root absolute (relative to the spec that wrote it).
    const root = typeof data.root === "string" ? resolve(data.root) : "";
    const what = `dataset "${data.layout}" at ${root}`;
    const { index, problems, excluded } = await layout.index(data, {
      seed: ctx.rng.int(2 ** 31),
      // Bad files are decided before a seeded split, so skipping a file and
      // deleting it draw the same split.
      ...(options.onBadFile === "skip" && options.scanHeaders
        ? { exclude: findBadFiles }
        : {}),
    });
    if (!index || problems.length > 0) {
      throw new DataError(what, withOrigins(problems, ctx.dataOrigins));
    }
    let backgroundNoise = options.backgroundNoise;
    if (backgroundNoise === undefined && layout.noiseFolder && root) {
      // The layout's own noise folder, under whatever root the run names.
      const own = join(root, layout.noiseFolder);
      const found = await Deno.stat(own).then(
        (s) => s.isDirectory,
        () => false,
      );
      if (found) backgroundNoise = own;
      else {
        ctx.log.warn(
          `no ${layout.noiseFolder} folder under ${root}: views that mix background noise will fail (set load.backgroundNoise to a folder of noise clips)`,
        );
      }
    }
    const dataset = await openAudioDataset(
      what,
      index,
      { ...options, backgroundNoise, skippedBeforeSplit: excluded },
      ctx.log,
    );
    ctx.log.info(
      `${what}: ${
        Object.entries(dataset.splits).map(([s, n]) => `${s} ${n}`).join(", ")
      } clips at ${dataset.info.sampleRateHz ?? "?"} Hz`,
    );
    return dataset;
  },
  planned(data, _options, clip) {
    const layout = (LAYOUTS as Readonly<Record<string, Layout>>)[data.layout];
    const classes = data.layout === "synthetic"
      ? SyntheticData.parse(data).classes
      : layout?.classes?.(data); // data: already checked, defaults filled
    return classes ? plannedDataset(classes, clip) : undefined;
  },
});

/**
 * Adds, to each problem about `classes`, where an inherited `classes:` was
 * written and how to drop it: a child spec that replaces `data:` keeps its
 * parent's `classes:` (mappings merge key by key), which then rarely fits.
 */
export function withOrigins(
  problems: readonly DataProblem[],
  origins: SourceContext["dataOrigins"],
): DataProblem[] {
  const from = origins?.classes;
  if (!from) return [...problems];
  return problems.map((p) =>
    /\bclasses\b/.test(p.message)
      ? {
        ...p,
        message:
          `${p.message} (classes is inherited from ${from.file}:${from.line}; write \`classes: null\` under data: to drop it, or list this dataset's classes)`,
      }
      : p
  );
}

/**
 * Silent mono clips, one per split, standing in for absent data in
 * `--dry-run` (see `SourceStage.planned`).
 */
function plannedDataset(
  classes: readonly string[],
  clip: PlannedClip,
): Dataset {
  const length = Math.max(1, Math.round(clip.seconds * clip.sampleRateHz));
  const splits = { train: 1, validation: 1, test: 1 };
  return {
    classes,
    splits,
    info: { planned: true, sampleRateHz: clip.sampleRateHz },
    labels: () => [0],
    example: (split) =>
      Object.hasOwn(splits, split)
        ? Promise.resolve({
          channels: [new Float32Array(length)],
          sampleRate: clip.sampleRateHz,
          label: 0,
          path: `(planned silent clip, ${split})`,
        })
        : Promise.reject(new RangeError(`Cannot read split "${split}"`)),
  };
}

/** A dataset of generated tones (see `_synthetic.ts`). */
function openSynthetic(data: SyntheticData, rng: Rng): Dataset {
  const perClass: Record<string, number> = data.perClass;
  const splits = Object.fromEntries(
    Object.entries(perClass).map(([s, n]) => [s, n * data.classes.length]),
  );
  return {
    classes: data.classes,
    splits,
    info: {
      layout: data.layout,
      sampleRateHz: data.sampleRateHz,
      channels: data.channels,
    },
    labels: (split) =>
      Array.from(
        { length: splits[split] ?? 0 },
        (_, i) => Math.floor(i / perClass[split]),
      ),
    example(split: string, index: number) {
      const n = Object.hasOwn(perClass, split) ? perClass[split] : undefined;
      if (n === undefined || index < 0 || index >= n * data.classes.length) {
        return Promise.reject(
          new RangeError(
            `Cannot read example ${index} of split "${split}": it has ${
              (n ?? 0) * data.classes.length
            } examples`,
          ),
        );
      }
      const label = Math.floor(index / n);
      return Promise.resolve({
        channels: synthesizeClip(
          label,
          data,
          (data.fold ? rng.child("fold", data.fold) : rng).child(split, index),
        ),
        sampleRate: data.sampleRateHz,
        label,
        path: `synthetic:${split}/${data.classes[label]}/${index % n}`,
      });
    },
  };
}
