/**
 * Progress reporting for long stages: a live bar with rate and ETA on a
 * terminal (`npm:cli-progress`), plain periodic lines otherwise (CI logs,
 * files), so both stay readable.
 *
 * @module
 */
// @ts-types="npm:@types/cli-progress@3.11.6"
import cliProgress from "cli-progress";

/** What a progress display is about. */
export interface ProgressOptions {
  /** Short label, e.g. `train epoch 3/50`. */
  readonly label: string;
  /** Total units, when known. */
  readonly total?: number;
  /** Unit name for the rate, e.g. `clips`. */
  readonly unit?: string;
}

/** A running progress display. */
export interface Progress {
  /** Advances by `n` units and updates the shown metrics. */
  tick(n?: number, metrics?: Record<string, number | string>): void;
  /** Ends the display and prints the final line. */
  done(metrics?: Record<string, number | string>): void;
}

/** Creates progress displays. */
export type ProgressFactory = (options: ProgressOptions) => Progress;

/** How progress is shown. */
export interface ProgressSettings {
  /** Live bar (a terminal) or plain periodic lines. */
  readonly interactive: boolean;
  /** Receives plain lines (non-interactive mode and final lines). */
  readonly write: (line: string) => void;
  /** Seconds between plain lines. Default 10. */
  readonly intervalSeconds?: number;
  /** Clock in milliseconds, for tests. Default `performance.now`. */
  readonly now?: () => number;
}

/** Formats a duration in seconds as `1h02m`, `3m05s` or `12s`. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (h > 0) return `${h}h${String(m).padStart(2, "0")}m`;
  if (m > 0) return `${m}m${String(s % 60).padStart(2, "0")}s`;
  return `${s}s`;
}

function formatMetrics(metrics: Record<string, number | string>): string {
  return Object.entries(metrics).map(([k, v]) =>
    `${k} ${typeof v === "number" ? Number(v.toPrecision(4)) : v}`
  ).join("  ");
}

/**
 * Returns a factory of progress displays.
 *
 * @example
 * ```ts
 * import { createProgressFactory } from "./progress.ts";
 * const lines: string[] = [];
 * const progress = createProgressFactory({ interactive: false, write: (l) => lines.push(l) });
 * const p = progress({ label: "epoch 1", total: 4, unit: "clips" });
 * p.tick(4, { loss: 0.5 });
 * p.done();
 * ```
 */
export function createProgressFactory(
  settings: ProgressSettings,
): ProgressFactory {
  const now = settings.now ?? (() => performance.now());
  const interval = (settings.intervalSeconds ?? 10) * 1000;
  return ({ label, total, unit = "items" }) => {
    const start = now();
    let count = 0;
    let lastLine = start;
    let metrics: Record<string, number | string> = {};
    const line = (final: boolean) => {
      const seconds = (now() - start) / 1000;
      const rate = seconds > 0 ? count / seconds : 0;
      const parts = [
        label,
        total ? `${count}/${total}` : `${count}`,
        `${rate.toFixed(1)} ${unit}/s`,
      ];
      if (final) parts.push(`took ${formatDuration(seconds)}`);
      else if (total && rate > 0) {
        parts.push(`eta ${formatDuration((total - count) / rate)}`);
      }
      const m = formatMetrics(metrics);
      return parts.join("  ") + (m ? `  ${m}` : "");
    };
    if (!settings.interactive) {
      return {
        tick(n = 1, m) {
          count += n;
          if (m) metrics = { ...metrics, ...m };
          if (now() - lastLine >= interval) {
            lastLine = now();
            settings.write(line(false));
          }
        },
        done(m) {
          if (m) metrics = { ...metrics, ...m };
          settings.write(line(true));
        },
      };
    }
    const bar = new cliProgress.SingleBar({
      format:
        `${label} [{bar}] {value}/{total} {rate} ${unit}/s eta {eta_formatted} {metrics}`,
      hideCursor: true,
      clearOnComplete: true,
    }, cliProgress.Presets.shades_classic);
    bar.start(total ?? 0, 0, { rate: "0.0", metrics: "" });
    return {
      tick(n = 1, m) {
        count += n;
        if (m) metrics = { ...metrics, ...m };
        const seconds = (now() - start) / 1000;
        bar.update(count, {
          rate: (seconds > 0 ? count / seconds : 0).toFixed(1),
          metrics: formatMetrics(metrics),
        });
      },
      done(m) {
        if (m) metrics = { ...metrics, ...m };
        bar.stop();
        settings.write(line(true));
      },
    };
  };
}
