/**
 * General matrix multiply for the fused WebGPU engine, fp32 or with f16
 * operands and f32 accumulation:
 * `C = alpha·op(A)·op(B)` with optional transposes, row strides, two-level
 * batch strides (attention heads), and a fused epilogue (bias, residual,
 * accumulate, exact-erf GELU with the pre-activation kept).
 *
 * The WGSL is generated per shape with every size baked in: a workgroup
 * computes a `BM×BN` tile of C, each of its threads a block of 4-row ×
 * 4-column groups held in separate `vec4` accumulator variables, with the
 * K loop fully unrolled over a `BK = 16` slice staged in workgroup memory
 * (both tiles stored k-major, so the inner loop reads one `vec4` of A and
 * one of B per 4×4 outer product); in long K loops the next slice is
 * prefetched into registers while the current one is multiplied
 * (webgpu-notes §7). With two stages (wide products with short K slices
 * by default, measured faster there on an H100; `stages` overrides) the A
 * and B slices are double-buffered in workgroup memory instead: every iteration prefetches the next slice into
 * registers, multiplies the current buffer and stores the registers into
 * the other one, so one barrier per slice suffices instead of two (the
 * buffer is picked by an offset computed once per slice). This doubles the
 * workgroup memory (`2·(BM + BN)·BK·4` bytes, 32 KiB for 128×128); a tile
 * that would exceed {@linkcode MAX_WORKGROUP_BYTES} is refused. Global loads
 * and C stores use `vec4` where the layout allows it (contiguous extent,
 * leading dimension and batch strides multiples of 4); edges are
 * bounds-checked only along the dimensions that are not tile multiples.
 *
 * The tile (128×128, 128×64, 64×128, 64×64 or 32×32) and a split of K are
 * chosen from the shape by a small H100 cost model; when the split is used
 * the partial products go to a scratch region and a second dispatch sums
 * them and applies the epilogue.
 *
 * Mixed precision (issue 18; options in `matmul_plan.ts`): with
 * `operands: "f16"` A and B are stored as IEEE halves (`vec4<f16>` loads
 * where the layout allows, scalar loads at the edges, every layout option
 * as for f32), staged in workgroup memory as f16 — half the bytes, so a
 * 32-deep K slice (`bk: 32`) or two stages fit where f32 would not, and the
 * plan counts 2 bytes per element when it checks tiles against
 * {@linkcode MAX_WORKGROUP_BYTES} — and widened to f32 as they leave
 * workgroup memory, so the accumulation is the f32 kernel's (`staging:
 * "f32"` widens them once as they are staged instead, into f32 tiles).
 * `packedK`
 * (2, 4 or 8) instead multiplies that many consecutive k in `vec4<f16>`
 * fma chains and adds each chain's result to the f32 accumulators (2× the
 * arithmetic rate on an H100's CUDA cores, about `packedK·2⁻¹¹` relative
 * error per chain). The epilogue stays f32; `outF16` stores C, the
 * residual "r" and "pre" as halves rounded to nearest even exactly as
 * `Math.f16round` (integer rounding, `wgsl.ts` `f16BitsWgsl`; overflow to
 * ±infinity, so a loss scaler sees it). Split-K keeps an f32 scratch.
 * Kernels using f16 start with `enable f16;` and need the device's
 * `shader-f16` feature (`requestEngineDevice` asks for it; the runtime
 * refuses such a kernel at record time on a device without it). The f32
 * kernels are unchanged by these options, byte for byte (a test pins
 * their text). Weights are cast with `cast.ts`.
 *
 * @module
 */
import type { KernelPlan, KernelStep } from "../runtime.ts";
import {
  readOnly,
  readWrite,
  type StorageBinding,
  storageBindings,
} from "./bindings.ts";
import { grid2d } from "./grid.ts";
import {
  BK,
  cdiv,
  choose,
  type Layout,
  type MatmulOptions,
  PREFETCH_MIN_TILES,
  resolve,
  type TileConfig,
  u,
} from "./matmul_plan.ts";
import {
  erfWgsl,
  f16BitsWgsl,
  f32Literal as f,
  f32OfF16BitsWgsl,
} from "./wgsl.ts";

