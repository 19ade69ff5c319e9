/**
 * The committed JSON Schema files in `schemas/` must equal what the zod
 * definitions generate (run `deno task schema` after changing an option).
 *
 * @module
 */
import assert from "node:assert/strict";
import { buildSchemaFiles } from "../schemas/json_schema.ts";
import { BUILTIN_STAGES } from "../stages/mod.ts";

Deno.test("schemas/ files are up to date with the zod definitions", async () => {
  const files = buildSchemaFiles(BUILTIN_STAGES);
  const stale: string[] = [];
  for (const [rel, text] of Object.entries(files)) {
    const current = await Deno.readTextFile(`schemas/${rel}`).catch(() => "");
    if (current !== text) stale.push(rel);
  }
  assert.deepEqual(stale, [], "stale schema files: run `deno task schema`");
});

Deno.test("pipeline.schema.json lists every built-in stage with its options", () => {
  const schema = JSON.parse(
    buildSchemaFiles(BUILTIN_STAGES)["pipeline.schema.json"],
  );
  const items = schema.properties.stages.anyOf[0].items.anyOf;
  const ids = items.map((i: { properties: { use: { const?: string } } }) =>
    i.properties.use.const
  )
    .filter(Boolean);
  assert.deepEqual(ids, Object.keys(BUILTIN_STAGES));
  const describe = items.find((
    i: { properties: { use: { const?: string } } },
  ) => i.properties.use.const === "describe_data");
  assert.equal(describe.properties.with.properties.batchSize.default, 64);
  assert.equal(describe.properties.with.additionalProperties, false);
  assert.deepEqual(schema.properties.runtime.properties.backend.enum, [
    "auto",
    "webgpu",
    "cpu",
  ]);
  assert.equal(
    schema.properties.data.oneOf?.[0]?.properties?.layout?.const ??
      schema.properties.data.anyOf?.[0]?.properties?.layout?.const,
    "synthetic",
  );
});
