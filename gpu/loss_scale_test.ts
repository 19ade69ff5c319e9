/**
 * Tests of the host side of loss scaling (`loss_scale.ts`): the state
 * written at creation (initial or resumed), read back, its
 * `metrics.jsonl` figures, and the refusals.
 *
 * @module
 */
import assert from "node:assert/strict";
import { createRuntime } from "./runtime.ts";
import { gpuTest } from "./testing.ts";
import {
  createLossScaleState,
  lossScaleMetrics,
  readLossScale,
  writeLossScaleState,
} from "./loss_scale.ts";

gpuTest(
  "loss-scale state: initial, resumed and rewritten, read back with its metrics",
  async (shared) => {
    const rt = createRuntime(shared.device);
    try {
      const fresh = createLossScaleState(rt);
      assert.deepEqual(await readLossScale(rt, fresh), {
        scale: 65536,
        goodSteps: 0,
        skippedSteps: 0,
        lastSkipped: false,
        firstPending: false,
        steps: 0,
      });
      const saved = {
        scale: 1024,
        goodSteps: 77,
        skippedSteps: 5,
        lastSkipped: true,
        firstPending: false,
        steps: 4000,
      };
      const resumed = createLossScaleState(rt, { growthInterval: 100 }, saved);
      const read = await readLossScale(rt, resumed);
      assert.deepEqual(read, saved);
      assert.deepEqual(lossScaleMetrics(read), {
        lossScale: 1024,
        skippedSteps: 5,
        lastStepSkipped: true,
      });
      writeLossScaleState(rt, fresh, { ...saved, scale: 0.1 });
      assert.equal((await readLossScale(rt, fresh)).scale, Math.fround(0.1));
      for (const scale of [0, -1, 2 ** -127, Infinity, NaN, 1e39]) {
        assert.throws(
          () => writeLossScaleState(rt, fresh, { ...saved, scale }),
          /^RangeError: Cannot set the loss scale to .*: it must be a finite float32 ≥ 2⁻¹²⁶/,
        );
      }
      assert.throws(
        () => createLossScaleState(rt, { backoffFactor: 2 }),
        /Cannot use loss scaling: backoffFactor must be a number in \(0, 1\), got 2/,
      );
    } finally {
      rt.destroy();
    }
  },
);
