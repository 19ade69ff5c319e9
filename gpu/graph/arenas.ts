/**
 * The flat parameter, gradient, momentum and running-statistics arenas of
 * the fused engine, laid out from the model description (`model/plan.ts`).
 * Parameters, gradients and momentum share one layout, so the optimizer is
 * one dispatch. A norm module's γ and β sit next to each other
 * (`<module>.gb`), a BatchNorm's running mean and variance likewise
 * (`<module>.running`).
 *
 * @module
 */
import type { ModelDims, ModelOptions } from "../../model/config.ts";
import { modelPlan, shapeSize } from "../../model/config.ts";
import type { Region, Runtime } from "../runtime.ts";

/** Where one parameter lives in the arenas. */
export interface ParamSlot {
  /** PyTorch state-dict name. */
  readonly name: string;
  /** Offset in floats within the arena. */
  readonly offset: number;
  /** Element count. */
  readonly size: number;
  /** Whether it receives a gradient (false: the authors' unused ffn_norm). */
  readonly trained: boolean;
}

/** The flat parameter, gradient and momentum arenas of a model. */
export interface Arenas {
  /** Parameters. */
  readonly params: Region;
  /** Gradients (cleared at the start of every step). */
  readonly grads: Region;
  /** SGD momentum buffers. */
  readonly momentum: Region;
  /** BatchNorm running statistics (`<module>.running`: mean then variance). */
  readonly running: Region;
  /** Per-parameter slots in plan order. */
  readonly slots: readonly ParamSlot[];
  /** Running-statistics slots by buffer name (the plan's `runningMean` / `runningVar`). */
  readonly runningSlots: ReadonlyMap<string, { offset: number; size: number }>;
  /** Bindable parameter region by name (`<module>.gb` for norms). */
  param(name: string): Region;
  /** Bindable gradient region by name. */
  grad(name: string): Region;
  /** Bindable running-statistics region of a BatchNorm module. */
  runningOf(module: string): Region;
}

/** The arena part of a norm module's γ and β. */
export const gbOf = (module: string): string => `${module}.gb`;

/**
 * Allocates the arenas of a model.
 *
 * @param rt The runtime.
 * @param options Model options.
 * @param dims Data sizes.
 * @returns The arenas (zeroed).
 */
export function createArenas(
  rt: Runtime,
  options: ModelOptions,
  dims: ModelDims,
): Arenas {
  const plan = modelPlan(options, dims);
  const parts: { name: string; floats: number }[] = [];
  const where = new Map<string, { part: string; at: number; size: number }>();
  for (const spec of plan.params) {
    const size = shapeSize(spec.shape);
    const norm = plan.normOf.get(spec.name);
    if (norm) {
      const part = gbOf(norm.module);
      if (!parts.some((p) => p.name === part)) {
        parts.push({ name: part, floats: 2 * size });
      }
      where.set(spec.name, {
        part,
        at: spec.name === norm.weight ? 0 : size,
        size,
      });
    } else {
      parts.push({ name: spec.name, floats: size });
      where.set(spec.name, { part: spec.name, at: 0, size });
    }
  }
  const params = rt.arena("params", parts);
  const grads = rt.arena("grads", parts);
  const momentum = rt.arena("momentum", parts);
  const runningPart = (module: string) => `${module}.running`;
  const running = rt.arena(
    "running",
    [...plan.batchNorms.values()].map((n) => ({
      name: runningPart(n.module),
      floats: 2 * n.channels,
    })),
  );
  const slots: ParamSlot[] = plan.params.map((spec) => {
    const w = where.get(spec.name)!;
    return {
      name: spec.name,
      offset: params.parts.get(w.part)!.offset / 4 + w.at,
      size: w.size,
      trained: !plan.frozen.has(spec.name),
    };
  });
  const runningSlots = new Map<string, { offset: number; size: number }>();
  for (const n of plan.batchNorms.values()) {
    const r = running.parts.get(runningPart(n.module))!;
    const c = n.channels;
    runningSlots.set(n.runningMean, { offset: r.offset / 4, size: c });
    runningSlots.set(n.runningVar, { offset: r.offset / 4 + c, size: c });
  }
  const get = (a: typeof params, name: string, what: string): Region => {
    const r = a.parts.get(name);
    if (!r) {
      throw new Error(
        `Cannot find ${what} "${name}" in the fused engine's arenas: the model description and the graph disagree`,
      );
    }
    return r;
  };
  return {
    params: params.whole,
    grads: grads.whole,
    momentum: momentum.whole,
    running: running.whole,
    slots,
    runningSlots,
    param: (n) => get(params, n, "parameter"),
    grad: (n) => get(grads, n, "gradient"),
    runningOf: (m) => get(running, runningPart(m), "BatchNorm"),
  };
}
