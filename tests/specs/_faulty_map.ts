/**
 * A map stage with faults on purpose, for the fault-injection tests: `throw`
 * fails in `apply`; `shrink` keeps only the first `keep` mel bins of the
 * tokens while declaring the full width (a wrong-shape bug the scheduler's
 * layout check must name).
 *
 * @module
 */
import * as z from "zod";
import type { Tensor3D } from "@tensorflow/tfjs";
import { defineStage } from "../../pipeline/define_stage.ts";

/** The stage. */
export const stage = defineStage({
  id: "faulty_map",
  version: "1.0.0",
  api: 1,
  kind: "map",
  summary: "Break batches on purpose",
  options: z.strictObject({
    fault: z.enum(["throw", "shrink"]),
    nMels: z.int().min(1).default(16),
    keep: z.int().min(1).default(7),
  }),
  takes: ["tokens"],
  provides: ["tokens"],
  layouts: (o) => ({
    tokens: { shape: ["b", "t", o.nMels], dtype: "float32" },
  }),
  apply(batch, options) {
    if (options.fault === "throw") {
      throw new Error("the custom transform broke");
    }
    const tokens = batch.tokens as Tensor3D;
    return {
      ...batch,
      tokens: tokens.slice([0, 0, 0], [-1, -1, options.keep]),
    };
  },
});
