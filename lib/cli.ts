/**
 * Command-line parsing shared by the project's commands (`deno task export`,
 * `predict`, `serve`): `node:util`'s `parseArgs` with a `--help` flag, a bad command line
 * printed once as the reason followed by the usage line (exit code 2) and
 * `--help` printing the usage (exit code 0).
 *
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseCommandLine } from "./cli.ts";
 * const parsed = parseCommandLine(
 *   ["--top", "5"],
 *   { top: { type: "string" } },
 *   "usage: demo [--top N]",
 * );
 * assert.ok(typeof parsed !== "number");
 * assert.equal(parsed.values.top, "5");
 * ```
 *
 * @module
 */
// deno-lint-ignore-file no-console -- prints a command line's usage and errors
import { parseArgs, type ParseArgsOptionsConfig } from "node:util";

/** The `--help` (`-h`) flag every command takes. */
const HELP = {
  help: { type: "boolean", short: "h", default: false },
} as const;

/** What {@linkcode parseCommandLine} parses with `options` `O`. */
type Parsed<O extends ParseArgsOptionsConfig> = ReturnType<
  typeof parseArgs<{
    args: string[];
    options: O & typeof HELP;
    allowPositionals: boolean;
    strict: true;
  }>
>;

/**
 * Parses a command line strictly (an unknown flag is an error), with a
 * `--help` (`-h`) flag added to `options`.
 *
 * @param args The command-line arguments.
 * @param options `parseArgs`'s options of the command (without `help`).
 * @param usage The usage line printed after an error or for `--help`.
 * @param settings `positionals`: whether arguments other than flags are
 *   accepted (default true).
 * @returns The parsed values and positionals, or the exit code to end with:
 *   0 after `--help` (the usage printed), 2 after a parse error (unknown
 *   flag, missing value, unexpected argument; printed with the usage).
 */
export function parseCommandLine<O extends ParseArgsOptionsConfig>(
  args: string[],
  options: O,
  usage: string,
  settings: { positionals?: boolean } = {},
): Parsed<O> | number {
  let parsed: Parsed<O>;
  try {
    parsed = parseArgs({
      args,
      options: { ...options, ...HELP },
      allowPositionals: settings.positionals ?? true,
      strict: true,
    });
  } catch (error) {
    return usageError((error as Error).message, usage);
  }
  if ((parsed.values as { help?: boolean }).help) {
    console.log(usage);
    return 0;
  }
  return parsed;
}

/**
 * Prints a bad command line's reason, then the usage line, to stderr.
 *
 * @param why What is wrong with the command line.
 * @param usage The usage line.
 * @returns 2, the exit code of a bad command line.
 */
export function usageError(why: string, usage: string): 2 {
  console.error(`${why}\n${usage}`);
  return 2;
}
