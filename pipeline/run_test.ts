import assert from "node:assert/strict";
import { join } from "node:path";
import * as z from "zod";
import * as tf from "@tensorflow/tfjs";
import { compile } from "./compile.ts";
import { defineStage } from "./define_stage.ts";
import { createRunDir, runPipeline, StageError } from "./run.ts";
import type { Batch, Stage } from "./types.ts";
import { BUILTIN_STAGES } from "../stages/mod.ts";

const spec = (outputDir: string, extra = "") =>
  `name: t
runtime: { backend: cpu, seed: 3, outputDir: ${JSON.stringify(outputDir)} }
data:
  layout: synthetic
  perClass: { train: 4, validation: 1, test: 2 }
  durationJitter: 0.3
  channels: 2
stages:
  - use: load
  - use: mono_mix
${extra}`;

/** A map stage that makes tensors and draws from its rng: checks tidy and seeding. */
const noisy = defineStage({
  id: "noisy",
  version: "1.0.0",
  api: 1,
  kind: "map",
  summary: "Add a tensor of seeded noise",
  phases: ["fit"],
  options: z.strictObject({}),
  takes: ["waveform"],
  provides: ["noise"],
  apply(batch, _o, ctx) {
    const r = ctx.rng.next();
    const scratch = ctx.tf.ones([4, 4]).mul(2); // dropped: must be disposed by tidy
    void scratch;
    return { ...batch, noise: ctx.tf.fill([batch.size], r) };
  },
});

/** A step stage that records batches in fit and eval phase. */
const recorder = defineStage({
  id: "recorder",
  version: "1.0.0",
  api: 1,
  kind: "step",
  summary: "Record batch orders and noise",
  options: z.strictObject({}),
  takes: ["waveform"],
  provides: ["record"],
  async run(_o, ctx) {
    const record: Record<string, unknown[]> = {};
    for (
      const [key, phase, epoch] of [["fit0", "fit", 0], ["fit0b", "fit", 0], [
        "fit1",
        "fit",
        1,
      ], ["eval", "eval", 0]] as const
    ) {
      const rows: unknown[] = [];
      for await (
        const b of ctx.data.batches("train", { batchSize: 3, phase, epoch })
      ) {
        const noise = b.noise
          ? Array.from(await (b.noise as tf.Tensor).data())
          : null;
        rows.push({ paths: b.path, size: b.size, noise });
      }
      record[key] = rows;
    }
    return { record, tensorsAfter: ctx.tf.memory().numTensors };
  },
});

const failing = defineStage({
  id: "failing",
  version: "1.0.0",
  api: 1,
  kind: "step",
  summary: "Fail on purpose",
  options: z.strictObject({}),
  takes: [],
  provides: [],
  run: () => Promise.reject(new Error("the disk is full")),
});

const BUILTINS: Record<string, Stage> = {
  ...BUILTIN_STAGES,
  noisy,
  recorder,
  failing,
};

async function setup(extra: string) {
  const dir = await Deno.makeTempDir({ prefix: "run_test_" });
  await Deno.writeTextFile(
    join(dir, "spec.yaml"),
    spec(join(dir, "runs"), extra),
  );
  const compiled = await compile(join(dir, "spec.yaml"), {
    builtins: BUILTINS,
  });
  return { dir, compiled };
}

Deno.test("runPipeline writes plan.json, spec.yaml, manifest.json and log.jsonl", async () => {
  const { dir, compiled } = await setup("  - use: describe_data\n");
  const lines: string[] = [];
  const result = await runPipeline(compiled, { console: (l) => lines.push(l) });
  assert.ok(result.runDir.startsWith(join(dir, "runs", "t-")));
  const plan = JSON.parse(
    await Deno.readTextFile(join(result.runDir, "plan.json")),
  );
  assert.deepEqual(plan, JSON.parse(JSON.stringify(compiled.plan)));
  const yaml = await Deno.readTextFile(join(result.runDir, "spec.yaml"));
  assert.match(yaml, /seed: 3/);
  const manifest = JSON.parse(
    await Deno.readTextFile(join(result.runDir, "manifest.json")),
  );
  assert.equal(manifest.status, "ok");
  assert.equal(manifest.backend.name, "cpu");
  assert.equal(manifest.specHash, compiled.plan.specHash);
  assert.ok(manifest.timingsMs.describe_data >= 0);
  assert.ok(manifest.timingsMs.mono_mix >= 0);
  const events = (await Deno.readTextFile(join(result.runDir, "log.jsonl")))
    .trim().split("\n").map((l) => JSON.parse(l));
  const kinds = events.filter((e) => e.event).map((e) =>
    `${e.event}${e.stage ? `:${e.stage}` : ""}`
  );
  assert.deepEqual(kinds, [
    "run:start",
    "backend",
    "stage:start:load",
    "stage:end:load",
    "stage:start:describe_data",
    "stage:end:describe_data",
    "run:end",
  ]);
  const summary = JSON.parse(
    await Deno.readTextFile(join(result.runDir, "data_summary.json")),
  );
  assert.equal(summary.splits.train.clips, 12);
  assert.deepEqual(summary.splits.test.perClass, { low: 2, mid: 2, high: 2 });
  assert.ok(lines.some((l) => l.includes("backend cpu")));
});

