import assert from "node:assert/strict";
import { createRng } from "../pipeline/rng.ts";
import {
  addNoise,
  measuredSnrDb,
  mixBackground,
  roll,
  rollShift,
} from "./transforms.ts";

const ramp = (n: number) => Float32Array.from({ length: n }, (_, i) => i);

Deno.test("roll wraps around like torch.roll, both ways and beyond the length", () => {
  assert.deepEqual([...roll(ramp(5), 2)], [3, 4, 0, 1, 2]);
  assert.deepEqual([...roll(ramp(5), -2)], [2, 3, 4, 0, 1]);
  assert.deepEqual([...roll(ramp(5), 7)], [3, 4, 0, 1, 2]);
  assert.deepEqual([...roll(ramp(5), 0)], [0, 1, 2, 3, 4]);
  const x = ramp(4);
  roll(x, 1);
  assert.deepEqual([...x], [0, 1, 2, 3], "input untouched");
});

Deno.test("rollShift draws trunc((2U-1)·f·L) both ways, trunc(±U·f·L) one way, and fixed ±trunc(f·L)", () => {
  const rng = createRng("roll", 0);
  const L = 16000;
  const both = Array.from(
    { length: 4000 },
    () => rollShift(L, 0.17, "both", rng),
  );
  assert.ok(Math.min(...both) >= -2720 && Math.max(...both) <= 2720);
  assert.ok(Math.min(...both) < -2500 && Math.max(...both) > 2500);
  assert.ok(both.every(Number.isInteger));
  const mean = both.reduce((a, b) => a + b, 0) / both.length;
  assert.ok(Math.abs(mean) < 60, `mean ${mean}`);
  const right = Array.from(
    { length: 1000 },
    () => rollShift(L, 0.17, "right", rng),
  );
  assert.ok(right.every((s) => s >= 0 && s <= 2720));
  const left = Array.from(
    { length: 1000 },
    () => rollShift(L, 0.17, "left", rng),
  );
  assert.ok(left.every((s) => s <= 0 && s >= -2720));
  assert.equal(rollShift(L, 0.17, "right"), 2720);
  assert.equal(rollShift(16001, 0.17, "left"), -2720); // trunc(-2720.17)
  assert.throws(
    () => rollShift(L, 0.17, "both"),
    /fixed roll in both directions/,
  );
  // trunc, not floor: the same U gives symmetric shifts.
  const a = createRng("u", 1);
  const b = createRng("u", 1);
  assert.equal(rollShift(L, 0.17, "left", a), -rollShift(L, 0.17, "right", b));
});

Deno.test("uniform noise is positive with mean scale/2; gaussian noise has mean 0 and std scale", () => {
  const rng = createRng("noise", 0);
  const zero = new Float32Array(100000);
  const u = addNoise(zero, "uniform", 0.015, rng);
  let mean = 0;
  for (const v of u) {
    assert.ok(v >= 0 && v < 0.015);
    mean += v / u.length;
  }
  assert.ok(Math.abs(mean - 0.0075) < 1e-4, `uniform mean ${mean}`);
  const g = addNoise(zero, "gaussian", 0.02, rng);
  const gm = g.reduce((a, b) => a + b, 0) / g.length;
  const sd = Math.sqrt(g.reduce((a, b) => a + (b - gm) ** 2, 0) / g.length);
  assert.ok(Math.abs(gm) < 3e-4, `gaussian mean ${gm}`);
  assert.ok(Math.abs(sd - 0.02) < 3e-4, `gaussian std ${sd}`);
});

Deno.test("mixBackground hits the requested SNR within 0.05 dB", () => {
  const rng = createRng("mix", 0);
  const x = Float32Array.from(
    { length: 16000 },
    (_, i) => 0.3 * Math.sin(i / 7),
  );
  const noise = Float32Array.from({ length: 48000 }, () => rng.normal() * 0.1);
  for (const snr of [50, 20, 10, 0, -5]) {
    const y = mixBackground(x, noise, snr, rng);
    const got = measuredSnrDb(x, y);
    assert.ok(Math.abs(got - snr) < 0.05, `snr ${snr}: measured ${got}`);
  }
});

Deno.test("mixBackground crops at a random start in [0, len_noise - len_clip) and repeats short noise", () => {
  const noise = Float32Array.from({ length: 10 }, (_, i) => i + 1);
  const x = new Float32Array(4).fill(1);
  const starts = new Set<number>();
  const rng = createRng("crop", 0);
  for (let k = 0; k < 500; k++) {
    const y = mixBackground(x, noise, 0, rng);
    // a·n with n = [s+1 .. s+4]: the ratio of consecutive differences reveals s.
    const a = y[1] - y[0];
    starts.add(Math.round((y[0] - 1) / a) - 1);
  }
  assert.deepEqual([...starts].sort((p, q) => p - q), [0, 1, 2, 3, 4, 5]);
  const long = new Float32Array(25).fill(1);
  const y = mixBackground(long, noise, 0, rng);
  assert.equal(y.length, 25);
  assert.ok(
    Math.abs((y[10] - 1) / (y[0] - 1) - 1) < 1e-5,
    "noise repeats after 10 samples",
  );
  assert.deepEqual(
    mixBackground(new Float32Array(4), noise, 10, rng),
    new Float32Array(4),
  );
});
