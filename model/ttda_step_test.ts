/**
 * Tests of the shared tfjs TTDA step (`ttda_step.ts`) on the cpu backend:
 * its loss is the views' summed TTDA loss before the step, frozen (lr 0)
 * parameters stay as they were, the trainable ones move, and it leaks no
 * tensors.
 *
 * @module
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import type { Tensor2D, Tensor3D } from "@tensorflow/tfjs";
import { createRng } from "../pipeline/rng.ts";
import { createModel } from "./amaut.ts";
import { createSgd } from "./sgd.ts";
import { ttdaLoss } from "./ttda_loss.ts";
import { TINY_DIMS, TINY_OPTIONS } from "./trainer_testing.ts";
import { tfjsTtdaStep } from "./ttda_step.ts";

Deno.test("tfjsTtdaStep: summed view loss, frozen parameters kept, no leaks", async () => {
  await tf.setBackend("cpu");
  const model = createModel(tf, TINY_OPTIONS, TINY_DIMS, createRng("s", 1));
  const [views, b] = [2, 3];
  const tokens = tf.randomNormal(
    [views * b, TINY_DIMS.frames, TINY_DIMS.nMels],
    0,
    1,
    "float32",
    5,
  ) as Tensor3D;
  const rates = { alpha: 1, beta: 0.5, gamma: 0.5, q: 1.1 };
  // The loss before the step, view by view (no dropout in TINY_OPTIONS).
  let want = 0;
  for (let v = 0; v < views; v++) {
    const view = tokens.slice([v * b, 0, 0], [b, -1, -1]);
    const out = model.apply(view, { training: true, rng: createRng("d", v) });
    const l = ttdaLoss(tf, out.logits as Tensor2D, rates);
    want += (await l.data())[0];
    tf.dispose([view, out.logits, l]);
    for (const s of out.batchStats) tf.dispose([s.mean, s.variance]);
  }
  const names = [...model.params.keys()];
  const frozen = names.filter((n) => n.startsWith("classifier"));
  assert.ok(frozen.length > 0 && frozen.length < names.length);
  const before = new Map(
    await Promise.all(
      names.map(async (n) => [n, await model.params.get(n)!.data()] as const),
    ),
  );
  const sgd = createSgd(tf);
  const tensorsBefore = tf.memory().numTensors;
  const got = await tfjsTtdaStep(tf, model, sgd, tokens, views, {
    rates,
    lr: (n) => (frozen.includes(n) ? 0 : 1e-2),
    sgd: { momentum: 0, weightDecay: 0, nesterov: false },
    rng: createRng("d", 0),
  });
  assert.ok(Math.abs(got - want) <= 1e-5 * Math.max(1, Math.abs(want)));
  let moved = 0;
  for (const n of names) {
    const now = await model.params.get(n)!.data();
    const same = now.every((x, i) => x === before.get(n)![i]);
    if (frozen.includes(n)) assert.ok(same, `${n} is frozen but changed`);
    else if (!same) moved++;
  }
  assert.ok(moved > 0, "no trainable parameter moved");
  assert.equal(tf.memory().numTensors, tensorsBefore);
  sgd.dispose();
  tokens.dispose();
  model.dispose();
});
