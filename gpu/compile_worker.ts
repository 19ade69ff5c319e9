/**
 * Worker of the compile pool (`gpu/compile_pool.ts`): on its own WebGPU
 * device (requested as the engine requests its own), compiles the WGSL
 * modules it is sent, so that the driver's shader cache holds them when the
 * engine's thread compiles the same modules. Replies `{ done, failed }` per
 * message; a module that fails here is left to the engine's own compile,
 * which reports the error.
 *
 * @module
 */
/// <reference lib="deno.worker" />
import { requestEngineDevice } from "./runtime.ts";

let device: Promise<GPUDevice | undefined> | undefined;

self.onmessage = async (event: MessageEvent<{ codes: string[] }>) => {
  device ??= requestEngineDevice().catch(() => undefined);
  const d = await device;
  let done = 0;
  let failed = 0;
  for (const code of event.data.codes) {
    if (!d) {
      failed++;
      continue;
    }
    // WebGPU reports a bad module as a validation error, not a throw.
    d.pushErrorScope("validation");
    let thrown = false;
    try {
      const module = d.createShaderModule({ code });
      d.createComputePipeline({
        layout: "auto",
        compute: { module, entryPoint: "main" },
      });
    } catch {
      thrown = true;
    }
    if (await d.popErrorScope().catch(() => true) || thrown) failed++;
    else done++;
  }
  self.postMessage({ done, failed });
};
