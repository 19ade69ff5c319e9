/**
 * Synthetic datasets in the published folder layouts that the `load` stage's
 * layouts read (`speech_commands` v1/v2 with `validation_list.txt`,
 * `testing_list.txt` and `_background_noise_`; `audiomnist` with its 60
 * speaker folders and `audioMNIST_meta.txt`; `vocalsound` with
 * `datafiles/{tr,val,te}.json` and `audio_16k/`; `cochlscene` with
 * `{Train,Val,Test}/<Class>/`), so a preset runs end to end without the real
 * data (`deno task synth <layout> <dir>`).
 *
 * Content is audible and class-dependent: class k of n sounds at its own
 * log-spaced frequency (`classFrequencyHz`, shared with the `synthetic`
 * layout), as one of three sound kinds that alternate between neighbouring
 * classes — a steady tone with its second harmonic, an upward chirp, a
 * tremolo tone — inside an event window with faded edges, over white noise.
 * Speakers (where the layout has them) shift the pitch by a few percent. Every
 * file's samples come from a stream seeded by the seed and the file's path,
 * so the same options give byte-identical files.
 *
 * The dataset is written into a hidden temporary folder beside the target
 * and renamed into place at the end, so an interrupted run leaves no
 * half-written dataset. `synth.json` in the folder records the layout and
 * options; asking again for the same folder with the same options reuses it.
 *
 * @module
 */
import { basename, dirname, join, resolve } from "node:path";
import { createRng } from "../../pipeline/rng.ts";
import type { Rng } from "../../pipeline/rng.ts";
import { writeFileAtomic } from "../../pipeline/atomic.ts";
import { encodeWavPcm16 } from "../../lib/wav_encode.ts";
import { classFrequencyHz } from "../_synthetic.ts";
import { speechCommandsClasses } from "./speech_commands.ts";
import { AUDIOMNIST_CLASSES, audioMnistSpeakers } from "./audiomnist.ts";
import { VOCALSOUND_CLASSES } from "./vocalsound.ts";
import { COCHLSCENE_CLASSES } from "./cochlscene.ts";
import { pad2 } from "./_util.ts";

/** The layouts `writeSyntheticDataset` can write. */
export const SYNTH_LAYOUTS = [
  "speech_commands",
  "audiomnist",
  "vocalsound",
  "cochlscene",
] as const;
/** A layout `writeSyntheticDataset` can write. */
export type SynthLayout = (typeof SYNTH_LAYOUTS)[number];

/** What to generate; every field is optional (layout defaults below). */
export interface SynthOptions {
  /** Speech Commands version, 1 (30 words) or 2 (35 words); default 2. Speech Commands only. */
  readonly version?: 1 | 2;
  /** Training clips per class (default 4); not for AudioMNIST (see `perSpeaker`). */
  readonly train?: number;
  /** Validation clips per class (default 1); not for AudioMNIST. */
  readonly validation?: number;
  /** Test clips per class (default 1); not for AudioMNIST. */
  readonly test?: number;
  /** AudioMNIST: clips per digit and speaker (all 60 speakers are written; default 1). */
  readonly perSpeaker?: number;
  /** Longest clip in seconds (default: SC 1, AudioMNIST 0.6, VocalSound 2, CochlScene 10). */
  readonly seconds?: number;
  /** Clips last `seconds · (1 − U · jitter)`, U uniform in [0, 1) (default: 0; AudioMNIST 0.3, VocalSound 0.3). */
  readonly jitter?: number;
  /** Sample rate of the clips in Hz (default: SC and VocalSound 16000, AudioMNIST 48000, CochlScene 44100). */
  readonly sampleRateHz?: number;
  /** Seed of every random choice (default 0). */
  readonly seed?: number;
  /** Standard deviation of the white noise under every clip (full scale 1; default 0.02). */
  readonly noiseLevel?: number;
  /** Write `_background_noise_` (Speech Commands' six noise clips at 16 kHz); default true for Speech Commands, false otherwise (CochlScene's preset borrows them). */
  readonly backgroundNoise?: boolean;
  /** Length of each background noise clip in seconds (default 10). */
  readonly noiseSeconds?: number;
}

