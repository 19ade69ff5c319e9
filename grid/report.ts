/**
 * The grid report (`deno task grid report <dir>`): one Markdown and one
 * self-contained HTML page (inline CSS and SVG charts rendered by Vega, as
 * the run report) with, per preset (and per setting of any `--vary` key
 * other than `data.fold`), the mean ± sample standard deviation over folds
 * and repeats of Orig, Aug, Mlt, Hyb and TTDA beside the paper's Table 6/8
 * (or Tables 3–5 for ablations) values, and a table of every run with a
 * link to its folder and report. Also `grid_report.json` with the numbers.
 *
 * Per run: Orig, Aug, Mlt, Hyb and TTDA from `report.json`'s Table 6 row
 * when the run has a report stage, else `ttau.json`; Orig falls back to the
 * report's evaluation, then to `summary.json`'s test accuracy. Mlt and Hyb
 * exist only on the runs that ensembled sibling repeats (the last repeat
 * of each group), so their mean is over folds.
 *
 * @module
 */
import { join } from "node:path";
import type { TopLevelSpec } from "vega-lite";
import { writeFileAtomic, writeJsonAtomic } from "../pipeline/atomic.ts";
import {
  escapeHtml,
  htmlPageStart,
  htmlTable,
  renderVegaLiteSvg,
} from "../lib/report_html.ts";
import { readGrid, runFolder } from "./grid_file.ts";
import type { GridFile, GridRun } from "./grid_file.ts";
import { runState } from "./run_state.ts";
import type { RunState } from "./run_state.ts";
import { PAPER, PAPER_AM_FOLDS } from "./paper.ts";
import type { PaperRow } from "./paper.ts";

/** The Table 6 columns, in order. */
export const GRID_COLUMNS = ["orig", "aug", "mlt", "hyb", "ttda"] as const;
/** One Table 6 column. */
export type GridColumn = typeof GRID_COLUMNS[number];
const LABEL: Record<GridColumn, string> = {
  orig: "Orig",
  aug: "Aug",
  mlt: "Mlt",
  hyb: "Hyb",
  ttda: "TTDA",
};

/** One run's numbers (accuracies in [0, 1]). */
export interface RunScores {
  readonly index: number;
  readonly name: string;
  readonly preset: string;
  readonly vary: Readonly<Record<string, string>>;
  readonly repeat: number;
  readonly seed: number;
  readonly state: RunState;
  readonly scores: Partial<Record<GridColumn, number>>;
  /** Ensemble size of Mlt/Hyb. */
  readonly members?: number;
  /** Run folder, relative to the grid folder. */
  readonly folder: string;
  /** The run's report.html relative to the grid folder, when it has one. */
  readonly reportHtml?: string;
}

/** Mean, sample standard deviation and count of one column. */
export interface Stat {
  readonly mean: number;
  /** Sample standard deviation (n − 1); 0 for one value. */
  readonly std: number;
  readonly n: number;
}

/** One row of the summary: a preset (and non-fold vary setting). */
export interface GroupRow {
  readonly preset: string;
  /** The non-fold vary values, e.g. `{"train.epochs": "10"}`. */
  readonly setting: Readonly<Record<string, string>>;
  /** Runs in the group, and how many finished. */
  readonly runs: number;
  readonly finished: number;
  readonly folds: readonly string[];
  readonly stats: Partial<Record<GridColumn, Stat>>;
  /** The paper's row, when the preset has one. */
  readonly paper?: PaperRow;
}

/** The content of `grid_report.json`. */
export interface GridReport {
  readonly format: "amaut-grid-report/1";
  readonly name: string;
  readonly createdAt: string;
  readonly groups: readonly GroupRow[];
  readonly runs: readonly RunScores[];
}

async function readJson(path: string): Promise<Record<string, unknown>> {
  try {
    return JSON.parse(await Deno.readTextFile(path));
  } catch {
    return {};
  }
}

const acc = (v: unknown): number | undefined => {
  const a = (v as { accuracy?: unknown } | undefined)?.accuracy;
  return typeof a === "number" && Number.isFinite(a) ? a : undefined;
};

