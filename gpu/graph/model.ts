/**
 * The AMAuT model as a static WebGPU graph (issue 8): walks the model
 * description's layer list (`model/plan.ts`, after the graph passes of
 * `passes.ts`) with each layer kind's forward recorder, then — for a
 * training step — the loss and each layer's backward recorder in reverse,
 * then the running-statistics and SGD update; finally gives activations
 * buffers by liveness and records the dispatch lists (`builder.ts`). It
 * computes what `model/train_step.ts` computes with tfjs — per-view
 * BatchNorm statistics, the summed label-smoothed cross-entropy of the
 * views (or, with `settings.ttda`, the summed TTDA loss of the
 * `test_time_adaptation` stage), the running-statistics updates in view
 * order, PyTorch SGD — in
 * about a thousand dispatches and one submit.
 *
 * @module
 */
import type { ModelDims, ModelOptions } from "../../model/config.ts";
import { modelPlan } from "../../model/config.ts";
import type { Region, Runtime } from "../runtime.ts";
import type { Arenas } from "./arenas.ts";
import {
  type Builder,
  createBufferPool,
  createBuilder,
  type Graph,
  type GraphSettings,
  recordLists,
} from "./builder.ts";
import { graphLayers, type GraphTransformer } from "./passes.ts";
import { stemBackward, stemForward, type StemSaved } from "./stem.ts";
import {
  bottleneckBackward,
  bottleneckForward,
  type BottleneckSaved,
} from "./bottleneck.ts";
import {
  patchEmbedBackward,
  patchEmbedForward,
  type PatchEmbedSaved,
} from "./patch_embed.ts";
import {
  tokensLayerBackward,
  tokensLayerForward,
  type TokensSaved,
} from "./tokens.ts";
import {
  transformerBackward,
  transformerForward,
  type TransformerSaved,
} from "./transformer.ts";
import {
  finalNormBackward,
  finalNormForward,
  type FinalNormSaved,
} from "./final_norm.ts";
import {
  avgHeadBackward,
  avgHeadForward,
  type AvgHeadSaved,
} from "./avg_head.ts";
import {
  fceHeadBackward,
  fceHeadForward,
  type FceHeadSaved,
} from "./fce_head.ts";
import { recordLoss, recordLossScaleSeed, recordTtdaLoss } from "./loss.ts";
import { recordUpdate } from "./sgd.ts";

/** A layer's forward record, by kind. */
type Saved =
  | { kind: "stem"; saved: StemSaved }
  | { kind: "bottleneck"; saved: BottleneckSaved }
  | { kind: "patchEmbed"; saved: PatchEmbedSaved }
  | { kind: "tokens"; saved: TokensSaved }
  | { kind: "transformer"; saved: TransformerSaved }
  | { kind: "finalNorm"; saved: FinalNormSaved }
  | { kind: "avgHead"; saved: AvgHeadSaved }
  | { kind: "fceHead"; saved: FceHeadSaved };

/** Records one layer's backward from `dy`; returns its input's gradient (none for the stem). */
function backward(b: Builder, s: Saved, dy: Region): Region | undefined {
  switch (s.kind) {
    case "stem":
      stemBackward(b, { saved: s.saved, dy });
      return undefined;
    case "bottleneck":
      return bottleneckBackward(b, { saved: s.saved, dy });
    case "patchEmbed":
      return patchEmbedBackward(b, { saved: s.saved, dy });
    case "tokens":
      return tokensLayerBackward(b, { saved: s.saved, dy });
    case "transformer":
      return transformerBackward(b, { saved: s.saved, dy });
    case "finalNorm":
      return finalNormBackward(b, { saved: s.saved, dy });
    case "avgHead":
      return avgHeadBackward(b, { saved: s.saved, dy });
    case "fceHead":
      return fceHeadBackward(b, { saved: s.saved, dy });
  }
}

/**
 * Builds and records a graph.
 *
 * @param rt The runtime.
 * @param arenas The model's arenas (shared by all graphs of a model).
 * @param options Model options.
 * @param dims Data sizes.
 * @param settings Views, clips per view, training or eval.
 * @returns The recorded graph.
 */
export function buildGraph(
  rt: Runtime,
  arenas: Arenas,
  options: ModelOptions,
  dims: ModelDims,
  settings: GraphSettings,
): Graph {
  const plan = modelPlan(options, dims);
  const b = createBuilder(rt, arenas, settings);
  const dropout = settings.training ? (settings.dropout ?? options.dropout) : 0;
  const input = b.pinned("input", b.rows * dims.frames * dims.nMels);
  let x = input;
  let logits: Region | undefined;
  let step: Region | undefined;
  const saved: Saved[] = [];
  /** Keeps a layer's saved values for the backward pass; returns its output. */
  const keep = <K extends Saved["kind"]>(
    kind: K,
    r: { y: Region; saved: Extract<Saved, { kind: K }>["saved"] },
  ): Region => {
    saved.push({ kind, saved: r.saved } as Saved);
    return r.y;
  };
  for (const l of graphLayers(plan.layers, settings.training)) {
    switch (l.kind) {
      case "stem":
        x = keep(l.kind, stemForward(b, { layer: l, x }));
        break;
      case "bottleneck":
        x = keep(l.kind, bottleneckForward(b, { layer: l, x }));
        break;
      case "patchEmbed":
        x = keep(l.kind, patchEmbedForward(b, { layer: l, x }));
        break;
      case "tokens": {
        const r = tokensLayerForward(b, { layer: l, x, dropout });
        step = r.step;
        x = keep(l.kind, r);
        break;
      }
      case "transformer":
        x = keep(
          l.kind,
          transformerForward(b, { layer: l as GraphTransformer, z: x }),
        );
        break;
      case "finalNorm":
        x = keep(l.kind, finalNormForward(b, { layer: l, x }));
        break;
      case "avgHead":
        logits = b.pinned("logits", b.rows * dims.classes);
        saved.push({
          kind: l.kind,
          saved: avgHeadForward(b, { layer: l, x, out: logits }),
        });
        break;
      case "fceHead":
        logits = b.pinned("logits", b.rows * dims.classes);
        saved.push({
          kind: l.kind,
          saved: fceHeadForward(b, { layer: l, x, out: logits }),
        });
        break;
    }
  }
  if (!logits) {
    throw new Error(
      "Cannot build the fused graph: the model description has no head layer",
    );
  }
  let loss: { dlogits: Region; labels?: Region; metrics: Region } | undefined;
  let hyper: Region | undefined;
  if (settings.training) {
    b.into("backward");
    loss = settings.ttda
      ? recordTtdaLoss(b, {
        logits,
        classes: dims.classes,
        rates: settings.ttda,
      })
      : recordLoss(b, {
        logits,
        classes: dims.classes,
        smoothing: settings.smoothing,
      });
    if (settings.lossScale) {
      recordLossScaleSeed(b, {
        dlogits: loss.dlogits,
        lossScale: settings.lossScale.state,
      });
    }
    let dy: Region | undefined = loss.dlogits;
    for (let i = saved.length - 1; i >= 0 && dy; i--) {
      dy = backward(b, saved[i], dy);
    }
    b.into("update");
    hyper = recordUpdate(b, settings.lossScale);
  }
  return {
    lists: recordLists(b, settings.pool ?? createBufferPool()),
    input,
    logits,
    labels: loss?.labels,
    metrics: loss?.metrics,
    step,
    hyper,
    clears: b.clears,
    rows: b.rows,
  };
}
