/**
 * Audio in, end to end: a tiny Speech Commands v1 tree (with stereo, 24-bit,
 * float and extensible files) through `load` → `mono_mix` → `fixed_length` →
 * `describe_data`, background noise as a dataset asset, and
 * `deno task data` reports (counts, problems, skipped files, exit codes).
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import * as z from "zod";
import {
  compile,
  defineStage,
  openSource,
  runPipeline,
} from "../pipeline/mod.ts";
import { BUILTIN_STAGES } from "../stages/mod.ts";
import { SPEECH_COMMANDS_V1_CLASSES } from "../stages/datasets/speech_commands.ts";
import { encodeWav, toneInt16, writeToneWav } from "./_fixtures.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const RATE = 16000;

/** A Speech Commands v1 tree: 2 clips per class, one in each list for the first classes. */
async function speechCommands(): Promise<string> {
  const root = await Deno.makeTempDir({ prefix: "data_test_sc_" });
  const validation: string[] = [];
  const testing: string[] = [];
  for (const [k, word] of SPEECH_COMMANDS_V1_CLASSES.entries()) {
    for (let i = 0; i < 2; i++) {
      await writeToneWav(join(root, word, `spk${i}_nohash_0.wav`), {
        sampleRateHz: RATE,
        seconds: 0.5 + 0.01 * k,
        frequencyHz: 200 + 20 * k,
      });
    }
  }
  // Encodings the loader must read, as extra training clips of "yes".
  const tone = toneInt16(RATE / 2, 440, RATE);
  const extra: Record<string, Uint8Array> = {
    "stereo.wav": encodeWav([tone, tone], { sampleRateHz: RATE }),
    "deep.wav": encodeWav([Array.from(tone, (v) => v * 256)], {
      sampleRateHz: RATE,
      encoding: "pcm24",
    }),
    "float.wav": encodeWav([Array.from(tone, (v) => v / 32768)], {
      sampleRateHz: RATE,
      encoding: "float32",
    }),
    "ext.wav": encodeWav([tone], { sampleRateHz: RATE, extensible: true }),
  };
  for (const [name, bytes] of Object.entries(extra)) {
    await Deno.writeFile(join(root, "yes", name), bytes);
  }
  for (const word of SPEECH_COMMANDS_V1_CLASSES.slice(0, 5)) {
    validation.push(`${word}/spk0_nohash_0.wav`);
  }
  for (const word of SPEECH_COMMANDS_V1_CLASSES.slice(5, 8)) {
    testing.push(`${word}/spk1_nohash_0.wav`);
  }
  await Deno.writeTextFile(
    join(root, "validation_list.txt"),
    validation.join("\n") + "\n",
  );
  await Deno.writeTextFile(
    join(root, "testing_list.txt"),
    testing.join("\n") + "\n",
  );
  await writeToneWav(join(root, "_background_noise_", "pink_noise.wav"), {
    sampleRateHz: RATE,
    seconds: 2,
  });
  await writeToneWav(join(root, "_background_noise_", "white_noise.wav"), {
    sampleRateHz: RATE,
    seconds: 1,
  });
  return root;
}

async function spec(
  dir: string,
  root: string,
  loadWith = "{ workers: 0 }",
  extra = "",
): Promise<string> {
  const path = join(dir, "spec.yaml");
  await Deno.writeTextFile(
    path,
    `name: sc
runtime: { backend: cpu, outputDir: ${JSON.stringify(join(dir, "runs"))} }
data: { layout: speech_commands, root: ${JSON.stringify(root)}, version: 1 }
stages:
  - use: load
    with: ${loadWith}
  - use: mono_mix
  - use: fixed_length
    with: { seconds: 1 }
  - use: describe_data
${extra}`,
  );
  return path;
}

const noiseProbe = defineStage({
  id: "noise_probe",
  version: "1.0.0",
  api: 1,
  kind: "step",
  summary: "Report the background noise assets",
  options: z.strictObject({}),
  takes: ["waveform"],
  provides: ["noiseSeconds"],
  run(_o, ctx) {
    const noise = ctx.assets.backgroundNoise as Record<
      string,
      { samples: Float32Array; sampleRateHz: number }
    >;
    return Promise.resolve({
      noiseSeconds: Object.fromEntries(
        Object.entries(noise).map((
          [k, v],
        ) => [k, v.samples.length / v.sampleRateHz]),
      ),
    });
  },
});