/** Reads one run folder's scores. */
export async function runScores(
  dir: string,
  run: GridRun,
): Promise<RunScores> {
  const folder = runFolder(dir, run);
  const [state, report, ttau, summary] = await Promise.all([
    runState(folder, run),
    readJson(join(folder, "report.json")),
    readJson(join(folder, "ttau.json")),
    readJson(join(folder, "summary.json")),
  ]);
  const scores: Partial<Record<GridColumn, number>> = {};
  const t6 = report.table6 as Record<string, unknown> | undefined;
  if (t6) {
    for (const c of ["orig", "aug", "mlt", "hyb"] as const) {
      if (typeof t6[c] === "number") scores[c] = t6[c] as number;
    }
    const ttda = acc(t6.ttda);
    if (ttda !== undefined) scores.ttda = ttda;
  }
  for (const c of ["orig", "aug", "mlt", "hyb"] as const) {
    const a = acc(ttau[c]);
    if (scores[c] === undefined && a !== undefined) scores[c] = a;
  }
  scores.orig ??= acc(report.evaluation) ?? acc(summary.test);
  if (scores.orig === undefined) delete scores.orig;
  const hasReport = await Deno.stat(join(folder, "report.html")).then(
    () => true,
    () => false,
  );
  return {
    index: run.index,
    name: run.name,
    preset: run.preset,
    vary: run.vary,
    repeat: run.repeat,
    seed: run.seed,
    state,
    scores,
    ...(typeof ttau.members === "number" ? { members: ttau.members } : {}),
    folder: run.runDir,
    ...(hasReport ? { reportHtml: `${run.runDir}/report.html` } : {}),
  };
}

/**
 * Mean and sample standard deviation.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { stat } from "./report.ts";
 * assert.deepEqual(stat([1, 3]), { mean: 2, std: Math.SQRT2, n: 2 });
 * ```
 */
export function stat(values: readonly number[]): Stat {
  const n = values.length;
  const mean = values.reduce((s, v) => s + v, 0) / n;
  const std = n > 1
    ? Math.sqrt(values.reduce((s, v) => s + (v - mean) ** 2, 0) / (n - 1))
    : 0;
  return { mean, std, n };
}

const FOLD_KEY = "data.fold";

/** The paper row for a group: AM with a single fold gets that fold's row. */
function paperRow(preset: string, folds: readonly string[]) {
  if (preset === "am" && folds.length === 1) {
    return PAPER_AM_FOLDS[Number(folds[0])] ?? PAPER.am;
  }
  return PAPER[preset];
}

/**
 * Groups runs by preset and non-fold vary values and averages each column
 * over the finished runs that report it.
 */
export function groupRuns(runs: readonly RunScores[]): GroupRow[] {
  const groups = new Map<string, RunScores[]>();
  for (const r of runs) {
    const setting = Object.entries(r.vary).filter(([k]) => k !== FOLD_KEY);
    const key = JSON.stringify([r.preset, setting]);
    (groups.get(key) ?? groups.set(key, []).get(key)!).push(r);
  }
  return [...groups.values()].map((members) => {
    const first = members[0];
    const setting = Object.fromEntries(
      Object.entries(first.vary).filter(([k]) => k !== FOLD_KEY),
    );
    const done = members.filter((m) => m.state.state === "ok");
    const folds = [
      ...new Set(
        members.map((m) => m.vary[FOLD_KEY]).filter((f) => f !== undefined),
      ),
    ];
    const stats: Partial<Record<GridColumn, Stat>> = {};
    for (const c of GRID_COLUMNS) {
      const values = done.map((m) => m.scores[c]).filter((v): v is number =>
        v !== undefined
      );
      if (values.length > 0) stats[c] = stat(values);
    }
    const paper = paperRow(first.preset, folds);
    return {
      preset: first.preset,
      setting,
      runs: members.length,
      finished: done.length,
      folds,
      stats,
      ...(paper ? { paper } : {}),
    };
  });
}

