/**
 * The Slurm executor: writes one job-array script, `grid.sbatch`, into the
 * grid folder (array task `i` runs grid run `i` with `grid exec`; its log is
 * `logs/task-<i>.log`, appended across attempts), submits it with `sbatch`,
 * and records the job ids in `grid.json`. Runs that ensemble other repeats
 * go in a second `sbatch` of the same script with
 * `--dependency=afterany:<first job>`. The script asks for `--requeue`: a
 * preempted, requeued or killed task starts again and `grid exec` resumes it
 * from its run folder's last checkpoint. Also: the states `squeue`/`sacct`
 * report for each array task, and `scancel`.
 *
 * @module
 */
import { join, resolve } from "node:path";
import { writeFileAtomic } from "../pipeline/atomic.ts";
import { readGrid, recordSubmission, runFolder } from "./grid_file.ts";
import type { GridFile, GridSubmission } from "./grid_file.ts";
import { runState } from "./run_state.ts";
import { execCommand } from "./local.ts";

/** `sbatch` settings. */
export interface SlurmOptions {
  /** `--partition`. */
  readonly partition?: string;
  /** `--gres`, e.g. `gpu:1`. */
  readonly gres?: string;
  /** `--time`, e.g. `04:00:00`. */
  readonly time?: string;
  /** `--account`. */
  readonly account?: string;
  /** `--cpus-per-task` (default 2). */
  readonly cpusPerTask?: number;
  /** Further `#SBATCH` arguments, each as written after `#SBATCH` (e.g. `--mem=16G`). */
  readonly sbatchArgs?: readonly string[];
  /** The Deno executable the script runs (default: this one; `$DENO` overrides at run time). */
  readonly deno?: string;
  /** The `sbatch` command (default `sbatch`). */
  readonly sbatch?: string;
}

/** The script file name inside the grid folder. */
export const SLURM_SCRIPT = "grid.sbatch";

const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

/**
 * The job-array script: `#SBATCH` header, an "adapt here" block (modules,
 * Deno, paths), then `exec deno … grid exec <dir> $SLURM_ARRAY_TASK_ID`.
 * The array range is given at submission (`sbatch --array=…`).
 *
 * @param grid The grid record.
 * @param dir The grid folder (made absolute: tasks run on other nodes).
 * @param options sbatch settings.
 */
export function slurmScript(
  grid: GridFile,
  dir: string,
  options: SlurmOptions = {},
): string {
  const abs = resolve(dir);
  const args = execCommand(abs, 0);
  const config = args[args.indexOf("--config") + 1];
  const root = config.replace(/\/deno\.json$/, "");
  const header = [
    `--job-name=amaut-${grid.name}`,
    `--output=${join(abs, "logs", "task-%a.log")}`,
    "--open-mode=append",
    "--requeue",
    `--cpus-per-task=${options.cpusPerTask ?? 2}`,
    ...(options.partition ? [`--partition=${options.partition}`] : []),
    ...(options.gres ? [`--gres=${options.gres}`] : []),
    ...(options.time ? [`--time=${options.time}`] : []),
    ...(options.account ? [`--account=${options.account}`] : []),
    ...(options.sbatchArgs ?? []),
  ];
  for (const h of header) {
    if (/[\n\r]/.test(h)) {
      throw new Error(
        `Cannot write the sbatch argument ${
          JSON.stringify(h)
        }: it holds a line break`,
      );
    }
  }
  return `#!/bin/bash
# Slurm job array of the grid "${grid.name}" (${grid.runs.length} runs), written by deno task grid.
# Array task i runs grid run i (grid.json "runs"[i]); submit with
#   sbatch --array=0-${grid.runs.length - 1} ${SLURM_SCRIPT}
# (deno task grid run <dir> --executor slurm does that, ensembling runs in a
# second array that depends on the first). A requeued, preempted or killed
# task restarts here and resumes from its run folder's last checkpoint.
${header.map((h) => `#SBATCH ${h}`).join("\n")}
set -euo pipefail

# ---- adapt to your cluster --------------------------------------------------
# Load what the nodes need, e.g.:
#   module load deno        (or put Deno on PATH; DENO below picks it)
#   export DENO_DIR=/shared/deno-cache   (npm packages cached once, on a shared FS)
# The grid folder, the repository and the data must be on a file system every
# node sees at the same path.
DENO="\${DENO:-${options.deno ?? Deno.execPath()}}"
AMAUT_ROOT="\${AMAUT_ROOT:-${root}}"
GRID_DIR=${quote(abs)}
# ------------------------------------------------------------------------------

cd ${quote(grid.cwd)}
echo "--- $(date -u +%Y-%m-%dT%H:%M:%SZ) job \${SLURM_ARRAY_JOB_ID:-?}_\${SLURM_ARRAY_TASK_ID:-?} attempt \${SLURM_RESTART_COUNT:-0} on $(hostname)"
exec "$DENO" run --allow-read --allow-write --allow-env --allow-run \\
  --config "$AMAUT_ROOT/deno.json" "$AMAUT_ROOT/grid/cli.ts" \\
  exec "$GRID_DIR" "$SLURM_ARRAY_TASK_ID"
`;
}

async function sbatch(
  command: string,
  args: string[],
  cwd: string,
): Promise<string> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(command, { args, cwd, stdin: "null" })
      .output();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new Error(
        `Cannot submit to Slurm: "${command}" is not on PATH (run this on a Slurm login node, or use --executor local)`,
      );
    }
    throw error;
  }
  const text = new TextDecoder().decode(out.stdout).trim();
  if (!out.success) {
    throw new Error(
      `Cannot submit to Slurm: ${command} ${args.join(" ")} failed: ${
        new TextDecoder().decode(out.stderr).trim() || `exit ${out.code}`
      }`,
    );
  }
  // --parsable prints "jobid" or "jobid;cluster".
  const id = text.split("\n").pop()!.split(";")[0].trim();
  if (!/^\d+$/.test(id)) {
    throw new Error(
      `Cannot read the job id from sbatch's output "${text}"`,
    );
  }
  return id;
}

