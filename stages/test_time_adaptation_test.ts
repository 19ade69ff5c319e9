/**
 * Tests of the `test_time_adaptation` stage: the reference's lr schedule and
 * SGD timing, and a tiny end-to-end run (synthetic clips, tiny model, 1
 * training epoch, 2 TTDA roll views) on the cpu backend.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import type { Scalar, Tensor2D, Tensor3D } from "@tensorflow/tfjs";
import { compile, runPipeline } from "../pipeline/mod.ts";
import { BUILTIN_STAGES } from "./mod.ts";
import { loadCheckpoint } from "../model/checkpoint.ts";
import type { AmautModel, BatchStat } from "../model/amaut.ts";
import { createModel, ModelOptions } from "../model/amaut.ts";
import { ttdaLoss } from "../model/ttda_loss.ts";
import { createRng } from "../pipeline/rng.ts";
import { selectBackend } from "../pipeline/backend.ts";
import {
  moduleLrDecay,
  stage,
  type TtdaEpochMetrics,
  ttdaLearningRateFactor,
  TtdaOptions,
  type TtdaResult,
  ttdaSgdOptions,
} from "./test_time_adaptation.ts";
import { ttdaGradients } from "../model/ttda_step.ts";
import { gpuTests } from "../gpu/testing.ts";

const SPEC = `name: tiny-ttda
runtime: { backend: cpu, seed: 5 }
data: { layout: synthetic, sampleRateHz: 8000, durationSeconds: 0.5, perClass: { train: 8, validation: 3, test: 4 } }
stages:
  - use: load
  - use: mono_mix
  - use: augment
    with:
      views:
        - { name: shift, chain: [{ type: pad, seconds: 0.5 }, { type: roll }] }
  - use: augment
    name: ttda_views
    phases: [adapt]
    with:
      views:
        - { name: right, chain: [{ type: pad, seconds: 0.5, position: center }, { type: roll, direction: right }] }
        - { name: left, chain: [{ type: pad, seconds: 0.5, position: center }, { type: roll, direction: left }] }
  - use: fixed_length
    with: { seconds: 0.5 }
  - use: mel
    with: { sampleRateHz: 8000, nFft: 256, winLength: 200, hopLength: 80, nMels: 16 }
  - use: tokenize
  - use: train
    with:
      epochs: 1
      batchSize: 8
      lr: 0.05
      lrCardinality: 2
      model: { width: 4, groups: [1, 1], embedDim: 16, depth: 1, heads: 2, mlpDim: 32, extend: 16, conv: 8, dropout: 0.1 }
  - use: test_time_adaptation
    with: { epochs: 3, batchSize: 6, lr: 0.01, lrCardinality: 3, lrStopBefore: 1, evalBatchSize: 8 }
`;

async function run(overrides: string[] = []) {
  await tf.setBackend("cpu");
  const dir = await Deno.makeTempDir({ prefix: "ttda_test_" });
  await Deno.writeTextFile(join(dir, "spec.yaml"), SPEC);
  const compiled = await compile(join(dir, "spec.yaml"), {
    builtins: { ...BUILTIN_STAGES, test_time_adaptation: stage },
    overrides: [`runtime.outputDir=${join(dir, "runs")}`, ...overrides],
  });
  const result = await runPipeline(compiled, {});
  const model = result.values.model as AmautModel;
  const ttda = result.values.ttda as TtdaResult;
  // The train stage leaves the best checkpoint's weights in the model: the
  // weights TTDA started from.
  const ckpt = await loadCheckpoint(
    tf,
    join(result.runDir, "checkpoints"),
    "best",
  );
  const changed = new Map<string, boolean>();
  for (const [name, v] of model.params) {
    const a = await v.data();
    const b = await ckpt.groups.params.get(name)!.data();
    changed.set(name, a.some((x, i) => x !== b[i]));
  }
  tf.dispose(Object.values(ckpt.groups).flatMap((g) => [...g.values()]));
  const lines = (await Deno.readTextFile(
    join(result.runDir, "ttda_metrics.jsonl"),
  )).trim().split("\n").map((l) => JSON.parse(l) as TtdaEpochMetrics);
  const log = await Deno.readTextFile(join(result.runDir, "log.jsonl"));
  model.dispose();
  return { ttda, lines, changed, log };
}

const some = (m: Map<string, boolean>, prefix: string, v: boolean) =>
  [...m].some(([n, c]) => n.startsWith(prefix) && c === v);
const all = (m: Map<string, boolean>, prefix: string, v: boolean) =>
  [...m].filter(([n]) => n.startsWith(prefix)).every(([, c]) => c === v);

Deno.test("TTDA lr factor follows the reference's scheduler timing (γ 30, C 50, threshold 25)", () => {
  const s = { gamma: 30, cardinality: 50, stopBefore: 25 };
  const f = (k: number) => ttdaLearningRateFactor(k, s);
  // lr_scheduler(epoch=e) runs after epoch e and updates only while e < 25.
  assert.equal(f(0), 1);
  assert.equal(f(1), 1); // set after epoch 0 to (1 + 0)^−0.75
  assert.equal(f(2), Math.pow(1 + 30 / 50, -0.75));
  assert.equal(f(10), Math.pow(1 + 30 * 9 / 50, -0.75));
  assert.equal(f(25), Math.pow(1 + 30 * 24 / 50, -0.75));
  for (let k = 26; k < 80; k++) assert.equal(f(k), f(25), `epoch ${k}`);
  assert.ok(Math.abs(f(25) - 0.1286) < 5e-5, `frozen at ${f(25)}`);
  for (let k = 2; k <= 25; k++) assert.ok(f(k) < f(k - 1), `epoch ${k}`);
  // Per-epoch lr of the AM/VS/CS defaults: 1e-4 × 0.55 (features), × 1.0 (classifier).
  const o = TtdaOptions.parse({});
  assert.deepEqual(
    [o.lr, o.featureLrDecay, o.classifierLrDecay, o.lrGamma, o.lrCardinality],
    [1e-4, 0.55, 1.0, 30, 50],
  );
  assert.equal(o.lrStopBefore, 25);
  assert.ok(
    Math.abs(o.lr * o.featureLrDecay * f(49) - 0.55e-4 * 0.1286351) < 1e-11,
  );
  // A threshold ≥ C: the scheduler never updates, so lr stays lr0 and SGD
  // never gets momentum or weight decay.
  const never = { gamma: 30, cardinality: 5, stopBefore: 5 };
  assert.equal(ttdaLearningRateFactor(3, never), 1);
  const sgdOf = (k: number, stopBefore: number) =>
    ttdaSgdOptions(k, {
      momentum: 0.9,
      weightDecay: 1e-3,
      nesterov: false,
      cardinality: 5,
      stopBefore,
    });
  assert.deepEqual(
    [sgdOf(3, 5).momentum, sgdOf(3, 5).weightDecay],
    [0, 0],
  );
  assert.deepEqual([sgdOf(0, 1).momentum, sgdOf(0, 1).weightDecay], [0, 0]);
  assert.deepEqual([sgdOf(1, 1).momentum, sgdOf(1, 1).weightDecay], [
    0.9,
    1e-3,
  ]);
  assert.equal(sgdOf(4, 1).momentum, 0.9); // frozen schedule keeps momentum
  assert.throws(() => ttdaLearningRateFactor(-1, s), RangeError);
});

Deno.test("TTDA options: defaults are the reference's AM/VS/CS values, and every field is described", () => {
  const o = TtdaOptions.parse({});
  assert.deepEqual(o, {
    epochs: 50,
    batchSize: 70,
    split: "test",
    phase: "adapt",
    lr: 1e-4,
    featureLrDecay: 0.55,
    classifierLrDecay: 1.0,
    lrGamma: 30,
    lrCardinality: 50,
    lrStopBefore: 25,
    lrPower: 0.75,
    alpha: 1.0,
    beta: 0.5,
    gamma: 0.5,
    q: 1.1,
    momentum: 0.9,
    weightDecay: 1e-3,
    nesterov: false,
    evalBatchSize: 32,
    engine: "auto",
    precision: "fp32",
  });
  for (const [k, v] of Object.entries(TtdaOptions.shape)) {
    assert.ok(v.description, `${k} has no description`);
  }
  assert.equal(TtdaOptions.safeParse({ q: 1 }).success, false);
  assert.equal(moduleLrDecay("transform.pos_embed", o), 0.55);
  assert.equal(moduleLrDecay("classifier.fc.weight", o), 1.0);
  assert.throws(() => moduleLrDecay("decoder.w", o), /neither transform/);
});

Deno.test("TTDA end to end: adapts every module in place, writes ttda_metrics.jsonl, reports final and best, no leak", async () => {
  const { ttda, lines, changed, log } = await run();
  assert.match(log, /TTDA views: right, left/);
  assert.match(log, /TTDA engine: tfjs \(op by op\)/);
  assert.match(log, /TTDA best epoch by test accuracy .* optimistic/);
  assert.deepEqual(lines.map((l) => l.epoch), [1, 2, 3]);
  for (const l of lines) {
    assert.ok(Number.isFinite(l.loss), `loss ${l.loss}`);
    assert.ok(l.accuracy >= 0 && l.accuracy <= 1);
  }
  // lr per epoch: lr0 · decay · factor, with C 3 and threshold 1 (updates
  // after epochs 0 and 1): factors 1, 1, (1 + 30/3)^−0.75.
  const factors = [1, 1, Math.pow(1 + 30 / 3, -0.75)];
  lines.forEach((l, i) => {
    assert.ok(Math.abs(l.featureLr - 0.01 * 0.55 * factors[i]) < 1e-12);
    assert.ok(Math.abs(l.classifierLr - 0.01 * factors[i]) < 1e-12);
  });
  assert.deepEqual(lines.map((l) => l.momentum), [0, 0.9, 0.9]);
  assert.deepEqual(lines.map((l) => l.weightDecay), [0, 1e-3, 1e-3]);
  // No tensor growth between epochs apart from the momentum buffers, which
  // appear in the first epoch with momentum on.
  assert.equal(lines[0].momentumBuffers, 0);
  assert.ok(lines[1].momentumBuffers > 0);
  assert.equal(lines[1].tensorsAtStart, lines[0].tensorsAtStart);
  assert.equal(
    lines[2].tensorsAtStart - lines[1].tensorsAtStart,
    lines[1].momentumBuffers,
  );
  assert.deepEqual(ttda.final, { epoch: 3, accuracy: lines[2].accuracy });
  const bestAccuracy = Math.max(...lines.map((l) => l.accuracy));
  assert.equal(ttda.best.accuracy, bestAccuracy);
  assert.equal(lines[ttda.best.epoch - 1].accuracy, bestAccuracy);
  assert.equal(ttda.best.note, "chosen by test accuracy: optimistic");
  assert.equal(ttda.before.epoch, 0);
  assert.ok(ttda.before.accuracy >= 0 && ttda.before.accuracy <= 1);
  assert.equal(ttda.epochs.length, 3);
  assert.ok(some(changed, "transform.", true), "no transform.* param changed");
  assert.ok(
    some(changed, "classifier.", true),
    "no classifier.* param changed",
  );
});

Deno.test("TTDA with featureLrDecay 0 leaves transform.* unchanged and adapts classifier.*", async () => {
  const { changed, lines } = await run([
    "test_time_adaptation.featureLrDecay=0",
    "test_time_adaptation.epochs=2",
  ]);
  assert.equal(lines.length, 2);
  assert.ok(all(changed, "transform.", false), "a transform.* param changed");
  assert.ok(all(changed, "classifier.", true), "a classifier.* param stayed");
  assert.equal(lines[0].featureLr, 0);
});

Deno.test("TTDA stops on a non-finite loss, naming the epoch and step", async () => {
  await assert.rejects(
    run(["test_time_adaptation.lr=1e30", "test_time_adaptation.epochs=2"]),
    /Cannot continue test-time adaptation: the loss is (NaN|Infinity|-Infinity) at epoch \d+, step \d+/,
  );
});

Deno.test("TTDA with engine: fused on the cpu backend is refused, naming the backend", async () => {
  await assert.rejects(
    run(["test_time_adaptation.engine=fused"]),
    /Cannot adapt with engine "fused": it needs the webgpu backend, and this run uses "cpu" \(use engine: tfjs or auto\)/,
  );
});

/** Overrides of the webgpu TTDA tests: fp32 training without dropout, two TTDA epochs at a fixed rate. */
const GPU_TTDA_SETS = [
  "runtime.backend=webgpu",
  "train.model.dropout=0",
  "test_time_adaptation.epochs=2",
  "test_time_adaptation.lrCardinality=2",
  "test_time_adaptation.lrStopBefore=0",
];

