/**
 * Tests of `bench train`'s precision handling (`--precision
 * fp32|mixed|both`): the option's values, the refusal of mixed on the tfjs
 * engine, and the mixed ÷ fp32 comparison per preset. No timing is asserted.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  benchTrain,
  parsePrecisions,
  precisionComparison,
  type PrecisionFigures,
} from "./train_bench.ts";

Deno.test("parsePrecisions: fp32, mixed, both (fp32 first); another value is refused", () => {
  assert.deepEqual(parsePrecisions("fp32"), ["fp32"]);
  assert.deepEqual(parsePrecisions("mixed"), ["mixed"]);
  assert.deepEqual(parsePrecisions("both"), ["fp32", "mixed"]);
  assert.throws(() => parsePrecisions("bf16"), {
    message:
      'Cannot run bench train: --precision must be fp32, mixed or both, not "bf16"',
  });
  assert.throws(() => parsePrecisions("f16", "ttda"), /bench ttda/);
});

Deno.test("precisionComparison: mixed over fp32 per preset that has both", () => {
  const r = (
    preset: string,
    precision: "fp32" | "mixed",
    stepMs: number,
    evalForwardMs: number,
    peakMemoryMiB: number,
  ): PrecisionFigures => ({
    preset,
    precision,
    stepMs,
    evalForwardMs,
    peakMemoryMiB,
  });
  assert.deepEqual(
    precisionComparison([
      r("sc1", "fp32", 50, 5, 3400),
      r("sc1", "mixed", 60, 4, 3500),
      r("cs", "fp32", 240, 20, 14000),
    ]),
    [{
      preset: "sc1",
      stepRatio: 1.2,
      evalForwardRatio: 0.8,
      peakMemoryRatio: 1.029,
    }],
  );
  assert.deepEqual(precisionComparison([r("sc1", "mixed", 1, 1, 1)]), []);
});

Deno.test("bench train refuses --precision mixed on the tfjs engine, naming the fix", async () => {
  await assert.rejects(
    benchTrain(["--backend", "cpu", "--precision", "both"]),
    {
      message:
        'Cannot run bench train with --precision both: mixed precision needs the fused engine on the webgpu backend, and this run uses the tfjs engine on "cpu" (use --backend webgpu --engine fused, or --precision fp32)',
    },
  );
  await assert.rejects(
    benchTrain(["--backend", "cpu", "--precision", "half"]),
    /--precision must be fp32, mixed or both, not "half"/,
  );
});
