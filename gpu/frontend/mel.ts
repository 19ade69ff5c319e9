/**
 * Log-mel features on the fused engine's WebGPU device (issue 14): the
 * numerics of `lib/mel.ts` (`melFeatures`) as two kernel plans in the style
 * of `gpu/kernels/` (see `gpu/CONVENTIONS.md`).
 *
 * 1. {@linkcode stftMelPlan}: one workgroup (64…256 threads) per (frame, row)
 *    loads the centred, reflect-padded frame times the window (only the
 *    window's support is read), runs a real FFT of `nFft` as an
 *    `nFft / 2`-point complex FFT in workgroup memory (bit-reversed load,
 *    radix-2 stages two at a time as radix-4 passes, one barrier per pass,
 *    twiddles from a storage table, padded arrays against bank conflicts), the
 *    real-FFT post-processing into the power spectrum, each mel band's sparse
 *    weighted sum, `10·log10(max(x, 1e−10))`, and merges the row's peak dB
 *    with one `atomicMax` per workgroup.
 * 2. {@linkcode dbClampPlan}: in place, `max(v, peak − topDb) / scaleDivisor`
 *    on each row's own frames and 0.0 on the padding frames, then resets the
 *    peaks for the next batch.
 *
 * Rows (clips) are the grid's y dimension and never baked into the WGSL, so
 * one compiled pipeline serves every batch size. The constant tables come
 * from {@linkcode melTables}.
 *
 * @module
 */
import type { KernelPlan } from "../runtime.ts";
import { kernelStep, readOnly, readWrite } from "../kernels/bindings.ts";
import {
  checkSize,
  MAX_GRID_DIM,
  WORKGROUP_SIZE as WG,
} from "../kernels/grid.ts";
import { f32Literal } from "../kernels/wgsl.ts";
import {
  filterSpans,
  melFilterbank,
  type MelOptions,
  paddedHann,
} from "../../lib/mel.ts";

/** The constant tables the mel kernels bind (upload once per options). */
export interface MelTables {
  /** `[nFft]` periodic Hann of `winLength` centred in `nFft` (binding "window"). */
  readonly window: Float32Array;
  /**
   * `[nFft / 2][2]` (re, im) of `e^{−2πik/nFft}`, k < nFft / 2, computed in
   * float64 and rounded to float32 (binding "twiddle").
   */
  readonly twiddle: Float32Array;
  /**
   * `[nMels][3]` per mel band: first nonzero FFT bin, bin count (0 for an
   * empty band) and offset of its first weight in `weights` (binding "bands",
   * u32).
   */
  readonly bands: Uint32Array;
  /**
   * The filterbank's nonzero span of each band, concatenated in band order
   * (binding "weights"; at least one element, 0.0, when every band is empty,
   * since WebGPU cannot bind an empty buffer).
   */
  readonly weights: Float32Array;
}

/**
 * The tables of the mel kernels for `options` (its `sampleRateHz`, `nFft`,
 * `winLength`, `nMels`, `fMinHz`, `fMaxHz`): the window, the FFT twiddles and
 * the filterbank of `lib/mel.ts` `melFilterbank` stored sparsely (bins
 * outside each band's first…last nonzero bin are exactly 0 there).
 *
 * @param options Mel options (sizes in samples, frequencies in Hz).
 * @returns The tables; see {@linkcode MelTables} for shapes.
 */
export function melTables(options: MelOptions): MelTables {
  const { nFft, nMels } = options;
  const window = Float32Array.from(paddedHann(options.winLength, nFft));
  const twiddle = new Float32Array(nFft);
  for (let k = 0; k < nFft / 2; k++) {
    const angle = (2 * Math.PI * k) / nFft;
    twiddle[2 * k] = Math.cos(angle);
    twiddle[2 * k + 1] = -Math.sin(angle);
  }
  const bands = new Uint32Array(3 * nMels);
  const spans: number[] = [];
  filterSpans(melFilterbank(options), nFft / 2 + 1, nMels).forEach(
    ({ start, weights }, m) => {
      bands[3 * m] = start;
      bands[3 * m + 1] = weights.length;
      bands[3 * m + 2] = spans.length;
      spans.push(...weights);
    },
  );
  const weights = Float32Array.from(spans.length ? spans : [0]);
  return { window, twiddle, bands, weights };
}

