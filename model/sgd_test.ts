import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { createSgd, referenceSgdOptions, type SgdOptions } from "./sgd.ts";

const REFERENCE = { momentum: 0.9, weightDecay: 1e-3, nesterov: false };
const GRADS = [[0.5, 1], [-1, 0.25], [0.2, -0.4]];

function assertClose(
  actual: ArrayLike<number>,
  expected: readonly number[],
  tol = 1e-6,
): void {
  assert.equal(actual.length, expected.length);
  for (let i = 0; i < expected.length; i++) {
    assert.ok(
      Math.abs(actual[i] - expected[i]) <= tol,
      `element ${i}: got ${actual[i]}, expected ${expected[i]}`,
    );
  }
}

/** Runs 3 steps of the reference recipe (epoch 0, 1, 2) on w0 = [1, −2], lr 0.1; returns w and buf after each step. */
async function threeSteps(
  settings: typeof REFERENCE,
  dampening = 0,
): Promise<{ w: number[][]; buf: (number[] | undefined)[] }> {
  await tf.setBackend("cpu");
  const w = tf.variable(tf.tensor1d([1, -2]));
  const variables = new Map([["w", w]]);
  const sgd = createSgd(tf);
  const out: { w: number[][]; buf: (number[] | undefined)[] } = {
    w: [],
    buf: [],
  };
  for (let epoch = 0; epoch < 3; epoch++) {
    const grad = tf.tensor1d(GRADS[epoch]);
    const options: SgdOptions = {
      ...referenceSgdOptions(epoch, settings),
      dampening,
    };
    sgd.step({ w: grad }, variables, 0.1, options);
    grad.dispose();
    out.w.push(Array.from(await w.data()));
    const buf = sgd.buffers.get("w");
    out.buf.push(buf ? Array.from(await buf.data()) : undefined);
  }
  sgd.dispose();
  w.dispose();
  return out;
}

Deno.test("referenceSgdOptions: PyTorch defaults in epoch 0, reference settings after, Nesterov only when asked", () => {
  assert.deepEqual(referenceSgdOptions(0, REFERENCE), {
    momentum: 0,
    weightDecay: 0,
    nesterov: false,
    dampening: 0,
  });
  assert.deepEqual(referenceSgdOptions(1, REFERENCE), {
    momentum: 0.9,
    weightDecay: 1e-3,
    nesterov: false,
    dampening: 0,
  });
  assert.deepEqual(
    referenceSgdOptions(7, { ...REFERENCE, nesterov: true }).nesterov,
    true,
  );
  assert.equal(
    referenceSgdOptions(0, { ...REFERENCE, nesterov: true }).nesterov,
    false,
  );
  assert.throws(
    () => referenceSgdOptions(-1, REFERENCE),
    /Cannot build the reference SGD options: invalid epoch -1/,
  );
  assert.throws(
    () => referenceSgdOptions(1.5, REFERENCE),
    /invalid epoch 1\.5/,
  );
});

Deno.test("SGD matches hand-computed PyTorch updates: plain step, then momentum with buffer = first gradient, coupled weight decay", async () => {
  const { w, buf } = await threeSteps(REFERENCE);
  // Epoch 0: momentum 0, wd 0: w = [1, −2] − 0.1·[0.5, 1]; no buffer.
  assertClose(w[0], [0.95, -2.1]);
  assert.equal(buf[0], undefined);
  // Epoch 1: g = [−1, 0.25] + 1e-3·[0.95, −2.1] = [−0.99905, 0.2479]; buf = g; w −= 0.1·buf.
  assertClose(buf[1]!, [-0.99905, 0.2479]);
  assertClose(w[1], [1.049905, -2.12479]);
  // Epoch 2: g = [0.2, −0.4] + 1e-3·w = [0.201049905, −0.40212479];
  // buf = 0.9·buf + g = [−0.698095095, −0.17901479]; w −= 0.1·buf.
  assertClose(buf[2]!, [-0.698095095, -0.17901479]);
  assertClose(w[2], [1.1197145095, -2.106888521]);
});

Deno.test("SGD Nesterov variant: g + momentum·buf", async () => {
  const { w, buf } = await threeSteps({ ...REFERENCE, nesterov: true });
  assertClose(w[0], [0.95, -2.1]);
  // Epoch 1: buf = g = [−0.99905, 0.2479]; step with g + 0.9·buf = 1.9·g.
  assertClose(buf[1]!, [-0.99905, 0.2479]);
  assertClose(w[1], [1.1398195, -2.147101]);
  // Epoch 2: g = [0.2011398195, −0.402147101]; buf = [−0.6980051805, −0.179037101];
  // step with g + 0.9·buf = [−0.42706484295, −0.5632804919].
  assertClose(buf[2]!, [-0.6980051805, -0.179037101]);
  assertClose(w[2], [1.182525984295, -2.09077295081]);
});

