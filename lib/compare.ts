/**
 * Prints two run folders side by side: name, spec hash, backend and adapter,
 * accuracy per split of the best checkpoint, the report's accuracy and
 * macro-F1 of every model state (trained best and last, TTAu modes, TTDA
 * final; each row names its state), the Table 6 row (when a report has it),
 * best epoch, stage timings, and every option that differs between the two plans
 * (as dotted paths: `train.lr`, `runtime.seed`, `data.root`, ...).
 *
 * Each folder must hold `summary.json`, `manifest.json` and `plan.json`;
 * `report.json` is read when present.
 *
 * The command line is `deno task compare runs/a runs/b` (`_tools/compare.ts`).
 *
 * @module
 */
import { join, resolve } from "node:path";
import type { ReportData, StateReport, Table6Row } from "./report_html.ts";

/** The files of one run folder that the comparison reads. */
export interface RunFiles {
  readonly dir: string;
  readonly summary: Record<string, unknown>;
  readonly manifest: Record<string, unknown>;
  readonly plan: Record<string, unknown>;
  readonly report?: ReportData;
}

const REQUIRED = ["summary.json", "manifest.json", "plan.json"] as const;

/**
 * Reads a run folder's JSON files; throws naming the folder and the missing
 * files when it lacks any of `summary.json`, `manifest.json`, `plan.json`.
 *
 * @param dir The run folder.
 */
export async function readRun(dir: string): Promise<RunFiles> {
  const read = async (name: string) => {
    try {
      return JSON.parse(await Deno.readTextFile(join(dir, name)));
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return undefined;
      throw new Error(
        `Cannot read ${join(dir, name)}: ${(error as Error).message}`,
      );
    }
  };
  const info = await Deno.stat(dir).catch(() => undefined);
  if (!info?.isDirectory) {
    throw new Error(
      `Cannot compare "${dir}": no such run folder (${resolve(dir)})`,
    );
  }
  const [summary, manifest, plan, report] = await Promise.all(
    [...REQUIRED, "report.json"].map(read),
  );
  const missing = REQUIRED.filter((_, i) =>
    [summary, manifest, plan][i] === undefined
  );
  if (missing.length) {
    throw new Error(
      `Cannot compare "${dir}": it lacks ${
        missing.join(", ")
      } (not a finished run folder with a train stage?)`,
    );
  }
  return { dir, summary, manifest, plan, report };
}

/**
 * Flattens nested objects to dotted paths; arrays and scalars are leaves.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { flatten } from "./compare.ts";
 * assert.deepEqual(flatten({ a: { b: 1, c: [1, 2] } }), { "a.b": 1, "a.c": [1, 2] });
 * ```
 */
export function flatten(
  value: unknown,
  prefix = "",
  out: Record<string, unknown> = {},
): Record<string, unknown> {
  if (value !== null && typeof value === "object" && !Array.isArray(value)) {
    const entries = Object.entries(value);
    if (entries.length === 0 && prefix) out[prefix] = {};
    for (const [k, v] of entries) {
      flatten(v, prefix ? `${prefix}.${k}` : k, out);
    }
  } else if (prefix) out[prefix] = value;
  return out;
}

/** A plan's options as dotted paths: `runtime.*`, `data.*`, `<stage name>.*`. */
export function planOptions(
  plan: Record<string, unknown>,
): Record<string, unknown> {
  const stages = (plan.stages ?? []) as { name: string; options: unknown }[];
  return flatten({
    runtime: plan.runtime ?? {},
    data: plan.data ?? {},
    ...Object.fromEntries(stages.map((s) => [s.name, s.options ?? {}])),
  });
}

/**
 * The options that differ between two plans: `[path, a, b]`, sorted by
 * path; a missing side is `undefined`. `runtime.outputDir` is ignored.
 */
export function optionDiff(
  a: Record<string, unknown>,
  b: Record<string, unknown>,
): [string, unknown, unknown][] {
  const fa = planOptions(a);
  const fb = planOptions(b);
  const keys = [...new Set([...Object.keys(fa), ...Object.keys(fb)])].sort();
  return keys
    .filter((k) => k !== "runtime.outputDir")
    .filter((k) => JSON.stringify(fa[k]) !== JSON.stringify(fb[k]))
    .map((k) => [k, fa[k], fb[k]]);
}

const pct = (v: unknown) =>
  typeof v === "number" && Number.isFinite(v) ? (100 * v).toFixed(2) : "–";
const show = (v: unknown) =>
  v === undefined ? "–" : typeof v === "string" ? v : JSON.stringify(v);

function splitsOf(summary: Record<string, unknown>): string[] {
  return Object.entries(summary)
    .filter(([, v]) => typeof v === "object" && v !== null && "accuracy" in v)
    .map(([k]) => k);
}

function table6Of(t: Table6Row | undefined): Record<string, string> {
  if (!t) return {};
  return {
    Orig: pct(t.orig),
    Aug: pct(t.aug),
    Mlt: pct(t.mlt),
    Hyb: pct(t.hyb),
    TTDA: pct(t.ttda?.accuracy),
    ...(t.ttdaBest
      ? { "TTDA best-by-test (optimistic)": pct(t.ttdaBest.accuracy) }
      : {}),
  };
}

