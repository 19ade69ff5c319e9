/**
 * The pipeline engine, with no audio knowledge: spec loading and diagnostics,
 * the compiler, the scheduler and the stage contract.
 *
 * @module
 */
export * from "./types.ts";
export * from "./diagnostics.ts";
export { defineStage } from "./define_stage.ts";
export { compile, formatInherited, formatPlan } from "./compile.ts";
export type {
  CompiledPipeline,
  CompileOptions,
  InheritedValue,
  Plan,
  PlannedStage,
} from "./compile.ts";
export {
  createRunDir,
  dataWarnings,
  describeSteps,
  openSource,
  RunFolderError,
  RunInterrupted,
  runPipeline,
  StageError,
} from "./run.ts";
export { checkResume, describeMayChange, ResumeError } from "./resume.ts";
export type { AcceptedResume, KeyChange } from "./resume.ts";
export { createInterrupt, InterruptedError } from "./interrupt.ts";
export type { Interrupt, LastWords } from "./interrupt.ts";
export { watchSignals } from "./signals.ts";
export type { SignalWatch } from "./signals.ts";
export type { RunOptions, RunResult } from "./run.ts";
export { createRng, rngFromState } from "./rng.ts";
export type { Rng } from "./rng.ts";
export { selectBackend } from "./backend.ts";
export type { AdapterInfo, BackendChoice, BackendInfo } from "./backend.ts";
export { writeFileAtomic, writeJsonAtomic } from "./atomic.ts";
export type { Logger } from "./logger.ts";
export type { Progress, ProgressFactory, ProgressOptions } from "./progress.ts";
