/**
 * The engine choice shared by the `train`, `test_time_adaptation`,
 * `test_time_augmentation` and `report` stages: `auto` runs the fused WebGPU
 * engine on the webgpu backend and tfjs otherwise, `fused` requires the
 * webgpu backend, `tfjs` always runs the tfjs model.
 *
 * @module
 */
import type { Tf } from "../pipeline/types.ts";
import { checkMixedPrecision, tfjsDevice } from "../gpu/engine.ts";

/** Which engine runs: `auto` = fused on the webgpu backend, tfjs otherwise. */
export type EngineChoice = "auto" | "fused" | "tfjs";

/**
 * The WebGPU device the fused engine should run on for `choice`, or
 * undefined when the tfjs path runs.
 *
 * @param tf The TF.js namespace (its backend decides `auto`).
 * @param choice The stage's `engine` option.
 * @param action What the stage does, for the error ("train", "adapt", "evaluate").
 * @param device A WebGPU device; default: tfjs's (the webgpu backend).
 * @returns The device for the fused engine, or undefined for tfjs.
 * @throws {Error} For `fused` without a WebGPU device.
 */
export function fusedDevice(
  tf: Tf,
  choice: EngineChoice,
  action: string,
  device: GPUDevice | undefined = tfjsDevice(tf),
): GPUDevice | undefined {
  if (choice === "fused" && !device) {
    throw new Error(
      `Cannot ${action} with engine "fused": it needs the webgpu backend, and this run uses "${tf.getBackend()}" (use engine: tfjs or auto)`,
    );
  }
  return choice === "tfjs" ? undefined : device;
}

/** Numeric precision of training: the reference's float32, or mixed (issue 18). */
export type Precision = "fp32" | "mixed";

/**
 * Refuses `precision: mixed` where it cannot run — it needs the fused engine
 * on a WebGPU device with `shader-f16` — instead of training in float32
 * silently.
 *
 * @param tf The TF.js namespace (its backend, for the error).
 * @param choice The stage's `engine` option.
 * @param precision The stage's `precision` option.
 * @param device The device {@linkcode fusedDevice} chose (undefined: tfjs).
 * @throws {Error} "Cannot train with precision mixed: …" naming the engine,
 *   backend or missing feature, and `--set train.precision=fp32`.
 */
export function checkPrecision(
  tf: Tf,
  choice: EngineChoice,
  precision: Precision,
  device: GPUDevice | undefined,
): void {
  if (precision !== "mixed") return;
  const fix = "or use --set train.precision=fp32";
  if (choice === "tfjs") {
    throw new Error(
      `Cannot train with precision mixed: engine "tfjs" trains in float32 only; use engine: fused or auto on the webgpu backend, ${fix}`,
    );
  }
  if (!device) {
    throw new Error(
      `Cannot train with precision mixed: it needs the fused WebGPU engine, and this run uses the "${tf.getBackend()}" backend; select the webgpu backend (runtime.backend: webgpu), ${fix}`,
    );
  }
  checkMixedPrecision(device);
}
