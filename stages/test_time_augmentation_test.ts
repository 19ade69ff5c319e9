import assert from "node:assert/strict";
import type { StateScores } from "../lib/predictions.ts";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { compile, runPipeline } from "../pipeline/mod.ts";
import { BUILTIN_STAGES } from "./mod.ts";
import {
  argmaxRows,
  mergeOutputs,
  softmaxRows,
  stage,
  TestTimeAugmentationOptions,
  ttauScores,
} from "./test_time_augmentation.ts";

const f32 = (...rows: number[][]) => new Float32Array(rows.flat());
const near = (actual: Float32Array, expected: number[]) => {
  assert.equal(actual.length, expected.length);
  expected.forEach((v, i) =>
    assert.ok(Math.abs(actual[i] - v) < 1e-6, `[${i}] ${actual[i]} != ${v}`)
  );
};

Deno.test("softmaxRows normalises each row and is stable for large logits", () => {
  const p = softmaxRows(f32([0, 0], [1000, 0]), 2);
  assert.deepEqual(Array.from(p), [0.5, 0.5, 1, 0]);
});

Deno.test("merging logits and merging softmax can pick different classes", () => {
  // One very confident view for class 0, two moderately confident for class 1:
  // mean logits [3.33, 1.33] → 0; mean probabilities ≈ [0.41, 0.59] → 1.
  const views = [f32([10, 0]), f32([0, 2]), f32([0, 2])];
  assert.deepEqual(argmaxRows(mergeOutputs(views, 2, "logits"), 2), [0]);
  assert.deepEqual(argmaxRows(mergeOutputs(views, 2, "softmax"), 2), [1]);
  const probs = mergeOutputs(views, 2, "softmax");
  assert.ok(Math.abs(probs[0] + probs[1] - 1) < 1e-6);
  assert.ok(Math.abs(probs[0] - (1 + 2 / (1 + Math.exp(2))) / 3) < 1e-4);
});

Deno.test("ttauScores: orig, aug, mlt and hyb follow Eqs. 10-12", () => {
  // 2 members × 3 views, 2 examples, 2 classes.
  const m0 = [f32([1, 0], [0, 1]), f32([0, 3], [0, 1]), f32([0, 3], [0, 1])];
  const m1 = [f32([0, 4], [2, 0]), f32([0, 0], [2, 0]), f32([0, 0], [2, 0])];
  const s = ttauScores([m0, m1], 2, "logits");
  near(s.orig!, [1, 0, 0, 1]);
  near(s.aug!, [1 / 3, 2, 0, 1]);
  near(s.mlt!, [0.5, 2, 1, 0.5]);
  // hyb: the mean over members of each member's mean over views.
  near(s.hyb!, [1 / 6, 5 / 3, 1, 0.5]);
  assert.deepEqual(argmaxRows(s.orig!, 2), [0, 1]);
  assert.deepEqual(argmaxRows(s.aug!, 2), [1, 1]);
  assert.deepEqual(argmaxRows(s.mlt!, 2), [1, 0]);
  // softmax merge: hyb equals the flat mean of the 6 softmaxes (equal counts).
  const soft = ttauScores([m0, m1], 2, "softmax", ["hyb"]);
  const flat = mergeOutputs([...m0, ...m1], 2, "softmax");
  near(soft.hyb!, Array.from(flat));
  assert.equal(soft.orig, undefined);
});

Deno.test("options refuse mlt or hyb without checkpoints", () => {
  const r = TestTimeAugmentationOptions.safeParse({ modes: ["orig", "mlt"] });
  assert.ok(!r.success);
  assert.match(r.error.issues[0].message, /mlt needs other trained models/);
  const ok = TestTimeAugmentationOptions.parse({});
  assert.equal(ok.merge, "logits");
  assert.equal(ok.which, "best");
  assert.equal(ok.modes, undefined);
});

