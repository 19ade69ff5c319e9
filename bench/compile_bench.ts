/**
 * Pipeline compilation of the fused engine's graphs at a paper preset's
 * shapes (`deno task bench compile [--preset sc1|cs|…] [--views 4]
 * [--batch 32] [--ttda-batch 70]`): for the training graph (views × batch,
 * the train stage's step), the eval graph (32 rows, every fused evaluation)
 * and the TTDA graph (2 views × `--ttda-batch`), the pipelines each compiled
 * that the graphs before it had not, the host milliseconds in
 * `createShaderModule` (WGSL parsing and validation) and in
 * `createComputePipeline` (translation and the driver's compile), and the
 * WGSL size. Deno compiles synchronously, so this is time a run's host spends
 * before a graph's first step. Run it twice on a machine to see what the
 * driver's own shader cache saves. WebGPU only.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { selectBackend } from "../pipeline/backend.ts";
import { createRng } from "../pipeline/rng.ts";
import { createModel } from "../model/amaut.ts";
import { createFusedEngine, EVAL_CHUNK_ROWS } from "../gpu/engine.ts";
import { type CompileStats, compileStats } from "../gpu/runtime.ts";
import { paperPreset, presetTokens } from "./paper_preset.ts";

/** The difference of two compile totals, rounded for printing. */
function delta(a: CompileStats, b: CompileStats) {
  const r = (x: number) => Math.round(x * 10) / 10;
  return {
    pipelines: b.pipelines - a.pipelines,
    moduleMs: r(b.moduleMs - a.moduleMs),
    pipelineMs: r(b.pipelineMs - a.pipelineMs),
    wgslKiB: r((b.wgslChars - a.wgslChars) / 1024),
  };
}

/**
 * Runs the benchmark.
 *
 * @param args `--preset` (comma-separated), `--views`, `--batch`,
 *   `--ttda-batch`.
 * @returns One JSON-ready object with a result per preset.
 * @throws {Error} Without WebGPU, or for an unknown preset.
 */
export async function benchCompile(args: string[]): Promise<unknown> {
  const { values } = parseArgs({
    args,
    options: {
      preset: { type: "string", default: "sc1" },
      views: { type: "string", default: "4" },
      batch: { type: "string", default: "32" },
      "ttda-batch": { type: "string", default: "70" },
    },
  });
  const { tf, backend } = await selectBackend("webgpu");
  if (backend.name !== "webgpu") {
    throw new Error(
      "Cannot benchmark pipeline compilation without WebGPU: run it on a machine with a WebGPU adapter",
    );
  }
  const V = Number(values.views);
  const B = Number(values.batch);
  const T = Number(values["ttda-batch"]);
  const results = [];
  for (const name of values.preset.split(",")) {
    const { options, dims } = paperPreset(name);
    const model = createModel(tf, options, dims, createRng("bench/compile", 0));
    const engine = createFusedEngine(tf, options, dims);
    const device = engine.runtime.device;
    try {
      await engine.upload(model);
      const s0 = compileStats(device);
      let t = performance.now();
      engine.counts(V, B, true); // builds (compiles) the training graph
      const trainWall = performance.now() - t;
      const s1 = compileStats(device);
      t = performance.now();
      engine.counts(1, EVAL_CHUNK_ROWS, false);
      const evalWall = performance.now() - t;
      const s2 = compileStats(device);
      const tokens = presetTokens(tf, 2 * T, dims);
      t = performance.now();
      await engine.ttdaStep(tokens, 2, T, {
        rates: { alpha: 1, beta: 0.5, gamma: 0.5, q: 1.1 },
        lr: 1e-4,
        sgd: { momentum: 0.9, weightDecay: 1e-3, nesterov: false },
        seed: 0,
      });
      const ttdaWall = performance.now() - t;
      const s3 = compileStats(device);
      await engine.sync();
      tokens.dispose();
      const ms = (x: number) => Math.round(x);
      results.push({
        preset: name,
        train: { ...delta(s0, s1), wallMs: ms(trainWall), views: V, batch: B },
        eval: { ...delta(s1, s2), wallMs: ms(evalWall), rows: EVAL_CHUNK_ROWS },
        ttda: { ...delta(s2, s3), wallMs: ms(ttdaWall), views: 2, batch: T },
      });
    } finally {
      engine.destroy();
      model.dispose();
    }
  }
  return {
    bench: "compile",
    adapter: backend.adapter?.description ?? null,
    deno: Deno.version.deno,
    results,
  };
}
