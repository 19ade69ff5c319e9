import assert from "node:assert/strict";
import { join } from "node:path";
import { encodeWav, toneInt16 } from "../tests/_fixtures.ts";
import { createDecodePool, decodeWorkers } from "./decode_pool.ts";
import { readWav, WavError } from "./wav.ts";
import { pcm16Of } from "./pcm16.ts";

async function files() {
  const dir = await Deno.makeTempDir({ prefix: "decode_pool_test_" });
  const good = join(dir, "good.wav");
  const stereo = join(dir, "stereo.wav");
  const bad = join(dir, "bad.wav");
  await Deno.writeFile(
    good,
    encodeWav([toneInt16(1000, 440, 8000)], { sampleRateHz: 8000 }),
  );
  await Deno.writeFile(
    stereo,
    encodeWav([toneInt16(500, 300, 22050), toneInt16(500, 600, 22050)], {
      sampleRateHz: 22050,
      encoding: "pcm24",
    }),
  );
  await Deno.writeFile(
    bad,
    new TextEncoder().encode("definitely not a wav file"),
  );
  return { good, stereo, bad };
}

for (const workers of [0, 2]) {
  Deno.test(`createDecodePool(${workers}) decodes like readWav and rejects bad files with WavError`, async () => {
    const f = await files();
    const pool = createDecodePool(
      workers,
      () => assert.fail("workers must start"),
    );
    try {
      assert.equal(pool.workers, workers);
      const [a, b] = await Promise.all([
        pool.decode(f.good),
        pool.decode(f.stereo),
      ]);
      const ra = await readWav(f.good);
      const rb = await readWav(f.stereo);
      assert.deepEqual(a.channels, ra.channels);
      assert.deepEqual(b.channels, rb.channels);
      // A 16-bit file's integers arrive attached to its channel (across
      // threads too); other encodings have none.
      assert.deepEqual(pcm16Of(a.channels[0]), ra.pcm16![0]);
      assert.equal(pcm16Of(b.channels[0]), undefined);
      assert.equal(a.sampleRateHz, 8000);
      assert.equal(b.sampleRateHz, 22050);
      assert.deepEqual([a.bitsPerSample, a.encoding], [16, "pcm"]);
      assert.deepEqual([b.bitsPerSample, b.encoding], [24, "pcm"]);
      const error = await pool.decode(f.bad).then(() => undefined, (e) => e);
      assert.ok(error instanceof WavError, String(error));
      assert.match(
        error.message,
        /^Cannot read WAV file ".*bad\.wav": it is not a RIFF\/WAVE file/,
      );
      await assert.rejects(pool.decode(join(f.good, "..", "missing.wav")));
    } finally {
      pool.close();
    }
  });
}

Deno.test("decodeWorkers: auto is the cores less two, between 2 and 8; numbers pass", () => {
  assert.equal(decodeWorkers("auto", 2), 2);
  assert.equal(decodeWorkers("auto", 6), 4);
  assert.equal(decodeWorkers("auto", 16), 8);
  assert.equal(decodeWorkers("auto", 128), 8);
  assert.equal(decodeWorkers(0, 16), 0);
  assert.equal(decodeWorkers(3, 16), 3);
});
