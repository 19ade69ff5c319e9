import assert from "node:assert/strict";
import {
  decodeWav,
  parseWavHeader,
  readWav,
  readWavHeader,
  WavError,
} from "./wav.ts";
import { encodeWav, toneInt16 } from "../tests/_fixtures.ts";
import { pcm16Of } from "./pcm16.ts";

const f32 = Math.fround;

/** Asserts a decoded channel equals `expected` exactly (as float32). */
function assertSamples(actual: Float32Array, expected: readonly number[]) {
  assert.deepEqual(Array.from(actual), expected.map(f32));
}

/** Asserts `fn` throws a WavError naming `file` whose message contains `part`. */
function assertWavError(fn: () => unknown, file: string, part: string) {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof WavError, `expected WavError, got ${e}`);
    assert.equal(e.file, file);
    assert.ok(
      e.message.startsWith(`Cannot read WAV file "${file}": `),
      e.message,
    );
    assert.ok(e.message.includes(part), `${e.message} lacks ${part}`);
    assert.ok(!e.message.endsWith("."), e.message);
    return true;
  });
}

async function assertRejectsWav(
  fn: () => Promise<unknown>,
  file: string,
  part: string,
) {
  await assert.rejects(fn, (e: unknown) => {
    assert.ok(e instanceof WavError, `expected WavError, got ${e}`);
    assert.equal(e.file, file);
    assert.ok(e.message.includes(part), `${e.message} lacks ${part}`);
    return true;
  });
}

/** A 16-bit mono 16 kHz file with a few samples. */
function smallWav(): Uint8Array {
  return encodeWav([[0, 1, -1, 2]], { sampleRateHz: 16000 });
}

/** Offset of the `fmt ` chunk body in files written by encodeWav. */
const FMT = 20;

function withU16(bytes: Uint8Array, at: number, v: number): Uint8Array {
  const out = bytes.slice();
  new DataView(out.buffer).setUint16(at, v, true);
  return out;
}

function ascii(s: string): number[] {
  return Array.from(s, (c) => c.charCodeAt(0));
}

