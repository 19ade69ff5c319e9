import assert from "node:assert/strict";
import { join } from "node:path";
import { createLogger } from "./logger.ts";

async function readRecords(path: string): Promise<Record<string, unknown>[]> {
  const text = await Deno.readTextFile(path);
  assert.ok(text.endsWith("\n"), "file must end with a newline");
  return text.trimEnd().split("\n").map((l) => JSON.parse(l));
}

const isoTime = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

Deno.test("createLogger appends JSON lines with time, level, message and fields", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = join(dir, "log.jsonl");
    await Deno.writeTextFile(file, '{"old":true}\n');
    const log = createLogger({ file });
    log.info("started", { epochs: 3 });
    log.warn("slow", { ms: 12 });
    log.error("broke");
    log.debug("detail", { n: 1n });
    log.close();
    const records = await readRecords(file);
    assert.equal(records.length, 5);
    assert.deepEqual(records[0], { old: true });
    for (const r of records.slice(1)) assert.match(String(r.time), isoTime);
    const strip = ({ time: _t, ...rest }: Record<string, unknown>) => rest;
    assert.deepEqual(records.slice(1).map(strip), [
      { level: "info", message: "started", epochs: 3 },
      { level: "warn", message: "slow", ms: 12 },
      { level: "error", message: "broke" },
      { level: "debug", message: "detail", n: 1 },
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("event writes an event record without a console line", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = join(dir, "log.jsonl");
    const lines: string[] = [];
    const log = createLogger({ file, console: (l) => lines.push(l) });
    log.event("stage:start", { index: 2 });
    log.close();
    const [record] = await readRecords(file);
    assert.match(String(record.time), isoTime);
    assert.equal(record.event, "stage:start");
    assert.equal(record.index, 2);
    assert.equal("level" in record, false);
    assert.deepEqual(lines, []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("withStage adds stage to records and events", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = join(dir, "log.jsonl");
    const log = createLogger({ file });
    const staged = log.withStage("mel");
    staged.info("hi");
    staged.event("epoch", { epoch: 1 });
    log.info("plain");
    log.close();
    const records = await readRecords(file);
    assert.equal(records[0].stage, "mel");
    assert.equal(records[0].message, "hi");
    assert.equal(records[1].stage, "mel");
    assert.equal(records[1].event, "epoch");
    assert.equal(records[1].epoch, 1);
    assert.equal("stage" in records[2], false);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("console lines get stage and warn/error prefixes", () => {
  const lines: string[] = [];
  const log = createLogger({ console: (l) => lines.push(l) });
  log.info("a");
  log.warn("b");
  log.error("c");
  const s = log.withStage("train");
  s.info("d");
  s.warn("e");
  s.error("f");
  log.close();
  assert.deepEqual(lines, [
    "a",
    "warn: b",
    "error: c",
    "[train] d",
    "[train] warn: e",
    "[train] error: f",
  ]);
});

Deno.test("debug lines reach the console only with verbose", () => {
  const quiet: string[] = [];
  const q = createLogger({ console: (l) => quiet.push(l) });
  q.debug("hidden");
  q.withStage("s").debug("hidden too");
  q.close();
  assert.deepEqual(quiet, []);
  const loud: string[] = [];
  const v = createLogger({ console: (l) => loud.push(l), verbose: true });
  v.debug("shown");
  v.withStage("s").debug("shown too");
  v.close();
  assert.deepEqual(loud, ["shown", "[s] shown too"]);
});

Deno.test("createLogger works without a file or a console", () => {
  const log = createLogger({});
  log.info("x", { a: 1 });
  log.event("e");
  log.withStage("s").warn("y");
  log.close();
  const lines: string[] = [];
  const c = createLogger({ console: (l) => lines.push(l) });
  c.info("only console");
  c.close();
  assert.deepEqual(lines, ["only console"]);
});
