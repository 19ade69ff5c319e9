/** Tests of the engine fallback wrapper (`withFallback`) and the state helpers. */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { createRng } from "../pipeline/rng.ts";
import { type AmautModel, createModel } from "./amaut.ts";
import { createSgd } from "./sgd.ts";
import {
  type LoadableState,
  stateOf,
  type Trainer,
  type TrainerState,
  withFallback,
} from "./trainer.ts";
import { createTfjsTrainer } from "./trainer_tfjs.ts";
import {
  memorySplit,
  snapshot,
  TINY_DIMS,
  TINY_OPTIONS,
  viewBatch,
  worstRelative,
} from "./trainer_testing.ts";

/** A trainer that records its calls; `fail` makes its steps throw. */
function fake(engine: "tfjs" | "fused", fail?: Error) {
  const calls: string[] = [];
  const state = {
    params: new Map(),
    buffers: new Map(),
    optimizer: new Map(),
  } as unknown as TrainerState;
  let loaded: LoadableState | undefined;
  const trainer: Trainer = {
    engine,
    model: {} as AmautModel,
    step() {
      calls.push("step");
      return fail ? Promise.reject(fail) : Promise.resolve();
    },
    metrics: () =>
      Promise.resolve({ loss: 1, accuracy: 0.5, steps: 1, clips: 2 }),
    evaluate: () => Promise.resolve({ loss: 1, accuracy: 1 } as never),
    sync() {
      calls.push("sync");
      return Promise.resolve(state);
    },
    load(s) {
      calls.push("load");
      loaded = s;
      return Promise.resolve();
    },
    dispose() {
      calls.push("dispose");
    },
  };
  return { trainer, calls, state, loaded: () => loaded };
}

const settings = {} as Parameters<Trainer["step"]>[1];
const batch = {} as Parameters<Trainer["step"]>[0];
const limit = new RangeError("binding over the limit");

Deno.test("withFallback moves to the fallback when the first step fails as allowed, carrying the state", async () => {
  const fused = fake("fused", limit);
  const tfjs = fake("tfjs");
  const notes: string[] = [];
  const t = withFallback(
    fused.trainer,
    () => tfjs.trainer,
    (e) => e === limit,
    (l) => notes.push(l),
  );
  assert.equal(t.engine, "fused");
  await t.step(batch, settings);
  assert.equal(t.engine, "tfjs");
  assert.deepEqual(fused.calls, ["step", "sync", "dispose"]);
  assert.deepEqual(tfjs.calls, ["load", "step"]);
  assert.equal(tfjs.loaded(), fused.state);
  assert.deepEqual(notes, [
    "engine: the fused engine cannot run this model here (binding over the limit); training on the tfjs engine instead",
  ]);
  await t.step(batch, settings);
  assert.deepEqual(tfjs.calls, ["load", "step", "step"]);
});

Deno.test("withFallback throws other first-step errors, and any error after a good step", async () => {
  const other = new Error("Cannot continue on WebGPU: device lost");
  const t = withFallback(
    fake("fused", other).trainer,
    () => {
      throw new Error("not called");
    },
    (e) => e === limit,
    () => {},
  );
  await assert.rejects(() => t.step(batch, settings), /device lost/);

  let fail = false;
  const primary = fake("fused");
  primary.trainer.step = () => fail ? Promise.reject(limit) : Promise.resolve();
  const u = withFallback(
    primary.trainer,
    () => {
      throw new Error("not called");
    },
    () => true,
    () => {},
  );
  await u.step(batch, settings);
  fail = true;
  await assert.rejects(() => u.step(batch, settings), /binding over the limit/);
  assert.equal(u.engine, "fused");
});

Deno.test("withFallback onto the tfjs trainer of the same model keeps its weights usable (the fused sync hands over the model's own variables)", async () => {
  await tf.setBackend("cpu");
  const model = createModel(tf, TINY_OPTIONS, TINY_DIMS, createRng("m", 3));
  const before = await snapshot(model.params);
  const sgd = createSgd(tf);
  const primary: Trainer = {
    ...fake("fused", limit).trainer,
    model,
    sync: () => Promise.resolve(stateOf(model, sgd)),
  };
  const t = withFallback(
    primary,
    () => createTfjsTrainer(tf, model),
    (e) => e === limit,
    () => {},
  );
  const split = memorySplit(4, TINY_DIMS, 3);
  const batch = viewBatch(tf, split, TINY_DIMS, 2, 3);
  try {
    await t.step(batch, {
      smoothing: 0.1,
      lr: 0.05,
      sgd: { momentum: 0, weightDecay: 0, nesterov: false },
      rng: createRng("dropout", 3),
    });
    assert.equal(t.engine, "tfjs");
    const m = await t.metrics(true);
    assert.ok(Number.isFinite(m.loss) && m.loss > 0, `loss ${m.loss}`);
    const after = await snapshot(model.params);
    assert.ok(
      worstRelative(after, before).relative > 0,
      "the step changed no weight",
    );
  } finally {
    batch.tokens.dispose();
    t.dispose();
    sgd.dispose();
    model.dispose();
  }
});
