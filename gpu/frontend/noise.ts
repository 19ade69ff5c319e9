/**
 * The uniform-noise kernel of the GPU front end: draws the values of the
 * `augment` stages' `noise` transforms (`kind: uniform`) on the GPU, from
 * the random stream's states the host recorded (`view_programs.ts`, noise
 * mode `gpu`), so the host only steps the generator instead of drawing,
 * storing and uploading every value (a CochlScene batch: 14 million).
 *
 * Each thread runs one chunk of up to `NOISE_CHUNK` draws of the project's
 * sfc32 generator (`pipeline/rng.ts`) from the chunk's recorded state and
 * writes `scale · r / 2³²` to its slots of `extra`: the same draws as the
 * host's `next()`, rounded in float32 (within an ulp of the host's value).
 *
 * @module
 */
import type { KernelPlan } from "../runtime.ts";
import { kernelStep, readOnly, readWrite } from "../kernels/bindings.ts";
import { MAX_GRID_DIM } from "../kernels/grid.ts";
import { f32Literal } from "../kernels/wgsl.ts";
import { NOISE_CHUNK_WORDS } from "./view_programs.ts";

/** Threads per workgroup of the noise kernel. */
const THREADS = 64;

/**
 * Packs chunk records (`ViewPlan.noiseChunks`) behind a header of
 * `NOISE_CHUNK_WORDS` words whose first is the record count, as the
 * kernel's `chunks` binding reads them.
 *
 * @param records The planner's records.
 * @returns The binding's words.
 */
export function packNoiseChunks(records: Uint32Array): Uint32Array {
  const out = new Uint32Array(NOISE_CHUNK_WORDS + records.length);
  out[0] = records.length / NOISE_CHUNK_WORDS;
  out.set(records, NOISE_CHUNK_WORDS);
  return out;
}

/**
 * The kernel: bindings "chunks" (read, u32: {@linkcode packNoiseChunks})
 * and "extra" (read_write, f32: the `add` ops' noise slots). The WGSL does
 * not depend on the chunk count (read from the header), so one pipeline
 * serves every batch.
 *
 * @param chunks Records of this batch (sets the grid only).
 * @returns The plan (one step).
 * @throws {RangeError} Over 65,535 × 64 chunks (split the batch).
 */
export function uniformNoisePlan(
  chunks: number,
): KernelPlan<"chunks" | "extra"> {
  const groups = Math.max(1, Math.ceil(chunks / THREADS));
  if (groups > MAX_GRID_DIM) {
    throw new RangeError(
      `Cannot build the noise kernel for ${chunks} chunks: one dispatch covers ${
        MAX_GRID_DIM * THREADS
      }; split the batch`,
    );
  }
  const w = NOISE_CHUNK_WORDS;
  return {
    steps: [kernelStep(
      "uniformNoise",
      [groups, 1, 1],
      [readOnly("chunks", "u32"), readWrite("extra")],
      (decls) =>
        `${decls}

@compute @workgroup_size(${THREADS})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  if (c >= chunks[0]) { return; }
  let r = ${w}u + c * ${w}u;
  var a = chunks[r];
  var b = chunks[r + 1u];
  var s = chunks[r + 2u];
  var d = chunks[r + 3u];
  let at = chunks[r + 4u];
  let n = chunks[r + 5u];
  let scale = bitcast<f32>(chunks[r + 6u]);
  for (var i = 0u; i < n; i = i + 1u) {
    // sfc32, as pipeline/rng.ts steps it (u32 arithmetic wraps).
    let t = a + b;
    a = b ^ (b >> 9u);
    b = s + (s << 3u);
    s = (s << 21u) | (s >> 11u);
    d = d + 1u;
    let x = t + d;
    s = s + x;
    extra[at + i] = scale * (f32(x) * ${f32Literal(2 ** -32)});
  }
}`,
    )],
  };
}
