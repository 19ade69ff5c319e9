/**
 * Reads one YAML spec file into plain data plus a map from every key path to
 * its source position, so later checks can point at the exact line and column.
 * YAML 1.2 via `npm:yaml` with a `LineCounter`; syntax errors become located
 * {@linkcode Issue}s.
 *
 * @module
 */
import {
  isMap,
  isPair,
  isScalar,
  isSeq,
  LineCounter,
  parseDocument,
} from "yaml";
import type { Node } from "yaml";
import type { Issue, Location } from "./diagnostics.ts";

/** A key path into a spec value: mapping keys and list indices. */
export type SpecPath = readonly (string | number)[];

/** Where one node of a spec sits: the key (if any) and the value. */
export interface NodeSpan {
  /** Position of the key of this entry (absent for list items and the root). */
  readonly key?: Location;
  /** Position of the value. */
  readonly value: Location;
}

/** One parsed spec file. */
export interface SpecSource {
  /** The file path as given (for messages). */
  readonly file: string;
  /** The parsed data (plain JSON-like values). */
  readonly value: unknown;
  /** Span of every node, keyed by {@linkcode pathKey}. */
  readonly spans: ReadonlyMap<string, NodeSpan>;
}

/** Joins a path into the key used by span maps (`stages.2.with.nMels`). */
export function pathKey(path: SpecPath): string {
  return path.join(".");
}

/**
 * Parses YAML text into a {@linkcode SpecSource}.
 *
 * @param text The YAML source.
 * @param file The file name used in locations.
 * @returns The parsed source, or the syntax issues found (all of them).
 */
export function parseSpecText(
  text: string,
  file: string,
): { source?: SpecSource; issues: Issue[] } {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, {
    lineCounter,
    prettyErrors: false,
    uniqueKeys: true,
    version: "1.2",
  });
  const lines = text.split(/\r?\n/);
  const locate = (offset: number, end?: number): Location => {
    const { line, col } = lineCounter.linePos(offset);
    const sourceLine = lines[line - 1] ?? "";
    const length = end !== undefined ? Math.max(1, end - offset) : 1;
    return { file, line, column: col, length, sourceLine };
  };
  if (doc.errors.length > 0) {
    const issues: Issue[] = doc.errors.map((e) => {
      const at = locate(e.pos[0], e.pos[1]);
      const firstLine = e.message.split("\n")[0].replace(
        /\s+at line \d+, column \d+:?$/,
        "",
      );
      return {
        ...at,
        code: "yaml_syntax",
        path: "",
        message: `Cannot parse YAML: ${firstLine.replace(/\.$/, "")}`,
        hint: "check indentation and quoting on this line",
      };
    });
    return { issues };
  }
  const spans = new Map<string, NodeSpan>();
  const walk = (node: unknown, path: (string | number)[], key?: Location) => {
    const n = node as Node | null;
    const range = n?.range;
    const value = range ? locate(range[0], range[1]) : key ?? locate(0);
    spans.set(pathKey(path), { key, value });
    if (isMap(n)) {
      for (const item of n.items) {
        if (!isPair(item)) continue;
        const k = isScalar(item.key)
          ? String(item.key.value)
          : String(item.key);
        const kr = (item.key as Node | null)?.range;
        const keyLoc = kr ? locate(kr[0], kr[1]) : value;
        walk(item.value, [...path, k], keyLoc);
      }
    } else if (isSeq(n)) {
      n.items.forEach((item, i) => walk(item, [...path, i]));
    }
  };
  walk(doc.contents, []);
  return { source: { file, value: doc.toJS() ?? {}, spans }, issues: [] };
}

/**
 * Reads and parses a spec file.
 *
 * @param path File path, as the user gave it or relative to the including file.
 * @returns The parsed source, or located issues (unreadable file, YAML syntax).
 */
export async function readSpecFile(
  path: string,
): Promise<{ source?: SpecSource; issues: Issue[] }> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    const reason = error instanceof Deno.errors.NotFound
      ? "no such file"
      : error instanceof Deno.errors.PermissionDenied
      ? "read access is not granted"
      : error instanceof Deno.errors.IsADirectory
      ? "it is a directory"
      : (error as Error).message;
    return {
      issues: [{
        file: path,
        line: 0,
        column: 0,
        code: "unreadable_file",
        path: "",
        message: `Cannot read spec file "${path}": ${reason}`,
        hint: error instanceof Deno.errors.NotFound
          ? "check the path; `extends:` paths are relative to the file that names them"
          : undefined,
      }],
    };
  }
  return parseSpecText(text, path);
}
