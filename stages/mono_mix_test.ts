import assert from "node:assert/strict";
import { mixToMono, stage } from "./mono_mix.ts";
import type { MapContext } from "../pipeline/types.ts";

const f32 = (xs: number[]) => new Float32Array(xs);

Deno.test("mixToMono averages two channels sample by sample", () => {
  const mono = mixToMono([f32([1, 0, -0.5, 0.3]), f32([0, 0.5, 0.5, 0.1])]);
  assert.ok(mono instanceof Float32Array);
  assert.deepEqual(mono, f32([0.5, 0.25, 0, 0.2]));
});

Deno.test("mixToMono averages three channels sample by sample", () => {
  const mono = mixToMono([
    f32([3, 1.5, 0]),
    f32([0, -0.75, 6]),
    f32([-6, 2.25, 0]),
  ]);
  assert.deepEqual(mono, f32([-1, 1, 2]));
  const inexact = mixToMono([f32([0.3]), f32([-0.6]), f32([0.9])]);
  assert.ok(Math.abs(inexact[0] - 0.2) < 1e-7, `got ${inexact[0]}`);
});

Deno.test("mixToMono does not modify its input channels", () => {
  const a = f32([1, 2]);
  const b = f32([3, 4]);
  mixToMono([a, b]);
  assert.deepEqual([a, b], [f32([1, 2]), f32([3, 4])]);
});

Deno.test("mixToMono passes a single channel through as the same array", () => {
  const only = f32([0.1, -0.2, 0.3]);
  assert.equal(mixToMono([only]), only);
});

Deno.test("mixToMono throws a RangeError naming both lengths for mismatched channels", () => {
  assert.throws(
    () => mixToMono([f32([1, 2, 3]), f32([1, 2])]),
    (e: unknown) =>
      e instanceof RangeError &&
      e.message ===
        "Cannot mix channels of different lengths: 3 and 2 samples",
  );
});

Deno.test("mixToMono throws a RangeError for zero channels", () => {
  assert.throws(
    () => mixToMono([]),
    (e: unknown) => e instanceof RangeError && /no channels/.test(e.message),
  );
});

Deno.test("stage.apply mixes every example and keeps the other fields", () => {
  const a = f32([1, 0.5]);
  const b = f32([0, -0.5]);
  const c = f32([0.25, 0.75]);
  const batch = {
    size: 2,
    split: "train",
    phase: "fit" as const,
    label: [0, 1],
    channels: [[a, b], [c]],
  };
  const out = stage.apply(batch, {}, {} as unknown as MapContext);
  assert.equal(out.size, 2);
  assert.equal(out.split, "train");
  assert.equal(out.phase, "fit");
  assert.deepEqual(out.label, [0, 1]);
  assert.equal(out.channels, batch.channels);
  const waveform = out.waveform as Float32Array[];
  assert.equal(waveform.length, 2);
  assert.deepEqual(waveform[0], f32([0.5, 0]));
  assert.equal(waveform[1], c);
  assert.equal("waveform" in batch, false, "input batch must not be mutated");
});

Deno.test("stage declares it takes channels and provides waveform", () => {
  assert.equal(stage.id, "mono_mix");
  assert.equal(stage.kind, "map");
  assert.deepEqual(stage.takes, ["channels"]);
  assert.deepEqual(stage.provides, ["waveform"]);
  assert.equal(stage.options.safeParse({}).success, true);
  assert.equal(stage.options.safeParse({ gain: 1 }).success, false);
});
