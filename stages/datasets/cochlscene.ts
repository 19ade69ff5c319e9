/**
 * The `cochlscene` layout: CochlScene acoustic scenes, `Train`, `Val` and
 * `Test` folders each holding the 13 class folders of `.wav` files.
 *
 * ```yaml
 * data:
 *   layout: cochlscene
 *   root: data/CochlScene
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
  isWav,
  kindOf,
  listDir,
  sortClips,
  type SplitName,
} from "./_util.ts";

/** The 13 classes in the reference's id order. */
export const COCHLSCENE_CLASSES: readonly string[] = [
  "Bus",
  "Car",
  "Elevator",
  "Park",
  "Restaurant",
  "Street",
  "SubwayStation",
  "Cafe",
  "CrowdedIndoor",
  "Kitchen",
  "ResidentialArea",
  "Restroom",
  "Subway",
];

/** `data:` options of the `cochlscene` layout. */
export const CochlSceneData = z.strictObject({
  layout: z.literal("cochlscene").describe(
    "CochlScene acoustic scenes, split by its Train, Val and Test folders",
  ),
  root: z.string().min(1).describe(
    "The CochlScene folder holding Train, Val and Test (relative to the spec file that sets it)",
  ),
});
/** Parsed `cochlscene` layout options. */
export type CochlSceneData = z.infer<typeof CochlSceneData>;

const SPLIT_FOLDERS: readonly { split: SplitName; folder: string }[] = [
  { split: "train", folder: "Train" },
  { split: "validation", folder: "Val" },
  { split: "test", folder: "Test" },
];

async function index(data: CochlSceneData): Promise<IndexResult> {
  const root = resolve(data.root);
  const rootProblem = await checkRoot(
    root,
    "the CochlScene folder (holding Train, Val and Test)",
  );
  if (rootProblem) return { problems: [rootProblem] };

  const problems: DataProblem[] = [];
  const classIds = new Map(COCHLSCENE_CLASSES.map((c, i) => [c, i]));
  const splits: Record<SplitName, ClipRef[]> = {
    train: [],
    validation: [],
    test: [],
  };
  const missingSplits = new Set<string>();
  for (const { split, folder } of SPLIT_FOLDERS) {
    const dir = join(root, folder);
    const kind = await kindOf(dir);
    if (kind !== "dir") {
      missingSplits.add(split);
      problems.push({
        path: dir,
        message: typeof kind === "object"
          ? `Cannot read split folder "${folder}": ${kind.error}`
          : `Cannot find split folder "${folder}"`,
      });
      continue;
    }
    const listing = await listDir(dir);
    if (typeof listing === "string") {
      missingSplits.add(split);
      problems.push({ path: dir, message: `Cannot read folder: ${listing}` });
      continue;
    }
    const present = new Set(listing.dirs);
    for (const cls of COCHLSCENE_CLASSES) {
      if (!present.has(cls)) {
        problems.push({
          path: join(dir, cls),
          message:
            `Cannot find class folder "${folder}/${cls}": the layout needs all 13 classes of CochlScene`,
        });
      }
    }
    for (const name of listing.dirs) {
      const label = classIds.get(name);
      if (label === undefined) {
        problems.push({
          path: join(dir, name),
          message:
            `Unexpected folder "${folder}/${name}": it is not one of the 13 classes of CochlScene`,
        });
        continue;
      }
      const classDir = join(dir, name);
      const files = await listDir(classDir);
      if (typeof files === "string") {
        problems.push({
          path: classDir,
          message: `Cannot read folder: ${files}`,
        });
        continue;
      }
      for (const f of files.files) {
        if (isWav(f)) splits[split].push({ path: join(classDir, f), label });
      }
    }
  }

  for (const clips of Object.values(splits)) sortClips(clips);
  problems.push(...emptySplitProblems(splits, root, missingSplits));
  if (problems.length > 0) return { problems };
  return {
    index: {
      classes: COCHLSCENE_CLASSES,
      splits,
      info: { layout: "cochlscene", root },
    },
    problems,
  };
}

/** The `cochlscene` layout. */
export const layout: Layout<CochlSceneData> = {
  id: "cochlscene",
  data: CochlSceneData,
  index: (data) => index(data),
  classes: () => COCHLSCENE_CLASSES,
};
