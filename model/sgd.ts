/**
 * Stochastic gradient descent with the exact update rule of PyTorch's
 * `torch.optim.SGD` (coupled L2 weight decay, heavy-ball or Nesterov momentum
 * with dampening, momentum buffer initialised to the first gradient), one
 * learning rate per parameter tensor, as the AMAuT reference builds it (one
 * param group per tensor, spec §8).
 *
 * Updates run on the device: nothing is read back from GPU memory, and every
 * temporary tensor is disposed within the step. The only tensors the
 * optimizer keeps are the momentum buffers ({@linkcode Sgd.buffers}).
 *
 * @module
 */
import type { Tensor, Variable } from "@tensorflow/tfjs";
import type { Tf } from "../pipeline/types.ts";

/** Hyper-parameters of one SGD step (PyTorch's param-group settings, less lr). */
export interface SgdOptions {
  /** Momentum factor (dimensionless, ≥ 0); 0 turns momentum off. */
  readonly momentum: number;
  /** Coupled L2 weight decay factor (per unit lr, ≥ 0): the gradient gets `weightDecay·w` added. */
  readonly weightDecay: number;
  /** Nesterov momentum; needs `momentum > 0` and `dampening = 0`, as in PyTorch. */
  readonly nesterov: boolean;
  /** Dampening of the gradient added to the momentum buffer (dimensionless, default 0). */
  readonly dampening?: number;
}

/** A stateful SGD optimizer: holds the momentum buffers between steps. */
export interface Sgd {
  /**
   * One step. For every named variable with a gradient:
   * `g = grad + weightDecay·w` (coupled L2); if momentum ≠ 0:
   * `buf = g` on the first step with momentum on (no buffer yet), else
   * `buf = momentum·buf + (1 − dampening)·g`; then
   * `g = nesterov ? g + momentum·buf : buf`; finally `w −= lr·g`.
   * Variables without a gradient are left alone (PyTorch skips `grad = None`).
   * With momentum 0 the buffers are neither created nor changed.
   *
   * Disposes what it creates and never reads GPU memory back. The gradients
   * stay owned by the caller. All arguments are checked before any variable
   * changes.
   *
   * @param grads Gradients by variable name (same shapes as the variables).
   * @param variables The trainable variables by name.
   * @param lr Learning rate (per unit gradient, ≥ 0): one number for all, or
   *   a function of the variable name (one param group per tensor).
   * @param options Momentum, weight decay, Nesterov, dampening for this step.
   * @throws {Error} On a gradient without a variable, a shape mismatch, or an
   *   invalid hyper-parameter (PyTorch's constructor checks).
   */
  step(
    grads: Readonly<Record<string, Tensor>>,
    variables: ReadonlyMap<string, Variable>,
    lr: number | ((name: string) => number),
    options: SgdOptions,
  ): void;
  /** Momentum buffers by variable name, for checkpoints (kept tensors owned by the optimizer; do not dispose). */
  readonly buffers: ReadonlyMap<string, Tensor>;
  /**
   * Replaces all buffers (e.g. from a checkpoint). The optimizer keeps its
   * own copies, so the caller may dispose the tensors it passed.
   *
   * @param buffers Momentum buffers by variable name.
   */
  load(buffers: ReadonlyMap<string, Tensor>): void;
  /** Disposes the buffers; the optimizer starts afresh if stepped again. */
  dispose(): void;
}

function checkFiniteAtLeast0(what: string, value: number): void {
  if (!Number.isFinite(value) || value < 0) {
    throw new Error(
      `Cannot create SGD: invalid ${what} ${value}, must be a finite number ≥ 0`,
    );
  }
}

