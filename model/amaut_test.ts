import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { createRng } from "../pipeline/rng.ts";
import {
  type AmautModel,
  type BatchStat,
  createModel,
  exportStateDict,
  initialValues,
  labelSmoothedCrossEntropy,
  loadStateDict,
  ModelOptions,
  parameterCount,
  toTorchLayout,
  updateRunningStats,
} from "./amaut.ts";
import { loadModelFixture, structurallyZero } from "./fixture.ts";
import { TINY_DIMS, TINY_SIZES } from "./trainer_testing.ts";

const FIXTURES = new URL(
  "../../shared/fixtures/reference/model/",
  import.meta.url,
);

async function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): Promise<number> {
  const d = tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))));
  const v = (await d.data())[0];
  d.dispose();
  return v;
}

async function norm(t: tf.Tensor): Promise<number> {
  const n = tf.norm(t);
  const v = (await n.data())[0];
  n.dispose();
  return v;
}

for (const name of ["tiny_avg", "tiny_fce"]) {
  Deno.test(`AMAuT matches the PyTorch reference on ${name}: logits, loss, every gradient`, async () => {
    await tf.setBackend("cpu");
    const f = await loadModelFixture(FIXTURES, name);
    const model = createModel(tf, f.options, f.dims, createRng("parity", 0));
    try {
      assert.equal(model.summary().parameters, f.params);
      assert.equal(parameterCount(f.options, f.dims), f.params);
      loadStateDict(tf, model, f.state);
      const input = (key: string) =>
        tf.tidy(() =>
          tf.transpose(
            tf.tensor3d(
              f.arrays[key].data,
              f.arrays[key].shape as [number, number, number],
            ),
            [0, 2, 1],
          )
        ) as tf.Tensor3D;
      const ref = (key: string) =>
        tf.tensor(f.arrays[key].data, f.arrays[key].shape);
      const x1 = input("x1");
      const x2 = input("x2");
      const labels = tf.tensor1d(f.labels, "int32");

      // Eval mode (running statistics, randomised in the fixture).
      const evalOut = model.apply(x1, { training: false });
      assert.equal(evalOut.batchStats.length, 0);
      const evalRef = ref("eval_logits");
      const evalErr = await maxAbsDiff(evalOut.logits, evalRef);
      assert.ok(evalErr <= 1e-4, `eval logits max abs error ${evalErr}`);

      // Train mode, dropout 0: logits of both views.
      for (const view of ["x1", "x2"]) {
        const out = model.apply(view === "x1" ? x1 : x2, {
          training: true,
          dropout: 0,
        });
        const r = ref(`train_logits_${view}`);
        const err = await maxAbsDiff(out.logits, r);
        assert.ok(err <= 1e-4, `train logits ${view} max abs error ${err}`);
        tf.dispose([out.logits, r, ...out.batchStats.flatMap(statTensors)]);
      }

      // Summed 2-view loss and its gradients.
      const stats: BatchStat[] = [];
      const { value, grads } = tf.variableGrads(() => {
        const a = model.apply(x1, { training: true, dropout: 0 });
        const b = model.apply(x2, { training: true, dropout: 0 });
        stats.push(...a.batchStats, ...b.batchStats);
        return tf.add(
          labelSmoothedCrossEntropy(tf, a.logits, labels),
          labelSmoothedCrossEntropy(tf, b.logits, labels),
        );
      }, [...model.params.values()]);
      const loss = (await value.data())[0];
      const lossErr = Math.abs(loss - f.loss) / Math.abs(f.loss);
      assert.ok(lossErr <= 1e-4, `loss ${loss} vs ${f.loss}`);

      // ffn_norm is unused (reproduced bug): no gradient, none in the fixture.
      const named = new Map<string, tf.Tensor>();
      for (const [key, v] of model.params) {
        if (grads[v.name]) named.set(key, grads[v.name]);
      }
      assert.deepEqual(
        [...named.keys()].sort(),
        Object.keys(f.grads).sort(),
      );
      for (const [key, g] of Object.entries(f.grads)) {
        const ours = toTorchLayout(tf, model, key, named.get(key)!);
        const expected = tf.tensor(g.data, [...g.shape]);
        assert.deepEqual(ours.shape, g.shape, key);
        const diff = tf.sub(ours, expected);
        const [dn, rn, on] = [
          await norm(diff),
          await norm(expected),
          await norm(ours),
        ];
        if (structurallyZero(key, f.options.head)) {
          assert.ok(rn < 1e-5 && on < 1e-5, `${key}: ${on} vs ${rn}`);
        } else {
          assert.ok(dn / rn <= 1e-3, `${key}: relative error ${dn / rn}`);
        }
        tf.dispose([ours, expected, diff]);
      }
      tf.dispose([
        x1,
        x2,
        labels,
        evalOut.logits,
        evalRef,
        value,
        ...Object.values(grads),
        ...stats.flatMap(statTensors),
      ]);
    } finally {
      model.dispose();
    }
  });
}

