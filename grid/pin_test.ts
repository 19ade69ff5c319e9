import assert from "node:assert/strict";
import { join } from "node:path";
import { hasDeviceSelectLayer, listPciGpus, pinGpu } from "./pin.ts";

Deno.test("listPciGpus lists display-class devices from sysfs in PCI order", async () => {
  const sys = await Deno.makeTempDir({ prefix: "pin_test_" });
  const dev = async (addr: string, cls: string, vendor: string) => {
    await Deno.mkdir(join(sys, addr));
    await Deno.writeTextFile(join(sys, addr, "class"), `${cls}\n`);
    await Deno.writeTextFile(join(sys, addr, "vendor"), `0x${vendor}\n`);
    await Deno.writeTextFile(join(sys, addr, "device"), "0x2330\n");
  };
  await dev("0000:c1:00.0", "0x030200", "10de");
  await dev("0000:00:1f.0", "0x060100", "8086"); // an ISA bridge
  await dev("0000:41:00.0", "0x030200", "10de");
  assert.deepEqual(await listPciGpus(sys), [
    { address: "0000:41:00.0", vendor: "10de", device: "2330" },
    { address: "0000:c1:00.0", vendor: "10de", device: "2330" },
  ]);
  assert.deepEqual(await listPciGpus(join(sys, "missing")), []);
  assert.equal(await hasDeviceSelectLayer([join(sys, "none.json")]), false);
  await Deno.remove(sys, { recursive: true });
});

Deno.test("pinGpu sets DRI_PRIME for Mesa's device-select layer, CUDA ids, and says when pinning may not hold", () => {
  const gpus = [
    { address: "0000:41:00.0", vendor: "10de", device: "2330" },
    { address: "0000:c1:00.0", vendor: "10de", device: "2330" },
  ];
  const byAddress = pinGpu("0000:C1:00.0", gpus, true);
  assert.deepEqual(byAddress.env, {
    AMAUT_GPU: "0000:C1:00.0",
    DENO_WEBGPU_BACKEND: "vulkan",
    CUDA_DEVICE_ORDER: "PCI_BUS_ID",
    CUDA_VISIBLE_DEVICES: "1",
    DRI_PRIME: "pci-0000_c1_00_0",
    MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE: "1",
  });
  assert.deepEqual(byAddress.notes, []);
  assert.match(
    pinGpu("0", gpus, false).notes[0],
    /device-select layer is not installed/,
  );
  const unknown = pinGpu("5", gpus, true);
  assert.equal(unknown.env.DRI_PRIME, undefined);
  assert.match(unknown.notes[0], /no display device number 5/);
  assert.throws(() => pinGpu("gpu0", gpus, true), /Cannot pin to GPU "gpu0"/);
});
