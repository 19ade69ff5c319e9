/**
 * TTDA step benchmark (issue 14's "TTDA step bound"): `deno task bench ttda
 * --preset sc1|cs [--backend webgpu] [--engine fused|tfjs]` times warm
 * test-time adaptation steps of the real model at a paper preset's shapes —
 * 2 views × batch 70, the AM/VS/CS loss rates, per-module learning rates,
 * momentum and weight decay on, what the `test_time_adaptation` stage does
 * per batch — and prints ms per step and clips/s. Fused steps are enqueued
 * back to back with one sync (the stage reads the loss once per epoch); tfjs
 * steps read their loss each (as the stage does). `--precision mixed` times
 * the fused step in mixed precision (`test_time_adaptation.precision: mixed`:
 * f16 matmul operands, dynamic loss scaling).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { selectBackend } from "../pipeline/backend.ts";
import type { BackendChoice } from "../pipeline/backend.ts";
import { createRng } from "../pipeline/rng.ts";
import { createModel } from "../model/amaut.ts";
import { createSgd } from "../model/sgd.ts";
import { tfjsTtdaStep } from "../model/ttda_step.ts";
import { moduleLrDecay } from "../stages/test_time_adaptation.ts";
import { createFusedTtda } from "../gpu/ttda_fused.ts";
import { benchEngine, paperPreset, presetTokens } from "./paper_preset.ts";
import { parsePrecisions } from "./train_bench.ts";

const RATES = { alpha: 1, beta: 0.5, gamma: 0.5, q: 1.1 };
const DECAYS = { featureLrDecay: 0.55, classifierLrDecay: 1 };
const SGD = { momentum: 0.9, weightDecay: 1e-3, nesterov: false };

/**
 * Runs the TTDA benchmark.
 *
 * @param args `--preset` (comma list of am, sc1, sc2, vs, cs), `--backend`,
 *   `--engine auto|fused|tfjs` (auto: fused on WebGPU), `--steps N` (5),
 *   `--views N` (2), `--batch N` (70), `--precision fp32|mixed` (fused
 *   engine only; default fp32).
 */
export async function benchTtda(args: string[]): Promise<unknown> {
  const { values } = parseArgs({
    args,
    options: {
      preset: { type: "string", default: "sc1" },
      backend: { type: "string", default: "auto" },
      engine: { type: "string", default: "auto" },
      steps: { type: "string", default: "5" },
      views: { type: "string", default: "2" },
      batch: { type: "string", default: "70" },
      precision: { type: "string", default: "fp32" },
    },
  });
  const precisions = parsePrecisions(values.precision, "ttda");
  if (precisions.length > 1) {
    throw new Error(
      "Cannot run bench ttda with --precision both: time one precision per call (fp32 or mixed)",
    );
  }
  const [precision] = precisions;
  const { tf, backend } = await selectBackend(values.backend as BackendChoice);
  const steps = Number(values.steps);
  const V = Number(values.views);
  const B = Number(values.batch);
  const engine = benchEngine(
    values.engine,
    backend.name,
    `Cannot run the TTDA benchmark with --engine "${values.engine}": use auto, fused or tfjs`,
  );
  if (engine !== "fused" && precision === "mixed") {
    throw new Error(
      `Cannot run bench ttda with --precision mixed: it needs the fused engine on the webgpu backend, and this run uses the tfjs engine on "${backend.name}" (use --backend webgpu, or --precision fp32)`,
    );
  }
  const lrOf = (name: string) => 1e-4 * moduleLrDecay(name, DECAYS);
  const results = [];
  for (const name of values.preset.split(",")) {
    const { options, dims } = paperPreset(name);
    const model = createModel(tf, options, dims, createRng("bench/ttda", 0));
    const tokens = presetTokens(tf, V * B, dims);
    let firstStepMs = 0;
    let stepMs = 0;
    let lossLast = NaN;
    if (engine === "fused") {
      const fused = await createFusedTtda(tf, model, { precision });
      try {
        const step = (k: number) =>
          fused.step(tokens, V, { rates: RATES, lr: lrOf, sgd: SGD, seed: k });
        let t0 = performance.now();
        await step(0);
        await fused.loss(); // waits for the step
        firstStepMs = performance.now() - t0;
        await step(1);
        await fused.loss();
        t0 = performance.now();
        for (let k = 0; k < steps; k++) await step(2 + k);
        const l = await fused.loss();
        stepMs = (performance.now() - t0) / steps;
        lossLast = l.lossSum / l.steps;
        // A failed validation leaves the metrics at 0: report the GPU error.
        backend.checkErrors();
      } finally {
        fused.dispose();
      }
    } else {
      const sgd = createSgd(tf);
      const step = async (k: number) => {
        const l = await tfjsTtdaStep(tf, model, sgd, tokens, V, {
          rates: RATES,
          lr: lrOf,
          sgd: SGD,
          rng: createRng("bench/ttda/dropout", k),
        });
        backend.checkErrors();
        return l;
      };
      let t0 = performance.now();
      await step(0);
      firstStepMs = performance.now() - t0;
      t0 = performance.now();
      for (let k = 0; k < steps; k++) lossLast = await step(1 + k);
      stepMs = (performance.now() - t0) / steps;
      sgd.dispose();
    }
    results.push({
      preset: name,
      precision,
      params: model.summary().parameters,
      stepMs: Number(stepMs.toFixed(1)),
      clipsPerSecond: Number((B / stepMs * 1000).toFixed(1)),
      firstStepMs: Math.round(firstStepMs),
      lossLast,
      views: V,
      batch: B,
    });
    tokens.dispose();
    model.dispose();
  }
  return {
    bench: "ttda",
    engine,
    backend: backend.name,
    adapter: backend.adapter?.description ?? null,
    reason: backend.reason,
    deno: Deno.version.deno,
    results,
  };
}
