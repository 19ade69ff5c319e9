/**
 * Tests of `gpu/kernels/conv.ts` against float64 references: im2col against
 * a direct PyTorch-padded conv1d (through a host matmul), col2im as the
 * adjoint of im2col, max pooling (ties, −Infinity padding) and its gather
 * gradient, and the big-grid geometry of the real model's first conv.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  col2im,
  im2col,
  maxPoolBackward,
  maxPoolForward,
  outLength,
} from "./conv.ts";
import {
  asInt32,
  gpuRuntime,
  gpuTests,
  maxAbsDiff,
  randomArray,
  runPlan,
} from "../testing.ts";
import { MAX_GRID_DIM, WORKGROUP_SIZE } from "./grid.ts";

interface Geo {
  batch: number;
  tIn: number;
  cin: number;
  k: number;
  stride: number;
  pad: number;
}

/**
 * Calls `f(colIndex, xIndex)` for each in-range tap of the im2col gather:
 * element `colIndex` of col `[batch·tOut][k·cin]` is element `xIndex` of x
 * `[batch·tIn][cin]` (taps in the zero padding are skipped).
 */
function forEachTap(g: Geo, f: (colIndex: number, xIndex: number) => void) {
  const tOut = outLength(g);
  const w = g.k * g.cin;
  for (let b = 0; b < g.batch; b++) {
    for (let t = 0; t < tOut; t++) {
      for (let j = 0; j < g.k; j++) {
        const s = t * g.stride + j - g.pad;
        if (s < 0 || s >= g.tIn) continue;
        for (let c = 0; c < g.cin; c++) {
          f((b * tOut + t) * w + j * g.cin + c, (b * g.tIn + s) * g.cin + c);
        }
      }
    }
  }
}

/** Reference im2col in float64. */
function refIm2col(x: ArrayLike<number>, g: Geo): Float64Array {
  const col = new Float64Array(g.batch * outLength(g) * g.k * g.cin);
  forEachTap(g, (ci, xi) => col[ci] = x[xi]);
  return col;
}

/** Direct PyTorch Conv1d (zero padding) on `[b][t][cin]`, `w` `[k][cin][cout]`. */
function refConv(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  g: Geo,
  cout: number,
): Float64Array {
  const tOut = outLength(g);
  const y = new Float64Array(g.batch * tOut * cout);
  for (let b = 0; b < g.batch; b++) {
    for (let t = 0; t < tOut; t++) {
      for (let o = 0; o < cout; o++) {
        let s = 0;
        for (let j = 0; j < g.k; j++) {
          const ti = t * g.stride + j - g.pad;
          if (ti < 0 || ti >= g.tIn) continue;
          for (let c = 0; c < g.cin; c++) {
            s += x[(b * g.tIn + ti) * g.cin + c] *
              w[(j * g.cin + c) * cout + o];
          }
        }
        y[(b * tOut + t) * cout + o] = s;
      }
    }
  }
  return y;
}

/** Host matmul `[m][k] · [k][n]` in float64. */
function matmul(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  m: number,
  k: number,
  n: number,
): Float64Array {
  const y = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let p = 0; p < k; p++) {
      const v = a[i * k + p];
      for (let j = 0; j < n; j++) y[i * n + j] += v * b[p * n + j];
    }
  }
  return y;
}

/** Reference col2im (scatter-add, the transpose of refIm2col). */
function refCol2im(d: ArrayLike<number>, g: Geo): Float64Array {
  const dx = new Float64Array(g.batch * g.tIn * g.cin);
  forEachTap(g, (ci, xi) => dx[xi] += d[ci]);
  return dx;
}

const dot = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
};

const maxAbs = (a: ArrayLike<number>): number => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
};

