/**
 * The token assembly of AMAuT (`model/amaut.ts`) on the fused engine:
 * `[CLS, t_1 … t_K, TAL]` (or special tokens first), the positional
 * embedding and inverted dropout with the hash mask of `dropout.ts`, and its
 * gradient.
 *
 * @module
 */
import type { KernelPlan, KernelStep } from "../runtime.ts";
import { readOnly, readWrite, storageBindings } from "./bindings.ts";
import { checkSize, gridFor, itemMainWgsl } from "./grid.ts";
import { DROPOUT_STEP, dropoutWgsl } from "./dropout.ts";

/** Sizes of the token assembly. */
export interface TokensOptions {
  /** Clips in the batch. */
  readonly batch: number;
  /** Embedded (CNN) tokens per clip, K. */
  readonly k: number;
  /** Embedding width (floats per token). */
  readonly dim: number;
  /** Sequence length, K + number of special tokens. */
  readonly sequence: number;
  /** Position of the first embedded token in the sequence. */
  readonly embStart: number;
  /** Sequence position of special token i (distinct, outside the embedded run). */
  readonly specialPositions: readonly number[];
  /** Dropout rate in [0, 1); 0 turns dropout (and the "step" binding) off. */
  readonly dropout: number;
}

function checkTokens(o: TokensOptions): void {
  checkSize("batch", o.batch, 1);
  checkSize("k", o.k, 1);
  checkSize("dim", o.dim, 1);
  checkSize("embStart", o.embStart, 0);
  if (!(o.dropout >= 0 && o.dropout < 1)) {
    throw new RangeError(
      `Cannot build the token kernels: dropout must be in [0, 1), got ${o.dropout}`,
    );
  }
  if (o.sequence !== o.k + o.specialPositions.length) {
    throw new RangeError(
      `Cannot build the token kernels: sequence ${o.sequence} ≠ k ${o.k} + ${o.specialPositions.length} special tokens`,
    );
  }
  if (o.embStart + o.k > o.sequence) {
    throw new RangeError(
      `Cannot build the token kernels: embedded tokens ${o.embStart}…${
        o.embStart + o.k - 1
      } overrun the sequence of ${o.sequence}`,
    );
  }
  const seen = new Set<number>();
  for (const p of o.specialPositions) {
    if (
      !Number.isInteger(p) || p < 0 || p >= o.sequence || seen.has(p) ||
      (p >= o.embStart && p < o.embStart + o.k)
    ) {
      throw new RangeError(
        `Cannot build the token kernels: special positions [${o.specialPositions}] must be distinct positions outside the embedded tokens`,
      );
    }
    seen.add(p);
  }
}

/**
 * The token assembly forward: `z` row (b, s) = `emb[b·k + s − embStart]`
 * when embStart ≤ s < embStart + k, else special token i's vector where
 * `specialPositions[i] = s`; plus `pos[s]`; then inverted dropout (keep with
 * probability 1 − p, scale 1/(1 − p); mask of {@linkcode dropoutKeep} with
 * seed `step[0]` and the flat index of the element in `z`).
 *
 * Bindings: "emb" (read, `[batch·k][dim]`), "special0" … "special{S−1}"
 * (read, `[dim]` each), "pos" (read, `[sequence][dim]`), "step" (read,
 * `array<u32>`, seed at [0]; only when dropout > 0), "z" (write,
 * `[batch·sequence][dim]`). One dispatch, no scratch.
 *
 * @param o Sizes and dropout rate.
 * @returns The plan.
 * @throws {RangeError} On inconsistent sizes or positions.
 */
export function tokensForward(
  o: TokensOptions,
): KernelPlan<"emb" | "pos" | "z" | `special${number}`, "step"> {
  checkTokens(o);
  const { batch, k, dim, sequence, embStart } = o;
  const S = o.specialPositions.length;
  const n = batch * sequence * dim;
  const drop = o.dropout > 0;
  const { decls, bind } = storageBindings([
    readOnly("emb"),
    ...Array.from(
      { length: S },
      (_, i) => readOnly(`special${i}` as `special${number}`),
    ),
    readOnly("pos"),
    drop && DROPOUT_STEP,
    readWrite("z"),
  ]);
  const branches = o.specialPositions.map((p, i) =>
    ` else if (s == ${p}u) { v = special${i}[c]; }`
  ).join("");
  const code = `// tokensForward
${drop ? `${decls}\n${dropoutWgsl(o.dropout)}` : decls}
${itemMainWgsl(n, undefined, "e").main}
  let row = e / ${dim}u;
  let c = e % ${dim}u;
  let b = row / ${sequence}u;
  let s = row % ${sequence}u;
  var v = 0.0;
  if (s >= ${embStart}u && s < ${embStart + k}u) {
    v = emb[(b * ${k}u + s - ${embStart}u) * ${dim}u + c];
  }${branches}
  v = v + pos[s * ${dim}u + c];
  z[e] = ${drop ? "v * keepScale(e)" : "v"};
}
`;
  return {
    steps: [{
      spec: { code, workgroups: gridFor(n).workgroups, label: "tokensForward" },
      bind,
    }],
  };
}