/** The options with every default filled in, as recorded in `synth.json`. */
export interface ResolvedSynthOptions {
  readonly version?: 1 | 2;
  readonly train?: number;
  readonly validation?: number;
  readonly test?: number;
  readonly perSpeaker?: number;
  readonly seconds: number;
  readonly jitter: number;
  readonly sampleRateHz: number;
  readonly seed: number;
  readonly noiseLevel: number;
  readonly backgroundNoise: boolean;
  readonly noiseSeconds: number;
}

/** What was written (or found). */
export interface SynthSummary {
  readonly layout: SynthLayout;
  /** Absolute path of the dataset folder (the layout's `root`). */
  readonly root: string;
  /** The `data:` section of a spec that reads it. */
  readonly data: Readonly<Record<string, unknown>>;
  /** The background noise folder, when written (for `load.backgroundNoise`). */
  readonly backgroundNoise?: string;
  /** Number of classes. */
  readonly classes: number;
  /** Clips per split, as the layout's loader will index them. */
  readonly clips: Readonly<Record<"train" | "validation" | "test", number>>;
  /** Files written (clips, noise clips, lists, metadata). */
  readonly files: number;
  /** Bytes written. */
  readonly bytes: number;
  /** True when the folder already held this dataset and nothing was written. */
  readonly reused: boolean;
  readonly options: ResolvedSynthOptions;
}

/** Name of the record file in the dataset folder. */
export const SYNTH_RECORD = "synth.json";
/** Rate of the background noise clips (Speech Commands ships them at 16 kHz). */
export const NOISE_RATE_HZ = 16000;
/** The six noise clips of Speech Commands' `_background_noise_`, by file stem. */
export const NOISE_NAMES = [
  "doing_the_dishes",
  "dude_miaowing",
  "exercise_bike",
  "pink_noise",
  "running_tap",
  "white_noise",
] as const;

const DEFAULTS: Record<
  SynthLayout,
  { seconds: number; jitter: number; sampleRateHz: number }
> = {
  "speech_commands": { seconds: 1, jitter: 0, sampleRateHz: 16000 },
  audiomnist: { seconds: 0.6, jitter: 0.3, sampleRateHz: 48000 },
  vocalsound: { seconds: 2, jitter: 0.3, sampleRateHz: 16000 },
  cochlscene: { seconds: 10, jitter: 0, sampleRateHz: 44100 },
};

/**
 * Fills in the layout's defaults and checks every option; throws a
 * RangeError naming the option (and its `--flag`) when one is out of range
 * or does not apply to the layout.
 */
