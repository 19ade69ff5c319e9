/**
 * The fused front end through the scheduler: the same spec run with
 * `runtime.frontEnd: fused` and `tfjs` on WebGPU (llvmpipe in CI) gives the
 * same batches — tokens within float tolerance of each other, every other
 * field equal — in every phase of the SC1 preset's stage list, and with
 * buffer limits too small for a batch, the front end declines it and the
 * stages run as usual, saying so once. Clips decoded from 16-bit PCM go up
 * as integers only while no stage could have written to them.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import * as z from "zod";
import type { Tensor } from "@tensorflow/tfjs";
import { compile } from "../../pipeline/compile.ts";
import { defineStage } from "../../pipeline/define_stage.ts";
import { runPipeline, StageError } from "../../pipeline/run.ts";
import { GPU_BUFFER_CAP_ENV } from "../../pipeline/gpu_limits.ts";
import { selectBackend } from "../../pipeline/backend.ts";
import type { Batch, Stage } from "../../pipeline/types.ts";
import type { FrontEndCall, FrontEndUpload } from "../../pipeline/front_end.ts";
import { createRng } from "../../pipeline/rng.ts";
import { FixedLengthOptions } from "../../stages/fixed_length.ts";
import { MelStageOptions } from "../../stages/mel.ts";
import { attachPcm16, floatOfPcm16 } from "../../lib/pcm16.ts";
import { createGpuFrontEnd } from "./segment.ts";
import { BUILTIN_STAGES } from "../../stages/mod.ts";
import { writeSyntheticDataset } from "../../stages/datasets/synth.ts";
import { gpuTests } from "../testing.ts";

/** What the recorder keeps of a batch. */
interface Seen {
  tokens: number[];
  shape: number[];
  labels: unknown;
  view: unknown;
  viewNames: unknown;
  size: number;
  path: unknown;
}

/** Records the first two batches of 8 clips of each phase (tokens read back). */
const recorder = defineStage({
  id: "recorder",
  version: "1.0.0",
  api: 1,
  kind: "step",
  summary: "Record batches of every phase",
  options: z.strictObject({}),
  takes: ["tokens"],
  provides: ["seen"],
  async run(_o, ctx) {
    const seen: Record<string, Seen[]> = {};
    for (
      const [key, split, phase, epoch] of [
        ["fit0", "train", "fit", 0],
        ["fit1", "train", "fit", 1],
        ["eval", "validation", "eval", 0],
        ["ttau", "test", "ttau", 0],
        ["adapt", "test", "adapt", 0],
      ] as const
    ) {
      const rows: Seen[] = [];
      for await (
        const b of ctx.data.batches(split, { batchSize: 8, phase, epoch })
      ) {
        const t = b.tokens as Tensor;
        rows.push({
          tokens: Array.from(await t.data()),
          shape: t.shape,
          labels: b.label,
          view: b.view,
          viewNames: b.viewNames,
          size: b.size,
          path: b.path,
        });
        if (rows.length === 2) break;
      }
      seen[key] = rows;
    }
    return { seen };
  },
});

const STAGES: Record<string, Stage> = { ...BUILTIN_STAGES, recorder };

/** The SC1 preset's map stages at its real sizes, then the recorder. */
const spec = (root: string, noise: string, out: string, frontEnd: string) =>
  `name: fe
runtime: { backend: webgpu, seed: 7, outputDir: ${
    JSON.stringify(out)
  }, frontEnd: ${frontEnd} }
data: { layout: speech_commands, root: ${JSON.stringify(root)}, version: 1 }
stages:
  - use: load
    with: { backgroundNoise: ${JSON.stringify(noise)} }
  - use: mono_mix
  - use: augment
    with:
      views:
        - name: shift
          chain:
            - { type: pad, samples: 16000, position: random, clip: none }
            - { type: roll, fraction: 0.17, direction: both }
        - name: noise
          chain:
            - { type: noise, kind: uniform, scale: 0.015 }
            - { type: pad, samples: 16000, position: random, clip: none }
        - name: dude
          chain:
            - { type: background, noise: dude_miaowing, snrDb: 50 }
            - { type: pad, samples: 16000, position: random, clip: none }
  - use: augment
    name: ttau_views
    phases: [ttau]
    with:
      views:
        - name: original
          chain: [{ type: pad, samples: 16000, position: center, clip: none }]
        - name: left
          chain:
            - { type: pad, samples: 16000, position: center, clip: none }
            - { type: roll, fraction: 0.17, direction: left, random: false }
  - use: augment
    name: ttda_views
    phases: [adapt]
    with:
      views:
        - name: right
          chain:
            - { type: pad, samples: 16000, position: random, clip: none }
            - { type: roll, fraction: 0.17, direction: right }
  - use: fixed_length
    phases: [fit, eval]
    with: { samples: 16000, pad: { fit: random, eval: center }, clip: none }
  - use: mel
    with: { sampleRateHz: 16000, nFft: 1024, winLength: 400, hopLength: 155, nMels: 80, targetFrames: 104 }
  - use: tokenize
  - use: recorder
`;

