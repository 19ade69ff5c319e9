import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { createRng } from "../pipeline/rng.ts";
import type { DataAccess, StepContext } from "../pipeline/types.ts";
import { createModel } from "./amaut.ts";
import { createScorer, evaluateOn, type Scorer } from "./scorer.ts";
import {
  memoryData,
  memorySplit,
  TINY_DIMS,
  TINY_OPTIONS,
} from "./trainer_testing.ts";
import { argmaxRows } from "../lib/metrics.ts";
import {
  memberLogits,
  TestTimeAugmentationOptions,
  ttauScores,
} from "../stages/test_time_augmentation.ts";
import { scoreModel } from "../stages/report.ts";
import { gpuTests, testRuntime } from "../gpu/testing.ts";

const VIEWS = ["original", "left", "right"];

/** The in-memory split served as TTAu batches: 3 views stacked view-major. */
function viewData(data: DataAccess): DataAccess {
  return {
    ...data,
    async *batches(split, options) {
      for await (const batch of data.batches(split, options)) {
        const base = batch.tokens as tf.Tensor3D;
        const tokens = tf.tidy(() =>
          tf.concat([base, tf.reverse(base, 1), base.mul(0.5)], 0)
        );
        const label = batch.label as number[];
        try {
          yield {
            ...batch,
            size: 3 * batch.size,
            tokens,
            label: [...label, ...label, ...label],
            viewNames: VIEWS,
            path: label.map((_, i) => `clip${i}.wav`),
          };
        } finally {
          tokens.dispose();
        }
      }
    },
  };
}

function near(got: Float32Array, want: Float32Array, what: string) {
  assert.equal(got.length, want.length, what);
  want.forEach((w, i) =>
    assert.ok(
      Math.abs(got[i] - w) <= 2e-4 * (1 + Math.abs(w)),
      `${what}[${i}]: fused ${got[i]} != tfjs ${w}`,
    )
  );
}

Deno.test("scorer: fused without WebGPU is refused, auto falls back to tfjs", async () => {
  await tf.setBackend("cpu");
  assert.throws(
    () => createScorer(tf, "fused"),
    /Cannot evaluate with engine "fused": it needs the webgpu backend, and this run uses "cpu" \(use engine: tfjs or auto\)/,
  );
  assert.equal(createScorer(tf, "auto").engine, "tfjs");
});

Deno.test({
  name:
    "scorer: TTAu views and report scoring on the fused eval graph equal the tfjs model's on the tiny config",
  ignore: !gpuTests,
  async fn() {
    await tf.setBackend("cpu");
    const rt = (await testRuntime())!;
    const a = createModel(tf, TINY_OPTIONS, TINY_DIMS, createRng("m", 1));
    const b = createModel(tf, TINY_OPTIONS, TINY_DIMS, createRng("m", 2));
    // Running statistics away from their initial values, so that eval mode matters.
    for (const [name, v] of a.buffers) {
      v.assign(tf.fill(v.shape, name.includes("var") ? 1.5 : 0.2));
    }
    // 11 clips in batches of 4: a smaller last batch, and (group 2) three readbacks.
    const data = memoryData(
      tf,
      { test: memorySplit(11, TINY_DIMS, 3) },
      TINY_DIMS,
    );
    const ctx = {
      data: viewData(data),
      progress: () => ({ tick() {}, done() {} }),
      boundary: () => Promise.resolve(),
    } as unknown as Pick<StepContext, "data" | "progress" | "boundary">;
    const options = TestTimeAugmentationOptions.parse({ batchSize: 4 });
    const fused = createScorer(tf, "fused", { device: rt.device, group: 2 });
    const reference = createScorer(tf, "tfjs");
    assert.equal(fused.engine, "fused");
    assert.equal(reference.engine, "tfjs");
    const ttau = async (s: Scorer) => {
      const m0 = await memberLogits(ctx, s, a, options, true, "m0");
      // The second member goes through the same engine (weights uploaded).
      const m1 = await memberLogits(ctx, s, b, options, true, "m1");
      const only0 = await memberLogits(ctx, s, b, options, false, "m1 view 0");
      return { m0, m1, only0 };
    };
    try {
      const got = await ttau(fused);
      const want = await ttau(reference);
      for (const k of ["m0", "m1", "only0"] as const) {
        assert.deepEqual(got[k].views, VIEWS);
        assert.deepEqual(got[k].labels, want[k].labels);
        assert.deepEqual(got[k].paths, want[k].paths);
        assert.equal(got[k].logits.length, k === "only0" ? 1 : 3);
        got[k].logits.forEach((l, v) =>
          near(l, want[k].logits[v], `${k}/${v}`)
        );
      }
      near(got.only0.logits[0], got.m1.logits[0], "view 0 alone");
      const scores = (r: typeof got) =>
        ttauScores([r.m0.logits, r.m1.logits], 3, "logits");
      const gs = scores(got);
      const ws = scores(want);
      for (const mode of ["orig", "aug", "mlt", "hyb"] as const) {
        assert.deepEqual(
          argmaxRows(gs[mode]!, 3),
          argmaxRows(ws[mode]!, 3),
          mode,
        );
      }
      // The report's per-state scoring: the same probabilities and loss.
      const rctx = { data, signal: new AbortController().signal };
      for (const model of [a, b, a]) {
        const g = await scoreModel(rctx, fused, model, "test", 4);
        const w = await scoreModel(rctx, reference, model, "test", 4);
        assert.deepEqual(g.labels, w.labels);
        assert.equal(g.labels.length, 11);
        near(g.probabilities, w.probabilities, "report probabilities");
        assert.ok(
          Math.abs(g.loss! - w.loss!) <= 1e-4 * Math.abs(w.loss!),
          `loss ${g.loss} != ${w.loss}`,
        );
      }
      // TTDA's per-epoch evaluation: the same accuracy and loss as evaluate.
      const ectx = { tf, data };
      const ge = await evaluateOn(ectx, fused, b, "test", 4);
      const we = await evaluateOn(ectx, reference, b, "test", 4, {
        keepLogits: true,
      });
      assert.equal(ge.accuracy, we.accuracy);
      assert.ok(Math.abs(ge.loss - we.loss) <= 1e-4 * Math.abs(we.loss));
      near(ge.logits, we.logits, "evaluateOn logits");
      assert.deepEqual(ge.labels, we.labels);
      // The models differ, so a stale upload would have shown above.
      const pa = await scoreModel(rctx, fused, a, "test", 4);
      const pb = await scoreModel(rctx, fused, b, "test", 4);
      assert.ok(
        pa.probabilities.some((p, i) =>
          Math.abs(p - pb.probabilities[i]) > 1e-3
        ),
      );
    } finally {
      fused.dispose();
      reference.dispose();
      a.dispose();
      b.dispose();
    }
  },
});
