/**
 * The stage contract's optional fields: `layouts` and `resumeMayChange` are
 * checked when a module is loaded.
 *
 * @module
 */
import assert from "node:assert/strict";
import { stageContractProblems } from "./resolve.ts";

const mapStage = {
  id: "gain",
  version: "1.0.0",
  api: 1,
  kind: "map",
  summary: "Scale waveforms",
  options: { safeParse: (input: unknown) => ({ success: true, data: input }) },
  takes: ["waveform"],
  provides: ["waveform"],
  apply: (batch: unknown) => batch,
};

Deno.test("stageContractProblems accepts declared layouts and resume rules, and names malformed ones", () => {
  assert.deepEqual(
    stageContractProblems({
      stage: {
        ...mapStage,
        layouts: () => ({ waveform: { shape: ["b", "s"] } }),
        resumeMayChange: { gain: "any", steps: "grow" },
      },
    }),
    [],
  );
  assert.deepEqual(
    stageContractProblems({
      stage: { ...mapStage, layouts: 5, resumeMayChange: { gain: "more" } },
    }),
    [
      "its `layouts` is not a function of the options (returning { key: { shape, dtype } })",
      'its `resumeMayChange` is not a mapping of option names to "any" or "grow"',
    ],
  );
});
