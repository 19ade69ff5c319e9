/**
 * Tests of `gpu/kernels/elementwise.ts` against float64 references: GELU
 * and its gradient (analytic and finite
 * differences), column sums (one- and two-stage), row softmax and its
 * gradient (finite differences), the mean over time and its gradient,
 * `add` and `copy` — every option, scalar and vec4 paths.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  add,
  COLUMN_SUM_SCRATCH,
  columnSum,
  copy,
  gelu,
  geluBackward,
  meanRows,
  meanRowsBackward,
  softmaxBackward,
  softmaxLayout,
  softmaxRows,
} from "./elementwise.ts";
import { MAX_GRID_DIM } from "./grid.ts";
import {
  gelu64,
  gelu64Grad,
  gpuRuntime,
  gpuTests,
  maxAbsDiff,
  randomArray,
  runPlan,
} from "../testing.ts";
import type { KernelPlan } from "../runtime.ts";

/** Values spread over [−6, 6]: an even grid, then random. */
function spread(n: number, seed: number): Float32Array {
  const r = randomArray(n, seed, 6);
  const grid = Math.min(n, 601);
  for (let i = 0; i < grid; i++) r[i] = -6 + 12 * i / (grid - 1);
  return r;
}

const run = async (
  plan: KernelPlan,
  named: Record<string, Float32Array | Int32Array>,
  outputs: string[],
) => await runPlan(await gpuRuntime(), plan, named, outputs);

const nans = (n: number): Float32Array => new Float32Array(n).fill(NaN);

Deno.test({
  name: "gelu: forward matches float64 exact-erf GELU (n odd and n % 4 == 0)",
  ignore: !gpuTests,
  async fn() {
    for (const n of [1001, 1000]) {
      const x = spread(n, n);
      const { y } = await run(gelu({ n }), { x, y: nans(n) }, ["y"]);
      for (let i = 0; i < n; i++) {
        const d = Math.abs(y[i] - gelu64(x[i]));
        assert(d <= 3e-7 * Math.max(1, Math.abs(x[i])), `x=${x[i]}: ${d}`);
      }
    }
  },
});

Deno.test({
  name: "geluBackward: analytic, finite differences, accumulate",
  ignore: !gpuTests,
  async fn() {
    // The float64 formula against central differences of float64 GELU.
    for (let x = -6; x <= 6; x += 0.37) {
      const h = 1e-5;
      const fd = (gelu64(x + h) - gelu64(x - h)) / (2 * h);
      assert(Math.abs(fd - gelu64Grad(x)) < 1e-8, `x=${x}`);
    }
    for (const n of [1001, 1000]) {
      const x = spread(n, 3 * n);
      const dy = randomArray(n, 7 * n, 2);
      // GPU gradient vs central differences of the GPU forward.
      const h = 1 / 64;
      const xp = x.map((v) => v + h);
      const xm = x.map((v) => v - h);
      const { y: yp } = await run(gelu({ n }), { x: xp, y: nans(n) }, ["y"]);
      const { y: ym } = await run(gelu({ n }), { x: xm, y: nans(n) }, ["y"]);
      for (const accumulate of [false, true]) {
        const init = accumulate ? randomArray(n, 5, 3) : nans(n);
        const { dx } = await run(geluBackward({ n, accumulate }), {
          dy,
          x,
          dx: init,
        }, ["dx"]);
        for (let i = 0; i < n; i++) {
          const base = accumulate ? init[i] : 0;
          const exact = base + dy[i] * gelu64Grad(x[i]);
          assert(Math.abs(dx[i] - exact) < 2e-6, `x=${x[i]} acc ${accumulate}`);
          const fd = base + dy[i] * (yp[i] - ym[i]) / (2 * h);
          assert(Math.abs(dx[i] - fd) < 2e-4, `fd x=${x[i]}`);
        }
      }
    }
  },
});

/** Reference column sums. */
function refColumnSum(x: Float32Array, rows: number, cols: number) {
  const out = new Float64Array(cols);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) out[j] += x[i * cols + j];
  }
  return out;
}

