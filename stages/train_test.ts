import assert from "node:assert/strict";
import { join } from "node:path";
import { runPipeline } from "../pipeline/mod.ts";
import { runInterruptedAfterEpoch1, setupTinyTrain } from "./train_testing.ts";
import { loadCheckpoint } from "../model/checkpoint.ts";
import * as tf from "@tensorflow/tfjs";
import { gpuTests } from "../gpu/testing.ts";

const setup = (overrides: string[] = []) => setupTinyTrain(overrides);

async function params(runDir: string, name: string) {
  const c = await loadCheckpoint(tf, join(runDir, "checkpoints"), name);
  const out: Record<string, number[]> = {};
  for (const [k, t] of c.groups.params) out[k] = Array.from(await t.data());
  const momentumBuffers = c.groups.optimizer?.size ?? 0;
  tf.dispose(Object.values(c.groups).flatMap((g) => [...g.values()]));
  return { meta: c.meta, values: out, momentumBuffers };
}

Deno.test("train writes metrics.jsonl, summary.json and best/last checkpoints, without leaking tensors", async () => {
  await tf.setBackend("cpu");
  const { compiled } = await setup(["train.epochs=3", "train.lrCardinality=3"]);
  const result = await runPipeline(compiled, {});
  const lines = (await Deno.readTextFile(join(result.runDir, "metrics.jsonl")))
    .trim().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(lines.map((l) => [l.epoch, l.split]), [
    [1, "train"],
    [1, "validation"],
    [2, "train"],
    [2, "validation"],
    [3, "train"],
    [3, "validation"],
  ]);
  for (const l of lines) {
    assert.ok(Number.isFinite(l.loss) && l.accuracy >= 0 && l.accuracy <= 1);
  }
  const train = lines.filter((l) => l.split === "train");
  assert.equal(
    train[0].tensorsAtStart,
    train[1].tensorsAtStart,
    "tensor count grew between epochs",
  );
  // Epoch 2 (the first with momentum on) adds exactly the SGD momentum buffers
  // (one per parameter that gets a gradient; the unused FFN norm gets none).
  const last = await params(result.runDir, "last");
  assert.equal(
    train[2].tensorsAtStart - train[1].tensorsAtStart,
    last.momentumBuffers,
  );
  assert.ok(
    last.momentumBuffers > 0 &&
      last.momentumBuffers <= Object.keys(last.values).length,
  );
  assert.equal(train[0].lr, 0.05);
  const summary = JSON.parse(
    await Deno.readTextFile(join(result.runDir, "summary.json")),
  );
  for (const split of ["train", "validation", "test"]) {
    assert.ok(
      summary[split].accuracy >= 0 && summary[split].accuracy <= 1,
      split,
    );
  }
  assert.ok(summary.parameters > 1000);
  for (const f of ["best.json", "best.bin", "last.json", "last.bin"]) {
    await Deno.stat(join(result.runDir, "checkpoints", f));
  }
  assert.equal(last.meta.epoch, 2);
  assert.equal(last.meta.rngState?.length, 4);
  assert.equal(last.meta.specHash, compiled.plan.specHash);
});

Deno.test("train --resume after an interruption ends with the same weights as an uninterrupted run", async () => {
  const a = await setup();
  const full = await runPipeline(a.compiled, {});
  const b = await setup();
  const runDir = await runInterruptedAfterEpoch1(b.compiled);
  const partial = await params(runDir, "last");
  assert.equal(
    partial.meta.epoch,
    0,
    "the interrupted run kept epoch 1's checkpoint",
  );
  await runPipeline(b.compiled, { resume: runDir });
  const resumed = await params(runDir, "last");
  const uninterrupted = await params(full.runDir, "last");
  assert.equal(resumed.meta.epoch, 1);
  assert.deepEqual(resumed.values, uninterrupted.values);
  const metrics = (await Deno.readTextFile(join(runDir, "metrics.jsonl")))
    .trim().split("\n");
  assert.equal(metrics.length, 4);
});

