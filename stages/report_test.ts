import assert from "node:assert/strict";
import { join } from "node:path";
import { compile, defineStage, runPipeline } from "../pipeline/mod.ts";
import type { Stage } from "../pipeline/mod.ts";
import * as z from "zod";
import * as tf from "@tensorflow/tfjs";
import { BUILTIN_STAGES } from "./mod.ts";
import { renderReportMarkdown, stage, table6Row } from "./report.ts";
import type { ReportData } from "../lib/report_html.ts";

/** A tiny spec: two epochs of a tiny model, then the report. */
const REPORT_SPEC = `name: tiny-report
runtime: { backend: cpu, seed: 5 }
data: { layout: synthetic, sampleRateHz: 8000, durationSeconds: 0.5, perClass: { train: 6, validation: 3, test: 3 } }
stages:
  - use: load
  - use: mono_mix
  - use: fixed_length
    with: { seconds: 0.5 }
  - use: mel
    with: { sampleRateHz: 8000, nFft: 256, winLength: 200, hopLength: 80, nMels: 16 }
  - use: tokenize
  - use: train
    with:
      epochs: 2
      batchSize: 8
      lr: 0.05
      lrCardinality: 2
      readEvery: 2
      model: { width: 4, groups: [1, 1], embedDim: 16, depth: 1, heads: 2, mlpDim: 32, extend: 16, conv: 8, dropout: 0.1 }
`;

/** A stand-in for the test-time stages: provides fixed `ttau` and `ttda` values. */
const fakeTta = defineStage({
  id: "fake_tta",
  version: "1.0.0",
  api: 1,
  kind: "step",
  summary: "Provide fixed ttau and ttda values",
  options: z.strictObject({}),
  takes: ["model"],
  provides: ["ttau", "ttda"],
  run() {
    return Promise.resolve({
      ttau: {
        orig: { accuracy: 0.5 },
        aug: { accuracy: 0.6 },
        mlt: { accuracy: 0.7 },
      },
      ttda: {
        before: { epoch: 0, accuracy: 0.5 },
        final: { epoch: 3, accuracy: 0.75 },
        best: {
          epoch: 2,
          accuracy: 0.8,
          note: "chosen by test accuracy: optimistic",
        },
      },
    });
  },
});

/**
 * Runs the tiny spec with extra stage lines appended (e.g. the report).
 *
 * @param tail YAML lines appended under `stages:`.
 * @param overrides `--set` overrides.
 */
async function runTiny(tail: string, overrides: string[] = []) {
  await tf.setBackend("cpu");
  const dir = await Deno.makeTempDir({ prefix: "report_test_" });
  await Deno.writeTextFile(join(dir, "spec.yaml"), REPORT_SPEC + tail);
  const compiled = await compile(join(dir, "spec.yaml"), {
    builtins: {
      ...BUILTIN_STAGES,
      report: stage as Stage,
      fake_tta: fakeTta as Stage,
    },
    overrides: [`runtime.outputDir=${join(dir, "runs")}`, ...overrides],
  });
  return { dir, compiled, result: await runPipeline(compiled, {}) };
}

