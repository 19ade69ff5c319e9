/**
 * A step stage that works for `seconds` without step boundaries (like a long
 * report), for the fault-injection tests of a second Ctrl-C.
 *
 * @module
 */
import * as z from "zod";
import { defineStage } from "../../pipeline/define_stage.ts";

/** The stage. */
export const stage = defineStage({
  id: "slow_step",
  version: "1.0.0",
  api: 1,
  kind: "step",
  summary: "Take a while without step boundaries",
  options: z.strictObject({ seconds: z.number().positive().default(30) }),
  takes: [],
  provides: [],
  async run(options, ctx) {
    ctx.log.info("slow step started");
    const end = Date.now() + options.seconds * 1000;
    while (Date.now() < end) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    ctx.log.info("slow step done");
    return {};
  },
});