/**
 * Runs `fn` with `Deno.open` of the train stage's `last.bin` temp files
 * going through `hook` (given the 1-based count of such opens).
 */
async function withLastBinOpens<T>(
  hook: (n: number) => Promise<void>,
  fn: () => Promise<T>,
): Promise<T> {
  const open = Deno.open;
  let n = 0;
  Deno.open = (async (path: string | URL, options?: Deno.OpenOptions) => {
    if (/[\\/]\.last\.bin\.[0-9a-f]{8}\.tmp$/.test(String(path))) {
      await hook(++n);
    }
    return open(path, options);
  }) as typeof Deno.open;
  try {
    return await fn();
  } finally {
    Deno.open = open;
  }
}

Deno.test("train saves each epoch's checkpoint in the background: best links last's data, checkpointSeconds recorded, both load", async () => {
  await tf.setBackend("cpu");
  const { compiled } = await setup(["train.epochs=3", "train.lrCardinality=3"]);
  const result = await runPipeline(compiled, {});
  const dir = join(result.runDir, "checkpoints");
  const lines = (await Deno.readTextFile(join(result.runDir, "metrics.jsonl")))
    .trim().split("\n").map((l) => JSON.parse(l));
  const train = lines.filter((l) => l.split === "train");
  assert.equal(train.length, 3);
  for (const l of train) {
    assert.ok(l.checkpointSeconds > 0, JSON.stringify(l));
  }
  for (const l of lines.filter((l) => l.split !== "train")) {
    assert.equal(l.checkpointSeconds, undefined);
  }
  // The last checkpoint's own history has the earlier epochs' save times.
  const last = await params(result.runDir, "last");
  const history = last.meta.history as {
    split: string;
    checkpointSeconds?: number;
  }[];
  assert.deepEqual(
    history.filter((l) => l.split === "train").map((l) =>
      l.checkpointSeconds !== undefined
    ),
    [true, true, false],
  );
  const summary = JSON.parse(
    await Deno.readTextFile(join(result.runDir, "summary.json")),
  );
  const best = await params(result.runDir, "best");
  assert.equal(best.meta.epoch + 1, summary.bestEpoch);
  const bestIndex = JSON.parse(await Deno.readTextFile(join(dir, "best.json")));
  assert.equal(bestIndex.data.file, "best.bin");
  if (Deno.build.os !== "windows" && summary.bestEpoch === 3) {
    const [a, b] = await Promise.all([
      Deno.stat(join(dir, "best.bin")),
      Deno.stat(join(dir, "last.bin")),
    ]);
    assert.equal(a.ino, b.ino, "best.bin is a hard link to last.bin");
  }
  if (summary.bestEpoch === 3) assert.deepEqual(best.values, last.values);
  else assert.notDeepEqual(best.values, last.values);
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  assert.deepEqual(names.sort(), [
    "best.bin",
    "best.json",
    "last.bin",
    "last.json",
  ]);
});

Deno.test("train stops with the error of a failed background save, naming the file", async () => {
  await tf.setBackend("cpu");
  const { dir, compiled } = await setup([
    "train.epochs=3",
    "train.lrCardinality=3",
  ]);
  const console: string[] = [];
  await withLastBinOpens(
    (n) =>
      n === 2
        ? Promise.reject(new Deno.errors.PermissionDenied("disk says no"))
        : Promise.resolve(),
    () =>
      assert.rejects(
        runPipeline(compiled, { console: (line) => console.push(line) }),
        (e: Error) => {
          assert.match(
            e.message,
            /^Cannot finish stage "train": Cannot save the checkpoint of epoch 2 to .*[\\/]checkpoints[\\/]last: disk says no; the checkpoint before it is kept: free disk space or fix the folder, then resume the run with --resume$/,
          );
          return true;
        },
      ),
  );
  const runs: string[] = [];
  for await (const e of Deno.readDir(join(dir, "runs"))) {
    runs.push(join(dir, "runs", e.name));
  }
  assert.equal(runs.length, 1);
  const last = await params(runs[0], "last");
  assert.equal(last.meta.epoch, 0, "epoch 1's checkpoint is kept");
  const metrics = (await Deno.readTextFile(join(runs[0], "metrics.jsonl")))
    .trim().split("\n");
  assert.equal(metrics.length, 2);
  // The run stopped during epoch 3 at the latest: it never finished.
  assert.ok(!console.some((l) => l.includes("epoch 3/3:")));
  assert.equal(
    console.filter((l) => l.includes("Cannot save the checkpoint")).length,
    1,
    `the error is printed once:\n${console.join("\n")}`,
  );
});

