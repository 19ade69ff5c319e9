/**
 * The grid record, `grid.json`: every run of an experiment grid with its
 * fully resolved spec (YAML text), name, seed, run folder and the grid axes
 * (spec file, `--vary` values, repeat), plus each submission to an executor
 * (the Slurm job ids, the k8s manifest). The file alone reproduces every run:
 * write a run's `spec` to a file and `deno task run` it.
 *
 * @module
 */
import { join, resolve } from "node:path";
import { writeJsonAtomic } from "../pipeline/atomic.ts";

/** Format tag of `grid.json`. */
export const GRID_FORMAT = "amaut-grid/1";

/** One run of a grid. */
export interface GridRun {
  /** Position in `runs` (the Slurm array index and k8s completion index). */
  readonly index: number;
  /** Unique run name, e.g. `am-fold0-r1`; also its folder under `runs/`. */
  readonly name: string;
  /** The spec's `name` (the preset the report groups by, e.g. `am`, `cs_cls`). */
  readonly preset: string;
  /** The spec file it came from, as given on the command line. */
  readonly specFile: string;
  /** The `--vary` values of this run, by dotted path (e.g. `{"data.fold": "0"}`). */
  readonly vary: Readonly<Record<string, string>>;
  /** 0-based repeat number. */
  readonly repeat: number;
  /** The run's seed (`runtime.seed` of `spec`). */
  readonly seed: number;
  /** Hash of the resolved spec, as the run's plan and checkpoints record it. */
  readonly specHash: string;
  /** The fully resolved spec, YAML (also written to `specs/<name>.yaml`). */
  readonly spec: string;
  /** Every `--set` applied to the spec file to get `spec`, in order. */
  readonly overrides: readonly string[];
  /** The run folder, relative to the grid folder (`runs/<name>`). */
  readonly runDir: string;
  /** Runs (indices) that must finish first: the earlier repeats whose models this run ensembles (TTAu Mlt/Hyb). */
  readonly after: readonly number[];
  /** Whether the spec's `test_time_augmentation` takes sibling repeats (`siblingRuns: true`). */
  readonly ensemble: boolean;
}

/** One submission of the grid to an executor. */
export interface GridSubmission {
  readonly executor: "local" | "slurm" | "k8s-manifest";
  /** ISO 8601 time of the submission. */
  readonly at: string;
  /** Run indices submitted. */
  readonly runs: readonly number[];
  /** Slurm job ids, one per `sbatch` call. */
  readonly jobIds?: readonly string[];
  /** Script or manifest written, relative to the grid folder. */
  readonly file?: string;
  /** Process id of the local executor (for `grid cancel`). */
  readonly pid?: number;
}

/** The content of `grid.json`. */
export interface GridFile {
  readonly format: typeof GRID_FORMAT;
  /** Grid name (first spec's name). */
  readonly name: string;
  /** ISO 8601 creation time. */
  readonly createdAt: string;
  /** Working directory the runs start in (relative data roots resolve there). */
  readonly cwd: string;
  /** The command line that made the grid. */
  readonly command: readonly string[];
  /** The `--vary` axes, by dotted path, in order. */
  readonly axes: Readonly<Record<string, readonly string[]>>;
  /** Repeats per spec and vary combination. */
  readonly repeat: number;
  /** Whether repeats share one seed (`--same-seed`). */
  readonly sameSeed: boolean;
  readonly runs: readonly GridRun[];
  /** Submissions, oldest first. */
  readonly submissions: readonly GridSubmission[];
}

/**
 * Reads and checks `<dir>/grid.json`.
 *
 * @param dir The grid folder.
 * @throws {Error} "Cannot read grid …" when the folder holds no valid grid.json.
 */
export async function readGrid(dir: string): Promise<GridFile> {
  const path = join(dir, "grid.json");
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new Error(
        `Cannot read grid "${dir}": it holds no grid.json (make one with deno task grid <spec.yaml>)`,
      );
    }
    throw error;
  }
  let grid: GridFile;
  try {
    grid = JSON.parse(text);
  } catch (error) {
    throw new Error(
      `Cannot read ${path}: ${
        (error as Error).message
      }; restore it from the grid's history or make the grid again`,
    );
  }
  if (grid?.format !== GRID_FORMAT || !Array.isArray(grid.runs)) {
    throw new Error(
      `Cannot read ${path}: it is not a ${GRID_FORMAT} file (format ${
        JSON.stringify(grid?.format)
      })`,
    );
  }
  return grid;
}

/** Writes `<dir>/grid.json` atomically. */
export function writeGrid(dir: string, grid: GridFile): Promise<void> {
  return writeJsonAtomic(join(dir, "grid.json"), grid);
}

/** A run's folder as an absolute path. */
export function runFolder(dir: string, run: GridRun): string {
  return resolve(dir, run.runDir);
}

/**
 * Appends a submission to `grid.json` (read, add, write atomically).
 *
 * @param dir The grid folder.
 * @param submission What was submitted.
 */
export async function recordSubmission(
  dir: string,
  submission: GridSubmission,
): Promise<void> {
  const grid = await readGrid(dir);
  await writeGrid(dir, {
    ...grid,
    submissions: [...grid.submissions, submission],
  });
}
