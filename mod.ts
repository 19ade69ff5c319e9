/**
 * AMAuT pipelines in Deno: YAML specs compiled into composable stages and run
 * by a small scheduler on TensorFlow.js (WebGPU when a GPU exists, else cpu).
 *
 * ```ts ignore
 * import { compileSpec, runPipeline } from "./mod.ts";
 * const compiled = await compileSpec("presets/tiny/synthetic.yaml", {
 *   overrides: ["runtime.seed=7"],
 * });
 * const result = await runPipeline(compiled);
 * console.log(result.runDir);
 * ```
 *
 * Write your own stage with {@linkcode defineStage} and name it in a spec with
 * `use: ./my_stage.ts` or an https URL.
 *
 * @module
 */
import { compile } from "./pipeline/compile.ts";
import type { CompiledPipeline } from "./pipeline/compile.ts";
import { BUILTIN_STAGES } from "./stages/mod.ts";

export * from "./pipeline/mod.ts";
export { BUILTIN_STAGES } from "./stages/mod.ts";
export { mixToMono } from "./stages/mono_mix.ts";
export {
  fetchLoader,
  fitForEval,
  lengthChange,
  loadPackage,
  loadPackageFromDir,
  memoryLoader,
  PackageConfig,
  parsePackageConfig,
} from "./lib/inference.ts";
export type {
  LengthChange,
  LoadedModel,
  LoadOptions,
  PackageLoader,
} from "./lib/inference.ts";
export {
  predictionsCsv,
  predictionsFile,
  STATE_IDS,
  topK,
} from "./lib/predictions.ts";
export type { StateId, StateScores } from "./lib/predictions.ts";
export type { ReportData, StateReport } from "./lib/report_html.ts";
export {
  resolveSynthOptions,
  SYNTH_LAYOUTS,
  writeSyntheticDataset,
} from "./stages/datasets/synth.ts";
export type {
  ResolvedSynthOptions,
  SynthLayout,
  SynthOptions,
  SynthSummary,
} from "./stages/datasets/synth.ts";
export { exportRun, writePackage } from "./lib/export.ts";
export type { ModelPackage } from "./lib/export.ts";
export * from "./grid/mod.ts";
export { createFusedEngine, tfjsDevice } from "./gpu/engine.ts";
export { createGpuFrontEnd } from "./gpu/frontend/segment.ts";
export {
  describeFusion,
  fusableTail,
  useFrontEnd,
} from "./pipeline/front_end.ts";
export type {
  FrontEndResult,
  FusedFrontEnd,
  Fusion,
} from "./pipeline/front_end.ts";
export { planViewStages, runPrograms } from "./gpu/frontend/view_programs.ts";
export type {
  RowProgram,
  ViewOp,
  ViewPlan,
} from "./gpu/frontend/view_programs.ts";
export { attachBusyMeter, idleFraction } from "./gpu/busy.ts";
export type { BusyMeter, BusySample } from "./gpu/busy.ts";
export { trainBatch } from "./model/trainer.ts";
export type {
  LoadableState,
  TrainBatch,
  Trainer,
  TrainerState,
  TrainMetrics,
  TrainStepSettings,
} from "./model/trainer.ts";
export { createTfjsTrainer } from "./model/trainer_tfjs.ts";
export { createFusedTrainer } from "./gpu/trainer_fused.ts";
export type { FusedTrainerOptions } from "./gpu/trainer_fused.ts";
export { createFusedTtda } from "./gpu/ttda_fused.ts";
export type { FusedTtda } from "./gpu/ttda_fused.ts";
export { evaluate, evaluateLogits } from "./model/evaluate.ts";
export type { EvalContext, Evaluation } from "./model/evaluate.ts";
export {
  loadCheckpoint,
  PIECE_BYTES,
  saveCheckpoint,
  snapshotCheckpoint,
  writeCheckpoint,
} from "./model/checkpoint.ts";
export type {
  CheckpointLoadOptions,
  CheckpointMeta,
  CheckpointSnapshot,
  CheckpointWriteReport,
} from "./model/checkpoint.ts";
export { createScorer, evaluateOn } from "./model/scorer.ts";
export type { EngineChoice, ScoreInput, Scorer } from "./model/scorer.ts";
export type {
  DispatchCounts,
  EngineSettings,
  FusedEngine,
  FusedMetrics,
  FusedStepSettings,
  FusedTtdaSettings,
  TokenInput,
} from "./gpu/engine.ts";

/**
 * Compiles a spec file with the built-in stages.
 *
 * @param file Path of the YAML spec.
 * @param options `overrides` (`dotted.path=value` texts) and `lockfile` for URL stages.
 * @throws {ConfigError} With every problem found, when the spec is invalid.
 */
export function compileSpec(
  file: string,
  options: { overrides?: readonly string[]; lockfile?: string } = {},
): Promise<CompiledPipeline> {
  return compile(file, { builtins: BUILTIN_STAGES, ...options });
}