export function resolveSynthOptions(
  layout: SynthLayout,
  options: SynthOptions = {},
): ResolvedSynthOptions {
  if (!(SYNTH_LAYOUTS as readonly string[]).includes(layout)) {
    throw new RangeError(
      `Cannot synthesise layout "${layout}": use one of ${
        SYNTH_LAYOUTS.join(", ")
      }`,
    );
  }
  const fail = (key: string, flag: string, what: string, got: unknown) => {
    throw new RangeError(
      `Cannot synthesise ${layout}: ${key} (--${flag}) ${what}, got ${
        JSON.stringify(got)
      }`,
    );
  };
  const int = (
    key: keyof SynthOptions,
    flag: string,
    min: number,
    max: number,
    fallback: number,
  ): number => {
    const v = options[key] ?? fallback;
    if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
      fail(key, flag, `must be an integer from ${min} to ${max}`, v);
    }
    return v as number;
  };
  const num = (
    key: keyof SynthOptions,
    flag: string,
    min: number,
    max: number,
    fallback: number,
    openMin = false,
  ): number => {
    const v = options[key] ?? fallback;
    if (
      typeof v !== "number" || !Number.isFinite(v) || v > max ||
      (openMin ? v <= min : v < min)
    ) {
      fail(
        key,
        flag,
        `must be a number ${openMin ? "above" : "from"} ${min}${
          openMin ? " and at most" : " to"
        } ${max}`,
        v,
      );
    }
    return v as number;
  };
  const notFor = (key: keyof SynthOptions, flag: string, why: string) => {
    if (options[key] !== undefined) {
      fail(key, flag, `does not apply: ${why}`, options[key]);
    }
  };
  const d = DEFAULTS[layout];
  const sampleRateHz = int(
    "sampleRateHz",
    "sample-rate",
    4000,
    192000,
    d.sampleRateHz,
  );
  const base = {
    seconds: num("seconds", "seconds", 0, 60, d.seconds, true),
    jitter: num("jitter", "jitter", 0, 0.9, d.jitter),
    sampleRateHz,
    seed: int("seed", "seed", 0, 2 ** 31 - 1, 0),
    noiseLevel: num("noiseLevel", "noise-level", 0, 1, 0.02),
    noiseSeconds: num("noiseSeconds", "noise-seconds", 0, 600, 10, true),
    backgroundNoise: options.backgroundNoise ??
      (layout === "speech_commands"),
  };
  if (typeof base.backgroundNoise !== "boolean") {
    fail(
      "backgroundNoise",
      "noise",
      "must be true or false",
      base.backgroundNoise,
    );
  }
  if (layout !== "speech_commands") {
    notFor("version", "version", "only Speech Commands has versions");
  }
  if (layout === "audiomnist") {
    const why = "AudioMNIST splits by speaker; set perSpeaker (--per-speaker)";
    notFor("train", "train", why);
    notFor("validation", "validation", why);
    notFor("test", "test", why);
    return {
      ...base,
      perSpeaker: int("perSpeaker", "per-speaker", 1, 1000, 1),
    };
  }
  notFor(
    "perSpeaker",
    "per-speaker",
    "only AudioMNIST splits by speaker; set train, validation and test",
  );
  const version = options.version ?? 2;
  if (layout === "speech_commands" && version !== 1 && version !== 2) {
    fail("version", "version", "must be 1 or 2", version);
  }
  return {
    ...(layout === "speech_commands" ? { version } : {}),
    train: int("train", "train", 1, 100000, 4),
    validation: int("validation", "validation", 1, 100000, 1),
    test: int("test", "test", 1, 100000, 1),
    ...base,
  };
}

/** The three sound kinds that alternate between neighbouring classes. */
type SoundKind = "tone" | "chirp" | "tremolo";
const KINDS: readonly SoundKind[] = ["tone", "chirp", "tremolo"];

/**
 * One clip of class `label` of `classes`: `length` samples at `rateHz`, an
 * event of the class's sound over white noise. `pitch` scales the class
 * frequency (a speaker's voice).
 *
 * @param rng The clip's own stream.
 */
export function synthClip(
  label: number,
  classes: number,
  rateHz: number,
  length: number,
  rng: Rng,
  options: { noiseLevel: number; pitch?: number },
): Float32Array {
  const kind = KINDS[label % KINDS.length];
  const f = classFrequencyHz(label, classes, rateHz) * (options.pitch ?? 1) *
    (1 + 0.02 * (2 * rng.next() - 1));
  const amplitude = 0.2 + 0.5 * rng.next();
  const phase = 2 * Math.PI * rng.next();
  // The event: 50–90 % of the clip at a random offset, 10 ms fades.
  const eventLength = Math.max(
    1,
    Math.round(length * (0.5 + 0.4 * rng.next())),
  );
  const start = Math.floor((length - eventLength) * rng.next());
  const fade = Math.max(
    1,
    Math.min(Math.round(0.01 * rateHz), eventLength >> 1),
  );
  const tremoloHz = 4 + 2 * (Math.floor(label / KINDS.length) % 4);
  const out = new Float32Array(length);
  let theta = phase;
  for (let i = 0; i < eventLength; i++) {
    const t = i / rateHz;
    const progress = i / eventLength;
    // Instantaneous frequency: steady, or a sweep up to 1.5·f.
    const fi = kind === "chirp" ? f * (1 + 0.5 * progress) : f;
    theta += (2 * Math.PI * fi) / rateHz;
    let v = Math.sin(theta) + 0.3 * Math.sin(2 * theta);
    if (kind === "tremolo") {
      v *= 0.6 + 0.4 * Math.sin(2 * Math.PI * tremoloHz * t);
    }
    const edge = Math.min(i, eventLength - 1 - i);
    const env = edge >= fade
      ? 1
      : 0.5 - 0.5 * Math.cos((Math.PI * edge) / fade);
    out[start + i] = amplitude * env * v;
  }
  for (let i = 0; i < length; i++) {
    out[i] = Math.max(
      -1,
      Math.min(1, out[i] + options.noiseLevel * rng.normal()),
    );
  }
  return out;
}

