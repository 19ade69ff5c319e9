/**
 * The `speech_commands` layout: Google Speech Commands v0.01 (30 words) or
 * v0.02 (35 words), as extracted from the official archive. Validation and
 * test are the files named in `validation_list.txt` and `testing_list.txt`;
 * train is every other `.wav` of the word folders. `_background_noise_` is
 * not a class and is skipped.
 *
 * ```yaml
 * data:
 *   layout: speech_commands
 *   root: data/speech_commands_v0.02
 *   version: 2
 * ```
 *
 * @module
 */
import * as z from "zod";
import { join, posix, resolve } from "node:path";
import type { ClipRef, DataProblem, IndexResult, Layout } from "./types.ts";
import {
  checkRoot,
  emptySplitProblems,
  isWav,
  listDir,
  readText,
  sortClips,
  type SplitName,
} from "./_util.ts";

/** The spoken digits "zero" … "nine", in order (digit d at index d). */
export const DIGIT_WORDS: readonly string[] = [
  "zero",
  "one",
  "two",
  "three",
  "four",
  "five",
  "six",
  "seven",
  "eight",
  "nine",
];

/** The 30 classes of Speech Commands v0.01, in the reference's id order. */
export const SPEECH_COMMANDS_V1_CLASSES: readonly string[] = [
  ...DIGIT_WORDS,
  "bed",
  "dog",
  "happy",
  "marvin",
  "off",
  "right",
  "up",
  "yes",
  "bird",
  "down",
  "house",
  "on",
  "stop",
  "tree",
  "cat",
  "go",
  "left",
  "no",
  "sheila",
  "wow",
];

/** The 35 classes of Speech Commands v0.02, in the reference's id order (v1's 30, then 5 more). */
export const SPEECH_COMMANDS_V2_CLASSES: readonly string[] = [
  ...SPEECH_COMMANDS_V1_CLASSES,
  "backward",
  "forward",
  "follow",
  "learn",
  "visual",
];

/** The folder of background noise recordings, which is not a class. */
const NOISE_FOLDER = "_background_noise_";

/** `data:` options of the `speech_commands` layout. */
export const SpeechCommandsData = z.strictObject({
  layout: z.literal("speech_commands").describe(
    "Google Speech Commands, split by the archive's validation and testing lists",
  ),
  root: z.string().min(1).describe(
    "The extracted archive folder holding the word folders, validation_list.txt and testing_list.txt (relative to the spec file that sets it)",
  ),
  version: z.literal([1, 2]).default(2).describe(
    "Dataset version: 1 (v0.01, 30 words) or 2 (v0.02, 35 words)",
  ),
});
/** Parsed `speech_commands` layout options. */
export type SpeechCommandsData = z.infer<typeof SpeechCommandsData>;

/** The class list of a version. */
export function speechCommandsClasses(version: 1 | 2): readonly string[] {
  return version === 1
    ? SPEECH_COMMANDS_V1_CLASSES
    : SPEECH_COMMANDS_V2_CLASSES;
}

const LISTS: readonly { split: SplitName; file: string }[] = [
  { split: "validation", file: "validation_list.txt" },
  { split: "test", file: "testing_list.txt" },
];

