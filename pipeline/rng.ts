/**
 * Seeded, splittable random streams. Every random choice in a run (shuffles,
 * augmentation, initialisation) draws from a stream derived from the spec's
 * seed and a label, so runs repeat exactly and stages do not disturb each
 * other's sequences. Generator: sfc32, seeded by hashing `seed` and the labels.
 *
 * @module
 */

/** A seeded random stream. */
export interface Rng {
  /** Uniform float in [0, 1). */
  next(): number;
  /** Uniform integer in [0, n). */
  int(n: number): number;
  /** Standard normal sample (Box–Muller). */
  normal(): number;
  /**
   * Writes `scale·next()` to `out[offset … offset + count − 1]`: the same
   * values, from the same state, as that many calls of {@linkcode next}
   * (the product in float64, stored as `out`'s type), several times faster.
   */
  fillUniform(
    out: Float32Array | Float64Array,
    scale: number,
    offset?: number,
    count?: number,
  ): void;
  /**
   * Advances the stream by `count` draws of {@linkcode next} without
   * computing them, writing the generator state (the four words
   * {@linkcode state} returns) before draws 0, `every`, 2·`every`, … to
   * `out` from word `at` — so another processor (the GPU front end) can
   * produce exactly those draws in parallel chunks.
   *
   * @returns The number of states written (`ceil(count / every)`).
   */
  skipRecording(
    count: number,
    every: number,
    out: Uint32Array,
    at?: number,
  ): number;
  /** A derived, independent stream for a sub-task; depends only on the labels and seed, not on how far this stream has advanced. */
  child(...labels: (string | number)[]): Rng;
  /** The generator state, for checkpoints. */
  state(): readonly number[];
}

/** 128-bit string hash (cyrb128), used to seed sfc32 from labels. */
function hash128(text: string): [number, number, number, number] {
  let h1 = 1779033703;
  let h2 = 3144134277;
  let h3 = 1013904242;
  let h4 = 2773480762;
  for (let i = 0; i < text.length; i++) {
    const k = text.charCodeAt(i);
    h1 = h2 ^ Math.imul(h1 ^ k, 597399067);
    h2 = h3 ^ Math.imul(h2 ^ k, 2869860233);
    h3 = h4 ^ Math.imul(h3 ^ k, 951274213);
    h4 = h1 ^ Math.imul(h4 ^ k, 2716044179);
  }
  h1 = Math.imul(h3 ^ (h1 >>> 18), 597399067);
  h2 = Math.imul(h4 ^ (h2 >>> 22), 2869860233);
  h3 = Math.imul(h1 ^ (h3 >>> 17), 951274213);
  h4 = Math.imul(h2 ^ (h4 >>> 19), 2716044179);
  h1 ^= h2 ^ h3 ^ h4;
  h2 ^= h1;
  h3 ^= h1;
  h4 ^= h1;
  return [h1 >>> 0, h2 >>> 0, h3 >>> 0, h4 >>> 0];
}

/**
 * Creates a stream from a saved state (see {@linkcode Rng.state}).
 *
 * @param state Four unsigned 32-bit words.
 * @param label The label the stream was created with (its children derive from it).
 * @param seed The seed the stream was created with (its children derive from it).
 */
export function rngFromState(
  state: readonly number[],
  label = "",
  seed = 0,
): Rng {
  return fromWords(state, label, seed, 0);
}

function fromWords(
  state: readonly number[],
  label: string,
  seed: number,
  warmUp: number,
): Rng {
  let [a, b, c, d] = state.map((x) => x >>> 0);
  const nextU32 = (): number => {
    a >>>= 0;
    b >>>= 0;
    c >>>= 0;
    d >>>= 0;
    const t = (a + b) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    d = (d + 1) | 0;
    const r = (t + d) | 0;
    c = (c + r) | 0;
    return r >>> 0;
  };
  const rng: Rng = {
    next: () => nextU32() / 4294967296,
    int: (n) => Math.floor((nextU32() / 4294967296) * n),
    normal: () => {
      // One Box–Muller draw per call (no cached spare), so state() is complete.
      let u = 0;
      while (u === 0) u = nextU32() / 4294967296;
      const v = nextU32() / 4294967296;
      return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
    },
    fillUniform: (out, scale, offset = 0, count = out.length - offset) => {
      // sfc32 inlined on local words: the same sequence as nextU32.
      let [x, y, z, w] = [a | 0, b | 0, c | 0, d | 0];
      const end = offset + count;
      for (let i = offset; i < end; i++) {
        const t = (x + y) | 0;
        x = y ^ (y >>> 9);
        y = (z + (z << 3)) | 0;
        z = (z << 21) | (z >>> 11);
        w = (w + 1) | 0;
        const r = (t + w) | 0;
        z = (z + r) | 0;
        out[i] = scale * ((r >>> 0) / 4294967296);
      }
      [a, b, c, d] = [x >>> 0, y >>> 0, z >>> 0, w >>> 0];
    },
    skipRecording: (count, every, out, at = 0) => {
      let [x, y, z, w] = [a | 0, b | 0, c | 0, d | 0];
      let k = at;
      for (let start = 0; start < count; start += every) {
        out[k++] = x >>> 0;
        out[k++] = y >>> 0;
        out[k++] = z >>> 0;
        out[k++] = w >>> 0;
        const end = Math.min(count, start + every);
        for (let i = start; i < end; i++) {
          const t = (x + y) | 0;
          x = y ^ (y >>> 9);
          y = (z + (z << 3)) | 0;
          z = (z << 21) | (z >>> 11);
          w = (w + 1) | 0;
          z = (z + ((t + w) | 0)) | 0;
        }
      }
      [a, b, c, d] = [x >>> 0, y >>> 0, z >>> 0, w >>> 0];
      return (k - at) / 4;
    },
    child: (...labels) => createRng(`${label}/${labels.join("/")}`, seed),
    state: () => [a >>> 0, b >>> 0, c >>> 0, d >>> 0],
  };
  // Warm up: sfc32 needs a few rounds to mix a freshly hashed seed.
  for (let i = 0; i < warmUp; i++) nextU32();
  return rng;
}

/**
 * Creates a seeded stream.
 *
 * @param label What the stream is for, e.g. `"stage:train"`.
 * @param seed The run's seed (an integer).
 */
export function createRng(label: string, seed: number): Rng {
  return fromWords(hash128(`${seed}:${label}`), label, seed, 12);
}