Deno.test("an interrupt while the epoch's checkpoint is still being written waits for it; the resume matches an uninterrupted run", async () => {
  await tf.setBackend("cpu");
  const a = await setup();
  const full = await runPipeline(a.compiled, {});
  const b = await setup();
  let runDir = "";
  await withLastBinOpens(
    // The first save takes 300 ms longer: the interrupt comes while it runs.
    (n) => n === 1 ? new Promise((r) => setTimeout(r, 300)) : Promise.resolve(),
    async () => {
      runDir = await runInterruptedAfterEpoch1(b.compiled);
    },
  );
  const partial = await params(runDir, "last");
  assert.equal(partial.meta.epoch, 0);
  const metrics = (await Deno.readTextFile(join(runDir, "metrics.jsonl")))
    .trim().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(metrics.map((m) => [m.epoch, m.split]), [
    [1, "train"],
    [1, "validation"],
  ]);
  assert.ok(metrics[0].checkpointSeconds >= 0.3);
  await runPipeline(b.compiled, { resume: runDir });
  const resumed = await params(runDir, "last");
  const uninterrupted = await params(full.runDir, "last");
  assert.equal(resumed.meta.epoch, 1);
  assert.deepEqual(resumed.values, uninterrupted.values);
});

Deno.test("train refuses to resume with another spec, saying which key differs", async () => {
  const a = await setup();
  const done = await runPipeline(a.compiled, {});
  const other = await setup(["train.lr=0.01"]);
  await assert.rejects(
    runPipeline(other.compiled, { resume: done.runDir }),
    /in 1 key a resume may not change:\n {2}stages\.train\.with\.lr: [0-9.e-]+ in the run, 0\.01 now/,
  );
});

Deno.test("train stops on a non-finite loss, naming the epoch and step", async () => {
  const { compiled } = await setup(["train.lr=1e12", "train.readEvery=1"]);
  await assert.rejects(
    runPipeline(compiled, {}),
    /Cannot continue training: the loss is (NaN|Infinity|-Infinity) at epoch 1, step \d+; no checkpoint exists yet \(the first is written when epoch 1 ends\)/,
  );
});

Deno.test("train with engine: fused on the cpu backend is refused, naming the backend", async () => {
  const { compiled } = await setup(["train.engine=fused"]);
  await assert.rejects(
    runPipeline(compiled, {}),
    /Cannot train with engine "fused": it needs the webgpu backend, and this run uses "cpu"/,
  );
});

