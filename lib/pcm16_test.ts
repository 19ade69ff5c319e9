/**
 * Tests of the 16-bit attachments: what travels with a float channel, what
 * does not (copies, other lengths), and the conversions.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  attachPcm16,
  deinterleavePcm16,
  floatOfPcm16,
  pcm16Of,
} from "./pcm16.ts";

Deno.test("attachPcm16 travels with the array, not with copies", () => {
  const ints = Int16Array.from([0, 1, -1, 32767, -32768]);
  const f = Float32Array.from(ints, (v) => v / 32768);
  assert.equal(pcm16Of(f), undefined);
  assert.equal(attachPcm16(f, ints), f);
  assert.equal(pcm16Of(f), ints);
  assert.equal(pcm16Of(f.slice()), undefined);
  assert.equal(pcm16Of(f.subarray(1)), undefined);
  // Not enumerable: spreads and JSON see a plain array.
  assert.deepEqual(Object.keys(f), ["0", "1", "2", "3", "4"]);
  assert.throws(
    () => attachPcm16(new Float32Array(3), new Int16Array(2)),
    /^RangeError: Cannot attach 2 16-bit samples to a channel of 3: decode both from the same data$/,
  );
});

Deno.test("floatOfPcm16 gives v / 32768 with the integers attached", () => {
  const ints = Int16Array.from([-32768, -1, 0, 1, 16384, 32767]);
  const f = floatOfPcm16(ints);
  assert.deepEqual(Array.from(f), [
    -1,
    -1 / 32768,
    0,
    1 / 32768,
    0.5,
    32767 / 32768,
  ]);
  assert.equal(pcm16Of(f), ints);
});

Deno.test("deinterleavePcm16 splits channels and copies mono", () => {
  const frames = Int16Array.from([1, -1, 2, -2, 3, -3]);
  assert.deepEqual(
    deinterleavePcm16(frames, 2, 3).map((c) => Array.from(c)),
    [[1, 2, 3], [-1, -2, -3]],
  );
  const [mono] = deinterleavePcm16(frames, 1, 4);
  assert.deepEqual(Array.from(mono), [1, -1, 2, -2]);
  mono[0] = 9;
  assert.equal(frames[0], 1, "a copy, not a view");
});