/**
 * One of Speech Commands' six background noise clips, synthesised: white
 * and pink noise, a running tap (resonant band noise), an exercise bike
 * (brown noise with a pedalling thump), dishes (decaying clinks) and a cat
 * (frequency-swept harmonic meows).
 */
export function synthNoise(
  name: (typeof NOISE_NAMES)[number],
  rateHz: number,
  length: number,
  rng: Rng,
): Float32Array {
  const out = new Float32Array(length);
  const white = () => 2 * rng.next() - 1;
  switch (name) {
    case "white_noise":
      for (let i = 0; i < length; i++) out[i] = 0.3 * white();
      break;
    case "pink_noise": {
      // Paul Kellet's refined filter of white noise (−3 dB per octave).
      const b = [0, 0, 0, 0, 0, 0, 0];
      for (let i = 0; i < length; i++) {
        const w = white();
        b[0] = 0.99886 * b[0] + w * 0.0555179;
        b[1] = 0.99332 * b[1] + w * 0.0750759;
        b[2] = 0.96900 * b[2] + w * 0.1538520;
        b[3] = 0.86650 * b[3] + w * 0.3104856;
        b[4] = 0.55000 * b[4] + w * 0.5329522;
        b[5] = -0.7616 * b[5] - w * 0.0168980;
        out[i] = 0.06 *
          (b[0] + b[1] + b[2] + b[3] + b[4] + b[5] + b[6] + w * 0.5362);
        b[6] = w * 0.115926;
      }
      break;
    }
    case "running_tap": {
      // Two-pole resonator around 2 kHz, slowly wandering.
      let y1 = 0;
      let y2 = 0;
      const r = 0.97;
      for (let i = 0; i < length; i++) {
        const fc = 2000 + 300 * Math.sin((2 * Math.PI * 0.3 * i) / rateHz);
        const c = 2 * r *
          Math.cos((2 * Math.PI * Math.min(fc, 0.4 * rateHz)) / rateHz);
        const y = white() + c * y1 - r * r * y2;
        y2 = y1;
        y1 = y;
        out[i] = 0.02 * y;
      }
      break;
    }
    case "exercise_bike": {
      let brown = 0;
      const pedalHz = 1.3 + 0.4 * rng.next();
      for (let i = 0; i < length; i++) {
        brown = 0.995 * brown + 0.05 * white();
        const cycle = ((pedalHz * i) / rateHz) % 1;
        const thump = Math.exp(-cycle * 12) *
          Math.sin((2 * Math.PI * 60 * i) / rateHz);
        out[i] = 0.3 * brown + 0.2 * thump;
      }
      break;
    }
    case "doing_the_dishes": {
      for (let i = 0; i < length; i++) out[i] = 0.01 * white();
      const clinks = Math.max(1, Math.round((length / rateHz) * 3));
      for (let k = 0; k < clinks; k++) {
        const at = Math.floor(rng.next() * length);
        const f = 1500 + 3000 * rng.next();
        const a = 0.2 + 0.3 * rng.next();
        const n = Math.min(length - at, Math.round(0.15 * rateHz));
        for (let i = 0; i < n; i++) {
          out[at + i] += a * Math.exp(-i / (0.03 * rateHz)) *
            Math.sin((2 * Math.PI * Math.min(f, 0.45 * rateHz) * i) / rateHz);
        }
      }
      break;
    }
    case "dude_miaowing": {
      for (let i = 0; i < length; i++) out[i] = 0.005 * white();
      const meows = Math.max(1, Math.round((length / rateHz) / 1.5));
      for (let k = 0; k < meows; k++) {
        const at = Math.floor(rng.next() * length);
        const n = Math.min(
          length - at,
          Math.round((0.4 + 0.4 * rng.next()) * rateHz),
        );
        const f0 = 450 + 200 * rng.next();
        let theta = 0;
        for (let i = 0; i < n; i++) {
          const p = i / n;
          theta += (2 * Math.PI * f0 * (1 + 0.6 * Math.sin(Math.PI * p))) /
            rateHz;
          const env = Math.sin(Math.PI * p);
          out[at + i] += 0.3 * env *
            (Math.sin(theta) + 0.5 * Math.sin(2 * theta) +
              0.25 * Math.sin(3 * theta));
        }
      }
      break;
    }
  }
  for (let i = 0; i < length; i++) out[i] = Math.max(-1, Math.min(1, out[i]));
  return out;
}

