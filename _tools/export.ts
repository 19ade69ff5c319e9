/**
 * `deno task export <run folder> <out folder> [--which best|last]`: the
 * command line of `lib/export.ts` — exports a finished run as a model
 * package (`model.json`, `weights.bin`).
 *
 * Exit codes: 0 exported, 1 the run could not be exported, 2 bad command line.
 *
 * @module
 */
// deno-lint-ignore-file no-console -- a command-line tool: printing is its job
import { parseCommandLine, usageError } from "../lib/cli.ts";
import { selectBackend } from "../pipeline/backend.ts";
import { PACKAGE_CONFIG_FILE } from "../lib/inference.ts";
import { exportRun, WEIGHTS_FILE, writePackage } from "../lib/export.ts";

const USAGE =
  "usage: deno task export <run folder> <out folder> [--which best|last]";

/**
 * The command line: exports `args[0]` (a run folder) to `args[1]`.
 *
 * @param args Command-line arguments.
 * @returns The exit code: 0 exported, 1 failed, 2 bad command line.
 */
export async function main(args: string[]): Promise<number> {
  const parsed = parseCommandLine(args, {
    which: { type: "string", default: "best" },
  }, USAGE);
  if (typeof parsed === "number") return parsed;
  const which = parsed.values.which;
  if (which !== "best" && which !== "last") {
    return usageError(`--which must be best or last, not "${which}"`, USAGE);
  }
  if (parsed.positionals.length !== 2) {
    return usageError(
      `expected a run folder and an output folder, got ${parsed.positionals.length} arguments`,
      USAGE,
    );
  }
  const [runDir, outDir] = parsed.positionals;
  try {
    const { tf } = await selectBackend("cpu");
    const pkg = await exportRun(tf, runDir, { which });
    await writePackage(outDir, pkg);
    const c = pkg.config;
    console.log(
      `exported "${c.name}" (${which} checkpoint, epoch ${
        (c.source as { epoch: number }).epoch
      }) to ${outDir}: ${PACKAGE_CONFIG_FILE}, ${WEIGHTS_FILE} (${
        (pkg.weights.byteLength / 1024).toFixed(1)
      } KiB); ${c.labels.length} labels, ${c.sampleRateHz} Hz, ${
        c.lengthSamples === null ? "any length" : `${c.lengthSamples} samples`
      }`,
    );
    return 0;
  } catch (error) {
    console.error((error as Error).message);
    return 1;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