/**
 * Writes `grid.sbatch` and submits the grid's unfinished runs: independent
 * runs in one array, ensembling runs in a second one after it. Records the
 * submission in grid.json.
 *
 * @param dir The grid folder.
 * @param options sbatch settings.
 * @param only Run indices to submit (default: every run not finished).
 * @returns The recorded submission (its job ids).
 */
export async function submitSlurm(
  dir: string,
  options: SlurmOptions = {},
  only?: readonly number[],
): Promise<GridSubmission> {
  const grid = await readGrid(dir);
  const script = slurmScript(grid, dir, options);
  await Deno.mkdir(join(dir, "logs"), { recursive: true });
  await writeFileAtomic(join(dir, SLURM_SCRIPT), script);
  await Deno.chmod(join(dir, SLURM_SCRIPT), 0o755).catch(() => {});
  const wanted = new Set(only ?? grid.runs.map((r) => r.index));
  const todo: number[] = [];
  for (const run of grid.runs) {
    if (!wanted.has(run.index)) continue;
    const s = await runState(runFolder(dir, run), run);
    if (s.state !== "ok") todo.push(run.index);
  }
  if (todo.length === 0) {
    throw new Error(
      `Cannot submit grid "${dir}": every selected run has finished (see deno task grid status ${dir})`,
    );
  }
  const byIndex = new Map(grid.runs.map((r) => [r.index, r]));
  const first = todo.filter((i) => byIndex.get(i)!.after.length === 0);
  const second = todo.filter((i) => byIndex.get(i)!.after.length > 0);
  const command = options.sbatch ?? "sbatch";
  const jobIds: string[] = [];
  const abs = resolve(dir);
  if (first.length > 0) {
    jobIds.push(
      await sbatch(
        command,
        ["--parsable", `--array=${first.join(",")}`, SLURM_SCRIPT],
        abs,
      ),
    );
  }
  if (second.length > 0) {
    jobIds.push(
      await sbatch(command, [
        "--parsable",
        `--array=${second.join(",")}`,
        ...(jobIds.length ? [`--dependency=afterany:${jobIds[0]}`] : []),
        SLURM_SCRIPT,
      ], abs),
    );
  }
  const submission: GridSubmission = {
    executor: "slurm",
    at: new Date().toISOString(),
    runs: todo,
    jobIds,
    file: SLURM_SCRIPT,
  };
  await recordSubmission(dir, submission);
  return submission;
}

/** Slurm's state of each array task (by task index), from squeue, else sacct. */
export async function slurmStates(
  jobIds: readonly string[],
): Promise<Map<number, string>> {
  const states = new Map<number, string>();
  if (jobIds.length === 0) return states;
  const run = async (cmd: string, args: string[]) => {
    try {
      const out = await new Deno.Command(cmd, { args, stdin: "null" })
        .output();
      return out.success ? new TextDecoder().decode(out.stdout) : "";
    } catch {
      return "";
    }
  };
  // sacct first (finished tasks), then squeue (live state wins).
  const acct = await run("sacct", [
    "-n",
    "-P",
    "-X",
    "-j",
    jobIds.join(","),
    "-o",
    "JobID,State",
  ]);
  const queue = await run("squeue", [
    "-h",
    "-r",
    "-j",
    jobIds.join(","),
    "-o",
    "%i|%T",
  ]);
  for (const text of [acct, queue]) {
    for (const line of text.split("\n")) {
      const [id, state] = line.trim().split("|");
      const m = id?.match(/^\d+_(\d+)$/);
      if (m && state) states.set(Number(m[1]), state.split(" ")[0]);
    }
  }
  return states;
}

/**
 * Cancels the grid's Slurm jobs (`scancel` every recorded job id).
 *
 * @param dir The grid folder.
 * @param scancel The `scancel` command (default `scancel`).
 * @returns The job ids cancelled.
 */
export async function cancelSlurm(
  dir: string,
  scancel = "scancel",
): Promise<string[]> {
  const grid = await readGrid(dir);
  const ids = grid.submissions.flatMap((s) => s.jobIds ?? []);
  if (ids.length === 0) return [];
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(scancel, { args: ids, stdin: "null" })
      .output();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new Error(
        `Cannot cancel jobs ${ids.join(", ")}: ${scancel} is not on PATH`,
      );
    }
    throw error;
  }
  if (!out.success) {
    throw new Error(
      `Cannot cancel jobs ${ids.join(", ")}: ${
        new TextDecoder().decode(out.stderr).trim()
      }`,
    );
  }
  return ids;
}
