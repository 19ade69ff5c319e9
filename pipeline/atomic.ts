/**
 * Atomic file writes: write a temporary file beside the target, then rename
 * it over the target, so a crash never leaves a half-written file behind.
 *
 * @module
 */
import { dirname, join } from "node:path";

/**
 * Writes `data` to `path` atomically (temp file in the same folder + rename).
 *
 * @param path Target file.
 * @param data Text or bytes.
 */
export async function writeFileAtomic(
  path: string,
  data: string | Uint8Array,
): Promise<void> {
  const dir = dirname(path);
  const tmp = join(
    dir,
    `.${path.split(/[\\/]/).pop()}.${crypto.randomUUID().slice(0, 8)}.tmp`,
  );
  try {
    if (typeof data === "string") await Deno.writeTextFile(tmp, data);
    else await Deno.writeFile(tmp, data);
    await Deno.rename(tmp, path);
  } catch (error) {
    await Deno.remove(tmp).catch(() => {});
    throw error;
  }
}

/**
 * Writes a value as pretty JSON atomically.
 *
 * @param path Target file.
 * @param value Any JSON-serialisable value.
 */
export function writeJsonAtomic(path: string, value: unknown): Promise<void> {
  return writeFileAtomic(path, JSON.stringify(value, null, 2) + "\n");
}