function seconds(manifest: Record<string, unknown>): string {
  const s = Date.parse(String(manifest.startedAt));
  const f = Date.parse(String(manifest.finishedAt));
  return Number.isFinite(s) && Number.isFinite(f)
    ? ((f - s) / 1000).toFixed(1)
    : "–";
}

/**
 * Formats two runs side by side as an aligned text table.
 *
 * @param a The first run.
 * @param b The second run.
 * @returns The text (no trailing newline).
 */
export function formatComparison(a: RunFiles, b: RunFiles): string {
  const rows: (string[] | string)[] = [];
  const row = (label: string, f: (r: RunFiles) => unknown) =>
    rows.push([label, show(f(a)), show(f(b))]);
  const section = (title: string) => rows.push(title);
  const backend = (r: RunFiles) =>
    (r.manifest.backend ?? {}) as Record<string, unknown>;

  section("run");
  row("folder", (r) => r.dir);
  row("name", (r) => r.manifest.name ?? r.plan.name);
  row("spec hash", (r) => r.manifest.specHash ?? r.plan.specHash);
  row("status", (r) => r.manifest.status);
  row("backend", (r) => backend(r).name);
  row("adapter", (r) => backend(r).adapter);
  row("tfjs", (r) => (r.manifest.versions as Record<string, string>)?.tfjs);
  row("deno", (r) => (r.manifest.versions as Record<string, string>)?.deno);

  section("accuracy % (trained, best checkpoint: summary.json)");
  const splits = [
    ...new Set([...splitsOf(a.summary), ...splitsOf(b.summary)]),
  ];
  for (const s of splits) {
    row(s, (r) => pct((r.summary[s] as { accuracy?: number })?.accuracy));
  }
  row("best epoch", (r) => r.summary.bestEpoch);
  row("selected on", (r) => r.summary.selectedOn);
  row("parameters", (r) => r.summary.parameters);

  if (a.report || b.report) {
    section("report");
    row("split", (r) => r.report?.evaluation.split);
    const headline = (r: RunFiles) =>
      r.report?.evaluation.stateLabel ?? r.report?.evaluation.state;
    row("headline state", headline);
    row(
      "accuracy % (headline state)",
      (r) => pct(r.report?.evaluation.accuracy),
    );
    row(
      "macro-F1 % (headline state)",
      (r) => pct(r.report?.evaluation.macroF1),
    );
    // Every model state, matched by id and split; the label names the epoch.
    const keyOf = (st: StateReport) => `${st.id} on ${st.split}`;
    const statesOf = (r: RunFiles) =>
      new Map((r.report?.states ?? []).map((st) => [keyOf(st), st]));
    const [sa, sb] = [statesOf(a), statesOf(b)];
    const keys = [...new Set([...sa.keys(), ...sb.keys()])];
    if (keys.length) {
      section("accuracy % by model state (macro-F1 %)");
      for (const k of keys) {
        const cell = (st: StateReport | undefined) =>
          st
            ? `${pct(st.accuracy)} (${pct(st.macroF1)})${
              st.epoch !== undefined ? ` epoch ${st.epoch}` : ""
            }`
            : "–";
        rows.push([k, cell(sa.get(k)), cell(sb.get(k))]);
      }
    }
    const ta = table6Of(a.report?.table6);
    const tb = table6Of(b.report?.table6);
    const cols = [...new Set([...Object.keys(ta), ...Object.keys(tb)])];
    if (cols.length) {
      section("Table 6 (accuracy %)");
      for (const c of cols) {
        rows.push([c, ta[c] ?? "–", tb[c] ?? "–"]);
      }
    }
  }

  section("timings (s)");
  const timingsOf = (r: RunFiles) =>
    (r.manifest.timingsMs ?? {}) as Record<string, number>;
  const stages = [
    ...new Set([
      ...Object.keys(timingsOf(a)),
      ...Object.keys(timingsOf(b)),
    ]),
  ];
  for (const s of stages) {
    row(s, (r) => {
      const ms = timingsOf(r)[s];
      return ms === undefined ? undefined : (ms / 1000).toFixed(2);
    });
  }
  row("total", (r) => seconds(r.manifest));

  const diff = optionDiff(a.plan, b.plan);
  section(`options that differ (${diff.length})`);
  for (const [k, va, vb] of diff) rows.push([k, show(va), show(vb)]);

  const cells = rows.filter((r): r is string[] => Array.isArray(r));
  const w0 = Math.max(...cells.map((r) => r[0].length));
  const w1 = Math.max(...cells.map((r) => r[1].length), 1);
  return rows.map((r) =>
    Array.isArray(r)
      ? `  ${r[0].padEnd(w0)}  ${r[1].padEnd(w1)}  ${r[2]}`.trimEnd()
      : `\n${r}`
  ).join("\n").trimStart();
}

/**
 * Reads two run folders and formats them side by side.
 *
 * @param dirA The first run folder.
 * @param dirB The second run folder.
 */
export async function compareRuns(dirA: string, dirB: string): Promise<string> {
  const [a, b] = await Promise.all([readRun(dirA), readRun(dirB)]);
  return formatComparison(a, b);
}