const statTensors = (s: BatchStat): tf.Tensor[] => [s.mean, s.variance];

function tinyModel(extra: Record<string, unknown> = {}, seed = 0): AmautModel {
  const options = ModelOptions.parse({ ...TINY_SIZES, ...extra });
  return createModel(tf, options, TINY_DIMS, createRng("tiny", seed));
}

function tinyTokens(b = 3): tf.Tensor3D {
  const rng = createRng("tokens", 1);
  const n = b * TINY_DIMS.frames * TINY_DIMS.nMels;
  const data = Float32Array.from({ length: n }, () => rng.normal());
  return tf.tensor3d(data, [b, TINY_DIMS.frames, TINY_DIMS.nMels]);
}

Deno.test("createModel summary().parameters equals parameterCount", async () => {
  await tf.setBackend("cpu");
  const model = tinyModel();
  try {
    const { parameters, layers } = model.summary();
    assert.equal(parameters, parameterCount(model.options, model.dims));
    let sum = 0;
    for (const v of model.params.values()) sum += v.size;
    assert.equal(parameters, sum);
    assert.deepEqual(layers.at(-1), { name: "classifier.fc3", shape: [3] });
    // 24 frames: root 12, pool 6, group 1 halves to K = 3, + CLS and TAL.
    assert.deepEqual(
      layers.find((l) => l.name === "transform.tf_norm")?.shape,
      [5, 16],
    );
    for (const v of model.buffers.values()) assert.equal(v.trainable, false);
    for (const v of model.params.values()) assert.equal(v.trainable, true);
  } finally {
    model.dispose();
  }
});

Deno.test("createModel initialises as the reference and repeats with the seed", async () => {
  await tf.setBackend("cpu");
  const a = tinyModel({}, 3);
  const b = tinyModel({}, 3);
  try {
    const read = async (m: AmautModel, k: string) =>
      await (m.params.get(k) ?? m.buffers.get(k))!.data();
    assert.deepEqual(
      await read(a, "transform.pos_embed"),
      await read(b, "transform.pos_embed"),
    );
    const ones = await read(a, "transform.embedding.restnet.root.1.weight");
    assert.ok(ones.every((v) => v === 1));
    const rv = await read(a, "classifier.bn2.running_var");
    assert.ok(rv.every((v) => v === 1));
    assert.ok((await read(a, "classifier.fc3.bias")).every((v) => v === 0));
    // Weight norm starts at w = v: g equals the per-class norm of v.
    const g = await read(a, "classifier.fc3.parametrizations.weight.original0");
    const v = await read(a, "classifier.fc3.parametrizations.weight.original1");
    for (let o = 0; o < 3; o++) {
      let s = 0;
      for (let i = 0; i < 8; i++) s += v[i * 3 + o] ** 2;
      assert.ok(Math.abs(g[o] - Math.sqrt(s)) < 1e-6);
    }
    // Default conv init: U(±1/sqrt(in·k)).
    const root = await read(a, "transform.embedding.restnet.root.0.weight");
    const bound = 1 / Math.sqrt(6 * 14);
    assert.ok(root.every((x) => Math.abs(x) <= bound));
    const pos = Array.from(await read(a, "transform.pos_embed"));
    const std = Math.sqrt(pos.reduce((s, x) => s + x * x, 0) / pos.length);
    assert.ok(std > 0.012 && std < 0.03, `pos_embed std ${std}`);
  } finally {
    a.dispose();
    b.dispose();
  }
});

