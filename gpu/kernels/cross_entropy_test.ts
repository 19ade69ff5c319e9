/**
 * Tests of the label-smoothed cross-entropy kernel (`cross_entropy.ts`) against a float64 reference and finite differences.
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
import { crossEntropy, type CrossEntropyOptions } from "./cross_entropy.ts";

/** float64 log-sum-exp of row `r` of `logits` `[rows][classes]`. */
function rowLogSumExp(
  logits: ArrayLike<number>,
  r: number,
  classes: number,
): number {
  let mx = -Infinity;
  for (let c = 0; c < classes; c++) {
    mx = Math.max(mx, logits[r * classes + c]);
  }
  let s = 0;
  for (let c = 0; c < classes; c++) {
    s += Math.exp(logits[r * classes + c] - mx);
  }
  return mx + Math.log(s);
}

function ceLoss(
  o: CrossEntropyOptions,
  logits: ArrayLike<number>,
  labels: Int32Array,
): number {
  const { rows, classes, perView, smoothing: eps } = o;
  let total = 0;
  for (let r = 0; r < rows; r++) {
    const lse = rowLogSumExp(logits, r, classes);
    for (let c = 0; c < classes; c++) {
      const t = (c === labels[r % perView] ? 1 - eps : 0) + eps / classes;
      total -= t * (logits[r * classes + c] - lse);
    }
  }
  return total / perView;
}

const CE_CASES: CrossEntropyOptions[] = [
  { rows: 15, classes: 7, perView: 5, smoothing: 0.1 },
  { rows: 6, classes: 35, perView: 6, smoothing: 0 },
  { rows: 300, classes: 3, perView: 100, smoothing: 0.2 },
];

for (const o of CE_CASES) {
  Deno.test({
    name: `crossEntropy ${JSON.stringify(o)}, finite differences`,
    ignore: !gpuTests,
    async fn() {
      const { rows, classes, perView } = o;
      const logits = randomArray(rows * classes, 51, 3);
      const labels = Int32Array.from(
        { length: perView },
        (_, i) => (i * 5 + 2) % classes,
      );
      // Ties in the last view: the first maximum wins.
      const last = rows - perView;
      logits[last * classes + 0] = 9;
      logits[last * classes + 1] = 9;
      labels[0] = 0; // correct (first max)
      if (perView > 1 && classes > 2) {
        logits[(last + 1) * classes + 1] = 9;
        logits[(last + 1) * classes + 2] = 9;
        labels[1] = 2; // wrong (argmax is 1)
      }
      const metrics0 = new Float32Array([1.5, 2, 3, 4]);
      const out = await runPlan(await gpuRuntime(), crossEntropy(o), {
        logits,
        labels,
        dlogits: new Float32Array(rows * classes),
        metrics: metrics0,
      }, ["dlogits", "metrics"]);
      let correct = 0;
      for (let r = last; r < rows; r++) {
        let arg = 0;
        for (let c = 1; c < classes; c++) {
          if (logits[r * classes + c] > logits[r * classes + arg]) arg = c;
        }
        if (arg === labels[r % perView]) correct++;
      }
      const loss = ceLoss(o, logits, labels);
      assertClose(
        out.metrics,
        [1.5 + loss, 2 + correct, 3 + perView, 4],
        "metrics",
      );
      // Analytic gradient, and finite differences on a few entries.
      const dl = new Float64Array(rows * classes);
      for (let r = 0; r < rows; r++) {
        const lse = rowLogSumExp(logits, r, classes);
        for (let c = 0; c < classes; c++) {
          const p = Math.exp(logits[r * classes + c] - lse);
          const t = (c === labels[r % perView] ? 1 - o.smoothing : 0) +
            o.smoothing / classes;
          dl[r * classes + c] = (p - t) / perView;
        }
      }
      assertClose(out.dlogits, dl, "dlogits");
      for (const i of [0, 1, classes + 2, rows * classes - 1]) {
        const num = finiteDifference((x) => ceLoss(o, x, labels), logits, i);
        assert.ok(
          Math.abs(out.dlogits[i] - num) < 1e-5,
          `dlogits[${i}]: ${out.dlogits[i]} vs ${num}`,
        );
      }
    },
  });
}
