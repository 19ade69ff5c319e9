/**
 * The tiny training spec the tool and inference tests share: synthetic
 * 8 kHz clips, fixed length, mel, tokens and a one-epoch AMAuT small enough to
 * train in a second or two on the cpu backend.
 *
 * @module
 */

/** Options of {@linkcode tinyTrainSpec}. */
export interface TinySpecOptions {
  /** Spec name. */
  readonly name: string;
  /** Run seed (default 3). */
  readonly seed?: number;
  /** Clips per class for train, validation and test (default 6, 2, 2). */
  readonly perClass?: readonly [number, number, number];
  /** Relative spread of clip lengths (default 0). */
  readonly durationJitter?: number;
  /** Training batch size (default 6). */
  readonly batchSize?: number;
  /** YAML stage entries appended after `train` (each line indented by two spaces). */
  readonly extraStages?: string;
}

/** A complete tiny spec: load → mono_mix → fixed_length → mel → tokenize → train (+ extra). */
export function tinyTrainSpec(o: TinySpecOptions): string {
  const [train, validation, test] = o.perClass ?? [6, 2, 2];
  return `name: ${o.name}
runtime: { backend: cpu, seed: ${o.seed ?? 3} }
data: { layout: synthetic, sampleRateHz: 8000, durationSeconds: 0.5, durationJitter: ${
    o.durationJitter ?? 0
  }, perClass: { train: ${train}, validation: ${validation}, test: ${test} } }
stages:
  - use: load
  - use: mono_mix
  - use: fixed_length
    with: { seconds: 0.5 }
  - use: mel
    with: { sampleRateHz: 8000, nFft: 256, winLength: 200, hopLength: 80, nMels: 16 }
  - use: tokenize
  - use: train
    with:
      epochs: 1
      batchSize: ${o.batchSize ?? 6}
      lr: 0.05
      lrCardinality: 2
      model: { width: 4, groups: [1, 1], embedDim: 16, depth: 1, heads: 2, mlpDim: 32, extend: 16, conv: 8, dropout: 0.1 }
${o.extraStages ?? ""}`;
}
