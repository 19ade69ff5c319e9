/**
 * WAV reading for the data loaders.
 *
 * Reads RIFF/WAVE files with PCM (8/16/24/32-bit), IEEE float (32/64-bit)
 * and WAVE_FORMAT_EXTENSIBLE headers, any channel count, and returns
 * channels-first `Float32Array`s scaled exactly like torchaudio's
 * `load(normalize=True)`, so features computed from them match the
 * project's parity fixtures:
 *
 * | Stored as        | Sample value         |
 * | ---------------- | -------------------- |
 * | unsigned 8-bit   | (v − 128) / 128      |
 * | signed 16-bit    | v / 32768            |
 * | signed 24-bit    | v / 8388608          |
 * | signed 32-bit    | v / 2147483648       |
 * | float 32         | as stored            |
 * | float 64         | rounded to float 32  |
 *
 * The header (chunk walking, validation, truncation checks) is parsed here;
 * 8- and 16-bit PCM are decoded here in one pass; the samples of 24/32-bit
 * PCM and float files are decoded by
 * `wav-decoder` (with `{ symmetric: true }`), which is handed a canonical
 * 44-byte header in front of the data payload. That way it never sees
 * WAVE_FORMAT_EXTENSIBLE (which it rejects), odd-sized chunks (it ignores
 * RIFF's pad byte) or chunks after `data`. Two of its behaviours are
 * corrected:
 *
 * - 8-bit: its symmetric scaling is (v − 127.5) / 127.5, not torchaudio's
 *   (v − 128) / 128, so 8-bit files are decoded here instead.
 * - 24-bit: it sign-extends with `xx > 0x800000`, so the most negative value
 *   −8388608 decodes as +1.0. No other 24-bit value can decode to exactly 1.0
 *   (the largest positive is 8388607 / 8388608 = 1 − 2⁻²³, exact in float
 *   32), so every 1.0 is turned back into −1.0.
 *
 * A data chunk that declares more bytes than the file holds is an error
 * (wav-decoder would silently decode the shorter rest).
 *
 * @example Read a clip
 * ```ts ignore
 * import { readWav } from "./wav.ts";
 * const { sampleRateHz, channels } = await readWav("clip.wav");
 * ```
 *
 * @module
 */

import WavDecoder from "wav-decoder";
import { HOST_LITTLE_ENDIAN } from "./endian.ts";
import { deinterleavePcm16, floatOfPcm16 } from "./pcm16.ts";

/** Facts from a WAV header. */
export interface WavInfo {
  /** Sample rate in Hz (frames per second). */
  readonly sampleRateHz: number;
  /** Number of channels. */
  readonly channels: number;
  /** Bits per stored sample (the container size: 8, 16, 24, 32 or 64). */
  readonly bitsPerSample: number;
  /** Whether samples are integers (`pcm`) or IEEE floats (`float`). */
  readonly encoding: "pcm" | "float";
  /** Whether the header is WAVE_FORMAT_EXTENSIBLE (format tag 0xFFFE). */
  readonly extensible: boolean;
  /** Samples per channel (whole frames in the data chunk). */
  readonly frames: number;
  /** Length in seconds: `frames / sampleRateHz`. */
  readonly durationSeconds: number;
  /** Byte offset of the data chunk payload from the start of the file. */
  readonly dataOffset: number;
  /** Size of the data chunk payload in bytes, as declared by its header. */
  readonly dataBytes: number;
}

/** Decoded audio. */
export interface DecodedWav {
  /** Sample rate in Hz. */
  readonly sampleRateHz: number;
  /**
   * One array per channel, in file order; values in [−1, 1) for PCM. For
   * 16-bit PCM each carries its integer samples (`lib/pcm16.ts`).
   */
  readonly channels: Float32Array[];
  /**
   * For 16-bit PCM: the integer samples per channel (`channels[c][i] ===
   * pcm16[c][i] / 32768`), the same arrays as the channels' attachments.
   */
  readonly pcm16?: Int16Array[];
  /** The header the samples were decoded from. */
  readonly info: WavInfo;
}

/**
 * Thrown for a file that is not a readable WAV; names the file. The message
 * reads `Cannot read WAV file "<file>": <reason>`.
 */
export class WavError extends Error {
  /** The file (path or name) that could not be read. */
  readonly file: string;

