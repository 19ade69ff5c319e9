/**
 * The `augment` map stage: AMAuT's augmentation-driven multiview learning
 * (paper Eq. 1, reference §7). Each named view is a chain of waveform
 * transforms, drawn afresh for every batch and epoch from the run's seeded
 * randomness; the views of a batch are stacked view-major along the batch
 * axis (size `V·b`, with `view` giving each example's view index), so the
 * later map stages run once on all views and the train step can compute a
 * loss — and BatchNorm statistics — per view.
 *
 * Transforms (`type`):
 * - `roll`: circular shift by `trunc((2U−1)·f·L)` (`direction: both`),
 *   `trunc(±U·f·L)` (`right`/`left`), or fixed `trunc(±f·L)` (`random: false`);
 * - `noise`: `x + scale·U[0,1)` (`kind: uniform`, the reference's) or
 *   `x + scale·N(0,1)` (`kind: gaussian`);
 * - `background`: a random crop of a background noise clip (see `load`'s
 *   `backgroundNoise`) mixed in at `snrDb`;
 * - `pad`: zero-pad to a length (`samples` or `seconds`) with the pad at a
 *   random position (`position: random`), centred or at the end; longer clips
 *   keep their head (`clip: head`) or stay (`clip: none`);
 * - `clip`: keep the first `samples`/`seconds`.
 *
 * `mode: sequence` applies every view's chain in turn to one copy instead
 * (the paper's "sequence" ablation). A single view is the one-view ablation.
 * The same stage, in another phase (e.g. `phases: [adapt]`), makes the TTDA
 * views, and with `random: false` rolls the fixed ±17 % TTAu views.
 *
 * Takes `waveform` (`[s]` per example), provides `waveform` (`[s]` per
 * example and view), `view` and `viewNames`. Runs in phase `fit` by default.
 *
 * ```yaml
 * - use: augment              # the four SC/VS/CS training views
 *   with:
 *     views:
 *       - { name: shift, chain: [{ type: pad, samples: 16000 }, { type: roll, fraction: 0.17 }] }
 *       - { name: noise, chain: [{ type: noise, kind: uniform, scale: 0.015 }, { type: pad, samples: 16000 }] }
 *       - { name: dude, chain: [{ type: background, noise: dude_miaowing, snrDb: 50 }, { type: pad, samples: 16000 }] }
 *       - { name: pink, chain: [{ type: background, noise: pink_noise, snrDb: 50 }, { type: pad, samples: 16000 }] }
 * ```
 *
 * @module
 */
import * as z from "zod";
import { defineStage } from "../pipeline/define_stage.ts";
import type { Batch, MapContext } from "../pipeline/types.ts";
import type { Rng } from "../pipeline/rng.ts";
import { addNoise, mixBackground, roll, rollShift } from "../lib/transforms.ts";
import { fitLength } from "./fixed_length.ts";
import type { NoiseClip } from "./_audio_dataset.ts";

const Length = {
  samples: z.int().min(1).optional().describe(
    "Length in samples (give samples or seconds)",
  ),
  seconds: z.number().positive().optional().describe(
    "Length in seconds, times the clip's sample rate (give samples or seconds)",
  ),
};
const oneLength = (o: { samples?: number; seconds?: number }) =>
  (o.samples === undefined) !== (o.seconds === undefined);
const ONE_LENGTH = { message: "give exactly one of samples and seconds" };

const Roll = z.strictObject({
  type: z.literal("roll").describe("Circular time shift (torch.roll)"),
  fraction: z.number().min(0).max(1).default(0.17).describe(
    "Largest shift as a fraction of the clip length (reference: 0.17)",
  ),
  direction: z.enum(["both", "left", "right"]).default("both").describe(
    "both: trunc((2U-1)·f·L); right: trunc(U·f·L); left: trunc(-U·f·L)",
  ),
  random: z.boolean().default(true).describe(
    "false: the fixed shift trunc(±f·L) of the TTAu views (left or right only)",
  ),
}).refine((o) => o.random || o.direction !== "both", {
  message: "a fixed roll (random: false) needs direction left or right",
});

const Noise = z.strictObject({
  type: z.literal("noise").describe("Additive per-sample noise"),
  kind: z.enum(["uniform", "gaussian"]).default("uniform").describe(
    "uniform: scale·U[0,1), the reference's positive noise; gaussian: scale·N(0,1)",
  ),
  scale: z.number().min(0).default(0.015).describe(
    "Noise scale (uniform: the U[0,1) factor; gaussian: standard deviation)",
  ),
});

const Background = z.strictObject({
  type: z.literal("background").describe("Mix in a background noise clip"),
  noise: z.string().min(1).describe(
    "Noise clip name: a file stem of the load stage's backgroundNoise folder (e.g. pink_noise)",
  ),
  snrDb: z.number().default(50).describe(
    "Signal-to-noise ratio of the mix in dB",
  ),
});

const Pad = z.strictObject({
  type: z.literal("pad").describe("Zero-pad to a fixed length"),
  ...Length,
  position: z.enum(["random", "center", "end"]).default("random").describe(
    "Head pad uniform in 0..deficit (random), floor(deficit/2) (center), or 0 (end)",
  ),
  clip: z.enum(["head", "none"]).default("head").describe(
    "Longer clips keep their first samples (head) or stay unchanged (none)",
  ),
}).refine(oneLength, ONE_LENGTH);

const Clip = z.strictObject({
  type: z.literal("clip").describe("Keep only the head of longer clips"),
  ...Length,
}).refine(oneLength, ONE_LENGTH);

