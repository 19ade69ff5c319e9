/**
 * `deno task grid`: experiment grids (folds × repeats × ablations) run
 * locally, on Slurm, or written as a Kubernetes Indexed Job.
 *
 * ```
 * deno task grid presets/am.yaml --repeat 3 --same-seed --vary data.fold=0,1,2,3,4 --dry-run
 * deno task grid presets/cs.yaml --ablations 'presets/ablations/cs_*.yaml' --executor slurm --gres gpu:1 --time 08:00:00
 * deno task grid run runs/grid-am-… --executor local --parallel 2
 * deno task grid status runs/grid-am-…
 * deno task grid report runs/grid-am-…
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import { globSync } from "node:fs";
import { formatConfigError } from "../pipeline/diagnostics.ts";
import { ConfigError } from "../pipeline/diagnostics.ts";
import { StageError } from "../pipeline/run.ts";
import {
  defaultGridDir,
  GridSpecError,
  planGrid,
  writeGridFolder,
} from "./expand.ts";
import type { GridFile } from "./grid_file.ts";
import { readGrid, recordSubmission } from "./grid_file.ts";
import { runGridTask } from "./task.ts";
import { runLocal } from "./local.ts";
import { cancelSlurm, submitSlurm } from "./slurm.ts";
import { writeK8sManifest } from "./k8s.ts";
import { formatStatus, gridStatus } from "./status.ts";
import { writeGridReport } from "./report.ts";

const USAGE = `usage:
  deno task grid <spec.yaml> [more specs…] [--repeat N] [--same-seed] [--vary path=a,b,…]…
                 [--ablations 'glob']… [--set path=value]… [--out <dir>] [--dry-run]
                 [--executor local|slurm|k8s-manifest] [executor options]
  deno task grid run <dir> --executor local|slurm|k8s-manifest [executor options] [--only 0,3]
  deno task grid status <dir> [--json]
  deno task grid cancel <dir>
  deno task grid report <dir>
  deno task grid exec <dir> <index> [--wait]     (one run in this process; what executors start)
executor options:
  local:        --parallel N  --gpus 0,1,…  (one process per GPU; indices in PCI order or PCI addresses)
  slurm:        --partition P --gres gpu:1 --time 04:00:00 --account A --cpus-per-task 2 --sbatch-arg=--mem=16G …
  k8s-manifest: --image I --claim PVC --gpus-per-run 1 --parallel N
exit codes: 0 ok, 1 failure while running, 2 invalid spec or command line`;

const encoder = new TextEncoder();
function out(text: string) {
  Deno.stdout.writeSync(encoder.encode(text + "\n"));
}
function err(text: string) {
  Deno.stderr.writeSync(encoder.encode(text + "\n"));
}

function parse(args: string[]) {
  return parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: {
      repeat: { type: "string", default: "1" },
      "same-seed": { type: "boolean", default: false },
      vary: { type: "string", multiple: true, default: [] },
      ablations: { type: "string", multiple: true, default: [] },
      set: { type: "string", multiple: true, default: [] },
      out: { type: "string" },
      lock: { type: "string" },
      "dry-run": { type: "boolean", default: false },
      executor: { type: "string" },
      parallel: { type: "string" },
      gpus: { type: "string" },
      only: { type: "string" },
      partition: { type: "string" },
      gres: { type: "string" },
      time: { type: "string" },
      account: { type: "string" },
      "cpus-per-task": { type: "string" },
      "sbatch-arg": { type: "string", multiple: true, default: [] },
      image: { type: "string" },
      claim: { type: "string" },
      "gpus-per-run": { type: "string" },
      json: { type: "boolean", default: false },
      wait: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
}
type Values = ReturnType<typeof parse>["values"];

class UsageError extends Error {}

function positiveInt(
  name: string,
  text: string | undefined,
): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) {
    throw new UsageError(
      `Cannot use ${name} "${text}": give a positive integer`,
    );
  }
  return n;
}

function indexList(
  text: string | undefined,
  grid: GridFile,
): number[] | undefined {
  if (text === undefined) return undefined;
  const list = text.split(",").map((s) => Number(s.trim()));
  for (const [i, n] of list.entries()) {
    if (!Number.isInteger(n) || n < 0 || n >= grid.runs.length) {
      throw new UsageError(
        `Cannot use --only "${text}": entry ${i + 1} is not a run index 0 to ${
          grid.runs.length - 1
        }`,
      );
    }
  }
  return list;
}

function printTable(grid: GridFile) {
  const rows = grid.runs.map((r) => [
    String(r.index),
    r.name,
    r.preset,
    Object.entries(r.vary).map(([k, v]) => `${k}=${v}`).join(" ") || "–",
    String(r.repeat),
    String(r.seed),
    r.after.length ? r.after.join(",") : "–",
    r.specHash.slice(7, 19),
  ]);
  const head = [
    "#",
    "run",
    "preset",
    "vary",
    "repeat",
    "seed",
    "after",
    "spec hash",
  ];
  const widths = head.map((h, i) =>
    Math.max(h.length, ...rows.map((r) => r[i].length))
  );
  const line = (c: string[]) =>
    c.map((x, i) => x.padEnd(widths[i])).join("  ").trimEnd();
  out(line(head));
  for (const r of rows) out(line(r));
  out(`${grid.runs.length} run(s)`);
}

async function execute(dir: string, values: Values): Promise<number> {
  const grid = await readGrid(dir);
  const only = indexList(values.only, grid);
  switch (values.executor) {
    case "local": {
      const gpus = values.gpus?.split(",").map((s) => s.trim()).filter(Boolean);
      const parallel = positiveInt("--parallel", values.parallel);
      const controller = new AbortController();
      const stop = () => controller.abort(new Error("interrupted"));
      Deno.addSignalListener("SIGINT", stop);
      Deno.addSignalListener("SIGTERM", stop);
      await recordSubmission(dir, {
        executor: "local",
        at: new Date().toISOString(),
        runs: only ?? grid.runs.map((r) => r.index),
        pid: Deno.pid,
      });
      try {
        const result = await runLocal(dir, {
          ...(parallel ? { parallel } : {}),
          ...(gpus?.length ? { gpus } : {}),
          ...(only ? { only } : {}),
          console: err,
          signal: controller.signal,
        });
        out(
          `local: ${result.ok.length} ok, ${result.failed.length} failed in ${
            result.seconds.toFixed(1)
          } s (deno task grid report ${dir})`,
        );
        return result.failed.length ? 1 : 0;
      } finally {
        Deno.removeSignalListener("SIGINT", stop);
        Deno.removeSignalListener("SIGTERM", stop);
      }
    }
    case "slurm": {
      const sub = await submitSlurm(dir, {
        partition: values.partition,
        gres: values.gres,
        time: values.time,
        account: values.account,
        cpusPerTask: positiveInt("--cpus-per-task", values["cpus-per-task"]),
        sbatchArgs: values["sbatch-arg"],
      }, only);
      out(
        `slurm: submitted ${sub.runs.length} run(s) as job ${
          sub.jobIds!.join(" and ")
        } (script ${dir}/${sub.file}; deno task grid status ${dir})`,
      );
      return 0;
    }
    case "k8s-manifest": {
      const path = await writeK8sManifest(dir, {
        image: values.image,
        claim: values.claim,
        parallel: positiveInt("--parallel", values.parallel),
        gpusPerRun: positiveInt("--gpus-per-run", values["gpus-per-run"]),
      });
      out(`k8s: wrote ${path} (not submitted: kubectl apply -f ${path})`);
      return 0;
    }
    default:
      throw new UsageError(
        `Cannot use executor "${values.executor}": choose local, slurm or k8s-manifest`,
      );
  }
}

async function create(specs: string[], values: Values): Promise<number> {
  const files = [...specs];
  for (const pattern of values.ablations) {
    const found = globSync(pattern).sort();
    if (found.length === 0) {
      throw new UsageError(
        `Cannot use --ablations "${pattern}": no file matches it`,
      );
    }
    files.push(...found);
  }
  const repeat = positiveInt("--repeat", values.repeat) ?? 1;
  let grid: GridFile;
  const dirFor = (name: string) => values.out ?? defaultGridDir(name);
  const plan = (command: readonly string[], folder: string) =>
    planGrid({
      specs: files,
      vary: values.vary,
      set: values.set,
      repeat,
      sameSeed: values["same-seed"],
      lockfile: values.lock,
      command,
    }, folder);
  try {
    // The folder name needs the spec name; plan against a provisional folder.
    const provisional = values.out ?? "runs/grid";
    grid = await plan(["deno", "task", "grid", ...Deno.args], provisional);
  } catch (error) {
    if (error instanceof GridSpecError && error.cause instanceof ConfigError) {
      err(formatConfigError(error.cause));
      if (error.overrides.length) {
        err(`(with ${error.overrides.join(" ")})`);
      }
      return 2;
    }
    throw error;
  }
  if (values["dry-run"]) {
    printTable(grid);
    return 0;
  }
  const dir = dirFor(grid.name);
  if (
    values.out === undefined &&
    grid.runs.some((r) => /use: \.\.?\//.test(r.spec))
  ) {
    // Local stage paths were made relative to runs/grid; plan again for the real folder.
    grid = await plan(grid.command, dir);
  }
  await writeGridFolder(dir, grid);
  out(`grid folder: ${dir} (${grid.runs.length} runs)`);
  if (!values.executor) {
    out(
      `nothing runs yet: deno task grid run ${dir} --executor local|slurm|k8s-manifest`,
    );
    return 0;
  }
  return await execute(dir, values);
}

/** Runs the grid CLI with `args`; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parse(args);
  } catch (error) {
    err(`error: ${(error as Error).message}\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help || positionals.length === 0) {
    out(USAGE);
    return values.help ? 0 : 2;
  }
  const [command, ...rest] = positionals;
  const oneDir = () => {
    if (rest.length !== 1) {
      throw new UsageError(
        `Cannot run "grid ${command}": give one grid folder`,
      );
    }
    return rest[0];
  };
  try {
    switch (command) {
      case "run": {
        const dir = oneDir();
        if (!values.executor) {
          throw new UsageError(
            "Cannot run the grid without --executor: choose local, slurm or k8s-manifest",
          );
        }
        return await execute(dir, values);
      }
      case "status": {
        const { grid, rows } = await gridStatus(oneDir());
        out(
          values.json
            ? JSON.stringify(rows, null, 2)
            : formatStatus(grid, rows),
        );
        return 0;
      }
      case "cancel": {
        const dir = oneDir();
        const grid = await readGrid(dir);
        const ids = await cancelSlurm(dir);
        if (ids.length) out(`cancelled Slurm job(s) ${ids.join(", ")}`);
        let stopped = 0;
        for (const s of grid.submissions) {
          if (s.executor !== "local" || s.pid === undefined) continue;
          // Only a live grid executor: a finished one's pid may be another process now.
          const cmdline = await Deno.readTextFile(`/proc/${s.pid}/cmdline`)
            .catch(() => "");
          if (!cmdline.includes("grid/cli.ts")) {
            continue;
          }
          try {
            Deno.kill(s.pid, "SIGTERM");
            stopped++;
            out(`stopped the local executor (pid ${s.pid})`);
          } catch {
            // that executor already finished
          }
        }
        if (!ids.length && !stopped) {
          out("nothing to cancel: no Slurm job and no live local executor");
        }
        return 0;
      }
      case "report": {
        const { report, files } = await writeGridReport(oneDir());
        out(`wrote ${files.join(", ")} (${report.runs.length} runs)`);
        return 0;
      }
      case "exec": {
        if (rest.length !== 2) {
          throw new UsageError(
            'Cannot run "grid exec": give a grid folder and a run index',
          );
        }
        const index = Number(rest[1]);
        const controller = new AbortController();
        const stop = () => controller.abort(new Error("interrupted (signal)"));
        Deno.addSignalListener("SIGINT", stop);
        Deno.addSignalListener("SIGTERM", stop);
        try {
          const r = await runGridTask(rest[0], index, {
            console: err,
            signal: controller.signal,
            wait: values.wait,
          });
          out(
            `${r.name}: ${
              r.outcome === "done" ? "already finished" : "ok"
            } (${r.runDir})`,
          );
          return 0;
        } finally {
          Deno.removeSignalListener("SIGINT", stop);
          Deno.removeSignalListener("SIGTERM", stop);
        }
      }
      default:
        return await create(positionals, values);
    }
  } catch (error) {
    if (error instanceof UsageError) {
      err(`error: ${error.message}\n${USAGE}`);
      return 2;
    }
    if (error instanceof StageError) {
      err(
        `error: ${error.message}\neverything written so far is in ${error.runDir}`,
      );
      return 1;
    }
    if (error instanceof Error && error.message.startsWith("Cannot")) {
      err(`error: ${error.message}`);
      return error.message.startsWith("Cannot use") ? 2 : 1;
    }
    throw error;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
