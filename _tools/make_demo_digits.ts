/**
 * Builds `data/demo_digits/`: the spoken digits "zero" … "nine" synthesised
 * with espeak-ng over a fixed list of voices (accent + variant), pitches and
 * speeds, for the demo preset.
 *
 * Each clip is written by `espeak-ng -v <voice>+<variant> -p <pitch>
 * -s <speed> -w <file> <word>` straight to its final path, read back, trimmed
 * of leading and trailing silence (first/last sample with |v| ≥ 64, plus a
 * 10 ms margin) and rewritten as a canonical 44-byte-header 16-bit PCM WAV at
 * espeak-ng's native 22050 Hz, mono. The samples are otherwise untouched (no
 * resampling, no normalisation). Then `manifest.csv` (`path,label,split`) is
 * written. The split is by speaker: validation and test each use their own
 * voices, never heard in train. Re-running rebuilds byte-identical files.
 *
 * Usage:
 *
 * ```sh
 * deno run --allow-run=espeak-ng --allow-read --allow-write=data/demo_digits _tools/make_demo_digits.ts
 * ```
 *
 * @module
 */
// deno-lint-ignore-file no-console -- a command-line tool: printing is its job
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { encodeWavInt16 } from "../lib/wav_encode.ts";
import { DIGIT_WORDS } from "../stages/datasets/speech_commands.ts";

/** The dataset folder (the repository's `data/demo_digits`). */
const ROOT = join(
  dirname(fileURLToPath(import.meta.url)),
  "..",
  "data",
  "demo_digits",
);
/** Labels in order; each is also the spoken word and the class folder. */
const DIGITS = DIGIT_WORDS;
/** espeak-ng's native output format, which is kept as is. */
const SAMPLE_RATE_HZ = 22050;
/** |int16| at or above which a sample counts as sound (about −54 dBFS). */
const SILENCE_THRESHOLD = 64;
/** Samples kept either side of the first and last sound sample (10 ms). */
const MARGIN_SAMPLES = Math.round(0.01 * SAMPLE_RATE_HZ);
/** A trimmed clip longer than this is an error (the settings are wrong). */
const MAX_SECONDS = 0.8;
/** Fixed amplitude (espeak-ng's default). */
const AMPLITUDE = 100;

type Split = "train" | "validation" | "test";

/** One synthetic speaker: an accent, a voice variant and its settings. */
interface Speaker {
  /** espeak-ng voice (accent), e.g. `en-us`. */
  readonly voice: string;
  /** espeak-ng variant (`!v/<variant>`), e.g. `m3`. */
  readonly variant: string;
  readonly split: Split;
  /** `[pitch, speed]` pairs: `-p` 0–99 and `-s` words per minute. */
  readonly settings: readonly (readonly [number, number])[];
}

/**
 * Twelve speakers, each with its own variant (timbre). Train: 8 speakers
 * over 6 accents. Validation and test: 2 speakers each, one with an accent
 * train never uses, one with a train accent but an unseen variant.
 */
const SPEAKERS: readonly Speaker[] = [
  {
    voice: "en-us",
    variant: "m3",
    split: "train",
    settings: [[30, 150], [45, 185], [55, 135], [70, 170]],
  },
  {
    voice: "en-gb",
    variant: "f2",
    split: "train",
    settings: [[35, 175], [50, 140], [60, 200], [65, 155]],
  },
  {
    voice: "en-gb-x-rp",
    variant: "m2",
    split: "train",
    settings: [[40, 130], [50, 190], [60, 160], [70, 145]],
  },
  {
    voice: "en-gb-scotland",
    variant: "f5",
    split: "train",
    settings: [[30, 165], [40, 195], [55, 150], [65, 135]],
  },
  {
    voice: "en-029",
    variant: "m6",
    split: "train",
    settings: [[35, 140], [45, 160], [60, 180], [70, 200]],
  },
  {
    voice: "en-gb-x-gbclan",
    variant: "f1",
    split: "train",
    settings: [[30, 185], [45, 145], [55, 170], [70, 130]],
  },
  {
    voice: "en-us",
    variant: "klatt",
    split: "train",
    settings: [[35, 155], [50, 175], [60, 135], [65, 195]],
  },
  {
    voice: "en-gb-x-rp",
    variant: "Annie",
    split: "train",
    settings: [[30, 140], [40, 180], [55, 190], [65, 160]],
  },
  {
    voice: "en-us-nyc",
    variant: "belinda",
    split: "validation",
    settings: [[35, 150], [45, 175], [55, 195], [65, 135]],
  },
  {
    voice: "en-gb",
    variant: "m1",
    split: "validation",
    settings: [[30, 175], [45, 140], [55, 200], [65, 160]],
  },
  {
    voice: "en-gb-x-gbcwmd",
    variant: "f3",
    split: "test",
    settings: [[30, 165], [45, 135], [60, 185], [70, 150]],
  },
  {
    voice: "en-us",
    variant: "m4",
    split: "test",
    settings: [[35, 195], [50, 155], [55, 140], [65, 180]],
  },
];

