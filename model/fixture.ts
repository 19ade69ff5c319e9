/**
 * Reader of the PyTorch model-parity fixtures
 * (`shared/fixtures/reference/model/`: a manifest plus raw little-endian
 * float32/int32 files): the model configuration as {@linkcode ModelOptions}
 * and {@linkcode ModelDims}, the state dict, the gradients of the summed
 * 2-view loss, the inputs, logits and labels. Used by the model's parity
 * tests and by `deno task bench parity` to check the fused WebGPU engine on
 * a GPU.
 *
 * @module
 */
import { type ModelDims, ModelOptions } from "./config.ts";
import type { StateTensor } from "./amaut.ts";

/** One model fixture. */
export interface ModelFixture {
  /** Model options of the fixture's configuration. */
  readonly options: ModelOptions;
  /** Data sizes. */
  readonly dims: ModelDims;
  /** Parameter count the reference reports. */
  readonly params: number;
  /** Summed 2-view label-smoothed loss (train mode, dropout 0). */
  readonly loss: number;
  /** State dict in PyTorch layouts. */
  readonly state: Record<string, StateTensor>;
  /** Gradients of `loss` in PyTorch layouts (none for unused parameters). */
  readonly grads: Record<string, StateTensor>;
  /** Float arrays by name (`x1`, `x2` inputs `[b, mels, T]`, logits) and their shapes. */
  readonly arrays: Record<string, { shape: number[]; data: Float32Array }>;
  /** Labels of the batch. */
  readonly labels: Int32Array;
}

async function readF32(url: URL): Promise<Float32Array> {
  const bytes = await Deno.readFile(url);
  return new Float32Array(
    bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength),
  );
}

/**
 * Reads one model fixture.
 *
 * @param root The fixture folder (holding `manifest.json`).
 * @param name Fixture name, e.g. `tiny_avg`.
 * @returns The fixture.
 * @throws {Error} Naming the manifest when the fixture is not in it.
 */
export async function loadModelFixture(
  root: URL,
  name: string,
): Promise<ModelFixture> {
  const manifestUrl = new URL("manifest.json", root);
  const manifest = JSON.parse(await Deno.readTextFile(manifestUrl));
  const m = manifest.models?.[name];
  if (!m) {
    throw new Error(
      `Cannot load model fixture "${name}": ${manifestUrl.pathname} does not list it`,
    );
  }
  const dir = new URL(`${name}/`, root);
  const c = m.config;
  const options = ModelOptions.parse({
    width: c.width,
    groups: c.layers,
    tokens: c.K,
    embedDim: c.embed,
    depth: c.L,
    heads: c.H,
    mlpDim: c.mlp,
    extend: c.extend,
    conv: c.conv,
    head: c.head,
  });
  const read = async (
    entries: Record<string, { shape: number[]; file: string }>,
  ) => {
    const out: Record<string, StateTensor> = {};
    for (const [key, e] of Object.entries(entries)) {
      out[key] = { shape: e.shape, data: await readF32(new URL(e.file, dir)) };
    }
    return out;
  };
  const arrays: ModelFixture["arrays"] = {};
  for (
    const [key, shape] of Object.entries(m.arrays as Record<string, number[]>)
  ) {
    if (key === "labels") continue;
    arrays[key] = { shape, data: await readF32(new URL(`${key}.f32`, dir)) };
  }
  const labelBytes = await Deno.readFile(new URL("labels.i32", dir));
  return {
    options,
    dims: { nMels: c.n_mels, frames: c.T, classes: c.C },
    params: m.params,
    loss: m.loss,
    state: await read(m.state_dict),
    grads: await read(m.grads),
    arrays,
    labels: new Int32Array(
      labelBytes.buffer.slice(
        labelBytes.byteOffset,
        labelBytes.byteOffset + labelBytes.byteLength,
      ),
    ),
  };
}

/**
 * Transposes a `[b, mels, T]` fixture input to the model's `[b, T, mels]`.
 *
 * @param a The input and its shape.
 * @returns Row-major `[b, T, mels]` values.
 */
export function toFramesMajor(
  a: { shape: number[]; data: Float32Array },
): Float32Array {
  const [b, f, t] = a.shape;
  const out = new Float32Array(a.data.length);
  for (let i = 0; i < b; i++) {
    for (let j = 0; j < f; j++) {
      for (let k = 0; k < t; k++) {
        out[(i * t + k) * f + j] = a.data[(i * f + j) * t + k];
      }
    }
  }
  return out;
}

/**
 * Gradients that are zero in exact arithmetic, so a fixture holds only
 * float32 rounding noise and a relative error is meaningless: attention key
 * biases (softmax is invariant to a per-query constant), and biases
 * followed, up to linear maps, by a training-mode BatchNorm or a LayerNorm
 * over the same axis.
 *
 * @param name Parameter name.
 * @param head The model's head.
 */
export function structurallyZero(name: string, head: "avg" | "fce"): boolean {
  if (/\.attention\.k\.bias$/.test(name)) return true;
  if (head === "avg") {
    return [
      "transform.tf_norm.bias",
      "classifier.fc1.bias",
      "classifier.fc2.bias",
    ].includes(name);
  }
  return name === "classifier.merge.bias";
}
