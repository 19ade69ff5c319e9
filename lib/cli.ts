/**
 * Command-line parsing shared by the project's commands (`deno task export`,
 * `predict`, `serve`): `node:util`'s `parseArgs`, with a bad command line
 * printed once as the reason followed by the usage line (exit code 2) and
 * `--help` printing the usage (exit code 0).
 *
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseCommandLine } from "./cli.ts";
 * const parsed = parseCommandLine({
 *   args: ["--top", "5"],
 *   options: { top: { type: "string" }, help: { type: "boolean" } },
 * }, "usage: demo [--top N]");
 * assert.ok(typeof parsed !== "number");
 * assert.equal(parsed.values.top, "5");
 * ```
 *
 * @module
 */
// deno-lint-ignore-file no-console -- prints a command line's usage and errors
import { parseArgs, type ParseArgsConfig } from "node:util";

/**
 * Parses a command line; prints the usage on `--help` or a parse error.
 *
 * @param config `parseArgs`'s configuration; a boolean `help` option, when
 *   declared, makes `--help` print `usage`.
 * @param usage The usage line printed after an error or for `--help`.
 * @returns The parsed values and positionals, or the exit code to end with:
 *   0 after `--help`, 2 after a parse error (unknown flag, missing value).
 */
export function parseCommandLine<T extends ParseArgsConfig>(
  config: T,
  usage: string,
): ReturnType<typeof parseArgs<T>> | number {
  let parsed;
  try {
    parsed = parseArgs(config);
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
