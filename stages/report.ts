/**
 * The `report` step stage: scores every model state the run produced and
 * writes the run's report. The states, side by side (see
 * `lib/predictions.ts`): the trained model's best and last checkpoints
 * (loaded into a second model when `test_time_adaptation` has adapted the
 * current one in place), each TTAu mode (`scoredStates` from
 * `test_time_augmentation`), and TTDA final (the adapted weights). For each:
 * accuracy, macro-F1, loss, per-class precision/recall/F1/support and the
 * confusion matrix, and `predictions/<split>.<state>.csv` (path, label,
 * predicted label, top-k probabilities per clip), which the report links.
 * Every accuracy the report and its console lines print names its state.
 * The headline `evaluation` is the trained best state on `split`. Also:
 * learning curves from the train stage's `metrics` (epochs from 1), the
 * paper's Table 6 row (Orig / Aug / Mlt / Hyb / TTDA, reference §12) when
 * `ttau` or `ttda` ran, the spec hash, versions, backend, adapter and stage
 * timings of `manifest.json`.
 *
 * Files: `report.json` (machine-readable, {@linkcode ReportData}),
 * `report.md`, `report.html` (self-contained: inline CSS and SVG charts
 * rendered by Vega, no script, no network) and `predictions/`. Each is
 * written atomically. Zero divisions in the metrics give 0; the TTDA number
 * picked by test accuracy is labelled optimistic. Timings cover the stages
 * finished before the report.
 *
 * Takes `tokens`, `label` and `model` (plus `metrics`, `summary`, `ttau`,
 * `ttda` and `scoredStates` when present); provides `report`.
 *
 * ```yaml
 * - use: report
 *   with: { split: test, batchSize: 64, formats: [json, md, html], predictionSplits: [test, validation], top: 3 }
 * ```
 *
 * @module
 */
import { stagePrecisionUse } from "../model/engine_choice.ts";
import { join } from "node:path";
import * as z from "zod";
import { defineStage } from "../pipeline/define_stage.ts";
import { writeFileAtomic, writeJsonAtomic } from "../pipeline/atomic.ts";
import type { Tensor3D } from "@tensorflow/tfjs";
import type { StepContext } from "../pipeline/types.ts";
import { createModel } from "../model/amaut.ts";
import type { AmautModel } from "../model/amaut.ts";
import { loadCheckpoint } from "../model/checkpoint.ts";
import { assignWeights } from "../model/trainer.ts";
import {
  concatRows,
  createScorer,
  engineLabel,
  evalTiming,
  formatEvalTiming,
  type Scorer,
} from "../model/scorer.ts";
import type { EvalTiming } from "../model/evaluate.ts";
import { argmaxRows, classificationReport } from "../lib/metrics.ts";
import {
  predictionsCsv,
  predictionsFile,
  type StateScores,
} from "../lib/predictions.ts";
import { softmaxRows } from "./test_time_augmentation.ts";
import {
  pct,
  PER_CLASS_HEAD,
  perClassRows,
  renderReportHtml,
  STATES_HEAD,
  statesTable,
  table6Table,
} from "../lib/report_html.ts";
import type {
  CurvePoint,
  ReportData,
  StateReport,
  Table6Row,
} from "../lib/report_html.ts";

