/**
 * The data report of `deno task data <spec>`: what the `load` stage found —
 * clips per split and class, sample rates, channels, bit depths, durations
 * (min, median, max), background noise, every skipped file and the map
 * stages' warnings (e.g. more than 2 % of the clips cut or mostly padding by
 * `fixed_length`) — built from the dataset's index and header scan, without
 * decoding audio. Clips far shorter (under a quarter) or far longer (over
 * twice) than the clip length the spec trains on are flagged by name.
 *
 * @module
 */
import type { Plan } from "../pipeline/compile.ts";
import type { Dataset } from "../pipeline/types.ts";

/** A clip shorter or longer than the planned length would suggest. */
export interface LengthOutlier {
  readonly split: string;
  readonly path: string;
  readonly seconds: number;
}

/** Clips far from the planned clip length. */
export interface LengthFlags {
  /** The clip length the spec trains on, in seconds. */
  readonly expectedSeconds: number;
  /** Clips under this many seconds are flagged (a quarter of the length). */
  readonly shorterThan: number;
  /** Clips over this many seconds are flagged (twice the length). */
  readonly longerThan: number;
  readonly shorter: readonly LengthOutlier[];
  readonly longer: readonly LengthOutlier[];
}

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
  /** Clips far from the planned length (when both the length and the durations are known). */
  readonly lengths?: LengthFlags;
}

function lengthOf(
  o: { samples?: unknown; seconds?: unknown },
  rateHz: number | undefined,
): number | undefined {
  if (typeof o.seconds === "number") return o.seconds;
  if (typeof o.samples === "number" && rateHz) return o.samples / rateHz;
  return undefined;
}

/**
 * The clip length a plan trains on, in seconds: its `fixed_length` stage's,
 * else the first `pad` of an `augment` view.
 *
 * @param plan The compiled plan.
 * @param rateHz The dataset's sample rate (for lengths given in samples).
 */
export function plannedClipSeconds(
  plan: Plan,
  rateHz: number | undefined,
): number | undefined {
  for (const s of plan.stages) {
    if (s.id !== "fixed_length") continue;
    const l = lengthOf(s.options as Record<string, unknown>, rateHz);
    if (l !== undefined) return l;
  }
  for (const s of plan.stages) {
    if (s.id !== "augment") continue;
    const views = (s.options as { views?: { chain?: unknown[] }[] }).views;
    for (const v of views ?? []) {
      for (const t of v.chain ?? []) {
        const step = t as {
          type?: string;
          samples?: unknown;
          seconds?: unknown;
        };
        if (step.type !== "pad") continue;
        const l = lengthOf(step, rateHz);
        if (l !== undefined) return l;
      }
    }
  }
  return undefined;
}

/**
 * The clip a plan expects, for `--dry-run` without the data: the rate its
 * stages name (`mel`'s `sampleRateHz`, else the data section's) and the
 * length it trains on ({@linkcode plannedClipSeconds}, else 1 s).
 *
 * @param plan The compiled plan.
 * @returns The clip, or undefined when no stage or data key names a rate.
 */
export function plannedClip(
  plan: Plan,
): { seconds: number; sampleRateHz: number } | undefined {
  const rates = [
    ...plan.stages.map((s) =>
      (s.options as { sampleRateHz?: unknown }).sampleRateHz
    ),
    (plan.data as { sampleRateHz?: unknown } | undefined)?.sampleRateHz,
  ].filter((r): r is number => typeof r === "number" && r > 0);
  if (rates.length === 0) return undefined;
  const sampleRateHz = rates[0];
  return {
    seconds: plannedClipSeconds(plan, sampleRateHz) ?? 1,
    sampleRateHz,
  };
}

/**
 * Builds the report of an opened dataset.
 *
 * @param dataset The dataset the source stage opened.
 * @param expectedSeconds The clip length the spec trains on ({@linkcode plannedClipSeconds}).
 */
export function dataReport(
  dataset: Dataset,
  expectedSeconds?: number,
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
  let lengths: LengthFlags | undefined;
  if (expectedSeconds && dataset.durations) {
    const shorterThan = expectedSeconds / 4;
    const longerThan = expectedSeconds * 2;
    const shorter: LengthOutlier[] = [];
    const longer: LengthOutlier[] = [];
    for (const split of Object.keys(dataset.splits)) {
      for (const { path, seconds } of dataset.durations(split)) {
        if (seconds < shorterThan) shorter.push({ split, path, seconds });
        else if (seconds > longerThan) longer.push({ split, path, seconds });
      }
    }
    lengths = { expectedSeconds, shorterThan, longerThan, shorter, longer };
  }
  return {
    classes: dataset.classes,
    info: dataset.info,
    splits,
    skipped: dataset.skipped?.() ?? [],
    warnings: [...warnings],
    ...(lengths ? { lengths } : {}),
  };
}

/** Lines flagging clips far from the planned length (at most 10 of each kind). */
function lengthLines(flags: LengthFlags): string[] {
  const lines: string[] = [];
  const show = (
    what: string,
    bound: string,
    list: readonly LengthOutlier[],
  ) => {
    if (list.length === 0) return;
    lines.push(
      `warning   ${list.length} clip(s) far ${what} than the ${
        flags.expectedSeconds.toFixed(3)
      } s the spec trains on (${bound}):`,
    );
    for (const o of list.slice(0, 10)) {
      lines.push(`  ${o.path}: ${o.seconds.toFixed(3)} s (${o.split})`);
    }
    if (list.length > 10) lines.push(`  ... and ${list.length - 10} more`);
  };
  show("shorter", `under ${flags.shorterThan.toFixed(3)} s`, flags.shorter);
  show("longer", `over ${flags.longerThan.toFixed(3)} s`, flags.longer);
  return lines;
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
  if (report.lengths) {
    const flagged = lengthLines(report.lengths);
    if (flagged.length > 0) lines.push("", ...flagged);
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