Deno.test({
  name:
    "TTDA on the webgpu backend runs fused and adapts like the tfjs engine from the same trained weights: same losses, every module adapted in place",
  ignore: !gpuTests,
  async fn() {
    // Both runs train on the fused engine with the same seeds (the same
    // weights); only TTDA's engine differs.
    try {
      const ref = await run([
        ...GPU_TTDA_SETS,
        "test_time_adaptation.engine=tfjs",
      ]);
      const gpu = await run(GPU_TTDA_SETS);
      assert.match(ref.log, /TTDA engine: tfjs \(op by op\)/);
      assert.match(gpu.log, /TTDA engine: fused WebGPU graph/);
      assert.ok(
        Math.abs(gpu.ttda.before.loss - ref.ttda.before.loss) <=
          1e-4 * Math.abs(ref.ttda.before.loss),
        `before: ${gpu.ttda.before.loss} (fused) vs ${ref.ttda.before.loss} (tfjs)`,
      );
      assert.deepEqual(gpu.lines.map((l) => l.epoch), [1, 2]);
      gpu.lines.forEach((b, i) => {
        const a = ref.lines[i];
        assert.ok(
          Math.abs(b.loss - a.loss) <= 1e-3 * Math.abs(a.loss),
          `epoch ${b.epoch} TTDA loss ${b.loss} (fused) vs ${a.loss} (tfjs)`,
        );
        assert.ok(
          Math.abs(b.evalLoss - a.evalLoss) <= 1e-3 * Math.abs(a.evalLoss),
          `epoch ${b.epoch} eval loss ${b.evalLoss} (fused) vs ${a.evalLoss} (tfjs)`,
        );
      });
      assert.deepEqual(
        gpu.lines.map((l) => [l.momentum, l.weightDecay, l.featureLr]),
        ref.lines.map((l) => [l.momentum, l.weightDecay, l.featureLr]),
      );
      assert.equal(gpu.lines[0].momentumBuffers, 0);
      assert.ok(gpu.lines[1].momentumBuffers > 0);
      assert.ok(some(gpu.changed, "transform.", true), "no transform.* change");
      assert.ok(
        some(gpu.changed, "classifier.", true),
        "no classifier.* change",
      );
    } finally {
      await tf.setBackend("cpu");
    }
  },
});

