/**
 * Tests of the loss-scaling kernels (`loss_scale.ts`) and of the
 * loss-scaled SGD variant (`sgd.ts`, `lossScale: true`): the scan against
 * single non-finite values anywhere and large finite ones, the GPU policy
 * against `model/loss_scale.ts` over scripted steps, skipping and
 * unscaling exactly, and scale 1 bit for bit the plain SGD step.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  DEFAULT_LOSS_SCALE,
  initialLossScaleState,
  type LossScaleOptions,
  type LossScaleState,
  lossScaleStep,
  resolveLossScaleOptions,
} from "../../model/loss_scale.ts";
import type { AnyKernelPlan } from "../runtime.ts";
import { gpuTest, randomArray, runPlan } from "../testing.ts";
import {
  decodeLossScaleState,
  encodeLossScaleState,
  LOSS_SCALE_WORDS,
  lossScaleSeed,
  lossScaleUpdate,
  LossScaleWord,
  nonFiniteScan,
} from "./loss_scale.ts";
import { sgdHyper, type SgdHyperOptions, sgdUpdate } from "./sgd.ts";

/** Float32 bit patterns of the non-finite values the scan must find. */
const NON_FINITE_BITS = [
  0x7f800000, // +inf
  0xff800000, // −inf
  0x7fc00000, // quiet NaN
  0xffffffff, // NaN, sign and all payload bits set
  0x7f800001, // signalling NaN
];

/** Finite values with large exponents, denormals and zeros: never flagged. */
const FINITE_EDGES = [
  65504,
  -65504,
  3e38,
  -3.4028234663852886e38,
  1e-40,
  -1.401298464324817e-45,
  0,
  -0,
  1.1754943508222875e-38,
];

/** Regions of the multi-region scan: vec4 (12004), scalar (1001, 7), vec4 (64). */
const SIZES = [12004, 1001, 7, 64];

/** Clean regions: random values with the finite edge cases spread in. */
function cleanRegions(): Float32Array[] {
  return SIZES.map((n, r) => {
    const a = randomArray(n, 90 + r, 1e4);
    FINITE_EDGES.forEach((v, k) => a[(k * 131 + r) % n] = v);
    return a;
  });
}

const stateWords = (s: Partial<LossScaleState> = {}, found = 0) => {
  const w = encodeLossScaleState({
    ...initialLossScaleState(DEFAULT_LOSS_SCALE),
    ...s,
  });
  w[LossScaleWord.found] = found;
  return w;
};

const u32 = (a: Float32Array) =>
  new Uint32Array(a.buffer, a.byteOffset, a.length);

gpuTest(
  "nonFiniteScan finds one inf or NaN anywhere in several regions, odd lengths included",
  async (rt) => {
    // Two workgroups: each thread runs the unrolled loop and the remainder.
    const plan = nonFiniteScan({ sizes: SIZES, maxWorkgroups: 2 });
    assert.deepEqual(plan.steps[0].bind, [
      "grads0",
      "grads1",
      "grads2",
      "grads3",
      "lossScale",
    ]);
    assert.match(plan.steps[0].spec.code, /grads0: array<vec4<f32>>/);
    assert.match(plan.steps[0].spec.code, /grads1: array<f32>/);
    const scan = async (regions: Float32Array[], found = 0) => {
      const named = Object.fromEntries(
        regions.map((a, i) => [`grads${i}`, a]),
      );
      const words = stateWords({ scale: 1024, goodSteps: 17 }, found);
      const out = await runPlan(rt, plan, { ...named, lossScale: words }, [
        "lossScale",
      ]);
      const got = u32(out.lossScale);
      // Only the flag word may change.
      for (let k = 0; k < LOSS_SCALE_WORDS; k++) {
        if (k !== LossScaleWord.found) {
          assert.equal(got[k], words[k], `word ${k}`);
        }
      }
      return got[LossScaleWord.found];
    };
    assert.equal(
      await scan(cleanRegions()),
      0,
      "finite values are not flagged",
    );
    assert.equal(
      await scan(cleanRegions(), 1),
      1,
      "the scan never clears the flag",
    );
    let k = 0;
    for (const [r, n] of SIZES.entries()) {
      for (const at of [0, n - 1, n >> 1, 4 * 1537 + 3]) {
        if (at >= n) continue;
        const regions = cleanRegions();
        const bits = NON_FINITE_BITS[k++ % NON_FINITE_BITS.length];
        u32(regions[r])[at] = bits;
        assert.equal(
          await scan(regions),
          1,
          `0x${bits.toString(16)} at ${at} of region ${r} (${n} floats)`,
        );
      }
    }
  },
);

