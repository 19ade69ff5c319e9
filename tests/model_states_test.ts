/**
 * A run with TTAu and TTDA on a folder dataset of WAV files, read as a
 * researcher reads it: the report scores every model state (trained best and
 * last, TTAu Orig and Aug, TTDA final) side by side with per-class scores
 * and a confusion matrix each, every accuracy it prints names its state, the
 * per-file predictions agree with `deno task predict` on the same clips, and
 * every output counts epochs from 1.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { compile, runPipeline } from "../pipeline/mod.ts";
import { BUILTIN_STAGES } from "../stages/mod.ts";
import type { ReportData } from "../lib/report_html.ts";
import { writeToneFolder } from "./_fixtures.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const CLASSES = ["low", "mid", "high"];

/** Tones per class at 8 kHz (0.3–0.5 s), split by a manifest column. */
async function dataset(dir: string): Promise<void> {
  await writeToneFolder(dir, {
    classes: CLASSES,
    perClass: [8, 2, 2],
    seconds: (i) => 0.3 + 0.02 * (i % 10),
  });
}

const pad = "{ type: pad, seconds: 0.5, position: center }";
const SPEC = `name: states
runtime: { backend: cpu, seed: 11 }
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
        - { name: original, chain: [${pad}] }
        - { name: left, chain: [${pad}, { type: roll, fraction: 0.1, direction: left, random: false }] }
        - { name: right, chain: [${pad}, { type: roll, fraction: 0.1, direction: right, random: false }] }
  - use: augment
    name: ttda_views
    phases: [adapt]
    with:
      views:
        - { name: right, chain: [${pad}, { type: roll, fraction: 0.1, direction: right }] }
        - { name: left, chain: [${pad}, { type: roll, fraction: 0.1, direction: left }] }
  - use: fixed_length
    with: { seconds: 0.5 }
  - use: mel
    with: { sampleRateHz: 8000, nFft: 256, winLength: 200, hopLength: 80, nMels: 16 }
  - use: tokenize
  - use: train
    with:
      epochs: 2
      batchSize: 8
      lr: 0.05
      lrCardinality: 2
      model: { width: 4, groups: [1, 1], embedDim: 16, depth: 1, heads: 2, mlpDim: 32, extend: 16, conv: 8, dropout: 0.1 }
  - use: test_time_augmentation
  - use: test_time_adaptation
    with: { epochs: 2, batchSize: 6, lr: 0.001 }
  - use: report
    with: { predictionSplits: [test, validation] }
`;

async function runStates() {
  await tf.setBackend("cpu");
  const dir = await Deno.makeTempDir({ prefix: "model_states_" });
  await dataset(dir);
  await Deno.writeTextFile(join(dir, "spec.yaml"), SPEC);
  const compiled = await compile(join(dir, "spec.yaml"), {
    builtins: BUILTIN_STAGES,
    overrides: [`runtime.outputDir=${join(dir, "runs")}`],
  });
  const lines: string[] = [];
  const result = await runPipeline(compiled, {
    console: (l) => lines.push(l),
  });
  const read = (f: string) => Deno.readTextFile(join(result.runDir, f));
  const jsonl = async (f: string) =>
    (await read(f)).trim().split("\n").map((l) => JSON.parse(l));
  return { dir, runDir: result.runDir, lines, read, jsonl };
}

const run = runStates();