Deno.test({
  name: "columnSum: one stage, two stages with scratch, accumulate, scale",
  ignore: !gpuTests,
  async fn() {
    const cases = [
      { rows: 37, cols: 45 },
      { rows: 1, cols: 3 },
      { rows: 3001, cols: 67, accumulate: true, scale: 0.5 },
      { rows: 2049, cols: 5, scale: -3 },
      { rows: 37, cols: 33, accumulate: true },
    ];
    let seed = 40;
    for (const c of cases) {
      const plan = columnSum(c);
      const twoStage = c.rows > 2048;
      assert.equal(plan.steps.length, twoStage ? 2 : 1);
      if (twoStage) {
        const chunks = plan.steps[0].spec.workgroups[1];
        assert(chunks > 1);
        assert.deepEqual(plan.scratch, {
          [COLUMN_SUM_SCRATCH]: chunks * c.cols,
        });
        assert.deepEqual(plan.steps[0].bind, ["x", COLUMN_SUM_SCRATCH]);
        assert.deepEqual(plan.steps[1].bind, [COLUMN_SUM_SCRATCH, "out"]);
      } else {
        assert.equal(plan.scratch, undefined);
      }
      const x = randomArray(c.rows * c.cols, seed++);
      const init = c.accumulate ? randomArray(c.cols, seed++) : nans(c.cols);
      const { out } = await run(plan, { x, out: init }, ["out"]);
      const ref = refColumnSum(x, c.rows, c.cols).map((v, j) =>
        (c.scale ?? 1) * v + (c.accumulate ? init[j] : 0)
      );
      const tol = 1e-6 * Math.sqrt(c.rows) * Math.abs(c.scale ?? 1) + 1e-6;
      assert(maxAbsDiff(out, ref) < tol, `${JSON.stringify(c)}`);
    }
    // Grids of the real sizes stay within limits and spread the rows.
    for (const cols of [64, 192, 3072]) {
      const plan = columnSum({ rows: 94_208, cols });
      const [tiles, chunks] = plan.steps[0].spec.workgroups;
      assert(tiles * chunks >= 1024 && chunks <= MAX_GRID_DIM, `${cols}`);
      assert.equal(plan.steps[1].spec.workgroups[1], 1);
    }
  },
});

/** Reference row softmax in float64. */
function refSoftmax(s: ArrayLike<number>, rows: number, cols: number) {
  const p = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    let m = -Infinity;
    for (let j = 0; j < cols; j++) m = Math.max(m, s[r * cols + j]);
    let z = 0;
    for (let j = 0; j < cols; j++) z += Math.exp(s[r * cols + j] - m);
    for (let j = 0; j < cols; j++) {
      p[r * cols + j] = Math.exp(s[r * cols + j] - m) / z;
    }
  }
  return p;
}

/** Scores with large offsets on some rows (overflow without the max). */
function scores(rows: number, cols: number, seed: number): Float32Array {
  const s = randomArray(rows * cols, seed, 4);
  for (let r = 0; r < rows; r += 3) {
    for (let j = 0; j < cols; j++) s[r * cols + j] += 95;
  }
  return s;
}

const SOFTMAX_SHAPES = [
  [37, 15],
  [29, 94],
  [13, 1],
  [11, 3],
  [7, 300],
  [300, 5],
] as const;

Deno.test({
  name: "softmaxRows: matches float64 softmax, stable for large scores",
  ignore: !gpuTests,
  async fn() {
    assert.deepEqual(softmaxLayout(94), { lanes: 32, per: 3 });
    assert.deepEqual(softmaxLayout(15), { lanes: 4, per: 4 });
    assert.deepEqual(softmaxLayout(1), { lanes: 1, per: 1 });
    let seed = 60;
    for (const [rows, cols] of SOFTMAX_SHAPES) {
      const s = scores(rows, cols, seed++);
      const { p } = await run(softmaxRows({ rows, cols }), {
        s,
        p: nans(rows * cols),
      }, ["p"]);
      const d = maxAbsDiff(p, refSoftmax(s, rows, cols));
      assert(d < 1e-6, `${rows}x${cols}: ${d}`);
    }
  },
});