/** A file to write: its path relative to the root, and how to make its bytes. */
interface Planned {
  readonly rel: string;
  readonly make: () => Uint8Array;
}

/** One clip to write. */
interface ClipPlan {
  readonly rel: string;
  readonly label: number;
  /** Pitch factor of the clip's speaker. */
  readonly pitch: number;
}

/** The layout's files (clips, lists, metadata) and the clip counts. */
interface LayoutPlan {
  readonly classes: readonly string[];
  readonly clips: readonly ClipPlan[];
  /** Clips per split as the layout's loader indexes them (AudioMNIST: fold 0, trainOn trainValidation, its defaults). */
  readonly counts: Readonly<Record<Split, number>>;
  /** Extra text files (lists, metadata), by relative path. */
  readonly texts: Readonly<Record<string, string>>;
}

type Split = "train" | "validation" | "test";
const SPLIT_NAMES: readonly Split[] = ["train", "validation", "test"];

/** Speaker pitch factor in [0.96, 1.04], from the speaker's own stream. */
function pitchOf(speaker: string, seed: number): number {
  return 1 +
    0.04 * (2 * createRng(`synth/speaker/${speaker}`, seed).next() - 1);
}

/** 8 hex digits, unique among `used` (Speech Commands speaker ids). */
function speakerHash(label: string, seed: number, used: Set<string>): string {
  const rng = createRng(`synth/hash/${label}`, seed);
  for (;;) {
    const h = (rng.int(0x10000) * 0x10000 + rng.int(0x10000)).toString(16)
      .padStart(8, "0");
    if (!used.has(h)) {
      used.add(h);
      return h;
    }
  }
}

/** Speakers per split (a few per split, as the real splits hold disjoint speakers). */
function speakerCount(perClass: number): number {
  return Math.max(1, Math.min(8, perClass));
}

/** Clips per split of the layouts that take clips per class and split. */
function perSplit(
  o: ResolvedSynthOptions,
  classes: number,
): Record<Split, number> {
  return {
    train: o.train! * classes,
    validation: o.validation! * classes,
    test: o.test! * classes,
  };
}

function planSpeechCommands(o: ResolvedSynthOptions): LayoutPlan {
  const classes = speechCommandsClasses(o.version ?? 2);
  const used = new Set<string>();
  const clips: ClipPlan[] = [];
  const lists: Record<Split, string[]> = {
    train: [],
    validation: [],
    test: [],
  };
  for (const split of SPLIT_NAMES) {
    const perClass = o[split]!;
    const speakers = Array.from(
      { length: speakerCount(perClass) },
      (_, j) => speakerHash(`${split}/${j}`, o.seed, used),
    );
    for (const [label, word] of classes.entries()) {
      const takes = new Map<string, number>();
      for (let i = 0; i < perClass; i++) {
        const speaker = speakers[i % speakers.length];
        const n = takes.get(speaker) ?? 0;
        takes.set(speaker, n + 1);
        const rel = `${word}/${speaker}_nohash_${n}.wav`;
        clips.push({ rel, label, pitch: pitchOf(speaker, o.seed) });
        lists[split].push(rel);
      }
    }
  }
  const text = (xs: string[]) => [...xs].sort().join("\n") + "\n";
  return {
    classes,
    clips,
    counts: perSplit(o, classes.length),
    texts: {
      "validation_list.txt": text(lists.validation),
      "testing_list.txt": text(lists.test),
    },
  };
}

