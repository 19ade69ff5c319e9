/**
 * The fused front end on WebGPU: runs a phase's tail of built-in map stages
 * — `augment`/`fixed_length` (waveform views), `mel` and `tokenize` — as
 * three kernels on tfjs's WebGPU device, in the order the engine's own work
 * is queued, so the features never leave the GPU:
 *
 * 1. `views.ts`: every row (clip × view) from its program (rolls, pads,
 *    clips, added noise, mixed background), read from the decoded clips;
 * 2. `mel.ts` `stftMelPlan`: a centred, reflect-padded STFT per frame (a
 *    real FFT in workgroup memory), power, the sparse Slaney filterbank and
 *    dB, with each row's peak;
 * 3. `mel.ts` `dbClampPlan`: the per-row top-dB clamp, scaling and frame
 *    padding, in the tokens layout `[rows, frames, nMels]`.
 *
 * The host replays the stages' random draws exactly as the stages do
 * (`view_programs.ts`), so a seed gives the same views on both paths; only
 * the decoded clips (once per clip, not per view; as 16-bit integers when
 * they were decoded from 16-bit PCM and no stage could have written to
 * them, `FrontEndContext.sourcesIntact`), the noise values of
 * `noise` transforms and the small programs cross to the GPU, written with
 * `queue.writeBuffer` into one of two alternating upload sets while the GPU
 * still runs the previous batch. Background noise clips go up once per run.
 *
 * A batch the device limits do not allow (a buffer over
 * `maxStorageBufferBindingSize`, a grid over 65,535) is declined with the
 * reason, and the scheduler runs the same stages as usual for it.
 *
 * @module
 */
import type { Tensor3D } from "@tensorflow/tfjs";
import {
  FRONT_END_STAGE,
  type FrontEndCall,
  FrontEndContext,
  FrontEndResult,
  type FrontEndUpload,
  FusedFrontEnd,
} from "../../pipeline/front_end.ts";
import type { Batch, Tf } from "../../pipeline/types.ts";
import { gpuBufferLimits } from "../../pipeline/gpu_limits.ts";
import {
  checkLength,
  frameCount,
  type MelOptions,
  unequalLengths,
} from "../../lib/mel.ts";
import { checkMelRates, type MelStageOptions } from "../../stages/mel.ts";
import {
  type AnyKernelPlan,
  createRuntime,
  type Dispatch,
  planRegions,
  type Region,
} from "../runtime.ts";
import { tfjsDevice } from "../engine.ts";
import {
  melFrontEndPlan,
  melTables,
  stftMelFits,
  stftMelWorkgroupBytes,
} from "./mel.ts";
import {
  NOISE_CHUNK_WORDS,
  planViewStages,
  type ViewStage,
} from "./view_programs.ts";
import { packNoiseChunks, uniformNoisePlan } from "./noise.ts";
import {
  packClips,
  type PackedClips,
  packPrograms,
  placeClips,
  viewsPlan,
} from "./views.ts";
import { pcm16Of } from "../../lib/pcm16.ts";
import { HOST_LITTLE_ENDIAN } from "../../lib/endian.ts";
import type { NoiseClip } from "../../stages/_audio_dataset.ts";

/** Feature buffers kept at once (full and last batches of a few phases). */
const MAX_FEATURE_BUFFERS = 8;

/**
 * Creates the WebGPU front end on tfjs's device, or `undefined` when tfjs
 * runs on another backend.
 *
 * @param tf TensorFlow.js (its webgpu backend's device runs the kernels and
 *   owns the output tensors).
 * @returns The front end (dispose it at the end of the run).
 */