async function runWith(
  dir: string,
  frontEnd: string,
  root: string,
  noise: string,
) {
  const file = join(dir, `${frontEnd}.yaml`);
  await Deno.writeTextFile(
    file,
    spec(root, noise, join(dir, `runs-${frontEnd}`), frontEnd),
  );
  const lines: string[] = [];
  const result = await runPipeline(
    await compile(file, { builtins: STAGES }),
    { console: (l) => lines.push(l) },
  );
  const manifest = JSON.parse(
    await Deno.readTextFile(join(result.runDir, "manifest.json")),
  );
  return {
    seen: result.values.seen as Record<string, Seen[]>,
    lines,
    manifest,
    timings: result.timings,
  };
}

function assertSameBatches(
  got: Record<string, Seen[]>,
  want: Record<string, Seen[]>,
  tolerance: number,
) {
  assert.deepEqual(Object.keys(got), Object.keys(want));
  for (const [phase, rows] of Object.entries(want)) {
    assert.equal(got[phase].length, rows.length, phase);
    rows.forEach((w, i) => {
      const g = got[phase][i];
      const where = `${phase} batch ${i}`;
      assert.deepEqual(g.shape, w.shape, where);
      for (
        const k of ["labels", "view", "viewNames", "size", "path"] as const
      ) {
        assert.deepEqual(g[k], w[k], `${where}: ${k}`);
      }
      let worst = 0;
      for (let j = 0; j < w.tokens.length; j++) {
        worst = Math.max(worst, Math.abs(g.tokens[j] - w.tokens[j]));
      }
      assert.ok(worst <= tolerance, `${where}: tokens differ by ${worst}`);
    });
  }
}

