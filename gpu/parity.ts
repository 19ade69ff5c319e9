/**
 * Parity checks of the fused WebGPU engine, shared by its tests (on any
 * adapter, lavapipe included) and `deno task bench parity` (on a real GPU):
 * against the PyTorch fixtures (eval logits, the summed 2-view loss, every
 * gradient), and against the tfjs model's own training step on the cpu
 * backend (weights, running statistics and momentum after SGD steps).
 *
 * @module
 */
import type { Tf } from "../pipeline/types.ts";
import { createRng } from "../pipeline/rng.ts";
import {
  createModel,
  loadStateDict,
  type ModelDims,
  type ModelOptions,
  toTorchLayout,
} from "../model/amaut.ts";
import { createSgd } from "../model/sgd.ts";
import { multiviewStep } from "../model/train_step.ts";
import {
  type ModelFixture,
  structurallyZero,
  toFramesMajor,
} from "../model/fixture.ts";
import { createFusedEngine, type EngineSettings } from "./engine.ts";

/** Relative L2 error ‖a − b‖ / ‖b‖, with both norms. */
export function relativeError(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
): { relative: number; normA: number; normB: number } {
  let d = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    d += (a[i] - b[i]) ** 2;
    na += a[i] ** 2;
    nb += b[i] ** 2;
  }
  return {
    relative: Math.sqrt(d) / Math.max(Math.sqrt(nb), 1e-30),
    normA: Math.sqrt(na),
    normB: Math.sqrt(nb),
  };
}

/** Result of {@linkcode fixtureParity}. */
export interface FixtureParity {
  /** Max abs error of the eval logits (running statistics). */
  readonly evalLogitsMaxAbs: number;
  /** Relative L2 error of the eval logits ({@linkcode relativeError}). */
  readonly evalLogitsRelative: number;
  /** Relative error of the summed 2-view loss. */
  readonly lossRelative: number;
  /** The worst relative gradient error among the non-zero gradients. */
  readonly worstGradient: { name: string; relative: number };
  /** Largest norm of a structurally zero gradient (ours, fixture's). */
  readonly zeroGradientNorm: { ours: number; fixture: number };
  /** Gradients compared. */
  readonly gradients: number;
}

/**
 * Runs the fused engine on a PyTorch fixture: eval logits of `x1`, then one
 * training step on the views `x1`, `x2` with dropout 0 and learning rate 0,
 * whose loss and gradients are read back.
 *
 * @param tf TensorFlow.js (its current backend builds the host model; cpu is fine).
 * @param device The WebGPU device the engine runs on.
 * @param f The fixture.
 * @param settings Engine settings (e.g. `precision: "mixed"`, whose
 *   gradients are read back unscaled; default fp32).
 */
