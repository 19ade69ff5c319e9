/**
 * The evaluation report's data model ({@linkcode ReportData}, the content of
 * `report.json`) and its renderings: a self-contained HTML page and the
 * charts in it. Charts are Vega-Lite specs compiled and rendered to SVG
 * server-side by Vega (`View.toSVG()` with the `none` renderer: no DOM, no
 * canvas); the page inlines that SVG and its CSS, holds no script, and a
 * Content-Security-Policy forbids every fetch, so it opens offline.
 *
 * @module
 */
import * as vega from "vega";
import { compile as compileVegaLite } from "vega-lite";
import type { TopLevelSpec } from "vega-lite";

/** Per-class metrics as the report stores them. */
export interface ReportClass {
  readonly name: string;
  readonly precision: number;
  readonly recall: number;
  readonly f1: number;
  readonly support: number;
}

/** One learning-curve point: a line of `metrics.jsonl`. */
export interface CurvePoint {
  /** 1-based epoch (as `metrics.jsonl`, the log and `summary.json` count). */
  readonly epoch: number;
  readonly split: string;
  readonly loss: number;
  readonly accuracy: number;
  readonly lr?: number;
}

/**
 * The paper's Table 6 row (reference §12): accuracies in [0, 1] of the
 * test-time variants that ran. `ttda` is the final epoch's accuracy;
 * `ttdaBest` picks the epoch by test accuracy and is therefore optimistic.
 */
export interface Table6Row {
  /** No test-time augmentation (TTAu's `orig`, else TTDA's `before`, else this report's evaluation). */
  readonly orig?: number;
  /** Where `orig` comes from. */
  readonly origFrom?: "ttau" | "ttda" | "report";
  readonly aug?: number;
  readonly mlt?: number;
  readonly hyb?: number;
  /** TTDA after its last epoch. */
  readonly ttda?: { readonly epoch: number; readonly accuracy: number };
  /** TTDA at the epoch with the best test accuracy: optimistic (selected on test). */
  readonly ttdaBest?: {
    readonly epoch: number;
    readonly accuracy: number;
    readonly note?: string;
  };
}

/** The classification scores a report shows for one model state on one split. */
export interface ReportScores {
  readonly accuracy: number;
  readonly macroF1: number;
  readonly macroPrecision: number;
  readonly macroRecall: number;
  readonly perClass: readonly ReportClass[];
  /** `confusion[label][prediction]`. */
  readonly confusion: readonly (readonly number[])[];
}

/** The scores of one model state on one split (see `lib/predictions.ts`). */
export interface StateReport extends ReportScores {
  /** `trained-best`, `trained-last`, `ttau-orig`, `ttau-aug`, `ttau-mlt`, `ttau-hyb` or `ttda-final`. */
  readonly id: string;
  /** For people, e.g. `trained, best (epoch 7)`, `TTDA final (epoch 50)`. */
  readonly label: string;
  readonly split: string;
  /** 1-based epoch of the weights (trained and TTDA states). */
  readonly epoch?: number;
  readonly note?: string;
  readonly examples: number;
  /** Mean cross-entropy, when the state has logits. */
  readonly loss?: number;
  /** Its predictions file, relative to the run folder. */
  readonly predictions: string;
}

/** The content of `report.json`. */
export interface ReportData {
  /** Format tag of this file. */
  readonly format: "amaut-report/1";
  /** The spec's name. */
  readonly name: string;
  /** The plan's spec hash. */
  readonly specHash: string;
  /** When the report was written (ISO 8601). */
  readonly createdAt: string;
  /** The backend as `manifest.json` records it (name, requested, reason, adapter). */
  readonly backend: Readonly<Record<string, unknown>>;
  /** The GPU adapter, when the backend reported one. */
  readonly adapter?: Readonly<Record<string, unknown>>;
  /** Runtime versions (deno, v8, typescript, tfjs). */
  readonly versions: Readonly<Record<string, string>>;
  /** Stage wall times in ms, for the stages finished before the report. */
  readonly timingsMs: Readonly<Record<string, number>>;
  /** Class names; label `i` is `classes[i]`. */
  readonly classes: readonly string[];
  /** The headline state (trained, best) on the report's split. */
  readonly evaluation: ReportScores & {
    readonly split: string;
    /** Id of the model state evaluated (`trained-best`, else the first state). */
    readonly state?: string;
    /** Its label, e.g. `trained, best (epoch 7)`. */
    readonly stateLabel?: string;
    readonly note?: string;
    readonly examples: number;
    readonly loss: number;
  };
  /** The train stage's `summary.json` (per-split accuracy and loss, best epoch), when it ran. */
  readonly summary?: Readonly<Record<string, unknown>>;
  /** Learning curves (every line of `metrics.jsonl`). */
  readonly curves: readonly CurvePoint[];
  /** The Table 6 row, when TTAu or TTDA ran. */
  readonly table6?: Table6Row;
  /** Every model state the run produced, per scored split, side by side. */
  readonly states?: readonly StateReport[];
}