function u32le(v: number): number[] {
  return [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
}

/** Builds a RIFF/WAVE file from raw chunks (id, body), padding odd bodies. */
function riff(chunks: [string, number[] | Uint8Array][]): Uint8Array {
  let size = 12;
  for (const [, body] of chunks) size += 8 + body.length + (body.length % 2);
  const out = new Uint8Array(size);
  out.set([...ascii("RIFF"), ...u32le(size - 8), ...ascii("WAVE")]);
  let pos = 12;
  for (const [id, body] of chunks) {
    out.set([...ascii(id), ...u32le(body.length)], pos);
    out.set(body, pos + 8);
    pos += 8 + body.length + (body.length % 2);
  }
  return out;
}

/** The fmt chunk body of a plain PCM16 mono 16 kHz file. */
const PCM16_FMT = Array.from(smallWav().subarray(FMT, FMT + 16));

// ---------------------------------------------------------------- encodings

Deno.test("decodeWav scales unsigned 8-bit as (v - 128) / 128", () => {
  const bytes = encodeWav([[0, 128, 255, 1, 127]], {
    sampleRateHz: 8000,
    encoding: "pcm8",
  });
  const { channels, info } = decodeWav(bytes, "a.wav");
  assertSamples(channels[0], [-1, 0, 127 / 128, -127 / 128, -1 / 128]);
  assert.equal(info.bitsPerSample, 8);
  assert.equal(info.encoding, "pcm");
});

Deno.test("decodeWav scales int16 by 1/32768 for both signs", () => {
  const values = [-32768, -1, 0, 1, 32767];
  const { channels, sampleRateHz, info } = decodeWav(
    encodeWav([values], { sampleRateHz: 16000 }),
    "a.wav",
  );
  assertSamples(channels[0], values.map((v) => v / 32768));
  assert.equal(sampleRateHz, 16000);
  assert.deepEqual(info, {
    sampleRateHz: 16000,
    channels: 1,
    bitsPerSample: 16,
    encoding: "pcm",
    extensible: false,
    frames: 5,
    durationSeconds: 5 / 16000,
    dataOffset: 44,
    dataBytes: 10,
  });
});

Deno.test("decodeWav scales 24-bit by 1/8388608 and decodes -8388608 as -1", () => {
  const values = [-8388608, -8388607, -1, 0, 1, 8388606, 8388607];
  const { channels } = decodeWav(
    encodeWav([values], { sampleRateHz: 16000, encoding: "pcm24" }),
    "a.wav",
  );
  assertSamples(channels[0], values.map((v) => v / 8388608));
  assert.equal(channels[0][0], -1);
  assert.ok(channels[0][6] < 1);
});

Deno.test("decodeWav corrects -8388608 in every channel of a 24-bit file", () => {
  const { channels } = decodeWav(
    encodeWav([[-8388608, 8388607], [8388607, -8388608]], {
      sampleRateHz: 16000,
      encoding: "pcm24",
    }),
    "a.wav",
  );
  assertSamples(channels[0], [-1, 8388607 / 8388608]);
  assertSamples(channels[1], [8388607 / 8388608, -1]);
});

Deno.test("decodeWav scales 32-bit int by 1/2147483648", () => {
  const values = [-2147483648, -65536, -1, 0, 1, 65536, 2147483647];
  const { channels, info } = decodeWav(
    encodeWav([values], { sampleRateHz: 16000, encoding: "pcm32" }),
    "a.wav",
  );
  assertSamples(channels[0], values.map((v) => v / 2147483648));
  assert.equal(channels[0][0], -1);
  assert.equal(info.encoding, "pcm");
  assert.equal(info.bitsPerSample, 32);
});

Deno.test("decodeWav returns float32 samples as stored", () => {
  const values = [-1, -0.5, 0, 0.1, 0.999, 1.5, -3.25e-7].map(f32);
  const { channels, info } = decodeWav(
    encodeWav([values], { sampleRateHz: 22050, encoding: "float32" }),
    "a.wav",
  );
  assertSamples(channels[0], values);
  assert.equal(info.encoding, "float");
  assert.equal(info.bitsPerSample, 32);
});

Deno.test("decodeWav rounds float64 samples to float32", () => {
  const values = [-1, 0.1, 1 / 3, 0, 2.5, -1e-9];
  const { channels, info } = decodeWav(
    encodeWav([values], { sampleRateHz: 22050, encoding: "float64" }),
    "a.wav",
  );
  assertSamples(channels[0], values);
  assert.equal(info.encoding, "float");
  assert.equal(info.bitsPerSample, 64);
});

Deno.test("decodeWav keeps channel order for 1, 2 and 6 channels", () => {
  for (const count of [1, 2, 6]) {
    const ints = Array.from(
      { length: count },
      (_, c) =>
        Array.from({ length: 9 }, (_, i) => (c + 1) * 1000 + i * 7 - 30),
    );
    for (
      const encoding of ["pcm8", "pcm16", "pcm24", "float32"] as const
    ) {
      const stored = ints.map((ch) =>
        ch.map((v) =>
          encoding === "pcm8"
            ? (v & 0xff)
            : encoding === "pcm24"
            ? v * 256
            : encoding === "float32"
            ? f32(v / 10000)
            : v
        )
      );
      const expected = stored.map((ch) =>
        ch.map((v) =>
          encoding === "pcm8"
            ? (v - 128) / 128
            : encoding === "pcm24"
            ? v / 8388608
            : encoding === "float32"
            ? v
            : v / 32768
        )
      );
      const { channels, info } = decodeWav(
        encodeWav(stored, { sampleRateHz: 16000, encoding }),
        "a.wav",
      );
      assert.equal(info.channels, count);
      assert.equal(info.frames, 9);
      assert.equal(channels.length, count);
      channels.forEach((ch, c) => assertSamples(ch, expected[c]));
    }
  }
});

Deno.test("decodeWav reads WAVE_FORMAT_EXTENSIBLE PCM16, PCM24 and float32", () => {
  const cases = [
    {
      encoding: "pcm16" as const,
      stored: [[-32768, 0, 32767], [1, -1, 2]],
      scale: 1 / 32768,
    },
    {
      encoding: "pcm24" as const,
      stored: [[-8388608, 0, 8388607], [1, -1, 2]],
      scale: 1 / 8388608,
    },
    {
      encoding: "float32" as const,
      stored: [[-1, 0, 0.75], [f32(0.1), -0.5, 1]],
      scale: 1,
    },
  ];
  for (const { encoding, stored, scale } of cases) {
    const bytes = encodeWav(stored, {
      sampleRateHz: 48000,
      encoding,
      extensible: true,
    });
    const { channels, info } = decodeWav(bytes, "x.wav");
    assert.equal(info.extensible, true);
    assert.equal(info.encoding, encoding === "float32" ? "float" : "pcm");
    assert.equal(info.dataOffset, 12 + 8 + 40 + 8);
    assert.equal(info.sampleRateHz, 48000);
    channels.forEach((ch, c) =>
      assertSamples(ch, stored[c].map((v) => v * scale))
    );
    // The caller's bytes are left untouched (tag still 0xFFFE).
    assert.equal(bytes[FMT] | (bytes[FMT + 1] << 8), 0xfffe);
  }
});

Deno.test("decodeWav skips an extra chunk before data", () => {
  const bytes = encodeWav([[1, 2, 3]], {
    sampleRateHz: 16000,
    extraChunk: true,
  });
  const { channels, info } = decodeWav(bytes, "a.wav");
  assertSamples(channels[0], [1 / 32768, 2 / 32768, 3 / 32768]);
  assert.equal(info.dataOffset, 44 + 14);
});

Deno.test("decodeWav skips odd-sized chunks with their pad byte and chunks after data", () => {
  const samples = new Uint8Array(new Int16Array([100, -100]).buffer);
  const bytes = riff([
    ["JUNK", [1, 2, 3]], // odd: pad byte follows
    ["fmt ", PCM16_FMT],
    ["LIST", ascii("INFOISFT\x05\x00\x00\x00abcde")], // odd: padded
    ["bext", [9]],
    ["data", samples],
    ["id3 ", [0, 0, 0, 0]],
  ]);
  const { channels, info } = decodeWav(bytes, "a.wav");
  assertSamples(channels[0], [100 / 32768, -100 / 32768]);
  assert.equal(info.frames, 2);
  assert.equal(info.dataBytes, 4);
});

Deno.test("decodeWav accepts a fmt chunk longer than 16 bytes (cbSize)", () => {
  const bytes = riff([
    ["fmt ", [...PCM16_FMT, 0, 0]],
    ["data", new Uint8Array(new Int16Array([-32768, 32767]).buffer)],
  ]);
  assertSamples(decodeWav(bytes, "a.wav").channels[0], [-1, 32767 / 32768]);
});

Deno.test("decodeWav reads a subarray of a larger buffer", () => {
  const file = encodeWav([[5, -5]], { sampleRateHz: 16000 });
  const big = new Uint8Array(file.length + 20);
  big.set(file, 7);
  const { channels } = decodeWav(big.subarray(7, 7 + file.length), "a.wav");
  assertSamples(channels[0], [5 / 32768, -5 / 32768]);
});

Deno.test("decodeWav decodes an empty data chunk to empty channels", () => {
  const { channels, info } = decodeWav(
    encodeWav([[], []], { sampleRateHz: 16000 }),
    "a.wav",
  );
  assert.equal(channels.length, 2);
  assert.equal(channels[0].length, 0);
  assert.equal(info.durationSeconds, 0);
});

// ---------------------------------------------------------- parity fixtures

const FIXTURES = new URL(
  "../../shared/fixtures/reference/audio/",
  import.meta.url,
);
const MANIFEST = new URL(
  "../../shared/fixtures/reference/mel/manifest.json",
  import.meta.url,
);

/** An independent minimal reader: the int16 samples of the data chunk. */
function int16Data(bytes: Uint8Array): Int16Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 12;
  while (pos + 8 <= bytes.length) {
    const id = String.fromCharCode(...bytes.subarray(pos, pos + 4));
    const size = view.getUint32(pos + 4, true);
    if (id === "data") {
      return new Int16Array(bytes.slice(pos + 8, pos + 8 + size).buffer);
    }
    pos += 8 + size + (size % 2);
  }
  throw new Error("no data chunk");
}

