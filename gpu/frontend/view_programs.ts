/**
 * Host-side planner of the GPU audio front end's waveform views (issue 14):
 * replays the `augment` and `fixed_length` map stages on a batch, drawing
 * from every random stream exactly as the CPU stages do, but instead of
 * computing the views' samples it writes one small *program* per output
 * row — which decoded clip it starts from and the index operations (roll,
 * place) and additive terms (noise, background mix) that turn that clip
 * into the row. The GPU kernel of `views.ts` executes the programs; the
 * float64 reference interpreter {@linkcode runPrograms} here gives exactly
 * the CPU stages' waveforms.
 *
 * Samples are read on the host only where the CPU stages' arithmetic needs
 * them: a background mix's gain depends on the signal energy at that point
 * of the chain (computed by index mapping from the decoded clip when only
 * rolls and pads precede it, else by evaluating the prefix).
 *
 * @module
 */
import type { Batch } from "../../pipeline/types.ts";
import type { Rng } from "../../pipeline/rng.ts";
import { rollShift } from "../../lib/transforms.ts";
import {
  type AugmentOptions,
  missingNoise,
  type Transform,
} from "../../stages/augment.ts";
import { type FixedLengthOptions, padHead } from "../../stages/fixed_length.ts";
import type { NoiseClip } from "../../stages/_audio_dataset.ts";

/**
 * One operation of a row program. Every op carries `input`, the length in
 * samples of the signal it receives (its output has the same length except
 * for `place`).
 *
 * - `roll`: `y[j] = x[(j − shift) mod input]`, `shift` in `1 … input−1`;
 * - `place`: `y` has `length` samples, `y[j] = x[j − head]` where
 *   `0 ≤ j − head < input`, else 0 (a zero pad with `head` samples in front,
 *   or a clip to the first `length` samples with `head` 0);
 * - `add`: `y[j] = x[j] + extra[offset + j]` (the noise, already scaled);
 * - `mix`: `y[j] = x[j] + gain·bg[noise][(start + j) mod len(bg[noise])]`
 *   (`noise` indexes the planner's `noiseNames`; `gain` is float64).
 */
export type ViewOp =
  | { readonly kind: "roll"; readonly input: number; readonly shift: number }
  | {
    readonly kind: "place";
    readonly input: number;
    readonly head: number;
    readonly length: number;
  }
  | { readonly kind: "add"; readonly input: number; readonly offset: number }
  | {
    readonly kind: "mix";
    readonly input: number;
    readonly noise: number;
    readonly start: number;
    readonly gain: number;
  };

/** How one output row (one clip in one view) is made from a decoded clip. */
export interface RowProgram {
  /** Index of the clip in the input batch's `waveform` array. */
  readonly source: number;
  /** Operations, applied in order (empty: the clip itself). */
  readonly ops: readonly ViewOp[];
  /** Length of the row in samples (the last op's output length). */
  readonly length: number;
}

/** One `augment` or `fixed_length` stage to replay, with its random stream. */
export type ViewStage =
  | {
    readonly id: "augment";
    /** The stage's name in the spec (for messages). */
    readonly name: string;
    /** Parsed options. */
    readonly options: AugmentOptions;
    /** The stream the stage's `ctx.rng` would be for this batch. */
    readonly rng: Rng;
  }
  | {
    readonly id: "fixed_length";
    /** The stage's name in the spec. */
    readonly name: string;
    /** Parsed options. */
    readonly options: FixedLengthOptions;
    /** The stream the stage's `ctx.rng` would be for this batch. */
    readonly rng: Rng;
  };

