/**
 * Chunk planning for GPU work: how many items (clips) of a batch one pass
 * may take so that no tensor of the pass exceeds a byte limit (the device's
 * largest binding, `pipeline/backend.ts` `largestTensorBytes`, or a smaller
 * working budget). Chunks are all full-size except the last, so passes over
 * batches of any size reuse the same buffer sizes (tfjs pools buffers by
 * exact size and never frees them).
 *
 * ```ts
 * import assert from "node:assert/strict";
 * import { chunkRanges, itemsPerChunk } from "./chunks.ts";
 * const size = itemsPerChunk(12_062_200, 128 * 2 ** 20, "CS clip's STFT"); // 11
 * assert.deepEqual(chunkRanges(25, size), [[0, 11], [11, 22], [22, 25]]);
 * ```
 *
 * @module
 */

/** A byte count for messages: `1.5 GiB`, `12.0 MiB`, `900 B`. */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes)) return String(bytes);
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(1)} ${units[u]}`;
}

/**
 * The most items one pass may take when each adds `bytesPerItem` to its
 * largest tensor: `floor(limitBytes / bytesPerItem)`, at least 1, or
 * `Infinity` when the limit is infinite (cpu).
 *
 * @param bytesPerItem Bytes one item adds to the pass's largest tensor (> 0).
 * @param limitBytes The largest tensor allowed, in bytes.
 * @param what The item, for the error (e.g. "clip's STFT frames").
 * @throws RangeError when even one item exceeds the limit.
 */
export function itemsPerChunk(
  bytesPerItem: number,
  limitBytes: number,
  what: string,
): number {
  if (!(bytesPerItem > 0) || !Number.isFinite(bytesPerItem)) {
    throw new RangeError(
      `Cannot plan chunks: bytes per item must be a positive number, got ${bytesPerItem}`,
    );
  }
  if (limitBytes === Infinity) return Infinity;
  const n = Math.floor(limitBytes / bytesPerItem);
  if (n < 1) {
    throw new RangeError(
      `Cannot fit one ${what} (${formatBytes(bytesPerItem)}) in the GPU's ${
        formatBytes(limitBytes)
      } buffer limit: use shorter clips or fewer frames, or the cpu backend`,
    );
  }
  return n;
}

/**
 * `[start, end)` ranges covering `n` items in chunks of `size` (the last may
 * be shorter); one range `[0, n]` when `size ≥ n`, none when `n` is 0.
 *
 * @param n Items.
 * @param size Items per chunk (≥ 1, may be `Infinity`).
 */
export function chunkRanges(n: number, size: number): [number, number][] {
  if (!(size >= 1)) {
    throw new RangeError(`Cannot chunk with ${size} items per chunk`);
  }
  const out: [number, number][] = [];
  const step = Math.floor(Math.min(size, Math.max(n, 1)));
  for (let start = 0; start < n; start += step) {
    out.push([start, Math.min(n, start + step)]);
  }
  return out;
}
