/**
 * A test stage that takes `waveform`, used by the unmet-takes error case.
 *
 * @module
 */
import * as z from "zod";
import { defineStage } from "../../pipeline/define_stage.ts";

/** The stage. */
export const stage = defineStage({
  id: "needs_waveform",
  version: "1.0.0",
  api: 1,
  kind: "step",
  summary: "Need a waveform",
  options: z.strictObject({}),
  takes: ["waveform"],
  provides: [],
  run: () => Promise.resolve({}),
});
