import assert from "node:assert/strict";
import {
  compileStats,
  createRuntime,
  type Dispatch,
  type KernelPlan,
  mappedCopy,
  type PlanBindings,
  planRegions,
  type Region,
  SHADER_F16,
} from "./runtime.ts";
import { castToF16 } from "./kernels/cast.ts";
import { batchNormForward } from "./kernels/norm.ts";
import { matmul } from "./kernels/matmul.ts";
import { tokensForward } from "./kernels/model_ops.ts";
import {
  gpuRuntime,
  gpuTests,
  hasGpu,
  runKernel,
  testRuntime,
} from "./testing.ts";

const DOUBLE = `@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read_write> b: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  if (g.x < arrayLength(&b)) { b[g.x] = a[g.x] * 2.0 + b[g.x]; }
}`;

Deno.test({
  name:
    "runtime: readMany reads several regions with one map, each in order and of its own length",
  ignore: !hasGpu,
  async fn() {
    const rt = createRuntime((await testRuntime())!.device);
    try {
      const a = rt.alloc("a", 5);
      const b = rt.alloc("b", 3);
      const c = rt.alloc("c", 64);
      rt.write(a, Float32Array.of(1, 2, 3, 4, 5));
      rt.write(b, Float32Array.of(-1, -2, -3));
      rt.write(c, Float32Array.from({ length: 64 }, (_, i) => i / 2));
      const [ra, rb, rc] = await rt.readMany([a, b, c]);
      assert.deepEqual([...ra], [1, 2, 3, 4, 5]);
      assert.deepEqual([...rb], [-1, -2, -3]);
      assert.equal(rc.length, 64);
      assert.equal(rc[63], 31.5);
      assert.deepEqual([...await rt.read(b)], [-1, -2, -3]);
      assert.deepEqual(await rt.readMany([]), []);
      // The optional timing says how many bytes one map read (each region
      // rounded up to whole floats) and where the time went.
      const timing = {
        setupMs: -1,
        mapMs: -1,
        copyMs: -1,
        releaseMs: -1,
        bytes: 0,
      };
      await rt.readMany([a, b], { timing });
      assert.equal(timing.bytes, (5 + 3) * 4);
      assert.ok(
        [timing.setupMs, timing.mapMs, timing.copyMs, timing.releaseMs]
          .every((ms) => ms >= 0),
      );
      // A kept staging buffer is reused (and grown) across reads: each read
      // still returns its own values, not views of the buffer.
      const before = rt.stats().buffers;
      const [k1] = await rt.readMany([b], { keepStaging: true });
      rt.write(b, Float32Array.of(7, 8, 9));
      const [k2, k3] = await rt.readMany([b, a], { keepStaging: true });
      const [k4] = await rt.readMany([b], { keepStaging: true });
      assert.deepEqual([...k1], [-1, -2, -3]);
      assert.deepEqual([...k2], [7, 8, 9]);
      assert.deepEqual([...k3], [1, 2, 3, 4, 5]);
      assert.deepEqual([...k4], [7, 8, 9]);
      assert.equal(rt.stats().buffers, before);
      // readManyLater: the values are the regions' at the call, even when
      // they change before the take; one take only; a kept buffer must be
      // taken before it is read into again.
      const take = await rt.readManyLater([b], { keepStaging: true });
      rt.write(b, Float32Array.of(4, 5, 6));
      await rt.read(b); // the write has run
      await assert.rejects(
        rt.readManyLater([a], { keepStaging: true }),
        /^Error: Cannot read through the kept staging buffer/,
      );
      assert.deepEqual([...take()[0]], [7, 8, 9]);
      assert.throws(take, /^Error: Cannot take a read twice/);
      const [k5] = await rt.readMany([b], { keepStaging: true });
      assert.deepEqual([...k5], [4, 5, 6]);
    } finally {
      rt.destroy();
    }
  },
});

