import assert from "node:assert/strict";
import { TINY_MODEL_ARGS } from "./tiny_model.ts";
import { fileURLToPath } from "node:url";
import { benchPresets, presetSpecs, synthOverrides } from "./presets_bench.ts";
import type { SynthSummary } from "../stages/datasets/synth.ts";

Deno.test("presetSpecs lists the presets, then the ablations", async () => {
  const specs = await presetSpecs(
    fileURLToPath(new URL("../presets/", import.meta.url)),
  );
  for (const s of ["am.yaml", "cs.yaml", "sc1.yaml", "sc2.yaml", "vs.yaml"]) {
    assert.ok(specs.includes(s), s);
  }
  const ablations = specs.filter((s) => s.startsWith("ablations/"));
  assert.equal(ablations.length, 10);
  assert.ok(specs.indexOf("vs.yaml") < specs.indexOf(ablations[0]));
});

Deno.test("synthOverrides points a spec at the data and sets epochs only where the stage exists", () => {
  const synth = {
    data: { layout: "speech_commands", root: "/d/sc", version: 1 },
    backgroundNoise: "/d/sc/_background_noise_",
  } as unknown as SynthSummary;
  assert.deepEqual(
    synthOverrides(synth, ["load", "train", "test_time_adaptation"], 2),
    [
      "data.root=/d/sc",
      "data.version=1",
      "load.backgroundNoise=/d/sc/_background_noise_",
      "train.epochs=2",
      "test_time_adaptation.epochs=2",
    ],
  );
  assert.deepEqual(synthOverrides(synth, ["load"], 1).slice(-1), [
    "load.backgroundNoise=/d/sc/_background_noise_",
  ]);
});

Deno.test("bench presets runs a chosen ablation end to end on cpu with a tiny model, and refuses unknown names", async () => {
  const dir = await Deno.makeTempDir({ prefix: "presets_bench_" });
  try {
    await assert.rejects(
      () => benchPresets(["--only", "sc9"]),
      /Cannot run "sc9": no such preset or ablation/,
    );
    const out = await benchPresets([
      "--backend",
      "cpu",
      "--only",
      "sc1_one_view",
      "--data",
      `${dir}/data`,
      "--out",
      `${dir}/runs`,
      ...TINY_MODEL_ARGS,
    ]) as {
      ok: number;
      failed: number;
      runs: { spec: string; status: string; splits: Record<string, number> }[];
    };
    assert.equal(out.failed, 0);
    assert.equal(out.ok, 1);
    assert.equal(out.runs[0].spec, "ablations/sc1_one_view.yaml");
    assert.deepEqual(out.runs[0].splits, {
      train: 60,
      validation: 30,
      test: 30,
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
