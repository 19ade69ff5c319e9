/**
 * The `vocalsound` layout: VocalSound (16 kHz release). The splits are the
 * official `datafiles/tr.json`, `val.json` and `te.json`
 * (`{"data": [{"wav": "...", "labels": "/m/01j3sz"}, ...]}`); only the basename
 * of each `wav` is used, looked up in `audio_16k/`.
 *
 * ```yaml
 * data:
 *   layout: vocalsound
 *   root: data/vocalsound_16k
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
  errorMessage,
  kindOf,
  listDir,
  readText,
  sortClips,
  type SplitName,
} from "./_util.ts";

/** The 6 classes in the official order, with their AudioSet label ids (mids). */
export const VOCALSOUND_CLASSES: readonly { name: string; mid: string }[] = [
  { name: "Laughter", mid: "/m/01j3sz" },
  { name: "Sigh", mid: "/m/07plz5l" },
  { name: "Cough", mid: "/m/01b_21" },
  { name: "Throat clearing", mid: "/m/0dl9sf8" },
  { name: "Sneeze", mid: "/m/01hsr_" },
  { name: "Sniff", mid: "/m/07ppn3j" },
];

/** `data:` options of the `vocalsound` layout. */
export const VocalSoundData = z.strictObject({
  layout: z.literal("vocalsound").describe(
    "VocalSound (16 kHz release), split by the official datafiles/*.json",
  ),
  root: z.string().min(1).describe(
    "The vocalsound_16k folder holding datafiles/ and audio_16k/ (relative to the spec file that sets it)",
  ),
});
/** Parsed `vocalsound` layout options. */
export type VocalSoundData = z.infer<typeof VocalSoundData>;

const SPLIT_FILES: readonly { split: SplitName; file: string }[] = [
  { split: "train", file: "datafiles/tr.json" },
  { split: "validation", file: "datafiles/val.json" },
  { split: "test", file: "datafiles/te.json" },
];

const AUDIO_FOLDER = "audio_16k";

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

async function index(data: VocalSoundData): Promise<IndexResult> {
  const root = resolve(data.root);
  const rootProblem = await checkRoot(
    root,
    "the VocalSound folder (vocalsound_16k, holding datafiles/ and audio_16k/)",
  );
  if (rootProblem) return { problems: [rootProblem] };

  const problems: DataProblem[] = [];
  const audioDir = join(root, AUDIO_FOLDER);
  const audioKind = await kindOf(audioDir);
  let audioFiles: Set<string> | undefined;
  if (audioKind !== "dir") {
    problems.push({
      path: audioDir,
      message: typeof audioKind === "object"
        ? `Cannot read audio folder "${AUDIO_FOLDER}": ${audioKind.error}`
        : `Cannot find audio folder "${AUDIO_FOLDER}"`,
    });
  } else {
    const audio = await listDir(audioDir);
    if (typeof audio === "string") {
      problems.push({
        path: audioDir,
        message: `Cannot read audio folder "${AUDIO_FOLDER}": ${audio}`,
      });
    } else audioFiles = new Set(audio.files);
  }

  const mids = new Map(VOCALSOUND_CLASSES.map((c, i) => [c.mid, i]));
  const splits: Record<SplitName, ClipRef[]> = {
    train: [],
    validation: [],
    test: [],
  };
  const unread = new Set<string>();
  for (const { split, file } of SPLIT_FILES) {
    const path = join(root, file);
    const read = await readText(path);
    if (!("text" in read)) {
      unread.add(split);
      problems.push({
        path,
        message: "missing" in read
          ? `Cannot find split file ${file}`
          : `Cannot read ${file}: ${read.error}`,
      });
      continue;
    }
    let json: unknown;
    try {
      json = JSON.parse(read.text);
    } catch (e) {
      unread.add(split);
      problems.push({
        path,
        message: `Cannot parse ${file} as JSON: ${errorMessage(e)}`,
      });
      continue;
    }
    if (!isRecord(json) || !Array.isArray(json.data)) {
      unread.add(split);
      problems.push({
        path,
        message: `Expected {"data": [...]} in ${file}`,
      });
      continue;
    }
    json.data.forEach((entry: unknown, i: number) => {
      const where = `entry data[${i}] of ${file}`;
      if (!isRecord(entry) || typeof entry.wav !== "string") {
        problems.push({ path, message: `No "wav" string in ${where}` });
        return;
      }
      if (typeof entry.labels !== "string") {
        problems.push({ path, message: `No "labels" string in ${where}` });
        return;
      }
      const label = mids.get(entry.labels.trim());
      if (label === undefined) {
        problems.push({
          path,
          message: `Unknown label "${entry.labels}" in ${where}: expected ${
            VOCALSOUND_CLASSES.map((c) => `${c.mid} (${c.name})`).join(", ")
          }`,
        });
        return;
      }
      const name = posix.basename(entry.wav.replaceAll("\\", "/"));
      const clip = join(audioDir, name);
      if (audioFiles && !audioFiles.has(name)) {
        problems.push({
          path: clip,
          message: `Cannot find audio file "${name}" named by ${where}`,
        });
        return;
      }
      splits[split].push({ path: clip, label });
    });
  }

  for (const clips of Object.values(splits)) sortClips(clips);
  problems.push(...emptySplitProblems(splits, root, unread));
  if (problems.length > 0) return { problems };
  return {
    index: {
      classes: VOCALSOUND_CLASSES.map((c) => c.name),
      splits,
      info: { layout: "vocalsound", root },
    },
    problems,
  };
}

/** The `vocalsound` layout. */
export const layout: Layout<VocalSoundData> = {
  id: "vocalsound",
  data: VocalSoundData,
  index: (data) => index(data),
  classes: () => VOCALSOUND_CLASSES.map((c) => c.name),
};