function planAudioMnist(o: ResolvedSynthOptions): LayoutPlan {
  // Every fold's splits draw on all 60 speakers, so all are written.
  const speakers = audioMnistSpeakers(0, "trainValidation");
  const per = o.perSpeaker! * AUDIOMNIST_CLASSES.length;
  const clips: ClipPlan[] = [];
  const meta: Record<string, Record<string, string>> = {};
  for (let s = 1; s <= 60; s++) {
    const speaker = pad2(s);
    const pitch = pitchOf(`audiomnist/${speaker}`, o.seed);
    meta[speaker] = {
      accent: "synthetic",
      age: String(20 + (s * 7) % 40),
      gender: s % 3 === 0 ? "female" : "male",
      "native speaker": "no",
      origin: "synthetic (deno task synth)",
      recordingdate: "00-00-00-00-00-00",
      recordingroom: "synthetic",
    };
    for (const [digit] of AUDIOMNIST_CLASSES.entries()) {
      for (let i = 0; i < o.perSpeaker!; i++) {
        clips.push({
          rel: `${speaker}/${digit}_${speaker}_${i}.wav`,
          label: digit,
          pitch,
        });
      }
    }
  }
  return {
    classes: AUDIOMNIST_CLASSES,
    clips,
    counts: {
      train: speakers.train.length * per,
      validation: speakers.validation.length * per,
      test: speakers.test.length * per,
    },
    texts: { "audioMNIST_meta.txt": JSON.stringify(meta, null, 4) + "\n" },
  };
}

/** The official datafiles hold the authors' absolute paths; the loader keeps the basename. */
const VOCALSOUND_WAV_PREFIX =
  "/data/sls/scratch/yuangong/vocalsound/data/audio_16k/";
const VOCALSOUND_SLUGS = [
  "laughter",
  "sigh",
  "cough",
  "throatclearing",
  "sneeze",
  "sniff",
];

function planVocalSound(o: ResolvedSynthOptions): LayoutPlan {
  const clips: ClipPlan[] = [];
  const entries: Record<Split, { wav: string; labels: string }[]> = {
    train: [],
    validation: [],
    test: [],
  };
  let next = 1;
  for (const split of SPLIT_NAMES) {
    const perClass = o[split]!;
    const speakers = Array.from(
      { length: speakerCount(perClass) },
      (_, j) =>
        `${j % 2 === 0 ? "f" : "m"}${String(next + j).padStart(4, "0")}`,
    );
    next += speakers.length;
    for (const [label, cls] of VOCALSOUND_CLASSES.entries()) {
      for (let i = 0; i < perClass; i++) {
        const speaker = speakers[i % speakers.length];
        const take = Math.floor(i / speakers.length);
        const name = `${speaker}_${take}_${VOCALSOUND_SLUGS[label]}.wav`;
        clips.push({
          rel: `audio_16k/${name}`,
          label,
          pitch: pitchOf(`vocalsound/${speaker}`, o.seed),
        });
        entries[split].push({
          wav: VOCALSOUND_WAV_PREFIX + name,
          labels: cls.mid,
        });
      }
    }
  }
  const json = (split: Split) =>
    JSON.stringify({ data: entries[split] }, null, 1) + "\n";
  return {
    classes: VOCALSOUND_CLASSES.map((c) => c.name),
    clips,
    counts: perSplit(o, VOCALSOUND_CLASSES.length),
    texts: {
      "datafiles/tr.json": json("train"),
      "datafiles/val.json": json("validation"),
      "datafiles/te.json": json("test"),
      "class_labels_indices_vs.csv": "index,mid,display_name\n" +
        VOCALSOUND_CLASSES.map((c, i) => `${i},${c.mid},"${c.name}"`).join(
          "\n",
        ) + "\n",
    },
  };
}