/** Fails with an install hint when espeak-ng cannot be run. */
async function espeakVersion(): Promise<string> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command("espeak-ng", {
      args: ["--version"],
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Error(
        "espeak-ng is not installed (or not on PATH): install it with `apt-get install espeak-ng`",
      );
    }
    throw e;
  }
  if (!out.success) {
    throw new Error(
      `espeak-ng --version failed: ${new TextDecoder().decode(out.stderr)}`,
    );
  }
  return new TextDecoder().decode(out.stdout).trim();
}

/** Runs espeak-ng to write `word` to `path`. */
async function synthesise(
  speaker: Speaker,
  pitch: number,
  speed: number,
  word: string,
  path: string,
): Promise<void> {
  const args = [
    "-v",
    `${speaker.voice}+${speaker.variant}`,
    "-p",
    String(pitch),
    "-s",
    String(speed),
    "-a",
    String(AMPLITUDE),
    "-w",
    path,
    word,
  ];
  const out = await new Deno.Command("espeak-ng", {
    args,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr).trim();
  if (!out.success || stderr !== "") {
    throw new Error(
      `espeak-ng ${args.join(" ")} failed (exit ${out.code}): ${stderr}`,
    );
  }
}

/**
 * The int16 samples of a mono 16-bit PCM WAV at {@link SAMPLE_RATE_HZ};
 * anything else is an error. A data size past the end of the file (espeak-ng
 * writes 0x7ffff000 when its output is a pipe) is clamped to the file.
 */
function readPcm16(bytes: Uint8Array, path: string): Int16Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const tag = (at: number) =>
    String.fromCharCode(...bytes.subarray(at, at + 4));
  if (bytes.length < 12 || tag(0) !== "RIFF" || tag(8) !== "WAVE") {
    throw new Error(`${path}: not a RIFF/WAVE file`);
  }
  let fmtSeen = false;
  for (let at = 12; at + 8 <= bytes.length;) {
    const id = tag(at);
    const size = view.getUint32(at + 4, true);
    const body = at + 8;
    if (id === "fmt ") {
      const format = view.getUint16(body, true);
      const channels = view.getUint16(body + 2, true);
      const rate = view.getUint32(body + 4, true);
      const bits = view.getUint16(body + 14, true);
      if (
        format !== 1 || channels !== 1 || rate !== SAMPLE_RATE_HZ ||
        bits !== 16
      ) {
        throw new Error(
          `${path}: expected mono 16-bit PCM at ${SAMPLE_RATE_HZ} Hz, got format ${format}, ${channels} channel(s), ${rate} Hz, ${bits} bits`,
        );
      }
      fmtSeen = true;
    } else if (id === "data") {
      if (!fmtSeen) throw new Error(`${path}: data chunk before fmt chunk`);
      const n = Math.floor(Math.min(size, bytes.length - body) / 2);
      const samples = new Int16Array(n);
      for (let i = 0; i < n; i++) {
        samples[i] = view.getInt16(body + 2 * i, true);
      }
      return samples;
    }
    at = body + size + (size & 1);
  }
  throw new Error(`${path}: no data chunk`);
}

