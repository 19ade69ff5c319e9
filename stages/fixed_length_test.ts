import assert from "node:assert/strict";
import { createRng } from "../pipeline/rng.ts";
import type { Batch, MapContext } from "../pipeline/types.ts";
import { fitLength, FixedLengthOptions, stage } from "./fixed_length.ts";

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
  assert.throws(() => fitLength(w(2), 4, "random", "head"), /needs an rng/);
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
