/**
 * The TTDA objective on the fused engine (issue 14): AMAuT's unsupervised
 * test-time adaptation loss `α·NM + β·EN + γ·GEN` of each view's softmax
 * (`model/ttda_loss.ts`, reference §9), summed over the views, its gradient
 * with respect to the logits and the step's loss counter.
 *
 * @module
 */
import type { KernelPlan } from "../runtime.ts";
import { readOnly, readWrite, storageBindings } from "./bindings.ts";
import { checkSize, WORKGROUP_SIZE as WG } from "./grid.ts";
import { f32Literal } from "./wgsl.ts";

/** The ε inside EN's logarithm (as `ENTROPY_EPSILON` of `model/ttda_loss.ts`). */
const EPS = 1e-6;

/** Scratch region of the per-view class norms `sqrt(Σ_b p_bc²)`, `[views][classes]`. */
export const TTDA_NORMS = "ttdaNorms";

/** Sizes and rates of the TTDA loss kernel. */
export interface TtdaLossKernelOptions {
  /** Logit rows: views · perView, view-major. */
  readonly rows: number;
  /** Classes (logits per row). */
  readonly classes: number;
  /** Clips per view (the batch B of each view's terms). */
  readonly perView: number;
  /** α, weight of NM (≥ 0; 0 leaves the term out of the kernel). */
  readonly alpha: number;
  /** β, weight of EN (≥ 0; 0 leaves it out). */
  readonly beta: number;
  /** γ, weight of GEN (≥ 0; 0 leaves it out). */
  readonly gamma: number;
  /** q of GEN (finite, ≠ 1; unused when γ = 0). */
  readonly q: number;
}

/**
 * The TTDA loss summed over views of `α·NM + β·EN + γ·GEN` on each view's
 * `softmax(logits)`, with `NM = −(1/n) Σ_c sqrt(Σ_b p_bc²)`,
 * `EN = (1/B) Σ_b −Σ_c p_bc·log(p_bc + 1e−6)`,
 * `GEN = (1/B) Σ_b (1 − Σ_c p_bc^q)/(q − 1)` (B = perView, n = classes), and
 * its logits gradient `dz_bc = h_bc − p_bc·Σ_c' h_bc'` where `h = p·∂L/∂p`.
 *
 * Bindings: "logits" (read, `[rows][classes]`), "dlogits" (write,
 * `[rows][classes]`; holds the probabilities between the kernel's phases),
 * "metrics" (read_write, `[4]`, accumulated: [0] += the loss, [2] +=
 * perView; [1] and [3] untouched), scratch {@linkcode TTDA_NORMS} (when
 * α > 0). One 256-thread workgroup in three phases (softmax and the row
 * terms; the class norms; the gradient) joined by storage barriers, with a
 * fixed-order tree reduction of the loss (deterministic).
 *
 * @param o Sizes and rates.
 * @returns The plan.
 * @throws {RangeError} On bad sizes, a negative or non-finite rate, or q = 1 with γ > 0.
 */