Deno.test({
  name:
    "runtime: mappedCopy keeps a mapped range's bytes after unmap and destroy",
  ignore: !hasGpu,
  async fn() {
    const device = (await testRuntime())!.device;
    const n = 1 << 16;
    const data = device.createBuffer({
      size: n * 4,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC |
        GPUBufferUsage.COPY_DST,
    });
    device.queue.writeBuffer(
      data,
      0,
      Float32Array.from({ length: n }, (_, i) => i - 7),
    );
    const source = device.createBuffer({
      size: n * 4,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    const encoder = device.createCommandEncoder();
    encoder.copyBufferToBuffer(data, 0, source, 0, n * 4);
    device.queue.submit([encoder.finish()]);
    await source.mapAsync(GPUMapMode.READ);
    data.destroy();
    const whole = mappedCopy(source);
    const part = mappedCopy(source, 8, 16);
    source.unmap();
    source.destroy();
    const f = new Float32Array(whole);
    assert.equal(f.length, n);
    assert.equal(f[0], -7);
    assert.equal(f[n - 1], n - 8);
    assert.deepEqual([...new Float32Array(part)], [-5, -4, -3, -2]);
  },
});

Deno.test({
  name: "runtime: recorded dispatches replay in order, every run",
  ignore: !hasGpu,
  async fn() {
    const rt = createRuntime((await testRuntime())!.device);
    try {
      const x = rt.alloc("x", 100);
      const y = rt.alloc("y", 100);
      rt.write(x, Float32Array.from({ length: 100 }, (_, i) => i));
      const list: Dispatch[] = [];
      rt.record(list, { code: DOUBLE, workgroups: [2, 1, 1] }, [x, y]);
      rt.record(list, { code: DOUBLE, workgroups: [2, 1, 1] }, [x, y]);
      rt.run([list]);
      rt.run([list]);
      const out = await rt.read(y);
      assert.equal(out[7], 4 * 2 * 7); // four dispatches of y += 2x
      assert.equal(rt.stats().buffers, 2);
    } finally {
      rt.destroy();
    }
  },
});

Deno.test({
  name:
    "runtime: arena regions start on 256-byte boundaries and bind on their own",
  ignore: !hasGpu,
  async fn() {
    const rt = createRuntime((await testRuntime())!.device);
    try {
      const { whole, parts } = rt.arena("params", [
        { name: "a", floats: 3 },
        { name: "b", floats: 70 },
        { name: "c", floats: 1 },
      ]);
      assert.deepEqual([...parts.values()].map((p) => p.offset), [0, 256, 768]);
      assert.equal(whole.size, 1024);
      const src = rt.alloc("src", 70);
      rt.write(src, new Float32Array(70).fill(1.5));
      const list: Dispatch[] = [];
      rt.record(list, { code: DOUBLE, workgroups: [2, 1, 1] }, [
        src,
        parts.get("b")!,
      ]);
      rt.run([list]);
      const all = await rt.read(whole);
      assert.equal(all[64], 3);
      assert.equal(all[64 + 69], 3);
      assert.equal(all[63], 0);
      assert.equal(all[64 + 70], 0);
    } finally {
      rt.destroy();
    }
  },
});

Deno.test({
  name:
    "runtime: a buffer bound writable and again in one dispatch, or a bad workgroup count, is refused at record time",
  ignore: !hasGpu,
  async fn() {
    const rt = createRuntime((await testRuntime())!.device);
    try {
      const { parts } = rt.arena("grads", [
        { name: "w", floats: 4 },
        { name: "b", floats: 4 },
      ]);
      const list: Dispatch[] = [];
      assert.throws(
        () =>
          rt.record(list, { code: DOUBLE, workgroups: [1, 1, 1] }, [
            parts.get("w")!,
            parts.get("b")!,
          ]),
        /Cannot record kernel .*: region "b" is bound writable and its buffer again as "w"/,
      );
      assert.throws(
        () =>
          rt.record(
            list,
            { code: DOUBLE, workgroups: [70000, 1, 1], label: "big" },
            [rt.alloc("x", 4), rt.alloc("y", 4)],
          ),
        /Cannot record kernel big: workgroup count 70000 is outside 1…65535/,
      );
      assert.throws(
        () => rt.write(parts.get("w")!, new Float32Array(5)),
        /Cannot write 20 bytes to region "w" \(16 bytes\)/,
      );
      assert.equal(list.length, 0);
    } finally {
      rt.destroy();
    }
  },
});

Deno.test({
  name:
    "runtime: profile sums GPU time per kernel label over more dispatches than one query set holds",
  ignore: !hasGpu,
  async fn() {
    const base = (await testRuntime())!;
    if (!base.device.features.has("timestamp-query")) return;
    const rt = createRuntime(base.device);
    try {
      const x = rt.alloc("x", 64);
      const y = rt.alloc("y", 64);
      const list: Dispatch[] = [];
      for (let i = 0; i < 2100; i++) {
        rt.record(list, {
          code: DOUBLE,
          workgroups: [1, 1, 1],
          label: i % 3 === 0 ? "third" : "rest",
        }, [x, y]);
      }
      const entries = await rt.profile([list]);
      const byLabel = new Map(entries.map((e) => [e.label, e]));
      assert.equal(byLabel.get("third")!.count, 700);
      assert.equal(byLabel.get("rest")!.count, 1400);
      for (const e of entries) assert.ok(e.ms >= 0 && Number.isFinite(e.ms));
    } finally {
      rt.destroy();
    }
  },
});

Deno.test({
  name: "runtime: pipelines are compiled once per device and shared",
  ignore: !hasGpu,
  async fn() {
    const base = (await testRuntime())!;
    const code = DOUBLE.replace("2.0", "3.0");
    const before = compileStats(base.device);
    const [out] = await runKernel(base, { code, workgroups: [1, 1, 1] }, [
      new Float32Array(4).fill(1),
      new Float32Array(4),
    ], [1]);
    assert.deepEqual([...out], [3, 3, 3, 3]);
    const rt = createRuntime(base.device);
    try {
      const list: Dispatch[] = [];
      rt.record(list, { code, workgroups: [1, 1, 1] }, [
        rt.alloc("a", 4),
        rt.alloc("b", 4),
      ]);
      assert.equal(rt.stats().pipelines, 0); // compiled by the first runtime
      // The device's compile totals counted that one kernel, once.
      const after = compileStats(base.device);
      assert.equal(after.pipelines, before.pipelines + 1);
      assert.equal(after.wgslChars, before.wgslChars + code.length);
      assert.ok(after.moduleMs >= before.moduleMs);
      assert.ok(after.pipelineMs >= before.pipelineMs);
    } finally {
      rt.destroy();
    }
  },
});

/** A region that never reaches a GPU (planRegions only compares names). */
const region = (label: string): Region => ({
  buffer: {} as GPUBuffer,
  offset: 0,
  size: 4,
  label,
});

Deno.test("planRegions: maps names per step, scratch from the plan's own", () => {
  // Two steps: matmul with split-K binds the scratch "splitk" in both.
  const plan = matmul({ m: 8, n: 8, k: 4096, splitK: 4 });
  assert.equal(plan.steps.length, 2);
  const [a, b, c, splitk] = ["a", "b", "c", "splitk"].map(region);
  const lists = planRegions(
    plan,
    { a, b, c },
    (n) => n === "splitk" ? splitk : undefined,
  );
  assert.deepEqual(lists, [[a, b, splitk], [splitk, c]]);
});

Deno.test("planRegions: a missing, misspelt or unused name names the kernel and the binding", () => {
  const plan = batchNormForward({ groups: 1, rows: 4, channels: 3, eps: 1e-5 });
  const bind = {
    x: region("x"),
    gb: region("gb"),
    y: region("y"),
    stats: region("stats"),
  };
  const partials = region("normPartials");
  const scratch = (n: string) => n === "normPartials" ? partials : undefined;
  assert.equal(planRegions(plan, bind, scratch).length, 3);
  // An optional name left undefined is fine.
  planRegions(plan, { ...bind, r: undefined }, scratch);
  assert.throws(
    () => planRegions(plan, { ...bind, stats: undefined }, scratch),
    /Cannot record kernel bn_fwd_stats: binding "stats" was not given a region/,
  );
  assert.throws(
    () => planRegions(plan, { ...bind, r: region("r") }, scratch),
    /Cannot record kernel bn_fwd_partial, bn_fwd_stats, bn_fwd_apply: it has no binding "r" \(its bindings: x, normPartials, stats, gb, y\)/,
  );
  assert.throws(
    () => planRegions(plan, { ...bind, stat: region("stat") }, scratch),
    /it has no binding "stat"/,
  );
});

Deno.test("KernelPlan: a misspelt, missing or extra binding name is a compile error", () => {
  const op = <N extends string, O extends string = never>(
    plan: KernelPlan<N, O>,
    bind: NoInfer<PlanBindings<N, O>>,
  ): Region[][] => planRegions(plan, bind as Record<string, Region>);
  const r = region("r");
  const bn = batchNormForward({ groups: 1, rows: 4, channels: 3, eps: 1e-5 });
  const ok = { x: r, gb: r, y: r, stats: r };
  // @ts-expect-error: "normPartials" is the plan's scratch, not the caller's.
  op(bn, { ...ok, normPartials: r });
  // @ts-expect-error: misspelt.
  assert.throws(() => op(bn, { x: r, gb: r, y: r, stat: r }));
  // @ts-expect-error: missing.
  assert.throws(() => op(bn, { x: r, gb: r, y: r }));
  // @ts-expect-error: a required name may not be undefined.
  assert.throws(() => op(bn, { ...ok, y: undefined }));
  // @ts-expect-error: extra.
  assert.throws(() => op(bn, { ...ok, typo: r }));
  const mm = matmul({ m: 2, n: 2, k: 2 });
  // @ts-expect-error: misspelt optional name.
  assert.throws(() => op(mm, { a: r, b: r, c: r, bais: r }));
  const tokens = tokensForward({
    batch: 1,
    k: 2,
    dim: 4,
    sequence: 4,
    embStart: 1,
    specialPositions: [0, 3],
    dropout: 0,
  });
  // Numbered names are typed by their pattern.
  op(tokens, { emb: r, pos: r, z: r, special0: r, special1: r });
  // @ts-expect-error: misspelt numbered name.
  assert.throws(() => op(tokens, { emb: r, pos: r, z: r, spcial0: r }));
});

Deno.test({
  name: "record refuses a region over the device's binding limit, naming it",
  ignore: !gpuTests,
  async fn() {
    const rt = await gpuRuntime();
    const limit = rt.device.limits.maxStorageBufferBindingSize;
    const huge = {
      buffer: rt.alloc("small", 4).buffer,
      offset: 0,
      size: limit + 4,
      label: "activations",
    };
    assert.throws(
      () =>
        rt.record([], {
          code: `@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@compute @workgroup_size(1) fn main() { x[0] = 1.0; }`,
          workgroups: [1, 1, 1],
          label: "tooBig",
        }, [huge]),
      new RegExp(
        `^RangeError: Cannot record kernel tooBig: region "activations" is ${
          limit + 4
        } bytes, over the device's maxStorageBufferBindingSize of ${limit}`,
      ),
    );
  },
});

/** Adapters and devices a test made, kept alive to the end of the process. */
const held: unknown[] = [];

Deno.test({
  name:
    "record refuses an f16 kernel on a device without shader-f16, naming the feature",
  ignore: !gpuTests,
  async fn() {
    const gpu = (globalThis.navigator as { gpu: GPU }).gpu;
    const adapter = (await gpu.requestAdapter())!;
    // the engine's device asks for shader-f16 wherever the adapter has it
    const engine = await gpuRuntime();
    assert.equal(
      engine.device.features.has(SHADER_F16),
      adapter.features.has(SHADER_F16),
    );
    const plain = await adapter.requestDevice(); // no optional features
    // Deno's wgpu wants an adapter to outlive its devices (runtime.ts):
    // hold both to the end of the process, as the engine's device is held
    held.push(adapter, plain);
    {
      assert(!plain.features.has(SHADER_F16));
      const rt = createRuntime(plain);
      const step = matmul({ m: 8, n: 8, k: 8, operands: "f16" }).steps[0];
      const regions = step.bind.map((name) => rt.alloc(name, 64));
      assert.throws(
        () => rt.record([], step.spec, regions),
        /^Error: Cannot record kernel matmul 32x32 m8 n8 k8 f16: it uses f16 \(enable f16;\) and this device lacks the WebGPU feature "shader-f16"; /,
      );
      // the casts need no f16 in WGSL: they record on the same device
      const cast = castToF16({ n: 8 }).steps[0];
      const list: Dispatch[] = [];
      rt.record(list, cast.spec, [rt.alloc("x", 8), rt.alloc("y", 4)]);
      assert.equal(list.length, 1);
      rt.destroy();
    }
  },
});