/** The binding names of {@linkcode stftMelPlan} and {@linkcode melFrontEndPlan}. */
export type MelBindings =
  | "wave"
  | "lengths"
  | "window"
  | "twiddle"
  | "bands"
  | "weights"
  | "peak"
  | "out";

/** Sizes of the STFT→mel kernel (all in samples, frames or bands). */
export interface StftMelOptions {
  /** FFT size, a power of two ≥ 4. */
  readonly nFft: number;
  /** Window length in samples, ≤ nFft. */
  readonly winLength: number;
  /** Hop in samples. */
  readonly hopLength: number;
  /** Mel bands. */
  readonly nMels: number;
  /** Output frames per row, `Tout` (the stage's `targetFrames`). */
  readonly frames: number;
  /** Samples between the starts of consecutive rows in "wave". */
  readonly rowStride: number;
  /** The device's `maxComputeWorkgroupStorageSize`, in bytes. */
  readonly workgroupStorageBytes: number;
  /** Rows of the batch (grid y only, default 1; not in the WGSL). */
  readonly rows?: number;
  /**
   * Workgroups along x, i.e. frames computed per row (grid only, default
   * `frames`; not in the WGSL). Pass `max_r frameCount(lengths[r],
   * hopLength)` (`lib/mel.ts`): a row with more frames than `frames` then
   * still counts its cropped frames towards its peak, as `lib/mel.ts` does.
   * Must be ≥ min(frames, every row's own frame count), else frames are left
   * unwritten; workgroups past a row's own count return at once.
   */
  readonly gridFrames?: number;
}

/**
 * Threads per workgroup of the STFT→mel kernel: one per radix-4 butterfly
 * (nFft / 8), between 64 and 256 (128 for nFft 1024, so a 1 s SC1 clip's
 * frames keep every thread busy and twice as many workgroups fit an SM).
 */
export function stftMelThreads(nFft: number): number {
  return Math.max(64, Math.min(WG, nFft / 8));
}

/** Bytes of workgroup memory the STFT→mel kernel declares for `nFft`. */
export function stftMelWorkgroupBytes(nFft: number): number {
  const m = nFft / 2;
  // zr, zi: m + m/32 each (padded); pw: m + 1; red: one per thread;
  // lenShared: 1
  // all 4-byte words.
  return 4 * (2 * (m + (m >> 5)) + m + 2 + stftMelThreads(nFft));
}

/**
 * Why the fused STFT→mel kernel cannot run with these sizes, or undefined
 * when it can (nFft a power of two ≥ 4 whose workgroup arrays fit).
 */
function stftMelRefusal(
  o: Pick<StftMelOptions, "nFft" | "workgroupStorageBytes">,
): string | undefined {
  const n = o.nFft;
  if (!Number.isInteger(n) || n < 4 || (n & (n - 1)) !== 0) {
    return `nFft ${n} is not a power of two ≥ 4`;
  }
  const bytes = stftMelWorkgroupBytes(n);
  if (bytes > o.workgroupStorageBytes) {
    return `nFft ${n} needs ${bytes} bytes of workgroup memory, over the device's maxComputeWorkgroupStorageSize of ${o.workgroupStorageBytes}`;
  }
  return undefined;
}

/**
 * Whether {@linkcode stftMelPlan} can build for these sizes (nFft a power
 * of two and its workgroup arrays within `workgroupStorageBytes`); when
 * false, run the front end's mel stage on tfjs instead.
 *
 * @param o The FFT size and the device's workgroup memory limit in bytes.
 */
export function stftMelFits(
  o: Pick<StftMelOptions, "nFft" | "workgroupStorageBytes">,
): boolean {
  return stftMelRefusal(o) === undefined;
}

