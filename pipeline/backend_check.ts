/**
 * A self-check of the chosen TensorFlow.js backend, for `deno task backend`:
 * a seeded matrix product compared with a float64 reference computed in plain
 * JS (exercising uploads, a kernel and the readback), and, on WebGPU, a
 * deliberately invalid shader to prove GPU validation errors are caught
 * instead of silently zeroing outputs.
 *
 * @module
 */
import type { BackendInfo } from "./backend.ts";
import type { Tf } from "./types.ts";
import { createRng } from "./rng.ts";

/** What the self-check found. */
export interface BackendCheck {
  /** Size n of the n×n·n×n product. */
  readonly matmulSize: number;
  /** Largest |tfjs − float64 reference| over the product. */
  readonly matmulMaxAbsError: number;
  /** Milliseconds of one warm product including the readback. */
  readonly matmulMs: number;
  /** On WebGPU: whether an invalid shader surfaced as a thrown error. */
  readonly gpuErrorsCaught?: boolean;
  /** The error text that surfaced, when one did. */
  readonly gpuErrorMessage?: string;
}

/**
 * Runs the self-check on the active backend.
 *
 * @param tf The TensorFlow.js namespace on the chosen backend.
 * @param backend The backend `selectBackend` returned.
 * @param size Matrix size n (default 256).
 */
export async function checkBackend(
  tf: Tf,
  backend: BackendInfo,
  size = 256,
): Promise<BackendCheck> {
  const rng = createRng("backend-check", 0);
  const a = Float32Array.from({ length: size * size }, () => rng.next() - 0.5);
  const b = Float32Array.from({ length: size * size }, () => rng.next() - 0.5);
  const ta = tf.tensor2d(a, [size, size]);
  const tb = tf.tensor2d(b, [size, size]);
  const product = async () => {
    const c = tf.matMul(ta, tb);
    const data = await c.data();
    c.dispose();
    return data as Float32Array;
  };
  await product(); // warm-up: compiles the kernel on WebGPU
  const t0 = performance.now();
  const got = await product();
  const matmulMs = performance.now() - t0;
  ta.dispose();
  tb.dispose();
  let maxError = 0;
  for (let i = 0; i < size; i++) {
    for (let j = 0; j < size; j++) {
      let s = 0;
      for (let k = 0; k < size; k++) s += a[i * size + k] * b[k * size + j];
      maxError = Math.max(maxError, Math.abs(s - got[i * size + j]));
    }
  }
  const result: BackendCheck = {
    matmulSize: size,
    matmulMaxAbsError: maxError,
    matmulMs,
  };
  if (backend.name !== "webgpu") return result;
  // deno-lint-ignore no-explicit-any -- tfjs-backend-webgpu exposes its GPUDevice untyped
  const device = (tf.backend() as any).device as GPUDevice;
  backend.checkErrors(); // start clean
  device.createShaderModule({ code: "this is not WGSL" });
  await device.queue.onSubmittedWorkDone();
  try {
    backend.checkErrors();
    return { ...result, gpuErrorsCaught: false };
  } catch (error) {
    return {
      ...result,
      gpuErrorsCaught: true,
      gpuErrorMessage: (error as Error).message.split("\n")[0],
    };
  }
}
