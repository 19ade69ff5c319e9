/**
 * `deno task synth <layout> <dir> [options]`: writes a small synthetic
 * dataset in a published layout (see `stages/datasets/synth.ts`), so a
 * preset runs end to end without the real data:
 *
 * ```sh
 * deno task synth speech_commands data/sc1_synth --version 1 --train 20
 * deno task run presets/sc1.yaml --set data.root=data/sc1_synth \
 *   --set load.backgroundNoise=data/sc1_synth/_background_noise_
 * ```
 *
 * Prints what was written (or reused) and the `--set` flags that point a
 * preset at it; `--json` prints the summary as JSON. Exit codes: 0 ok, 1 a
 * write failure, 2 a bad command line.
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  SYNTH_LAYOUTS,
  type SynthLayout,
  type SynthOptions,
  type SynthSummary,
  writeSyntheticDataset,
} from "../stages/datasets/synth.ts";

const USAGE = `usage: deno task synth <layout> <dir> [options]
layouts: ${SYNTH_LAYOUTS.join(", ")}
options:
  --train N --validation N --test N   clips per class and split (default 4 / 1 / 1; not audiomnist)
  --per-speaker N                     audiomnist: clips per digit and speaker, 60 speakers (default 1)
  --version 1|2                       speech_commands: v0.01 (30 words) or v0.02 (35 words) (default 2)
  --seconds S                         longest clip (default: speech_commands 1, audiomnist 0.6, vocalsound 2, cochlscene 10)
  --jitter F                          clips last seconds·(1 − U·F) (default 0; audiomnist, vocalsound 0.3)
  --sample-rate HZ                    (default: 16000; audiomnist 48000; cochlscene 44100)
  --seed N                            (default 0)
  --noise-level X                     white noise under every clip (default 0.02)
  --noise | --no-noise                write _background_noise_ (default: speech_commands only)
  --noise-seconds S                   length of each noise clip (default 10)
  --json                              print the summary as JSON`;

const encoder = new TextEncoder();
function out(text: string) {
  Deno.stdout.writeSync(encoder.encode(text + "\n"));
}
function err(text: string) {
  Deno.stderr.writeSync(encoder.encode(text + "\n"));
}

/** A numeric flag's value, or a usage error naming the flag. */
function numberOf(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const v = Number(text);
  if (text.trim() === "" || !Number.isFinite(v)) {
    throw new UsageError(`--${flag} takes a number, got "${text}"`);
  }
  return v;
}

class UsageError extends Error {}

/**
 * Parses the command line into a layout, folder and options.
 *
 * @throws UsageError for an unknown flag, a missing argument or a non-number.
 */
export function parseSynthArgs(
  args: string[],
): { layout: SynthLayout; dir: string; options: SynthOptions; json: boolean } {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      strict: true,
      options: {
        train: { type: "string" },
        validation: { type: "string" },
        test: { type: "string" },
        "per-speaker": { type: "string" },
        version: { type: "string" },
        seconds: { type: "string" },
        jitter: { type: "string" },
        "sample-rate": { type: "string" },
        seed: { type: "string" },
        "noise-level": { type: "string" },
        noise: { type: "boolean" },
        "no-noise": { type: "boolean" },
        "noise-seconds": { type: "string" },
        json: { type: "boolean", default: false },
      },
    });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const { values, positionals } = parsed;
  if (positionals.length !== 2) {
    throw new UsageError(
      `expected a layout and a folder, got ${positionals.length} argument(s)`,
    );
  }
  const [layout, dir] = positionals;
  if (!(SYNTH_LAYOUTS as readonly string[]).includes(layout)) {
    throw new UsageError(
      `unknown layout "${layout}": use one of ${SYNTH_LAYOUTS.join(", ")}`,
    );
  }
  if (values.noise && values["no-noise"]) {
    throw new UsageError("--noise and --no-noise cannot be combined");
  }
  const version = numberOf("version", values.version);
  const options: SynthOptions = {
    train: numberOf("train", values.train),
    validation: numberOf("validation", values.validation),
    test: numberOf("test", values.test),
    perSpeaker: numberOf("per-speaker", values["per-speaker"]),
    version: version as 1 | 2 | undefined,
    seconds: numberOf("seconds", values.seconds),
    jitter: numberOf("jitter", values.jitter),
    sampleRateHz: numberOf("sample-rate", values["sample-rate"]),
    seed: numberOf("seed", values.seed),
    noiseLevel: numberOf("noise-level", values["noise-level"]),
    noiseSeconds: numberOf("noise-seconds", values["noise-seconds"]),
    backgroundNoise: values.noise
      ? true
      : values["no-noise"]
      ? false
      : undefined,
  };
  // Drop the unset ones so the layout's defaults and checks apply.
  const set = Object.fromEntries(
    Object.entries(options).filter(([, v]) => v !== undefined),
  ) as SynthOptions;
  return {
    layout: layout as SynthLayout,
    dir,
    options: set,
    json: values.json,
  };
}

/** The human-readable summary and the flags that point a preset at the data. */
export function formatSynthSummary(s: SynthSummary): string {
  const sets = [`--set data.root=${s.root}`];
  if (s.layout === "speech_commands") {
    sets.push(`--set data.version=${s.options.version}`);
  }
  if (s.backgroundNoise) {
    sets.push(`--set load.backgroundNoise=${s.backgroundNoise}`);
  }
  return [
    `${
      s.reused ? "reused" : "wrote"
    } ${s.layout} at ${s.root}: ${s.classes} classes; train ${s.clips.train}, validation ${s.clips.validation}, test ${s.clips.test} clips; ${s.files} files, ${
      (s.bytes / 2 ** 20).toFixed(1)
    } MiB`,
    `point a spec at it with: ${sets.join(" ")}`,
  ].join("\n");
}

async function main(args: string[]): Promise<number> {
  if (args.includes("--help") || args.includes("-h")) {
    out(USAGE);
    return 0;
  }
  let parsed;
  try {
    parsed = parseSynthArgs(args);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    err(`error: ${e.message}\n${USAGE}`);
    return 2;
  }
  try {
    const summary = await writeSyntheticDataset(
      parsed.layout,
      parsed.dir,
      parsed.options,
    );
    out(
      parsed.json
        ? JSON.stringify(summary, null, 2)
        : formatSynthSummary(summary),
    );
    return 0;
  } catch (e) {
    err(`error: ${(e as Error).message}`);
    return e instanceof RangeError ? 2 : 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
