/**
 * Tests of `gpu/kernels/matmul.ts` against a float64 reference on small odd
 * shapes: every transposition, row strides, two-level batch strides
 * (attention heads), every epilogue option, forced split-K and tiles, the
 * double-buffered K loop (`stages: 2`) on all of these, and option errors.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  chosenStages,
  matmul,
  type MatmulOptions,
  MAX_WORKGROUP_BYTES,
} from "./matmul.ts";
import {
  reference,
  resolved,
  span,
  STRIDED_SPLIT_K,
} from "./matmul_testing.ts";
import {
  gelu64,
  gpuTests,
  maxAbsDiff,
  randomArray,
  runPlan,
  testRuntime,
} from "../testing.ts";

let seed = 1;

/** Runs the plan of `o` on random inputs and compares with the reference. */
async function check(o: MatmulOptions, what: string): Promise<void> {
  const rt = (await testRuntime())!;
  const R = resolved(o);
  const x: Record<string, Float32Array> = {
    a: randomArray(
      span(R, R.sA, R.tA ? R.k : R.m, R.lda, R.oA),
      seed++,
    ),
    b: randomArray(
      span(R, R.sB, R.tB ? R.n : R.k, R.ldb, R.oB),
      seed++,
    ),
    c: randomArray(span(R, R.sC, R.m, R.ldc, R.oC), seed++),
  };
  if (o.bias) x.bias = randomArray(R.n, seed++);
  if (o.residual) x.r = randomArray(x.c.length, seed++);
  const withPre = o.gelu && o.keepPre !== false;
  if (withPre) x.pre = randomArray(x.c.length, seed++);
  const plan = matmul(o);
  const outs = withPre ? ["c", "pre"] : ["c"];
  const got = await runPlan(rt, plan, x, outs);
  const want = reference(o, x);
  const scale = Math.max(1, ...want.c.map(Math.abs));
  const tol = 2e-5 * scale;
  const d = maxAbsDiff(got.c, want.c);
  const label = `${what} [${plan.steps.map((s) => s.spec.label).join(" | ")}]`;
  assert(d <= tol, `${label}: c differs by ${d} (tol ${tol})`);
  if (withPre) {
    const dp = maxAbsDiff(got.pre, want.pre!);
    assert(dp <= tol, `${label}: pre differs by ${dp}`);
  }
}

const TILES: readonly (readonly [number, number])[] = [
  [32, 32],
  [64, 64],
  [128, 64],
  [64, 128],
  [128, 128],
];
const TRANS = [[false, false], [true, false], [false, true], [true, true]];
const opts = {
  ignore: !gpuTests,
  sanitizeResources: false,
  sanitizeOps: false,
};

Deno.test(
  "matmul: every transposition, scalar and vec4 layouts",
  opts,
  async () => {
    for (const [transA, transB] of TRANS) {
      // odd sizes: scalar loads and stores, edges in m, n and k
      await check({ m: 37, n: 29, k: 23, transA, transB }, "odd");
      // multiples of 4 but not of tiles: vec4 loads and stores, checked edges
      await check({ m: 68, n: 44, k: 36, transA, transB }, "vec4");
      // mixed: only some operands vec4-aligned
      await check({ m: 36, n: 21, k: 28, transA, transB }, "mixed");
    }
  },
);

Deno.test(
  "matmul: every tile configuration, edges and exact multiples",
  opts,
  async () => {
    for (const tile of TILES) {
      for (const [transA, transB] of [[false, false], [true, true]]) {
        await check(
          { m: tile[0] + 3, n: tile[1] + 5, k: 19, transA, transB, tile },
          `tile ${tile} edges`,
        );
      }
      await check(
        { m: tile[0], n: tile[1], k: 32, tile, transB: true },
        `tile ${tile} exact`,
      );
      await check(
        { m: tile[0] * 2 - 4, n: tile[1] - 8, k: 20, tile, transA: true },
        `tile ${tile} vec4 edges`,
      );
    }
  },
);

