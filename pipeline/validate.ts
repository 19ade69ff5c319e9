/**
 * Turns schema (zod) issues into located diagnostics: unknown keys with a
 * did-you-mean, wrong types with the expected type and the value found, enum
 * values with the allowed list, missing required keys, and ranges.
 *
 * @module
 */
import type { Issue, IssueCode, Location } from "./diagnostics.ts";
import { didYouMean, showValue, typeName } from "./diagnostics.ts";
import type { NodeSpan, SpecPath } from "./spec_source.ts";
import { pathKey } from "./spec_source.ts";
import type { OptionsSchema, SchemaIssue } from "./types.ts";
import { whole } from "./spec_load.ts";

/** What the validator needs to know about the spec being checked. */
export interface ValidationTarget {
  /** The file the spec was loaded from (fallback location). */
  readonly file: string;
  /** The merged spec value. */
  readonly value: unknown;
  /** Spans of every path. */
  readonly origins: ReadonlyMap<string, NodeSpan>;
  /** Stage names by index, for readable paths. */
  readonly stageNames: readonly string[];
}

/** Reads the value at `path`, or undefined. */
export function valueAt(value: unknown, path: SpecPath): unknown {
  let node = value;
  for (const key of path) {
    if (node === null || typeof node !== "object") return undefined;
    node = (node as Record<string | number, unknown>)[key];
  }
  return node;
}

/**
 * Finds the location of `path`: its key (or value), else its nearest located
 * ancestor.
 */
export function locate(
  target: Pick<ValidationTarget, "file" | "origins">,
  path: SpecPath,
  prefer: "key" | "value" = "value",
): Location {
  for (let n = path.length; n >= 0; n--) {
    const span = target.origins.get(pathKey(path.slice(0, n)));
    if (!span) continue;
    if (n === path.length) {
      return (prefer === "key" ? span.key ?? span.value : span.value);
    }
    return span.key ?? span.value;
  }
  return whole(target.file);
}

/** Renders a spec path for people: `stages[2] (mel) › with.nMels`. */
export function describePath(
  path: SpecPath,
  stageNames: readonly string[],
): string {
  if (path[0] === "stages" && typeof path[1] === "number") {
    const name = stageNames[path[1]];
    const head = name ? `stages[${path[1]}] (${name})` : `stages[${path[1]}]`;
    const rest = formatKeys(path.slice(2));
    return rest ? `${head} › ${rest}` : head;
  }
  return formatKeys(path);
}

function formatKeys(path: SpecPath): string {
  let out = "";
  for (const k of path) {
    out += typeof k === "number" ? `[${k}]` : (out ? `.${k}` : String(k));
  }
  return out;
}

// deno-lint-ignore no-explicit-any
type AnySchema = any;

/** Unwraps default/optional/nullable/pipe/readonly wrappers of a zod 4 schema. */
function unwrap(schema: AnySchema): AnySchema {
  let s = schema;
  for (let i = 0; i < 20 && s?._zod?.def; i++) {
    const def = s._zod.def;
    if (
      ["default", "optional", "nullable", "readonly", "prefault", "catch"]
        .includes(def.type)
    ) s = def.innerType;
    else if (def.type === "pipe") s = def.in;
    else if (def.type === "lazy") s = def.getter();
    else break;
  }
  return s;
}

/**
 * Lists the keys a zod object schema allows at `path` (following the data
 * through unions by discriminator), for did-you-mean hints.
 */
export function keysAt(
  schema: unknown,
  path: SpecPath,
  data: unknown,
): string[] {
  let s = unwrap(schema);
  let d = data;
  for (const key of [...path, undefined]) {
    const def = s?._zod?.def;
    if (!def) return [];
    if (def.type === "union") {
      const disc = def.discriminator as string | undefined;
      const options = def.options as AnySchema[];
      const pick = disc && d && typeof d === "object"
        ? options.find((o) => {
          const lit = unwrap(unwrap(o)._zod?.def?.shape?.[disc]);
          const values = lit?._zod?.def?.values as unknown[] | undefined;
          return values?.includes((d as Record<string, unknown>)[disc]);
        })
        : undefined;
      if (!pick) {
        return [
          ...new Set(options.flatMap((o) => keysAt(o, path.slice(0), d))),
        ];
      }
      s = unwrap(pick);
    }
    const def2 = s?._zod?.def;
    if (key === undefined) {
      return def2?.type === "object" ? Object.keys(def2.shape) : [];
    }
    if (def2?.type === "object") s = unwrap(def2.shape[key]);
    else if (def2?.type === "array") s = unwrap(def2.element);
    else if (def2?.type === "record") s = unwrap(def2.valueType);
    else return [];
    d = valueAt(d, [key]);
  }
  return [];
}

/**
 * Checks `value` against `schema` and returns located issues.
 *
 * @param schema A zod (or compatible) schema.
 * @param base Path of the checked value inside the spec (e.g. `["stages", 2, "with"]`).
 * @param target The spec being checked.
 * @param what Phrase naming the checked thing in messages (`stage "mel"`, `runtime`).
 */
