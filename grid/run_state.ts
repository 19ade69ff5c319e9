/**
 * A grid run's state as its run folder tells it: not started (no
 * `manifest.json`), running, ok, failed or interrupted (the manifest's `status`), the
 * epochs trained (`metrics.jsonl`) out of the train stage's `epochs`
 * (`plan.json`), whether a checkpoint exists to resume from, and the
 * backend and adapter the run used.
 *
 * @module
 */
import { join } from "node:path";
import type { GridRun } from "./grid_file.ts";

/** The run folder's view of a run. */
export interface RunState {
  readonly index: number;
  readonly name: string;
  /** From the run folder; "running" may be stale when the process was killed. */
  readonly state: "not started" | "running" | "ok" | "failed" | "interrupted";
  /** Distinct training epochs recorded in `metrics.jsonl`. */
  readonly epochsDone: number;
  /** The train stage's `epochs`, when the plan has one. */
  readonly epochs?: number;
  /** `checkpoints/last.json` exists, so a restart resumes. */
  readonly resumable: boolean;
  /** Backend name from the manifest. */
  readonly backend?: string;
  /** The adapter's description (or vendor) from the manifest. */
  readonly adapter?: string;
  /** The manifest's error, when failed. */
  readonly error?: string;
}

async function readJson(path: string): Promise<unknown> {
  try {
    return JSON.parse(await Deno.readTextFile(path));
  } catch {
    return undefined;
  }
}

/** Distinct `epoch` values (1-based) of the train lines of a `metrics.jsonl` text. */
export function trainedEpochs(text: string): number[] {
  const epochs = new Set<number>();
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    try {
      const m = JSON.parse(line) as { epoch?: unknown; split?: unknown };
      if (m.split === "train" && typeof m.epoch === "number") {
        epochs.add(m.epoch);
      }
    } catch {
      // a torn last line is not an epoch
    }
  }
  return [...epochs].sort((a, b) => a - b);
}

/**
 * Reads a run folder's state.
 *
 * @param folder The run folder (absolute or relative to the working directory).
 * @param run The grid run.
 */
export async function runState(
  folder: string,
  run: Pick<GridRun, "index" | "name">,
): Promise<RunState> {
  const manifest = await readJson(join(folder, "manifest.json")) as
    | Record<string, unknown>
    | undefined;
  const plan = await readJson(join(folder, "plan.json")) as
    | { stages?: { id?: string; options?: { epochs?: unknown } }[] }
    | undefined;
  const metrics = await Deno.readTextFile(join(folder, "metrics.jsonl"))
    .catch(() => "");
  const resumable = await Deno.stat(join(folder, "checkpoints", "last.json"))
    .then(() => true, () => false);
  const epochs = plan?.stages?.find((s) => s.id === "train")?.options?.epochs;
  const backend = manifest?.backend as
    | { name?: string; adapter?: { description?: string; vendor?: string } }
    | undefined;
  const status = manifest?.status;
  return {
    index: run.index,
    name: run.name,
    state: status === "ok" || status === "failed" || status === "running" ||
        status === "interrupted"
      ? status
      : "not started",
    epochsDone: trainedEpochs(metrics).length,
    ...(typeof epochs === "number" ? { epochs } : {}),
    resumable,
    ...(backend?.name ? { backend: backend.name } : {}),
    ...(backend?.adapter
      ? {
        adapter: backend.adapter.description || backend.adapter.vendor || "?",
      }
      : {}),
    ...(typeof manifest?.error === "string" ? { error: manifest.error } : {}),
  };
}
