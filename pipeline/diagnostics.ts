/**
 * Located diagnostics for pipeline specs: the {@linkcode Issue} record, the
 * {@linkcode ConfigError} that carries every issue found in one pass, the text
 * format `file:line:col  code  message` with a source snippet, a caret and a
 * `hint:`, and the did-you-mean helper used by every check.
 *
 * @module
 */

/** Stable, snake_case tags for every class of problem a spec can have. */
export type IssueCode =
  | "yaml_syntax"
  | "unreadable_file"
  | "extends_cycle"
  | "unknown_key"
  | "wrong_type"
  | "bad_enum"
  | "missing_required"
  | "out_of_range"
  | "invalid_value"
  | "unknown_stage"
  | "bad_stage_module"
  | "import_denied"
  | "integrity_mismatch"
  | "unmet_takes"
  | "bad_source"
  | "bad_override"
  | "duplicate_stage_name";

/** Where an issue points: a file position, or a `--set` override. */
export interface Location {
  /** File path as given (relative to the working directory where possible), or `--set a.b=c`. */
  readonly file: string;
  /** 1-based line; 0 when the location is an override or a whole file. */
  readonly line: number;
  /** 1-based column; 0 when the location is an override or a whole file. */
  readonly column: number;
  /** Length of the node in characters on its first line, for the caret. */
  readonly length?: number;
  /** The source line the position is on, for the snippet. */
  readonly sourceLine?: string;
}

/** One problem found in a spec. */
export interface Issue extends Location {
  /** Stable tag, asserted on by tests and tools. */
  readonly code: IssueCode;
  /** Path in the spec, e.g. `stages[2] (mel) › with.nMels`. */
  readonly path: string;
  /** Sentence-case message: "Cannot …: current state". */
  readonly message: string;
  /** One line naming the fix, when one can be named. */
  readonly hint?: string;
}

/** Thrown when a spec cannot be loaded, validated or compiled; carries every issue at once. */
export class ConfigError extends Error {
  /** Every issue found, in file order. */
  readonly issues: readonly Issue[];
  /** The spec file the error is about. */
  readonly specFile: string;

  /**
   * @param specFile The top-level spec file being compiled.
   * @param issues Every issue found (at least one).
   */
  constructor(specFile: string, issues: readonly Issue[]) {
    const n = issues.length;
    super(
      `Cannot compile spec "${specFile}": ${n} problem${n === 1 ? "" : "s"}`,
    );
    this.name = "ConfigError";
    this.specFile = specFile;
    this.issues = sortIssues(issues);
  }
}

/** Sorts issues by file, then line, then column, keeping overrides last. */
export function sortIssues(issues: readonly Issue[]): Issue[] {
  return [...issues].sort((a, b) => {
    const ao = a.file.startsWith("--set") ? 1 : 0;
    const bo = b.file.startsWith("--set") ? 1 : 0;
    if (ao !== bo) return ao - bo;
    if (a.file !== b.file) return a.file < b.file ? -1 : 1;
    return a.line - b.line || a.column - b.column;
  });
}

/**
 * Formats one issue as `file:line:col  code  message`, the source line with a
 * caret under the node, and a `hint:` line when there is one.
 */
export function formatIssue(issue: Issue): string {
  const where = issue.line > 0
    ? `${issue.file}:${issue.line}:${issue.column}`
    : issue.file;
  const lines = [`${where}  ${issue.code}  ${issue.message}`];
  if (issue.path) lines.push(`  at ${issue.path}`);
  if (issue.sourceLine !== undefined && issue.line > 0) {
    const gutter = String(issue.line);
    const pad = " ".repeat(gutter.length);
    const caretLength = Math.max(
      1,
      Math.min(
        issue.length ?? 1,
        issue.sourceLine.length - issue.column + 1,
      ),
    );
    lines.push(`  ${gutter} | ${issue.sourceLine}`);
    lines.push(
      `  ${pad} | ${" ".repeat(Math.max(0, issue.column - 1))}${
        "^".repeat(caretLength)
      }`,
    );
  }
  if (issue.hint) lines.push(`  hint: ${issue.hint}`);
  return lines.join("\n");
}

/** Formats a whole {@linkcode ConfigError}: a headline, then every issue separated by blank lines. */
export function formatConfigError(error: ConfigError): string {
  return [
    `error: ${error.message}`,
    ...error.issues.map(formatIssue),
  ].join("\n\n");
}

/** Levenshtein edit distance between two strings. */
export function editDistance(a: string, b: string): number {
  const prev = new Array<number>(b.length + 1);
  for (let j = 0; j <= b.length; j++) prev[j] = j;
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0];
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j];
      prev[j] = Math.min(
        prev[j] + 1,
        prev[j - 1] + 1,
        diag + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
      diag = up;
    }
  }
  return prev[b.length];
}

/**
 * Returns the candidate closest to `word` (case-insensitive edit distance), or
 * undefined when none is close enough to be a plausible misspelling.
 */
export function didYouMean(
  word: string,
  candidates: Iterable<string>,
): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  const w = word.toLowerCase();
  for (const c of candidates) {
    const d = editDistance(w, c.toLowerCase());
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  if (best === undefined) return undefined;
  const limit = Math.max(2, Math.floor(Math.max(word.length, best.length) / 3));
  return bestDistance <= limit ? best : undefined;
}

/** Renders a value found in a spec for a message: strings quoted, others as JSON. */
export function showValue(value: unknown): string {
  if (value === undefined) return "nothing";
  if (typeof value === "string") return `"${value}"`;
  try {
    const text = JSON.stringify(value);
    return text.length > 60 ? `${text.slice(0, 57)}...` : text;
  } catch {
    return String(value);
  }
}

/** Names the JSON type of a value as a spec author sees it. */
export function typeName(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "list";
  if (typeof value === "object") return "mapping";
  return typeof value;
}
