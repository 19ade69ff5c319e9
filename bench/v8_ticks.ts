/**
 * Summary of a V8 `--prof` log (`deno task bench ticks LOG… [--windows
 * e2e.json] [--top N]`): where the main thread's (or a worker's) time goes,
 * without Python or `--prof-process`.
 *
 * Record a log with `deno run --v8-flags=--prof,--logfile=DIR/v8.log …`; V8
 * writes one `DIR/isolate-<address>-<pid>-v8.log` per isolate, workers
 * included. The log's `code-creation`, `code-move`, `code-delete`,
 * `shared-library` and `tick` lines are read in order, and each tick's pc and
 * stack addresses are resolved against the code map as it stood at that tick
 * (V8 moves code and reuses the addresses of deleted code). A tick is charged,
 * "self", to its innermost JS function (native frames — builtins, bytecode
 * handlers, stubs, shared libraries — are charged to their nearest JS
 * caller), and "inclusive" to every JS function on its stack.
 *
 * With `--windows`, the ticks are split by the `phaseWindows` of a
 * `deno task bench e2e` JSON output (seconds since the process started; the
 * ticks' times are microseconds since V8's logger started, at about the same
 * moment), one summary per train epoch, validation, TTAu, TTDA epoch and
 * report.
 *
 * @module
 */
import { parseArgs } from "node:util";

/** One profiler sample. */
export interface Tick {
  /** Microseconds since V8's logger started. */
  time: number;
  /** V8's VM state number (0 JS, 1 GC, … 6 EXTERNAL, 8 IDLE; see `VM_STATES`). */
  vmState: number;
  /**
   * Names of the pc's and the stack's code, innermost first, as
   * `Type:name` (`JS:fn file:///a.ts:3:10`, `Builtin:…`, `lib:libc.so.6`);
   * addresses that resolve to nothing are dropped.
   */
  frames: string[];
}

/** V8's `StateTag` names by number, for the `vmStates` counts. */
export const VM_STATES: readonly string[] = [
  "JS",
  "GC",
  "PARSER",
  "BYTECODE_COMPILER",
  "COMPILER",
  "OTHER",
  "EXTERNAL",
  "ATOMICS_WAIT",
  "IDLE",
  "LOGGING",
];

/** Frame name prefixes that are not JS functions (charged to the JS caller). */
const NATIVE = ["lib:", "Builtin:", "Bytecode", "Stub:", "Handler:"];

/** Whether a frame name is a JS function's (not one of `NATIVE`). */
function isJsFrame(f: string): boolean {
  const c = f.charCodeAt(0);
  // Only names starting l, B, S or H can match a NATIVE prefix.
  if (c !== 108 && c !== 66 && c !== 83 && c !== 72) return true;
  for (const p of NATIVE) if (f.startsWith(p)) return false;
  return true;
}

/** Code starts per chunk of the parser's sorted map (half the split size). */
const CHUNK = 512;

/**
 * A hexadecimal field (optionally signed, with or without `0x`), or NaN.
 * Exact up to 2^53, which holds user-space addresses.
 */
function hex(s: string): number {
  let i = 0;
  let sign = 1;
  const c0 = s.charCodeAt(0);
  if (c0 === 43 || c0 === 45) { // + -
    sign = c0 === 45 ? -1 : 1;
    i = 1;
  }
  if (s.charCodeAt(i) === 48 && (s.charCodeAt(i + 1) | 32) === 120) i += 2; // 0x
  if (i >= s.length) return NaN;
  let v = 0;
  for (; i < s.length; i++) {
    const c = s.charCodeAt(i);
    let d: number;
    if (c >= 48 && c <= 57) d = c - 48;
    else if ((c | 32) >= 97 && (c | 32) <= 102) d = (c | 32) - 87;
    else return NaN;
    v = v * 16 + d;
  }
  return sign * v;
}

const INT = /^[+-]?\d+$/;