Deno.test("matmul: long K (register-prefetched slices)", opts, async () => {
  for (const [transA, transB] of TRANS) {
    await check({ m: 37, n: 29, k: 300, transA, transB }, "long k odd");
    await check({ m: 36, n: 40, k: 260, transA, transB }, "long k vec4");
  }
  await check(
    { m: 33, n: 20, k: 601, splitK: 2, bias: true, accumulate: true },
    "long k split",
  );
});

Deno.test("matmul: lda, ldb, ldc strides", opts, async () => {
  for (const [transA, transB] of TRANS) {
    await check(
      { m: 21, n: 17, k: 19, transA, transB, lda: 31, ldb: 25, ldc: 20 },
      "odd strides",
    );
    await check(
      { m: 24, n: 20, k: 12, transA, transB, lda: 40, ldb: 36, ldc: 28 },
      "vec4 strides",
    );
  }
});

/** The attention products of B clips × H heads of T rows and dh values, as one matmul each. */
function headProducts(
  B: number,
  T: number,
  H: number,
  dh: number,
): Record<"scores" | "PV" | "dP" | "dV", MatmulOptions> {
  const ld = H * dh;
  const heads = { batch: B * H, batchInner: H };
  const rows: [number, number] = [T * ld, dh];
  // Q_bh · K_bhᵀ (scores, and dP = dO · Vᵀ), Q and K as [B·T, H·dh] rows
  const qk: MatmulOptions = {
    m: T,
    n: T,
    k: dh,
    transB: true,
    lda: ld,
    ldb: ld,
    ...heads,
    strideA: rows,
    strideB: rows,
  };
  // out[b,t,h,:] = P_bh · V_bh, P dense [B·H, T, T] (and dV = Pᵀ · dO)
  const pv: MatmulOptions = {
    m: T,
    n: dh,
    k: T,
    ldb: ld,
    ldc: ld,
    ...heads,
    strideB: rows,
    strideC: rows,
  };
  return {
    scores: { ...qk, alpha: 1 / Math.sqrt(dh) },
    PV: pv,
    // the backward cases
    dP: qk,
    dV: { ...pv, transA: true, accumulate: true },
  };
}

Deno.test(
  "matmul: two-level batch strides (attention heads)",
  opts,
  async () => {
    for (const [B, T, H, dh] of [[2, 13, 3, 8], [2, 9, 2, 5]]) {
      for (const [name, o] of Object.entries(headProducts(B, T, H, dh))) {
        await check(o, `${name} B${B} T${T} H${H} dh${dh}`);
      }
    }
    // plain dense batch
    await check({ m: 12, n: 9, k: 7, batch: 3 }, "dense batch");
  },
);

Deno.test(
  "matmul: operand offsets (heads of one packed K/V/Q projection)",
  opts,
  async () => {
    for (const [B, T, H, dh] of [[2, 13, 3, 8], [2, 9, 2, 5]]) {
      const d = H * dh;
      const ld = 3 * d; // rows [K | V | Q]
      await check({
        m: T,
        n: T,
        k: dh,
        transB: true,
        lda: ld,
        ldb: ld,
        batch: B * H,
        batchInner: H,
        strideA: [T * ld, dh],
        strideB: [T * ld, dh],
        offsetA: 2 * d,
        offsetB: 0,
        alpha: 0.3,
      }, `packed scores dh${dh}`);
      await check({
        m: T,
        n: dh,
        k: T,
        ldb: ld,
        ldc: d,
        batch: B * H,
        batchInner: H,
        strideB: [T * ld, dh],
        strideC: [T * d, dh],
        offsetB: d,
      }, `packed PV dh${dh}`);
    }
    // C (and the residual) at an offset, through split-K's reduce
    await check(
      { m: 19, n: 12, k: 70, splitK: 3, residual: true, ldc: 20, offsetC: 8 },
      "offset C, split-K",
    );
    await check(
      { m: 19, n: 12, k: 40, bias: true, offsetA: 3, offsetC: 5 },
      "odd offsets (scalar paths)",
    );
  },
);

