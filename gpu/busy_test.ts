/** Tests of the GPU busy meter (timestamp queries around runtime submits). */
import assert from "node:assert/strict";
import { attachBusyMeter, busyMeterOf, idleFraction } from "./busy.ts";
import { gpuRuntime, gpuTests } from "./testing.ts";
import type { Dispatch } from "./runtime.ts";

Deno.test("idleFraction sums the GPU time of the submits made in a window", () => {
  const samples = [
    { hostMs: 1000, gpuMs: 100 },
    { hostMs: 1500, gpuMs: 300 },
    { hostMs: 2500, gpuMs: 900 },
  ];
  assert.equal(idleFraction(samples, 1000, 2000), 0.6);
  assert.ok(Math.abs(idleFraction(samples, 2000, 3000) - 0.1) < 1e-12);
  assert.equal(idleFraction(samples, 3000, 4000), 1);
  // More GPU time than wall time (work queued before the window) clamps.
  assert.equal(idleFraction(samples, 2400, 2600), 0);
  assert.equal(idleFraction(samples, 5, 5), 0);
});

Deno.test({
  name: "a busy meter times every runtime submit while attached, and only then",
  ignore: !gpuTests,
  async fn() {
    const rt = await gpuRuntime();
    const device = rt.device;
    const x = rt.alloc("busy.x", 1024);
    const list: Dispatch[] = [];
    rt.record(list, {
      code: `@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  x[g.x] = x[g.x] + 1.0;
}`,
      workgroups: [16, 1, 1],
      label: "busy.add",
    }, [x]);
    const meter = attachBusyMeter(device);
    if (!device.features.has("timestamp-query")) {
      assert.equal(meter, undefined);
      assert.equal(busyMeterOf(device), undefined);
      return;
    }
    assert.ok(meter);
    const t0 = Date.now();
    rt.run([list]);
    rt.run([list, list]);
    rt.run([[]]); // no pass: not timed
    const samples = await meter.stop();
    assert.equal(busyMeterOf(device), undefined);
    rt.run([list]); // detached: not timed
    assert.equal(samples.length, 2);
    for (const s of samples) {
      assert.ok(s.hostMs >= t0 && s.hostMs <= Date.now());
      assert.ok(s.gpuMs >= 0 && s.gpuMs < 10_000, `gpuMs ${s.gpuMs}`);
    }
    assert.equal((await rt.read(x))[0], 4);
  },
});
