import assert from "node:assert/strict";
import { gatherRows, scatterRows } from "./rows.ts";
import { gpuTests, randomArray, runPlan, testRuntime } from "../testing.ts";

const o = { batch: 3, sequence: 7, dim: 5, positions: [6, 0] };

Deno.test({
  name:
    "gatherRows picks the chosen positions of every clip, in the given order",
  ignore: !gpuTests,
  async fn() {
    const rt = (await testRuntime())!;
    const x = randomArray(3 * 7 * 5, 1);
    const { y } = await runPlan(rt, gatherRows(o), {
      x,
      y: new Float32Array(3 * 2 * 5),
    }, ["y"]);
    for (let b = 0; b < 3; b++) {
      o.positions.forEach((p, i) => {
        for (let c = 0; c < 5; c++) {
          assert.equal(y[(b * 2 + i) * 5 + c], x[(b * 7 + p) * 5 + c]);
        }
      });
    }
  },
});

Deno.test({
  name:
    "scatterRows writes the selected rows and zeros, or adds into the selected rows only",
  ignore: !gpuTests,
  async fn() {
    const rt = (await testRuntime())!;
    const x = randomArray(3 * 2 * 5, 2);
    const before = randomArray(3 * 7 * 5, 3);
    const { y } = await runPlan(rt, scatterRows(o), { x, y: before.slice() }, [
      "y",
    ]);
    const added = await runPlan(
      rt,
      scatterRows({ ...o, accumulate: true }),
      { x, y: before.slice() },
      ["y"],
    );
    for (let b = 0; b < 3; b++) {
      for (let s = 0; s < 7; s++) {
        const i = o.positions.indexOf(s);
        for (let c = 0; c < 5; c++) {
          const at = (b * 7 + s) * 5 + c;
          const src = i < 0 ? 0 : x[(b * 2 + i) * 5 + c];
          assert.equal(y[at], src);
          assert.ok(Math.abs(added.y[at] - (before[at] + src)) < 1e-6);
        }
      }
    }
  },
});

Deno.test("row selections refuse repeated or out-of-range positions", () => {
  assert.throws(
    () => gatherRows({ ...o, positions: [1, 1] }),
    /distinct integers in 0…6, got \[1,1\]/,
  );
  assert.throws(
    () => scatterRows({ ...o, positions: [7] }),
    /distinct integers in 0…6/,
  );
  assert.throws(() => gatherRows({ ...o, positions: [] }), /no positions/);
});
