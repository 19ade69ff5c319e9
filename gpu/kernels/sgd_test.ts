/**
 * Tests of the fused SGD step (`sgd.ts`) against `model/sgd.ts`-style float64 steps.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  assertClose,
  gpuRuntime,
  gpuTests,
  randomArray,
  runPlan,
} from "../testing.ts";
import { sgdHyper, type SgdSegment, sgdUpdate } from "./sgd.ts";

interface SgdStepOptions {
  momentum: number;
  weightDecay: number;
  dampening: number;
  nesterov: boolean;
  first: boolean;
  lrs: number[];
}

/** The rule of model/sgd.ts in float64, in place (gaps untouched). */
function sgdRef(
  segments: readonly SgdSegment[],
  w: Float64Array,
  grad: ArrayLike<number>,
  buf: Float64Array,
  h: SgdStepOptions,
): void {
  segments.forEach((s, i) => {
    for (let e = s.offset; e < s.offset + s.size; e++) {
      let g = grad[e] + h.weightDecay * w[e];
      if (h.momentum !== 0) {
        buf[e] = h.first ? g : h.momentum * buf[e] + (1 - h.dampening) * g;
        g = h.nesterov ? g + h.momentum * buf[e] : buf[e];
      }
      w[e] -= h.lrs[i] * g;
    }
  });
}

const SGD_SEGMENTS: SgdSegment[] = [
  { offset: 0, size: 37 },
  { offset: 64, size: 1 },
  { offset: 128, size: 200 },
  { offset: 328, size: 0 },
  { offset: 384, size: 5 },
  { offset: 389, size: 11 },
  { offset: 600, size: 301 },
];
const SGD_TOTAL = 1000;

async function sgdThreeSteps(
  segments: readonly SgdSegment[],
  total: number,
  steps: SgdStepOptions[],
): Promise<void> {
  const inSegment = new Uint8Array(total);
  for (const s of segments) inSegment.fill(1, s.offset, s.offset + s.size);
  // Gaps hold sentinels that must survive.
  let params = randomArray(total, 61);
  let momentum = randomArray(total, 62);
  const w = Float64Array.from(params);
  const buf = Float64Array.from(momentum);
  const plan = sgdUpdate({ total, segments });
  assert.deepEqual(plan.steps.map((s) => s.bind), [[
    "params",
    "grads",
    "momentum",
    "hyper",
  ]]);
  for (const [k, h] of steps.entries()) {
    const grads = randomArray(total, 63 + k);
    const out = await runPlan(await gpuRuntime(), plan, {
      params,
      grads,
      momentum,
      hyper: sgdHyper(h),
    }, ["params", "momentum"]);
    sgdRef(segments, w, grads, buf, h);
    assertClose(out.params, w, `params after step ${k}`);
    assertClose(out.momentum, buf, `momentum after step ${k}`);
    for (let e = 0; e < total; e++) {
      if (inSegment[e]) continue;
      assert.equal(out.params[e], params[e], `gap ${e} of params`);
      assert.equal(out.momentum[e], momentum[e], `gap ${e} of momentum`);
    }
    params = out.params;
    momentum = out.momentum;
  }
}

const LRS = SGD_SEGMENTS.map((_, i) => 0.05 * (i + 1));

for (
  const [name, base] of [
    ["heavy ball", {
      momentum: 0.9,
      weightDecay: 1e-3,
      dampening: 0,
      nesterov: false,
    }],
    ["nesterov", {
      momentum: 0.8,
      weightDecay: 1e-2,
      dampening: 0,
      nesterov: true,
    }],
    ["dampening", {
      momentum: 0.9,
      weightDecay: 0,
      dampening: 0.3,
      nesterov: false,
    }],
  ] as const
) {
  Deno.test({
    name: `sgdUpdate ${name}: first step, then two momentum steps`,
    ignore: !gpuTests,
    async fn() {
      await sgdThreeSteps(SGD_SEGMENTS, SGD_TOTAL, [
        { ...base, first: true, lrs: LRS },
        { ...base, first: false, lrs: LRS },
        { ...base, first: false, lrs: LRS.map((x) => x / 2) },
      ]);
    },
  });
}

Deno.test({
  name:
    "sgdUpdate momentum 0 (buffers untouched), then the first momentum step",
  ignore: !gpuTests,
  async fn() {
    const off = {
      momentum: 0,
      weightDecay: 1e-3,
      dampening: 0,
      nesterov: false,
      first: false,
      lrs: LRS,
    };
    await sgdThreeSteps(SGD_SEGMENTS, SGD_TOTAL, [
      off,
      off,
      { ...off, momentum: 0.9, first: true },
    ]);
  },
});

Deno.test({
  name: "sgdUpdate with 500 segments and random gaps",
  ignore: !gpuTests,
  async fn() {
    const r = randomArray(1000, 71);
    const segments: SgdSegment[] = [];
    let at = 3;
    for (let i = 0; i < 500; i++) {
      const size = Math.floor((r[2 * i] + 1) * 4); // 0…7
      segments.push({ offset: at, size });
      at += size + Math.floor((r[2 * i + 1] + 1) * 2); // gap 0…3
    }
    const lrs = segments.map((_, i) => 0.001 * (i + 1));
    const h = {
      momentum: 0.9,
      weightDecay: 1e-3,
      dampening: 0,
      nesterov: false,
      lrs,
    };
    await sgdThreeSteps(segments, at + 5, [
      { ...h, first: true },
      { ...h, first: false },
    ]);
  },
});

Deno.test("sgdHyper layout and sgdUpdate argument checks", () => {
  const h = sgdHyper({
    momentum: 0.9,
    weightDecay: 1e-3,
    dampening: 0.1,
    nesterov: true,
    first: true,
    lrs: [0.5, 0.25],
  });
  assert.deepEqual(
    [...h],
    [0.9, 1e-3, 0.1, 1, 1, 0, 0, 0, 0.5, 0.25].map(Math.fround),
  );
  assert.throws(() =>
    sgdUpdate({
      total: 10,
      segments: [{ offset: 4, size: 2 }, { offset: 5, size: 1 }],
    })
  );
  assert.throws(() =>
    sgdUpdate({ total: 10, segments: [{ offset: 8, size: 3 }] })
  );
});
