/**
 * Every built-in stage satisfies the stage contract and the house rules: id
 * equals the file stem, summary in sentence case without a final period,
 * every option described, a module doc comment with a `yaml` usage block.
 *
 * @module
 */
import assert from "node:assert/strict";
import * as z from "zod";
import { stageContractProblems } from "../pipeline/resolve.ts";
import { BUILTIN_STAGES } from "../stages/mod.ts";

function properties(
  json: Record<string, unknown>,
): [string, Record<string, unknown>][] {
  const props = (json.properties ?? {}) as Record<
    string,
    Record<string, unknown>
  >;
  return Object.entries(props).flatMap(([k, v]) => [
    [k, v] as [string, Record<string, unknown>],
    ...properties(v).map(([kk, vv]) =>
      [`${k}.${kk}`, vv] as [string, Record<string, unknown>]
    ),
  ]);
}

for (const [id, stage] of Object.entries(BUILTIN_STAGES)) {
  Deno.test(`built-in stage ${id} conforms to the stage contract`, async () => {
    assert.equal(stage.id, id);
    assert.deepEqual(stageContractProblems({ stage }), []);
    assert.match(stage.summary, /^[A-Z][^.]*[^.]$/);
    assert.match(stage.version, /^\d+\.\d+\.\d+$/);
    const source = await Deno.readTextFile(`stages/${id}.ts`);
    assert.match(
      source,
      /^\/\*\*\n[\s\S]*?@module\n \*\//,
      "module doc comment first",
    );
    assert.match(
      source.slice(0, source.indexOf("@module")),
      /```yaml\n/,
      "yaml usage block",
    );
    const json = z.toJSONSchema(stage.options as z.ZodType, {
      io: "input",
    }) as Record<string, unknown>;
    for (const [key, prop] of properties(json)) {
      assert.ok(
        typeof prop.description === "string",
        `option ${key} has no description`,
      );
    }
    if (stage.kind === "source") {
      const data = z.toJSONSchema(stage.data as z.ZodType, {
        io: "input",
      }) as Record<string, unknown>;
      const variants = (data.oneOf ?? data.anyOf ?? [data]) as Record<
        string,
        unknown
      >[];
      for (const v of variants) {
        for (const [key, prop] of properties(v)) {
          assert.ok(
            typeof prop.description === "string",
            `data option ${key} has no description`,
          );
        }
      }
    }
  });
}