const Transform = z.discriminatedUnion("type", [
  Roll,
  Noise,
  Background,
  Pad,
  Clip,
]);
/** One transform of a view's chain. */
export type Transform = z.infer<typeof Transform>;

/** Options of the `augment` stage. */
export const AugmentOptions = z.strictObject({
  views: z.array(
    z.strictObject({
      name: z.string().regex(/^[a-zA-Z0-9_-]+$/).describe("Name of the view"),
      chain: z.array(Transform).default([]).describe(
        "Transforms applied in order; an empty chain is the original clip",
      ),
    }),
  ).min(1).describe("The views; each example appears once per view"),
  mode: z.enum(["multiview", "sequence"]).default("multiview").describe(
    "multiview: one copy per view; sequence: every chain applied in turn to one copy",
  ),
}).superRefine((o, ctx) => {
  const seen = new Set<string>();
  o.views.forEach((v, i) => {
    if (seen.has(v.name)) {
      ctx.addIssue({
        code: "custom",
        path: ["views", i, "name"],
        message: `the view name "${v.name}" is used twice`,
      });
    }
    seen.add(v.name);
  });
});
/** Parsed options of the `augment` stage. */
export type AugmentOptions = z.infer<typeof AugmentOptions>;

function lengthOf(
  t: { samples?: number; seconds?: number },
  rate: number,
): number {
  return t.samples ?? Math.round(t.seconds! * rate);
}

/**
 * The error of a `background` transform whose noise clip was not loaded.
 *
 * @param name The clip the transform names.
 * @param names The clips that were loaded.
 */
export function missingNoise(name: string, names: readonly string[]): Error {
  return new Error(
    `Cannot mix background noise "${name}": ${
      names.length
        ? `the noise clips are ${names.map((n) => `"${n}"`).join(", ")}`
        : "no background noise was loaded (set backgroundNoise in the load stage)"
    }`,
  );
}

/**
 * Applies a chain of transforms to one clip.
 *
 * @param x The mono clip.
 * @param chain The transforms, in order.
 * @param sampleRateHz The clip's rate (for lengths in seconds).
 * @param rng This clip-and-view's random stream.
 * @param noise Background noise clips by name.
 */
export function applyChain(
  x: Float32Array,
  chain: readonly Transform[],
  sampleRateHz: number,
  rng: Rng,
  noise: Readonly<Record<string, NoiseClip>>,
): Float32Array {
  let y = x;
  for (const t of chain) {
    switch (t.type) {
      case "roll":
        y = roll(
          y,
          rollShift(
            y.length,
            t.fraction,
            t.direction,
            t.random ? rng : undefined,
          ),
        );
        break;
      case "noise":
        y = addNoise(y, t.kind, t.scale, rng);
        break;
      case "background": {
        const clip = noise[t.noise];
        if (!clip) throw missingNoise(t.noise, Object.keys(noise));
        y = mixBackground(y, clip.samples, t.snrDb, rng);
        break;
      }
      case "pad":
        y = fitLength(y, lengthOf(t, sampleRateHz), t.position, t.clip, rng);
        break;
      case "clip":
        y = fitLength(y, lengthOf(t, sampleRateHz), "end", "head");
        break;
    }
  }
  return y;
}

/** Builds the stacked multiview batch. */
function stackViews(
  batch: Batch,
  options: AugmentOptions,
  ctx: MapContext,
): Batch {
  const waves = batch.waveform as Float32Array[];
  const rates = batch.sampleRate as number[];
  const noise = (ctx.assets.backgroundNoise ?? {}) as Record<string, NoiseClip>;
  const b = batch.size;
  if (options.mode === "sequence") {
    const chain = options.views.flatMap((v) => v.chain);
    return {
      ...batch,
      waveform: waves.map((w, i) =>
        applyChain(w, chain, rates[i], ctx.rng.child("seq", i), noise)
      ),
      view: new Array(b).fill(0),
      viewNames: ["sequence"],
    };
  }
  const V = options.views.length;
  const out: Record<string, unknown> = { ...batch };
  // Replicate every per-example field view-major.
  for (const [key, value] of Object.entries(batch)) {
    if (Array.isArray(value) && value.length === b) {
      out[key] = options.views.flatMap(() => value);
    }
  }
  out.waveform = options.views.flatMap((v, vi) =>
    waves.map((w, i) =>
      applyChain(w, v.chain, rates[i], ctx.rng.child(v.name, vi, i), noise)
    )
  );
  out.view = options.views.flatMap((_, vi) => new Array(b).fill(vi));
  out.viewNames = options.views.map((v) => v.name);
  out.size = V * b;
  return out as unknown as Batch;
}

/** The `augment` stage. */
export const stage = defineStage<AugmentOptions>({
  id: "augment",
  version: "1.0.0",
  api: 1,
  kind: "map",
  summary: "Make augmented views of each clip, stacked view by view",
  phases: ["fit"],
  options: AugmentOptions,
  takes: ["waveform", "sampleRate"],
  provides: ["waveform", "view", "viewNames"],
  apply(batch, options, ctx) {
    for (const t of options.views.flatMap((v) => v.chain)) {
      if (
        t.type === "background" &&
        !(ctx.assets.backgroundNoise as object | undefined)
      ) {
        throw new Error(
          `Cannot mix background noise "${t.noise}": no background noise was loaded (set backgroundNoise in the load stage)`,
        );
      }
    }
    return stackViews(batch, options, ctx);
  },
});
