/**
 * The command line: `run`, `validate`, `stages` and `schema`. The only module
 * that prints. Exit codes: 0 ok, 1 a failure while running, 2 an invalid spec
 * or command line (a refused `--resume` included), 130 interrupted by
 * Ctrl-C (SIGINT), 143 by SIGTERM. Every error is printed once, on stderr;
 * with `--json`, stdout also gets one `{"error": {...}}` object.
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
  createInterrupt,
  dataWarnings,
  describeSteps,
  formatConfigError,
  formatInherited,
  formatPlan,
  openSource,
  ResumeError,
  RunFolderError,
  RunInterrupted,
  runPipeline,
  StageError,
} from "./pipeline/mod.ts";
import { watchSignals } from "./pipeline/signals.ts";
import {
  dataReport,
  formatDataReport,
  plannedClip,
  plannedClipSeconds,
} from "./stages/data_report.ts";
import { BUILTIN_STAGES } from "./stages/mod.ts";
import { selectBackend } from "./pipeline/backend.ts";
import type { BackendChoice } from "./pipeline/backend.ts";
import { checkBackend } from "./pipeline/backend_check.ts";

const USAGE = `usage:
  deno task run <spec.yaml> [--set path=value]... [--dry-run] [--json] [--lock deno.lock] [--verbose]
                 [--update-lock <stage URL>]   (accept a remote stage's changed code)
  deno task run <spec.yaml> --resume runs/<dir>
  deno task run <spec.yaml> --repeat 3 [--same-seed]   (several models, e.g. for TTAu's Mlt)
  deno task validate <spec.yaml>... [--set path=value]... [--lock deno.lock]
  deno task data <spec.yaml> [--set path=value]... [--json]
  deno task stages
  deno task backend [--backend auto|webgpu|cpu] [--json]
exit codes: 0 ok, 1 failure while running, 2 invalid spec or command line,
  130 interrupted (Ctrl-C; a second Ctrl-C quits at once), 143 SIGTERM`;

const encoder = new TextEncoder();
function out(text: string) {
  Deno.stdout.writeSync(encoder.encode(text + "\n"));
}
function err(text: string) {
  Deno.stderr.writeSync(encoder.encode(text + "\n"));
}

/** What `--json` prints on stdout when a command fails. */
interface JsonError {
  /** `usage`, `invalid_spec`, `resume_refused`, `run_folder`, `stage_failed`, `interrupted`, `internal`. */
  readonly code: string;
  readonly message: string;
  readonly [key: string]: unknown;
}

/** Prints `error` as one JSON object on stdout (for `--json`). */
function jsonError(error: JsonError) {
  out(JSON.stringify({ error }));
}

/** Prints a command-line error once (and as JSON with `--json`); returns 2. */
function usageError(message: string, json: boolean, usage = false): number {
  err(`error: ${message}${usage ? `\n${USAGE}` : ""}`);
  if (json) jsonError({ code: "usage", message });
  return 2;
}

