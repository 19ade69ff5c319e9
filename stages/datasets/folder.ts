/**
 * The `folder` layout: users' own data, either as class folders
 * (`root/<class>/`, each searched recursively for `.wav` files) or as a CSV
 * manifest of `path,label[,split]` rows (paths relative to `root`). Without a
 * split column the clips are split per class (stratified) by a shuffle seeded
 * with the run's seed, so the same seed gives the same split.
 *
 * ```yaml
 * data:
 *   layout: folder
 *   root: data/my_sounds
 *   split: { validation: 0.1, test: 0.1 }
 * ```
 *
 * @module
 */
import * as z from "zod";
import { basename, dirname, join, resolve } from "node:path";
import { createRng } from "../../pipeline/rng.ts";
import type {
  ClipRef,
  DataProblem,
  IndexContext,
  IndexResult,
  Layout,
} from "./types.ts";
import {
  byCodePoint,
  checkRoot,
  type CsvRow,
  emptySplitProblems,
  errorMessage,
  listDir,
  parseCsv,
  readText,
  sortClips,
  type SplitName,
  SPLITS,
  walkWavs,
} from "./_util.ts";

/** `data:` options of the `folder` layout. */
export const FolderData = z.strictObject({
  layout: z.literal("folder").describe(
    "Your own clips: class folders of .wav files, or a CSV manifest",
  ),
  root: z.string().min(1).describe(
    "The dataset folder: it holds one folder of .wav files per class (searched recursively), or the files the manifest names (relative to the spec file that sets it)",
  ),
  manifest: z.string().min(1).optional().describe(
    "CSV file (relative to root) of path,label[,split] rows, paths relative to root; an optional header row names the columns. Without it, class folders are used",
  ),
  classes: z.array(
    // Names may be written as numbers (`classes: [0, 1, 2]`): they mean "0", "1", "2".
    z.union([z.string().min(1), z.number()]).transform(String),
  ).min(2).refine(
    (xs) => new Set(xs).size === xs.length,
    "Class names must be unique",
  ).optional().describe(
    'Class names in id order (label i is the i-th name; numbers such as 0 mean the name "0"); default: the class folder names or manifest labels, sorted. With class folders, folders not listed are ignored. In a spec that extends another, `classes: null` drops the inherited list',
  ),
  split: z.strictObject({
    validation: z.number().gt(0).lt(1).default(0.1).describe(
      "Fraction of each class's clips drawn for validation",
    ),
    test: z.number().gt(0).lt(1).default(0.1).describe(
      "Fraction of each class's clips drawn for test",
    ),
  }).default({ validation: 0.1, test: 0.1 }).describe(
    "Split fractions for a seeded stratified split; used for class folders and for a manifest without a split column",
  ),
});
/** Parsed `folder` layout options. */
export type FolderData = z.infer<typeof FolderData>;

/** A clip with its class name, before the split. */
interface Labelled {
  readonly path: string;
  readonly label: number;
}

/**
 * Splits each class's clips by a seeded shuffle: `round(n·test)` to test,
 * `round(n·validation)` to validation, the rest (at least one) to train.
 */
export function stratifiedSplit(
  clips: readonly Labelled[],
  classes: readonly string[],
  fractions: { readonly validation: number; readonly test: number },
  seed: number,
): Record<SplitName, ClipRef[]> {
  const splits: Record<SplitName, ClipRef[]> = {
    train: [],
    validation: [],
    test: [],
  };
  classes.forEach((cls, label) => {
    const own = clips.filter((c) => c.label === label).sort((a, b) =>
      byCodePoint(a.path, b.path)
    );
    const rng = createRng(`layout:folder:split:${cls}`, seed);
    for (let i = own.length - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      [own[i], own[j]] = [own[j], own[i]];
    }
    const n = own.length;
    let nTest = Math.round(n * fractions.test);
    let nValidation = Math.round(n * fractions.validation);
    while (n > 0 && nTest + nValidation > n - 1) {
      if (nValidation >= nTest && nValidation > 0) nValidation--;
      else nTest--;
    }
    own.forEach((clip, i) => {
      const split: SplitName = i < nTest
        ? "test"
        : i < nTest + nValidation
        ? "validation"
        : "train";
      splits[split].push({ path: clip.path, label });
    });
  });
  for (const s of SPLITS) sortClips(splits[s]);
  return splits;
}

/** Whether files exist, by listing each folder once. */
function fileChecker(): (path: string) => Promise<boolean> {
  const cache = new Map<string, Promise<Set<string>>>();
  const names = async (dir: string) => {
    const out = new Set<string>();
    try {
      for await (const e of Deno.readDir(dir)) {
        if (!e.isDirectory) out.add(e.name);
      }
    } catch {
      // a missing or unreadable folder holds no files
    }
    return out;
  };
  return async (path) => {
    const dir = dirname(path);
    let listing = cache.get(dir);
    if (!listing) {
      listing = names(dir);
      cache.set(dir, listing);
    }
    return (await listing).has(basename(path));
  };
}