Deno.test("matmul: alpha, bias, residual, accumulate, gelu", opts, async () => {
  for (const [m, n, k] of [[33, 18, 21], [40, 36, 24]]) {
    await check({ m, n, k, alpha: -0.37 }, "alpha");
    await check({ m, n, k, bias: true }, "bias");
    await check({ m, n, k, residual: true, alpha: 0.5 }, "residual");
    await check({ m, n, k, residual: true, bias: true }, "residual+bias");
    await check({ m, n, k, relu: true, bias: true }, "relu+bias");
    await check(
      { m, n, k, relu: true, residual: true, bias: true },
      "relu+residual+bias",
    );
    await check({ m, n, k, accumulate: true }, "accumulate");
    await check(
      { m, n, k, accumulate: true, bias: true, alpha: 2 },
      "acc+bias",
    );
    await check({ m, n, k, gelu: true, bias: true }, "gelu+bias");
    await check({ m, n, k, gelu: true, residual: true, ldc: n + 4 }, "gelu+r");
    await check(
      { m, n, k, gelu: true, bias: true, keepPre: false },
      "gelu-pre",
    );
  }
});

Deno.test("matmul: split-K with every epilogue", opts, async () => {
  const cases: MatmulOptions[] = [
    { m: 23, n: 17, k: 70, splitK: 3 },
    { m: 24, n: 20, k: 96, splitK: 4, transA: true },
    { m: 19, n: 28, k: 150, splitK: 5, transB: true, bias: true },
    { m: 33, n: 12, k: 81, splitK: 2, transA: true, transB: true, alpha: 0.3 },
    { m: 20, n: 16, k: 64, splitK: 2, accumulate: true, bias: true },
    { m: 21, n: 13, k: 64, splitK: 3, residual: true, ldc: 15 },
    { m: 17, n: 24, k: 100, splitK: 3, gelu: true, bias: true },
    { m: 17, n: 24, k: 100, splitK: 3, gelu: true, keepPre: false },
    { m: 17, n: 11, k: 50, splitK: 2, gelu: true, residual: true },
    { m: 18, n: 12, k: 60, splitK: 3, relu: true, bias: true, residual: true },
    STRIDED_SPLIT_K,
    { m: 70, n: 68, k: 200, splitK: 3, tile: [64, 64] },
  ];
  for (const o of cases) {
    const plan = matmul(o);
    assert(plan.steps.length === 2, "split-K must give two steps");
    assert(plan.scratch?.splitk !== undefined, "split-K needs its scratch");
    await check(o, `split ${JSON.stringify(o)}`);
  }
});

// Double-buffered K loop. Slice counts are chosen so the loop ends in either
// buffer: ceil(k/16) odd ends in buffer 0, even in buffer 1.
// Each case is one new kernel (llvmpipe compiles each slowly), so the cases
// combine transpositions, layouts and epilogues.

Deno.test(
  "matmul stages 2: every tile, edges and exact multiples",
  opts,
  async () => {
    const cases: MatmulOptions[] = [
      { m: 35, n: 37, k: 19, tile: [32, 32] }, // odd, 2 slices
      { m: 67, n: 69, k: 40, tile: [64, 64], transA: true, transB: true }, // 3
      { m: 124, n: 60, k: 36, tile: [128, 64], transA: true, bias: true }, // vec4 edges
      { m: 64, n: 128, k: 64, tile: [64, 128], transB: true }, // exact, 4 slices
      { m: 131, n: 133, k: 50, tile: [128, 128], transB: true, residual: true },
    ];
    for (const o of cases) {
      await check({ ...o, stages: 2 }, `s2 tile ${o.tile}`);
    }
  },
);

