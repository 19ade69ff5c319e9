/**
 * The waveform-view kernel of the GPU audio front end (issue 14): executes
 * the row programs of `view_programs.ts` (the `augment` and `fixed_length`
 * stages' rolls, pads, clips, noise and background mixes) on decoded clips
 * already on the GPU, writing every row of the view batch into one
 * zero-padded `[rows][rowStride]` array and each row's length into
 * `lengths` for the mel kernel.
 *
 * One thread per output sample: it walks the row's ops backwards to find
 * the source sample it reads (or a zero of a pad), then applies the
 * additive terms (noise, background) forwards, so the additions happen in
 * the CPU stages' order. Only `maxOps` is baked into the WGSL: the row
 * count is the grid's y dimension and the row stride a word of the packed
 * programs, so one compiled pipeline serves every batch of a run (TTAu's
 * raw-length views included).
 *
 * Host side: {@linkcode packClips} packs decoded clips (and the background
 * clips) into one float32 array with offsets; {@linkcode packPrograms}
 * packs the programs into the `programs` u32 array.
 *
 * @module
 */
import type { KernelPlan } from "../runtime.ts";
import { kernelStep, readOnly, readWrite } from "../kernels/bindings.ts";
import { checkSize, MAX_GRID_DIM, WORKGROUP_SIZE } from "../kernels/grid.ts";
import type { RowProgram } from "./view_programs.ts";

/** Op codes of the packed programs (`programs` words). */
export const VIEW_OP = { roll: 0, place: 1, add: 2, mix: 3 } as const;

/** u32 words of a row's header in `programs`. */
const ROW_HEADER = 4;
/** u32 words per packed op. */
const OP_WORDS = 4;

/** u32 words of one row's record in `programs` for a given `maxOps`. */
export const rowWords = (maxOps: number): number =>
  ROW_HEADER + OP_WORDS * maxOps;

/** Clips packed end to end (see {@linkcode packClips}). */
export interface PackedClips {
  /** The samples of every clip, one after another. */
  readonly data: Float32Array;
  /** Start of each clip in `data`, in samples. */
  readonly offsets: readonly number[];
  /** Length of each clip, in samples. */
  readonly lengths: readonly number[];
}

/**
 * Packs clips end to end into one float32 array (at least one element, so
 * it can always be bound).
 *
 * @param clips The clips (decoded PCM, or background noise clips in
 *   `noiseNames` order).
 * @returns The data and each clip's offset and length in samples.
 */
export function packClips(clips: readonly Float32Array[]): PackedClips {
  const lengths = clips.map((c) => c.length);
  const { offsets, words } = placeClips(lengths);
  const data = new Float32Array(words);
  clips.forEach((c, i) => data.set(c, offsets[i]));
  return { data, offsets, lengths };
}

/**
 * Where clips go in a `sources` binding, one after another: `f32`, packed
 * end to end; `i16`, each from an even sample, so that its bytes start on a
 * 4-byte boundary (`writeBuffer` needs one) and the binding is a whole
 * number of u32 words.
 *
 * @param lengths Samples per clip.
 * @param format How the binding holds samples ({@linkcode SourceFormat}).
 * @returns Each clip's offset in samples, and the binding's size in 4-byte
 *   words (at least 1, so it can always be bound).
 */
export function placeClips(
  lengths: readonly number[],
  format: SourceFormat = "f32",
): { offsets: number[]; words: number } {
  const offsets: number[] = [];
  let at = 0;
  for (const n of lengths) {
    offsets.push(at);
    at += format === "i16" ? n + (n % 2) : n;
  }
  return {
    offsets,
    words: Math.max(1, format === "i16" ? at / 2 : at),
  };
}

/** Options of {@linkcode packPrograms}. */
export interface PackOptions {
  /** Most ops per row the kernel was built for ({@linkcode ViewsPlanOptions.maxOps}). */
  readonly maxOps: number;
  /** Samples per output row the kernel was built for; default the longest row. */
  readonly rowStride?: number;
  /** Where the batch's decoded clips lie in the `sources` binding. */
  readonly sources: Pick<PackedClips, "offsets" | "lengths">;
  /** Where the background clips (in `noiseNames` order) lie in the `noise` binding. */
  readonly noise: Pick<PackedClips, "offsets" | "lengths">;
}