Deno.test("speech commands v1 loads end to end: splits, classes, encodings, fixed length, noise", async () => {
  const root = await speechCommands();
  const dir = await Deno.makeTempDir();
  const path = await spec(
    dir,
    root,
    `{ workers: 2, backgroundNoise: ${
      JSON.stringify(join(root, "_background_noise_"))
    } }`,
    "  - use: noise_probe\n",
  );
  const compiled = await compile(path, {
    builtins: { ...BUILTIN_STAGES, noise_probe: noiseProbe },
  });
  const result = await runPipeline(compiled, {});
  const summary = result.values.dataSummary as Record<
    string,
    {
      clips: number;
      perClass: Record<string, number>;
      sampleRatesHz: number[];
      durationSeconds: { min: number; max: number };
    }
  >;
  assert.equal(summary.train.clips, 60 - 8 + 4);
  assert.equal(summary.validation.clips, 5);
  assert.equal(summary.test.clips, 3);
  assert.equal(summary.train.perClass.yes, 6);
  assert.equal(summary.train.perClass.zero, 1);
  assert.deepEqual(summary.train.sampleRatesHz, [RATE]);
  assert.deepEqual(summary.train.durationSeconds, {
    min: 1,
    median: 1,
    max: 1,
  });
  assert.deepEqual(result.values.classes, SPEECH_COMMANDS_V1_CLASSES);
  assert.deepEqual(result.values.noiseSeconds, {
    pink_noise: 2,
    white_noise: 1,
  });
  const manifest = JSON.parse(
    await Deno.readTextFile(join(result.runDir, "manifest.json")),
  );
  assert.equal(manifest.data.info.layout, "speech_commands");
  assert.equal(manifest.data.info.sampleRateHz, RATE);
  assert.deepEqual(manifest.data.info.headers.bitsPerSample, [16, 24, 32]);
});

Deno.test("a bad file stops the run before training with fail, and is skipped and listed with skip", async () => {
  const root = await speechCommands();
  await Deno.writeFile(
    join(root, "dog", "broken.wav"),
    new TextEncoder().encode("RIFF....WAVEjunk"),
  );
  const dir = await Deno.makeTempDir();
  const failing = await compile(await spec(dir, root), {
    builtins: BUILTIN_STAGES,
  });
  await assert.rejects(
    runPipeline(failing, {}),
    (e: Error) =>
      e.message.startsWith(
        'Cannot finish stage "load": Cannot open dataset "speech_commands"',
      ) &&
      e.message.includes(join(root, "dog", "broken.wav")),
  );
  const skipping = await compile(
    await spec(dir, root, "{ workers: 0, onBadFile: skip }"),
    { builtins: BUILTIN_STAGES },
  );
  const result = await runPipeline(skipping, {});
  const manifest = JSON.parse(
    await Deno.readTextFile(join(result.runDir, "manifest.json")),
  );
  assert.equal(manifest.status, "ok");
  assert.deepEqual(manifest.skipped.map((s: { path: string }) => s.path), [
    join(root, "dog", "broken.wav"),
  ]);
});

async function dataTask(...args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-env",
      join(ROOT, "cli.ts"),
      "data",
      ...args,
    ],
    cwd: ROOT,
    stdin: "null",
    env: { NO_COLOR: "1" },
  }).output();
  const dec = new TextDecoder();
  return {
    code: out.code,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
  };
}

Deno.test("deno task data reports counts per split and class, rates and durations", async () => {
  const root = await speechCommands();
  const dir = await Deno.makeTempDir();
  const path = await spec(dir, root);
  const text = await dataTask(path);
  assert.equal(text.code, 0, text.stderr);
  assert.match(
    text.stdout,
    /audio {5}16000 Hz, 1\/2 channel\(s\), 16\/24\/32-bit/,
  );
  assert.match(text.stdout, /clips {2,}56 {2,}5 {2,}3$/m);
  assert.match(text.stdout, /^yes {2,}6 {2,}0 {2,}0$/m);
  assert.match(
    text.stdout,
    /duration {2}train: min 0\.500 s, median 0\.655 s, max 0\.790 s/,
  );
  assert.match(text.stdout, /problems {2}none/);
  const json = JSON.parse((await dataTask(path, "--json")).stdout);
  assert.equal(json.splits.train.perClass.zero, 1);
  assert.deepEqual(json.classes, SPEECH_COMMANDS_V1_CLASSES);
});

