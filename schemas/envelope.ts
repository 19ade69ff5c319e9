/**
 * The spec envelope: the keys every pipeline spec has around its stages —
 * `name`, `description`, `extends`, `runtime` (backend, front end, seed, output folder),
 * `data` (checked by the source stage's own schema) and `stages`.
 *
 * @module
 */
import * as z from "zod";

/** Pattern of spec and stage names: snake_case or kebab-case. */
export const NAME_PATTERN = /^[a-z0-9][a-z0-9_-]*$/;

/** The message for a name that does not match {@linkcode NAME_PATTERN}. */
const NAME_RULE = {
  error:
    "it must be lowercase letters, digits, _ and -, starting with a letter or digit",
};

/** `runtime:` — where and how the run happens. */
export const RuntimeOptions = z.strictObject({
  backend: z.enum(["auto", "webgpu", "cpu"]).default("auto").describe(
    "TensorFlow.js backend: auto uses WebGPU when a non-fallback GPU adapter exists, else cpu",
  ),
  frontEnd: z.enum(["auto", "fused", "tfjs"]).default("auto").describe(
    "Map stages augment/fixed_length/mel/tokenize: auto fuses their tail into GPU kernels on the webgpu backend, fused requires it, tfjs never fuses",
  ),
  seed: z.int().min(0).max(2 ** 32 - 1).default(0).describe(
    "Seed of every random stream in the run (shuffles, augmentation, initialisation)",
  ),
  outputDir: z.string().min(1).default("runs").describe(
    "Folder that receives run folders (<name>-<timestamp>), relative to the working directory",
  ),
});
/** Parsed `runtime:` section. */
export type RuntimeOptions = z.infer<typeof RuntimeOptions>;

/** One entry of `stages:`. */
export const StageEntry = z.strictObject({
  use: z.string().min(1).describe(
    "Stage module: a built-in id (mel), a relative path (./my_stage.ts) or an https URL",
  ),
  name: z.string().regex(NAME_PATTERN, NAME_RULE).optional().describe(
    "Name used by --set and extends patches; defaults to the stage id or file stem",
  ),
  with: z.record(z.string(), z.unknown()).default({}).describe(
    "Options of the stage, checked against its own schema",
  ),
  phases: z.array(z.string().regex(/^[a-z][a-zA-Z0-9]*$/)).min(1).optional()
    .describe(
      "Map stages only: the phases it runs in (fit, eval, or a step's own such as adapt); default: the stage's own",
    ),
});
/** Parsed stage entry. */
export type StageEntry = z.infer<typeof StageEntry>;

/** The whole spec, with `data` and stage options left to their own schemas. */
export const Envelope = z.strictObject({
  extends: z.string().optional().describe(
    "Spec this one extends, relative to this file; its keys are merged under these",
  ),
  name: z.string().regex(NAME_PATTERN, NAME_RULE).describe(
    "Name of the spec; run folders are named <name>-<timestamp>",
  ),
  description: z.string().optional().describe("What this spec is for"),
  runtime: RuntimeOptions.default(RuntimeOptions.parse({})).describe(
    "Backend, seed and output folder",
  ),
  data: z.record(z.string(), z.unknown()).describe(
    "The dataset, checked by the source stage's data schema",
  ),
  stages: z.array(StageEntry).min(1).describe(
    "Stages in order: the source first, then map and step stages",
  ),
});
/** Parsed envelope. */
export type Envelope = z.infer<typeof Envelope>;

/** Top-level keys of a spec, for did-you-mean and `--set` routing. */
export const ENVELOPE_KEYS: readonly string[] = Object.keys(Envelope.shape);
