/**
 * Pinning one Deno WebGPU process to one GPU. Deno's WebGPU is wgpu, which on
 * Linux reaches GPUs through the Vulkan loader; `navigator.gpu
 * .requestAdapter()` offers no device index, so the choice is made in the
 * process environment before Deno starts:
 *
 * - `DRI_PRIME=pci-DDDD_BB_DD_F` with `MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE=1`:
 *   Mesa's implicit Vulkan layer `VK_LAYER_MESA_device_select` (Debian's
 *   `mesa-vulkan-drivers`) puts the device at that PCI address first and
 *   hides the others. The layer sits in the loader above every driver, so it
 *   also pins NVIDIA's Vulkan driver, and it tells identical cards apart
 *   (`MESA_VK_DEVICE_SELECT=vid:did` cannot: equal cards share vendor and
 *   device ids). `MESA_VK_DEVICE_SELECT=list` prints what it sees.
 * - `DENO_WEBGPU_BACKEND=vulkan`: keeps wgpu off its GL backend, which would
 *   offer the same card a second time through EGL.
 * - `CUDA_VISIBLE_DEVICES` (with `CUDA_DEVICE_ORDER=PCI_BUS_ID`) is set for
 *   CUDA libraries a custom stage may load; NVIDIA's Vulkan driver ignores it
 *   (it is a CUDA runtime setting), so it does not pin WebGPU by itself.
 *   Device cgroups do: Slurm's `--gres=gpu:1` with `ConstrainDevices=yes`,
 *   or a container given one GPU (`NVIDIA_VISIBLE_DEVICES`), leave one
 *   `/dev/nvidiaN` and one adapter.
 *
 * Every run records the adapter it got in `manifest.json` (`backend.adapter`)
 * and the pinning it was given (`grid.pin`), so a wrong pick shows.
 *
 * @module
 */
import { join } from "node:path";

/** A display-class PCI device (class 0x03xxxx) as sysfs lists it. */
export interface PciGpu {
  /** `DDDD:BB:DD.F`. */
  readonly address: string;
  /** Vendor id, hex (`10de` NVIDIA, `1002` AMD, `8086` Intel). */
  readonly vendor: string;
  /** Device id, hex. */
  readonly device: string;
}

/** The pinning of one process. */
export interface GpuPin {
  /** The `--gpus` entry. */
  readonly gpu: string;
  /** The PCI address, when known. */
  readonly address?: string;
  /** Environment variables to start the process with. */
  readonly env: Readonly<Record<string, string>>;
  /** Why pinning may not hold (no Mesa device-select layer, no PCI address). */
  readonly notes: readonly string[];
}

/**
 * Lists display-class PCI devices from sysfs, in PCI address order (the
 * order `nvidia-smi` and `CUDA_DEVICE_ORDER=PCI_BUS_ID` number them).
 *
 * @param sysfs The PCI devices folder (default `/sys/bus/pci/devices`).
 */
export async function listPciGpus(
  sysfs = "/sys/bus/pci/devices",
): Promise<PciGpu[]> {
  const out: PciGpu[] = [];
  try {
    for await (const entry of Deno.readDir(sysfs)) {
      const read = (f: string) =>
        Deno.readTextFile(join(sysfs, entry.name, f)).then((t) => t.trim())
          .catch(() => "");
      const cls = await read("class");
      if (!cls.startsWith("0x03")) continue;
      out.push({
        address: entry.name,
        vendor: (await read("vendor")).replace(/^0x/, ""),
        device: (await read("device")).replace(/^0x/, ""),
      });
    }
  } catch {
    // no sysfs (not Linux, or a sandbox): nothing listed
  }
  return out.sort((a, b) => a.address.localeCompare(b.address));
}

/** The Mesa device-select layer's manifest locations. */
const LAYER_FILES = [
  "/usr/share/vulkan/implicit_layer.d/VkLayer_MESA_device_select.json",
  "/etc/vulkan/implicit_layer.d/VkLayer_MESA_device_select.json",
];

/** Whether Mesa's device-select layer is installed here. */
export async function hasDeviceSelectLayer(
  files: readonly string[] = LAYER_FILES,
): Promise<boolean> {
  for (const f of files) {
    if (await Deno.stat(f).then(() => true, () => false)) return true;
  }
  return false;
}

/**
 * The environment pinning a process to one GPU.
 *
 * @param gpu A `--gpus` entry: an index into `gpus` (PCI order) or a PCI address `DDDD:BB:DD.F`.
 * @param gpus Display devices in PCI order (from {@linkcode listPciGpus}).
 * @param layer Whether Mesa's device-select layer is installed.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { pinGpu } from "./pin.ts";
 * const pin = pinGpu("1", [
 *   { address: "0000:41:00.0", vendor: "10de", device: "2330" },
 *   { address: "0000:c1:00.0", vendor: "10de", device: "2330" },
 * ], true);
 * assert.equal(pin.env.DRI_PRIME, "pci-0000_c1_00_0");
 * assert.equal(pin.env.CUDA_VISIBLE_DEVICES, "1");
 * ```
 */
export function pinGpu(
  gpu: string,
  gpus: readonly PciGpu[],
  layer: boolean,
): GpuPin {
  const notes: string[] = [];
  let address: string | undefined;
  let index: number | undefined;
  if (/^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/i.test(gpu)) {
    address = gpu.toLowerCase();
    const i = gpus.findIndex((g) => g.address === address);
    if (i >= 0) index = i;
  } else if (/^\d+$/.test(gpu)) {
    index = Number(gpu);
    address = gpus[index]?.address;
    if (!address) {
      notes.push(
        `no display device number ${gpu} in sysfs (found ${gpus.length}); only CUDA_VISIBLE_DEVICES is set`,
      );
    }
  } else {
    throw new Error(
      `Cannot pin to GPU "${gpu}": give an index (0, 1, …) or a PCI address (0000:41:00.0)`,
    );
  }
  const env: Record<string, string> = {
    AMAUT_GPU: gpu,
    DENO_WEBGPU_BACKEND: "vulkan",
    CUDA_DEVICE_ORDER: "PCI_BUS_ID",
  };
  if (index !== undefined) env.CUDA_VISIBLE_DEVICES = String(index);
  if (address) {
    const [dom, bus, rest] = address.split(":");
    const [dev, fn] = rest.split(".");
    env.DRI_PRIME = `pci-${dom}_${bus}_${dev}_${fn}`;
    env.MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE = "1";
    if (!layer) {
      notes.push(
        "Mesa's Vulkan device-select layer is not installed (apt-get install mesa-vulkan-drivers), so DRI_PRIME does not pin the adapter",
      );
    }
  }
  return { gpu, ...(address ? { address } : {}), env, notes };
}
