import assert from "node:assert/strict";
import { chunkRanges, formatBytes, itemsPerChunk } from "./chunks.ts";

Deno.test("itemsPerChunk: the most items under the limit, Infinity on cpu, an error when one cannot fit", () => {
  // CochlScene: a 10 s 44.1 kHz clip's STFT spectrum is 1471 × 2050 floats.
  const clip = 1471 * 2050 * 4;
  assert.equal(itemsPerChunk(clip, 2_147_483_644, "clip"), 178); // H100 binding limit
  assert.equal(itemsPerChunk(clip, 128 * 2 ** 20, "clip"), 11); // llvmpipe
  assert.equal(itemsPerChunk(clip, clip, "clip"), 1);
  assert.equal(itemsPerChunk(clip, Infinity, "clip"), Infinity);
  assert.throws(
    () => itemsPerChunk(clip, clip - 1, "10 s clip's STFT"),
    /^RangeError: Cannot fit one 10 s clip's STFT \(11\.5 MiB\) in the GPU's 11\.5 MiB buffer limit: use shorter clips or fewer frames, or the cpu backend$/,
  );
  assert.throws(
    () => itemsPerChunk(0, 100, "x"),
    /bytes per item must be a positive number, got 0/,
  );
});

Deno.test("chunkRanges: full chunks then the rest, one range when it fits, none for no items", () => {
  assert.deepEqual(chunkRanges(140, 44), [[0, 44], [44, 88], [88, 132], [
    132,
    140,
  ]]);
  assert.deepEqual(chunkRanges(32, 44), [[0, 32]]);
  assert.deepEqual(chunkRanges(32, Infinity), [[0, 32]]);
  assert.deepEqual(chunkRanges(3, 1), [[0, 1], [1, 2], [2, 3]]);
  assert.deepEqual(chunkRanges(0, 5), []);
  assert.throws(() => chunkRanges(4, 0), /Cannot chunk with 0 items per chunk/);
});

Deno.test("formatBytes", () => {
  assert.equal(formatBytes(900), "900 B");
  assert.equal(formatBytes(128 * 2 ** 20), "128.0 MiB");
  assert.equal(formatBytes(2_147_483_644), "2.0 GiB");
  assert.equal(formatBytes(Infinity), "Infinity");
});
