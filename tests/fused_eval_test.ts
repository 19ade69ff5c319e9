/**
 * A whole run on the webgpu backend scores the same with TTAu, TTDA's
 * evaluations and the report on the fused eval graph (`engine: auto`) as
 * with the tfjs model (`engine: tfjs`): same TTAu accuracies, same states,
 * same per-clip probabilities to float tolerance.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { compile, runPipeline } from "../pipeline/mod.ts";
import { BUILTIN_STAGES } from "../stages/mod.ts";
import type { ReportData } from "../lib/report_html.ts";
import { gpuTests } from "../gpu/testing.ts";
import { writeToneFolder } from "./_fixtures.ts";

const CLASSES = ["low", "mid", "high"];

async function dataset(dir: string): Promise<void> {
  await writeToneFolder(dir, {
    classes: CLASSES,
    perClass: [4, 1, 3],
    seconds: () => 0.5,
  });
}

const SPEC = `name: fused_eval
runtime: { backend: webgpu, seed: 5 }
data: { layout: folder, root: clips, manifest: manifest.csv }
stages:
  - use: load
    with: { workers: 0 }
  - use: mono_mix
  - use: augment
    name: ttau_views
    phases: [ttau]
    with:
      views:
        - { name: original, chain: [] }
        - { name: left, chain: [{ type: roll, fraction: 0.1, direction: left, random: false }] }
        - { name: right, chain: [{ type: roll, fraction: 0.1, direction: right, random: false }] }
  - use: fixed_length
    with: { seconds: 0.5 }
  - use: mel
    with: { sampleRateHz: 8000, nFft: 256, winLength: 200, hopLength: 80, nMels: 16 }
  - use: tokenize
  - use: train
    with:
      epochs: 1
      batchSize: 6
      lr: 0.05
      lrCardinality: 1
      engine: fused
      model: { width: 4, groups: [1, 1], embedDim: 16, depth: 1, heads: 2, mlpDim: 32, extend: 16, conv: 8, dropout: 0 }
  - use: test_time_augmentation
    with: { batchSize: 4 }
  - use: test_time_adaptation
    with: { epochs: 1, batchSize: 6, lr: 0.001, evalBatchSize: 4 }
  - use: report
    with: { batchSize: 4, predictionSplits: [test, validation] }
`;

async function runWith(dir: string, engine: string) {
  const compiled = await compile(join(dir, "spec.yaml"), {
    builtins: BUILTIN_STAGES,
    overrides: [
      `runtime.outputDir=${join(dir, `runs-${engine}`)}`,
      `test_time_augmentation.engine=${engine}`,
      `test_time_adaptation.engine=${engine}`,
      `report.engine=${engine}`,
    ],
  });
  const lines: string[] = [];
  const result = await runPipeline(compiled, {
    console: (l) => lines.push(l),
  });
  const read = (f: string) => Deno.readTextFile(join(result.runDir, f));
  return {
    lines,
    read,
    ttau: JSON.parse(await read("ttau.json")),
    report: JSON.parse(await read("report.json")) as ReportData,
    ttda: (await read("ttda_metrics.jsonl")).trim().split("\n").map((l) =>
      JSON.parse(l)
    ),
  };
}

/** The probabilities of a predictions CSV (`p1`, `p2`, … columns), in row order. */
function probabilities(csv: string): number[] {
  const [head, ...rows] = csv.trim().split("\n");
  const cols = head.split(",").flatMap((c, i) => /^p\d+$/.test(c) ? [i] : []);
  return rows.flatMap((r) => {
    const cells = r.split(",");
    return cols.map((i) => Number(cells[i]));
  });
}

Deno.test({
  name:
    "on webgpu, TTAu, TTDA's evaluations and the report score the same on the fused eval graph as with the tfjs model",
  ignore: !gpuTests,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "fused_eval_" });
    try {
      await dataset(dir);
      await Deno.writeTextFile(join(dir, "spec.yaml"), SPEC);
      const reference = await runWith(dir, "tfjs");
      const fused = await runWith(dir, "auto");
      const want = {
        tfjs: "the tfjs model",
        fused: "the fused WebGPU eval graph",
      };
      for (
        const [run, engine] of [[reference, "tfjs"], [fused, "fused"]] as const
      ) {
        for (const stage of ["TTAu", "TTDA evaluations", "report"]) {
          assert.ok(
            run.lines.some((l) =>
              l.includes(`${stage}: scored on ${want[engine]}`)
            ),
            `${stage} on ${engine}:\n${run.lines.join("\n")}`,
          );
        }
      }
      // The fused scorers say where their host time went; the tfjs ones
      // have no such figures.
      const timing =
        /: scored \d+ batches in [\d.]+ s \(waiting for batches [\d.]+ s, enqueuing [\d.]+ s, readbacks [\d.]+ s\), after [\d.]+ s of engine set-up$/;
      for (const prefix of ["TTAu", "report"]) {
        const has = (run: { lines: string[] }) =>
          run.lines.some((l) =>
            l.includes(`${prefix}: scored `) && timing.test(l)
          );
        assert.ok(has(fused), `${prefix} timing:\n${fused.lines.join("\n")}`);
        assert.ok(!has(reference), `${prefix} timing on tfjs`);
      }
      assert.ok(
        fused.lines.some((l) =>
          /report: scored \d+ model states? on test, validation: \d+ clips in [\d.]+ s \([\d.]+ clips\/s; [\d.]+ s of it waiting for checkpoints\)/
            .test(l)
        ),
      );
      // The same trained weights in both runs (training is the same).
      assert.equal(
        await fused.read("summary.json"),
        await reference.read("summary.json"),
      );
      for (const mode of ["orig", "aug"]) {
        assert.equal(
          fused.ttau[mode].accuracy,
          reference.ttau[mode].accuracy,
          mode,
        );
        assert.deepEqual(
          fused.ttau[mode].predictions,
          reference.ttau[mode].predictions,
          mode,
        );
      }
      assert.deepEqual(fused.ttau.labels, reference.ttau.labels);
      assert.equal(fused.ttda.length, reference.ttda.length);
      fused.ttda.forEach((line, i) => {
        assert.equal(line.accuracy, reference.ttda[i].accuracy);
        assert.ok(
          Math.abs(line.evalLoss - reference.ttda[i].evalLoss) <=
            1e-3 * Math.abs(reference.ttda[i].evalLoss),
          `TTDA epoch ${line.epoch} evalLoss ${line.evalLoss} vs ${
            reference.ttda[i].evalLoss
          }`,
        );
      });
      const states = fused.report.states!;
      assert.deepEqual(
        states.map((s) => `${s.id}@${s.split}`),
        reference.report.states!.map((s) => `${s.id}@${s.split}`),
      );
      assert.ok(states.length >= 5);
      for (const [i, s] of states.entries()) {
        const r = reference.report.states![i];
        assert.equal(s.accuracy, r.accuracy, `${s.id}@${s.split}`);
        const file = `predictions/${s.split}.${s.id}.csv`;
        const got = probabilities(await fused.read(file));
        const want = probabilities(await reference.read(file));
        assert.equal(got.length, want.length, file);
        got.forEach((p, j) =>
          assert.ok(
            Math.abs(p - want[j]) <= 1e-3,
            `${file}[${j}]: ${p} vs ${want[j]}`,
          )
        );
      }
    } finally {
      await tf.setBackend("cpu");
      await Deno.remove(dir, { recursive: true });
    }
  },
});
