/**
 * The `test_time_augmentation` step stage: AMAuT's TTAu (reference §10,
 * paper Eqs. 10–12), test-time augmentation and ensembling without any
 * parameter update (eval mode: BatchNorm running statistics, no dropout).
 *
 * Four modes, each an argmax of merged outputs:
 * - `orig`: the current model on view 0 (or the only view);
 * - `aug` (Eq. 10): the current model, merged over the views — the reference
 *   uses the original plus fixed −17 % and +17 % rolls;
 * - `mlt` (Eq. 11): merged over the ensemble members on view 0;
 * - `hyb` (Eq. 12): merged over the members of (merged over the views), e.g.
 *   9 forward passes for 3 models × 3 views.
 *
 * Outputs are merged as raw logits (`merge: logits`, the reference for SC, AM
 * and CS) or as softmax probabilities (`merge: softmax`, the reference for VS).
 *
 * The views come from the map stages: batches are drawn in phase `ttau`, so an
 * `augment` entry with `phases: [ttau]` supplies them (put the original, an
 * empty chain, first). Without one a batch has a single view and `aug` equals
 * `orig`. The ensemble's first member is the current model (`model`, from
 * `train`); the others are checkpoints of separately trained runs
 * (`checkpoints`, plus the earlier `--repeat` runs with `siblingRuns: true`),
 * loaded one at a time into one second model of the same options and
 * dimensions. A checkpoint of another model shape is refused.
 *
 * Takes `tokens` (`[b, t, f]` per batch, views stacked view-major), `label`
 * and `model`; provides `ttau` (accuracy per mode, the member count, the view
 * names and the merge rule) and `scoredStates` (each mode's probabilities per
 * clip, from which the report writes `predictions/<split>.ttau-<mode>.csv`),
 * and writes `ttau.json` (the same plus each mode's predicted class per
 * example, with the clips' `paths`, in split order).
 *
 * ```yaml
 * - use: augment
 *   name: ttau_views
 *   phases: [ttau]
 *   with:
 *     views:
 *       - { name: original, chain: [] }
 *       - { name: left, chain: [{ type: roll, random: false, direction: left, fraction: 0.17 }] }
 *       - { name: right, chain: [{ type: roll, random: false, direction: right, fraction: 0.17 }] }
 * # ... fixed_length, mel, tokenize, train ...
 * - use: test_time_augmentation
 *   with:
 *     merge: logits            # softmax for VS
 *     checkpoints: [runs/demo-2, runs/demo-3]
 * ```
 *
 * @module
 */
import { stagePrecisionUse } from "../model/engine_choice.ts";
import { argmaxRows } from "../lib/metrics.ts";
import type { StateScores } from "../lib/predictions.ts";
export { argmaxRows };
import { basename, dirname, join, resolve } from "node:path";
import * as z from "zod";
import type { Tensor3D } from "@tensorflow/tfjs";
import { defineStage } from "../pipeline/define_stage.ts";
import { writeJsonAtomic } from "../pipeline/atomic.ts";
import type { StepContext } from "../pipeline/types.ts";
import { assignWeights } from "../model/trainer.ts";
import { createModel } from "../model/amaut.ts";
import type { AmautModel } from "../model/amaut.ts";
import {
  concatRows,
  createScorer,
  engineLabel,
  evalTiming,
  formatEvalTiming,
  type Scorer,
} from "../model/scorer.ts";
import type { EvalTiming } from "../model/evaluate.ts";
import {
  checkCompatible,
  loadCheckpoint,
  modelSignature,
} from "../model/checkpoint.ts";

/** The TTAu modes, in report order. */
export const TTAU_MODES = ["orig", "aug", "mlt", "hyb"] as const;
/** One TTAu mode. */
export type TtauMode = typeof TTAU_MODES[number];
/** How outputs are averaged: raw logits or softmax probabilities. */
export type Merge = "logits" | "softmax";