Deno.test("deno task data and the start of a run warn when many clips are cut or mostly padding", async () => {
  const root = await speechCommands(); // clips of 0.50 to 0.79 s
  const dir = await Deno.makeTempDir();
  const path = join(dir, "cut.yaml");
  await Deno.writeTextFile(
    path,
    `name: cut
runtime: { backend: cpu, outputDir: ${JSON.stringify(join(dir, "runs"))} }
data: { layout: speech_commands, root: ${JSON.stringify(root)}, version: 1 }
stages:
  - use: load
    with: { workers: 0 }
  - use: mono_mix
  - use: fixed_length
    name: crop
    with: { seconds: 0.6 }
  - use: describe_data
`,
  );
  const text = await dataTask(path);
  assert.equal(text.code, 0, text.stderr);
  const warning =
    /warning {3}crop: (\d+) of 64 clips \([\d.]+ %; train \d+, validation \d+, test \d+\), e\.g\. .*\.wav \(0\.\d\d s\).* are longer than 0\.6 s and lose their end \(clip: head\); raise crop\.seconds to keep more, or set crop\.clip: none to keep them whole/;
  assert.match(text.stdout, warning);
  assert.doesNotMatch(text.stdout, /problems {2}none/);
  const json = JSON.parse((await dataTask(path, "--json")).stdout);
  assert.equal(json.warnings.length, 1);
  // The run warns at its start, before any stage works, and records it.
  const lines: string[] = [];
  const compiled = await compile(path, { builtins: BUILTIN_STAGES });
  const result = await runPipeline(compiled, { console: (l) => lines.push(l) });
  const at = lines.findIndex((l) => /crop: \d+ of 64 clips/.test(l));
  assert.ok(at >= 0, lines.join("\n"));
  assert.match(lines[at], /warn/i);
  assert.ok(
    at < lines.findIndex((l) => /describe_data/.test(l)),
    "warned before the first step",
  );
  const manifest = JSON.parse(
    await Deno.readTextFile(join(result.runDir, "manifest.json")),
  );
  assert.equal(manifest.dataWarnings.length, 1);
  assert.match(manifest.dataWarnings[0], /^crop: \d+ of 64 clips/);
});

Deno.test("deno task data lists every problem of a broken tree and exits 1", async () => {
  const root = await speechCommands();
  await Deno.remove(join(root, "testing_list.txt"));
  await Deno.remove(join(root, "wow"), { recursive: true });
  const dir = await Deno.makeTempDir();
  const r = await dataTask(await spec(dir, root));
  assert.equal(r.code, 1);
  assert.match(
    r.stderr,
    /Cannot open dataset "speech_commands" at .*: 2 problems/,
  );
  assert.match(r.stderr, /testing_list\.txt/);
  assert.match(r.stderr, /wow/);
  const bad = await dataTask(join(ROOT, "tests/errors/unknown_key.yaml"));
  assert.equal(bad.code, 2);
});

/** Cycles through encodings so every layout test decodes each kind of file. */
function variedWav(i: number, rate: number): Uint8Array {
  const tone = toneInt16(Math.round(rate * 0.05), 300 + 10 * i, rate);
  switch (i % 5) {
    case 0:
      return encodeWav([tone], { sampleRateHz: rate });
    case 1:
      return encodeWav([tone, tone], { sampleRateHz: rate });
    case 2:
      return encodeWav([Array.from(tone, (v) => v * 256)], {
        sampleRateHz: rate,
        encoding: "pcm24",
      });
    case 3:
      return encodeWav([Array.from(tone, (v) => v / 32768)], {
        sampleRateHz: rate,
        encoding: "float32",
      });
    default:
      return encodeWav([tone, tone], { sampleRateHz: rate, extensible: true });
  }
}

