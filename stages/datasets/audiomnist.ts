/**
 * The `audiomnist` layout: AudioMNIST spoken digits (60 speakers, folders
 * `01`…`60` holding `{digit}_{speaker}_{index}.wav`), split by speaker with the
 * official 5-fold "digit" splits. The validation speakers of fold f are the
 * test speakers of fold (f − 1) mod 5; train is the other 36 speakers, plus
 * the validation speakers when `trainOn` is `trainValidation` (the AMAuT
 * reference's choice: 48 training speakers).
 *
 * ```yaml
 * data:
 *   layout: audiomnist
 *   root: data/AudioMNIST/data
 *   fold: 0
 * ```
 *
 * @module
 */
import * as z from "zod";
import { join, resolve } from "node:path";
import type { ClipRef, DataProblem, IndexResult, Layout } from "./types.ts";
import {
  checkRoot,
  emptySplitProblems,
  listDir,
  pad2,
  sortClips,
  type SplitName,
} from "./_util.ts";

/** Test speakers of each of the 5 official folds (soerenab `preprocess_data.py`). */
export const AUDIOMNIST_TEST_SPEAKERS: readonly (readonly number[])[] = [
  [26, 52, 60, 18, 32, 42, 5, 13, 22, 33, 45, 51],
  [28, 56, 7, 19, 35, 1, 6, 16, 23, 34, 46, 53],
  [36, 57, 9, 24, 37, 2, 8, 17, 29, 39, 48, 54],
  [43, 58, 14, 25, 38, 3, 10, 20, 30, 40, 49, 55],
  [12, 47, 59, 15, 27, 41, 4, 11, 21, 31, 44, 50],
];

/** The 10 classes: digits "0" to "9" (label = digit). */
export const AUDIOMNIST_CLASSES: readonly string[] = Array.from(
  { length: 10 },
  (_, d) => String(d),
);

/** `data:` options of the `audiomnist` layout. */
export const AudioMnistData = z.strictObject({
  layout: z.literal("audiomnist").describe(
    "AudioMNIST spoken digits, split by speaker with the official 5 folds",
  ),
  root: z.string().min(1).describe(
    "The AudioMNIST/data folder holding the speaker folders 01 to 60 (relative to the spec file that sets it)",
  ),
  fold: z.int().min(0).max(4).default(0).describe(
    "Which of the 5 official folds to use (0 to 4)",
  ),
  trainOn: z.enum(["train", "trainValidation"]).default("trainValidation")
    .describe(
      "Speakers of the train split: the fold's 36 train speakers, or those plus its 12 validation speakers (trainValidation, the AMAuT reference's choice)",
    ),
});
/** Parsed `audiomnist` layout options. */
export type AudioMnistData = z.infer<typeof AudioMnistData>;

/** The speakers of each split of a fold, sorted ascending. */
export interface AudioMnistSpeakers {
  readonly train: readonly number[];
  readonly validation: readonly number[];
  readonly test: readonly number[];
}

/** The speakers of each split for `fold` and `trainOn`. */
export function audioMnistSpeakers(
  fold: number,
  trainOn: "train" | "trainValidation",
): AudioMnistSpeakers {
  const asc = (xs: readonly number[]) => [...xs].sort((a, b) => a - b);
  const test = asc(AUDIOMNIST_TEST_SPEAKERS[fold]);
  const validation = asc(AUDIOMNIST_TEST_SPEAKERS[(fold + 4) % 5]);
  const rest = Array.from({ length: 60 }, (_, i) => i + 1).filter((s) =>
    !test.includes(s) && !validation.includes(s)
  );
  const train = trainOn === "train" ? rest : asc([...rest, ...validation]);
  return { train, validation, test };
}

const FILE_PATTERN = /^(\d+)_(\d+)_(\d+)\.wav$/i;

async function index(data: AudioMnistData): Promise<IndexResult> {
  const root = resolve(data.root);
  const rootProblem = await checkRoot(
    root,
    "the AudioMNIST data folder (AudioMNIST/data, holding the speaker folders 01 to 60)",
  );
  if (rootProblem) return { problems: [rootProblem] };
  const listing = await listDir(root);
  if (typeof listing === "string") {
    return {
      problems: [{ path: root, message: `Cannot read folder: ${listing}` }],
    };
  }

  const problems: DataProblem[] = [];
  // Clips of each speaker found, by speaker number.
  const bySpeaker = new Map<number, ClipRef[]>();
  for (const dir of listing.dirs) {
    if (!/^\d+$/.test(dir)) continue;
    const speaker = Number(dir);
    if (speaker < 1 || speaker > 60) continue;
    const folder = join(root, dir);
    const sub = await listDir(folder);
    if (typeof sub === "string") {
      problems.push({ path: folder, message: `Cannot read folder: ${sub}` });
      continue;
    }
    const clips = bySpeaker.get(speaker) ?? [];
    bySpeaker.set(speaker, clips);
    for (const file of sub.files) {
      const path = join(folder, file);
      const m = FILE_PATTERN.exec(file);
      if (!m) {
        problems.push({
          path,
          message:
            `File name "${file}" does not match {digit}_{speaker}_{index}.wav`,
        });
        continue;
      }
      const digit = Number(m[1]);
      const named = Number(m[2]);
      let ok = true;
      if (digit > 9) {
        problems.push({
          path,
          message: `Digit ${m[1]} in "${file}" is out of range 0 to 9`,
        });
        ok = false;
      }
      if (named !== speaker) {
        problems.push({
          path,
          message: `File "${file}" names speaker ${
            pad2(named)
          } but lies in the folder of speaker ${pad2(speaker)}`,
        });
        ok = false;
      }
      if (ok) clips.push({ path, label: digit });
    }
  }

  const fold = data.fold;
  const speakers = audioMnistSpeakers(fold, data.trainOn);
  // Speakers each split needs (train's own 36, so validation's are reported once).
  const own: Record<SplitName, readonly number[]> = {
    train: audioMnistSpeakers(fold, "train").train,
    validation: speakers.validation,
    test: speakers.test,
  };
  const reported = new Set<string>();
  for (const split of ["train", "validation", "test"] as const) {
    const missing = own[split].filter((s) =>
      (bySpeaker.get(s)?.length ?? 0) === 0
    );
    if (missing.length === 0) continue;
    reported.add(split);
    problems.push({
      path: root,
      message: `Cannot find speaker${missing.length === 1 ? "" : "s"} ${
        missing.map(pad2).join(", ")
      } that the ${split} split of fold ${fold} needs`,
    });
  }

  const splits: Record<SplitName, ClipRef[]> = {
    train: speakers.train.flatMap((s) => bySpeaker.get(s) ?? []),
    validation: speakers.validation.flatMap((s) => bySpeaker.get(s) ?? []),
    test: speakers.test.flatMap((s) => bySpeaker.get(s) ?? []),
  };
  for (const clips of Object.values(splits)) sortClips(clips);
  problems.push(...emptySplitProblems(splits, root, reported));
  if (problems.length > 0) return { problems };
  return {
    index: {
      classes: AUDIOMNIST_CLASSES,
      splits,
      info: {
        layout: "audiomnist",
        root,
        fold,
        trainOn: data.trainOn,
        trainSpeakers: speakers.train,
        validationSpeakers: speakers.validation,
        testSpeakers: speakers.test,
      },
    },
    problems,
  };
}

/** The `audiomnist` layout. */
export const layout: Layout<AudioMnistData> = {
  id: "audiomnist",
  data: AudioMnistData,
  index: (data) => index(data),
  classes: () => AUDIOMNIST_CLASSES,
};