  /**
   * @param file The file's path or name, as the caller knows it.
   * @param reason What is wrong, in sentence case without a final period.
   */
  constructor(file: string, reason: string) {
    super(`Cannot read WAV file "${file}": ${reason}`);
    this.name = "WavError";
    this.file = file;
  }
}

/** The few bits of wav-decoder's (untyped, CommonJS) API used here. */
interface WavDecoderModule {
  decode: {
    sync(
      buffer: ArrayBuffer,
      options?: { symmetric?: boolean },
    ): { sampleRate: number; length: number; channelData: Float32Array[] };
  };
}

const decoder = WavDecoder as unknown as WavDecoderModule;

/** Bytes `readWavHeader` reads from the start of a file in one go. */
const HEADER_PREFIX_BYTES = 64 * 1024;

const FORMAT_PCM = 0x0001;
const FORMAT_FLOAT = 0x0003;
const FORMAT_EXTENSIBLE = 0xfffe;

/** Names of format tags people meet, for error messages. */
const FORMAT_NAMES: Record<number, string> = {
  0x0002: "Microsoft ADPCM",
  0x0006: "A-law",
  0x0007: "µ-law",
  0x0011: "IMA ADPCM",
  0x0031: "GSM 6.10",
  0x0050: "MPEG",
  0x0055: "MPEG Layer 3",
  0x00ff: "AAC",
  0x1610: "HE-AAC",
  0xf1ac: "FLAC",
};

function hex16(v: number): string {
  return "0x" + v.toString(16).toUpperCase().padStart(4, "0");
}

function formatName(tag: number): string {
  const name = FORMAT_NAMES[tag];
  return name === undefined ? hex16(tag) : `${hex16(tag)} (${name})`;
}

/** A request of the header walker: `length` bytes at byte `offset`. */
interface ByteRequest {
  readonly offset: number;
  readonly length: number;
}

/** What the fmt chunk says, validated. */
interface Format {
  readonly encoding: "pcm" | "float";
  readonly extensible: boolean;
  readonly channels: number;
  readonly sampleRateHz: number;
  readonly bitsPerSample: number;
  readonly blockAlign: number;
}

function u16(b: Uint8Array, at: number): number {
  return b[at] | (b[at + 1] << 8);
}

function u32(b: Uint8Array, at: number): number {
  return (b[at] | (b[at + 1] << 8) | (b[at + 2] << 16) | (b[at + 3] << 24)) >>>
    0;
}

function ascii4(b: Uint8Array, at: number): string {
  return String.fromCharCode(b[at], b[at + 1], b[at + 2], b[at + 3]);
}

/** Whether the (possibly short) start of a file could be a RIFF/WAVE header. */
function looksLikeRiffStart(b: Uint8Array): boolean {
  const riff = "RIFF";
  for (let i = 0; i < Math.min(4, b.length); i++) {
    if (b[i] !== riff.charCodeAt(i)) return false;
  }
  const wave = "WAVE";
  for (let i = 8; i < Math.min(12, b.length); i++) {
    if (b[i] !== wave.charCodeAt(i - 8)) return false;
  }
  return true;
}