async function put(root: string, rel: string, bytes: Uint8Array) {
  await Deno.mkdir(join(root, rel, ".."), { recursive: true });
  await Deno.writeFile(join(root, rel), bytes);
}

/** Opens `data` through the load stage, decodes every clip, returns split sizes and label counts. */
async function openAndDecode(data: string, seed = 0) {
  const dir = await Deno.makeTempDir();
  const path = join(dir, "spec.yaml");
  await Deno.writeTextFile(
    path,
    `name: t\nruntime: { backend: cpu, seed: ${seed} }\ndata: ${data}\nstages:\n  - use: load\n    with: { workers: 0 }\n`,
  );
  const { openSource } = await import("../pipeline/mod.ts");
  const dataset = await openSource(
    await compile(path, { builtins: BUILTIN_STAGES }),
  );
  const labels: Record<string, number[]> = {};
  for (const [split, n] of Object.entries(dataset.splits)) {
    labels[split] = [];
    for (let i = 0; i < n; i++) {
      const ex = (await dataset.example(split, i))!;
      const channels = ex.channels as Float32Array[];
      assert.ok(
        channels[0].length > 0 && channels[0].some((v) => v !== 0),
        String(ex.path),
      );
      labels[split].push(ex.label as number);
    }
  }
  return { dataset, labels };
}

Deno.test("audiomnist loads by speaker fold and decodes every encoding", async () => {
  const root = await Deno.makeTempDir({ prefix: "data_test_am_" });
  let i = 0;
  for (let speaker = 1; speaker <= 60; speaker++) {
    const s = String(speaker).padStart(2, "0");
    for (const digit of [speaker % 10, (speaker + 3) % 10]) {
      await put(root, `${s}/${digit}_${s}_0.wav`, variedWav(i++, 48000));
    }
  }
  const { dataset, labels } = await openAndDecode(
    `{ layout: audiomnist, root: ${JSON.stringify(root)}, fold: 0 }`,
  );
  assert.deepEqual(dataset.splits, { train: 96, validation: 24, test: 24 });
  assert.equal(dataset.info.sampleRateHz, 48000);
  // fold 0 tests on speakers 26, 52, 60, 18, 32, 42, 5, 13, 22, 33, 45, 51
  const testDigits = [26, 52, 60, 18, 32, 42, 5, 13, 22, 33, 45, 51].flatMap((
    s,
  ) => [s % 10, (s + 3) % 10]);
  assert.deepEqual([...labels.test].sort(), testDigits.sort());
  assert.deepEqual(dataset.classes, [
    "0",
    "1",
    "2",
    "3",
    "4",
    "5",
    "6",
    "7",
    "8",
    "9",
  ]);
});

Deno.test("vocalsound loads the official json splits and decodes every encoding", async () => {
  const root = await Deno.makeTempDir({ prefix: "data_test_vs_" });
  const mids = [
    "/m/01j3sz",
    "/m/07plz5l",
    "/m/01b_21",
    "/m/0dl9sf8",
    "/m/01hsr_",
    "/m/07ppn3j",
  ];
  let i = 0;
  for (const [file, n] of [["tr", 12], ["val", 6], ["te", 6]] as const) {
    const data = [];
    for (let k = 0; k < n; k++) {
      const name = `f${i}.wav`;
      await put(root, `audio_16k/${name}`, variedWav(i++, 16000));
      data.push({ wav: `/some/original/path/${name}`, labels: mids[k % 6] });
    }
    await put(
      root,
      `datafiles/${file}.json`,
      new TextEncoder().encode(JSON.stringify({ data })),
    );
  }
  const { dataset, labels } = await openAndDecode(
    `{ layout: vocalsound, root: ${JSON.stringify(root)} }`,
  );
  assert.deepEqual(dataset.splits, { train: 12, validation: 6, test: 6 });
  assert.deepEqual(dataset.classes, [
    "Laughter",
    "Sigh",
    "Cough",
    "Throat clearing",
    "Sneeze",
    "Sniff",
  ]);
  assert.deepEqual([...labels.validation].sort(), [0, 1, 2, 3, 4, 5]);
});