export {
  chosenStages,
  type MatmulOptions,
  MAX_WORKGROUP_BYTES,
} from "./matmul_plan.ts";

/**
 * WGSL of GELU for f32 (`gelu_1`) and vec4 (`gelu_4`) on the shared erf of
 * `wgsl.ts` (`erf_1`, `erf_4`; ≈ 1 ulp).
 */
function geluWgsl(): string {
  const gelu = (T: string, s: string) =>
    `${erfWgsl(T, `erf_${s}`)}
fn gelu_${s}(x: ${T}) -> ${T} {
  return 0.5 * x * (1.0 + erf_${s}(x * 0.7071067811865476));
}`;
  return `\n${gelu("f32", "1")}\n${gelu("vec4<f32>", "4")}`;
}

/**
 * WGSL of the f16 stores: `to_f16_1`/`to_f16_4` round f32 to the nearest
 * even half exactly like `Math.f16round` (integer arithmetic, `wgsl.ts`
 * `f16BitsWgsl`; overflow to ±inf), then convert the rounded value, which
 * an f16 holds exactly, to f16 (naga cannot bitcast to f16 vectors).
 */
function toF16Wgsl(): string {
  return `
${f16BitsWgsl(false, "f16_bits_1")}
${f16BitsWgsl(true, "f16_bits_4")}
${f32OfF16BitsWgsl(false, "f16_value_1")}
${f32OfF16BitsWgsl(true, "f16_value_4")}
fn to_f16_1(x: f32) -> f16 {
  return f16(f16_value_1(f16_bits_1(x)));
}
fn to_f16_4(x: vec4<f32>) -> vec4<f16> {
  return vec4<f16>(f16_value_4(f16_bits_4(x)));
}`;
}

/** One binding of a matmul kernel, `vec4` when `vec`, of f16 when `half`. */
const binding = (
  name: string,
  vec: boolean,
  write: boolean,
  half = false,
): StorageBinding =>
  (write ? readWrite : readOnly)(
    name,
    half ? (vec ? "vec4<f16>" : "f16") : vec ? "vec4<f32>" : "f32",
  );

/** Binding of operand "a" or "b": f16 ones may also be read in pairs. */
const operandBinding = (
  name: string,
  vec: boolean,
  pair: boolean,
  half: boolean,
): StorageBinding =>
  pair ? readOnly(name, "vec2<f16>") : binding(name, vec, false, half);

/**
 * Epilogue code storing one unit (a vec4 when `vec`, else a scalar) of the
 * finished sum `acc` to C at index `ci` (in units of the C binding), for
 * column `col` (first column of the unit).
 */
function epilogue(
  L: Layout,
  vec: boolean,
  acc: string,
  ci: string,
  col: string,
  ind: string,
): string {
  const T = vec ? "vec4<f32>" : "f32";
  // f16 outputs: reads of c and r widen to f32, stores round to f16
  const rd = (x: string) => L.outF16 ? `${T}(${x})` : x;
  const wr = (x: string) => L.outF16 ? `to_f16_${vec ? "4" : "1"}(${x})` : x;
  const lines: string[] = [];
  let v = L.alpha === 1 ? acc : `${f(L.alpha)} * ${acc}`;
  if (L.bias) {
    v += vec
      ? ` + vec4<f32>(bias[${col}], bias[${col} + 1u], bias[${col} + 2u], bias[${col} + 3u])`
      : ` + bias[${col}]`;
  }
  if (L.residual) v = `${rd(`r[${ci}]`)} + ${v}`;
  if (L.relu) v = `max(${v}, ${T}(0.0))`;
  lines.push(`let v: ${T} = ${v};`);
  if (L.gelu) {
    if (L.pre) lines.push(`pre[${ci}] = ${wr("v")};`);
    lines.push(`c[${ci}] = ${wr(`gelu_${vec ? "4" : "1"}(v)`)};`);
  } else if (L.accumulate) {
    lines.push(`c[${ci}] = ${wr(`${rd(`c[${ci}]`)} + v`)};`);
  } else {
    lines.push(`c[${ci}] = ${wr("v")};`);
  }
  return lines.map((l) => ind + l).join("\n");
}