Deno.test(
  "matmul stages 2: every transposition, layouts, long K and epilogues",
  opts,
  async () => {
    type Epilogue = Omit<MatmulOptions, "m" | "n" | "k">;
    // per transposition: an epilogue for the odd case and one for the vec4 case
    const epilogues: [Epilogue, Epilogue][] = [
      [{}, { gelu: true, bias: true, keepPre: false }],
      [
        { relu: true, residual: true, bias: true },
        { accumulate: true, bias: true, alpha: 2 },
      ],
      [{ gelu: true, residual: true }, { alpha: -0.37 }],
      [{ bias: true }, { residual: true, alpha: 0.5 }],
    ];
    for (let i = 0; i < TRANS.length; i++) {
      const [transA, transB] = TRANS[i];
      const [e0, e1] = epilogues[i];
      // odd sizes: 19 slices (ends in buffer 0), scalar loads and stores
      await check(
        { ...e0, m: 37, n: 29, k: 300, transA, transB, stages: 2 },
        `s2 odd ${JSON.stringify(e0)}`,
      );
      // multiples of 4: 16 slices (ends in buffer 1), k not a multiple of 16
      await check(
        { ...e1, m: 68, n: 44, k: 248, transA, transB, stages: 2 },
        `s2 vec4 ${JSON.stringify(e1)}`,
      );
    }
  },
);

Deno.test("matmul stages 2: strides and batches", opts, async () => {
  await check(
    { m: 21, n: 17, k: 19, transA: true, lda: 31, ldb: 25, ldc: 20, stages: 2 },
    "s2 odd strides",
  );
  await check(
    { m: 24, n: 20, k: 12, transB: true, lda: 40, ldb: 36, ldc: 28, stages: 2 },
    "s2 vec4 strides",
  );
  const { scores, dV } = headProducts(2, 13, 3, 8);
  await check({ ...scores, stages: 2 }, "s2 scores");
  await check({ ...dV, stages: 2 }, "s2 dV");
});

Deno.test("matmul stages 2: split-K with epilogues", opts, async () => {
  // a split's first dispatch does not depend on the epilogue: one kernel
  // serves the four epilogues of the first shape
  const shape: MatmulOptions = { m: 17, n: 24, k: 100, splitK: 3, stages: 2 };
  const cases: MatmulOptions[] = [
    { ...shape, gelu: true, bias: true },
    { ...shape, gelu: true, keepPre: false },
    { ...shape, accumulate: true, bias: true },
    { ...shape, relu: true, bias: true, residual: true, ldc: 27 },
    { m: 19, n: 28, k: 150, splitK: 5, transB: true, bias: true, stages: 2 },
    { ...STRIDED_SPLIT_K, stages: 2 },
    // long slices: 19 of 16 per split, the last one cut by k
    {
      m: 33,
      n: 20,
      k: 601,
      splitK: 2,
      bias: true,
      accumulate: true,
      stages: 2,
    },
  ];
  for (const o of cases) {
    const plan = matmul(o);
    assert(plan.steps.length === 2, "split-K must give two steps");
    assert(plan.steps[0].spec.label!.includes(" s2 "), "label must say s2");
    await check(o, `s2 split ${JSON.stringify(o)}`);
  }
});

Deno.test("matmul: gelu is exact erf GELU to ~2e-7", opts, async () => {
  const rt = (await testRuntime())!;
  const m = 193;
  const n = 4;
  // C = a·b with k = 1 and b = 1: pre is a exactly
  const a = new Float32Array(m);
  for (let i = 0; i < m; i++) a[i] = -6 + 12 * i / (m - 1) + (i % 3) * 1e-3;
  const b = new Float32Array(n).fill(1);
  const got = await runPlan(rt, matmul({ m, n, k: 1, gelu: true }), {
    a,
    b,
    c: new Float32Array(m * n),
    pre: new Float32Array(m * n),
  }, ["c", "pre"]);
  let worst = 0;
  for (let i = 0; i < m * n; i++) {
    const x = a[Math.floor(i / n)];
    assert(got.pre[i] === x, "pre must be the exact input");
    worst = Math.max(
      worst,
      Math.abs(got.c[i] - gelu64(x)) / Math.max(1, Math.abs(x)),
    );
  }
  assert(worst < 4e-7, `gelu error ${worst}`);
});