async function index(data: SpeechCommandsData): Promise<IndexResult> {
  const root = resolve(data.root);
  const version = data.version;
  const classes = speechCommandsClasses(version);
  const classIds = new Map(classes.map((c, i) => [c, i]));
  const name = `Speech Commands v${version}`;
  const rootProblem = await checkRoot(
    root,
    "the Speech Commands folder (the extracted archive with the word folders and validation_list.txt)",
  );
  if (rootProblem) return { problems: [rootProblem] };

  const problems: DataProblem[] = [];
  const listing = await listDir(root);
  if (typeof listing === "string") {
    return {
      problems: [{ path: root, message: `Cannot read folder: ${listing}` }],
    };
  }

  // Word folders: check all classes are there and nothing else is.
  const present = new Set(listing.dirs);
  for (const cls of classes) {
    if (!present.has(cls)) {
      problems.push({
        path: join(root, cls),
        message:
          `Cannot find class folder "${cls}": the layout needs all ${classes.length} classes of ${name}`,
      });
    }
  }
  for (const dir of listing.dirs) {
    if (dir === NOISE_FOLDER || classIds.has(dir)) continue;
    const v2Only = version === 1 && SPEECH_COMMANDS_V2_CLASSES.includes(dir);
    problems.push({
      path: join(root, dir),
      message: v2Only
        ? `Unexpected folder "${dir}": it is a class of Speech Commands v2 only; set version: 2`
        : `Unexpected folder "${dir}": it is not one of the ${classes.length} classes of ${name}`,
    });
  }

  // The .wav files of each present class folder, as "class/file.wav".
  const wavs = new Set<string>();
  for (const cls of classes) {
    if (!present.has(cls)) continue;
    const sub = await listDir(join(root, cls));
    if (typeof sub === "string") {
      problems.push({
        path: join(root, cls),
        message: `Cannot read folder: ${sub}`,
      });
      continue;
    }
    for (const f of sub.files) if (isWav(f)) wavs.add(`${cls}/${f}`);
  }

  // The split lists.
  const splits: Record<SplitName, ClipRef[]> = {
    train: [],
    validation: [],
    test: [],
  };
  const listed = new Set<string>();
  const unread = new Set<string>();
  for (const { split, file } of LISTS) {
    const path = join(root, file);
    const read = await readText(path);
    if (!("text" in read)) unread.add(split);
    if ("missing" in read) {
      problems.push({
        path,
        message:
          `Cannot find ${file}: the extracted archive has it next to the word folders`,
      });
      continue;
    }
    if ("error" in read) {
      problems.push({ path, message: `Cannot read ${file}: ${read.error}` });
      continue;
    }
    const seen = new Set<string>();
    read.text.split(/\r?\n/).forEach((raw, i) => {
      const entry = raw.trim();
      if (entry === "") return;
      const rel = posix.normalize(entry.replaceAll("\\", "/"));
      if (seen.has(rel)) return;
      seen.add(rel);
      const cls = rel.includes("/") ? rel.slice(0, rel.indexOf("/")) : "";
      const label = classIds.get(cls);
      if (label === undefined) {
        const v2Only = version === 1 &&
          SPEECH_COMMANDS_V2_CLASSES.includes(cls);
        problems.push({
          path,
          message: v2Only
            ? `Line ${
              i + 1
            } of ${file} names "${entry}" of class "${cls}", which only Speech Commands v2 has; set version: 2`
            : `Line ${
              i + 1
            } of ${file} names "${entry}" of unknown class "${cls}"`,
        });
        return;
      }
      if (!present.has(cls)) return; // the missing folder is already reported
      if (!wavs.has(rel)) {
        problems.push({
          path: join(root, rel),
          message: `Line ${i + 1} of ${file} names a missing file "${entry}"`,
        });
        return;
      }
      listed.add(rel);
      splits[split].push({ path: join(root, rel), label });
    });
  }

  for (const rel of wavs) {
    if (listed.has(rel)) continue;
    const label = classIds.get(rel.slice(0, rel.indexOf("/")))!;
    splits.train.push({ path: join(root, rel), label });
  }
  for (const clips of Object.values(splits)) sortClips(clips);
  // A split whose list is missing is already reported.
  problems.push(...emptySplitProblems(splits, root, unread));
  if (problems.length > 0) return { problems };
  return {
    index: {
      classes,
      splits,
      info: { layout: "speech_commands", root, version },
    },
    problems,
  };
}

/** The `speech_commands` layout. */
export const layout: Layout<SpeechCommandsData> = {
  id: "speech_commands",
  data: SpeechCommandsData,
  index: (data) => index(data),
  noiseFolder: "_background_noise_",
  classes: (data) => speechCommandsClasses(data.version),
};
