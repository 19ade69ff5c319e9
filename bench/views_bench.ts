/**
 * Waveform-view benchmark of the GPU front end (issue 14): for a preset's
 * `augment` and `fixed_length` stages in one phase, on a batch of synthetic
 * clips near the preset's length, the host time of the CPU stages against
 * the view planner (`gpu/frontend/view_programs.ts`) and the packer, the
 * bytes a batch uploads, and — where a WebGPU adapter exists — the views
 * kernel's GPU time (timestamp queries; wall time of a submit and read-back
 * without them) and its largest difference from the reference interpreter.
 *
 * @module
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { compile } from "../pipeline/compile.ts";
import { createRng } from "../pipeline/rng.ts";
import type { Batch, MapContext, Phase } from "../pipeline/types.ts";
import { BUILTIN_STAGES } from "../stages/mod.ts";
import { type AugmentOptions, stage as augment } from "../stages/augment.ts";
import {
  type FixedLengthOptions,
  stage as fixedLength,
} from "../stages/fixed_length.ts";
import {
  planViewStages,
  runPrograms,
  type ViewStage,
} from "../gpu/frontend/view_programs.ts";
import {
  packClips,
  packPrograms,
  viewsPlan,
  viewsRowsPerDispatch,
} from "../gpu/frontend/views.ts";
import {
  createRuntime,
  type Dispatch,
  type Region,
  requestEngineDevice,
} from "../gpu/runtime.ts";

const median = (xs: number[]): number =>
  [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const time = (fn: () => unknown, repeats: number): number =>
  median(Array.from({ length: repeats }, () => {
    const t0 = performance.now();
    fn();
    return performance.now() - t0;
  }));

/**
 * Runs the views benchmark.
 *
 * @param args `--preset sc1,cs` (preset files under presets/), `--phase
 *   fit|eval|ttau|adapt` (fit), `--batch N` (32 clips), `--repeats N` (5),
 *   `--maxOps N` (8, the kernel's op slots).
 * @returns One object per preset: `cpuStagesMs`, `plannerMs`, `packMs`
 *   (medians, host), `uploadMB` (sources, noise values and programs of one
 *   batch), `gpuMs` and `gpuTiming` (all dispatches: rows are split so
 *   each `out` fits one storage binding), `maxAbsDiff` against `runPrograms`.
 */
