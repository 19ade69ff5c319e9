import assert from "node:assert/strict";
import { foldBatchNorm } from "./fold.ts";
import { gpuTests, randomArray, runPlan, testRuntime } from "../testing.ts";

Deno.test({
  name:
    "foldBatchNorm: conv with the folded kernel and bias equals conv then eval BatchNorm",
  ignore: !gpuTests,
  async fn() {
    const rt = (await testRuntime())!;
    const [rows, cols, eps] = [11, 5, 1e-5];
    const w = randomArray(rows * cols, 1);
    const gb = randomArray(2 * cols, 2);
    const running = randomArray(2 * cols, 3);
    for (let c = 0; c < cols; c++) {
      running[cols + c] = 0.5 + Math.abs(running[cols + c]);
    }
    const out = await runPlan(
      rt,
      foldBatchNorm({ rows, cols, eps }),
      { w: w.slice(), gb, running, bias: new Float32Array(cols) },
      ["w", "bias"],
    );
    const x = randomArray(rows, 4); // one input row of the conv
    for (let c = 0; c < cols; c++) {
      let conv = 0;
      let folded = out.bias[c];
      for (let r = 0; r < rows; r++) {
        conv += x[r] * w[r * cols + c];
        folded += x[r] * out.w[r * cols + c];
      }
      const bn =
        (conv - running[c]) * gb[c] / Math.sqrt(running[cols + c] + eps) +
        gb[cols + c];
      assert.ok(
        Math.abs(folded - bn) < 1e-5,
        `channel ${c}: ${folded} vs ${bn}`,
      );
    }
  },
});

Deno.test("foldBatchNorm refuses empty sizes and a non-positive eps", () => {
  assert.throws(
    () => foldBatchNorm({ rows: 0, cols: 3, eps: 1e-5 }),
    /foldBatchNorm rows must be an integer ≥ 1, got 0/,
  );
  assert.throws(
    () => foldBatchNorm({ rows: 2, cols: 3, eps: 0 }),
    /eps must be > 0, got 0/,
  );
});