/** Collects every run's scores and the groups. */
export async function gridReport(dir: string): Promise<GridReport> {
  const grid: GridFile = await readGrid(dir);
  const runs = await Promise.all(grid.runs.map((r) => runScores(dir, r)));
  return {
    format: "amaut-grid-report/1",
    name: grid.name,
    createdAt: new Date().toISOString(),
    groups: groupRuns(runs),
    runs,
  };
}

/** `mean ± std` in % with two decimals; "–" when missing. */
export function formatStat(s: Stat | undefined): string {
  if (!s) return "–";
  const m = (100 * s.mean).toFixed(2);
  return s.n > 1 ? `${m} ± ${(100 * s.std).toFixed(2)}` : m;
}

const pct = (v: number | undefined) =>
  v === undefined ? "–" : (100 * v).toFixed(2);
const paperPct = (v: number | undefined) =>
  v === undefined ? "–" : v.toFixed(2);

function groupLabel(g: GroupRow): string {
  const s = Object.entries(g.setting).map(([k, v]) => `${k}=${v}`).join(", ");
  return s ? `${g.preset} (${s})` : g.preset;
}

const SUMMARY_HEAD = [
  "preset",
  "",
  "runs",
  ...GRID_COLUMNS.map((c) => LABEL[c]),
  "Table 8",
];

function summaryRows(report: GridReport): string[][] {
  return report.groups.flatMap((g) => {
    const measured = [
      groupLabel(g),
      "measured",
      `${g.finished}/${g.runs}`,
      ...GRID_COLUMNS.map((c) => formatStat(g.stats[c])),
      "–",
    ];
    if (!g.paper) return [measured];
    return [measured, [
      "",
      `paper (${g.paper.source})`,
      "",
      ...GRID_COLUMNS.map((c) => paperPct(g.paper![c])),
      paperPct(g.paper.table8),
    ]];
  });
}

function varyText(v: Readonly<Record<string, string>>): string {
  return Object.entries(v).map(([k, x]) => `${k}=${x}`).join(" ") || "–";
}

function epochsText(s: RunState): string {
  return s.epochs !== undefined
    ? `${s.epochsDone}/${s.epochs}`
    : String(s.epochsDone);
}

function mdRow(cells: readonly string[]): string {
  return `| ${cells.map((c) => c.replaceAll("|", "\\|")).join(" | ")} |`;
}

/** Column headings of the per-run table (Markdown and HTML). */
const RUN_HEAD: readonly string[] = [
  "run",
  "state",
  "epochs",
  "seed",
  "vary",
  ...GRID_COLUMNS.map((c) => LABEL[c]),
  "adapter",
];

/** Renders the grid report as Markdown (links relative to the grid folder). */
export function renderGridMarkdown(report: GridReport): string {
  return [
    `# Grid report: ${report.name}`,
    "",
    `Written ${report.createdAt}. Accuracy in %, mean ± sample standard deviation over the folds and repeats of each preset (finished runs only); Mlt and Hyb come from the run that ensembles its sibling repeats, so they average over folds.`,
    "",
    "## Per preset",
    "",
    mdRow(SUMMARY_HEAD),
    `|${SUMMARY_HEAD.map((_, i) => i < 2 ? " --- " : " ---: ").join("|")}|`,
    ...summaryRows(report).map(mdRow),
    "",
    "## Runs",
    "",
    mdRow(RUN_HEAD),
    `|${
      RUN_HEAD.map((_, i) => i === 0 || i === 1 || i === 4 ? " --- " : " ---: ")
        .join("|")
    }|`,
    ...report.runs.map((r) =>
      mdRow([
        `[${r.name}](${r.reportHtml ?? r.folder})`,
        r.state.state,
        epochsText(r.state),
        String(r.seed),
        varyText(r.vary),
        ...GRID_COLUMNS.map((c) => pct(r.scores[c])),
        r.state.adapter ?? r.state.backend ?? "–",
      ])
    ),
    "",
  ].join("\n");
}

