/**
 * The fce head's merge conv (`classifier.merge` of `model/amaut.ts`: a conv
 * over the embedding axis of the special tokens) on the fused engine, and
 * its gradient.
 *
 * @module
 */
import type { KernelPlan, KernelStep } from "../runtime.ts";
import { readOnly, readWrite, storageBindings } from "./bindings.ts";
import {
  checkSize,
  gridFor,
  itemMainWgsl,
  WORKGROUP_SIZE as WG,
} from "./grid.ts";
import { WORKGROUP_SUM_TREE } from "./wgsl.ts";

/** Sizes of the fce head's merge conv. */
export interface MergeOptions {
  /** Clips in the batch. */
  readonly batch: number;
  /** Sequence length (rows of z per clip). */
  readonly sequence: number;
  /** Embedding width: the conv's signal length and output length. */
  readonly dim: number;
  /** Sequence positions of the conv's input channels (C = length, usually 2). */
  readonly positions: readonly number[];
  /** Conv kernel size (odd; padding (kernel − 1)/2, stride 1). */
  readonly kernel: number;
}

function checkMerge(o: MergeOptions): void {
  checkSize("batch", o.batch, 1);
  checkSize("sequence", o.sequence, 1);
  checkSize("dim", o.dim, 1);
  checkSize("kernel", o.kernel, 1);
  if (o.kernel % 2 !== 1) {
    throw new RangeError(
      `Cannot build the merge kernels: kernel size must be odd, got ${o.kernel}`,
    );
  }
  if (o.positions.length < 1) {
    throw new RangeError(
      "Cannot build the merge kernels: no positions given; pass at least one",
    );
  }
  for (const p of o.positions) {
    if (!Number.isInteger(p) || p < 0 || p >= o.sequence) {
      throw new RangeError(
        `Cannot build the merge kernels: position ${p} is outside 0…${
          o.sequence - 1
        }`,
      );
    }
  }
}

/**
 * The fce head's merge conv forward (`classifier.merge`: conv1d over the
 * embedding axis, C = positions.length input channels, one output channel,
 * kernel stored `[kernel][C][1]`, zero padding (kernel − 1)/2):
 * `m[b][i] = bias + Σ_j Σ_c w[j·C + c] · z[b·sequence + positions[c]][i + j − (kernel−1)/2]`.
 *
 * Bindings: "z" (read, `[batch·sequence][dim]`), "w" (read, `[kernel·C]`),
 * "bias" (read, `[1]`), "m" (write, `[batch][dim]`). No scratch.
 *
 * @param o Sizes.
 * @returns The plan.
 */
export function mergeForward(
  o: MergeOptions,
): KernelPlan<"z" | "w" | "bias" | "m"> {
  checkMerge(o);
  const { batch, sequence, dim, kernel } = o;
  const C = o.positions.length;
  const half = (kernel - 1) / 2;
  const n = batch * dim;
  const taps = o.positions.map((p, c) =>
    `      acc += w[j * ${C}u + ${c}u] * z[(b * ${sequence}u + ${p}u) * ${dim}u + u32(t)];`
  ).join("\n");
  const b = storageBindings([
    readOnly("z"),
    readOnly("w"),
    readOnly("bias"),
    readWrite("m"),
  ]);
  const code = `// mergeForward
${b.decls}
${itemMainWgsl(n, undefined, "e").main}
  let b = e / ${dim}u;
  let i = i32(e % ${dim}u);
  var acc = 0.0;
  for (var j = 0u; j < ${kernel}u; j++) {
    let t = i + i32(j) - ${half};
    if (t >= 0 && t < ${dim}) {
${taps}
    }
  }
  m[e] = acc + bias[0];
}
`;
  return {
    steps: [{
      spec: { code, workgroups: gridFor(n).workgroups, label: "mergeForward" },
      bind: b.bind,
    }],
  };
}

