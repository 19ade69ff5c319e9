/**
 * Picks and initialises the TF.js backend: the one place that decides between
 * the WebGPU backend (`@tensorflow/tfjs-backend-webgpu`) and the plain-JS
 * `cpu` backend.
 *
 * - `auto` uses WebGPU only on a real GPU: an adapter whose
 *   `info.isFallbackAdapter` is false. CPU adapters such as Mesa
 *   llvmpipe/lavapipe are fallback adapters, so `auto` picks `cpu` on them
 *   unless `allowFallbackAdapter` is set.
 * - `webgpu` needs an adapter; as an explicit choice it accepts a fallback one.
 * - `cpu` is the tfjs `cpu` backend.
 *
 * When WebGPU is selected, two fixes from the project's WebGPU notes are
 * applied once per backend prototype / device:
 * 1. `uploadToGPU` uploads through `GPUQueue.writeBuffer` instead of a
 *    `mappedAtCreation` staging buffer and `getMappedRange()`, which copies
 *    since Deno 2.9.5 (denoland/deno#36257) and made training steps ~10x
 *    slower on NVIDIA. Relies on tfjs-backend-webgpu 4.22.0 internals
 *    (`tensorMap`, `bufferManager`, `queue`); keep that version pinned.
 * 2. An `uncapturederror` listener on the device records the first GPU error,
 *    because tfjs never checks for them: a shader naga rejects leaves its
 *    output silently zero. {@linkcode BackendInfo.checkErrors} throws it.
 *
 * The tfjs device also gets `shader-f16` where the adapter offers it (tfjs's
 * own factory asks only for `timestamp-query` and `bgra8unorm-storage`): the
 * fused engine trains on this device and its f16 kernels need the feature.
 *
 * Buffer limits: tfjs-backend-webgpu 4.22's factory (`base.ts`) requests the
 * adapter's own `maxStorageBufferBindingSize` and `maxBufferSize` (not
 * WebGPU's defaults of 128 and 256 MiB); a test pins that. tfjs never splits
 * a tensor, and one larger than the binding limit fails validation, so every
 * path that sizes GPU work reads {@linkcode gpuBufferLimits} and chunks its
 * batches (`lib/chunks.ts`). The limits can be lowered for testing, never
 * raised: `selectBackend(..., { maxBufferBytes })` or the environment
 * variable {@linkcode GPU_BUFFER_CAP_ENV} (read only where `--allow-env`
 * grants it) caps both for the sizing logic. WebGPU gives a device at least
 * its default limits whatever is requested, so the cap binds the chunking,
 * not the device.
 *
 * Permissions: none. Neither the tfjs `cpu` backend nor Deno WebGPU needs
 * `--allow-read`, `--allow-env` or any other permission (Deno 2.9.6).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import {
  GPU_BUFFER_CAP_ENV,
  type GpuBufferLimits,
  gpuBufferLimits,
  setDeviceBufferCap,
} from "./gpu_limits.ts";

export {
  GPU_BUFFER_CAP_ENV,
  type GpuBufferLimits,
  gpuBufferLimits,
  largestTensorBytes,
} from "./gpu_limits.ts";

/** Which backend the spec asks for. */
export type BackendChoice = "auto" | "webgpu" | "cpu";

/** GPU adapter facts as recorded in run manifests (all from `GPUAdapterInfo`). */
export interface AdapterInfo {
  /** Vendor name or PCI vendor id as a decimal string (e.g. "4318" = 0x10DE, NVIDIA); may be empty. */
  readonly vendor: string;
  /** GPU architecture family; often empty. */
  readonly architecture: string;
  /** Device id (decimal string); may be empty or "0". */
  readonly device: string;
  /** Human-readable adapter name, e.g. "llvmpipe (LLVM 15.0.6, 256 bits)"; may be empty. */
  readonly description: string;
  /** True for CPU-emulated adapters (llvmpipe/lavapipe, WARP, SwiftShader). */
  readonly isFallbackAdapter: boolean;
}