/** The packed programs and what the kernel needs with them. */
export interface PackedPrograms {
  /** The `programs` binding (u32): noise table, then one record per row. */
  readonly programs: Uint32Array;
  /** The `extra` binding: the `add` ops' noise rounded to float32 (≥ 1 element). */
  readonly extra: Float32Array;
  /** Rows (the grid's y dimension: {@linkcode ViewsPlanOptions.rows}). */
  readonly rows: number;
  /** Samples per output row (`rowStride` or the longest row, at least 1). */
  readonly rowStride: number;
}

const U32_MAX = 0xffffffff;

/**
 * Packs row programs into the kernel's `programs` and `extra` bindings.
 *
 * Layout of `programs` (u32 words): `[0]` = rowStride, `[1]` = K background
 * clips, then K pairs (offset, length) into `noise`; from `2 + 2K`, one record of
 * {@linkcode rowWords}`(maxOps)` words per row: `[source offset in
 * sources, source length, op count, output length]` then `maxOps` ops of 4
 * words: roll `[0, shift, 0, input]`, place `[1, head, 0, input]`, add
 * `[2, offset in extra, 0, input]`, mix `[3, noise index, start, gain as
 * f32 bits]` (unused ops are zero).
 *
 * @param rows The programs ({@linkcode RowProgram}).
 * @param extra The `add` ops' noise from the planner (float64 is rounded
 *   to float32; a non-empty float32 array is used as it is, not copied).
 * @param o Kernel sizes and where the clips lie.
 * @returns The two arrays, the row count and the row stride.
 * @throws {RangeError} When a row has more ops than `maxOps` or is longer
 *   than `rowStride`, a program does not fit its clip, or an offset does
 *   not fit in 32 bits.
 */
export function packPrograms(
  rows: readonly RowProgram[],
  extra: Float64Array | Float32Array,
  o: PackOptions,
): PackedPrograms {
  checkSize("views maxOps", o.maxOps, 1);
  const longest = rows.reduce((m, r) => Math.max(m, r.length), 1);
  const rowStride = o.rowStride ?? longest;
  checkSize("views rowStride", rowStride, 1);
  const K = o.noise.offsets.length;
  const base = 2 + 2 * K;
  const words = rowWords(o.maxOps);
  const programs = new Uint32Array(base + words * Math.max(1, rows.length));
  const u32 = (v: number, what: string): number => {
    if (!Number.isInteger(v) || v < 0 || v > U32_MAX) {
      throw new RangeError(
        `Cannot pack the view programs: ${what} ${v} does not fit in 32 bits; split the batch`,
      );
    }
    return v;
  };
  programs[0] = u32(rowStride, "row stride");
  programs[1] = K;
  for (let k = 0; k < K; k++) {
    programs[2 + 2 * k] = u32(o.noise.offsets[k], "noise offset");
    programs[3 + 2 * k] = u32(o.noise.lengths[k], "noise length");
  }
  const bits = new Float32Array(1);
  const bitsU32 = new Uint32Array(bits.buffer);
  rows.forEach((r, ri) => {
    if (r.ops.length > o.maxOps) {
      throw new RangeError(
        `Cannot pack view row ${ri}: it has ${r.ops.length} ops, more than maxOps ${o.maxOps}; build the views kernel with maxOps ≥ ${r.ops.length}`,
      );
    }
    if (r.length > rowStride) {
      throw new RangeError(
        `Cannot pack view row ${ri}: it has ${r.length} samples, more than rowStride ${rowStride}; build the views kernel with rowStride ≥ ${r.length}`,
      );
    }
    const sourceLength = o.sources.lengths[r.source];
    const first = r.ops.length > 0 ? r.ops[0].input : r.length;
    if (sourceLength === undefined || sourceLength !== first) {
      throw new RangeError(
        `Cannot pack view row ${ri}: its program expects clip ${r.source} to have ${first} samples, ${
          sourceLength === undefined
            ? "and there is no such clip"
            : `it has ${sourceLength}`
        }; pack the clips the programs were planned from`,
      );
    }
    const at = base + ri * words;
    programs[at] = u32(o.sources.offsets[r.source], "source offset");
    programs[at + 1] = sourceLength;
    programs[at + 2] = r.ops.length;
    programs[at + 3] = r.length;
    r.ops.forEach((op, k) => {
      const w = at + ROW_HEADER + OP_WORDS * k;
      programs[w] = VIEW_OP[op.kind];
      switch (op.kind) {
        case "roll":
          programs[w + 1] = op.shift;
          programs[w + 3] = op.input;
          break;
        case "place":
          programs[w + 1] = u32(op.head, "pad head");
          programs[w + 3] = op.input;
          break;
        case "add":
          programs[w + 1] = u32(op.offset, "noise offset");
          programs[w + 3] = op.input;
          break;
        case "mix":
          if (op.noise >= K) {
            throw new RangeError(
              `Cannot pack view row ${ri}: it mixes background clip ${op.noise} and ${K} were packed; pack every clip of noiseNames`,
            );
          }
          programs[w + 1] = op.noise;
          programs[w + 2] = op.start;
          bits[0] = op.gain;
          programs[w + 3] = bitsU32[0];
          break;
      }
    });
  });
  let extra32: Float32Array;
  if (extra instanceof Float32Array && extra.length > 0) extra32 = extra;
  else {
    extra32 = new Float32Array(Math.max(1, extra.length));
    extra32.set(extra);
  }
  return { programs, extra: extra32, rows: rows.length, rowStride };
}