function fractionProblem(
  data: FolderData,
  root: string,
): DataProblem | undefined {
  const { validation, test } = data.split;
  if (validation + test < 1) return undefined;
  return {
    path: root,
    message:
      `Split fractions validation ${validation} + test ${test} leave no clips for train: their sum must be below 1`,
  };
}

function seededHint(data: FolderData): string {
  return `: too few clips per class for the split fractions (validation ${data.split.validation}, test ${data.split.test})`;
}

/** Drops the clips `exclude` names as bad, before a seeded split. */
async function leaveOut(
  clips: readonly Labelled[],
  exclude: IndexContext["exclude"],
): Promise<
  { kept: Labelled[]; excluded: { path: string; reason: string }[] }
> {
  if (!exclude) return { kept: [...clips], excluded: [] };
  const bad = await exclude(clips.map((c) => c.path));
  return {
    kept: clips.filter((c) => !bad.has(c.path)),
    excluded: [...bad].map(([path, reason]) => ({ path, reason })),
  };
}

async function fromFolders(
  data: FolderData,
  root: string,
  seed: number,
  exclude?: IndexContext["exclude"],
): Promise<IndexResult> {
  const listing = await listDir(root);
  if (typeof listing === "string") {
    return {
      problems: [{ path: root, message: `Cannot read folder: ${listing}` }],
    };
  }
  const problems: DataProblem[] = [];
  const fractions = fractionProblem(data, root);
  if (fractions) problems.push(fractions);
  const present = new Set(listing.dirs);
  const classes = data.classes ?? listing.dirs;
  if (!data.classes && classes.length < 2) {
    problems.push({
      path: root,
      message: classes.length === 0
        ? "Cannot find class folders: put each class's .wav files in a folder named after it, or set manifest"
        : `Cannot find a second class folder besides "${
          classes[0]
        }": a classifier needs at least 2 classes`,
    });
  }
  const clips: Labelled[] = [];
  for (const [label, cls] of classes.entries()) {
    const dir = join(root, cls);
    if (!present.has(cls)) {
      problems.push({
        path: dir,
        message: `Class "${cls}" has no clips: cannot find its folder`,
      });
      continue;
    }
    const wavs = await walkWavs(dir, problems);
    if (wavs.length === 0) {
      problems.push({
        path: dir,
        message: `Class "${cls}" has no clips: its folder holds no .wav files`,
      });
    }
    for (const path of wavs) clips.push({ path, label });
  }
  if (problems.length > 0) return { problems };
  const { kept, excluded } = await leaveOut(clips, exclude);
  const splits = stratifiedSplit(kept, classes, data.split, seed);
  problems.push(
    ...emptySplitProblems(splits, root, new Set(), seededHint(data)),
  );
  if (problems.length > 0) return { problems };
  const ignored = listing.dirs.filter((d) => !classes.includes(d));
  return {
    index: {
      classes,
      splits,
      info: {
        layout: "folder",
        root,
        source: "folders",
        splitBy: "seed",
        seed,
        fractions: { ...data.split },
        ...(ignored.length > 0 ? { ignoredFolders: ignored } : {}),
      },
    },
    problems,
    excluded,
  };
}

const SPLIT_NAMES: ReadonlySet<string> = new Set(SPLITS);

/**
 * One message for every manifest label missing from `classes`: the labels
 * (first ten) with their row counts and first line, and the classes listed.
 */
function unknownLabelsMessage(
  name: string,
  unknown: ReadonlyMap<string, { rows: number; line: number }>,
  classes: readonly string[],
): string {
  const rows = [...unknown.values()].reduce((n, u) => n + u.rows, 0);
  const shown = [...unknown].slice(0, 10).map(([label, u]) =>
    `"${label}" (${u.rows} row${u.rows === 1 ? "" : "s"} from line ${u.line})`
  );
  if (unknown.size > 10) shown.push(`… ${unknown.size - 10} more`);
  return `${rows} row${rows === 1 ? "" : "s"} of ${name} ha${
    rows === 1 ? "s" : "ve"
  } ${
    unknown.size === 1 ? "a label" : `${unknown.size} labels`
  } not in classes: ${shown.join(", ")}; classes lists ${classes.join(", ")}`;
}

