/**
 * Tests of the view planner (`view_programs.ts`): the planned programs, run
 * by the reference interpreter, give exactly the waveforms of the CPU
 * `augment` and `fixed_length` stages with the same seed, for every
 * preset's chains in every phase and for the option paths the presets do
 * not use; the other batch fields are the CPU stages'; errors match.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { createRng } from "../../pipeline/rng.ts";
import type { Batch, MapContext, Phase } from "../../pipeline/types.ts";
import { compile } from "../../pipeline/compile.ts";
import { BUILTIN_STAGES } from "../../stages/mod.ts";
import { AugmentOptions, stage as augment } from "../../stages/augment.ts";
import {
  FixedLengthOptions,
  stage as fixedLength,
} from "../../stages/fixed_length.ts";
import type { NoiseClip } from "../../stages/_audio_dataset.ts";
import {
  planViewStages,
  runPrograms,
  type ViewPlan,
  type ViewStage,
} from "./view_programs.ts";

const SEED = 11;

/** A stage entry as the scheduler holds it. */
interface Entry {
  readonly id: "augment" | "fixed_length";
  readonly name: string;
  readonly options: AugmentOptions | FixedLengthOptions;
}

const label = (name: string, split: string, b: number) =>
  `map/${name}/${split}/0/${b}`;

/** Runs the entries on the CPU, as `pipeline/run.ts` does. */
function cpu(
  batch: Batch,
  entries: readonly Entry[],
  assets: Record<string, unknown>,
  b = 0,
): Batch {
  let out = batch;
  for (const e of entries) {
    const ctx = {
      stageName: e.name,
      rng: createRng(label(e.name, batch.split, b), SEED),
      assets,
      phase: batch.phase,
      split: batch.split,
      epoch: 0,
      batchIndex: b,
    } as unknown as MapContext;
    out = e.id === "augment"
      ? augment.apply(out, e.options as AugmentOptions, ctx)
      : fixedLength.apply(out, e.options as FixedLengthOptions, ctx);
  }
  return out;
}

/** Plans the entries with the streams their contexts would get. */
function plan(
  batch: Batch,
  entries: readonly Entry[],
  assets: Record<string, unknown>,
  b = 0,
): ViewPlan {
  const stages = entries.map((e) => ({
    ...e,
    rng: createRng(label(e.name, batch.split, b), SEED),
  })) as ViewStage[];
  return planViewStages(batch, stages, assets);
}

/** Asserts bit-exact equality of two waveform lists (−0 and +0 differ). */
function assertSameWaves(
  got: readonly Float32Array[],
  want: readonly Float32Array[],
  what: string,
): void {
  assert.equal(got.length, want.length, `${what}: row count`);
  want.forEach((w, r) => {
    assert.equal(got[r].length, w.length, `${what}: length of row ${r}`);
    for (let j = 0; j < w.length; j++) {
      if (!Object.is(got[r][j], w[j])) {
        assert.fail(
          `${what}: row ${r} sample ${j}: planned ${got[r][j]}, CPU ${w[j]}`,
        );
      }
    }
  });
}

/** Plans and runs on the CPU and checks every field and sample. */
function assertParity(
  batch: Batch,
  entries: readonly Entry[],
  assets: Record<string, unknown>,
  what: string,
): ViewPlan {
  const want = cpu(batch, entries, assets);
  const p = plan(batch, entries, assets);
  const noise = assets.backgroundNoise as Record<string, NoiseClip> | undefined;
  const waves = runPrograms(
    batch.waveform as Float32Array[],
    p.rows,
    p.extra,
    p.noiseNames.map((n) => noise![n].samples),
  );
  assertSameWaves(waves, want.waveform as Float32Array[], what);
  const { waveform: _, ...fields } = want;
  assert.deepEqual(p.batch, fields, `${what}: batch fields`);
  assert.equal(p.rows.length, want.size, `${what}: rows`);
  return p;
}

