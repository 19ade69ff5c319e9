/**
 * Compiles a spec file into a {@linkcode Plan}: load with `extends:`, apply
 * `--set` overrides, check the envelope, resolve and load every stage, check
 * the source's `data:` and every stage's options, and check that each stage's
 * `takes` are provided by an earlier stage. Every problem is collected and
 * thrown at once as a {@linkcode ConfigError}; no audio is touched before the
 * plan exists.
 *
 * @module
 */
import { dirname } from "node:path";
import { stringify as stringifyYaml } from "yaml";
import type { Issue } from "./diagnostics.ts";
import { ConfigError } from "./diagnostics.ts";
import type { LocatedSpec } from "./spec_load.ts";
import { isMapping, loadSpec, stageEntryName, whole } from "./spec_load.ts";
import { applyOverrides, parseOverrides } from "./overrides.ts";
import type { ResolvedStage, StageOrigin } from "./resolve.ts";
import { resolveStage } from "./resolve.ts";
import type { ValidationTarget } from "./validate.ts";
import { checkAgainst, describePath, locate } from "./validate.ts";
import type { Phase, Stage } from "./types.ts";
import { Envelope, RuntimeOptions } from "../schemas/envelope.ts";

/** One stage of a plan, with every default filled in. */
export interface PlannedStage {
  readonly index: number;
  readonly name: string;
  readonly use: string;
  readonly id: string;
  readonly version: string;
  readonly kind: Stage["kind"];
  readonly origin: StageOrigin;
  readonly specifier?: string;
  readonly integrity?: string;
  readonly phases?: readonly Phase[];
  readonly options: unknown;
  readonly takes: readonly string[];
  readonly provides: readonly string[];
}

/** A compiled, JSON-serialisable plan. */
export interface Plan {
  readonly name: string;
  readonly description?: string;
  /** The spec file and the files it extends, the named file first. */
  readonly specFiles: readonly string[];
  /** `sha256-<hex>` of the resolved spec (JSON), to tie outputs to their spec. */
  readonly specHash: string;
  readonly overrides: readonly string[];
  readonly runtime: RuntimeOptions;
  /** The source's `data:` section, defaults filled in. */
  readonly data: unknown;
  readonly stages: readonly PlannedStage[];
}

/** A plan plus the loaded stage modules it runs. */
export interface CompiledPipeline {
  readonly plan: Plan;
  /** Stage modules, index-aligned with `plan.stages`. */
  readonly modules: readonly Stage[];
  /** The fully resolved spec (merged, overridden, defaults filled in). */
  readonly resolvedSpec: Record<string, unknown>;
  /** The resolved spec as YAML text. */
  readonly resolvedYaml: string;
  /** Directory of the named spec file (relative data roots start there). */
  readonly specDir: string;
}

/** Compile settings. */
export interface CompileOptions {
  /** Built-in stages by id. */
  readonly builtins: Readonly<Record<string, Stage>>;
  /** `--set` texts, `dotted.path=value`. */
  readonly overrides?: readonly string[];
  /** Lockfile for URL stage integrity (default `deno.lock` when it exists). */
  readonly lockfile?: string;
  /** URL stages whose changed code is accepted, rewriting their lock entries (`--update-lock`). */
  readonly updateLock?: readonly string[];
}

async function sha256(text: string): Promise<string> {
  const d = await crypto.subtle.digest(
    "SHA-256",
    new TextEncoder().encode(text),
  );
  return "sha256-" +
    [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, "0")).join(
      "",
    );
}

async function defaultLockfile(): Promise<string | undefined> {
  try {
    await Deno.stat("deno.lock");
    return "deno.lock";
  } catch {
    return undefined;
  }
}

/**
 * Built-ins that can produce a key, for hints: stages that provide it without
 * taking it first (a producer, not a transformer of it), else any provider.
 */
function providersOf(
  key: string,
  builtins: Readonly<Record<string, Stage>>,
): string[] {
  const all = Object.values(builtins).filter((s) => s.provides.includes(key));
  const producers = all.filter((s) => !s.takes.includes(key));
  return (producers.length > 0 ? producers : all).map((s) => s.id);
}

/**
 * Compiles a spec file.
 *
 * @param file Path of the spec.
 * @param options Built-ins, overrides, lockfile.
 * @returns The compiled pipeline.
 * @throws {ConfigError} With every issue found, when the spec is invalid.
 */
