/**
 * Command-line overrides: `--set dotted.path=value`, with the value parsed as
 * a YAML scalar (or flow collection). A path starts with an envelope key
 * (`runtime.seed`, `data.root`, `stages.mel.with.nMels`) or, as a shorthand, a
 * stage name (`train.epochs` means `stages.train.with.epochs`). Every issue an
 * override causes is located at `--set <path>=<value>`.
 *
 * @module
 */
import { parse as parseYaml } from "yaml";
import type { Issue } from "./diagnostics.ts";
import { didYouMean } from "./diagnostics.ts";
import type { LocatedSpec } from "./spec_load.ts";
import { dropSpans, isMapping, stageEntryName } from "./spec_load.ts";
import { pathKey } from "./spec_source.ts";
import { ENVELOPE_KEYS } from "../schemas/envelope.ts";

/** One parsed override. */
export interface Override {
  /** The text as given, `a.b=c`. */
  readonly text: string;
  /** Path segments as written. */
  readonly path: readonly string[];
  /** The parsed value. */
  readonly value: unknown;
}

function overrideIssue(
  text: string,
  message: string,
  hint?: string,
): Issue {
  return {
    file: `--set ${text}`,
    line: 0,
    column: 0,
    code: "bad_override",
    path: text.split("=")[0],
    message,
    hint,
  };
}

/**
 * Parses `--set` texts.
 *
 * @param texts Each `dotted.path=value`.
 */
export function parseOverrides(
  texts: readonly string[],
): { overrides: Override[]; issues: Issue[] } {
  const overrides: Override[] = [];
  const issues: Issue[] = [];
  for (const text of texts) {
    const eq = text.indexOf("=");
    const rawPath = eq < 0 ? text : text.slice(0, eq);
    const path = rawPath.split(".");
    if (eq < 0 || path.some((p) => p.trim() === "")) {
      issues.push(overrideIssue(
        text,
        `Cannot parse override "${text}": expected dotted.path=value`,
        "for example --set train.epochs=5 or --set runtime.seed=7",
      ));
      continue;
    }
    try {
      const raw = text.slice(eq + 1);
      overrides.push({ text, path, value: raw === "" ? "" : parseYaml(raw) });
    } catch (error) {
      issues.push(overrideIssue(
        text,
        `Cannot parse the value of override "${text}": ${
          (error as Error).message.split("\n")[0]
        }`,
        "values are YAML scalars: 5, 0.1, true, text, or a flow list [1, 2]",
      ));
    }
  }
  return { overrides, issues };
}

/** Resolves an override path to a path in the merged spec. */
function resolvePath(
  spec: LocatedSpec,
  o: Override,
): { path?: (string | number)[]; issue?: Issue } {
  const stages = Array.isArray(spec.value.stages)
    ? spec.value.stages as unknown[]
    : [];
  const names = stages.map(stageEntryName);
  const [head, ...rest] = o.path;
  const stageIndex = (ref: string) =>
    /^\d+$/.test(ref) ? Number(ref) : names.indexOf(ref);
  if (head === "stages") {
    if (rest.length === 0) return { path: ["stages"] };
    const i = stageIndex(rest[0]);
    if (i < 0 || i >= stages.length) {
      const near = didYouMean(rest[0], names);
      return {
        issue: overrideIssue(
          o.text,
          `Cannot set "${o.path.join(".")}": the spec has no stage "${
            rest[0]
          }"`,
          near
            ? `did you mean "${near}"? stages are: ${names.join(", ")}`
            : `stages are: ${names.join(", ")}`,
        ),
      };
    }
    return { path: ["stages", i, ...rest.slice(1)] };
  }
  if (ENVELOPE_KEYS.includes(head)) return { path: [...o.path] };
  const i = names.indexOf(head);
  if (i >= 0) return { path: ["stages", i, "with", ...rest] };
  const near = didYouMean(head, [...ENVELOPE_KEYS, ...names]);
  return {
    issue: overrideIssue(
      o.text,
      `Cannot set "${
        o.path.join(".")
      }": "${head}" is neither a top-level key nor a stage name`,
      near
        ? `did you mean "${near}"?`
        : `top-level keys: ${ENVELOPE_KEYS.join(", ")}; stages: ${
          names.join(", ")
        }`,
    ),
  };
}

/**
 * Applies overrides to a merged spec in place; each set path and everything
 * under it is located at its `--set` text.
 *
 * @returns Issues for overrides that name no existing stage or top-level key,
 *   or that would replace a value that is not a mapping with a nested key.
 *   Unknown option keys are caught later by the schemas, at the `--set` text.
 */
export function applyOverrides(
  spec: LocatedSpec,
  overrides: readonly Override[],
): Issue[] {
  const issues: Issue[] = [];
  for (const o of overrides) {
    const { path, issue } = resolvePath(spec, o);
    if (issue || !path) {
      if (issue) issues.push(issue);
      continue;
    }
    let node: Record<string, unknown> | unknown[] = spec.value;
    let ok = true;
    for (let i = 0; i < path.length - 1; i++) {
      const key = path[i];
      const next: unknown = (node as Record<string | number, unknown>)[key];
      if (next === undefined) {
        (node as Record<string | number, unknown>)[key] = {};
      } else if (!isMapping(next) && !Array.isArray(next)) {
        issues.push(overrideIssue(
          o.text,
          `Cannot set "${o.path.join(".")}": "${
            path.slice(0, i + 1).join(".")
          }" is a value, not a mapping`,
        ));
        ok = false;
        break;
      }
      node = (node as Record<string | number, unknown>)[key] as
        | Record<string, unknown>
        | unknown[];
    }
    if (!ok) continue;
    (node as Record<string | number, unknown>)[path[path.length - 1]] = o.value;
    dropSpans(spec.origins, path);
    const at = { file: `--set ${o.text}`, line: 0, column: 0 };
    spec.origins.set(pathKey(path), { key: at, value: at });
    // Intermediate mappings created here are located at the override too.
    for (let i = 1; i < path.length; i++) {
      const k = pathKey(path.slice(0, i));
      if (!spec.origins.has(k)) spec.origins.set(k, { key: at, value: at });
    }
  }
  return issues;
}
