/**
 * Tests of backend selection. They run on a CPU-only machine where Deno
 * WebGPU exposes Mesa llvmpipe (lavapipe) as a fallback adapter; the WebGPU
 * tests really run tfjs-backend-webgpu on it. On a machine with a real GPU the
 * expectations that depend on the adapter kind follow the probe.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  type BackendInfo,
  GPU_BUFFER_CAP_ENV,
  gpuBufferLimits,
  largestTensorBytes,
  probeAdapter,
  selectBackend,
  TFJS_DEVICE_FEATURES,
} from "./backend.ts";

const probed = await probeAdapter();
const realGpu = probed !== undefined && !probed.isFallbackAdapter;
const noAdapter = probed === undefined;

/**
 * WebGPU tests need an adapter. The default op/resource sanitizers pass: Deno
 * 2.9.6 does not count the process-wide tfjs WebGPU device as a leak.
 */
const gpuTest = { ignore: noAdapter };

/** Runs `fn` with console.warn/log captured; returns what was printed. */
async function captureConsole(fn: () => Promise<void>): Promise<string> {
  const printed: string[] = [];
  // Swaps console methods to capture what tfjs prints; prints nothing itself.
  const target = console;
  const { warn, log } = target;
  target.warn = (...args: unknown[]) => void printed.push(args.join(" "));
  target.log = (...args: unknown[]) => void printed.push(args.join(" "));
  try {
    await fn();
  } finally {
    target.warn = warn;
    target.log = log;
  }
  return printed.join("\n");
}

/** Element-wise |a - b| <= tol (absolute + relative). */
function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tol = 1e-5,
): void {
  assert.equal(actual.length, expected.length);
  for (let i = 0; i < expected.length; i++) {
    const diff = Math.abs(actual[i] - expected[i]);
    assert.ok(
      diff <= tol * (1 + Math.abs(expected[i])),
      `index ${i}: got ${actual[i]}, expected ${expected[i]}`,
    );
  }
}

/** Deterministic pseudo-random values in [-1, 1). */
function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

/** Row-major [m,k] x [k,n] reference matmul in float64. */
function matmulRef(
  a: Float32Array,
  b: Float32Array,
  m: number,
  k: number,
  n: number,
): Float64Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let sum = 0;
      for (let p = 0; p < k; p++) sum += a[i * k + p] * b[p * n + j];
      out[i * n + j] = sum;
    }
  }
  return out;
}

Deno.test("probeAdapter reports the adapter facts", () => {
  if (probed === undefined) return;
  assert.equal(typeof probed.vendor, "string");
  assert.equal(typeof probed.description, "string");
  assert.equal(typeof probed.isFallbackAdapter, "boolean");
});

Deno.test("auto picks cpu on a fallback adapter, without the tfjs-node banner", async () => {
  let selected: Awaited<ReturnType<typeof selectBackend>> | undefined;
  const printed = await captureConsole(async () => {
    selected = await selectBackend("auto");
    // The banner is printed on the cpu backend's first tensor write.
    const y = selected.tf.add(selected.tf.tensor([1, 2, 3]), 1);
    assertClose(await y.data(), [2, 3, 4]);
  });
  assert.ok(selected !== undefined);
  const { tf, backend } = selected;
  assert.doesNotMatch(printed, /tfjs-node/);
  assert.equal(backend.requested, "auto");
  if (realGpu) {
    assert.equal(backend.name, "webgpu");
    return;
  }
  assert.equal(backend.name, "cpu");
  assert.equal(tf.getBackend(), "cpu");
  assert.equal(backend.adapter, undefined);
  if (probed !== undefined) {
    assert.match(backend.reason, /^auto: no non-fallback GPU adapter/);
    assert.ok(
      backend.reason.includes(probed.description),
      `reason names the adapter: ${backend.reason}`,
    );
  }
  const m = tf.matMul(tf.tensor2d([[1, 2], [3, 4]]), tf.tensor2d([[5], [6]]));
  assert.deepEqual(Array.from(await m.data()), [17, 39]);
  backend.checkErrors(); // no-op on cpu
});

