/**
 * Test helpers for the WebGPU engine: a shared device (any adapter,
 * lavapipe included; `undefined` when there is none so tests can be
 * skipped), and one-kernel runs on host arrays.
 *
 * @module
 */
import type { AnyKernelPlan, KernelSpec, Region, Runtime } from "./runtime.ts";
import { createRuntime, planRegions, requestEngineDevice } from "./runtime.ts";

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

/**
 * The test runtime, for tests that run only where {@linkcode gpuTests} is
 * true.
 *
 * @throws {Error} Without a WebGPU adapter.
 */
export async function gpuRuntime(): Promise<Runtime> {
  const rt = await testRuntime();
  if (!rt) {
    throw new Error(
      "Cannot run a GPU test: no WebGPU adapter; skip it with ignore: !gpuTests",
    );
  }
  return rt;
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
 * Returns the final contents of the names listed in `outputs`. Names are
 * checked as the engine checks them ({@linkcode planRegions}): a name the
 * plan needs and `named` lacks, or one it gives and no step binds, throws.
 *
 * @param rt The runtime.
 * @param plan The kernel plan.
 * @param named Initial contents by binding name.
 * @param outputs Names to read back.
 */
export async function runPlan(
  rt: Runtime,
  plan: AnyKernelPlan,
  named: Readonly<Record<string, Float32Array | Int32Array | Uint32Array>>,
  outputs: readonly string[],
): Promise<Record<string, Float32Array>> {
  return await checked(rt, async () => {
    const regions = new Map<string, Region>();
    try {
      for (const [name, a] of Object.entries(named)) {
        const r = rt.alloc(name, a.length);
        rt.write(r, a);
        regions.set(name, r);
      }
      for (const [name, n] of Object.entries(plan.scratch ?? {})) {
        if (!regions.has(name)) regions.set(name, rt.alloc(name, n));
      }
      const lists = planRegions(
        plan,
        Object.fromEntries(
          Object.keys(named).map((n) => [n, regions.get(n)]),
        ),
        (n) => regions.get(n),
      );
      const list: Parameters<Runtime["record"]>[0] = [];
      plan.steps.forEach((step, i) => rt.record(list, step.spec, lists[i]));
      rt.run([list]);
      const out: Record<string, Float32Array> = {};
      for (const n of outputs) {
        const r = regions.get(n);
        if (!r) {
          throw new Error(
            `Cannot read back "${n}": the plan has no such binding or scratch region`,
          );
        }
        out[n] = await rt.read(r);
      }
      return out;
    } finally {
      for (const r of regions.values()) r.buffer.destroy();
    }
  });
}

/**
 * float64 erf (Taylor series below 3, a continued fraction for erfc above;
 * accurate to ~1e-15): the reference of every GELU kernel test.
 *
 * @param x The argument.
 * @returns erf(x).
 */
export function erf64(x: number): number {
  const a = Math.abs(x);
  if (a < 3) {
    let term = x;
    let sum = x;
    for (let n = 1; n < 200; n++) {
      term *= -x * x / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    return sum * 2 / Math.sqrt(Math.PI);
  }
  let k = a;
  for (let n = 80; n >= 1; n--) k = a + (n / 2) / k;
  const erfc = Math.exp(-a * a) / (Math.sqrt(Math.PI) * k);
  return Math.sign(x) * (1 - erfc);
}

/** float64 exact GELU, `0.5·x·(1 + erf(x/√2))`. */
export const gelu64 = (x: number): number =>
  0.5 * x * (1 + erf64(x / Math.SQRT2));

/** float64 derivative of {@linkcode gelu64}: `Φ(x) + x·φ(x)`. */
export const gelu64Grad = (x: number): number =>
  0.5 * (1 + erf64(x / Math.SQRT2)) +
  x * Math.exp(-0.5 * x * x) / Math.sqrt(2 * Math.PI);

/**
 * Asserts `max |actual − expected| ≤ tol·max(1, max |expected|)` (a
 * tolerance relative to the reference's scale), naming `what`.
 *
 * @param actual The kernel's output.
 * @param expected The float64 reference.
 * @param what Shown on failure.
 * @param tol Relative tolerance (default 1e-5).
 */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  what: string,
  tol = 1e-5,
): void {
  let scale = 1;
  for (let i = 0; i < expected.length; i++) {
    scale = Math.max(scale, Math.abs(expected[i]));
  }
  const d = maxAbsDiff(actual, expected);
  if (!(d <= tol * scale)) {
    throw new Error(
      `${what}: max abs diff ${d} > ${tol * scale} (scale ${scale})`,
    );
  }
}

/**
 * Central finite difference of a float64 function at `x[i]`.
 *
 * @param f The function.
 * @param x The point.
 * @param i The coordinate.
 * @param h Step (default 1e-4).
 */
export function finiteDifference(
  f: (x: Float64Array) => number,
  x: ArrayLike<number>,
  i: number,
  h = 1e-4,
): number {
  const a = Float64Array.from(x);
  a[i] += h;
  const up = f(a);
  a[i] -= 2 * h;
  const down = f(a);
  return (up - down) / (2 * h);
}

/**
 * Central finite differences of `loss` with respect to every entry of `p`
 * (changed in place and restored).
 *
 * @param p The parameters `loss` reads.
 * @param loss The float64 loss.
 * @param h Step (default 1e-5).
 */
export function numericGrad(
  p: Float64Array,
  loss: () => number,
  h = 1e-5,
): Float64Array {
  const g = new Float64Array(p.length);
  for (let i = 0; i < p.length; i++) {
    const v = p[i];
    p[i] = v + h;
    const up = loss();
    p[i] = v - h;
    const down = loss();
    p[i] = v;
    g[i] = (up - down) / (2 * h);
  }
  return g;
}

/**
 * A normalisation layer's parameters for tests: γ in [0.5, 1.5) then β in
 * [−0.5, 0.5), `[2n]`.
 *
 * @param n Channels.
 * @param seed Random seed.
 */
export function gammaBeta(n: number, seed: number): Float32Array {
  const g = randomArray(n, seed, 0.5);
  const b = randomArray(n, seed + 1, 0.5);
  const out = new Float32Array(2 * n);
  for (let i = 0; i < n; i++) {
    out[i] = 1 + g[i];
    out[n + i] = b[i];
  }
  return out;
}

/**
 * float64 per-group column mean and biased variance of `x` `[G·R, C]` (two
 * passes): `[G][2][C]`, mean then variance — the reference statistics of
 * the BatchNorm and weight-standardisation kernels.
 *
 * @param x Values, row-major.
 * @param G Groups.
 * @param R Rows per group.
 * @param C Columns.
 */
export function columnStats64(
  x: ArrayLike<number>,
  G: number,
  R: number,
  C: number,
): Float64Array {
  const s = new Float64Array(G * 2 * C);
  for (let g = 0; g < G; g++) {
    for (let c = 0; c < C; c++) {
      let m = 0;
      for (let r = 0; r < R; r++) m += x[(g * R + r) * C + c];
      m /= R;
      let v = 0;
      for (let r = 0; r < R; r++) v += (x[(g * R + r) * C + c] - m) ** 2;
      s[g * 2 * C + c] = m;
      s[g * 2 * C + C + c] = v / R;
    }
  }
  return s;
}

/** float64 dot product of two equally long arrays. */
export function dot64(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/** Host arrays the float64 references of the kernel tests take. */
export type Arr = ArrayLike<number>;

/** A float32 copy of `a` (a float64 reference's output as a kernel input). */
export const f32 = (a: Arr): Float32Array => Float32Array.from(a);

/** The element-wise float64 sum `a + b` (the expected value of an accumulating kernel). */
export const add64 = (a: Arr, b: Arr): Float64Array =>
  Float64Array.from(a, (v, i) => v + b[i]);

/**
 * Registers a GPU test: it runs `fn` on the shared runtime where
 * {@linkcode gpuTests} is true and is reported as ignored elsewhere.
 *
 * @param name The test name.
 * @param fn The test, given the runtime.
 */
export function gpuTest(
  name: string,
  fn: (rt: Runtime) => Promise<void>,
): void {
  Deno.test({
    name,
    ignore: !gpuTests,
    fn: async () => await fn(await gpuRuntime()),
  });
}