/** Column labels of Table 6 in the paper's order. */
export const TABLE6_COLUMNS = [
  ["orig", "Orig"],
  ["aug", "Aug"],
  ["mlt", "Mlt"],
  ["hyb", "Hyb"],
  ["ttda", "TTDA"],
] as const;

/** Percentage with two decimals, as the paper prints accuracies; "–" when missing. */
export function pct(value: number | undefined): string {
  return value === undefined || !Number.isFinite(value)
    ? "–"
    : (100 * value).toFixed(2);
}

/** Header of the per-class table (HTML and Markdown). */
export const PER_CLASS_HEAD = ["class", "precision", "recall", "F1", "support"];

/** Header of the model-state table (HTML and Markdown). */
export const STATES_HEAD = [
  "model state",
  "split",
  "accuracy %",
  "macro-F1 %",
  "loss",
  "predictions",
];

/** Rows of the model-state table: label (and note), split, accuracy, macro-F1, loss, predictions file. */
export function statesTable(states: readonly StateReport[]): string[][] {
  return states.map((s) => [
    s.note ? `${s.label} (${s.note})` : s.label,
    s.split,
    pct(s.accuracy),
    pct(s.macroF1),
    s.loss !== undefined && Number.isFinite(s.loss) ? s.loss.toFixed(4) : "–",
    s.predictions,
  ]);
}

/** Rows of the per-class table in %, then the macro average (HTML and Markdown). */
export function perClassRows(
  ev: Pick<
    ReportData["evaluation"],
    | "perClass"
    | "macroPrecision"
    | "macroRecall"
    | "macroF1"
    | "examples"
  >,
): string[][] {
  return [
    ...ev.perClass.map((c) => [
      c.name,
      pct(c.precision),
      pct(c.recall),
      pct(c.f1),
      String(c.support),
    ]),
    [
      "macro average",
      pct(ev.macroPrecision),
      pct(ev.macroRecall),
      pct(ev.macroF1),
      String(ev.examples),
    ],
  ];
}

/**
 * The Table 6 header and cells (HTML and Markdown): the columns of
 * {@linkcode TABLE6_COLUMNS}, plus the optimistic TTDA best-by-test column
 * when there is one.
 */
export function table6Table(
  row: Table6Row,
): { head: string[]; cells: string[] } {
  const head: string[] = TABLE6_COLUMNS.map(([, label]) => label);
  const cells = table6Cells(row);
  if (row.ttdaBest) {
    head.push("TTDA best-by-test (optimistic)");
    cells.push(pct(row.ttdaBest.accuracy));
  }
  return { head, cells };
}

/** The Table 6 cells as percentage strings, in {@linkcode TABLE6_COLUMNS} order. */
export function table6Cells(row: Table6Row): string[] {
  return TABLE6_COLUMNS.map(([key]) =>
    key === "ttda" ? pct(row.ttda?.accuracy) : pct(row[key])
  );
}

/**
 * Escapes text for HTML element content and attribute values.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { escapeHtml } from "./report_html.ts";
 * assert.equal(escapeHtml(`<a href="x">&'`), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
 * ```
 */
export function escapeHtml(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (c) =>
      ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[
        c
      ]!,
  );
}

