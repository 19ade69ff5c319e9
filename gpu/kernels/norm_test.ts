/**
 * Tests of the normalisation kernels against float64 JS references of
 * `model/layers.ts` (batchNorm, layerNorm, standardizeKernel) and of
 * `updateRunningStats`; backward kernels are also checked against central
 * finite differences of the float64 forward.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  batchNormBackward,
  batchNormEval,
  batchNormForward,
  layerNormBackward,
  layerNormForward,
  runningStatsUpdate,
  weightStdBackward,
  weightStdForward,
} from "./norm.ts";
import {
  gpuTests,
  maxAbsDiff,
  randomArray,
  runPlan,
  testRuntime,
} from "../testing.ts";
import type { Runtime } from "../runtime.ts";

type Arr = ArrayLike<number>;

const rt = async (): Promise<Runtime> => (await testRuntime())!;

/** Asserts max |got − want| ≤ tol·max(1, max |want|). */
function close(got: Arr, want: Arr, what: string, tol = 1e-5): void {
  let scale = 1;
  for (let i = 0; i < want.length; i++) {
    scale = Math.max(scale, Math.abs(want[i]));
  }
  const d = maxAbsDiff(got, want);
  assert.ok(
    d <= tol * scale,
    `${what}: max abs diff ${d} > ${tol * scale} (scale ${scale})`,
  );
}

const f32 = (a: Arr): Float32Array => Float32Array.from(a);

/** γ in [0.5, 1.5), β in [-0.5, 0.5): `[2n]`. */
function gammaBeta(n: number, seed: number): Float32Array {
  const g = randomArray(n, seed, 0.5);
  const b = randomArray(n, seed + 1, 0.5);
  const out = new Float32Array(2 * n);
  for (let i = 0; i < n; i++) {
    out[i] = 1 + g[i];
    out[n + i] = b[i];
  }
  return out;
}

// ---- float64 references ---------------------------------------------------------

/** Per-group column mean and biased variance of `[G·R, C]` (two passes). */
function colStats(x: Arr, G: number, R: number, C: number): Float64Array {
  const s = new Float64Array(G * 2 * C);
  for (let g = 0; g < G; g++) {
    for (let c = 0; c < C; c++) {
      let m = 0;
      for (let r = 0; r < R; r++) m += x[(g * R + r) * C + c];
      m /= R;
      let v = 0;
      for (let r = 0; r < R; r++) v += (x[(g * R + r) * C + c] - m) ** 2;
      s[g * 2 * C + c] = m;
      s[g * 2 * C + C + c] = v / R;
    }
  }
  return s;
}

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
  const stats = colStats(x, G, R, C);
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
  const stats = colStats(x, G, R, C);
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

function lnForwardRef(
  x: Arr,
  gb: Arr,
  rows: number,
  D: number,
  eps: number,
): { y: Float64Array; stats: Float64Array } {
  const y = new Float64Array(rows * D);
  const stats = new Float64Array(rows * 2);
  for (let r = 0; r < rows; r++) {
    let m = 0;
    for (let d = 0; d < D; d++) m += x[r * D + d];
    m /= D;
    let v = 0;
    for (let d = 0; d < D; d++) v += (x[r * D + d] - m) ** 2;
    const rs = 1 / Math.sqrt(v / D + eps);
    for (let d = 0; d < D; d++) {
      y[r * D + d] = (x[r * D + d] - m) * rs * gb[d] + gb[D + d];
    }
    stats[2 * r] = m;
    stats[2 * r + 1] = rs;
  }
  return { y, stats };
}