function planCochlScene(o: ResolvedSynthOptions): LayoutPlan {
  const folders: Record<Split, string> = {
    train: "Train",
    validation: "Val",
    test: "Test",
  };
  const clips: ClipPlan[] = [];
  let user = 1;
  for (const split of SPLIT_NAMES) {
    const perClass = o[split]!;
    for (const [label, cls] of COCHLSCENE_CLASSES.entries()) {
      for (let i = 0; i < perClass; i++) {
        const id = `user${String(user + (i % 4)).padStart(4, "0")}`;
        clips.push({
          rel: `${folders[split]}/${cls}/${cls}_${id}_${
            String(i).padStart(3, "0")
          }.wav`,
          label,
          pitch: 1,
        });
      }
    }
    user += 4;
  }
  return {
    classes: COCHLSCENE_CLASSES,
    clips,
    counts: perSplit(o, COCHLSCENE_CLASSES.length),
    texts: {},
  };
}

/** The layout's plan for the resolved options. */
function planLayout(layout: SynthLayout, o: ResolvedSynthOptions): LayoutPlan {
  switch (layout) {
    case "speech_commands":
      return planSpeechCommands(o);
    case "audiomnist":
      return planAudioMnist(o);
    case "vocalsound":
      return planVocalSound(o);
    case "cochlscene":
      return planCochlScene(o);
  }
}

/** The folder holding Speech Commands' noise clips. */
const NOISE_FOLDER = "_background_noise_";

/** Every file of the dataset, in a fixed order. */
function planFiles(
  layout: SynthLayout,
  o: ResolvedSynthOptions,
  plan: LayoutPlan,
): Planned[] {
  const encoder = new TextEncoder();
  const files: Planned[] = [];
  const rate = o.sampleRateHz;
  for (const clip of plan.clips) {
    files.push({
      rel: clip.rel,
      make: () => {
        const rng = createRng(`synth/${layout}/${clip.rel}`, o.seed);
        const length = Math.max(
          1,
          Math.round(rate * o.seconds * (1 - o.jitter * rng.next())),
        );
        return encodeWavPcm16(
          synthClip(clip.label, plan.classes.length, rate, length, rng, {
            noiseLevel: o.noiseLevel,
            pitch: clip.pitch,
          }),
          rate,
        );
      },
    });
  }
  for (const [rel, text] of Object.entries(plan.texts)) {
    files.push({ rel, make: () => encoder.encode(text) });
  }
  if (o.backgroundNoise) {
    for (const name of NOISE_NAMES) {
      files.push({
        rel: `${NOISE_FOLDER}/${name}.wav`,
        make: () =>
          encodeWavPcm16(
            synthNoise(
              name,
              NOISE_RATE_HZ,
              Math.round(NOISE_RATE_HZ * o.noiseSeconds),
              createRng(`synth/noise/${name}`, o.seed),
            ),
            NOISE_RATE_HZ,
          ),
      });
    }
    files.push({
      rel: `${NOISE_FOLDER}/README.md`,
      make: () =>
        encoder.encode(
          "Synthetic stand-ins for Speech Commands' background noise clips, written by `deno task synth`.\n",
        ),
    });
  }
  return files;
}

/** The record kept in `synth.json`. */
interface SynthRecord {
  readonly generator: "deno task synth";
  readonly format: 1;
  readonly layout: SynthLayout;
  readonly options: ResolvedSynthOptions;
  readonly classes: number;
  readonly clips: Record<Split, number>;
  readonly files: number;
  readonly bytes: number;
}