Deno.test("the report scores every model state side by side, each named, with per-class scores and a confusion matrix", async () => {
  const { lines, read } = await run;
  const report = JSON.parse(await read("report.json")) as ReportData;
  const states = report.states!;
  assert.deepEqual(states.map((s) => `${s.id}@${s.split}`), [
    "trained-best@test",
    "trained-last@test",
    "ttau-orig@test",
    "ttau-aug@test",
    "ttda-final@test",
    "trained-best@validation",
    "trained-last@validation",
    "ttda-final@validation",
  ]);
  const summary = JSON.parse(await read("summary.json"));
  const ttau = JSON.parse(await read("ttau.json"));
  const ttda = (await read("ttda_metrics.jsonl")).trim().split("\n").map((
    l,
  ) => JSON.parse(l));
  const at = (id: string, split = "test") =>
    states.find((s) => s.id === id && s.split === split)!;
  // Each state's numbers are those of the stage that produced it.
  assert.ok(
    Math.abs(at("trained-best").accuracy - summary.test.accuracy) < 1e-9,
  );
  assert.ok(
    Math.abs(
      at("trained-best", "validation").accuracy - summary.validation.accuracy,
    ) < 1e-9,
  );
  assert.ok(Math.abs(at("ttau-aug").accuracy - ttau.aug.accuracy) < 1e-9);
  assert.ok(Math.abs(at("ttau-orig").accuracy - ttau.orig.accuracy) < 1e-9);
  assert.ok(
    Math.abs(at("ttda-final").accuracy - ttda[ttda.length - 1].accuracy) <
      1e-9,
  );
  assert.ok(
    Math.abs(at("ttda-final").loss! - ttda[ttda.length - 1].evalLoss) < 1e-4,
  );
  assert.equal(
    at("ttda-final", "validation").note,
    "adapted on test, scored on validation",
  );
  assert.equal(at("ttau-aug").label, "TTAu Aug (3 views merged, logits)");
  assert.equal(report.evaluation.state, "trained-best");
  for (const s of states) {
    assert.equal(s.perClass.length, CLASSES.length);
    assert.equal(s.confusion.flat().reduce((a, b) => a + b, 0), s.examples);
    const diagonal = s.confusion.reduce((a, row, i) => a + row[i], 0);
    assert.equal(s.accuracy, diagonal / s.examples);
  }

  // report.md: the side-by-side table, a per-class table and a confusion
  // matrix per state, and every accuracy line names its state.
  const md = await read("report.md");
  assert.match(md, /## Model states, side by side/);
  for (const s of states) {
    assert.ok(
      md.includes(
        `| ${s.note ? `${s.label} (${s.note})` : s.label} | ${s.split} |`,
      ),
      s.label,
    );
    assert.ok(
      md.includes(`## Per-class metrics, ${s.label} on \`${s.split}\``),
    );
    assert.ok(md.includes(`## Confusion matrix, ${s.label} on \`${s.split}\``));
  }
  for (
    const l of md.split("\n").filter((l) => /^- (accuracy|macro-F1)/.test(l))
  ) {
    assert.match(l, /, trained, best \(epoch \d\):/, l);
  }
  const html = await read("report.html");
  assert.equal(
    html.match(/<svg /g)?.length,
    states.length + 2,
    "a confusion matrix per state and two learning curves",
  );
  // The console: one accuracy line per state, each naming it.
  const accuracyLines = lines.filter((l) => /\[report\].*accuracy/.test(l));
  assert.equal(accuracyLines.length, states.length);
  for (const s of states) {
    assert.ok(
      accuracyLines.some((l) =>
        l.includes(
          `${s.split} accuracy of ${s.label}${s.note ? ` (${s.note})` : ""}:`,
        )
      ),
      s.label,
    );
  }
});

Deno.test("predictions/<split>.<state>.csv rows agree with deno task predict on the same clips", async () => {
  const { runDir, read } = await run;
  const report = JSON.parse(await read("report.json")) as ReportData;
  const best = report.states!.find((s) =>
    s.id === "trained-best" && s.split === "test"
  )!;
  assert.equal(best.predictions, "predictions/test.trained-best.csv");
  const [head, ...rows] = (await read(best.predictions)).trim().split("\n");
  assert.equal(head, "path,label,predicted,correct,top1,p1,top2,p2,top3,p3");
  assert.equal(rows.length, 6);
  const cells = rows.map((r) => r.split(","));
  for (const c of cells) {
    assert.ok(c[0].endsWith(".wav") && c[0].startsWith("/"), c[0]);
    assert.equal(c[1], c[0].split("/").at(-2), "the label is the clip's class");
    assert.equal(c[2], c[4], "predicted is top 1");
    assert.equal(c[3], c[1] === c[2] ? "1" : "0");
  }
  // Every state has its file, one row per clip, same clips in the same order.
  for (const s of report.states!) {
    const other = (await read(s.predictions)).trim().split("\n").slice(1);
    if (s.split === "test") {
      assert.deepEqual(
        other.map((r) => r.split(",")[0]),
        cells.map((c) => c[0]),
      );
    }
  }
  for (const which of ["best", "last"]) {
    const csv = (await read(`predictions/test.trained-${which}.csv`)).trim()
      .split("\n").slice(1).map((r) => r.split(","));
    await agrees(runDir, which, csv);
  }
});

/** `deno task predict --which <which>` on the rows' files gives the rows' top 3. */
async function agrees(runDir: string, which: string, cells: string[][]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-env=LOG_TOKENS,LOG_STREAM",
      join(ROOT, "_tools", "predict.ts"),
      "--backend",
      "cpu",
      "--json",
      "--which",
      which,
      "--model",
      runDir,
      ...cells.map((c) => c[0]),
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const predicted = JSON.parse(new TextDecoder().decode(out.stdout)).results;
  assert.equal(predicted.length, cells.length);
  cells.forEach((c, i) => {
    const r = predicted[i];
    assert.equal(r.file, c[0]);
    for (let k = 0; k < 3; k++) {
      assert.equal(r.top[k].label, c[4 + 2 * k], `${c[0]} top ${k + 1}`);
      assert.ok(
        Math.abs(r.top[k].probability - Number(c[5 + 2 * k])) < 1e-4,
        `${which}: ${c[0]} p${k + 1}: ${r.top[k].probability} vs ${
          c[5 + 2 * k]
        }`,
      );
    }
  });
}

Deno.test("metrics.jsonl, the log, summary.json, ttda_metrics.jsonl and the report count epochs from 1", async () => {
  const { read, jsonl } = await run;
  const metrics = await jsonl("metrics.jsonl");
  assert.deepEqual(metrics.map((m) => m.epoch), [1, 1, 2, 2]);
  const summary = JSON.parse(await read("summary.json"));
  // bestEpoch is the metrics.jsonl epoch with the best validation accuracy
  // (ties go to the later epoch).
  const validation = metrics.filter((m) => m.split === "validation");
  const top = Math.max(...validation.map((m) => m.accuracy));
  assert.equal(
    summary.bestEpoch,
    validation.filter((m) => m.accuracy === top).at(-1).epoch,
  );
  const log = await jsonl("log.jsonl");
  // The report says how many clips it scored: each state it scored itself
  // (best, last unless the same weights, TTDA final; not TTAu's) on test and
  // validation, every clip once.
  const reported = JSON.parse(await read("report.json")) as ReportData;
  const own = reported.states!.filter((s) =>
    ["trained-best", "trained-last", "ttda-final"].includes(s.id) &&
    s.note !== "the same weights as best"
  );
  const scoredLine = log.map((l) => String(l.msg ?? l.message ?? "")).find((
    m,
  ) => /^report: scored \d/.test(m));
  const scored =
    /^report: scored (\d+) model states? on test, validation: (\d+) clips in [\d.]+ s \([\d.]+ clips\/s; [\d.]+ s of it waiting for checkpoints\)$/
      .exec(scoredLine ?? "");
  assert.ok(scored, `no report line: ${scoredLine}`);
  assert.equal(Number(scored[1]), own.length / 2);
  assert.equal(
    Number(scored[2]),
    own.reduce((n, s) => n + s.examples, 0),
  );
  const trainEpochs = log.map((l) =>
    /^epoch (\d+)\/2:/.exec(String(l.msg ?? l.message ?? ""))?.[1]
  ).filter((e) => e !== undefined).map(Number);
  assert.deepEqual(trainEpochs, [1, 2]);
  const ttdaEpochs = log.map((l) =>
    /^TTDA epoch (\d+)\/2:/.exec(String(l.msg ?? l.message ?? ""))?.[1]
  ).filter((e) => e !== undefined).map(Number);
  assert.deepEqual(ttdaEpochs, [1, 2]);
  assert.deepEqual((await jsonl("ttda_metrics.jsonl")).map((m) => m.epoch), [
    1,
    2,
  ]);
  const report = JSON.parse(await read("report.json")) as ReportData;
  assert.deepEqual(
    [...new Set(report.curves.map((c) => c.epoch))],
    [1, 2],
  );
  const state = (id: string) =>
    report.states!.find((s) => s.id === id && s.split === "test")!;
  assert.equal(state("trained-best").epoch, summary.bestEpoch);
  assert.equal(state("trained-last").epoch, 2);
  assert.equal(state("ttda-final").epoch, 2);
  const md = await read("report.md");
  assert.match(md, /^\| 1 \| [\d.]+ \|/m, "learning curves from epoch 1");
  assert.match(md, /^\| 2 \| [\d.]+ \|/m);
  assert.doesNotMatch(md, /^\| 0 \| [\d.]+ \|/m);
});