/** im2col vs reference, conv via host matmul vs direct conv, adjointness. */
async function checkConv(g: Geo, seed: number): Promise<void> {
  const r = await gpuRuntime();
  const tOut = outLength(g);
  const cout = 5;
  const x = randomArray(g.batch * g.tIn * g.cin, seed);
  const w = randomArray(g.k * g.cin * cout, seed + 1);
  const { col } = await runPlan(r, im2col(g), {
    x,
    col: new Float32Array(g.batch * tOut * g.k * g.cin).fill(NaN),
  }, ["col"]);
  const what = JSON.stringify(g);
  assert.equal(maxAbsDiff(col, refIm2col(x, g)), 0, `im2col ${what}`);
  const y = matmul(col, w, g.batch * tOut, g.k * g.cin, cout);
  const yRef = refConv(x, w, g, cout);
  assert(maxAbsDiff(y, yRef) < 1e-9, `conv ${what}`);

  const d = randomArray(col.length, seed + 2);
  const { dx } = await runPlan(r, col2im(g), {
    dcol: d,
    dx: new Float32Array(x.length).fill(NaN),
  }, ["dx"]);
  const dxRef = refCol2im(d, g);
  assert(
    maxAbsDiff(dx, dxRef) <= 1e-5 * Math.max(1, maxAbs(dxRef)),
    `col2im ${what}: ${maxAbsDiff(dx, dxRef)}`,
  );
  const lhs = dot(col, d);
  const rhs = dot(x, dx);
  assert(
    Math.abs(lhs - rhs) <= 1e-5 * Math.max(1, Math.abs(lhs)),
    `adjoint ${what}: ${lhs} vs ${rhs}`,
  );
}

Deno.test({
  name: "im2col/col2im: strides 1, 2 × k 1, 7, 14 × pads 0, 3, 6 (cin 3)",
  ignore: !gpuTests,
  async fn() {
    let seed = 1;
    for (const stride of [1, 2]) {
      for (const k of [1, 7, 14]) {
        for (const pad of [0, 3, 6]) {
          await checkConv(
            { batch: 2, tIn: 17, cin: 3, k, stride, pad },
            seed += 7,
          );
        }
      }
    }
  },
});

Deno.test({
  name: "im2col/col2im: vec4 channel path (cin 8) and odd batch",
  ignore: !gpuTests,
  async fn() {
    await checkConv({ batch: 3, tIn: 19, cin: 8, k: 14, stride: 2, pad: 6 }, 5);
    await checkConv({ batch: 3, tIn: 19, cin: 8, k: 7, stride: 1, pad: 3 }, 6);
    await checkConv({ batch: 1, tIn: 9, cin: 4, k: 1, stride: 2, pad: 0 }, 7);
    await checkConv({ batch: 2, tIn: 11, cin: 5, k: 3, stride: 3, pad: 1 }, 8);
  },
});

Deno.test({
  name: "col2im: accumulate adds into dx (scalar and vec4)",
  ignore: !gpuTests,
  async fn() {
    const r = await gpuRuntime();
    for (const cin of [3, 8]) {
      const g = { batch: 2, tIn: 13, cin, k: 7, stride: 2, pad: 3 };
      const tOut = outLength(g);
      const d = randomArray(g.batch * tOut * g.k * cin, 11);
      const init = randomArray(g.batch * g.tIn * cin, 12);
      const { dx } = await runPlan(r, col2im({ ...g, accumulate: true }), {
        dcol: d,
        dx: init,
      }, ["dx"]);
      const ref = refCol2im(d, g).map((v, i) => v + init[i]);
      assert(maxAbsDiff(dx, ref) < 1e-5, `cin ${cin}`);
    }
  },
});

/** Reference PyTorch MaxPool1d with indices (padding never wins). */
function refPool(
  x: ArrayLike<number>,
  g: Omit<Geo, "cin"> & { channels: number },
) {
  const tOut = outLength(g);
  const c = g.channels;
  const y = new Float64Array(g.batch * tOut * c);
  const arg = new Int32Array(y.length);
  for (let b = 0; b < g.batch; b++) {
    for (let t = 0; t < tOut; t++) {
      const lo = Math.max(t * g.stride - g.pad, 0);
      const hi = Math.min(t * g.stride - g.pad + g.k, g.tIn);
      for (let ch = 0; ch < c; ch++) {
        let best = -Infinity;
        let at = lo;
        for (let s = lo; s < hi; s++) {
          const v = x[(b * g.tIn + s) * c + ch];
          if (v > best) {
            best = v;
            at = s;
          }
        }
        y[(b * tOut + t) * c + ch] = best;
        arg[(b * tOut + t) * c + ch] = at;
      }
    }
  }
  return { y, arg };
}

