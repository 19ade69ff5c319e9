import assert from "node:assert/strict";
import {
  attention,
  attentionBlock,
  type AttentionOptions,
} from "./attention.ts";
import {
  gpuTests,
  maxAbsDiff,
  randomArray,
  runPlan,
  testRuntime,
} from "../testing.ts";

const opts = {
  ignore: !gpuTests,
  sanitizeResources: false,
  sanitizeOps: false,
};

/** float64 reference: softmax(scale·QKᵀ)·V per clip and head into a copy of `out`. */
function reference(
  o: AttentionOptions,
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  out: Float32Array,
): Float64Array {
  const y = Float64Array.from(out);
  const dh = o.headDim;
  for (let b = 0; b < o.batch; b++) {
    for (let h = 0; h < o.heads; h++) {
      for (let i = 0; i < o.queries; i++) {
        const qa = (o.offsetQ ?? 0) + (b * o.queries + i) * o.ldq + h * dh;
        const s = new Float64Array(o.keys);
        for (let j = 0; j < o.keys; j++) {
          const ka = (o.offsetK ?? 0) + (b * o.keys + j) * o.ldk + h * dh;
          let acc = 0;
          for (let c = 0; c < dh; c++) acc += q[qa + c] * k[ka + c];
          s[j] = o.scale * acc;
        }
        const mx = Math.max(...s);
        let sum = 0;
        for (let j = 0; j < o.keys; j++) {
          s[j] = Math.exp(s[j] - mx);
          sum += s[j];
        }
        const oa = (b * o.queries + i) * o.ldo + h * dh;
        for (let c = 0; c < dh; c++) {
          let acc = 0;
          for (let j = 0; j < o.keys; j++) {
            acc += s[j] * v[
              (o.offsetV ?? 0) + (b * o.keys + j) * o.ldv +
              h * dh + c
            ];
          }
          y[oa + c] = acc / sum;
        }
      }
    }
  }
  return y;
}

let seed = 11;

async function check(o: AttentionOptions, what: string): Promise<void> {
  const rt = (await testRuntime())!;
  const span = (off: number | undefined, rows: number, ld: number) =>
    (off ?? 0) + rows * ld;
  const q = randomArray(span(o.offsetQ, o.batch * o.queries, o.ldq), seed++);
  const k = randomArray(span(o.offsetK, o.batch * o.keys, o.ldk), seed++, 2);
  const v = randomArray(span(o.offsetV, o.batch * o.keys, o.ldv), seed++);
  const out = randomArray(o.batch * o.queries * o.ldo, seed++);
  const plan = attention(o);
  const got = await runPlan(rt, plan, { q, k, v, o: out.slice() }, ["o"]);
  const want = reference(o, q, k, v, out);
  const d = maxAbsDiff(got.o, want);
  assert(d <= 2e-6, `${what} [${plan.steps[0].spec.label}]: differs by ${d}`);
}

const base = {
  batch: 2,
  heads: 3,
  headDim: 8,
  scale: 1 / Math.sqrt(8),
  storageBytes: 32768,
};

Deno.test(
  "attention matches softmax(scale·QKᵀ)·V per clip and head",
  opts,
  async () => {
    // every row a query; separate Q, K, V; output rows wider than the heads
    await check({
      ...base,
      queries: 7,
      keys: 7,
      ldq: 24,
      ldk: 24,
      ldv: 24,
      ldo: 28,
    }, "plain, ldo > width (extra columns untouched)");
    // one packed [K V Q] projection output, as eval graphs bind it
    await check({
      ...base,
      queries: 9,
      keys: 9,
      ldq: 72,
      ldk: 72,
      ldv: 72,
      ldo: 24,
      offsetK: 0,
      offsetV: 24,
      offsetQ: 48,
      scale: 0.7,
    }, "packed with offsets");
    // trimmed last block: 2 query rows per clip against 11 keys
    await check({
      ...base,
      queries: 2,
      keys: 11,
      ldq: 24,
      ldk: 48,
      ldv: 48,
      ldo: 24,
      offsetV: 24,
    }, "few queries");
    // 37 queries: a full 32-row block and a partial one; 5 keys < threads per row
    await check({
      ...base,
      batch: 1,
      heads: 2,
      headDim: 12,
      queries: 37,
      keys: 5,
      ldq: 24,
      ldk: 24,
      ldv: 24,
      ldo: 24,
      scale: 0.25,
    }, "partial block, head dim not a multiple of the lanes");
    // 150 keys: two passes of 4 keys × 32 lanes per thread
    await check({
      ...base,
      batch: 1,
      heads: 1,
      queries: 33,
      keys: 150,
      ldq: 8,
      ldk: 8,
      ldv: 8,
      ldo: 8,
    }, "long sequence");
    // 8 row groups × 33 vec4 of values: more output items than threads
    await check({
      ...base,
      batch: 1,
      heads: 1,
      headDim: 132,
      queries: 33,
      keys: 3,
      ldq: 132,
      ldk: 132,
      ldv: 132,
      ldo: 136,
      scale: 0.05,
    }, "wide heads");
  },
);

Deno.test(
  "attention shrinks the query block to the workgroup storage",
  opts,
  async () => {
    const o = {
      ...base,
      batch: 1,
      heads: 2,
      headDim: 16,
      queries: 40,
      keys: 40,
      ldq: 32,
      ldk: 32,
      ldv: 32,
      ldo: 32,
    };
    assert.equal(attentionBlock(o), 32);
    // keys: 40·5·16 = 3,200 bytes, reductions 2,048; a 4-row block adds
    // 4·16·4 for its queries and 4·40·4 for its scores
    const small = { ...o, storageBytes: 3200 + 2048 + 256 + 640 };
    assert.equal(attentionBlock(small), 4);
    await check(small, "4-row blocks");
  },
);

Deno.test("attention refuses heads that do not fit and bad layouts", () => {
  const o = {
    ...base,
    queries: 94,
    keys: 94,
    headDim: 64,
    heads: 12,
    ldq: 768,
    ldk: 768,
    ldv: 768,
    ldo: 768,
    storageBytes: 16384,
  };
  assert.equal(attentionBlock(o), undefined);
  assert.throws(
    () => attention(o),
    /Cannot build the attention kernel: 94 keys of 64 values need 28248 bytes of workgroup storage, over the device's 16384/,
  );
  assert.equal(attentionBlock({ ...o, storageBytes: 49152 }), 32);
  assert.throws(
    () => attention({ ...o, ldk: 766, storageBytes: 49152 }),
    /Cannot build the attention kernel: ldk \(766\) must be a multiple of 4 and at least heads·headDim = 768/,
  );
  assert.throws(
    () => attention({ ...o, offsetV: 2, storageBytes: 49152 }),
    /offsetV must be a non-negative multiple of 4, got 2/,
  );
  assert.throws(
    () => attention({ ...o, headDim: 6, heads: 1, storageBytes: 49152 }),
    /headDim must be a multiple of 4, got 6/,
  );
});