/**
 * The grid of {@linkcode stftMelPlan}: one workgroup per (frame, row).
 *
 * @param frames Frames computed per row (x; see `gridFrames`).
 * @param rows Rows of the batch (y).
 * @returns `[frames, rows, 1]`.
 * @throws {RangeError} When either exceeds 65,535 or is < 1.
 */
export function stftMelWorkgroups(
  frames: number,
  rows: number,
): [number, number, number] {
  checkSize("stft frames", frames);
  checkSize("stft rows", rows);
  if (frames > MAX_GRID_DIM || rows > MAX_GRID_DIM) {
    throw new RangeError(
      `Cannot build kernel: stftMel grid of ${frames} frames × ${rows} rows exceeds 65,535 along one dimension; split the batch`,
    );
  }
  return [frames, rows, 1];
}

/** WGSL: f32 → u32 whose unsigned order is the float order. */
const ORDERED_U32 = `fn orderedBits(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}`;

/** WGSL: the inverse of `orderedBits`. */
const FROM_ORDERED_U32 = `fn fromOrdered(u: u32) -> f32 {
  return bitcast<f32>(select(~u, u & 0x7fffffffu, (u & 0x80000000u) != 0u));
}`;

/** Host form of the kernels' order-preserving float → u32 encoding of "peak". */
export function orderedBits(x: number): number {
  const b = new Uint32Array(new Float32Array([x]).buffer)[0];
  return (b & 0x80000000 ? ~b : b | 0x80000000) >>> 0;
}

/** Host inverse of {@linkcode orderedBits} (a "peak" entry → dB). */
export function fromOrderedBits(u: number): number {
  const b = (u & 0x80000000 ? u & 0x7fffffff : ~u) >>> 0;
  return new Float32Array(new Uint32Array([b]).buffer)[0];
}

/** 10 / ln 10 (dB per natural log of power). */
const DB_PER_LN = 10 / Math.LN10;

/**
 * Mel power in dB of every (frame, row) of a batch of clips: for row r
 * (samples `wave[r·rowStride … r·rowStride + lengths[r] − 1]`) and frame
 * t < min(frames, 1 + ⌊lengths[r] / hopLength⌋), the centred, reflect-padded
 * frame times the window, its power spectrum (nFft / 2 + 1 bins), each mel
 * band's weighted sum and `10·log10(max(x, 1e−10))`, exactly as
 * `lib/mel.ts` before the top-dB clamp. Frames t ≥ the row's own frame count
 * are not written ({@linkcode dbClampPlan} zeroes them).
 *
 * Bindings:
 * - "wave" (read, f32): the samples, row r starting at `r·rowStride`;
 * - "lengths" (read, u32 `[rows]`): samples of each row, each > nFft / 2
 *   (reflect padding) and ≤ rowStride;
 * - "window", "twiddle", "bands" (u32), "weights" (read): {@linkcode melTables};
 * - "peak" (read_write, u32 `[rows]`, must hold 0 before the first batch):
 *   atomicMax-merged row maximum dB, encoded by {@linkcode orderedBits};
 * - "out" (read_write, f32 `[rows][frames][nMels]`, the tokens layout): dB.
 *
 * One workgroup of {@linkcode stftMelThreads}`(nFft)` threads per (frame, row) on the grid
 * {@linkcode stftMelWorkgroups}`(gridFrames, rows)`; the WGSL text does not
 * depend on `rows` or `gridFrames`.
 *
 * @param o Sizes.
 * @returns The plan (one step).
 * @throws {RangeError} "Cannot build kernel: …" on bad sizes, or when the
 *   fused front end cannot run (nFft not a power of two, workgroup memory
 *   over the limit; check {@linkcode stftMelFits} first).
 */
