/**
 * Loads a spec with its `extends:` chain into one merged value that still
 * knows, for every key, which file and line set it. Children merge over
 * parents key by key; `key: null` in a child unsets the inherited key (e.g.
 * `data: { classes: null }`: the parent's list is dropped and the default
 * applies). A child's `stages:` is either a full list (replaces the parent's)
 * or a mapping from stage name to a patch (`{ with: {...} }`, a new `use:`,
 * or `null` to drop the stage).
 *
 * @module
 */
import { dirname, isAbsolute, relative, resolve } from "node:path";
import type { Issue, Location } from "./diagnostics.ts";
import { didYouMean, showValue } from "./diagnostics.ts";
import type { NodeSpan, SpecPath, SpecSource } from "./spec_source.ts";
import { pathKey, readSpecFile } from "./spec_source.ts";

/** A spec value with the origin of every key. */
export interface LocatedSpec {
  /** The file the user named. */
  readonly file: string;
  /** The merged value. */
  readonly value: Record<string, unknown>;
  /** Span of every path in the merged value, keyed by `pathKey`. */
  readonly origins: Map<string, NodeSpan>;
  /** The files of the chain, the named file first. */
  readonly chain: readonly string[];
  /** Keys a child spec unset with `key: null` (dotted paths), and where. */
  readonly unset: readonly { readonly path: string; readonly at: Location }[];
}

