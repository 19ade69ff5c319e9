/**
 * Helpers for stages named by URL: which module language a response holds
 * (from its content type, as Deno decides it), and the lockfile's `remote`
 * section (read, and one entry written atomically, every other byte kept).
 *
 * @module
 */
import { writeFileAtomic } from "./atomic.ts";

/** The module language of a served stage. */
export type ModuleLanguage = "typescript" | "javascript";

const TYPESCRIPT = new Set([
  "application/typescript",
  "text/typescript",
  "application/x-typescript",
  "text/x-typescript",
  "video/mp2t",
  "video/vnd.dlna.mpeg-tts",
]);
const JAVASCRIPT = new Set([
  "application/javascript",
  "text/javascript",
  "application/ecmascript",
  "text/ecmascript",
  "application/x-javascript",
  "application/node",
]);
/** Types that say nothing about the language: the URL's extension decides. */
const GENERIC = new Set(["", "text/plain", "application/octet-stream"]);

/**
 * The language of a served module, or an error text when the server sends
 * something else (e.g. Python's `http.server` sends `.ts` as
 * `text/vnd.trolltech.linguist`, which Deno would not parse as TypeScript).
 *
 * @param contentType The response's `content-type` header (null: none).
 * @param url The module URL (its extension decides for generic types).
 */
export function moduleLanguage(
  contentType: string | null,
  url: string,
): { language: ModuleLanguage } | { problem: string } {
  const type = (contentType ?? "").split(";")[0].trim().toLowerCase();
  if (TYPESCRIPT.has(type)) return { language: "typescript" };
  if (JAVASCRIPT.has(type)) return { language: "javascript" };
  const path = new URL(url).pathname;
  if (GENERIC.has(type)) {
    if (/\.(m|c)?tsx?$/.test(path)) return { language: "typescript" };
    if (/\.(m|c)?jsx?$/.test(path)) return { language: "javascript" };
    return {
      problem: `the server sends it as "${
        type || "no content type"
      }" and its name has no .ts or .js extension, so its language is unknown`,
    };
  }
  return {
    problem:
      `the server sends it with content type "${type}", which is not JavaScript or TypeScript`,
  };
}

/** Reads the lockfile's `remote` section (empty when absent or unreadable). */
export async function readLockRemote(
  lockfile: string | undefined,
): Promise<Record<string, string>> {
  if (!lockfile) return {};
  try {
    const json = JSON.parse(await Deno.readTextFile(lockfile));
    return (json?.remote ?? {}) as Record<string, string>;
  } catch {
    return {};
  }
}

/**
 * Records `url`'s sha256 (hex) in the lockfile's `remote` section, keeping
 * every other entry. Writes only when write access to the lockfile is
 * already granted (`validate` runs without it: then nothing is written).
 *
 * @param lockfile The lockfile (`deno.lock`).
 * @param url The stage URL.
 * @param hex sha256 of its source, lowercase hex.
 * @returns Whether the lockfile was written.
 */
export async function writeLockEntry(
  lockfile: string,
  url: string,
  hex: string,
): Promise<boolean> {
  const access = await Deno.permissions.query({
    name: "write",
    path: lockfile,
  });
  if (access.state !== "granted") return false;
  let json: Record<string, unknown> = { version: "5" };
  try {
    json = JSON.parse(await Deno.readTextFile(lockfile));
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  const remote = { ...(json.remote as Record<string, string> | undefined) };
  remote[url] = hex;
  json.remote = Object.fromEntries(
    Object.entries(remote).sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0),
  );
  await writeFileAtomic(lockfile, JSON.stringify(json, null, 2) + "\n");
  return true;
}

/** A `data:` URL holding a module's source, importable with its language. */
export function moduleDataUrl(
  source: Uint8Array,
  language: ModuleLanguage,
): string {
  let binary = "";
  for (let i = 0; i < source.length; i += 0x8000) {
    binary += String.fromCharCode(...source.subarray(i, i + 0x8000));
  }
  return `data:application/${language};base64,${btoa(binary)}`;
}
