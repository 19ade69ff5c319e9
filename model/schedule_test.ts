import assert from "node:assert/strict";
import { learningRateAt } from "./schedule.ts";

function close(actual: number, expected: number, tol = 1e-15): void {
  assert.ok(
    Math.abs(actual - expected) <= tol,
    `got ${actual}, expected ${expected}`,
  );
}

Deno.test("learningRateAt reproduces the reference's final-epoch multipliers", () => {
  const cases = [
    { name: "AM", epochs: 30, cardinality: 40, multiplier: 0.210 },
    { name: "SC", epochs: 50, cardinality: 50, multiplier: 0.170 },
    { name: "VS", epochs: 35, cardinality: 80, multiplier: 0.294 },
    { name: "CS", epochs: 20, cardinality: 40, multiplier: 0.278 },
  ];
  for (const { name, epochs, cardinality, multiplier } of cases) {
    const lr = learningRateAt(epochs - 1, {
      lr0: 1e-3,
      gamma: 10,
      cardinality,
    });
    assert.equal(Number((lr / 1e-3).toFixed(3)), multiplier, name);
  }
});

Deno.test("learningRateAt: lr0 in epochs 0 and 1, Eq. 6 one epoch late, then frozen", () => {
  const options = { lr0: 0.01, gamma: 10, cardinality: 10 };
  assert.equal(learningRateAt(0, options), 0.01);
  assert.equal(learningRateAt(1, options), 0.01); // (1 + 0)^−0.75
  close(learningRateAt(2, options), 0.01 * 2 ** -0.75); // 1 + 10·1/10 = 2
  close(learningRateAt(4, options), 0.01 * 4 ** -0.75); // 1 + 10·3/10 = 4
  close(learningRateAt(9, options), 0.01 * 9 ** -0.75); // k = C − 1: 1 + 10·8/10 = 9
  assert.equal(learningRateAt(10, options), learningRateAt(9, options));
  assert.equal(learningRateAt(1000, options), learningRateAt(9, options));
  // AM's last epoch: 1 + 10·28/40 = 8, and 8^−0.75 = 2^−2.25.
  close(
    learningRateAt(29, { lr0: 1e-3, gamma: 10, cardinality: 40 }),
    1e-3 * 2 ** -2.25,
    1e-18,
  );
  // Another power.
  close(learningRateAt(2, { ...options, power: 1 }), 0.005);
});

Deno.test("learningRateAt with cardinality 1 never decays", () => {
  for (const epoch of [0, 1, 5]) {
    assert.equal(
      learningRateAt(epoch, { lr0: 0.1, gamma: 10, cardinality: 1 }),
      0.1,
    );
  }
});

Deno.test("learningRateAt refuses invalid arguments", () => {
  const options = { lr0: 1e-3, gamma: 10, cardinality: 40 };
  assert.throws(
    () => learningRateAt(-1, options),
    /Cannot compute the learning rate: invalid epoch -1, must be an integer ≥ 0/,
  );
  assert.throws(() => learningRateAt(0.5, options), /invalid epoch 0\.5/);
  assert.throws(
    () => learningRateAt(1, { ...options, cardinality: 0 }),
    /invalid lr cardinality 0, must be an integer ≥ 1/,
  );
  assert.throws(
    () => learningRateAt(1, { ...options, lr0: NaN }),
    /invalid lr0 NaN, must be a finite number ≥ 0/,
  );
  assert.throws(
    () => learningRateAt(1, { ...options, gamma: -1 }),
    /invalid lr gamma -1/,
  );
});