Deno.test({
  name:
    "fused front end: every phase's batches equal the tfjs stages' (SC1 views, mel, tokens), and over-limit batches fall back",
  ignore: !gpuTests,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "front_end_" });
    try {
      const synth = await writeSyntheticDataset(
        "speech_commands",
        join(dir, "data"),
        { version: 1, train: 1, validation: 1, test: 1, noiseSeconds: 2 },
      );
      const tfjs = await runWith(
        dir,
        "tfjs",
        synth.root,
        synth.backgroundNoise!,
      );
      const fused = await runWith(
        dir,
        "fused",
        synth.root,
        synth.backgroundNoise!,
      );
      assert.equal(tfjs.manifest.frontEnd, undefined);
      // The synthetic clips are 16-bit WAVs, and only mono_mix runs before
      // the fused stages: they go up as integers in every phase.
      const int16 = (phase: string) =>
        `front end, phase ${phase}: decoded clips go up as 16-bit integers (half the bytes of float32)`;
      assert.deepEqual(fused.manifest.frontEnd, [
        'front end, phase fit: mono_mix on tfjs/host, then augment → fixed_length → mel → tokenize fused on WebGPU ("mono_mix" runs before it)',
        int16("fit"),
        'front end, phase eval: mono_mix on tfjs/host, then fixed_length → mel → tokenize fused on WebGPU ("mono_mix" runs before it)',
        int16("eval"),
        'front end, phase ttau: mono_mix on tfjs/host, then ttau_views → mel → tokenize fused on WebGPU ("mono_mix" runs before it)',
        int16("ttau"),
        'front end, phase adapt: mono_mix on tfjs/host, then ttda_views → mel → tokenize fused on WebGPU ("mono_mix" runs before it)',
        int16("adapt"),
      ]);
      assert.ok(
        Object.keys(fused.timings).includes(
          "augment+fixed_length+mel+tokenize (fused)",
        ),
      );
      assert.equal(fused.seen.fit0[0].size, 24); // 3 views × 8 clips
      assert.deepEqual(fused.seen.fit0[0].shape, [24, 104, 80]);
      // The STFTs differ (an FFT against a DFT-basis matmul), the views not.
      assertSameBatches(fused.seen, tfjs.seen, 1e-3);
      // Epochs draw new views.
      assert.notDeepEqual(fused.seen.fit0[0].tokens, fused.seen.fit1[0].tokens);

      // A cap below one training batch's views (24 rows of 16,000 samples)
      // but above what tfjs's chunked mel and the other phases need:
      // declined, said once, the same batches.
      const cap = 1_100_000;
      Deno.env.set(GPU_BUFFER_CAP_ENV, String(cap));
      try {
        const capped = await runWith(
          dir,
          "fused",
          synth.root,
          synth.backgroundNoise!,
        );
        const declined = capped.manifest.frontEnd.filter((l: string) =>
          l.startsWith("front end: ")
        );
        assert.deepEqual(declined, [
          `front end: a batch's views need ${
            24 * 16000 * 4
          } bytes, over the device's buffer limit of ${cap}; such batches run augment → fixed_length → mel → tokenize on tfjs/host`,
        ]);
        assertSameBatches(capped.seen, tfjs.seen, 1e-3);
      } finally {
        Deno.env.delete(GPU_BUFFER_CAP_ENV);
      }
    } finally {
      await selectBackend("cpu");
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "fused front end: an error names the fused stage it belongs to, as without fusing",
  ignore: !gpuTests,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "front_end_err_" });
    try {
      const file = join(dir, "spec.yaml");
      await Deno.writeTextFile(
        file,
        `name: fe_err
runtime: { backend: webgpu, seed: 1, outputDir: ${
          JSON.stringify(join(dir, "runs"))
        }, frontEnd: fused }
data:
  layout: synthetic
  sampleRateHz: 16000
  perClass: { train: 2, validation: 1, test: 1 }
stages:
  - use: load
  - use: mono_mix
  - use: fixed_length
    with: { samples: 16000 }
  - use: mel
    with: { sampleRateHz: 8000, nFft: 512, winLength: 400, hopLength: 160, nMels: 40 }
  - use: tokenize
  - use: recorder
`,
      );
      const error = await runPipeline(
        await compile(file, { builtins: STAGES }),
        { console: () => {} },
      ).then(() => undefined, (e) => e);
      assert.ok(error instanceof StageError, String(error));
      assert.equal(error.stage, "mel");
      assert.match(
        error.message,
        /^Cannot finish stage "mel": Cannot compute mel features of "[^"]+": it is 16000 Hz and the mel stage expects 8000 Hz/,
      );
    } finally {
      await selectBackend("cpu");
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "fused front end: 16-bit sources go up as integers only while intact, with the float path's exact tokens",
  ignore: !gpuTests,
  sanitizeResources: false,
  async fn() {
    const { tf } = await selectBackend("webgpu", {
      allowFallbackAdapter: true,
    });
    const frontEnd = createGpuFrontEnd(tf)!;
    try {
      const lengths = [3001, 2800, 3000];
      // Clips of 16-bit values: odd and even lengths, full scale at i = 1, 2.
      const ints = lengths.map((n, c) =>
        Int16Array.from(
          { length: n },
          (_, i) =>
            i === 1
              ? -32768
              : i === 2
              ? 32767
              : Math.round(9000 * Math.sin(i * (0.03 + 0.01 * c))),
        )
      );
      const plain = ints.map((x) => Float32Array.from(x, (v) => v / 32768));
      const batchOf = (waveform: Float32Array[]): Batch => ({
        size: waveform.length,
        split: "test",
        phase: "eval",
        waveform,
        sampleRate: waveform.map(() => 16000),
        label: waveform.map((_, i) => i),
      });
      const stages = (): FrontEndCall[] =>
        [
          ["fixed_length", FixedLengthOptions.parse({ samples: 3000 })],
          [
            "mel",
            MelStageOptions.parse({
              sampleRateHz: 16000,
              nFft: 512,
              winLength: 400,
              hopLength: 160,
              nMels: 40,
              targetFrames: 20,
            }),
          ],
          ["tokenize", {}],
        ].map(([id, options]) => ({
          name: id as string,
          id: id as string,
          origin: "builtin",
          options,
          rng: createRng(`map/${id}/test/0/0`, 3),
        }));
      const tokens = async (batch: Batch, sourcesIntact: boolean) => {
        const out = frontEnd.apply(batch, stages(), {
          tf,
          phase: "eval",
          split: "test",
          epoch: 0,
          batchIndex: 0,
          assets: {},
          sourcesIntact,
        });
        assert.ok("batch" in out, JSON.stringify(out));
        const t = out.batch.tokens as Tensor;
        assert.deepEqual(t.shape, [3, 20, 40]);
        const values = Array.from(await t.data());
        t.dispose();
        uploads.push(out.upload!);
        return values;
      };
      const uploads: FrontEndUpload[] = [];
      const want = await tokens(batchOf(plain), true);
      // Attached integers that equal the floats: the same tokens, bit for bit.
      const tagged = ints.map((x) => floatOfPcm16(x));
      assert.deepEqual(await tokens(batchOf(tagged), true), want);
      // One clip without its integers: the whole batch goes up as floats.
      assert.deepEqual(
        await tokens(batchOf([tagged[0], plain[1], tagged[2]]), true),
        want,
      );
      assert.deepEqual(uploads.splice(0), [
        {
          format: "float32",
          why: "not every clip was decoded from 16-bit PCM",
        },
        { format: "int16" },
        {
          format: "float32",
          why: "not every clip was decoded from 16-bit PCM",
        },
      ]);
      // Attached integers that disagree (silence) show which path ran: the
      // integers while the sources are intact, the floats once a stage
      // might have written to them.
      const lying = plain.map((f) =>
        attachPcm16(f.slice(), new Int16Array(f.length))
      );
      const silent = await tokens(batchOf(lying), true);
      assert.notDeepEqual(silent, want);
      const zeros = plain.map((f) => new Float32Array(f.length));
      assert.deepEqual(silent, await tokens(batchOf(zeros), false));
      assert.deepEqual(await tokens(batchOf(lying), false), want);
      assert.deepEqual(uploads.map((u) => u.format), [
        "int16",
        "float32",
        "float32",
      ]);
      assert.deepEqual(uploads[2], {
        format: "float32",
        why:
          "a stage before the fused ones, other than mono_mix, may have written to them",
      });
    } finally {
      frontEnd.dispose();
      await selectBackend("cpu");
    }
  },
});
