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

/** Numeric precision of a stage's fused engine: the reference's float32, or mixed (issue 18). */
export type Precision = "fp32" | "mixed";

/** Who asks for a precision, for the refusals' wording. */
export interface PrecisionUse {
  /** What runs: "train", "adapt", "evaluate", "predict". */
  readonly action: string;
  /** The option that sets it, as the fix names it: `--set train.precision=fp32`, `--precision fp32`. */
  readonly fix: string;
  /** How to select the webgpu backend (default `runtime.backend: webgpu`). */
  readonly backend?: string;
}

/**
 * The {@linkcode PrecisionUse} of a pipeline stage's `precision` option.
 *
 * @param stage The stage's name in the spec (`train`, `report`, …).
 * @param action What the stage does ("train", "adapt", "evaluate").
 * @returns The use; its fix is `--set <stage>.precision=fp32`.
 */
export function stagePrecisionUse(stage: string, action: string): PrecisionUse {
  return { action, fix: `--set ${stage}.precision=fp32` };
}

/** The `train` stage's use (the default of {@linkcode checkPrecision}). */
export const TRAIN_PRECISION: PrecisionUse = stagePrecisionUse(
  "train",
  "train",
);

/**
 * Refuses `precision: mixed` where it cannot run — it needs the fused engine
 * on a WebGPU device with `shader-f16` — instead of running in float32
 * silently.
 *
 * @param tf The TF.js namespace (its backend, for the error).
 * @param choice The stage's `engine` option.
 * @param precision The stage's `precision` option.
 * @param device The device {@linkcode fusedDevice} chose (undefined: tfjs).
 * @param use What runs and the option to set instead (default: the train stage's).
 * @throws {Error} "Cannot <action> with precision mixed: …" naming the
 *   engine, backend or missing feature, and the fix (`--set train.precision=fp32`).
 */
export function checkPrecision(
  tf: Tf,
  choice: EngineChoice,
  precision: Precision,
  device: GPUDevice | undefined,
  use: PrecisionUse = TRAIN_PRECISION,
): void {
  if (precision !== "mixed") return;
  const { action } = use;
  const fix = `or use ${use.fix}`;
  if (choice === "tfjs") {
    throw new Error(
      `Cannot ${action} with precision mixed: engine "tfjs" runs in float32 only; use engine: fused or auto on the webgpu backend, ${fix}`,
    );
  }
  if (!device) {
    throw new Error(
      `Cannot ${action} with precision mixed: it needs the fused WebGPU engine, and this run uses the "${tf.getBackend()}" backend; select the webgpu backend (${
        use.backend ?? "runtime.backend: webgpu"
      }), ${fix}`,
    );
  }
  checkMixedPrecision(device, action, `use ${use.fix}`);
}