Deno.test("cpu explicit works", async () => {
  const { tf, backend } = await selectBackend("cpu");
  assert.equal(backend.name, "cpu");
  assert.equal(backend.requested, "cpu");
  assert.equal(tf.getBackend(), "cpu");
  assert.equal(backend.reason, "cpu: requested");
  const x = tf.tensor1d([1, 4, 9]);
  assertClose(await tf.sqrt(x).data(), [1, 2, 3]);
  assert.deepEqual(Array.from(x.dataSync()), [1, 4, 9]);
});

Deno.test({
  name: "webgpu explicit works on the adapter, uploading through writeBuffer",
  ...gpuTest,
  fn: async () => {
    const { tf, backend } = await selectBackend("webgpu");
    assert.equal(backend.name, "webgpu");
    assert.equal(backend.requested, "webgpu");
    assert.equal(tf.getBackend(), "webgpu");
    assert.ok(backend.adapter !== undefined);
    assert.equal(backend.adapter.isFallbackAdapter, probed!.isFallbackAdapter);
    if (!realGpu) {
      assert.equal(backend.adapter.isFallbackAdapter, true);
      assert.match(backend.reason, /requested explicitly/);
      assert.match(backend.reason, /fallback adapter/);
    }

    // deno-lint-ignore no-explicit-any -- tfjs-backend-webgpu internals
    const gpuBackend = tf.backend() as any;
    const proto = Object.getPrototypeOf(gpuBackend);
    assert.equal(
      proto[Symbol.for("amaut.pipeline.backend.writeBufferUpload")],
      true,
      "uploadToGPU patch marker",
    );

    // Spy on the device: uploads must use writeBuffer, never mappedAtCreation.
    const device: GPUDevice = gpuBackend.device;
    let mappedAtCreation = 0;
    let writes = 0;
    const createBuffer = device.createBuffer;
    const writeBuffer = device.queue.writeBuffer;
    device.createBuffer = function (descriptor: GPUBufferDescriptor) {
      if (descriptor.mappedAtCreation) mappedAtCreation++;
      return createBuffer.call(this, descriptor);
    };
    device.queue.writeBuffer = function (
      ...args: Parameters<GPUQueue["writeBuffer"]>
    ) {
      // Uniform buffers are written this way too; count storage (tensor) ones.
      if ((args[0].usage & GPUBufferUsage.STORAGE) !== 0) writes++;
      return writeBuffer.apply(this, args);
    };
    try {
      const n = 1000;
      const xs = values(n, 1);
      const x = tf.tensor(xs);
      const y = tf.add(x, 1);
      assertClose(await y.data(), xs.map((v) => v + 1));

      const [m, k, p] = [20, 50, 30];
      const a = values(m * k, 2);
      const b = values(k * p, 3);
      const c = tf.matMul(tf.tensor2d(a, [m, k]), tf.tensor2d(b, [k, p]));
      assertClose(await c.data(), matmulRef(a, b, m, k, p), 1e-4);

      // tfjs runs ops whose inputs are all CPU-resident and < 1000 elements
      // (WEBGPU_CPU_HANDOFF_SIZE_THRESHOLD) on the CPU, so use 1024 here.
      const intValues = Int32Array.from(
        { length: 1024 },
        (_, i) => i * 3 - 2000,
      );
      intValues[0] = 2 ** 24 - 1; // int32 add runs in f32 on webgpu: 2 ** 30 + 1 gives 2 ** 30
      const ints = tf.tensor1d(intValues, "int32");
      assert.deepEqual(
        Array.from(await tf.add(ints, tf.scalar(1, "int32")).data()),
        Array.from(intValues, (v) => v + 1),
      );
      const boolValues = Uint8Array.from(
        { length: 1024 },
        (_, i) => i % 3 === 0 ? 1 : 0,
      );
      const mask = tf.tensor1d(boolValues, "bool");
      assert.deepEqual(
        Array.from(await tf.logicalNot(mask).data()),
        Array.from(boolValues, (v) => 1 - v),
      );
      tf.dispose([x, y, c, ints, mask]);
    } finally {
      // Drop the own-property spies; the prototype methods show through again.
      delete (device as Partial<GPUDevice>).createBuffer;
      delete (device.queue as Partial<GPUQueue>).writeBuffer;
    }
    assert.equal(mappedAtCreation, 0, "no mappedAtCreation upload buffers");
    // x, a, b, ints and mask at least (plus uploaded scalars).
    assert.ok(writes >= 5, `uploads went through writeBuffer (${writes})`);
    backend.checkErrors(); // the ops above raised no GPU error
  },
});