/** Parses and validates the body of a fmt chunk (`size` bytes declared). */
function parseFormat(body: Uint8Array, size: number, file: string): Format {
  let tag = u16(body, 0);
  const channels = u16(body, 2);
  const sampleRateHz = u32(body, 4);
  const blockAlign = u16(body, 12);
  const bitsPerSample = u16(body, 14);
  const extensible = tag === FORMAT_EXTENSIBLE;
  if (extensible) {
    if (size < 40) {
      throw new WavError(
        file,
        `its WAVE_FORMAT_EXTENSIBLE fmt chunk is ${size} bytes long, expected at least 40`,
      );
    }
    tag = u16(body, 24); // first two bytes of the subformat GUID
    if (tag !== FORMAT_PCM && tag !== FORMAT_FLOAT) {
      throw new WavError(
        file,
        `its WAVE_FORMAT_EXTENSIBLE subformat ${
          formatName(tag)
        } is not supported (only PCM 0x0001 and IEEE float 0x0003 are)`,
      );
    }
  } else if (tag !== FORMAT_PCM && tag !== FORMAT_FLOAT) {
    throw new WavError(
      file,
      `its format tag ${
        formatName(tag)
      } is not supported (only PCM 0x0001, IEEE float 0x0003 and WAVE_FORMAT_EXTENSIBLE 0xFFFE are)`,
    );
  }
  const encoding = tag === FORMAT_FLOAT ? "float" : "pcm";
  if (channels === 0) {
    throw new WavError(file, "its fmt chunk declares 0 channels");
  }
  if (sampleRateHz === 0) {
    throw new WavError(file, "its fmt chunk declares a sample rate of 0 Hz");
  }
  const supported = encoding === "pcm" ? [8, 16, 24, 32] : [32, 64];
  if (!supported.includes(bitsPerSample)) {
    throw new WavError(
      file,
      `its bit depth ${bitsPerSample} is not supported for ${
        encoding === "pcm"
          ? "PCM (8, 16, 24 or 32 bits are)"
          : "IEEE float (32 or 64 bits are)"
      }`,
    );
  }
  const expected = channels * bitsPerSample / 8;
  if (blockAlign !== expected) {
    throw new WavError(
      file,
      `its block align is ${blockAlign} bytes but ${channels} channel(s) of ${bitsPerSample} bits need ${expected}`,
    );
  }
  return {
    encoding,
    extensible,
    channels,
    sampleRateHz,
    bitsPerSample,
    blockAlign,
  };
}

/**
 * Walks the chunks of a file of `fileSize` bytes, yielding the byte ranges it
 * needs (each within the file) and receiving them; returns the header facts.
 * Shared by the in-memory and the seeking reader.
 */
function* walkHeader(
  file: string,
  fileSize: number,
): Generator<ByteRequest, WavInfo, Uint8Array> {
  if (fileSize === 0) throw new WavError(file, "the file is empty");
  const riff = yield { offset: 0, length: Math.min(12, fileSize) };
  if (!looksLikeRiffStart(riff)) {
    throw new WavError(file, "it is not a RIFF/WAVE file");
  }
  if (riff.length < 12) {
    throw new WavError(
      file,
      `the file ends inside its header (it is only ${fileSize} bytes long)`,
    );
  }
  let format: Format | undefined;
  let data: { offset: number; bytes: number } | undefined;
  let pos = 12;
  while (format === undefined || data === undefined) {
    if (pos >= fileSize) break;
    if (pos + 8 > fileSize) {
      throw new WavError(
        file,
        `the file ends inside its header (a chunk header at byte ${pos} is cut after ${
          fileSize - pos
        } of 8 bytes)`,
      );
    }
    const head = yield { offset: pos, length: 8 };
    const id = ascii4(head, 0);
    const size = u32(head, 4);
    const body = pos + 8;
    if (id === "fmt " && format === undefined) {
      if (size < 16) {
        throw new WavError(
          file,
          `its fmt chunk is ${size} bytes long, expected at least 16`,
        );
      }
      const want = Math.min(size, 40);
      if (body + want > fileSize) {
        throw new WavError(
          file,
          `the file ends inside its header (the fmt chunk declares ${size} bytes, ${
            fileSize - body
          } are present)`,
        );
      }
      format = parseFormat(yield { offset: body, length: want }, size, file);
    } else if (id === "data" && data === undefined) {
      data = { offset: body, bytes: size };
    }
    pos = body + size + (size & 1); // RIFF pads odd-sized chunks to even
  }
  if (data !== undefined && data.bytes > fileSize - data.offset) {
    throw new WavError(
      file,
      `the data chunk declares ${data.bytes} bytes but the file holds ${
        fileSize - data.offset
      } (it is truncated)`,
    );
  }
  if (format === undefined) throw new WavError(file, "it has no fmt chunk");
  if (data === undefined) throw new WavError(file, "it has no data chunk");
  const frames = Math.floor(data.bytes / format.blockAlign);
  return {
    sampleRateHz: format.sampleRateHz,
    channels: format.channels,
    bitsPerSample: format.bitsPerSample,
    encoding: format.encoding,
    extensible: format.extensible,
    frames,
    durationSeconds: frames / format.sampleRateHz,
    dataOffset: data.offset,
    dataBytes: data.bytes,
  };
}

