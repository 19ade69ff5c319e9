import assert from "node:assert/strict";
import {
  benchTicks,
  parseV8Log,
  readV8Log,
  summariseTicks,
  type Tick,
  ticksIn,
  windowsOf,
} from "./v8_ticks.ts";

/** A log's lines joined as V8 writes them. */
const log = (...lines: string[]) => lines.join("\n") + "\n";

const LIBS = log(
  "v8-version,12,4,254,21,0,0",
  "shared-library,/usr/lib/x86_64-linux-gnu/libc.so.6,0x7f0000000000,0x7f0000100000,0",
  "code-creation,Builtin,3,10,0x1000,256,CallFunction",
  "code-creation,JS,10,20,0x2000,256,outer file:///a.js:1:10,0xabc,~",
  "code-creation,JS,10,30,0x3000,128,inner file:///a.js:5:12,0xabd,^",
  "code-creation,BytecodeHandler,0,40,0x4000,64,Add",
  'code-creation,Stub,2,50,0x5000,32,"StoreFastElementStub"',
);

Deno.test("parseV8Log: absolute and relative stack entries resolve to names", () => {
  const ticks = parseV8Log(
    LIBS +
      // pc in inner, stack: outer (absolute), then +0x10 and -0x1010 from it.
      log("tick,0x3010,1000,0,0x0,0,0x2020,+0x10,-0x1030,0x9999999,junk"),
  );
  assert.deepEqual(ticks, [{
    time: 1000,
    vmState: 0,
    frames: [
      "JS:inner file:///a.js:5:12",
      "JS:outer file:///a.js:1:10", // 0x2020
      "JS:outer file:///a.js:1:10", // 0x2030
      "Builtin:CallFunction", // 0x1000
      // 0x9999999 resolves to nothing; "junk" is skipped.
    ],
  }]);
});

Deno.test("parseV8Log: a code-move carries the name to the new address", () => {
  const ticks = parseV8Log(
    LIBS + log(
      "tick,0x2004,100,0,0x0,0,",
      "code-move,0x2000,0x8000",
      "tick,0x2004,200,0,0x0,0",
      "tick,0x8004,300,0,0x0,0",
      "code-move,0x7777,0x9000", // unknown source: ignored
      "tick,0x9004,400,0,0x0,0",
    ),
  );
  assert.deepEqual(ticks.map((t) => t.frames), [
    ["JS:outer file:///a.js:1:10"],
    [],
    ["JS:outer file:///a.js:1:10"],
    [],
  ]);
});

Deno.test("parseV8Log: a tick resolves against the code map of its moment", () => {
  const ticks = parseV8Log(
    LIBS + log(
      "tick,0x3040,100,0,0x0,0,0x2010",
      "code-delete,0x3000",
      "tick,0x3040,200,0,0x0,0,0x2010",
      "code-creation,JS,10,250,0x3000,128,later file:///b.js:9:3,0xabe,*",
      "tick,0x3040,300,0,0x0,0,0x2010",
      // A shorter function at the same start: 0x3040 is past its end.
      "code-creation,JS,10,350,0x3000,16,tiny file:///b.js:2:1,0xabf,~",
      "tick,0x3040,400,0,0x0,0,0x2010",
    ),
  );
  assert.deepEqual(ticks.map((t) => t.frames[0]), [
    "JS:inner file:///a.js:5:12",
    "JS:outer file:///a.js:1:10",
    "JS:later file:///b.js:9:3",
    "JS:outer file:///a.js:1:10",
  ]);
});

Deno.test("parseV8Log: many scattered creations and deletions keep the map sorted", () => {
  // Insert in a scattered order (forcing chunk splits), delete every third,
  // then sample every function's middle.
  const n = 5000;
  const order = Array.from({ length: n }, (_, i) => (i * 2371) % n);
  const lines = ["v8-version,12,4,254,21,0,0"];
  for (const i of order) {
    lines.push(
      `code-creation,JS,10,1,0x${(0x100000 + i * 0x40).toString(16)},32,f${i}`,
    );
  }
  for (let i = 0; i < n; i += 3) {
    lines.push(`code-delete,0x${(0x100000 + i * 0x40).toString(16)}`);
  }
  for (let i = 0; i < n; i++) {
    lines.push(`tick,0x${(0x100000 + i * 0x40 + 16).toString(16)},${i},0,0,0`);
    // Between functions (past the end of f_i, before f_{i+1}).
    lines.push(`tick,0x${(0x100000 + i * 0x40 + 40).toString(16)},${i},0,0,0`);
  }
  const ticks = parseV8Log(log(...lines));
  for (let i = 0; i < n; i++) {
    assert.deepEqual(ticks[2 * i].frames, i % 3 === 0 ? [] : [`JS:f${i}`]);
    assert.deepEqual(ticks[2 * i + 1].frames, []);
  }
});