Deno.test("matmul: shape-based choice", () => {
  const label = (o: MatmulOptions) => matmul(o).steps.map((s) => s.spec.label);
  // big transformer shape: 128×128 tiles, workgroups within limits
  const big = matmul({ m: 12032, n: 3072, k: 768 });
  assert(
    big.steps[0].spec.label!.includes("128x128"),
    String(label({ m: 12032, n: 3072, k: 768 })[0]),
  );
  // weight gradient with huge K: split-K into ≥ ~264 workgroups
  const dw = matmul({ m: 768, n: 768, k: 94208, transA: true });
  assert(dw.steps.length === 2, "dW must split K");
  const [x, y, z] = dw.steps[0].spec.workgroups;
  assert(x * y * z >= 250, `dW has only ${x * y * z} workgroups`);
  // attention: small tiles
  const att = matmul({
    m: 15,
    n: 15,
    k: 64,
    transB: true,
    lda: 2304,
    ldb: 2304,
    batch: 384,
    batchInner: 12,
    strideA: [15 * 2304, 64],
    strideB: [15 * 2304, 64],
  });
  assert(
    att.steps[0].spec.label!.includes("32x32"),
    String(att.steps[0].spec.label),
  );
  for (
    const o of [
      { m: 94208, n: 64, k: 448 },
      { m: 1920, n: 768, k: 3072 },
      { m: 3072, n: 768, k: 12032, transA: true },
      { m: 94, n: 94, k: 64, batch: 1536, batchInner: 12, transB: true },
    ]
  ) {
    for (const s of matmul(o).steps) {
      for (const w of s.spec.workgroups) assert(w >= 1 && w <= 65535);
    }
  }
});

Deno.test("matmul: option errors", () => {
  const bad: MatmulOptions[] = [
    { m: 0, n: 4, k: 4 },
    { m: 4, n: 4.5, k: 4 },
    { m: 4, n: 4, k: -1 },
    { m: 4, n: 4, k: 4, lda: 3 },
    { m: 4, n: 4, k: 4, transA: true, lda: 3 },
    { m: 4, n: 4, k: 4, ldb: 2 },
    { m: 4, n: 4, k: 4, ldc: 3 },
    { m: 4, n: 4, k: 4, batch: 6, batchInner: 4 },
    { m: 4, n: 4, k: 4, batch: 0 },
    { m: 4, n: 4, k: 4, residual: true, accumulate: true },
    { m: 4, n: 4, k: 4, gelu: true, accumulate: true },
    { m: 4, n: 4, k: 4, relu: true, accumulate: true },
    { m: 4, n: 4, k: 4, relu: true, gelu: true },
    { m: 4, n: 4, k: 4, alpha: NaN },
    { m: 4, n: 4, k: 4, splitK: 0 },
    { m: 4, n: 4, k: 4, tile: [16, 16] },
    { m: 4, n: 4, k: 4, strideA: [-1, 0] },
    { m: 4, n: 4, k: 4, batch: 70000 },
    { m: 4, n: 4, k: 4, stages: 3 as 1 },
    { m: 4, n: 4, k: 4, stages: 0 as 1 },
    { m: 4, n: 4, k: 4, offsetB: -4 },
    { m: 4, n: 4, k: 4, offsetC: 1.5 },
  ];
  for (const o of bad) assert.throws(() => matmul(o), RangeError);
});

