/**
 * The fused front end's contract with the scheduler: which trailing map
 * stages of a phase may run as one GPU segment, and the interface of the
 * engine that runs them (`gpu/frontend/segment.ts` on WebGPU).
 *
 * A segment is the longest tail of a phase's active map stages of the form
 * `(augment | fixed_length)* mel tokenize?`, all built in. Anything else —
 * a path or URL stage, or a built-in one in another place — ends the
 * segment: the stages before it run as they always do (tfjs ops and host
 * code), and only decoded (or custom-processed) waveforms cross to the GPU.
 * With `runtime.frontEnd: tfjs`, or on the cpu backend, nothing is fused.
 *
 * @module
 */
import type { StageOrigin } from "./resolve.ts";
import type { Batch, Phase, Tf } from "./types.ts";
import type { Rng } from "./rng.ts";

/** Built-in waveform stages a fused segment can begin with. */
const WAVEFORM_STAGES = new Set(["augment", "fixed_length"]);

/** What the front end knows of a planned map stage. */
export interface FrontEndStage {
  /** Name in the spec. */
  readonly name: string;
  /** Stage id (`mel`, …). */
  readonly id: string;
  /** Where the module came from: only built-in stages fuse. */
  readonly origin: StageOrigin;
  /** Parsed options. */
  readonly options: unknown;
}

/** How much of a phase's map stages fuse. */
export interface Fusion {
  /** Trailing stages that run fused (0: none). */
  readonly count: number;
  /** Why the segment does not start earlier (or why nothing fuses). */
  readonly why?: string;
}

/**
 * The fusable tail of `stages` (a phase's active map stages, in order).
 *
 * @param stages The active map stages of one phase.
 * @returns How many trailing stages fuse, and what stops it going further.
 */
export function fusableTail(stages: readonly FrontEndStage[]): Fusion {
  let i = stages.length - 1;
  const builtin = (s: FrontEndStage | undefined, id: string) =>
    s !== undefined && s.id === id && s.origin === "builtin";
  const label = (s: FrontEndStage) =>
    s.origin === "builtin" ? `"${s.name}"` : `"${s.name}" (${s.origin} stage)`;
  if (i < 0) return { count: 0, why: "no map stages" };
  if (builtin(stages[i], "tokenize")) i--;
  if (!builtin(stages[i], "mel")) {
    const last = stages[i];
    return {
      count: 0,
      why: last === undefined
        ? "no mel stage"
        : `${label(last)} is not the built-in mel stage`,
    };
  }
  i--;
  while (
    i >= 0 && WAVEFORM_STAGES.has(stages[i].id) &&
    builtin(stages[i], stages[i].id)
  ) i--;
  return {
    count: stages.length - 1 - i,
    ...(i >= 0 ? { why: `${label(stages[i])} runs before it` } : {}),
  };
}

/**
 * One line describing the fusion of a phase, e.g.
 * `phase fit: augment → fixed_length → mel → tokenize fused on WebGPU`.
 *
 * @param phase The phase.
 * @param stages Its active map stages.
 * @param fusion {@linkcode fusableTail}'s answer.
 * @param where Where the fused segment runs (e.g. `WebGPU`).
 */
export function describeFusion(
  phase: Phase,
  stages: readonly FrontEndStage[],
  fusion: Fusion,
  where: string,
): string {
  const names = (list: readonly FrontEndStage[]) =>
    list.map((s) => s.name).join(" → ");
  const head = stages.slice(0, stages.length - fusion.count);
  const tail = stages.slice(stages.length - fusion.count);
  if (fusion.count === 0) {
    return `phase ${phase}: ${names(stages) || "-"} on tfjs/host (${
      fusion.why ?? "not fused"
    })`;
  }
  return `phase ${phase}: ${
    head.length ? `${names(head)} on tfjs/host, then ` : ""
  }${names(tail)} fused on ${where}${fusion.why ? ` (${fusion.why})` : ""}`;
}

/**
 * Property of an error thrown by a fused front end that names the fused
 * stage it belongs to (the scheduler reports that stage as the failed one).
 */
export const FRONT_END_STAGE = Symbol.for("amaut.frontEnd.stage");

/** The stage an error of a fused segment belongs to: its mark, else the segment's names. */
export function frontEndStageOf(
  error: unknown,
  fused: readonly FrontEndStage[],
): string {
  const marked = error instanceof Error
    ? (error as unknown as Record<symbol, unknown>)[FRONT_END_STAGE]
    : undefined;
  return typeof marked === "string"
    ? marked
    : fused.map((s) => s.name).join(" → ");
}