gpuTest(
  "nonFiniteScan on its default grid: one region of 300,004 floats",
  async (rt) => {
    const n = 300004;
    const plan = nonFiniteScan({ sizes: [n] });
    assert.deepEqual(plan.steps[0].spec.workgroups, [293, 1, 1]);
    for (const at of [-1, 0, 150001, n - 1]) {
      const a = randomArray(n, 7, 3e38);
      if (at >= 0) a[at] = at % 2 ? Infinity : NaN;
      const out = await runPlan(rt, plan, {
        grads0: a,
        lossScale: stateWords(),
      }, [
        "lossScale",
      ]);
      assert.equal(
        u32(out.lossScale)[LossScaleWord.found],
        at >= 0 ? 1 : 0,
        `at ${at}`,
      );
    }
  },
);

/**
 * Scan, loss-scaled SGD and policy update as a mixed step records them, over
 * a script: each step's gradient is `G·scale` (inf at one element on an
 * overflow step); state and weights must follow the reference exactly.
 */
async function scriptedSteps(
  rt: Parameters<Parameters<typeof gpuTest>[1]>[0],
  o: LossScaleOptions,
  script: readonly { overflow: boolean; first?: boolean }[],
  from: LossScaleState = initialLossScaleState(o),
): Promise<void> {
  const total = 301;
  const segments = [{ offset: 0, size: 200 }, { offset: 203, size: 98 }];
  const scan = nonFiniteScan({ sizes: [total] });
  const sgd = sgdUpdate({ total, segments, lossScale: true });
  const plain = sgdUpdate({ total, segments });
  const update = lossScaleUpdate(o);
  const step: AnyKernelPlan = {
    steps: [...scan.steps, ...sgd.steps, ...update.steps],
  };
  let state = from;
  let words = encodeLossScaleState(from);
  let params = randomArray(total, 11);
  let momentum: Float32Array = new Float32Array(total);
  let refParams = params;
  let refMomentum: Float32Array = momentum;
  for (const [k, s] of script.entries()) {
    const h: SgdHyperOptions = {
      momentum: 0.9,
      weightDecay: 1e-3,
      dampening: 0.25,
      nesterov: false,
      first: s.first ?? false,
      lrs: [0.1, 0.05],
    };
    // Gradients of a few units, so that G·scale is exact.
    const g = randomArray(total, 20 + k, 4);
    const scaled = g.map((v) => v * state.scale);
    if (s.overflow) scaled[(k * 97) % total] = k % 2 ? NaN : -Infinity;
    const out = await runPlan(rt, step, {
      grads0: scaled,
      params,
      grads: scaled,
      momentum,
      hyper: sgdHyper(h),
      lossScale: words,
    }, ["params", "momentum", "lossScale"]);
    // The reference: PyTorch's SGD (the plain kernel) on the unscaled
    // gradient for a taken step, nothing for a skipped one.
    if (!s.overflow) {
      const ref = await runPlan(rt, plain, {
        params: refParams,
        grads: g,
        momentum: refMomentum,
        hyper: sgdHyper({ ...h, first: h.first || state.firstPending }),
      }, ["params", "momentum"]);
      refParams = ref.params;
      refMomentum = ref.momentum;
    }
    state = lossScaleStep(state, s.overflow, o, h.first);
    words = u32(out.lossScale).slice();
    assert.deepEqual(
      decodeLossScaleState(words),
      state,
      `state after step ${k}`,
    );
    assert.equal(words[LossScaleWord.found], 0, `flag cleared after step ${k}`);
    assert.deepEqual(u32(out.params), u32(refParams), `params after step ${k}`);
    assert.deepEqual(
      u32(out.momentum),
      u32(refMomentum),
      `momentum after step ${k}`,
    );
    params = out.params;
    momentum = out.momentum;
  }
}

