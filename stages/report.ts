/**
 * The `report` step stage: evaluates the trained model on one split (argmax
 * of the logits) and writes the run's report — accuracy, macro-F1, per-class
 * precision/recall/F1/support, the confusion matrix, learning curves from the
 * train stage's `metrics`, and the paper's Table 6 row (Orig / Aug / Mlt /
 * Hyb / TTDA, reference §12) when `ttau` or `ttda` ran before it — with the
 * spec hash, versions, backend, adapter and stage timings of `manifest.json`.
 *
 * Files: `report.json` (machine-readable, {@linkcode ReportData}),
 * `report.md`, and `report.html` (self-contained: inline CSS and SVG charts
 * rendered by Vega, no script, no network). Each is written atomically. Zero
 * divisions in the metrics give 0; the TTDA number picked by test accuracy is
 * labelled optimistic. Timings cover the stages finished before the report.
 *
 * Takes `tokens`, `label` and `model` (plus `metrics`, `summary`, `ttau` and
 * `ttda` when present); provides `report`.
 *
 * ```yaml
 * - use: report
 *   with: { split: test, batchSize: 64, formats: [json, md, html] }
 * ```
 *
 * @module
 */
import { join } from "node:path";
import * as z from "zod";
import { defineStage } from "../pipeline/define_stage.ts";
import { writeFileAtomic, writeJsonAtomic } from "../pipeline/atomic.ts";
import type { AmautModel } from "../model/amaut.ts";
import { evaluate } from "./train.ts";
import { argmaxRows, classificationReport } from "../lib/metrics.ts";
import {
  pct,
  PER_CLASS_HEAD,
  perClassRows,
  renderReportHtml,
  table6Table,
} from "../lib/report_html.ts";
import type { CurvePoint, ReportData, Table6Row } from "../lib/report_html.ts";

/** Options of the `report` stage. */
export const ReportOptions = z.strictObject({
  split: z.string().min(1).default("test").describe(
    "Split to evaluate the model on",
  ),
  batchSize: z.int().min(1).default(64).describe(
    "Clips per evaluation batch",
  ),
  formats: z.array(z.enum(["json", "md", "html"])).min(1).default([
    "json",
    "md",
    "html",
  ]).describe(
    "Files to write: report.json, report.md, report.html",
  ),
});
/** Parsed options of the `report` stage. */
export type ReportOptions = z.infer<typeof ReportOptions>;

const finite = (v: unknown): v is number =>
  typeof v === "number" && Number.isFinite(v);

const accuracyOf = (v: unknown): number | undefined => {
  const a = (v as { accuracy?: unknown } | undefined)?.accuracy;
  return finite(a) ? a : undefined;
};

/**
 * The Table 6 row from the `ttau` and `ttda` values (either may be absent),
 * or undefined when neither ran. `ttau` is `{orig, aug, mlt, hyb}` (any
 * subset, each `{accuracy}`); `ttda` is `{final: {epoch, accuracy}, best:
 * {epoch, accuracy, note}, before: {accuracy}}`. Orig comes from TTAu,
 * else TTDA's `before` (the unadapted model), else `evaluatedAccuracy`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { table6Row } from "./report.ts";
 * assert.deepEqual(table6Row({ mlt: { accuracy: 0.9 } }, undefined, 0.8), {
 *   orig: 0.8, origFrom: "report", mlt: 0.9,
 * });
 * assert.equal(table6Row(undefined, undefined, 0.8), undefined);
 * ```
 */
export function table6Row(
  ttau: unknown,
  ttda: unknown,
  evaluatedAccuracy: number,
): Table6Row | undefined {
  if (ttau === undefined && ttda === undefined) return undefined;
  const t = (ttau ?? {}) as Record<string, unknown>;
  const d = (ttda ?? {}) as {
    before?: { accuracy?: unknown };
    final?: { epoch?: unknown; accuracy?: unknown };
    best?: { epoch?: unknown; accuracy?: unknown; note?: unknown };
  };
  const orig = accuracyOf(t.orig);
  const before = accuracyOf(d.before);
  const row: {
    -readonly [K in keyof Table6Row]: Table6Row[K];
  } = orig !== undefined
    ? { orig, origFrom: "ttau" }
    : before !== undefined
    ? { orig: before, origFrom: "ttda" }
    : { orig: evaluatedAccuracy, origFrom: "report" };
  for (const key of ["aug", "mlt", "hyb"] as const) {
    const a = accuracyOf(t[key]);
    if (a !== undefined) row[key] = a;
  }
  if (d.final && finite(d.final.accuracy)) {
    row.ttda = {
      epoch: finite(d.final.epoch) ? d.final.epoch : NaN,
      accuracy: d.final.accuracy,
    };
  }
  if (d.best && finite(d.best.accuracy)) {
    row.ttdaBest = {
      epoch: finite(d.best.epoch) ? d.best.epoch : NaN,
      accuracy: d.best.accuracy,
      ...(typeof d.best.note === "string" ? { note: d.best.note } : {}),
    };
  }
  return row;
}