Deno.test("decodeWav decodes the parity fixtures to exactly int16/32768", async () => {
  const manifest = JSON.parse(await Deno.readTextFile(MANIFEST)) as {
    cases: Record<string, { sample_rate: number; samples: number }>;
  };
  const names = ["sc_16k_1s", "am_48k_1s", "vs_16k_10s", "cs_44k_10s"];
  for (const name of names) {
    const url = new URL(`${name}.wav`, FIXTURES);
    const expected = manifest.cases[name];
    assert.ok(expected, `manifest lacks ${name}`);
    const ints = int16Data(await Deno.readFile(url));
    const { sampleRateHz, channels, info } = await readWav(url.pathname);
    assert.equal(sampleRateHz, expected.sample_rate, name);
    assert.equal(info.frames, expected.samples, name);
    assert.equal(channels.length, 1, name);
    assert.equal(channels[0].length, ints.length, name);
    for (let i = 0; i < ints.length; i++) {
      if (channels[0][i] !== f32(ints[i] / 32768)) {
        assert.fail(`${name}[${i}]: ${channels[0][i]} != ${ints[i]}/32768`);
      }
    }
    const header = await readWavHeader(url.pathname);
    assert.deepEqual(header, info, name);
  }
});

// ------------------------------------------------------------------- errors