/** Options of the `test_time_augmentation` stage. */
export const TestTimeAugmentationOptions = z.strictObject({
  modes: z.array(z.enum(TTAU_MODES)).min(1).optional().describe(
    "Modes to evaluate (orig, aug, mlt, hyb); default: every possible one (aug needs several views, mlt and hyb need checkpoints)",
  ),
  split: z.string().min(1).default("test").describe("Split to evaluate"),
  phase: z.string().min(1).default("ttau").describe(
    "Phase the batches are drawn in: map stages listing it (an augment entry with phases: [ttau]) make the views",
  ),
  origPhase: z.string().min(1).optional().describe(
    "Phase whose view 0 gives Orig and Mlt (e.g. eval, the plain test pipeline) when it differs from the views Aug and Hyb average, as in the reference's AM, VS and CS; default: view 0 of phase",
  ),
  merge: z.enum(["logits", "softmax"]).default("logits").describe(
    "Average raw logits (reference for SC, AM, CS) or softmax probabilities (reference for VS)",
  ),
  checkpoints: z.array(z.string().min(1)).default([]).describe(
    "Other trained models for mlt/hyb: run folders (runs/demo-2), checkpoint folders or checkpoint paths (runs/demo-2/checkpoints/best); relative to the working directory; the current model is the first member",
  ),
  siblingRuns: z.boolean().default(false).describe(
    "Also use the run folders of this spec's earlier --repeat runs as members",
  ),
  which: z.enum(["best", "last"]).default("best").describe(
    "Checkpoint to load from each run folder",
  ),
  batchSize: z.int().min(1).default(32).describe(
    "Clips per batch (all of a batch's views go through one forward pass)",
  ),
  engine: z.enum(["auto", "fused", "tfjs"]).default("auto").describe(
    "Evaluation engine: fused = the fused WebGPU eval graph, tfjs = the tfjs model; auto = fused on the webgpu backend, tfjs on cpu",
  ),
  precision: z.enum(["fp32", "mixed"]).default("fp32").describe(
    "Numeric precision of the fused eval graph: fp32 = float32 throughout (the reference's); mixed = f16 matmul operands with f32 accumulation, as train.precision: mixed (convolutions, norms and softmax stay f32); needs the fused engine on the webgpu backend and an adapter with shader-f16, else refused. Independent of train.precision",
  ),
}).superRefine((o, ctx) => {
  const needs = o.modes?.filter((m) => m === "mlt" || m === "hyb") ?? [];
  if (needs.length > 0 && o.checkpoints.length === 0 && !o.siblingRuns) {
    ctx.addIssue({
      code: "custom",
      path: ["modes"],
      message: `mode ${
        needs.join(" and ")
      } needs other trained models: list their run folders in checkpoints`,
    });
  }
});
/** Parsed options of the `test_time_augmentation` stage. */
export type TestTimeAugmentationOptions = z.infer<
  typeof TestTimeAugmentationOptions
>;

/** What the stage provides as `ttau`. */
export interface TtauResult {
  readonly orig?: { readonly accuracy: number };
  readonly aug?: { readonly accuracy: number };
  readonly mlt?: { readonly accuracy: number };
  readonly hyb?: { readonly accuracy: number };
  /** Ensemble size, the current model included. */
  readonly members: number;
  /** View names, view 0 first. */
  readonly views: readonly string[];
  readonly merge: Merge;
}

/**
 * Row-wise softmax of a row-major `[n, classes]` array (max-subtracted).
 *
 * @param x Logits, `n · classes` values.
 * @param classes Row length.
 */
export function softmaxRows(x: Float32Array, classes: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let r = 0; r < x.length; r += classes) {
    let max = -Infinity;
    for (let c = 0; c < classes; c++) max = Math.max(max, x[r + c]);
    let sum = 0;
    for (let c = 0; c < classes; c++) {
      out[r + c] = Math.exp(x[r + c] - max);
      sum += out[r + c];
    }
    for (let c = 0; c < classes; c++) out[r + c] /= sum;
  }
  return out;
}