Deno.test("matmul: stages option in the plan", () => {
  const bytes = (code: string) =>
    [...code.matchAll(/var<workgroup> \w+: array<vec4<f32>, (\d+)>/g)]
      .reduce((a, m) => a + Number(m[1]) * 16, 0);
  const barriers = (code: string) =>
    code.split("workgroupBarrier()").length - 1;
  for (const tile of TILES) {
    const o: MatmulOptions = { m: 300, n: 300, k: 300, tile };
    const one = matmul({ ...o, stages: 1 }).steps[0].spec;
    const two = matmul({ ...o, stages: 2 }).steps[0].spec;
    assert.equal(bytes(one.code), (tile[0] + tile[1]) * 16 * 4);
    assert.equal(bytes(two.code), 2 * bytes(one.code));
    assert(bytes(two.code) <= MAX_WORKGROUP_BYTES, two.label!);
    assert(!one.label!.includes(" s2"), one.label!);
    assert(two.label!.includes(`${tile[0]}x${tile[1]} s2 `), two.label!);
    // one barrier per slice instead of two
    assert.equal(barriers(one.code.split("for (var k0")[1]), 2);
    assert.equal(barriers(two.code.split("for (var k0")[1]), 1);
  }
  // default: two stages for wide products with short K slices only
  const def = (o: MatmulOptions) => matmul(o).steps[0].spec.label!;
  assert(!def({ m: 300, n: 300, k: 300 }).includes(" s2 "));
  assert(def({ m: 3008, n: 2304, k: 768 }).includes(" s2 "));
  assert(!def({ m: 3008, n: 2304, k: 768, transB: true }).includes(" s2 "));
  assert.equal(chosenStages({ m: 3008, n: 3072, k: 768 }), 2);
  assert.equal(chosenStages({ m: 3008, n: 768, k: 3072 }), 1);
  assert.equal(chosenStages({ m: 3008, n: 3072, k: 768, stages: 1 }), 1);
});

Deno.test("matmul: the fp32 WGSL is pinned (f16 options leave it as it was)", async () => {
  // SHA-256 of the generated kernels (labels, code, grids, bindings) of 88
  // plans over every tile, stages, transposition, split-K and epilogue,
  // recorded before the f16 operands were added: a change to the fp32 text
  // (each one a new compile and a new timing) must be deliberate.
  const cases: MatmulOptions[] = [];
  for (const tile of TILES) {
    for (const stages of [1, 2] as const) {
      for (const [transA, transB] of TRANS) {
        cases.push(
          { m: 37, n: 29, k: 300, transA, transB, tile, stages, bias: true },
          {
            m: 68,
            n: 44,
            k: 36,
            transA,
            transB,
            tile,
            stages,
            residual: true,
            alpha: 0.5,
          },
        );
      }
    }
  }
  cases.push(
    { m: 17, n: 24, k: 100, splitK: 3, gelu: true, bias: true },
    { m: 21, n: 13, k: 64, splitK: 3, residual: true, ldc: 15 },
    { m: 20, n: 16, k: 64, splitK: 2, accumulate: true, bias: true, stages: 2 },
    { m: 18, n: 12, k: 60, splitK: 3, relu: true, bias: true, residual: true },
    STRIDED_SPLIT_K,
    { m: 12032, n: 3072, k: 768, bias: true, gelu: true, keepPre: false },
    { m: 768, n: 768, k: 94208, transA: true, accumulate: true },
    {
      m: 94,
      n: 94,
      k: 64,
      batch: 1536,
      batchInner: 12,
      transB: true,
      lda: 2304,
      ldb: 2304,
      strideA: [94 * 2304, 64],
      strideB: [94 * 2304, 64],
      offsetA: 768,
      alpha: 0.125,
    },
  );
  const text = cases.map((o) =>
    matmul(o).steps.map((s) =>
      `${s.spec.label}\n${s.spec.code}${s.spec.workgroups.join(",")}${
        s.bind.join(",")
      }`
    ).join("\n")
  ).join("\n");
  const hash = new Uint8Array(
    await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)),
  );
  assert.equal(cases.length, 88);
  assert.equal(
    [...hash].map((b) => b.toString(16).padStart(2, "0")).join(""),
    "f218334426017e15a9f4ebefa9a8a7f952e836b62617054e1b28a54c55ebd714",
  );
});
