/**
 * Tests of the f16 options of `gpu/kernels/matmul.ts` (`operands: "f16"`,
 * `outF16`, `packedK`, `bk`) against the float64 reference of
 * `matmul_testing.ts` computed from the f16-rounded inputs: the f32
 * accumulation gets the fp32 tests' tolerance, f16 outputs half an f16 ulp
 * more (they are rounded exactly), packed f16 products their f16 rounding
 * bound. Transpositions, scalar/vec4/mixed layouts, strides, two-level
 * batch strides with offsets, bounds-checked edges, long K, two stages,
 * split-K, every epilogue, f16 outputs; then the plan side (workgroup bytes,
 * labels, option errors) without a GPU.
 *
 * @module
 */
import assert from "node:assert/strict";
import { matmul, type MatmulOptions, MAX_WORKGROUP_BYTES } from "./matmul.ts";
import {
  reference,
  resolved,
  span,
  STRIDED_SPLIT_K,
} from "./matmul_testing.ts";
import { halfWords, halvesOf, toHalfWords } from "./cast.ts";
import { gpuRuntime, gpuTests, randomArray, runPlan } from "../testing.ts";

let seed = 7001;

/** Spacing of f16 values around magnitude `x`. */
function ulp16(x: number): number {
  return x < 2 ** -14 ? 2 ** -24 : 2 ** (Math.floor(Math.log2(x)) - 10);
}

/**
 * Runs `o` (with `operands: "f16"` unless given) on random f16-rounded
 * operands and compares C (and pre) with the float64 reference.
 */
async function check(o: MatmulOptions, what: string): Promise<void> {
  o = { operands: "f16", ...o };
  const rt = await gpuRuntime();
  const R = resolved(o);
  const f16In = o.operands === "f16";
  const out16 = o.outF16 ?? false;
  const values = (n: number, half: boolean) => {
    const v = randomArray(n, seed++);
    return half ? Float16Array.from(v) : v;
  };
  const cLen = span(R, R.sC, R.m, R.ldc, R.oC);
  const x: Record<string, Float16Array | Float32Array> = {
    a: values(span(R, R.sA, R.tA ? R.k : R.m, R.lda, R.oA), f16In),
    b: values(span(R, R.sB, R.tB ? R.n : R.k, R.ldb, R.oB), f16In),
    c: values(cLen, out16),
  };
  if (o.bias) x.bias = values(R.n, false);
  if (o.residual) x.r = values(cLen, out16);
  const withPre = o.gelu && o.keepPre !== false;
  if (withPre) x.pre = values(cLen, out16);
  const named = Object.fromEntries(
    Object.entries(x).map((
      [k, v],
    ) => [k, v instanceof Float16Array ? toHalfWords(v) : v]),
  );
  const plan = matmul(o);
  const outs = withPre ? ["c", "pre"] : ["c"];
  const got = await runPlan(rt, plan, named, outs);
  const read = (name: string) =>
    out16 ? halvesOf(got[name], cLen) : got[name].subarray(0, cLen);
  const want = reference(o, x);
  const scale = Math.max(1, ...want.c.map(Math.abs));
  const label = `${what} [${plan.steps.map((s) => s.spec.label).join(" | ")}]`;
  const compare = (name: string, g: ArrayLike<number>, w: Float64Array) => {
    for (let i = 0; i < cLen; i++) {
      // the fp32 tests' tolerance for the f32 accumulation; packed f16
      // products: each chain of packedK products rounds in f16 (γ bound,
      // GELU's slope ≤ 1.13 included)
      const acc = 2e-5 * scale +
        (o.packedK ? 1.2 * o.packedK * 2 ** -11 * want.abs[i] : 0);
      const tol = acc + (out16 ? ulp16(Math.abs(w[i]) + acc) / 2 : 0);
      const d = Math.abs(g[i] - w[i]);
      assert(
        d <= tol,
        `${label}: ${name}[${i}] = ${g[i]}, want ${
          w[i]
        } (differs by ${d}, tol ${tol})`,
      );
    }
  };
  compare("c", read("c"), want.c);
  if (withPre) compare("pre", read("pre"), want.pre!);
}

const opts = {
  ignore: !gpuTests,
  sanitizeResources: false,
  sanitizeOps: false,
};