Deno.test("parseV8Log: shared libraries and malformed lines", () => {
  const ticks = parseV8Log(
    LIBS + log(
      "tick,0x7f0000000100,100,0,0x0,6,0x3004,0x2004",
      "tick,zz,200,0,0x0,0",
      "tick,0x3004,notanumber,0,0x0,0",
      "tick,0x3004",
      "code-creation,JS,10,1,0x6000,big,broken",
      "tick,0x6000,300,0,0x0,1",
      "some-other-record,1,2",
      "tick,0x3004,400,0,0x0,8\r",
    ),
  );
  assert.deepEqual(ticks, [
    {
      time: 100,
      vmState: 6,
      frames: [
        "lib:libc.so.6",
        "JS:inner file:///a.js:5:12",
        "JS:outer file:///a.js:1:10",
      ],
    },
    { time: 300, vmState: 1, frames: [] },
    // A CRLF line end is tolerated.
    { time: 400, vmState: 8, frames: ["JS:inner file:///a.js:5:12"] },
  ]);
});

const T = (time: number, ...frames: string[]): Tick => ({
  time,
  vmState: 0,
  frames,
});

Deno.test("summariseTicks: native frames are charged to the nearest JS caller", () => {
  const s = summariseTicks([
    T(
      1_000_000,
      "lib:libc.so.6",
      "Builtin:CallFunction",
      "JS:inner",
      "JS:outer",
    ),
    T(1_001_000, "BytecodeHandler:Add", "JS:inner", "JS:outer"),
    T(1_002_000, "Stub:X", "Handler:Y", "JS:outer", "JS:outer"),
    T(1_003_000, "JS:outer"),
    T(1_004_000, "lib:deno", "Builtin:JSEntry"),
    { time: 1_500_000, vmState: 6, frames: [] },
    { time: 1_500_500, vmState: 42, frames: ["JS:outer"] },
  ], 3);
  assert.deepEqual(s, {
    ticks: 7,
    seconds: 0.501,
    vmStates: { JS: 5, EXTERNAL: 1, "state 42": 1 },
    self: [
      { name: "JS:outer", count: 3, percent: 42.9 },
      { name: "JS:inner", count: 2, percent: 28.6 },
      { name: "(native only) lib:deno", count: 1, percent: 14.3 },
    ],
    inclusive: [
      // Recursion (outer twice on one stack) counts once.
      { name: "JS:outer", count: 5, percent: 71.4 },
      { name: "JS:inner", count: 2, percent: 28.6 },
    ],
  });
  assert.deepEqual(summariseTicks([], 5), {
    ticks: 0,
    seconds: 0,
    vmStates: {},
    self: [],
    inclusive: [],
  });
  assert.equal(
    summariseTicks([T(0)], 5).self[0].name,
    "(native only) ?",
  );
});

const E2E = {
  bench: "e2e",
  phaseWindows: {
    trainEpoch: [[1.5, 3], [4, 6]],
    validation: [null, [6, 6.5]],
    ttau: [7, 8],
    ttdaEpoch: [],
    report: null,
  },
};

Deno.test("windowsOf: lists, pairs, null entries and nulls", () => {
  assert.deepEqual(windowsOf(E2E), [
    { label: "trainEpoch[0]", from: 1.5, to: 3 },
    { label: "trainEpoch[1]", from: 4, to: 6 },
    { label: "validation[1]", from: 6, to: 6.5 },
    { label: "ttau", from: 7, to: 8 },
  ]);
  assert.throws(
    () => windowsOf({ bench: "train" }, "out.json"),
    /^Error: Cannot find phaseWindows in out\.json: pass the JSON object that deno task bench e2e printed$/,
  );
  assert.throws(
    () => windowsOf({ phaseWindows: { ttau: [1, "x"] } }, "out.json"),
    /Cannot read phaseWindows\.ttau in out\.json: expected \[start, end\]/,
  );
  assert.throws(
    () => windowsOf({ phaseWindows: { report: "soon" } }, "out.json"),
    /Cannot read phaseWindows\.report in out\.json/,
  );
  assert.throws(
    () => windowsOf({ phaseWindows: { trainEpoch: [[1, 2], [3]] } }),
    /Cannot read phaseWindows\.trainEpoch\[1\] in the e2e JSON/,
  );
});

Deno.test("ticksIn: a window in seconds selects ticks in µs, both ends included", () => {
  const ticks = [1_400_000, 1_500_000, 2_000_000, 3_000_000, 3_000_001].map((
    t,
  ) => T(t, "JS:f"));
  assert.deepEqual(
    ticksIn(ticks, { label: "w", from: 1.5, to: 3 }).map((t) => t.time),
    [1_500_000, 2_000_000, 3_000_000],
  );
});

