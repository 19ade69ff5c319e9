/**
 * Reader of the torchaudio log-mel fixtures
 * (`shared/fixtures/reference/mel/`: `manifest.json` with one case per clip,
 * plus raw little-endian float32 files `<case>.power.f32`, `.fbank.f32`,
 * `.feature.f32`). Used by the mel tests on the cpu and GPU paths and by
 * `deno task bench mel --fixtures`.
 *
 * @module
 */
import type { MelOptions } from "./mel.ts";

/** One case of the mel manifest (the reference's snake_case keys). */
export interface MelFixtureCase {
  /** WAV path relative to the fixture root. */
  readonly wav: string;
  readonly "sample_rate": number;
  readonly samples: number;
  readonly "n_fft": number;
  readonly "win_length": number;
  readonly "hop_length": number;
  readonly "n_mels": number;
  readonly "power_shape": [number, number];
  readonly "feature_shape": [number, number];
  readonly "fbank_shape": [number, number];
  readonly "target_frames": number;
}

/**
 * Reads the cases of the mel manifest.
 *
 * @param root The fixture root (holding `mel/manifest.json`).
 * @returns The cases by name.
 */
export async function loadMelCases(
  root: URL,
): Promise<Record<string, MelFixtureCase>> {
  const manifest = JSON.parse(
    await Deno.readTextFile(new URL("mel/manifest.json", root)),
  ) as { cases: Record<string, MelFixtureCase> };
  return manifest.cases;
}

/**
 * Reads one float32 file of the mel fixtures.
 *
 * @param root The fixture root.
 * @param file File name inside `mel/`, e.g. `sc_16k_1s.feature.f32`.
 */
export async function readMelBlob(
  root: URL,
  file: string,
): Promise<Float32Array> {
  const bytes = await Deno.readFile(new URL(`mel/${file}`, root));
  return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
}

/** A case's mel settings as {@linkcode MelOptions} (with its frame count). */
export function melOptionsOf(
  c: MelFixtureCase,
): MelOptions & { targetFrames: number } {
  return {
    sampleRateHz: c.sample_rate,
    nFft: c.n_fft,
    winLength: c.win_length,
    hopLength: c.hop_length,
    nMels: c.n_mels,
    targetFrames: c.target_frames,
  };
}
