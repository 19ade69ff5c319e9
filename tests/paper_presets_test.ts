/**
 * The paper presets (`presets/{am,sc1,sc2,vs,cs}.yaml`) and their ablations
 * (`presets/ablations/`): every file compiles (without opening any dataset),
 * the compiled values match the AMAuT reference's per-dataset tables
 * (`amaut-reference.md` §0, §8, §9, §10), each model has the paper's exact
 * parameter count, and each ablation differs from its parent in exactly the
 * intended options.
 *
 * @module
 */
import assert from "node:assert/strict";
import { resolve } from "node:path";
import { compile } from "../pipeline/mod.ts";
import type { Plan, PlannedStage } from "../pipeline/mod.ts";
import { BUILTIN_STAGES } from "../stages/mod.ts";
import { ModelOptions, PAPER_MODELS, parameterCount } from "../model/config.ts";
import { speechCommandsClasses } from "../stages/datasets/speech_commands.ts";
import { AUDIOMNIST_CLASSES } from "../stages/datasets/audiomnist.ts";
import { VOCALSOUND_CLASSES } from "../stages/datasets/vocalsound.ts";
import { COCHLSCENE_CLASSES } from "../stages/datasets/cochlscene.ts";

type Options = Record<string, unknown>;

async function planOf(file: string): Promise<Plan> {
  return (await compile(file, { builtins: BUILTIN_STAGES })).plan;
}

function stage(plan: Plan, name: string): PlannedStage {
  const s = plan.stages.find((s) => s.name === name);
  assert.ok(s, `${plan.name}: no stage named "${name}"`);
  return s;
}

function opts(plan: Plan, name: string): Options {
  return stage(plan, name).options as Options;
}

/** Classes of a compiled plan's dataset, via its layout. */
function classCount(data: Options): number {
  switch (data.layout) {
    case "speech_commands":
      return speechCommandsClasses(data.version as 1 | 2).length;
    case "audiomnist":
      return AUDIOMNIST_CLASSES.length;
    case "vocalsound":
      return VOCALSOUND_CLASSES.length;
    case "cochlscene":
      return COCHLSCENE_CLASSES.length;
    default:
      throw new Error(`unexpected layout ${data.layout}`);
  }
}

/** One row of the reference's per-dataset tables. */
interface Expected {
  layout: string;
  root: string;
  version?: number;
  backgroundNoise?: string;
  sampleRate: number;
  samples: number;
  clip: "head" | "none";
  nFft: number;
  winLength: number;
  hopLength: number;
  nMels: number;
  targetFrames: number;
  width: number;
  groups: number[];
  tokens: number;
  head: "avg" | "fce";
  classes: number;
  params: number;
  trainViews: number;
  epochs: number;
  lrCardinality: number;
  selectOn: string;
  merge: "logits" | "softmax";
  ttda: {
    epochs: number;
    featureLrDecay: number;
    classifierLrDecay: number;
    alpha: number;
    beta: number;
    gamma: number;
    q: number;
  };
}

/** A path of the repository as the compiled plan holds it (absolute). */
const fromRepo = (path: string) =>
  resolve(new URL("../", import.meta.url).pathname, path);

const SC_NOISE = "data/speech_commands/_background_noise_";
const AM_VS_CS_TTDA = {
  epochs: 50,
  featureLrDecay: 0.55,
  classifierLrDecay: 1.0,
  alpha: 1.0,
  beta: 0.5,
  gamma: 0.5,
  q: 1.1,
};