/** What {@linkcode planViewStages} returns. */
export interface ViewPlan {
  /**
   * The batch exactly as running the stages on the CPU would give it
   * (`size`, `view`, `viewNames`, every per-example field replicated view
   * by view), except that it has no `waveform`: {@linkcode rows} stand for it.
   */
  readonly batch: Batch;
  /** One program per row of the output batch, in batch order. */
  readonly rows: readonly RowProgram[];
  /**
   * The additive noise of every `add` op (already scaled). Float64 (the
   * default) lets {@linkcode runPrograms} round exactly as the CPU stages
   * do; float32 ({@linkcode PlanOptions.noise}) is what the GPU reads.
   */
  readonly extra: Float64Array | Float32Array;
  /**
   * Slots the `add` ops address in `extra` (its length, except in `gpu`
   * noise mode, where `extra` is empty when the GPU draws every value).
   */
  readonly extraLength: number;
  /**
   * `gpu` noise mode: one record of {@linkcode NOISE_CHUNK_WORDS} u32 per
   * chunk of up to {@linkcode NOISE_CHUNK} uniform draws — the sfc32 state
   * (4 words) before the chunk's first draw, its first slot in `extra`, its
   * draw count and the noise scale (float32 bits), 0 — else empty.
   */
  readonly noiseChunks: Uint32Array;
  /**
   * Names of the background noise clips a `mix` op's `noise` indexes: every
   * clip of `assets.backgroundNoise`, in its key order (so the same for
   * every batch of a run, and the packed clips can be uploaded once).
   */
  readonly noiseNames: readonly string[];
}

/** Options of {@linkcode planViewStages}. */
export interface PlanOptions {
  /**
   * Precision of {@linkcode ViewPlan.extra}: `float64` (default) keeps the
   * reference interpreter exact; `float32` is half the memory (CS: 56 MB
   * instead of 113 MB for a batch of 32 clips of 10 s) and what the kernel
   * reads, with {@linkcode runPrograms} then within an ulp of each sum's
   * largest term of the CPU stages' result. `gpu`: uniform noise is not
   * drawn on the host at all; the planner only advances the random stream
   * (integer steps, several times cheaper) and records its state every
   * {@linkcode NOISE_CHUNK} draws in {@linkcode ViewPlan.noiseChunks}, from
   * which `noise.ts`'s kernel draws the same values on the GPU (within an
   * ulp: the product is rounded in float32). Gaussian noise, and noise a
   * later background mix must measure, are still drawn on the host, in
   * float32.
   */
  readonly noise?: "float64" | "float32" | "gpu";
}

/** Draws per chunk of {@linkcode ViewPlan.noiseChunks}. */
export const NOISE_CHUNK = 256;
/** u32 words per chunk record of {@linkcode ViewPlan.noiseChunks}. */
export const NOISE_CHUNK_WORDS = 8;

/** Growable buffer of the `add` ops' noise. */
interface Extra {
  data: Float64Array | Float32Array;
  length: number;
  /** Slots the batch needs in all (`noiseSamples`). */
  size: number;
}

/** Appends `n` slots to `extra` (growing it) and returns the first's index. */
function reserve(extra: Extra, n: number): number {
  const at = extra.length;
  // An empty buffer in gpu noise mode stays empty until the host draws.
  if (at + n > extra.data.length && extra.data.length > 0) {
    const size = Math.max(at + n, 2 * extra.data.length);
    const grown = extra.data instanceof Float32Array
      ? new Float32Array(size)
      : new Float64Array(size);
    grown.set(extra.data.subarray(0, at));
    extra.data = grown;
  }
  extra.length += n;
  return at;
}

interface RowState {
  source: number;
  ops: ViewOp[];
  length: number;
}

const lengthOf = (
  t: { samples?: number; seconds?: number },
  rateHz: number,
): number => t.samples ?? Math.round(t.seconds! * rateHz);

/** Length after `fitLength` to `length` (stages/fixed_length.ts). */
const fitted = (n: number, length: number, clip: "head" | "none"): number =>
  n > length && clip === "none" ? n : length;

/**
 * Noise values the stages will draw: row lengths do not depend on the
 * random draws, so the planner can size its noise buffer exactly once.
 */
function noiseSamples(batch: Batch, stages: readonly ViewStage[]): number {
  let lengths = (batch.waveform as Float32Array[]).map((w) => w.length);
  let rates = batch.sampleRate as number[];
  let total = 0;
  const walk = (n: number, chain: readonly Transform[], rate: number) => {
    for (const t of chain) {
      if (t.type === "noise") total += n;
      else if (t.type === "pad") n = fitted(n, lengthOf(t, rate), t.clip);
      else if (t.type === "clip") n = lengthOf(t, rate);
    }
    return n;
  };
  for (const s of stages) {
    if (s.id === "fixed_length") {
      const o = s.options;
      lengths = lengths.map((n, i) =>
        fitted(n, o.samples ?? Math.round(o.seconds! * rates[i]), o.clip)
      );
    } else if (s.options.mode === "sequence") {
      const chain = s.options.views.flatMap((v) => v.chain);
      lengths = lengths.map((n, i) => walk(n, chain, rates[i]));
    } else {
      const views = s.options.views;
      lengths = views.flatMap((v) =>
        lengths.map((n, i) => walk(n, v.chain, rates[i]))
      );
      rates = views.flatMap(() => rates);
    }
  }
  return total;
}