/** Bindings of a plan's final (epilogue) step after the operands. */
function epilogueBindings(L: Layout): (StorageBinding | false)[] {
  return [
    L.bias && binding("bias", false, false),
    L.residual && binding("r", L.vecC, false, L.outF16),
    binding("c", L.vecC, true, L.outF16),
    L.pre && binding("pre", L.vecC, true, L.outF16),
  ];
}

/** Operand offset expression `base + zo*s0 + zi*s1` (elements). */
function batchOffset(
  L: Layout,
  s: readonly [number, number],
  base: number,
): string {
  const parts: string[] = base ? [u(base)] : [];
  if (L.batch / L.bi > 1 && s[0] !== 0) parts.push(`zo * ${u(s[0])}`);
  if (L.bi > 1 && s[1] !== 0) parts.push(`zi * ${u(s[1])}`);
  return parts.length ? parts.join(" + ") : "0u";
}

/**
 * Code loading one operand's tile slice into prefetch registers `p{X}{i}`
 * (vec4 each) and storing them into workgroup memory `As`/`Bs` at a vec4
 * offset (`store(off)`: `off` is "" or a WGSL term ending in " + ").
 */
function operandCode(
  X: "a" | "b",
  L: Layout,
  t: TileConfig,
  kChecked: boolean,
): {
  setup: string;
  load: string;
  store: (off: string) => string;
  regs: number;
} {
  const nt = t.wx * t.wy;
  const isA = X === "a";
  const D = isA ? t.bm : t.bn; // tile extent along m (A) or n (B)
  const MN = isA ? L.m : L.n;
  const ld = isA ? L.lda : L.ldb;
  const vec = isA ? L.vecA : L.vecB;
  const pair = isA ? L.pairA : L.pairB;
  const contigK = isA ? !L.transA : L.transB; // stored rows run along k
  const mnChecked = MN % D !== 0;
  const origin = isA ? "row0" : "col0";
  const S = isA ? "As" : "Bs";
  const bk = L.bk;
  const E = L.f16 ? "f16" : "f32";
  // f16 registers staged in f32 tiles (`staging: "f32"`) widen on the store
  const widen = (x: string, vec4: boolean) =>
    L.f16 && !L.stage16 ? (vec4 ? `vec4<f32>(${x})` : `f32(${x})`) : x;
  const units = D * bk / 4;
  const per = units / nt;
  const setup: string[] = [];
  const load: string[] = [];
  const store: string[] = [];
  for (let p = 0; p < per; p++) {
    const uu = `(tid + ${u(p * nt)})`;
    const R = `p${X}${p}`;
    if (!contigK) {
      // stored [k][mn]: unit = 4 consecutive mn at one kk; no transpose
      const q = D / 4;
      setup.push(`let ${X}k${p} = ${uu} / ${u(q)};`);
      setup.push(`let ${X}d${p} = (${uu} % ${u(q)}) * 4u;`);
      setup.push(
        `let ${X}i${p} = off${X} + ${X}k${p} * ${
          u(ld)
        } + ${origin} + ${X}d${p};`,
      );
      const idx = `${X}i${p} + KV * ${u(ld)}`;
      const kOk = kChecked ? `KV + ${X}k${p} < ${u(L.k)}` : "";
      const mnOk = (j: number) =>
        mnChecked ? `${origin} + ${X}d${p} + ${u(j)} < ${u(MN)}` : "";
      load.push(loadUnit(X, R, idx, vec, kOk, mnOk, E, pair));
      store.push(
        `${S}[OFF${X}k${p} * ${u(q)} + ${X}d${p} / 4u] = ${widen(R, true)};`,
      );
    } else {
      // stored [mn][k]: unit = 4 consecutive kk of one mn row; transposed store
      setup.push(`let ${X}r${p} = ${uu} / ${u(bk / 4)};`);
      setup.push(`let ${X}k${p} = (${uu} % ${u(bk / 4)}) * 4u;`);
      setup.push(
        `let ${X}i${p} = off${X} + (${origin} + ${X}r${p}) * ${
          u(ld)
        } + ${X}k${p};`,
      );
      const idx = `${X}i${p} + KV`;
      const rowOk = mnChecked ? `${origin} + ${X}r${p} < ${u(MN)}` : "";
      const kOk = (j: number) =>
        kChecked ? `KV + ${X}k${p} + ${u(j)} < ${u(L.k)}` : "";
      load.push(loadUnit(X, R, idx, vec, rowOk, kOk, E, pair));
      const q = D / 4;
      for (let j = 0; j < 4; j++) {
        store.push(
          `${S}[OFF(${X}k${p} + ${u(j)}) * ${
            u(q)
          } + ${X}r${p} / 4u][${X}r${p} % 4u] = ${
            widen(`${R}.${"xyzw"[j]}`, false)
          };`,
        );
      }
    }
  }
  return {
    setup: setup.join("\n  "),
    load: load.join("\n"),
    store: (off: string) => store.join("\n      ").replaceAll("OFF", off),
    regs: per,
  };
}

