import assert from "node:assert/strict";
import { join } from "node:path";
import { DescribeDataOptions, minMedianMax, stage } from "./describe_data.ts";
import type { Batch, BatchOptions, StepContext } from "../pipeline/types.ts";

Deno.test("minMedianMax returns zeros for an empty list", () => {
  assert.deepEqual(minMedianMax([]), { min: 0, median: 0, max: 0 });
});

Deno.test("minMedianMax takes the middle value of an odd count", () => {
  assert.deepEqual(minMedianMax([5]), { min: 5, median: 5, max: 5 });
  assert.deepEqual(minMedianMax([9, 1, 4, 10, 2]), {
    min: 1,
    median: 4,
    max: 10,
  });
});

Deno.test("minMedianMax averages the middle two of an even count", () => {
  assert.deepEqual(minMedianMax([3, 1, 2, 10]), {
    min: 1,
    median: 2.5,
    max: 10,
  });
  assert.deepEqual(minMedianMax([-1, 100]), {
    min: -1,
    median: 49.5,
    max: 100,
  });
});

Deno.test("minMedianMax sorts numerically and leaves its input alone", () => {
  const values = [10, 9, 100, 1];
  assert.deepEqual(minMedianMax(values), { min: 1, median: 9.5, max: 100 });
  assert.deepEqual(values, [10, 9, 100, 1]);
});

const wave = (n: number) => new Float32Array(n);

/** Hand-made batches per split. */
const batchesBySplit: Record<string, Batch[]> = {
  train: [
    {
      size: 3,
      split: "train",
      phase: "eval",
      label: [0, 1, 0],
      sampleRate: [16000, 16000, 8000],
      waveform: [wave(16000), wave(8000), wave(4000)], // 1 s, 0.5 s, 0.5 s
    },
    {
      size: 2,
      split: "train",
      phase: "eval",
      label: [2, 0],
      sampleRate: [16000, 16000],
      waveform: [wave(24000), wave(32000)], // 1.5 s, 2 s
    },
  ],
  test: [
    {
      size: 2,
      split: "test",
      phase: "eval",
      label: [1, 1],
      sampleRate: [8000, 8000],
      channels: [[wave(8000), wave(8000)], [wave(4000)]], // 1 s, 0.5 s
    },
  ],
};

function fakeContext(runDir: string) {
  const calls: { split: string; options: BatchOptions }[] = [];
  const ticks: number[] = [];
  const bars: string[] = [];
  const infos: string[] = [];
  const noop = () => {};
  const log = {
    info: (m: string) => void infos.push(m),
    warn: noop,
    error: noop,
    debug: noop,
    event: noop,
    withStage: () => log,
  };
  const ctx = {
    stageName: "describe_data",
    runDir,
    values: {},
    log,
    signal: new AbortController().signal,
    progress: ({ label, total }: { label: string; total?: number }) => {
      bars.push(`${label} ${total}`);
      return {
        tick(n = 1) {
          ticks.push(n);
        },
        done() {
          bars.push(`${label} done`);
        },
      };
    },
    data: {
      classes: ["a", "b", "c"],
      splits: { train: 5, test: 2 },
      info: {},
      async *batches(split: string, options: BatchOptions) {
        calls.push({ split, options });
        yield* batchesBySplit[split];
      },
    },
  } as unknown as StepContext;
  return { ctx, calls, ticks, bars, infos };
}

const expectedSummary = {
  train: {
    clips: 5,
    perClass: { a: 3, b: 1, c: 1 },
    sampleRatesHz: [8000, 16000],
    channels: [],
    durationSeconds: { min: 0.5, median: 1, max: 2 },
  },
  test: {
    clips: 2,
    perClass: { a: 0, b: 2, c: 0 },
    sampleRatesHz: [8000],
    channels: [1, 2],
    durationSeconds: { min: 0.5, median: 0.75, max: 1 },
  },
};

Deno.test("describe_data run counts clips per class, rates and durations", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const { ctx, calls, ticks, bars, infos } = fakeContext(dir);
    const result = await stage.run(DescribeDataOptions.parse({}), ctx);
    assert.deepEqual(result, { dataSummary: expectedSummary });
    assert.deepEqual(calls, [
      {
        split: "train",
        options: { batchSize: 64, phase: "eval", shuffle: false },
      },
      {
        split: "test",
        options: { batchSize: 64, phase: "eval", shuffle: false },
      },
    ]);
    assert.deepEqual(ticks, [3, 2, 2]);
    assert.deepEqual(bars, [
      "describe train 5",
      "describe train done",
      "describe test 2",
      "describe test done",
    ]);
    assert.deepEqual(infos, [
      "train: 5 clips, rates 8000/16000 Hz, duration 0.500/1.000/2.000 s (min/median/max)",
      "test: 2 clips, rates 8000 Hz, duration 0.500/0.750/1.000 s (min/median/max)",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("describe_data run writes data_summary.json with classes and splits", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const { ctx } = fakeContext(dir);
    await stage.run(DescribeDataOptions.parse({}), ctx);
    const text = await Deno.readTextFile(join(dir, "data_summary.json"));
    assert.ok(text.endsWith("}\n"));
    assert.deepEqual(JSON.parse(text), {
      classes: ["a", "b", "c"],
      splits: expectedSummary,
    });
    const names: string[] = [];
    for await (const e of Deno.readDir(dir)) names.push(e.name);
    assert.deepEqual(names, ["data_summary.json"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("describe_data run reads only the chosen splits with the chosen batch size", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const { ctx, calls } = fakeContext(dir);
    const options = DescribeDataOptions.parse({
      splits: ["test"],
      batchSize: 8,
    });
    const result = await stage.run(options, ctx);
    assert.deepEqual(result, { dataSummary: { test: expectedSummary.test } });
    assert.deepEqual(calls, [
      {
        split: "test",
        options: { batchSize: 8, phase: "eval", shuffle: false },
      },
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("describe_data run stops with the abort reason when cancelled", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const { ctx } = fakeContext(dir);
    const controller = new AbortController();
    const reason = new Error("cancelled");
    controller.abort(reason);
    await assert.rejects(
      () =>
        stage.run(DescribeDataOptions.parse({}), {
          ...ctx,
          signal: controller.signal,
        }),
      (e: unknown) => e === reason,
    );
    const names: string[] = [];
    for await (const e of Deno.readDir(dir)) names.push(e.name);
    assert.deepEqual(names, [], "no summary is written when cancelled");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("DescribeDataOptions rejects unknown keys and bad values", () => {
  assert.deepEqual(DescribeDataOptions.parse({}), { batchSize: 64 });
  assert.equal(DescribeDataOptions.safeParse({ batch: 2 }).success, false);
  assert.equal(DescribeDataOptions.safeParse({ batchSize: 0 }).success, false);
  assert.equal(DescribeDataOptions.safeParse({ splits: [] }).success, false);
});
