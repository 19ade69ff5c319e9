/**
 * Tests of the views kernel (`views.ts`): its packing and sizes without a
 * GPU, and on any WebGPU adapter (llvmpipe in CI) its output against the
 * float64 reference interpreter `runPrograms` for programs planned from
 * real stage options (every op kind, two augment stages, sequence mode).
 * One kernel size throughout, so llvmpipe compiles it once.
 *
 * @module
 */
import assert from "node:assert/strict";
import { createRng } from "../../pipeline/rng.ts";
import type { Batch } from "../../pipeline/types.ts";
import { AugmentOptions } from "../../stages/augment.ts";
import { FixedLengthOptions } from "../../stages/fixed_length.ts";
import { floatOfPcm16, pcm16Of } from "../../lib/pcm16.ts";
import {
  asInt32,
  assertClose,
  gpuRuntime,
  gpuTests,
  runPlan,
} from "../testing.ts";
import {
  planViewStages,
  type RowProgram,
  runPrograms,
  type ViewPlan,
  type ViewStage,
} from "./view_programs.ts";
import {
  packClips,
  packPrograms,
  placeClips,
  rowWords,
  type SourceFormat,
  VIEW_OP,
  viewsPlan,
  viewsRowsPerDispatch,
} from "./views.ts";

/** The one kernel size of the GPU tests. */
const MAX_OPS = 8;
const ROW_STRIDE = 1300;

const tone = (n: number, seed: number) =>
  Float32Array.from(
    { length: n },
    (_, i) => 0.45 * Math.sin(i * (0.011 + 0.005 * seed)) + 0.03 * Math.cos(i),
  );
const NOISE = {
  backgroundNoise: {
    hum: { samples: tone(2100, 7), sampleRateHz: 1000 },
    tick: { samples: tone(97, 9), sampleRateHz: 1000 },
  },
};
const clips = (p: ViewPlan) =>
  p.noiseNames.map((n) =>
    NOISE.backgroundNoise[n as keyof typeof NOISE.backgroundNoise].samples
  );

/** A tone's 16-bit samples (full scale at both ends), as the decoder gives them. */
const tone16 = (n: number, seed: number) =>
  floatOfPcm16(
    Int16Array.from(tone(n, seed), (v, i) =>
      i === 1 ? -32768 : i === 2 ? 32767 : Math.round(v * 32768)),
  );

/** 16-bit clips packed as the front end uploads them (`placeClips`). */
function pcm16Sources(waves: readonly Float32Array[]) {
  const { offsets, words } = placeClips(
    waves.map((w) => w.length),
    "i16",
  );
  const data = new Uint32Array(words);
  const halves = new Int16Array(data.buffer);
  waves.forEach((w, i) => halves.set(pcm16Of(w)!, offsets[i]));
  return { data, offsets };
}

function batchOf(lengths: readonly number[], pcm16 = false): Batch {
  return {
    size: lengths.length,
    split: "train",
    phase: "fit",
    waveform: lengths.map((n, i) => (pcm16 ? tone16 : tone)(n, i + 1)),
    sampleRate: lengths.map(() => 1000),
    label: lengths.map((_, i) => i),
  };
}

/** Programs with every op kind: two augment stages and a fixed length. */
function mixedPlan(batch: Batch): ViewPlan {
  const stages: ViewStage[] = [
    {
      id: "augment",
      name: "augment",
      rng: createRng("map/augment/train/0/0", 5),
      options: AugmentOptions.parse({
        views: [
          {
            name: "shift",
            chain: [{ type: "pad", samples: 1000, clip: "none" }, {
              type: "roll",
              fraction: 0.4,
            }],
          },
          {
            name: "noise",
            chain: [
              { type: "noise", kind: "gaussian", scale: 0.1 },
              { type: "pad", samples: 1200, position: "center" },
              { type: "background", noise: "tick", snrDb: 6 },
            ],
          },
          {
            name: "mix",
            chain: [
              { type: "background", noise: "hum", snrDb: 0 },
              { type: "clip", samples: 900 },
              { type: "roll", fraction: 0.3, direction: "left" },
              { type: "noise", scale: 0.2 },
            ],
          },
        ],
      }),
    },
    {
      id: "augment",
      name: "second",
      rng: createRng("map/second/train/0/0", 5),
      options: AugmentOptions.parse({
        views: [{ name: "a", chain: [] }, {
          name: "b",
          chain: [{ type: "pad", samples: 1300, position: "random" }],
        }],
      }),
    },
    {
      id: "fixed_length",
      name: "fixed_length",
      rng: createRng("map/fixed_length/train/0/0", 5),
      options: FixedLengthOptions.parse({ samples: 1000, clip: "none" }),
    },
  ];
  return planViewStages(batch, stages, NOISE);
}