/**
 * Loads 4 consecutive stored elements starting at element index `idx` into
 * register `R` (a `vec4<E>`), zero where `all` (a condition for the whole
 * unit) or `each(j)` (one per element) fails; empty conditions are always
 * true. `pair`: the binding is `array<vec2<E>>` (an even contiguous extent,
 * so each pair is wholly in or out).
 */
function loadUnit(
  X: string,
  R: string,
  idx: string,
  vec: boolean,
  all: string,
  each: (j: number) => string,
  E: "f32" | "f16",
  pair: boolean,
): string {
  const ind = "      ";
  const wrap = (cond: string, body: string) =>
    cond ? `if (${cond}) { ${body} }` : body;
  if (pair) {
    const [c0, c2] = [0, 2].map((j) =>
      [all, each(j)].filter((c) => c).join(" && ")
    );
    const e = `let e = (${idx}) / 2u;`;
    if (!c0 && !c2) {
      return `${ind}{ ${e} ${R} = vec4<${E}>(${X}[e], ${X}[e + 1u]); }`;
    }
    return [
      `${ind}{`,
      `${ind}  ${e}`,
      `${ind}  var lo = vec2<${E}>(0.0);`,
      `${ind}  var hi = vec2<${E}>(0.0);`,
      `${ind}  ${wrap(c0, `lo = ${X}[e];`)}`,
      `${ind}  ${wrap(c2, `hi = ${X}[e + 1u];`)}`,
      `${ind}  ${R} = vec4<${E}>(lo, hi);`,
      `${ind}}`,
    ].join("\n");
  }
  if (vec) {
    // contiguous extent is a multiple of 4: the unit is wholly in or out
    const conds = [all, each(0)].filter((c) => c).join(" && ");
    const body = `${R} = ${X}[(${idx}) / 4u];`;
    return conds
      ? `${ind}${R} = vec4<${E}>(0.0);\n${ind}${wrap(conds, body)}`
      : `${ind}${body}`;
  }
  const anyEach = [0, 1, 2, 3].some((j) => each(j));
  if (!anyEach) {
    const body =
      `let e = ${idx}; ${R} = vec4<${E}>(${X}[e], ${X}[e + 1u], ${X}[e + 2u], ${X}[e + 3u]);`;
    return all
      ? `${ind}${R} = vec4<${E}>(0.0);\n${ind}if (${all}) { ${body} }`
      : `${ind}{ ${body} }`;
  }
  const parts = [0, 1, 2, 3].map((j) =>
    `${ind}  ${wrap(each(j), `${R}.${"xyzw"[j]} = ${X}[e + ${u(j)}];`)}`
  );
  const inner = `${ind}  let e = ${idx};\n${parts.join("\n")}`;
  return `${ind}${R} = vec4<${E}>(0.0);\n` +
    (all
      ? `${ind}if (${all}) {\n${inner}\n${ind}}`
      : `${ind}{\n${inner}\n${ind}}`);
}

