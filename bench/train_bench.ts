/**
 * Training-speed benchmark of the real AMAuT model at a paper preset's shapes
 * (`deno task bench train --preset sc1|cs [--backend webgpu]`): warm training
 * steps of 4 views × batch 32 (one forward pass per view, summed
 * label-smoothed cross-entropy, one gradient, SGD with momentum and weight
 * decay, BatchNorm running-stat updates — what the `train` stage does), an
 * eval forward of 32 clips, the first (compile) step, three timed epoch-end
 * copies of the weights and momentum into the tfjs model (`downloads`: the
 * map's wait, the copy out of it, the tensors' assignment, in ms), and peak memory as tfjs
 * accounts it. Prints JSON with the adapter name, to compare with the PyTorch
 * anchor (`../shared/bench/amaut_torch.py`) run on the same card.
 * `--precision fp32|mixed|both` times the fused engine in float32, in mixed
 * precision (f16 matmul operands, dynamic loss scaling: `train.precision:
 * mixed`), or both from the same weights one after the other, with a
 * `comparison` per preset (mixed ÷ fp32 step, eval forward and peak memory).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { selectBackend } from "../pipeline/backend.ts";
import type { BackendChoice } from "../pipeline/backend.ts";
import { createRng } from "../pipeline/rng.ts";
import { createModel } from "../model/amaut.ts";
import { benchEngine, paperPreset, presetTokens } from "./paper_preset.ts";
import { createSgd } from "../model/sgd.ts";
import { multiviewStep } from "../model/train_step.ts";
import type { AmautModel } from "../model/amaut.ts";
import type { Sgd } from "../model/sgd.ts";
import type { Tensor3D } from "@tensorflow/tfjs";
import type { Tf } from "../pipeline/types.ts";
import { createFusedEngine, type EngineSettings } from "../gpu/engine.ts";
import type { ProfileEntry } from "../gpu/runtime.ts";
import type { Precision } from "../model/engine_choice.ts";

/**
 * The precisions of `--precision`: `fp32`, `mixed`, or `both` (fp32 first).
 *
 * @param value The option's value.
 * @returns The precisions to time, in order.
 * @throws {Error} "Cannot run bench …" for another value.
 */
export function parsePrecisions(value: string, bench = "train"): Precision[] {
  if (value === "both") return ["fp32", "mixed"];
  if (value === "fp32" || value === "mixed") return [value];
  throw new Error(
    `Cannot run bench ${bench}: --precision must be fp32, mixed or both, not "${value}"`,
  );
}

/** The figures {@linkcode precisionComparison} compares. */
export interface PrecisionFigures {
  readonly preset: string;
  readonly precision: Precision;
  readonly stepMs: number;
  readonly evalForwardMs: number;
  readonly peakMemoryMiB: number;
}

/**
 * Per preset timed in both precisions: mixed's step, eval forward and peak
 * memory divided by fp32's (below 1: mixed is faster or smaller).
 *
 * @param results The fused results, each with its preset and precision.
 * @returns One entry per preset that has both, in the results' order.
 */
export function precisionComparison(
  results: readonly PrecisionFigures[],
): {
  preset: string;
  stepRatio: number;
  evalForwardRatio: number;
  peakMemoryRatio: number;
}[] {
  const out = [];
  for (const fp32 of results) {
    if (fp32.precision !== "fp32") continue;
    const mixed = results.find((r) =>
      r.preset === fp32.preset && r.precision === "mixed"
    );
    if (!mixed) continue;
    const ratio = (a: number, b: number) => Number((a / b).toFixed(3));
    out.push({
      preset: fp32.preset,
      stepRatio: ratio(mixed.stepMs, fp32.stepMs),
      evalForwardRatio: ratio(mixed.evalForwardMs, fp32.evalForwardMs),
      peakMemoryRatio: ratio(mixed.peakMemoryMiB, fp32.peakMemoryMiB),
    });
  }
  return out;
}