/**
 * Renders a Vega-Lite spec to an SVG string with Vega, headless (no DOM, no
 * canvas: text widths are estimated). Data must be inline (`values`).
 *
 * @param spec A Vega-Lite spec with inline data.
 * @returns The `<svg>` element as text.
 */
export async function renderVegaLiteSvg(spec: TopLevelSpec): Promise<string> {
  const { spec: vgSpec } = compileVegaLite(spec);
  const view = new vega.View(vega.parse(vgSpec), { renderer: "none" });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

const FONT = {
  font: "system-ui, -apple-system, Segoe UI, Roboto, sans-serif",
};

/** The Vega-Lite spec of the confusion-matrix heatmap (rows: true class, columns: predicted). */
export function confusionSpec(
  classes: readonly string[],
  confusion: readonly (readonly number[])[],
): TopLevelSpec {
  const values = confusion.flatMap((row, t) => {
    const support = row.reduce((s, v) => s + v, 0);
    return row.map((count, p) => ({
      actual: classes[t],
      predicted: classes[p],
      count,
      share: support ? count / support : 0,
    }));
  });
  const order = [...classes];
  const cell = Math.max(14, Math.min(40, Math.floor(480 / classes.length)));
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: "Confusion matrix (rows: true class, colour: share of the row)",
    config: { ...FONT, background: "white", view: { stroke: null } },
    width: cell * classes.length,
    height: cell * classes.length,
    data: { values },
    encoding: {
      x: {
        field: "predicted",
        type: "nominal",
        sort: order,
        title: "Predicted",
        axis: { labelAngle: -45 },
      },
      y: { field: "actual", type: "nominal", sort: order, title: "True" },
    },
    layer: [
      {
        mark: { type: "rect" },
        encoding: {
          color: {
            field: "share",
            type: "quantitative",
            scale: { scheme: "blues", domain: [0, 1] },
            title: "Share",
          },
        },
      },
      {
        mark: { type: "text", fontSize: Math.min(12, cell / 2.5) },
        encoding: {
          text: { field: "count", type: "quantitative" },
          color: {
            condition: { test: "datum.share > 0.5", value: "white" },
            value: "black",
          },
        },
      },
    ],
  };
}

/** The Vega-Lite spec of one learning curve (`loss` or `accuracy` per epoch, one line per split). */
export function curveSpec(
  curves: readonly CurvePoint[],
  metric: "loss" | "accuracy",
): TopLevelSpec {
  const values = curves
    .filter((c) => Number.isFinite(c[metric]))
    .map((c) => ({ epoch: c.epoch, split: c.split, value: c[metric] }));
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: metric === "loss"
      ? "Loss per epoch (train: smoothed CE of the views)"
      : "Accuracy per epoch",
    config: { ...FONT, background: "white" },
    width: 380,
    height: 220,
    data: { values },
    mark: { type: "line", point: true },
    encoding: {
      x: {
        field: "epoch",
        type: "quantitative",
        title: "Epoch",
        axis: { tickMinStep: 1, format: "d" },
      },
      y: {
        field: "value",
        type: "quantitative",
        title: metric === "loss" ? "Loss" : "Accuracy",
        ...(metric === "accuracy"
          ? { scale: { domain: [0, 1] }, axis: { format: "%" } }
          : { scale: { zero: false } }),
      },
      color: { field: "split", type: "nominal", title: "Split" },
    },
  };
}

/** The report pages' stylesheet (the run report and the grid report). */
export const CSS = `
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d232a; margin: 2rem auto; max-width: 1100px; padding: 0 1rem; background: #fff; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #d8dee4; padding-bottom: 0.2rem; }
.meta { color: #57606a; }
.cards { display: flex; flex-wrap: wrap; gap: 0.8rem; margin: 1rem 0; }
.card { border: 1px solid #d8dee4; border-radius: 8px; padding: 0.6rem 1rem; min-width: 8rem; }
.card .v { font-size: 1.5rem; font-weight: 600; }
.card .k { color: #57606a; font-size: 0.85rem; }
table { border-collapse: collapse; margin: 0.5rem 0; }
th, td { border: 1px solid #d8dee4; padding: 0.25rem 0.6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f6f8fa; }
.charts { display: flex; flex-wrap: wrap; gap: 1.5rem; align-items: flex-start; }
.chart svg { max-width: 100%; height: auto; }
.warn { color: #9a6700; }
code { background: #f6f8fa; padding: 0 0.2rem; border-radius: 3px; }
`;