/** A decimal field, or NaN. */
function int(s: string): number {
  return INT.test(s) ? Number(s) : NaN;
}

/** A run of the code map: sorted starts with their sizes and names. */
interface Chunk {
  starts: number[];
  sizes: number[];
  names: string[];
}

/** A line-by-line reader of a V8 log, holding the code map as it goes. */
export interface V8LogParser {
  /** Reads one line (without its newline). */
  line(text: string): void;
  /** The ticks read so far, in log order. */
  ticks: Tick[];
  /** How many lines were V8 log records this reader understood. */
  recognised: number;
}

/**
 * A reader for one V8 log: feed it the lines in order; each tick is resolved
 * against the code map of that moment. Malformed records are skipped.
 *
 * @returns The reader, with its `ticks` filled as lines arrive.
 */
export function createV8LogParser(): V8LogParser {
  // The code map: starts sorted, in chunks of at most 2 × CHUNK entries so
  // that an insertion or removal moves one chunk, not the whole map (a long
  // run's log creates and deletes code at scattered addresses).
  const chunks: Chunk[] = [];
  const libs: { lo: number; hi: number; name: string }[] = [];
  const ticks: Tick[] = [];
  const parser: V8LogParser = { line, ticks, recognised: 0 };

  /** Index of the first element ≥ `a` in a sorted array. */
  function lowerBound(xs: number[], a: number): number {
    let lo = 0;
    let hi = xs.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (xs[mid] < a) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
  /** Index of the last chunk whose first start is ≤ `a` (0 when none is). */
  function chunkOf(a: number): number {
    let lo = 0;
    let hi = chunks.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (chunks[mid].starts[0] <= a) lo = mid + 1;
      else hi = mid;
    }
    return lo > 0 ? lo - 1 : 0;
  }
  function add(a: number, size: number, name: string) {
    if (chunks.length === 0) {
      chunks.push({ starts: [a], sizes: [size], names: [name] });
      return;
    }
    const c = chunkOf(a);
    const k = chunks[c];
    const i = lowerBound(k.starts, a);
    if (k.starts[i] === a) {
      k.sizes[i] = size;
      k.names[i] = name;
      return;
    }
    if (i === k.starts.length) {
      k.starts.push(a);
      k.sizes.push(size);
      k.names.push(name);
    } else {
      k.starts.splice(i, 0, a);
      k.sizes.splice(i, 0, size);
      k.names.splice(i, 0, name);
    }
    if (k.starts.length > 2 * CHUNK) {
      chunks.splice(c + 1, 0, {
        starts: k.starts.splice(CHUNK),
        sizes: k.sizes.splice(CHUNK),
        names: k.names.splice(CHUNK),
      });
    }
  }
  /** Removes the code starting at `a`; returns its size and name. */
  function remove(a: number): { size: number; name: string } | undefined {
    if (chunks.length === 0) return undefined;
    const c = chunkOf(a);
    const k = chunks[c];
    const i = lowerBound(k.starts, a);
    if (k.starts[i] !== a) return undefined;
    const out = { size: k.sizes[i], name: k.names[i] };
    k.starts.splice(i, 1);
    k.sizes.splice(i, 1);
    k.names.splice(i, 1);
    if (k.starts.length === 0) chunks.splice(c, 1);
    return out;
  }
  /** The name of the code holding address `a` (checked against the nearest start only), else its library's. */
  function resolve(a: number): string | undefined {
    if (chunks.length > 0) {
      const k = chunks[chunkOf(a)];
      const i = lowerBound(k.starts, a + 1) - 1;
      if (i >= 0 && a < k.starts[i] + k.sizes[i]) return k.names[i];
    }
    for (const l of libs) if (l.lo <= a && a < l.hi) return l.name;
    return undefined;
  }

  function line(text: string) {
    if (text.endsWith("\r")) text = text.slice(0, -1);
    const comma = text.indexOf(",");
    if (comma < 0) return;
    const kind = text.slice(0, comma);
    if (
      kind !== "tick" && kind !== "code-creation" && kind !== "code-move" &&
      kind !== "code-delete" && kind !== "shared-library"
    ) {
      if (kind === "v8-version") parser.recognised++;
      return;
    }
    const p = text.split(",");
    if (kind === "tick") {
      if (p.length < 6) return;
      const pc = hex(p[1]);
      const time = int(p[2]);
      const vmState = int(p[5]);
      if (Number.isNaN(pc) || Number.isNaN(time) || Number.isNaN(vmState)) {
        return;
      }
      const frames: string[] = [];
      const first = resolve(pc);
      if (first !== undefined) frames.push(first);
      let prev = pc;
      for (let k = 6; k < p.length; k++) {
        const f = p[k];
        const v = hex(f);
        if (Number.isNaN(v)) continue;
        // "+0x…"/"-0x…" are relative to the previous address.
        const a = f[0] === "+" || f[0] === "-" ? prev + v : v;
        prev = a;
        const n = resolve(a);
        if (n !== undefined) frames.push(n);
      }
      ticks.push({ time, vmState, frames });
    } else if (kind === "code-creation") {
      if (p.length < 7) return;
      const a = hex(p[4]);
      const size = int(p[5]);
      if (Number.isNaN(a) || Number.isNaN(size)) return;
      let name = p[6];
      if (name.startsWith('"')) name = name.replace(/^"+/, "");
      if (name.endsWith('"')) name = name.replace(/"+$/, "");
      add(a, size, p[1] + ":" + name);
    } else if (kind === "code-move") {
      if (p.length < 3) return;
      const a = hex(p[1]);
      const b = hex(p[2]);
      if (Number.isNaN(a) || Number.isNaN(b)) return;
      const c = remove(a);
      if (c !== undefined) add(b, c.size, c.name);
    } else if (kind === "code-delete") {
      const a = hex(p[1]);
      if (Number.isNaN(a)) return;
      remove(a);
    } else {
      if (p.length < 4) return;
      const lo = hex(p[2]);
      const hi = hex(p[3]);
      if (Number.isNaN(lo) || Number.isNaN(hi)) return;
      libs.push({ lo, hi, name: "lib:" + p[1].split("/").pop()! });
    }
    parser.recognised++;
  }
  return parser;
}

/**
 * Parses a whole V8 `--prof` log held in memory (see `readV8Log` to stream
 * a file).
 *
 * @param text The log's text.
 * @returns Its ticks in log order, each resolved at its own moment.
 */
export function parseV8Log(text: string): Tick[] {
  const parser = createV8LogParser();
  let at = 0;
  while (at < text.length) {
    let end = text.indexOf("\n", at);
    if (end < 0) end = text.length;
    parser.line(text.slice(at, end));
    at = end + 1;
  }
  return parser.ticks;
}

/**
 * Streams a V8 `--prof` log file by lines (logs run to tens of MB).
 *
 * @param path The `isolate-…-v8.log` file.
 * @returns Its ticks in log order.
 * @throws {Error} When the file cannot be read, or holds no V8 log record.
 */
export async function readV8Log(path: string): Promise<Tick[]> {
  const parser = createV8LogParser();
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path);
  } catch (e) {
    throw new Error(
      `Cannot read the V8 log ${path}: ${
        (e as Error).message
      }; pass the isolate-…-v8.log files that --v8-flags=--prof,--logfile=… wrote`,
    );
  }
  const decoder = new TextDecoder();
  let rest = "";
  for await (const chunk of file.readable) {
    const text = rest + decoder.decode(chunk, { stream: true });
    let at = 0;
    for (;;) {
      const end = text.indexOf("\n", at);
      if (end < 0) break;
      parser.line(text.slice(at, end));
      at = end + 1;
    }
    rest = text.slice(at);
  }
  rest += decoder.decode();
  if (rest) parser.line(rest);
  if (parser.recognised === 0) {
    throw new Error(
      `Cannot find any V8 log record in ${path}: record one with deno run --v8-flags=--prof,--logfile=DIR/v8.log … and pass DIR/isolate-…-v8.log`,
    );
  }
  return parser.ticks;
}