/** A fused-segment stage with the random stream its map context would get. */
export interface FrontEndCall extends FrontEndStage {
  /** The stage's per-batch stream, `map/<name>/<split>/<epoch>/<batch>`. */
  readonly rng: Rng;
}

/** The batch context a fused segment runs in. */
export interface FrontEndContext {
  readonly tf: Tf;
  readonly phase: Phase;
  readonly split: string;
  readonly epoch: number;
  readonly batchIndex: number;
  /** The source's assets (background noise clips). */
  readonly assets: Readonly<Record<string, unknown>>;
  /**
   * True when the batch's waveforms are the dataset's decoded arrays, with
   * only built-in stages that never write into them (`mono_mix`) before the
   * segment: their attached 16-bit samples (`lib/pcm16.ts`) still equal
   * them, so the front end may upload those instead.
   */
  readonly sourcesIntact?: boolean;
}

/**
 * How a fused batch's decoded clips went to the GPU: as 16-bit integers, or
 * as float32 with the reason the integers were not used.
 */
export type FrontEndUpload =
  | { readonly format: "int16" }
  | { readonly format: "float32"; readonly why: string };

/** What a fused front end answers for one batch. */
export type FrontEndResult =
  /** The batch as the fused stages would have made it (tokens on the GPU). */
  | { readonly batch: Batch; readonly upload?: FrontEndUpload }
  /** This batch cannot run fused (e.g. a buffer limit); run the stages as usual. */
  | { readonly declined: string };

/** A fused front end (one per run and device). */
export interface FusedFrontEnd {
  /** Where it runs, for logs (`WebGPU`). */
  readonly where: string;
  /**
   * Runs the fused tail of a phase on one batch: synchronous (it records
   * and submits GPU work, nothing is read back), inside the scheduler's
   * `tf.tidy`.
   */
  apply(
    batch: Batch,
    stages: readonly FrontEndCall[],
    ctx: FrontEndContext,
  ): FrontEndResult;
  /** Frees its GPU buffers. */
  dispose(): void;
}

/** The scheduler's handle on a fused front end: fusion per phase, logged once. */
export interface FrontEndUse {
  /** The fusable tail of a phase's active stages (logged the first time). */
  fusion(phase: Phase, active: readonly FrontEndStage[]): Fusion;
  /**
   * Runs the fused stages on a batch; `undefined` when the engine declined
   * it (the reason is logged once), so the scheduler runs them as usual.
   */
  run(
    batch: Batch,
    fused: readonly FrontEndStage[],
    ctx: FrontEndContext,
    rngOf: (name: string) => Rng,
  ): Batch | undefined;
}

/**
 * Wraps a fused front end for the scheduler.
 *
 * @param engine The front end.
 * @param note Receives the one-line description of each phase's fusion, and
 *   each distinct reason a batch was declined.
 */
export function useFrontEnd(
  engine: FusedFrontEnd,
  note: (line: string) => void,
): FrontEndUse {
  const fusions = new Map<string, Fusion>();
  const declined = new Set<string>();
  const uploads = new Set<string>();
  return {
    fusion(phase, active) {
      const key = `${phase}\0${active.map((s) => s.name).join("\0")}`;
      let fusion = fusions.get(key);
      if (!fusion) {
        fusion = fusableTail(active);
        fusions.set(key, fusion);
        note(
          `front end, ${describeFusion(phase, active, fusion, engine.where)}`,
        );
      }
      return fusion;
    },
    run(batch, fused, ctx, rngOf) {
      const out = engine.apply(
        batch,
        fused.map((s) => ({
          name: s.name,
          id: s.id,
          origin: s.origin,
          options: s.options,
          rng: rngOf(s.name),
        })),
        ctx,
      );
      if ("batch" in out) {
        const u = out.upload;
        const line = u &&
          `front end, phase ${ctx.phase}: decoded clips go up as ${
            u.format === "int16"
              ? "16-bit integers (half the bytes of float32)"
              : `float32 (${u.why})`
          }`;
        if (line && !uploads.has(line)) {
          uploads.add(line);
          note(line);
        }
        return out.batch;
      }
      if (!declined.has(out.declined)) {
        declined.add(out.declined);
        note(
          `front end: ${out.declined}; such batches run ${
            fused.map((s) => s.name).join(" → ")
          } on tfjs/host`,
        );
      }
      return undefined;
    },
  };
}