Deno.test({
  name:
    "fused TTDA stops after the epoch whose loss is not finite, naming the epoch",
  ignore: !gpuTests,
  async fn() {
    try {
      await assert.rejects(
        run([
          "runtime.backend=webgpu",
          "test_time_adaptation.lr=1e30",
          "test_time_adaptation.epochs=2",
        ]),
        /Cannot continue test-time adaptation: the loss is (NaN|Infinity|-Infinity) in epoch 1; the model was adapted in place by this epoch's steps \(try a lower lr\)/,
      );
    } finally {
      await tf.setBackend("cpu");
    }
  },
});

Deno.test("ttdaGradients: per-view gradients summed equal the joint gradient of the summed loss", async () => {
  await selectBackend("cpu");
  const options = ModelOptions.parse({
    width: 4,
    groups: [1, 1],
    embedDim: 16,
    depth: 1,
    heads: 2,
    mlpDim: 40,
    extend: 16,
    conv: 8,
    head: "fce",
  });
  const model = createModel(
    tf,
    options,
    { nMels: 8, frames: 64, classes: 3 },
    createRng("ttda_views", 1),
  );
  const vars = [...model.params.values()];
  const x = tf.randomNormal([10, 64, 8], 0, 1, "float32", 3) as Tensor3D;
  const rates = { alpha: 1, beta: 0.5, gamma: 0.5, q: 1.1 };
  const rng = createRng("dropout", 0);
  const joint = tf.variableGrads(() => {
    let loss = tf.scalar(0);
    for (let v = 0; v < 2; v++) {
      const out = model.apply(x.slice([v * 5, 0, 0], [5, -1, -1]), {
        training: true,
        rng: rng.child(v),
      });
      tf.dispose(out.batchStats.flatMap((s) => [s.mean, s.variance]));
      loss = loss.add(ttdaLoss(tf, out.logits as Tensor2D, rates));
    }
    return loss as Scalar;
  }, vars);
  const stats: BatchStat[] = [];
  const before = tf.memory().numTensors;
  const split = ttdaGradients(tf, model, x, 2, { rng, rates, vars, stats });
  // Nothing leaks: the loss, the gradients and each view's BatchNorm statistics.
  assert.equal(
    tf.memory().numTensors,
    before + 1 + Object.keys(split.grads).length + 2 * stats.length,
  );
  assert.equal(stats.length % 2, 0);
  assert.equal(
    (await split.value.data())[0],
    (await joint.value.data())[0],
  );
  assert.deepEqual(
    Object.keys(split.grads).sort(),
    Object.keys(joint.grads).sort(),
  );
  for (const [name, g] of Object.entries(joint.grads)) {
    const [a, b] = [await g.data(), await split.grads[name].data()];
    for (let i = 0; i < a.length; i++) {
      assert.ok(Math.abs(a[i] - b[i]) <= 1e-6 * (1 + Math.abs(a[i])), name);
    }
  }
  tf.dispose([
    x,
    joint.value,
    split.value,
    ...Object.values(joint.grads),
    ...Object.values(split.grads),
    ...stats.flatMap((s) => [s.mean, s.variance]),
  ]);
  model.dispose();
});