/**
 * Appends `fitLength`'s operation (stages/fixed_length.ts) for a target
 * length, drawing the random head pad from `rng` only as it does.
 */
function fit(
  row: RowState,
  length: number,
  position: "random" | "center" | "end",
  clip: "head" | "none",
  rng: Rng | undefined,
): void {
  const n = row.length;
  const deficit = length - n;
  if (deficit === 0) return;
  if (deficit < 0) {
    if (clip === "head") {
      row.ops.push({ kind: "place", input: n, head: 0, length });
      row.length = length;
    }
    return;
  }
  const head = padHead(deficit, position, rng);
  row.ops.push({ kind: "place", input: n, head, length });
  row.length = length;
}

/**
 * Writes `n` values of `scale·rng.next()` (`uniform`, through
 * `Rng.fillUniform`: the same draws, inline) or `scale·rng.normal()`
 * (`gaussian`) into `out` from `at`, bit for bit as `addNoise` of
 * lib/transforms.ts draws them.
 *
 * @returns `rng`, advanced past the draws.
 */
function drawNoise(
  rng: Rng,
  kind: "uniform" | "gaussian",
  scale: number,
  out: Float64Array | Float32Array,
  at: number,
  n: number,
): Rng {
  if (kind === "uniform") rng.fillUniform(out, scale, at, n);
  else for (let i = 0; i < n; i++) out[at + i] = scale * rng.normal();
  return rng;
}

/**
 * The index in the source clip that output sample `j` of `ops` reads, or −1
 * where it is a zero of a `place` (additive ops are index identities).
 */
function sourceIndex(ops: readonly ViewOp[], j: number): number {
  let p = j;
  for (let k = ops.length - 1; k >= 0; k--) {
    const op = ops[k];
    if (op.kind === "roll") {
      p -= op.shift;
      if (p < 0) p += op.input;
    } else if (op.kind === "place") {
      p -= op.head;
      if (p < 0 || p >= op.input) return -1;
    }
  }
  return p;
}

/**
 * Running sums of squares of background clips (float64, `[0, x0², …]`),
 * memoised per clip array: a pure function of data that never changes, so
 * a crop's energy costs two reads instead of a pass over the crop.
 */
const squareSumsOf = new WeakMap<Float32Array, Float64Array>();

function squareSums(clip: Float32Array): Float64Array {
  let sums = squareSumsOf.get(clip);
  if (!sums) {
    sums = new Float64Array(clip.length + 1);
    for (let i = 0; i < clip.length; i++) {
      sums[i + 1] = sums[i] + clip[i] * clip[i];
    }
    squareSumsOf.set(clip, sums);
  }
  return sums;
}

/** `Σ y[j]²` in float64 over the row as it stands, in sample order. */
function energy(
  row: RowState,
  wave: Float32Array,
  extra: Extra,
  noise: readonly Float32Array[],
): number {
  let e = 0;
  if (row.ops.length === 0) {
    for (let j = 0; j < row.length; j++) e += wave[j] * wave[j];
    return e;
  }
  if (row.ops.every((op) => op.kind === "roll" || op.kind === "place")) {
    for (let j = 0; j < row.length; j++) {
      const i = sourceIndex(row.ops, j);
      if (i >= 0) e += wave[i] * wave[i];
    }
    return e;
  }
  const y = runRow(wave, row.ops, extra.data, noise);
  for (let j = 0; j < y.length; j++) e += y[j] * y[j];
  return e;
}

/** The background noise clips of `assets`, checked as `augment` checks them. */
function noiseOf(
  assets: Readonly<Record<string, unknown>>,
  stages: readonly ViewStage[],
): Record<string, NoiseClip> {
  const noise = assets.backgroundNoise as
    | Record<string, NoiseClip>
    | undefined;
  for (const s of stages) {
    if (s.id !== "augment") continue;
    for (const t of s.options.views.flatMap((v) => v.chain)) {
      if (t.type === "background" && !noise) {
        throw new Error(
          `Cannot mix background noise "${t.noise}": no background noise was loaded (set backgroundNoise in the load stage)`,
        );
      }
    }
  }
  return noise ?? {};
}

