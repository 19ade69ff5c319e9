import assert from "node:assert/strict";
import { packColumns } from "./pack.ts";
import { gpuTests, randomArray, runPlan, testRuntime } from "../testing.ts";

Deno.test({
  name: "packColumns puts the parts side by side, in order",
  ignore: !gpuTests,
  async fn() {
    const rt = (await testRuntime())!;
    const widths = [3, 5, 2];
    const rows = 7;
    const src = widths.map((w, s) => randomArray(rows * w, s + 1));
    const { out } = await runPlan(
      rt,
      packColumns({ rows, widths }),
      {
        src0: src[0],
        src1: src[1],
        src2: src[2],
        out: new Float32Array(rows * 10),
      },
      ["out"],
    );
    for (let r = 0; r < rows; r++) {
      const want = widths.flatMap((w, s) =>
        Array.from(src[s].subarray(r * w, (r + 1) * w))
      );
      assert.deepEqual(Array.from(out.subarray(r * 10, (r + 1) * 10)), want);
    }
  },
});

Deno.test("packColumns refuses empty or oversized part lists", () => {
  assert.throws(
    () => packColumns({ rows: 2, widths: [] }),
    /packColumns: needs 1 to 7 parts, got 0/,
  );
  assert.throws(
    () => packColumns({ rows: 0, widths: [1] }),
    /packColumns: rows must be a positive integer, got 0/,
  );
  assert.throws(
    () => packColumns({ rows: 2, widths: [1, 0] }),
    /widths must be positive integers, got \[1,0\]/,
  );
});
