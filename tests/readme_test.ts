/**
 * The README and the pages of `docs/` stay true: the "write a stage" example
 * (`docs/writing_a_stage.md`) is the code of `examples/peak_level.ts`, the
 * spec it shows is `examples/peak_level.yaml`, the example runs, the
 * commands they name exist as tasks, and their links to files and headings
 * resolve.
 *
 * @module
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { compileSpec, runPipeline } from "../mod.ts";

/** The README and every page of docs/, by path. */
const PAGES = new Map<string, string>([
  ["README.md", await Deno.readTextFile("README.md")],
  ...[...Deno.readDirSync("docs")]
    .filter((e) => e.isFile && e.name.endsWith(".md"))
    .map((e): [string, string] => [
      `docs/${e.name}`,
      Deno.readTextFileSync(join("docs", e.name)),
    ]),
]);
/** All of them, one after the other. */
const README = [...PAGES.values()].join("\n");

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

/** GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens. */
const anchorOf = (heading: string) =>
  heading.trim().toLowerCase().replace(/[^\p{L}\p{N}_\- ]/gu, "").replaceAll(
    " ",
    "-",
  );

Deno.test("README and docs/ links point to files and headings that exist", () => {
  const anchors = new Map<string, Set<string>>();
  for (const [path, text] of PAGES) {
    const outside = text.replace(/```[\s\S]*?```/g, "");
    anchors.set(
      path,
      new Set(
        [...outside.matchAll(/^#{1,6} (.+)$/gm)].map((m) => anchorOf(m[1])),
      ),
    );
  }
  assert.ok(PAGES.size > 10, "docs/ holds the moved README sections");
  for (const [path, text] of PAGES) {
    const outside = text.replace(/```[\s\S]*?```/g, "");
    for (const [, target] of outside.matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^[a-z]+:/.test(target)) continue;
      const [file, anchor] = target.split("#");
      const resolved = file === ""
        ? path
        : join(path.includes("/") ? "docs" : "", file);
      assert.ok(
        file === "" || existsSync(resolved),
        `${path}: link to missing ${target}`,
      );
      if (anchor !== undefined && anchors.has(resolved)) {
        assert.ok(
          anchors.get(resolved)!.has(anchor),
          `${path}: link to missing heading ${target}`,
        );
      }
    }
  }
});
