/**
 * Builds the JSON Schema files in `schemas/` from the same zod definitions the
 * validator uses: `pipeline.schema.json` (the whole spec, with each built-in
 * stage's options under its `use:` id, for editor autocomplete through a
 * `# yaml-language-server: $schema=` line) and one `stages/<id>.schema.json`
 * per built-in stage. `deno task schema` writes them; a test fails when the
 * committed files are stale.
 *
 * @module
 */
import * as z from "zod";
import type { Stage } from "../pipeline/types.ts";
import { RuntimeOptions } from "./envelope.ts";

/** JSON value. */
type Json = Record<string, unknown>;

// deno-lint-ignore no-explicit-any
function toJson(schema: any): Json {
  const json = z.toJSONSchema(schema, {
    io: "input",
    unrepresentable: "any",
  }) as Json;
  delete json.$schema;
  return json;
}

/**
 * Returns every generated file, path (relative to `schemas/`) → text.
 *
 * @param builtins The built-in stages by id.
 */
export function buildSchemaFiles(
  builtins: Readonly<Record<string, Stage>>,
): Record<string, string> {
  const stageEntries = Object.values(builtins).map((s) => ({
    type: "object",
    additionalProperties: false,
    required: ["use"],
    properties: {
      use: { const: s.id, description: s.summary },
      name: { type: "string", pattern: "^[a-z0-9][a-z0-9_-]*$" },
      with: toJson(s.options),
    },
  }));
  const external = {
    type: "object",
    additionalProperties: false,
    required: ["use"],
    properties: {
      use: {
        type: "string",
        pattern: "^(\\./|\\.\\./|/|https?://)",
        description: "A stage module by relative path or https URL",
      },
      name: { type: "string", pattern: "^[a-z0-9][a-z0-9_-]*$" },
      with: { type: "object", description: "Options of the external stage" },
    },
  };
  const source = Object.values(builtins).find((s) => s.kind === "source");
  const pipeline = {
    $schema: "https://json-schema.org/draft/2020-12/schema",
    title: "AMAuT pipeline spec",
    description:
      "A YAML pipeline: runtime settings, the dataset (data) and the stages in order",
    type: "object",
    additionalProperties: false,
    required: ["name", "data", "stages"],
    properties: {
      extends: {
        type: "string",
        description: "Spec this one extends, relative to this file",
      },
      name: {
        type: "string",
        pattern: "^[a-z0-9][a-z0-9_-]*$",
        description: "Name of the spec; run folders are <name>-<timestamp>",
      },
      description: { type: "string", description: "What this spec is for" },
      runtime: toJson(RuntimeOptions),
      data: source && source.kind === "source"
        ? toJson(source.data)
        : { type: "object" },
      stages: {
        anyOf: [
          {
            type: "array",
            minItems: 1,
            items: { anyOf: [...stageEntries, external] },
          },
          {
            type: "object",
            description:
              "In a spec with extends: patches by stage name ({ with: {...} }, a new use, or null to drop)",
            additionalProperties: {
              anyOf: [{ type: "object" }, { type: "null" }],
            },
          },
        ],
      },
    },
  };
  const files: Record<string, string> = {
    "pipeline.schema.json": JSON.stringify(pipeline, null, 2) + "\n",
  };
  for (const s of Object.values(builtins)) {
    files[`stages/${s.id}.schema.json`] = JSON.stringify(
      {
        $schema: "https://json-schema.org/draft/2020-12/schema",
        title: `Options of stage "${s.id}"`,
        description: s.summary,
        ...toJson(s.options),
      },
      null,
      2,
    ) + "\n";
  }
  return files;
}
