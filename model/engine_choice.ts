/**
 * The engine choice shared by the `train`, `test_time_adaptation`,
 * `test_time_augmentation` and `report` stages: `auto` runs the fused WebGPU
 * engine on the webgpu backend and tfjs otherwise, `fused` requires the
 * webgpu backend, `tfjs` always runs the tfjs model.
 *
 * @module
 */
import type { Tf } from "../pipeline/types.ts";
import { tfjsDevice } from "../gpu/engine.ts";

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