function mean(arrays: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(arrays[0].length);
  for (const a of arrays) {
    if (a.length !== out.length) {
      throw new RangeError(
        `Cannot merge outputs of ${a.length} and ${out.length} values`,
      );
    }
    for (let i = 0; i < a.length; i++) out[i] += a[i];
  }
  for (let i = 0; i < out.length; i++) out[i] /= arrays.length;
  return out;
}

/**
 * Merges several outputs for the same examples: the mean of the raw logits
 * (`logits`) or of their softmax probabilities (`softmax`).
 *
 * @param outputs Raw logits, each row-major `[n, classes]`.
 * @param classes Row length.
 * @param merge The merge rule.
 * @returns Merged scores, `[n, classes]`.
 */
export function mergeOutputs(
  outputs: readonly Float32Array[],
  classes: number,
  merge: Merge,
): Float32Array {
  if (outputs.length === 0) throw new RangeError("Cannot merge no outputs");
  return mean(
    merge === "softmax" ? outputs.map((o) => softmaxRows(o, classes)) : outputs,
  );
}

/**
 * The scores of each TTAu mode from raw logits: orig = member 0 on view 0;
 * aug = member 0 merged over its views; mlt = the members merged on view 0;
 * hyb = the members merged over (each member merged over its views). With
 * `softmax`, every forward pass's logits become probabilities before any
 * averaging, and the per-member averages are averaged as they are.
 *
 * @param logits Raw logits by member then view, each `[n, classes]`; member 0
 *   is the current model. A member may give only view 0 (then it cannot take
 *   part in hyb).
 * @param classes Row length.
 * @param merge The merge rule.
 * @param modes Modes to compute.
 * @param origLogits Per member, the logits Orig and Mlt use instead of view 0
 *   (from the `origPhase` pass); omitted: view 0.
 * @returns Scores by mode.
 */
export function ttauScores(
  logits: readonly (readonly Float32Array[])[],
  classes: number,
  merge: Merge,
  modes: readonly TtauMode[] = TTAU_MODES,
  origLogits?: readonly Float32Array[],
): Partial<Record<TtauMode, Float32Array>> {
  const space = (x: Float32Array) =>
    merge === "softmax" ? softmaxRows(x, classes) : x;
  const out: Partial<Record<TtauMode, Float32Array>> = {};
  for (const mode of modes) {
    switch (mode) {
      case "orig":
        out.orig = space(origLogits?.[0] ?? logits[0][0]);
        break;
      case "aug":
        out.aug = mean(logits[0].map(space));
        break;
      case "mlt":
        out.mlt = mean(logits.map((m, i) => space(origLogits?.[i] ?? m[0])));
        break;
      case "hyb": {
        const views = logits[0].length;
        if (logits.some((m) => m.length !== views)) {
          throw new RangeError(
            "Cannot compute hyb: every member needs the same views",
          );
        }
        out.hyb = mean(logits.map((m) => mean(m.map(space))));
        break;
      }
    }
  }
  return out;
}