Deno.test({
  name: "softmaxBackward: analytic with scale, finite differences",
  ignore: !gpuTests,
  async fn() {
    let seed = 80;
    for (const [rows, cols] of SOFTMAX_SHAPES) {
      const s = scores(rows, cols, seed++);
      const p = new Float32Array(refSoftmax(s, rows, cols));
      const dp = randomArray(rows * cols, seed++);
      for (const scale of [undefined, 0.125]) {
        const { ds } = await run(softmaxBackward({ rows, cols, scale }), {
          dp,
          p,
          ds: nans(rows * cols),
        }, ["ds"]);
        const ref = new Float64Array(rows * cols);
        for (let r = 0; r < rows; r++) {
          let dot = 0;
          for (let j = 0; j < cols; j++) {
            dot += dp[r * cols + j] * p[r * cols + j];
          }
          for (let j = 0; j < cols; j++) {
            const i = r * cols + j;
            ref[i] = (scale ?? 1) * p[i] * (dp[i] - dot);
          }
        }
        const d = maxAbsDiff(ds, ref);
        assert(d < 1e-6, `${rows}x${cols} scale ${scale}: ${d}`);
      }
    }
    // Finite differences of L(s) = Σ dp ⊙ softmax(s) in float64.
    const [rows, cols] = [5, 15];
    const s = Float64Array.from(randomArray(rows * cols, 3, 3));
    const p = new Float32Array(refSoftmax(s, rows, cols));
    const dp = randomArray(rows * cols, 4);
    const { ds } = await run(softmaxBackward({ rows, cols }), {
      dp,
      p,
      ds: nans(rows * cols),
    }, ["ds"]);
    const loss = (v: Float64Array): number => {
      const q = refSoftmax(v, rows, cols);
      let l = 0;
      for (let i = 0; i < q.length; i++) l += dp[i] * q[i];
      return l;
    };
    for (let i = 0; i < s.length; i++) {
      const h = 1e-6;
      const sp = s.slice();
      const sm = s.slice();
      sp[i] += h;
      sm[i] -= h;
      const fd = (loss(sp) - loss(sm)) / (2 * h);
      assert(Math.abs(ds[i] - fd) < 1e-5, `i=${i}: ${ds[i]} vs ${fd}`);
    }
  },
});

Deno.test({
  name: "meanRows / meanRowsBackward: odd and vec4 widths, accumulate",
  ignore: !gpuTests,
  async fn() {
    let seed = 90;
    for (const [batch, t, dim] of [[3, 7, 45], [2, 94, 64], [1, 1, 5]]) {
      const x = randomArray(batch * t * dim, seed++);
      const { y } = await run(meanRows({ batch, t, dim }), {
        x,
        y: nans(batch * dim),
      }, ["y"]);
      const ref = new Float64Array(batch * dim);
      for (let b = 0; b < batch; b++) {
        for (let s = 0; s < t; s++) {
          for (let d = 0; d < dim; d++) {
            ref[b * dim + d] += x[(b * t + s) * dim + d] / t;
          }
        }
      }
      assert(maxAbsDiff(y, ref) < 1e-6, `mean ${batch} ${t} ${dim}`);

      const dy = randomArray(batch * dim, seed++);
      for (const accumulate of [false, true]) {
        const init = accumulate
          ? randomArray(x.length, seed++)
          : nans(x.length);
        const { dx } = await run(
          meanRowsBackward({ batch, t, dim, accumulate }),
          { dy, dx: init },
          ["dx"],
        );
        const want = new Float64Array(x.length);
        for (let b = 0; b < batch; b++) {
          for (let s = 0; s < t; s++) {
            for (let d = 0; d < dim; d++) {
              const i = (b * t + s) * dim + d;
              want[i] = dy[b * dim + d] / t + (accumulate ? init[i] : 0);
            }
          }
        }
        assert(maxAbsDiff(dx, want) < 1e-6, `back ${batch} ${t} ${dim}`);
      }
    }
  },
});

Deno.test({
  name: "add / copy: assign, accumulate, scale (n odd and n % 4 == 0)",
  ignore: !gpuTests,
  async fn() {
    for (const n of [1001, 1000, 3]) {
      const a = randomArray(n, n + 1);
      const b = randomArray(n, n + 2);
      const init = randomArray(n, n + 3);
      for (const accumulate of [false, true]) {
        const { y } = await run(add({ n, accumulate }), {
          a,
          b,
          y: accumulate ? init : nans(n),
        }, ["y"]);
        const want = a.map((v, i) => v + b[i] + (accumulate ? init[i] : 0));
        assert(maxAbsDiff(y, want) < 1e-6, `add ${n} ${accumulate}`);
        for (const scale of [undefined, -2.5]) {
          const { y: z } = await run(copy({ n, accumulate, scale }), {
            x: a,
            y: accumulate ? init : nans(n),
          }, ["y"]);
          const w = Float64Array.from(
            a,
            (v, i) => (scale ?? 1) * v + (accumulate ? init[i] : 0),
          );
          assert(maxAbsDiff(z, w) < 1e-6, `copy ${n} ${accumulate} ${scale}`);
        }
      }
    }
  },
});