Deno.test("initialValues: a uniform initialiser drawn in chunks gives (2·next() − 1)·bound, value for value", () => {
  // 3 × 65536 + 123 values: several chunks and a partial one.
  const n = 3 * 65536 + 123;
  const spec = {
    name: "w",
    shape: [n],
    torchShape: [n],
    layout: "same",
    init: { kind: "uniform", bound: 0.37 },
  } as unknown as Parameters<typeof initialValues>[0];
  const got = initialValues(spec, createRng("u", 5), new Map());
  const rng = createRng("u", 5);
  const want = new Float32Array(n);
  for (let i = 0; i < n; i++) want[i] = (2 * rng.next() - 1) * 0.37;
  assert.equal(got.length, n);
  assert.ok(got.every((v, i) => v === want[i]));
  // The stream went on as far: the next draw is the same.
  const after = createRng("u", 5);
  const drawn = new Float64Array(n);
  after.fillUniform(drawn, 1);
  assert.equal(after.next(), rng.next());
});

Deno.test("createModel init none: the same variables, every value zero, ready to take a state", async () => {
  await tf.setBackend("cpu");
  const ref = tinyModel({}, 3);
  const options = ModelOptions.parse({ ...TINY_SIZES });
  const empty = createModel(tf, options, TINY_DIMS, createRng("tiny", 3), {
    init: "none",
  });
  try {
    for (const group of ["params", "buffers"] as const) {
      assert.deepEqual([...empty[group].keys()], [...ref[group].keys()]);
      for (const [name, v] of empty[group]) {
        assert.deepEqual(v.shape, ref[group].get(name)!.shape, name);
        assert.ok((await v.data()).every((x) => x === 0), name);
      }
    }
    // Loading the reference's state makes it score as the reference.
    loadStateDict(tf, empty, await exportStateDict(tf, ref));
    const x = tinyTokens();
    const a = ref.apply(x, { training: false }).logits;
    const b = empty.apply(x, { training: false }).logits;
    assert.equal(await maxAbsDiff(a, b), 0);
    tf.dispose([x, a, b]);
  } finally {
    ref.dispose();
    empty.dispose();
  }
});

Deno.test("every tokenMode, head, kernel and ffnNorm variant builds and runs", async () => {
  await tf.setBackend("cpu");
  const x = tinyTokens();
  const labels = tf.tensor1d([0, 1, 2], "int32");
  const variants = [
    { tokenMode: "cls+tal", head: "avg" },
    { tokenMode: "cls", head: "avg" },
    { tokenMode: "cls+distil", head: "avg" },
    { tokenMode: "cls+tal", head: "fce" },
    { tokenMode: "cls", head: "fce" },
    { tokenMode: "cls+distil", head: "fce" },
    { kernelSize: 3 },
    { ffnNorm: true },
    { groups: [1, 0, 0], head: "fce" },
  ];
  for (const variant of variants) {
    const model = tinyModel(variant);
    try {
      assert.equal(
        model.summary().parameters,
        parameterCount(model.options, model.dims),
      );
      const ev = model.apply(x, { training: false });
      assert.deepEqual(ev.logits.shape, [3, 3], JSON.stringify(variant));
      const values = await ev.logits.data();
      assert.ok(values.every(Number.isFinite), JSON.stringify(variant));
      ev.logits.dispose();
      const stats: BatchStat[] = [];
      const { value, grads } = tf.variableGrads(() => {
        const out = model.apply(x, {
          training: true,
          rng: createRng("dropout", 0),
        });
        stats.push(...out.batchStats);
        return labelSmoothedCrossEntropy(tf, out.logits, labels);
      }, [...model.params.values()]);
      const ffnNorm = model.params.get("transform.layers.0.ffn_norm.weight")!;
      assert.equal(
        grads[ffnNorm.name] !== undefined,
        model.options.ffnNorm,
        `ffn_norm gradient with ffnNorm=${model.options.ffnNorm}`,
      );
      assert.ok(Number.isFinite((await value.data())[0]));
      tf.dispose([
        value,
        ...Object.values(grads),
        ...stats.flatMap(statTensors),
      ]);
    } finally {
      model.dispose();
    }
  }
  tf.dispose([x, labels]);
});