function checkOptions(options: SgdOptions): number {
  const dampening = options.dampening ?? 0;
  checkFiniteAtLeast0("momentum", options.momentum);
  checkFiniteAtLeast0("weight decay", options.weightDecay);
  if (!Number.isFinite(dampening)) {
    throw new Error(
      `Cannot create SGD: invalid dampening ${dampening}, must be finite`,
    );
  }
  if (options.nesterov && (options.momentum <= 0 || dampening !== 0)) {
    throw new Error(
      `Cannot create SGD: Nesterov momentum requires a momentum > 0 and zero dampening (got momentum ${options.momentum}, dampening ${dampening})`,
    );
  }
  return dampening;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function shapeText(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

/**
 * Creates an SGD optimizer with PyTorch `torch.optim.SGD` semantics.
 *
 * @param tf The TensorFlow.js namespace to compute with.
 */
export function createSgd(tf: Tf): Sgd {
  const buffers = new Map<string, Tensor>();

  function setBuffer(name: string, value: Tensor): void {
    const old = buffers.get(name);
    buffers.set(name, value);
    if (old && old !== value) old.dispose();
  }

  return {
    get buffers(): ReadonlyMap<string, Tensor> {
      return buffers;
    },

    step(grads, variables, lr, options): void {
      const dampening = checkOptions(options);
      const { momentum, weightDecay, nesterov } = options;
      // Check everything first, so a bad call changes nothing.
      for (const [name, grad] of Object.entries(grads)) {
        const variable = variables.get(name);
        if (!variable) {
          throw new Error(
            `Cannot apply SGD: got a gradient for "${name}", which is not among the variables`,
          );
        }
        if (!sameShape(grad.shape, variable.shape)) {
          throw new Error(
            `Cannot apply SGD: the gradient for "${name}" has shape ${
              shapeText(grad.shape)
            }, the variable ${shapeText(variable.shape)}`,
          );
        }
        const buf = buffers.get(name);
        if (momentum !== 0 && buf && !sameShape(buf.shape, variable.shape)) {
          throw new Error(
            `Cannot apply SGD: the momentum buffer for "${name}" has shape ${
              shapeText(buf.shape)
            }, the variable ${shapeText(variable.shape)}`,
          );
        }
      }
      const rates = new Map<string, number>();
      for (const name of Object.keys(grads)) {
        const rate = typeof lr === "number" ? lr : lr(name);
        checkFiniteAtLeast0(`learning rate for "${name}"`, rate);
        rates.set(name, rate);
      }

      for (const [name, variable] of variables) {
        const grad = grads[name];
        if (!grad) continue;
        const rate = rates.get(name)!;
        const newBuffer = tf.tidy(() => {
          let g: Tensor = weightDecay !== 0
            ? grad.add(variable.mul(weightDecay))
            : grad;
          let kept: Tensor | undefined;
          if (momentum !== 0) {
            const old = buffers.get(name);
            if (!old) {
              kept = tf.clone(g);
            } else {
              const fresh = dampening === 0 ? g : g.mul(1 - dampening);
              kept = old.mul(momentum).add(fresh);
            }
            g = nesterov ? g.add(kept.mul(momentum)) : kept;
          }
          variable.assign(variable.sub(g.mul(rate)));
          return kept ? tf.keep(kept) : undefined;
        });
        if (newBuffer) setBuffer(name, newBuffer);
      }
    },

    load(source): void {
      const copies = new Map<string, Tensor>();
      for (const [name, tensor] of source) {
        copies.set(name, tf.keep(tf.clone(tensor)));
      }
      for (const tensor of buffers.values()) tensor.dispose();
      buffers.clear();
      for (const [name, tensor] of copies) buffers.set(name, tensor);
    },

    dispose(): void {
      for (const tensor of buffers.values()) tensor.dispose();
      buffers.clear();
    },
  };
}

/**
 * The reference's SGD settings for a 0-based epoch (spec §8). The reference
 * builds `torch.optim.SGD` with PyTorch defaults, so epoch 0 runs with
 * momentum 0 and weight decay 0; its `lr_scheduler` then sets momentum and
 * weight decay after every epoch, so they apply from epoch 1 on. It sets
 * Nesterov under the misspelt key `'nestenv'`, so Nesterov is never on: it is
 * on here only when `settings.nesterov` asks for it (and never in epoch 0,
 * where momentum is 0).
 *
 * @param epoch 0-based epoch index.
 * @param settings Momentum (reference 0.9), weight decay (reference 1e-3,
 *   per unit lr), Nesterov (reference effectively false).
 */
export function referenceSgdOptions(
  epoch: number,
  settings: { momentum: number; weightDecay: number; nesterov: boolean },
): SgdOptions {
  if (!Number.isInteger(epoch) || epoch < 0) {
    throw new Error(
      `Cannot build the reference SGD options: invalid epoch ${epoch}, must be an integer ≥ 0`,
    );
  }
  if (epoch === 0) {
    return { momentum: 0, weightDecay: 0, nesterov: false, dampening: 0 };
  }
  return {
    momentum: settings.momentum,
    weightDecay: settings.weightDecay,
    nesterov: settings.nesterov,
    dampening: 0,
  };
}