const SPEC = `name: tiny-ttau
runtime: { backend: cpu, seed: 3 }
data: { layout: synthetic, sampleRateHz: 8000, durationSeconds: 0.5, perClass: { train: 8, validation: 3, test: 3 } }
stages:
  - use: load
  - use: mono_mix
  - use: augment
    with:
      views:
        - { name: shift, chain: [{ type: pad, seconds: 0.5 }, { type: roll }] }
        - { name: noise, chain: [{ type: noise }, { type: pad, seconds: 0.5 }] }
  - use: augment
    name: ttau_views
    phases: [ttau]
    with:
      views:
        - { name: original, chain: [] }
        - { name: left, chain: [{ type: roll, random: false, direction: left, fraction: 0.17 }] }
        - { name: right, chain: [{ type: roll, random: false, direction: right, fraction: 0.17 }] }
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
      readEvery: 2
      model: { width: 4, groups: [1, 1], embedDim: 16, depth: 1, heads: 2, mlpDim: 32, extend: 16, conv: 8, dropout: 0.1 }
  - use: test_time_augmentation
    with: { batchSize: 4 }
`;

async function compileSpec(dir: string, overrides: string[]) {
  await Deno.writeTextFile(join(dir, "spec.yaml"), SPEC);
  return await compile(join(dir, "spec.yaml"), {
    builtins: { ...BUILTIN_STAGES, test_time_augmentation: stage },
    overrides: [`runtime.outputDir=${join(dir, "runs")}`, ...overrides],
  });
}

Deno.test("test_time_augmentation writes ttau.json with orig, aug, mlt and hyb over two trained runs", async () => {
  await tf.setBackend("cpu");
  const dir = await Deno.makeTempDir({ prefix: "ttau_test_" });
  const first = await runPipeline(await compileSpec(dir, []), {});
  const firstTtau = first.values.ttau as Record<string, unknown>;
  // Without checkpoints the default modes are orig and aug only.
  assert.deepEqual(
    Object.keys(firstTtau).filter((k) => /^(orig|aug|mlt|hyb)$/.test(k)),
    ["orig", "aug"],
  );
  assert.equal(firstTtau.members, 1);

  const tensorsBefore = tf.memory().numTensors;
  const second = await runPipeline(
    await compileSpec(dir, [
      "runtime.seed=4",
      `test_time_augmentation.checkpoints=[${JSON.stringify(first.runDir)}]`,
    ]),
    {},
  );
  const report = JSON.parse(
    await Deno.readTextFile(join(second.runDir, "ttau.json")),
  );
  const summary = JSON.parse(
    await Deno.readTextFile(join(second.runDir, "summary.json")),
  );
  assert.equal(report.members, 2);
  assert.deepEqual(report.views, ["original", "left", "right"]);
  assert.equal(report.merge, "logits");
  assert.equal(report.examples, 9);
  for (const mode of ["orig", "aug", "mlt", "hyb"]) {
    const r = report[mode];
    assert.ok(r, `mode ${mode} missing`);
    assert.ok(r.accuracy >= 0 && r.accuracy <= 1, mode);
    assert.equal(r.predictions.length, 9, mode);
    const hits = r.predictions.filter((p: number, i: number) =>
      p === report.labels[i]
    ).length;
    assert.equal(r.accuracy, hits / 9, mode);
  }
  // Same model, same data as train's final evaluation.
  assert.equal(report.orig.accuracy, summary.test.accuracy);
  const ttau = second.values.ttau as Record<string, unknown>;
  assert.equal(ttau.members, 2);
  assert.deepEqual(ttau.views, ["original", "left", "right"]);
  assert.deepEqual(ttau.mlt, { accuracy: report.mlt.accuracy });
  // The second member's model was disposed (only the run's own model stays).
  const leaked = tf.memory().numTensors - tensorsBefore;
  const own = second.values.model as {
    params: Map<string, unknown>;
    buffers: Map<string, unknown>;
  };
  assert.ok(leaked <= own.params.size + own.buffers.size, `leaked ${leaked}`);
});