export function createGpuFrontEnd(tf: Tf): FusedFrontEnd | undefined {
  const device = tfjsDevice(tf);
  if (!device) return undefined;
  const rt = createRuntime(device);
  /** Buffers by role, grown (reallocated) when a batch needs more. */
  const sized = new Map<string, Region>();
  const region = (name: string, floats: number): Region => {
    const have = sized.get(name);
    if (have && have.size >= floats * 4) return have;
    if (have) rt.release(have); // WebGPU defers it until queued work is done
    const made = rt.alloc(`frontEnd.${name}`, Math.max(floats, 1));
    sized.set(name, made);
    return made;
  };
  /** Feature buffers of exact sizes (a few: full and last batches per phase). */
  const exactOut = new Map<number, Region>();
  const exact = (floats: number): Region => {
    let r = exactOut.get(floats);
    if (!r) {
      if (exactOut.size >= MAX_FEATURE_BUFFERS) {
        const [first, oldest] = exactOut.entries().next().value!;
        rt.release(oldest);
        exactOut.delete(first);
      }
      r = rt.alloc(`frontEnd.features.${floats}`, floats);
      exactOut.set(floats, r);
    }
    return r;
  };
  const tables = new Map<string, Map<string, Region>>();
  const tablesFor = (o: MelOptions) => {
    const key = JSON.stringify([
      o.sampleRateHz,
      o.nFft,
      o.winLength,
      o.nMels,
      o.fMinHz,
      o.fMaxHz,
    ]);
    let t = tables.get(key);
    if (!t) {
      const made = melTables(o);
      t = new Map();
      for (const [name, data] of Object.entries(made)) {
        const r = rt.alloc(`frontEnd.${name}`, data.length);
        rt.write(r, data);
        t.set(name, r);
      }
      tables.set(key, t);
    }
    return t;
  };
  let noiseUploaded: {
    assets: unknown;
    names: string;
    region: Region;
    packed: PackedClips;
  } | undefined;
  let set = 0;

  return {
    where: "WebGPU",
    apply(batch, stages, ctx): FrontEndResult {
      const melAt = stages.findIndex((s) => s.id === "mel");
      const mel = stages[melAt].options as MelStageOptions;
      const tokenize = stages.length > melAt + 1;
      const limits = gpuBufferLimits(ctx.tf);
      const maxBytes = limits
        ? Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize)
        : Infinity;
      if (
        !stftMelFits({
          nFft: mel.nFft,
          workgroupStorageBytes: device.limits.maxComputeWorkgroupStorageSize,
        })
      ) {
        return {
          declined: `mel "${stages[melAt].name}" needs ${
            stftMelWorkgroupBytes(mel.nFft)
          } bytes of workgroup memory for nFft ${mel.nFft}, over the device's ${device.limits.maxComputeWorkgroupStorageSize}`,
        };
      }
      const melName = stages[melAt].name;
      inStage(melName, () => checkMelRates(batch, mel));
      const waves = batch.waveform as Float32Array[];
      // Uniform noise is drawn on the GPU from recorded generator states;
      // what the host must draw is float32, what the kernel adds.
      const viewStages = stages.slice(0, melAt);
      const plan = inStage(
        viewStages.map((s) => s.name).join(" → "),
        () =>
          planViewStages(
            batch,
            viewStages.map((s) => viewStage(s)),
            ctx.assets,
            { noise: "gpu" },
          ),
      );
      const rows = plan.rows.length;
      if (rows === 0) {
        throw new RangeError("Cannot compute mel features of an empty batch");
      }
      const lengths = Uint32Array.from(plan.rows, (r) => r.length);
      const own = Array.from(lengths, (n) => frameCount(n, mel.hopLength));
      inStage(melName, () => {
        for (const n of lengths) checkLength(n, mel.nFft);
        const distinct = [...new Set(lengths)];
        if (mel.targetFrames === undefined && distinct.length > 1) {
          throw unequalLengths(distinct[0], distinct[1]);
        }
      });
      const frames = mel.targetFrames ?? own[0];
      const gridFrames = Math.max(...own);
      const rowStride = Math.max(...lengths);
      const maxOps = Math.max(1, ...plan.rows.map((r) => r.ops.length));
      // Where each decoded clip goes in the sources buffer; each is written
      // there on its own (no host-side concatenation). Clips decoded from
      // 16-bit PCM, unwritten since, go up as their integers: half the bytes.
      const pcm = waves.map(pcm16Of);
      const upload: FrontEndUpload = !pcm.every((x) => x !== undefined)
        ? {
          format: "float32",
          why: "not every clip was decoded from 16-bit PCM",
        }
        : !ctx.sourcesIntact
        ? {
          format: "float32",
          why:
            "a stage before the fused ones, other than mono_mix, may have written to them",
        }
        : !HOST_LITTLE_ENDIAN
        ? { format: "float32", why: "this host is big-endian" }
        : { format: "int16" };
      const ints = upload.format === "int16" ? pcm as Int16Array[] : undefined;
      const lengthsOfClips = waves.map((w) => w.length);
      const placed = placeClips(lengthsOfClips, ints ? "i16" : "f32");
      const sources = { offsets: placed.offsets, lengths: lengthsOfClips };
      const sourceWords = placed.words;
      if (
        !noiseUploaded || noiseUploaded.assets !== ctx.assets.backgroundNoise
      ) {
        const clips = (ctx.assets.backgroundNoise ?? {}) as Record<
          string,
          NoiseClip
        >;
        const packed = packClips(plan.noiseNames.map((n) => clips[n].samples));
        if (noiseUploaded) rt.release(noiseUploaded.region);
        const region = rt.alloc("frontEnd.backgroundNoise", packed.data.length);
        rt.write(region, packed.data);
        noiseUploaded = {
          assets: ctx.assets.backgroundNoise,
          names: plan.noiseNames.join("\0"),
          region,
          packed,
        };
      }
      const noise = noiseUploaded!;
      if (noise.names !== plan.noiseNames.join("\0")) {
        throw new Error(
          "Cannot run the fused front end: the background noise clips changed during the run; set runtime.frontEnd: tfjs",
        );
      }
      const packed = packPrograms(plan.rows, plan.extra, {
        maxOps,
        rowStride,
        sources,
        noise: noise.packed,
      });
      const outBytes = rows * frames * mel.nMels * 4;
      const big = ([
        ["features", outBytes],
        ["views", rows * rowStride * 4],
        ["decoded clips", 4 * sourceWords],
        ["noise values", 4 * plan.extraLength],
      ] as const).find(([, bytes]) => bytes > maxBytes);
      if (big) {
        return {
          declined: `a batch's ${big[0]} need ${
            big[1]
          } bytes, over the device's buffer limit of ${maxBytes}`,
        };
      }
      if (gridFrames > 65535 || rows > 65535) {
        return {
          declined:
            `${rows} rows of ${gridFrames} frames exceed WebGPU's 65,535 workgroups along one grid dimension`,
        };
      }

      // Uploads: one of two alternating sets, so the host fills the next
      // batch's arrays while the GPU may still read the previous ones.
      set ^= 1;
      const up = (name: string, data: Float32Array | Uint32Array) => {
        const r = region(`${name}.${set}`, data.length);
        rt.write(r, data);
        return r;
      };
      const upClips = () => {
        const r = region(`sources.${set}`, sourceWords);
        if (ints) writePcm16(device, r, ints, sources.offsets);
        else {
          waves.forEach((c, i) =>
            device.queue.writeBuffer(
              r.buffer,
              r.offset + 4 * sources.offsets[i],
              c as Float32Array<ArrayBuffer>,
            )
          );
        }
        return r;
      };
      const uploaded = {
        sources: upClips(),
        programs: up("programs", packed.programs),
        extra: region(`extra.${set}`, Math.max(1, plan.extraLength)),
      };
      const views = region("views", rows * rowStride);
      const lengthsRegion = region("lengths", rows);
      const peak = region("peak", rows);
      const t = tablesFor(mel);
      // The features go to a buffer of their exact size: tfjs copies it into
      // the tensor (its copy is queued after this batch's kernels).
      const out = exact(rows * frames * mel.nMels);
      const list: Dispatch[] = [];
      const record = (
        plan: AnyKernelPlan,
        bind: Record<string, Region>,
      ) => {
        const regions = planRegions(plan, bind);
        plan.steps.forEach((step, i) => rt.record(list, step.spec, regions[i]));
      };
      if (plan.extra.length > 0) {
        rt.write(uploaded.extra, plan.extra as Float32Array);
      }
      if (plan.noiseChunks.length > 0) {
        const chunks = up("noiseChunks", packNoiseChunks(plan.noiseChunks));
        record(
          uniformNoisePlan(plan.noiseChunks.length / NOISE_CHUNK_WORDS),
          { chunks, extra: uploaded.extra },
        );
      }
      record(
        viewsPlan({
          maxOps,
          rowStride,
          rows,
          sourceFormat: ints ? "i16" : "f32",
        }),
        {
          ...uploaded,
          noise: noise.region,
          out: views,
          lengths: lengthsRegion,
        },
      );
      record(
        melFrontEndPlan({
          nFft: mel.nFft,
          winLength: mel.winLength,
          hopLength: mel.hopLength,
          nMels: mel.nMels,
          frames,
          rowStride,
          workgroupStorageBytes: device.limits.maxComputeWorkgroupStorageSize,
          rows,
          gridFrames,
          topDb: mel.topDb,
          scaleDivisor: mel.scaleDivisor,
        }),
        {
          wave: views,
          lengths: lengthsRegion,
          window: t.get("window")!,
          twiddle: t.get("twiddle")!,
          bands: t.get("bands")!,
          weights: t.get("weights")!,
          peak,
          out,
        },
      );
      rt.run([list]);
      const tokens = ctx.tf.tensor(
        { buffer: out.buffer },
        [rows, frames, mel.nMels],
        "float32",
      ) as Tensor3D;
      const result: Record<string, unknown> = { ...plan.batch };
      if (tokenize) result.tokens = tokens;
      else result.features = ctx.tf.transpose(tokens, [0, 2, 1]);
      return { batch: result as unknown as Batch, upload };
    },
    dispose() {
      rt.destroy();
    },
  };
}