Deno.test("TTDA with precision mixed on the cpu backend is refused, naming the stage option", async () => {
  await assert.rejects(
    run(["test_time_adaptation.precision=mixed"]),
    {
      message:
        'Cannot finish stage "test_time_adaptation": Cannot adapt with precision mixed: it needs the fused WebGPU engine, and this run uses the "cpu" backend; select the webgpu backend (runtime.backend: webgpu), or use --set test_time_adaptation.precision=fp32',
    },
  );
});

Deno.test({
  name:
    "TTDA with precision mixed adapts on the fused engine with loss scaling: finite losses near fp32's, the scale and skipped steps in ttda_metrics.jsonl",
  ignore: !gpuTests,
  async fn() {
    // Both runs train in fp32 with the same seeds (the same trained weights);
    // only TTDA's precision differs.
    try {
      const ref = await run(GPU_TTDA_SETS);
      const mixed = await run([
        ...GPU_TTDA_SETS,
        "test_time_adaptation.precision=mixed",
      ]);
      assert.match(
        mixed.log,
        /TTDA engine: fused WebGPU graph \(mixed precision/,
      );
      assert.match(
        mixed.log,
        /TTDA epoch 2\/2: .*, loss scale \d+ \(\d+ steps skipped\)/,
      );
      // The evaluation before adaptation (a trained model: BatchNorm
      // statistics track the activations) in mixed precision.
      assert.ok(
        Math.abs(mixed.ttda.before.loss - ref.ttda.before.loss) <=
          1e-2 * Math.abs(ref.ttda.before.loss),
        `before: ${mixed.ttda.before.loss} (mixed) vs ${ref.ttda.before.loss} (fp32)`,
      );
      assert.deepEqual(mixed.lines.map((l) => l.epoch), [1, 2]);
      for (const [i, l] of mixed.lines.entries()) {
        assert.ok(Number.isFinite(l.loss) && Number.isFinite(l.evalLoss));
        assert.ok(
          Math.abs(l.loss - ref.lines[i].loss) <=
            2e-2 * Math.abs(ref.lines[i].loss),
          `epoch ${l.epoch} TTDA loss ${l.loss} (mixed) vs ${
            ref.lines[i].loss
          } (fp32)`,
        );
        // GradScaler's initial 2¹⁶, halved per skipped step.
        assert.equal(l.lossScale, 2 ** 16 / 2 ** l.skippedSteps!);
        assert.equal(ref.lines[i].lossScale, undefined);
      }
      assert.ok(
        some(mixed.changed, "transform.", true),
        "no transform.* change",
      );
      assert.ok(
        some(mixed.changed, "classifier.", true),
        "no classifier.* change",
      );
    } finally {
      await tf.setBackend("cpu");
    }
  },
});