export function stftMelPlan(
  o: StftMelOptions,
): KernelPlan<MelBindings> {
  const refusal = stftMelRefusal(o);
  if (refusal) {
    throw new RangeError(
      `Cannot build kernel: the fused mel front end cannot run: ${refusal}; compute mel on tfjs instead`,
    );
  }
  const { nFft, winLength, hopLength, nMels, frames, rowStride } = o;
  checkSize("winLength", winLength);
  checkSize("hopLength", hopLength);
  checkSize("nMels", nMels);
  checkSize("frames", frames);
  checkSize("rowStride", rowStride, nFft / 2 + 1);
  if (winLength > nFft) {
    throw new RangeError(
      `Cannot build kernel: winLength ${winLength} exceeds nFft ${nFft}`,
    );
  }
  const m = nFft / 2;
  const logM = Math.log2(m);
  const lo = Math.floor((nFft - winLength) / 2);
  const hi = lo + winLength;
  const padded = m + (m >> 5);
  const wg = stftMelThreads(nFft);
  const workgroups = stftMelWorkgroups(o.gridFrames ?? frames, o.rows ?? 1);
  const list = [
    readOnly("wave"),
    readOnly("lengths", "u32"),
    readOnly("window"),
    readOnly("twiddle"),
    readOnly("bands", "u32"),
    readOnly("weights"),
    readWrite("peak", "atomic<u32>"),
    readWrite("out"),
  ] as const;
  // Mel bands: with nMels ≤ threads / 2, G = 2^⌊log2(threads / nMels)⌋ share a
  // band's span (strided), their partial sums meet in `red`; else one
  // thread per band.
  const lanes = nMels <= wg / 2 ? 2 ** Math.floor(Math.log2(wg / nMels)) : 1;
  // Threads holding a band's dB (the rest hold −3e38): the max tree's width.
  const treeSize = Math.min(wg, 2 ** Math.ceil(Math.log2(Math.max(2, nMels))));
  const dbOf = (acc: string) =>
    `${f32Literal(DB_PER_LN)} * log(max(${acc}, 1e-10))`;
  const bandsWgsl = lanes === 1
    ? `  var mx = -3.0e38;
  for (var mel = li; mel < MELS; mel += ${wg}u) {
    let first = bands[3u * mel];
    let count = bands[3u * mel + 1u];
    let off = bands[3u * mel + 2u];
    var acc = 0.0;
    for (var i = 0u; i < count; i++) {
      acc += pw[first + i] * weights[off + i];
    }
    let db = ${dbOf("acc")};
    mx = max(mx, db);
    if (t < FRAMES) { out[(r * FRAMES + t) * MELS + mel] = db; }
  }`
    : `  let lane = li % ${lanes}u;
  let band = li / ${lanes}u;
  var part = 0.0;
  if (band < MELS) {
    let first = bands[3u * band];
    let count = bands[3u * band + 1u];
    let off = bands[3u * band + 2u];
    for (var i = lane; i < count; i += ${lanes}u) {
      part += pw[first + i] * weights[off + i];
    }
  }
  red[li] = part;
  workgroupBarrier();
  var mx = -3.0e38;
  if (li < MELS) {
    var acc = 0.0;
    for (var g = 0u; g < ${lanes}u; g++) { acc += red[li * ${lanes}u + g]; }
    let db = ${dbOf("acc")};
    mx = db;
    if (t < FRAMES) { out[(r * FRAMES + t) * MELS + li] = db; }
  }
  workgroupBarrier();`;
  // Load: each thread reads consecutive samples j (coalesced) and puts
  // sample j of the frame into z[rev(j / 2)] (real part for even j).
  const code = (decls: string) =>
    `// stftMel
${decls}
const N = ${nFft}u;
const M = ${m}u;
const LO = ${lo};
const HI = ${hi};
const HOP = ${hopLength}u;
const FRAMES = ${frames}u;
const STRIDE = ${rowStride}u;
const MELS = ${nMels}u;
var<workgroup> zr: array<f32, ${padded}>;
var<workgroup> zi: array<f32, ${padded}>;
var<workgroup> pw: array<f32, ${m + 1}>;
var<workgroup> red: array<f32, ${wg}>;
var<workgroup> lenShared: u32;
${ORDERED_U32}
// Workgroup index of complex element i: one pad word per 32 (fewer bank
// conflicts on the bit-reversed stores and the short-stride stages).
fn pad(i: u32) -> u32 { return i + (i >> 5u); }
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let t = wid.x;
  let r = wid.y;
  if (li == 0u) { lenShared = lengths[r]; }
  let len = workgroupUniformLoad(&lenShared);
  if (t >= 1u + len / HOP) { return; }
  let n = i32(len);
  let start = i32(t * HOP) - ${m};
  let base = r * STRIDE;
  for (var j = li; j < N; j += ${wg}u) {
    var x = 0.0;
    let ji = i32(j);
    if (ji >= LO && ji < HI) {
      var s = start + ji;
      if (s < 0) { s = -s; }
      if (s >= n) { s = 2 * (n - 1) - s; }
      // In the row even when lengths[r] ≤ nFft / 2 breaks the contract.
      s = clamp(s, 0, max(n - 1, 0));
      x = wave[base + u32(s)] * window[j];
    }
    let p = pad(reverseBits(j >> 1u) >> ${32 - logM}u);
    if ((j & 1u) == 0u) { zr[p] = x; } else { zi[p] = x; }
  }
  workgroupBarrier();
  // Decimation in time, in place, on the bit-reversed data: radix-2 stage s
  // joins blocks of h = 2^s with twiddles W_2h^j. ${
      logM % 2 ? "logM is odd: stage 0 (twiddle 1) alone first, then" : "Stages"
    } two at a
  // time (s, s + 1) as one radix-4 pass: one barrier per two stages.
${
      logM % 2
        ? `  for (var b = li; b < ${m / 2}u; b += ${wg}u) {
    let a = pad(2u * b);
    let c = pad(2u * b + 1u);
    let ar = zr[a];
    let ai = zi[a];
    let cr = zr[c];
    let ci = zi[c];
    zr[a] = ar + cr;
    zi[a] = ai + ci;
    zr[c] = ar - cr;
    zi[c] = ai - ci;
  }
  workgroupBarrier();
`
        : ""
    }  for (var s = ${logM % 2}u; s < ${logM}u; s += 2u) {
    let h = 1u << s;
    for (var b = li; b < ${m / 4}u; b += ${wg}u) {
      let j = b & (h - 1u);
      let i0 = ((b >> s) << (s + 2u)) + j;
      let p0 = pad(i0);
      let p1 = pad(i0 + h);
      let p2 = pad(i0 + 2u * h);
      let p3 = pad(i0 + 3u * h);
      // W_2h^j and W_4h^j are W_nFft^(j·nFft/2h) and W_nFft^(j·nFft/4h).
      let t1 = j << (${logM}u - s);
      let t2 = j << (${logM - 1}u - s);
      let w1r = twiddle[2u * t1];
      let w1i = twiddle[2u * t1 + 1u];
      let w2r = twiddle[2u * t2];
      let w2i = twiddle[2u * t2 + 1u];
      let x0r = zr[p0];
      let x0i = zi[p0];
      let x1r = zr[p1];
      let x1i = zi[p1];
      let x2r = zr[p2];
      let x2i = zi[p2];
      let x3r = zr[p3];
      let x3i = zi[p3];
      // Stage s: (x0, x1) and (x2, x3) with W_2h^j.
      let ur = w1r * x1r - w1i * x1i;
      let ui = w1r * x1i + w1i * x1r;
      let vr = w1r * x3r - w1i * x3i;
      let vi = w1r * x3i + w1i * x3r;
      let b0r = x0r + ur;
      let b0i = x0i + ui;
      let b1r = x0r - ur;
      let b1i = x0i - ui;
      let b2r = x2r + vr;
      let b2i = x2i + vi;
      let b3r = x2r - vr;
      let b3i = x2i - vi;
      // Stage s + 1: (b0, b2) with W_4h^j, (b1, b3) with W_4h^(j+h) = −i·W_4h^j.
      let qr = w2r * b2r - w2i * b2i;
      let qi = w2r * b2i + w2i * b2r;
      let er = w2r * b3r - w2i * b3i;
      let ei = w2r * b3i + w2i * b3r;
      zr[p0] = b0r + qr;
      zi[p0] = b0i + qi;
      zr[p2] = b0r - qr;
      zi[p2] = b0i - qi;
      zr[p1] = b1r + ei;
      zi[p1] = b1i - er;
      zr[p3] = b1r - ei;
      zi[p3] = b1i + er;
    }
    workgroupBarrier();
  }
  // Real-FFT post-processing: X_k = E_k + W^k O_k, X_{M−k} = conj(E_k − W^k O_k)
  // with E_k = (Z_k + conj Z_{M−k}) / 2, O_k = −i (Z_k − conj Z_{M−k}) / 2.
  for (var k = li; k <= ${m / 2}u; k += ${wg}u) {
    if (k == 0u) {
      let e = zr[0] + zi[0];
      let o = zr[0] - zi[0];
      pw[0] = e * e;
      pw[M] = o * o;
    } else {
      let pk = pad(k);
      let pm = pad(M - k);
      let ar = zr[pk];
      let ai = zi[pk];
      let br = zr[pm];
      let bi = -zi[pm];
      let er = 0.5 * (ar + br);
      let ei = 0.5 * (ai + bi);
      let or_ = 0.5 * (ai - bi);
      let oi = -0.5 * (ar - br);
      let wr = twiddle[2u * k];
      let wi = twiddle[2u * k + 1u];
      let pr = wr * or_ - wi * oi;
      let pi = wr * oi + wi * or_;
      let xr = er + pr;
      let xi = ei + pi;
      let yr = er - pr;
      let yi = ei - pi;
      pw[k] = xr * xr + xi * xi;
      pw[M - k] = yr * yr + yi * yi;
    }
  }
  workgroupBarrier();
${bandsWgsl}
  red[li] = mx;
  workgroupBarrier();
  // Only the first ${treeSize} threads hold band values.
  for (var h = ${treeSize / 2}u; h > 0u; h = h >> 1u) {
    if (li < h) { red[li] = max(red[li], red[li + h]); }
    workgroupBarrier();
  }
  if (li == 0u) { atomicMax(&peak[r], orderedBits(red[0])); }
}
`;
  return { steps: [kernelStep("stftMel", workgroups, list, code)] };
}