Deno.test("token modes put the special tokens where the reference does", async () => {
  await tf.setBackend("cpu");
  const cls = tinyModel({ tokenMode: "cls" });
  const distil = tinyModel({ tokenMode: "cls+distil", head: "fce" });
  try {
    assert.deepEqual(cls.params.get("transform.pos_embed")!.shape, [1, 4, 16]);
    assert.equal(cls.params.has("transform.tail_token"), false);
    assert.ok(distil.params.has("transform.dist_token"));
    assert.deepEqual(
      distil.params.get("classifier.merge.weight")!.shape,
      [15, 2, 1],
    );
  } finally {
    cls.dispose();
    distil.dispose();
  }
});

Deno.test("apply leaks no tensor in eval or training", async () => {
  await tf.setBackend("cpu");
  const model = tinyModel({ head: "avg" });
  const x = tinyTokens();
  try {
    for (const training of [false, true]) {
      const before = tf.memory().numTensors;
      const out = tf.tidy(() =>
        model.apply(x, { training, rng: createRng("drop", 1) })
      );
      tf.dispose([out.logits, ...out.batchStats.flatMap(statTensors)]);
      assert.equal(tf.memory().numTensors, before, `training=${training}`);
    }
    // Without an enclosing tidy as well.
    const before = tf.memory().numTensors;
    const out = model.apply(x, { training: true, dropout: 0 });
    tf.dispose([out.logits, ...out.batchStats.flatMap(statTensors)]);
    assert.equal(tf.memory().numTensors, before);
  } finally {
    x.dispose();
    model.dispose();
  }
});

Deno.test("apply: dropout is seeded from rng, and absent in eval", async () => {
  await tf.setBackend("cpu");
  const model = tinyModel({ head: "fce", dropout: 0.5 });
  const x = tinyTokens();
  const run = async (mode: Parameters<AmautModel["apply"]>[1]) => {
    const out = model.apply(x, mode);
    const v = await out.logits.data();
    tf.dispose([out.logits, ...out.batchStats.flatMap(statTensors)]);
    return Array.from(v);
  };
  try {
    const a = await run({ training: true, rng: createRng("d", 1) });
    const b = await run({ training: true, rng: createRng("d", 1) });
    const c = await run({ training: true, rng: createRng("d", 2) });
    const off = await run({ training: true, dropout: 0 });
    assert.deepEqual(a, b);
    assert.notDeepEqual(a, c);
    assert.notDeepEqual(a, off);
    assert.deepEqual(
      await run({ training: false }),
      await run({ training: false, rng: createRng("d", 3) }),
    );
    assert.throws(
      () => model.apply(x, { training: true }),
      /Cannot train AMAuT with dropout: mode\.rng is missing/,
    );
    assert.throws(
      () =>
        model.apply(tf.zeros([1, 5, 6]) as tf.Tensor3D, { training: false }),
      /tokens must be \[b, 24, 6\]/,
    );
  } finally {
    x.dispose();
    model.dispose();
  }
});

Deno.test("training batch statistics: one per BatchNorm, biased variance, counts", async () => {
  await tf.setBackend("cpu");
  const model = tinyModel();
  const x = tinyTokens(3);
  try {
    const out = model.apply(x, { training: true, dropout: 0 });
    const names = out.batchStats.map((s) => s.name);
    const bns = [...model.buffers.keys()]
      .filter((k) => k.endsWith(".running_mean"))
      .map((k) => k.slice(0, -".running_mean".length));
    assert.deepEqual([...names].sort(), [...bns].sort());
    const root = out.batchStats.find((s) =>
      s.name === "transform.embedding.restnet.root.1"
    )!;
    assert.equal(root.count, 3 * 12); // b · rootLength
    const bn2 = out.batchStats.find((s) => s.name === "classifier.bn2")!;
    assert.equal(bn2.count, 3);
    assert.deepEqual(bn2.mean.shape, [8]);
    tf.dispose([out.logits, ...out.batchStats.flatMap(statTensors)]);
  } finally {
    x.dispose();
    model.dispose();
  }
});

