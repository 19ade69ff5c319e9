/**
 * The README stays true: its "write a stage" example is the code of
 * `examples/peak_level.ts`, the spec it shows is `examples/peak_level.yaml`,
 * the example runs, and the commands it names exist as tasks.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { compileSpec, runPipeline } from "../mod.ts";

const README = await Deno.readTextFile("README.md");

Deno.test("README shows the example stage verbatim", async () => {
  const source = await Deno.readTextFile("examples/peak_level.ts");
  const body = source.slice(source.indexOf("import "));
  assert.ok(
    README.includes("```ts ignore\n" + body + "```"),
    "README code block differs from examples/peak_level.ts",
  );
  const spec = await Deno.readTextFile("examples/peak_level.yaml");
  const specBody = spec.slice(spec.indexOf("extends:"));
  assert.ok(
    README.includes("```yaml\n" + specBody + "```"),
    "README spec block differs from examples/peak_level.yaml",
  );
});

Deno.test("the README example stage runs and writes its output", async () => {
  const out = await Deno.makeTempDir({ prefix: "readme_test_" });
  const compiled = await compileSpec("examples/peak_level.yaml", {
    overrides: [`runtime.outputDir=${out}`, "runtime.backend=cpu"],
  });
  const result = await runPipeline(compiled);
  const peaks = JSON.parse(
    await Deno.readTextFile(join(result.runDir, "peak_level.json")),
  );
  assert.deepEqual(Object.keys(peaks).sort(), ["high", "low", "mid"]);
  for (const v of Object.values(peaks) as number[]) {
    assert.ok(v < 0 && v > -20, `peak ${v} dBFS`);
  }
  assert.deepEqual(result.values.peakLevelDb, peaks);
});

Deno.test("README names the Deno version of CI and only tasks that exist", async () => {
  const config = JSON.parse(await Deno.readTextFile("deno.json"));
  const ci = await Deno.readTextFile(".ci/run");
  const testCommand = /^npx -y deno@2\.9\.6 task test$/m;
  assert.match(README, testCommand);
  assert.match(ci, testCommand);
  for (const [, task] of README.matchAll(/deno task ([a-z:]+)/g)) {
    assert.ok(task in config.tasks, `README names unknown task "${task}"`);
  }
});
