import assert from "node:assert/strict";
import { TINY_MODEL_ARGS } from "./tiny_model.ts";
import {
  type BarRecord,
  barsOfStage,
  benchE2e,
  E2E_PRESETS,
  evaluationsAfter,
  type LogRecord,
  reportRows,
  scorerTiming,
  stepBoundPlan,
  ttauRows,
} from "./e2e_bench.ts";

const at = (ms: number) => new Date(Date.UTC(2026, 0, 1) + ms).toISOString();
const t = (ms: number) => Date.UTC(2026, 0, 1) + ms;

const bars: BarRecord[] = [
  { label: "train epoch 1/2", total: 600, start: t(0), end: t(10_000) },
  { label: "train epoch 2/2", total: 600, start: t(12_500), end: t(20_000) },
  { label: "TTAu test", total: 120, start: t(30_000), end: t(31_000) },
  { label: "TTDA epoch 1/1", total: 120, start: t(40_000), end: t(44_000) },
];
const records: LogRecord[] = [
  { time: at(9_000), stage: "train", message: "engine: fused WebGPU graph" },
  { time: at(12_000), stage: "train", message: "epoch 1/2: train loss 3.1" },
  { time: at(21_500), stage: "train", message: "epoch 2/2: train loss 2.9" },
  { time: at(29_000), event: "stage:start", stage: "test_time_augmentation" },
  { time: at(32_000), event: "stage:end", stage: "test_time_augmentation" },
  {
    time: at(45_000),
    stage: "test_time_adaptation",
    message: "TTDA epoch 1/1: loss 1.0",
  },
];

Deno.test("evaluationsAfter: from each bar's end to the epoch's log line", () => {
  assert.deepEqual(
    evaluationsAfter(bars, records, /^train epoch/, "train", /^epoch \d+/, 120),
    [
      { epoch: 1, seconds: 2, clips: 120, clipsPerSecond: 60 },
      { epoch: 2, seconds: 1.5, clips: 120, clipsPerSecond: 80 },
    ],
  );
  assert.deepEqual(
    evaluationsAfter(
      bars,
      records,
      /^TTDA epoch/,
      "test_time_adaptation",
      /^TTDA epoch \d+/,
      120,
    ),
    [{ epoch: 1, seconds: 1, clips: 120, clipsPerSecond: 120 }],
  );
  // No log line after the bar (a failed run): no entry.
  assert.deepEqual(
    evaluationsAfter(bars, records.slice(0, 1), /^train/, "train", /^epoch/, 1),
    [],
  );
});

Deno.test("barsOfStage: the bars opened while a stage ran", () => {
  assert.deepEqual(
    barsOfStage(bars, records, "test_time_augmentation").map((b) => b.label),
    ["TTAu test"],
  );
  assert.deepEqual(barsOfStage(bars, records, "report"), []);
});

Deno.test("the e2e presets name their layouts", () => {
  assert.equal(E2E_PRESETS.sc1.layout, "speech_commands");
  assert.equal(E2E_PRESETS.sc1.synth.version, 1);
  assert.equal(E2E_PRESETS.cs.layout, "cochlscene");
  assert.equal(E2E_PRESETS.cs.synth.backgroundNoise, true);
});