export async function benchViews(args: string[]): Promise<unknown> {
  const { values } = parseArgs({
    args,
    options: {
      preset: { type: "string", default: "sc1,cs" },
      phase: { type: "string", default: "fit" },
      batch: { type: "string", default: "32" },
      repeats: { type: "string", default: "5" },
      maxOps: { type: "string", default: "8" },
    },
  });
  const phase = values.phase as Phase;
  const b = Number(values.batch);
  const repeats = Number(values.repeats);
  const maxOps = Number(values.maxOps);
  const gpu = (globalThis.navigator as { gpu?: GPU }).gpu;
  const adapter = await gpu?.requestAdapter();
  const rt = adapter ? createRuntime(await requestEngineDevice()) : undefined;
  const rng = createRng("bench/views", 0);
  const results = [];
  for (const preset of values.preset.split(",")) {
    const compiled = await compile(
      join(import.meta.dirname!, `../presets/${preset}.yaml`),
      { builtins: BUILTIN_STAGES },
    );
    const entries = compiled.plan.stages.filter((s) =>
      (s.id === "augment" || s.id === "fixed_length") &&
      (!s.phases || s.phases.includes(phase))
    );
    const target = Math.max(
      ...JSON.stringify(entries.map((s) => s.options)).matchAll(
        /"samples":(\d+)/g,
      ).map((m) => Number(m[1])),
    );
    const clip = (n: number) =>
      Float32Array.from({ length: n }, () => rng.next() - 0.5);
    const batch: Batch = {
      size: b,
      split: "train",
      phase,
      waveform: Array.from(
        { length: b },
        () => clip(Math.round(target * (0.7 + 0.3 * rng.next()))),
      ),
      sampleRate: new Array(b).fill(16000),
      label: Array.from({ length: b }, (_, i) => i % 10),
    };
    const assets = {
      backgroundNoise: {
        dude_miaowing: { samples: clip(2 * target + 12345), sampleRateHz: 0 },
        pink_noise: { samples: clip(3 * target + 777), sampleRateHz: 0 },
      },
    };
    const streams = () =>
      entries.map((e) => ({
        id: e.id,
        name: e.name,
        options: e.options,
        rng: createRng(`map/${e.name}/train/0/0`, 1),
      })) as ViewStage[];
    const cpuStagesMs = time(() => {
      let out = batch;
      for (const s of streams()) {
        const ctx = { rng: s.rng, assets, phase } as unknown as MapContext;
        out = s.id === "augment"
          ? augment.apply(out, s.options as AugmentOptions, ctx)
          : fixedLength.apply(out, s.options as FixedLengthOptions, ctx);
      }
    }, repeats);
    const plan = () =>
      planViewStages(batch, streams(), assets, { noise: "float32" });
    const plannerMs = time(plan, repeats);
    const p = plan();
    const waves = batch.waveform as Float32Array[];
    const noiseClips = p.noiseNames.map((n) =>
      assets.backgroundNoise[n as keyof typeof assets.backgroundNoise].samples
    );
    const pack = () => {
      const sources = packClips(waves);
      const noise = packClips(noiseClips);
      return {
        sources,
        noise,
        ...packPrograms(p.rows, p.extra, { maxOps, sources, noise }),
      };
    };
    const packMs = time(pack, repeats);
    const packed = pack();
    const uploadMB = (packed.sources.data.byteLength + packed.extra.byteLength +
      packed.programs.byteLength) / 1e6;
    const result: Record<string, unknown> = {
      preset,
      phase,
      clips: b,
      rows: packed.rows,
      rowStride: packed.rowStride,
      opsPerRow: Math.max(...p.rows.map((r) => r.ops.length)),
      cpuStagesMs,
      plannerMs,
      packMs,
      uploadMB,
    };
    const limit = rt?.device.limits.maxStorageBufferBindingSize ?? 0;
    const shared = [packed.sources.data, packed.extra, packed.noise.data];
    if (rt && shared.some((a) => a.byteLength > limit)) {
      result.gpuSkipped =
        `the clips or noise values exceed maxStorageBufferBindingSize ${limit}; use a smaller --batch`;
    } else if (rt) {
      const region = (name: string, a: Float32Array | Uint32Array) => {
        const r = rt.alloc(name, a.length);
        rt.write(r, a);
        return r;
      };
      const common = {
        sources: region("sources", packed.sources.data),
        extra: region("extra", packed.extra),
        noise: region("noise", packed.noise.data),
      };
      // Slices of rows whose out fits one binding, one dispatch each.
      const per = viewsRowsPerDispatch(packed.rowStride, limit);
      const list: Dispatch[] = [];
      const outs: { from: number; region: Region }[] = [];
      for (let from = 0; from < packed.rows; from += per) {
        const rows = p.rows.slice(from, from + per);
        const slice = packPrograms(rows, p.extra, {
          maxOps,
          rowStride: packed.rowStride,
          sources: packed.sources,
          noise: packed.noise,
        });
        const step = viewsPlan({
          maxOps,
          rowStride: slice.rowStride,
          rows: slice.rows,
          maxBindingBytes: limit,
        }).steps[0];
        const out = rt.alloc("out", slice.rows * slice.rowStride);
        outs.push({ from, region: out });
        const regions: Record<string, Region> = {
          ...common,
          programs: region("programs", slice.programs),
          out,
          lengths: rt.alloc("lengths", slice.rows),
        };
        rt.record(list, step.spec, step.bind.map((n) => regions[n]));
      }
      result.dispatches = list.length;
      rt.run([list]);
      const want = runPrograms(waves, p.rows, p.extra, noiseClips);
      let maxAbsDiff = 0;
      for (const { from, region } of outs) {
        const got = await rt.read(region);
        const stride = packed.rowStride;
        for (
          let r = 0;
          r < got.length / stride && from + r < want.length;
          r++
        ) {
          const w = want[from + r];
          for (let j = 0; j < w.length; j++) {
            const d = Math.abs(got[r * stride + j] - w[j]);
            if (!(d <= maxAbsDiff)) maxAbsDiff = d;
          }
        }
      }
      result.maxAbsDiff = maxAbsDiff;
      if (rt.device.features.has("timestamp-query")) {
        const ms = [];
        for (let i = 0; i < repeats; i++) {
          ms.push((await rt.profile([list])).reduce((t, e) => t + e.ms, 0));
        }
        result.gpuMs = median(ms);
        result.gpuTiming = "timestamp queries, median";
      } else {
        const ms = [];
        for (let i = 0; i < repeats; i++) {
          const t0 = performance.now();
          rt.run([list]);
          await rt.device.queue.onSubmittedWorkDone();
          ms.push(performance.now() - t0);
        }
        result.gpuMs = median(ms);
        result.gpuTiming = "wall time of submit to done, median";
      }
      rt.destroy();
    }
    results.push(result);
  }
  return {
    device: adapter
      ? `${adapter.info.vendor} ${adapter.info.description}`.trim()
      : "none",
    results,
  };
}
