/**
 * Shared by the train stage's tests: a tiny spec (a synthetic dataset of
 * half-second clips, a few-thousand-parameter model, two epochs of three
 * steps), its compilation into a fresh temporary folder, and a run stopped
 * right after its first epoch.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  compile,
  type CompiledPipeline,
  RunInterrupted,
  runPipeline,
} from "../pipeline/mod.ts";
import { BUILTIN_STAGES } from "./mod.ts";

/** The tiny train spec (cpu backend, seed 3; `--set` overrides change it). */
export const TINY_TRAIN_SPEC = `name: tiny-train
runtime: { backend: cpu, seed: 3 }
data: { layout: synthetic, sampleRateHz: 8000, durationSeconds: 0.5, perClass: { train: 8, validation: 3, test: 3 } }
stages:
  - use: load
  - use: mono_mix
  - use: augment
    with:
      views:
        - { name: shift, chain: [{ type: pad, seconds: 0.5 }, { type: roll }] }
        - { name: noise, chain: [{ type: noise }, { type: pad, seconds: 0.5 }] }
  - use: fixed_length
    with: { seconds: 0.5 }
  - use: mel
    with: { sampleRateHz: 8000, nFft: 256, winLength: 200, hopLength: 80, nMels: 16 }
  - use: tokenize
  - use: train
    with:
      epochs: 2
      batchSize: 8
      lr: 0.05
      lrCardinality: 2
      readEvery: 2
      model: { width: 4, groups: [1, 1], embedDim: 16, depth: 1, heads: 2, mlpDim: 32, extend: 16, conv: 8, dropout: 0.1 }
`;

/**
 * Writes {@linkcode TINY_TRAIN_SPEC} into a new temporary folder and
 * compiles it with its runs under that folder.
 *
 * @param overrides `path=value` overrides, as `--set` takes them.
 * @param prefix Name prefix of the temporary folder.
 */
export async function setupTinyTrain(
  overrides: readonly string[] = [],
  prefix = "train_test_",
): Promise<{ dir: string; compiled: CompiledPipeline }> {
  const dir = await Deno.makeTempDir({ prefix });
  await Deno.writeTextFile(join(dir, "spec.yaml"), TINY_TRAIN_SPEC);
  const compiled = await compile(join(dir, "spec.yaml"), {
    builtins: BUILTIN_STAGES,
    overrides: [`runtime.outputDir=${join(dir, "runs")}`, ...overrides],
  });
  return { dir, compiled };
}

/**
 * Runs `compiled` and interrupts it when the first epoch's log line
 * appears; asserts the run stopped in the train stage, to restart at epoch 2
 * from epoch 1's checkpoint.
 *
 * @returns The run's folder.
 */
export async function runInterruptedAfterEpoch1(
  compiled: CompiledPipeline,
): Promise<string> {
  const controller = new AbortController();
  let runDir = "";
  await assert.rejects(
    runPipeline(compiled, {
      signal: controller.signal,
      console: (line) => {
        if (line.includes("epoch 1/2:")) {
          controller.abort(
            new Error("Cannot go on: the test stops the run after epoch 1"),
          );
        }
      },
    }),
    (e: unknown) => {
      runDir = (e as RunInterrupted).runDir;
      return e instanceof RunInterrupted && e.stage === "train" &&
        e.restarts === "epoch 2, from the checkpoint of epoch 1";
    },
  );
  return runDir;
}
