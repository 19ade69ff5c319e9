import assert from "node:assert/strict";
import { createRng, type Rng, rngFromState } from "./rng.ts";

function draw(rng: Rng, n: number): number[] {
  return Array.from({ length: n }, () => rng.next());
}

Deno.test("createRng gives identical sequences for the same label and seed", () => {
  assert.deepEqual(draw(createRng("a", 7), 50), draw(createRng("a", 7), 50));
});

Deno.test("createRng gives different sequences for a different seed or label", () => {
  const base = draw(createRng("a", 7), 20);
  assert.notDeepEqual(draw(createRng("a", 8), 20), base);
  assert.notDeepEqual(draw(createRng("b", 7), 20), base);
});

Deno.test("next stays in [0, 1) with mean 0.5 over 1e5 draws", () => {
  const rng = createRng("uniform", 1);
  let sum = 0;
  for (let i = 0; i < 1e5; i++) {
    const x = rng.next();
    assert.ok(x >= 0 && x < 1, `draw ${i} out of range: ${x}`);
    sum += x;
  }
  assert.ok(Math.abs(sum / 1e5 - 0.5) < 0.01, `mean ${sum / 1e5}`);
});

Deno.test("int covers 0..n-1 roughly uniformly (chi-square bound)", () => {
  const rng = createRng("int", 3);
  const n = 10;
  const draws = 1e5;
  const counts = new Array<number>(n).fill(0);
  for (let i = 0; i < draws; i++) {
    const k = rng.int(n);
    assert.ok(Number.isInteger(k) && k >= 0 && k < n, `bad value ${k}`);
    counts[k]++;
  }
  const expected = draws / n;
  const chi2 = counts.reduce((a, c) => a + (c - expected) ** 2 / expected, 0);
  // 9 degrees of freedom: the 99.9% quantile is 27.9.
  assert.ok(chi2 < 30, `chi-square ${chi2}, counts ${counts}`);
  assert.ok(counts.every((c) => c > 0));
});

Deno.test("normal has mean 0 and standard deviation 1 over 1e5 draws", () => {
  const rng = createRng("normal", 5);
  const draws = 1e5;
  let sum = 0;
  let sumSq = 0;
  for (let i = 0; i < draws; i++) {
    const x = rng.normal();
    assert.ok(Number.isFinite(x));
    sum += x;
    sumSq += x * x;
  }
  const mean = sum / draws;
  const std = Math.sqrt(sumSq / draws - mean * mean);
  assert.ok(Math.abs(mean) < 0.02, `mean ${mean}`);
  assert.ok(Math.abs(std - 1) < 0.02, `std ${std}`);
});

Deno.test("child streams are deterministic and differ from parent and siblings", () => {
  const a = createRng("stage", 11).child("train", 0);
  const b = createRng("stage", 11).child("train", 0);
  assert.deepEqual(draw(a, 20), draw(b, 20));
  const parent = draw(createRng("stage", 11), 20);
  const c0 = draw(createRng("stage", 11).child("train", 0), 20);
  const c1 = draw(createRng("stage", 11).child("train", 1), 20);
  const cv = draw(createRng("stage", 11).child("validation", 0), 20);
  assert.notDeepEqual(c0, parent);
  assert.notDeepEqual(c0, c1);
  assert.notDeepEqual(c0, cv);
  assert.notDeepEqual(c1, cv);
});

Deno.test("child does not depend on how far the parent has advanced", () => {
  const fresh = createRng("stage", 11);
  const used = createRng("stage", 11);
  draw(used, 100);
  assert.deepEqual(draw(used.child("x"), 10), draw(fresh.child("x"), 10));
});

Deno.test("state returns four unsigned 32-bit words", () => {
  const s = createRng("s", 1).state();
  assert.equal(s.length, 4);
  for (const w of s) assert.ok(Number.isInteger(w) && w >= 0 && w < 2 ** 32);
});

Deno.test("rngFromState continues the stream exactly where state was taken", () => {
  const r = createRng("checkpoint", 42);
  draw(r, 37);
  const s = r.state();
  const restored = rngFromState(s, "checkpoint");
  const expected = [...draw(r, 10), r.int(1000), r.int(7), r.normal()];
  const actual = [
    ...draw(restored, 10),
    restored.int(1000),
    restored.int(7),
    restored.normal(),
  ];
  assert.deepEqual(actual, expected);
  assert.deepEqual(restored.state(), r.state());
});

Deno.test("rngFromState continues normal draws after an odd number of them", () => {
  const r = createRng("checkpoint", 42);
  r.normal(); // Box–Muller makes two samples; the second is pending now.
  const restored = rngFromState(r.state(), "checkpoint");
  assert.deepEqual(
    [restored.normal(), restored.normal()],
    [r.normal(), r.normal()],
  );
});

Deno.test("rngFromState with the stream's label and seed restores the same children", () => {
  const r = createRng("checkpoint", 42);
  draw(r, 5);
  const restored = rngFromState(r.state(), "checkpoint", 42);
  assert.deepEqual(draw(restored.child("x", 1), 10), draw(r.child("x", 1), 10));
});

Deno.test("fillUniform writes the values next() would give, and leaves the same state", () => {
  const a = createRng("fill", 5);
  const b = createRng("fill", 5);
  a.next();
  b.next();
  const out = new Float64Array(1000).fill(-1);
  a.fillUniform(out, 0.015, 10, 900);
  for (let i = 0; i < 1000; i++) {
    const want = i >= 10 && i < 910 ? 0.015 * b.next() : -1;
    assert.equal(out[i], want, `value ${i}`);
  }
  assert.deepEqual(a.state(), b.state());
  assert.equal(a.int(1000), b.int(1000));
  const f32 = new Float32Array(3);
  a.fillUniform(f32, 2);
  assert.deepEqual(
    [...f32],
    [2 * b.next(), 2 * b.next(), 2 * b.next()].map(Math.fround),
  );
});

Deno.test("skipRecording advances like next() and records the state before every chunk", () => {
  const a = createRng("skip", 9);
  const b = createRng("skip", 9);
  const out = new Uint32Array(4 + 4 * 3);
  assert.equal(a.skipRecording(10, 4, out, 4), 3);
  assert.deepEqual([...out.subarray(0, 4)], [0, 0, 0, 0]);
  for (let i = 0; i < 10; i++) {
    if (i % 4 === 0) {
      assert.deepEqual(
        [...out.subarray(4 + i, 8 + i)],
        b.state(),
        `state ${i}`,
      );
    }
    b.next();
  }
  assert.deepEqual(a.state(), b.state());
  // A stream rebuilt from a recorded state draws what the original drew.
  const again = rngFromState([...out.subarray(8, 12)]);
  const c = createRng("skip", 9);
  for (let i = 0; i < 4; i++) c.next();
  assert.equal(again.next(), c.next());
});