const EXPECTED: Record<"am" | "sc1" | "sc2" | "vs" | "cs", Expected> = {
  am: {
    layout: "audiomnist",
    root: "data/AudioMNIST/data",
    sampleRate: 48000,
    samples: 48000,
    clip: "none",
    nFft: 2048,
    winLength: 800,
    hopLength: 302,
    nMels: 80,
    targetFrames: 160,
    width: 128,
    groups: [6, 8],
    tokens: 20,
    head: "avg",
    classes: 10,
    params: 99_126_548,
    trainViews: 1,
    epochs: 30,
    lrCardinality: 40,
    selectOn: "test",
    merge: "logits",
    ttda: AM_VS_CS_TTDA,
  },
  sc1: {
    layout: "speech_commands",
    root: "data/speech_commands",
    version: 1,
    // backgroundNoise unset: the layout's own _background_noise_ under root.
    sampleRate: 16000,
    samples: 16000,
    clip: "none",
    nFft: 1024,
    winLength: 400,
    hopLength: 155,
    nMels: 80,
    targetFrames: 104,
    width: 128,
    groups: [6, 12],
    tokens: 13,
    head: "avg",
    classes: 30,
    params: 103_070_780,
    trainViews: 4,
    epochs: 50,
    lrCardinality: 50,
    selectOn: "validation",
    merge: "logits",
    ttda: {
      epochs: 50,
      featureLrDecay: 0.45,
      classifierLrDecay: 0.45,
      alpha: 0.2,
      beta: 1.0,
      gamma: 0.0,
      q: 0.8,
    },
  },
  sc2: {
    layout: "speech_commands",
    root: "data/speech-commands_v2/speech_commands_v0.02",
    version: 2,
    // backgroundNoise unset: the layout's own _background_noise_ under root.
    sampleRate: 16000,
    samples: 16000,
    clip: "none",
    nFft: 1024,
    winLength: 400,
    hopLength: 155,
    nMels: 80,
    targetFrames: 104,
    width: 128,
    groups: [6, 12],
    tokens: 13,
    head: "avg",
    classes: 35,
    params: 103_072_070,
    trainViews: 4,
    epochs: 50,
    lrCardinality: 50,
    selectOn: "validation",
    merge: "logits",
    ttda: {
      epochs: 80,
      featureLrDecay: 0.45,
      classifierLrDecay: 0.45,
      alpha: 0.0,
      beta: 1.0,
      gamma: 0.2,
      q: 1.1,
    },
  },
  vs: {
    layout: "vocalsound",
    root: "data/vocalsound_16k",
    backgroundNoise: SC_NOISE,
    sampleRate: 16000,
    samples: 160000,
    clip: "head",
    nFft: 1024,
    winLength: 400,
    hopLength: 154,
    nMels: 64,
    targetFrames: 1040,
    width: 64,
    groups: [6, 4, 8],
    tokens: 65,
    head: "fce",
    classes: 6,
    params: 97_005_989,
    trainViews: 4,
    epochs: 35,
    lrCardinality: 80,
    selectOn: "validation",
    merge: "softmax",
    ttda: AM_VS_CS_TTDA,
  },
  cs: {
    layout: "cochlscene",
    root: "data/CochlScene",
    backgroundNoise: SC_NOISE,
    sampleRate: 44100,
    samples: 441000,
    clip: "none",
    nFft: 2048,
    winLength: 800,
    hopLength: 300,
    nMels: 64,
    targetFrames: 1471,
    width: 64,
    groups: [6, 4, 12],
    tokens: 92,
    head: "fce",
    classes: 13,
    params: 100_976_556,
    trainViews: 4,
    epochs: 20,
    lrCardinality: 40,
    selectOn: "validation",
    merge: "logits",
    ttda: AM_VS_CS_TTDA,
  },
};

const STAGE_ORDER = [
  "load",
  "mono_mix",
  "augment",
  "ttau_views",
  "ttda_views",
  "fixed_length",
  "mel",
  "tokenize",
  "train",
  "test_time_augmentation",
  "test_time_adaptation",
  "report",
];

