/**
 * Buffer limits of the active tfjs WebGPU device, as the code that sizes GPU
 * work reads them (`lib/chunks.ts` plans with them). Kept apart from
 * `backend.ts` so that browser bundles (`web/`) can import it: no Deno APIs,
 * no tfjs import.
 *
 * @module
 */
import type { Tf } from "./types.ts";

/** Buffer limits of a WebGPU device in bytes, as the sizing logic uses them. */
export interface GpuBufferLimits {
  /** Largest storage-buffer binding (`maxStorageBufferBindingSize`): the largest tensor one kernel can read or write. */
  readonly maxStorageBufferBindingSize: number;
  /** Largest buffer (`maxBufferSize`). */
  readonly maxBufferSize: number;
}

/** Environment variable capping {@linkcode GpuBufferLimits} (whole bytes), for testing the chunking. */
export const GPU_BUFFER_CAP_ENV = "AMAUT_GPU_MAX_BUFFER_BYTES";

/** The cap on each device's limits, set by the last `selectBackend` (bytes). */
const deviceCaps = new WeakMap<GPUDevice, number>();

/**
 * Sets (or, with `undefined`, clears) the cap on a device's buffer limits.
 * Called by `selectBackend`.
 */
export function setDeviceBufferCap(
  device: GPUDevice,
  cap: number | undefined,
): void {
  if (cap === undefined) deviceCaps.delete(device);
  else deviceCaps.set(device, cap);
}

/**
 * Buffer limits of the active tfjs backend's WebGPU device (after the cap of
 * the last `selectBackend`), or undefined when the backend is not WebGPU
 * (cpu has no such limits).
 *
 * @param tf The TensorFlow.js namespace.
 */
export function gpuBufferLimits(tf: Tf): GpuBufferLimits | undefined {
  if (tf.getBackend() !== "webgpu") return undefined;
  const device = (tf.backend() as unknown as { device?: GPUDevice }).device;
  if (device === undefined) return undefined;
  const cap = deviceCaps.get(device) ?? Infinity;
  return {
    maxStorageBufferBindingSize: Math.min(
      device.limits.maxStorageBufferBindingSize,
      cap,
    ),
    maxBufferSize: Math.min(device.limits.maxBufferSize, cap),
  };
}

/**
 * The largest tensor, in bytes, one GPU kernel of the active backend can
 * bind: `min(maxStorageBufferBindingSize, maxBufferSize)` on WebGPU,
 * `Infinity` on cpu.
 *
 * @param tf The TensorFlow.js namespace.
 */
export function largestTensorBytes(tf: Tf): number {
  const limits = gpuBufferLimits(tf);
  return limits === undefined
    ? Infinity
    : Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize);
}