/** The chosen backend. */
export interface BackendInfo {
  /** The tfjs backend now active (`tf.getBackend()`). */
  readonly name: "cpu" | "webgpu";
  /** The choice that was asked for. */
  readonly requested: BackendChoice;
  /** The adapter used; present only when `name` is "webgpu". */
  readonly adapter?: AdapterInfo;
  /** Why this backend was chosen, one sentence (e.g. "auto: no non-fallback GPU adapter (found llvmpipe ...), using cpu"). */
  readonly reason: string;
  /** The device's buffer limits (after any cap); present only when `name` is "webgpu". */
  readonly limits?: GpuBufferLimits;
  /**
   * Throws (as an Error naming the GPU error message) the first uncaptured GPU
   * error recorded since the last call, then forgets it; no-op on cpu.
   * The message is "GPU validation error: ...", "GPU out-of-memory error: ..."
   * or "GPU internal error: ..."; the GPU error object is the `cause`.
   */
  checkErrors(): void;
}

/** Power preference tfjs-backend-webgpu uses by default, so probing finds the same adapter. */
const POWER_PREFERENCE: GPUPowerPreference = "high-performance";

/**
 * Marks a WebGPU backend prototype whose `uploadToGPU` is already patched.
 * `Symbol.for`, so that two copies of this module cannot patch twice.
 */
const UPLOAD_PATCH_MARKER = Symbol.for(
  "amaut.pipeline.backend.writeBufferUpload",
);

/** The first uncaptured GPU error of each device, until `checkErrors()` takes it. */
const deviceErrors = new WeakMap<GPUDevice, { first?: GPUError }>();

/**
 * The cap asked for: the option, else {@linkcode GPU_BUFFER_CAP_ENV} when
 * readable, else none.
 *
 * @throws Error naming the option or variable when it is not a whole number ≥ 1024.
 */
function bufferCap(option: number | undefined): number | undefined {
  let value: number | undefined = option;
  let source = "maxBufferBytes";
  if (value === undefined) {
    // No Deno in a browser (web/ bundles this module): no variable to read.
    const deno = (globalThis as { Deno?: typeof Deno }).Deno;
    const granted = deno?.permissions.querySync({
      name: "env",
      variable: GPU_BUFFER_CAP_ENV,
    }).state === "granted";
    const text = granted ? deno!.env.get(GPU_BUFFER_CAP_ENV) : undefined;
    if (text === undefined || text.trim() === "") return undefined;
    value = Number(text);
    source = `${GPU_BUFFER_CAP_ENV}="${text}"`;
  }
  if (!Number.isInteger(value) || value < 1024) {
    throw new Error(
      `Cannot use ${source} as a GPU buffer cap: give a whole number of bytes of at least 1024 (e.g. 1048576)`,
    );
  }
  return value;
}

/**
 * Adapter probe without touching tfjs: requests an adapter with the same
 * options tfjs-backend-webgpu uses and returns its info, or undefined when
 * `navigator.gpu` is missing or no adapter is found. Takes a few ms to ~0.3 s
 * on first use (driver loading); creates no device.
 */
export async function probeAdapter(): Promise<AdapterInfo | undefined> {
  const gpu = (globalThis.navigator as Navigator | undefined)?.gpu;
  if (gpu === undefined) return undefined;
  let adapter: GPUAdapter | null;
  try {
    adapter = await gpu.requestAdapter({ powerPreference: POWER_PREFERENCE });
  } catch {
    return undefined;
  }
  if (adapter === null) return undefined;
  const info = adapter.info;
  return {
    vendor: info.vendor,
    architecture: info.architecture,
    device: info.device,
    description: info.description,
    // Deno reports it on GPUAdapterInfo; older runtimes had it on the adapter.
    isFallbackAdapter: Boolean(
      (info as { isFallbackAdapter?: boolean }).isFallbackAdapter ??
        (adapter as { isFallbackAdapter?: boolean }).isFallbackAdapter,
    ),
  };
}