Deno.test({
  name: "checkErrors throws the first uncaptured GPU validation error once",
  ...gpuTest,
  fn: async () => {
    const { tf, backend } = await selectBackend("webgpu");
    backend.checkErrors();
    // deno-lint-ignore no-explicit-any -- tfjs-backend-webgpu internals
    const device: GPUDevice = (tf.backend() as any).device;
    device.createShaderModule({ code: "this is not wgsl" });
    device.createShaderModule({ code: "neither is this" });
    await device.queue.onSubmittedWorkDone();
    assert.throws(
      () => backend.checkErrors(),
      (err: unknown) => {
        assert.ok(err instanceof Error);
        assert.match(
          err.message,
          /^Cannot continue on WebGPU: GPU validation error: /,
        );
        assert.match(err.message, /this is not wgsl/); // the first error wins
        return true;
      },
    );
    backend.checkErrors(); // cleared

    // Another BackendInfo of the same device shares the one listener.
    const again = await selectBackend("webgpu");
    device.createShaderModule({ code: "still not wgsl" });
    await device.queue.onSubmittedWorkDone();
    assert.throws(() => again.backend.checkErrors(), /GPU validation error/);
    backend.checkErrors();
  },
});

Deno.test({
  name: "auto with allowFallbackAdapter uses webgpu on the fallback adapter",
  ...gpuTest,
  fn: async () => {
    const { tf, backend } = await selectBackend("auto", {
      allowFallbackAdapter: true,
    });
    assert.equal(backend.name, "webgpu");
    assert.equal(tf.getBackend(), "webgpu");
    if (!realGpu) assert.match(backend.reason, /allowFallbackAdapter/);
  },
});

Deno.test({
  name: "selectBackend switches between backends repeatedly",
  ...gpuTest,
  fn: async () => {
    const order = ["cpu", "webgpu", "cpu", "webgpu", "cpu"] as const;
    for (const [i, choice] of order.entries()) {
      const { tf, backend } = await selectBackend(choice);
      assert.equal(backend.name, choice);
      assert.equal(tf.getBackend(), choice);
      const y = tf.mul(tf.tensor1d([1, 2, 3]), i + 1);
      assertClose(await y.data(), [1, 2, 3].map((v) => v * (i + 1)));
      y.dispose();
    }
  },
});

