/**
 * Structured run logging: every event goes to `log.jsonl` in the run folder
 * (one JSON object per line, with an ISO timestamp) and a readable line to the
 * console sink (stderr in the CLI).
 *
 * @module
 */

/** Severity of a log event. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** A structured logger. */
export interface Logger {
  /** Logs a message with optional fields. */
  info(message: string, fields?: Record<string, unknown>): void;
  /** Logs a warning. */
  warn(message: string, fields?: Record<string, unknown>): void;
  /** Logs an error. */
  error(message: string, fields?: Record<string, unknown>): void;
  /** Logs a debug message (console only with `verbose`). */
  debug(message: string, fields?: Record<string, unknown>): void;
  /** Records a machine-readable event (`stage:start`, `epoch`, ...) without a console line. */
  event(type: string, fields?: Record<string, unknown>): void;
  /** A logger that adds `stage` to every record. */
  withStage(stage: string): Logger;
}

/** Where log records go. */
export interface LogSinks {
  /** Path of the JSONL file; omitted for no file. */
  readonly file?: string;
  /** Receives human-readable lines; omitted for silence. */
  readonly console?: (line: string) => void;
  /** Print debug lines to the console. */
  readonly verbose?: boolean;
}

/** An open logger plus a `close()` that flushes the file. */
export interface OpenLogger extends Logger {
  close(): void;
}

/**
 * Opens a logger. The JSONL file is appended to synchronously so records keep
 * their order even when the process dies mid-run.
 */
export function createLogger(sinks: LogSinks): OpenLogger {
  const file = sinks.file
    ? Deno.openSync(sinks.file, { create: true, append: true })
    : undefined;
  const encoder = new TextEncoder();
  const write = (record: Record<string, unknown>) => {
    if (!file) return;
    const line =
      JSON.stringify(record, (_k, v) => typeof v === "bigint" ? Number(v) : v) +
      "\n";
    const bytes = encoder.encode(line);
    let offset = 0;
    while (offset < bytes.length) {
      offset += file.writeSync(bytes.subarray(offset));
    }
  };
  const make = (stage?: string): Logger => {
    const log = (
      level: LogLevel,
      message: string,
      fields?: Record<string, unknown>,
    ) => {
      write({
        time: new Date().toISOString(),
        level,
        ...(stage ? { stage } : {}),
        message,
        ...fields,
      });
      if (!sinks.console || (level === "debug" && !sinks.verbose)) return;
      const prefix = level === "info" || level === "debug" ? "" : `${level}: `;
      sinks.console(`${stage ? `[${stage}] ` : ""}${prefix}${message}`);
    };
    return {
      info: (m, f) => log("info", m, f),
      warn: (m, f) => log("warn", m, f),
      error: (m, f) => log("error", m, f),
      debug: (m, f) => log("debug", m, f),
      event: (type, fields) =>
        write({
          time: new Date().toISOString(),
          event: type,
          ...(stage ? { stage } : {}),
          ...fields,
        }),
      withStage: (name) => make(name),
    };
  };
  return { ...make(), close: () => file?.close() };
}
