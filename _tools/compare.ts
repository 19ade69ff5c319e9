/**
 * `deno task compare runs/a runs/b`: the command line of `lib/compare.ts` —
 * prints two run folders side by side.
 *
 * Exit codes: 0 printed, 1 a folder could not be read, 2 bad command line.
 *
 * @module
 */
// deno-lint-ignore-file no-console -- a command-line tool: printing is its job
import { compareRuns } from "../lib/compare.ts";

if (import.meta.main) {
  if (Deno.args.length !== 2 || Deno.args.some((a) => a.startsWith("-"))) {
    console.error("Usage: deno task compare <run folder A> <run folder B>");
    Deno.exit(2);
  }
  try {
    console.log(await compareRuns(Deno.args[0], Deno.args[1]));
  } catch (error) {
    console.error((error as Error).message);
    Deno.exit(1);
  }
}