Deno.test("report writes report.json, report.md and report.html that parse and agree", async () => {
  const { compiled, result } = await runTiny("  - use: report\n");
  const runDir = result.runDir;
  const report = JSON.parse(
    await Deno.readTextFile(join(runDir, "report.json")),
  ) as ReportData;
  assert.equal(report.format, "amaut-report/1");
  assert.equal(report.name, "tiny-report");
  assert.equal(report.specHash, compiled.plan.specHash);
  assert.equal(report.backend.name, "cpu");
  assert.ok(report.versions.tfjs && report.versions.deno);
  assert.ok(report.timingsMs.train > 0, "train timing recorded");
  const ev = report.evaluation;
  assert.equal(ev.split, "test");
  const n = report.classes.length;
  assert.ok(n >= 2);
  assert.equal(ev.examples, 3 * n);
  assert.equal(ev.confusion.length, n);
  const total = ev.confusion.flat().reduce((s, v) => s + v, 0);
  assert.equal(total, ev.examples);
  const diag = ev.confusion.reduce((s, row, i) => s + row[i], 0);
  assert.equal(ev.accuracy, diag / total);
  // The report's evaluation matches the train stage's final test accuracy.
  const summary = JSON.parse(
    await Deno.readTextFile(join(runDir, "summary.json")),
  );
  assert.ok(Math.abs(ev.accuracy - summary.test.accuracy) < 1e-9);
  assert.ok(ev.macroF1 >= 0 && ev.macroF1 <= 1);
  assert.deepEqual(
    ev.perClass.map((c) => c.support),
    report.classes.map(() => 3),
  );
  assert.deepEqual(
    report.curves.map((c) => [c.epoch, c.split]),
    [[1, "train"], [1, "validation"], [2, "train"], [2, "validation"]],
  );
  assert.equal(report.table6, undefined, "no Table 6 without ttau/ttda");
  assert.deepEqual(result.values.report, report);

  const md = await Deno.readTextFile(join(runDir, "report.md"));
  assert.match(md, /^# Report: tiny-report/);
  assert.match(md, new RegExp(`spec hash: \`${compiled.plan.specHash}\``));
  assert.match(md, /## Confusion matrix/);
  assert.match(md, /## Learning curves/);
  assert.doesNotMatch(md, /Table 6/);

  const html = await Deno.readTextFile(join(runDir, "report.html"));
  assert.match(html, /^<!doctype html>/);
  assert.ok(html.trimEnd().endsWith("</html>"));
  assert.doesNotMatch(html, /<script/i, "no scripts");
  assert.doesNotMatch(
    html,
    /(src|href)=["']?https?:/i,
    "no network references",
  );
  // One state per checkpoint (best and last), each with its predictions file.
  assert.deepEqual(report.states?.map((st) => st.id), [
    "trained-best",
    "trained-last",
  ]);
  assert.equal(ev.state, "trained-best");
  assert.equal(report.states![0].accuracy, ev.accuracy);
  assert.match(
    report.states![1].label,
    new RegExp(`^trained, last \\(epoch 2\\)`),
  );
  for (const st of report.states!) {
    const csv = await Deno.readTextFile(join(runDir, st.predictions));
    assert.equal(csv.trim().split("\n").length, 1 + ev.examples);
    assert.ok(md.includes(`(${st.predictions})`), "the report links it");
    assert.ok(html.includes(`href="${st.predictions}"`));
  }
  assert.equal(
    html.match(/<svg /g)?.length,
    2 + report.states!.length,
    "a confusion matrix per state + two curves",
  );
  assert.match(html, /class="marks"/, "SVG rendered by Vega");
  for (const name of report.classes) assert.ok(html.includes(name));
  // Temp files of the atomic writes are gone.
  const leftovers = [];
  for await (const e of Deno.readDir(runDir)) {
    if (e.name.endsWith(".tmp")) leftovers.push(e.name);
  }
  assert.deepEqual(leftovers, []);
});

Deno.test("report shows the Table 6 row and labels best-by-test TTDA optimistic", async () => {
  const { result } = await runTiny(
    "  - use: fake_tta\n  - use: report\n    with: { split: validation, formats: [json, md, html] }\n",
  );
  const report = JSON.parse(
    await Deno.readTextFile(join(result.runDir, "report.json")),
  ) as ReportData;
  assert.equal(report.evaluation.split, "validation");
  assert.deepEqual(report.table6, {
    orig: 0.5,
    origFrom: "ttau",
    aug: 0.6,
    mlt: 0.7,
    ttda: { epoch: 3, accuracy: 0.75 },
    ttdaBest: {
      epoch: 2,
      accuracy: 0.8,
      note: "chosen by test accuracy: optimistic",
    },
  });
  // The headline is the trained model (loaded from its best checkpoint),
  // and the adapted weights are a state of their own, named.
  assert.equal(report.evaluation.state, "trained-best");
  assert.deepEqual(report.states?.map((st) => [st.id, st.split]), [
    ["trained-best", "validation"],
    ["trained-last", "validation"],
    ["ttda-final", "validation"],
  ]);
  assert.equal(report.states![2].label, "TTDA final (epoch 3)");
  const md = await Deno.readTextFile(join(result.runDir, "report.md"));
  assert.match(
    md,
    /\| Orig \| Aug \| Mlt \| Hyb \| TTDA \| TTDA best-by-test \(optimistic\) \|/,
  );
  assert.match(md, /\| 50\.00 \| 60\.00 \| 70\.00 \| – \| 75\.00 \| 80\.00 \|/);
  assert.match(md, /\*\*Optimistic:\*\*/);
  const html = await Deno.readTextFile(join(result.runDir, "report.html"));
  assert.match(html, /TTDA best-by-test \(optimistic\)/);
  assert.match(html, /is optimistic: its epoch was chosen on the test labels/);
});

Deno.test("report with precision mixed on the cpu backend is refused, naming the stage's own option", async () => {
  await assert.rejects(
    runTiny("  - use: report\n    name: final_report\n", [
      "train.epochs=1",
      "final_report.precision=mixed",
    ]),
    {
      message:
        'Cannot finish stage "final_report": Cannot evaluate with precision mixed: it needs the fused WebGPU engine, and this run uses the "cpu" backend; select the webgpu backend (runtime.backend: webgpu), or use --set final_report.precision=fp32',
    },
  );
});

Deno.test("report writes only the formats asked for", async () => {
  const { result } = await runTiny(
    "  - use: report\n    with: { formats: [md] }\n",
    ["train.epochs=1"],
  );
  const names = [];
  for await (const e of Deno.readDir(result.runDir)) names.push(e.name);
  assert.ok(names.includes("report.md"));
  assert.ok(!names.includes("report.json") && !names.includes("report.html"));
});

Deno.test("table6Row takes Orig from TTAu, else TTDA's before, else the evaluation", () => {
  assert.equal(table6Row(undefined, undefined, 0.9), undefined);
  assert.deepEqual(table6Row({ hyb: { accuracy: 0.4 } }, undefined, 0.9), {
    orig: 0.9,
    origFrom: "report",
    hyb: 0.4,
  });
  assert.deepEqual(
    table6Row(undefined, {
      before: { accuracy: 0.3 },
      final: { epoch: 5, accuracy: 0.35 },
    }, 0.9),
    { orig: 0.3, origFrom: "ttda", ttda: { epoch: 5, accuracy: 0.35 } },
  );
  assert.deepEqual(table6Row({ orig: { accuracy: "x" } }, {}, 0.9), {
    orig: 0.9,
    origFrom: "report",
  });
});

Deno.test("renderReportMarkdown escapes pipes in class names", () => {
  const report: ReportData = {
    format: "amaut-report/1",
    name: "x",
    specHash: "h",
    createdAt: "2020-01-01T00:00:00.000Z",
    backend: { name: "cpu" },
    versions: {},
    timingsMs: {},
    classes: ["a|b", "c"],
    evaluation: {
      split: "test",
      examples: 2,
      loss: 1,
      accuracy: 0.5,
      macroF1: 1 / 3,
      macroPrecision: 0.25,
      macroRecall: 0.5,
      perClass: [
        { name: "a|b", precision: 0.5, recall: 1, f1: 2 / 3, support: 1 },
        { name: "c", precision: 0, recall: 0, f1: 0, support: 1 },
      ],
      confusion: [[1, 0], [1, 0]],
    },
    curves: [],
  };
  const md = renderReportMarkdown(report);
  assert.match(md, /\| a\\\|b \| 50\.00 \| 100\.00 \| 66\.67 \| 1 \|/);
  assert.match(md, /\| macro average \| 25\.00 \| 50\.00 \| 33\.33 \| 2 \|/);
  assert.doesNotMatch(md, /Learning curves/);
});
