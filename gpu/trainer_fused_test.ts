import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { createRng } from "../pipeline/rng.ts";
import { createModel } from "../model/amaut.ts";
import { createTfjsTrainer } from "../model/trainer_tfjs.ts";
import type { Trainer } from "../model/trainer.ts";
import {
  memoryData,
  memorySplit,
  snapshot,
  TINY_DIMS,
  TINY_OPTIONS,
  viewBatch,
  worstRelative,
} from "../model/trainer_testing.ts";
import { structurallyZero } from "../model/fixture.ts";
import { createFusedTrainer } from "./trainer_fused.ts";
import { gpuTests, testRuntime } from "./testing.ts";

const close = (got: number, want: number, relative: number) =>
  Math.abs(got - want) <= relative * Math.abs(want);

/** Two tiny models with the same initial weights, and a batch of 2 views × 3 clips. */
const twins = () => ({
  a: createModel(tf, TINY_OPTIONS, TINY_DIMS, createRng("m", 6)),
  b: createModel(tf, TINY_OPTIONS, TINY_DIMS, createRng("m", 6)),
  batch: viewBatch(tf, memorySplit(3, TINY_DIMS, 8), TINY_DIMS, 2, 8),
});

Deno.test({
  name:
    "fused trainer: steps, metrics, sync, evaluate and load equal the tfjs trainer's on the tiny config",
  ignore: !gpuTests,
  async fn() {
    await tf.setBackend("cpu");
    const rt = (await testRuntime())!;
    const a = createModel(tf, TINY_OPTIONS, TINY_DIMS, createRng("m", 6));
    const b = createModel(tf, TINY_OPTIONS, TINY_DIMS, createRng("m", 6));
    const initial = {
      params: await snapshot(a.params),
      buffers: await snapshot(a.buffers),
    };
    const lines: string[] = [];
    const reference = createTfjsTrainer(tf, a);
    const fused = await createFusedTrainer(tf, b, {
      device: rt.device,
      log: (line) => lines.push(line),
    });
    const data = memoryData(
      tf,
      { test: memorySplit(6, TINY_DIMS, 7) },
      TINY_DIMS,
    );
    const batch = viewBatch(tf, memorySplit(3, TINY_DIMS, 8), TINY_DIMS, 2, 8);
    const both = async <T>(f: (t: Trainer) => Promise<T>) => ({
      fused: await f(fused),
      tfjs: await f(reference),
    });
    try {
      assert.equal(fused.engine, "fused");
      assert.equal(fused.model, b);
      const before = await both((t) => t.evaluate(data, "test", 3));
      assert.ok(
        close(before.fused.loss, before.tfjs.loss, 1e-4),
        JSON.stringify(before),
      );
      assert.equal(before.fused.accuracy, before.tfjs.accuracy);
      // The recipe's scale (see gpu/parity.ts): larger rates let float32
      // differences flip ReLU masks.
      const lr = (name: string) => name.startsWith("classifier") ? 3e-3 : 1e-3;
      for (const momentum of [0, 0.9]) {
        const settings = {
          smoothing: 0.1,
          lr,
          sgd: { momentum, weightDecay: momentum ? 1e-3 : 0, nesterov: false },
          rng: createRng("dropout", momentum),
        };
        await both((t) => t.step(batch, settings));
      }
      assert.equal(lines.length, 1, lines.join("\n"));
      assert.match(
        lines[0],
        /^engine: fused WebGPU graph, \d+ dispatches per step$/,
      );
      const m = await both((t) => t.metrics(true));
      assert.ok(close(m.fused.loss, m.tfjs.loss, 1e-4), JSON.stringify(m));
      assert.deepEqual(
        { ...m.fused, loss: 0 },
        { ...m.tfjs, loss: 0 },
        "steps, clips and accuracy",
      );
      assert.equal(m.fused.steps, 2);
      assert.equal((await fused.metrics(true)).steps, 0);

      const state = await both((t) => t.sync());
      const params = await snapshot(state.fused.params);
      assert.deepEqual(
        params,
        await snapshot(b.params),
        "sync fills the model",
      );
      // float32 sums in another order: relative to each tensor's norm. The
      // tensors whose gradient is zero in exact arithmetic, or that the steps
      // barely moved (a bias zero at init with a ~1e-10 gradient), hold only
      // rounding noise: those are compared by absolute difference.
      const tfjsParams = await snapshot(state.tfjs.params);
      const still = new Set(
        [...tfjsParams].filter(([name, w]) => {
          const w0 = initial.params.get(name)!;
          return w.every((v, i) => Math.abs(v - w0[i]) < 1e-7);
        }).map(([name]) => name),
      );
      const noise = (name: string) =>
        structurallyZero(name, "avg") || still.has(name);
      const weights = worstRelative(params, tfjsParams, noise);
      assert.ok(weights.relative <= 1e-4, JSON.stringify(weights));
      assert.ok(weights.skippedMaxAbs <= 1e-5, JSON.stringify(weights));
      assert.ok(worstRelative(params, initial.params).relative > 1e-4);
      const running = worstRelative(
        await snapshot(state.fused.buffers),
        await snapshot(state.tfjs.buffers),
      );
      assert.ok(running.relative <= 1e-4, JSON.stringify(running));
      assert.equal(state.fused.optimizer.size, state.tfjs.optimizer.size);
      const momentum = worstRelative(
        await snapshot(state.fused.optimizer),
        await snapshot(state.tfjs.optimizer),
        noise,
      );
      assert.ok(momentum.relative <= 1e-3, JSON.stringify(momentum));
      assert.ok(momentum.skippedMaxAbs <= 1e-5, JSON.stringify(momentum));

      const after = await both((t) => t.evaluate(data, "test", 3));
      assert.ok(
        close(after.fused.loss, after.tfjs.loss, 1e-4),
        JSON.stringify(after),
      );
      assert.equal(after.fused.accuracy, after.tfjs.accuracy);
      assert.notEqual(after.fused.loss, before.fused.loss);

      // load puts the initial weights back on the GPU.
      const tensors = {
        params: new Map(
          [...initial.params].map((
            [n, v],
          ) => [n, tf.tensor(v, a.params.get(n)!.shape)]),
        ),
        buffers: new Map(
          [...initial.buffers].map((
            [n, v],
          ) => [n, tf.tensor(v, a.buffers.get(n)!.shape)]),
        ),
      };
      await fused.load(tensors);
      tf.dispose([...tensors.params.values(), ...tensors.buffers.values()]);
      const reloaded = await fused.evaluate(data, "test", 3);
      assert.ok(
        close(reloaded.loss, before.fused.loss, 1e-6),
        `${reloaded.loss} vs ${before.fused.loss}`,
      );
    } finally {
      fused.dispose();
      reference.dispose();
      batch.tokens.dispose();
      a.dispose();
      b.dispose();
    }
  },
});