export function checkAgainst<T>(
  schema: OptionsSchema<T>,
  base: SpecPath,
  target: ValidationTarget,
  what: string,
): { data?: T; issues: Issue[] } {
  const input = valueAt(target.value, base);
  const result = schema.safeParse(input === undefined ? {} : input);
  if (result.success) return { data: result.data, issues: [] };
  const issues: Issue[] = [];
  for (const zi of result.error.issues) {
    issues.push(...convert(zi, schema, base, target, what, input));
  }
  return { issues };
}

function convert(
  zi: SchemaIssue,
  schema: unknown,
  base: SpecPath,
  target: ValidationTarget,
  what: string,
  input: unknown,
): Issue[] {
  const rel = zi.path.map((p) => typeof p === "symbol" ? String(p) : p) as (
    | string
    | number
  )[];
  const full = [...base, ...rel];
  const found = valueAt(input, rel);
  const make = (
    code: IssueCode,
    path: SpecPath,
    message: string,
    hint?: string,
    prefer: "key" | "value" = "value",
  ): Issue => ({
    ...locate(target, path, prefer),
    code,
    path: describePath(path, target.stageNames),
    message,
    hint,
  });
  const label = (path: SpecPath) => {
    const key = path[path.length - 1];
    if (key === undefined) return what;
    return typeof key === "number"
      ? describePath(path, target.stageNames)
      : `"${key}"`;
  };
  // Any other issue: zod's own message, sentence-cased to ours.
  const generic = () => [make(
    "invalid_value",
    full,
    `Cannot use ${showValue(found)} for ${label(full)}: ${
      zi.message.replace(/\.$/, "")
    }`,
  )];
  switch (zi.code) {
    case "unrecognized_keys": {
      const allowed = keysAt(schema, rel, input);
      return (zi.keys ?? []).map((key) => {
        const near = didYouMean(key, allowed);
        const p = [...full, key];
        const owner = rel.length > 0
          ? `"${describePath(full, target.stageNames)}"`
          : what;
        return make(
          "unknown_key",
          p,
          `Cannot use key "${key}": ${owner} has no such key`,
          near
            ? `did you mean "${near}"?`
            : allowed.length
            ? `allowed keys: ${allowed.join(", ")}`
            : undefined,
          "key",
        );
      });
    }
    case "invalid_type": {
      if (found === undefined) {
        return [make(
          "missing_required",
          full,
          `Cannot find required key "${String(rel[rel.length - 1] ?? "")}" in ${
            rel.length > 1
              ? describePath(full.slice(0, -1), target.stageNames)
              : what
          }`,
          `add it: expected ${expectedText(zi.expected)}`,
          "key",
        )];
      }
      return [make(
        "wrong_type",
        full,
        `Cannot use ${showValue(found)} for ${label(full)}: expected ${
          expectedText(zi.expected)
        }, found ${typeName(found)}`,
        full[0] === "stages" && full.length === 2 && typeof found === "string"
          ? `write a stage entry: \`- use: ${found}\``
          : `write ${expectedText(zi.expected)} here`,
      )];
    }
    case "invalid_value": {
      const values = (zi.values ?? []).map((v) => String(v));
      const near = typeof found === "string"
        ? didYouMean(found, values)
        : undefined;
      return [make(
        "bad_enum",
        full,
        `Cannot use ${showValue(found)} for ${
          label(full)
        }: it is not one of the allowed values`,
        `${near ? `did you mean "${near}"? ` : ""}allowed values: ${
          values.map((v) => `"${v}"`).join(", ")
        }`,
      )];
    }
    case "invalid_union": {
      if (zi.discriminator) {
        const disc = zi.discriminator;
        const allowed = (zi.options ?? []).map(String);
        const near = typeof found === "string"
          ? didYouMean(found, allowed)
          : undefined;
        const choices = `allowed values: ${
          allowed.map((a) => `"${a}"`).join(", ")
        }`;
        return [make(
          found === undefined ? "missing_required" : "bad_enum",
          full,
          found === undefined
            ? `Cannot find required key "${disc}" in ${
              rel.length > 1
                ? `"${describePath(full.slice(0, -1), target.stageNames)}"`
                : what
            }`
            : `Cannot use ${
              showValue(found)
            } for "${disc}": it is not one of the allowed values`,
          `${near ? `did you mean "${near}"? ` : ""}${choices}`,
          found === undefined ? "key" : "value",
        )];
      }
      return generic();
    }
    case "too_small":
    case "too_big": {
      const bound = zi.code === "too_small" ? zi.minimum : zi.maximum;
      const op = zi.code === "too_small"
        ? (zi.inclusive === false ? ">" : ">=")
        : (zi.inclusive === false ? "<" : "<=");
      const measure = zi.origin === "array" || zi.origin === "string"
        ? "its length"
        : "it";
      return [make(
        "out_of_range",
        full,
        `Cannot use ${showValue(found)} for ${
          label(full)
        }: ${measure} must be ${op} ${String(bound)}`,
      )];
    }
    default:
      return generic();
  }
}

/** Names a zod type for spec authors, with an article: "a list", "an integer". */
function expectedText(expected: string | undefined): string {
  const names: Record<string, string> = {
    array: "a list",
    tuple: "a list",
    record: "a mapping",
    object: "a mapping",
    map: "a mapping",
    int: "an integer",
    number: "a number",
    string: "a string",
    boolean: "true or false",
    null: "null",
  };
  if (!expected) return "a value of another type";
  return names[expected] ?? `a ${expected}`;
}
