/**
 * Benchmark of the fused front end's log-mel kernels (`gpu/frontend/mel.ts`)
 * at the presets' batch shapes: `stftMel` + `dbClamp` on the engine's WebGPU
 * device for a batch of `--rows` clips (default 128 = 4 views × 32), the
 * wall time per batch queued back to back, the per-kernel GPU time from
 * timestamp queries where the device has them, and row 0's features against
 * `lib/mel.ts` (`melPower` and `melFeatures`' dB steps; max abs error).
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  createRuntime,
  type Dispatch,
  planRegions,
  type Region,
  requestEngineDevice,
} from "../gpu/runtime.ts";
import {
  melFrontEndPlan,
  melTables,
  stftMelFits,
} from "../gpu/frontend/mel.ts";
import { frameCount, type MelOptions, melPower } from "../lib/mel.ts";
import { createRng } from "../pipeline/rng.ts";

/** The mel stages of presets/sc1.yaml and presets/cs.yaml. */
const PRESETS: Record<
  string,
  { samples: number; options: MelOptions & { targetFrames: number } }
> = {
  sc1: {
    samples: 16000,
    options: {
      sampleRateHz: 16000,
      nFft: 1024,
      winLength: 400,
      hopLength: 155,
      nMels: 80,
      topDb: 80,
      scaleDivisor: 40,
      targetFrames: 104,
    },
  },
  cs: {
    samples: 441000,
    options: {
      sampleRateHz: 44100,
      nFft: 2048,
      winLength: 800,
      hopLength: 300,
      nMels: 64,
      topDb: 80,
      scaleDivisor: 40,
      targetFrames: 1471,
    },
  },
};

/**
 * `lib/mel.ts`'s features of one clip in the kernels' `[frames][nMels]`
 * layout, from `melPower` (fft.js, float64) and the dB steps of
 * `melFeatures` (no tfjs, so the bench never switches backends).
 */
function referenceFeatures(
  wave: Float32Array,
  options: MelOptions & { targetFrames: number },
): Float32Array {
  const power = melPower(wave, options);
  const db = power.map((p) => 10 * Math.log10(Math.max(p, 1e-10)));
  const peak = db.reduce((a, b) => Math.max(a, b), -Infinity);
  const floor = peak - (options.topDb ?? 80);
  const out = new Float32Array(options.targetFrames * options.nMels);
  const n = Math.min(out.length, db.length);
  for (let i = 0; i < n; i++) {
    out[i] = Math.max(db[i], floor) / (options.scaleDivisor ?? 40);
  }
  return out;
}

/**
 * Runs the fused mel benchmark.
 *
 * @param args `--preset sc1,cs`, `--rows N` (128), `--repeats N` (20).
 * @returns One JSON-ready object: per preset, ms per batch (wall, queued back
 *   to back), clips/s, GPU ms per kernel (timestamp queries) and the parity
 *   of row 0 with the cpu reference.
 */
export async function benchMelGpu(args: string[]): Promise<unknown> {
  const { values } = parseArgs({
    args,
    options: {
      preset: { type: "string", default: "sc1,cs" },
      rows: { type: "string", default: "128" },
      repeats: { type: "string", default: "20" },
    },
  });
  const rows = Number(values.rows);
  const repeats = Number(values.repeats);
  const device = await requestEngineDevice();
  const rt = createRuntime(device);
  const limit = device.limits.maxComputeWorkgroupStorageSize;
  const rng = createRng("bench/mel_gpu", 0);
  const results: Record<string, unknown>[] = [];
  const checks: {
    index: number;
    wave: Float32Array;
    got: Float32Array;
    options: MelOptions & { targetFrames: number };
  }[] = [];
  try {
    for (const name of values.preset.split(",")) {
      const preset = PRESETS[name];
      if (!preset) {
        throw new Error(
          `Cannot run the melgpu bench for preset "${name}": choose from ${
            Object.keys(PRESETS).join(", ")
          }`,
        );
      }
      const { samples, options } = preset;
      if (!stftMelFits({ nFft: options.nFft, workgroupStorageBytes: limit })) {
        results.push({ preset: name, skipped: "stftMel does not fit" });
        continue;
      }
      const frames = options.targetFrames;
      const wave = Float32Array.from(
        { length: rows * samples },
        () => rng.next() - 0.5,
      );
      const both = melFrontEndPlan({
        ...options,
        frames,
        rowStride: samples,
        rows,
        gridFrames: frameCount(samples, options.hopLength),
        workgroupStorageBytes: limit,
        topDb: options.topDb!,
        scaleDivisor: options.scaleDivisor!,
      });
      const tables = melTables(options);
      const data: Record<string, Float32Array | Uint32Array> = {
        wave,
        lengths: new Uint32Array(rows).fill(samples),
        ...tables,
        peak: new Uint32Array(rows),
        out: new Float32Array(rows * frames * options.nMels),
      };
      const regions: Record<string, Region> = {};
      for (const [k, a] of Object.entries(data)) {
        regions[k] = rt.alloc(`mel.${k}`, a.length);
        rt.write(regions[k], a);
      }
      const list: Dispatch[] = [];
      const lists = planRegions(both, regions);
      both.steps.forEach((s, i) => rt.record(list, s.spec, lists[i]));
      rt.run([list]);
      await rt.read(regions.peak);
      const t0 = performance.now();
      for (let i = 0; i < repeats; i++) rt.run([list]);
      const got = await rt.read(regions.out);
      const msPerBatch = (performance.now() - t0) / repeats;
      const profile = device.features.has("timestamp-query")
        ? (await rt.profile([list])).map((e) => ({
          kernel: e.label,
          ms: Number(e.ms.toFixed(4)),
        }))
        : null;
      // The cpu reference runs after all GPU work (tfjs's backend switch
      // must not run between the engine device's submissions).
      checks.push({
        index: results.length,
        wave: wave.slice(0, samples),
        got: got.slice(0, frames * options.nMels),
        options,
      });
      results.push({
        preset: name,
        rows,
        frames,
        msPerBatch: Number(msPerBatch.toFixed(3)),
        clipsPerSecond: Math.round((rows / msPerBatch) * 1000),
        gpuMs: profile,
        row0MaxAbsErrorVsCpu: NaN,
      });
    }
  } finally {
    rt.destroy();
  }
  for (const { index, wave, got, options } of checks) {
    const want = referenceFeatures(wave, options);
    let err = 0;
    for (let i = 0; i < want.length; i++) {
      const d = Math.abs(got[i] - want[i]);
      err = Math.max(err, Number.isNaN(d) ? Infinity : d);
    }
    results[index].row0MaxAbsErrorVsCpu = err;
  }
  return {
    bench: "melgpu",
    adapter: (device as unknown as { adapterInfo?: GPUAdapterInfo })
      .adapterInfo?.description ?? null,
    workgroupStorageBytes: limit,
    results,
  };
}
