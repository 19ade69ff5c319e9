import assert from "node:assert/strict";
import {
  gpuTests,
  maxAbsDiff,
  randomArray,
  runPlan,
  testRuntime,
} from "../testing.ts";
import type { Runtime } from "../runtime.ts";
import {
  crossEntropy,
  type CrossEntropyOptions,
  dropoutKeep,
  mergeBackward,
  mergeForward,
  type MergeOptions,
  sgdHyper,
  type SgdSegment,
  sgdUpdate,
  tokensBackward,
  tokensForward,
  type TokensOptions,
  weightNormBackward,
  weightNormForward,
} from "./model_ops.ts";

const rt = async (): Promise<Runtime> => (await testRuntime())!;

/** Asserts max |a − b| ≤ tol · max(1, max |b|). */
function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  what: string,
  tol = 1e-5,
): void {
  let scale = 1;
  for (let i = 0; i < expected.length; i++) {
    scale = Math.max(scale, Math.abs(expected[i]));
  }
  const d = maxAbsDiff(actual, expected);
  assert.ok(d <= tol * scale, `${what}: max abs diff ${d} (scale ${scale})`);
}

/** Central finite difference of a float64 function at x[i]. */
function fd(
  f: (x: Float64Array) => number,
  x: ArrayLike<number>,
  i: number,
  h = 1e-4,
): number {
  const a = Float64Array.from(x);
  a[i] += h;
  const up = f(a);
  a[i] -= 2 * h;
  const down = f(a);
  return (up - down) / (2 * h);
}

// ---------------------------------------------------------------------------
// Tokens

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

