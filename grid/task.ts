/**
 * Runs one grid run in this process (`deno task grid exec <dir> <index>`,
 * what every executor starts): compiles `specs/<name>.yaml`, checks its hash
 * against `grid.json`, and runs it in `runs/<name>`. A run folder that
 * already finished is left alone; one with a checkpoint is resumed
 * (`--resume`: training continues after the last saved epoch, never from
 * scratch); one without a checkpoint starts again in the same folder. The
 * last repeat of an ensembling spec gets the other repeats as
 * `siblingRuns` and refuses to start before they finished (or, with
 * `wait`, polls until they have).
 *
 * @module
 */
import { join } from "node:path";
import { compile } from "../pipeline/compile.ts";
import { runPipeline } from "../pipeline/run.ts";
import type { RunResult } from "../pipeline/run.ts";
import { BUILTIN_STAGES } from "../stages/mod.ts";
import { readGrid, runFolder } from "./grid_file.ts";
import { specPath } from "./expand.ts";
import { runState } from "./run_state.ts";

/** How to run one task. */
export interface TaskOptions {
  /** Receives human-readable lines. */
  readonly console?: (line: string) => void;
  /** Cancels the run (its last checkpoint stays). */
  readonly signal?: AbortSignal;
  /** Poll (every `pollSeconds`) until the runs this one ensembles finished, instead of refusing. */
  readonly wait?: boolean;
  /** Seconds between polls with `wait` (default 30). */
  readonly pollSeconds?: number;
}

/** What a task did. */
export interface TaskResult {
  readonly name: string;
  readonly runDir: string;
  /** `done`: it had already finished; `resumed`: continued from a checkpoint; `started`: from the beginning. */
  readonly outcome: "done" | "resumed" | "started";
  readonly result?: RunResult;
}

/** The environment variables among `keys` that are set, by name. */
function envFacts(keys: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of keys) {
    const v = Deno.env.get(k);
    if (v !== undefined) out[k] = v;
  }
  return out;
}

/** Facts about the scheduler's attempt, from its environment. */
function schedulerFacts(): Record<string, string> {
  return envFacts([
    "SLURM_JOB_ID",
    "SLURM_ARRAY_JOB_ID",
    "SLURM_ARRAY_TASK_ID",
    "SLURM_RESTART_COUNT",
    "SLURM_JOB_NODELIST",
    "JOB_COMPLETION_INDEX",
    "HOSTNAME",
  ]);
}

/** The GPU pinning this process was started with (see pin.ts). */
function pinFacts(): Record<string, string> {
  return envFacts([
    "AMAUT_GPU",
    "CUDA_VISIBLE_DEVICES",
    "DRI_PRIME",
    "MESA_VK_DEVICE_SELECT",
    "MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE",
    "DENO_WEBGPU_BACKEND",
    "DENO_WEBGPU_ADAPTER_NAME",
  ]);
}

/**
 * Runs grid run `index` of the grid in `dir`.
 *
 * @param dir The grid folder.
 * @param index The run's index in grid.json.
 * @throws {Error} "Cannot run …" when the index, spec or ensembled runs are wrong; a `StageError` when the run fails.
 */
export async function runGridTask(
  dir: string,
  index: number,
  options: TaskOptions = {},
): Promise<TaskResult> {
  const say = options.console ?? (() => {});
  const grid = await readGrid(dir);
  const run = grid.runs[index];
  if (!Number.isInteger(index) || !run) {
    throw new Error(
      `Cannot run task ${index} of grid "${dir}": it has runs 0 to ${
        grid.runs.length - 1
      }`,
    );
  }
  const folder = runFolder(dir, run);
  const before = await runState(folder, run);
  if (before.state === "ok") {
    say(`${run.name}: already finished in ${folder}`);
    return { name: run.name, runDir: folder, outcome: "done" };
  }
  // The runs this one ensembles must have finished.
  for (;;) {
    const states = await Promise.all(
      run.after.map((i) =>
        runState(runFolder(dir, grid.runs[i]), grid.runs[i])
      ),
    );
    const pending = states.filter((s) => s.state !== "ok");
    if (pending.length === 0) break;
    const list = pending.map((s) => `${s.name} (${s.state})`).join(", ");
    if (
      !options.wait ||
      pending.some((s) => s.state === "failed" || s.state === "interrupted")
    ) {
      throw new Error(
        `Cannot run ${run.name} yet: it ensembles ${list}, which ha${
          pending.length === 1 ? "s" : "ve"
        } not finished; run the grid again once they have (deno task grid run ${dir})`,
      );
    }
    say(`${run.name}: waiting for ${list}`);
    await new Promise((r) => setTimeout(r, 1000 * (options.pollSeconds ?? 30)));
    if (options.signal?.aborted) throw options.signal.reason;
  }
  const compiled = await compile(specPath(dir, run), {
    builtins: BUILTIN_STAGES,
  });
  if (compiled.plan.specHash !== run.specHash) {
    throw new Error(
      `Cannot run ${run.name}: ${
        specPath(dir, run)
      } no longer matches grid.json (spec hash ${compiled.plan.specHash}, grid.json has ${run.specHash}); restore the file from grid.json's "spec"`,
    );
  }
  const hasPlan = await Deno.stat(join(folder, "plan.json")).then(
    () => true,
    () => false,
  );
  const resume = hasPlan && before.resumable;
  say(
    resume
      ? `${run.name}: resuming in ${folder} after epoch ${before.epochsDone}`
      : `${run.name}: starting in ${folder}`,
  );
  const result = await runPipeline(compiled, {
    ...(resume ? { resume: folder } : { runDir: folder }),
    siblingRuns: run.after.map((i) => runFolder(dir, grid.runs[i])),
    console: say,
    signal: options.signal,
    manifestExtra: {
      grid: {
        dir,
        index,
        name: run.name,
        resumedAfterEpoch: resume ? before.epochsDone : null,
        pin: pinFacts(),
        scheduler: schedulerFacts(),
      },
    },
  });
  return {
    name: run.name,
    runDir: folder,
    outcome: resume ? "resumed" : "started",
    result,
  };
}