function mdTable(
  head: readonly string[],
  rows: readonly (readonly string[])[],
): string {
  const esc = (s: string) => s.replaceAll("|", "\\|");
  return [
    `| ${head.map(esc).join(" | ")} |`,
    `|${head.map((_, i) => (i === 0 ? " --- " : " ---: ")).join("|")}|`,
    ...rows.map((r) => `| ${r.map(esc).join(" | ")} |`),
  ].join("\n");
}

/**
 * Renders the report as Markdown.
 *
 * @param report The report data.
 * @returns The Markdown text.
 */
export function renderReportMarkdown(report: ReportData): string {
  const ev = report.evaluation;
  const out: string[] = [
    `# Report: ${report.name}`,
    "",
    `- spec hash: \`${report.specHash}\``,
    `- backend: ${String(report.backend.name ?? "?")}${
      report.adapter ? ` (adapter ${JSON.stringify(report.adapter)})` : ""
    }`,
    `- versions: ${
      Object.entries(report.versions).map(([k, v]) => `${k} ${v}`).join(", ")
    }`,
    `- written: ${report.createdAt}`,
    "",
    `## Evaluation on \`${ev.split}\` (${ev.examples} clips)`,
    "",
    `- accuracy: ${pct(ev.accuracy)} %`,
    `- macro-F1: ${pct(ev.macroF1)} %`,
    `- loss: ${finite(ev.loss) ? ev.loss.toFixed(4) : "–"}`,
    ...(ev.note ? [`- note: ${ev.note}`] : []),
  ];
  if (report.summary?.bestEpoch !== undefined) {
    out.push(`- best epoch: ${report.summary.bestEpoch}`);
  }
  if (report.table6) {
    const t = report.table6;
    const { head, cells } = table6Table(t);
    out.push(
      "",
      "## Test-time variants (the paper's Table 6), accuracy %",
      "",
      mdTable(head, [cells]),
    );
    if (t.origFrom === "report") {
      out.push(
        "",
        `Orig is this report's evaluation on \`${ev.split}\` (TTAu did not report it).`,
      );
    } else if (t.origFrom === "ttda") {
      out.push(
        "",
        "Orig is TTDA's accuracy before adaptation (TTAu did not report it).",
      );
    }
    if (t.ttda) out.push("", `TTDA is the final epoch (${t.ttda.epoch}).`);
    if (t.ttdaBest) {
      out.push(
        "",
        `**Optimistic:** the best-by-test TTDA number (epoch ${t.ttdaBest.epoch}) chose its epoch on the test labels.${
          t.ttdaBest.note ? ` ${t.ttdaBest.note}` : ""
        }`,
      );
    }
  }
  const splits = Object.entries(report.summary ?? {}).filter(([, v]) =>
    typeof v === "object" && v !== null && "accuracy" in v
  ) as [string, { accuracy: number; loss?: number }][];
  if (splits.length) {
    out.push(
      "",
      "## Accuracy per split (best checkpoint)",
      "",
      mdTable(
        ["split", "accuracy %", "loss"],
        splits.map(([s, v]) => [
          s,
          pct(v.accuracy),
          finite(v.loss) ? v.loss.toFixed(4) : "–",
        ]),
      ),
    );
  }
  out.push(
    "",
    `## Per-class metrics on \`${ev.split}\` (%)`,
    "",
    mdTable(
      PER_CLASS_HEAD,
      perClassRows(ev),
    ),
    "",
    "## Confusion matrix (rows: true class, columns: predicted)",
    "",
    mdTable(
      ["true \\ predicted", ...report.classes],
      ev.confusion.map((row, i) => [report.classes[i], ...row.map(String)]),
    ),
  );
  if (report.curves.length) {
    const epochs = [...new Set(report.curves.map((c) => c.epoch))].sort((
      a,
      b,
    ) => a - b);
    const splitNames = [...new Set(report.curves.map((c) => c.split))];
    const at = (e: number, s: string) =>
      report.curves.find((c) => c.epoch === e && c.split === s);
    out.push(
      "",
      "## Learning curves",
      "",
      mdTable(
        [
          "epoch",
          ...splitNames.flatMap((s) => [`${s} loss`, `${s} acc %`]),
        ],
        epochs.map((e) => [
          String(e),
          ...splitNames.flatMap((s) => {
            const p = at(e, s);
            return [p ? p.loss.toFixed(4) : "–", pct(p?.accuracy)];
          }),
        ]),
      ),
    );
  }
  const timings = Object.entries(report.timingsMs);
  if (timings.length) {
    out.push(
      "",
      "## Timings (stages before the report)",
      "",
      mdTable(
        ["stage", "seconds"],
        timings.map(([k, v]) => [k, (v / 1000).toFixed(2)]),
      ),
    );
  }
  return out.join("\n") + "\n";
}