/** One entry of a top list. */
export interface TopEntry {
  /** Frame name (`JS:fn url:line:col`, or `(native only) …`). */
  name: string;
  /** Ticks charged to it. */
  count: number;
  /** Share of the window's ticks, in percent (one decimal). */
  percent: number;
}

/** Where a set of ticks went. */
export interface TickSummary {
  /** Number of ticks. */
  ticks: number;
  /** Seconds from the first tick to the last. */
  seconds: number;
  /** Ticks per VM state name (`state N` for numbers V8 did not name). */
  vmStates: Record<string, number>;
  /**
   * Ticks by innermost JS function, native frames charged to their JS
   * caller; ticks with no JS frame go to `(native only) <innermost frame>`.
   */
  self: TopEntry[];
  /** Ticks with each JS function anywhere on the stack (counted once a tick). */
  inclusive: TopEntry[];
}

/** The `top` largest counts, ties in first-seen order. */
function topOf(counts: Map<string, number>, n: number, top: number) {
  return [...counts].sort((a, b) => b[1] - a[1]).slice(0, top).map((
    [name, count],
  ) => ({ name, count, percent: Math.round((1000 * count) / n) / 10 }));
}

/**
 * Summarises ticks: count, span, VM states, self and inclusive JS top lists.
 *
 * @param ticks Ticks, in time order.
 * @param top How many entries each top list keeps.
 * @returns The summary (zeros and empty lists for no ticks).
 */
