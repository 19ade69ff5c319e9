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
import { describeFusion, fusableTail } from "./front_end.ts";
import { dirname, isAbsolute, relative, resolve } from "node:path";
import { stringify as stringifyYaml } from "yaml";
import type { Issue, Location } from "./diagnostics.ts";
import type { NodeSpan, SpecPath } from "./spec_source.ts";
import { pathKey } from "./spec_source.ts";
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
  /** Directory of the named spec file. */
  readonly specDir: string;
  /** Values inherited through `extends:`, with the file and line that wrote each. */
  readonly inherited: readonly InheritedValue[];
  /** Keys a child unset with `key: null`, and where. */
  readonly unset: readonly { readonly path: string; readonly at: Location }[];
  /** Warnings about the spec that do not stop it (e.g. inherited `classes:` beside a new `root:`). */
  readonly notes: readonly string[];
  /** For keys of `data:` inherited from a parent spec: where the parent wrote them (by key, e.g. `classes`). */
  readonly dataOrigins: Readonly<Record<string, Location>>;
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

  // File paths of the source (data.root, load's backgroundNoise) are
  // relative to the spec file that writes them, as `extends:` is.
  const source = resolved[0]?.stage;
  if (source?.kind === "source" && source.pathKeys) {
    const fix = (
      values: unknown,
      keys: readonly string[] | undefined,
      at: SpecPath,
    ) => {
      if (!isMapping(values)) return;
      for (const key of keys ?? []) {
        const written = values[key];
        if (typeof written !== "string") continue;
        const p = [...at, key];
        const r = resolveSpecPath(written, spec.origins.get(pathKey(p)));
        values[key] = r.path;
        if (r.moved) {
          issues.push({
            ...locate(target, p),
            code: "invalid_value",
            path: describePath(p, stageNames),
            message:
              `Cannot find "${written}" at ${r.path}: paths in a spec are relative to the spec file that writes them (${r.file})`,
            hint:
              `it exists relative to the working directory: write \`${key}: ${
                relative(dirname(resolve(r.file)), r.moved)
              }\` (or an absolute path)`,
          });
        }
      }
    };
    fix(data, source.pathKeys.data, ["data"]);
    fix(stageOptions[0], source.pathKeys.options, ["stages", 0, "with"]);
  }

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
  const inherited = inheritedValues(spec, stageNames);
  return {
    notes: inheritanceNotes(spec, inherited),
    plan,
    modules: modules.map((m) => m.stage),
    resolvedSpec,
    resolvedYaml,
    specDir: dirname(spec.file),
    inherited,
    unset: spec.unset.map((u) => ({
      path: describePath(
        u.path.split(".").map((k) => /^\d+$/.test(k) ? Number(k) : k),
        stageNames,
      ),
      at: u.at,
    })),
    dataOrigins: Object.fromEntries(
      inherited.filter((i) => i.key.startsWith("data.")).map((i) => [
        i.key.slice("data.".length),
        i.from,
      ]),
    ),
  };
}

/**
 * Resolves a path written in a spec: relative to the directory of the file
 * that wrote it (`origin`), or to the working directory when it came from
 * `--set`. `moved` is set (to the working-directory path) when nothing is at
 * the spec-relative path but something is at the working-directory one — the
 * base data paths had before they followed `extends:`.
 */
function resolveSpecPath(
  written: string,
  origin: NodeSpan | undefined,
): { path: string; file: string; moved?: string } {
  const file = origin?.value.file ?? "";
  if (isAbsolute(written) || !file || file.startsWith("--set")) {
    return { path: resolve(written), file: file || "--set" };
  }
  const path = resolve(dirname(resolve(file)), written);
  const old = resolve(written);
  if (old !== path && !existsSync(path) && existsSync(old)) {
    return { path, file, moved: old };
  }
  return { path, file };
}