Deno.test("SGD dampening scales the gradient added to an existing buffer, not the first buffer", async () => {
  const { w, buf } = await threeSteps(REFERENCE, 0.5);
  assertClose(buf[1]!, [-0.99905, 0.2479]);
  assertClose(w[1], [1.049905, -2.12479]);
  // buf = 0.9·buf + 0.5·g = [−0.7986200475, 0.022047605].
  assertClose(buf[2]!, [-0.7986200475, 0.022047605]);
  assertClose(w[2], [1.12976700475, -2.1269947605]);
});

Deno.test("SGD uses a learning rate per name and skips variables without a gradient", async () => {
  await tf.setBackend("cpu");
  const a = tf.variable(tf.tensor1d([1, -2]));
  const b = tf.variable(tf.tensor1d([3]));
  const c = tf.variable(tf.tensor1d([5, 6]));
  const variables = new Map([["a", a], ["b", b], ["c", c]]);
  const sgd = createSgd(tf);
  const lr = (name: string) => (name === "a" ? 0.1 : 0.01);
  const options = { momentum: 0.9, weightDecay: 0, nesterov: false };
  for (const [ga, gb] of [[[0.5, 1], [2]], [[-1, 0.25], [-4]]]) {
    const grads = { a: tf.tensor1d(ga), b: tf.tensor1d(gb) };
    sgd.step(grads, variables, lr, options);
    tf.dispose(Object.values(grads));
  }
  // a: buf = [0.5, 1] → w = [0.95, −2.1]; buf = 0.9·[0.5, 1] + [−1, 0.25] = [−0.55, 1.15] → w = [1.005, −2.215].
  assertClose(await a.data(), [1.005, -2.215]);
  // b: buf = 2 → w = 2.98; buf = 1.8 − 4 = −2.2 → w = 3.002.
  assertClose(await b.data(), [3.002]);
  assert.deepEqual(Array.from(await c.data()), [5, 6]);
  assert.deepEqual([...sgd.buffers.keys()], ["a", "b"]);
  sgd.dispose();
  tf.dispose([a, b, c]);
});

Deno.test("SGD leaks no tensors across steps and frees its buffers on dispose", async () => {
  await tf.setBackend("cpu");
  const w = tf.variable(tf.randomNormal([4, 3]));
  const v = tf.variable(tf.randomNormal([3]));
  const variables = new Map([["w", w], ["v", v]]);
  const grads = { w: tf.randomNormal([4, 3]), v: tf.randomNormal([3]) };
  const sgd = createSgd(tf);
  const start = tf.memory().numTensors;
  sgd.step(grads, variables, 0.1, referenceSgdOptions(0, REFERENCE));
  assert.equal(tf.memory().numTensors, start);
  sgd.step(grads, variables, 0.1, referenceSgdOptions(1, REFERENCE));
  assert.equal(tf.memory().numTensors, start + 2); // the two momentum buffers
  const counts: number[] = [];
  for (let epoch = 2; epoch < 6; epoch++) {
    sgd.step(
      grads,
      variables,
      (n) => (n === "w" ? 0.1 : 0.2),
      referenceSgdOptions(epoch, REFERENCE),
    );
    sgd.step(grads, variables, 0.1, {
      ...referenceSgdOptions(epoch, REFERENCE),
      nesterov: true,
    });
    counts.push(tf.memory().numTensors);
  }
  assert.deepEqual(counts, counts.map(() => start + 2));
  sgd.dispose();
  assert.equal(tf.memory().numTensors, start);
  assert.equal(sgd.buffers.size, 0);
  tf.dispose([w, v, ...Object.values(grads)]);
});