export async function compile(
  file: string,
  options: CompileOptions,
): Promise<CompiledPipeline> {
  const loaded = await loadSpec(file);
  if (!loaded.spec) throw new ConfigError(file, loaded.issues);
  const spec: LocatedSpec = loaded.spec;
  const issues: Issue[] = [...loaded.issues];
  const parsed = parseOverrides(options.overrides ?? []);
  issues.push(...parsed.issues);
  issues.push(...applyOverrides(spec, parsed.overrides));

  const rawStages = Array.isArray(spec.value.stages)
    ? spec.value.stages as unknown[]
    : [];
  const stageNames = rawStages.map(stageEntryName);
  const target: ValidationTarget = {
    file: spec.file,
    value: spec.value,
    origins: spec.origins,
    stageNames,
  };

  // Envelope: with stage options and data left to their own schemas.
  const envelope = checkAgainst(Envelope, [], target, "the spec");
  issues.push(...envelope.issues);

  // Duplicate stage names make --set and patches ambiguous.
  const firstByName = new Map<string, number>();
  rawStages.forEach((entry, i) => {
    const name = stageNames[i];
    if (!name) return;
    const first = firstByName.get(name);
    if (first === undefined) firstByName.set(name, i);
    else {
      issues.push({
        ...locate(target, ["stages", i, "use"]),
        code: "duplicate_stage_name",
        path: describePath(["stages", i], stageNames),
        message:
          `Cannot name two stages "${name}": stages[${first}] already has this name`,
        hint: `add \`name: ${name}_2\` (or another name) to this entry`,
      });
    }
    void entry;
  });

  // Resolve every stage module (in parallel; each reports its own issues).
  const lockfile = options.lockfile ?? await defaultLockfile();
  const resolved: (ResolvedStage | undefined)[] = await Promise.all(
    rawStages.map(async (entry, i) => {
      if (!isMapping(entry) || typeof entry.use !== "string") return undefined;
      const useSpan = spec.origins.get(`stages.${i}.use`);
      const at = useSpan?.value ?? whole(spec.file);
      const fromFile = at.file.startsWith("--set") ? spec.file : at.file;
      const r = await resolveStage(
        entry.use,
        fromFile,
        at,
        describePath(["stages", i, "use"], stageNames),
        {
          builtins: options.builtins,
          lockfile,
          updateLock: options.updateLock,
        },
      );
      issues.push(...r.issues);
      return r.resolved;
    }),
  );

  // Source: exactly one, first.
  resolved.forEach((r, i) => {
    if (!r) return;
    const isSource = r.stage.kind === "source";
    if (i === 0 && !isSource) {
      issues.push({
        ...locate(target, ["stages", 0, "use"]),
        code: "bad_source",
        path: describePath(["stages", 0], stageNames),
        message: `Cannot start the pipeline with "${
          stageNames[0]
        }": the first stage must be a source stage, and this one is a ${r.stage.kind} stage`,
        hint: `start with a source stage such as ${
          Object.values(options.builtins).filter((s) => s.kind === "source")
            .map((s) => `\`- use: ${s.id}\``).join(" or ")
        }`,
      });
    } else if (i > 0 && isSource) {
      issues.push({
        ...locate(target, ["stages", i, "use"]),
        code: "bad_source",
        path: describePath(["stages", i], stageNames),
        message: `Cannot use source stage "${
          stageNames[i]
        }" here: only the first stage may be a source`,
        hint: "remove this entry or move it first",
      });
    }
  });

  // `phases:` only means something for map stages.
  resolved.forEach((r, i) => {
    const entry = rawStages[i] as Record<string, unknown>;
    if (r && r.stage.kind !== "map" && entry.phases !== undefined) {
      issues.push({
        ...locate(target, ["stages", i, "phases"], "key"),
        code: "invalid_value",
        path: describePath(["stages", i, "phases"], stageNames),
        message: `Cannot use phases on "${
          stageNames[i]
        }": it is a ${r.stage.kind} stage, and only map stages run per phase`,
        hint: "remove `phases:` from this entry",
      });
    }
  });

  // Options of every stage, and the source's data section.
  const stageOptions: unknown[] = [];
  let data: unknown = undefined;
  resolved.forEach((r, i) => {
    if (!r) return;
    const entry = rawStages[i] as Record<string, unknown>;
    // A `with:` that is not a mapping was already reported by the envelope.
    if (entry.with !== undefined && !isMapping(entry.with)) return;
    const what = `stage "${stageNames[i]}"`;
    const checked = checkAgainst(
      r.stage.options,
      ["stages", i, "with"],
      target,
      what,
    );
    issues.push(...checked.issues);
    stageOptions[i] = checked.data;
    if (i === 0 && r.stage.kind === "source" && isMapping(spec.value.data)) {
      const d = checkAgainst(r.stage.data, ["data"], target, "data");
      issues.push(...d.issues);
      data = d.data;
    }
  });

  // Key contracts: every `takes` provided by an earlier stage.
  const available = new Map<string, string>();
  resolved.forEach((r, i) => {
    if (!r) return;
    const missing = r.stage.takes.filter((key) => !available.has(key));
    if (missing.length > 0) {
      const providers = [
        ...new Set(missing.flatMap((k) => providersOf(k, options.builtins))),
      ];
      const earlier = [...available.keys()];
      const keys = missing.map((k) => `"${k}"`).join(", ");
      issues.push({
        ...locate(target, ["stages", i, "use"]),
        code: "unmet_takes",
        path: describePath(["stages", i], stageNames),
        message: `Cannot run "${
          stageNames[i]
        }" as it takes ${keys} and no earlier stage provides ${
          missing.length === 1 ? "it" : "them"
        }: ${
          earlier.length
            ? `earlier stages provide ${
              earlier.map((k) => `"${k}"`).join(", ")
            }`
            : "no earlier stage provides any key"
        }`,
        hint: providers.length
          ? `add ${
            providers.map((p) => `\`- use: ${p}\``).join(" or ")
          } before ${stageNames[i]}`
          : `no built-in stage provides ${keys}; add a stage that does`,
      });
    }
    for (const key of r.stage.provides) available.set(key, stageNames[i]);
  });

  if (issues.length > 0) throw new ConfigError(spec.file, issues);

  const env = envelope.data!;
  const modules = resolved as ResolvedStage[];
  const stages: PlannedStage[] = modules.map((r, i) => ({
    index: i,
    name: stageNames[i],
    use: env.stages[i].use,
    id: r.stage.id,
    version: r.stage.version,
    kind: r.stage.kind,
    origin: r.origin,
    ...(r.specifier ? { specifier: r.specifier } : {}),
    ...(r.integrity ? { integrity: r.integrity } : {}),
    ...(r.stage.kind === "map" && (env.stages[i].phases ?? r.stage.phases)
      ? { phases: env.stages[i].phases ?? r.stage.phases }
      : {}),
    options: stageOptions[i] ?? {},
    takes: r.stage.takes,
    provides: r.stage.provides,
  }));
  const resolvedSpec: Record<string, unknown> = {
    name: env.name,
    ...(env.description ? { description: env.description } : {}),
    runtime: env.runtime,
    data,
    stages: stages.map((s, i) => ({
      use: s.use,
      ...(env.stages[i].name ? { name: s.name } : {}),
      ...(env.stages[i].phases ? { phases: env.stages[i].phases } : {}),
      with: s.options,
    })),
  };
  const resolvedYaml = stringifyYaml(resolvedSpec);
  const plan: Plan = {
    name: env.name,
    ...(env.description ? { description: env.description } : {}),
    specFiles: loaded.spec.chain,
    specHash: await sha256(JSON.stringify(resolvedSpec)),
    overrides: options.overrides ?? [],
    runtime: env.runtime,
    data,
    stages,
  };
  return {
    plan,
    modules: modules.map((m) => m.stage),
    resolvedSpec,
    resolvedYaml,
    specDir: dirname(spec.file),
  };
}

/** Renders a plan for people (`--dry-run`). */
export function formatPlan(plan: Plan): string {
  const lines = [
    `plan "${plan.name}"  (${plan.specFiles.join(" ← ")})`,
    `  spec hash  ${plan.specHash}`,
    `  runtime    backend ${plan.runtime.backend}, seed ${plan.runtime.seed}, output ${plan.runtime.outputDir}`,
    `  data       ${JSON.stringify(plan.data)}`,
    `  stages`,
  ];
  for (const s of plan.stages) {
    const from = s.origin === "builtin" ? "built-in" : s.specifier;
    lines.push(
      `    ${s.index}. ${s.name}  (${s.kind}, ${s.id}@${s.version}, ${from}${
        s.integrity ? `, ${s.integrity.slice(0, 19)}…` : ""
      })`,
    );
    lines.push(
      `       takes ${s.takes.join(", ") || "-"}  provides ${
        s.provides.join(", ") || "-"
      }${s.phases ? `  phases ${s.phases.join(", ")}` : ""}`,
    );
    lines.push(`       with ${JSON.stringify(s.options)}`);
  }
  return lines.join("\n");
}