for (const [id, want] of Object.entries(EXPECTED)) {
  Deno.test(`paper preset ${id}: values match the reference`, async () => {
    const file = `presets/${id}.yaml`;
    const text = await Deno.readTextFile(file);
    assert.ok(
      text.startsWith(
        "# yaml-language-server: $schema=../schemas/pipeline.schema.json\n",
      ),
    );
    const plan = await planOf(file);
    assert.equal(plan.name, id);
    assert.deepEqual(plan.stages.map((s) => s.name), STAGE_ORDER);
    assert.equal(plan.runtime.seed, 2025);

    // Data: layout, default root (written relative to presets/, so the
    // repository's data/ folder), classes via the layout.
    const data = plan.data as Options;
    assert.equal(data.layout, want.layout);
    assert.equal(data.root, fromRepo(want.root));
    if (want.version !== undefined) assert.equal(data.version, want.version);
    if (id === "am") {
      assert.equal(data.fold, 0);
      assert.equal(data.trainOn, "trainValidation");
    }
    assert.equal(classCount(data), want.classes);
    assert.equal(
      opts(plan, "load").backgroundNoise,
      want.backgroundNoise && fromRepo(want.backgroundNoise),
    );

    // Training views: count, lengths, pad position, noise files.
    const augment = opts(plan, "augment") as {
      views: { name: string; chain: Options[] }[];
      mode: string;
    };
    assert.equal(augment.mode, "multiview");
    assert.equal(augment.views.length, want.trainViews);
    assert.deepEqual(stage(plan, "augment").phases, ["fit"]);
    for (const v of augment.views) {
      const pads = v.chain.filter((t) => t.type === "pad");
      assert.equal(pads.length, 1, `${v.name}: one pad`);
      assert.equal(pads[0].samples, want.samples);
      assert.equal(pads[0].position, "random");
      assert.equal(pads[0].clip, want.clip);
    }
    const shift = augment.views[0].chain;
    assert.deepEqual(shift.map((t) => t.type), ["pad", "roll"]);
    assert.equal(shift[1].fraction, 0.17);
    assert.equal(shift[1].direction, "both");
    assert.equal(shift[1].random, true);
    if (want.trainViews === 4) {
      const [, noise, dude, pink] = augment.views.map((v) => v.chain);
      assert.deepEqual(noise.map((t) => t.type), ["noise", "pad"]);
      assert.equal(noise[0].kind, "uniform");
      assert.equal(noise[0].scale, 0.015);
      for (
        const [chain, clip] of [[dude, "dude_miaowing"], [
          pink,
          "pink_noise",
        ]] as const
      ) {
        assert.deepEqual(chain.map((t) => t.type), ["background", "pad"]);
        assert.equal(chain[0].noise, clip);
        assert.equal(chain[0].snrDb, 50);
      }
    }

    // Fixed length (fit and eval only; ttau and adapt views pad themselves).
    const fixed = opts(plan, "fixed_length");
    assert.deepEqual(stage(plan, "fixed_length").phases, ["fit", "eval"]);
    assert.equal(fixed.samples, want.samples);
    assert.deepEqual(fixed.pad, { fit: "random", eval: "center" });
    assert.equal(fixed.clip, want.clip);

    // Mel.
    const mel = opts(plan, "mel");
    assert.equal(mel.sampleRateHz, want.sampleRate);
    assert.equal(mel.nFft, want.nFft);
    assert.equal(mel.winLength, want.winLength);
    assert.equal(mel.hopLength, want.hopLength);
    assert.equal(mel.nMels, want.nMels);
    assert.equal(mel.targetFrames, want.targetFrames);
    assert.equal(mel.fMinHz, 0);
    assert.equal(mel.fMaxHz, undefined);
    assert.equal(mel.topDb, 80);
    assert.equal(mel.scaleDivisor, 40);
    // STFT frames (center=True) are 1 + floor(L / hop); AM and VS pad one column.
    const frames = 1 + Math.floor(want.samples / want.hopLength);
    assert.equal(
      want.targetFrames - frames,
      id === "am" || id === "vs" ? 1 : 0,
    );

    // Train.
    const train = opts(plan, "train");
    assert.equal(train.epochs, want.epochs);
    assert.equal(train.batchSize, 32);
    assert.equal(train.lr, 1e-3);
    assert.equal(train.lrGamma, 10);
    assert.equal(train.lrCardinality, want.lrCardinality);
    assert.equal(train.lrPower, 0.75);
    assert.equal(train.momentum, 0.9);
    assert.equal(train.weightDecay, 1e-3);
    assert.equal(train.nesterov, false);
    assert.equal(train.labelSmoothing, 0.1);
    assert.equal(train.selectOn, want.selectOn);
    const model = train.model as ModelOptions;
    assert.equal(model.width, want.width);
    assert.deepEqual(model.groups, want.groups);
    assert.equal(model.head, want.head);
    assert.equal(model.tokens, want.tokens);
    assert.equal(model.kernelSize, 7);
    assert.equal(model.tokenMode, "cls+tal");
    assert.equal(model.ffnNorm, false);
    assert.equal(model.dropout, 0.15);
    assert.equal(model.embedDim, 768);
    assert.equal(model.depth, 12);
    assert.equal(model.heads, 12);
    assert.equal(model.mlpDim, 3072);
    assert.equal(
      parameterCount(model, {
        nMels: mel.nMels as number,
        frames: mel.targetFrames as number,
        classes: classCount(data),
      }),
      want.params,
    );
    // The same configuration as model/config.ts's PAPER_MODELS entry.
    const paper = PAPER_MODELS[id as keyof typeof EXPECTED];
    // (the presets pin K, the reference's hard-coded embed_num, as `tokens`).
    assert.deepEqual(model, { ...paper.options, tokens: want.tokens });
    assert.deepEqual(
      { nMels: mel.nMels, frames: mel.targetFrames, classes: classCount(data) },
      paper.dims,
    );

    // TTAu: original first, then fixed ±17 % rolls; merge rule.
    const ttauViews = opts(plan, "ttau_views") as {
      views: { name: string; chain: Options[] }[];
    };
    assert.deepEqual(stage(plan, "ttau_views").phases, ["ttau"]);
    assert.deepEqual(ttauViews.views.map((v) => v.name), [
      "original",
      "left",
      "right",
    ]);
    const [orig, left, right] = ttauViews.views.map((v) => v.chain);
    const sc = id === "sc1" || id === "sc2";
    // SC: the Aug inputs are centre-padded and Orig is view 0. AM, VS and CS:
    // the Aug inputs are raw-length, and Orig/Mlt come from the eval pipeline.
    assert.deepEqual(
      orig,
      sc
        ? [{
          type: "pad",
          samples: want.samples,
          position: "center",
          clip: want.clip,
        }]
        : [],
    );
    assert.equal(
      opts(plan, "test_time_augmentation").origPhase,
      sc ? undefined : "eval",
    );
    for (const [chain, direction] of [[left, "left"], [right, "right"]]) {
      const roll = chain.at(-1)!;
      assert.deepEqual(roll, {
        type: "roll",
        fraction: 0.17,
        direction,
        random: false,
      });
      // SC centre-pads the Aug inputs; AM, VS and CS feed them unpadded.
      assert.equal(
        chain.length,
        id === "sc1" || id === "sc2" ? 2 : 1,
      );
    }
    const ttau = opts(plan, "test_time_augmentation");
    assert.equal(ttau.merge, want.merge);
    assert.equal(ttau.siblingRuns, true);
    assert.equal(ttau.batchSize, 32);
    assert.equal(ttau.split, "test");

    // TTDA: rates, decays, epochs, batch, schedule, views.
    const ttda = opts(plan, "test_time_adaptation");
    for (const [k, v] of Object.entries(want.ttda)) {
      assert.equal(ttda[k], v, `TTDA ${k}`);
    }
    assert.equal(ttda.batchSize, 70);
    assert.equal(ttda.lr, 1e-4);
    assert.equal(ttda.lrGamma, 30);
    assert.equal(ttda.lrCardinality, 50);
    assert.equal(ttda.lrStopBefore, 25);
    assert.equal(ttda.lrPower, 0.75);
    assert.equal(ttda.momentum, 0.9);
    assert.equal(ttda.weightDecay, 1e-3);
    assert.equal(ttda.nesterov, false);
    assert.equal(ttda.evalBatchSize, 32);
    assert.equal(ttda.split, "test");
    const ttdaViews = (opts(plan, "ttda_views") as {
      views: { chain: Options[] }[];
    }).views.map((v) => v.chain);
    assert.deepEqual(stage(plan, "ttda_views").phases, ["adapt"]);
    assert.equal(ttdaViews.length, 2);
    const rolls = ttdaViews.map((c) => c.at(-1)!);
    for (const r of rolls) {
      assert.equal(r.type, "roll");
      assert.equal(r.fraction, 0.17);
      assert.equal(r.random, true);
    }
    assert.deepEqual(
      rolls.map((r) => r.direction),
      id === "cs" ? ["both", "left"] : ["right", "left"],
    );
    const before = ttdaViews.map((c) => c.slice(0, -1));
    const expectedBefore: Options[] = {
      sc1: [{
        type: "pad",
        samples: 16000,
        position: "random",
        clip: "none",
      }],
      sc2: [{
        type: "pad",
        samples: 16000,
        position: "center",
        clip: "none",
      }],
      am: [{
        type: "pad",
        samples: 48000,
        position: "center",
        clip: "none",
      }],
      vs: [
        { type: "pad", samples: 16000, position: "center", clip: "none" },
        { type: "clip", samples: 160000 },
      ],
      cs: [],
    }[id]!;
    for (const b of before) assert.deepEqual(b, expectedBefore);
  });
}

