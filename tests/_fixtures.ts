/**
 * Test fixtures written on the fly: WAV files in every encoding the loaders
 * must read (PCM 8/16/24/32-bit, float 32/64, WAVE_FORMAT_EXTENSIBLE, any
 * channel count), plus a few deliberately broken files. Nothing is
 * downloaded.
 *
 * @module
 */

/** Sample encodings {@linkcode encodeWav} can write. */
export type WavEncoding =
  | "pcm8"
  | "pcm16"
  | "pcm24"
  | "pcm32"
  | "float32"
  | "float64";

/** Options of {@linkcode encodeWav}. */
export interface WavOptions {
  /** Sample rate in Hz. */
  readonly sampleRateHz: number;
  /** Sample encoding (default pcm16). */
  readonly encoding?: WavEncoding;
  /** Write a WAVE_FORMAT_EXTENSIBLE header (format tag 0xFFFE + subformat GUID). */
  readonly extensible?: boolean;
  /** Extra chunk (e.g. LIST) before `data`, to exercise chunk skipping. */
  readonly extraChunk?: boolean;
}

const BITS: Record<WavEncoding, number> = {
  pcm8: 8,
  pcm16: 16,
  pcm24: 24,
  pcm32: 32,
  float32: 32,
  float64: 64,
};

/**
 * Encodes channels-first samples as a WAV file. Integer encodings take
 * integer sample values in the encoding's range (e.g. int16 for pcm16,
 * 0..255 for pcm8); float encodings take floats.
 */
export function encodeWav(
  channels: readonly ArrayLike<number>[],
  options: WavOptions,
): Uint8Array {
  const encoding = options.encoding ?? "pcm16";
  const bits = BITS[encoding];
  const bytes = bits / 8;
  const nch = channels.length;
  const length = channels[0]?.length ?? 0;
  const isFloat = encoding.startsWith("float");
  const fmtSize = options.extensible ? 40 : 16;
  const extra = options.extraChunk ? 8 + 6 : 0;
  const dataSize = length * nch * bytes;
  const buffer = new ArrayBuffer(12 + 8 + fmtSize + extra + 8 + dataSize);
  const view = new DataView(buffer);
  const u8 = new Uint8Array(buffer);
  let p = 0;
  const str = (s: string) => {
    for (const c of s) u8[p++] = c.charCodeAt(0);
  };
  const u16 = (v: number) => {
    view.setUint16(p, v, true);
    p += 2;
  };
  const u32 = (v: number) => {
    view.setUint32(p, v, true);
    p += 4;
  };
  str("RIFF");
  u32(buffer.byteLength - 8);
  str("WAVE");
  str("fmt ");
  u32(fmtSize);
  const tag = isFloat ? 3 : 1;
  u16(options.extensible ? 0xfffe : tag);
  u16(nch);
  u32(options.sampleRateHz);
  u32(options.sampleRateHz * nch * bytes);
  u16(nch * bytes);
  u16(bits);
  if (options.extensible) {
    u16(22); // cbSize
    u16(bits); // valid bits per sample
    u32(nch === 1 ? 0x4 : (2 ** nch - 1) >>> 0); // channel mask: front left, right, ...
    u16(tag); // subformat GUID: tag + 00000000-0010-8000-00aa00389b71
    for (
      const b of [0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xaa, 0, 0x38, 0x9b, 0x71]
    ) u8[p++] = b;
  }
  if (options.extraChunk) {
    str("LIST");
    u32(6);
    str("INFOxx");
  }
  str("data");
  u32(dataSize);
  for (let i = 0; i < length; i++) {
    for (let c = 0; c < nch; c++) {
      const v = channels[c][i];
      switch (encoding) {
        case "pcm8":
          view.setUint8(p, v);
          break;
        case "pcm16":
          view.setInt16(p, v, true);
          break;
        case "pcm24": {
          const x = v < 0 ? v + 0x1000000 : v;
          view.setUint8(p, x & 0xff);
          view.setUint8(p + 1, (x >> 8) & 0xff);
          view.setUint8(p + 2, (x >> 16) & 0xff);
          break;
        }
        case "pcm32":
          view.setInt32(p, v, true);
          break;
        case "float32":
          view.setFloat32(p, v, true);
          break;
        case "float64":
          view.setFloat64(p, v, true);
          break;
      }
      p += bytes;
    }
  }
  return u8;
}

/** A seeded int16 tone: `length` samples of a sine at `frequencyHz`, amplitude 0.5 full scale. */
export function toneInt16(
  length: number,
  frequencyHz: number,
  sampleRateHz: number,
): Int16Array {
  const out = new Int16Array(length);
  for (let i = 0; i < length; i++) {
    out[i] = Math.round(
      16384 * Math.sin((2 * Math.PI * frequencyHz * i) / sampleRateHz),
    );
  }
  return out;
}

/** Writes a mono int16 WAV of `seconds` seconds (a tone) to `path`, creating folders. */
export async function writeToneWav(
  path: string,
  options: {
    sampleRateHz?: number;
    seconds?: number;
    frequencyHz?: number;
    channels?: number;
  } = {},
): Promise<void> {
  const rate = options.sampleRateHz ?? 16000;
  const tone = toneInt16(
    Math.round(rate * (options.seconds ?? 0.1)),
    options.frequencyHz ?? 440,
    rate,
  );
  const channels = Array.from({ length: options.channels ?? 1 }, () => tone);
  await Deno.mkdir(path.replace(/\/[^/]*$/, ""), { recursive: true });
  await Deno.writeFile(path, encodeWav(channels, { sampleRateHz: rate }));
}

/** Options of {@linkcode writeToneFolder}. */
export interface ToneFolderOptions {
  /** Class names; class `k` gets tones at 300·(k+1) + 7·i Hz. */
  readonly classes: readonly string[];
  /** Clips per class for train, validation and test. */
  readonly perClass: readonly [number, number, number];
  /** Length of clip `i` of a class, in seconds. */
  readonly seconds: (i: number) => number;
}

/**
 * Writes a folder dataset of 8 kHz tones under `dir/clips` (`<class>/<class>_<i>.wav`)
 * with a `manifest.csv` (`path,label,split`), the first clips of each class in train,
 * then validation, then test.
 */
export async function writeToneFolder(
  dir: string,
  o: ToneFolderOptions,
): Promise<void> {
  const [train, validation, test] = o.perClass;
  const rows = ["path,label,split"];
  for (const [k, cls] of o.classes.entries()) {
    for (let i = 0; i < train + validation + test; i++) {
      const file = `${cls}/${cls}_${i}.wav`;
      await writeToneWav(`${dir}/clips/${file}`, {
        sampleRateHz: 8000,
        seconds: o.seconds(i),
        frequencyHz: 300 * (k + 1) + 7 * i,
      });
      const split = i < train
        ? "train"
        : i < train + validation
        ? "validation"
        : "test";
      rows.push(`${file},${cls},${split}`);
    }
  }
  await Deno.writeTextFile(`${dir}/clips/manifest.csv`, rows.join("\n") + "\n");
}