Deno.test("bench e2e runs sc1 end to end on cpu with a tiny model and reports every phase", async () => {
  const dir = await Deno.makeTempDir({ prefix: "e2e_bench_" });
  try {
    const out = await benchE2e([
      "--preset",
      "sc1",
      "--backend",
      "cpu",
      "--train",
      "1",
      "--validation",
      "1",
      "--test",
      "1",
      "--seconds",
      "0.5",
      "--synth-dir",
      `${dir}/synth`,
      "--out",
      `${dir}/runs`,
      ...TINY_MODEL_ARGS,
    ]) as Record<string, unknown> & {
      phases: Record<string, unknown>;
      synth: { clips: Record<string, number>; reused: boolean };
    };
    assert.equal(out.backend, "cpu");
    assert.equal(out.failed, undefined);
    assert.deepEqual(out.splits, { train: 30, validation: 30, test: 30 });
    assert.deepEqual(out.synth.clips, { train: 30, validation: 30, test: 30 });
    const p = out.phases as {
      trainEpoch: { clips: number; seconds: number }[];
      validation: { clips: number }[];
      ttau: { clips: number };
      ttdaEpoch: { clips: number }[];
      ttdaEvaluation: { clips: number }[];
      report: { clips: number };
    };
    assert.equal(p.trainEpoch.length, 1);
    assert.equal(p.trainEpoch[0].clips, 30);
    assert.ok(p.trainEpoch[0].seconds > 0);
    const sync = (p.trainEpoch[0] as { syncSeconds?: number }).syncSeconds;
    assert.ok(
      sync !== undefined && sync >= 0 && sync < p.trainEpoch[0].seconds,
      `syncSeconds ${sync}`,
    );
    assert.equal(p.validation[0].clips, 30);
    assert.ok(p.ttau.clips >= 30);
    assert.equal(p.ttdaEpoch[0].clips, 30);
    assert.equal(p.ttdaEvaluation[0].clips, 30);
    assert.equal(p.report.clips, 30);
    assert.equal(out.stepBound, null);
    assert.match(String(out.stepBoundNote), /webgpu only/);
    assert.equal(out.gpuIdleFraction, null);
    assert.equal(out.compile, null);
    // Phase windows in seconds since the process started, in run order.
    const w = out.phaseWindows as {
      trainEpoch: [number, number][];
      ttau: [number, number];
      report: [number, number];
    };
    assert.equal(w.trainEpoch.length, 1);
    const [t0, t1] = w.trainEpoch[0];
    assert.ok(0 < t0 && t0 < t1 && t1 <= w.ttau[0], JSON.stringify(w));
    assert.ok(w.ttau[1] <= w.report[0], JSON.stringify(w));
    assert.ok(w.report[1] <= performance.now() / 1000, JSON.stringify(w));
    assert.ok(
      (out.overrides as string[]).includes(`data.root=${dir}/synth`),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ttauRows: one eval row per view of each clip, one per plain-pipeline pass", () => {
  const ttauBars: BarRecord[] = [
    { label: "TTAu model 1/1 (eval)", total: 65, start: t(0), end: t(100) },
    { label: "TTAu model 1/1", total: 65, start: t(100), end: t(400) },
  ];
  const line: LogRecord = {
    time: at(500),
    stage: "test_time_augmentation",
    message:
      "TTAu on test (65 clips, 1 model × 3 views, merge logits): Orig 90.00%",
  };
  assert.deepEqual(ttauRows(ttauBars, [line], 0.5), {
    rows: 65 + 3 * 65,
    rowsPerSecond: 520,
  });
  // One view: "view", not "views".
  assert.deepEqual(
    ttauRows(
      ttauBars.slice(1),
      [{
        ...line,
        message: "TTAu on test (65 clips, 2 models × 1 view, merge logits)",
      }],
      1,
    ),
    { rows: 65, rowsPerSecond: 65 },
  );
  // Without the summary line (a failed stage): no rows.
  assert.deepEqual(ttauRows(ttauBars, [], 1), {});
});

Deno.test("reportRows: the clips the report scored, from its line", () => {
  const line: LogRecord = {
    time: at(0),
    stage: "report",
    message:
      "report: scored 3 model states on test: 1800 clips in 2.40 s (750.0 clips/s; 0.31 s of it waiting for checkpoints)",
  };
  assert.deepEqual(reportRows([line], 4), {
    rows: 1800,
    rowsPerSecond: 450,
    scoringSeconds: 2.4,
    loadSeconds: 0.31,
  });
  // Another stage's line, or none: nothing.
  assert.deepEqual(reportRows([{ ...line, stage: "train" }], 4), {});
  assert.deepEqual(reportRows([], 4), {});
});

Deno.test("scorerTiming: the scorer's host times from a stage's line", () => {
  const line: LogRecord = {
    time: at(0),
    stage: "test_time_augmentation",
    message:
      "TTAu: scored 9 batches in 0.31 s (waiting for batches 0.02 s, enqueuing 0.01 s, readbacks 0.07 s), after 0.12 s of engine set-up",
  };
  assert.deepEqual(scorerTiming([line], "test_time_augmentation"), {
    scoredSeconds: 0.31,
    dataSeconds: 0.02,
    enqueueSeconds: 0.01,
    readSeconds: 0.07,
    setupSeconds: 0.12,
  });
  assert.deepEqual(scorerTiming([line], "report"), {});
  assert.deepEqual(
    scorerTiming([{ ...line, message: "TTAu: scored on x" }], line.stage!),
    {},
  );
});

Deno.test("stepBoundPlan: a stage's precision keeps the step bound and sets its precision; model changes rule it out", () => {
  assert.deepEqual(stepBoundPlan([]), {
    modelChanged: false,
    trainPrecision: "fp32",
    ttdaPrecision: "fp32",
  });
  assert.deepEqual(stepBoundPlan(["train.precision=mixed"]), {
    modelChanged: false,
    trainPrecision: "mixed",
    ttdaPrecision: "fp32",
  });
  assert.deepEqual(
    stepBoundPlan([
      "stages.train.with.precision=mixed",
      "test_time_adaptation.precision=mixed",
      "report.precision=mixed",
      "test_time_augmentation.precision=fp32",
      "train.epochs=2",
    ]),
    { modelChanged: false, trainPrecision: "mixed", ttdaPrecision: "mixed" },
  );
  // The last override wins, as the pipeline applies them in order.
  assert.equal(
    stepBoundPlan(["train.precision=mixed", "train.precision=fp32"])
      .trainPrecision,
    "fp32",
  );
  for (
    const set of [
      "train.model.depth=1",
      "train.batchSize=8",
      "mel.nMels=16",
      "tokenize.x=1",
    ]
  ) {
    assert.equal(
      stepBoundPlan(["train.precision=mixed", set]).modelChanged,
      true,
      set,
    );
  }
  assert.throws(
    () => stepBoundPlan(["train.precision=bf16"]),
    {
      message:
        "Cannot run bench e2e: --set train.precision=bf16 must be fp32 or mixed",
    },
  );
});
