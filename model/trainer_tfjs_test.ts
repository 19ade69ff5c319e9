import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { createRng } from "../pipeline/rng.ts";
import { createModel, labelSmoothedCrossEntropy } from "./amaut.ts";
import { createSgd } from "./sgd.ts";
import { multiviewStep } from "./train_step.ts";
import { evaluate } from "./evaluate.ts";
import { createTfjsTrainer } from "./trainer_tfjs.ts";
import {
  memoryData,
  memorySplit,
  snapshot,
  TINY_DIMS,
  TINY_OPTIONS,
  viewBatch,
  worstRelative,
} from "./trainer_testing.ts";

const NO_MOMENTUM = { momentum: 0, weightDecay: 0, nesterov: false };
const MOMENTUM = { momentum: 0.9, weightDecay: 1e-3, nesterov: false };

Deno.test("tfjs trainer: metrics give the mean per-view loss and last-view accuracy; repeated steps lower the loss", async () => {
  await tf.setBackend("cpu");
  const model = createModel(tf, TINY_OPTIONS, TINY_DIMS, createRng("m", 1));
  const trainer = createTfjsTrainer(tf, model);
  const split = memorySplit(6, TINY_DIMS, 1);
  const batch = viewBatch(tf, split, TINY_DIMS, 2, 1);
  try {
    // The first step's loss is the initial model's, computed here per view.
    const labels = tf.tensor1d(split.labels as number[], "int32");
    const expected = tf.tidy(() => {
      let sum = tf.scalar(0);
      for (let v = 0; v < 2; v++) {
        const view = batch.tokens.slice([6 * v, 0, 0], [6, -1, -1]);
        const { logits } = model.apply(view, { training: true });
        sum = sum.add(labelSmoothedCrossEntropy(tf, logits, labels, 0.1));
      }
      return sum.div(2);
    });
    const want = (await expected.data())[0];
    tf.dispose([expected, labels]);
    const settings = (k: number) => ({
      smoothing: 0.1,
      lr: 0.05,
      sgd: k === 0 ? NO_MOMENTUM : MOMENTUM,
      rng: createRng("dropout", k),
    });
    await trainer.step(batch, settings(0));
    const first = await trainer.metrics(false);
    assert.ok(
      Math.abs(first.loss - want) <= 1e-5 * want,
      `${first.loss} vs ${want}`,
    );
    assert.equal(first.steps, 1);
    assert.equal(first.clips, 6);
    assert.ok(first.accuracy >= 0 && first.accuracy <= 1);
    await trainer.step(batch, settings(1));
    const two = await trainer.metrics(true);
    assert.equal(two.steps, 2);
    assert.equal(two.clips, 12);
    const second = 2 * two.loss - first.loss;
    for (let k = 2; k < 12; k++) await trainer.step(batch, settings(k));
    assert.deepEqual(
      { ...(await trainer.metrics(true)), loss: 0, accuracy: 0 },
      { loss: 0, accuracy: 0, steps: 10, clips: 60 },
    );
    await trainer.step(batch, settings(12));
    const last = await trainer.metrics(true);
    assert.ok(
      last.loss < 0.5 * first.loss && second < first.loss,
      `loss ${first.loss} → ${second} → ${last.loss}`,
    );
    assert.equal(last.accuracy, 1, "the 13th step should fit six clips");
    assert.deepEqual(await trainer.metrics(true), {
      loss: 0,
      accuracy: 0,
      steps: 0,
      clips: 0,
    });
  } finally {
    trainer.dispose();
    batch.tokens.dispose();
    model.dispose();
  }
});