/**
 * Runs the training benchmark.
 *
 * @param args `--preset sc1|cs|am|sc2|vs` (comma list), `--backend`,
 *   `--engine auto|fused|tfjs` (auto: fused on WebGPU), `--steps N` (5),
 *   `--views N` (4), `--batch N` (32), `--profile` (per-kernel GPU times of
 *   one fused step from timestamp queries), `--stages 1|2` (the fused engine's
 *   matmuls' workgroup-memory stages; default the kernel's), `--precision
 *   fp32|mixed|both` (fused engine only; default fp32).
 */
export async function benchTrain(args: string[]): Promise<unknown> {
  const { values } = parseArgs({
    args,
    options: {
      preset: { type: "string", default: "sc1" },
      backend: { type: "string", default: "auto" },
      steps: { type: "string", default: "5" },
      views: { type: "string", default: "4" },
      batch: { type: "string", default: "32" },
      engine: { type: "string", default: "auto" },
      profile: { type: "boolean", default: false },
      stages: { type: "string" },
      precision: { type: "string", default: "fp32" },
    },
  });
  const precisions = parsePrecisions(values.precision);
  if (values.stages !== undefined && !["1", "2"].includes(values.stages)) {
    throw new Error(`--stages must be 1 or 2, got "${values.stages}"`);
  }
  const engineSettings = {
    matmulStages: values.stages === undefined
      ? undefined
      : Number(values.stages) as 1 | 2,
  };
  const { tf, backend } = await selectBackend(values.backend as BackendChoice);
  const steps = Number(values.steps);
  const V = Number(values.views);
  const B = Number(values.batch);
  const engineChoice = benchEngine(
    values.engine,
    backend.name,
    `Unknown --engine "${values.engine}": use auto, fused or tfjs`,
  );
  if (engineChoice !== "fused" && precisions.includes("mixed")) {
    throw new Error(
      `Cannot run bench train with --precision ${values.precision}: mixed precision needs the fused engine on the webgpu backend, and this run uses the tfjs engine on "${backend.name}" (use --backend webgpu --engine fused, or --precision fp32)`,
    );
  }
  const results = [];
  for (const name of values.preset.split(",")) {
    const { options, dims } = paperPreset(name);
    const rng = createRng(`bench/train/${name}`, 0);
    const tokens = presetTokens(tf, V * B, dims);
    const labelArray = Array.from({ length: B }, (_, i) => i % dims.classes);
    if (engineChoice === "fused") {
      // Each precision from the same initial weights.
      for (const precision of precisions) {
        const model = createModel(
          tf,
          options,
          dims,
          createRng(`bench/train/${name}`, 0),
        );
        const sgd = createSgd(tf);
        try {
          results.push(
            await benchFused(tf, name, model, sgd, tokens, labelArray, {
              steps,
              views: V,
              profile: values.profile,
              engine: { ...engineSettings, precision },
            }),
          );
        } finally {
          sgd.dispose();
          model.dispose();
        }
      }
      tf.dispose(tokens);
      continue;
    }
    const model = createModel(tf, options, dims, rng);
    const sgd = createSgd(tf);
    const labels = tf.tensor1d(labelArray, "int32");
    let peakBytes = 0;
    const step = async (k: number) => {
      const t0 = performance.now();
      const { loss: value, lastLogits } = multiviewStep(
        tf,
        model,
        sgd,
        tokens,
        labels,
        V,
        {
          smoothing: 0.1,
          lr: 1e-3,
          sgd: { momentum: 0.9, weightDecay: 1e-3, nesterov: false },
          rng: rng.child("dropout", k),
        },
      );
      const mem = tf.memory() as {
        numBytes: number;
        numBytesInGPUAllocated?: number;
      };
      peakBytes = Math.max(
        peakBytes,
        mem.numBytesInGPUAllocated ?? mem.numBytes,
      );
      const loss = (await value.data())[0]; // one readback per step: the step is complete
      tf.dispose([value, lastLogits]);
      backend.checkErrors();
      return { ms: performance.now() - t0, loss };
    };
    const first = await step(0);
    const times: number[] = [];
    let lastLoss = first.loss;
    for (let k = 1; k <= steps; k++) {
      const r = await step(k);
      times.push(r.ms);
      lastLoss = r.loss;
    }
    const evalTimes: number[] = [];
    for (let k = 0; k < 3; k++) {
      const t0 = performance.now();
      const logits = tf.tidy(() =>
        model.apply(tokens.slice([0, 0, 0], [B, -1, -1]), { training: false })
          .logits
      );
      await logits.data();
      logits.dispose();
      evalTimes.push(performance.now() - t0);
    }
    const median = (xs: number[]) =>
      [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const stepMs = median(times);
    results.push({
      preset: name,
      precision: "fp32",
      params: model.summary().parameters,
      stepMs: Number(stepMs.toFixed(1)),
      clipsPerSecond: Number((B / stepMs * 1000).toFixed(1)),
      firstStepMs: Math.round(first.ms),
      evalForwardMs: Number(median(evalTimes.slice(1)).toFixed(1)),
      peakMemoryMiB: Math.round(peakBytes / 2 ** 20),
      lossFirst: first.loss,
      lossLast: lastLoss,
      views: V,
      batch: B,
    });
    tf.dispose([tokens, labels]);
    sgd.dispose();
    model.dispose();
  }
  const comparison = precisions.length > 1
    ? precisionComparison(results as unknown as PrecisionFigures[])
    : undefined;
  return {
    bench: "train",
    engine: engineChoice,
    precision: values.precision,
    ...(comparison ? { comparison } : {}),
    backend: backend.name,
    adapter: backend.adapter?.description ?? null,
    reason: backend.reason,
    deno: Deno.version.deno,
    results,
  };
}

/** Times the fused engine (`gpu/engine.ts`) as the anchor times PyTorch: steps enqueued back to back, one sync. */
async function benchFused(
  tf: Tf,
  name: string,
  model: AmautModel,
  sgd: Sgd,
  tokens: Tensor3D,
  labels: number[],
  o: {
    steps: number;
    views: number;
    profile: boolean;
    engine: EngineSettings;
  },
): Promise<Record<string, unknown>> {
  const B = labels.length;
  const engine = createFusedEngine(
    tf,
    model.options,
    model.dims,
    undefined,
    o.engine,
  );
  try {
    await engine.upload(model, sgd);
    const settings = (k: number) => ({
      smoothing: 0.1,
      lr: 1e-3,
      sgd: { momentum: 0.9, weightDecay: 1e-3, nesterov: false },
      seed: k,
    });
    let t0 = performance.now();
    await engine.step(tokens, labels, o.views, settings(0));
    await engine.sync();
    const firstStepMs = performance.now() - t0;
    const first = await engine.metrics();
    const bytesAfterFirst = engine.runtime.stats().bytes;
    for (let k = 1; k <= 2; k++) {
      await engine.step(tokens, labels, o.views, settings(k));
    }
    await engine.sync();
    await engine.metrics();
    t0 = performance.now();
    let hostStep = 0;
    for (let k = 0; k < o.steps; k++) {
      const h = performance.now();
      await engine.step(tokens, labels, o.views, settings(3 + k));
      hostStep += performance.now() - h;
    }
    await engine.sync();
    const stepMs = (performance.now() - t0) / o.steps;
    // Everything is allocated when a graph is built: steps allocate nothing.
    const growthBytes = engine.runtime.stats().bytes - bytesAfterFirst;
    const last = await engine.metrics();
    // The epoch-end copy of weights, running statistics and momentum into
    // the tfjs model (what the train stage's checkpoints read), three times.
    const downloads: Record<string, number>[] = [];
    for (let k = 0; k < 3; k++) {
      const timing = {
        setupMs: 0,
        mapMs: 0,
        copyMs: 0,
        releaseMs: 0,
        bytes: 0,
        assignMs: 0,
      };
      const d0 = performance.now();
      await engine.download(model, sgd, timing);
      downloads.push({
        totalMs: Math.round(performance.now() - d0),
        setupMs: Math.round(timing.setupMs),
        mapMs: Math.round(timing.mapMs),
        releaseMs: Math.round(timing.releaseMs),
        copyMs: Math.round(timing.copyMs),
        assignMs: Math.round(timing.assignMs),
        MiB: Math.round(timing.bytes / 2 ** 20),
      });
    }
    const evalInput = tf.slice(tokens, [0, 0, 0], [B, -1, -1]);
    for (let k = 0; k < 3; k++) await engine.evalEnqueue(evalInput, B);
    await engine.sync();
    // Eval forwards are short: time rounds of at least 50 (Deno's wait for
    // the queue sleeps ~10 ms) and keep the median round.
    const evalRuns = Math.max(50, o.steps);
    const rounds: number[] = [];
    let hostEval = 0;
    for (let round = 0; round < 3; round++) {
      t0 = performance.now();
      for (let k = 0; k < evalRuns; k++) {
        const h = performance.now();
        await engine.evalEnqueue(evalInput, B);
        hostEval += performance.now() - h;
      }
      await engine.sync();
      rounds.push((performance.now() - t0) / evalRuns);
    }
    hostEval /= 3 * evalRuns / o.steps;
    const evalMs = [...rounds].sort((x, y) => x - y)[1];
    evalInput.dispose();
    const counts = engine.counts(o.views, B);
    const evalCounts = engine.counts(1, B, false);
    const mem = tf.memory() as { numBytesInGPUAllocated?: number };
    const engineBytes = engine.runtime.stats().bytes;
    const result: Record<string, unknown> = {
      preset: name,
      precision: o.engine.precision ?? "fp32",
      matmulStages: o.engine.matmulStages ?? "default",
      params: model.summary().parameters,
      stepMs: Number(stepMs.toFixed(1)),
      clipsPerSecond: Number((B / stepMs * 1000).toFixed(1)),
      firstStepMs: Math.round(firstStepMs),
      evalForwardMs: Number(evalMs.toFixed(2)),
      // Host time to encode and submit (the GPU runs while the next is encoded).
      hostMsPerStep: Number((hostStep / o.steps).toFixed(2)),
      hostMsPerEval: Number((hostEval / o.steps).toFixed(2)),
      dispatchesPerStep: counts.total,
      dispatches: counts,
      evalDispatches: evalCounts.forward,
      pipelines: engine.runtime.stats().pipelines,
      engineMemoryMiB: Math.round(engineBytes / 2 ** 20),
      memoryGrowthOverStepsBytes: growthBytes,
      tfjsMemoryMiB: Math.round((mem.numBytesInGPUAllocated ?? 0) / 2 ** 20),
      peakMemoryMiB: Math.round(
        (engineBytes + (mem.numBytesInGPUAllocated ?? 0)) / 2 ** 20,
      ),
      downloads,
      lossFirst: first.lossSum,
      lossLast: last.lossSum / o.steps,
      views: o.views,
      batch: B,
    };
    if (last.lossScale) {
      // Mixed precision: the scale after the timed steps and the steps
      // skipped (inf/NaN gradients) since the first.
      result.lossScale = last.lossScale.lossScale;
      result.skippedSteps = last.lossScale.skippedSteps;
    }
    if (o.profile) {
      const summary = (entries: ProfileEntry[]) => ({
        kernelMs: Number(entries.reduce((a, e) => a + e.ms, 0).toFixed(2)),
        top: entries.slice(0, 25).map((e) => ({
          label: e.label,
          count: e.count,
          ms: Number(e.ms.toFixed(3)),
        })),
      });
      result.profile = summary(
        await engine.profile(tokens, labels, o.views, settings(99)),
      );
      const evalInput = tf.slice(tokens, [0, 0, 0], [B, -1, -1]);
      result.evalProfile = summary(await engine.profileEval(evalInput, B));
      evalInput.dispose();
    }
    return result;
  } finally {
    engine.destroy();
  }
}
