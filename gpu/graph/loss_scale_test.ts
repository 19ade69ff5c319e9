/**
 * Tests of the graph's opt-in loss-scaling recorders on the tiny model's
 * arenas: `recordUpdate(b, lossScale)` (`sgd.ts`) against the plain update
 * on unscaled gradients, a skipped step, and `recordLossScaleSeed`
 * (`loss.ts`).
 *
 * @module
 */
import assert from "node:assert/strict";
import { TINY_DIMS, TINY_OPTIONS } from "../../model/trainer_testing.ts";
import { resolveLossScaleOptions } from "../../model/loss_scale.ts";
import { createRuntime, type Runtime } from "../runtime.ts";
import { gpuTest, randomArray } from "../testing.ts";
import { sgdHyper } from "../kernels/sgd.ts";
import { createLossScaleState, readLossScale } from "../loss_scale.ts";
import { createArenas } from "./arenas.ts";
import { createBufferPool, createBuilder, recordLists } from "./builder.ts";
import { recordLossScaleSeed } from "./loss.ts";
import { type LossScaleRecord, recordUpdate } from "./sgd.ts";

/** The update list of the tiny model, loss-scaled or not, on its own arenas. */
function updateGraph(rt: Runtime, lossScale?: LossScaleRecord) {
  const arenas = createArenas(rt, TINY_OPTIONS, TINY_DIMS);
  const b = createBuilder(rt, arenas, {
    training: true,
    views: 2,
    perView: 3,
  });
  b.into("update");
  const hyper = recordUpdate(b, lossScale);
  const lists = recordLists(b, createBufferPool());
  const lrs = arenas.slots.filter((s) => s.trained).map((_, i) =>
    0.01 * (1 + (i % 3))
  );
  const h = (first: boolean) =>
    sgdHyper({
      momentum: 0.9,
      weightDecay: 1e-3,
      dampening: 0,
      nesterov: true,
      first,
      lrs,
    });
  return { arenas, hyper, lists, h };
}

const bits = (a: Float32Array) => new Uint32Array(a.buffer);

gpuTest(
  "recordUpdate with loss scaling: the plain update on unscaled gradients, then a skipped step",
  async (shared) => {
    const rt = createRuntime(shared.device);
    try {
      const options = resolveLossScaleOptions({ initScale: 2 ** 12 });
      const state = createLossScaleState(rt, options);
      const scaled = updateGraph(rt, { state, options });
      const plain = updateGraph(rt);
      assert.deepEqual(scaled.lists.update.map((d) => d.label), [
        "nonFiniteScan",
        "sgdUpdate lossScale",
        "lossScaleUpdate",
      ]);
      assert.deepEqual(plain.lists.update.map((d) => d.label), ["sgdUpdate"]);
      const floats = scaled.arenas.params.size / 4;
      const params = randomArray(floats, 5);
      for (const g of [scaled, plain]) rt.write(g.arenas.params, params);
      for (const [k, first] of [true, false].entries()) {
        const grads = randomArray(floats, 6 + k, 2);
        rt.write(scaled.arenas.grads, grads.map((v) => v * 2 ** 12));
        rt.write(plain.arenas.grads, grads);
        rt.write(scaled.hyper, scaled.h(first));
        rt.write(plain.hyper, plain.h(first));
        rt.run([scaled.lists.update]);
        rt.run([plain.lists.update]);
        assert.deepEqual(
          bits(await rt.read(scaled.arenas.params)),
          bits(await rt.read(plain.arenas.params)),
          `params after step ${k}`,
        );
        assert.deepEqual(
          bits(await rt.read(scaled.arenas.momentum)),
          bits(await rt.read(plain.arenas.momentum)),
          `momentum after step ${k}`,
        );
      }
      const before = await rt.read(scaled.arenas.params);
      const grads = randomArray(floats, 9, 2);
      grads[floats >> 1] = Infinity;
      rt.write(scaled.arenas.grads, grads);
      rt.run([scaled.lists.update]);
      assert.deepEqual(
        bits(await rt.read(scaled.arenas.params)),
        bits(before),
        "params of a skipped step",
      );
      assert.deepEqual(await readLossScale(rt, state), {
        scale: 2 ** 11,
        goodSteps: 0,
        skippedSteps: 1,
        lastSkipped: true,
        firstPending: false,
        steps: 3,
      });
    } finally {
      rt.destroy();
    }
  },
);

gpuTest(
  "recordLossScaleSeed scales the logits gradient in place",
  async (shared) => {
    const rt = createRuntime(shared.device);
    try {
      const state = createLossScaleState(rt, { initScale: 256 });
      const b = createBuilder(rt, createArenas(rt, TINY_OPTIONS, TINY_DIMS), {
        training: true,
        views: 2,
        perView: 3,
      });
      const dlogits = b.pinned("dlogits", 6 * TINY_DIMS.classes);
      b.into("backward");
      recordLossScaleSeed(b, { dlogits, lossScale: state });
      const lists = recordLists(b, createBufferPool());
      const d = randomArray(6 * TINY_DIMS.classes, 3);
      rt.write(dlogits, d);
      rt.run([lists.backward]);
      assert.deepEqual(await rt.read(dlogits), d.map((v) => v * 256));
    } finally {
      rt.destroy();
    }
  },
);