Deno.test("bench ticks: per log and window, from files", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      `${dir}/isolate-1-v8.log`,
      LIBS + log(
        "tick,0x3010,1600000,0,0x0,0,0x2010", // trainEpoch[0]
        "tick,0x2010,2000000,0,0x0,0", // trainEpoch[0]
        "tick,0x1010,4500000,0,0x0,0,0x3010", // trainEpoch[1]
        "tick,0x3010,7500000,0,0x0,1", // ttau
        "tick,0x3010,9000000,0,0x0,0", // none
      ),
    );
    await Deno.writeTextFile(`${dir}/e2e.json`, JSON.stringify(E2E));
    const out = await benchTicks([
      `${dir}/isolate-1-v8.log`,
      "--windows",
      `${dir}/e2e.json`,
      "--top",
      "1",
    ]) as {
      top: number;
      logs: {
        ticks: number;
        windows: {
          window: string;
          ticks: number;
          vmStates: Record<string, number>;
          self: { name: string; count: number }[];
        }[];
      }[];
    };
    assert.equal(out.top, 1);
    assert.equal(out.logs[0].ticks, 5);
    assert.deepEqual(
      out.logs[0].windows.map((w) => [w.window, w.ticks, w.self]),
      [
        ["trainEpoch[0]", 2, [{
          name: "JS:inner file:///a.js:5:12",
          count: 1,
          percent: 50,
        }]],
        ["trainEpoch[1]", 1, [{
          name: "JS:inner file:///a.js:5:12",
          count: 1,
          percent: 100,
        }]],
        ["validation[1]", 0, []],
        ["ttau", 1, [{
          name: "JS:inner file:///a.js:5:12",
          count: 1,
          percent: 100,
        }]],
      ],
    );
    assert.deepEqual(out.logs[0].windows[3].vmStates, { GC: 1 });
    // Without windows: one summary of every tick.
    const all = await benchTicks([`${dir}/isolate-1-v8.log`]) as {
      top: number;
      logs: { windows: { window: string; ticks: number }[] }[];
    };
    assert.equal(all.top, 40);
    assert.deepEqual(
      all.logs[0].windows.map((w) => [w.window, w.ticks]),
      [["all", 5]],
    );
    // Bad input: clear errors naming the file or option.
    await assert.rejects(
      () => benchTicks([]),
      /^Error: Cannot summarise ticks without a log/,
    );
    await assert.rejects(
      () => benchTicks([`${dir}/missing.log`]),
      /Cannot read the V8 log .*missing\.log: .*pass the isolate-…-v8\.log files/,
    );
    await Deno.writeTextFile(`${dir}/not.log`, "hello\nworld\n");
    await assert.rejects(
      () => benchTicks([`${dir}/not.log`]),
      /Cannot find any V8 log record in .*not\.log/,
    );
    await assert.rejects(
      () => benchTicks([`${dir}/isolate-1-v8.log`, "--top", "0"]),
      /Cannot use --top 0: give a whole number/,
    );
    await assert.rejects(
      () =>
        benchTicks([`${dir}/isolate-1-v8.log`, "--windows", `${dir}/not.log`]),
      /Cannot read .*not\.log as JSON: .*pass the output of deno task bench e2e/s,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("readV8Log: a real --prof log of a busy function", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      `${dir}/busy.js`,
      `function spinForAWhile(ms) {
  const end = Date.now() + ms;
  let x = 0;
  while (Date.now() < end) for (let i = 0; i < 1000; i++) x += Math.sqrt(i);
  return x;
}
spinForAWhile(300);
`,
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--quiet",
        "--no-config",
        `--v8-flags=--prof,--logfile=${dir}/v8.log`,
        `${dir}/busy.js`,
      ],
      stdout: "null",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    const logs = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) =>
      /^isolate-.*-v8\.log$/.test(n)
    );
    assert.equal(logs.length, 1, logs.join(", "));
    const ticks = await readV8Log(`${dir}/${logs[0]}`);
    const s = summariseTicks(ticks, 5);
    assert.ok(s.ticks >= 50, JSON.stringify(s));
    assert.match(
      s.self[0].name,
      /^JS:spinForAWhile file:\/\/\/.*busy\.js:1:\d+$/,
      JSON.stringify(s.self),
    );
    assert.ok(s.self[0].percent >= 50, JSON.stringify(s.self));
    assert.ok(
      s.inclusive.some((e) => e.name === s.self[0].name),
      JSON.stringify(s.inclusive),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