Deno.test("decodeWav rejects an empty file", () => {
  assertWavError(
    () => decodeWav(new Uint8Array(0), "empty.wav"),
    "empty.wav",
    "the file is empty",
  );
});

Deno.test("decodeWav rejects files that are not RIFF/WAVE", () => {
  const mp3 = new Uint8Array([
    ...ascii("ID3"),
    4,
    0,
    0,
    0,
    0,
    0,
    0x21,
    0xff,
    0xfb,
    0x90,
    0x64,
  ]);
  assertWavError(
    () => decodeWav(mp3, "song.mp3"),
    "song.mp3",
    "it is not a RIFF/WAVE file",
  );
  const text = new TextEncoder().encode("hello, this is not audio\n");
  assertWavError(
    () => decodeWav(text, "notes.txt"),
    "notes.txt",
    "it is not a RIFF/WAVE file",
  );
  const avi = riff([["avih", [0, 0]]]);
  avi.set(ascii("AVI "), 8);
  assertWavError(
    () => decodeWav(avi, "v.avi"),
    "v.avi",
    "it is not a RIFF/WAVE file",
  );
  assertWavError(
    () => decodeWav(new Uint8Array([0x4d]), "m.wav"),
    "m.wav",
    "it is not a RIFF/WAVE file",
  );
});

Deno.test("decodeWav rejects a file without a fmt chunk", () => {
  assertWavError(
    () => decodeWav(riff([["data", [0, 0]]]), "a.wav"),
    "a.wav",
    "it has no fmt chunk",
  );
  assertWavError(
    () => decodeWav(riff([]), "a.wav"),
    "a.wav",
    "it has no fmt chunk",
  );
});

Deno.test("decodeWav rejects a file without a data chunk", () => {
  assertWavError(
    () => decodeWav(riff([["fmt ", PCM16_FMT], ["LIST", [1, 2]]]), "a.wav"),
    "a.wav",
    "it has no data chunk",
  );
});

Deno.test("decodeWav names unsupported format tags in hex", () => {
  for (
    const [tag, part] of [
      [0x0002, "its format tag 0x0002 (Microsoft ADPCM) is not supported"],
      [0x0006, "its format tag 0x0006 (A-law) is not supported"],
      [0x1234, "its format tag 0x1234 is not supported"],
    ] as const
  ) {
    assertWavError(
      () => decodeWav(withU16(smallWav(), FMT, tag), "a.wav"),
      "a.wav",
      part,
    );
  }
  const ext = encodeWav([[1]], { sampleRateHz: 8000, extensible: true });
  assertWavError(
    () => decodeWav(withU16(ext, FMT + 24, 0x0007), "a.wav"),
    "a.wav",
    "its WAVE_FORMAT_EXTENSIBLE subformat 0x0007 (µ-law) is not supported",
  );
});

Deno.test("decodeWav rejects unsupported bit depths", () => {
  // 12 bits with a consistent block align of 2 bytes per sample.
  assertWavError(
    () => decodeWav(withU16(smallWav(), FMT + 14, 12), "a.wav"),
    "a.wav",
    "its bit depth 12 is not supported for PCM",
  );
  const float16 = withU16(
    encodeWav([[0]], { sampleRateHz: 8000, encoding: "float32" }),
    FMT + 14,
    16,
  );
  assertWavError(
    () => decodeWav(withU16(float16, FMT + 12, 2), "a.wav"),
    "a.wav",
    "its bit depth 16 is not supported for IEEE float",
  );
});