/** Sizes and scaling of the dB clamp (as `lib/mel.ts` `MelOptions`). */
export interface DbClampOptions {
  /** Output frames per row, `Tout`. */
  readonly frames: number;
  /** Mel bands. */
  readonly nMels: number;
  /** Dynamic range kept below each row's peak, in dB (reference 80). */
  readonly topDb: number;
  /** Divisor of the dB values (reference 40). */
  readonly scaleDivisor: number;
  /** Hop in samples (a row's own frame count is `1 + ⌊lengths[r] / hop⌋`). */
  readonly hopLength: number;
  /** Rows of the batch (grid y only, default 1; not in the WGSL). */
  readonly rows?: number;
}

/**
 * The grid of {@linkcode dbClampPlan}'s first step for `rows` rows.
 *
 * @param o Frames and bands per row.
 * @param rows Rows of the batch.
 * @returns `[ceil(frames · nMels / 256), rows, 1]`.
 */
export function dbClampWorkgroups(
  o: Pick<DbClampOptions, "frames" | "nMels">,
  rows: number,
): [number, number, number] {
  checkSize("dbClamp rows", rows);
  const x = Math.ceil((o.frames * o.nMels) / WG);
  if (x > MAX_GRID_DIM || rows > MAX_GRID_DIM) {
    throw new RangeError(
      `Cannot build kernel: dbClamp grid of ${x} × ${rows} workgroups exceeds 65,535 along one dimension; split the batch`,
    );
  }
  return [x, rows, 1];
}