Deno.test("runPipeline batches are seeded: same epoch same order, new epoch new order, eval unshuffled", async () => {
  const { compiled } = await setup("  - use: noisy\n  - use: recorder\n");
  const before = tf.memory().numTensors;
  const a = await runPipeline(compiled, {});
  const b = await runPipeline(compiled, {});
  const rec = a.values.record as Record<
    string,
    { paths: string[]; size: number; noise: number[] | null }[]
  >;
  assert.deepEqual(rec, b.values.record);
  const order = (k: string) => rec[k].flatMap((r) => r.paths);
  assert.deepEqual(order("fit0"), order("fit0b"));
  assert.notDeepEqual(order("fit0"), order("fit1"));
  assert.deepEqual([...order("fit0")].sort(), [...order("eval")].sort());
  assert.deepEqual(
    order("eval"),
    [...order("eval")].sort((x, y) => {
      const n = (p: string) =>
        Number(p.split("/").pop()) +
        100 * ["low", "mid", "high"].indexOf(p.split("/")[1]);
      return n(x) - n(y);
    }),
  );
  assert.deepEqual(rec.fit0.map((r) => r.size), [3, 3, 3, 3]);
  // The fit-only map stage ran in fit (seeded per batch) and not in eval.
  assert.ok(
    rec.fit0.every((r) => r.noise !== null && r.noise.length === r.size),
  );
  assert.ok(rec.eval.every((r) => r.noise === null));
  assert.notDeepEqual(rec.fit0[0].noise, rec.fit0[1].noise);
  // Every tensor made by map stages was released.
  assert.equal(tf.memory().numTensors, before);
  assert.equal(a.values.tensorsAfter, before);
});

Deno.test("runPipeline names the failed stage and keeps what was written", async () => {
  const { compiled } = await setup(
    "  - use: describe_data\n  - use: failing\n",
  );
  let error: unknown;
  try {
    await runPipeline(compiled, {});
  } catch (e) {
    error = e;
  }
  assert.ok(error instanceof StageError);
  assert.equal(error.stage, "failing");
  assert.equal(
    error.message,
    'Cannot finish stage "failing": the disk is full',
  );
  const dir = error.runDir;
  const manifest = JSON.parse(
    await Deno.readTextFile(join(dir, "manifest.json")),
  );
  assert.equal(manifest.status, "failed");
  assert.equal(manifest.failedStage, "failing");
  assert.equal(manifest.error, error.message);
  // Outputs of earlier stages are intact.
  const summary = JSON.parse(
    await Deno.readTextFile(join(dir, "data_summary.json")),
  );
  assert.equal(summary.splits.train.clips, 12);
  const last = (await Deno.readTextFile(join(dir, "log.jsonl"))).trim().split(
    "\n",
  ).map((l) => JSON.parse(l));
  assert.ok(
    last.some((e) => e.level === "error" && e.message === error.message),
  );
  assert.deepEqual(last.at(-1), {
    ...last.at(-1),
    event: "run:end",
    status: "failed",
    stage: "failing",
  });
  for (const entry of Deno.readDirSync(dir)) {
    assert.ok(!entry.name.endsWith(".tmp"));
  }
});

Deno.test("createRunDir never reuses a folder", async () => {
  const dir = await Deno.makeTempDir();
  const now = new Date(Date.UTC(2026, 0, 2, 3, 4, 5));
  const a = await createRunDir(dir, "x", now);
  const b = await createRunDir(dir, "x", now);
  assert.equal(a, join(dir, "x-20260102-030405"));
  assert.equal(b, join(dir, "x-20260102-030405-2"));
});

Deno.test("data access rejects unknown splits with the splits it has", async () => {
  const bad = defineStage({
    id: "bad_split",
    version: "1.0.0",
    api: 1,
    kind: "step",
    summary: "Read a split that does not exist",
    options: z.strictObject({}),
    takes: [],
    provides: [],
    async run(_o, ctx) {
      for await (
        const _ of ctx.data.batches("dev", { batchSize: 2, phase: "eval" })
      ) { /* none */ }
      return {};
    },
  });
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(
    join(dir, "spec.yaml"),
    spec(join(dir, "runs"), "  - use: bad_split\n"),
  );
  const compiled = await compile(join(dir, "spec.yaml"), {
    builtins: { ...BUILTINS, bad_split: bad },
  });
  await assert.rejects(
    runPipeline(compiled, {}),
    (e: Error) =>
      e.message ===
        'Cannot finish stage "bad_split": Cannot read split "dev": the dataset has splits "train", "validation", "test"',
  );
  void ({} as Batch);
});
