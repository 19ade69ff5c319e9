/**
 * Tests of the BatchNorm kernels (`batch_norm.ts`) against float64 references of `model/layers.ts` `batchNorm` and `updateRunningStats`; backward kernels are also checked against central
 * finite differences of the float64 forward.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  batchNormBackward,
  batchNormEval,
  batchNormForward,
  runningStatsUpdate,
} from "./batch_norm.ts";
import {
  add64,
  type Arr,
  assertClose,
  columnStats64,
  dot64,
  f32,
  gammaBeta,
  gpuTest,
  numericGrad,
  randomArray,
  runPlan,
} from "../testing.ts";

function bnForwardRef(
  x: Arr,
  gb: Arr,
  r: Arr | undefined,
  G: number,
  R: number,
  C: number,
  eps: number,
  relu: boolean,
): { y: Float64Array; stats: Float64Array } {
  const stats = columnStats64(x, G, R, C);
  const y = new Float64Array(G * R * C);
  for (let i = 0; i < y.length; i++) {
    const c = i % C;
    const g = Math.floor(i / (R * C));
    const m = stats[g * 2 * C + c];
    const v = stats[g * 2 * C + C + c];
    let o = (x[i] - m) * gb[c] / Math.sqrt(v + eps) + gb[C + c];
    if (r) o += r[i];
    y[i] = relu ? Math.max(o, 0) : o;
  }
  return { y, stats };
}

/** The analytic BatchNorm backward (dx, dγβ, dz) in float64. */
function bnBackwardRef(
  dy: Arr,
  y: Arr,
  x: Arr,
  gb: Arr,
  G: number,
  R: number,
  C: number,
  eps: number,
  relu: boolean,
): { dx: Float64Array; dgb: Float64Array; dz: Float64Array } {
  const stats = columnStats64(x, G, R, C);
  const n = G * R * C;
  const dz = new Float64Array(n);
  for (let i = 0; i < n; i++) dz[i] = relu ? (y[i] > 0 ? dy[i] : 0) : dy[i];
  const dx = new Float64Array(n);
  const dgb = new Float64Array(2 * C);
  for (let g = 0; g < G; g++) {
    for (let c = 0; c < C; c++) {
      const m = stats[g * 2 * C + c];
      const rs = 1 / Math.sqrt(stats[g * 2 * C + C + c] + eps);
      let sa = 0;
      let sb = 0;
      for (let r = 0; r < R; r++) {
        const i = (g * R + r) * C + c;
        sa += dz[i] * (x[i] - m) * rs;
        sb += dz[i];
      }
      dgb[c] += sa;
      dgb[C + c] += sb;
      for (let r = 0; r < R; r++) {
        const i = (g * R + r) * C + c;
        const xh = (x[i] - m) * rs;
        dx[i] = gb[c] * rs * (dz[i] - sb / R - xh * sa / R);
      }
    }
  }
  return { dx, dgb, dz };
}

gpuTest(
  "batchNormForward: per-group statistics, residual and ReLU, every chunking",
  async (r) => {
    const eps = 1e-5;
    for (
      const [k, [G, R, C, chunkRows]] of ([
        [3, 37, 19, undefined],
        [3, 37, 19, 5],
        [2, 101, 45, undefined],
        [1, 26, 33, 1],
      ] as const).entries()
    ) {
      for (const relu of [false, true]) {
        for (const residual of [false, true]) {
          // Every option on the first shape; none and all on the others.
          if (k > 0 && relu !== residual) continue;
          const x = randomArray(G * R * C, 11 + R, 2);
          for (let i = 0; i < x.length; i++) x[i] += (i % C) * 0.25; // channel offsets
          const gb = gammaBeta(C, 5);
          const res = randomArray(G * R * C, 7);
          const plan = batchNormForward({
            groups: G,
            rows: R,
            channels: C,
            eps,
            relu,
            residual,
            chunkRows,
          });
          const out = await runPlan(
            r,
            plan,
            {
              x,
              gb,
              ...(residual ? { r: res } : {}),
              y: new Float32Array(G * R * C),
              stats: new Float32Array(G * 2 * C),
            },
            ["y", "stats"],
          );
          const want = bnForwardRef(
            x,
            gb,
            residual ? res : undefined,
            G,
            R,
            C,
            eps,
            relu,
          );
          const what =
            `G${G} R${R} C${C} chunk ${chunkRows} relu ${relu} res ${residual}`;
          assertClose(out.stats, want.stats, `${what} stats`);
          assertClose(out.y, want.y, `${what} y`);
        }
      }
    }
  },
);

