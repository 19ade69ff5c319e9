import assert from "node:assert/strict";
import {
  ModelOptions,
  modelPlan,
  modelSummary,
  PAPER_MODELS,
  parameterCount,
} from "./config.ts";

Deno.test("parameterCount reproduces the paper's five model sizes exactly", () => {
  const expected = {
    am: 99_126_548,
    sc1: 103_070_780,
    sc2: 103_072_070,
    vs: 97_005_989,
    cs: 100_976_556,
  };
  for (const [key, count] of Object.entries(expected)) {
    const { options, dims } = PAPER_MODELS[key as keyof typeof expected];
    assert.equal(parameterCount(options, dims), count, key);
    assert.equal(modelSummary(options, dims).parameters, count, key);
  }
});

Deno.test("modelPlan derives K, the sequence and the CNN depth of each paper model", () => {
  const expected = {
    am: { k: 20, blocks: 16 },
    sc1: { k: 13, blocks: 20 },
    sc2: { k: 13, blocks: 20 },
    vs: { k: 65, blocks: 21 },
    cs: { k: 92, blocks: 25 },
  };
  for (const [key, e] of Object.entries(expected)) {
    const { options, dims } = PAPER_MODELS[key as keyof typeof expected];
    const plan = modelPlan(options, dims);
    assert.equal(plan.tokens, e.k, key);
    assert.equal(plan.sequence, e.k + 2, key);
    assert.equal(plan.blocks.length, e.blocks, key);
    assert.equal(plan.cnnChannels, 1024, key);
    assert.equal(
      plan.params.find((p) => p.name === "transform.pos_embed")?.shape[1],
      e.k + 2,
    );
  }
});

Deno.test("ModelOptions defaults are the paper's", () => {
  const o = ModelOptions.parse({});
  assert.equal(o.embedDim, 768);
  assert.equal(o.depth, 12);
  assert.equal(o.heads, 12);
  assert.equal(o.mlpDim, 3072);
  assert.equal(o.dropout, 0.15);
  assert.equal(o.kernelSize, 7);
  assert.equal(o.tokenMode, "cls+tal");
  assert.equal(o.ffnNorm, false);
  assert.equal(o.bnEps, 1e-6);
  assert.equal(o.shortcutBnEps, 1e-5);
  assert.equal(o.bnMomentum, 0.1);
  assert.equal(o.lnEps, 1e-6);
  assert.equal(o.extend, 2048);
  assert.equal(o.conv, 256);
  assert.equal(o.mergeKernel, 15);
  assert.deepEqual(o.groups, [6, 12]);
  assert.equal(o.width, 128);
  assert.equal(o.rootPool, true);
});

Deno.test("ModelOptions rejects bad values and unknown keys", () => {
  assert.equal(ModelOptions.safeParse({ kernelSize: 4 }).success, false);
  assert.equal(ModelOptions.safeParse({ heads: 5 }).success, false);
  assert.equal(ModelOptions.safeParse({ dropout: 1 }).success, false);
  assert.equal(ModelOptions.safeParse({ tokenMode: "tal" }).success, false);
  assert.equal(ModelOptions.safeParse({ widht: 64 }).success, false);
  assert.equal(ModelOptions.safeParse({ rootStride: 0 }).success, false);
  assert.equal(ModelOptions.safeParse({ rootPadding: -1 }).success, false);
  assert.equal(ModelOptions.safeParse({ rootPool: "no" }).success, false);
});

Deno.test("modelPlan: the root conv's geometry comes from the options and is checked against the frames", () => {
  const options = ModelOptions.parse({ width: 4, groups: [0] });
  const dims = { nMels: 6, frames: 24, classes: 3 };
  const stem = modelPlan(options, dims).layers[0];
  assert.equal(stem.kind, "stem");
  if (stem.kind === "stem") {
    assert.deepEqual(
      [stem.conv.kernel, stem.conv.stride, stem.conv.pad, stem.conv.tOut],
      [14, 2, 6, 12],
    );
    assert.equal(stem.pool.tIn, 12);
  }
  const custom = modelPlan(
    { ...options, rootKernel: 5, rootStride: 3, rootPadding: 1 },
    dims,
  ).layers[0];
  assert.ok(custom.kind === "stem" && custom.conv.tOut === 8);
  assert.throws(
    () => modelPlan({ ...options, rootKernel: 30, rootPadding: 0 }, dims),
    /24 frames are too few for the CNN root \(conv k30 s2 p0, max-pool k6 s2 p2\)/,
  );
});

Deno.test("modelPlan: rootPool false skips the max-pool, its window passes the root conv's length through", () => {
  const options = ModelOptions.parse({ width: 4, groups: [0, 1] });
  const dims = { nMels: 6, frames: 24, classes: 3 };
  const pooled = modelPlan(options, dims);
  const plan = modelPlan({ ...options, rootPool: false }, dims);
  const stem = plan.layers[0];
  assert.ok(stem.kind === "stem" && !stem.maxPool);
  assert.deepEqual(
    [stem.pool.kernel, stem.pool.stride, stem.pool.pad],
    [1, 1, 0],
  );
  assert.deepEqual([stem.pool.tIn, stem.pool.tOut], [12, 12]);
  assert.equal(plan.blocks[0].tIn, 12);
  // root 12, then group 1 halves: K = 6 instead of 3.
  assert.equal(plan.tokens, 6);
  assert.equal(pooled.tokens, 3);
  assert.ok(pooled.layers[0].kind === "stem" && pooled.layers[0].maxPool);
  assert.throws(
    () =>
      modelPlan(
        { ...options, rootPool: false, rootKernel: 30, rootPadding: 0 },
        dims,
      ),
    /24 frames are too few for the CNN root \(conv k30 s2 p0, no max-pool\)/,
  );
});

Deno.test("rootPool false on the paper's sc1 model: K 26 instead of 13, 13 positions more", () => {
  const { options, dims } = PAPER_MODELS.sc1;
  const plan = modelPlan({ ...options, rootPool: false }, dims);
  assert.equal(plan.tokens, 26);
  assert.equal(plan.sequence, 28);
  assert.equal(
    parameterCount({ ...options, rootPool: false }, dims),
    103_070_780 + 13 * 768,
  );
});

Deno.test("modelPlan checks tokens against the frame count", () => {
  const { options, dims } = PAPER_MODELS.am;
  assert.equal(modelPlan({ ...options, tokens: 20 }, dims).tokens, 20);
  assert.throws(
    () => modelPlan({ ...options, tokens: 21 }, dims),
    /tokens is 21 but 160 frames give K = 20/,
  );
  assert.throws(
    () => parameterCount(options, { ...dims, frames: 2 }),
    /too few/,
  );
});

Deno.test("the conv3 ablation and token modes change the count as expected", () => {
  const { options, dims } = PAPER_MODELS.sc1;
  const base = parameterCount(options, dims);
  // conv7 → conv3 removes 4·cmid² per block: 7 blocks at 128, 13 at 256.
  const conv3 = parameterCount({ ...options, kernelSize: 3 }, dims);
  assert.equal(base - conv3, 4 * (7 * 128 * 128 + 13 * 256 * 256));
  // CLS only: one token and one position fewer.
  const cls = parameterCount({ ...options, tokenMode: "cls" }, dims);
  assert.equal(base - cls, 2 * 768);
  assert.equal(
    parameterCount({ ...options, tokenMode: "cls+distil" }, dims),
    base,
  );
});