/**
 * Writes 16-bit clips at their even offsets (`placeClips`). `writeBuffer`
 * takes whole 4-byte words: an odd clip's last sample goes up in a word of
 * its own, with a zero half.
 */
function writePcm16(
  device: GPUDevice,
  r: Region,
  clips: readonly Int16Array[],
  offsets: readonly number[],
): void {
  clips.forEach((c, i) => {
    const at = r.offset + 2 * offsets[i];
    const even = c.length - (c.length % 2);
    if (even > 0) {
      device.queue.writeBuffer(
        r.buffer,
        at,
        c as Int16Array<ArrayBuffer>,
        0,
        even,
      );
    }
    if (even < c.length) {
      device.queue.writeBuffer(
        r.buffer,
        at + 2 * even,
        new Int16Array([c[even], 0]),
      );
    }
  });
}

/**
 * Marks an error with the fused stage it belongs to (`FRONT_END_STAGE`), so
 * the scheduler names that stage, as it would have without fusing.
 */
function tagged(stage: string, error: unknown): unknown {
  if (error instanceof Error && !(FRONT_END_STAGE in error)) {
    Object.defineProperty(error, FRONT_END_STAGE, { value: stage });
  }
  return error;
}

/** Runs `fn`, marking what it throws with `stage` ({@linkcode tagged}). */
function inStage<T>(stage: string, fn: () => T): T {
  try {
    return fn();
  } catch (error) {
    throw tagged(stage, error);
  }
}

/** A fused stage as the view planner takes it. */
function viewStage(s: FrontEndCall): ViewStage {
  if (s.id !== "augment" && s.id !== "fixed_length") {
    throw new Error(
      `Cannot fuse stage "${s.name}" (${s.id}) into the front end; set runtime.frontEnd: tfjs`,
    );
  }
  return {
    id: s.id,
    name: s.name,
    options: s.options,
    rng: s.rng,
  } as ViewStage;
}

export type { FrontEndContext };