/**
 * The merge conv backward, three dispatches with their own bindings, all
 * accumulating:
 *
 * 1. "dm" (read, `[batch][dim]`), "w" (read, `[kernel·C]`), "dz"
 *    (read_write, `[batch·sequence][dim]`): adds the gradient to the rows of
 *    the selected tokens (other rows untouched; a position listed twice gets
 *    both channels' gradients);
 * 2. "dm", "z" (read, `[batch·sequence][dim]`), "dw" (read_write,
 *    `[kernel·C]`): `dw[j·C + c] += Σ_b Σ_i dm[b][i]·z[b, positions[c], i + j − half]`
 *    (one workgroup per weight);
 * 3. "dm", "dbias" (read_write, `[1]`): `dbias[0] += Σ dm` (one workgroup).
 *
 * @param o Sizes.
 * @returns The plan (dz, dw, dbias steps). No scratch.
 */
export function mergeBackward(
  o: MergeOptions,
): KernelPlan<"dm" | "w" | "z" | "dz" | "dw" | "dbias"> {
  checkMerge(o);
  const { batch, sequence, dim, kernel } = o;
  const C = o.positions.length;
  const half = (kernel - 1) / 2;
  const steps: KernelStep[] = [];
  // dz: one thread per (b, t), one accumulator per distinct position.
  {
    const n = batch * dim;
    const distinct = [...new Set(o.positions)];
    const body = distinct.map((p, d) => {
      const channels = o.positions.map((q, c) => q === p ? c : -1).filter((
        c,
      ) => c >= 0);
      const terms = channels.map((c) =>
        `      a${d} += w[j * ${C}u + ${c}u] * g;`
      ).join("\n");
      return { p, d, terms };
    });
    const b = storageBindings([readOnly("dm"), readOnly("w"), readWrite("dz")]);
    const code = `// mergeBackward dz
${b.decls}
${itemMainWgsl(n, undefined, "e").main}
  let b = e / ${dim}u;
  let t = i32(e % ${dim}u);
${body.map(({ d }) => `  var a${d} = 0.0;`).join("\n")}
  for (var j = 0u; j < ${kernel}u; j++) {
    let i = t - i32(j) + ${half};
    if (i >= 0 && i < ${dim}) {
      let g = dm[b * ${dim}u + u32(i)];
${body.map(({ terms }) => terms).join("\n")}
    }
  }
${
      body.map(({ p, d }) =>
        `  dz[(b * ${sequence}u + ${p}u) * ${dim}u + u32(t)] += a${d};`
      ).join("\n")
    }
}
`;
    steps.push({
      spec: {
        code,
        workgroups: gridFor(n).workgroups,
        label: "mergeBackward.dz",
      },
      bind: b.bind,
    });
  }
  // dw: one workgroup per weight (j, c), reducing over batch·dim.
  {
    const positions = o.positions.map((p) => `${p}u`).join(", ");
    const b = storageBindings([readOnly("dm"), readOnly("z"), readWrite("dw")]);
    const code = `// mergeBackward dw
${b.decls}
const POS = array<u32, ${C}>(${positions});
var<workgroup> red: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let j = wid.x / ${C}u;
  let p = POS[wid.x % ${C}u];
  let shift = i32(j) - ${half};
  var acc = 0.0;
  for (var e = lid.x; e < ${batch * dim}u; e += ${WG}u) {
    let b = e / ${dim}u;
    let t = i32(e % ${dim}u) + shift;
    if (t >= 0 && t < ${dim}) {
      acc += dm[e] * z[(b * ${sequence}u + p) * ${dim}u + u32(t)];
    }
  }
  red[lid.x] = acc;
${WORKGROUP_SUM_TREE}
  if (lid.x == 0u) { dw[wid.x] += red[0]; }
}
`;
    steps.push({
      spec: {
        code,
        workgroups: [kernel * C, 1, 1],
        label: "mergeBackward.dw",
      },
      bind: b.bind,
    });
  }
  // dbias
  {
    const b = storageBindings([readOnly("dm"), readWrite("dbias")]);
    const code = `// mergeBackward dbias
${b.decls}
var<workgroup> red: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_id) lid: vec3<u32>) {
  var acc = 0.0;
  for (var e = lid.x; e < ${batch * dim}u; e += ${WG}u) {
    acc += dm[e];
  }
  red[lid.x] = acc;
${WORKGROUP_SUM_TREE}
  if (lid.x == 0u) { dbias[0] += red[0]; }
}
`;
    steps.push({
      spec: { code, workgroups: [1, 1, 1], label: "mergeBackward.dbias" },
      bind: b.bind,
    });
  }
  return { steps };
}