/**
 * Appends one augment chain's operations to a row (as `applyChain` of
 * stages/augment.ts computes it), drawing from `rng` exactly as it does.
 */
function chainOps(
  row: RowState,
  chain: readonly Transform[],
  rateHz: number,
  stream: Rng,
  ctx: {
    wave: Float32Array;
    noise: Readonly<Record<string, NoiseClip>>;
    names: readonly string[];
    clips: readonly Float32Array[];
    extra: Extra;
    chunks?: NoiseChunks;
    /** Energies of whole source clips by index (shared by their views). */
    sourceEnergy: Map<number, number>;
  },
): void {
  let rng = stream;
  for (const t of chain) {
    switch (t.type) {
      case "roll": {
        const n = row.length;
        const shift = rollShift(
          n,
          t.fraction,
          t.direction,
          t.random ? rng : undefined,
        );
        const s = n === 0 ? 0 : ((shift % n) + n) % n;
        if (s !== 0) row.ops.push({ kind: "roll", input: n, shift: s });
        break;
      }
      case "noise": {
        const n = row.length;
        const offset = reserve(ctx.extra, n);
        if (ctx.chunks && t.kind === "uniform" && !mixLater(chain, t)) {
          ctx.chunks.add(rng, offset, n, t.scale);
        } else {
          ctx.extra.data = hostExtra(ctx.extra);
          rng = drawNoise(rng, t.kind, t.scale, ctx.extra.data, offset, n);
        }
        row.ops.push({ kind: "add", input: n, offset });
        break;
      }
      case "background": {
        const index = ctx.names.indexOf(t.noise);
        if (index < 0) throw missingNoise(t.noise, ctx.names);
        const bg = ctx.clips[index];
        const n = row.length;
        if (bg.length === 0) {
          throw new RangeError("Cannot mix an empty noise clip");
        }
        const start = bg.length > n ? rng.int(bg.length - n) : 0;
        let en = 0;
        if (start + n <= bg.length) {
          // A crop inside the clip: from the clip's running sums of squares.
          const sums = squareSums(bg);
          en = sums[start + n] - sums[start];
        } else {
          let k = start;
          for (let i = 0; i < n; i++) {
            const v = bg[k];
            en += v * v;
            if (++k === bg.length) k = 0;
          }
        }
        let ex: number;
        if (row.ops.length === 0) {
          ex = ctx.sourceEnergy.get(row.source) ??
            energy(row, ctx.wave, ctx.extra, ctx.clips);
          ctx.sourceEnergy.set(row.source, ex);
        } else ex = energy(row, ctx.wave, ctx.extra, ctx.clips);
        if (ex === 0 || en === 0) break;
        const gain = Math.sqrt((ex / en) * Math.pow(10, -t.snrDb / 10));
        row.ops.push({ kind: "mix", input: n, noise: index, start, gain });
        break;
      }
      case "pad":
        fit(row, lengthOf(t, rateHz), t.position, t.clip, rng);
        break;
      case "clip":
        fit(row, lengthOf(t, rateHz), "end", "head", undefined);
        break;
    }
  }
}

/**
 * Replays `augment` and `fixed_length` stages on a batch without computing
 * the views' samples: the output batch's fields and one
 * {@linkcode RowProgram} per output row, consuming every random stream as
 * the CPU stages do (`augment`: `rng.child(view, vi, i)`, or
 * `rng.child("seq", i)` with `mode: sequence`; `fixed_length`: its stream in
 * row order, one `int` per random pad of a short clip), so the same seed
 * gives the same views.
 *
 * @param batch The batch before the first stage: `waveform`
 *   (`Float32Array[]`, one decoded clip per example), `sampleRate` (Hz per
 *   example), `phase` (selects `fixed_length`'s pad position) and any
 *   per-example fields.
 * @param stages The stages in spec order (only those active in the phase),
 *   each with the stream its `ctx.rng` would be
 *   (`createRng(\`map/${name}/${split}/${epoch}/${batchIndex}\`, seed)`).
 * @param assets The dataset's assets (`backgroundNoise`: name → {@linkcode NoiseClip}).
 * @param options Precision of the noise values.
 * @returns The programs, the batch without `waveform`, the float64 noise
 *   values of the `add` ops and the noise clip names.
 * @throws {Error} "Cannot mix background noise …" as the `augment` stage
 *   when a view mixes a noise clip that was not loaded.
 */
