/**
 * `deno task grid status <dir>`: every run's state from its run folder
 * (not started, running, ok, failed, interrupted; epochs trained; resumable; adapter),
 * joined with what the scheduler says where it was submitted to Slurm
 * (`squeue`, then `sacct`, per array task). A folder that says "running"
 * while Slurm no longer runs the task was killed; its next attempt resumes.
 *
 * @module
 */
import { readGrid, runFolder } from "./grid_file.ts";
import type { GridFile } from "./grid_file.ts";
import { runState } from "./run_state.ts";
import type { RunState } from "./run_state.ts";
import { slurmStates } from "./slurm.ts";

/** One row of the status table. */
export interface StatusRow extends RunState {
  /** The Slurm state of the task (PENDING, RUNNING, COMPLETED, CANCELLED, …), when submitted there. */
  readonly scheduler?: string;
  /** `<job>_<task>`, when submitted to Slurm. */
  readonly job?: string;
}

/**
 * Reads the state of every run of a grid.
 *
 * @param dir The grid folder.
 */
export async function gridStatus(
  dir: string,
): Promise<{ grid: GridFile; rows: StatusRow[] }> {
  const grid = await readGrid(dir);
  const scheduler = new Map<number, { state: string; job: string }>();
  for (const sub of grid.submissions) {
    if (sub.executor !== "slurm" || !sub.jobIds?.length) continue;
    for (const jobId of sub.jobIds) {
      const states = await slurmStates([jobId]);
      for (const [task, state] of states) {
        scheduler.set(task, { state, job: `${jobId}_${task}` });
      }
    }
  }
  const rows = await Promise.all(grid.runs.map(async (run) => {
    const s = await runState(runFolder(dir, run), run);
    const q = scheduler.get(run.index);
    return { ...s, ...(q ? { scheduler: q.state, job: q.job } : {}) };
  }));
  return { grid, rows };
}

/** The status table as text. */
export function formatStatus(
  grid: GridFile,
  rows: readonly StatusRow[],
): string {
  const head = ["#", "run", "state", "epochs", "resumable", "slurm", "adapter"];
  const body = rows.map((r) => [
    String(r.index),
    r.name,
    r.state,
    r.epochs !== undefined
      ? `${r.epochsDone}/${r.epochs}`
      : String(r.epochsDone),
    r.resumable ? "yes" : "no",
    r.scheduler ? `${r.scheduler} (${r.job})` : "–",
    r.adapter ?? r.backend ?? "–",
  ]);
  const widths = head.map((h, i) =>
    Math.max(h.length, ...body.map((b) => b[i].length))
  );
  const line = (cells: string[]) =>
    cells.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd();
  const counts = new Map<string, number>();
  for (const r of rows) counts.set(r.state, (counts.get(r.state) ?? 0) + 1);
  return [
    `grid "${grid.name}": ${rows.length} runs (${
      [...counts].map(([k, v]) => `${v} ${k}`).join(", ")
    })`,
    line(head),
    ...body.map(line),
  ].join("\n");
}