Deno.test({
  name: "maxPool: forward values, first-max ties, −Inf inputs; backward gather",
  ignore: !gpuTests,
  async fn() {
    const r = await gpuRuntime();
    const cases = [
      { batch: 2, tIn: 17, channels: 3, k: 6, stride: 2, pad: 2 },
      { batch: 3, tIn: 13, channels: 8, k: 6, stride: 2, pad: 2 },
      { batch: 2, tIn: 11, channels: 5, k: 3, stride: 1, pad: 1 },
      { batch: 1, tIn: 15, channels: 4, k: 2, stride: 2, pad: 0 },
      { batch: 2, tIn: 9, channels: 7, k: 5, stride: 3, pad: 2 },
    ];
    let seed = 100;
    for (const g of cases) {
      const what = JSON.stringify(g);
      const tOut = outLength(g);
      // Few distinct values, so windows have many ties; some −Infinity.
      const x = randomArray(g.batch * g.tIn * g.channels, seed++).map((v) =>
        Math.floor(v * 2)
      );
      for (let i = 0; i < x.length; i += 7) x[i] = -Infinity;
      const ref = refPool(x, g);
      const n = g.batch * tOut * g.channels;
      const out = await runPlan(r, maxPoolForward(g), {
        x,
        y: new Float32Array(n),
        arg: new Int32Array(n).fill(-5),
      }, ["y", "arg"]);
      assert.deepEqual(Array.from(out.y), Array.from(ref.y), `y ${what}`);
      assert.deepEqual(Array.from(asInt32(out.arg)), Array.from(ref.arg), what);

      const dy = randomArray(n, seed++);
      for (const accumulate of [false, true]) {
        const init = accumulate
          ? randomArray(x.length, seed++)
          : new Float32Array(x.length).fill(NaN);
        const dxRef = new Float64Array(x.length);
        for (let b = 0; b < g.batch; b++) {
          for (let w = 0; w < tOut; w++) {
            for (let c = 0; c < g.channels; c++) {
              const o = (b * tOut + w) * g.channels + c;
              dxRef[(b * g.tIn + ref.arg[o]) * g.channels + c] += dy[o];
            }
          }
        }
        if (accumulate) dxRef.forEach((v, i) => dxRef[i] = v + init[i]);
        const { dx } = await runPlan(
          r,
          maxPoolBackward({ ...g, accumulate }),
          { dy, arg: ref.arg, dx: init },
          ["dx"],
        );
        assert(maxAbsDiff(dx, dxRef) < 1e-5, `dx ${what} acc ${accumulate}`);
      }
    }
  },
});

Deno.test("conv: grid of the model's first conv (128×1471×64, k14 s2) fits", () => {
  const g = { batch: 128, tIn: 1471, cin: 64, k: 14, stride: 2, pad: 6 };
  const tOut = outLength(g);
  assert.equal(tOut, 735);
  for (
    const [plan, items] of [
      [im2col(g), g.batch * tOut * g.k * g.cin / 4],
      [col2im(g), g.batch * g.tIn * g.cin / 4],
    ] as const
  ) {
    const [x, y, z] = plan.steps[0].spec.workgroups;
    assert(x <= MAX_GRID_DIM && y <= MAX_GRID_DIM && z === 1);
    assert(x * y * WORKGROUP_SIZE >= items);
    assert((x * y - y) * WORKGROUP_SIZE < items);
    assert(plan.steps[0].spec.code.includes("vec4<f32>"));
  }
  assert(im2col(g).steps[0].spec.workgroups[1] > 1);
});

Deno.test("conv: outLength matches PyTorch and rejects empty outputs", () => {
  assert.equal(
    outLength({ batch: 1, tIn: 10, k: 3, stride: 2, pad: 1 }),
    5,
  );
  let threw = false;
  try {
    outLength({ batch: 1, tIn: 3, k: 7, stride: 1, pad: 0 });
  } catch {
    threw = true;
  }
  assert(threw);
});