async function fromManifest(
  data: FolderData,
  root: string,
  manifestName: string,
  seed: number,
  exclude?: IndexContext["exclude"],
): Promise<IndexResult> {
  const manifest = resolve(root, manifestName);
  const read = await readText(manifest);
  if (!("text" in read)) {
    return {
      problems: [{
        path: manifest,
        message: "missing" in read
          ? `Cannot find manifest ${manifestName}`
          : `Cannot read manifest ${manifestName}: ${read.error}`,
      }],
    };
  }
  let rows: CsvRow[];
  try {
    rows = parseCsv(read.text);
  } catch (e) {
    return {
      problems: [{
        path: manifest,
        message: `Cannot parse manifest ${manifestName} as CSV: ${
          errorMessage(e).replace(/^Cannot parse the CSV: /, "")
        }`,
      }],
    };
  }
  const problems: DataProblem[] = [];
  const name = manifestName;
  const first = rows[0]?.cells.map((c) => c.toLowerCase());
  const hasHeader = first !== undefined && first[0] === "path" &&
    first[1] === "label" && (first.length === 2 || first[2] === "split");
  if (hasHeader) rows = rows.slice(1);
  if (rows.length === 0) {
    return {
      problems: [{
        path: manifest,
        message: `Manifest ${name} has no rows: expected path,label[,split]`,
      }],
    };
  }
  const width = hasHeader ? first.length : rows[0].cells.length;
  if (width !== 2 && width !== 3) {
    return {
      problems: [{
        path: manifest,
        message: `Line ${
          rows[0].line
        } of ${name} has ${width} fields: expected path,label or path,label,split`,
      }],
    };
  }
  const hasSplit = width === 3;
  if (!hasSplit) {
    const fractions = fractionProblem(data, root);
    if (fractions) problems.push(fractions);
  }

  const known = data.classes ? new Set(data.classes) : undefined;
  // Labels missing from `classes`, reported once each (not once per row).
  const unknown = new Map<string, { rows: number; line: number }>();
  const exists = fileChecker();
  const parsed: { path: string; cls: string; split?: SplitName }[] = [];
  for (const { cells, line } of rows) {
    const where = `Line ${line} of ${name}`;
    if (cells.length !== width) {
      problems.push({
        path: manifest,
        message: `${where} has ${cells.length} field${
          cells.length === 1 ? "" : "s"
        }: expected ${width} (${hasSplit ? "path,label,split" : "path,label"})`,
      });
      continue;
    }
    const [rel, cls, split] = cells;
    let ok = true;
    if (rel === "" || cls === "") {
      problems.push({
        path: manifest,
        message: `${where} has an empty ${rel === "" ? "path" : "label"}`,
      });
      continue;
    }
    if (known && !known.has(cls)) {
      const u = unknown.get(cls);
      if (u) u.rows++;
      else unknown.set(cls, { rows: 1, line });
      ok = false;
    }
    if (hasSplit && !SPLIT_NAMES.has(split)) {
      problems.push({
        path: manifest,
        message:
          `${where} has unknown split "${split}": expected train, validation or test`,
      });
      ok = false;
    }
    const path = resolve(root, rel);
    if (!(await exists(path))) {
      problems.push({
        path,
        message: `${where} names a missing file "${rel}"`,
      });
      ok = false;
    }
    if (ok) {
      parsed.push({
        path,
        cls,
        split: hasSplit ? split as SplitName : undefined,
      });
    }
  }

  if (known && unknown.size > 0) {
    problems.push({
      path: manifest,
      message: unknownLabelsMessage(name, unknown, [...known]),
    });
  }
  const classes = data.classes ??
    [...new Set(parsed.map((p) => p.cls))].sort(byCodePoint);
  const ids = new Map(classes.map((c, i) => [c, i]));
  if (!data.classes && classes.length < 2 && problems.length === 0) {
    problems.push({
      path: manifest,
      message: `Manifest ${name} names ${
        classes.length === 0 ? "no class" : `only the class "${classes[0]}"`
      }: a classifier needs at least 2 classes`,
    });
  }
  // With labels outside `classes`, the list itself is likely wrong: empty
  // classes would only repeat that.
  for (const cls of unknown.size > 0 ? [] : classes) {
    if (!parsed.some((p) => p.cls === cls)) {
      problems.push({
        path: manifest,
        message: `Class "${cls}" has no clips in ${name}`,
      });
    }
  }
  if (problems.length > 0) return { problems };

  const clips = parsed.map((p) => ({ path: p.path, label: ids.get(p.cls)! }));
  let splits: Record<SplitName, ClipRef[]>;
  let excluded: { path: string; reason: string }[] = [];
  if (hasSplit) {
    splits = { train: [], validation: [], test: [] };
    parsed.forEach((p, i) => splits[p.split!].push(clips[i]));
    for (const s of SPLITS) sortClips(splits[s]);
    problems.push(...emptySplitProblems(splits, manifest));
  } else {
    const left = await leaveOut(clips, exclude);
    excluded = left.excluded;
    splits = stratifiedSplit(left.kept, classes, data.split, seed);
    problems.push(
      ...emptySplitProblems(splits, manifest, new Set(), seededHint(data)),
    );
  }
  if (problems.length > 0) return { problems };
  return {
    index: {
      classes,
      splits,
      info: {
        layout: "folder",
        root,
        source: "manifest",
        manifest,
        splitBy: hasSplit ? "manifest" : "seed",
        ...(hasSplit ? {} : { seed, fractions: { ...data.split } }),
      },
    },
    problems,
    excluded,
  };
}

async function index(
  data: FolderData,
  ctx: IndexContext,
): Promise<IndexResult> {
  const root = resolve(data.root);
  const rootProblem = await checkRoot(root, "the dataset folder");
  if (rootProblem) return { problems: [rootProblem] };
  return data.manifest === undefined
    ? fromFolders(data, root, ctx.seed, ctx.exclude)
    : fromManifest(data, root, data.manifest, ctx.seed, ctx.exclude);
}

/** The `folder` layout. */
export const layout: Layout<FolderData> = {
  id: "folder",
  data: FolderData,
  index,
  classes: (data) => data.classes,
};