/** Fraction of predictions equal to their label. */
function accuracyOf(predictions: readonly number[], labels: readonly number[]) {
  let hits = 0;
  predictions.forEach((p, i) => {
    if (p === labels[i]) hits++;
  });
  return labels.length ? hits / labels.length : NaN;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/**
 * Finds a checkpoint from a run folder (`<p>/checkpoints/<which>`), a
 * checkpoint folder (`<p>/<which>`) or a checkpoint path (`<p>` or `<p>.json`).
 */
async function resolveCheckpoint(
  path: string,
  which: string,
): Promise<{ dir: string; name: string }> {
  const candidates = [
    { dir: join(path, "checkpoints"), name: which },
    { dir: path, name: which },
    path.endsWith(".json")
      ? { dir: dirname(path), name: basename(path, ".json") }
      : { dir: dirname(path), name: basename(path) },
  ];
  for (const c of candidates) {
    if (await exists(join(c.dir, `${c.name}.json`))) return c;
  }
  throw new Error(
    `Cannot find checkpoint "${which}" of TTAu member "${path}": looked for ${
      candidates.map((c) => resolve(c.dir, `${c.name}.json`)).join(", ")
    }`,
  );
}

/** Loads a checkpoint's parameters and buffers into `target`, refusing another model shape. */
async function loadMember(
  ctx: StepContext,
  target: AmautModel,
  source: { dir: string; name: string },
  label: string,
): Promise<void> {
  const { tf } = ctx;
  // Parameters and running statistics only: the momentum is never read.
  const ckpt = await loadCheckpoint(tf, source.dir, source.name, {
    groups: ["params", "buffers"],
  });
  try {
    try {
      checkCompatible(ckpt.meta, {
        specHash: ckpt.meta.specHash,
        modelSignature: modelSignature(target.params),
        allowSpecChange: true,
      });
    } catch (error) {
      throw new Error(
        `Cannot use "${label}" as a TTAu member: ${
          (error as Error).message.replace(
            /^Cannot use the checkpoint: it /,
            "the checkpoint ",
          )
        } (every member needs the current model's options, mel bins, frames and classes)`,
      );
    }
    assignWeights(
      target,
      ckpt.groups,
      (group, name) =>
        `Cannot use "${label}" as a TTAu member: the checkpoint lacks ${group}/${name}`,
    );
  } finally {
    tf.dispose(Object.values(ckpt.groups).flatMap((g) => [...g.values()]));
  }
}

/**
 * One member's raw logits on the split: per view, `[n, classes]`. All the
 * views a batch carries go through one forward pass of the scorer (view-major
 * rows), only view 0 when `allViews` is false.
 *
 * @param ctx The stage's context (data, progress, boundary).
 * @param scorer The engine that scores (see `model/scorer.ts`).
 * @param model The member (unchanged).
 * @param options The stage's options (split, phase, batch size).
 * @param allViews Score every view, else only view 0.
 * @param label Progress label.
 * @returns The view names, the logits per view, labels and paths in split order.
 * @throws {Error} On an empty split, views that change between batches, or tokens that are not `[b, frames, nMels]`.
 */
export async function memberLogits(
  ctx: Pick<StepContext, "data" | "progress" | "boundary">,
  scorer: Scorer,
  model: AmautModel,
  options: TestTimeAugmentationOptions,
  allViews: boolean,
  label: string,
  timing?: EvalTiming,
): Promise<
  { views: string[]; logits: Float32Array[]; labels: number[]; paths: string[] }
> {
  const classes = ctx.data.classes.length;
  let views: string[] | undefined;
  const perBatch: number[] = [];
  const labels: number[] = [];
  const paths: string[] = [];
  const bar = ctx.progress({
    label,
    total: ctx.data.splits[options.split],
    unit: "clips",
  });
  const reads = {
    batchSize: options.batchSize,
    phase: options.phase,
    shuffle: false,
  } as const;
  let first = true;
  const parts = await scorer.logits(
    model,
    ctx.data.batches(options.split, reads),
    (batch) => {
      const tokens = batch.tokens as Tensor3D;
      const V = views!.length;
      const b = batch.size / V;
      return allViews || V === 1
        ? { tokens }
        : { tokens: tokens.slice([0, 0, 0], [b, -1, -1]), owned: true };
    },
    async (batch) => {
      if (first) {
        // The next pass over the split (another phase or member, the next
        // stage's scoring) finds its first clips decoded.
        first = false;
        ctx.data.prefetch?.(options.split, reads);
      }
      await ctx.boundary(); // a Ctrl-C stops here
      const names = (batch.viewNames as string[] | undefined) ?? ["original"];
      if (!views) views = [...names];
      else if (names.join("/") !== views.join("/")) {
        throw new Error(
          `Cannot run TTAu: the views changed from ${views.join(", ")} to ${
            names.join(", ")
          } between batches`,
        );
      }
      const tokens = batch.tokens as Tensor3D | undefined;
      if (!tokens || tokens.rank !== 3) {
        throw new Error(
          "Cannot run TTAu: tokens must be a [b, frames, nMels] tensor (put tokenize before test_time_augmentation)",
        );
      }
      const b = batch.size / names.length;
      perBatch.push(b);
      labels.push(...(batch.label as number[]).slice(0, b));
      const files = batch.path as string[] | undefined;
      for (let i = 0; i < b; i++) paths.push(String(files?.[i] ?? ""));
      bar.tick(b);
    },
    timing,
  );
  bar.done();
  if (!views) {
    throw new Error(`Cannot run TTAu: the split "${options.split}" is empty`);
  }
  const used = allViews ? views.length : 1;
  const logits = Array.from(
    { length: used },
    (_, v) =>
      concatRows(parts.map((p, i) => {
        const n = perBatch[i] * classes;
        return p.subarray(v * n, (v + 1) * n);
      })),
  );
  return { views, logits, labels, paths };
}

/** How a TTAu mode is named in reports. */
function modeLabel(
  mode: TtauMode,
  views: readonly string[],
  members: number,
  merge: Merge,
  origPhase: string | undefined,
): string {
  switch (mode) {
    case "orig":
      return origPhase
        ? `TTAu Orig (phase ${origPhase})`
        : `TTAu Orig (view ${views[0]})`;
    case "aug":
      return `TTAu Aug (${views.length} views merged, ${merge})`;
    case "mlt":
      return `TTAu Mlt (${members} models merged, ${merge})`;
    case "hyb":
      return `TTAu Hyb (${members} models × ${views.length} views, ${merge})`;
  }
}

/** The `test_time_augmentation` stage. */
export const stage = defineStage<TestTimeAugmentationOptions>({
  id: "test_time_augmentation",
  version: "1.0.0",
  api: 1,
  kind: "step",
  summary:
    "Evaluate with test-time augmentation and model ensembles (TTAu: Orig, Aug, Mlt, Hyb)",
  options: TestTimeAugmentationOptions,
  takes: ["tokens", "label", "model"],
  provides: ["ttau", "scoredStates"],
  async run(options, ctx) {
    const { tf, log } = ctx;
    const model = ctx.values.model as AmautModel | undefined;
    if (!model || typeof model.apply !== "function") {
      throw new Error(
        "Cannot run TTAu: no model (put train before test_time_augmentation)",
      );
    }
    if (!Object.hasOwn(ctx.data.splits, options.split)) {
      throw new Error(
        `Cannot run TTAu on split "${options.split}": the dataset has splits ${
          Object.keys(ctx.data.splits).map((s) => `"${s}"`).join(", ")
        }`,
      );
    }
    const siblings = options.siblingRuns
      ? (ctx.values.siblingRuns as readonly string[] | undefined) ?? []
      : [];
    const others = [...options.checkpoints, ...siblings];
    // Resolve every path before any forward pass, so a typo fails at once.
    const sources = await Promise.all(
      others.map((p) => resolveCheckpoint(p, options.which)),
    );
    const members = 1 + sources.length;
    const wanted = options.modes;
    if (wanted?.some((m) => m === "mlt" || m === "hyb") && members === 1) {
      throw new Error(
        "Cannot run TTAu modes mlt or hyb with a single model: list other run folders in checkpoints",
      );
    }
    const classes = ctx.data.classes.length;
    const needViews = !wanted || wanted.includes("aug") ||
      wanted.includes("hyb");

    const scorer = createScorer(tf, options.engine, {
      precision: options.precision,
      precisionUse: stagePrecisionUse(ctx.stageName, "evaluate"),
    });
    ctx.log.info(`TTAu: scored on ${engineLabel(scorer)}`);
    const timing = evalTiming();
    try {
      const first = await memberLogits(
        ctx,
        scorer,
        model,
        options,
        needViews,
        `TTAu model 1/${members}`,
        timing,
      );
      const { views, labels } = first;
      const modes = TTAU_MODES.filter((m) =>
        wanted
          ? wanted.includes(m)
          : m === "orig" || (m === "aug" && views.length > 1) ||
            ((m === "mlt" || m === "hyb") && members > 1)
      );
      if (modes.includes("aug") && views.length === 1) {
        log.warn(
          `TTAu: the batches of phase "${options.phase}" have a single view, so aug equals orig (add an augment entry with phases: [${options.phase}])`,
        );
      }
      const logits: Float32Array[][] = [first.logits];
      // Orig and Mlt from another phase (the plain test pipeline), when asked.
      const origLogits: Float32Array[] = [];
      const origPass = async (member: AmautModel, label: string) => {
        if (!options.origPhase) return;
        const out = await memberLogits(
          ctx,
          scorer,
          member,
          { ...options, phase: options.origPhase },
          false,
          label,
          timing,
        );
        if (out.labels.join() !== labels.join()) {
          throw new Error(
            `Cannot run TTAu: phase "${options.origPhase}" read other examples than phase "${options.phase}"`,
          );
        }
        origLogits.push(out.logits[0]);
      };
      await origPass(model, `TTAu model 1/${members} (${options.origPhase})`);
      if (modes.includes("mlt") || modes.includes("hyb")) {
        const hybViews = modes.includes("hyb");
        const other = createModel(
          tf,
          model.options,
          model.dims,
          ctx.rng.child("member"),
          { init: "none" }, // every weight comes from a member's checkpoint
        );
        try {
          for (let i = 0; i < sources.length; i++) {
            await loadMember(ctx, other, sources[i], others[i]);
            const out = await memberLogits(
              ctx,
              scorer,
              other,
              options,
              hybViews,
              `TTAu model ${i + 2}/${members}`,
              timing,
            );
            if (out.labels.join() !== labels.join()) {
              throw new Error(
                `Cannot run TTAu: member "${
                  others[i]
                }" saw other examples than the current model (the split must read the same each pass)`,
              );
            }
            logits.push(out.logits);
            await origPass(
              other,
              `TTAu model ${i + 2}/${members} (${options.origPhase})`,
            );
          }
        } finally {
          other.dispose();
        }
      }

      const scores = ttauScores(
        logits,
        classes,
        options.merge,
        modes,
        options.origPhase ? origLogits : undefined,
      );
      const report: Record<string, unknown> = {};
      const result: Record<string, unknown> = {};
      const states: StateScores[] = [];
      // TTAu after TTDA scores the adapted weights: say so in every label.
      const base = ctx.values.ttda !== undefined
        ? " of the TTDA-adapted model"
        : "";
      for (const mode of modes) {
        const predictions = argmaxRows(scores[mode]!, classes);
        const accuracy = accuracyOf(predictions, labels);
        report[mode] = { accuracy, predictions };
        result[mode] = { accuracy };
        states.push({
          id: `ttau-${mode}`,
          label: modeLabel(
            mode,
            views,
            members,
            options.merge,
            options.origPhase,
          ) + base,
          split: options.split,
          paths: first.paths,
          labels,
          probabilities: options.merge === "softmax"
            ? scores[mode]!
            : softmaxRows(scores[mode]!, classes),
        });
      }
      const common = {
        members,
        views,
        merge: options.merge,
        ...(options.origPhase ? { origPhase: options.origPhase } : {}),
      };
      await writeJsonAtomic(join(ctx.runDir, "ttau.json"), {
        split: options.split,
        examples: labels.length,
        which: options.which,
        sources: ["(current model)", ...others],
        ...common,
        paths: first.paths,
        labels,
        ...report,
      });
      log.info(
        `TTAu on ${options.split} (${labels.length} clips, ${members} model${
          members > 1 ? "s" : ""
        } × ${views.length} view${
          views.length > 1 ? "s" : ""
        }, merge ${options.merge}): ${
          modes.map((m) =>
            `${m} ${
              (100 * (result[m] as { accuracy: number }).accuracy).toFixed(2)
            }%`
          ).join(" | ")
        }`,
      );
      if (timing.batches > 0) {
        log.info(`TTAu: scored ${formatEvalTiming(timing)}`);
      }
      return {
        ttau: { ...result, ...common } as unknown as TtauResult,
        scoredStates: [
          ...((ctx.values.scoredStates as StateScores[] | undefined) ?? []),
          ...states,
        ],
      };
    } finally {
      scorer.dispose();
    }
  },
});