Deno.test("decodeWav rejects a block align inconsistent with channels x bits", () => {
  const stereo = encodeWav([[1, 2], [3, 4]], { sampleRateHz: 16000 });
  assertWavError(
    () => decodeWav(withU16(stereo, FMT + 12, 2), "a.wav"),
    "a.wav",
    "its block align is 2 bytes but 2 channel(s) of 16 bits need 4",
  );
  assertWavError(
    () => decodeWav(withU16(smallWav(), FMT + 2, 0), "a.wav"),
    "a.wav",
    "its fmt chunk declares 0 channels",
  );
});

Deno.test("decodeWav rejects a short fmt chunk", () => {
  assertWavError(
    () => decodeWav(riff([["fmt ", PCM16_FMT.slice(0, 14)]]), "a.wav"),
    "a.wav",
    "its fmt chunk is 14 bytes long, expected at least 16",
  );
  const ext = riff([["fmt ", [...PCM16_FMT.slice(0, 16), 0, 0]]]);
  assertWavError(
    () => decodeWav(withU16(ext, FMT, 0xfffe), "a.wav"),
    "a.wav",
    "its WAVE_FORMAT_EXTENSIBLE fmt chunk is 18 bytes long, expected at least 40",
  );
});

Deno.test("decodeWav reports a truncated data chunk with both sizes", () => {
  const full = encodeWav([toneInt16(1000, 440, 16000)], {
    sampleRateHz: 16000,
  });
  const cut = full.subarray(0, 44 + 1234);
  assertWavError(
    () => decodeWav(cut, "cut.wav"),
    "cut.wav",
    "the data chunk declares 2000 bytes but the file holds 1234",
  );
  assertWavError(
    () => decodeWav(full.subarray(0, 44), "cut.wav"),
    "cut.wav",
    "the data chunk declares 2000 bytes but the file holds 0",
  );
  assert.throws(
    () => parseWavHeader(full, "cut.wav", full.length - 1),
    RangeError,
  );
});

Deno.test("decodeWav reports a file cut in the middle of its header", () => {
  const full = smallWav();
  for (
    const [at, part] of [
      [2, "the file ends inside its header (it is only 2 bytes long)"],
      [10, "the file ends inside its header (it is only 10 bytes long)"],
      [16, "a chunk header at byte 12 is cut after 4 of 8 bytes"],
      [30, "the fmt chunk declares 16 bytes, 10 are present"],
      [40, "a chunk header at byte 36 is cut after 4 of 8 bytes"],
    ] as const
  ) {
    assertWavError(
      () => decodeWav(full.subarray(0, at), "cut.wav"),
      "cut.wav",
      part,
    );
  }
});

Deno.test("parseWavHeader reports a prefix that ends before the data chunk", () => {
  const big = riff([
    ["fmt ", PCM16_FMT],
    ["LIST", new Uint8Array(1000)],
    ["data", [0, 0]],
  ]);
  assertWavError(
    () => parseWavHeader(big.subarray(0, 200), "a.wav", big.length),
    "a.wav",
    "its header lies beyond the first 200 bytes given",
  );
  assert.equal(
    parseWavHeader(big.subarray(0, 1100), "a.wav", big.length).frames,
    1,
  );
});

Deno.test("WavError is an Error naming the file", () => {
  const e = new WavError("x/y.wav", "it is broken");
  assert.ok(e instanceof Error);
  assert.equal(e.name, "WavError");
  assert.equal(e.file, "x/y.wav");
  assert.equal(e.message, 'Cannot read WAV file "x/y.wav": it is broken');
});

// ------------------------------------------------------------ file reading

/** Counts the bytes read through Deno.FsFile while `fn` runs. */
async function countReads<T>(
  fn: () => Promise<T>,
): Promise<{ result: T; bytes: number }> {
  const proto = Deno.FsFile.prototype;
  const original = proto.read;
  let bytes = 0;
  proto.read = async function (this: Deno.FsFile, p: Uint8Array) {
    const n = await original.call(this, p);
    bytes += n ?? 0;
    return n;
  };
  try {
    return { result: await fn(), bytes };
  } finally {
    proto.read = original;
  }
}