/** A deterministic test clip of `n` samples. */
function tone(n: number, seed: number): Float32Array {
  return Float32Array.from(
    { length: n },
    (_, i) => 0.4 * Math.sin(i * (0.013 + 0.007 * seed)) + 0.05 * Math.sin(i),
  );
}

function makeBatch(
  lengths: readonly number[],
  phase: Phase,
  rates?: readonly number[],
): Batch {
  return {
    size: lengths.length,
    split: "train",
    phase,
    waveform: lengths.map((n, i) => tone(n, i + 1)),
    sampleRate: rates ?? lengths.map(() => 16000),
    label: lengths.map((_, i) => (3 * i + 1) % 5),
    path: lengths.map((_, i) => `clip${i}.wav`),
  };
}

const noiseClip = (n: number, seed: number): NoiseClip => ({
  samples: tone(n, seed + 10).map((v, i) => v * 0.3 + 0.01 * Math.cos(i)),
  sampleRateHz: 16000,
});

const PRESETS = [
  "sc1",
  "sc2",
  "am",
  "vs",
  "cs",
  "demo",
  "tiny/features",
  "ablations/sc1_sequence",
  "ablations/cs_sequence",
  "ablations/cs_one_view",
  "ablations/sc1_one_view",
];
const PHASES: Phase[] = ["fit", "eval", "ttau", "adapt"];

for (const name of PRESETS) {
  Deno.test(`planViewStages + runPrograms equal the CPU stages exactly: presets/${name}.yaml, every phase`, async () => {
    const file = join(import.meta.dirname!, `../../presets/${name}.yaml`);
    const compiled = await compile(file, { builtins: BUILTIN_STAGES });
    const all = compiled.plan.stages.filter((s) =>
      s.id === "augment" || s.id === "fixed_length"
    );
    assert.ok(all.length >= 2, "the preset has view stages");
    // The longest pad or fixed length of the preset (clips at 16 kHz).
    const options = JSON.stringify(all.map((s) => s.options));
    const target = Math.max(
      ...options.matchAll(/"samples":(\d+)/g).map((m) => Number(m[1])),
      ...options.matchAll(/"seconds":([\d.]+)/g).map((m) =>
        Math.round(Number(m[1]) * 16000)
      ),
    );
    const assets = {
      backgroundNoise: {
        dude_miaowing: noiseClip(Math.round(target * 1.7) + 3, 1),
        pink_noise: noiseClip(Math.round(target * 0.6), 2),
        white_noise: noiseClip(5000, 3),
      },
    };
    for (const phase of PHASES) {
      const entries = all.filter((s) => !s.phases || s.phases.includes(phase))
        .map((s) => ({
          id: s.id,
          name: s.name,
          options: s.options,
        })) as Entry[];
      if (entries.length === 0) continue;
      // Short, exact and long clips (a silent one too), so every pad and
      // clip path runs.
      const batch = makeBatch(
        [target - 1234, target, target + 777, Math.round(target * 0.4)],
        phase,
      );
      (batch.waveform as Float32Array[])[3].fill(0);
      assertParity(batch, entries, assets, `${name} ${phase}`);
    }
  });
}

const SR = 1000;
const bg = {
  backgroundNoise: {
    long: noiseClip(3001, 4),
    short: noiseClip(170, 5),
    silent: { samples: new Float32Array(900), sampleRateHz: SR },
  },
};
const aug = (o: unknown, name = "augment"): Entry => ({
  id: "augment",
  name,
  options: AugmentOptions.parse(o),
});
const fixed = (o: unknown, name = "fixed_length"): Entry => ({
  id: "fixed_length",
  name,
  options: FixedLengthOptions.parse(o),
});