/** Every ablation: its parent and the options it must change. */
const ABLATIONS: Record<
  string,
  { parent: string; stage: string; change: (o: Options) => void }
> = {
  "sc1_one_view": {
    parent: "sc1",
    stage: "augment",
    change: (o) => {
      o.views = (o.views as unknown[]).slice(0, 1);
    },
  },
  "cs_one_view": {
    parent: "cs",
    stage: "augment",
    change: (o) => {
      o.views = (o.views as unknown[]).slice(0, 1);
    },
  },
  "sc1_sequence": {
    parent: "sc1",
    stage: "augment",
    change: (o) => {
      o.mode = "sequence";
    },
  },
  "cs_sequence": {
    parent: "cs",
    stage: "augment",
    change: (o) => {
      o.mode = "sequence";
    },
  },
  "sc1_conv3": {
    parent: "sc1",
    stage: "train",
    change: (o) => {
      (o.model as Options).kernelSize = 3;
    },
  },
  "cs_conv3": {
    parent: "cs",
    stage: "train",
    change: (o) => {
      (o.model as Options).kernelSize = 3;
    },
  },
  "cs_cls": {
    parent: "cs",
    stage: "train",
    change: (o) => {
      (o.model as Options).tokenMode = "cls";
    },
  },
  "cs_cls_distil": {
    parent: "cs",
    stage: "train",
    change: (o) => {
      (o.model as Options).tokenMode = "cls+distil";
    },
  },
  "vs_cls": {
    parent: "vs",
    stage: "train",
    change: (o) => {
      (o.model as Options).tokenMode = "cls";
    },
  },
  "vs_cls_distil": {
    parent: "vs",
    stage: "train",
    change: (o) => {
      (o.model as Options).tokenMode = "cls+distil";
    },
  },
};

