import assert from "node:assert/strict";
import { resample } from "./resample.ts";

Deno.test("resample keeps a tone in band and has the new length", () => {
  const from = 16000;
  const to = 8000;
  const x = Float32Array.from(
    { length: from },
    (_, i) => Math.sin((2 * Math.PI * 440 * i) / from),
  );
  const y = resample(x, from, to);
  assert.equal(y.length, to);
  let worst = 0;
  for (let i = 200; i < to - 200; i++) {
    worst = Math.max(
      worst,
      Math.abs(y[i] - Math.sin((2 * Math.PI * 440 * i) / to)),
    );
  }
  assert.ok(worst < 1e-2, `max error ${worst}`);
  // Upsampling: length and the samples at the original instants.
  const up = resample(y, to, from);
  assert.equal(up.length, from);
  assert.ok(Math.abs(up[4000] - y[2000]) < 1e-2);
});