/** `[start, end)` of the samples kept: sound plus the margin either side. */
function trimBounds(samples: Int16Array): [number, number] {
  let first = 0;
  while (
    first < samples.length && Math.abs(samples[first]) < SILENCE_THRESHOLD
  ) first++;
  let last = samples.length - 1;
  while (last >= first && Math.abs(samples[last]) < SILENCE_THRESHOLD) last--;
  if (last < first) return [0, 0];
  return [
    Math.max(0, first - MARGIN_SAMPLES),
    Math.min(samples.length, last + 1 + MARGIN_SAMPLES),
  ];
}

/** Fails when two speakers share a voice+variant or a held-out variant. */
function checkSpeakers(): void {
  const seen = new Set<string>();
  const variants = new Map<string, Split>();
  for (const s of SPEAKERS) {
    const id = `${s.voice}_${s.variant}`;
    if (seen.has(id)) throw new Error(`speaker ${id} is listed twice`);
    seen.add(id);
    const other = variants.get(s.variant);
    if (other !== undefined && other !== s.split) {
      throw new Error(
        `variant ${s.variant} is in both ${other} and ${s.split}`,
      );
    }
    variants.set(s.variant, s.split);
  }
}

async function main(): Promise<void> {
  checkSpeakers();
  const version = await espeakVersion();
  console.log(version);

  // Start from empty class folders so files from older settings cannot stay.
  await Deno.mkdir(ROOT, { recursive: true });
  for (const digit of DIGITS) {
    await Deno.remove(join(ROOT, digit), { recursive: true }).catch((e) => {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    });
    await Deno.mkdir(join(ROOT, digit));
  }

  const rows: string[] = ["path,label,split"];
  const clips: Record<Split, number> = { train: 0, validation: 0, test: 0 };
  const speakers: Record<Split, string[]> = {
    train: [],
    validation: [],
    test: [],
  };
  let totalBytes = 0;
  let shortest = Infinity;
  let longest = 0;
  for (const speaker of SPEAKERS) {
    speakers[speaker.split].push(`${speaker.voice}+${speaker.variant}`);
    for (const [idx, [pitch, speed]] of speaker.settings.entries()) {
      for (const digit of DIGITS) {
        const name = `${speaker.voice}_${speaker.variant}_${idx}.wav`;
        const path = join(ROOT, digit, name);
        await synthesise(speaker, pitch, speed, digit, path);
        const samples = readPcm16(await Deno.readFile(path), path);
        const [start, end] = trimBounds(samples);
        const seconds = (end - start) / SAMPLE_RATE_HZ;
        if (end === start) throw new Error(`${path}: no sound above threshold`);
        if (seconds > MAX_SECONDS) {
          throw new Error(
            `${path}: ${
              seconds.toFixed(3)
            } s after trimming (max ${MAX_SECONDS} s); use a faster speed`,
          );
        }
        const wav = encodeWavInt16(
          samples.subarray(start, end),
          SAMPLE_RATE_HZ,
        );
        await Deno.writeFile(path, wav);
        totalBytes += wav.length;
        shortest = Math.min(shortest, seconds);
        longest = Math.max(longest, seconds);
        clips[speaker.split]++;
        rows.push(
          `${
            relative(ROOT, path).split("\\").join("/")
          },${digit},${speaker.split}`,
        );
      }
    }
  }
  // Rows sorted by path (code point order) so the manifest is stable.
  const body = rows.slice(1).sort((a, b) => a < b ? -1 : a > b ? 1 : 0);
  const manifest = [rows[0], ...body].join("\n") + "\n";
  await Deno.writeTextFile(join(ROOT, "manifest.csv"), manifest);
  totalBytes += new TextEncoder().encode(manifest).length;

  for (const split of ["train", "validation", "test"] as const) {
    console.log(
      `${split}: ${clips[split]} clips (${
        clips[split] / DIGITS.length
      } per digit) from ${speakers[split].join(", ")}`,
    );
  }
  console.log(
    `durations ${shortest.toFixed(3)}–${longest.toFixed(3)} s; ` +
      `${totalBytes} bytes of WAVs and manifest in ${relative(".", ROOT)}`,
  );
}

if (import.meta.main) {
  try {
    await main();
  } catch (e) {
    console.error(`error: ${e instanceof Error ? e.message : e}`);
    Deno.exit(1);
  }
}