Deno.test("cochlscene loads Train/Val/Test class folders in the reference class order", async () => {
  const root = await Deno.makeTempDir({ prefix: "data_test_cs_" });
  const classes = [
    "Bus",
    "Car",
    "Elevator",
    "Park",
    "Restaurant",
    "Street",
    "SubwayStation",
    "Cafe",
    "CrowdedIndoor",
    "Kitchen",
    "ResidentialArea",
    "Restroom",
    "Subway",
  ];
  let i = 0;
  for (const split of ["Train", "Val", "Test"]) {
    for (const c of classes) {
      await put(root, `${split}/${c}/${c}_${i}.wav`, variedWav(i++, 44100));
    }
  }
  await put(root, "Train/Bus/extra.wav", variedWav(1, 44100));
  const { dataset, labels } = await openAndDecode(
    `{ layout: cochlscene, root: ${JSON.stringify(root)} }`,
  );
  assert.deepEqual(dataset.splits, { train: 14, validation: 13, test: 13 });
  assert.deepEqual(dataset.classes, classes);
  assert.deepEqual(
    [...labels.test].sort((x, y) => x - y),
    classes.map((_, k) => k),
  );
  assert.equal(labels.train.filter((l) => l === 0).length, 2);
});

Deno.test("folder layout: class folders with a seeded split, and a CSV manifest with splits", async () => {
  const root = await Deno.makeTempDir({ prefix: "data_test_folder_" });
  let i = 0;
  for (const c of ["cat", "dog"]) {
    for (let k = 0; k < 10; k++) {
      await put(root, `${c}/${k}.wav`, variedWav(i++, 22050));
    }
  }
  const data = `{ layout: folder, root: ${
    JSON.stringify(root)
  }, split: { validation: 0.2, test: 0.2 } }`;
  const a = await openAndDecode(data, 1);
  const b = await openAndDecode(data, 1);
  const c = await openAndDecode(data, 2);
  assert.deepEqual(a.dataset.splits, { train: 12, validation: 4, test: 4 });
  assert.deepEqual(a.dataset.classes, ["cat", "dog"]);
  const paths = async (d: typeof a, split: string) => {
    const out = [];
    for (let k = 0; k < d.dataset.splits[split]; k++) {
      out.push((await d.dataset.example(split, k))!.path);
    }
    return out;
  };
  assert.deepEqual(await paths(a, "test"), await paths(b, "test"));
  assert.notDeepEqual(await paths(a, "test"), await paths(c, "test"));
  await Deno.writeTextFile(
    join(root, "list.csv"),
    "path,label,split\ncat/0.wav,cat,train\ndog/0.wav,dog,train\ncat/1.wav,cat,validation\ndog/1.wav,dog,test\n",
  );
  const m = await openAndDecode(
    `{ layout: folder, root: ${JSON.stringify(root)}, manifest: list.csv }`,
  );
  assert.deepEqual(m.dataset.splits, { train: 2, validation: 1, test: 1 });
  assert.deepEqual(m.labels, { train: [0, 1], validation: [0], test: [1] });
});