export function summariseTicks(ticks: Tick[], top: number): TickSummary {
  const n = ticks.length;
  const vmStates: Record<string, number> = {};
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  const js: string[] = [];
  for (const t of ticks) {
    const state = VM_STATES[t.vmState] ?? `state ${t.vmState}`;
    vmStates[state] = (vmStates[state] ?? 0) + 1;
    js.length = 0;
    for (const f of t.frames) {
      // Each JS function once (recursion counts once inclusive).
      if (isJsFrame(f) && !js.includes(f)) js.push(f);
    }
    const key = js.length > 0
      ? js[0]
      : "(native only) " + (t.frames.length > 0 ? t.frames[0] : "?");
    self.set(key, (self.get(key) ?? 0) + 1);
    for (const f of js) inclusive.set(f, (inclusive.get(f) ?? 0) + 1);
  }
  return {
    ticks: n,
    seconds: n === 0
      ? 0
      : Math.round((ticks[n - 1].time - ticks[0].time) / 1e3) / 1e3,
    vmStates,
    self: topOf(self, n, top),
    inclusive: topOf(inclusive, n, top),
  };
}

/** A named time window, in seconds since the process started. */
export interface TimeWindow {
  /** `trainEpoch[0]`, `validation[1]`, `ttau`, `report`, … */
  label: string;
  /** Start, seconds. */
  from: number;
  /** End, seconds (inclusive). */
  to: number;
}

/** Whether `v` is a `[start, end]` pair of numbers. */
function isPair(v: unknown): v is [number, number] {
  return Array.isArray(v) && v.length === 2 &&
    v.every((x) => typeof x === "number" && Number.isFinite(x));
}

/**
 * The time windows of a `deno task bench e2e` JSON output's `phaseWindows`:
 * a list (`trainEpoch`, `validation`, `ttdaEpoch`) gives `key[i]` per
 * non-null entry, a pair (`ttau`, `report`) gives `key`; null and empty
 * entries give none.
 *
 * @param e2eJson The parsed JSON that `bench e2e` printed.
 * @param source Where it came from, for error messages.
 * @returns The windows, in the order of the keys and entries.
 * @throws {Error} Without `phaseWindows`, or for an entry that is not a
 *   `[start, end]` pair of seconds or null.
 */