Deno.test("SGD buffers round trip through load: a fresh optimizer continues identically", async () => {
  await tf.setBackend("cpu");
  const w1 = tf.variable(tf.tensor1d([1, -2, 0.5]));
  const grads = [[0.5, 1, -1], [-1, 0.25, 2], [0.2, -0.4, 0.1]].map((g) =>
    tf.tensor1d(g)
  );
  const a = createSgd(tf);
  for (let epoch = 0; epoch < 2; epoch++) {
    a.step(
      { w: grads[epoch] },
      new Map([["w", w1]]),
      0.1,
      referenceSgdOptions(epoch, REFERENCE),
    );
  }
  // Snapshot weights and buffers as a checkpoint would: plain values, then fresh tensors.
  const w2 = tf.variable(tf.tensor1d(Array.from(await w1.data())));
  const saved = new Map<string, number[]>();
  for (const [n, t] of a.buffers) saved.set(n, Array.from(await t.data()));
  const restored = new Map(
    [...saved].map(([n, values]) => [n, tf.tensor1d(values)]),
  );
  const b = createSgd(tf);
  b.load(restored);
  tf.dispose([...restored.values()]); // b keeps its own copies
  // Loading again replaces (and frees) the previous buffers.
  const before = tf.memory().numTensors;
  const copy = a.buffers.get("w")!.clone();
  b.load(new Map([["w", copy]]));
  assert.equal(tf.memory().numTensors, before + 1); // the caller's copy, not yet disposed
  copy.dispose();
  a.step(
    { w: grads[2] },
    new Map([["w", w1]]),
    0.1,
    referenceSgdOptions(2, REFERENCE),
  );
  b.step(
    { w: grads[2] },
    new Map([["w", w2]]),
    0.1,
    referenceSgdOptions(2, REFERENCE),
  );
  assert.deepEqual(Array.from(await w2.data()), Array.from(await w1.data()));
  assert.deepEqual(
    Array.from(await b.buffers.get("w")!.data()),
    Array.from(await a.buffers.get("w")!.data()),
  );
  a.dispose();
  b.dispose();
  tf.dispose([w1, w2, ...grads]);
});

Deno.test("SGD refuses bad calls before changing anything", async () => {
  await tf.setBackend("cpu");
  const w = tf.variable(tf.tensor1d([1, 2]));
  const variables = new Map([["w", w]]);
  const sgd = createSgd(tf);
  const g = tf.tensor1d([1, 1]);
  const g3 = tf.tensor1d([1, 1, 1]);
  const plain = { momentum: 0.9, weightDecay: 0, nesterov: false };
  assert.throws(
    () => sgd.step({ w: g, x: g }, variables, 0.1, plain),
    /Cannot apply SGD: got a gradient for "x", which is not among the variables/,
  );
  assert.throws(
    () => sgd.step({ w: g3 }, variables, 0.1, plain),
    /Cannot apply SGD: the gradient for "w" has shape \[3\], the variable \[2\]/,
  );
  assert.throws(
    () => sgd.step({ w: g }, variables, () => -1, plain),
    /Cannot create SGD: invalid learning rate for "w" -1/,
  );
  assert.throws(
    () =>
      sgd.step({ w: g }, variables, 0.1, {
        ...plain,
        momentum: 0,
        nesterov: true,
      }),
    /Cannot create SGD: Nesterov momentum requires a momentum > 0 and zero dampening/,
  );
  assert.throws(
    () => sgd.step({ w: g }, variables, 0.1, { ...plain, weightDecay: -1 }),
    /Cannot create SGD: invalid weight decay -1/,
  );
  assert.deepEqual(Array.from(await w.data()), [1, 2]);
  assert.equal(sgd.buffers.size, 0);
  sgd.dispose();
  tf.dispose([w, g, g3]);
});

Deno.test("SGD step never reads tensor values back", async () => {
  await tf.setBackend("cpu");
  const w = tf.variable(tf.tensor2d([[1, 2], [3, 4]]));
  const g = tf.tensor2d([[0.1, 0.2], [0.3, 0.4]]);
  const sgd = createSgd(tf);
  const proto = tf.Tensor.prototype as unknown as Record<string, unknown>;
  const methods = [
    "data",
    "dataSync",
    "array",
    "arraySync",
    "bytes",
    "buffer",
    "bufferSync",
  ];
  const saved = methods.map((m) => proto[m]);
  const reads: string[] = [];
  for (const m of methods) {
    proto[m] = function () {
      reads.push(m);
      throw new Error(`read back via ${m}`);
    };
  }
  try {
    for (let epoch = 0; epoch < 3; epoch++) {
      sgd.step(
        { w: g },
        new Map([["w", w]]),
        0.1,
        referenceSgdOptions(epoch, REFERENCE),
      );
    }
  } finally {
    methods.forEach((m, i) => (proto[m] = saved[i]));
  }
  assert.deepEqual(reads, []);
  sgd.dispose();
  tf.dispose([w, g]);
});