/**
 * The token assembly backward, as separate dispatches so that gradients
 * living in one buffer are never bound twice:
 *
 * 1. bindings "dz" (read, `[batch·sequence][dim]`), ["step"], "demb"
 *    (write, `[batch·k][dim]`): `demb = dz` rows of the embedded tokens,
 *    times the dropout mask and scale;
 * 2. "dz", ["step"], "dpos" (read_write, `[sequence][dim]`, accumulated):
 *    `dpos[s] += Σ_b mask·dz[b, s]`;
 * 3. one per special token i: "dz", ["step"], "dspecial{i}" (read_write,
 *    `[dim]`, accumulated): `dspecial_i += Σ_b mask·dz[b, specialPositions[i]]`.
 *
 * "step" (read, `array<u32>`) is bound (second) only when dropout > 0 and
 * must hold the forward's seed, so the same mask is regenerated. No scratch.
 *
 * @param o The forward's options.
 * @returns The plan (2 + S steps in the order above).
 * @throws {RangeError} On inconsistent sizes or positions.
 */
export function tokensBackward(
  o: TokensOptions,
): KernelPlan<"dz" | "demb" | "dpos" | `dspecial${number}`, "step"> {
  checkTokens(o);
  const { batch, k, dim, sequence, embStart } = o;
  const drop = o.dropout > 0;
  const head = (out: string): { decl: string; bind: string[] } => {
    const { decls, bind } = storageBindings([
      readOnly("dz"),
      drop && DROPOUT_STEP,
      readWrite(out),
    ]);
    return {
      decl: drop ? `${decls}\n${dropoutWgsl(o.dropout)}` : decls,
      bind,
    };
  };
  const masked = (index: string): string =>
    drop ? `dz[${index}] * keepScale(${index})` : `dz[${index}]`;
  const steps: KernelStep[] = [];

  // demb
  {
    const n = batch * k * dim;
    const { decl, bind } = head("demb");
    const code = `// tokensBackward demb
${decl}
${itemMainWgsl(n, undefined, "e").main}
  let row = e / ${dim}u;
  let c = e % ${dim}u;
  let b = row / ${k}u;
  let t = row % ${k}u;
  let i = (b * ${sequence}u + t + ${embStart}u) * ${dim}u + c;
  demb[e] = ${masked("i")};
}
`;
    steps.push({
      spec: {
        code,
        workgroups: gridFor(n).workgroups,
        label: "tokensBackward.demb",
      },
      bind,
    });
  }
  // dpos
  {
    const n = sequence * dim;
    const { decl, bind } = head("dpos");
    const code = `// tokensBackward dpos
${decl}
${itemMainWgsl(n, undefined, "e").main}
  var acc = 0.0;
  for (var b = 0u; b < ${batch}u; b++) {
    let i = b * ${sequence * dim}u + e;
    acc += ${masked("i")};
  }
  dpos[e] += acc;
}
`;
    steps.push({
      spec: {
        code,
        workgroups: gridFor(n).workgroups,
        label: "tokensBackward.dpos",
      },
      bind,
    });
  }
  // dspecial
  o.specialPositions.forEach((p, si) => {
    const { decl, bind } = head(`dspecial${si}`);
    const code = `// tokensBackward dspecial (position ${p})
${decl}
${itemMainWgsl(dim, undefined, "e").main}
  var acc = 0.0;
  for (var b = 0u; b < ${batch}u; b++) {
    let i = (b * ${sequence}u + ${p}u) * ${dim}u + e;
    acc += ${masked("i")};
  }
  dspecial${si}[e] += acc;
}
`;
    steps.push({
      spec: {
        code,
        workgroups: gridFor(dim).workgroups,
        label: "tokensBackward.dspecial",
      },
      bind,
    });
  });
  return { steps };
}