Deno.test("readWavHeader reads only the start of a 10 s 44.1 kHz stereo file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/long.wav`;
    const tone = toneInt16(441000, 440, 44100);
    await Deno.writeFile(
      path,
      encodeWav([tone, tone], { sampleRateHz: 44100 }),
    );
    const { result: info, bytes } = await countReads(() => readWavHeader(path));
    assert.deepEqual(info, {
      sampleRateHz: 44100,
      channels: 2,
      bitsPerSample: 16,
      encoding: "pcm",
      extensible: false,
      frames: 441000,
      durationSeconds: 10,
      dataOffset: 44,
      dataBytes: 1764000,
    });
    assert.ok(bytes > 0 && bytes <= 64 * 1024, `read ${bytes} bytes`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("readWavHeader finds data behind a 100 KiB LIST chunk", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/list.wav`;
    const tone = toneInt16(160000, 440, 16000);
    const samples = new Uint8Array(tone.buffer);
    const bytes = riff([
      ["fmt ", PCM16_FMT],
      ["LIST", new Uint8Array(100 * 1024 + 1)],
      ["data", samples],
    ]);
    await Deno.writeFile(path, bytes);
    const { result: info, bytes: read } = await countReads(() =>
      readWavHeader(path)
    );
    assert.equal(info.dataOffset, 12 + 24 + 8 + 100 * 1024 + 2 + 8);
    assert.equal(info.frames, 160000);
    assert.equal(info.durationSeconds, 10);
    assert.ok(read > 0 && read <= 64 * 1024 + 8, `read ${read} bytes`);
    const decoded = await readWav(path);
    assert.deepEqual(decoded.info, info);
    assert.equal(decoded.channels[0][1], f32(tone[1] / 32768));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("readWavHeader and readWav report errors naming the path", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const empty = `${dir}/empty.wav`;
    await Deno.writeFile(empty, new Uint8Array(0));
    await assertRejectsWav(
      () => readWavHeader(empty),
      empty,
      "the file is empty",
    );
    await assertRejectsWav(() => readWav(empty), empty, "the file is empty");

    const cut = `${dir}/cut.wav`;
    const full = encodeWav([toneInt16(100000, 440, 16000)], {
      sampleRateHz: 16000,
    });
    await Deno.writeFile(cut, full.subarray(0, 100044));
    const part =
      "the data chunk declares 200000 bytes but the file holds 100000";
    await assertRejectsWav(() => readWavHeader(cut), cut, part);
    await assertRejectsWav(() => readWav(cut), cut, part);

    await assert.rejects(
      () => readWavHeader(`${dir}/missing.wav`),
      Deno.errors.NotFound,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("decodeWav: 16-bit stereo decodes the same, in place and from an odd offset, as v / 32768 per channel", () => {
  const frames = 1001;
  const left = Array.from(
    { length: frames },
    (_, i) => ((i * 7919) % 65536) - 32768,
  );
  const right = Array.from(
    { length: frames },
    (_, i) => 32767 - ((i * 104729) % 65536),
  );
  const file = encodeWav([left, right], { sampleRateHz: 44100 });
  const odd = new Uint8Array(file.length + 1);
  odd.set(file, 1);
  for (const bytes of [file, odd.subarray(1)]) {
    const { channels, pcm16 } = decodeWav(bytes, "s.wav");
    assert.equal(channels.length, 2);
    // The integers come along, per channel, attached to each float channel.
    assert.deepEqual(pcm16!.map((c) => Array.from(c)), [left, right]);
    channels.forEach((c, i) => assert.equal(pcm16Of(c), pcm16![i]));
    assert.deepEqual(
      Array.from(channels[0]),
      Array.from(Float32Array.from(left.map((v) => v / 32768))),
    );
    assert.deepEqual(
      Array.from(channels[1]),
      Array.from(Float32Array.from(right.map((v) => v / 32768))),
    );
  }
});

Deno.test("decodeWav attaches integers to 16-bit PCM only", () => {
  const sampleRateHz = 8000;
  const wavs = {
    pcm8: encodeWav([[0, 128, 255]], { sampleRateHz, encoding: "pcm8" }),
    pcm24: encodeWav([[0, 1, -8388608]], { sampleRateHz, encoding: "pcm24" }),
    float32: encodeWav([[0, 0.5, -1]], { sampleRateHz, encoding: "float32" }),
  };
  assert.ok(decodeWav(encodeWav([[0, 1]], { sampleRateHz }), "a.wav").pcm16);
  for (const [name, bytes] of Object.entries(wavs)) {
    const d = decodeWav(bytes, `${name}.wav`);
    assert.equal(d.pcm16, undefined, name);
    assert.equal(pcm16Of(d.channels[0]), undefined, name);
  }
});