/** Label suffix of the operand options (empty for the f32 defaults). */
const precisionLabel = (L: Layout): string =>
  `${L.f16 ? " f16" : ""}${L.f16 && !L.stage16 ? " sf32" : ""}${
    L.packedK ? ` p${L.packedK}` : ""
  }${L.bk !== BK ? ` bk${L.bk}` : ""}`;

/**
 * Multiply-accumulate of one K slice with packed f16 products, fully
 * unrolled: per group of `packedK` consecutive k, each 4×4 block of
 * products is summed by a chain of `vec4<f16>` fmas and the chain's
 * result is widened and added to the f32 accumulator. `ra`/`rb`: the
 * thread's vec4 index in `As`/`Bs`.
 */
function multiplyPacked(
  L: Layout,
  t: TileConfig,
  ra: string,
  rb: string,
): string {
  const gm = t.bm / t.wy / 4;
  const gn = t.bn / t.wx / 4;
  const P = L.packedK;
  const blocks: string[] = [];
  for (let k0 = 0; k0 < L.bk; k0 += P) {
    const body: string[] = [];
    for (let j = 0; j < P; j++) {
      const kk = k0 + j;
      for (let g = 0; g < gm; g++) {
        body.push(
          `let a${g}_${j} = As[${u(kk * t.bm / 4 + g * t.wy)} + ${ra}];`,
        );
      }
      for (let h = 0; h < gn; h++) {
        body.push(
          `let b${h}_${j} = Bs[${u(kk * t.bn / 4 + h * t.wx)} + ${rb}];`,
        );
      }
    }
    for (let g = 0; g < gm; g++) {
      for (let q = 0; q < 4; q++) {
        const x = "xyzw"[q];
        for (let h = 0; h < gn; h++) {
          let e = `a${g}_0.${x} * b${h}_0`;
          for (let j = 1; j < P; j++) {
            e = `fma(vec4<f16>(a${g}_${j}.${x}), b${h}_${j}, ${e})`;
          }
          const c = `c${g}_${q}_${h}`;
          body.push(`${c} = ${c} + vec4<f32>(${e});`);
        }
      }
    }
    blocks.push(`    {\n      ${body.join("\n      ")}\n    }`);
  }
  return blocks.join("\n");
}

/**
 * The main (tiled) kernel. With `split > 1` it writes raw partial sums to
 * "splitk"; with `stages` 2 the K slices are double-buffered.
 */
