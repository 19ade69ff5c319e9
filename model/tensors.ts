/**
 * Every tensor of a model description (`model/plan.ts`) in PyTorch
 * state-dict order, with its shape here and in PyTorch, its layout relation
 * and its initialiser (reference §5–§6 "Init"). Plain data: nothing
 * allocates a tensor.
 *
 * @module
 */
import type {
  BatchNormPlan,
  ConvBnPlan,
  LayerNormPlan,
  LayerPlan,
  LinearPlan,
} from "./plan.ts";

/**
 * How a tensor is laid out here relative to PyTorch: `conv` ours `[k, in,
 * out]` vs `[out, in, k]`; `linear` ours `[in, out]` vs `[out, in]`; `gain`
 * (weight-norm g) ours `[1, out]` vs `[out, 1]`; `same` identical.
 */
export type Layout = "conv" | "linear" | "gain" | "same";

/** How a tensor is initialised (reference §5 "Init"). */
export type Init =
  | { readonly kind: "uniform"; readonly bound: number }
  | { readonly kind: "normal"; readonly std: number }
  | {
    readonly kind: "truncNormal";
    readonly std: number;
    readonly lo: number;
    readonly hi: number;
  }
  | { readonly kind: "const"; readonly value: number }
  /** Weight-norm gain: the per-output L2 norm of the named `v`, so w = v. */
  | { readonly kind: "rowNorm"; readonly of: string };

/** One parameter or buffer of the model. */
export interface TensorSpec {
  /** PyTorch state-dict name. */
  readonly name: string;
  /** Shape here (TF.js layout). */
  readonly shape: readonly number[];
  /** Shape in the PyTorch state dict. */
  readonly torchShape: readonly number[];
  /** Layout relation between the two. */
  readonly layout: Layout;
  /** Initialiser. */
  readonly init: Init;
}

/** Number of elements of a shape. */
export function shapeSize(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * Every tensor of the layers in PyTorch state-dict order (`FCETransform`:
 * pos_embed, tokens, embedding, tf_norm, layers; then the classifier).
 *
 * @param layers The layers in forward order.
 * @returns Parameters, BatchNorm running statistics, and the BatchNorms in
 *   the same order.
 */
export function stateDict(layers: readonly LayerPlan[]): {
  params: TensorSpec[];
  buffers: TensorSpec[];
  batchNorms: Map<string, BatchNormPlan>;
} {
  const params: TensorSpec[] = [];
  const buffers: TensorSpec[] = [];
  const batchNorms = new Map<string, BatchNormPlan>();
  const uniform = (fanIn: number): Init => ({
    kind: "uniform",
    bound: 1 / Math.sqrt(fanIn),
  });
  const xavierUniform = (fanIn: number, fanOut: number): Init => ({
    kind: "uniform",
    bound: Math.sqrt(6 / (fanIn + fanOut)),
  });
  const same = (name: string, shape: number[], init: Init): void => {
    params.push({ name, shape, torchShape: shape, layout: "same", init });
  };
  // PyTorch default Conv1d init: kaiming_uniform(a=√5) = U(±1/√fan_in).
  const conv = (name: string, cin: number, cout: number, k: number): void => {
    params.push({
      name,
      shape: [k, cin, cout],
      torchShape: [cout, cin, k],
      layout: "conv",
      init: uniform(cin * k),
    });
  };
  const linearWeight = (name: string, cin: number, cout: number, init: Init) =>
    params.push({
      name,
      shape: [cin, cout],
      torchShape: [cout, cin],
      layout: "linear",
      init,
    });
  const linear = (
    l: LinearPlan,
    weight: Init = uniform(l.cin),
    bias: Init = uniform(l.cin),
  ): void => {
    linearWeight(l.weight, l.cin, l.cout, weight);
    same(l.bias, [l.cout], bias);
  };
  const one: Init = { kind: "const", value: 1 };
  const zero: Init = { kind: "const", value: 0 };
  const bn = (b: BatchNormPlan): void => {
    batchNorms.set(b.module, b);
    same(b.weight, [b.channels], one);
    same(b.bias, [b.channels], zero);
    for (const [name, init] of [[b.runningMean, zero], [b.runningVar, one]]) {
      buffers.push({
        name: name as string,
        shape: [b.channels],
        torchShape: [b.channels],
        layout: "same",
        init: init as Init,
      });
    }
  };
  const ln = (l: LayerNormPlan): void => {
    same(l.weight, [l.dim], one);
    same(l.bias, [l.dim], zero);
  };
  const convBn = (c: ConvBnPlan): void => {
    conv(c.weight, c.cin, c.cout, c.kernel);
    bn(c.norm);
  };
  const trunc: Init = { kind: "truncNormal", std: 0.02, lo: -2, hi: 2 };
  const tiny: Init = { kind: "normal", std: 1e-6 };
  // State-dict order of FCETransform: pos_embed, tokens, embedding, tf_norm, layers.
  const rank = (l: LayerPlan): number =>
    l.kind === "tokens"
      ? 0
      : l.kind === "finalNorm"
      ? 2
      : l.kind === "transformer"
      ? 3
      : l.kind === "avgHead" || l.kind === "fceHead"
      ? 4
      : 1;
  const ordered = [...layers].sort((a, b) => rank(a) - rank(b));
  for (const l of ordered) {
    switch (l.kind) {
      case "tokens":
        same(l.posEmbed, [1, l.sequence, l.dim], trunc);
        for (const s of l.special) same(s, [1, 1, l.dim], trunc);
        break;
      case "stem":
        convBn(l.conv);
        break;
      case "bottleneck":
        for (const c of [l.conv1, l.conv2, l.conv3]) convBn(c);
        if (l.shortcut) convBn(l.shortcut);
        break;
      case "patchEmbed":
        conv(l.linear.weight, l.linear.cin, l.linear.cout, 1);
        same(l.linear.bias, [l.linear.cout], uniform(l.linear.cin));
        break;
      case "finalNorm":
        ln(l.norm);
        break;
      case "transformer":
        ln(l.attentionNorm);
        for (const m of [l.q, l.k, l.v, l.o]) linear(m);
        linear(l.fc1, xavierUniform(l.dim, l.mlpDim), tiny);
        linear(l.fc2, xavierUniform(l.mlpDim, l.dim), tiny);
        ln(l.ffnNorm);
        break;
      case "avgHead": {
        linear(l.fc1);
        const { cin, cout } = l.fc2;
        linear(
          l.fc2,
          { kind: "normal", std: Math.sqrt(2 / (cin + cout)) },
          zero,
        );
        bn(l.norm);
        same(l.fc3.bias, [l.fc3.cout], zero);
        params.push({
          name: l.fc3.gain,
          shape: [1, l.fc3.cout],
          torchShape: [l.fc3.cout, 1],
          layout: "gain",
          init: { kind: "rowNorm", of: l.fc3.weight },
        });
        linearWeight(l.fc3.weight, l.fc3.cin, l.fc3.cout, uniform(l.fc3.cin));
        break;
      }
      case "fceHead": {
        const m = l.merge;
        conv(m.weight, l.positions.length, 1, m.kernel);
        same(m.bias, [1], uniform(l.positions.length * m.kernel));
        ln(l.norm);
        linear(l.fc);
        break;
      }
    }
  }
  return { params, buffers, batchNorms };
}