Deno.test("test_time_augmentation refuses a checkpoint of another model shape", async () => {
  await tf.setBackend("cpu");
  const dir = await Deno.makeTempDir({ prefix: "ttau_test_" });
  const first = await runPipeline(
    await compileSpec(dir, ["train.model.embedDim=8"]),
    {},
  );
  await assert.rejects(
    runPipeline(
      await compileSpec(dir, [
        `test_time_augmentation.checkpoints=[${JSON.stringify(first.runDir)}]`,
        "test_time_augmentation.modes=[orig, mlt]",
      ]),
      {},
    ),
    /as a TTAu member: the checkpoint holds another model: parameter .* has shape/,
  );
});

Deno.test("test_time_augmentation names a missing checkpoint", async () => {
  await tf.setBackend("cpu");
  const dir = await Deno.makeTempDir({ prefix: "ttau_test_" });
  await assert.rejects(
    runPipeline(
      await compileSpec(dir, [
        `test_time_augmentation.checkpoints=[${
          JSON.stringify(join(dir, "nowhere"))
        }]`,
      ]),
      {},
    ),
    /Cannot find checkpoint "best" of TTAu member .*nowhere/,
  );
});

Deno.test("ttauScores takes Orig and Mlt from origLogits when given, Aug and Hyb from the views", () => {
  const row = (a: number, b: number) => new Float32Array([a, b]);
  // member 0: views favour class 1; its eval-pipeline logits favour class 0.
  const logits = [[row(0, 1), row(0, 2)], [row(0, 3), row(0, 1)]];
  const orig = [row(5, 0), row(1, 0)];
  const s = ttauScores(
    logits,
    2,
    "logits",
    ["orig", "aug", "mlt", "hyb"],
    orig,
  );
  assert.deepEqual([...s.orig!], [5, 0]);
  assert.deepEqual([...s.mlt!], [3, 0]);
  assert.deepEqual([...s.aug!], [0, 1.5]);
  assert.deepEqual([...s.hyb!], [0, 1.75]);
  const plain = ttauScores(logits, 2, "logits", ["orig", "mlt"]);
  assert.deepEqual([...plain.orig!], [0, 1]);
  assert.deepEqual([...plain.mlt!], [0, 2]);
});

Deno.test("test_time_augmentation with origPhase eval scores Orig on the plain test pipeline", async () => {
  await tf.setBackend("cpu");
  const dir = await Deno.makeTempDir({ prefix: "ttau_test_" });
  // View 0 of the ttau phase is deliberately different (a head clip), so only
  // an Orig taken from the eval phase can equal train's own test accuracy.
  const run = await runPipeline(
    await compileSpec(dir, [
      "test_time_augmentation.origPhase=eval",
      "ttau_views.views.0.chain=[{ type: clip, samples: 2000 }]",
    ]),
    {},
  );
  const report = JSON.parse(
    await Deno.readTextFile(join(run.runDir, "ttau.json")),
  );
  const summary = JSON.parse(
    await Deno.readTextFile(join(run.runDir, "summary.json")),
  );
  assert.equal(report.origPhase, "eval");
  assert.equal(report.orig.accuracy, summary.test.accuracy);
  assert.ok(report.aug.accuracy >= 0 && report.aug.accuracy <= 1);
  // The scores per clip for the report name where Orig came from, and the
  // clips are named in ttau.json.
  const states = run.values.scoredStates as StateScores[];
  assert.deepEqual(states.map((s) => [s.id, s.label]), [
    ["ttau-orig", "TTAu Orig (phase eval)"],
    ["ttau-aug", "TTAu Aug (3 views merged, logits)"],
  ]);
  assert.equal(report.paths.length, report.labels.length);
  assert.deepEqual(states[0].paths, report.paths);
  for (const s of states) {
    const n = s.probabilities.length / s.labels.length;
    for (let r = 0; r < s.labels.length; r++) {
      const sum = s.probabilities.subarray(r * n, (r + 1) * n).reduce(
        (a, b) => a + b,
        0,
      );
      assert.ok(Math.abs(sum - 1) < 1e-5, `row ${r} sums to ${sum}`);
    }
  }
});