Deno.test({
  name:
    "fused trainer in mixed precision: metrics report the loss scale, sync saves its state with the optimizer state and load restores it",
  ignore: !gpuTests,
  async fn() {
    await tf.setBackend("cpu");
    const rt = (await testRuntime())!;
    const { a, b, batch } = twins();
    // 2¹⁰⁰ overflows f16 at once: the first step is skipped and halves it.
    const engine = {
      precision: "mixed" as const,
      lossScale: { initScale: 2 ** 100 },
    };
    const first = await createFusedTrainer(tf, a, {
      device: rt.device,
      engine,
    });
    const second = await createFusedTrainer(tf, b, {
      device: rt.device,
      engine,
    });
    try {
      await first.step(batch, {
        smoothing: 0.1,
        lr: 1e-3,
        sgd: { momentum: 0.9, weightDecay: 1e-3, nesterov: false },
        rng: createRng("dropout", 1),
      });
      const m = await first.metrics(true);
      assert.equal(m.lossScale, 2 ** 99);
      assert.equal(m.skippedSteps, 1);
      const state = await first.sync();
      const saved = state.optimizer.get("lossScale");
      assert.deepEqual(Array.from(await saved!.data()), [
        2 ** 99,
        0,
        1,
        1,
        1,
        1,
      ]);
      await second.load(state);
      const restored = await second.sync();
      assert.deepEqual(
        Array.from(await restored.optimizer.get("lossScale")!.data()),
        [2 ** 99, 0, 1, 1, 1, 1],
      );
      // the entry is no momentum buffer
      assert.equal(restored.optimizer.size, state.optimizer.size);
    } finally {
      first.dispose();
      second.dispose();
      tf.dispose([batch.tokens]);
      a.dispose();
      b.dispose();
    }
  },
});

Deno.test({
  name:
    "fused trainer: syncLater snapshots at the call, so steps taken before its finish do not change what it returns",
  ignore: !gpuTests,
  async fn() {
    await tf.setBackend("cpu");
    const rt = (await testRuntime())!;
    const { a, b, batch } = twins();
    const now = await createFusedTrainer(tf, a, { device: rt.device });
    const later = await createFusedTrainer(tf, b, { device: rt.device });
    const settings = (k: number) => ({
      smoothing: 0.1,
      lr: 1e-3,
      sgd: { momentum: 0.9, weightDecay: 1e-3, nesterov: false },
      rng: createRng("dropout", k),
    });
    try {
      for (const t of [now, later]) await t.step(batch, settings(1));
      const expected = await now.sync();
      const want = {
        params: await snapshot(expected.params),
        momentum: await snapshot(expected.optimizer),
      };
      const finish = await later.syncLater!();
      // A second snapshot before the first is taken is refused.
      await assert.rejects(
        later.syncLater!(),
        /^Error: Cannot read through the kept staging buffer: an earlier read of it was never taken/,
      );
      await later.step(batch, settings(2));
      const got = await finish();
      assert.deepEqual(await snapshot(got.params), want.params);
      assert.deepEqual(await snapshot(got.optimizer), want.momentum);
      // The step after the snapshot did change the engine's weights.
      const moved = await snapshot((await later.sync()).params);
      assert.ok(worstRelative(moved, want.params).relative > 0);
    } finally {
      now.dispose();
      later.dispose();
      batch.tokens.dispose();
      a.dispose();
      b.dispose();
    }
  },
});