function mainKernel(
  L: Layout,
  t: TileConfig,
  chunk: number,
  split: number,
  stages: 1 | 2,
): KernelStep {
  const { m, n, k } = L;
  const gm = t.bm / t.wy / 4; // vec4 groups per thread
  const gn = t.bn / t.wx / 4;
  const bk = L.bk;
  const E = L.f16 ? "f16" : "f32";
  const kChecked = k % bk !== 0;
  const A = operandCode("a", L, t, kChecked);
  const B = operandCode("b", L, t, kChecked);
  const splitMode = split > 1;
  const lines: string[] = [];
  const label = `matmul ${t.bm}x${t.bn}${
    stages === 2 ? " s2" : ""
  } m${m} n${n} k${k}${L.transA ? " tA" : ""}${L.transB ? " tB" : ""}${
    L.batch > 1 ? ` b${L.batch}` : ""
  }${splitMode ? ` split${split}` : ""}${L.relu ? " relu" : ""}${
    precisionLabel(L)
  }${!splitMode && L.outF16 ? " >f16" : ""}`;
  lines.push(`// ${label}`);
  const outF16 = !splitMode && L.outF16;
  if (L.f16 || outF16) lines.push("enable f16;");
  const vecOut = splitMode ? n % 4 === 0 : L.vecC;
  const { decls, bind } = storageBindings([
    operandBinding("a", L.vecA, L.pairA, L.f16),
    operandBinding("b", L.vecB, L.pairB, L.f16),
    ...(splitMode ? [binding("splitk", vecOut, true)] : epilogueBindings(L)),
  ]);
  lines.push(decls);
  if (!splitMode && L.gelu) lines.push(geluWgsl());
  if (outF16) lines.push(toF16Wgsl());
  const unitsA = t.bm * bk / 4; // vec4s of one K-slice buffer of A
  const unitsB = t.bn * bk / 4;
  const S = L.stage16 ? "f16" : "f32"; // workgroup tiles
  lines.push(`var<workgroup> As: array<vec4<${S}>, ${stages * unitsA}>;`);
  lines.push(`var<workgroup> Bs: array<vec4<${S}>, ${stages * unitsB}>;`);
  lines.push(`@compute @workgroup_size(${t.wx}, ${t.wy})
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let tx = lid.x;
  let ty = lid.y;
  let tid = ty * ${u(t.wx)} + tx;
  let row0 = wid.y * ${u(t.bm)};
  let col0 = wid.x * ${u(t.bn)};
  let z = wid.z % ${u(L.batch)};
  let zo = z / ${u(L.bi)};
  let zi = z % ${u(L.bi)};
  let offa = ${batchOffset(L, L.sA, L.oA)};
  let offb = ${batchOffset(L, L.sB, L.oB)};
  let kBeg = (wid.z / ${u(L.batch)}) * ${u(chunk)};
  let kEnd = min(kBeg + ${u(chunk)}, ${u(k)});
  ${A.setup}
  ${B.setup}`);
  for (let i = 0; i < A.regs; i++) lines.push(`  var pa${i}: vec4<${E}>;`);
  for (let i = 0; i < B.regs; i++) lines.push(`  var pb${i}: vec4<${E}>;`);
  const accs: string[] = [];
  for (let g = 0; g < gm; g++) {
    for (let q = 0; q < 4; q++) {
      for (let h = 0; h < gn; h++) accs.push(`c${g}_${q}_${h}`);
    }
  }
  lines.push(
    accs.map((c) => `  var ${c} = vec4<f32>(0.0);`).join("\n"),
  );
  /**
   * Multiply-accumulate of one K slice, fully unrolled; `ra`/`rb` are the
   * thread's vec4 index in `As`/`Bs`: "ty"/"tx" plus the buffer's offset.
   */
  const multiply = (ra: string, rb: string): string => {
    if (L.packedK) return multiplyPacked(L, t, ra, rb);
    const blocks: string[] = [];
    // f16 operands widen to f32 as they leave workgroup memory
    const wide = (x: string) => L.stage16 ? `vec4<f32>(${x})` : x;
    for (let kk = 0; kk < bk; kk++) {
      const body: string[] = [];
      for (let g = 0; g < gm; g++) {
        body.push(
          `let a${g} = ${wide(`As[${u(kk * t.bm / 4 + g * t.wy)} + ${ra}]`)};`,
        );
      }
      for (let h = 0; h < gn; h++) {
        body.push(
          `let b${h} = ${wide(`Bs[${u(kk * t.bn / 4 + h * t.wx)} + ${rb}]`)};`,
        );
      }
      for (let g = 0; g < gm; g++) {
        for (let q = 0; q < 4; q++) {
          for (let h = 0; h < gn; h++) {
            const c = `c${g}_${q}_${h}`;
            body.push(
              `${c} = fma(vec4<f32>(a${g}.${"xyzw"[q]}), b${h}, ${c});`,
            );
          }
        }
      }
      blocks.push(`    {\n      ${body.join("\n      ")}\n    }`);
    }
    return blocks.join("\n");
  };
  const load = (kv: string): string =>
    `${A.load.replaceAll("KV", kv)}\n${B.load.replaceAll("KV", kv)}`;
  const store = (offA: string, offB: string): string =>
    `      ${A.store(offA)}\n      ${B.store(offB)}`;
  if (stages === 2) {
    // Double-buffered: slice s lives in buffer cur = s % 2, selected by a
    // runtime offset computed once per slice (the loads keep their constant
    // offsets; one copy of the unrolled slice also compiles several times
    // faster on llvmpipe than the loop unrolled by two). While buffer cur is
    // multiplied, the next slice goes global → registers → buffer 1 − cur;
    // the one barrier per slice both publishes buffer 1 − cur and ends the
    // reads of buffer cur before the next iteration overwrites it.
    lines.push(`  {
${load("kBeg")}
${store("", "")}
  }
  workgroupBarrier();
  var cur = 0u;
  for (var k0 = kBeg; k0 < kEnd; k0 = k0 + ${u(bk)}) {
    let kn = k0 + ${u(bk)};
    if (kn < kEnd) {
${load("kn")}
    }
    let ra = cur * ${u(unitsA)} + ty;
    let rb = cur * ${u(unitsB)} + tx;
${multiply("ra", "rb")}
    if (kn >= kEnd) {
      break;
    }
    cur = 1u - cur;
    let oa = cur * ${u(unitsA)};
    let ob = cur * ${u(unitsB)};
${store("oa + ", "ob + ")}
    workgroupBarrier();
  }`);
  } else {
    if (chunk >= PREFETCH_MIN_TILES * bk) {
      // prologue: first slice into registers
      lines.push(`  {
${load("kBeg")}
  }
  for (var k0 = kBeg; k0 < kEnd; k0 = k0 + ${u(bk)}) {
    {
${store("", "")}
    }
    workgroupBarrier();
    if (k0 + ${u(bk)} < kEnd) {
      let kn = k0 + ${u(bk)};
${load("kn")}
    }`);
    } else {
      lines.push(`  for (var k0 = kBeg; k0 < kEnd; k0 = k0 + ${u(bk)}) {
    {
${load("k0")}
${store("", "")}
    }
    workgroupBarrier();`);
    }
    lines.push(multiply("ty", "tx"));
    lines.push(`    workgroupBarrier();
  }`);
  }
  // epilogue
  const mChecked = m % t.bm !== 0;
  const nChecked = n % t.bn !== 0;
  if (!splitMode) lines.push(`  let offc = ${batchOffset(L, L.sC, L.oC)};`);
  else lines.push(`  let offc = wid.z * ${u(m * n)};`); // (split, batch) → dense slab
  const ldOut = splitMode ? n : L.ldc;
  for (let g = 0; g < gm; g++) {
    for (let q = 0; q < 4; q++) {
      const rowBody: string[] = [];
      rowBody.push(`let base = offc + row * ${u(ldOut)};`);
      for (let h = 0; h < gn; h++) {
        const acc = `c${g}_${q}_${h}`;
        const store = (vec: boolean, accX: string, colX: string, ci: string) =>
          splitMode
            ? `        splitk[${ci}] = ${accX};`
            : epilogue(L, vec, accX, ci, colX, "        ");
        const parts: string[] = [];
        if (vecOut) {
          const s = store(true, acc, "col", "(base + col) / 4u");
          parts.push(
            nChecked
              ? `if (col < ${u(n)}) {\n${s}\n      }`
              : `{\n${s}\n      }`,
          );
        } else {
          for (let j = 0; j < 4; j++) {
            const s = store(
              false,
              `${acc}.${"xyzw"[j]}`,
              `(col + ${u(j)})`,
              `base + col + ${u(j)}`,
            );
            parts.push(
              nChecked
                ? `if (col + ${u(j)} < ${u(n)}) {\n${s}\n      }`
                : `{\n${s}\n      }`,
            );
          }
        }
        rowBody.push(
          `{\n      let col = col0 + ${u(h * 4 * t.wx)} + tx * 4u;\n      ${
            parts.join("\n      ")
          }\n      }`,
        );
      }
      const rb = rowBody.join("\n      ");
      const rowDecl = `let row = row0 + ${u(g * 4 * t.wy + q)} + ty * 4u;`;
      lines.push(
        mChecked
          ? `  {\n    ${rowDecl}\n    if (row < ${
            u(m)
          }) {\n      ${rb}\n    }\n  }`
          : `  {\n    ${rowDecl}\n    ${rb}\n  }`,
      );
    }
  }
  lines.push("}");
  const grid: [number, number, number] = [
    cdiv(n, t.bn),
    cdiv(m, t.bm),
    L.batch * split,
  ];
  return {
    spec: { code: lines.join("\n") + "\n", workgroups: grid, label },
    bind,
  };
}

