/**
 * The command line: `run`, `validate`, `stages` and `schema`. The only module
 * that prints. Exit codes: 0 ok, 1 a failure while running, 2 an invalid spec
 * or command line.
 *
 * ```
 * deno task validate presets/tiny/synthetic.yaml
 * deno task run presets/tiny/synthetic.yaml --set runtime.seed=7
 * deno task run presets/tiny/synthetic.yaml --dry-run
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  compile,
  ConfigError,
  dataWarnings,
  describeSteps,
  formatConfigError,
  formatInherited,
  formatPlan,
  openSource,
  runPipeline,
  StageError,
} from "./pipeline/mod.ts";
import { dataReport, formatDataReport } from "./stages/data_report.ts";
import { BUILTIN_STAGES } from "./stages/mod.ts";
import { selectBackend } from "./pipeline/backend.ts";
import type { BackendChoice } from "./pipeline/backend.ts";
import { checkBackend } from "./pipeline/backend_check.ts";

const USAGE = `usage:
  deno task run <spec.yaml> [--set path=value]... [--dry-run] [--json] [--lock deno.lock] [--verbose]
  deno task run <spec.yaml> --resume runs/<dir>
  deno task run <spec.yaml> --repeat 3 [--same-seed]   (several models, e.g. for TTAu's Mlt)
  deno task validate <spec.yaml>... [--set path=value]... [--lock deno.lock]
  deno task data <spec.yaml> [--set path=value]... [--json]
  deno task stages
  deno task backend [--backend auto|webgpu|cpu] [--json]
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
      set: { type: "string", multiple: true, default: [] },
      "dry-run": { type: "boolean", default: false },
      json: { type: "boolean", default: false },
      lock: { type: "string" },
      resume: { type: "string" },
      repeat: { type: "string", default: "1" },
      "same-seed": { type: "boolean", default: false },
      verbose: { type: "boolean", default: false },
      backend: { type: "string", default: "auto" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
}

async function validate(files: string[], sets: string[], lock?: string) {
  let failed = 0;
  for (const file of files) {
    try {
      const c = await compile(file, {
        builtins: BUILTIN_STAGES,
        overrides: sets,
        lockfile: lock,
      });
      out(
        `ok  ${file}  (${c.plan.stages.length} stages: ${
          c.plan.stages.map((s) => s.name).join(" → ")
        })`,
      );
      for (const note of c.notes) out(`    note: ${note}`);
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      err(formatConfigError(error) + "\n");
      failed++;
    }
  }
  return failed > 0 ? 2 : 0;
}

async function run(
  file: string,
  values: ReturnType<typeof parse>["values"],
): Promise<number> {
  const repeat = Number(values.repeat);
  if (!Number.isInteger(repeat) || repeat < 1) {
    err(`error: --repeat must be a positive integer, got "${values.repeat}"`);
    return 2;
  }
  if (repeat > 1 && values.resume) {
    err("error: --repeat and --resume cannot be combined");
    return 2;
  }
  const compileWith = async (extra: string[]) => {
    try {
      return await compile(file, {
        builtins: BUILTIN_STAGES,
        overrides: [...values.set, ...extra],
        lockfile: values.lock,
      });
    } catch (error) {
      if (error instanceof ConfigError) {
        err(formatConfigError(error));
        return undefined;
      }
      throw error;
    }
  };
  const compiled = await compileWith([]);
  if (!compiled) return 2;
  if (values["dry-run"]) {
    let described: Record<string, string> = {};
    try {
      described = await describeSteps(compiled, { console: err });
    } catch (error) {
      err(`note: no model summary: ${(error as Error).message.split("\n")[0]}`);
    }
    if (values.json) {
      out(
        JSON.stringify(
          {
            plan: compiled.plan,
            inherited: compiled.inherited,
            unset: compiled.unset,
            notes: compiled.notes,
            describe: described,
          },
          null,
          2,
        ),
      );
    } else {
      out(formatPlan(compiled.plan));
      for (const note of compiled.notes) out(`note: ${note}`);
      const inherited = formatInherited(compiled);
      if (inherited) out(`\n${inherited}`);
      for (const [name, text] of Object.entries(described)) {
        out(`\n${name}:\n${text}`);
      }
    }
    return 0;
  }
  const controller = new AbortController();
  const onSignal = () => controller.abort(new Error("interrupted (SIGINT)"));
  Deno.addSignalListener("SIGINT", onSignal);
  const runs: string[] = [];
  try {
    for (let r = 0; r < repeat; r++) {
      // Repeats get distinct seeds (seed + r) unless --same-seed (the reference's choice).
      const c = r === 0 || values["same-seed"]
        ? compiled
        : await compileWith([`runtime.seed=${compiled.plan.runtime.seed + r}`]);
      if (!c) return 2;
      if (repeat > 1) {
        err(`repeat ${r + 1}/${repeat} (seed ${c.plan.runtime.seed})`);
      }
      const result = await runPipeline(c, {
        ...(values.resume ? { resume: values.resume } : {}),
        siblingRuns: [...runs],
        console: err,
        interactive: Deno.stderr.isTerminal(),
        verbose: values.verbose,
        signal: controller.signal,
      });
      runs.push(result.runDir);
      if (values.json) {
        out(
          JSON.stringify({ runDir: result.runDir, timingsMs: result.timings }),
        );
      } else out(`run folder: ${result.runDir}`);
    }
    return 0;
  } catch (error) {
    if (error instanceof StageError) {
      err(`error: ${error.message}`);
      if (values.verbose && error.cause instanceof Error) {
        err(error.cause.stack ?? "");
      }
      err(`everything written so far is in ${error.runDir}`);
      return 1;
    }
    throw error;
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
  }
}

async function data(
  file: string,
  values: ReturnType<typeof parse>["values"],
): Promise<number> {
  let compiled;
  try {
    compiled = await compile(file, {
      builtins: BUILTIN_STAGES,
      overrides: values.set,
      lockfile: values.lock,
    });
  } catch (error) {
    if (error instanceof ConfigError) {
      err(formatConfigError(error));
      return 2;
    }
    throw error;
  }
  let dataset;
  try {
    dataset = await openSource(compiled, {
      console: err,
      verbose: values.verbose,
    });
  } catch (error) {
    err(`error: ${(error as Error).message}`);
    return 1;
  }
  try {
    const report = dataReport(dataset, dataWarnings(compiled, dataset));
    out(
      values.json ? JSON.stringify(report, null, 2) : formatDataReport(report),
    );
    return 0;
  } finally {
    await dataset.close?.();
  }
}

function listStages() {
  for (const s of Object.values(BUILTIN_STAGES)) {
    out(`${s.id.padEnd(16)} ${s.kind.padEnd(7)} ${s.summary}`);
    out(
      `${"".padEnd(24)}takes ${s.takes.join(", ") || "-"}; provides ${
        s.provides.join(", ")
      }`,
    );
  }
}

async function backendReport(choice: string, json: boolean): Promise<number> {
  if (!["auto", "webgpu", "cpu"].includes(choice)) {
    err(`error: --backend must be auto, webgpu or cpu, got "${choice}"`);
    return 2;
  }
  let selected;
  try {
    selected = await selectBackend(choice as BackendChoice);
  } catch (error) {
    err(`error: ${(error as Error).message}`);
    return 1;
  }
  const { tf, backend } = selected;
  const check = await checkBackend(tf, backend);
  const report = {
    backend: backend.name,
    requested: backend.requested,
    reason: backend.reason,
    adapter: backend.adapter ?? null,
    tfjs: tf.version.tfjs,
    deno: Deno.version.deno,
    ...check,
  };
  const healthy = check.matmulMaxAbsError < 1e-3 &&
    check.gpuErrorsCaught !== false;
  if (json) out(JSON.stringify(report, null, 2));
  else {
    out(`backend   ${report.backend} (${report.reason})`);
    if (backend.adapter) {
      out(
        `adapter   ${
          backend.adapter.description || "(no description)"
        } vendor ${backend.adapter.vendor}${
          backend.adapter.isFallbackAdapter ? ", fallback" : ""
        }`,
      );
    }
    out(
      `matmul    ${check.matmulSize}² max abs error ${
        check.matmulMaxAbsError.toExponential(2)
      }, ${check.matmulMs.toFixed(1)} ms`,
    );
    if (check.gpuErrorsCaught !== undefined) {
      out(
        `gpu errors ${
          check.gpuErrorsCaught
            ? `caught (${check.gpuErrorMessage})`
            : "NOT caught"
        }`,
      );
    }
    out(healthy ? "ok" : "FAILED");
  }
  return healthy ? 0 : 1;
}

/** Runs the CLI with `args`; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const [command, ...rest] = args;
  let parsed;
  try {
    parsed = parse(rest);
  } catch (error) {
    err(`error: ${(error as Error).message}\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help || command === undefined || command === "help") {
    out(USAGE);
    return command === undefined ? 2 : 0;
  }
  switch (command) {
    case "run":
      if (positionals.length !== 1) {
        err(
          `error: run takes one spec file, got ${positionals.length}\n${USAGE}`,
        );
        return 2;
      }
      return await run(positionals[0], values);
    case "validate":
      if (positionals.length === 0) {
        err(`error: validate takes at least one spec file\n${USAGE}`);
        return 2;
      }
      return await validate(positionals, values.set, values.lock);
    case "data":
      if (positionals.length !== 1) {
        err(
          `error: data takes one spec file, got ${positionals.length}\n${USAGE}`,
        );
        return 2;
      }
      return await data(positionals[0], values);
    case "stages":
      listStages();
      return 0;
    case "backend":
      return await backendReport(values.backend, values.json);
    default:
      err(`error: unknown command "${command}"\n${USAGE}`);
      return 2;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