gpuTest("batchNormForward: variance is safe for a large mean", async (r) => {
  const [G, R, C] = [2, 301, 5];
  const noise = randomArray(G * R * C, 3, 0.01);
  const x = Float32Array.from(noise, (v) => 1000 + v);
  const out = await runPlan(
    r,
    batchNormForward({ groups: G, rows: R, channels: C, eps: 1e-5 }),
    {
      x,
      gb: gammaBeta(C, 1),
      y: new Float32Array(G * R * C),
      stats: new Float32Array(G * 2 * C),
    },
    ["stats"],
  );
  const want = columnStats64(x, G, R, C);
  for (let g = 0; g < G; g++) {
    for (let c = 0; c < C; c++) {
      const v = want[g * 2 * C + C + c];
      const got = out.stats[g * 2 * C + C + c];
      assert.ok(Math.abs(got - v) <= 1e-3 * v, `var ${got} vs ${v}`);
    }
  }
});

gpuTest(
  "batchNormBackward: every option against the analytic float64 gradient",
  async (r) => {
    const eps = 1e-3;
    for (
      const [k, [G, R, C, chunkRows]] of ([
        [3, 37, 19, undefined],
        [3, 37, 19, 6],
        [2, 101, 45, undefined],
      ] as const).entries()
    ) {
      for (const relu of [false, true]) {
        for (const residualGrad of [false, true]) {
          for (const accumulateDx of [false, true]) {
            // Every option on the first shape; none and all on the others.
            if (k > 0 && !(relu === residualGrad && relu === accumulateDx)) {
              continue;
            }
            const n = G * R * C;
            const x = randomArray(n, 21, 1.5);
            const gb = gammaBeta(C, 9);
            const y = f32(bnForwardRef(x, gb, undefined, G, R, C, eps, true).y);
            const stats = f32(columnStats64(x, G, R, C));
            const dy = randomArray(n, 33);
            const dx0 = randomArray(n, 34);
            const dgb0 = randomArray(2 * C, 35);
            const plan = batchNormBackward({
              groups: G,
              rows: R,
              channels: C,
              eps,
              relu,
              residualGrad,
              accumulateDx,
              chunkRows,
            });
            const out = await runPlan(
              r,
              plan,
              {
                dy,
                ...(relu ? { y } : {}),
                x,
                stats,
                gb,
                dx: dx0,
                dgb: dgb0,
                ...(residualGrad ? { dz: new Float32Array(n) } : {}),
              },
              ["dx", "dgb", ...(residualGrad ? ["dz"] : [])],
            );
            const want = bnBackwardRef(dy, y, x, gb, G, R, C, eps, relu);
            const what =
              `G${G} R${R} C${C} chunk ${chunkRows} relu ${relu} dz ${residualGrad} acc ${accumulateDx}`;
            assertClose(
              out.dx,
              accumulateDx ? add64(dx0, want.dx) : want.dx,
              `${what} dx`,
            );
            assertClose(out.dgb, add64(dgb0, want.dgb), `${what} dgb`);
            if (residualGrad) assertClose(out.dz, want.dz, `${what} dz`);
          }
        }
      }
    }
  },
);

