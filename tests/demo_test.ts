/**
 * The demo preset end to end on the cpu backend, shortened to one epoch of
 * training and one of TTDA: training, TTAu, TTDA and the report all complete
 * and the report files exist and parse.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { compileSpec, runPipeline } from "../mod.ts";

Deno.test("the demo preset runs train, TTAu, TTDA and report in one short run", async () => {
  const out = await Deno.makeTempDir({ prefix: "demo_test_" });
  const compiled = await compileSpec("presets/demo.yaml", {
    overrides: [
      `runtime.outputDir=${out}`,
      "runtime.backend=cpu",
      "train.epochs=1",
      "train.lrCardinality=1",
      "test_time_adaptation.epochs=1",
    ],
  });
  const result = await runPipeline(compiled);
  const read = async (f: string) =>
    JSON.parse(await Deno.readTextFile(join(result.runDir, f)));
  const summary = await read("summary.json");
  assert.ok(
    summary.test.accuracy > 0.1,
    `test accuracy ${summary.test.accuracy}`,
  );
  const ttau = await read("ttau.json");
  assert.ok(
    ttau.modes?.orig ?? ttau.orig ?? ttau.results?.orig,
    JSON.stringify(Object.keys(ttau)),
  );
  const report = await read("report.json");
  assert.equal(report.specHash, compiled.plan.specHash);
  assert.ok(
    report.table6 ?? report.table ?? report.comparison,
    JSON.stringify(Object.keys(report)),
  );
  const md = await Deno.readTextFile(join(result.runDir, "report.md"));
  assert.match(md, /TTDA/);
  const html = await Deno.readTextFile(join(result.runDir, "report.html"));
  assert.match(html, /<svg/);
  const ttda =
    (await Deno.readTextFile(join(result.runDir, "ttda_metrics.jsonl"))).trim()
      .split("\n");
  assert.equal(ttda.length, 1);
});
