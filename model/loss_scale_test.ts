/**
 * Tests of the loss-scaling policy reference (`loss_scale.ts`): PyTorch
 * GradScaler's backoff, growth and counter on hand-worked sequences, the
 * float32 rounding, the floor and ceiling, and the option checks.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  DEFAULT_LOSS_SCALE,
  initialLossScaleState,
  lossScaleFromValues,
  type LossScaleState,
  lossScaleStep,
  lossScaleToValues,
  MIN_LOSS_SCALE,
  resolveLossScaleOptions,
} from "./loss_scale.ts";

/** Runs the policy over a script of overflow (true) and good (false) steps. */
function run(
  script: readonly boolean[],
  o = DEFAULT_LOSS_SCALE,
  from = initialLossScaleState(o),
): LossScaleState[] {
  const out: LossScaleState[] = [];
  let s = from;
  for (const overflow of script) out.push(s = lossScaleStep(s, overflow, o));
  return out;
}

Deno.test("loss scale policy: PyTorch's defaults and a hand-worked sequence", () => {
  assert.deepEqual(resolveLossScaleOptions(), {
    initScale: 65536,
    growthFactor: 2,
    backoffFactor: 0.5,
    growthInterval: 2000,
  });
  const o = resolveLossScaleOptions({ growthInterval: 3 });
  // overflow, good, good, good (grow), good, overflow, good ×3 (grow)
  const s = run(
    [true, false, false, false, false, true, false, false, false],
    o,
  );
  assert.deepEqual(s.map((x) => x.scale), [
    32768,
    32768,
    32768,
    65536,
    65536,
    32768,
    32768,
    32768,
    65536,
  ]);
  assert.deepEqual(s.map((x) => x.goodSteps), [0, 1, 2, 0, 1, 0, 1, 2, 0]);
  assert.deepEqual(s.map((x) => x.skippedSteps), [1, 1, 1, 1, 1, 2, 2, 2, 2]);
  assert.deepEqual(s.map((x) => x.lastSkipped), [
    true,
    false,
    false,
    false,
    false,
    true,
    false,
    false,
    false,
  ]);
  assert.deepEqual(s.map((x) => x.steps), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
});

Deno.test("loss scale policy: growth at the default interval of 2000 good steps", () => {
  const s = run(new Array(2000).fill(false));
  assert.equal(s[1998].scale, 65536);
  assert.equal(s[1998].goodSteps, 1999);
  assert.equal(s[1999].scale, 131072);
  assert.equal(s[1999].goodSteps, 0);
});

Deno.test("loss scale policy: float32 rounding, floor and ceiling", () => {
  const o = resolveLossScaleOptions({
    initScale: 1,
    growthFactor: 3,
    backoffFactor: 0.7,
    growthInterval: 1,
  });
  const s = run([true, false], o);
  assert.equal(s[0].scale, Math.fround(0.7));
  assert.notEqual(s[0].scale, 0.7);
  assert.equal(s[1].scale, Math.fround(s[0].scale * 3));
  // Backing off stops at 2⁻¹²⁶; growth past the largest float32 is not kept.
  const floor = run([true, true], o, {
    ...initialLossScaleState(o),
    scale: 1.25 * 2 ** -126,
  });
  assert.deepEqual(floor.map((x) => x.scale), [MIN_LOSS_SCALE, MIN_LOSS_SCALE]);
  const top = run([false], o, { ...initialLossScaleState(o), scale: 2 ** 127 });
  assert.equal(top[0].scale, 2 ** 127);
  assert.equal(top[0].goodSteps, 0);
});

Deno.test("loss scale policy: a skipped first-momentum step stays pending until a step is taken", () => {
  const o = DEFAULT_LOSS_SCALE;
  let s = lossScaleStep(initialLossScaleState(o), true, o, true);
  assert.equal(s.firstPending, true);
  s = lossScaleStep(s, true, o, false);
  assert.equal(s.firstPending, true);
  s = lossScaleStep(s, false, o, false);
  assert.equal(s.firstPending, false);
  assert.equal(lossScaleStep(s, true, o, false).firstPending, false);
});

Deno.test("resolveLossScaleOptions refuses values out of range, naming them", () => {
  const cases: [object, RegExp][] = [
    [
      { initScale: 0 },
      /initScale must be a finite float32 number ≥ 2⁻¹²⁶, got 0/,
    ],
    [{ initScale: 1e39 }, /initScale .* got 1e\+39/],
    [{ initScale: NaN }, /initScale/],
    [{ growthFactor: 1 }, /growthFactor must be a finite number > 1, got 1/],
    [{ growthFactor: Infinity }, /growthFactor/],
    [{ backoffFactor: 1 }, /backoffFactor must be a number in \(0, 1\), got 1/],
    [{ backoffFactor: 0 }, /backoffFactor/],
    [
      { growthInterval: 0 },
      /growthInterval must be an integer in 1…2³¹ − 1, got 0/,
    ],
    [{ growthInterval: 2.5 }, /growthInterval/],
  ];
  for (const [o, message] of cases) {
    assert.throws(
      () => resolveLossScaleOptions(o, "train.lossScale"),
      (e: Error) =>
        e instanceof RangeError &&
        e.message.startsWith("Cannot use train.lossScale: ") &&
        message.test(e.message),
      JSON.stringify(o),
    );
  }
});

Deno.test("loss scale state round-trips through a checkpoint's values; bad values are refused", () => {
  const s: LossScaleState = {
    scale: 2 ** -3,
    goodSteps: 17,
    skippedSteps: 4,
    lastSkipped: true,
    firstPending: true,
    steps: 123456,
  };
  assert.deepEqual(lossScaleFromValues(lossScaleToValues(s), "last"), s);
  const bad = Float32Array.of(0, 1, 2, 0, 0, 3);
  assert.throws(() => lossScaleFromValues(bad, "checkpoints/last"), {
    message:
      'Cannot resume the loss scaling from checkpoints/last: its "lossScale" entry is not [scale, goodSteps, skippedSteps, lastSkipped, firstPending, steps] (got [0, 1, 2, 0, 0, 3]); resume from an intact checkpoint or start the run afresh',
  });
  assert.throws(() => lossScaleFromValues([1, 2, 3], "x"), /got \[1, 2, 3\]/);
  assert.throws(
    () => lossScaleFromValues([1, 0.5, 0, 0, 0, 1], "x"),
    /Cannot resume the loss scaling/,
  );
});
