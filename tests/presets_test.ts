/**
 * Every preset compiles and points editors at the generated JSON Schema; every
 * `presets/tiny/` preset runs end to end on the cpu backend and repeats
 * exactly with the same seed.
 *
 * @module
 */
import assert from "node:assert/strict";
import { dirname, join, relative } from "node:path";
import { compile, runPipeline } from "../pipeline/mod.ts";
import { BUILTIN_STAGES } from "../stages/mod.ts";

function presetFiles(dir = "presets"): string[] {
  const out: string[] = [];
  for (const entry of Deno.readDirSync(dir)) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) out.push(...presetFiles(path));
    else if (entry.name.endsWith(".yaml")) out.push(path);
  }
  return out.sort();
}

const PRESETS = presetFiles();

Deno.test("presets exist, including a tiny one for CI", () => {
  assert.ok(PRESETS.some((p) => p.startsWith("presets/tiny/")), PRESETS.join());
});

for (const file of PRESETS) {
  Deno.test(`preset ${file} compiles and names the JSON Schema`, async () => {
    const text = await Deno.readTextFile(file);
    const m = /^# yaml-language-server: \$schema=(\S+)$/m.exec(text);
    assert.ok(m, "first line must be a yaml-language-server $schema comment");
    assert.ok(
      text.startsWith(m[0]),
      "the $schema comment must be the first line",
    );
    const schema = join(dirname(file), m[1]);
    assert.equal(relative(".", schema), "schemas/pipeline.schema.json");
    await Deno.stat(schema);
    const compiled = await compile(file, { builtins: BUILTIN_STAGES });
    const stem = file.split("/").pop()!.replace(/\.yaml$/, "");
    assert.equal(compiled.plan.name, stem, "name: must equal the file stem");
  });
}

for (const file of PRESETS.filter((p) => p.startsWith("presets/tiny/"))) {
  Deno.test(`tiny preset ${file} runs end to end and repeats with the same seed`, async () => {
    const out = await Deno.makeTempDir({ prefix: "presets_test_" });
    const compiled = await compile(file, {
      builtins: BUILTIN_STAGES,
      overrides: [`runtime.outputDir=${out}`, "runtime.backend=cpu"],
    });
    const a = await runPipeline(compiled, {});
    const b = await runPipeline(compiled, {});
    assert.notEqual(a.runDir, b.runDir);
    for (const f of ["plan.json", "spec.yaml", "manifest.json", "log.jsonl"]) {
      await Deno.stat(join(a.runDir, f));
    }
    const manifest = JSON.parse(
      await Deno.readTextFile(join(a.runDir, "manifest.json")),
    );
    assert.equal(manifest.status, "ok");
    const outputs = [...Deno.readDirSync(a.runDir)]
      .map((e) => e.name)
      .filter((n) =>
        !["plan.json", "spec.yaml", "manifest.json", "log.jsonl"].includes(n)
      );
    for (const name of outputs) {
      assert.equal(
        await Deno.readTextFile(join(a.runDir, name)),
        await Deno.readTextFile(join(b.runDir, name)),
        `${name} differs between two runs with the same seed`,
      );
    }
  });
}
