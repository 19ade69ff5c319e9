/**
 * Features end to end: synthetic stereo clips through mono mix, four
 * augmentation views (with background noise loaded by `load`), fixed length,
 * mel and tokenize — shapes per phase, views per batch, and no tensor leaks.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import * as z from "zod";
import * as tf from "@tensorflow/tfjs";
import { compile, defineStage, runPipeline } from "../pipeline/mod.ts";
import { BUILTIN_STAGES } from "../stages/mod.ts";
import { writeToneWav } from "./_fixtures.ts";

const probe = defineStage({
  id: "probe",
  version: "1.0.0",
  api: 1,
  kind: "step",
  summary: "Record token shapes per phase",
  options: z.strictObject({}),
  takes: ["tokens"],
  provides: ["shapes"],
  async run(_o, ctx) {
    const shapes: Record<string, unknown[]> = { fit: [], eval: [] };
    for (const phase of ["fit", "eval"]) {
      for await (
        const b of ctx.data.batches("train", { batchSize: 4, phase })
      ) {
        const tokens = b.tokens as tf.Tensor;
        shapes[phase].push({
          tokens: tokens.shape,
          size: b.size,
          views: b.viewNames ?? null,
        });
        const peak = tokens.max();
        assert.ok(Number.isFinite((await peak.data())[0]));
        peak.dispose();
      }
    }
    return { shapes };
  },
});

Deno.test("augment → fixed_length → mel → tokenize gives [V·b, frames, nMels] tokens in fit and [b, ...] in eval", async () => {
  const dir = await Deno.makeTempDir({ prefix: "features_test_" });
  await writeToneWav(join(dir, "noise", "pink_noise.wav"), {
    sampleRateHz: 8000,
    seconds: 2,
    frequencyHz: 97,
  });
  await writeToneWav(join(dir, "noise", "dude_miaowing.wav"), {
    sampleRateHz: 8000,
    seconds: 1.5,
    frequencyHz: 311,
  });
  const spec = join(dir, "spec.yaml");
  await Deno.writeTextFile(
    spec,
    `name: features
runtime: { backend: cpu, outputDir: ${JSON.stringify(join(dir, "runs"))} }
data: { layout: synthetic, sampleRateHz: 8000, durationSeconds: 0.4, durationJitter: 0.2, channels: 2, perClass: { train: 4, validation: 1, test: 1 } }
stages:
  - use: load
    with: { backgroundNoise: ${JSON.stringify(join(dir, "noise"))} }
  - use: mono_mix
  - use: augment
    with:
      views:
        - { name: shift, chain: [{ type: pad, seconds: 0.5 }, { type: roll, fraction: 0.17 }] }
        - { name: noise, chain: [{ type: noise }, { type: pad, seconds: 0.5 }] }
        - { name: dude, chain: [{ type: background, noise: dude_miaowing, snrDb: 50 }, { type: pad, seconds: 0.5 }] }
        - { name: pink, chain: [{ type: background, noise: pink_noise, snrDb: 50 }, { type: pad, seconds: 0.5 }] }
  - use: fixed_length
    with: { seconds: 0.5 }
  - use: mel
    with: { sampleRateHz: 8000, nFft: 512, winLength: 200, hopLength: 80, nMels: 32 }
  - use: tokenize
  - use: probe
`,
  );
  const compiled = await compile(spec, {
    builtins: { ...BUILTIN_STAGES, probe },
  });
  const before = tf.memory().numTensors;
  const result = await runPipeline(compiled, {});
  const shapes = result.values.shapes as Record<
    string,
    { tokens: number[]; size: number; views: string[] | null }[]
  >;
  assert.equal(shapes.fit.length, 3);
  for (const s of shapes.fit) {
    assert.deepEqual(s.tokens, [16, 51, 32]);
    assert.equal(s.size, 16);
    assert.deepEqual(s.views, ["shift", "noise", "dude", "pink"]);
  }
  for (const s of shapes.eval) {
    assert.deepEqual(s.tokens, [4, 51, 32]);
    assert.equal(s.views, null);
  }
  // Only the cached mel constants (filterbank) may remain.
  assert.ok(
    tf.memory().numTensors - before <= 1,
    `leaked ${tf.memory().numTensors - before} tensors`,
  );
});