function lnBackwardRef(
  dy: Arr,
  x: Arr,
  gb: Arr,
  rows: number,
  D: number,
  eps: number,
): { dx: Float64Array; dgb: Float64Array } {
  const { stats } = lnForwardRef(x, gb, rows, D, eps);
  const dx = new Float64Array(rows * D);
  const dgb = new Float64Array(2 * D);
  for (let r = 0; r < rows; r++) {
    const m = stats[2 * r];
    const rs = stats[2 * r + 1];
    let s1 = 0;
    let s2 = 0;
    for (let d = 0; d < D; d++) {
      const xh = (x[r * D + d] - m) * rs;
      const g = dy[r * D + d] * gb[d];
      s1 += g;
      s2 += g * xh;
      dgb[d] += dy[r * D + d] * xh;
      dgb[D + d] += dy[r * D + d];
    }
    for (let d = 0; d < D; d++) {
      const xh = (x[r * D + d] - m) * rs;
      const g = dy[r * D + d] * gb[d];
      dx[r * D + d] = rs * (g - s1 / D - xh * s2 / D);
    }
  }
  return { dx, dgb };
}

function wsForwardRef(
  w: Arr,
  R: number,
  C: number,
  eps: number,
): { wh: Float64Array; stats: Float64Array } {
  const s = colStats(w, 1, R, C);
  const wh = new Float64Array(R * C);
  const stats = new Float64Array(2 * C);
  for (let c = 0; c < C; c++) {
    const rs = 1 / Math.sqrt(s[C + c] + eps);
    stats[2 * c] = s[c];
    stats[2 * c + 1] = rs;
    for (let r = 0; r < R; r++) wh[r * C + c] = (w[r * C + c] - s[c]) * rs;
  }
  return { wh, stats };
}

function wsBackwardRef(
  dwh: Arr,
  w: Arr,
  R: number,
  C: number,
  eps: number,
): Float64Array {
  const { wh, stats } = wsForwardRef(w, R, C, eps);
  const dw = new Float64Array(R * C);
  for (let c = 0; c < C; c++) {
    let s1 = 0;
    let s2 = 0;
    for (let r = 0; r < R; r++) {
      s1 += dwh[r * C + c];
      s2 += dwh[r * C + c] * wh[r * C + c];
    }
    for (let r = 0; r < R; r++) {
      const i = r * C + c;
      dw[i] = stats[2 * c + 1] * (dwh[i] - s1 / R - wh[i] * s2 / R);
    }
  }
  return dw;
}

/** Central finite differences of `loss` with respect to every entry of `p`. */
function numericGrad(
  p: Float64Array,
  loss: () => number,
  h = 1e-5,
): Float64Array {
  const g = new Float64Array(p.length);
  for (let i = 0; i < p.length; i++) {
    const v = p[i];
    p[i] = v + h;
    const up = loss();
    p[i] = v - h;
    const down = loss();
    p[i] = v;
    g[i] = (up - down) / (2 * h);
  }
  return g;
}

const dot = (a: Arr, b: Arr): number => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
};

const add = (a: Arr, b: Arr): Float64Array =>
  Float64Array.from(a, (v, i) => v + b[i]);

// ---- BatchNorm --------------------------------------------------------------------

Deno.test({
  name:
    "batchNormForward: per-group statistics, residual and ReLU, every chunking",
  ignore: !gpuTests,
  fn: async () => {
    const r = await rt();
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
          close(out.stats, want.stats, `${what} stats`);
          close(out.y, want.y, `${what} y`);
        }
      }
    }
  },
});

Deno.test({
  name: "batchNormForward: variance is safe for a large mean",
  ignore: !gpuTests,
  fn: async () => {
    const r = await rt();
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
    const want = colStats(x, G, R, C);
    for (let g = 0; g < G; g++) {
      for (let c = 0; c < C; c++) {
        const v = want[g * 2 * C + C + c];
        const got = out.stats[g * 2 * C + C + c];
        assert.ok(Math.abs(got - v) <= 1e-3 * v, `var ${got} vs ${v}`);
      }
    }
  },
});

Deno.test({
  name: "batchNormBackward: every option against the analytic float64 gradient",
  ignore: !gpuTests,
  fn: async () => {
    const r = await rt();
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
            const stats = f32(colStats(x, G, R, C));
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
            close(
              out.dx,
              accumulateDx ? add(dx0, want.dx) : want.dx,
              `${what} dx`,
            );
            close(out.dgb, add(dgb0, want.dgb), `${what} dgb`);
            if (residualGrad) close(out.dz, want.dz, `${what} dz`);
          }
        }
      }
    }
  },
});