/** Returns true when `v` is a plain mapping. */
export function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Name a stage entry is addressed by: `name:`, else the id or file stem of `use:`. */
export function stageEntryName(entry: unknown): string {
  if (!isMapping(entry)) return "";
  if (typeof entry.name === "string") return entry.name;
  const use = typeof entry.use === "string" ? entry.use : "";
  const stem = use.split(/[?#]/)[0].split("/").pop() ?? use;
  return stem.replace(/\.(ts|js|mts|mjs|tsx|jsx)$/, "").replace(
    /[^a-zA-Z0-9_]/g,
    "_",
  );
}

/** Renders a file path for messages: relative to the working directory when inside it. */
export function displayPath(path: string): string {
  const abs = resolve(path);
  const rel = relative(Deno.cwd(), abs);
  return rel.startsWith("..") || isAbsolute(rel) ? abs : rel;
}

/** Copies every span under `from` to sit under `to` in `target`. */
function copySpans(
  source: ReadonlyMap<string, NodeSpan>,
  from: SpecPath,
  target: Map<string, NodeSpan>,
  to: SpecPath,
) {
  const fk = pathKey(from);
  for (const [key, span] of source) {
    if (fk === "" || key === fk || key.startsWith(fk + ".")) {
      const rest = fk === "" ? key : key.slice(fk.length).replace(/^\./, "");
      target.set(
        pathKey([...to, ...(rest === "" ? [] : rest.split("."))]),
        span,
      );
    }
  }
}

/** Deletes every span at or under `path`. */
export function dropSpans(origins: Map<string, NodeSpan>, path: SpecPath) {
  const k = pathKey(path);
  for (const key of [...origins.keys()]) {
    if (key === k || key.startsWith(k + ".")) origins.delete(key);
  }
}

/**
 * Merges `child` (at `path`) over `base`, updating origins. A `null` in the
 * child unsets the key: the inherited value is dropped (its default applies),
 * and the unset is recorded in `unset`.
 */
function mergeInto(
  base: Record<string, unknown>,
  child: Record<string, unknown>,
  path: SpecPath,
  origins: Map<string, NodeSpan>,
  childSpans: ReadonlyMap<string, NodeSpan>,
  unset: { path: string; at: Location }[],
  file: string,
) {
  for (const [key, value] of Object.entries(child)) {
    const p = [...path, key];
    if (value === null) {
      delete base[key];
      dropSpans(origins, p);
      const span = childSpans.get(pathKey(p));
      unset.push({
        path: pathKey(p),
        at: span?.key ?? span?.value ?? whole(file),
      });
      continue;
    }
    if (isMapping(value) && isMapping(base[key])) {
      const span = childSpans.get(pathKey(p));
      if (span) origins.set(pathKey(p), span);
      mergeInto(
        base[key] as Record<string, unknown>,
        value,
        p,
        origins,
        childSpans,
        unset,
        file,
      );
    } else {
      base[key] = structuredClone(value);
      dropSpans(origins, p);
      copySpans(childSpans, p, origins, p);
    }
  }
}

/** Applies a `stages:` mapping of patches (by stage name) to the parent's list. */
function patchStages(
  merged: Record<string, unknown>,
  patches: Record<string, unknown>,
  origins: Map<string, NodeSpan>,
  child: SpecSource,
  issues: Issue[],
  unset: { path: string; at: Location }[],
) {
  const list = Array.isArray(merged.stages) ? merged.stages as unknown[] : [];
  const removed: number[] = [];
  for (const [name, patch] of Object.entries(patches)) {
    const index = list.findIndex((e) => stageEntryName(e) === name);
    const span = child.spans.get(pathKey(["stages", name]));
    if (index < 0) {
      const names = list.map(stageEntryName);
      const near = didYouMean(name, names);
      const at = span?.key ?? span?.value ?? whole(child.file);
      issues.push({
        ...at,
        code: "unknown_key",
        path: `stages.${name}`,
        message:
          `Cannot patch stage "${name}": the extended spec has no stage of this name`,
        hint: near
          ? `did you mean "${near}"? stages are: ${names.join(", ")}`
          : `stages are: ${names.join(", ")}`,
      });
      continue;
    }
    if (patch === null) {
      removed.push(index);
      continue;
    }
    if (!isMapping(patch)) {
      const at = span?.value ?? whole(child.file);
      issues.push({
        ...at,
        code: "wrong_type",
        path: `stages.${name}`,
        message:
          `Cannot patch stage "${name}": a patch must be a mapping (use, name, with) or null: found ${
            showValue(patch)
          }`,
        hint: "write `stages: { " + name + ": { with: { ... } } }`",
      });
      continue;
    }
    const entry = list[index] as Record<string, unknown>;
    mergeInto(
      entry,
      patch,
      ["stages", index],
      origins,
      rekey(child, name, index),
      unset,
      child.file,
    );
  }
  // Remove dropped stages, renumbering origins of the stages after them.
  for (const index of removed.sort((a, b) => b - a)) {
    list.splice(index, 1);
    dropSpans(origins, ["stages", index]);
    const moved = [...origins.entries()].filter(([k]) => {
      const m = /^stages\.(\d+)(\.|$)/.exec(k);
      return m !== null && Number(m[1]) > index;
    });
    for (const [k] of moved) origins.delete(k);
    for (const [k, span] of moved) {
      origins.set(
        k.replace(/^stages\.(\d+)/, (_, i) => `stages.${Number(i) - 1}`),
        span,
      );
    }
  }
}

/** The child's spans for `stages.<name>.*`, re-keyed to `stages.<index>.*`. */
function rekey(
  child: SpecSource,
  name: string,
  index: number,
): Map<string, NodeSpan> {
  const out = new Map<string, NodeSpan>();
  copySpans(child.spans, ["stages", name], out, ["stages", index]);
  return out;
}

/** A location naming a whole file. */
export function whole(file: string): Location {
  return { file, line: 0, column: 0 };
}

/**
 * Loads `file` and every spec it extends, and merges them.
 *
 * @param file Path of the spec (relative to the working directory or absolute).
 * @returns The merged spec, or every issue that stops loading (unreadable
 *   files, YAML syntax errors, `extends` cycles, bad patches).
 */
export async function loadSpec(
  file: string,
): Promise<{ spec?: LocatedSpec; issues: Issue[] }> {
  const issues: Issue[] = [];
  const sources: SpecSource[] = [];
  const seen: string[] = [];
  let current = file;
  let via: Location | undefined;
  while (true) {
    const abs = resolve(current);
    if (seen.includes(abs)) {
      const cycle = [...seen.slice(seen.indexOf(abs)), abs].map(displayPath);
      issues.push({
        ...(via ?? whole(displayPath(current))),
        code: "extends_cycle",
        path: "extends",
        message: `Cannot extend "${
          displayPath(current)
        }": it extends this file again (${cycle.join(" → ")})`,
        hint: "remove one `extends:` of the cycle",
      });
      return { issues };
    }
    seen.push(abs);
    const read = await readSpecFile(displayPath(current));
    if (!read.source) {
      // A missing parent is reported at the `extends:` line that names it.
      const located = via && read.issues[0]?.code === "unreadable_file"
        ? read.issues.map((i) => ({ ...i, ...via }))
        : read.issues;
      return { issues: [...issues, ...located] };
    }
    sources.push(read.source);
    const value = read.source.value;
    if (!isMapping(value)) {
      const span = read.source.spans.get("");
      issues.push({
        ...(span?.value ?? whole(read.source.file)),
        code: "wrong_type",
        path: "",
        message:
          `Cannot use "${read.source.file}" as a spec: the top level must be a mapping`,
        hint: "a spec starts with keys such as `name:`, `data:` and `stages:`",
      });
      return { issues };
    }
    if (value.extends === undefined) break;
    const span = read.source.spans.get("extends");
    via = span?.value;
    if (typeof value.extends !== "string") {
      issues.push({
        ...(via ?? whole(read.source.file)),
        code: "wrong_type",
        path: "extends",
        message: `Cannot extend ${
          showValue(value.extends)
        }: extends must be a file path`,
        hint: "write `extends: ../sc1.yaml` (relative to this file)",
      });
      return { issues };
    }
    current = resolve(dirname(abs), value.extends);
  }
  // Merge from the root ancestor down to the named file.
  const root = sources[sources.length - 1];
  const value = structuredClone(root.value) as Record<string, unknown>;
  const origins = new Map<string, NodeSpan>();
  copySpans(root.spans, [], origins, []);
  const unset: { path: string; at: Location }[] = [];
  for (const child of sources.slice(0, -1).reverse()) {
    const c = child.value as Record<string, unknown>;
    const { stages, ...rest } = c;
    const merge = (v: Record<string, unknown>) =>
      mergeInto(value, v, [], origins, child.spans, unset, child.file);
    merge(rest);
    if (Array.isArray(stages) || stages === undefined) {
      if (stages !== undefined) merge({ stages });
    } else if (isMapping(stages)) {
      patchStages(value, stages, origins, child, issues, unset);
    } else {
      merge({ stages });
    }
  }
  delete value.extends;
  dropSpans(origins, ["extends"]);
  return {
    spec: {
      file: displayPath(file),
      value,
      origins,
      chain: sources.map((s) => s.file),
      unset,
    },
    issues,
  };
}
