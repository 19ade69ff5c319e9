/**
 * WGSL text shared by the kernel generators: float literals rounded to
 * float32 exactly as the GPU will hold them, and the one erf every GELU
 * kernel (the fused matmul epilogue, the element-wise forward and backward)
 * calls.
 *
 * @module
 */
import { WORKGROUP_SIZE } from "./grid.ts";

/**
 * A WGSL float literal of `v` rounded to float32 (`Math.fround`, round to
 * nearest even): the shortest decimal that reads back as that float32, with
 * a decimal point or exponent so WGSL types it as a float (`1` → `1.0`,
 * `-0` → `-0.0`, `1e21` → `1e+21`). The literal is abstract-float WGSL, so
 * it converts to `f32` exactly wherever an `f32` is expected.
 *
 * @param v The value.
 * @returns The literal text.
 * @throws {RangeError} When `v` is not finite as a float32 (NaN, ±Infinity,
 *   or beyond ±3.4028235e38).
 */
export function f32Literal(v: number): string {
  const x = Math.fround(v);
  if (!Number.isFinite(x)) {
    throw new RangeError(
      `Cannot write ${v} as a WGSL f32 literal: it is not a finite float32; pass a value within ±3.4028235e38`,
    );
  }
  if (Object.is(x, -0)) return "-0.0";
  const s = String(x);
  return /[.e]/.test(s) ? s : `${s}.0`;
}

/**
 * WGSL function `<name>(a: t) -> t` computing erf for `t` = `f32` or
 * `vec4<f32>`: Norbert Juffa's faithfully rounded single-precision erf (max
 * error ≈ 1 ulp, ≈ 1.2e-7 absolute; both branches are evaluated and
 * `select`ed, so it vectorises). Every GELU kernel uses this text, so the
 * forward and the backward see the same erf.
 *
 * @param t The WGSL type, `"f32"` or `"vec4<f32>"`.
 * @param name The function name (default `erf_`; a module that needs both
 *   types declares two names).
 * @returns WGSL text declaring the function.
 */
export function erfWgsl(t: string, name = "erf_"): string {
  const c = (v: string) => `${t}(${v})`;
  return `fn ${name}(a: ${t}) -> ${t} {
  let t = abs(a);
  let s = a * a;
  // |a| > 0.927734375: erf = 1 - exp(poly(t)), max error 0.99527 ulp.
  var r = fma(${c("-1.72853470e-5")}, t, ${c("3.83197126e-4")});
  let u = fma(${c("-3.88396438e-3")}, t, ${c("2.42546219e-2")});
  r = fma(r, s, u);
  r = fma(r, t, ${c("-1.06777877e-1")});
  r = fma(r, t, ${c("-6.34846687e-1")});
  r = fma(r, t, ${c("-1.28717512e-1")});
  r = fma(r, t, -t);
  let big = ${c("1.0")} - exp(r);
  // |a| <= 0.927734375: odd polynomial, max error 0.98929 ulp.
  var q = ${c("-5.96761703e-4")};
  q = fma(q, s, ${c("4.99119423e-3")});
  q = fma(q, s, ${c("-2.67681349e-2")});
  q = fma(q, s, ${c("1.12819925e-1")});
  q = fma(q, s, ${c("-3.76125336e-1")});
  q = fma(q, s, ${c("1.28379166e-1")});
  q = fma(q, a, a);
  let signed = select(big, -big, a < ${c("0.0")});
  return select(q, signed, t > ${c("0.927734375")});
}`;
}

/**
 * WGSL statements summing `red[lid.x]` over a 256-thread workgroup into
 * `red[0]` (a barrier first, then a halving tree; needs `red` and `lid`).
 */
export const WORKGROUP_SUM_TREE = `  workgroupBarrier();
  for (var h = ${WORKGROUP_SIZE / 2}u; h > 0u; h = h >> 1u) {
    if (lid.x < h) { red[lid.x] += red[lid.x + h]; }
    workgroupBarrier();
  }`;