Deno.test(
  "matmul f16 operands: transpositions, layouts, strides, edges, long K",
  opts,
  async () => {
    // Each case is one kernel (llvmpipe compiles each slowly): the cases
    // combine transpositions, layouts and epilogues.
    const cases: [MatmulOptions, string][] = [
      [{ m: 37, n: 29, k: 23 }, "odd: scalar loads and stores, every edge"],
      [
        { m: 68, n: 44, k: 36, transA: true, bias: true, alpha: -0.37 },
        "vec4 f16 loads, checked edges, tA",
      ],
      [
        { m: 36, n: 21, k: 28, transB: true, residual: true, alpha: 0.5 },
        "mixed vec4/scalar, tB",
      ],
      [
        { m: 37, n: 29, k: 300, transA: true, transB: true, bias: true },
        "long K (register prefetch), tA tB",
      ],
      [{ m: 30, n: 22, k: 26, bias: true }, "vec2<f16> loads, checked edges"],
      [
        { m: 37, n: 29, k: 40, transB: true, staging: "f32" },
        "f32 tiles, transposing stores",
      ],
      [
        { m: 68, n: 44, k: 36, transA: true, staging: "f32", residual: true },
        "f32 tiles, vec4 stores",
      ],
      [
        { m: 30, n: 22, k: 26, transA: true, transB: true, lda: 34, ldb: 30 },
        "vec2<f16> loads, tA tB, strides",
      ],
      [
        { m: 21, n: 17, k: 19, transA: true, lda: 31, ldb: 25, ldc: 20 },
        "odd strides",
      ],
      [
        { m: 24, n: 20, k: 12, transB: true, lda: 40, ldb: 36, ldc: 28 },
        "vec4 strides",
      ],
      [
        {
          m: 131,
          n: 133,
          k: 50,
          tile: [128, 128],
          stages: 2,
          bk: 32,
          relu: true,
          bias: true,
        },
        "128x128 tile edges, stages 2, bk 32 (32 KiB of f16), relu",
      ],
    ];
    for (const [o, what] of cases) await check(o, what);
  },
);

Deno.test(
  "matmul f16 operands: two-level batch strides and offsets, split-K",
  opts,
  async () => {
    const [B, T, H, dh] = [2, 13, 3, 8];
    const d = H * dh;
    const ld = 3 * d; // packed [K | V | Q] rows
    const heads = { batch: B * H, batchInner: H };
    await check({
      m: T,
      n: T,
      k: dh,
      transB: true,
      lda: ld,
      ldb: ld,
      ...heads,
      strideA: [T * ld, dh],
      strideB: [T * ld, dh],
      offsetA: 2 * d,
      alpha: 0.3,
    }, "packed scores (offsets, heads)");
    await check({
      m: T,
      n: dh,
      k: T,
      transA: true,
      ldb: ld,
      ldc: d,
      ...heads,
      strideB: [T * ld, dh],
      strideC: [T * d, dh],
      offsetB: d,
      accumulate: true,
    }, "dV-like (tA, accumulate into strided C)");
    await check(
      { m: 23, n: 17, k: 70, splitK: 3, gelu: true, bias: true },
      "split-K, gelu + bias",
    );
    await check(
      { ...STRIDED_SPLIT_K, residual: true },
      "split-K over a strided batch, residual",
    );
  },
);

Deno.test(
  "matmul f16 operands: two stages, bk 32, packed f16 products",
  opts,
  async () => {
    await check(
      { m: 68, n: 44, k: 248, transB: true, stages: 2, accumulate: true },
      "stages 2 (ends in buffer 1), accumulate",
    );
    await check(
      { m: 37, n: 29, k: 77, bk: 32, transA: true, gelu: true },
      "bk 32 odd, gelu",
    );
    for (const packedK of [2, 8] as const) {
      await check(
        { m: 40, n: 36, k: 90, packedK, bias: true, residual: true },
        `packed ${packedK}`,
      );
    }
    await check(
      { m: 33, n: 20, k: 601, packedK: 4, bk: 32, transB: true, splitK: 2 },
      "packed 4, bk 32, split-K",
    );
  },
);

Deno.test("matmul f16 outputs (outF16): every epilogue", opts, async () => {
  const cases: [MatmulOptions, string][] = [
    [{ m: 40, n: 36, k: 24, bias: true, gelu: true, outF16: true }, "gelu"],
    [
      { m: 33, n: 18, k: 21, gelu: true, keepPre: false, outF16: true },
      "gelu, no pre, scalar",
    ],
    [{ m: 33, n: 18, k: 21, residual: true, outF16: true }, "residual"],
    [
      { m: 40, n: 36, k: 24, accumulate: true, alpha: 2, outF16: true },
      "accumulate",
    ],
    [
      {
        m: 21,
        n: 13,
        k: 64,
        splitK: 3,
        relu: true,
        bias: true,
        residual: true,
        ldc: 15,
        outF16: true,
      },
      "split-K reduce to f16, relu + residual",
    ],
    [
      { m: 24, n: 20, k: 36, operands: "f32", outF16: true, bias: true },
      "f32 operands, f16 out",
    ],
  ];
  for (const [o, what] of cases) await check(o, what);
});

Deno.test(
  "matmul f16 outputs: overflow to infinity, exact halves",
  opts,
  async () => {
    const rt = await gpuRuntime();
    // C = A·B with k = 1, B = 1: every output is an input value, rounded once
    const vals = [1 + 2 ** -11, 1 + 3 * 2 ** -11, 65504, 65520, -1e5, 3e-8];
    const m = vals.length;
    const got = await runPlan(rt, matmul({ m, n: 1, k: 1, outF16: true }), {
      a: Float32Array.from(vals),
      b: Float32Array.of(1),
      c: new Uint32Array(halfWords(m)),
    }, ["c"]);
    assert.deepEqual(
      [...halvesOf(got.c, m)],
      vals.map(Math.f16round),
    );
  },
);

