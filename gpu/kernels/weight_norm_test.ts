/**
 * Tests of the weight-normalised fc3 (`weight_norm.ts`) against a float64 reference and finite differences.
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
import { weightNormBackward, weightNormForward } from "./weight_norm.ts";

function weightNormRef(
  ins: number,
  outs: number,
  g: ArrayLike<number>,
  v: ArrayLike<number>,
): { w: Float64Array; norms: Float64Array } {
  const norms = new Float64Array(outs);
  for (let j = 0; j < outs; j++) {
    let s = 0;
    for (let i = 0; i < ins; i++) s += v[i * outs + j] ** 2;
    norms[j] = Math.sqrt(s);
  }
  const w = new Float64Array(ins * outs);
  for (let i = 0; i < ins; i++) {
    for (let j = 0; j < outs; j++) {
      w[i * outs + j] = g[j] * v[i * outs + j] / norms[j];
    }
  }
  return { w, norms };
}

for (const [ins, outs] of [[19, 5], [300, 3]]) {
  Deno.test({
    name:
      `weightNorm forward + backward (in ${ins}, out ${outs}), finite differences`,
    ignore: !gpuTests,
    async fn() {
      const o = { in: ins, out: outs };
      const g = randomArray(outs, 31, 2);
      const v = randomArray(ins * outs, 32);
      const dw = randomArray(ins * outs, 33); // L = Σ w ⊙ dw
      const f = await runPlan(await gpuRuntime(), weightNormForward(o), {
        g,
        v,
        w: new Float32Array(ins * outs),
        norms: new Float32Array(outs),
      }, ["w", "norms"]);
      const ref = weightNormRef(ins, outs, g, v);
      assertClose(f.w, ref.w, "w");
      assertClose(f.norms, ref.norms, "norms");

      const dg0 = randomArray(outs, 34);
      const dv0 = randomArray(ins * outs, 35);
      const plan = weightNormBackward(o);
      assert.deepEqual(plan.steps.map((s) => s.bind), [
        ["dw", "v", "norms", "dg"],
        ["dw", "g", "v", "norms", "dv"],
      ]);
      const b = await runPlan(await gpuRuntime(), plan, {
        dw,
        g,
        v,
        norms: f.norms,
        dg: dg0,
        dv: dv0,
      }, ["dg", "dv"]);
      // Analytic reference.
      const dg = Float64Array.from(dg0);
      const dv = Float64Array.from(dv0);
      for (let j = 0; j < outs; j++) {
        let dot = 0;
        for (let i = 0; i < ins; i++) dot += dw[i * outs + j] * v[i * outs + j];
        const n = ref.norms[j];
        dg[j] += dot / n;
        for (let i = 0; i < ins; i++) {
          const at = i * outs + j;
          dv[at] += g[j] / n * (dw[at] - v[at] * dot / (n * n));
        }
      }
      assertClose(b.dg, dg, "dg");
      assertClose(b.dv, dv, "dv");
      // Finite differences of L(g, v) = Σ w(g, v) ⊙ dw.
      const loss = (gg: ArrayLike<number>, vv: ArrayLike<number>) => {
        const { w } = weightNormRef(ins, outs, gg, vv);
        let s = 0;
        for (let i = 0; i < w.length; i++) s += w[i] * dw[i];
        return s;
      };
      for (let j = 0; j < outs; j++) {
        const num = finiteDifference((x) => loss(x, v), g, j);
        assert.ok(Math.abs(b.dg[j] - dg0[j] - num) < 1e-4, `dg[${j}]`);
      }
      for (const at of [0, 7, ins * outs - 1, (ins >> 1) * outs + 1]) {
        const num = finiteDifference((x) => loss(g, x), v, at);
        assert.ok(
          Math.abs(b.dv[at] - dv0[at] - num) < 1e-4,
          `dv[${at}]: ${b.dv[at] - dv0[at]} vs ${num}`,
        );
      }
    },
  });
}