Deno.test({
  name:
    "batchNormBackward: matches finite differences of the fused forward (ReLU, residual)",
  ignore: !gpuTests,
  fn: async () => {
    const r = await rt();
    const [G, R, C, eps] = [3, 37, 19, 1e-3];
    const n = G * R * C;
    const x32 = randomArray(n, 41, 1.5);
    const gb32 = gammaBeta(C, 42);
    const r32 = randomArray(n, 43, 0.5);
    const dy = randomArray(n, 44);
    const x = Float64Array.from(x32);
    const gb = Float64Array.from(gb32);
    const res = Float64Array.from(r32);
    const loss = () => dot(dy, bnForwardRef(x, gb, res, G, R, C, eps, true).y);
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
    close(out.dx, gx, "dx vs finite differences", 2e-5);
    close(out.dgb, ggb, "dgb vs finite differences", 2e-5);
    close(out.dz, gr, "dz vs finite differences", 2e-5);
  },
});

Deno.test({
  name: "batchNormEval: running statistics, residual and ReLU",
  ignore: !gpuTests,
  fn: async () => {
    const r = await rt();
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
          let v =
            (x[i] - running[c]) * gb[c] / Math.sqrt(running[C + c] + eps) +
            gb[C + c];
          if (residual) v += res[i];
          want[i] = relu ? Math.max(v, 0) : v;
        }
        close(out.y, want, `eval relu ${relu} res ${residual}`);
      }
    }
  },
});

Deno.test({
  name: "runningStatsUpdate: groups in order, unbiased variance",
  ignore: !gpuTests,
  fn: async () => {
    const r = await rt();
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
      close(out.running, want, `running count ${count}`);
    }
  },
});

// ---- LayerNorm --------------------------------------------------------------------

Deno.test({
  name: "layerNormForward: rows and stats for narrow and wide rows",
  ignore: !gpuTests,
  fn: async () => {
    const r = await rt();
    const eps = 1e-6;
    for (const [rows, D] of [[37, 19], [7, 301], [3, 45], [5, 768]] as const) {
      const x = randomArray(rows * D, 71 + D, 2);
      for (let i = 0; i < x.length; i++) x[i] += Math.floor(i / D) * 0.5;
      const gb = gammaBeta(D, 72);
      const out = await runPlan(
        r,
        layerNormForward({ rows, dim: D, eps }),
        {
          x,
          gb,
          y: new Float32Array(rows * D),
          stats: new Float32Array(rows * 2),
        },
        ["y", "stats"],
      );
      const want = lnForwardRef(x, gb, rows, D, eps);
      close(out.y, want.y, `ln rows ${rows} dim ${D} y`);
      close(out.stats, want.stats, `ln rows ${rows} dim ${D} stats`);
    }
  },
});

Deno.test({
  name:
    "layerNormBackward: analytic gradient, accumulation and partial chunking",
  ignore: !gpuTests,
  fn: async () => {
    const r = await rt();
    const eps = 1e-6;
    for (
      const [rows, D, chunkRows] of [
        [37, 19, undefined],
        [37, 19, 3],
        [7, 301, 2],
        [5, 768, undefined],
      ] as const
    ) {
      for (const accumulateDx of [false, true]) {
        const x = randomArray(rows * D, 81, 2);
        const gb = gammaBeta(D, 82);
        const stats = f32(lnForwardRef(x, gb, rows, D, eps).stats);
        const dy = randomArray(rows * D, 83);
        const dx0 = randomArray(rows * D, 84);
        const dgb0 = randomArray(2 * D, 85);
        const out = await runPlan(
          r,
          layerNormBackward({ rows, dim: D, accumulateDx, chunkRows }),
          { dy, x, gb, stats, dx: dx0, dgb: dgb0 },
          ["dx", "dgb"],
        );
        const want = lnBackwardRef(dy, x, gb, rows, D, eps);
        const what =
          `ln bwd rows ${rows} dim ${D} chunk ${chunkRows} acc ${accumulateDx}`;
        close(out.dx, accumulateDx ? add(dx0, want.dx) : want.dx, `${what} dx`);
        close(out.dgb, add(dgb0, want.dgb), `${what} dgb`);
      }
    }
  },
});

