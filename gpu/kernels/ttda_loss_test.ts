/**
 * Tests of the TTDA loss kernel (`ttda_loss.ts`) against a float64
 * reference of `model/ttda_loss.ts`'s formulas and finite differences.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  assertClose,
  finiteDifference,
  gpuRuntime,
  gpuTests,
  randomArray,
  runPlan,
} from "../testing.ts";
import { ttdaLossKernel, type TtdaLossKernelOptions } from "./ttda_loss.ts";

/** float64 TTDA loss summed over views (reference §9). */
function ttdaLoss64(o: TtdaLossKernelOptions, z: ArrayLike<number>): number {
  const { rows, classes: n, perView: B, alpha, beta, gamma, q } = o;
  const p = new Float64Array(rows * n);
  for (let r = 0; r < rows; r++) {
    let mx = -Infinity;
    for (let c = 0; c < n; c++) mx = Math.max(mx, z[r * n + c]);
    let s = 0;
    for (let c = 0; c < n; c++) s += Math.exp(z[r * n + c] - mx);
    for (let c = 0; c < n; c++) p[r * n + c] = Math.exp(z[r * n + c] - mx) / s;
  }
  let total = 0;
  for (let v = 0; v < rows / B; v++) {
    let nm = 0;
    for (let c = 0; c < n; c++) {
      let s = 0;
      for (let b = 0; b < B; b++) s += p[((v * B + b) * n) + c] ** 2;
      nm -= Math.sqrt(s) / n;
    }
    let en = 0;
    let gen = 0;
    for (let b = 0; b < B; b++) {
      let sq = 0;
      for (let c = 0; c < n; c++) {
        const x = p[(v * B + b) * n + c];
        en -= x * Math.log(x + 1e-6) / B;
        sq += x ** q;
      }
      gen += (1 - sq) / (q - 1) / B;
    }
    if (alpha) total += alpha * nm;
    if (beta) total += beta * en;
    if (gamma) total += gamma * gen;
  }
  return total;
}

const CASES: TtdaLossKernelOptions[] = [
  { rows: 14, classes: 5, perView: 7, alpha: 1, beta: 0.5, gamma: 0.5, q: 1.1 },
  { rows: 6, classes: 35, perView: 3, alpha: 0.2, beta: 1, gamma: 0, q: 0.8 },
  { rows: 9, classes: 3, perView: 9, alpha: 0, beta: 1, gamma: 0.2, q: 1.1 },
  { rows: 300, classes: 13, perView: 150, alpha: 1, beta: 0, gamma: 0, q: 2 },
  { rows: 4, classes: 4, perView: 2, alpha: 0, beta: 0, gamma: 0.7, q: 0.8 },
];

for (const o of CASES) {
  Deno.test({
    name: `ttdaLossKernel ${JSON.stringify(o)}: loss and gradient`,
    ignore: !gpuTests,
    async fn() {
      const { rows, classes } = o;
      const logits = randomArray(rows * classes, 61 + rows, 2.5);
      const metrics0 = new Float32Array([1.5, 2, 3, 4]);
      const out = await runPlan(await gpuRuntime(), ttdaLossKernel(o), {
        logits,
        dlogits: new Float32Array(rows * classes),
        metrics: metrics0,
      }, ["dlogits", "metrics"]);
      const loss = ttdaLoss64(o, logits);
      assertClose(
        out.metrics,
        [1.5 + loss, 2, 3 + o.perView, 4],
        "metrics",
      );
      const want = new Float64Array(rows * classes);
      for (let i = 0; i < want.length; i++) {
        want[i] = finiteDifference((x) => ttdaLoss64(o, x), logits, i, 1e-5);
      }
      assertClose(out.dlogits, want, "dlogits", 2e-5);
      assert.ok(out.dlogits.some((g) => Math.abs(g) > 1e-4));
    },
  });
}

Deno.test("ttdaLossKernel refuses bad sizes and rates", () => {
  const ok = CASES[0];
  assert.throws(
    () => ttdaLossKernel({ ...ok, rows: 13 }),
    /Cannot build the TTDA loss kernel: rows 13 is not a multiple of perView 7/,
  );
  assert.throws(
    () => ttdaLossKernel({ ...ok, beta: -1 }),
    /beta must be a finite number ≥ 0, got -1/,
  );
  assert.throws(
    () => ttdaLossKernel({ ...ok, q: 1 }),
    /q must be a finite number other than 1, got 1/,
  );
  // q is not read when GEN is off.
  assert.equal(ttdaLossKernel({ ...ok, gamma: 0, q: 1 }).steps.length, 1);
  assert.equal(ttdaLossKernel({ ...ok, alpha: 0 }).scratch, undefined);
  assert.deepEqual(ttdaLossKernel(ok).scratch, { ttdaNorms: 10 });
});
