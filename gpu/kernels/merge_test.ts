/**
 * Tests of the fce head's merge conv (`merge.ts`) against a float64 reference and finite differences.
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
import { mergeBackward, mergeForward, type MergeOptions } from "./merge.ts";

function mergeRef(
  o: MergeOptions,
  z: ArrayLike<number>,
  w: ArrayLike<number>,
  bias: number,
): Float64Array {
  const { batch, sequence, dim, kernel, positions } = o;
  const C = positions.length;
  const half = (kernel - 1) / 2;
  const m = new Float64Array(batch * dim);
  for (let b = 0; b < batch; b++) {
    for (let i = 0; i < dim; i++) {
      let acc = bias;
      for (let j = 0; j < kernel; j++) {
        const t = i + j - half;
        if (t < 0 || t >= dim) continue;
        for (let c = 0; c < C; c++) {
          acc += w[j * C + c] * z[(b * sequence + positions[c]) * dim + t];
        }
      }
      m[b * dim + i] = acc;
    }
  }
  return m;
}

const MERGE_CASES: MergeOptions[] = [
  { batch: 3, sequence: 6, dim: 11, positions: [0, 5], kernel: 5 },
  { batch: 2, sequence: 4, dim: 9, positions: [2], kernel: 3 },
  { batch: 2, sequence: 3, dim: 5, positions: [1, 1, 0], kernel: 7 },
];

for (const o of MERGE_CASES) {
  Deno.test({
    name: `merge forward + backward ${JSON.stringify(o)}, finite differences`,
    ignore: !gpuTests,
    async fn() {
      const { batch, sequence, dim, kernel } = o;
      const C = o.positions.length;
      const z = randomArray(batch * sequence * dim, 41);
      const w = randomArray(kernel * C, 42);
      const bias = randomArray(1, 43);
      const f = await runPlan(await gpuRuntime(), mergeForward(o), {
        z,
        w,
        bias,
        m: new Float32Array(batch * dim),
      }, ["m"]);
      assertClose(f.m, mergeRef(o, z, w, bias[0]), "m");

      const dm = randomArray(batch * dim, 44); // L = Σ m ⊙ dm
      const dz0 = randomArray(batch * sequence * dim, 45);
      const dw0 = randomArray(kernel * C, 46);
      const dbias0 = new Float32Array([0.25]);
      const plan = mergeBackward(o);
      assert.deepEqual(plan.steps.map((s) => s.bind), [
        ["dm", "w", "dz"],
        ["dm", "z", "dw"],
        ["dm", "dbias"],
      ]);
      const b = await runPlan(await gpuRuntime(), plan, {
        dm,
        w,
        z,
        dz: dz0,
        dw: dw0,
        dbias: dbias0,
      }, ["dz", "dw", "dbias"]);
      const loss = (zz: ArrayLike<number>, ww: ArrayLike<number>, bb: number) =>
        mergeRef(o, zz, ww, bb).reduce((s, x, i) => s + x * dm[i], 0);
      // Every element of dz by finite differences (the loss is linear in z).
      const dz = Float64Array.from(dz0);
      for (let i = 0; i < dz.length; i++) {
        dz[i] += finiteDifference((x) => loss(x, w, bias[0]), z, i, 0.5);
      }
      assertClose(b.dz, dz, "dz");
      const dw = Float64Array.from(dw0);
      for (let i = 0; i < dw.length; i++) {
        dw[i] += finiteDifference((x) => loss(z, x, bias[0]), w, i, 0.5);
      }
      assertClose(b.dw, dw, "dw");
      const dbias = 0.25 +
        finiteDifference((x) => loss(z, w, x[0]), bias, 0, 0.5);
      assertClose(b.dbias, [dbias], "dbias");
      // Rows of unselected tokens are untouched.
      for (let r = 0; r < batch * sequence; r++) {
        if (o.positions.includes(r % sequence)) continue;
        for (let c = 0; c < dim; c++) {
          assert.equal(b.dz[r * dim + c], dz0[r * dim + c]);
        }
      }
    },
  });
}
