/**
 * Folds an eval-mode BatchNorm into the conv before it, for the fused
 * engine's eval graphs: with running statistics BatchNorm is the per-channel
 * affine map `x·s + (β − μ·s)`, `s = γ / sqrt(σ² + eps)`, so scaling the
 * conv kernel's output columns by `s` and adding `β − μ·s` as a bias gives
 * the same output in one matmul (whose epilogue also adds the residual and
 * applies the ReLU). Runs once per weight version, after weight
 * standardisation.
 *
 * @module
 */
import type { KernelPlan } from "../runtime.ts";
import { kernelStep, readOnly, readWrite } from "./bindings.ts";
import { checkSize, itemMainWgsl } from "./grid.ts";
import { f32Literal } from "./wgsl.ts";

/**
 * Scales kernel `w` (`[rows][cols]`, one column per output channel) in
 * place by `s[c] = γ[c] / sqrt(var[c] + eps)` and writes the bias
 * `β[c] − mean[c]·s[c]`. Bindings: "w" (read_write, `[rows][cols]`), "gb"
 * (read, γ then β, 2·cols), "running" (read, mean then variance, 2·cols),
 * "bias" (out, cols).
 *
 * @param o `rows`, `cols` (elements) and the BatchNorm's `eps`.
 */
export function foldBatchNorm(
  o: { rows: number; cols: number; eps: number },
): KernelPlan<"w" | "gb" | "running" | "bias"> {
  checkSize("foldBatchNorm rows", o.rows);
  checkSize("foldBatchNorm cols", o.cols);
  if (!(o.eps > 0)) {
    throw new RangeError(
      `Cannot build kernel foldBatchNorm: eps must be > 0, got ${o.eps}`,
    );
  }
  const n = o.rows * o.cols;
  const { workgroups, main } = itemMainWgsl(n);
  const step = kernelStep(
    `foldBatchNorm ${o.rows}x${o.cols}`,
    workgroups,
    [readWrite("w"), readOnly("gb"), readOnly("running"), readWrite("bias")],
    (decls) =>
      `${decls}
${main}
  let c = i % ${o.cols}u;
  let s = gb[c] / sqrt(running[${o.cols}u + c] + ${f32Literal(o.eps)});
  w[i] = w[i] * s;
  if (i < ${o.cols}u) { bias[c] = gb[${o.cols}u + c] - running[c] * s; }
}`,
  );
  return { steps: [step] };
}
