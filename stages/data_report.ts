/**
 * The data report of `deno task data <spec>`: what the `load` stage found —
 * clips per split and class, sample rates, channels, bit depths, durations
 * (min, median, max), background noise, every skipped file and the map
 * stages' warnings (e.g. clips `fixed_length` would cut) — built from the
 * dataset's index and header scan, without decoding audio.
 *
 * @module
 */
import type { Dataset } from "../pipeline/types.ts";

/** A dataset report. */
export interface DataReport {
  readonly classes: readonly string[];
  readonly info: Readonly<Record<string, unknown>>;
  readonly splits: Record<
    string,
    { readonly clips: number; readonly perClass?: Record<string, number> }
  >;
  readonly skipped: readonly {
    readonly path: string;
    readonly reason: string;
  }[];
  /** Warnings of the map stages about this data (e.g. many clips cut by `fixed_length`). */
  readonly warnings: readonly string[];
}

/**
 * Builds the report of an opened dataset.
 *
 * @param dataset The dataset the source stage opened.
 */
export function dataReport(
  dataset: Dataset,
  warnings: readonly string[] = [],
): DataReport {
  const splits: DataReport["splits"] = {};
  for (const [split, clips] of Object.entries(dataset.splits)) {
    const labels = dataset.labels?.(split);
    const perClass = labels
      ? Object.fromEntries(dataset.classes.map((c) => [c, 0]))
      : undefined;
    if (labels && perClass) {
      for (const l of labels) perClass[dataset.classes[l]] += 1;
    }
    splits[split] = { clips, ...(perClass ? { perClass } : {}) };
  }
  return {
    classes: dataset.classes,
    info: dataset.info,
    splits,
    skipped: dataset.skipped?.() ?? [],
    warnings: [...warnings],
  };
}

/** Renders a report as a readable table. */
export function formatDataReport(report: DataReport): string {
  const info = report.info;
  const headers = info.headers as
    | {
      sampleRatesHz: number[];
      channels: number[];
      bitsPerSample: number[];
      durationSeconds: Record<
        string,
        { min: number; median: number; max: number }
      >;
    }
    | undefined;
  const lines: string[] = [];
  const facts = Object.entries(info).filter(([k]) => k !== "headers")
    .map(([k, v]) => `${k} ${typeof v === "object" ? JSON.stringify(v) : v}`);
  lines.push(`dataset   ${facts.join(", ")}`);
  if (headers) {
    lines.push(
      `audio     ${headers.sampleRatesHz.join("/")} Hz, ${
        headers.channels.join("/")
      } channel(s), ${headers.bitsPerSample.join("/")}-bit`,
    );
  }
  lines.push(
    `classes   ${report.classes.length}: ${report.classes.join(", ")}`,
  );
  const splitNames = Object.keys(report.splits);
  const cw = Math.max(8, ...splitNames.map((s) => s.length)) + 2;
  const col = (s: string) => s.padStart(cw);
  const width = Math.max(5, ...report.classes.map((c) => c.length));
  lines.push("");
  lines.push(
    `${"".padEnd(width)}  ${splitNames.map((s) => col(s)).join("")}`,
  );
  lines.push(
    `${"clips".padEnd(width)}  ${
      splitNames.map((s) => col(String(report.splits[s].clips))).join("")
    }`,
  );
  for (const c of report.classes) {
    lines.push(
      `${c.padEnd(width)}  ${
        splitNames.map((s) =>
          col(String(report.splits[s].perClass?.[c] ?? "?"))
        ).join("")
      }`,
    );
  }
  if (headers) {
    lines.push("");
    for (const s of splitNames) {
      const d = headers.durationSeconds[s];
      if (d) {
        lines.push(
          `duration  ${s}: min ${d.min.toFixed(3)} s, median ${
            d.median.toFixed(3)
          } s, max ${d.max.toFixed(3)} s`,
        );
      }
    }
  }
  if (report.skipped.length > 0) {
    lines.push("");
    lines.push(`skipped   ${report.skipped.length} bad file(s):`);
    for (const s of report.skipped) lines.push(`  ${s.path}: ${s.reason}`);
  }
  for (const w of report.warnings) lines.push("", `warning   ${w}`);
  if (report.skipped.length === 0 && report.warnings.length === 0) {
    lines.push("", "problems  none");
  }
  return lines.join("\n");
}
