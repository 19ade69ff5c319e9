import assert from "node:assert/strict";
import { join } from "node:path";
import { formatSynthSummary, parseSynthArgs } from "./synth.ts";

const run = (args: string[]) =>
  new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-write", "_tools/synth.ts", ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
const text = (b: Uint8Array) => new TextDecoder().decode(b);

Deno.test("synth command line: flags map to options, unset ones stay unset", () => {
  const p = parseSynthArgs([
    "speech_commands",
    "out/sc",
    "--version",
    "1",
    "--train",
    "20",
    "--sample-rate",
    "8000",
    "--no-noise",
  ]);
  assert.equal(p.layout, "speech_commands");
  assert.equal(p.dir, "out/sc");
  assert.deepEqual(p.options, {
    version: 1,
    train: 20,
    sampleRateHz: 8000,
    backgroundNoise: false,
  });
  assert.throws(
    () => parseSynthArgs(["cochlscene", "x", "--train", "many"]),
    /--train takes a number, got "many"/,
  );
  assert.throws(
    () => parseSynthArgs(["esc50", "x"]),
    /unknown layout "esc50": use one of speech_commands, audiomnist, vocalsound, cochlscene/,
  );
  assert.throws(
    () => parseSynthArgs(["cochlscene"]),
    /expected a layout and a folder/,
  );
});

Deno.test("deno task synth writes a dataset, prints the --set flags, reuses it, and exits 2 on bad options", async () => {
  const dir = await Deno.makeTempDir({ prefix: "synth_cli_" });
  try {
    const root = join(dir, "sc");
    const args = [
      "speech_commands",
      root,
      "--version",
      "1",
      "--train",
      "1",
      "--seconds",
      "0.02",
      "--sample-rate",
      "8000",
      "--noise-seconds",
      "0.05",
    ];
    const first = await run(args);
    assert.equal(first.code, 0, text(first.stderr));
    assert.match(
      text(first.stdout),
      /^wrote speech_commands at .*: 30 classes; train 30, validation 30, test 30 clips; 100 files/,
    );
    assert.ok(
      text(first.stdout).includes(
        `--set data.root=${root} --set data.version=1 --set load.backgroundNoise=${root}/_background_noise_`,
      ),
    );
    const again = await run([...args, "--json"]);
    assert.equal(again.code, 0, text(again.stderr));
    const summary = JSON.parse(text(again.stdout));
    assert.equal(summary.reused, true);
    assert.equal(summary.options.version, 1);
    assert.match(formatSynthSummary(summary), /^reused speech_commands/);

    const bad = await run(["audiomnist", join(dir, "am"), "--train", "3"]);
    assert.equal(bad.code, 2);
    assert.match(
      text(bad.stderr),
      /^error: Cannot synthesise audiomnist: train \(--train\) does not apply/,
    );
    const usage = await run(["vocalsound"]);
    assert.equal(usage.code, 2);
    assert.match(text(usage.stderr), /usage: deno task synth <layout> <dir>/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