export function ttdaLossKernel(
  o: TtdaLossKernelOptions,
): KernelPlan<"logits" | "dlogits" | "metrics"> {
  checkSize("rows", o.rows, 1);
  checkSize("classes", o.classes, 1);
  checkSize("perView", o.perView, 1);
  if (o.rows % o.perView !== 0) {
    throw new RangeError(
      `Cannot build the TTDA loss kernel: rows ${o.rows} is not a multiple of perView ${o.perView}`,
    );
  }
  for (
    const [what, v] of [["alpha", o.alpha], ["beta", o.beta], [
      "gamma",
      o.gamma,
    ]] as const
  ) {
    if (!Number.isFinite(v) || v < 0) {
      throw new RangeError(
        `Cannot build the TTDA loss kernel: ${what} must be a finite number ≥ 0, got ${v}`,
      );
    }
  }
  if (o.gamma > 0 && (!Number.isFinite(o.q) || o.q === 1)) {
    throw new RangeError(
      `Cannot build the TTDA loss kernel: q must be a finite number other than 1, got ${o.q}`,
    );
  }
  const { rows, classes, perView } = o;
  const views = rows / perView;
  const nm = o.alpha > 0;
  const en = o.beta > 0;
  const gen = o.gamma > 0;
  const b = storageBindings([
    readOnly("logits"),
    readWrite("dlogits"),
    readWrite("metrics"),
    nm && readWrite(TTDA_NORMS),
  ]);
  const lit = f32Literal;
  // p^q as exp(q·log p): 0 for p = 0 (WGSL's pow is undefined there).
  const powQ = (p: string) =>
    `select(exp(${lit(o.q)} * log(${p})), 0.0, ${p} <= 0.0)`;
  const rowTerms = [
    en ? `rowLoss -= ${lit(o.beta / perView)} * p * log(p + ${lit(EPS)});` : "",
    gen
      ? `rowLoss -= ${lit(o.gamma / perView / (o.q - 1))} * ${powQ("p")};`
      : "",
  ].filter(Boolean).join("\n      ");
  // GEN's constant part, γ/(q − 1) per view, added once at the end.
  const genConstant = gen ? lit(views * (o.gamma / (o.q - 1))) : "";
  const hTerms = [
    nm
      ? `h -= ${
        lit(o.alpha / classes)
      } * p * p / ${TTDA_NORMS}[v * ${classes}u + c];`
      : "",
    en
      ? `h -= ${lit(o.beta / perView)} * (p * log(p + ${
        lit(EPS)
      }) + p * p / (p + ${lit(EPS)}));`
      : "",
    gen
      ? `h -= ${lit((o.gamma / perView) * (o.q / (o.q - 1)))} * ${powQ("p")};`
      : "",
  ].filter(Boolean).join("\n      ");
  const code = `// ttdaLoss
${b.decls}
var<workgroup> red: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_id) lid: vec3<u32>) {
  var loss = 0.0;
  // Phase 1: probabilities (into dlogits) and the row terms EN and GEN.
  for (var r = lid.x; r < ${rows}u; r += ${WG}u) {
    let base = r * ${classes}u;
    var mx = logits[base];
    for (var c = 1u; c < ${classes}u; c++) { mx = max(mx, logits[base + c]); }
    var sum = 0.0;
    for (var c = 0u; c < ${classes}u; c++) { sum += exp(logits[base + c] - mx); }
    let inv = 1.0 / sum;
    var rowLoss = 0.0;
    for (var c = 0u; c < ${classes}u; c++) {
      let p = exp(logits[base + c] - mx) * inv;
      dlogits[base + c] = p;
      ${rowTerms}
    }
    loss += rowLoss;
  }
  storageBarrier();
${
    nm
      ? `  // Phase 2: each view's class norms sqrt(Σ_b p_bc²) and the NM term.
  for (var vc = lid.x; vc < ${views * classes}u; vc += ${WG}u) {
    let v = vc / ${classes}u;
    let c = vc % ${classes}u;
    var s = 0.0;
    for (var i = 0u; i < ${perView}u; i++) {
      let p = dlogits[(v * ${perView}u + i) * ${classes}u + c];
      s += p * p;
    }
    let norm = sqrt(s);
    ${TTDA_NORMS}[vc] = norm;
    loss -= ${lit(o.alpha / classes)} * norm;
  }
  storageBarrier();
`
      : ""
  }  // Phase 3: dz = h − p·Σh with h = p·∂L/∂p.
  for (var r = lid.x; r < ${rows}u; r += ${WG}u) {
    let base = r * ${classes}u;
    let v = r / ${perView}u;
    var hs = 0.0;
    for (var c = 0u; c < ${classes}u; c++) {
      let p = dlogits[base + c];
      var h = 0.0;
      ${hTerms}
      hs += h;
    }
    for (var c = 0u; c < ${classes}u; c++) {
      let p = dlogits[base + c];
      var h = 0.0;
      ${hTerms}
      dlogits[base + c] = h - p * hs;
    }
    _ = v;
  }
  red[lid.x] = loss;
  workgroupBarrier();
  for (var k = ${WG / 2}u; k > 0u; k = k >> 1u) {
    if (lid.x < k) { red[lid.x] += red[lid.x + k]; }
    workgroupBarrier();
  }
  if (lid.x == 0u) {
    metrics[0] += red[0]${gen ? ` + ${genConstant}` : ""};
    metrics[2] += ${lit(perView)};
  }
}
`;
  const steps = [{
    spec: {
      code,
      workgroups: [1, 1, 1] as [number, number, number],
      label: "ttdaLoss",
    },
    bind: b.bind,
  }];
  return nm ? { steps, scratch: { [TTDA_NORMS]: views * classes } } : { steps };
}