/** Prints a spec's problems once (and as JSON with `--json`); returns 2. */
function configError(error: ConfigError, json: boolean): number {
  err(formatConfigError(error));
  if (json) {
    jsonError({
      code: "invalid_spec",
      message: error.message,
      specFile: error.specFile,
      issues: error.issues,
    });
  }
  return 2;
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
      "update-lock": { type: "string", multiple: true, default: [] },
      resume: { type: "string" },
      repeat: { type: "string", default: "1" },
      "same-seed": { type: "boolean", default: false },
      verbose: { type: "boolean", default: false },
      backend: { type: "string", default: "auto" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
}

/** Checks that every `--update-lock` URL names a URL stage of the plan. */
function unusedUpdateLocks(
  compiled: { plan: { stages: readonly { specifier?: string }[] } },
  urls: readonly string[],
): string | undefined {
  const used = new Set(compiled.plan.stages.map((s) => s.specifier));
  const unused = urls.filter((u) => !used.has(new URL(u, "file:///").href));
  return unused.length
    ? `Cannot update the lock entry of ${
      unused.join(", ")
    }: the spec uses no stage at ${
      unused.length === 1 ? "this URL" : "these URLs"
    }; give the URL exactly as its use: line has it`
    : undefined;
}

async function validate(
  files: string[],
  sets: string[],
  lock: string | undefined,
  updateLock: string[],
) {
  let failed = 0;
  for (const file of files) {
    try {
      const c = await compile(file, {
        builtins: BUILTIN_STAGES,
        overrides: sets,
        lockfile: lock,
        updateLock,
      });
      const unused = unusedUpdateLocks(c, updateLock);
      if (unused) {
        err(`error: ${unused}`);
        failed++;
        continue;
      }
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
  const json = values.json;
  const repeat = Number(values.repeat);
  if (!Number.isInteger(repeat) || repeat < 1) {
    return usageError(
      `Cannot repeat "${values.repeat}" times: --repeat takes a positive integer`,
      json,
    );
  }
  if (repeat > 1 && values.resume) {
    return usageError(
      "Cannot combine --repeat and --resume: resume one run folder at a time",
      json,
    );
  }
  const compileWith = async (extra: string[]) => {
    try {
      return await compile(file, {
        builtins: BUILTIN_STAGES,
        overrides: [...values.set, ...extra],
        lockfile: values.lock,
        updateLock: values["update-lock"],
      });
    } catch (error) {
      if (error instanceof ConfigError) {
        configError(error, json);
        return undefined;
      }
      throw error;
    }
  };
  const compiled = await compileWith([]);
  if (!compiled) return 2;
  const unused = unusedUpdateLocks(compiled, values["update-lock"]);
  if (unused) return usageError(unused, json);
  if (values["dry-run"]) {
    let described: Record<string, string> = {};
    let note: string | undefined;
    try {
      described = await describeSteps(compiled, {
        console: err,
        planned: plannedClip(compiled.plan),
        note: (line) => {
          note = line;
          err(`note: ${line}`);
        },
      });
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
            ...(note ? { describeNote: note } : {}),
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
  // First Ctrl-C or SIGTERM: acknowledged at once (on the signal thread), the
  // run stops at its next step boundary; a second one ends the process.
  const interrupt = createInterrupt();
  const signals = await watchSignals(interrupt);
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
        interrupt,
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
      // The scheduler already printed the error line.
      if (values.verbose && error.cause instanceof Error) {
        err(error.cause.stack ?? "");
      }
      err(`everything written so far is in ${error.runDir}`);
      if (json) {
        jsonError({
          code: "stage_failed",
          message: error.message,
          stage: error.stage,
          runDir: error.runDir,
        });
      }
      return 1;
    }
    if (error instanceof RunInterrupted) {
      const resume = `deno task run ${file} --resume ${error.runDir}`;
      err(
        `${error.message}\nthe run folder ${error.runDir} is marked interrupted; continue with: ${resume}`,
      );
      if (json) {
        jsonError({
          code: "interrupted",
          message: error.message,
          stage: error.stage,
          runDir: error.runDir,
          signal: error.reason,
          ...(error.restarts ? { restarts: error.restarts } : {}),
          resume,
        });
      }
      return error.reason === "SIGTERM" ? 143 : 130;
    }
    if (error instanceof ResumeError) {
      err(`error: ${error.message}`);
      if (json) {
        jsonError({
          code: "resume_refused",
          message: error.message,
          runDir: error.runDir,
        });
      }
      return 2;
    }
    if (error instanceof RunFolderError) {
      err(`error: ${error.message}`);
      if (json) jsonError({ code: "run_folder", message: error.message });
      return 1;
    }
    throw error;
  } finally {
    signals.close();
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
    if (error instanceof ConfigError) return configError(error, values.json);
    throw error;
  }
  let dataset;
  try {
    dataset = await openSource(compiled, {
      console: err,
      verbose: values.verbose,
    });
  } catch (error) {
    const message = (error as Error).message;
    err(`error: ${message}`);
    if (values.json) jsonError({ code: "data_failed", message });
    return 1;
  }
  try {
    const rate = dataset.info.sampleRateHz;
    const report = dataReport(
      dataset,
      plannedClipSeconds(
        compiled.plan,
        typeof rate === "number" ? rate : undefined,
      ),
      dataWarnings(compiled, dataset),
    );
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

/**
 * Runs the CLI with `args`; returns the exit code. An unexpected error is
 * printed once, as one line (its stack only with `--verbose`), never as an
 * uncaught exception.
 */
export async function main(args: string[]): Promise<number> {
  const json = args.includes("--json");
  try {
    return await command(args);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    const text = message.startsWith("Cannot")
      ? message
      : `Cannot finish the command: ${message}`;
    err(`error: ${text}`);
    if (args.includes("--verbose") && error instanceof Error) {
      err(error.stack ?? "");
    }
    if (json) jsonError({ code: "internal", message: text });
    return 1;
  }
}

async function command(args: string[]): Promise<number> {
  const [command, ...rest] = args;
  let parsed;
  try {
    parsed = parse(rest);
  } catch (error) {
    return usageError((error as Error).message, args.includes("--json"), true);
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
      return await validate(
        positionals,
        values.set,
        values.lock,
        values["update-lock"],
      );
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