export async function fixtureParity(
  tf: Tf,
  device: GPUDevice,
  f: ModelFixture,
  settings: EngineSettings = {},
): Promise<FixtureParity> {
  const model = createModel(tf, f.options, f.dims, createRng("parity", 0));
  const engine = createFusedEngine(
    tf,
    f.options,
    f.dims,
    device,
    settings,
  );
  try {
    loadStateDict(tf, model, f.state);
    await engine.upload(model);
    const b = f.labels.length;
    const x1 = toFramesMajor(f.arrays.x1);
    const x2 = toFramesMajor(f.arrays.x2);
    const logits = await engine.evalLogits(x1, b);
    const ref = f.arrays.eval_logits.data;
    let evalLogitsMaxAbs = 0;
    for (let i = 0; i < ref.length; i++) {
      evalLogitsMaxAbs = Math.max(
        evalLogitsMaxAbs,
        Math.abs(logits[i] - ref[i]),
      );
    }
    const evalLogitsRelative = relativeError(logits, ref).relative;
    const x = new Float32Array(x1.length + x2.length);
    x.set(x1);
    x.set(x2, x1.length);
    // mixed precision: the gradient arena holds the loss-scaled gradients
    const scale = (await engine.lossScaleState())?.scale ?? 1;
    await engine.step(x, [...f.labels], 2, {
      smoothing: 0.1,
      lr: 0,
      sgd: { momentum: 0, weightDecay: 0, nesterov: false },
      seed: 1,
      dropout: 0,
    });
    const m = await engine.metrics();
    const grads = (await engine.runtime.read(engine.arenas.grads)).map((g) =>
      g / scale
    );
    let worst = { name: "", relative: 0 };
    const zero = { ours: 0, fixture: 0 };
    for (const [key, g] of Object.entries(f.grads)) {
      const slot = engine.arenas.slots.find((s) => s.name === key);
      if (!slot) {
        throw new Error(
          `Cannot compare gradients: fixture gradient ${key} has no parameter in the model; regenerate the fixture for this model configuration`,
        );
      }
      const ours = tf.tidy(() =>
        toTorchLayout(
          tf,
          model,
          key,
          tf.tensor(
            grads.slice(slot.offset, slot.offset + slot.size),
            model.params.get(key)!.shape,
          ),
        )
      );
      const r = relativeError(await ours.data(), g.data);
      ours.dispose();
      if (structurallyZero(key, f.options.head)) {
        zero.ours = Math.max(zero.ours, r.normA);
        zero.fixture = Math.max(zero.fixture, r.normB);
      } else if (r.relative >= worst.relative) {
        worst = { name: key, relative: r.relative };
      }
    }
    return {
      evalLogitsMaxAbs,
      evalLogitsRelative,
      lossRelative: Math.abs(m.lossSum - f.loss) / Math.abs(f.loss),
      worstGradient: worst,
      zeroGradientNorm: zero,
      gradients: Object.keys(f.grads).length,
    };
  } finally {
    engine.destroy();
    model.dispose();
  }
}

/** Result of {@linkcode stepParity}. */
export interface StepParity {
  /** Summed loss over the steps: tfjs, fused. */
  readonly loss: { tfjs: number; fused: number };
  /** Worst relative error over parameters and running statistics after the steps. */
  readonly worstWeight: { name: string; relative: number };
  /** Worst relative error over the momentum buffers. */
  readonly worstMomentum: { name: string; relative: number };
  /** Largest absolute difference of a parameter or momentum buffer whose gradient is structurally zero. */
  readonly zeroGradientMaxAbs: number;
  /** Max abs difference of eval logits after the steps (fused vs the tfjs-trained model). */
  readonly evalLogitsMaxAbs: number;
  /** Momentum buffers (tfjs, fused). */
  readonly momentumBuffers: { tfjs: number; fused: number };
}

/**
 * Trains two identical models for `steps` SGD steps (momentum 0.9, weight
 * decay 1e-3, per-tensor learning rates, dropout 0): one with the tfjs step
 * (`model/train_step.ts`) on the current backend, one with the fused engine.
 * Tensors whose gradient is structurally zero ({@linkcode structurallyZero})
 * hold float32 noise in both and are compared by absolute difference.
 *
 * @param tf TensorFlow.js (cpu backend recommended for the reference).
 * @param device The engine's WebGPU device.
 * @param options Model options (dropout is forced to 0).
 * @param dims Data sizes.
 * @param o Views, clips per view, steps.
 */