Deno.test("planViewStages: chains the presets do not use, two augment stages in a row, seconds and rates", () => {
  const entries = [
    aug({
      views: [
        {
          name: "a",
          chain: [
            { type: "noise", kind: "gaussian", scale: 0.2 },
            { type: "background", noise: "short", snrDb: 3 },
            { type: "roll", fraction: 0.5, direction: "right" },
          ],
        },
        {
          name: "b",
          chain: [
            { type: "pad", seconds: 1.1, position: "end" },
            { type: "roll", fraction: 0.3, direction: "left" },
            { type: "clip", samples: 700 },
            { type: "background", noise: "long", snrDb: 10 },
          ],
        },
        {
          name: "c",
          chain: [
            { type: "background", noise: "silent", snrDb: 10 },
            { type: "pad", samples: 1200, position: "center", clip: "head" },
            { type: "noise", kind: "uniform", scale: 0.05 },
            { type: "roll", fraction: 0.2, direction: "left", random: false },
            { type: "background", noise: "long", snrDb: 0 },
          ],
        },
      ],
    }, "first"),
    aug({
      views: [
        { name: "x", chain: [] },
        {
          name: "y",
          chain: [{ type: "pad", samples: 1500, position: "random" }, {
            type: "roll",
            fraction: 1,
          }],
        },
      ],
    }, "second"),
    fixed({ seconds: 1, pad: { fit: "random", eval: "end" }, clip: "head" }),
  ];
  for (const phase of ["fit", "eval"] as const) {
    const batch = makeBatch([800, 1100, 0, 1300, 950], phase, [
      SR,
      SR,
      SR,
      1200,
      SR,
    ]);
    const p = assertParity(batch, entries, bg, `custom ${phase}`);
    assert.equal(p.rows.length, 30);
    assert.deepEqual(p.batch.viewNames, ["x", "y"]);
    assert.deepEqual(p.noiseNames, ["long", "short", "silent"]);
    // The noise buffer was sized exactly up front (never grown or copied).
    assert.equal(p.extra.buffer.byteLength, p.extra.byteLength);
    assert.equal(p.extra.length, 800 + 1100 + 0 + 1300 + 950 + 5 * 1200);
    // Every op kind occurs, and the silent mix left no op.
    const kinds = new Set(p.rows.flatMap((r) => r.ops.map((o) => o.kind)));
    assert.deepEqual([...kinds].sort(), ["add", "mix", "place", "roll"]);
    assert.ok(
      p.rows.every((r) => r.ops.every((o) => o.kind !== "mix" || o.noise < 2)),
    );
  }
});

Deno.test("planViewStages: sequence mode, and fixed_length alone draws only for short clips", () => {
  const seq = aug({
    mode: "sequence",
    views: [
      {
        name: "s",
        chain: [{ type: "pad", samples: 1000, clip: "none" }, {
          type: "roll",
          fraction: 0.17,
        }],
      },
      { name: "n", chain: [{ type: "noise" }] },
      { name: "d", chain: [{ type: "background", noise: "long", snrDb: 5 }] },
    ],
  });
  const p = assertParity(
    makeBatch([700, 1000, 1200], "fit"),
    [
      seq,
      fixed({ samples: 1000, clip: "none" }),
    ],
    bg,
    "sequence",
  );
  assert.deepEqual(p.batch.view, [0, 0, 0]);
  assert.deepEqual(p.batch.viewNames, ["sequence"]);
  assert.equal(p.rows[2].length, 1200);
  for (const phase of ["fit", "eval", "adapt"] as const) {
    assertParity(
      makeBatch([999, 1000, 1001, 10, 0], phase),
      [fixed({ samples: 1000 })],
      {},
      `fixed_length ${phase}`,
    );
  }
});