export function planViewStages(
  batch: Batch,
  stages: readonly ViewStage[],
  assets: Readonly<Record<string, unknown>>,
  options: PlanOptions = {},
): ViewPlan {
  const waves = batch.waveform as Float32Array[];
  const noise = noiseOf(assets, stages);
  const names = Object.keys(noise);
  const clips = names.map((n) => noise[n].samples);
  const size = noiseSamples(batch, stages);
  const onGpu = options.noise === "gpu";
  const extra: Extra = {
    data: options.noise === "float32"
      ? new Float32Array(size)
      : onGpu
      ? new Float32Array(0) // allocated at the first value the host draws
      : new Float64Array(size),
    length: 0,
    size,
  };
  // A later augment stage's background mix measures the rows, noise
  // included: then every value is drawn on the host.
  const measuredLater = stages.some((s, i) =>
    s.id === "augment" &&
    stages.slice(i + 1).some((l) =>
      l.id === "augment" &&
      l.options.views.some((v) => v.chain.some((t) => t.type === "background"))
    )
  );
  const chunks = onGpu && !measuredLater ? noiseChunks(size) : undefined;
  let rows: RowState[] = waves.map((w, i) => ({
    source: i,
    ops: [],
    length: w.length,
  }));
  let out: Record<string, unknown> = { ...batch };
  const sourceEnergy = new Map<number, number>();
  const chainCtx = (row: RowState) => ({
    wave: waves[row.source],
    noise,
    names,
    clips,
    extra,
    sourceEnergy,
    chunks,
  });
  for (const s of stages) {
    const b = out.size as number;
    const rates = out.sampleRate as number[];
    if (s.id === "fixed_length") {
      const o = s.options;
      const position = out.phase === "fit" ? o.pad.fit : o.pad.eval;
      rows.forEach((row, i) =>
        fit(
          row,
          o.samples ?? Math.round(o.seconds! * rates[i]),
          position,
          o.clip,
          s.rng,
        )
      );
      continue;
    }
    const o = s.options;
    if (o.mode === "sequence") {
      const chain = o.views.flatMap((v) => v.chain);
      rows.forEach((row, i) =>
        chainOps(row, chain, rates[i], s.rng.child("seq", i), chainCtx(row))
      );
      out = { ...out, view: new Array(b).fill(0), viewNames: ["sequence"] };
      continue;
    }
    const next: Record<string, unknown> = { ...out };
    for (const [key, value] of Object.entries(out)) {
      if (Array.isArray(value) && value.length === b) {
        next[key] = o.views.flatMap(() => value);
      }
    }
    rows = o.views.flatMap((v, vi) =>
      rows.map((r, i) => {
        const row = { source: r.source, ops: r.ops.slice(), length: r.length };
        chainOps(
          row,
          v.chain,
          rates[i],
          s.rng.child(v.name, vi, i),
          chainCtx(row),
        );
        return row;
      })
    );
    next.view = o.views.flatMap((_, vi) => new Array(b).fill(vi));
    next.viewNames = o.views.map((v) => v.name);
    next.size = o.views.length * b;
    out = next;
  }
  delete out.waveform;
  return {
    batch: out as unknown as Batch,
    rows,
    extra: extra.data.length === extra.length || extra.data.length === 0
      ? extra.data
      : extra.data.slice(0, extra.length),
    extraLength: extra.length,
    noiseChunks: chunks ? chunks.table() : new Uint32Array(0),
    noiseNames: names,
  };
}

/** Whether a `background` transform follows `t` in its chain (it measures the noise). */
function mixLater(chain: readonly Transform[], t: Transform): boolean {
  return chain.slice(chain.indexOf(t) + 1).some((u) => u.type === "background");
}

/** The host's noise buffer, allocated (float32, full size) when first needed. */
function hostExtra(extra: Extra): Float64Array | Float32Array {
  return extra.data.length === 0 && extra.size > 0
    ? new Float32Array(extra.size)
    : extra.data;
}