/** The Vega-Lite chart of one group: measured mean bars with ±std rules, paper ticks. */
export function groupChartSpec(g: GroupRow): TopLevelSpec {
  const values = GRID_COLUMNS.flatMap((c) => {
    const s = g.stats[c];
    const p = g.paper?.[c];
    if (!s && p === undefined) return [];
    return [{
      column: LABEL[c],
      ...(s
        ? {
          mean: 100 * s.mean,
          lo: 100 * (s.mean - s.std),
          hi: 100 * (s.mean + s.std),
        }
        : {}),
      ...(p !== undefined ? { paper: p } : {}),
    }];
  });
  const x = {
    field: "column",
    type: "nominal" as const,
    sort: GRID_COLUMNS.map((c) => LABEL[c]),
    title: null,
  };
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: groupLabel(g),
    width: 260,
    height: 180,
    data: { values },
    config: { font: "system-ui, sans-serif" },
    layer: [
      {
        mark: { type: "bar", color: "#4c78a8" },
        encoding: {
          x,
          y: {
            field: "mean",
            type: "quantitative",
            title: "accuracy %",
            scale: { zero: false },
          },
        },
      },
      {
        mark: { type: "rule", color: "#1d232a" },
        encoding: {
          x,
          y: { field: "lo", type: "quantitative" },
          y2: { field: "hi" },
        },
      },
      {
        mark: { type: "tick", color: "#e45756", thickness: 3 },
        encoding: {
          x,
          y: { field: "paper", type: "quantitative" },
        },
      },
    ],
  } as TopLevelSpec;
}

/** Renders the grid report as one self-contained HTML page. */
export async function renderGridHtml(report: GridReport): Promise<string> {
  const charts: string[] = [];
  for (const g of report.groups) {
    if (Object.keys(g.stats).length === 0 && !g.paper) continue;
    charts.push(
      `<div class="chart">${await renderVegaLiteSvg(groupChartSpec(g))}</div>`,
    );
  }
  const summary = htmlTable(
    SUMMARY_HEAD,
    summaryRows(report).map((r) => r.map(escapeHtml)),
  );
  const runs = htmlTable(
    RUN_HEAD,
    report.runs.map((r) => [
      `<a href="${escapeHtml(r.reportHtml ?? r.folder)}">${
        escapeHtml(r.name)
      }</a>`,
      escapeHtml(r.state.state),
      escapeHtml(epochsText(r.state)),
      String(r.seed),
      escapeHtml(varyText(r.vary)),
      ...GRID_COLUMNS.map((c) => pct(r.scores[c])),
      escapeHtml(r.state.adapter ?? r.state.backend ?? "–"),
    ]),
  );
  return `${htmlPageStart(`Grid report: ${report.name}`)}
<h1>Grid: ${escapeHtml(report.name)}</h1>
<p class="meta">${report.runs.length} runs · written ${
    escapeHtml(report.createdAt)
  } · accuracy %, mean ± sample standard deviation over folds and repeats (finished runs); Mlt and Hyb from the run ensembling its sibling repeats</p>
<h2>Per preset, with the paper's values</h2>
${summary}
<div class="charts">${charts.join("\n")}</div>
<p class="meta">Bars: measured mean; black rules: ± one standard deviation; red ticks: the paper.</p>
<h2>Runs</h2>
${runs}
</body>
</html>
`;
}

/**
 * Writes `grid_report.md`, `grid_report.html` and `grid_report.json` into
 * the grid folder.
 *
 * @param dir The grid folder.
 * @returns The report data and the paths written.
 */
export async function writeGridReport(
  dir: string,
): Promise<{ report: GridReport; files: string[] }> {
  const report = await gridReport(dir);
  const files = [
    join(dir, "grid_report.md"),
    join(dir, "grid_report.html"),
    join(dir, "grid_report.json"),
  ];
  await writeFileAtomic(files[0], renderGridMarkdown(report));
  await writeFileAtomic(files[1], await renderGridHtml(report));
  await writeJsonAtomic(files[2], report);
  return { report, files };
}