/** Sizes of the views kernel. */
export interface ViewsPlanOptions {
  /** Most ops of a row (baked: the backward walk is unrolled). */
  readonly maxOps: number;
  /**
   * Samples per output row: sizes the grid only (the kernel reads the stride
   * from `programs`); give {@linkcode PackedPrograms.rowStride}.
   */
  readonly rowStride: number;
  /** Rows (only the grid's y dimension; not in the WGSL), 1 … 65,535. */
  readonly rows: number;
  /**
   * The device's `maxStorageBufferBindingSize` in bytes, when known: a plan
   * whose `out` would not fit one binding is refused (split the rows with
   * {@linkcode viewsRowsPerDispatch}).
   */
  readonly maxBindingBytes?: number;
  /**
   * How `sources` holds the decoded clips: `f32` (default), or `i16`: 16-bit
   * PCM integers, two per u32 word, little-endian (sample `k` is the low
   * half of word `k / 2` when `k` is even), each read as `v / 32768` — the
   * WAV decoder's float value. Offsets and lengths stay in samples.
   */
  readonly sourceFormat?: SourceFormat;
}

/** How the views kernel's `sources` binding holds the decoded clips. */
export type SourceFormat = "f32" | "i16";

/**
 * How many rows of `rowStride` samples one dispatch can write: the `out`
 * binding (`rows·rowStride` floats) must fit `maxBindingBytes`, and the grid
 * at most 65,535 rows. Dispatch more rows in slices: pack each slice's
 * programs on its own (`packPrograms(rows.slice(a, b), …)`; the sources,
 * noise values and background clips stay bound whole) and bind each its own
 * `out` and `lengths` regions.
 *
 * @param rowStride Samples per output row.
 * @param maxBindingBytes The device's `maxStorageBufferBindingSize`.
 * @returns Rows per dispatch (0 when not even one row fits).
 */
export function viewsRowsPerDispatch(
  rowStride: number,
  maxBindingBytes: number,
): number {
  return Math.min(MAX_GRID_DIM, Math.floor(maxBindingBytes / (4 * rowStride)));
}

/**
 * The views kernel: for every row `r < rows` and sample `j < rowStride`,
 * `out[r·rowStride + j]` = the program's sample `j` (0 past the row's
 * length), and `lengths[r]` = the row's length in samples.
 *
 * Bindings: "programs" (read, u32, {@linkcode packPrograms}), "sources"
 * (read, f32: the batch's decoded clips, {@linkcode packClips}; u32 pairs of
 * 16-bit samples with `sourceFormat: "i16"`, {@linkcode placeClips}), "extra"
 * (read, f32: the `add` ops' noise), "noise" (read, f32: the background
 * clips, packed), "out" (write, f32 `[rows][rowStride]`), "lengths"
 * (write, u32 `[rows]`). One dispatch of 256-thread workgroups on a
 * `[ceil(rowStride/256), rows, 1]` grid; the WGSL depends only on `maxOps`
 * and `sourceFormat`.
 *
 * @param o Sizes.
 * @returns The plan.
 * @throws {RangeError} On a size that is not a positive integer, more
 *   rows or samples per row than one dispatch can cover, or an `out` larger
 *   than `maxBindingBytes`.
 */
