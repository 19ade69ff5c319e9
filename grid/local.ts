/**
 * The local executor: runs a grid's unfinished runs on this machine, up to
 * `parallel` at once, each in its own Deno process (`grid exec`), so runs
 * never share a tfjs backend or a GPU device. With `gpus`, process slot `k`
 * is pinned to `gpus[k % gpus.length]` (see pin.ts) and `parallel` defaults
 * to the number of GPUs: one process per GPU. A run that ensembles other
 * repeats starts once they finished. Each run's output goes to
 * `logs/<name>.log` (appended, so a resumed run keeps its history).
 *
 * @module
 */
import { join } from "node:path";
import { readGrid, runFolder } from "./grid_file.ts";
import type { GridRun } from "./grid_file.ts";
import { runState } from "./run_state.ts";
import { hasDeviceSelectLayer, listPciGpus, pinGpu } from "./pin.ts";
import type { GpuPin } from "./pin.ts";

/** Options of the local executor. */
export interface LocalOptions {
  /** Runs at once (default: the number of `gpus`, else 1). */
  readonly parallel?: number;
  /** GPUs (indices in PCI order, or PCI addresses), one process per GPU at a time. */
  readonly gpus?: readonly string[];
  /** Only these run indices (default: every run not finished). */
  readonly only?: readonly number[];
  /** Receives progress lines. */
  readonly console?: (line: string) => void;
  /** Stops starting runs and terminates the running ones. */
  readonly signal?: AbortSignal;
}

/** What the local executor did. */
export interface LocalResult {
  /** Indices that finished ok. */
  readonly ok: readonly number[];
  /** Indices that failed (exit code ≠ 0), or could not start because a run they ensemble failed. */
  readonly failed: readonly number[];
  /** Wall time in seconds. */
  readonly seconds: number;
}

/** The command that runs one grid task in a fresh Deno process. */
export function execCommand(dir: string, index: number): string[] {
  const root = new URL("..", import.meta.url);
  return [
    "run",
    "--allow-read",
    "--allow-write",
    "--allow-env",
    "--allow-run",
    "--config",
    new URL("deno.json", root).pathname,
    new URL("grid/cli.ts", root).pathname,
    "exec",
    dir,
    String(index),
  ];
}

async function runChild(
  dir: string,
  run: GridRun,
  pin: GpuPin | undefined,
  signal?: AbortSignal,
): Promise<number> {
  const log = await Deno.open(join(dir, "logs", `${run.name}.log`), {
    create: true,
    append: true,
  });
  const child = new Deno.Command(Deno.execPath(), {
    args: execCommand(dir, run.index),
    env: { ...(pin?.env ?? {}), NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const onAbort = () => {
    try {
      child.kill("SIGTERM");
    } catch { /* already gone */ }
  };
  signal?.addEventListener("abort", onAbort);
  const encoder = new TextEncoder();
  await log.write(
    encoder.encode(
      `--- ${new Date().toISOString()} local executor starts ${run.name}${
        pin ? ` on GPU ${pin.gpu}` : ""
      }\n`,
    ),
  );
  const copy = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream) await log.write(chunk);
  };
  try {
    await Promise.all([copy(child.stdout), copy(child.stderr)]);
    return (await child.status).code;
  } finally {
    signal?.removeEventListener("abort", onAbort);
    log.close();
  }
}

/**
 * Runs a grid's unfinished runs locally.
 *
 * @param dir The grid folder.
 * @param options Parallelism, GPUs, run subset.
 */
export async function runLocal(
  dir: string,
  options: LocalOptions = {},
): Promise<LocalResult> {
  const say = options.console ?? (() => {});
  const grid = await readGrid(dir);
  const gpus = options.gpus ?? [];
  const parallel = options.parallel ?? Math.max(1, gpus.length);
  if (!Number.isInteger(parallel) || parallel < 1) {
    throw new Error(
      `Cannot run ${parallel} at once: --parallel must be a positive integer`,
    );
  }
  const pins: (GpuPin | undefined)[] = [];
  if (gpus.length > 0) {
    const pci = await listPciGpus();
    const layer = await hasDeviceSelectLayer();
    for (let k = 0; k < parallel; k++) {
      const pin = pinGpu(gpus[k % gpus.length], pci, layer);
      for (const note of pin.notes) say(`GPU ${pin.gpu}: ${note}`);
      pins.push(pin);
    }
  }
  const started = performance.now();
  const wanted = new Set(options.only ?? grid.runs.map((r) => r.index));
  const done = new Set<number>();
  const failed = new Set<number>();
  const queue: GridRun[] = [];
  // Finished runs count as done, selected or not; the selected others queue.
  for (const run of grid.runs) {
    const state = await runState(runFolder(dir, run), run);
    if (state.state === "ok") done.add(run.index);
    else if (wanted.has(run.index)) queue.push(run);
  }
  const ok: number[] = [];
  const free = Array.from({ length: parallel }, (_, k) => k);
  const running = new Map<number, Promise<void>>();
  say(
    `local: ${queue.length} run(s) to do, ${parallel} at once${
      gpus.length ? ` on GPU(s) ${gpus.join(", ")}` : ""
    }`,
  );
  while (queue.length > 0 || running.size > 0) {
    // Drop runs whose ensembled runs failed or were not selected and are not done.
    for (let i = queue.length - 1; i >= 0; i--) {
      const run = queue[i];
      const blocked = run.after.some((a) =>
        failed.has(a) || (!wanted.has(a) && !done.has(a))
      );
      if (blocked) {
        say(`${run.name}: not started, a run it ensembles did not finish`);
        failed.add(run.index);
        queue.splice(i, 1);
      }
    }
    let next = queue.findIndex((r) => r.after.every((a) => done.has(a)));
    while (
      next >= 0 && free.length > 0 && !options.signal?.aborted
    ) {
      const run = queue.splice(next, 1)[0];
      const slot = free.shift()!;
      const pin = pins[slot];
      say(`${run.name}: started${pin ? ` on GPU ${pin.gpu}` : ""}`);
      const t0 = performance.now();
      running.set(
        run.index,
        runChild(dir, run, pin, options.signal).then((code) => {
          const s = ((performance.now() - t0) / 1000).toFixed(1);
          if (code === 0) {
            done.add(run.index);
            ok.push(run.index);
            say(`${run.name}: ok (${s} s)`);
          } else {
            failed.add(run.index);
            say(
              `${run.name}: failed with exit code ${code} (${s} s); see ${
                join(dir, "logs", `${run.name}.log`)
              }`,
            );
          }
        }).finally(() => {
          running.delete(run.index);
          free.push(slot);
        }),
      );
      next = queue.findIndex((r) => r.after.every((a) => done.has(a)));
    }
    if (options.signal?.aborted) {
      await Promise.all(running.values());
      for (const r of queue) failed.add(r.index);
      break;
    }
    if (running.size === 0) {
      if (queue.length > 0) {
        // Nothing runnable and nothing running: unreachable dependencies.
        for (const r of queue) failed.add(r.index);
        break;
      }
      continue;
    }
    await Promise.race(running.values());
  }
  return {
    ok: ok.sort((a, b) => a - b),
    failed: [...failed].sort((a, b) => a - b),
    seconds: (performance.now() - started) / 1000,
  };
}