Deno.test("matmul f16: plan, workgroup bytes, labels", () => {
  const bytes = (code: string) =>
    [...code.matchAll(/var<workgroup> \w+: array<vec4<(f16|f32)>, (\d+)>/g)]
      .reduce((a, m) => a + Number(m[2]) * (m[1] === "f16" ? 8 : 16), 0);
  const o: MatmulOptions = { m: 300, n: 300, k: 300, tile: [128, 128] };
  const f32 = matmul({ ...o, stages: 2 }).steps[0].spec;
  const f16 = matmul({ ...o, stages: 2, operands: "f16" }).steps[0].spec;
  assert.equal(bytes(f32.code), 32768);
  assert.equal(bytes(f16.code), 16384, "f16 stages half the bytes");
  const wide = matmul({ ...o, stages: 2, operands: "f16", staging: "f32" })
    .steps[0].spec;
  assert.equal(bytes(wide.code), 32768, "f32 staging: the f32 bytes");
  assert.match(wide.code, /a: array<vec4<f16>>/);
  assert.match(wide.label!, / f16 sf32$/);
  const deep = matmul({ ...o, stages: 2, operands: "f16", bk: 32 }).steps[0]
    .spec;
  assert.equal(bytes(deep.code), 32768);
  assert(bytes(deep.code) <= MAX_WORKGROUP_BYTES);
  // f32 with a 32-deep slice cannot double-buffer a 128x128 tile
  assert.throws(
    () => matmul({ ...o, stages: 2, bk: 32 }),
    /Cannot plan matmul: tile \[128,128\] with stages 2 and bk 32 needs 65536 bytes/,
  );
  // ... and the automatic stage choice falls back to one buffer there
  const auto = matmul({ m: 3008, n: 2304, k: 768, bk: 32 }).steps[0].spec;
  assert(!auto.label!.includes(" s2"), auto.label!);
  assert(
    matmul({ m: 3008, n: 2304, k: 768, operands: "f16", bk: 32 }).steps[0]
      .spec.label!.includes(" s2"),
  );
  assert.match(f16.code, /^\/\/ [^\n]*\nenable f16;\n/);
  assert.match(f16.code, /var<storage, read> a: array<vec4<f16>>/);
  assert.match(f16.code, /var<storage, read_write> c: array<vec4<f32>>/);
  assert.match(f16.label!, / f16$/);
  // even but not vec4-aligned f16 rows load in pairs; f32 ones one by one
  const even = { m: 30, n: 22, k: 26 };
  assert.match(
    matmul({ ...even, operands: "f16" }).steps[0].spec.code,
    /a: array<vec2<f16>>;\n.*b: array<vec2<f16>>;/,
  );
  assert.match(matmul(even).steps[0].spec.code, /a: array<f32>;/);
  assert.doesNotMatch(f32.code, /f16/);
  const packed = matmul({ ...o, operands: "f16", packedK: 4, bk: 32 });
  assert.match(packed.steps[0].spec.label!, / f16 p4 bk32$/);
  assert.match(packed.steps[0].spec.code, /fma\(vec4<f16>/);
  // split-K: f32 operands' first step needs no f16, the reduce stores f16
  const split = matmul({ m: 20, n: 16, k: 640, splitK: 2, outF16: true });
  assert.doesNotMatch(split.steps[0].spec.code, /f16/);
  assert.match(split.steps[1].spec.code, /enable f16;/);
  assert.match(split.steps[1].spec.label!, / >f16$/);
  assert.match(split.steps[1].spec.code, /c: array<vec4<f16>>/);
});

Deno.test("matmul f16: option errors", () => {
  const bad: [MatmulOptions, RegExp][] = [
    [{ m: 4, n: 4, k: 4, operands: "bf16" as "f16" }, /operands must be/],
    [{ m: 4, n: 4, k: 4, packedK: 4 }, /packedK needs operands: "f16"/],
    [
      { m: 4, n: 4, k: 4, operands: "f16", packedK: 3 as 2 },
      /packedK must be 0, 2, 4 or 8/,
    ],
    [{ m: 4, n: 4, k: 4, bk: 8 as 16 }, /bk must be 16 or 32/],
    [{ m: 4, n: 4, k: 4, staging: "f16" }, /staging: "f16" needs operands/],
    [
      { m: 4, n: 4, k: 4, operands: "f16", staging: "f32", packedK: 2 },
      /packedK needs staging: "f16"/,
    ],
    [
      { m: 4, n: 4, k: 4, operands: "f16", staging: "f8" as "f16" },
      /staging must be/,
    ],
    [{ m: 4, n: 4, k: 4, outF16: 1 as unknown as boolean }, /outF16 must/],
  ];
  for (const [o, re] of bad) {
    assert.throws(() => matmul(o), (e: Error) => {
      assert(e instanceof RangeError);
      assert.match(e.message, /^Cannot plan matmul: /);
      assert.match(e.message, re);
      return true;
    });
  }
});
