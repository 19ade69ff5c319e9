/**
 * Tests of the refusals of `precision: mixed` (`engine_choice.ts`): the tfjs
 * engine, a run without the fused engine's WebGPU device, a device without
 * `shader-f16`; fp32 is never refused.
 *
 * @module
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { checkPrecision, stagePrecisionUse } from "./engine_choice.ts";

/** A device stand-in: only `features` is read. */
const deviceWith = (...features: string[]) =>
  ({ features: new Set(features) }) as unknown as GPUDevice;

Deno.test("precision mixed is refused with the tfjs engine, without a WebGPU device and without shader-f16", async () => {
  await tf.setBackend("cpu");
  assert.throws(
    () => checkPrecision(tf, "tfjs", "mixed", undefined),
    {
      message:
        'Cannot train with precision mixed: engine "tfjs" runs in float32 only; use engine: fused or auto on the webgpu backend, or use --set train.precision=fp32',
    },
  );
  assert.throws(
    () => checkPrecision(tf, "auto", "mixed", undefined),
    {
      message:
        'Cannot train with precision mixed: it needs the fused WebGPU engine, and this run uses the "cpu" backend; select the webgpu backend (runtime.backend: webgpu), or use --set train.precision=fp32',
    },
  );
  assert.throws(
    () => checkPrecision(tf, "fused", "mixed", deviceWith("timestamp-query")),
    {
      message:
        'Cannot train with precision mixed: this WebGPU device lacks the feature "shader-f16" (its adapter does not offer it), which the f16 matmuls need; use --set train.precision=fp32',
    },
  );
  checkPrecision(tf, "auto", "mixed", deviceWith("shader-f16"));
  for (const choice of ["auto", "fused", "tfjs"] as const) {
    checkPrecision(tf, choice, "fp32", undefined);
    checkPrecision(tf, choice, "fp32", deviceWith());
  }
});

Deno.test("precision mixed refusals name the stage that asks and its option", async () => {
  await tf.setBackend("cpu");
  const report = stagePrecisionUse("report", "evaluate");
  assert.deepEqual(report, {
    action: "evaluate",
    fix: "--set report.precision=fp32",
  });
  assert.throws(
    () => checkPrecision(tf, "auto", "mixed", undefined, report),
    {
      message:
        'Cannot evaluate with precision mixed: it needs the fused WebGPU engine, and this run uses the "cpu" backend; select the webgpu backend (runtime.backend: webgpu), or use --set report.precision=fp32',
    },
  );
  assert.throws(
    () =>
      checkPrecision(
        tf,
        "tfjs",
        "mixed",
        undefined,
        stagePrecisionUse("ttau", "evaluate"),
      ),
    {
      message:
        'Cannot evaluate with precision mixed: engine "tfjs" runs in float32 only; use engine: fused or auto on the webgpu backend, or use --set ttau.precision=fp32',
    },
  );
  assert.throws(
    () =>
      checkPrecision(tf, "auto", "mixed", deviceWith(), {
        action: "predict",
        fix: "--precision fp32",
        backend: "--backend webgpu",
      }),
    {
      message:
        'Cannot predict with precision mixed: this WebGPU device lacks the feature "shader-f16" (its adapter does not offer it), which the f16 matmuls need; use --precision fp32',
    },
  );
  assert.throws(
    () =>
      checkPrecision(tf, "auto", "mixed", undefined, {
        action: "predict",
        fix: "--precision fp32",
        backend: "--backend webgpu",
      }),
    /^Error: Cannot predict with precision mixed: it needs the fused WebGPU engine, and this run uses the "cpu" backend; select the webgpu backend \(--backend webgpu\), or use --precision fp32$/,
  );
});
