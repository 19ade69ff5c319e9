/**
 * Tests of the token assembly and its dropout mask (`tokens.ts`, `dropout.ts`) against float64 references.
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
import { dropoutKeep } from "./dropout.ts";
import { tokensBackward, tokensForward, type TokensOptions } from "./tokens.ts";

const SEEDS = [7, 0xdeadbeef];

function tokensReference(
  o: TokensOptions,
  emb: Float32Array,
  special: Float32Array[],
  pos: Float32Array,
  seed: number,
): Float64Array {
  const { batch, k, dim, sequence, embStart } = o;
  const z = new Float64Array(batch * sequence * dim);
  for (let b = 0; b < batch; b++) {
    for (let s = 0; s < sequence; s++) {
      for (let c = 0; c < dim; c++) {
        const e = (b * sequence + s) * dim + c;
        const si = o.specialPositions.indexOf(s);
        let v = si >= 0
          ? special[si][c]
          : emb[(b * k + s - embStart) * dim + c];
        v += pos[s * dim + c];
        if (o.dropout > 0) {
          v = dropoutKeep(seed, e, o.dropout) ? v / (1 - o.dropout) : 0;
        }
        z[e] = v;
      }
    }
  }
  return z;
}

/** cls+tal: [CLS, t_1 … t_K, TAL]. */
const CLS_TAL: TokensOptions = {
  batch: 3,
  k: 5,
  dim: 7,
  sequence: 7,
  embStart: 1,
  specialPositions: [0, 6],
  dropout: 0,
};

const TOKEN_CASES: TokensOptions[] = [
  CLS_TAL,
  { ...CLS_TAL, dropout: 0.3 },
  // special tokens first
  {
    batch: 2,
    k: 4,
    dim: 9,
    sequence: 7,
    embStart: 3,
    specialPositions: [0, 1, 2],
    dropout: 0.5,
  },
];

for (const o of TOKEN_CASES) {
  const S = o.specialPositions.length;
  const name = `S=${S} embStart=${o.embStart} dropout=${o.dropout}`;
  Deno.test({
    name: `tokensForward ${name}`,
    ignore: !gpuTests,
    async fn() {
      const emb = randomArray(o.batch * o.k * o.dim, 1);
      const special = Array.from(
        { length: S },
        (_, i) => randomArray(o.dim, 10 + i),
      );
      const pos = randomArray(o.sequence * o.dim, 2);
      for (const seed of o.dropout > 0 ? SEEDS : [0]) {
        const named: Record<string, Float32Array | Uint32Array> = {
          emb,
          pos,
          z: new Float32Array(o.batch * o.sequence * o.dim),
        };
        special.forEach((s, i) => named[`special${i}`] = s);
        if (o.dropout > 0) named.step = new Uint32Array([seed, 0]);
        const plan = tokensForward(o);
        assert.equal(plan.steps.length, 1);
        assert.equal(plan.steps[0].bind.includes("step"), o.dropout > 0);
        const { z } = await runPlan(await gpuRuntime(), plan, named, ["z"]);
        assertClose(z, tokensReference(o, emb, special, pos, seed), "z");
      }
    },
  });

  Deno.test({
    name: `tokensBackward ${name}`,
    ignore: !gpuTests,
    async fn() {
      const { batch, k, dim, sequence, embStart } = o;
      const dz = randomArray(batch * sequence * dim, 3);
      const dpos0 = randomArray(sequence * dim, 4);
      const dspecial0 = Array.from(
        { length: S },
        (_, i) => randomArray(dim, 20 + i),
      );
      for (const seed of o.dropout > 0 ? SEEDS : [0]) {
        const mask = (e: number) =>
          o.dropout > 0
            ? (dropoutKeep(seed, e, o.dropout) ? 1 / (1 - o.dropout) : 0)
            : 1;
        const demb = new Float64Array(batch * k * dim);
        const dpos = Float64Array.from(dpos0);
        const dspecial = dspecial0.map((d) => Float64Array.from(d));
        for (let b = 0; b < batch; b++) {
          for (let s = 0; s < sequence; s++) {
            for (let c = 0; c < dim; c++) {
              const e = (b * sequence + s) * dim + c;
              const g = dz[e] * mask(e);
              dpos[s * dim + c] += g;
              const si = o.specialPositions.indexOf(s);
              if (si >= 0) dspecial[si][c] += g;
              else demb[(b * k + s - embStart) * dim + c] = g;
            }
          }
        }
        const plan = tokensBackward(o);
        assert.equal(plan.steps.length, 2 + S);
        const extra = o.dropout > 0 ? ["step"] : [];
        assert.deepEqual(plan.steps[0].bind, ["dz", ...extra, "demb"]);
        assert.deepEqual(plan.steps[1].bind, ["dz", ...extra, "dpos"]);
        for (let i = 0; i < S; i++) {
          assert.deepEqual(plan.steps[2 + i].bind, [
            "dz",
            ...extra,
            `dspecial${i}`,
          ]);
        }
        const named: Record<string, Float32Array | Uint32Array> = {
          dz,
          demb: randomArray(batch * k * dim, 5), // overwritten
          dpos: dpos0,
        };
        dspecial0.forEach((d, i) => named[`dspecial${i}`] = d);
        if (o.dropout > 0) named.step = new Uint32Array([seed]);
        const out = await runPlan(await gpuRuntime(), plan, named, [
          "demb",
          "dpos",
          ...dspecial0.map((_, i) => `dspecial${i}`),
        ]);
        assertClose(out.demb, demb, "demb");
        assertClose(out.dpos, dpos, "dpos");
        dspecial.forEach((d, i) =>
          assertClose(out[`dspecial${i}`], d, `dspecial${i}`)
        );
      }
    },
  });
}

