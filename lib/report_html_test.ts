import assert from "node:assert/strict";
import {
  confusionSpec,
  curveSpec,
  pct,
  renderReportHtml,
  renderVegaLiteSvg,
  table6Cells,
} from "./report_html.ts";
import type { ReportData } from "./report_html.ts";

const REPORT: ReportData = {
  format: "amaut-report/1",
  name: "demo <run>",
  specHash: "abc123",
  createdAt: "2020-01-01T00:00:00.000Z",
  backend: { name: "webgpu", requested: "auto", reason: "test" },
  adapter: { vendor: "nvidia" },
  versions: { deno: "2.9.6", tfjs: "4.22.0" },
  timingsMs: { load: 1200, train: 34000 },
  classes: ["yes", "no", "<up>"],
  evaluation: {
    split: "test",
    examples: 6,
    loss: 0.5,
    accuracy: 4 / 6,
    macroF1: 0.6,
    macroPrecision: 0.6,
    macroRecall: 0.6,
    perClass: [
      { name: "yes", precision: 1, recall: 1, f1: 1, support: 2 },
      { name: "no", precision: 0.5, recall: 0.5, f1: 0.5, support: 2 },
      { name: "<up>", precision: 0.5, recall: 0.5, f1: 0.5, support: 2 },
    ],
    confusion: [[2, 0, 0], [0, 1, 1], [0, 1, 1]],
  },
  summary: { bestEpoch: 2, test: { accuracy: 4 / 6, loss: 0.5 } },
  curves: [
    { epoch: 1, split: "train", loss: 2, accuracy: 0.3, lr: 0.1 },
    { epoch: 1, split: "validation", loss: 2.1, accuracy: 0.25 },
    { epoch: 2, split: "train", loss: 1, accuracy: 0.6, lr: 0.05 },
    { epoch: 2, split: "validation", loss: 1.2, accuracy: 0.5 },
  ],
  table6: {
    orig: 0.9593,
    origFrom: "ttau",
    mlt: 0.9621,
    ttda: { epoch: 50, accuracy: 0.9627 },
    ttdaBest: { epoch: 12, accuracy: 0.97 },
  },
};

Deno.test("renderVegaLiteSvg renders a chart to SVG without a DOM", async () => {
  const svg = await renderVegaLiteSvg(curveSpec(REPORT.curves, "loss"));
  assert.match(svg, /^<svg [^>]*width="\d+" height="\d+"/);
  assert.match(svg, /class="marks"/);
  assert.match(svg, /mark-line/);
  assert.match(svg, /validation/);
});

Deno.test("confusionSpec has one cell per (true, predicted) pair with row shares", () => {
  const spec = confusionSpec(REPORT.classes, REPORT.evaluation.confusion) as {
    data: { values: { actual: string; predicted: string; share: number }[] };
  };
  const values = spec.data.values;
  assert.equal(values.length, 9);
  const cell = values.find((v) => v.actual === "no" && v.predicted === "<up>");
  assert.equal(cell?.share, 0.5);
});

Deno.test("renderReportHtml is self-contained, escaped and has every section", async () => {
  const html = await renderReportHtml(REPORT);
  assert.doesNotMatch(html, /<script/i);
  assert.doesNotMatch(html, /(src|href)=["']?(https?:)?\/\//i);
  assert.match(html, /Content-Security-Policy" content="default-src 'none'/);
  assert.match(html, /<h1>demo &lt;run&gt;<\/h1>/);
  assert.equal(html.match(/<svg /g)?.length, 3);
  for (
    const text of [
      "66.67 %",
      "Per-class metrics",
      "Confusion matrix",
      "Learning curves",
      "TTDA best-by-test (optimistic)",
      "is optimistic",
      "95.93",
      "96.27",
      "&lt;up&gt;",
      "34.00",
      "nvidia",
    ]
  ) assert.ok(html.includes(text), `missing ${text}`);
});

Deno.test("Table 6 cells print percentages with two decimals, dashes when missing", () => {
  assert.deepEqual(table6Cells(REPORT.table6!), [
    "95.93",
    "–",
    "96.21",
    "–",
    "96.27",
  ]);
  assert.equal(pct(undefined), "–");
  assert.equal(pct(NaN), "–");
});

Deno.test("renderReportHtml omits learning curves and Table 6 when absent", async () => {
  const html = await renderReportHtml({
    ...REPORT,
    curves: [],
    table6: undefined,
  });
  assert.equal(html.match(/<svg /g)?.length, 1);
  assert.ok(!html.includes("Learning curves"));
  assert.ok(!html.includes("Table 6"));
});
