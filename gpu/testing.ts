/**
 * Test helpers for the WebGPU engine: a shared device (any adapter,
 * lavapipe included; `undefined` when there is none so tests can be
 * skipped), and one-kernel runs on host arrays.
 *
 * @module
 */
import type { KernelPlan, KernelSpec, Region, Runtime } from "./runtime.ts";
import { createRuntime, requestEngineDevice } from "./runtime.ts";

let cached: Promise<Runtime | undefined> | undefined;

/**
 * A runtime on the first WebGPU adapter, created once per process, with
 * validation errors turned into thrown errors by {@linkcode checked}.
 *
 * @returns The runtime, or undefined without an adapter.
 */
export function testRuntime(): Promise<Runtime | undefined> {
  cached ??= (async () => {
    const gpu = (globalThis.navigator as { gpu?: GPU }).gpu;
    if (!(await gpu?.requestAdapter())) return undefined;
    return createRuntime(await requestEngineDevice());
  })();
  return cached;
}

/** Whether a WebGPU adapter exists (top-level await in tests, for `ignore`). */
const adapter = await (globalThis.navigator as { gpu?: GPU }).gpu
  ?.requestAdapter();

/** Whether any WebGPU adapter exists, a CPU one (Mesa llvmpipe) included. */
export const hasGpu: boolean = adapter != null;

/**
 * Whether the kernel and engine tests run: whenever a WebGPU adapter
 * exists, Mesa llvmpipe (lavapipe, a CPU "fallback" adapter) included, so CI
 * on a CPU-only machine checks the fused engine too. `AMAUT_GPU_TESTS=0`
 * skips them (for a quick run on a slow CPU: on llvmpipe LLVM compiles each
 * generated kernel the first time it runs, a few minutes of the suite on two
 * cores with a cold Mesa shader cache, seconds once it is warm).
 */
export const gpuTests: boolean = adapter != null &&
  Deno.env.get("AMAUT_GPU_TESTS") !== "0";

/**
 * Runs `fn` inside a validation error scope and throws the first GPU error.
 *
 * @param rt The runtime.
 * @param fn Work that records and runs kernels.
 */
export async function checked<T>(
  rt: Runtime,
  fn: () => Promise<T> | T,
): Promise<T> {
  rt.device.pushErrorScope("validation");
  let value: T;
  try {
    value = await fn();
  } catch (e) {
    await rt.device.popErrorScope();
    throw e;
  }
  const error = await rt.device.popErrorScope();
  if (error) throw new Error(`GPU validation error: ${error.message}`);
  return value;
}

/**
 * Uploads each array into its own buffer, runs one kernel on them (binding i
 * = array i), and reads back the arrays whose indices are in `outputs`.
 *
 * @param rt The runtime.
 * @param kernel The kernel.
 * @param arrays Binding contents in order (f32, i32 or u32).
 * @param outputs Indices of the bindings to read back.
 * @returns The read-back arrays, in `outputs` order.
 */
export async function runKernel(
  rt: Runtime,
  kernel: KernelSpec,
  arrays: readonly (Float32Array | Int32Array | Uint32Array)[],
  outputs: readonly number[],
): Promise<Float32Array[]> {
  const named = Object.fromEntries(arrays.map((a, i) => [`arg${i}`, a]));
  const out = await runPlan(
    rt,
    { steps: [{ spec: kernel, bind: arrays.map((_, i) => `arg${i}`) }] },
    named,
    outputs.map((i) => `arg${i}`),
  );
  return outputs.map((i) => out[`arg${i}`]);
}

/** Reinterprets read-back bits as int32 (for i32/u32 outputs). */
export const asInt32 = (a: Float32Array): Int32Array =>
  new Int32Array(a.buffer, a.byteOffset, a.length);

/** Largest absolute difference of two arrays (Infinity on a length mismatch or NaN). */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

/** Deterministic pseudo-random floats in [-scale, scale) (for test inputs). */
export function randomArray(n: number, seed: number, scale = 1): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = ((s / 4294967296) * 2 - 1) * scale;
  }
  return out;
}

/**
 * Runs every step of a kernel plan on host arrays: `named` gives each
 * binding name's initial contents; scratch regions are allocated zeroed.
 * Returns the final contents of the names listed in `outputs`.
 *
 * @param rt The runtime.
 * @param plan The kernel plan.
 * @param named Initial contents by binding name.
 * @param outputs Names to read back.
 */
export async function runPlan(
  rt: Runtime,
  plan: KernelPlan,
  named: Readonly<Record<string, Float32Array | Int32Array | Uint32Array>>,
  outputs: readonly string[],
): Promise<Record<string, Float32Array>> {
  return await checked(rt, async () => {
    const regions = new Map<string, Region>();
    for (const [name, a] of Object.entries(named)) {
      const r = rt.alloc(name, a.length);
      rt.write(r, a);
      regions.set(name, r);
    }
    for (const [name, n] of Object.entries(plan.scratch ?? {})) {
      if (!regions.has(name)) regions.set(name, rt.alloc(name, n));
    }
    const list: Parameters<Runtime["record"]>[0] = [];
    for (const step of plan.steps) {
      rt.record(
        list,
        step.spec,
        step.bind.map((n) => {
          const r = regions.get(n);
          if (!r) throw new Error(`runPlan: no array for binding "${n}"`);
          return r;
        }),
      );
    }
    rt.run([list]);
    const out: Record<string, Float32Array> = {};
    for (const n of outputs) out[n] = await rt.read(regions.get(n)!);
    for (const r of regions.values()) r.buffer.destroy();
    return out;
  });
}