Deno.test("dropoutKeep: keep rate ≈ 1 − p and seeds differ", () => {
  const n = 200_000;
  for (const p of [0.1, 0.5, 0.9]) {
    for (const seed of SEEDS) {
      let kept = 0;
      for (let i = 0; i < n; i++) if (dropoutKeep(seed, i, p)) kept++;
      const sd = Math.sqrt(p * (1 - p) / n);
      assert.ok(
        Math.abs(kept / n - (1 - p)) < 5 * sd,
        `p ${p} seed ${seed}: keep rate ${kept / n}`,
      );
    }
  }
  // Masks of neighbouring seeds agree only by chance (≈ p² + (1 − p)²).
  let same = 0;
  for (let i = 0; i < 10_000; i++) {
    if (dropoutKeep(1, i, 0.5) === dropoutKeep(2, i, 0.5)) same++;
  }
  assert.ok(Math.abs(same / 10_000 - 0.5) < 0.03, `agreement ${same}`);
  assert.ok([...Array(1000).keys()].every((i) => dropoutKeep(3, i, 0)));
});

Deno.test({
  name: "dropout: WGSL mask equals dropoutKeep, GPU keep rate ≈ 1 − p",
  ignore: !gpuTests,
  async fn() {
    const o: TokensOptions = {
      batch: 4,
      k: 61,
      dim: 33,
      sequence: 62,
      embStart: 1,
      specialPositions: [0],
      dropout: 0.25,
    };
    const n = o.batch * o.sequence * o.dim;
    for (const seed of [...SEEDS, 0xffffffff]) {
      const { z } = await runPlan(await gpuRuntime(), tokensForward(o), {
        emb: new Float32Array(o.batch * o.k * o.dim).fill(1),
        special0: new Float32Array(o.dim).fill(1),
        pos: new Float32Array(o.sequence * o.dim),
        step: new Uint32Array([seed]),
        z: new Float32Array(n),
      }, ["z"]);
      let kept = 0;
      for (let e = 0; e < n; e++) {
        const keep = dropoutKeep(seed, e, o.dropout);
        assert.equal(z[e] !== 0, keep, `seed ${seed} element ${e}`);
        if (keep) {
          kept++;
          assert.ok(Math.abs(z[e] - 1 / 0.75) < 1e-6);
        }
      }
      const sd = Math.sqrt(0.25 * 0.75 / n);
      assert.ok(Math.abs(kept / n - 0.75) < 5 * sd, `keep rate ${kept / n}`);
    }
  },
});

Deno.test("tokens: bad layouts are refused", () => {
  const base: TokensOptions = {
    batch: 1,
    k: 3,
    dim: 2,
    sequence: 5,
    embStart: 1,
    specialPositions: [0, 4],
    dropout: 0,
  };
  assert.throws(() => tokensForward({ ...base, specialPositions: [0, 2] }));
  assert.throws(() => tokensForward({ ...base, sequence: 6 }));
  assert.throws(() => tokensBackward({ ...base, dropout: 1 }));
});