Deno.test("tfjs trainer: sync returns the model's weights after the steps multiviewStep takes, with its momentum; load restores a state", async () => {
  await tf.setBackend("cpu");
  const model = createModel(tf, TINY_OPTIONS, TINY_DIMS, createRng("m", 2));
  const reference = createModel(tf, TINY_OPTIONS, TINY_DIMS, createRng("m", 2));
  const initial = await snapshot(model.params);
  const trainer = createTfjsTrainer(tf, model);
  const sgd = createSgd(tf);
  const split = memorySplit(4, TINY_DIMS, 2);
  const batch = viewBatch(tf, split, TINY_DIMS, 3, 2);
  const tensorsBefore = tf.memory().numTensors;
  try {
    const labels = tf.tensor1d(split.labels as number[], "int32");
    for (let k = 0; k < 2; k++) {
      const settings = {
        smoothing: 0.1,
        lr: (name: string) => name.startsWith("classifier") ? 0.02 : 0.01,
        sgd: k === 0 ? NO_MOMENTUM : MOMENTUM,
        rng: createRng("dropout", k),
      };
      await trainer.step(batch, settings);
      const out = multiviewStep(
        tf,
        reference,
        sgd,
        batch.tokens,
        labels,
        3,
        settings,
      );
      tf.dispose([out.loss, out.lastLogits]);
    }
    labels.dispose();
    const state = await trainer.sync();
    const params = await snapshot(state.params);
    assert.deepEqual(params, await snapshot(model.params));
    assert.deepEqual(params, await snapshot(reference.params));
    assert.deepEqual(
      await snapshot(state.buffers),
      await snapshot(reference.buffers),
    );
    assert.ok(state.optimizer.size > 0);
    assert.deepEqual(
      await snapshot(state.optimizer),
      await snapshot(sgd.buffers),
    );
    assert.ok(
      worstRelative(params, initial).relative > 1e-3,
      "the steps changed nothing",
    );
    // Steps keep only the momentum buffers (the trainer's and the reference's).
    assert.equal(
      tf.memory().numTensors - tensorsBefore,
      2 * state.optimizer.size,
    );

    const restore = {
      params: new Map(
        [...initial].map((
          [n, a],
        ) => [n, tf.tensor(a, model.params.get(n)!.shape)]),
      ),
      buffers: new Map(
        [...model.buffers].map(([n, v]) => [n, tf.zerosLike(v)]),
      ),
    };
    await trainer.load(restore);
    assert.deepEqual(await snapshot(model.params), initial);
    assert.equal(
      state.optimizer.size > 0,
      (await trainer.sync()).optimizer.size > 0,
      "load without optimizer keeps the momentum",
    );
    await trainer.load({ ...restore, optimizer: new Map() });
    assert.equal((await trainer.sync()).optimizer.size, 0);
    const incomplete = new Map(restore.params);
    incomplete.delete("classifier.fc1.bias");
    const before = await snapshot(model.params);
    await trainer.step(batch, {
      smoothing: 0.1,
      lr: 0.01,
      sgd: NO_MOMENTUM,
      rng: createRng("dropout", 9),
    });
    const stepped = await snapshot(model.params);
    assert.notDeepEqual(stepped, before);
    await assert.rejects(
      trainer.load({ params: incomplete, buffers: restore.buffers }),
      /Cannot restore parameter "classifier\.fc1\.bias": the checkpoint lacks it/,
    );
    assert.deepEqual(
      await snapshot(model.params),
      stepped,
      "a refused load changed weights",
    );
    tf.dispose([...restore.params.values(), ...restore.buffers.values()]);
  } finally {
    trainer.dispose();
    sgd.dispose();
    batch.tokens.dispose();
    model.dispose();
    reference.dispose();
  }
});

Deno.test("tfjs trainer: evaluate scores the current weights as model/evaluate does, across batch sizes", async () => {
  await tf.setBackend("cpu");
  const model = createModel(tf, TINY_OPTIONS, TINY_DIMS, createRng("m", 3));
  const trainer = createTfjsTrainer(tf, model);
  const data = memoryData(
    tf,
    { test: memorySplit(7, TINY_DIMS, 3) },
    TINY_DIMS,
  );
  try {
    const direct = await evaluate({ tf, data }, model, "test", 7);
    for (const batchSize of [1, 3, 7]) {
      const r = await trainer.evaluate(data, "test", batchSize);
      assert.ok(
        Math.abs(r.loss - direct.loss) <= 1e-6 * direct.loss,
        `${r.loss} vs ${direct.loss}`,
      );
      assert.equal(r.accuracy, direct.accuracy);
      assert.deepEqual(r.labels, [0, 1, 2, 0, 1, 2, 0]);
    }
    const batch = viewBatch(tf, memorySplit(7, TINY_DIMS, 3), TINY_DIMS, 1, 0);
    await trainer.step(batch, {
      smoothing: 0.1,
      lr: 0.05,
      sgd: NO_MOMENTUM,
      rng: createRng("d", 0),
    });
    batch.tokens.dispose();
    const after = await trainer.evaluate(data, "test", 3);
    assert.notEqual(after.loss, direct.loss, "evaluate did not see the step");
    assert.ok(
      Math.abs(
        after.loss - (await evaluate({ tf, data }, model, "test", 7)).loss,
      ) <= 1e-6 * after.loss,
    );
  } finally {
    trainer.dispose();
    model.dispose();
  }
});
