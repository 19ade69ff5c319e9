import assert from "node:assert/strict";
import { createRng } from "../pipeline/rng.ts";
import type { Batch, MapContext } from "../pipeline/types.ts";
import { measuredSnrDb } from "../lib/transforms.ts";
import { applyChain, AugmentOptions, stage } from "./augment.ts";

const RATE = 1000;
const clip = (n: number, f: number) =>
  Float32Array.from(
    { length: n },
    (_, i) => 0.5 * Math.sin((2 * Math.PI * f * i) / RATE),
  );
const noiseClip = {
  samples: Float32Array.from(
    { length: 5000 },
    (_, i) => Math.sin(i * 1.37) * 0.2,
  ),
  sampleRateHz: RATE,
};

function ctx(
  label: string,
  assets: Record<string, unknown> = { backgroundNoise: { pink: noiseClip } },
): MapContext {
  return {
    rng: createRng(label, 7),
    assets,
    phase: "fit",
  } as unknown as MapContext;
}

function batch(): Batch {
  return {
    size: 2,
    split: "train",
    phase: "fit",
    waveform: [clip(800, 50), clip(900, 80)],
    sampleRate: [RATE, RATE],
    label: [3, 5],
    path: ["a.wav", "b.wav"],
  };
}

const FOUR = AugmentOptions.parse({
  views: [
    {
      name: "shift",
      chain: [{ type: "pad", samples: 1000 }, { type: "roll", fraction: 0.17 }],
    },
    {
      name: "noise",
      chain: [{ type: "noise" }, { type: "pad", samples: 1000 }],
    },
    {
      name: "pink",
      chain: [{ type: "background", noise: "pink", snrDb: 20 }, {
        type: "pad",
        seconds: 1,
      }],
    },
    { name: "orig", chain: [] },
  ],
});

Deno.test("augment stacks views view-major with every per-example field replicated", () => {
  const out = stage.apply(batch(), FOUR, ctx("map/augment/train/0/0"));
  assert.equal(out.size, 8);
  assert.deepEqual(out.view, [0, 0, 1, 1, 2, 2, 3, 3]);
  assert.deepEqual(out.viewNames, ["shift", "noise", "pink", "orig"]);
  assert.deepEqual(out.label, [3, 5, 3, 5, 3, 5, 3, 5]);
  assert.deepEqual(out.path, [
    "a.wav",
    "b.wav",
    "a.wav",
    "b.wav",
    "a.wav",
    "b.wav",
    "a.wav",
    "b.wav",
  ]);
  const w = out.waveform as Float32Array[];
  assert.deepEqual(w.map((x) => x.length), [
    1000,
    1000,
    1000,
    1000,
    1000,
    1000,
    800,
    900,
  ]);
  assert.deepEqual(
    w[6],
    (batch().waveform as Float32Array[])[0],
    "an empty chain is the original clip",
  );
  // The noise view: positive noise added before the pad, so the pad stays exactly 0.
  const noisy = w[2];
  const head = noisy.findIndex((v) => v !== 0);
  const diffs = Array.from(
    { length: 800 },
    (_, i) => noisy[head + i] - (batch().waveform as Float32Array[])[0][i],
  );
  assert.ok(diffs.every((d) => d >= -1e-7 && d < 0.015 + 1e-7));
  assert.equal(noisy.filter((v) => v === 0).length >= 200 - 1, true);
});

Deno.test("augment background view mixes at the requested SNR before padding", () => {
  const out = stage.apply(batch(), FOUR, ctx("x"));
  const mixed = (out.waveform as Float32Array[])[4];
  const x = (batch().waveform as Float32Array[])[0];
  const head = mixed.findIndex((v) => v !== 0);
  const snr = measuredSnrDb(x, mixed.subarray(head, head + 800));
  assert.ok(Math.abs(snr - 20) < 0.05, `snr ${snr}`);
});

Deno.test("augment views repeat for the same seed and batch, and change with the epoch", () => {
  const a = stage.apply(batch(), FOUR, ctx("map/augment/train/0/3"));
  const b = stage.apply(batch(), FOUR, ctx("map/augment/train/0/3"));
  const c = stage.apply(batch(), FOUR, ctx("map/augment/train/1/3"));
  assert.deepEqual(a.waveform, b.waveform);
  const w = (o: Batch) => o.waveform as Float32Array[];
  for (const v of [0, 1, 2]) {
    assert.notDeepEqual(
      w(a)[2 * v],
      w(c)[2 * v],
      `view ${v} must change with the epoch`,
    );
  }
  assert.deepEqual(w(a)[6], w(c)[6]);
});

Deno.test("augment in sequence mode applies every chain to one copy", () => {
  const options = AugmentOptions.parse({
    mode: "sequence",
    views: [
      {
        name: "a",
        chain: [{
          type: "roll",
          direction: "right",
          random: false,
          fraction: 0.25,
        }],
      },
      { name: "b", chain: [{ type: "pad", samples: 1000, position: "end" }] },
    ],
  });
  const out = stage.apply(batch(), options, ctx("s"));
  assert.equal(out.size, 2);
  assert.deepEqual(out.viewNames, ["sequence"]);
  const x = (batch().waveform as Float32Array[])[0];
  const y = (out.waveform as Float32Array[])[0];
  assert.equal(y.length, 1000);
  assert.equal(y[200], x[0]); // rolled right by trunc(0.25·800) = 200, then padded at the end
  assert.deepEqual([...y.subarray(800)], new Array(200).fill(0));
});

Deno.test("applyChain makes the fixed ±17 % TTAu rolls and the TTDA one-way random rolls", () => {
  const x = Float32Array.from({ length: 100 }, (_, i) => i);
  const rng = createRng("t", 0);
  const right = applyChain(
    x,
    [{ type: "roll", fraction: 0.17, direction: "right", random: false }],
    RATE,
    rng,
    {},
  );
  const left = applyChain(
    x,
    [{ type: "roll", fraction: 0.17, direction: "left", random: false }],
    RATE,
    rng,
    {},
  );
  assert.equal(right[17], 0);
  assert.equal(left[0], 17);
  for (let k = 0; k < 50; k++) {
    const y = applyChain(
      x,
      [{ type: "roll", fraction: 0.17, direction: "left", random: true }],
      RATE,
      rng,
      {},
    );
    const shift = (100 - y.indexOf(0)) % 100;
    assert.ok(shift >= 0 && shift <= 17, `left shift ${shift}`);
  }
});

Deno.test("augment refuses unknown or missing background noise and bad options", () => {
  const options = AugmentOptions.parse({
    views: [{ name: "x", chain: [{ type: "background", noise: "dude" }] }],
  });
  assert.throws(
    () => stage.apply(batch(), options, ctx("e")),
    /noise clips are "pink"/,
  );
  assert.throws(
    () => stage.apply(batch(), options, ctx("e", {})),
    /no background noise was loaded/,
  );
  assert.equal(
    AugmentOptions.safeParse({
      views: [{ name: "x", chain: [{ type: "roll", random: false }] }],
    }).success,
    false,
  );
  assert.equal(
    AugmentOptions.safeParse({ views: [{ name: "a" }, { name: "a" }] }).success,
    false,
  );
  assert.equal(
    AugmentOptions.safeParse({
      views: [{ name: "a", chain: [{ type: "pad" }] }],
    }).success,
    false,
  );
  assert.equal(AugmentOptions.safeParse({ views: [] }).success, false);
});
