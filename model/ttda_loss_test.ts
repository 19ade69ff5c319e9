/**
 * Tests of the TTDA losses: values against the formulas evaluated by hand in
 * float64, and gradients w.r.t. the logits against central finite
 * differences of the float64 formulas.
 *
 * @module
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import type { Scalar, Tensor2D } from "@tensorflow/tfjs";
import {
  entropy,
  generalizedEntropy,
  nuclearNormSurrogate,
  ttdaLoss,
} from "./ttda_loss.ts";

await tf.setBackend("cpu");

type Matrix = number[][];

// float64 versions of the formulas (reference §9), written out with loops.
function nm64(p: Matrix): number {
  const n = p[0].length;
  let s = 0;
  for (let c = 0; c < n; c++) {
    let col = 0;
    for (const row of p) col += row[c] * row[c];
    s += Math.sqrt(col);
  }
  return -s / n;
}
function en64(p: Matrix): number {
  let s = 0;
  for (const row of p) {
    for (const v of row) s -= v * Math.log(v + 1e-6);
  }
  return s / p.length;
}
function gen64(p: Matrix, q: number): number {
  let s = 0;
  for (const row of p) {
    let r = 0;
    for (const v of row) r += Math.pow(v, q);
    s += (1 - r) / (q - 1);
  }
  return s / p.length;
}
function softmax64(logits: Matrix): Matrix {
  return logits.map((row) => {
    const m = Math.max(...row);
    const e = row.map((v) => Math.exp(v - m));
    const z = e.reduce((a, b) => a + b, 0);
    return e.map((v) => v / z);
  });
}
function total64(
  logits: Matrix,
  o: { alpha: number; beta: number; gamma: number; q: number },
): number {
  const p = softmax64(logits);
  return (o.alpha ? o.alpha * nm64(p) : 0) + (o.beta ? o.beta * en64(p) : 0) +
    (o.gamma ? o.gamma * gen64(p, o.q) : 0);
}

async function value(t: Scalar): Promise<number> {
  const v = (await t.data())[0];
  t.dispose();
  return v;
}

function close(actual: number, expected: number, tol: number, what: string) {
  assert.ok(
    Math.abs(actual - expected) <= tol * Math.max(1, Math.abs(expected)),
    `${what}: ${actual} vs expected ${expected}`,
  );
}

const P: Matrix = [
  [0.7, 0.2, 0.1],
  [0.1, 0.8, 0.1],
  [0.25, 0.25, 0.5],
  [1 / 3, 1 / 3, 1 / 3],
];

Deno.test("NM, EN and GEN match the formulas on hand-made probability matrices", async () => {
  const t = tf.tensor2d(P) as Tensor2D;
  // Hand-computed literals (float64) for P:
  // column norms sqrt(0.49+0.01+0.0625+1/9), sqrt(0.04+0.64+0.0625+1/9),
  // sqrt(0.01+0.01+0.25+1/9).
  const nmHand = -(Math.sqrt(0.49 + 0.01 + 0.0625 + 1 / 9) +
    Math.sqrt(0.04 + 0.64 + 0.0625 + 1 / 9) +
    Math.sqrt(0.01 + 0.01 + 0.25 + 1 / 9)) / 3;
  close(nmHand, nm64(P), 1e-15, "hand vs loop");
  close(await value(nuclearNormSurrogate(tf, t)), nmHand, 1e-6, "NM");
  close(await value(entropy(tf, t)), en64(P), 1e-6, "EN");
  close(
    await value(generalizedEntropy(tf, t, 1.1)),
    gen64(P, 1.1),
    1e-5,
    "GEN q=1.1",
  );
  close(
    await value(generalizedEntropy(tf, t, 0.8)),
    gen64(P, 0.8),
    1e-5,
    "GEN q=0.8",
  );
  t.dispose();

  // One-hot rows: NM = −(1/n)·(number of distinct classes hit, each once) and no entropy.
  const eye = tf.tensor2d([[1, 0], [0, 1]]) as Tensor2D;
  close(await value(nuclearNormSurrogate(tf, eye)), -1, 1e-7, "NM identity");
  close(await value(entropy(tf, eye)), -Math.log(1 + 1e-6), 1e-6, "EN one-hot");
  close(await value(generalizedEntropy(tf, eye, 1.1)), 0, 1e-7, "GEN one-hot");
  eye.dispose();

  // Uniform rows over 4 classes: EN ≈ ln 4 (less the ε), GEN = (1 − 4·0.25^q)/(q − 1).
  const uniform = tf.fill([5, 4], 0.25) as Tensor2D;
  close(
    await value(entropy(tf, uniform)),
    -Math.log(0.25 + 1e-6),
    1e-6,
    "EN uniform",
  );
  close(
    await value(generalizedEntropy(tf, uniform, 1.1)),
    (1 - 4 * Math.pow(0.25, 1.1)) / 0.1,
    1e-5,
    "GEN uniform",
  );
  close(
    await value(nuclearNormSurrogate(tf, uniform)),
    -Math.sqrt(5 * 0.0625),
    1e-6,
    "NM uniform",
  );
  uniform.dispose();
});

Deno.test("ttdaLoss = α·NM + β·EN + γ·GEN on softmax(logits), skipping zero rates", async () => {
  const logits: Matrix = [[2, -1, 0.5, 0], [0.1, 0.2, 3, -2], [-1, -1, -1, 4]];
  const t = tf.tensor2d(logits) as Tensor2D;
  const p = softmax64(logits);
  const am = { alpha: 1, beta: 0.5, gamma: 0.5, q: 1.1 };
  close(
    await value(ttdaLoss(tf, t, am)),
    nm64(p) + 0.5 * en64(p) + 0.5 * gen64(p, 1.1),
    1e-5,
    "AM rates",
  );
  const sc1 = { alpha: 0.2, beta: 1, gamma: 0, q: 0.8 };
  close(
    await value(ttdaLoss(tf, t, sc1)),
    0.2 * nm64(p) + en64(p),
    1e-5,
    "SC1 rates",
  );
  // γ = 0 skips GEN, so even q = 1 is accepted.
  close(
    await value(ttdaLoss(tf, t, { alpha: 0, beta: 0, gamma: 0, q: 1 })),
    0,
    0,
    "all off",
  );
  assert.throws(
    () => ttdaLoss(tf, t, { alpha: 1, beta: 0, gamma: 1, q: 1 }),
    /q must be a finite number other than 1/,
  );
  assert.throws(
    () => ttdaLoss(tf, t, { alpha: -1, beta: 0, gamma: 0, q: 1.1 }),
    /alpha must be a finite number ≥ 0/,
  );
  t.dispose();
});

Deno.test("gradients w.r.t. the logits match central finite differences, term by term", async () => {
  const logits: Matrix = [
    [0.3, -0.2, 1.1, 0.0, -0.7],
    [1.5, 0.4, -0.3, 0.2, 0.1],
    [-0.5, 0.9, 0.3, -1.2, 0.6],
  ];
  const cases = [
    { alpha: 1, beta: 0, gamma: 0, q: 1.1 },
    { alpha: 0, beta: 1, gamma: 0, q: 1.1 },
    { alpha: 0, beta: 0, gamma: 1, q: 1.1 },
    { alpha: 0, beta: 0, gamma: 1, q: 0.8 },
    { alpha: 1, beta: 0.5, gamma: 0.5, q: 1.1 },
  ];
  const h = 1e-5;
  for (const rates of cases) {
    const before = tf.memory().numTensors;
    const x = tf.tensor2d(logits) as Tensor2D;
    const g = tf.grad((l) => ttdaLoss(tf, l as Tensor2D, rates))(x);
    const got = await g.array() as Matrix;
    tf.dispose([x, g]);
    assert.equal(tf.memory().numTensors, before, "tensors leaked");
    for (let b = 0; b < logits.length; b++) {
      for (let c = 0; c < logits[0].length; c++) {
        const plus = logits.map((r) => r.slice());
        const minus = logits.map((r) => r.slice());
        plus[b][c] += h;
        minus[b][c] -= h;
        const fd = (total64(plus, rates) - total64(minus, rates)) / (2 * h);
        assert.ok(
          Math.abs(got[b][c] - fd) <= 1e-5 + 1e-3 * Math.abs(fd),
          `${JSON.stringify(rates)} d/dlogit[${b}][${c}]: ${
            got[b][c]
          } vs finite difference ${fd}`,
        );
      }
    }
  }
});
