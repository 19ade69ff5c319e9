/**
 * The GPU noise path: the planner's `gpu` noise mode records the generator
 * states instead of drawing (same programs, same later draws), and the
 * kernel draws from them what the host draws, within float32 rounding.
 */
import assert from "node:assert/strict";
import { createRng } from "../../pipeline/rng.ts";
import type { Batch } from "../../pipeline/types.ts";
import { AugmentOptions } from "../../stages/augment.ts";
import {
  NOISE_CHUNK,
  NOISE_CHUNK_WORDS,
  planViewStages,
  type ViewStage,
} from "./view_programs.ts";
import { packNoiseChunks, uniformNoisePlan } from "./noise.ts";
import { gpuRuntime, gpuTests, runPlan } from "../testing.ts";

const L = 3 * NOISE_CHUNK + 17; // a partial last chunk
const waves = [0, 1, 2].map((k) =>
  Float32Array.from({ length: L - 40 * k }, (_, i) => Math.sin(i * 0.1 + k))
);
const batch = {
  size: 3,
  waveform: waves,
  sampleRate: [8000, 8000, 8000],
  label: [0, 1, 2],
  phase: "fit",
} as unknown as Batch;
const options = AugmentOptions.parse({
  views: [
    {
      name: "noise",
      chain: [
        { type: "noise", kind: "uniform", scale: 0.015 },
        { type: "pad", samples: L + 50, position: "random" },
        { type: "noise", kind: "uniform", scale: 0.5 },
      ],
    },
    { name: "gauss", chain: [{ type: "noise", kind: "gaussian", scale: 0.1 }] },
  ],
});
const stages = (): ViewStage[] => [{
  id: "augment",
  name: "augment",
  options,
  rng: createRng("map/augment/train/0/0", 3),
}];

Deno.test("gpu noise mode: the same programs as float32 mode, uniform draws left to chunk records", () => {
  const host = planViewStages(batch, stages(), {}, { noise: "float32" });
  const gpu = planViewStages(batch, stages(), {}, { noise: "gpu" });
  // Pads drawn after the skipped noise land where they did.
  assert.deepEqual(gpu.rows, host.rows);
  assert.deepEqual(gpu.batch, host.batch);
  assert.equal(gpu.extraLength, host.extra.length);
  // Gaussian noise is still drawn on the host, identically.
  const gaussRows = gpu.rows.slice(3);
  for (const r of gaussRows) {
    const op = r.ops[0];
    assert.equal(op.kind, "add");
    if (op.kind !== "add") continue;
    for (let i = 0; i < op.input; i++) {
      assert.equal(gpu.extra[op.offset + i], host.extra[op.offset + i]);
    }
  }
  // Chunk records cover exactly the uniform slots, each from its state.
  const records = gpu.noiseChunks;
  const count = records.length / NOISE_CHUNK_WORDS;
  let covered = 0;
  for (let k = 0; k < count; k++) {
    const w = k * NOISE_CHUNK_WORDS;
    const n = records[w + 5];
    assert.ok(n >= 1 && n <= NOISE_CHUNK);
    covered += n;
  }
  const uniform = gpu.rows.slice(0, 3).reduce(
    (sum, r) => sum + r.ops.filter((o) => o.kind === "add").length,
    0,
  );
  assert.equal(uniform, 6);
  assert.equal(
    covered,
    gpu.rows.slice(0, 3).reduce(
      (sum, r) =>
        sum + r.ops.filter((o) => o.kind === "add").reduce(
          (m, o) => m + o.input,
          0,
        ),
      0,
    ),
  );
});

Deno.test({
  name:
    "uniformNoisePlan draws on the GPU what the host draws (float32 rounding)",
  ignore: !gpuTests,
  async fn() {
    const rt = await gpuRuntime();
    const host = planViewStages(batch, stages(), {}, { noise: "float32" });
    const gpu = planViewStages(batch, stages(), {}, { noise: "gpu" });
    const chunks = packNoiseChunks(gpu.noiseChunks);
    const extra = new Float32Array(gpu.extraLength).fill(-7);
    const got = (await runPlan(
      rt,
      uniformNoisePlan(gpu.noiseChunks.length / NOISE_CHUNK_WORDS),
      { chunks, extra },
      ["extra"],
    )).extra;
    let worst = 0;
    let filled = 0;
    for (let k = 0; k < gpu.noiseChunks.length / NOISE_CHUNK_WORDS; k++) {
      const w = k * NOISE_CHUNK_WORDS;
      const at = gpu.noiseChunks[w + 4];
      for (let i = 0; i < gpu.noiseChunks[w + 5]; i++) {
        const want = host.extra[at + i];
        worst = Math.max(
          worst,
          Math.abs(got[at + i] - want) / Math.max(1e-30, Math.abs(want)),
        );
        filled++;
      }
    }
    assert.ok(filled > 6 * NOISE_CHUNK);
    assert.ok(worst <= 2 ** -22, `relative difference ${worst}`);
    // Slots no chunk covers (the gaussian rows') are left alone.
    const gauss = gpu.rows[3].ops[0];
    assert.equal(gauss.kind, "add");
    if (gauss.kind === "add") assert.equal(got[gauss.offset], -7);
  },
});