Deno.test("presets/ablations holds exactly the listed ablations", () => {
  const files = [...Deno.readDirSync("presets/ablations")]
    .map((e) => e.name)
    .filter((n) => n.endsWith(".yaml"))
    .map((n) => n.replace(/\.yaml$/, ""))
    .sort();
  assert.deepEqual(files, Object.keys(ABLATIONS).sort());
});

for (
  const [id, { parent, stage: changed, change }] of Object.entries(ABLATIONS)
) {
  Deno.test(`ablation ${id} changes only ${changed} of ${parent}`, async () => {
    const file = `presets/ablations/${id}.yaml`;
    const text = await Deno.readTextFile(file);
    assert.ok(
      text.startsWith(
        "# yaml-language-server: $schema=../../schemas/pipeline.schema.json\n",
      ),
    );
    assert.match(text, /^# Table [345]/m, "a comment naming the table");
    assert.match(text, /^extends: \.\.\/\w+\.yaml$/m);
    const [child, base] = await Promise.all([
      planOf(file),
      planOf(`presets/${parent}.yaml`),
    ]);
    assert.equal(child.name, id);
    assert.deepEqual(child.data, base.data);
    assert.deepEqual(child.runtime, base.runtime);
    assert.deepEqual(
      child.stages.map((s) => [s.name, s.id, s.phases]),
      base.stages.map((s) => [s.name, s.id, s.phases]),
    );
    for (const [i, s] of base.stages.entries()) {
      const want = structuredClone(s.options) as Options;
      if (s.name === changed) {
        change(want);
        assert.notDeepEqual(
          want,
          s.options,
          "the change must change something",
        );
      }
      assert.deepEqual(child.stages[i].options, want, `stage ${s.name}`);
    }
    // Model ablations still build: K is unchanged, the count is defined.
    const train = child.stages.find((s) => s.name === "train")!
      .options as Options;
    const mel = child.stages.find((s) => s.name === "mel")!.options as Options;
    const count = parameterCount(train.model as ModelOptions, {
      nMels: mel.nMels as number,
      frames: mel.targetFrames as number,
      classes: classCount(child.data as Options),
    });
    assert.ok(count > 90_000_000 && count < 110_000_000, String(count));
  });
}

Deno.test("paper presets take --set data.root, data.fold and load.backgroundNoise", async () => {
  const { plan } = await compile("presets/am.yaml", {
    builtins: BUILTIN_STAGES,
    overrides: ["data.root=/datasets/AudioMNIST/data", "data.fold=3"],
  });
  assert.equal((plan.data as Options).root, "/datasets/AudioMNIST/data");
  assert.equal((plan.data as Options).fold, 3);
  const sc1 = await compile("presets/sc1.yaml", {
    builtins: BUILTIN_STAGES,
    overrides: ["load.backgroundNoise=/noise"],
  });
  assert.equal(opts(sc1.plan, "load").backgroundNoise, "/noise");
});