/**
 * Parses the header of a WAV file held in memory: walks the chunks (skipping
 * unknown ones such as LIST, with RIFF's pad byte after odd sizes), reads
 * `fmt ` and locates `data`, and validates them.
 *
 * @param bytes The file, or its first bytes when `fileSize` is given.
 * @param file The file's path or name, for error messages.
 * @param fileSize The whole file's size in bytes (default `bytes.length`);
 *   the data chunk is checked against it for truncation.
 * @returns The header facts.
 * @throws {WavError} When the file is not a readable WAV (including when
 *   `bytes` is a prefix that ends before the data chunk's header).
 */
export function parseWavHeader(
  bytes: Uint8Array,
  file: string,
  fileSize?: number,
): WavInfo {
  const size = fileSize ?? bytes.length;
  if (size < bytes.length) {
    throw new RangeError(
      `Cannot write a WAV header: fileSize (${size} bytes) is smaller than the ${bytes.length} bytes given`,
    );
  }
  const walk = walkHeader(file, size);
  let step = walk.next(new Uint8Array(0));
  while (!step.done) {
    const { offset, length } = step.value;
    if (offset + length > bytes.length) {
      throw new WavError(
        file,
        `its header lies beyond the first ${bytes.length} bytes given`,
      );
    }
    step = walk.next(bytes.subarray(offset, offset + length));
  }
  return step.value;
}

/** Reads up to `into.length` bytes at the file's current position; returns the count. */
async function readFull(f: Deno.FsFile, into: Uint8Array): Promise<number> {
  let got = 0;
  while (got < into.length) {
    const n = await f.read(into.subarray(got));
    if (n === null) break;
    got += n;
  }
  return got;
}

/**
 * Reads the header of a WAV file without reading its samples: the first
 * 64 KiB (one read), plus a few small seeking reads only when chunk headers
 * lie further (e.g. behind a large LIST chunk). The file's size comes from
 * `stat`, so a truncated data chunk is still detected.
 *
 * @param path Path of the file.
 * @returns The header facts.
 * @throws {WavError} When the file is not a readable WAV.
 * @throws {Deno.errors.NotFound} And other `Deno.errors` when the file cannot
 *   be opened or read.
 */
export async function readWavHeader(path: string): Promise<WavInfo> {
  using f = await Deno.open(path, { read: true });
  const fileSize = (await f.stat()).size;
  const prefix = new Uint8Array(Math.min(HEADER_PREFIX_BYTES, fileSize));
  const prefixBytes = await readFull(f, prefix);
  const walk = walkHeader(path, fileSize);
  let step = walk.next(new Uint8Array(0));
  while (!step.done) {
    const { offset, length } = step.value;
    let chunk: Uint8Array;
    if (offset + length <= prefixBytes) {
      chunk = prefix.subarray(offset, offset + length);
    } else {
      await f.seek(offset, Deno.SeekMode.Start);
      chunk = new Uint8Array(length);
      const got = await readFull(f, chunk);
      if (got < length) {
        // The file shrank between stat and read.
        throw new WavError(
          path,
          `the file ends inside its header (at byte ${offset + got})`,
        );
      }
    }
    step = walk.next(chunk);
  }
  return step.value;
}

/** Writes the canonical 44-byte header wav-decoder is given. */
function canonicalWav(info: WavInfo, payload: Uint8Array): ArrayBuffer {
  const buffer = new ArrayBuffer(44 + payload.length);
  const view = new DataView(buffer);
  const u8 = new Uint8Array(buffer);
  const blockAlign = info.channels * info.bitsPerSample / 8;
  u8.set([0x52, 0x49, 0x46, 0x46], 0); // RIFF
  view.setUint32(4, 36 + payload.length, true);
  u8.set([0x57, 0x41, 0x56, 0x45, 0x66, 0x6d, 0x74, 0x20], 8); // WAVEfmt
  view.setUint32(16, 16, true);
  view.setUint16(
    20,
    info.encoding === "float" ? FORMAT_FLOAT : FORMAT_PCM,
    true,
  );
  view.setUint16(22, info.channels, true);
  view.setUint32(24, info.sampleRateHz, true);
  view.setUint32(28, info.sampleRateHz * blockAlign, true);
  view.setUint16(32, blockAlign, true);
  view.setUint16(34, info.bitsPerSample, true);
  u8.set([0x64, 0x61, 0x74, 0x61], 36); // data
  view.setUint32(40, payload.length, true);
  u8.set(payload, 44);
  return buffer;
}