export async function stepParity(
  tf: Tf,
  device: GPUDevice,
  options: ModelOptions,
  dims: ModelDims,
  o: { views: number; perView: number; steps: number },
): Promise<StepParity> {
  const opts = { ...options, dropout: 0 };
  const a = createModel(tf, opts, dims, createRng("step-parity", 3));
  const b = createModel(tf, opts, dims, createRng("step-parity", 3));
  const sgdA = createSgd(tf);
  const sgdB = createSgd(tf);
  const engine = createFusedEngine(tf, opts, dims, device);
  try {
    await engine.upload(b, sgdB);
    const rng = createRng("step-parity/tokens", 5);
    const labels = Array.from(
      { length: o.perView },
      (_, i) => (i * 7 + 1) % dims.classes,
    );
    // The recipe's scale: larger rates let float32 differences flip ReLU masks
    // within a few steps, after which the two runs drift apart legitimately.
    const lr = (name: string) => name.startsWith("classifier") ? 3e-3 : 1e-3;
    const sgd = { momentum: 0.9, weightDecay: 1e-3, nesterov: false };
    let tfLoss = 0;
    for (let s = 0; s < o.steps; s++) {
      const data = Float32Array.from(
        { length: o.views * o.perView * dims.frames * dims.nMels },
        () => rng.normal(),
      );
      const tokens = tf.tensor3d(data, [
        o.views * o.perView,
        dims.frames,
        dims.nMels,
      ]);
      const labelsT = tf.tensor1d(labels, "int32");
      const out = multiviewStep(tf, a, sgdA, tokens, labelsT, o.views, {
        smoothing: 0.1,
        lr,
        sgd,
        rng: createRng("step-parity/dropout", s),
      });
      tfLoss += (await out.loss.data())[0];
      tf.dispose([out.loss, out.lastLogits, tokens, labelsT]);
      await engine.step(data, labels, o.views, {
        smoothing: 0.1,
        lr,
        sgd,
        seed: s,
      });
    }
    const m = await engine.metrics();
    // Eval after training: the weights changed, so standardisation reruns.
    const evalTokens = Float32Array.from(
      { length: o.perView * dims.frames * dims.nMels },
      () => rng.normal(),
    );
    const ours = await engine.evalLogits(evalTokens, o.perView);
    const x = tf.tensor3d(evalTokens, [o.perView, dims.frames, dims.nMels]);
    const ref = a.apply(x, { training: false }).logits;
    const want = await ref.data();
    tf.dispose([x, ref]);
    let evalLogitsMaxAbs = 0;
    for (let i = 0; i < want.length; i++) {
      evalLogitsMaxAbs = Math.max(
        evalLogitsMaxAbs,
        Math.abs(ours[i] - want[i]),
      );
    }
    await engine.download(b, sgdB);
    // Structurally zero gradients are float32 noise in both: compare those
    // tensors by absolute difference, all others relative to their norm.
    let zeroGradientMaxAbs = 0;
    const compare = async (
      name: string,
      ours: import("@tensorflow/tfjs").Tensor | undefined,
      ref: import("@tensorflow/tfjs").Tensor,
      worst: { name: string; relative: number },
    ) => {
      const want = await ref.data();
      if (!ours) return { name, relative: Infinity };
      const got = await ours.data();
      if (structurallyZero(name, opts.head)) {
        for (let i = 0; i < want.length; i++) {
          zeroGradientMaxAbs = Math.max(
            zeroGradientMaxAbs,
            Math.abs(got[i] - want[i]),
          );
        }
        return worst;
      }
      const r = relativeError(got, want);
      return r.relative >= worst.relative
        ? { name, relative: r.relative }
        : worst;
    };
    let worstWeight = { name: "", relative: 0 };
    const all = (model: typeof a) => [...model.params, ...model.buffers];
    const bValues = new Map(all(b));
    for (const [name, v] of all(a)) {
      worstWeight = await compare(name, bValues.get(name), v, worstWeight);
    }
    let worstMomentum = { name: "", relative: 0 };
    for (const [name, v] of sgdA.buffers) {
      worstMomentum = await compare(
        name,
        sgdB.buffers.get(name),
        v,
        worstMomentum,
      );
    }
    return {
      loss: { tfjs: tfLoss, fused: m.lossSum },
      worstWeight,
      worstMomentum,
      zeroGradientMaxAbs,
      evalLogitsMaxAbs,
      momentumBuffers: { tfjs: sgdA.buffers.size, fused: sgdB.buffers.size },
    };
  } finally {
    engine.destroy();
    a.dispose();
    b.dispose();
    sgdA.dispose();
    sgdB.dispose();
  }
}
