/**
 * Tests of `bench fidelity`'s argument handling and aggregation (the runs
 * themselves are an experiment, not a unit test; nothing is timed).
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  benchFidelity,
  type FidelityRun,
  parseFidelityArgs,
  summariseFidelity,
} from "./fidelity_bench.ts";
import { TINY_MODEL_ARGS } from "./tiny_model.ts";
import { gpuTests } from "../gpu/testing.ts";

Deno.test("parseFidelityArgs: defaults, seed lists, and refusals naming the option", () => {
  const d = parseFidelityArgs([]);
  assert.equal(d.preset, "demo");
  assert.deepEqual(d.seeds, [1, 2, 3]);
  assert.equal(d.backend, "webgpu");
  assert.equal(d.epochs, undefined);
  assert.equal(d.full, false);
  assert.equal(d.tolerancePp, 1);
  const s = parseFidelityArgs([
    "--preset",
    "sc1",
    "--seeds",
    "7, 9",
    "--epochs",
    "2",
    "--set",
    "train.batchSize=8",
    "--train",
    "3",
    "--full",
  ]);
  assert.deepEqual(s.seeds, [7, 9]);
  assert.deepEqual(
    parseFidelityArgs(["--seeds", "2", "--first-seed", "10"]).seeds,
    [10, 11],
  );
  assert.equal(s.epochs, 2);
  assert.deepEqual(s.sets, ["train.batchSize=8"]);
  assert.equal(s.synth.train, 3);
  assert.equal(s.synth.validation, 4); // bench e2e's SC1 default
  assert.equal(s.full, true);
  const refused: [string[], RegExp][] = [
    [["--preset", "cs"], /--preset must be demo or sc1, not "cs"/],
    [["--seeds", "0"], /--seeds must be a whole number >= 1, not "0"/],
    [["--seeds", "1,1"], /--seeds lists a seed twice/],
    [["--first-seed=-1"], /--first-seed must be a whole number >= 0, not "-1"/],
    [["--epochs", "1.5"], /--epochs must be a whole number >= 1/],
    [["--backend", "gpu"], /--backend must be auto, webgpu or cpu/],
    [
      ["--set", "train.precision=mixed"],
      /the bench sets train\.precision itself/,
    ],
    [["--set", "runtime.seed=4"], /use --seeds to choose the seeds/],
    [["--tolerance", "x"], /--tolerance must be a number >= 0/],
  ];
  for (const [args, message] of refused) {
    assert.throws(() => parseFidelityArgs(args), (e: Error) => {
      assert.match(e.message, /^Cannot run bench fidelity: /);
      assert.match(e.message, message);
      return true;
    });
  }
});

const run = (
  seed: number,
  precision: "fp32" | "mixed",
  testAccuracy: number | undefined,
  extra: Partial<FidelityRun> = {},
): FidelityRun => ({
  seed,
  precision,
  testAccuracy,
  nonFinite: false,
  seconds: 1,
  ...extra,
});

Deno.test("summariseFidelity: per-seed and mean accuracies, the difference in points, the verdict", () => {
  const s = summariseFidelity([
    run(1, "fp32", 0.9),
    run(1, "mixed", 0.875, { skippedSteps: 3 }),
    run(2, "fp32", 0.8),
    run(2, "mixed", 0.81, { skippedSteps: 2 }),
    run(3, "fp32", 0.85),
    run(3, "mixed", 0.84),
  ]);
  assert.deepEqual(s.perSeed, [
    { seed: 1, fp32: 90, mixed: 87.5, diffPp: -2.5 },
    { seed: 2, fp32: 80, mixed: 81, diffPp: 1 },
    { seed: 3, fp32: 85, mixed: 84, diffPp: -1 },
  ]);
  assert.equal(s.meanFp32, 85);
  assert.equal(s.meanMixed, 84.17); // (87.5 + 81 + 84) / 3
  assert.equal(s.diffPp, -0.83);
  assert.equal(s.withinTolerance, true);
  assert.equal(s.skippedSteps, 5);
  assert.equal(s.nonFinite, false);
  assert.equal(s.failed, 0);
  // More than the tolerance below fp32: not within; above is fine.
  assert.equal(
    summariseFidelity([run(1, "fp32", 0.9), run(1, "mixed", 0.885)])
      .withinTolerance,
    false,
  );
  assert.equal(
    summariseFidelity([run(1, "fp32", 0.9), run(1, "mixed", 0.885)], 2)
      .withinTolerance,
    true,
  );
  assert.equal(
    summariseFidelity([run(1, "fp32", 0.8), run(1, "mixed", 0.95)])
      .withinTolerance,
    true,
  );
  // A failed run leaves its seed out of the means, and fails the verdict;
  // so does a non-finite loss.
  const f = summariseFidelity([
    run(1, "fp32", 0.9),
    run(1, "mixed", undefined, { error: "Cannot …", nonFinite: true }),
    run(2, "fp32", 0.7),
    run(2, "mixed", 0.7),
  ]);
  assert.deepEqual(f.perSeed[0], {
    seed: 1,
    fp32: 90,
    mixed: null,
    diffPp: null,
  });
  assert.equal(f.meanFp32, 70);
  assert.equal(f.diffPp, 0);
  assert.equal(f.failed, 1);
  assert.equal(f.nonFinite, true);
  assert.equal(f.withinTolerance, false);
  assert.equal(summariseFidelity([]).withinTolerance, false);
});

Deno.test({
  name:
    "bench fidelity trains sc1 (tiny model, synthetic data) in fp32 and mixed through the train stage and reads each run's figures",
  ignore: !gpuTests,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "fidelity_bench_" });
    try {
      const out = await benchFidelity([
        "--preset",
        "sc1",
        "--seeds",
        "1",
        "--first-seed",
        "5",
        "--epochs",
        "1",
        "--train",
        "1",
        "--validation",
        "1",
        "--test",
        "1",
        "--synth-dir",
        `${dir}/synth`,
        "--out",
        `${dir}/runs`,
        ...TINY_MODEL_ARGS,
      ]) as {
        stages: string;
        runs: FidelityRun[];
        summary: { perSeed: { seed: number }[]; failed: number };
      };
      assert.equal(out.stages, "through train");
      assert.deepEqual(
        out.runs.map((r) => [r.seed, r.precision]),
        [[5, "fp32"], [5, "mixed"]],
      );
      for (const r of out.runs) {
        assert.equal(r.error, undefined, r.error ?? "");
        assert.ok(r.testAccuracy! >= 0 && r.testAccuracy! <= 1);
        assert.equal(r.bestEpoch, 1);
        assert.equal(r.nonFinite, false);
        // Only the stages up to train ran: no report in the run folder.
        assert.ok(
          !(await Deno.stat(`${r.runDir}/report.json`).then(() => 1, () => 0)),
        );
      }
      assert.equal(out.runs[0].skippedSteps, undefined); // fp32
      assert.equal(
        out.runs[1].lossScale,
        2 ** 16 / 2 ** out.runs[1].skippedSteps!,
      );
      assert.equal(out.summary.failed, 0);
      assert.deepEqual(out.summary.perSeed.map((s) => s.seed), [5]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