Deno.test({
  name:
    "train with the fused WebGPU engine learns like the tfjs engine: same first-epoch loss, checkpoints, evaluation",
  ignore: !gpuTests,
  async fn() {
    // Evaluation batches of 3 clips divide every split (24, 9, 9 clips), so
    // the fused engine builds one eval graph instead of one per split size
    // (fewer kernels for LLVM to compile on llvmpipe).
    const common = [
      "train.epochs=1",
      "train.model.dropout=0",
      "train.evalBatchSize=3",
    ];
    const ref = await setup(common);
    const tfjsRun = await runPipeline(ref.compiled, {});
    const fused = await setup([
      ...common,
      "runtime.backend=webgpu",
      "train.engine=fused",
    ]);
    try {
      const run = await runPipeline(fused.compiled, {});
      const read = async (dir: string) =>
        (await Deno.readTextFile(join(dir, "metrics.jsonl"))).trim().split(
          "\n",
        ).map((l) => JSON.parse(l));
      const [a, b] = [await read(tfjsRun.runDir), await read(run.runDir)];
      assert.deepEqual(b.map((l) => l.split), a.map((l) => l.split));
      // Same data and initial weights; features come from another STFT path
      // on WebGPU and sums run in another order, so allow float32 drift.
      assert.ok(
        Math.abs(b[0].loss - a[0].loss) <= 1e-3 * Math.abs(a[0].loss),
        `train loss ${b[0].loss} (fused) vs ${a[0].loss} (tfjs)`,
      );
      assert.ok(
        Math.abs(b[1].loss - a[1].loss) <= 1e-2 * Math.abs(a[1].loss),
        `validation loss ${b[1].loss} (fused) vs ${a[1].loss} (tfjs)`,
      );
      const last = await params(run.runDir, "last");
      assert.equal(last.meta.epoch, 0);
      // The final evaluation reloads the best (here: the only) epoch's
      // weights from the checkpoint into the engine: it must reproduce that
      // epoch's validation figures.
      const summary = JSON.parse(
        await Deno.readTextFile(join(run.runDir, "summary.json")),
      );
      assert.ok(
        Math.abs(summary.validation.loss - b[1].loss) <=
          1e-5 * Math.abs(b[1].loss),
        `final validation loss ${summary.validation.loss} vs epoch ${
          b[1].loss
        }`,
      );
      assert.equal(summary.validation.accuracy, b[1].accuracy);
      assert.ok(summary.test.accuracy >= 0 && summary.test.accuracy <= 1);
    } finally {
      await tf.setBackend("cpu");
    }
  },
});

Deno.test({
  name:
    "fused engine: an epoch's record is written during the next epoch's first steps, from the epoch's own weights; an interrupt before that still writes it",
  ignore: !gpuTests,
  async fn() {
    const fusedSets = [
      "runtime.backend=webgpu",
      "train.engine=fused",
      "train.evalBatchSize=3",
    ];
    try {
      const a = await setup(fusedSets);
      const full = await runPipeline(a.compiled, {});
      const metrics = (await Deno.readTextFile(
        join(full.runDir, "metrics.jsonl"),
      )).trim().split("\n").map((l) => JSON.parse(l));
      const trainLines = metrics.filter((m) => m.split === "train");
      // Epoch 1's host copy ran during epoch 2; the last epoch's at its end.
      assert.equal(typeof trainLines[0].syncLaterSeconds, "number");
      assert.equal(trainLines[1].syncLaterSeconds, undefined);
      // Each validation says where its time went: waiting for batches,
      // enqueuing, readbacks, which partition its seconds.
      for (const m of metrics.filter((m) => m.split === "validation")) {
        const parts = [m.dataSeconds, m.enqueueSeconds, m.readSeconds];
        assert.ok(parts.every((x) => x >= 0), JSON.stringify(m));
        assert.ok(
          Math.abs(parts.reduce((a, b) => a + b, 0) - m.seconds) < 1e-3,
          JSON.stringify(m),
        );
      }
      // Stopped at epoch 2's first step boundary, before its steps: the
      // pending record of epoch 1 is written on the way out, and the resume
      // from it ends with the uninterrupted run's weights.
      const b = await setup(fusedSets);
      const runDir = await runInterruptedAfterEpoch1(b.compiled);
      assert.equal((await params(runDir, "last")).meta.epoch, 0);
      await runPipeline(b.compiled, { resume: runDir });
      const resumed = await params(runDir, "last");
      const uninterrupted = await params(full.runDir, "last");
      assert.equal(resumed.meta.epoch, 1);
      assert.deepEqual(resumed.values, uninterrupted.values);
    } finally {
      await tf.setBackend("cpu");
    }
  },
});