/**
 * Selects and initialises the TF.js backend (see the module doc for the
 * rules) and returns the tfjs namespace with it active. May be called again
 * with another choice to switch backends; WebGPU is initialised once per
 * process (about 0.2 s on lavapipe) and then reused.
 *
 * @param choice The backend the spec asks for.
 * @param options.allowFallbackAdapter Let `auto` use a fallback
 *   (CPU-emulated) WebGPU adapter instead of the `cpu` backend; default false.
 *   An explicit `webgpu` choice always accepts one.
 * @param options.maxBufferBytes Cap both buffer limits at this many bytes
 *   (for testing the chunking; default: {@linkcode GPU_BUFFER_CAP_ENV}, else
 *   none). Applies until the next call.
 * @throws Error when `webgpu` is requested and no adapter is found or the
 *   tfjs WebGPU backend fails to initialise, or the cap is not a whole
 *   number of bytes ≥ 1024.
 */
export async function selectBackend(
  choice: BackendChoice,
  options: { allowFallbackAdapter?: boolean; maxBufferBytes?: number } = {},
): Promise<{ tf: typeof import("@tensorflow/tfjs"); backend: BackendInfo }> {
  const cap = bufferCap(options.maxBufferBytes);
  if (choice === "cpu") {
    return { tf, backend: await useCpu(choice, "cpu: requested") };
  }

  const adapter = await probeAdapter();
  if (choice === "webgpu") {
    if (adapter === undefined) {
      throw new Error(
        'Cannot use backend "webgpu": no WebGPU adapter was found',
      );
    }
    const reason = adapter.isFallbackAdapter
      ? `webgpu: requested explicitly, so the fallback adapter ${
        describe(adapter)
      } is accepted (CPU-emulated, slow)`
      : `webgpu: requested, using GPU adapter ${describe(adapter)}`;
    return { tf, backend: await useWebGpu(choice, adapter, reason, cap) };
  }

  // auto
  if (adapter === undefined) {
    return {
      tf,
      backend: await useCpu(
        choice,
        "auto: no WebGPU adapter was found, using cpu",
      ),
    };
  }
  if (adapter.isFallbackAdapter && options.allowFallbackAdapter !== true) {
    return {
      tf,
      backend: await useCpu(
        choice,
        `auto: no non-fallback GPU adapter (found ${
          describe(adapter)
        }, a fallback adapter), using cpu`,
      ),
    };
  }
  const reason = adapter.isFallbackAdapter
    ? `auto: only the fallback adapter ${
      describe(adapter)
    } was found and allowFallbackAdapter is set, using webgpu`
    : `auto: found GPU adapter ${describe(adapter)}, using webgpu`;
  try {
    return { tf, backend: await useWebGpu(choice, adapter, reason, cap) };
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    return { tf, backend: await useCpu(choice, `auto: ${why}, using cpu`) };
  }
}

/** A short name for an adapter in `reason` strings. */
function describe(adapter: AdapterInfo): string {
  return adapter.description !== ""
    ? adapter.description
    : `vendor ${adapter.vendor || "?"} device ${adapter.device || "?"}`;
}

/** Activates the tfjs cpu backend, without the Node.js "install tfjs-node" banner. */
async function useCpu(
  requested: BackendChoice,
  reason: string,
): Promise<BackendInfo> {
  if (!(await tf.setBackend("cpu"))) {
    throw new Error('Cannot use backend "cpu": tfjs failed to initialise it');
  }
  await tf.ready();
  silenceNodeBanner();
  return { name: "cpu", requested, reason, checkErrors() {} };
}

/**
 * tfjs detects Deno as Node.js and its cpu backend prints "Hi, looks like you
 * are running TensorFlow.js in Node.js ... install tfjs-node" on its first
 * tensor write. Consume that first write with the documented `PROD` flag set
 * (which only mutes tfjs's `warn`/`log`), then restore the flag, so other tfjs
 * warnings such as backend initialisation failures stay visible. Idempotent.
 */
function silenceNodeBanner(): void {
  const env = tf.env();
  if (!env.getBool("IS_NODE")) return;
  const prod = env.getBool("PROD");
  env.set("PROD", true);
  try {
    tf.scalar(0).dispose();
  } finally {
    env.set("PROD", prod);
  }
}

