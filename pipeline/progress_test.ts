import assert from "node:assert/strict";
import { createProgressFactory, formatDuration } from "./progress.ts";

function setup(intervalSeconds = 10) {
  let clock = 1000;
  const lines: string[] = [];
  const factory = createProgressFactory({
    interactive: false,
    write: (l) => lines.push(l),
    intervalSeconds,
    now: () => clock,
  });
  return {
    lines,
    factory,
    advance(seconds: number) {
      clock += seconds * 1000;
    },
  };
}

Deno.test("createProgressFactory prints a plain line only after intervalSeconds", () => {
  const { lines, factory, advance } = setup(10);
  const p = factory({ label: "epoch 1", total: 100, unit: "clips" });
  p.tick(10);
  advance(5);
  p.tick(10);
  assert.deepEqual(lines, []);
  advance(5); // 10 s since start: 30 clips, 3.0 clips/s, 70 left → 23 s.
  p.tick(10, { loss: 0.123456 });
  assert.deepEqual(lines, [
    "epoch 1  30/100  3.0 clips/s  eta 23s  loss 0.1235",
  ]);
  advance(9);
  p.tick(10);
  assert.equal(lines.length, 1);
  advance(1); // 20 s: 40 clips, 2.0 clips/s, 60 left → 30 s.
  p.tick(0, { acc: "n/a" });
  assert.deepEqual(lines.slice(1), [
    "epoch 1  40/100  2.0 clips/s  eta 30s  loss 0.1235  acc n/a",
  ]);
});

Deno.test("createProgressFactory lines without a total show the count and no eta", () => {
  const { lines, factory, advance } = setup(1);
  const p = factory({ label: "scan" });
  advance(2);
  p.tick(5);
  assert.deepEqual(lines, ["scan  5  2.5 items/s"]);
});

Deno.test("done prints the final line with took and merged metrics", () => {
  const { lines, factory, advance } = setup(100);
  const p = factory({ label: "eval", total: 8, unit: "clips" });
  p.tick(4, { loss: 2 });
  advance(65);
  p.tick(4);
  assert.deepEqual(lines, []); // 65 s < 100 s interval: no periodic line.
  p.done({ acc: 0.5 });
  assert.deepEqual(lines, [
    "eval  8/8  0.1 clips/s  took 1m05s  loss 2  acc 0.5",
  ]);
});

Deno.test("done at time zero reports a zero rate", () => {
  const { lines, factory } = setup();
  const p = factory({ label: "x", total: 2 });
  p.tick(2);
  p.done();
  assert.deepEqual(lines, ["x  2/2  0.0 items/s  took 0s"]);
});

Deno.test("formatDuration formats seconds, minutes, hours and unknown", () => {
  assert.equal(formatDuration(0), "0s");
  assert.equal(formatDuration(12.4), "12s");
  assert.equal(formatDuration(59.6), "1m00s");
  assert.equal(formatDuration(65), "1m05s");
  assert.equal(formatDuration(3600), "1h00m");
  assert.equal(formatDuration(3725), "1h02m");
  assert.equal(formatDuration(-3), "0s");
  assert.equal(formatDuration(Infinity), "?");
  assert.equal(formatDuration(NaN), "?");
});
