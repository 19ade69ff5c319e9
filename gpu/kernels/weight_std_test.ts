/**
 * Tests of the weight standardisation kernels (`weight_std.ts`) against float64 references of `model/layers.ts` `standardizeKernel`; backward kernels are also checked against central
 * finite differences of the float64 forward.
 *
 * @module
 */
import { weightStdBackward, weightStdForward } from "./weight_std.ts";
import {
  add64,
  type Arr,
  assertClose,
  columnStats64,
  dot64,
  f32,
  gpuTest,
  numericGrad,
  randomArray,
  runPlan,
} from "../testing.ts";

function wsForwardRef(
  w: Arr,
  R: number,
  C: number,
  eps: number,
): { wh: Float64Array; stats: Float64Array } {
  const s = columnStats64(w, 1, R, C);
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

gpuTest("weightStdForward: per-column standardisation and stats", async (r) => {
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
    assertClose(out.wh, want.wh, `${what} wh`, offset ? 2e-3 : 1e-5);
    assertClose(out.stats, want.stats, `${what} stats`, offset ? 1e-4 : 1e-5);
  }
});

gpuTest(
  "weightStdBackward: analytic gradient, accumulation, finite differences",
  async (r) => {
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
        assertClose(out.dw, accumulate ? add64(dw0, want) : want, what);
        if (R === 37 && !accumulate) {
          const wd = Float64Array.from(w);
          const g = numericGrad(
            wd,
            () => dot64(dwh, wsForwardRef(wd, R, C, eps).wh),
            1e-6,
          );
          assertClose(out.dw, g, `${what} vs finite differences`, 2e-5);
        }
      }
    }
  },
);
