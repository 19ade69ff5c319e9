/**
 * Grid expansion: spec files × `--vary` values × repeats → the runs of
 * `grid.json`, each compiled (so a bad spec or value fails before anything
 * is written) and its fully resolved spec written to `specs/<name>.yaml` in
 * the grid folder, which `deno task run` runs as is.
 *
 * Repeats get seeds `seed + r` unless `sameSeed` (the reference trains its
 * Mlt members with one seed; on the cpu backend same-seed repeats are
 * identical models, on a GPU they differ through nondeterminism).
 * When a spec's `test_time_augmentation` takes sibling repeats
 * (`siblingRuns: true`), the last repeat of each group waits for the
 * others and ensembles them all (Mlt/Hyb); the earlier repeats run
 * independently, so a grid keeps its parallelism.
 *
 * @module
 */
import { join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";
import { compile } from "../pipeline/compile.ts";
import type { CompiledPipeline } from "../pipeline/compile.ts";
import { writeFileAtomic } from "../pipeline/atomic.ts";
import { BUILTIN_STAGES } from "../stages/mod.ts";
import { GRID_FORMAT, writeGrid } from "./grid_file.ts";
import type { GridFile, GridRun } from "./grid_file.ts";

/** One `--vary` axis. */
export interface VaryAxis {
  /** Dotted spec path, e.g. `data.fold`. */
  readonly key: string;
  /** Values as `--set` would take them. */
  readonly values: readonly string[];
}

/** What to expand. */
export interface GridOptions {
  /** Spec files: the main spec, then any ablation specs. */
  readonly specs: readonly string[];
  /** `--vary key=a,b,c` texts. */
  readonly vary?: readonly string[];
  /** `--set path=value` texts applied to every run. */
  readonly set?: readonly string[];
  /** Repeats per spec and vary combination (default 1). */
  readonly repeat?: number;
  /** Give every repeat the spec's seed instead of `seed + r`. */
  readonly sameSeed?: boolean;
  /** Lockfile for URL stages. */
  readonly lockfile?: string;
  /** The command line, recorded in grid.json. */
  readonly command?: readonly string[];
}

/**
 * Parses `--vary` texts (`data.fold=0,1,2`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseVary } from "./expand.ts";
 * assert.deepEqual(parseVary(["data.fold=0,1"]), [{ key: "data.fold", values: ["0", "1"] }]);
 * ```
 * @throws {Error} "Cannot use --vary …" naming the text.
 */
export function parseVary(texts: readonly string[]): VaryAxis[] {
  const axes: VaryAxis[] = [];
  for (const text of texts) {
    const eq = text.indexOf("=");
    const key = eq > 0 ? text.slice(0, eq).trim() : "";
    const values = eq > 0
      ? text.slice(eq + 1).split(",").map((v) => v.trim())
      : [];
    if (!/^[A-Za-z_][\w-]*(\.[\w-]+)+$/.test(key) && !/^\w+$/.test(key)) {
      throw new Error(
        `Cannot use --vary "${text}": write a dotted spec path, "=", then comma-separated values (--vary data.fold=0,1,2)`,
      );
    }
    if (values.length === 0 || values.some((v) => v === "")) {
      throw new Error(
        `Cannot use --vary "${text}": it has an empty value; list values separated by commas (--vary ${key}=0,1,2)`,
      );
    }
    if (new Set(values).size !== values.length) {
      throw new Error(
        `Cannot use --vary "${text}": a value is listed twice`,
      );
    }
    if (axes.some((a) => a.key === key)) {
      throw new Error(
        `Cannot use --vary "${text}": ${key} is already varied; give all its values in one --vary`,
      );
    }
    axes.push({ key, values });
  }
  return axes;
}

/** Every combination of the axes' values, first axis slowest. */
export function combinations(
  axes: readonly VaryAxis[],
): Record<string, string>[] {
  let out: Record<string, string>[] = [{}];
  for (const axis of axes) {
    out = out.flatMap((c) => axis.values.map((v) => ({ ...c, [axis.key]: v })));
  }
  return out;
}

/** A file-name-safe run name: `<preset>[-<last key segment><value>]…[-r<k>]`. */
export function runName(
  preset: string,
  vary: Readonly<Record<string, string>>,
  repeat: number,
  repeats: number,
): string {
  const parts = [preset];
  for (const [key, value] of Object.entries(vary)) {
    parts.push(`${key.split(".").pop()}${value}`);
  }
  if (repeats > 1) parts.push(`r${repeat}`);
  return parts.join("-").replace(/[^A-Za-z0-9._-]+/g, "_");
}

/** Whether the compiled spec's TTAu ensembles sibling repeats. */
function takesSiblings(c: CompiledPipeline): boolean {
  return c.plan.stages.some((s) =>
    s.id === "test_time_augmentation" &&
    (s.options as { siblingRuns?: unknown }).siblingRuns === true
  );
}

/**
 * The resolved spec as a file that runs from `specsDir`: relative local
 * stage paths are rewritten relative to that folder.
 */
function portableSpec(c: CompiledPipeline, specsDir: string): string {
  const spec = parseYaml(c.resolvedYaml) as {
    stages: { use: string }[];
  };
  c.plan.stages.forEach((s, i) => {
    if (s.specifier?.startsWith("file:")) {
      const rel = relative(specsDir, fileURLToPath(s.specifier));
      spec.stages[i].use = rel.startsWith(".") ? rel : `./${rel}`;
    }
  });
  return stringifyYaml(spec);
}

/** Thrown when a spec of the grid does not compile; carries the formatted error. */
export class GridSpecError extends Error {
  /** The compile error (a `ConfigError`). */
  override readonly cause: unknown;
  /** The overrides that were applied. */
  readonly overrides: readonly string[];
  constructor(file: string, overrides: readonly string[], cause: unknown) {
    super(
      `Cannot compile ${file} with ${
        overrides.length ? overrides.join(" ") : "no overrides"
      }`,
    );
    this.name = "GridSpecError";
    this.cause = cause;
    this.overrides = overrides;
  }
}

/**
 * Expands and compiles the grid (nothing written). Each run's spec is
 * compiled twice: from the spec file with its overrides, then from the
 * resolved YAML (as `specs/<name>.yaml` will hold it), whose hash is the
 * one the run records.
 *
 * @param options Specs, axes, repeats.
 * @param gridDir The grid folder the runs will live in (for relative stage paths).
 * @returns The grid record, with `submissions` empty.
 * @throws {GridSpecError} When a run's spec does not compile.
 */
export async function planGrid(
  options: GridOptions,
  gridDir: string,
): Promise<GridFile> {
  const repeats = options.repeat ?? 1;
  if (!Number.isInteger(repeats) || repeats < 1) {
    throw new Error(
      `Cannot repeat ${repeats} times: --repeat must be a positive integer`,
    );
  }
  if (options.specs.length === 0) {
    throw new Error("Cannot make a grid without a spec file");
  }
  const axes = parseVary(options.vary ?? []);
  const combos = combinations(axes);
  const specsDir = resolve(gridDir, "specs");
  const tmp = await Deno.makeTempDir({ prefix: "amaut-grid-" });
  const runs: GridRun[] = [];
  const names = new Set<string>();
  try {
    for (const specFile of options.specs) {
      for (const vary of combos) {
        const group: number[] = [];
        for (let r = 0; r < repeats; r++) {
          const base = [
            ...(options.set ?? []),
            ...Object.entries(vary).map(([k, v]) => `${k}=${v}`),
          ];
          const compileWith = async (overrides: string[]) => {
            try {
              return await compile(specFile, {
                builtins: BUILTIN_STAGES,
                overrides,
                lockfile: options.lockfile,
              });
            } catch (error) {
              throw new GridSpecError(specFile, overrides, error);
            }
          };
          let overrides = base;
          let c = await compileWith(overrides);
          if (r > 0 && !options.sameSeed) {
            overrides = [...base, `runtime.seed=${c.plan.runtime.seed + r}`];
            c = await compileWith(overrides);
          }
          let name = runName(c.plan.name, vary, r, repeats);
          for (let n = 2; names.has(name); n++) {
            name = `${runName(c.plan.name, vary, r, repeats)}_${n}`;
          }
          names.add(name);
          const spec = portableSpec(c, specsDir);
          // Compile the resolved spec as the run will: its hash is the run's.
          const file = join(tmp, `${name}.yaml`);
          await Deno.writeTextFile(file, spec);
          let again: CompiledPipeline;
          try {
            again = await compile(file, {
              builtins: BUILTIN_STAGES,
              lockfile: options.lockfile,
            });
          } catch (error) {
            throw new GridSpecError(file, [], error);
          }
          const index = runs.length;
          const ensemble = takesSiblings(c);
          runs.push({
            index,
            name,
            preset: c.plan.name,
            specFile,
            vary,
            repeat: r,
            seed: c.plan.runtime.seed,
            specHash: again.plan.specHash,
            spec,
            overrides,
            runDir: `runs/${name}`,
            after: ensemble && repeats > 1 && r === repeats - 1
              ? [...group]
              : [],
            ensemble,
          });
          group.push(index);
        }
      }
    }
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
  return {
    format: GRID_FORMAT,
    name: runs[0].preset,
    createdAt: new Date().toISOString(),
    cwd: Deno.cwd(),
    command: options.command ?? [],
    axes: Object.fromEntries(axes.map((a) => [a.key, a.values])),
    repeat: repeats,
    sameSeed: options.sameSeed ?? false,
    runs,
    submissions: [],
  };
}

/** The header line of each `specs/<name>.yaml`. */
export const SPEC_HEADER =
  "# Fully resolved spec of one grid run (from grid.json); deno task run this file to reproduce it\n";

/**
 * Writes a planned grid: `grid.json` and `specs/<name>.yaml` per run, and
 * creates `runs/` and `logs/`. Refuses a folder that already holds a grid.
 *
 * @param dir The grid folder (created).
 * @param grid The output of {@linkcode planGrid}.
 */
export async function writeGridFolder(
  dir: string,
  grid: GridFile,
): Promise<void> {
  if (await Deno.stat(join(dir, "grid.json")).catch(() => undefined)) {
    throw new Error(
      `Cannot make a grid in "${dir}": it already holds grid.json; pick another --out or run that grid (deno task grid run ${dir})`,
    );
  }
  for (const sub of ["specs", "runs", "logs"]) {
    await Deno.mkdir(join(dir, sub), { recursive: true });
  }
  for (const run of grid.runs) {
    await writeFileAtomic(
      join(dir, "specs", `${run.name}.yaml`),
      SPEC_HEADER + run.spec,
    );
  }
  await writeGrid(dir, grid);
}

/** Default grid folder: `runs/grid-<name>-<UTC timestamp>`. */
export function defaultGridDir(name: string, now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, "").replace("T", "-")
    .slice(0, 15);
  return join("runs", `grid-${name}-${stamp}`);
}

/** The folder of a grid run's spec file. */
export function specPath(dir: string, run: GridRun): string {
  return join(dir, "specs", `${run.name}.yaml`);
}
