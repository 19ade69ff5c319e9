/**
 * Mel front-end benchmark: features per second for Speech-Commands-sized
 * (1 s at 16 kHz) and CochlScene-sized (10 s at 44.1 kHz) batches of 32 on
 * the chosen backend, and — with `--fixtures <dir>` — the parity of the four
 * reference cases on that backend (max abs feature error against torchaudio).
 *
 * @module
 */
import { join, resolve } from "node:path";
import { pathToFileURL as toFileUrl } from "node:url";
import { parseArgs } from "node:util";
import { selectBackend } from "../pipeline/backend.ts";
import type { BackendChoice } from "../pipeline/backend.ts";
import { createRng } from "../pipeline/rng.ts";
import { melFeatures } from "../lib/mel.ts";
import type { MelOptions, StftMethod } from "../lib/mel.ts";
import { readWav } from "../lib/wav.ts";
import { loadMelCases, melOptionsOf, readMelBlob } from "../lib/mel_fixture.ts";

const CASES: { name: string; seconds: number; options: MelOptions }[] = [
  {
    name: "SC: 32 × 1 s at 16 kHz, nFft 1024, 80 mels",
    seconds: 1,
    options: {
      sampleRateHz: 16000,
      nFft: 1024,
      winLength: 400,
      hopLength: 155,
      nMels: 80,
    },
  },
  {
    name: "CS: 32 × 10 s at 44.1 kHz, nFft 2048, 64 mels",
    seconds: 10,
    options: {
      sampleRateHz: 44100,
      nFft: 2048,
      winLength: 800,
      hopLength: 300,
      nMels: 64,
    },
  },
];

/**
 * Runs the mel benchmark.
 *
 * @param args `--backend auto|webgpu|cpu`, `--batch N` (32), `--repeats N` (3), `--fixtures DIR`.
 */
export async function benchMel(args: string[]): Promise<unknown> {
  const { values } = parseArgs({
    args,
    options: {
      backend: { type: "string", default: "auto" },
      batch: { type: "string", default: "32" },
      repeats: { type: "string", default: "3" },
      fixtures: { type: "string" },
    },
  });
  const { tf, backend } = await selectBackend(values.backend as BackendChoice);
  const method: StftMethod = backend.name === "webgpu" ? "matmul" : "fft";
  const batch = Number(values.batch);
  const repeats = Number(values.repeats);
  const rng = createRng("bench/mel", 0);
  const results = [];
  for (const c of CASES) {
    const length = Math.round(c.seconds * c.options.sampleRateHz);
    const waves = Array.from(
      { length: batch },
      () => Float32Array.from({ length }, () => rng.next() - 0.5),
    );
    const once = async () => {
      const t0 = performance.now();
      const f = tf.tidy(() => melFeatures(tf, waves, c.options, method));
      const sum = tf.tidy(() => f.sum());
      await sum.data(); // waits for the GPU
      tf.dispose([f, sum]);
      return performance.now() - t0;
    };
    const firstMs = await once();
    const times: number[] = [];
    for (let r = 0; r < repeats; r++) times.push(await once());
    const ms = times.sort((a, b) => a - b)[Math.floor(times.length / 2)];
    results.push({
      case: c.name,
      method,
      firstBatchMs: Math.round(firstMs),
      medianBatchMs: Number(ms.toFixed(1)),
      clipsPerSecond: Math.round((batch / ms) * 1000),
    });
    backend.checkErrors();
  }
  let parity: unknown;
  if (values.fixtures) {
    const root = toFileUrl(resolve(values.fixtures) + "/");
    parity = {};
    for (const [name, c] of Object.entries(await loadMelCases(root))) {
      const wav = await readWav(join(values.fixtures, c.wav));
      const ref = await readMelBlob(root, `${name}.feature.f32`);
      const f = tf.tidy(() =>
        melFeatures(tf, [wav.channels[0]], melOptionsOf(c), method)
      );
      const got = await f.data();
      f.dispose();
      let err = 0;
      for (let i = 0; i < ref.length; i++) {
        err = Math.max(err, Math.abs(got[i] - ref[i]));
      }
      (parity as Record<string, unknown>)[name] = {
        featureMaxAbsError: err,
        withinTolerance: err <= 2e-3,
      };
    }
  }
  return {
    bench: "mel",
    backend: backend.name,
    adapter: backend.adapter?.description ?? null,
    reason: backend.reason,
    batch,
    results,
    ...(parity ? { parity } : {}),
  };
}