async function readManifest(runDir: string): Promise<Record<string, unknown>> {
  try {
    return JSON.parse(await Deno.readTextFile(join(runDir, "manifest.json")));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return {};
    throw new Error(
      `Cannot read ${join(runDir, "manifest.json")}: ${
        (error as Error).message
      }`,
    );
  }
}

/** The `report` stage. */
export const stage = defineStage<ReportOptions>({
  id: "report",
  version: "1.0.0",
  api: 1,
  kind: "step",
  summary: "Evaluate the model and write its JSON, Markdown and HTML report",
  options: ReportOptions,
  takes: ["tokens", "label", "model"],
  provides: ["report"],
  async run(options, ctx) {
    const model = ctx.values.model as AmautModel | undefined;
    if (!model || typeof model.apply !== "function") {
      throw new Error(
        "Cannot report: no model (put train before report)",
      );
    }
    const classes = ctx.data.classes;
    const result = await evaluate(
      ctx,
      model,
      options.split,
      options.batchSize,
      { keepLogits: true },
    );
    const predictions = argmaxRows(result.logits, classes.length);
    const metrics = classificationReport(result.labels, predictions, classes);
    const manifest = await readManifest(ctx.runDir);
    const backend = (manifest.backend ?? {
      name: ctx.backend.name,
    }) as Record<string, unknown>;
    const curves = ((ctx.values.metrics ?? []) as CurvePoint[]).map((m) => ({
      epoch: m.epoch,
      split: m.split,
      loss: m.loss,
      accuracy: m.accuracy,
      ...(m.lr !== undefined ? { lr: m.lr } : {}),
    }));
    const table6 = table6Row(
      ctx.values.ttau,
      ctx.values.ttda,
      metrics.accuracy,
    );
    const report: ReportData = {
      format: "amaut-report/1",
      name: String(manifest.name ?? ""),
      specHash: ctx.specHash,
      createdAt: new Date().toISOString(),
      backend,
      ...(backend.adapter
        ? { adapter: backend.adapter as Record<string, unknown> }
        : {}),
      versions: (manifest.versions ?? {}) as Record<string, string>,
      timingsMs: (manifest.timingsMs ?? {}) as Record<string, number>,
      classes: [...classes],
      evaluation: {
        split: options.split,
        ...(ctx.values.ttda !== undefined
          ? {
            note:
              "test_time_adaptation ran before report: the model evaluated is the adapted one",
          }
          : {}),
        examples: metrics.total,
        loss: result.loss,
        accuracy: metrics.accuracy,
        macroF1: metrics.macroF1,
        macroPrecision: metrics.macroPrecision,
        macroRecall: metrics.macroRecall,
        perClass: metrics.perClass,
        confusion: metrics.confusion,
      },
      ...(ctx.values.summary
        ? { summary: ctx.values.summary as Record<string, unknown> }
        : {}),
      curves,
      ...(table6 ? { table6 } : {}),
    };
    const formats = new Set(options.formats);
    if (formats.has("json")) {
      await writeJsonAtomic(join(ctx.runDir, "report.json"), report);
    }
    if (formats.has("md")) {
      await writeFileAtomic(
        join(ctx.runDir, "report.md"),
        renderReportMarkdown(report),
      );
    }
    if (formats.has("html")) {
      await writeFileAtomic(
        join(ctx.runDir, "report.html"),
        await renderReportHtml(report),
      );
    }
    ctx.log.info(
      `${options.split}: accuracy ${pct(metrics.accuracy)}%, macro-F1 ${
        pct(metrics.macroF1)
      }%; wrote ${[...formats].map((f) => `report.${f}`).join(", ")}`,
    );
    return { report };
  },
});