export function viewsPlan(
  o: ViewsPlanOptions,
): KernelPlan<"programs" | "sources" | "extra" | "noise" | "out" | "lengths"> {
  checkSize("views maxOps", o.maxOps, 1);
  checkSize("views rowStride", o.rowStride, 1);
  checkSize("views rows", o.rows, 1);
  const groupsX = Math.ceil(o.rowStride / WORKGROUP_SIZE);
  const outBytes = 4 * o.rows * o.rowStride;
  if (o.maxBindingBytes !== undefined && outBytes > o.maxBindingBytes) {
    throw new RangeError(
      `Cannot build the views kernel for ${o.rows} rows of ${o.rowStride} samples: out needs ${outBytes} bytes, more than the device's maxStorageBufferBindingSize ${o.maxBindingBytes}; dispatch at most ${
        viewsRowsPerDispatch(o.rowStride, o.maxBindingBytes)
      } rows at a time`,
    );
  }
  if (o.rows > MAX_GRID_DIM || groupsX > MAX_GRID_DIM) {
    throw new RangeError(
      `Cannot build the views kernel for ${o.rows} rows of ${o.rowStride} samples: one dispatch covers at most ${MAX_GRID_DIM} rows of ${
        MAX_GRID_DIM * WORKGROUP_SIZE
      } samples; split the batch`,
    );
  }
  const M = o.maxOps;
  const op = (k: number) => `base + ${ROW_HEADER + OP_WORDS * k}u`;
  // Backward walk, unrolled: p${k} is the position at op k's output.
  const backward = Array.from({ length: M }, (_, i) => M - 1 - i).map((k) =>
    `  let p${k} = p;
  if (live && ${k}u < nops) {
    let o = ${op(k)};
    let kind = programs[o];
    if (kind == ${VIEW_OP.roll}u) {
      p = p - i32(programs[o + 1u]);
      if (p < 0) { p = p + i32(programs[o + 3u]); }
    } else if (kind == ${VIEW_OP.place}u) {
      p = p - i32(programs[o + 1u]);
      if (p < 0 || p >= i32(programs[o + 3u])) { live = false; first = ${
      k + 1
    }u; }
    }
  }`
  ).join("\n");
  const forward = Array.from(
    { length: M },
    (_, k) =>
      `  if (${k}u >= first && ${k}u < nops) {
    let o = ${op(k)};
    let kind = programs[o];
    if (kind == ${VIEW_OP.add}u) {
      v = v + extra[programs[o + 1u] + u32(p${k})];
    } else if (kind == ${VIEW_OP.mix}u) {
      let c = 2u + 2u * programs[o + 1u];
      let at = (programs[o + 2u] + u32(p${k})) % programs[c + 1u];
      v = v + bitcast<f32>(programs[o + 3u]) * noise[programs[c] + at];
    }
  }`,
  ).join("\n");
  const i16 = o.sourceFormat === "i16";
  // Sample k of an i16 source: half k % 2 of word k / 2, sign-extended.
  const read = i16
    ? `let k = programs[base] + u32(p);
    let w = sources[k >> 1u];
    let h = select(w << 16u, w, (k & 1u) == 1u);
    v = f32(bitcast<i32>(h) >> 16u) / 32768.0;`
    : `v = sources[programs[base] + u32(p)];`;
  const step = kernelStep(
    `views maxOps=${M}${i16 ? " i16" : ""}`,
    [groupsX, o.rows, 1],
    [
      readOnly("programs", "u32"),
      readOnly("sources", i16 ? "u32" : "f32"),
      readOnly("extra"),
      readOnly("noise"),
      readWrite("out"),
      readWrite("lengths", "u32"),
    ],
    (decls) =>
      `${decls}
const ROW_WORDS: u32 = ${rowWords(M)}u;

@compute @workgroup_size(${WORKGROUP_SIZE})
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let j = wid.x * ${WORKGROUP_SIZE}u + li;
  let stride = programs[0];
  if (j >= stride) { return; }
  let r = wid.y;
  let base = 2u + 2u * programs[1] + r * ROW_WORDS;
  let nops = programs[base + 2u];
  let len = programs[base + 3u];
  if (j == 0u) { lengths[r] = len; }
  let dst = r * stride + j;
  if (j >= len) { out[dst] = 0.0; return; }
  var p = i32(j);
  var live = true;
  var first = 0u;
${backward}
  var v = 0.0;
  if (live) {
    ${read}
  }
${forward}
  out[dst] = v;
}
`,
  );
  return { steps: [step] };
}