const TOKEN_CASES: TokensOptions[] = [
  // cls+tal: [CLS, t_1 … t_K, TAL]
  {
    batch: 3,
    k: 5,
    dim: 7,
    sequence: 7,
    embStart: 1,
    specialPositions: [0, 6],
    dropout: 0,
  },
  {
    batch: 3,
    k: 5,
    dim: 7,
    sequence: 7,
    embStart: 1,
    specialPositions: [0, 6],
    dropout: 0.3,
  },
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
        const { z } = await runPlan(await rt(), plan, named, ["z"]);
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
        const out = await runPlan(await rt(), plan, named, [
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
      const { z } = await runPlan(await rt(), tokensForward(o), {
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

// ---------------------------------------------------------------------------
// Weight norm

function weightNormRef(
  ins: number,
  outs: number,
  g: ArrayLike<number>,
  v: ArrayLike<number>,
): { w: Float64Array; norms: Float64Array } {
  const norms = new Float64Array(outs);
  for (let j = 0; j < outs; j++) {
    let s = 0;
    for (let i = 0; i < ins; i++) s += v[i * outs + j] ** 2;
    norms[j] = Math.sqrt(s);
  }
  const w = new Float64Array(ins * outs);
  for (let i = 0; i < ins; i++) {
    for (let j = 0; j < outs; j++) {
      w[i * outs + j] = g[j] * v[i * outs + j] / norms[j];
    }
  }
  return { w, norms };
}

for (const [ins, outs] of [[19, 5], [300, 3]]) {
  Deno.test({
    name:
      `weightNorm forward + backward (in ${ins}, out ${outs}), finite differences`,
    ignore: !gpuTests,
    async fn() {
      const o = { in: ins, out: outs };
      const g = randomArray(outs, 31, 2);
      const v = randomArray(ins * outs, 32);
      const dw = randomArray(ins * outs, 33); // L = Σ w ⊙ dw
      const f = await runPlan(await rt(), weightNormForward(o), {
        g,
        v,
        w: new Float32Array(ins * outs),
        norms: new Float32Array(outs),
      }, ["w", "norms"]);
      const ref = weightNormRef(ins, outs, g, v);
      assertClose(f.w, ref.w, "w");
      assertClose(f.norms, ref.norms, "norms");

      const dg0 = randomArray(outs, 34);
      const dv0 = randomArray(ins * outs, 35);
      const plan = weightNormBackward(o);
      assert.deepEqual(plan.steps.map((s) => s.bind), [
        ["dw", "v", "norms", "dg"],
        ["dw", "g", "v", "norms", "dv"],
      ]);
      const b = await runPlan(await rt(), plan, {
        dw,
        g,
        v,
        norms: f.norms,
        dg: dg0,
        dv: dv0,
      }, ["dg", "dv"]);
      // Analytic reference.
      const dg = Float64Array.from(dg0);
      const dv = Float64Array.from(dv0);
      for (let j = 0; j < outs; j++) {
        let dot = 0;
        for (let i = 0; i < ins; i++) dot += dw[i * outs + j] * v[i * outs + j];
        const n = ref.norms[j];
        dg[j] += dot / n;
        for (let i = 0; i < ins; i++) {
          const at = i * outs + j;
          dv[at] += g[j] / n * (dw[at] - v[at] * dot / (n * n));
        }
      }
      assertClose(b.dg, dg, "dg");
      assertClose(b.dv, dv, "dv");
      // Finite differences of L(g, v) = Σ w(g, v) ⊙ dw.
      const loss = (gg: ArrayLike<number>, vv: ArrayLike<number>) => {
        const { w } = weightNormRef(ins, outs, gg, vv);
        let s = 0;
        for (let i = 0; i < w.length; i++) s += w[i] * dw[i];
        return s;
      };
      for (let j = 0; j < outs; j++) {
        const num = fd((x) => loss(x, v), g, j);
        assert.ok(Math.abs(b.dg[j] - dg0[j] - num) < 1e-4, `dg[${j}]`);
      }
      for (const at of [0, 7, ins * outs - 1, (ins >> 1) * outs + 1]) {
        const num = fd((x) => loss(g, x), v, at);
        assert.ok(
          Math.abs(b.dv[at] - dv0[at] - num) < 1e-4,
          `dv[${at}]: ${b.dv[at] - dv0[at]} vs ${num}`,
        );
      }
    },
  });
}

// ---------------------------------------------------------------------------
// Merge conv

function mergeRef(
  o: MergeOptions,
  z: ArrayLike<number>,
  w: ArrayLike<number>,
  bias: number,
): Float64Array {
  const { batch, sequence, dim, kernel, positions } = o;
  const C = positions.length;
  const half = (kernel - 1) / 2;
  const m = new Float64Array(batch * dim);
  for (let b = 0; b < batch; b++) {
    for (let i = 0; i < dim; i++) {
      let acc = bias;
      for (let j = 0; j < kernel; j++) {
        const t = i + j - half;
        if (t < 0 || t >= dim) continue;
        for (let c = 0; c < C; c++) {
          acc += w[j * C + c] * z[(b * sequence + positions[c]) * dim + t];
        }
      }
      m[b * dim + i] = acc;
    }
  }
  return m;
}

const MERGE_CASES: MergeOptions[] = [
  { batch: 3, sequence: 6, dim: 11, positions: [0, 5], kernel: 5 },
  { batch: 2, sequence: 4, dim: 9, positions: [2], kernel: 3 },
  { batch: 2, sequence: 3, dim: 5, positions: [1, 1, 0], kernel: 7 },
];

for (const o of MERGE_CASES) {
  Deno.test({
    name: `merge forward + backward ${JSON.stringify(o)}, finite differences`,
    ignore: !gpuTests,
    async fn() {
      const { batch, sequence, dim, kernel } = o;
      const C = o.positions.length;
      const z = randomArray(batch * sequence * dim, 41);
      const w = randomArray(kernel * C, 42);
      const bias = randomArray(1, 43);
      const f = await runPlan(await rt(), mergeForward(o), {
        z,
        w,
        bias,
        m: new Float32Array(batch * dim),
      }, ["m"]);
      assertClose(f.m, mergeRef(o, z, w, bias[0]), "m");

      const dm = randomArray(batch * dim, 44); // L = Σ m ⊙ dm
      const dz0 = randomArray(batch * sequence * dim, 45);
      const dw0 = randomArray(kernel * C, 46);
      const dbias0 = new Float32Array([0.25]);
      const plan = mergeBackward(o);
      assert.deepEqual(plan.steps.map((s) => s.bind), [
        ["dm", "w", "dz"],
        ["dm", "z", "dw"],
        ["dm", "dbias"],
      ]);
      const b = await runPlan(await rt(), plan, {
        dm,
        w,
        z,
        dz: dz0,
        dw: dw0,
        dbias: dbias0,
      }, ["dz", "dw", "dbias"]);
      const loss = (zz: ArrayLike<number>, ww: ArrayLike<number>, bb: number) =>
        mergeRef(o, zz, ww, bb).reduce((s, x, i) => s + x * dm[i], 0);
      // Every element of dz by finite differences (the loss is linear in z).
      const dz = Float64Array.from(dz0);
      for (let i = 0; i < dz.length; i++) {
        dz[i] += fd((x) => loss(x, w, bias[0]), z, i, 0.5);
      }
      assertClose(b.dz, dz, "dz");
      const dw = Float64Array.from(dw0);
      for (let i = 0; i < dw.length; i++) {
        dw[i] += fd((x) => loss(z, x, bias[0]), w, i, 0.5);
      }
      assertClose(b.dw, dw, "dw");
      const dbias = 0.25 + fd((x) => loss(z, w, x[0]), bias, 0, 0.5);
      assertClose(b.dbias, [dbias], "dbias");
      // Rows of unselected tokens are untouched.
      for (let r = 0; r < batch * sequence; r++) {
        if (o.positions.includes(r % sequence)) continue;
        for (let c = 0; c < dim; c++) {
          assert.equal(b.dz[r * dim + c], dz0[r * dim + c]);
        }
      }
    },
  });
}

// ---------------------------------------------------------------------------
// Cross-entropy

function ceLoss(
  o: CrossEntropyOptions,
  logits: ArrayLike<number>,
  labels: Int32Array,
): number {
  const { rows, classes, perView, smoothing: eps } = o;
  let total = 0;
  for (let r = 0; r < rows; r++) {
    let mx = -Infinity;
    for (let c = 0; c < classes; c++) {
      mx = Math.max(mx, logits[r * classes + c]);
    }
    let s = 0;
    for (let c = 0; c < classes; c++) {
      s += Math.exp(logits[r * classes + c] - mx);
    }
    const lse = mx + Math.log(s);
    for (let c = 0; c < classes; c++) {
      const t = (c === labels[r % perView] ? 1 - eps : 0) + eps / classes;
      total -= t * (logits[r * classes + c] - lse);
    }
  }
  return total / perView;
}

const CE_CASES: CrossEntropyOptions[] = [
  { rows: 15, classes: 7, perView: 5, smoothing: 0.1 },
  { rows: 6, classes: 35, perView: 6, smoothing: 0 },
  { rows: 300, classes: 3, perView: 100, smoothing: 0.2 },
];

for (const o of CE_CASES) {
  Deno.test({
    name: `crossEntropy ${JSON.stringify(o)}, finite differences`,
    ignore: !gpuTests,
    async fn() {
      const { rows, classes, perView } = o;
      const logits = randomArray(rows * classes, 51, 3);
      const labels = Int32Array.from(
        { length: perView },
        (_, i) => (i * 5 + 2) % classes,
      );
      // Ties in the last view: the first maximum wins.
      const last = rows - perView;
      logits[last * classes + 0] = 9;
      logits[last * classes + 1] = 9;
      labels[0] = 0; // correct (first max)
      if (perView > 1 && classes > 2) {
        logits[(last + 1) * classes + 1] = 9;
        logits[(last + 1) * classes + 2] = 9;
        labels[1] = 2; // wrong (argmax is 1)
      }
      const metrics0 = new Float32Array([1.5, 2, 3, 4]);
      const out = await runPlan(await rt(), crossEntropy(o), {
        logits,
        labels,
        dlogits: new Float32Array(rows * classes),
        metrics: metrics0,
      }, ["dlogits", "metrics"]);
      let correct = 0;
      for (let r = last; r < rows; r++) {
        let arg = 0;
        for (let c = 1; c < classes; c++) {
          if (logits[r * classes + c] > logits[r * classes + arg]) arg = c;
        }
        if (arg === labels[r % perView]) correct++;
      }
      const loss = ceLoss(o, logits, labels);
      assertClose(
        out.metrics,
        [1.5 + loss, 2 + correct, 3 + perView, 4],
        "metrics",
      );
      // Analytic gradient, and finite differences on a few entries.
      const dl = new Float64Array(rows * classes);
      for (let r = 0; r < rows; r++) {
        let mx = -Infinity;
        for (let c = 0; c < classes; c++) {
          mx = Math.max(mx, logits[r * classes + c]);
        }
        let s = 0;
        for (let c = 0; c < classes; c++) {
          s += Math.exp(logits[r * classes + c] - mx);
        }
        for (let c = 0; c < classes; c++) {
          const p = Math.exp(logits[r * classes + c] - mx) / s;
          const t = (c === labels[r % perView] ? 1 - o.smoothing : 0) +
            o.smoothing / classes;
          dl[r * classes + c] = (p - t) / perView;
        }
      }
      assertClose(out.dlogits, dl, "dlogits");
      for (const i of [0, 1, classes + 2, rows * classes - 1]) {
        const num = fd((x) => ceLoss(o, x, labels), logits, i);
        assert.ok(
          Math.abs(out.dlogits[i] - num) < 1e-5,
          `dlogits[${i}]: ${out.dlogits[i]} vs ${num}`,
        );
      }
    },
  });
}

// ---------------------------------------------------------------------------
// SGD

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
    const out = await runPlan(await rt(), plan, {
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
