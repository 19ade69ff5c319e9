/** Tests of the engine fallback wrapper (`withFallback`). */
import assert from "node:assert/strict";
import type { AmautModel } from "./amaut.ts";
import {
  type LoadableState,
  type Trainer,
  type TrainerState,
  withFallback,
} from "./trainer.ts";

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