Deno.test({
  name:
    "webgpu device gets the adapter's buffer limits, and a cap lowers them for sizing",
  ...gpuTest,
  fn: async () => {
    const adapter = await navigator.gpu.requestAdapter({
      powerPreference: "high-performance",
    });
    const want = {
      maxStorageBufferBindingSize: adapter!.limits.maxStorageBufferBindingSize,
      maxBufferSize: adapter!.limits.maxBufferSize,
    };
    const { tf, backend } = await selectBackend("webgpu");
    // deno-lint-ignore no-explicit-any -- tfjs-backend-webgpu internals
    const device: GPUDevice = (tf.backend() as any).device;
    assert.equal(device.limits.maxBufferSize, want.maxBufferSize);
    assert.equal(
      device.limits.maxStorageBufferBindingSize,
      want.maxStorageBufferBindingSize,
    );
    // Not WebGPU's default of 256 MiB (llvmpipe offers 2 GiB − 1).
    if (!realGpu) assert.ok(want.maxBufferSize > 256 * 2 ** 20);
    assert.deepEqual(backend.limits, want);
    assert.deepEqual(gpuBufferLimits(tf), want);
    assert.equal(
      largestTensorBytes(tf),
      Math.min(want.maxBufferSize, want.maxStorageBufferBindingSize),
    );

    const capped = await selectBackend("webgpu", { maxBufferBytes: 65536 });
    const small = { maxStorageBufferBindingSize: 65536, maxBufferSize: 65536 };
    assert.deepEqual(capped.backend.limits, small);
    assert.deepEqual(gpuBufferLimits(tf), small);
    // The next selection without a cap lifts it.
    await selectBackend("webgpu");
    assert.deepEqual(gpuBufferLimits(tf), want);
    await selectBackend("cpu");
    assert.equal(gpuBufferLimits(tf), undefined);
    assert.equal(largestTensorBytes(tf), Infinity);
  },
});

Deno.test({
  name:
    "the tfjs webgpu device gets shader-f16 wherever the adapter offers it (the fused engine's f16 kernels run on it)",
  ...gpuTest,
  fn: async () => {
    const adapter = await navigator.gpu.requestAdapter({
      powerPreference: "high-performance",
    });
    const { tf } = await selectBackend("webgpu");
    // deno-lint-ignore no-explicit-any -- tfjs-backend-webgpu internals
    const device: GPUDevice = (tf.backend() as any).device;
    for (const feature of TFJS_DEVICE_FEATURES) {
      assert.equal(
        device.features.has(feature),
        adapter!.features.has(feature),
        feature,
      );
    }
    // Mesa llvmpipe offers shader-f16: the test must see it requested there.
    if (!realGpu) assert.ok(device.features.has("shader-f16"));
    // tfjs still works on the device the replaced factory created.
    const y = tf.add(tf.tensor1d([1, 2]), 1);
    assertClose(await y.data(), [2, 3]);
    y.dispose();
  },
});

Deno.test("a bad buffer cap is refused, naming the option or the variable", async () => {
  await assert.rejects(selectBackend("cpu", { maxBufferBytes: 1.5e3 + 0.5 }), {
    message:
      "Cannot use maxBufferBytes as a GPU buffer cap: give a whole number of bytes of at least 1024 (e.g. 1048576)",
  });
  const before = Deno.env.get(GPU_BUFFER_CAP_ENV);
  Deno.env.set(GPU_BUFFER_CAP_ENV, "64k");
  try {
    await assert.rejects(selectBackend("cpu"), {
      message:
        'Cannot use AMAUT_GPU_MAX_BUFFER_BYTES="64k" as a GPU buffer cap: give a whole number of bytes of at least 1024 (e.g. 1048576)',
    });
  } finally {
    if (before === undefined) Deno.env.delete(GPU_BUFFER_CAP_ENV);
    else Deno.env.set(GPU_BUFFER_CAP_ENV, before);
  }
});

Deno.test("no adapter: webgpu throws, auto falls back to cpu", async () => {
  const gpu = navigator.gpu;
  if (gpu === undefined) return;
  gpu.requestAdapter = () => Promise.resolve(null);
  let info: BackendInfo;
  try {
    assert.equal(await probeAdapter(), undefined);
    await assert.rejects(selectBackend("webgpu"), {
      message: 'Cannot use backend "webgpu": no WebGPU adapter was found',
    });
    info = (await selectBackend("auto")).backend;
  } finally {
    delete (gpu as Partial<GPU>).requestAdapter;
  }
  assert.equal(info.name, "cpu");
  assert.equal(info.reason, "auto: no WebGPU adapter was found, using cpu");
});