/**
 * The per-row top-dB clamp, scaling and frame padding of `lib/mel.ts`, in
 * place on the dB of {@linkcode stftMelPlan}: for row r and frame
 * t < 1 + ⌊lengths[r] / hopLength⌋, `out = max(out, peak_r − topDb) /
 * scaleDivisor`; later frames (padding) become 0.0. A second step then
 * resets `peak[r]` to 0 so the next batch's {@linkcode stftMelPlan} starts
 * clean (dispatches of one pass are ordered, so it runs after every read).
 *
 * Bindings: "out" (read_write, f32 `[rows][frames][nMels]`), "peak"
 * (read_write, u32 `[rows]`, {@linkcode orderedBits} of the row's peak dB;
 * 0 afterwards), "lengths" (read, u32 `[rows]`, samples per row).
 * Grids: {@linkcode dbClampWorkgroups} and `[1, rows, 1]`; the WGSL text does
 * not depend on `rows`.
 *
 * @param o Sizes and scaling.
 * @returns The plan (two steps).
 * @throws {RangeError} On bad sizes or a non-positive divisor or top dB.
 */
export function dbClampPlan(
  o: DbClampOptions,
): KernelPlan<"out" | "peak" | "lengths"> {
  checkSize("frames", o.frames);
  checkSize("nMels", o.nMels);
  checkSize("hopLength", o.hopLength);
  for (
    const [what, v] of [["topDb", o.topDb], [
      "scaleDivisor",
      o.scaleDivisor,
    ]] as const
  ) {
    if (!Number.isFinite(v) || v <= 0) {
      throw new RangeError(
        `Cannot build kernel: dbClamp ${what} must be a finite number > 0, got ${v}`,
      );
    }
  }
  const rows = o.rows ?? 1;
  const per = o.frames * o.nMels;
  const clamp = kernelStep(
    "dbClamp",
    dbClampWorkgroups(o, rows),
    [readWrite("out"), readWrite("peak", "u32"), readOnly("lengths", "u32")],
    (decls) =>
      `// dbClamp
${decls}
${FROM_ORDERED_U32}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let e = wid.x * ${WG}u + li;
  if (e >= ${per}u) { return; }
  let r = wid.y;
  let t = e / ${o.nMels}u;
  let own = 1u + lengths[r] / ${o.hopLength}u;
  let i = r * ${per}u + e;
  var v = 0.0;
  if (t < own) {
    let floor = fromOrdered(peak[r]) - ${f32Literal(o.topDb)};
    v = max(out[i], floor) / ${f32Literal(o.scaleDivisor)};
  }
  out[i] = v;
}
`,
  );
  const reset = kernelStep(
    "dbClampResetPeak",
    [1, rows, 1],
    [readWrite("peak", "u32")],
    (decls) =>
      `// dbClampResetPeak
${decls}
@compute @workgroup_size(1)
fn main(@builtin(workgroup_id) wid: vec3<u32>) {
  peak[wid.y] = 0u;
}
`,
  );
  return { steps: [clamp, reset] };
}

