import assert from "node:assert/strict";
import { probeAdapter, selectBackend } from "./backend.ts";
import { checkBackend } from "./backend_check.ts";

Deno.test("checkBackend matches the float64 reference on cpu and reports no GPU check", async () => {
  const { tf, backend } = await selectBackend("cpu");
  const check = await checkBackend(tf, backend, 64);
  assert.equal(check.matmulSize, 64);
  assert.ok(check.matmulMaxAbsError < 1e-5, String(check.matmulMaxAbsError));
  assert.ok(check.matmulMs >= 0);
  assert.equal(check.gpuErrorsCaught, undefined);
});

Deno.test({
  name:
    "checkBackend on WebGPU matches the reference and catches an invalid shader",
  ignore: (await probeAdapter()) === undefined,
  async fn() {
    const { tf, backend } = await selectBackend("webgpu");
    const check = await checkBackend(tf, backend, 64);
    assert.ok(check.matmulMaxAbsError < 1e-4, String(check.matmulMaxAbsError));
    assert.equal(check.gpuErrorsCaught, true);
    assert.match(
      check.gpuErrorMessage!,
      /^Cannot continue on WebGPU: GPU validation error: Shader/,
    );
    backend.checkErrors(); // the error was taken: nothing left to throw
    await selectBackend("cpu");
  },
});
