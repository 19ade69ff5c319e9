import assert from "node:assert/strict";
import { createRng } from "../pipeline/rng.ts";
import type { Batch, MapContext } from "../pipeline/types.ts";
import {
  fitLength,
  FixedLengthOptions,
  lengthWarnings,
  stage,
} from "./fixed_length.ts";

const w = (n: number) => Float32Array.from({ length: n }, (_, i) => i + 1);

Deno.test("fitLength pads centred with floor(deficit / 2) at the head", () => {
  assert.deepEqual([...fitLength(w(3), 8, "center", "head")], [
    0,
    0,
    1,
    2,
    3,
    0,
    0,
    0,
  ]);
  assert.deepEqual([...fitLength(w(2), 5, "center", "head")], [0, 1, 2, 0, 0]);
});

Deno.test("fitLength pads at the end and returns equal-length input unchanged", () => {
  assert.deepEqual([...fitLength(w(2), 4, "end", "head")], [1, 2, 0, 0]);
  const same = w(4);
  assert.equal(fitLength(same, 4, "random", "head", createRng("x", 0)), same);
});

Deno.test("fitLength draws the random head pad uniformly from 0..deficit inclusive", () => {
  const rng = createRng("pad", 1);
  const counts = new Array(4).fill(0);
  for (let i = 0; i < 4000; i++) {
    const out = fitLength(w(5), 8, "random", "head", rng);
    const head = out.indexOf(1);
    assert.deepEqual([...out.slice(head, head + 5)], [1, 2, 3, 4, 5]);
    counts[head]++;
  }
  for (const c of counts) assert.ok(c > 850 && c < 1150, `counts ${counts}`);
});

Deno.test("fitLength clips the head of longer clips, or leaves them with clip none", () => {
  assert.deepEqual([...fitLength(w(6), 4, "center", "head")], [1, 2, 3, 4]);
  assert.equal(fitLength(w(6), 4, "center", "none").length, 6);
  assert.throws(
    () => fitLength(w(2), 4, "random", "head"),
    /Cannot fit the length with random padding: no rng given/,
  );
});

Deno.test("FixedLengthOptions needs exactly one of samples and seconds", () => {
  assert.equal(FixedLengthOptions.safeParse({}).success, false);
  assert.equal(
    FixedLengthOptions.safeParse({ samples: 4, seconds: 1 }).success,
    false,
  );
  const ok = FixedLengthOptions.parse({ seconds: 0.5 });
  assert.deepEqual(ok.pad, { fit: "random", eval: "center" });
  assert.equal(ok.clip, "head");
});

Deno.test("fixed_length stage uses seconds times each clip's rate and the phase's pad position", () => {
  const ctx = { rng: createRng("b", 0) } as unknown as MapContext;
  const batch: Batch = {
    size: 2,
    split: "test",
    phase: "eval",
    waveform: [w(2), w(3)],
    sampleRate: [4, 6],
    label: [0, 1],
  };
  const out = stage.apply(batch, FixedLengthOptions.parse({ seconds: 1 }), ctx);
  assert.deepEqual((out.waveform as Float32Array[]).map((x) => [...x]), [
    [0, 1, 2, 0],
    [0, 1, 2, 3, 0, 0],
  ]);
  assert.deepEqual(out.label, [0, 1]);
  const fit = stage.apply(
    { ...batch, phase: "fit" },
    FixedLengthOptions.parse({ samples: 10 }),
    { rng: createRng("b", 0) } as unknown as MapContext,
  );
  const again = stage.apply(
    { ...batch, phase: "fit" },
    FixedLengthOptions.parse({ samples: 10 }),
    { rng: createRng("b", 0) } as unknown as MapContext,
  );
  assert.deepEqual(fit.waveform, again.waveform);
  assert.ok((fit.waveform as Float32Array[]).every((x) => x.length === 10));
});

Deno.test("lengthWarnings counts cut and mostly-padded clips above 2 %, naming files, splits and the option", () => {
  const clip = (i: number, seconds: number) => ({
    path: `/tmp/c${i}.wav`,
    samples: Math.round(seconds * 1000),
    sampleRateHz: 1000,
  });
  // 100 clips: 3 longer than 1 s, 2 shorter than 0.5 s.
  const train = Array.from({ length: 95 }, (_, i) => clip(i, 0.8));
  const test = [
    clip(95, 1.5),
    clip(96, 1.2),
    clip(97, 1.01),
    clip(98, 0.2),
    clip(99, 0.49),
  ];
  const options = FixedLengthOptions.parse({ seconds: 1 });
  const [cut, ...rest] = lengthWarnings(options, { train, test }, "fit_len");
  assert.equal(rest.length, 0, "2 of 100 padded is not above 2 %");
  assert.equal(
    cut,
    "fit_len: 3 of 100 clips (3.0 %; train 0, test 3), e.g. /tmp/c95.wav (1.50 s), /tmp/c96.wav (1.20 s), /tmp/c97.wav (1.01 s) are longer than 1 s and lose their end (clip: head); raise fit_len.seconds to keep more, or set fit_len.clip: none to keep them whole",
  );
  // clip: none keeps long clips whole: nothing is cut.
  assert.deepEqual(
    lengthWarnings(
      FixedLengthOptions.parse({ seconds: 1, clip: "none" }),
      { train, test },
    ),
    [],
  );
  const [padded] = lengthWarnings(
    FixedLengthOptions.parse({ samples: 1700 }),
    { train, test },
  );
  assert.match(
    padded,
    /^fixed_length: 97 of 100 clips \(97\.0 %; train 95, test 2\), e\.g\. \/tmp\/c0\.wav \(0\.80 s\), .* are shorter than half of 1700 samples and become mostly zero padding; lower fixed_length\.samples if that is not intended$/,
  );
});