/** The chunk records of `gpu` noise mode, as they are added. */
interface NoiseChunks {
  /** Advances `rng` past `count` draws, recording their chunks. */
  add(rng: Rng, offset: number, count: number, scale: number): void;
  /** The records so far. */
  table(): Uint32Array;
}

function noiseChunks(size: number): NoiseChunks {
  // At most one partial chunk per noise op beyond the full ones.
  let words = new Uint32Array(NOISE_CHUNK_WORDS * 64);
  let used = 0;
  const states = new Uint32Array(4 * (Math.ceil(size / NOISE_CHUNK) + 1));
  const bits = new Float32Array(1);
  const bitsU32 = new Uint32Array(bits.buffer);
  return {
    add(rng, offset, count, scale) {
      const n = Math.ceil(count / NOISE_CHUNK);
      const recorded = n <= states.length / 4 ? states : new Uint32Array(4 * n);
      rng.skipRecording(count, NOISE_CHUNK, recorded, 0);
      if ((used + n) * NOISE_CHUNK_WORDS > words.length) {
        const grown = new Uint32Array(
          Math.max((used + n) * NOISE_CHUNK_WORDS, 2 * words.length),
        );
        grown.set(words.subarray(0, used * NOISE_CHUNK_WORDS));
        words = grown;
      }
      bits[0] = scale;
      for (let k = 0; k < n; k++) {
        const w = (used + k) * NOISE_CHUNK_WORDS;
        words.set(recorded.subarray(4 * k, 4 * k + 4), w);
        words[w + 4] = offset + k * NOISE_CHUNK;
        words[w + 5] = Math.min(NOISE_CHUNK, count - k * NOISE_CHUNK);
        words[w + 6] = bitsU32[0];
      }
      used += n;
    },
    table: () => words.slice(0, used * NOISE_CHUNK_WORDS),
  };
}

/** Runs one program on its source clip (see {@linkcode runPrograms}). */
function runRow(
  source: Float32Array,
  ops: readonly ViewOp[],
  extra: Float64Array | Float32Array,
  noise: readonly Float32Array[],
): Float32Array {
  let y = source;
  for (const op of ops) {
    const n = y.length;
    if (op.input !== n) {
      throw new RangeError(
        `Cannot run a view program: its ${op.kind} op expects ${op.input} samples and gets ${n}; plan the programs from these clips`,
      );
    }
    const out = new Float32Array(op.kind === "place" ? op.length : n);
    switch (op.kind) {
      case "roll":
        out.set(y.subarray(n - op.shift), 0);
        out.set(y.subarray(0, n - op.shift), op.shift);
        break;
      case "place": {
        const from = Math.max(0, -op.head);
        const to = Math.min(n, op.length - op.head);
        if (to > from) out.set(y.subarray(from, to), op.head + from);
        break;
      }
      case "add":
        for (let j = 0; j < n; j++) out[j] = y[j] + extra[op.offset + j];
        break;
      case "mix": {
        const bg = noise[op.noise];
        const m = bg.length;
        for (let j = 0; j < n; j++) {
          out[j] = y[j] + op.gain * bg[(op.start + j) % m];
        }
        break;
      }
    }
    y = out;
  }
  return y === source ? source.slice() : y;
}

/**
 * The reference interpreter of row programs: with float64 `extra` it gives
 * exactly the waveforms the CPU `augment` and `fixed_length` stages compute
 * (each add in float64, rounded to float32 per op, as `lib/transforms.ts`
 * does); with float32 `extra`, within an ulp of the largest term of each
 * sum.
 *
 * @param sources The batch's decoded clips (`RowProgram.source` indexes them).
 * @param rows The programs.
 * @param extra The `add` ops' noise values ({@linkcode ViewPlan.extra}).
 * @param noise The background clips' samples in `noiseNames` order.
 * @returns One new waveform per row, `rows[r].length` samples each.
 * @throws {RangeError} When a program does not fit its clip.
 */
export function runPrograms(
  sources: readonly Float32Array[],
  rows: readonly RowProgram[],
  extra: Float64Array | Float32Array,
  noise: readonly Float32Array[],
): Float32Array[] {
  return rows.map((r) => runRow(sources[r.source], r.ops, extra, noise));
}
