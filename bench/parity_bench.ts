/**
 * Exactness of the fused WebGPU engine on the device it runs on
 * (`deno task bench parity [--fixtures DIR]`): the PyTorch model fixtures
 * (eval logits within 1e-3, summed 2-view loss within 1e-4 relative, every
 * gradient within 1e-3 relative) and a tiny model trained 3 SGD steps by
 * the engine and by the tfjs cpu step (losses and weights). The unit tests
 * run the same checks on whatever adapter the test machine has; this runs
 * them where the speed is measured.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { selectBackend } from "../pipeline/backend.ts";
import { ModelOptions } from "../model/config.ts";
import { loadModelFixture } from "../model/fixture.ts";
import { tfjsDevice } from "../gpu/engine.ts";
import { fixtureParity, stepParity } from "../gpu/parity.ts";

/**
 * Runs the parity checks.
 *
 * @param args `--fixtures DIR` (default `../shared/fixtures/reference`: the
 *   folder holding `model/manifest.json`).
 * @returns Per-check results with `pass` flags.
 */
export async function benchParity(args: string[]): Promise<unknown> {
  const { values } = parseArgs({
    args,
    options: {
      fixtures: { type: "string", default: "../shared/fixtures/reference" },
    },
  });
  const { tf, backend } = await selectBackend("webgpu");
  const device = tfjsDevice(tf)!;
  // The host-side models and the tfjs reference step run on cpu; the engine on the GPU.
  await tf.setBackend("cpu");
  const root = pathToFileURL(resolve(values.fixtures, "model") + "/");
  const fixtures: Record<string, unknown> = {};
  let pass = true;
  for (const name of ["tiny_avg", "tiny_fce"]) {
    const r = await fixtureParity(
      tf,
      device,
      await loadModelFixture(root, name),
    );
    const ok = r.evalLogitsMaxAbs <= 1e-3 && r.lossRelative <= 1e-4 &&
      r.worstGradient.relative <= 1e-3 && r.zeroGradientNorm.ours < 1e-4;
    pass &&= ok;
    fixtures[name] = { ...r, pass: ok };
  }
  const steps: Record<string, unknown> = {};
  for (const head of ["avg", "fce"] as const) {
    const r = await stepParity(
      tf,
      device,
      ModelOptions.parse({
        width: 8,
        groups: [1, 1],
        embedDim: 32,
        depth: 2,
        heads: 4,
        mlpDim: 64,
        extend: 48,
        conv: 16,
        head,
      }),
      { nMels: 16, frames: 64, classes: 5 },
      { views: 4, perView: 8, steps: 3 },
    );
    const ok =
      Math.abs(r.loss.fused - r.loss.tfjs) <= 1e-4 * Math.abs(r.loss.tfjs) &&
      r.worstWeight.relative <= 1e-4 && r.worstMomentum.relative <= 1e-3 &&
      r.zeroGradientMaxAbs <= 1e-5 && r.evalLogitsMaxAbs <= 1e-3;
    pass &&= ok;
    steps[head] = { ...r, pass: ok };
  }
  return {
    bench: "parity",
    adapter: backend.adapter?.description ?? null,
    fixtures,
    steps,
    pass,
  };
}