/** Options of the `report` stage. */
export const ReportOptions = z.strictObject({
  split: z.string().min(1).default("test").describe(
    "Split to evaluate the model on",
  ),
  batchSize: z.int().min(1).default(64).describe(
    "Clips per evaluation batch",
  ),
  engine: z.enum(["auto", "fused", "tfjs"]).default("auto").describe(
    "Evaluation engine: fused = the fused WebGPU eval graph, tfjs = the tfjs model; auto = fused on the webgpu backend, tfjs on cpu",
  ),
  precision: z.enum(["fp32", "mixed"]).default("fp32").describe(
    "Numeric precision of the fused eval graph: fp32 = float32 throughout (the reference's); mixed = f16 matmul operands with f32 accumulation, as train.precision: mixed (convolutions, norms and softmax stay f32); needs the fused engine on the webgpu backend and an adapter with shader-f16, else refused. Independent of train.precision",
  ),
  formats: z.array(z.enum(["json", "md", "html"])).min(1).default([
    "json",
    "md",
    "html",
  ]).describe(
    "Files to write: report.json, report.md, report.html",
  ),
  predictionSplits: z.array(z.string().min(1)).min(1).optional().describe(
    "Splits to score every model state on and write predictions/<split>.<state>.csv for (default: split); TTAu states exist only on TTAu's split",
  ),
  top: z.int().min(1).default(3).describe(
    "Most probable labels listed per clip in the predictions files",
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
  const label = ev.stateLabel ?? "model";
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
    `## Evaluation on \`${ev.split}\` (${ev.examples} clips): ${label}`,
    "",
    `- accuracy, ${label}: ${pct(ev.accuracy)} %`,
    `- macro-F1, ${label}: ${pct(ev.macroF1)} %`,
    `- loss, ${label}: ${finite(ev.loss) ? ev.loss.toFixed(4) : "–"}`,
    ...(ev.note ? [`- note: ${ev.note}`] : []),
  ];
  if (report.summary?.bestEpoch !== undefined) {
    out.push(`- best epoch (train stage): ${report.summary.bestEpoch}`);
  }
  const states = report.states ?? [];
  if (states.length) {
    out.push(
      "",
      "## Model states, side by side",
      "",
      mdTable(
        STATES_HEAD,
        statesTable(states).map((r) => [
          ...r.slice(0, -1),
          `[${r[r.length - 1]}](${r[r.length - 1]})`,
        ]),
      ),
    );
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
        `Orig is this report's evaluation on \`${ev.split}\`, ${label} (TTAu did not report it).`,
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
      "## Accuracy per split, trained best checkpoint (train stage)",
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
  const sections = states.length ? states : [{
    ...ev,
    label,
    predictions: "",
  }];
  for (const st of sections) {
    const title = `${st.label} on \`${st.split}\``;
    out.push(
      "",
      `## Per-class metrics, ${title} (%)`,
      "",
      mdTable(PER_CLASS_HEAD, perClassRows(st)),
      "",
      `## Confusion matrix, ${title} (rows: true class, columns: predicted)`,
      "",
      mdTable(
        ["true \\ predicted", ...report.classes],
        st.confusion.map((row, i) => [report.classes[i], ...row.map(String)]),
      ),
    );
  }
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

/**
 * A model's scores on a split (eval phase, split order) as
 * {@linkcode StateScores} fields: probabilities and the mean cross-entropy
 * (nats) from the scorer's logits.
 *
 * @param ctx The stage's context (data, abort signal).
 * @param scorer The engine that scores (see `model/scorer.ts`).
 * @param model The model (unchanged).
 * @param split Split name.
 * @param batchSize Clips per batch.
 */
export async function scoreModel(
  ctx: Pick<StepContext, "data" | "signal">,
  scorer: Scorer,
  model: AmautModel,
  split: string,
  batchSize: number,
  timing?: EvalTiming,
): Promise<
  Pick<StateScores, "paths" | "labels" | "probabilities" | "loss">
> {
  const labels: number[] = [];
  const paths: string[] = [];
  const reads = { batchSize, phase: "eval", shuffle: false } as const;
  let first = true;
  const rows = await scorer.logits(
    model,
    ctx.data.batches(split, reads),
    (batch) => ({ tokens: batch.tokens as Tensor3D }),
    (batch) => {
      if (ctx.signal.aborted) throw ctx.signal.reason;
      if (first) {
        // The next model state's scoring finds its first clips decoded.
        first = false;
        ctx.data.prefetch?.(split, reads);
      }
      const y = batch.label as number[];
      const files = batch.path as string[] | undefined;
      labels.push(...y);
      y.forEach((_, i) => paths.push(String(files?.[i] ?? "")));
    },
    timing,
  );
  if (ctx.signal.aborted) throw ctx.signal.reason;
  const n = ctx.data.classes.length;
  const probabilities = softmaxRows(concatRows(rows), n);
  let loss = 0;
  labels.forEach((label, i) => {
    loss -= Math.log(Math.max(probabilities[i * n + label], 1e-30));
  });
  return {
    paths,
    labels,
    probabilities,
    loss: labels.length ? loss / labels.length : NaN,
  };
}

/** What the report scored, and the seconds it waited for checkpoint reads. */
interface Tally {
  states: number;
  clips: number;
  loadSeconds: number;
  /** The scorer's host time (fused engine). */
  timing?: EvalTiming;
}

/** A checkpoint's parameters and running statistics, being read. */
type WeightsLoad = ReturnType<typeof loadCheckpoint>;

/**
 * Starts reading checkpoint `name` of `dir` (parameters and running
 * statistics only: the momentum is never read), so that the disk read and
 * the checksums run while the GPU scores another state. Pass the result to
 * {@linkcode loadWeights}, or to {@linkcode dropWeights} when unused.
 */
function readWeights(ctx: StepContext, dir: string, name: string): WeightsLoad {
  const load = loadCheckpoint(ctx.tf, dir, name, {
    groups: ["params", "buffers"],
  });
  // Awaited later; a failure surfaces there, not as an unhandled rejection.
  load.catch(() => {});
  return load;
}

/** Frees the tensors of a read that was not used (after an earlier error). */
async function dropWeights(ctx: StepContext, load: WeightsLoad | undefined) {
  if (!load) return;
  const ckpt = await load.catch(() => undefined);
  if (ckpt) {
    ctx.tf.dispose(Object.values(ckpt.groups).flatMap((g) => [...g.values()]));
  }
}

/** Assigns checkpoint `name` of `dir`, read by {@linkcode readWeights}, to `target`. */
async function loadWeights(
  ctx: StepContext,
  target: AmautModel,
  dir: string,
  name: string,
  load: WeightsLoad,
): Promise<void> {
  const ckpt = await load;
  try {
    assignWeights(
      target,
      ckpt.groups,
      (group, key) =>
        `Cannot score checkpoint ${join(dir, name)}: it lacks ${group}/${key}`,
    );
  } finally {
    ctx.tf.dispose(Object.values(ckpt.groups).flatMap((g) => [...g.values()]));
  }
}

/** 1-based epoch of a checkpoint, from its index file; undefined when absent. */
async function checkpointEpoch(
  dir: string,
  name: string,
): Promise<number | undefined> {
  try {
    const index = JSON.parse(
      await Deno.readTextFile(join(dir, `${name}.json`)),
    );
    const e = index?.meta?.epoch;
    return typeof e === "number" ? e + 1 : undefined; // meta.epoch is the 0-based loop index
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

/**
 * Every model state the run produced, scored on each split: the trained
 * model's best and last checkpoints, the TTAu modes (on TTAu's split, from
 * `scoredStates`), and the TTDA-adapted weights the model holds after
 * `test_time_adaptation`. The best and last weights are loaded into a second
 * model when the current one holds others (TTDA adapts in place).
 */
async function modelStates(
  ctx: StepContext,
  model: AmautModel,
  splits: readonly string[],
  batchSize: number,
  scorer: Scorer,
  tally: Tally = { states: 0, clips: 0, loadSeconds: 0 },
): Promise<StateScores[]> {
  const dir = join(ctx.runDir, "checkpoints");
  const ttda = ctx.values.ttda as
    | { final?: { epoch?: number }; split?: string }
    | undefined;
  const summaryBest =
    (ctx.values.summary as { bestEpoch?: unknown } | undefined)
      ?.bestEpoch;
  const bestIndexEpoch = await checkpointEpoch(dir, "best");
  const bestEpoch = typeof summaryBest === "number"
    ? summaryBest
    : bestIndexEpoch;
  const lastEpoch = await checkpointEpoch(dir, "last");
  const hasBest = bestIndexEpoch !== undefined;
  const ttauStates = (ctx.values.scoredStates as StateScores[] | undefined) ??
    [];
  let other: AmautModel | undefined;
  const second = () =>
    other ??= createModel(
      ctx.tf,
      model.options,
      model.dims,
      ctx.rng.child("state"),
      { init: "none" }, // every weight comes from a checkpoint
    );
  // A checkpoint being read, assigned to the second model; the wait counts.
  const intoSecond = async (name: "best" | "last", load: WeightsLoad) => {
    const t0 = performance.now();
    const target = second();
    await loadWeights(ctx, target, dir, name, load);
    tally.loadSeconds += (performance.now() - t0) / 1000;
    return target;
  };
  // Scores of `source` on every split, so each checkpoint is loaded once.
  const onSplits = async (source: AmautModel) => {
    const scores = new Map<
      string,
      Awaited<ReturnType<typeof scoreModel>>
    >();
    for (const split of splits) {
      const scored = await scoreModel(
        ctx,
        scorer,
        source,
        split,
        batchSize,
        tally.timing,
      );
      scores.set(split, scored);
      tally.clips += scored.labels.length;
    }
    tally.states++;
    return scores;
  };
  const out: StateScores[] = [];
  const scoreBest = !ttda || hasBest;
  const sameAsBest = scoreBest && lastEpoch === bestEpoch;
  // Both checkpoints are read from the start, while the GPU scores.
  let bestLoad = scoreBest && ttda ? readWeights(ctx, dir, "best") : undefined;
  let lastLoad = lastEpoch !== undefined && !sameAsBest
    ? readWeights(ctx, dir, "last")
    : undefined;
  try {
    // The adapted weights are in memory: scored first, while the
    // checkpoints are read.
    const ttdaScores = ttda ? await onSplits(model) : undefined;
    let bestScores: Awaited<ReturnType<typeof onSplits>> | undefined;
    if (scoreBest) {
      let source = model;
      if (bestLoad) {
        const load = bestLoad;
        bestLoad = undefined;
        source = await intoSecond("best", load);
      }
      bestScores = await onSplits(source);
    }
    let lastScores: Awaited<ReturnType<typeof onSplits>> | undefined;
    if (lastLoad) {
      const load = lastLoad;
      lastLoad = undefined;
      lastScores = await onSplits(await intoSecond("last", load));
    }
    for (const split of splits) {
      let best: StateScores | undefined;
      if (bestScores) {
        best = {
          id: "trained-best",
          label: bestEpoch !== undefined
            ? `trained, best (epoch ${bestEpoch})`
            : "trained",
          split,
          ...(bestEpoch !== undefined ? { epoch: bestEpoch } : {}),
          ...bestScores.get(split)!,
        };
        out.push(best);
      }
      if (lastEpoch !== undefined) {
        const label = `trained, last (epoch ${lastEpoch})`;
        if (best && sameAsBest) {
          out.push({
            ...best,
            id: "trained-last",
            label,
            note: "the same weights as best",
          });
        } else {
          out.push({
            id: "trained-last",
            label,
            split,
            epoch: lastEpoch,
            ...lastScores!.get(split)!,
          });
        }
      }
      out.push(...ttauStates.filter((s) => s.split === split));
      if (ttda) {
        const epoch = ttda.final?.epoch;
        out.push({
          id: "ttda-final",
          label: `TTDA final${epoch !== undefined ? ` (epoch ${epoch})` : ""}`,
          split,
          ...(epoch !== undefined ? { epoch } : {}),
          ...(ttda.split && ttda.split !== split
            ? { note: `adapted on ${ttda.split}, scored on ${split}` }
            : {}),
          ...ttdaScores!.get(split)!,
        });
      }
    }
  } finally {
    await dropWeights(ctx, bestLoad);
    await dropWeights(ctx, lastLoad);
    other?.dispose();
  }
  return out;
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
    const splits = options.predictionSplits ?? [options.split];
    if (!splits.includes(options.split)) splits.unshift(options.split);
    for (const split of splits) {
      if (!Object.hasOwn(ctx.data.splits, split)) {
        throw new Error(
          `Cannot report on split "${split}": the dataset has splits ${
            Object.keys(ctx.data.splits).map((s) => `"${s}"`).join(", ")
          }`,
        );
      }
    }
    const scorer = createScorer(ctx.tf, options.engine, {
      precision: options.precision,
      precisionUse: stagePrecisionUse(ctx.stageName, "evaluate"),
    });
    ctx.log.info(`report: scored on ${engineLabel(scorer)}`);
    let scored: StateScores[];
    const tally: Tally = {
      states: 0,
      clips: 0,
      loadSeconds: 0,
      timing: evalTiming(),
    };
    const scoreStart = performance.now();
    try {
      scored = await modelStates(
        ctx,
        model,
        splits,
        options.batchSize,
        scorer,
        tally,
      );
    } finally {
      scorer.dispose();
    }
    const scoreSeconds = (performance.now() - scoreStart) / 1000;
    ctx.log.info(
      `report: scored ${tally.states} model state${
        tally.states === 1 ? "" : "s"
      } on ${splits.join(", ")}: ${tally.clips} clips in ${
        scoreSeconds.toFixed(2)
      } s (${
        (tally.clips / Math.max(scoreSeconds, 1e-9)).toFixed(1)
      } clips/s; ${
        tally.loadSeconds.toFixed(2)
      } s of it waiting for checkpoints)`,
    );
    if (tally.timing && tally.timing.batches > 0) {
      ctx.log.info(`report: scored ${formatEvalTiming(tally.timing)}`);
    }
    await Deno.mkdir(join(ctx.runDir, "predictions"), { recursive: true });
    const states: StateReport[] = [];
    for (const st of scored) {
      const file = predictionsFile(st.split, st.id);
      await writeFileAtomic(
        join(ctx.runDir, file),
        predictionsCsv(st, classes, options.top),
      );
      const m = classificationReport(
        [...st.labels],
        argmaxRows(st.probabilities, classes.length),
        classes,
      );
      states.push({
        id: st.id,
        label: st.label,
        split: st.split,
        ...(st.epoch !== undefined ? { epoch: st.epoch } : {}),
        ...(st.note ? { note: st.note } : {}),
        examples: m.total,
        ...(st.loss !== undefined ? { loss: st.loss } : {}),
        accuracy: m.accuracy,
        macroF1: m.macroF1,
        macroPrecision: m.macroPrecision,
        macroRecall: m.macroRecall,
        perClass: m.perClass,
        confusion: m.confusion,
        predictions: file,
      });
    }
    const headline = states.find((s) =>
      s.split === options.split && s.id === "trained-best"
    ) ?? states.find((s) =>
      s.split === options.split
    )!;
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
      headline.accuracy,
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
        state: headline.id,
        stateLabel: headline.label,
        ...(headline.note ? { note: headline.note } : {}),
        examples: headline.examples,
        loss: headline.loss ?? NaN,
        accuracy: headline.accuracy,
        macroF1: headline.macroF1,
        macroPrecision: headline.macroPrecision,
        macroRecall: headline.macroRecall,
        perClass: headline.perClass,
        confusion: headline.confusion,
      },
      states,
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
    for (const st of states) {
      ctx.log.info(
        `${st.split} accuracy of ${st.label}${
          st.note ? ` (${st.note})` : ""
        }: ${pct(st.accuracy)}%, macro-F1 ${pct(st.macroF1)}%`,
      );
    }
    ctx.log.info(
      `wrote ${
        [...formats].map((f) => `report.${f}`).join(", ")
      } and ${states.length} predictions file${
        states.length === 1 ? "" : "s"
      } (predictions/)`,
    );
    return { report };
  },
});