gpuTest(
  "batchNormBackward: matches finite differences of the fused forward (ReLU, residual)",
  async (r) => {
    const [G, R, C, eps] = [3, 37, 19, 1e-3];
    const n = G * R * C;
    const x32 = randomArray(n, 41, 1.5);
    const gb32 = gammaBeta(C, 42);
    const r32 = randomArray(n, 43, 0.5);
    const dy = randomArray(n, 44);
    const x = Float64Array.from(x32);
    const gb = Float64Array.from(gb32);
    const res = Float64Array.from(r32);
    const loss = () =>
      dot64(dy, bnForwardRef(x, gb, res, G, R, C, eps, true).y);
    // A small step, and no pre-activation near the ReLU kink within it.
    const h = 1e-7;
    const pre = bnForwardRef(x, gb, res, G, R, C, eps, false).y;
    assert.ok(pre.every((v) => Math.abs(v) > 100 * h));
    const gx = numericGrad(x, loss, h);
    const ggb = numericGrad(gb, loss, h);
    const gr = numericGrad(res, loss, h);
    const fwd = bnForwardRef(x, gb, res, G, R, C, eps, true);
    const out = await runPlan(
      r,
      batchNormBackward({
        groups: G,
        rows: R,
        channels: C,
        eps,
        relu: true,
        residualGrad: true,
        chunkRows: 8,
      }),
      {
        dy,
        y: f32(fwd.y),
        x: x32,
        stats: f32(fwd.stats),
        gb: gb32,
        dx: new Float32Array(n),
        dgb: new Float32Array(2 * C),
        dz: new Float32Array(n),
      },
      ["dx", "dgb", "dz"],
    );
    assertClose(out.dx, gx, "dx vs finite differences", 2e-5);
    assertClose(out.dgb, ggb, "dgb vs finite differences", 2e-5);
    assertClose(out.dz, gr, "dz vs finite differences", 2e-5);
  },
);

gpuTest("batchNormEval: running statistics, residual and ReLU", async (r) => {
  const [R, C, eps] = [37, 19, 1e-5];
  const x = randomArray(R * C, 51, 2);
  const gb = gammaBeta(C, 52);
  const running = new Float32Array(2 * C);
  const rv = randomArray(C, 53);
  for (let c = 0; c < C; c++) {
    running[c] = rv[c];
    running[C + c] = 0.5 + rv[c] * rv[c];
  }
  const res = randomArray(R * C, 54);
  for (const relu of [false, true]) {
    for (const residual of [false, true]) {
      const out = await runPlan(
        r,
        batchNormEval({ rows: R, channels: C, eps, relu, residual }),
        {
          x,
          gb,
          running,
          ...(residual ? { r: res } : {}),
          y: new Float32Array(R * C),
        },
        ["y"],
      );
      const want = new Float64Array(R * C);
      for (let i = 0; i < want.length; i++) {
        const c = i % C;
        let v = (x[i] - running[c]) * gb[c] / Math.sqrt(running[C + c] + eps) +
          gb[C + c];
        if (residual) v += res[i];
        want[i] = relu ? Math.max(v, 0) : v;
      }
      assertClose(out.y, want, `eval relu ${relu} res ${residual}`);
    }
  }
});

gpuTest("runningStatsUpdate: groups in order, unbiased variance", async (r) => {
  const [G, C, momentum] = [3, 19, 0.1];
  const stats = randomArray(G * 2 * C, 61);
  for (let g = 0; g < G; g++) {
    for (let c = 0; c < C; c++) stats[g * 2 * C + C + c] **= 2;
  }
  const running0 = randomArray(2 * C, 62);
  for (let c = 0; c < C; c++) running0[C + c] = 1 + running0[C + c] ** 2;
  for (const count of [37, 1]) {
    const out = await runPlan(
      r,
      runningStatsUpdate({ groups: G, channels: C, momentum, count }),
      { stats, running: running0 },
      ["running"],
    );
    const want = Float64Array.from(running0);
    const unbiased = count > 1 ? count / (count - 1) : 1;
    for (let g = 0; g < G; g++) {
      for (let c = 0; c < C; c++) {
        want[c] = (1 - momentum) * want[c] + momentum * stats[g * 2 * C + c];
        want[C + c] = (1 - momentum) * want[C + c] +
          momentum * unbiased * stats[g * 2 * C + C + c];
      }
    }
    assertClose(out.running, want, `running count ${count}`);
  }
});