/** What this module reads from tfjs-backend-webgpu's `WebGPUBackend`. */
interface WebGpuBackendLike {
  readonly device: GPUDevice;
}

/** Activates the tfjs webgpu backend and applies the upload patch and the error listener. */
async function useWebGpu(
  requested: BackendChoice,
  adapter: AdapterInfo,
  reason: string,
  cap: number | undefined,
): Promise<BackendInfo> {
  // Lazy: registers the "webgpu" backend factory; cpu runs never load it.
  const webgpu = await import("@tensorflow/tfjs-backend-webgpu");
  if (tf.findBackendFactory("webgpu") == null) {
    throw new Error(
      'Cannot use backend "webgpu": tfjs-backend-webgpu did not register (navigator.gpu missing?)',
    );
  }
  replaceWebGpuFactory(webgpu.WebGPUBackend);
  if (!(await tf.setBackend("webgpu"))) {
    throw new Error(
      'Cannot use backend "webgpu": tfjs failed to initialise it (see the tfjs warning above)',
    );
  }
  await tf.ready();
  const backend = tf.backend() as unknown as WebGpuBackendLike;
  patchUploadToGpu(backend);
  const errors = watchDeviceErrors(backend.device);
  setDeviceBufferCap(backend.device, cap);
  return {
    name: "webgpu",
    requested,
    adapter,
    reason,
    limits: gpuBufferLimits(tf),
    checkErrors() {
      const error = errors.first;
      if (error === undefined) return;
      errors.first = undefined;
      throw new Error(
        `Cannot continue on WebGPU: ${
          errorKind(error)
        }: ${error.message.trim()}`,
        {
          cause: error,
        },
      );
    },
  };
}

/** Marks the `webgpu` backend factory registered by {@linkcode replaceWebGpuFactory}. */
const FACTORY_MARKER = Symbol.for("amaut.webgpuFactoryWithShaderF16");

/**
 * WebGPU features the tfjs device asks for wherever the adapter offers them:
 * tfjs-backend-webgpu 4.22's own two, plus `shader-f16`, which the fused
 * engine's f16 kernels (mixed precision) need on this same device.
 */
export const TFJS_DEVICE_FEATURES: readonly GPUFeatureName[] = [
  "timestamp-query",
  "bgra8unorm-storage",
  "shader-f16",
];

/**
 * Re-registers tfjs's `webgpu` backend factory (once, before the backend is
 * first initialised) with one that creates the device as tfjs-backend-webgpu
 * 4.22's does (same adapter options and limits) but also requests
 * `shader-f16` when the adapter offers it. tfjs's factory asks only for
 * `timestamp-query` and `bgra8unorm-storage`, and the fused engine trains on
 * this device, so without this its f16 kernels would be refused. Leaves an
 * already-initialised backend alone (its device keeps its features).
 */
function replaceWebGpuFactory(
  Backend: new (device: GPUDevice, info?: GPUAdapterInfo) => tf.KernelBackend,
): void {
  const factory = tf.findBackendFactory("webgpu") as
    | (((...args: never[]) => unknown) & { [FACTORY_MARKER]?: true })
    | null;
  if (factory == null || factory[FACTORY_MARKER] === true) return;
  const registry = (tf.engine() as unknown as {
    registry: Record<string, unknown>;
  }).registry;
  if (registry.webgpu !== undefined) return;
  const created = async (): Promise<tf.KernelBackend> => {
    const adapter = await navigator.gpu.requestAdapter({
      powerPreference: tf.env().getBool("WEBGPU_USE_LOW_POWER_GPU")
        ? "low-power"
        : POWER_PREFERENCE,
    });
    if (adapter === null) {
      throw new Error(
        'Cannot use backend "webgpu": no WebGPU adapter was found',
      );
    }
    const limits = adapter.limits;
    const device = await adapter.requestDevice({
      requiredFeatures: TFJS_DEVICE_FEATURES.filter((f) =>
        adapter.features.has(f)
      ),
      requiredLimits: {
        maxComputeWorkgroupStorageSize: limits.maxComputeWorkgroupStorageSize,
        maxComputeWorkgroupsPerDimension:
          limits.maxComputeWorkgroupsPerDimension,
        maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize,
        maxBufferSize: limits.maxBufferSize,
        maxComputeWorkgroupSizeX: limits.maxComputeWorkgroupSizeX,
        maxComputeInvocationsPerWorkgroup:
          limits.maxComputeInvocationsPerWorkgroup,
      },
    });
    return new Backend(device, adapter.info);
  };
  Object.defineProperty(created, FACTORY_MARKER, { value: true });
  tf.removeBackend("webgpu");
  tf.registerBackend("webgpu", created, 3); // tfjs's priority for webgpu
}