Deno.test("planViewStages: the programs are index ops until noise is needed", () => {
  const batch = makeBatch([900, 1000], "fit");
  const p = plan(batch, [
    aug({
      views: [{
        name: "v",
        chain: [{ type: "pad", samples: 1000, position: "center" }, {
          type: "roll",
          fraction: 0.5,
          direction: "right",
          random: false,
        }],
      }],
    }),
  ], {});
  assert.deepEqual(p.rows, [
    {
      source: 0,
      length: 1000,
      ops: [
        { kind: "place", input: 900, head: 50, length: 1000 },
        { kind: "roll", input: 1000, shift: 500 },
      ],
    },
    {
      source: 1,
      length: 1000,
      ops: [{ kind: "roll", input: 1000, shift: 500 }],
    },
  ]);
  assert.equal(p.extra.length, 0);
  assert.equal("waveform" in p.batch, false);
});

Deno.test("planViewStages fails as the augment stage on missing background noise", () => {
  const batch = makeBatch([100], "fit");
  const entries = [
    aug({
      views: [{
        name: "v",
        chain: [{ type: "background", noise: "pink", snrDb: 5 }],
      }],
    }),
  ];
  const cases: [Record<string, unknown>, RegExp][] = [
    [
      {},
      /^Error: Cannot mix background noise "pink": no background noise was loaded \(set backgroundNoise in the load stage\)$/,
    ],
    [
      { backgroundNoise: {} },
      /^Error: Cannot mix background noise "pink": no background noise was loaded \(set backgroundNoise in the load stage\)$/,
    ],
    [
      bg,
      /^Error: Cannot mix background noise "pink": the noise clips are "long", "short", "silent"$/,
    ],
  ];
  for (const [assets, message] of cases) {
    assert.throws(() => cpu(batch, entries, assets), message);
    assert.throws(() => plan(batch, entries, assets), message);
  }
  const empty = { backgroundNoise: { pink: { samples: new Float32Array(0) } } };
  assert.throws(() => cpu(batch, entries, empty), /Cannot mix an empty noise/);
  assert.throws(() => plan(batch, entries, empty), /Cannot mix an empty noise/);
});

Deno.test("runPrograms refuses a program planned from other clips", () => {
  const batch = makeBatch([900], "fit");
  const p = plan(batch, [fixed({ samples: 1000 })], {});
  assert.throws(
    () => runPrograms([new Float32Array(800)], p.rows, p.extra, []),
    /^RangeError: Cannot run a view program: its place op expects 900 samples and gets 800; plan the programs from these clips$/,
  );
});

Deno.test("planViewStages with float32 noise: the same programs, the noise rounded once, waves within an ulp of the terms", () => {
  const batch = makeBatch([700, 1000, 1100], "fit");
  const entries = [
    aug({
      views: [
        { name: "u", chain: [{ type: "noise", scale: 0.3 }] },
        {
          name: "g",
          chain: [{ type: "noise", kind: "gaussian", scale: 0.2 }, {
            type: "pad",
            samples: 1000,
          }],
        },
      ],
    }),
  ];
  const p64 = plan(batch, entries, {});
  const stages = entries.map((e) => ({
    ...e,
    rng: createRng(label(e.name, batch.split, 0), SEED),
  })) as ViewStage[];
  const p32 = planViewStages(batch, stages, {}, { noise: "float32" });
  assert.ok(p64.extra instanceof Float64Array);
  assert.ok(p32.extra instanceof Float32Array);
  assert.deepEqual(p32.rows, p64.rows);
  assert.deepEqual(p32.extra, Float32Array.from(p64.extra));
  const waves = batch.waveform as Float32Array[];
  const exact = runPrograms(waves, p64.rows, p64.extra, []);
  const near = runPrograms(waves, p32.rows, p32.extra, []);
  // Rounding the noise first moves a sum by at most an ulp of its terms.
  const big = p64.extra.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  let differ = 0;
  exact.forEach((w, r) =>
    w.forEach((v, j) => {
      const d = Math.abs(near[r][j] - v);
      if (d > 0) differ++;
      assert.ok(d <= 2 ** -23 * (Math.abs(v) + big), `row ${r} sample ${j}`);
    })
  );
  // Rounding the noise first does change some samples: why float64 is the default.
  assert.ok(differ > 0);
});