Deno.test("--set data.root alone moves the SC preset, background noise included (the root's own _background_noise_)", async () => {
  const root = await speechCommands();
  try {
    const compiled = await compile(join(ROOT, "presets/sc1.yaml"), {
      builtins: BUILTIN_STAGES,
      overrides: [`data.root=${root}`, "load.workers=0"],
    });
    const dataset = await openSource(compiled);
    try {
      assert.deepEqual(
        Object.keys(dataset.assets?.backgroundNoise as object).sort(),
        ["pink_noise", "white_noise"],
      );
    } finally {
      await dataset.close?.();
    }
    // Without the folder, the run is told at once what will fail and why.
    await Deno.remove(join(root, "_background_noise_"), { recursive: true });
    const lines: string[] = [];
    const bare = await openSource(compiled, { console: (l) => lines.push(l) });
    await bare.close?.();
    assert.equal(bare.assets?.backgroundNoise, undefined);
    assert.ok(
      lines.some((l) =>
        l.includes(
          `warn: no _background_noise_ folder under ${root}: views that mix background noise will fail (set load.backgroundNoise to a folder of noise clips)`,
        )
      ),
      lines.join("\n"),
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("onBadFile: skip decides before a seeded split: skipping a bad file and deleting it give the same splits", async () => {
  const root = await Deno.makeTempDir({ prefix: "data_test_folder_" });
  const dir = await Deno.makeTempDir();
  try {
    for (const cls of ["a", "b", "c"]) {
      for (let i = 0; i < 10; i++) {
        await writeToneWav(join(root, cls, `${cls}${i}.wav`), {
          sampleRateHz: 8000,
          seconds: 0.1,
          frequencyHz: 300 + 40 * i,
        });
      }
    }
    const bad = join(root, "b", "b3.wav");
    await Deno.writeTextFile(bad, "not a wav file");
    const path = join(dir, "spec.yaml");
    await Deno.writeTextFile(
      path,
      `name: folder
runtime: { backend: cpu, seed: 5 }
data: { layout: folder, root: ${
        JSON.stringify(root)
      }, split: { validation: 0.2, test: 0.2 } }
stages:
  - use: load
    with: { workers: 0, onBadFile: skip }
`,
    );
    const splitsOf = async () => {
      const compiled = await compile(path, { builtins: BUILTIN_STAGES });
      const dataset = await openSource(compiled);
      try {
        const out: Record<string, string[]> = {};
        for (const [split, n] of Object.entries(dataset.splits)) {
          out[split] = [];
          for (let i = 0; i < n; i++) {
            out[split].push((await dataset.example(split, i))!.path as string);
          }
        }
        return { out, skipped: dataset.skipped?.() ?? [] };
      } finally {
        await dataset.close?.();
      }
    };
    const skipping = await splitsOf();
    assert.deepEqual(skipping.skipped.map((s) => s.path), [bad]);
    await Deno.remove(bad);
    const deleted = await splitsOf();
    assert.deepEqual(deleted.skipped, []);
    assert.deepEqual(skipping.out, deleted.out);
    assert.equal(Object.values(deleted.out).flat().length, 29);
  } finally {
    await Deno.remove(root, { recursive: true });
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deno task data flags clips far shorter or longer than the length the spec trains on", async () => {
  const root = await Deno.makeTempDir({ prefix: "data_test_lengths_" });
  const dir = await Deno.makeTempDir();
  try {
    for (const cls of ["a", "b"]) {
      for (let i = 0; i < 5; i++) {
        await writeToneWav(join(root, cls, `${cls}${i}.wav`), {
          sampleRateHz: 8000,
          seconds: 1,
        });
      }
    }
    const tiny = join(root, "a", "tiny.wav");
    const huge = join(root, "b", "huge.wav");
    await writeToneWav(tiny, { sampleRateHz: 8000, seconds: 0.01 });
    await writeToneWav(huge, { sampleRateHz: 8000, seconds: 30 });
    const path = join(dir, "spec.yaml");
    await Deno.writeTextFile(
      path,
      `name: lengths
runtime: { backend: cpu }
data: { layout: folder, root: ${
        JSON.stringify(root)
      }, split: { validation: 0.2, test: 0.2 } }
stages:
  - use: load
    with: { workers: 0 }
  - use: mono_mix
  - use: fixed_length
    with: { seconds: 1 }
`,
    );
    const text = await dataTask(path);
    assert.equal(text.code, 0, text.stderr);
    assert.match(
      text.stdout,
      /warning {3}1 clip\(s\) far shorter than the 1\.000 s the spec trains on \(under 0\.250 s\):\n {2}.*tiny\.wav: 0\.010 s \((train|validation|test)\)/,
    );
    assert.match(
      text.stdout,
      /warning {3}1 clip\(s\) far longer than the 1\.000 s the spec trains on \(over 2\.000 s\):\n {2}.*huge\.wav: 30\.000 s/,
    );
    const json = await dataTask(path, "--json");
    const lengths = JSON.parse(json.stdout).lengths;
    assert.equal(lengths.expectedSeconds, 1);
    assert.deepEqual(lengths.shorter.map((o: { path: string }) => o.path), [
      tiny,
    ]);
    assert.deepEqual(lengths.longer.map((o: { path: string }) => o.path), [
      huge,
    ]);
  } finally {
    await Deno.remove(root, { recursive: true });
    await Deno.remove(dir, { recursive: true });
  }
});