function summaryOf(
  root: string,
  record: SynthRecord,
  reused: boolean,
): SynthSummary {
  const data: Record<string, unknown> = { layout: record.layout, root };
  if (record.layout === "speech_commands") {
    data.version = record.options.version;
  }
  return {
    layout: record.layout,
    root,
    data,
    ...(record.options.backgroundNoise
      ? { backgroundNoise: join(root, NOISE_FOLDER) }
      : {}),
    classes: record.classes,
    clips: record.clips,
    files: record.files,
    bytes: record.bytes,
    reused,
    options: record.options,
  };
}

/** Whether two JSON values are equal (plain data only). */
function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Key order of a resolved options object made canonical, for comparison. */
function canonical(o: ResolvedSynthOptions): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
  );
}

/**
 * Writes a synthetic dataset in a published layout to `dir`, or reuses it
 * when `dir` already holds one written with the same layout and options.
 *
 * @param layout The layout (`speech_commands`, `audiomnist`, `vocalsound`, `cochlscene`).
 * @param dir The dataset folder to create (the layout's `root`); its parent is created when missing.
 * @param options Sizes, rate, seed and noise (see {@linkcode SynthOptions}).
 * @returns What was written, with the `data:` section that reads it.
 * @throws RangeError for a bad option; Error when `dir` exists and is not
 *   this dataset (nothing in it is touched).
 */
export async function writeSyntheticDataset(
  layout: SynthLayout,
  dir: string,
  options: SynthOptions = {},
): Promise<SynthSummary> {
  const resolved = canonical(
    resolveSynthOptions(layout, options),
  ) as unknown as ResolvedSynthOptions;
  const root = resolve(dir);
  let existing: Deno.FileInfo | undefined;
  try {
    existing = await Deno.stat(root);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  if (existing) {
    if (!existing.isDirectory) {
      throw new Error(
        `Cannot write the synthetic dataset to ${root}: it is a file; choose another folder`,
      );
    }
    let record: SynthRecord | undefined;
    try {
      record = JSON.parse(await Deno.readTextFile(join(root, SYNTH_RECORD)));
    } catch {
      record = undefined;
    }
    if (record) {
      if (
        record.layout === layout &&
        sameJson(canonical(record.options), resolved)
      ) {
        return summaryOf(root, record, true);
      }
      throw new Error(
        `Cannot write the synthetic dataset to ${root}: it holds another one (${
          join(root, SYNTH_RECORD)
        } records layout ${record.layout} with ${
          JSON.stringify(record.options)
        }); remove the folder or choose another`,
      );
    }
    for await (const _ of Deno.readDir(root)) {
      throw new Error(
        `Cannot write the synthetic dataset to ${root}: the folder exists and is not empty; remove it or choose another`,
      );
    }
  }
  const plan = planLayout(layout, resolved);
  const files = planFiles(layout, resolved, plan);
  const parent = dirname(root);
  await Deno.mkdir(parent, { recursive: true });
  const tmp = join(
    parent,
    `.${basename(root)}.synth-${crypto.randomUUID().slice(0, 8)}.tmp`,
  );
  await Deno.mkdir(tmp);
  try {
    let bytes = 0;
    const made = new Set<string>();
    for (const file of files) {
      const target = join(tmp, file.rel);
      const folder = dirname(target);
      if (!made.has(folder)) {
        await Deno.mkdir(folder, { recursive: true });
        made.add(folder);
      }
      const data = file.make();
      bytes += data.length;
      await Deno.writeFile(target, data);
    }
    const clips = { ...plan.counts };
    const record: SynthRecord = {
      generator: "deno task synth",
      format: 1,
      layout,
      options: resolved,
      classes: plan.classes.length,
      clips,
      files: files.length + 1,
      bytes,
    };
    await writeFileAtomic(
      join(tmp, SYNTH_RECORD),
      JSON.stringify(record, null, 2) + "\n",
    );
    if (existing) await Deno.remove(root); // empty, checked above
    await Deno.rename(tmp, root);
    return summaryOf(root, record, false);
  } catch (error) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw error;
  }
}
