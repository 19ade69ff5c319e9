/**
 * Setup shared by the step benchmarks of a paper preset (`bench train`,
 * `bench ttda`): the preset's model sizes by name, the engine an `--engine`
 * choice resolves to on the selected backend, and a random view-stacked
 * token batch of the preset's shapes.
 *
 * @module
 */
import type { Tensor3D } from "@tensorflow/tfjs";
import type { Tf } from "../pipeline/types.ts";
import { PAPER_MODELS } from "../model/amaut.ts";

/** A paper preset's model options and data sizes. */
export type PaperModel = (typeof PAPER_MODELS)["sc1"];

/**
 * The paper preset `name` (am, sc1, sc2, vs, cs).
 *
 * @throws {Error} For an unknown name, listing the known ones.
 */
export function paperPreset(name: string): PaperModel {
  const paper = (PAPER_MODELS as Record<string, PaperModel>)[name];
  if (!paper) {
    throw new Error(
      `Cannot benchmark preset "${name}": known are ${
        Object.keys(PAPER_MODELS).join(", ")
      }`,
    );
  }
  return paper;
}

/**
 * The engine an `--engine auto|fused|tfjs` value selects: `auto` is the fused
 * engine on WebGPU and tfjs elsewhere.
 *
 * @param engine The `--engine` value.
 * @param backendName The selected tfjs backend's name.
 * @param unknown The error message for a value other than the three.
 * @throws {Error} `unknown`, for any other value.
 */
export function benchEngine(
  engine: string,
  backendName: string,
  unknown: string,
): "fused" | "tfjs" {
  const choice = engine === "auto"
    ? (backendName === "webgpu" ? "fused" : "tfjs")
    : engine;
  if (choice !== "fused" && choice !== "tfjs") throw new Error(unknown);
  return choice;
}

/**
 * A standard-normal token batch of `rows` clips (views × batch, view-major)
 * at the preset's `[frames, nMels]`.
 */
export function presetTokens(
  tf: Tf,
  rows: number,
  dims: PaperModel["dims"],
): Tensor3D {
  return tf.randomNormal([rows, dims.frames, dims.nMels]) as Tensor3D;
}
