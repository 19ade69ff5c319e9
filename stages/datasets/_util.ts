/**
 * Helpers shared by the layout indexers: folder listings that report instead
 * of throwing, deterministic clip ordering, empty-split checks and a small
 * CSV parser. Private to `stages/datasets/`.
 *
 * @module
 */
import { join } from "node:path";
import type { ClipRef, DataProblem } from "./types.ts";

/** The split names every layout produces, in order. */
export const SPLITS = ["train", "validation", "test"] as const;
/** A split name. */
export type SplitName = (typeof SPLITS)[number];

/** A folder's entries, sorted by name (code-point order). */
export interface Listing {
  readonly files: string[];
  readonly dirs: string[];
}

/** The message of an unknown thrown value. */
export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Code-point order, independent of locale. */
export function byCodePoint(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** What is at `path`: a file, a folder, nothing, or an error message. */
export async function kindOf(
  path: string,
): Promise<"file" | "dir" | "missing" | { error: string }> {
  try {
    const info = await Deno.stat(path);
    return info.isDirectory ? "dir" : "file";
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return "missing";
    return { error: errorMessage(e) };
  }
}

/**
 * Checks that `root` is a folder; returns the problem when it is not.
 *
 * @param what What the folder should be, for the message (e.g. "the Speech Commands folder").
 */
export async function checkRoot(
  root: string,
  what: string,
): Promise<DataProblem | undefined> {
  const kind = await kindOf(root);
  if (kind === "dir") return undefined;
  if (kind === "missing") {
    return { path: root, message: `Cannot find ${what}` };
  }
  if (kind === "file") {
    return { path: root, message: `Expected ${what}, found a file` };
  }
  return { path: root, message: `Cannot read ${what}: ${kind.error}` };
}

/**
 * Lists a folder (following symlinks); hidden entries (starting with ".") are
 * skipped. Returns the error message instead of throwing.
 */
export async function listDir(dir: string): Promise<Listing | string> {
  const files: string[] = [];
  const dirs: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      if (entry.name.startsWith(".")) continue;
      let isDir = entry.isDirectory;
      let isFile = entry.isFile;
      if (entry.isSymlink) {
        try {
          const info = await Deno.stat(join(dir, entry.name));
          isDir = info.isDirectory;
          isFile = info.isFile;
        } catch {
          continue; // dangling link
        }
      }
      if (isDir) dirs.push(entry.name);
      else if (isFile) files.push(entry.name);
    }
  } catch (e) {
    return errorMessage(e);
  }
  files.sort(byCodePoint);
  dirs.sort(byCodePoint);
  return { files, dirs };
}

/** Whether a file name ends in `.wav` (any case). */
export function isWav(name: string): boolean {
  return name.toLowerCase().endsWith(".wav");
}

/**
 * Every `.wav` file under `dir` (recursively), absolute, sorted; folders that
 * cannot be read are reported in `problems`.
 */
export async function walkWavs(
  dir: string,
  problems: DataProblem[],
): Promise<string[]> {
  const out: string[] = [];
  const listing = await listDir(dir);
  if (typeof listing === "string") {
    problems.push({ path: dir, message: `Cannot read folder: ${listing}` });
    return out;
  }
  for (const name of listing.files) if (isWav(name)) out.push(join(dir, name));
  for (const sub of listing.dirs) {
    out.push(...await walkWavs(join(dir, sub), problems));
  }
  out.sort(byCodePoint);
  return out;
}

/** Sorts clips by path (code-point order), in place; returns them. */
export function sortClips(clips: ClipRef[]): ClipRef[] {
  return clips.sort((a, b) => byCodePoint(a.path, b.path));
}

/**
 * Empty splits of `splits` as problems (about `path`), except those in `skip`
 * (already reported another way).
 */
export function emptySplitProblems(
  splits: Readonly<Record<SplitName, readonly ClipRef[]>>,
  path: string,
  skip: ReadonlySet<string> = new Set(),
  hint = "",
): DataProblem[] {
  return SPLITS.filter((s) => splits[s].length === 0 && !skip.has(s)).map((
    s,
  ) => ({ path, message: `Split "${s}" has no clips${hint}` }));
}

/** Reads a text file; returns the error message (or "missing") instead of throwing. */
export async function readText(
  path: string,
): Promise<{ text: string } | { missing: true } | { error: string }> {
  try {
    return { text: await Deno.readTextFile(path) };
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return { missing: true };
    return { error: errorMessage(e) };
  }
}

/** One CSV record: its fields and the 1-based line it starts on. */
export interface CsvRow {
  readonly cells: string[];
  readonly line: number;
}

/**
 * Parses CSV text (RFC 4180): comma-separated fields, double-quoted fields may
 * hold commas, newlines and doubled quotes (`""`); CRLF or LF line ends; a
 * leading BOM is dropped. Blank lines are skipped. Unquoted fields are
 * trimmed. Throws a SyntaxError for an unterminated quoted field.
 */
export function parseCsv(text: string): CsvRow[] {
  const rows: CsvRow[] = [];
  const s = text.startsWith("\uFEFF") ? text.slice(1) : text;
  let line = 1;
  let rowLine = 1;
  let cells: string[] = [];
  let field = "";
  let quoted = false;
  let wasQuoted = false;
  let i = 0;
  const endField = () => {
    cells.push(wasQuoted ? field : field.trim());
    field = "";
    wasQuoted = false;
  };
  const endRow = () => {
    endField();
    if (!(cells.length === 1 && cells[0] === "")) {
      rows.push({ cells, line: rowLine });
    }
    cells = [];
  };
  while (i < s.length) {
    const c = s[i];
    if (quoted) {
      if (c === '"') {
        if (s[i + 1] === '"') {
          field += '"';
          i += 2;
          continue;
        }
        quoted = false;
        i++;
        continue;
      }
      if (c === "\n") line++;
      field += c;
      i++;
      continue;
    }
    if (c === '"' && field.trim() === "") {
      quoted = true;
      wasQuoted = true;
      field = "";
      i++;
    } else if (c === ",") {
      endField();
      i++;
    } else if (c === "\r" || c === "\n") {
      endRow();
      i += c === "\r" && s[i + 1] === "\n" ? 2 : 1;
      line++;
      rowLine = line;
    } else if (wasQuoted && (c === " " || c === "\t")) {
      i++; // whitespace after a closing quote
    } else {
      field += c;
      i++;
    }
  }
  if (quoted) {
    throw new SyntaxError(
      `Cannot parse the CSV: unterminated quoted field starting on line ${rowLine}; close the quote`,
    );
  }
  if (field !== "" || cells.length > 0 || wasQuoted) endRow();
  return rows;
}

/** Two-digit speaker or number label, e.g. 5 → "05". */
export function pad2(n: number): string {
  return String(n).padStart(2, "0");
}
