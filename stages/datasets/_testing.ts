/**
 * Test helpers for the layout tests: tiny WAV trees in a temp folder and
 * compact views of index results. Private to `stages/datasets/`.
 *
 * @module
 */
import { join, relative } from "node:path";
import { writeToneWav } from "../../tests/_fixtures.ts";
import type { IndexResult } from "./types.ts";

/** Writes tiny (0.05 s) WAV files at the given paths under `root`. */
export async function wavs(root: string, paths: readonly string[]) {
  await Promise.all(
    paths.map((p) =>
      writeToneWav(join(root, p), { sampleRateHz: 8000, seconds: 0.05 })
    ),
  );
}

/** Writes a text file under `root`, creating folders. */
export async function text(root: string, path: string, content: string) {
  const full = join(root, path);
  await Deno.mkdir(full.replace(/\/[^/]*$/, ""), { recursive: true });
  await Deno.writeTextFile(full, content);
}

/** The problems as `relative/path: message` lines (root itself is "."). */
export function problemLines(result: IndexResult, root: string): string[] {
  return result.problems.map((p) =>
    `${relative(root, p.path) || "."}: ${p.message}`
  );
}

/** The clips of a split as `relative/path=label`. */
export function clipLines(
  result: IndexResult,
  split: string,
  root: string,
): string[] {
  const clips = result.index?.splits[split];
  if (!clips) throw new Error(`no index or no split ${split}`);
  return clips.map((c) => `${relative(root, c.path)}=${c.label}`);
}

/** A fresh temp folder, removed by the returned disposer. */
export async function tempDir(): Promise<
  { path: string } & AsyncDisposable
> {
  const path = await Deno.realPath(
    await Deno.makeTempDir({ prefix: "layouts_" }),
  );
  return {
    path,
    [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }),
  };
}