/** Second split-K dispatch: sums the slices of "splitk" and applies the epilogue. */
function reduceKernel(L: Layout, split: number): KernelStep {
  const { m, n } = L;
  const vec = L.vecC; // implies n % 4 == 0, so the dense partials align too
  const w = vec ? 4 : 1;
  const total = L.batch * m * n / w; // units per slice
  const [gx, gy] = grid2d(cdiv(total, 256));
  const label = `matmul reduce m${m} n${n} b${L.batch} split${split}${
    L.outF16 ? " >f16" : ""
  }`;
  const { decls, bind } = storageBindings([
    binding("splitk", vec, false),
    ...epilogueBindings(L),
  ]);
  const T = vec ? "vec4<f32>" : "f32";
  const code = `// ${label}
${L.outF16 ? "enable f16;\n" : ""}${decls}
${L.gelu ? geluWgsl() : ""}${L.outF16 ? toF16Wgsl() : ""}
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let e = (wid.y * ${u(gx)} + wid.x) * 256u + lid.x;
  if (e >= ${u(total)}) { return; }
  var acc: ${T} = splitk[e];
  for (var s = 1u; s < ${u(split)}; s = s + 1u) {
    acc = acc + splitk[s * ${u(total)} + e];
  }
  let el = e * ${u(w)};
  let z = el / ${u(m * n)};
  let rem = el % ${u(m * n)};
  let row = rem / ${u(n)};
  let col = rem % ${u(n)};
  let zo = z / ${u(L.bi)};
  let zi = z % ${u(L.bi)};
  let ci = (${batchOffset(L, L.sC, L.oC)} + row * ${u(L.ldc)} + col) / ${u(w)};
${epilogue(L, vec, "acc", "ci", "col", "  ")}
}
`;
  return {
    spec: { code, workgroups: [gx, gy, 1], label },
    bind,
  };
}

