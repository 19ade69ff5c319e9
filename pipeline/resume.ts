/**
 * Deciding whether a run folder may be resumed (`--resume`), before anything
 * in it is written. The folder's `plan.json` is compared with the plan
 * compiled now, key by key; a resume is refused, with every differing key and
 * both values, unless each difference is one a resume may make:
 *
 * - `runtime.outputDir`: the run folder is named by `--resume`, so it is unused;
 * - `runtime.backend`: weights and optimizer state move between backends;
 * - `runtime.frontEnd`: the fused and the tfjs front end make the same views
 *   from the same random streams (a plan from before the key existed has
 *   none, which also passes);
 * - a stage option the stage declares in `resumeMayChange` (e.g. `train`'s
 *   `epochs`, which may grow to extend a finished run).
 *
 * Everything else (data, model, seed, schedule, stage list) ties the
 * checkpoints to the spec they were made with.
 *
 * @module
 */
import { join } from "node:path";
import type { CompiledPipeline, Plan } from "./compile.ts";
import type { Stage } from "./types.ts";

/** Thrown when a resume is refused; nothing in the run folder was written. */
export class ResumeError extends Error {
  /** The run folder named by `--resume`. */
  readonly runDir: string;

  /**
   * @param runDir The run folder.
   * @param message What is wrong and what to do.
   */
  constructor(runDir: string, message: string) {
    super(message);
    this.name = "ResumeError";
    this.runDir = runDir;
  }
}

/** One key whose value differs between the run folder and the spec now. */
export interface KeyChange {
  /** Dotted path, with stages by name: `stages.train.with.epochs`. */
  readonly path: string;
  /** The run's value (undefined: absent). */
  readonly before: unknown;
  /** The value now (undefined: absent). */
  readonly after: unknown;
}

/** An accepted resume. */
export interface AcceptedResume {
  /** The spec hash the run was started with (its checkpoints carry it). */
  readonly runSpecHash: string;
  /** The allowed differences, recorded in the manifest. */
  readonly changes: readonly KeyChange[];
  /** The run folder's manifest before this resume. */
  readonly manifest: Record<string, unknown>;
}

/** How a stage option may change on resume: any value, or only grow (numbers). */
export type ResumeChange = "any" | "grow";

/** Runtime keys any resume may change. */
const RUNTIME_MAY_CHANGE: Readonly<Record<string, ResumeChange>> = {
  outputDir: "any",
  backend: "any",
  frontEnd: "any",
};

function comparable(plan: Plan): Record<string, unknown> {
  return {
    name: plan.name,
    runtime: plan.runtime,
    data: plan.data,
    stages: Object.fromEntries(
      plan.stages.map((s) => [s.name, {
        use: s.use,
        ...(s.phases ? { phases: s.phases } : {}),
        with: s.options,
      }]),
    ),
  };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Every leaf path whose value differs (arrays compare whole). */
export function diffValues(
  before: unknown,
  after: unknown,
  path = "",
): KeyChange[] {
  if (isObject(before) && isObject(after)) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])];
    return keys.flatMap((k) =>
      diffValues(before[k], after[k], path ? `${path}.${k}` : k)
    );
  }
  return JSON.stringify(before) === JSON.stringify(after)
    ? []
    : [{ path, before, after }];
}

/** A value as the refusal shows it: JSON, cut at 60 characters. */
export function showValue(v: unknown): string {
  if (v === undefined) return "(absent)";
  const text = JSON.stringify(v);
  return text.length > 60 ? text.slice(0, 57) + "..." : text;
}

/** Keys a resume of this plan may change, for messages and docs. */
export function describeMayChange(
  plan: Plan,
  modules: readonly Stage[],
): string[] {
  const out = Object.keys(RUNTIME_MAY_CHANGE).map((k) => `runtime.${k}`);
  plan.stages.forEach((s, i) => {
    for (const [k, how] of Object.entries(modules[i].resumeMayChange ?? {})) {
      out.push(
        `stages.${s.name}.with.${k}${how === "grow" ? " (larger only)" : ""}`,
      );
    }
  });
  return out;
}

function allowed(
  change: KeyChange,
  plan: Plan,
  modules: readonly Stage[],
): boolean {
  const parts = change.path.split(".");
  if (parts[0] === "runtime" && parts.length === 2) {
    return Object.hasOwn(RUNTIME_MAY_CHANGE, parts[1]);
  }
  if (parts[0] !== "stages" || parts[2] !== "with" || parts.length !== 4) {
    return false;
  }
  const i = plan.stages.findIndex((s) => s.name === parts[1]);
  if (i < 0) return false;
  const rule = modules[i].resumeMayChange?.[parts[3]];
  if (rule === "any") return true;
  return rule === "grow" && typeof change.before === "number" &&
    typeof change.after === "number" && change.after >= change.before;
}

async function readJson(path: string): Promise<unknown> {
  return JSON.parse(await Deno.readTextFile(path));
}

/**
 * Checks that `runDir` is a run folder this compiled spec may resume. Reads
 * only; writes nothing.
 *
 * @param runDir The folder named by `--resume`.
 * @param compiled The spec compiled now.
 * @returns The run's original spec hash and the allowed differences.
 * @throws {ResumeError} When the folder is missing, is no run folder, or its
 * spec differs in a key a resume may not change (every such key is listed).
 */
export async function checkResume(
  runDir: string,
  compiled: CompiledPipeline,
): Promise<AcceptedResume> {
  const stat = await Deno.stat(runDir).catch(() => undefined);
  if (!stat?.isDirectory) {
    throw new ResumeError(
      runDir,
      `Cannot resume "${runDir}": ${
        stat ? "it is a file" : "no such folder"
      }; give the run folder an earlier run printed ("run folder: runs/<name>-<time>")`,
    );
  }
  let previous: Plan;
  try {
    previous = await readJson(join(runDir, "plan.json")) as Plan;
  } catch (error) {
    throw new ResumeError(
      runDir,
      `Cannot resume "${runDir}": ${
        error instanceof Deno.errors.NotFound
          ? "it holds no plan.json, so it is not a run folder"
          : `its plan.json is unreadable (${(error as Error).message})`
      }; give the folder an earlier run printed ("run folder: ...")`,
    );
  }
  const manifest = await readJson(join(runDir, "manifest.json")).catch(
    () => ({}),
  ) as Record<string, unknown>;
  const { plan, modules } = compiled;
  const changes = diffValues(comparable(previous), comparable(plan));
  const refused = changes.filter((c) => !allowed(c, plan, modules));
  if (refused.length > 0) {
    const lines = refused.map((c) =>
      `  ${c.path}: ${showValue(c.before)} in the run, ${
        showValue(c.after)
      } now`
    );
    throw new ResumeError(
      runDir,
      `Cannot resume "${runDir}": the spec differs from the run's in ${refused.length} key${
        refused.length === 1 ? "" : "s"
      } a resume may not change:\n${lines.join("\n")}\n` +
        `A resume may change only ${
          describeMayChange(plan, modules).join(", ")
        }. Resume with the run's values (its spec.yaml holds them), or start a new run; nothing in the run folder was changed.`,
    );
  }
  const runSpecHash = typeof manifest.specHash === "string"
    ? manifest.specHash
    : previous.specHash;
  return { runSpecHash, changes, manifest };
}