Deno.test({
  name: "layerNormBackward: matches finite differences of the forward",
  ignore: !gpuTests,
  fn: async () => {
    const r = await rt();
    const [rows, D, eps] = [11, 37, 1e-6];
    const x32 = randomArray(rows * D, 91, 2);
    const gb32 = gammaBeta(D, 92);
    const dy = randomArray(rows * D, 93);
    const x = Float64Array.from(x32);
    const gb = Float64Array.from(gb32);
    const loss = () => dot(dy, lnForwardRef(x, gb, rows, D, eps).y);
    const gx = numericGrad(x, loss);
    const ggb = numericGrad(gb, loss);
    const out = await runPlan(
      r,
      layerNormBackward({ rows, dim: D }),
      {
        dy,
        x: x32,
        gb: gb32,
        stats: f32(lnForwardRef(x32, gb32, rows, D, eps).stats),
        dx: new Float32Array(rows * D),
        dgb: new Float32Array(2 * D),
      },
      ["dx", "dgb"],
    );
    close(out.dx, gx, "dx vs finite differences", 2e-5);
    close(out.dgb, ggb, "dgb vs finite differences", 2e-5);
  },
});

// ---- weight standardisation -------------------------------------------------------

Deno.test({
  name: "weightStdForward: per-column standardisation and stats",
  ignore: !gpuTests,
  fn: async () => {
    const r = await rt();
    const eps = 1e-5;
    for (
      const [R, C, chunkRows, offset] of [
        [37, 19, undefined, 0],
        [101, 45, 7, 0],
        [301, 3, undefined, 50],
      ] as const
    ) {
      const w = randomArray(R * C, 101 + C, 0.1);
      for (let i = 0; i < w.length; i++) w[i] += offset + (i % C) * 0.01;
      const out = await runPlan(
        r,
        weightStdForward({ rows: R, cols: C, eps, chunkRows }),
        { w, wh: new Float32Array(R * C), stats: new Float32Array(2 * C) },
        ["wh", "stats"],
      );
      const want = wsForwardRef(w, R, C, eps);
      const what = `wstd R${R} C${C} chunk ${chunkRows} offset ${offset}`;
      // Standardised values carry the float32 rounding of w relative to its spread.
      close(out.wh, want.wh, `${what} wh`, offset ? 2e-3 : 1e-5);
      close(out.stats, want.stats, `${what} stats`, offset ? 1e-4 : 1e-5);
    }
  },
});

Deno.test({
  name:
    "weightStdBackward: analytic gradient, accumulation, finite differences",
  ignore: !gpuTests,
  fn: async () => {
    const r = await rt();
    const eps = 1e-5;
    for (
      const [R, C, chunkRows] of [[37, 19, undefined], [101, 45, 7]] as const
    ) {
      for (const accumulate of [false, true]) {
        const w = randomArray(R * C, 111, 0.1);
        const fwd = wsForwardRef(w, R, C, eps);
        const dwh = randomArray(R * C, 112);
        const dw0 = randomArray(R * C, 113);
        const out = await runPlan(
          r,
          weightStdBackward({ rows: R, cols: C, accumulate, chunkRows }),
          { dwh, wh: f32(fwd.wh), stats: f32(fwd.stats), dw: dw0 },
          ["dw"],
        );
        const want = wsBackwardRef(dwh, w, R, C, eps);
        const what =
          `wstd bwd R${R} C${C} chunk ${chunkRows} acc ${accumulate}`;
        // dw is of order rstd ≈ 17: compare relative to that scale.
        close(out.dw, accumulate ? add(dw0, want) : want, what);
        if (R === 37 && !accumulate) {
          const wd = Float64Array.from(w);
          const g = numericGrad(
            wd,
            () => dot(dwh, wsForwardRef(wd, R, C, eps).wh),
            1e-6,
          );
          close(out.dw, g, `${what} vs finite differences`, 2e-5);
        }
      }
    }
  },
});