/**
 * The opening of a self-contained report page, up to and including
 * `<body>`: a Content-Security-Policy that lets the page fetch nothing,
 * and the shared {@linkcode CSS}.
 *
 * @param title The page title (text; escaped here).
 * @returns HTML, ending with `<body>` (no newline).
 */
export function htmlPageStart(title: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>${CSS}</style>
</head>
<body>`;
}

/**
 * An HTML table of a text header row and rows of HTML cells.
 *
 * @param head Column headings (text; escaped here).
 * @param rows Cells as HTML, inserted as they are (escape text with
 *   {@linkcode escapeHtml}).
 * @returns The `<table>` element.
 */
export function htmlTable(
  head: readonly string[],
  rows: readonly (readonly string[])[],
): string {
  const th = head.map((h) => `<th>${escapeHtml(h)}</th>`).join("");
  const tr = rows.map((r) =>
    `<tr>${r.map((c) => `<td>${c}</td>`).join("")}</tr>`
  ).join("\n");
  return `<table><thead><tr>${th}</tr></thead><tbody>\n${tr}\n</tbody></table>`;
}

/** An HTML table of text cells (all escaped). */
function table(
  head: readonly string[],
  rows: readonly (readonly string[])[],
): string {
  return htmlTable(head, rows.map((r) => r.map(escapeHtml)));
}

function keyValues(record: Readonly<Record<string, unknown>>): string {
  const rows = Object.entries(record).map(([k, v]) => [
    k,
    typeof v === "string" ? v : JSON.stringify(v),
  ]);
  return table(["key", "value"], rows);
}

/**
 * Renders the report as one self-contained HTML page: summary numbers, the
 * Table 6 row, the per-class table, the confusion-matrix heatmap and the
 * learning curves (SVG rendered by Vega), run facts and timings.
 *
 * @param report The report data (as written to `report.json`).
 * @returns The HTML text.
 */
export async function renderReportHtml(report: ReportData): Promise<string> {
  const ev = report.evaluation;
  const states = report.states ?? [];
  const evLabel = ev.stateLabel ?? "model";
  const stateSections: string[] = [];
  for (const [i, st] of states.entries()) {
    stateSections.push(
      `<h3 id="state-${i}">${escapeHtml(st.label)} on <code>${
        escapeHtml(st.split)
      }</code>: accuracy ${pct(st.accuracy)} %</h3>
${st.note ? `<p class="warn">${escapeHtml(st.note)}</p>` : ""}
<p>Predictions per clip: <a href="${escapeHtml(st.predictions)}">${
        escapeHtml(st.predictions)
      }</a></p>
<div class="charts"><div>${table(PER_CLASS_HEAD, perClassRows(st))}</div>
<div class="chart" id="confusion-${
        escapeHtml(st.split)
      }-${st.id}">${await renderVegaLiteSvg(
        confusionSpec(report.classes, st.confusion),
      )}</div></div>`,
    );
  }
  const charts: string[] = [];
  if (states.length === 0) {
    charts.push(
      `<div class="chart" id="confusion">${await renderVegaLiteSvg(
        confusionSpec(report.classes, ev.confusion),
      )}</div>`,
    );
  }
  const curveCharts: string[] = [];
  if (report.curves.length > 0) {
    for (const metric of ["loss", "accuracy"] as const) {
      curveCharts.push(
        `<div class="chart" id="curve-${metric}">${await renderVegaLiteSvg(
          curveSpec(report.curves, metric),
        )}</div>`,
      );
    }
  }
  const cards = [
    [`${ev.split} accuracy, ${evLabel}`, `${pct(ev.accuracy)} %`],
    [`${ev.split} macro-F1, ${evLabel}`, `${pct(ev.macroF1)} %`],
    [
      `${ev.split} loss, ${evLabel}`,
      Number.isFinite(ev.loss) ? ev.loss.toFixed(4) : "–",
    ],
    ["examples", String(ev.examples)],
    ...(report.summary?.bestEpoch !== undefined
      ? [["best epoch", String(report.summary.bestEpoch)]]
      : []),
  ].map(([k, v]) =>
    `<div class="card"><div class="v">${escapeHtml(v)}</div><div class="k">${
      escapeHtml(k)
    }</div></div>`
  ).join("");

  let table6 = "";
  if (report.table6) {
    const t = report.table6;
    const { head, cells } = table6Table(t);
    const notes: string[] = [];
    if (t.origFrom === "report") {
      notes.push(
        `Orig is this report's evaluation on <code>${
          escapeHtml(ev.split)
        }</code>, ${escapeHtml(evLabel)} (TTAu did not report it).`,
      );
    } else if (t.origFrom === "ttda") {
      notes.push(
        "Orig is TTDA's accuracy before adaptation (TTAu did not report it).",
      );
    }
    if (t.ttda) {
      notes.push(`TTDA is the final epoch (${t.ttda.epoch}).`);
    }
    if (t.ttdaBest) {
      notes.push(
        `<span class="warn">The best-by-test TTDA number (epoch ${t.ttdaBest.epoch}) is optimistic: its epoch was chosen on the test labels.${
          t.ttdaBest.note ? ` ${escapeHtml(t.ttdaBest.note)}` : ""
        }</span>`,
      );
    }
    table6 = `<h2>Test-time variants (the paper's Table 6)</h2>
${table(head, [cells])}
${notes.map((n) => `<p>${n}</p>`).join("\n")}`;
  }

  const perClass = table(
    PER_CLASS_HEAD,
    perClassRows(ev),
  );

  const splits = report.summary
    ? Object.entries(report.summary).filter(([, v]) =>
      typeof v === "object" && v !== null && "accuracy" in v
    ) as [string, { accuracy: number; loss?: number }][]
    : [];
  const splitTable = splits.length
    ? `<h2>Accuracy per split, trained best checkpoint (train stage)</h2>\n${
      table(
        ["split", "accuracy %", "loss"],
        splits.map(([s, v]) => [
          s,
          pct(v.accuracy),
          typeof v.loss === "number" ? v.loss.toFixed(4) : "–",
        ]),
      )
    }`
    : "";
  const timings = table(
    ["stage", "seconds"],
    Object.entries(report.timingsMs).map((
      [k, v],
    ) => [k, (v / 1000).toFixed(2)]),
  );

  return `${htmlPageStart(`Report: ${report.name}`)}
<h1>${escapeHtml(report.name)}</h1>
<p class="meta">spec hash <code>${
    escapeHtml(report.specHash)
  }</code> · backend ${
    escapeHtml(String(report.backend.name ?? "?"))
  } · evaluated on <code>${escapeHtml(ev.split)}</code> · ${
    escapeHtml(report.createdAt)
  }</p>
<div class="cards">${cards}</div>
${ev.note ? `<p class="warn">${escapeHtml(ev.note)}</p>` : ""}
${
    states.length
      ? `<h2>Model states, side by side</h2>\n${
        table(STATES_HEAD, statesTable(states))
      }`
      : ""
  }
${table6}
${splitTable}
${
    states.length
      ? `<h2>Per-class metrics and confusion matrix of each model state (%; rows: true class)</h2>\n${
        stateSections.join("\n")
      }`
      : `<h2>Per-class metrics on ${escapeHtml(ev.split)}, ${
        escapeHtml(evLabel)
      } (%)</h2>
${perClass}
<h2>Confusion matrix</h2>
<div class="charts">${charts.join("\n")}</div>`
  }
${
    curveCharts.length
      ? `<h2>Learning curves</h2>\n<div class="charts">${
        curveCharts.join("\n")
      }</div>`
      : ""
  }
<h2>Run</h2>
${
    keyValues({
      backend: report.backend,
      ...(report.adapter ? { adapter: report.adapter } : {}),
      ...report.versions,
    })
  }
<h2>Timings</h2>
${timings}
</body>
</html>
`;
}
