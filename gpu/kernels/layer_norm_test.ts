/**
 * Tests of the LayerNorm kernels (`layer_norm.ts`) against float64 references of `model/layers.ts` `layerNorm`; backward kernels are also checked against central
 * finite differences of the float64 forward.
 *
 * @module
 */
import { layerNormBackward, layerNormForward } from "./layer_norm.ts";
import {
  add64,
  type Arr,
  assertClose,
  dot64,
  f32,
  gammaBeta,
  gpuTest,
  numericGrad,
  randomArray,
  runPlan,
} from "../testing.ts";

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

gpuTest(
  "layerNormForward: rows and stats for narrow and wide rows",
  async (r) => {
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
      assertClose(out.y, want.y, `ln rows ${rows} dim ${D} y`);
      assertClose(out.stats, want.stats, `ln rows ${rows} dim ${D} stats`);
    }
  },
);

gpuTest(
  "layerNormBackward: analytic gradient, accumulation and partial chunking",
  async (r) => {
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
        assertClose(
          out.dx,
          accumulateDx ? add64(dx0, want.dx) : want.dx,
          `${what} dx`,
        );
        assertClose(out.dgb, add64(dgb0, want.dgb), `${what} dgb`);
      }
    }
  },
);

gpuTest(
  "layerNormBackward: matches finite differences of the forward",
  async (r) => {
    const [rows, D, eps] = [11, 37, 1e-6];
    const x32 = randomArray(rows * D, 91, 2);
    const gb32 = gammaBeta(D, 92);
    const dy = randomArray(rows * D, 93);
    const x = Float64Array.from(x32);
    const gb = Float64Array.from(gb32);
    const loss = () => dot64(dy, lnForwardRef(x, gb, rows, D, eps).y);
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
    assertClose(out.dx, gx, "dx vs finite differences", 2e-5);
    assertClose(out.dgb, ggb, "dgb vs finite differences", 2e-5);
  },
);
