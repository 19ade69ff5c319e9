/** Tests of the shared command-line parsing (`cli.ts`). */
// deno-lint-ignore-file no-console -- captures what the parser prints
import assert from "node:assert/strict";
import { parseCommandLine, usageError } from "./cli.ts";

const USAGE = "usage: demo [--top N] <file>";
const OPTIONS = { top: { type: "string" as const, default: "3" } };

/** Runs `f` with console.log/error captured. */
function captured<T>(f: () => T): { result: T; out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  const { log, error } = console;
  console.log = (...a: unknown[]) => out.push(a.join(" "));
  console.error = (...a: unknown[]) => err.push(a.join(" "));
  try {
    return { result: f(), out, err };
  } finally {
    console.log = log;
    console.error = error;
  }
}

Deno.test("parseCommandLine: values and positionals of a good command line", () => {
  const { result, out, err } = captured(() =>
    parseCommandLine(["--top", "5", "a.wav"], OPTIONS, USAGE)
  );
  assert.ok(typeof result !== "number");
  assert.equal(result.values.top, "5");
  assert.deepEqual(result.positionals, ["a.wav"]);
  assert.deepEqual([out, err], [[], []]);
});

Deno.test("parseCommandLine: --help prints the usage and gives exit code 0", () => {
  const { result, out, err } = captured(() =>
    parseCommandLine(["-h"], OPTIONS, USAGE)
  );
  assert.equal(result, 0);
  assert.deepEqual(out, [USAGE]);
  assert.deepEqual(err, []);
});

Deno.test("parseCommandLine: an unknown flag is printed once with the usage, exit code 2", () => {
  const { result, out, err } = captured(() =>
    parseCommandLine(["--nope"], OPTIONS, USAGE)
  );
  assert.equal(result, 2);
  assert.deepEqual(out, []);
  assert.equal(err.length, 1);
  assert.match(err[0], /--nope/);
  assert.ok(err[0].endsWith(`\n${USAGE}`));
});

Deno.test("parseCommandLine: positionals: false refuses an argument that is not a flag", () => {
  const { result, err } = captured(() =>
    parseCommandLine(["a.wav"], OPTIONS, USAGE, { positionals: false })
  );
  assert.equal(result, 2);
  assert.equal(err.length, 1);
  assert.match(err[0], /a\.wav/);
});

Deno.test("usageError: prints the reason then the usage, returns 2", () => {
  const { result, err } = captured(() =>
    usageError("no WAV files given", USAGE)
  );
  assert.equal(result, 2);
  assert.deepEqual(err, [`no WAV files given\n${USAGE}`]);
});
