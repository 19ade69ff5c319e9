/**
 * Experiment grids: expansion into `grid.json`, the executors (local,
 * Slurm, Kubernetes manifest), one run of a grid, status, cancel and the
 * grid report.
 *
 * @module
 */
export {
  combinations,
  defaultGridDir,
  GridSpecError,
  parseVary,
  planGrid,
  runName,
  writeGridFolder,
} from "./expand.ts";
export type { GridOptions, VaryAxis } from "./expand.ts";
export {
  GRID_FORMAT,
  readGrid,
  recordSubmission,
  runFolder,
  writeGrid,
} from "./grid_file.ts";
export type { GridFile, GridRun, GridSubmission } from "./grid_file.ts";
export { runGridTask } from "./task.ts";
export type { TaskOptions, TaskResult } from "./task.ts";
export { execCommand, runLocal } from "./local.ts";
export type { LocalOptions, LocalResult } from "./local.ts";
export { cancelSlurm, slurmScript, slurmStates, submitSlurm } from "./slurm.ts";
export type { SlurmOptions } from "./slurm.ts";
export { k8sManifest, writeK8sManifest } from "./k8s.ts";
export type { K8sOptions } from "./k8s.ts";
export { hasDeviceSelectLayer, listPciGpus, pinGpu } from "./pin.ts";
export type { GpuPin, PciGpu } from "./pin.ts";
export { runState, trainedEpochs } from "./run_state.ts";
export type { RunState } from "./run_state.ts";
export { formatStatus, gridStatus } from "./status.ts";
export type { StatusRow } from "./status.ts";
export {
  gridReport,
  groupRuns,
  renderGridHtml,
  renderGridMarkdown,
  stat,
  writeGridReport,
} from "./report.ts";
export type { GridReport, GroupRow, RunScores, Stat } from "./report.ts";
export { PAPER, PAPER_AM_FOLDS } from "./paper.ts";
export type { PaperRow } from "./paper.ts";