export function windowsOf(
  e2eJson: unknown,
  source = "the e2e JSON",
): TimeWindow[] {
  const w = (e2eJson as { phaseWindows?: unknown } | null)?.phaseWindows;
  if (w === null || typeof w !== "object" || Array.isArray(w)) {
    throw new Error(
      `Cannot find phaseWindows in ${source}: pass the JSON object that deno task bench e2e printed`,
    );
  }
  const bad = (key: string) =>
    new Error(
      `Cannot read phaseWindows.${key} in ${source}: expected [start, end] in seconds, a list of them (null entries allowed), or null`,
    );
  const out: TimeWindow[] = [];
  for (const [k, v] of Object.entries(w)) {
    if (v === null) continue;
    if (!Array.isArray(v)) throw bad(k);
    if (v.some((x) => x === null || typeof x === "object")) {
      v.forEach((x, i) => {
        if (x === null) return;
        if (!isPair(x)) throw bad(`${k}[${i}]`);
        out.push({ label: `${k}[${i}]`, from: x[0], to: x[1] });
      });
    } else if (v.length > 0) {
      // A pair of numbers, such as ttau or report.
      if (!isPair(v)) throw bad(k);
      out.push({ label: k, from: v[0], to: v[1] });
    }
  }
  return out;
}

/**
 * The ticks inside a window (a tick at either end counts).
 *
 * @param ticks Ticks with times in µs since V8's logger started.
 * @param w The window, in seconds.
 */
export function ticksIn(ticks: Tick[], w: TimeWindow): Tick[] {
  return ticks.filter((t) => w.from <= t.time / 1e6 && t.time / 1e6 <= w.to);
}

/**
 * Runs the tool.
 *
 * @param args Log files, `--windows e2e.json`, `--top N` (22 with windows,
 *   40 without).
 * @returns One JSON-ready object: per log, per window (or `all`), the
 *   summary.
 * @throws {Error} Without a log, for an unreadable log or windows file, or a
 *   bad `--top`.
 */
export async function benchTicks(args: string[]): Promise<unknown> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      windows: { type: "string" },
      top: { type: "string" },
    },
  });
  if (positionals.length === 0) {
    throw new Error(
      "Cannot summarise ticks without a log: deno task bench ticks DIR/isolate-…-v8.log… [--windows e2e.json] [--top N]",
    );
  }
  let windows: TimeWindow[] | undefined;
  if (values.windows !== undefined) {
    let json: unknown;
    try {
      json = JSON.parse(await Deno.readTextFile(values.windows));
    } catch (e) {
      throw new Error(
        `Cannot read ${values.windows} as JSON: ${
          (e as Error).message
        }; pass the output of deno task bench e2e`,
      );
    }
    windows = windowsOf(json, values.windows);
  }
  const top = values.top === undefined
    ? (windows ? 22 : 40)
    : Number(values.top);
  if (!Number.isInteger(top) || top < 1) {
    throw new Error(
      `Cannot use --top ${values.top}: give a whole number of entries ≥ 1`,
    );
  }
  const logs = [];
  for (const path of positionals) {
    const started = performance.now();
    const ticks = await readV8Log(path);
    const summaries = windows
      ? windows.map((w) => ({
        window: w.label,
        from: w.from,
        to: w.to,
        ...summariseTicks(ticksIn(ticks, w), top),
      }))
      : [{
        window: "all",
        from: null,
        to: null,
        ...summariseTicks(ticks, top),
      }];
    logs.push({
      log: path,
      ticks: ticks.length,
      readSeconds: Math.round(performance.now() - started) / 1000,
      windows: summaries,
    });
  }
  return {
    bench: "ticks",
    windowsFrom: values.windows ?? null,
    top,
    logs,
  };
}
