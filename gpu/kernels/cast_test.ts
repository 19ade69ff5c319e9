/**
 * Tests of `gpu/kernels/cast.ts`: f32 → f16 bit for bit against
 * JavaScript's own `Math.f16round` (through `Float16Array`, built into
 * Deno 2.9's V8) on every exponent, ties, overflow, subnormals, zeros,
 * infinities and NaN, and f16 → f32 on all 65,536 half patterns; the
 * vectorised (n a multiple of 8) and the pairwise (odd n) paths.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  castToF16,
  castToF32,
  halfWords,
  halvesOf,
  toHalfWords,
} from "./cast.ts";
import { gpuRuntime, gpuTests, runPlan } from "../testing.ts";

const opts = {
  ignore: !gpuTests,
  sanitizeResources: false,
  sanitizeOps: false,
};

/** f32 inputs covering every rounding case, then random bit patterns. */
function inputs(n: number): Float32Array {
  const x = new Float32Array(n);
  const special = [
    0,
    -0,
    1,
    -1,
    1 + 2 ** -11, // tie, rounds down to even
    1 + 3 * 2 ** -11, // tie, rounds up to even
    1 + 2 ** -11 + 2 ** -20, // above the tie
    65504,
    65519.99,
    65520, // tie at the top: to infinity
    -65520,
    1e6,
    3.4028234663852886e38,
    Infinity,
    -Infinity,
    NaN,
    2 ** -14, // smallest normal half
    2 ** -14 - 2 ** -26,
    2 ** -24, // smallest subnormal half
    2 ** -25, // tie between 0 and 2^-24: to 0
    -(2 ** -25),
    3 * 2 ** -25, // tie between 2^-24 and 2^-23: to 2^-23
    2 ** -25 + 2 ** -40,
    1.5 * 2 ** -24,
    1023.5 * 2 ** -24, // tie below the smallest normal: to 2^-14
    1e-40, // f32 subnormal
    -1e-45,
  ];
  x.set(special);
  const bits = new Uint32Array(x.buffer);
  let s = 12345;
  for (let i = special.length; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    // exponents mostly around the half range, some anywhere
    const e = i % 4 === 0 ? s >>> 24 : 96 + ((s >>> 24) % 48);
    bits[i] = (s & 0x807fffff) | (e << 23);
  }
  return x;
}

Deno.test(
  "cast f32 → f16 rounds exactly like Math.f16round",
  opts,
  async () => {
    const rt = await gpuRuntime();
    for (const n of [4096, 1237]) { // vec4 path, pairs with an odd tail
      const x = inputs(n);
      const got = await runPlan(rt, castToF16({ n }), {
        x,
        y: new Uint32Array(halfWords(n)).fill(0xdeadbeef),
      }, ["y"]);
      const h = halvesOf(got.y, n);
      const want = Float16Array.from(x);
      for (let i = 0; i < n; i++) {
        if (Number.isNaN(want[i])) {
          assert(Number.isNaN(h[i]), `n ${n}: f16(${x[i]}) must be NaN`);
          continue;
        }
        assert(
          Object.is(h[i], want[i]),
          `n ${n}: f16(${x[i]}) gave ${h[i]}, want ${want[i]} (index ${i})`,
        );
      }
      if (n % 2) {
        const last = new Uint16Array(got.y.buffer)[n];
        assert.equal(last, 0, "the padding half of an odd n is zero");
      }
    }
  },
);

Deno.test("cast f16 → f32 is exact on every half", opts, async () => {
  const rt = await gpuRuntime();
  const all = new Uint16Array(65536).map((_, i) => i);
  for (const n of [65536, 999]) {
    const h = all.subarray(65536 - n); // odd n: the top patterns (NaNs, negatives)
    const got = await runPlan(rt, castToF32({ n }), {
      x: toHalfWords(new Float16Array(Uint16Array.from(h).buffer)),
      y: new Float32Array(n),
    }, ["y"]);
    const want = new Float16Array(Uint16Array.from(h).buffer);
    for (let i = 0; i < n; i++) {
      if (Number.isNaN(want[i])) {
        assert(Number.isNaN(got.y[i]), `half 0x${h[i].toString(16)} → NaN`);
      } else {
        assert(
          Object.is(got.y[i], want[i]),
          `half 0x${h[i].toString(16)} gave ${got.y[i]}, want ${want[i]}`,
        );
      }
    }
  }
});

Deno.test("cast: host packing of halves", () => {
  const w = toHalfWords([1, -2, 65520, 1 + 2 ** -11, 0.1]);
  assert.deepEqual([...w], [0xc0003c00, 0x3c007c00, 0x2e66]);
  assert.deepEqual([...halvesOf(w, 5)], [
    1,
    -2,
    Infinity,
    1,
    Math.f16round(0.1),
  ]);
  // a Float16Array's bits travel as they are (a NaN payload included)
  const nan = new Float16Array(new Uint16Array([0x7d01, 0x0001]).buffer);
  assert.deepEqual([...toHalfWords(nan)], [0x00017d01]);
  assert.throws(() => halvesOf(w, 7), /^RangeError: Cannot read 7 halves/);
});

Deno.test("cast: option errors and plan shape", () => {
  assert.throws(() => castToF16({ n: 0 }), /Cannot build kernel/);
  assert.throws(() => castToF32({ n: 2.5 }), /Cannot build kernel/);
  assert.equal(halfWords(7), 4);
  const v = castToF16({ n: 80 }).steps[0];
  assert.deepEqual(v.bind, ["x", "y"]);
  assert.match(v.spec.code, /array<vec4<u32>>/);
  assert.doesNotMatch(v.spec.code, /enable f16/, "casts need no shader-f16");
  assert.match(castToF32({ n: 81 }).steps[0].spec.code, /array<u32>/);
});
