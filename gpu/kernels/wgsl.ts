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

/**
 * WGSL function `<name>(x: F) -> U` giving the IEEE binary16 bit pattern
 * (in the low 16 bits) of `x` rounded to nearest, ties to even, for
 * `F`/`U` = `f32`/`u32` or `vec4<f32>`/`vec4<u32>`: exactly JavaScript's
 * `Math.f16round` — subnormal halves kept, magnitudes from 65520 up to
 * ±infinity, NaN to a quiet NaN. Integer arithmetic only (WGSL leaves the
 * rounding of an `f32` → `f16` conversion and its out-of-range results to
 * the implementation), branch-free so it vectorises. The f16 casts and the
 * matmul's f16 output store through it.
 *
 * @param vec `true` for the `vec4` version.
 * @param name Function name.
 * @returns The WGSL function.
 */
export function f16BitsWgsl(vec: boolean, name: string): string {
  const F = vec ? "vec4<f32>" : "f32";
  const U = vec ? "vec4<u32>" : "u32";
  const c = (x: string) => `${U}(${x})`;
  return `fn ${name}(x: ${F}) -> ${U} {
  let b = bitcast<${U}>(x);
  let s = (b >> ${c("16u")}) & ${c("0x8000u")};
  let a = b & ${c("0x7fffffffu")};
  // normal halves (|x| >= 2^-14): rebias the exponent, round 13 bits away
  let r = a - ${c("0x38000000u")};
  let nrm = (r + ${c("0xfffu")} + ((r >> ${c("13u")}) & ${c("1u")})) >> ${
    c("13u")
  };
  // subnormal halves (2^-25 <= |x| < 2^-14): the significand shifted right
  let sh = min(${c("126u")} - (a >> ${c("23u")}), ${c("31u")});
  let m = (a & ${c("0x7fffffu")}) | ${c("0x800000u")};
  let q = m >> sh;
  let rem = m & ((${c("1u")} << sh) - ${c("1u")});
  let half = ${c("1u")} << (sh - ${c("1u")});
  let up = (rem > half) | ((rem == half) & ((q & ${c("1u")}) == ${c("1u")}));
  var h = select(q, q + ${c("1u")}, up);
  h = select(h, nrm, a >= ${c("0x38800000u")});
  h = select(h, ${c("0u")}, a < ${c("0x33000000u")});
  h = select(h, ${c("0x7c00u")}, a >= ${c("0x477ff000u")});
  h = select(h, ${c("0x7e00u")}, a > ${c("0x7f800000u")});
  return s | h;
}`;
}

/**
 * WGSL function `<name>(h: U) -> F` decoding IEEE binary16 bit patterns
 * (low 16 bits of `h`) to `f32`, exactly (subnormal halves included, so no
 * flush to zero can change them), for `U`/`F` = `u32`/`f32` or
 * `vec4<u32>`/`vec4<f32>`. Integer arithmetic and one exact scaling only,
 * so it needs no `shader-f16`.
 *
 * @param vec `true` for the `vec4` version.
 * @param name Function name.
 * @returns The WGSL function.
 */
export function f32OfF16BitsWgsl(vec: boolean, name: string): string {
  const F = vec ? "vec4<f32>" : "f32";
  const U = vec ? "vec4<u32>" : "u32";
  const c = (x: string) => `${U}(${x})`;
  return `fn ${name}(h: ${U}) -> ${F} {
  let s = (h & ${c("0x8000u")}) << ${c("16u")};
  let e = (h >> ${c("10u")}) & ${c("0x1fu")};
  let m = h & ${c("0x3ffu")};
  let nrm = ((e + ${c("112u")}) << ${c("23u")}) | (m << ${c("13u")});
  let special = ${c("0x7f800000u")} | (m << ${c("13u")});
  // subnormal: m · 2^-24, a normal f32 (exact)
  let sub = bitcast<${U}>(${F}(m) * ${F}(5.9604644775390625e-8));
  var bits = select(nrm, special, e == ${c("31u")});
  bits = select(bits, sub, e == ${c("0u")});
  return bitcast<${F}>(s | bits);
}`;
}
