/**
 * Writes the generated JSON Schema files into `schemas/` (`deno task schema`),
 * or with `--check` exits 1 when a committed file differs from what the zod
 * definitions generate.
 *
 * @module
 */
// deno-lint-ignore-file no-console -- a command-line tool: printing is its job
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { buildSchemaFiles } from "../schemas/json_schema.ts";
import { BUILTIN_STAGES } from "../stages/mod.ts";
import { writeFileAtomic } from "../pipeline/atomic.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "schemas");
const check = Deno.args.includes("--check");
const files = buildSchemaFiles(BUILTIN_STAGES);
let stale = 0;
for (const [rel, text] of Object.entries(files)) {
  const path = join(root, rel);
  const current = await Deno.readTextFile(path).catch(() => undefined);
  if (current === text) continue;
  if (check) {
    console.error(`stale: schemas/${rel} (run \`deno task schema\`)`);
    stale++;
  } else {
    await Deno.mkdir(dirname(path), { recursive: true });
    await writeFileAtomic(path, text);
    console.log(`wrote schemas/${rel}`);
  }
}
if (stale > 0) Deno.exit(1);
if (check) {
  console.log(`schemas are up to date (${Object.keys(files).length} files)`);
}
