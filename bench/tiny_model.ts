/**
 * The `--set` overrides that shrink a paper preset's model to a few
 * thousand parameters, so the benches can run a preset end to end on the
 * cpu backend in tests (about a minute on 2 cores).
 *
 * @module
 */

/** `path=value` overrides of the `train` stage's model. */
export const TINY_MODEL_SETS: readonly string[] = [
  "train.model.width=4",
  "train.model.groups=[0,0]",
  "train.model.embedDim=16",
  "train.model.depth=1",
  "train.model.heads=2",
  "train.model.mlpDim=32",
  "train.model.extend=16",
  "train.model.conv=8",
];

/** {@linkcode TINY_MODEL_SETS} as command-line arguments (`--set a=b …`). */
export const TINY_MODEL_ARGS: readonly string[] = TINY_MODEL_SETS.flatMap((
  s,
) => ["--set", s]);