Deno.test("root conv options: kernel, stride and padding set the root conv's tensor and output length", async () => {
  await tf.setBackend("cpu");
  const model = tinyModel({ rootKernel: 5, rootStride: 3, rootPadding: 1 });
  const x = tinyTokens(2);
  try {
    assert.deepEqual(
      model.params.get("transform.embedding.restnet.root.0.weight")!.shape,
      [5, 6, 4],
    );
    const out = model.apply(x, { training: true, dropout: 0 });
    const root = out.batchStats.find((s) =>
      s.name === "transform.embedding.restnet.root.1"
    )!;
    assert.equal(root.count, 2 * 8); // b · (floor((24 + 2·1 − 5) / 3) + 1)
    assert.deepEqual(out.logits.shape, [2, 3]);
    assert.ok((await out.logits.data()).every(Number.isFinite));
    assert.deepEqual(
      model.summary().layers.find((l) =>
        l.name === "transform.embedding.restnet.root"
      )?.shape,
      [8, 4],
    );
    tf.dispose([out.logits, ...out.batchStats.flatMap(statTensors)]);
  } finally {
    x.dispose();
    model.dispose();
  }
});

Deno.test("rootPool false: the first block sees the unpooled root conv, K and the positional embedding double", async () => {
  await tf.setBackend("cpu");
  const pooled = tinyModel();
  const model = tinyModel({ rootPool: false });
  const x = tinyTokens(2);
  try {
    // 24 frames: root 12, no pool, group 1 halves to K = 6, + CLS and TAL.
    const { parameters, layers } = model.summary();
    assert.deepEqual(
      layers.find((l) => l.name === "transform.tf_norm")?.shape,
      [8, 16],
    );
    assert.deepEqual(
      model.params.get("transform.pos_embed")!.shape,
      [1, 8, 16],
    );
    // Only the positional embedding grows: 3 positions of width 16.
    assert.equal(parameters, pooled.summary().parameters + 3 * 16);
    assert.equal(parameters, parameterCount(model.options, model.dims));
    let sum = 0;
    for (const v of model.params.values()) sum += v.size;
    assert.equal(sum, parameters);
    const out = model.apply(x, { training: true, dropout: 0 });
    const count = (name: string) =>
      out.batchStats.find((s) => s.name === name)!.count;
    assert.equal(count("transform.embedding.restnet.root.1"), 2 * 12);
    // The first block's conv1 runs on all 12 root frames (6 when pooled).
    assert.equal(count("transform.embedding.restnet.layers.0.norm1"), 2 * 12);
    assert.deepEqual(out.logits.shape, [2, 3]);
    assert.ok((await out.logits.data()).every(Number.isFinite));
    tf.dispose([out.logits, ...out.batchStats.flatMap(statTensors)]);
    // The stem runs no max-pool at all (not an identity window).
    const kernels = async (m: AmautModel) => {
      const info = await tf.profile(() =>
        m.apply(x, { training: false }).logits
      );
      tf.dispose(info.result);
      return info.kernelNames;
    };
    assert.ok((await kernels(pooled)).includes("MaxPool"));
    assert.ok(!(await kernels(model)).includes("MaxPool"));
  } finally {
    x.dispose();
    model.dispose();
    pooled.dispose();
  }
});