gpuTest(
  "loss-scaled steps follow the policy reference: backoff, growth at the interval, counter reset, skipped count",
  async (rt) => {
    const o = resolveLossScaleOptions({ growthInterval: 3 });
    const script = [
      true, // skipped first step: the momentum start stays pending
      true,
      false, // momentum starts here
      false,
      false, // grows
      false,
      true, // counter resets
      false,
      false,
      false, // grows
      true,
      true,
      false,
    ].map((overflow, k) => ({ overflow, first: k === 0 }));
    await scriptedSteps(rt, o, script);
  },
);

gpuTest(
  "loss-scaled steps at the default interval of 2000, from a state 2 steps short of growth",
  async (rt) => {
    await scriptedSteps(
      rt,
      DEFAULT_LOSS_SCALE,
      [{ overflow: false }, { overflow: false }, { overflow: false }],
      {
        ...initialLossScaleState(DEFAULT_LOSS_SCALE),
        goodSteps: 1998,
        steps: 1998,
      },
    );
  },
);

gpuTest(
  "lossScaleUpdate: float32 rounding of other factors, the floor and a growth past float32 not kept",
  async (rt) => {
    const o = resolveLossScaleOptions({
      initScale: 1,
      growthFactor: 3,
      backoffFactor: 0.7,
      growthInterval: 1,
    });
    const plan = lossScaleUpdate(o);
    const hyper = new Float32Array(8);
    for (
      const [from, overflow] of [
        [1, true],
        [Math.fround(0.7), false],
        [1.25 * 2 ** -126, true],
        [2 ** -126, true],
        [2 ** 127, false],
      ] as const
    ) {
      const s = { ...initialLossScaleState(o), scale: from };
      const out = await runPlan(rt, plan, {
        lossScale: stateWords(s, overflow ? 1 : 0),
        hyper,
      }, ["lossScale"]);
      assert.deepEqual(
        decodeLossScaleState(out.lossScale),
        lossScaleStep(s, overflow, o),
        `from ${from}, overflow ${overflow}`,
      );
    }
  },
);

const SEGMENTS = [
  { offset: 0, size: 37 },
  { offset: 64, size: 200 },
  { offset: 300, size: 101 },
];
const TOTAL = 420;

gpuTest(
  "sgdUpdate lossScale: skips a flagged step and unscales exactly; at scale 1 bit for bit the plain step",
  async (rt) => {
    const scaled = sgdUpdate({
      total: TOTAL,
      segments: SEGMENTS,
      lossScale: true,
    });
    const plain = sgdUpdate({ total: TOTAL, segments: SEGMENTS });
    assert.deepEqual(scaled.steps[0].bind, [
      "params",
      "grads",
      "momentum",
      "hyper",
      "lossScale",
    ]);
    assert.equal(scaled.steps[0].spec.label, "sgdUpdate lossScale");
    const params = randomArray(TOTAL, 31);
    const momentum = randomArray(TOTAL, 32);
    const g = randomArray(TOTAL, 33, 3);
    for (
      const h of [
        {
          momentum: 0.9,
          weightDecay: 1e-3,
          dampening: 0,
          nesterov: false,
          first: false,
        },
        {
          momentum: 0.8,
          weightDecay: 1e-2,
          dampening: 0,
          nesterov: true,
          first: true,
        },
        {
          momentum: 0.9,
          weightDecay: 0,
          dampening: 0.3,
          nesterov: false,
          first: false,
        },
        {
          momentum: 0,
          weightDecay: 5e-4,
          dampening: 0,
          nesterov: false,
          first: false,
        },
      ]
    ) {
      const hyper = sgdHyper({ ...h, lrs: [0.1, 0.02, 0.3] });
      const want = await runPlan(rt, plain, {
        params,
        grads: g,
        momentum,
        hyper,
      }, [
        "params",
        "momentum",
      ]);
      for (const scale of [1, 2 ** 16, 2 ** -3]) {
        const out = await runPlan(rt, scaled, {
          params,
          grads: g.map((v) => v * scale),
          momentum,
          hyper,
          lossScale: stateWords({ scale }),
        }, ["params", "momentum"]);
        const what = `scale ${scale}, ${JSON.stringify(h)}`;
        assert.deepEqual(u32(out.params), u32(want.params), `params, ${what}`);
        assert.deepEqual(
          u32(out.momentum),
          u32(want.momentum),
          `momentum, ${what}`,
        );
      }
      // Flagged: nothing moves, even with NaN gradients.
      const bad = g.slice();
      bad[5] = NaN;
      const skipped = await runPlan(rt, scaled, {
        params,
        grads: bad,
        momentum,
        hyper,
        lossScale: stateWords({ scale: 4 }, 1),
      }, ["params", "momentum"]);
      assert.deepEqual(
        u32(skipped.params),
        u32(params),
        "params of a skipped step",
      );
      assert.deepEqual(
        u32(skipped.momentum),
        u32(momentum),
        "momentum of a skipped step",
      );
    }
  },
);

