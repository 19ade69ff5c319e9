import assert from "node:assert/strict";
import { tinyTrainSpec } from "../tests/_tiny_run.ts";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { compile, defineStage, runPipeline } from "../pipeline/mod.ts";
import type { Stage, StepContext } from "../pipeline/mod.ts";
import { BUILTIN_STAGES } from "../stages/mod.ts";
import { evaluate } from "../model/evaluate.ts";
import type { AmautModel } from "../model/amaut.ts";
import { exportRun, writePackage } from "./export.ts";
import {
  fitForEval,
  lengthChange,
  loadPackage,
  loadPackageFromDir,
  memoryLoader,
} from "./inference.ts";

// Clips of 0.3–0.7 s against a 0.5 s model: evaluation pads some, clips others.
const SPEC = tinyTrainSpec({
  name: "tiny-infer",
  seed: 5,
  perClass: [6, 2, 3],
  durationJitter: 0.4,
  extraStages: "  - use: eval_dump\n",
});

/** Writes the raw test clips and the train stage's own eval-mode logits of them. */
const evalDump = defineStage<Record<string, never>>({
  id: "eval_dump",
  version: "1.0.0",
  api: 1,
  kind: "step",
  summary: "Test helper: raw test clips and evaluate()'s logits",
  options: {
    safeParse: (input: unknown) => ({
      success: true as const,
      data: (input ?? {}) as Record<string, never>,
    }),
  },
  takes: ["model"],
  provides: [],
  async run(_options, ctx: StepContext) {
    const model = ctx.values.model as AmautModel;
    const waves: number[][] = [];
    for await (
      const b of ctx.data.batches("test", {
        batchSize: 64,
        phase: "eval",
        shuffle: false,
      })
    ) {
      for (const ch of b.channels as Float32Array[][]) waves.push([...ch[0]]);
    }
    const r = await evaluate(ctx, model, "test", 64, { keepLogits: true });
    await Deno.writeTextFile(
      join(ctx.runDir, "eval_dump.json"),
      JSON.stringify({ waves, logits: [...r.logits], labels: r.labels }),
    );
    return {};
  },
});

async function tinyRun() {
  await tf.setBackend("cpu");
  const dir = await Deno.makeTempDir({ prefix: "inference_test_" });
  await Deno.writeTextFile(join(dir, "spec.yaml"), SPEC);
  const compiled = await compile(join(dir, "spec.yaml"), {
    builtins: { ...BUILTIN_STAGES, eval_dump: evalDump as Stage },
    overrides: [`runtime.outputDir=${join(dir, "runs")}`],
  });
  const { runDir } = await runPipeline(compiled, {});
  return { dir, runDir };
}

function softmax(row: number[]): number[] {
  const m = Math.max(...row);
  const e = row.map((v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

Deno.test("a loaded package predicts what the trained model gives in evaluation, within 1e-5", async () => {
  const { dir, runDir } = await tinyRun();
  const dump = JSON.parse(
    await Deno.readTextFile(join(runDir, "eval_dump.json")),
  );
  const waves = (dump.waves as number[][]).map((w) => Float32Array.from(w));
  const changes = new Set(
    waves.map((w) => lengthChange(w.length, 4000, "head")),
  );
  assert.ok(
    changes.has("padded") && changes.has("clipped"),
    [...changes].join(),
  );

  const out = join(dir, "package");
  await writePackage(out, await exportRun(tf, runDir));
  const before = tf.memory().numTensors;
  const model = await loadPackageFromDir(tf, out, { batchSize: 4 });
  assert.deepEqual(model.labels, ["low", "mid", "high"]);
  assert.equal(model.sampleRateHz, 8000);
  assert.equal(model.lengthSamples, 4000);
  const probabilities = await model.predict(waves);
  const n = model.labels.length;
  assert.equal(probabilities.length, waves.length);
  probabilities.forEach((p, i) => {
    const expected = softmax(dump.logits.slice(i * n, (i + 1) * n));
    for (let k = 0; k < n; k++) {
      assert.ok(
        Math.abs(p[k] - expected[k]) < 1e-5,
        `clip ${i} class ${k}: ${p[k]} vs ${expected[k]}`,
      );
    }
    assert.ok(Math.abs(p.reduce((a, b) => a + b, 0) - 1) < 1e-5);
  });
  model.dispose();
  assert.equal(tf.memory().numTensors, before, "predict leaked tensors");
});

Deno.test("fitForEval pads centred and keeps the head, as evaluation does", () => {
  assert.deepEqual(
    [...fitForEval(new Float32Array([1, 2, 3]), 6, "head")],
    [0, 1, 2, 3, 0, 0],
  );
  assert.deepEqual(
    [...fitForEval(new Float32Array([1, 2, 3, 4]), 2, "head")],
    [1, 2],
  );
  assert.equal(fitForEval(new Float32Array(4), 2, "none").length, 4);
  assert.equal(lengthChange(5, null, "head"), "exact");
});

Deno.test("loadPackage refuses what is not a package, naming the problem", async () => {
  await tf.setBackend("cpu");
  await assert.rejects(
    loadPackage(tf, memoryLoader({ "model.json": '{"format":"other"}' })),
    /format "other", expected "amaut-model"/,
  );
  const dir = await Deno.makeTempDir({ prefix: "inference_test_" });
  await assert.rejects(
    loadPackageFromDir(tf, dir),
    new RegExp(`"${dir}": it lacks model.json`),
  );
});