/** Sizes of the whole log-mel front end of one batch (see {@linkcode melFrontEndPlan}). */
export interface MelFrontEndOptions extends StftMelOptions {
  /** Dynamic range kept below each row's peak, in dB (reference 80). */
  readonly topDb: number;
  /** Divisor of the dB values (reference 40). */
  readonly scaleDivisor: number;
}

/**
 * The whole log-mel stage of `lib/mel.ts` (`melFeatures` with
 * `targetFrames = frames`) as one plan: {@linkcode stftMelPlan} then
 * {@linkcode dbClampPlan} (which resets "peak" to 0 at its end, so the plan
 * can be replayed batch after batch on the same buffers). Bindings: those of
 * {@linkcode stftMelPlan}; "out" ends as the features `[rows][frames][nMels]`.
 *
 * @param o Sizes, the top dB and the divisor.
 * @returns The plan (three steps).
 * @throws {RangeError} As {@linkcode stftMelPlan} and {@linkcode dbClampPlan}.
 */
export function melFrontEndPlan(
  o: MelFrontEndOptions,
): KernelPlan<MelBindings> {
  const stft = stftMelPlan(o);
  const clamp = dbClampPlan({
    frames: o.frames,
    nMels: o.nMels,
    topDb: o.topDb,
    scaleDivisor: o.scaleDivisor,
    hopLength: o.hopLength,
    rows: o.rows,
  });
  return { steps: [...stft.steps, ...clamp.steps] };
}
