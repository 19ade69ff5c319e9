/**
 * The `load` source stage: opens the dataset described by the spec's `data:`
 * section and yields clips at their native sample rate (AMAuT never
 * resamples), channels first, with their labels.
 *
 * Provides per example: `channels` (`[c][s]` Float32Arrays in [-1, 1]),
 * `sampleRate` (Hz), `label` (class index), `path` (where the clip came from).
 *
 * Layouts (`data.layout`): `synthetic` — generated tones, one per class, for
 * demos and tests.
 *
 * ```yaml
 * data:
 *   layout: synthetic
 *   classes: [low, mid, high]
 *   sampleRateHz: 16000
 * stages:
 *   - use: load
 * ```
 *
 * @module
 */
import * as z from "zod";
import { defineStage } from "../pipeline/define_stage.ts";
import type { Dataset } from "../pipeline/types.ts";
import { synthesizeClip, SyntheticData } from "./_synthetic.ts";

/** `data:` schema: one entry per layout, chosen by `layout`. */
export const LoadData = z.discriminatedUnion("layout", [SyntheticData]);
/** Parsed `data:` section. */
export type LoadData = z.infer<typeof LoadData>;

/** Options of the `load` stage (`with:`). */
export const LoadOptions = z.strictObject({});
/** Parsed options of the `load` stage. */
export type LoadOptions = z.infer<typeof LoadOptions>;

/** The `load` stage. */
export const stage = defineStage<LoadOptions, LoadData>({
  id: "load",
  version: "0.1.0",
  api: 1,
  kind: "source",
  summary: "Load a dataset's clips at their native sample rate",
  options: LoadOptions,
  data: LoadData,
  takes: [],
  provides: ["channels", "sampleRate", "label", "path"],
  open(data, _options, ctx): Promise<Dataset> {
    const splits = {
      train: data.perClass.train * data.classes.length,
      validation: data.perClass.validation * data.classes.length,
      test: data.perClass.test * data.classes.length,
    };
    const perClass: Record<string, number> = data.perClass;
    return Promise.resolve({
      classes: data.classes,
      splits,
      info: {
        layout: data.layout,
        sampleRateHz: data.sampleRateHz,
        channels: data.channels,
      },
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
        const channels = synthesizeClip(
          label,
          data,
          ctx.rng.child(split, index),
        );
        return Promise.resolve({
          channels,
          sampleRate: data.sampleRateHz,
          label,
          path: `synthetic:${split}/${data.classes[label]}/${index % n}`,
        });
      },
    });
  },
});
