/**
 * Precision casts of the fused WebGPU engine for mixed precision (issue
 * 18): f32 → f16 (weights cast once per step for the f16-operand matmuls
 * of `matmul.ts`) and f16 → f32.
 *
 * An f16 tensor of `n` elements is stored as IEEE binary16 halves, two per
 * 4-byte word, element `2w` in the low half of word `w` (the layout of a
 * WGSL `array<f16>` and of a JavaScript `Float16Array`); its region holds
 * {@linkcode halfWords}`(n)` words. These kernels bind the halves as
 * `u32` words and convert with integer arithmetic (`wgsl.ts`
 * `f16BitsWgsl`, `f32OfF16BitsWgsl`): rounding is to nearest, ties to
 * even, exactly `Math.f16round` (overflow to ±infinity, subnormals kept),
 * on any adapter, and they need no `shader-f16` feature. When `n` is a
 * multiple of 8 a thread converts 8 elements (two `vec4<f32>`, one
 * `vec4<u32>` of halves), else 2 (one word; the upper half of the last
 * word of an odd `n` is written as zero by the f32 → f16 cast).
 *
 * @module
 */
import type { KernelPlan } from "../runtime.ts";
import { readOnly, readWrite, storageBindings } from "./bindings.ts";
import { checkSize, itemMainWgsl } from "./grid.ts";
import { f16BitsWgsl, f32OfF16BitsWgsl } from "./wgsl.ts";

/** Options of the casts. */
export interface CastOptions {
  /** Element count (≥ 1). */
  readonly n: number;
}

/**
 * 4-byte words of a region holding `n` f16 elements (what
 * `Runtime.alloc` takes for it).
 *
 * @param n Element count.
 * @returns `ceil(n / 2)`.
 */
export const halfWords = (n: number): number => Math.ceil(n / 2);

/**
 * Host side: the words of an f16 binding holding `values` (what
 * `Runtime.write` uploads): a `Float16Array`'s halves as they are (bit for
 * bit, NaN payloads included), other numbers rounded like `Math.f16round`;
 * the upper half of the last word of an odd count is zero.
 *
 * @param values Element values.
 * @returns {@linkcode halfWords}`(values.length)` words.
 */
export function toHalfWords(
  values: Float16Array | ArrayLike<number>,
): Uint32Array {
  const h = values instanceof Float16Array ? values : Float16Array.from(
    values as ArrayLike<number>,
  );
  const w = new Uint32Array(halfWords(h.length));
  new Uint16Array(w.buffer).set(
    new Uint16Array(h.buffer, h.byteOffset, h.length),
  );
  return w;
}

/**
 * Host side: the first `n` halves of an f16 binding's words (read back
 * with `Runtime.read`) as a `Float16Array` view (no copy).
 *
 * @param words The words.
 * @param n Element count (at most twice the word count).
 * @returns The halves.
 * @throws {RangeError} When `n` exceeds the halves the words hold.
 */
export function halvesOf(
  words: Float32Array | Uint32Array,
  n: number,
): Float16Array {
  if (n > 2 * words.length) {
    throw new RangeError(
      `Cannot read ${n} halves from ${words.length} words; read the whole f16 region (halfWords(n) words)`,
    );
  }
  return new Float16Array(words.buffer, words.byteOffset, n);
}

/**
 * Plans `y = f16(x)`, rounding to nearest even like `Math.f16round`.
 *
 * Bindings: "x" (n f32), "y" (n halves: {@linkcode halfWords}`(n)` words).
 *
 * @param o Element count.
 * @returns The one-step plan.
 * @throws {RangeError} When `n` is not a positive integer.
 */
export function castToF16(o: CastOptions): KernelPlan<"x" | "y"> {
  checkSize("castToF16 n", o.n);
  const { n } = o;
  const vec = n % 8 === 0;
  const items = vec ? n / 8 : halfWords(n);
  const { workgroups, main } = itemMainWgsl(items);
  const label = `cast f32>f16 n${n}`;
  const { decls, bind } = storageBindings([
    readOnly("x", vec ? "vec4<f32>" : "f32"),
    readWrite("y", vec ? "vec4<u32>" : "u32"),
  ]);
  const body = vec
    ? `  let lo = f16_bits(x[2u * i]);
  let hi = f16_bits(x[2u * i + 1u]);
  y[i] = vec4<u32>(lo.x | (lo.y << 16u), lo.z | (lo.w << 16u), hi.x | (hi.y << 16u), hi.z | (hi.w << 16u));`
    : `  let e = 2u * i;
  var w = f16_bits(x[e]);
  if (e + 1u < ${n}u) {
    w = w | (f16_bits(x[e + 1u]) << 16u);
  }
  y[i] = w;`;
  const code = `// ${label}
${decls}
${f16BitsWgsl(vec, "f16_bits")}
${main}
${body}
}
`;
  return { steps: [{ spec: { code, workgroups, label }, bind }] };
}

/**
 * Plans `y = f32(x)` (exact).
 *
 * Bindings: "x" (n halves: {@linkcode halfWords}`(n)` words), "y" (n f32).
 *
 * @param o Element count.
 * @returns The one-step plan.
 * @throws {RangeError} When `n` is not a positive integer.
 */
export function castToF32(o: CastOptions): KernelPlan<"x" | "y"> {
  checkSize("castToF32 n", o.n);
  const { n } = o;
  const vec = n % 8 === 0;
  const items = vec ? n / 8 : halfWords(n);
  const { workgroups, main } = itemMainWgsl(items);
  const label = `cast f16>f32 n${n}`;
  const { decls, bind } = storageBindings([
    readOnly("x", vec ? "vec4<u32>" : "u32"),
    readWrite("y", vec ? "vec4<f32>" : "f32"),
  ]);
  const body = vec
    ? `  let w = x[i];
  let m = vec4<u32>(0xffffu);
  y[2u * i] = f32_of(vec4<u32>(w.x, w.x >> 16u, w.y, w.y >> 16u) & m);
  y[2u * i + 1u] = f32_of(vec4<u32>(w.z, w.z >> 16u, w.w, w.w >> 16u) & m);`
    : `  let w = x[i];
  let e = 2u * i;
  y[e] = f32_of(w & 0xffffu);
  if (e + 1u < ${n}u) {
    y[e + 1u] = f32_of(w >> 16u);
  }`;
  const code = `// ${label}
${decls}
${f32OfF16BitsWgsl(vec, "f32_of")}
${main}
${body}
}
`;
  return { steps: [{ spec: { code, workgroups, label }, bind }] };
}