function existsSync(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** A value the named spec inherits through `extends:`, and where it was written. */
export interface InheritedValue {
  /** Dotted key path (`data.classes`, `stages.3.with.model`). */
  readonly key: string;
  /** The path for people: `stages[3] (train) › with.model`. */
  readonly path: string;
  /** The merged value at that path. */
  readonly value: unknown;
  /** Where the value was written (a parent spec's file and line). */
  readonly from: Location;
}

/**
 * The values of a merged spec that come from a parent file, each listed at
 * the highest key whose whole value that file wrote (a key whose own parent
 * key came from elsewhere).
 */
function inheritedValues(
  spec: LocatedSpec,
  stageNames: readonly string[],
): InheritedValue[] {
  const fileOf = (k: string) => spec.origins.get(k)?.value.file;
  const out: InheritedValue[] = [];
  for (const [key, span] of spec.origins) {
    const file = span.value.file;
    if (key === "" || file === spec.file || file.startsWith("--set")) continue;
    const parent = key.includes(".") ? key.slice(0, key.lastIndexOf(".")) : "";
    if (parent !== "" && fileOf(parent) === file) continue;
    const path = key.split(".").map((k) => /^\d+$/.test(k) ? Number(k) : k);
    let value: unknown = spec.value;
    for (const k of path) {
      value = (value as Record<string | number, unknown> | undefined)?.[k];
    }
    out.push({
      key,
      path: describePath(path, stageNames),
      value,
      from: span.key ?? span.value,
    });
  }
  return out.sort((a, b) => a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
}

/**
 * Inherited values that likely conflict with the child's own: a `data:` key
 * that describes the labels (`classes`) inherited from a parent while the
 * child sets where the data is (`root`, `manifest` or `layout`). Checked
 * without reading any data; the data check names the same line if the labels
 * do differ.
 */
function inheritanceNotes(
  spec: LocatedSpec,
  inherited: readonly InheritedValue[],
): string[] {
  const classes = inherited.find((i) => i.key === "data.classes");
  if (!classes) return [];
  const own = ["root", "manifest", "layout"].filter((k) =>
    spec.origins.get(`data.${k}`)?.value.file === spec.file
  );
  if (own.length === 0) return [];
  const at = `${classes.from.file}:${classes.from.line}`;
  return [
    `data.classes is inherited from ${at} while ${spec.file} sets ${
      own.map((k) => `data.${k}`).join(" and ")
    }: if this data has other labels, write \`classes: null\` under data: (or list its classes)`,
  ];
}

/** Renders the inherited values and unset keys for `--dry-run`. */
export function formatInherited(compiled: CompiledPipeline): string {
  if (compiled.inherited.length === 0 && compiled.unset.length === 0) return "";
  const show = (v: unknown) => {
    const text = JSON.stringify(v) ?? "null";
    return text.length > 60 ? text.slice(0, 59) + "…" : text;
  };
  const where = (l: Location) => l.line > 0 ? `${l.file}:${l.line}` : l.file;
  const width = Math.max(
    ...compiled.inherited.map((i) => i.path.length),
    ...compiled.unset.map((u) => u.path.length),
  );
  return [
    "inherited through extends (value, then where it was written):",
    ...compiled.inherited.map((i) =>
      `  ${i.path.padEnd(width)}  ${show(i.value)}  ← ${where(i.from)}`
    ),
    ...compiled.unset.map((u) =>
      `  ${u.path.padEnd(width)}  unset (null)  ← ${where(u.at)}`
    ),
  ].join("\n");
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
  const maps = plan.stages.filter((s) => s.kind === "map");
  const phases = [
    ...new Set(["fit", "eval", ...maps.flatMap((s) => s.phases ?? [])]),
  ];
  lines.push(
    `  front end  (runtime.frontEnd ${plan.runtime.frontEnd}; fused only on the webgpu backend)`,
  );
  for (const phase of phases) {
    const active = maps.filter((s) => !s.phases || s.phases.includes(phase));
    lines.push(
      `    ${describeFusion(phase, active, fusableTail(active), "WebGPU")}`,
    );
  }
  return lines.join("\n");
}