/** "GPU validation error" etc., from the GPUError subclass. */
function errorKind(error: GPUError): string {
  if (
    typeof GPUOutOfMemoryError !== "undefined" &&
    error instanceof GPUOutOfMemoryError
  ) {
    return "GPU out-of-memory error";
  }
  if (
    typeof GPUInternalError !== "undefined" && error instanceof GPUInternalError
  ) {
    return "GPU internal error";
  }
  return "GPU validation error";
}

/** Installs (once per device) the listener that keeps the first uncaptured GPU error. */
function watchDeviceErrors(device: GPUDevice): { first?: GPUError } {
  let holder = deviceErrors.get(device);
  if (holder === undefined) {
    const created: { first?: GPUError } = {};
    holder = created;
    deviceErrors.set(device, created);
    device.addEventListener("uncapturederror", (event) => {
      // Never throw here: it would surface as an unrelated uncaught exception.
      const error = (event as GPUUncapturedErrorEvent).error;
      if (created.first === undefined) created.first = error;
    });
  }
  return holder;
}

/**
 * Replaces `WebGPUBackend.prototype.uploadToGPU` (once, marked with
 * {@link UPLOAD_PATCH_MARKER}) by a version that writes CPU-resident values
 * with `queue.writeBuffer`. Tensors already on the GPU, without values, or of
 * dtype complex64/string go to the original. Ordering is safe: tfjs defers
 * releasing buffers used by the not-yet-submitted command encoder, so a pooled
 * buffer handed out here is never read by pending commands.
 */
function patchUploadToGpu(backend: WebGpuBackendLike): void {
  // deno-lint-ignore no-explicit-any -- tfjs-backend-webgpu internals are untyped.
  const proto: any = Object.getPrototypeOf(backend);
  if (proto[UPLOAD_PATCH_MARKER] === true) return;
  const original: (dataId: object) => void = proto.uploadToGPU;
  if (typeof original !== "function") {
    throw new Error(
      "Cannot upload tensors with tfjs-backend-webgpu: WebGPUBackend.uploadToGPU is missing (the package changed); pin the version in deno.json",
    );
  }
  // deno-lint-ignore no-explicit-any -- `this` is the untyped WebGPUBackend.
  proto.uploadToGPU = function (this: any, dataId: object): void {
    const data = this.tensorMap.get(dataId);
    if (
      data.resource != null || data.values == null ||
      data.dtype === "complex64" || data.dtype === "string"
    ) {
      return original.call(this, dataId);
    }
    const size = (data.shape as number[]).reduce((a, b) => a * b, 1);
    const bytes = 4 * size; // float32, int32 and bool are 4 bytes on the GPU
    const buffer: GPUBuffer = this.bufferManager.acquireBuffer(
      bytes,
      GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC |
        GPUBufferUsage.COPY_DST,
    );
    const values = data.values as ArrayLike<number>;
    const array = data.dtype === "int32" || data.dtype === "bool"
      ? (values instanceof Int32Array ? values : Int32Array.from(values))
      : (values instanceof Float32Array ? values : Float32Array.from(values));
    if (size > 0) {
      (this.queue as GPUQueue).writeBuffer(
        buffer,
        0,
        array.buffer as ArrayBuffer, // tfjs values are never SharedArrayBuffer-backed
        array.byteOffset,
        bytes,
      );
    }
    data.values = null; // as upstream: once uploaded, values live only on the GPU
    data.resource = buffer;
  };
  Object.defineProperty(proto, UPLOAD_PATCH_MARKER, { value: true });
}