/**
 * Unsigned 8-bit → (v − 128) / 128, torchaudio's scaling: channels-first, in
 * one pass (the same float32 values as the per-sample decoders).
 */
function decodePcm8(
  payload: Uint8Array,
  channelCount: number,
  frames: number,
): Float32Array[] {
  const channels: Float32Array[] = [];
  for (let c = 0; c < channelCount; c++) {
    const out = new Float32Array(frames);
    let p = c;
    for (let i = 0; i < frames; i++) {
      out[i] = (payload[p] - 128) / 128;
      p += channelCount;
    }
    channels.push(out);
  }
  return channels;
}

/**
 * Signed 16-bit little-endian → v / 32768, torchaudio's scaling and the same
 * float32 values as wav-decoder's symmetric `pcm16s` (which reads each sample
 * through a closure and a DataView: about 6× slower, which limited the
 * evaluation of 10-s clips). The channels' integers are split out first and
 * kept, attached to each float channel (`floatOfPcm16`).
 */
function decodePcm16(
  payload: Uint8Array,
  channelCount: number,
  frames: number,
): { channels: Float32Array[]; pcm16: Int16Array[] } {
  let samples: Int16Array;
  if (HOST_LITTLE_ENDIAN && payload.byteOffset % 2 === 0) {
    // The samples in place (WAV is little-endian, as this machine).
    samples = new Int16Array(
      payload.buffer,
      payload.byteOffset,
      frames * channelCount,
    );
  } else {
    // An odd offset or a big-endian host: read each sample little-endian.
    const view = new DataView(
      payload.buffer,
      payload.byteOffset,
      payload.byteLength,
    );
    samples = new Int16Array(frames * channelCount);
    for (let i = 0; i < samples.length; i++) {
      samples[i] = view.getInt16(2 * i, true);
    }
  }
  const pcm16 = deinterleavePcm16(samples, channelCount, frames);
  return { channels: pcm16.map(floatOfPcm16), pcm16 };
}

/**
 * Decodes a WAV file held in memory into channels-first float samples scaled
 * like torchaudio's `load(normalize=True)` (see the module doc).
 *
 * @param bytes The whole file.
 * @param file The file's path or name, for error messages.
 * @returns Sample rate (Hz), one `Float32Array` per channel (`info.frames`
 *   samples each) and the header facts.
 * @throws {WavError} When the file is not a readable WAV or is truncated.
 */
export function decodeWav(bytes: Uint8Array, file: string): DecodedWav {
  const info = parseWavHeader(bytes, file);
  const blockAlign = info.channels * info.bitsPerSample / 8;
  const payload = bytes.subarray(
    info.dataOffset,
    info.dataOffset + info.frames * blockAlign,
  );
  let channels: Float32Array[];
  if (info.bitsPerSample === 8) {
    channels = decodePcm8(payload, info.channels, info.frames);
  } else if (info.encoding === "pcm" && info.bitsPerSample === 16) {
    const { channels, pcm16 } = decodePcm16(
      payload,
      info.channels,
      info.frames,
    );
    return { sampleRateHz: info.sampleRateHz, channels, pcm16, info };
  } else {
    let decoded;
    try {
      decoded = decoder.decode.sync(canonicalWav(info, payload), {
        symmetric: true,
      });
    } catch (e) {
      throw new WavError(
        file,
        `wav-decoder failed: ${e instanceof Error ? e.message : String(e)}`,
      );
    }
    channels = decoded.channelData;
    if (info.encoding === "pcm" && info.bitsPerSample === 24) {
      // wav-decoder 1.3.0 decodes −8388608 as +1.0 (see the module doc).
      for (const ch of channels) {
        for (let i = 0; i < ch.length; i++) if (ch[i] === 1) ch[i] = -1;
      }
    }
  }
  return { sampleRateHz: info.sampleRateHz, channels, info };
}

/**
 * Reads and decodes a WAV file (see {@linkcode decodeWav}).
 *
 * @param path Path of the file.
 * @returns Sample rate (Hz), one `Float32Array` per channel and the header.
 * @throws {WavError} When the file is not a readable WAV or is truncated.
 * @throws {Deno.errors.NotFound} And other `Deno.errors` when the file cannot
 *   be read.
 */
export async function readWav(path: string): Promise<DecodedWav> {
  return decodeWav(await Deno.readFile(path), path);
}
