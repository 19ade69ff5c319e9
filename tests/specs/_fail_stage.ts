/**
 * A step stage that fails on purpose, for CLI exit-code tests.
 *
 * @module
 */
import * as z from "zod";
import { defineStage } from "../../pipeline/define_stage.ts";

/** The stage. */
export const stage = defineStage({
  id: "fail_stage",
  version: "1.0.0",
  api: 1,
  kind: "step",
  summary: "Fail on purpose",
  options: z.strictObject({ message: z.string().default("planned failure") }),
  takes: ["waveform"],
  provides: [],
  run: (options) => Promise.reject(new Error(options.message)),
});