/** Runs the kernel on a plan's rows and checks it against `runPrograms`. */
async function checkOnGpu(
  batch: Batch,
  p: ViewPlan,
  rows: readonly RowProgram[],
  rowStride: number | undefined = ROW_STRIDE,
  sourceFormat: SourceFormat = "f32",
): Promise<void> {
  const waves = batch.waveform as Float32Array[];
  const sources = sourceFormat === "f32"
    ? packClips(waves)
    : { ...pcm16Sources(waves), lengths: waves.map((w) => w.length) };
  const noise = packClips(clips(p));
  const packed = packPrograms(rows, p.extra, {
    maxOps: MAX_OPS,
    rowStride,
    sources,
    noise,
  });
  const stride = packed.rowStride;
  assert.equal(stride, rowStride ?? Math.max(...rows.map((r) => r.length)));
  const got = await runPlan(
    await gpuRuntime(),
    viewsPlan({
      maxOps: MAX_OPS,
      rowStride: stride,
      rows: rows.length,
      sourceFormat,
    }),
    {
      programs: packed.programs,
      sources: sources.data,
      extra: packed.extra,
      noise: noise.data,
      out: new Float32Array(rows.length * stride).fill(Number.NaN),
      lengths: new Uint32Array(rows.length),
    },
    ["out", "lengths"],
  );
  const want = runPrograms(waves, rows, p.extra, clips(p));
  assert.deepEqual(
    [...asInt32(got.lengths)],
    rows.map((r) => r.length),
    "lengths",
  );
  want.forEach((w, r) => {
    const row = got.out.subarray(r * stride, (r + 1) * stride);
    const additive = rows[r].ops.some((o) =>
      o.kind === "add" || o.kind === "mix"
    );
    if (additive) assertClose(row.subarray(0, w.length), w, `row ${r}`, 1e-6);
    else {
      assert.deepEqual(row.subarray(0, w.length), w, `row ${r} (exact)`);
    }
    assert.ok(
      row.subarray(w.length).every((v) => Object.is(v, 0)),
      `row ${r}: zeros past its length`,
    );
  });
}

Deno.test({
  name: "views kernel equals runPrograms: every op kind, two augment stages",
  ignore: !gpuTests,
  async fn() {
    const batch = batchOf([700, 1000, 1250, 40]);
    const p = mixedPlan(batch);
    assert.equal(p.rows.length, 24);
    const kinds = new Set(p.rows.flatMap((r) => r.ops.map((o) => o.kind)));
    assert.deepEqual([...kinds].sort(), ["add", "mix", "place", "roll"]);
    await checkOnGpu(batch, p, p.rows);
    // The same pipeline serves another row count and stride (a subset,
    // reordered, packed at its longest row).
    const short = p.rows.filter((r) => r.length < ROW_STRIDE);
    const subset = [short[7], short[1], short[4]];
    assert.ok(subset.some((r) => r.ops.some((o) => o.kind === "mix")));
    await checkOnGpu(batch, p, subset, undefined);
  },
});

Deno.test({
  name:
    "views kernel equals runPrograms on 16-bit sources: odd lengths, both halves of a word, full scale",
  ignore: !gpuTests,
  async fn() {
    const batch = batchOf([701, 1000, 1251, 41], true);
    const p = mixedPlan(batch);
    // Clips start on even samples; odd ones end with a padding half-word.
    assert.deepEqual(placeClips([701, 1000, 1251, 41], "i16"), {
      offsets: [0, 702, 1702, 2954],
      words: 1498,
    });
    assert.deepEqual(placeClips([701, 1000, 1251, 41]), {
      offsets: [0, 701, 1701, 2952],
      words: 2993,
    });
    assert.deepEqual(placeClips([], "i16"), { offsets: [], words: 1 });
    await checkOnGpu(batch, p, p.rows, ROW_STRIDE, "i16");
  },
});

Deno.test({
  name: "views kernel equals runPrograms: sequence mode",
  ignore: !gpuTests,
  async fn() {
    const batch = batchOf([800, 1100]);
    const p = planViewStages(batch, [{
      id: "augment",
      name: "augment",
      rng: createRng("map/augment/train/0/3", 9),
      options: AugmentOptions.parse({
        mode: "sequence",
        views: [
          { name: "n", chain: [{ type: "noise" }] },
          {
            name: "s",
            chain: [{ type: "pad", samples: 1000, clip: "none" }, {
              type: "roll",
              fraction: 0.17,
            }],
          },
          { name: "d", chain: [{ type: "background", noise: "hum" }] },
        ],
      }),
    }], NOISE);
    assert.equal(p.rows.length, 2);
    await checkOnGpu(batch, p, p.rows);
  },
});

