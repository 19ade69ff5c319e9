/**
 * Benchmarks: `deno task bench <name>`. Speed and memory targets live here,
 * never in unit tests. Each prints one JSON object.
 *
 * - `data`: clips/s through the `load` stage and the scheduler's batches for
 *   1 s 16 kHz and 10 s 44.1 kHz WAV files (targets ≥ 1,000 and ≥ 60 clips/s
 *   on a 2-core machine).
 * - `mel`: log-mel features per second for SC- and CS-sized batches of 32 on
 *   the chosen backend (`--backend`), plus fixture parity with `--fixtures`.
 * - `train`: warm training-step time of the real model at a paper preset's
 *   shapes (`--preset sc1,cs`, `--engine fused|tfjs`), eval forward, first
 *   step, dispatches per step, peak memory, and with `--profile` per-kernel
 *   GPU times; `--precision fp32|mixed|both` (fused engine) side by side.
 * - `parity`: the fused WebGPU engine against the PyTorch fixtures and the
 *   tfjs cpu training step, on the device's GPU.
 * - `ttda`: warm TTDA step time (2 views × 70, the stage's step) at a paper
 *   preset's shapes, fused or tfjs (`bench/ttda_bench.ts`).
 * - `matmul`: tile × split-K × stages sweep of the engine's matmul at the presets'
 *   shapes (GPU time from timestamp queries), fp32 and/or f16 operands
 *   (`--operands f32|f16|both`).
 * - `grid`: a grid of 4 tiny runs with the local executor, sequential versus
 *   `--parallel 2` (target ≤ 0.6× on 2 cores).
 * - `melgpu`: the fused front end's log-mel kernels (`gpu/frontend/mel.ts`)
 *   at the SC1 and CS batch shapes: ms per batch, per-kernel GPU time, parity.
 * - `e2e`: a preset (`--preset sc1|cs`) end to end through the pipeline on
 *   synthetic data of its layout: per phase wall seconds and clips/s, against
 *   the `train` and `ttda` benches' step bounds, the GPU idle fraction per
 *   phase and the run's peak GPU memory.
 * - `presets`: every paper preset and ablation end to end on synthetic data
 *   of its layout (`--epochs 1`), one after another: status and seconds each.
 * - `views`: host time of the `augment`/`fixed_length` stages against the
 *   GPU front end's view planner, upload size, and the views kernel's GPU
 *   time and parity (`--preset sc1,cs`, `--phase fit`; bench/views_bench.ts).
 * - `compile`: host time compiling the fused engine's training, eval and
 *   TTDA graphs at a preset's shapes, split into WGSL parsing and pipeline
 *   creation (`--preset sc1,cs`; bench/compile_bench.ts).
 * - `fidelity`: mixed-precision fidelity (issue 18): a preset (`--preset
 *   demo|sc1`) trained in fp32 and in mixed precision for `--seeds N` seeds,
 *   test accuracy per seed and on average, the difference in percentage
 *   points, non-finite losses and skipped steps (bench/fidelity_bench.ts).
 * - `ticks`: a V8 `--prof` log summarised (`ticks LOG… [--windows e2e.json]
 *   [--top N]`): ticks and VM states, self ticks by innermost JS function
 *   and inclusive JS ticks, per `bench e2e` phase window
 *   (bench/v8_ticks.ts).
 *
 * @module
 */
// deno-lint-ignore-file no-console -- a benchmark prints its results
import { benchData } from "./data_bench.ts";
import { benchMel } from "./mel_bench.ts";
import { benchTrain } from "./train_bench.ts";
import { benchParity } from "./parity_bench.ts";
import { benchMatmul } from "./matmul_bench.ts";
import { benchGrid } from "./grid_bench.ts";
import { benchE2e } from "./e2e_bench.ts";
import { benchTtda } from "./ttda_bench.ts";
import { benchPresets } from "./presets_bench.ts";
import { benchMelGpu } from "./mel_gpu_bench.ts";
import { benchViews } from "./views_bench.ts";
import { benchCompile } from "./compile_bench.ts";
import { benchTicks } from "./v8_ticks.ts";
import { benchFidelity } from "./fidelity_bench.ts";

const BENCHES: Record<string, (args: string[]) => Promise<unknown>> = {
  data: benchData,
  mel: benchMel,
  train: benchTrain,
  parity: benchParity,
  matmul: benchMatmul,
  grid: benchGrid,
  e2e: benchE2e,
  ttda: benchTtda,
  presets: benchPresets,
  melgpu: benchMelGpu,
  views: benchViews,
  compile: benchCompile,
  ticks: benchTicks,
  fidelity: benchFidelity,
};

const [name, ...rest] = Deno.args;
if (!name || !(name in BENCHES)) {
  console.error(
    `usage: deno task bench <name> [options]\nbenchmarks: ${
      Object.keys(BENCHES).join(", ")
    }`,
  );
  Deno.exit(2);
}
console.log(JSON.stringify(await BENCHES[name](rest), null, 2));
