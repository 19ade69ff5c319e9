/**
 * The training loss on the fused engine: label-smoothed cross-entropy summed
 * over views (`model/loss.ts`), its logits gradient and the step's metrics.
 *
 * @module
 */
import type { KernelPlan } from "../runtime.ts";
import { readOnly, readWrite, storageBindings } from "./bindings.ts";
import { checkSize, WORKGROUP_SIZE as WG } from "./grid.ts";
import { f32Literal } from "./wgsl.ts";

/** Sizes of the training loss. */
export interface CrossEntropyOptions {
  /** Logit rows: views · perView, view-major. */
  readonly rows: number;
  /** Classes (logits per row). */
  readonly classes: number;
  /** Clips per view (labels length). */
  readonly perView: number;
  /** Label smoothing ε in [0, 1]. */
  readonly smoothing: number;
}

/**
 * Label-smoothed cross-entropy summed over views of each view's batch mean
 * (`model/loss.ts`, summed as in training), its gradient and metrics.
 * Row r's label is `labels[r % perView]`; target = (1 − ε)·onehot + ε/classes.
 *
 * Bindings: "logits" (read, `[rows][classes]`), "labels" (read,
 * `array<i32>`, `[perView]`), "dlogits" (write, `[rows][classes]`:
 * (softmax − target)/perView), "metrics" (read_write, `[4]`, accumulated:
 * [0] += loss (Σ over views of the mean), [1] += correct argmax predictions
 * of the last view (first maximum wins), [2] += perView, [3] untouched).
 * One 256-thread workgroup with a fixed-order tree reduction
 * (deterministic), no scratch.
 *
 * @param o Sizes and ε.
 * @returns The plan.
 */
export function crossEntropy(
  o: CrossEntropyOptions,
): KernelPlan<"logits" | "labels" | "dlogits" | "metrics"> {
  checkSize("rows", o.rows, 1);
  checkSize("classes", o.classes, 1);
  checkSize("perView", o.perView, 1);
  if (o.rows % o.perView !== 0) {
    throw new RangeError(
      `Cannot build the cross-entropy kernel: rows ${o.rows} is not a multiple of perView ${o.perView}`,
    );
  }
  if (!(o.smoothing >= 0 && o.smoothing <= 1)) {
    throw new RangeError(
      `Cannot build the cross-entropy kernel: smoothing must be in [0, 1], got ${o.smoothing}`,
    );
  }
  const { rows, classes, perView } = o;
  const eps = o.smoothing;
  const b = storageBindings([
    readOnly("logits"),
    readOnly("labels", "i32"),
    readWrite("dlogits"),
    readWrite("metrics"),
  ]);
  const code = `// crossEntropy
${b.decls}
var<workgroup> red: array<f32, ${WG}>;
var<workgroup> hits: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_id) lid: vec3<u32>) {
  var loss = 0.0;
  var correct = 0.0;
  for (var r = lid.x; r < ${rows}u; r += ${WG}u) {
    let base = r * ${classes}u;
    let label = u32(labels[r % ${perView}u]);
    var mx = logits[base];
    var arg = 0u;
    for (var c = 1u; c < ${classes}u; c++) {
      let x = logits[base + c];
      if (x > mx) { mx = x; arg = c; }
    }
    var sum = 0.0;
    var dotT = 0.0;
    for (var c = 0u; c < ${classes}u; c++) {
      let x = logits[base + c] - mx;
      sum += exp(x);
      dotT += select(${f32Literal(eps / classes)}, ${
    f32Literal(1 - eps + eps / classes)
  }, c == label) * x;
    }
    loss += log(sum) - dotT;
    let inv = 1.0 / sum;
    for (var c = 0u; c < ${classes}u; c++) {
      let p = exp(logits[base + c] - mx) * inv;
      let t = select(${f32Literal(eps / classes)}, ${
    f32Literal(1 - eps + eps / classes)
  }, c == label);
      dlogits[base + c] = (p - t) * ${f32Literal(1 / perView)};
    }
    if (r >= ${rows - perView}u && arg == label) { correct += 1.0; }
  }
  red[lid.x] = loss;
  hits[lid.x] = correct;
  workgroupBarrier();
  for (var h = ${WG / 2}u; h > 0u; h = h >> 1u) {
    if (lid.x < h) {
      red[lid.x] += red[lid.x + h];
      hits[lid.x] += hits[lid.x + h];
    }
    workgroupBarrier();
  }
  if (lid.x == 0u) {
    metrics[0] += red[0] * ${f32Literal(1 / perView)};
    metrics[1] += hits[0];
    metrics[2] += ${f32Literal(perView)};
  }
}
`;
  return {
    steps: [{
      spec: { code, workgroups: [1, 1, 1], label: "crossEntropy" },
      bind: b.bind,
    }],
  };
}
