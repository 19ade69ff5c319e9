/**
 * The built-in stages, by id. `use: <id>` in a spec resolves here; the JSON
 * Schema generator and the conformance tests enumerate this map.
 *
 * Shape legend: `b` batch, `c` channels, `s` samples, `t` frames, `f` mel
 * bins, `k` tokens, `d` model width, `n` classes.
 *
 * @module
 */
import type { Stage } from "../pipeline/types.ts";
import { stage as load } from "./load.ts";
import { stage as monoMix } from "./mono_mix.ts";
import { stage as describeData } from "./describe_data.ts";
import { stage as fixedLength } from "./fixed_length.ts";
import { stage as augment } from "./augment.ts";
import { stage as mel } from "./mel.ts";
import { stage as tokenize } from "./tokenize.ts";
import { stage as train } from "./train.ts";
import { stage as testTimeAugmentation } from "./test_time_augmentation.ts";
import { stage as testTimeAdaptation } from "./test_time_adaptation.ts";
import { stage as report } from "./report.ts";

/** Built-in stages by id. */
export const BUILTIN_STAGES: Readonly<Record<string, Stage>> = Object.freeze({
  [load.id]: load as Stage,
  [monoMix.id]: monoMix as Stage,
  [augment.id]: augment as Stage,
  [fixedLength.id]: fixedLength as Stage,
  [mel.id]: mel as Stage,
  [tokenize.id]: tokenize as Stage,
  [train.id]: train as Stage,
  [testTimeAugmentation.id]: testTimeAugmentation as Stage,
  [testTimeAdaptation.id]: testTimeAdaptation as Stage,
  [report.id]: report as Stage,
  [describeData.id]: describeData as Stage,
});
