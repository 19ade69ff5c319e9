/**
 * The avg head's weight-normalised fc3 (`model/layers.ts` `weightNorm`) on
 * the fused engine: forward and gradient, one workgroup per column.
 *
 * @module
 */
import type { KernelPlan } from "../runtime.ts";
import { readOnly, readWrite, storageBindings } from "./bindings.ts";
import { checkSize, WORKGROUP_SIZE as WG } from "./grid.ts";
import { WORKGROUP_SUM_TREE } from "./wgsl.ts";

/** Sizes of a weight-normalised linear weight. */
export interface WeightNormOptions {
  /** Input features (rows of v and w). */
  readonly in: number;
  /** Output features (columns; g and norms have this length). */
  readonly out: number;
}

function checkWeightNorm(o: WeightNormOptions): void {
  checkSize("in", o.in, 1);
  checkSize("out", o.out, 1);
}

/**
 * Weight norm forward (PyTorch `weight_norm` over dim 0 of the TF.js
 * `[in][out]` layout): `norms[j] = ‖v[:, j]‖₂` and
 * `w[i][j] = g[j] · v[i][j] / norms[j]`.
 *
 * Bindings: "g" (read, `[out]`), "v" (read, `[in][out]`), "w" (write,
 * `[in][out]`), "norms" (write, `[out]`; kept for the backward). One
 * workgroup per column, no scratch.
 *
 * @param o Sizes.
 * @returns The plan.
 */
export function weightNormForward(
  o: WeightNormOptions,
): KernelPlan<"g" | "v" | "w" | "norms"> {
  checkWeightNorm(o);
  const b = storageBindings([
    readOnly("g"),
    readOnly("v"),
    readWrite("w"),
    readWrite("norms"),
  ]);
  const code = `// weightNormForward
${b.decls}
var<workgroup> red: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let j = wid.x;
  var acc = 0.0;
  for (var i = lid.x; i < ${o.in}u; i += ${WG}u) {
    let x = v[i * ${o.out}u + j];
    acc += x * x;
  }
  red[lid.x] = acc;
${WORKGROUP_SUM_TREE}
  let norm = sqrt(red[0]);
  let scale = g[j] / norm;
  for (var i = lid.x; i < ${o.in}u; i += ${WG}u) {
    w[i * ${o.out}u + j] = v[i * ${o.out}u + j] * scale;
  }
  if (lid.x == 0u) { norms[j] = norm; }
}
`;
  return {
    steps: [{
      spec: { code, workgroups: [o.out, 1, 1], label: "weightNormForward" },
      bind: b.bind,
    }],
  };
}

/**
 * Weight norm backward, two dispatches with their own bindings (one
 * workgroup per column each, no scratch), both accumulating:
 *
 * 1. "dw" (read, `[in][out]`), "v" (read, `[in][out]`), "norms" (read,
 *    `[out]`), "dg" (read_write, `[out]`):
 *    `dg[j] += Σ_i dw[i][j]·v[i][j] / ‖v_j‖`;
 * 2. "dw", "g" (read, `[out]`), "v", "norms", "dv" (read_write, `[in][out]`):
 *    `dv[:, j] += (g_j/‖v_j‖)·(dw[:, j] − v[:, j]·(Σ_i dw[i][j]·v[i][j])/‖v_j‖²)`.
 *
 * @param o Sizes.
 * @returns The plan (dg step, then dv step).
 */
export function weightNormBackward(
  o: WeightNormOptions,
): KernelPlan<"dw" | "g" | "v" | "norms" | "dg" | "dv"> {
  checkWeightNorm(o);
  const dot = `  var acc = 0.0;
  for (var i = lid.x; i < ${o.in}u; i += ${WG}u) {
    acc += dw[i * ${o.out}u + j] * v[i * ${o.out}u + j];
  }
  red[lid.x] = acc;
${WORKGROUP_SUM_TREE}
  let dot = red[0];`;
  const prologue = `var<workgroup> red: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let j = wid.x;`;
  const dgB = storageBindings([
    readOnly("dw"),
    readOnly("v"),
    readOnly("norms"),
    readWrite("dg"),
  ]);
  const dgCode = `// weightNormBackward dg
${dgB.decls}
${prologue}
${dot}
  if (lid.x == 0u) { dg[j] += dot / norms[j]; }
}
`;
  const dvB = storageBindings([
    readOnly("dw"),
    readOnly("g"),
    readOnly("v"),
    readOnly("norms"),
    readWrite("dv"),
  ]);
  const dvCode = `// weightNormBackward dv
${dvB.decls}
${prologue}
${dot}
  let norm = norms[j];
  let scale = g[j] / norm;
  let proj = dot / (norm * norm);
  for (var i = lid.x; i < ${o.in}u; i += ${WG}u) {
    let at = i * ${o.out}u + j;
    dv[at] += scale * (dw[at] - v[at] * proj);
  }
}
`;
  return {
    steps: [
      {
        spec: {
          code: dgCode,
          workgroups: [o.out, 1, 1],
          label: "weightNormBackward.dg",
        },
        bind: dgB.bind,
      },
      {
        spec: {
          code: dvCode,
          workgroups: [o.out, 1, 1],
          label: "weightNormBackward.dv",
        },
        bind: dvB.bind,
      },
    ],
  };
}