gpuTest(
  "lossScaleSeed multiplies the seed by the scale, in place",
  async (rt) => {
    const n = 37 * 5;
    const plan = lossScaleSeed({ n });
    const d = randomArray(n, 41);
    for (const scale of [1, 65536, 0.5]) {
      const out = await runPlan(rt, plan, {
        dlogits: d,
        lossScale: stateWords({ scale }),
      }, ["dlogits"]);
      assert.deepEqual(out.dlogits, d.map((v) => v * scale), `scale ${scale}`);
    }
  },
);

Deno.test("loss-scale state words round-trip; kernel argument checks", () => {
  const s: LossScaleState = {
    scale: Math.fround(0.7),
    goodSteps: 1999,
    skippedSteps: 12,
    lastSkipped: true,
    firstPending: true,
    steps: 123456,
  };
  const w = encodeLossScaleState(s);
  assert.equal(w.length, LOSS_SCALE_WORDS);
  assert.equal(w[LossScaleWord.found], 0);
  assert.deepEqual(decodeLossScaleState(w), s);
  assert.deepEqual(
    decodeLossScaleState(new Float32Array(w.buffer)),
    s,
    "from the f32 view Runtime.read returns",
  );
  assert.throws(
    () => nonFiniteScan({ sizes: [] }),
    /Cannot build the non-finite scan: it takes 1 to 7 regions/,
  );
  assert.throws(
    () => nonFiniteScan({ sizes: new Array(8).fill(4) }),
    /1 to 7 regions, got 8/,
  );
  assert.throws(
    () => nonFiniteScan({ sizes: [0] }),
    /Cannot build kernel: scan region 0 size/,
  );
  assert.throws(
    () => nonFiniteScan({ sizes: [2 ** 31] }),
    /2³¹ floats or more/,
  );
  assert.throws(
    () => lossScaleSeed({ n: 0 }),
    /Cannot build kernel: loss seed n/,
  );
  assert.throws(
    () => lossScaleUpdate({ growthInterval: 0 }),
    /Cannot use loss scaling: growthInterval must be an integer/,
  );
  assert.deepEqual(lossScaleUpdate(), lossScaleUpdate(DEFAULT_LOSS_SCALE));
  // The workgroup cap and the plain SGD kernel untouched by the option.
  assert.deepEqual(
    nonFiniteScan({ sizes: [4 * 2 ** 20] }).steps[0].spec.workgroups,
    [1024, 1, 1],
  );
  const plain = sgdUpdate({ total: TOTAL, segments: SEGMENTS });
  assert.deepEqual(
    plain,
    sgdUpdate({ total: TOTAL, segments: SEGMENTS, lossScale: false }),
  );
  assert.doesNotMatch(plain.steps[0].spec.code, /lossScale/);
});