/**
 * Plans `C = alpha·op(A)·op(B)` (+ bias, residual, accumulate, GELU) for a
 * fixed shape; the tile and split-K are chosen for an H100 unless
 * overridden.
 *
 * Bindings, in order: "a" (A), "b" (B) — f32, or f16 halves with
 * `operands: "f16"` —, "bias" (n f32, with `bias`), "r" (residual, layout
 * of C, with `residual`), "c" (C, read and written with `accumulate`),
 * "pre" (pre-activation, layout of C, with `gelu` unless `keepPre` is
 * false); "r", "c" and "pre" are f32, or f16 halves with `outF16`.
 * With split-K there are two steps — the first binds "a", "b" and the
 * scratch "splitk" (`split·batch·m·n` floats), the second "splitk" and the
 * epilogue names.
 *
 * @param o Shape, layout and epilogue.
 * @returns The plan (one or two dispatches).
 * @throws {RangeError} On inconsistent options (non-positive sizes, strides
 *   shorter than rows, batchInner not dividing batch, residual or gelu with
 *   accumulate, an unknown tile, stages other than 1 or 2, a tile whose
 *   buffers exceed {@linkcode MAX_WORKGROUP_BYTES} with the stages and
 *   `bk` asked for, `packedK` without f16 operands, a grid over 65,535
 *   workgroups).
 */
export function matmul(
  o: MatmulOptions,
): KernelPlan<"a" | "b" | "c", "bias" | "r" | "pre"> {
  const L = resolve(o);
  const { t, chunk, split, stages } = choose(L, o);
  const main = mainKernel(L, t, chunk, split, stages);
  if (split === 1) return { steps: [main] };
  return {
    steps: [main, reduceKernel(L, split)],
    scratch: { splitk: split * L.batch * L.m * L.n },
  };
}