Deno.test("updateRunningStats: momentum 0.1 and unbiased variance", async () => {
  await tf.setBackend("cpu");
  const model = tinyModel();
  try {
    // A batch of 4 values per channel: [1, 2, 3, 4] → mean 2.5, biased var
    // 1.25, unbiased 5/3.
    const mean = tf.tensor1d(Array(8).fill(2.5));
    const variance = tf.tensor1d(Array(8).fill(1.25));
    const stat: BatchStat = {
      name: "classifier.bn2",
      mean,
      variance,
      count: 4,
    };
    updateRunningStats(tf, model, [stat]);
    const rm = await model.buffers.get("classifier.bn2.running_mean")!.data();
    const rv = await model.buffers.get("classifier.bn2.running_var")!.data();
    // running_mean: 0.9·0 + 0.1·2.5; running_var: 0.9·1 + 0.1·5/3.
    for (const v of rm) assert.ok(Math.abs(v - 0.25) < 1e-6);
    for (const v of rv) assert.ok(Math.abs(v - (0.9 + 1 / 6)) < 1e-6);
    updateRunningStats(tf, model, [stat], 0.5);
    const rm2 = await model.buffers.get("classifier.bn2.running_mean")!.data();
    const rv2 = await model.buffers.get("classifier.bn2.running_var")!.data();
    for (const v of rm2) assert.ok(Math.abs(v - (0.125 + 1.25)) < 1e-6);
    for (const v of rv2) {
      assert.ok(Math.abs(v - (0.5 * (0.9 + 1 / 6) + 0.5 * 5 / 3)) < 1e-6);
    }
    assert.throws(
      () => updateRunningStats(tf, model, [{ ...stat, name: "nope" }]),
      /no BatchNorm nope/,
    );
    tf.dispose([mean, variance]);
  } finally {
    model.dispose();
  }
});

Deno.test("updateRunningStats moves eval outputs after a training step", async () => {
  await tf.setBackend("cpu");
  const model = tinyModel();
  const x = tinyTokens(4);
  try {
    const before = model.apply(x, { training: false });
    const train = model.apply(x, { training: true, dropout: 0 });
    updateRunningStats(tf, model, train.batchStats, 1);
    // With momentum 1 the running mean is the batch mean and the running
    // variance the unbiased batch variance.
    const stat = train.batchStats.find((s) => s.name === "classifier.bn2")!;
    const rv = await model.buffers.get("classifier.bn2.running_var")!.data();
    const bv = await stat.variance.data();
    for (let i = 0; i < rv.length; i++) {
      assert.ok(Math.abs(rv[i] - bv[i] * 4 / 3) < 1e-5 * (1 + rv[i]));
    }
    const after = model.apply(x, { training: false });
    assert.ok((await maxAbsDiff(before.logits, after.logits)) > 0);
    tf.dispose([
      before.logits,
      after.logits,
      train.logits,
      ...train.batchStats.flatMap(statTensors),
    ]);
  } finally {
    x.dispose();
    model.dispose();
  }
});

Deno.test("loadStateDict names the first missing, unexpected or mis-shaped key", async () => {
  await tf.setBackend("cpu");
  const model = tinyModel();
  try {
    const state = await exportStateDict(tf, model);
    assert.deepEqual(
      state["transform.embedding.restnet.root.0.weight"].shape,
      [4, 6, 14],
    );
    assert.deepEqual(state["classifier.fc1.weight"].shape, [24, 16]);
    // Round trip, with PyTorch's num_batches_tracked tolerated.
    loadStateDict(tf, model, {
      ...state,
      "classifier.bn2.num_batches_tracked": {
        shape: [],
        data: new Float32Array(1),
      },
    });
    const again = await exportStateDict(tf, model);
    for (const k of Object.keys(state)) {
      assert.deepEqual(again[k].data, state[k].data, k);
    }
    const { "transform.cls_token": _dropped, ...missing } = state;
    assert.throws(
      () => loadStateDict(tf, model, missing),
      /Cannot load the state dict: missing key "transform\.cls_token"/,
    );
    assert.throws(
      () =>
        loadStateDict(tf, model, {
          ...state,
          "transform.extra": { shape: [1], data: new Float32Array(1) },
        }),
      /unexpected key "transform\.extra"/,
    );
    assert.throws(
      () =>
        loadStateDict(tf, model, {
          ...state,
          "classifier.fc1.weight": {
            shape: [16, 24],
            data: new Float32Array(384),
          },
        }),
      /key "classifier\.fc1\.weight" has shape \[16,24\], expected \[24,16\]/,
    );
  } finally {
    model.dispose();
  }
});

Deno.test("two models coexist (unique variable names) and dispose cleanly", async () => {
  await tf.setBackend("cpu");
  const before = tf.memory().numTensors;
  const a = tinyModel();
  const b = tinyModel();
  assert.notEqual(
    a.params.get("transform.cls_token")!.name,
    b.params.get("transform.cls_token")!.name,
  );
  a.dispose();
  b.dispose();
  assert.equal(tf.memory().numTensors, before);
});