Deno.test("packPrograms writes the documented layout", () => {
  const rows: RowProgram[] = [
    {
      source: 1,
      length: 6,
      ops: [
        { kind: "place", input: 3, head: 2, length: 6 },
        { kind: "roll", input: 6, shift: 4 },
        { kind: "add", input: 6, offset: 0 },
        { kind: "mix", input: 6, noise: 1, start: 3, gain: 0.25 },
      ],
    },
    { source: 0, length: 2, ops: [] },
  ];
  const sources = packClips([new Float32Array(2), new Float32Array(3)]);
  assert.deepEqual(sources.offsets, [0, 2]);
  assert.deepEqual(sources.lengths, [2, 3]);
  const noise = packClips([new Float32Array(5), new Float32Array(7)]);
  const extra = Float64Array.from([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]);
  const packed = packPrograms(rows, extra, { maxOps: 4, sources, noise });
  const f32 = Float32Array.from(extra);
  assert.equal(
    packPrograms(rows, f32, { maxOps: 4, sources, noise }).extra,
    f32,
    "float32 noise is used as it is",
  );
  assert.equal(packed.rows, 2);
  assert.equal(packed.rowStride, 6);
  assert.deepEqual(packed.extra, Float32Array.from(extra));
  const gain = new Uint32Array(Float32Array.from([0.25]).buffer)[0];
  const w = rowWords(4);
  assert.equal(w, 20);
  assert.deepEqual([...packed.programs], [
    6,
    2,
    0,
    5,
    5,
    7,
    // row 0
    2,
    3,
    4,
    6,
    VIEW_OP.place,
    2,
    0,
    3,
    VIEW_OP.roll,
    4,
    0,
    6,
    VIEW_OP.add,
    0,
    0,
    6,
    VIEW_OP.mix,
    1,
    3,
    gain,
    // row 1
    0,
    2,
    0,
    2,
    ...new Array(16).fill(0),
  ]);
});

Deno.test("packPrograms and viewsPlan refuse what the kernel cannot run", () => {
  const sources = packClips([new Float32Array(4)]);
  const noise = packClips([]);
  const row: RowProgram = {
    source: 0,
    length: 8,
    ops: [{ kind: "place", input: 4, head: 1, length: 8 }, {
      kind: "roll",
      input: 8,
      shift: 3,
    }],
  };
  const pack = (r: RowProgram, maxOps = 2, rowStride?: number, s = sources) =>
    packPrograms([r], new Float64Array(0), {
      maxOps,
      rowStride,
      sources: s,
      noise,
    });
  assert.equal(pack(row).programs.length, 2 + rowWords(2));
  assert.throws(
    () => pack(row, 1),
    /^RangeError: Cannot pack view row 0: it has 2 ops, more than maxOps 1; build the views kernel with maxOps ≥ 2$/,
  );
  assert.throws(
    () => pack(row, 2, 7),
    /^RangeError: Cannot pack view row 0: it has 8 samples, more than rowStride 7; build the views kernel with rowStride ≥ 8$/,
  );
  assert.throws(
    () => pack(row, 2, undefined, packClips([new Float32Array(5)])),
    /^RangeError: Cannot pack view row 0: its program expects clip 0 to have 4 samples, it has 5; pack the clips the programs were planned from$/,
  );
  assert.throws(
    () => pack({ ...row, source: 3 }),
    /expects clip 3 to have 4 samples, and there is no such clip/,
  );
  assert.throws(
    () =>
      pack({
        source: 0,
        length: 4,
        ops: [{ kind: "mix", input: 4, noise: 0, start: 0, gain: 1 }],
      }),
    /^RangeError: Cannot pack view row 0: it mixes background clip 0 and 0 were packed; pack every clip of noiseNames$/,
  );
  assert.throws(
    () => viewsPlan({ maxOps: 0, rowStride: 10, rows: 1 }),
    /Cannot build kernel: views maxOps must be an integer ≥ 1, got 0/,
  );
  assert.throws(
    () =>
      viewsPlan({
        maxOps: 1,
        rowStride: 1000,
        rows: 33,
        maxBindingBytes: 128000,
      }),
    /^RangeError: Cannot build the views kernel for 33 rows of 1000 samples: out needs 132000 bytes, more than the device's maxStorageBufferBindingSize 128000; dispatch at most 32 rows at a time$/,
  );
  assert.equal(
    viewsPlan({ maxOps: 1, rowStride: 1000, rows: 32, maxBindingBytes: 128000 })
      .steps.length,
    1,
  );
  assert.equal(viewsRowsPerDispatch(441000, 2 ** 27), 76);
  assert.equal(viewsRowsPerDispatch(10, 2 ** 31), 65535);
  assert.equal(viewsRowsPerDispatch(1000, 3999), 0);
  assert.throws(
    () => viewsPlan({ maxOps: 2, rowStride: 10, rows: 65536 }),
    /^RangeError: Cannot build the views kernel for 65536 rows of 10 samples: one dispatch covers at most 65535 rows of 16776960 samples; split the batch$/,
  );
});

Deno.test("viewsPlan: the WGSL depends on maxOps only; six bindings", () => {
  const a = viewsPlan({ maxOps: 3, rowStride: 1000, rows: 7 });
  const b = viewsPlan({ maxOps: 3, rowStride: 1025, rows: 300 });
  assert.equal(a.steps.length, 1);
  assert.equal(a.steps[0].spec.code, b.steps[0].spec.code);
  assert.deepEqual(a.steps[0].spec.workgroups, [4, 7, 1]);
  assert.deepEqual(b.steps[0].spec.workgroups, [5, 300, 1]);
  assert.deepEqual(a.steps[0].bind, [
    "programs",
    "sources",
    "extra",
    "noise",
    "out",
    "lengths",
  ]);
  assert.notEqual(
    a.steps[0].spec.code,
    viewsPlan({ maxOps: 4, rowStride: 1000, rows: 7 }).steps[0].spec.code,
  );
});
