/**
 * A small static-graph WebGPU runtime for the fused training engine
 * (issue 8): storage buffers allocated once, compute pipelines cached by
 * their WGSL text, and *recorded* dispatches — pipeline, bind group and
 * workgroup counts built once — replayed every step inside one long compute
 * pass per program. Nothing is created per step, so a step costs one
 * `queue.writeBuffer` for its inputs, one command encoder and one submit,
 * and each dispatch ~5 µs of encoding (webgpu-notes §7) instead of the
 * ~120 µs an op costs through tfjs.
 *
 * Kernels are WGSL text with their shapes baked in as constants; binding `i`
 * of `@group(0)` is the `i`-th {@linkcode Region} passed to
 * {@linkcode Runtime.record}. A buffer bound `read_write` may not be bound
 * a second time in the same dispatch (wgpu rejects it; checked at record time).
 *
 * @module
 */
import { busyMeterOf, type BusyPair } from "./busy.ts";

/** A byte range of a storage buffer, bound as one WGSL array. */
export interface Region {
  /** The buffer. */
  readonly buffer: GPUBuffer;
  /** Start in bytes (a multiple of 256, WebGPU's storage-offset alignment). */
  readonly offset: number;
  /** Length in bytes (a multiple of 4, > 0). */
  readonly size: number;
  /** Debug name. */
  readonly label: string;
}

/** One kernel instance: WGSL source and how many workgroups to launch. */
export interface KernelSpec {
  /** Complete WGSL module with entry point `main`. */
  readonly code: string;
  /** Workgroups along x, y, z (each ≤ 65,535). */
  readonly workgroups: readonly [number, number, number];
  /** Name shown in profiles (default: the first line of the code). */
  readonly label?: string;
}

/**
 * One dispatch of a kernel plan: the kernel and the symbolic names of its
 * bindings, in binding order. The caller maps names to {@linkcode Region}s.
 *
 * @typeParam N The binding names (as written by
 *   `gpu/kernels/bindings.ts` `storageBindings`).
 */
export interface KernelStep<N extends string = string> {
  /** The kernel. */
  readonly spec: KernelSpec;
  /** Binding names in order (binding i gets the region named `bind[i]`). */
  readonly bind: readonly N[];
}

/**
 * What a kernel generator returns: dispatches to record in order, and the
 * scratch regions they need (name → element count), which the caller
 * allocates (scratch contents need not survive between plans).
 *
 * The plan is typed by the names its caller binds: `N` the names always
 * bound, `O` those bound only with some options (a residual input, a
 * dropout seed). {@linkcode PlanBindings} turns them into the object type a
 * caller passes, so a misspelt, missing or extra name is a compile error;
 * {@linkcode planRegions} checks the same at record time.
 *
 * @typeParam N Binding names every plan of this generator uses.
 * @typeParam O Binding names used only with some options.
 */
export interface KernelPlan<
  N extends string = string,
  O extends string = never,
> {
  /** Dispatches, in order. */
  readonly steps: readonly KernelStep[];
  /** Scratch regions by name and size in 4-byte elements. */
  readonly scratch?: Readonly<Record<string, number>>;
  /**
   * Type-level only, never set: the binding names the caller provides
   * (`required` always, `optional` with some options).
   */
  readonly bindingNames?: { readonly required: N; readonly optional: O };
}

/** A kernel plan of any binding names (what recorders and tests accept). */
export type AnyKernelPlan = KernelPlan<string, string>;

/**
 * The regions (or host arrays, with `T`) a caller binds to a plan typed
 * {@linkcode KernelPlan}`<N, O>`: every name of `N`, any of `O`.
 */
export type PlanBindings<N extends string, O extends string, T = Region> =
  & { readonly [K in N]: T }
  & { readonly [K in O]?: T | undefined };

/**
 * Resolves a plan's binding names to regions, one list per step: a name
 * comes from `bind`, else from `scratch` (the plan's private regions).
 *
 * @param plan The plan.
 * @param bind Regions by binding name (`undefined` = not bound).
 * @param scratch Looks up a scratch region by name.
 * @returns The regions of each step, in binding order.
 * @throws {Error} When a step needs a name that neither provides, or `bind`
 *   gives a region no step uses (a misspelt or stale name), naming the
 *   kernel and the binding.
 */
export function planRegions(
  plan: AnyKernelPlan,
  bind: Readonly<Record<string, Region | undefined>>,
  scratch: (name: string) => Region | undefined = () => undefined,
): Region[][] {
  const used = new Set<string>();
  const lists = plan.steps.map((step) =>
    step.bind.map((name) => {
      used.add(name);
      const r = bind[name] ?? scratch(name);
      if (!r) {
        throw new Error(
          `Cannot record kernel ${
            labelOf(step.spec)
          }: binding "${name}" was not given a region; pass it in the plan's bindings`,
        );
      }
      return r;
    })
  );
  for (const [name, r] of Object.entries(bind)) {
    if (r !== undefined && !used.has(name)) {
      const kernels = plan.steps.map((s) => labelOf(s.spec)).join(", ");
      throw new Error(
        `Cannot record kernel ${kernels}: it has no binding "${name}" (its bindings: ${
          [...used].join(", ")
        }); remove the name or fix its spelling`,
      );
    }
  }
  return lists;
}

/** A kernel's profile label: its own, else the first line of its code. */
const labelOf = (kernel: KernelSpec): string =>
  kernel.label ?? kernel.code.split("\n", 1)[0];

/** A recorded dispatch. */
export interface Dispatch {
  /** Profile label. */
  readonly label: string;
  readonly pipeline: GPUComputePipeline;
  readonly bindGroup: GPUBindGroup;
  readonly workgroups: readonly [number, number, number];
}

/** Per-label GPU time from timestamp queries. */
export interface ProfileEntry {
  /** Kernel label. */
  readonly label: string;
  /** Dispatches with this label. */
  readonly count: number;
  /** Summed GPU time in milliseconds. */
  readonly ms: number;
}

/** The runtime: allocation, pipelines, recording and replay. */
export interface Runtime {
  /** The device everything runs on. */
  readonly device: GPUDevice;
  /**
   * Allocates a zeroed storage buffer of `floats` 4-byte elements (at least 1).
   *
   * @param label Debug name.
   * @param floats Element count (f32, i32 or u32 alike).
   */
  alloc(label: string, floats: number): Region;
  /**
   * Allocates one buffer holding several regions, each starting on a
   * 256-byte boundary (so every region can be bound on its own).
   *
   * @param label Buffer name.
   * @param parts Region names and element counts, in order.
   * @returns The whole buffer as a region, and one region per part.
   */
  arena(
    label: string,
    parts: readonly { name: string; floats: number }[],
  ): { whole: Region; parts: Map<string, Region> };
  /**
   * Records one dispatch into `list`: the pipeline (cached by WGSL text) and
   * its bind group are created now, once.
   *
   * @throws {Error} On a workgroup count outside 1…65,535, naming the
   *   kernel, and on a kernel using f16 (`enable f16;`) when the device
   *   lacks the `shader-f16` feature.
   */
  record(
    list: Dispatch[],
    kernel: KernelSpec,
    bindings: readonly Region[],
  ): void;
  /**
   * Encodes the lists in order — each as one compute pass — between the
   * optional `before` commands (copies, clears) and `after` commands (copies
   * of results), and submits once.
   */
  run(
    lists: readonly (readonly Dispatch[])[],
    before?: (encoder: GPUCommandEncoder) => void,
    after?: (encoder: GPUCommandEncoder) => void,
  ): void;
  /**
   * Runs `lists` with a timestamp pair around every dispatch (one pass
   * each, so slower than {@linkcode run}) and sums GPU time per label.
   * Needs the device's `timestamp-query` feature.
   */
  profile(
    lists: readonly (readonly Dispatch[])[],
    before?: (encoder: GPUCommandEncoder) => void,
  ): Promise<ProfileEntry[]>;
  /** Writes host data at the start of a region (queued before the next submit). */
  write(region: Region, data: Float32Array | Int32Array | Uint32Array): void;
  /** Reads a region back (waits for all submitted work). */
  read(region: Region): Promise<Float32Array>;
  /**
   * Reads several regions back with one map (on Deno every map waits for
   * the GPU queue to empty and then sleeps about 10 ms).
   *
   * @returns Their values, in order.
   */
  readMany(
    regions: readonly Region[],
    options?: ReadOptions,
  ): Promise<Float32Array[]>;
  /**
   * {@linkcode readMany} in two parts: copies the regions into a staging
   * buffer and waits for its map (the regions may change afterwards: the
   * values are those of the regions when the copy ran), and returns a
   * function that takes the values out of the mapping (the host copy, about
   * 0.5 s for 800 MB) and releases it. Work submitted in between runs on the
   * GPU while that host copy runs. With `keepStaging`, take each read before
   * the next one.
   *
   * @returns The function that takes the values, once.
   */
  readManyLater(
    regions: readonly Region[],
    options?: ReadOptions,
  ): Promise<() => Float32Array[]>;
  /** Bytes allocated, buffers, and pipelines this runtime compiled (others came from the device's cache). */
  stats(): { bytes: number; buffers: number; pipelines: number };
  /**
   * Destroys the buffer of a region {@linkcode alloc} made (WebGPU defers
   * it until queued work using it is done); other regions stay valid.
   */
  release(region: Region): void;
  /** Destroys every buffer this runtime allocated. */
  destroy(): void;
}

/**
 * The bytes of a buffer mapped for reading, as an ArrayBuffer of their own
 * that stays valid after `unmap`. Deno's `getMappedRange` in READ mode
 * already returns such a copy (and does not detach it at unmap), so it is
 * taken with `transfer()` (no second copy: 824 MB of a paper model's weights
 * and momentum cost about 0.3 s per copy); a runtime that refuses to
 * transfer a mapped range (the spec's non-detachable buffer) gets a copy.
 *
 * @param buffer A buffer mapped with `GPUMapMode.READ`.
 * @param offset Byte offset (multiple of 8).
 * @param size Bytes (multiple of 4); the rest of the buffer when absent.
 */
export function mappedCopy(
  buffer: GPUBuffer,
  offset = 0,
  size?: number,
): ArrayBuffer {
  const range = buffer.getMappedRange(offset, size);
  try {
    return range.transfer();
  } catch {
    return range.slice(0);
  }
}

/** Options of {@linkcode Runtime.readMany}. */
export interface ReadOptions {
  /** Filled in with where the read spent its time. */
  timing?: ReadTiming;
  /**
   * Map through the runtime's one kept staging buffer (made, or grown, on
   * first use and freed with the runtime) instead of a new one: for large
   * reads that repeat (the epoch-end copy of a paper model's weights and
   * momentum, ~800 MB), where making and freeing the buffer each time costs
   * host time.
   */
  keepStaging?: boolean;
}

/** Where a {@linkcode Runtime.readMany} spent its time, in milliseconds (filled in by it). */
export interface ReadTiming {
  /** Making the staging buffer (unless kept) and submitting the copies. */
  setupMs: number;
  /** From the submit of the copies until the map resolved (the queue drained). */
  mapMs: number;
  /** Copying the mapped bytes into JavaScript memory (set when taken). */
  copyMs: number;
  /** Unmapping (and freeing, unless kept) the staging buffer (set when taken). */
  releaseMs: number;
  /** Bytes read. */
  bytes: number;
}

const ALIGN = 256;
/** Bytes held by the live runtimes of each device (see {@linkcode runtimeBytes}). */
const liveBytes = new WeakMap<GPUDevice, { bytes: number }>();
/**
 * Compiled pipelines per device, shared by every runtime on it: a pure
 * memo (WGSL text → pipeline), so engines built one after another (tests,
 * benchmarks of several presets) compile each kernel once.
 */
const pipelineCaches = new WeakMap<
  GPUDevice,
  Map<string, GPUComputePipeline>
>();
/** Pipeline compilation on a device (see {@linkcode compileStats}). */
export interface CompileStats {
  /** Pipelines compiled. */
  pipelines: number;
  /** Milliseconds in `createShaderModule` (WGSL parsing and validation). */
  moduleMs: number;
  /** Milliseconds in `createComputePipeline` (translation and the driver's compile). */
  pipelineMs: number;
  /** Characters of WGSL compiled. */
  wgslChars: number;
}
const compiles = new WeakMap<GPUDevice, CompileStats>();

/**
 * What every runtime on `device` has compiled so far (pipeline creation is
 * synchronous in Deno, so this is host time the run spent compiling).
 *
 * @param device The device.
 * @returns A copy of the running totals (zeros before any compile).
 */
export function compileStats(device: GPUDevice): CompileStats {
  return {
    ...(compiles.get(device) ??
      { pipelines: 0, moduleMs: 0, pipelineMs: 0, wgslChars: 0 }),
  };
}
/** WebGPU's feature for `f16` in WGSL (`enable f16;`). */
export const SHADER_F16 = "shader-f16";
/** A WGSL module's `enable` directive naming `f16` (`enable f16;`). */
const F16_DIRECTIVE = /^\s*enable\s[^;]*\bf16\b/m;
const binding = /@binding\((\d+)\)\s*var<storage,\s*read_write>/g;

/** Indices of the bindings a WGSL module declares `read_write`. */
function writableBindings(code: string): Set<number> {
  return new Set([...code.matchAll(binding)].map((m) => Number(m[1])));
}
const alignUp = (n: number, a: number): number => Math.ceil(n / a) * a;

/** Encodes one recorded dispatch (setting its pipeline when asked). */
function encodeDispatch(
  pass: GPUComputePassEncoder,
  d: Dispatch,
  setPipeline: boolean,
): void {
  if (setPipeline) pass.setPipeline(d.pipeline);
  pass.setBindGroup(0, d.bindGroup);
  pass.dispatchWorkgroups(d.workgroups[0], d.workgroups[1], d.workgroups[2]);
}

/**
 * Creates a runtime on a device (for example tfjs-backend-webgpu's, so tfjs
 * tensors and engine buffers can be copied into each other on the GPU).
 *
 * @param device A WebGPU device.
 * @returns The runtime.
 */
export function createRuntime(device: GPUDevice): Runtime {
  let pipelines = pipelineCaches.get(device);
  if (!pipelines) {
    pipelines = new Map();
    pipelineCaches.set(device, pipelines);
  }
  const compiled = pipelines;
  let used = 0;
  const buffers: GPUBuffer[] = [];
  let bytes = 0;
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC |
    GPUBufferUsage.COPY_DST;

  let live = liveBytes.get(device);
  if (!live) liveBytes.set(device, live = { bytes: 0 });
  const newBuffer = (label: string, size: number): GPUBuffer => {
    const buffer = device.createBuffer({ label, size, usage });
    buffers.push(buffer);
    bytes += size;
    live.bytes += size;
    return buffer;
  };

  let keptStaging: GPUBuffer | undefined;
  let keptTaken = true; // whether the kept buffer's last read was taken
  const readManyLater = async (
    regions: readonly Region[],
    { timing, keepStaging = false }: ReadOptions = {},
  ): Promise<() => Float32Array[]> => {
    const at: number[] = [];
    let size = 0;
    for (const r of regions) {
      at.push(size);
      size += alignUp(r.size, 4);
    }
    if (size === 0) return () => regions.map(() => new Float32Array(0));
    if (keepStaging && !keptTaken) {
      throw new Error(
        "Cannot read through the kept staging buffer: an earlier read of it was never taken; call the function readManyLater returned first",
      );
    }
    const start = performance.now();
    if (keepStaging && keptStaging && keptStaging.size < size) {
      keptStaging.destroy();
      keptStaging = undefined;
    }
    const staging = keepStaging && keptStaging
      ? keptStaging
      : device.createBuffer({
        label: keepStaging ? "kept readback staging" : "readback staging",
        size,
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      });
    if (keepStaging) keptStaging = staging;
    const release = () => {
      if (staging.mapState === "mapped") staging.unmap();
      if (staging !== keptStaging) staging.destroy();
      if (keepStaging) keptTaken = true;
    };
    let t1: number;
    try {
      if (keepStaging) keptTaken = false;
      const encoder = device.createCommandEncoder();
      regions.forEach((r, i) => {
        const n = alignUp(r.size, 4);
        if (n > 0) {
          encoder.copyBufferToBuffer(r.buffer, r.offset, staging, at[i], n);
        }
      });
      device.queue.submit([encoder.finish()]);
      const t0 = performance.now();
      await staging.mapAsync(GPUMapMode.READ, 0, size);
      t1 = performance.now();
      if (timing) {
        timing.setupMs = t0 - start;
        timing.mapMs = t1 - t0;
        timing.bytes = size;
      }
    } catch (error) {
      release();
      throw error;
    }
    let taken = false;
    return () => {
      if (taken) {
        throw new Error(
          "Cannot take a read twice: its staging buffer was released by the first take",
        );
      }
      taken = true;
      const t2 = performance.now();
      try {
        // One copy out of the mapping (see mappedCopy); each region is a
        // view of it.
        const all = mappedCopy(staging, 0, size);
        if (timing) timing.copyMs = performance.now() - t2;
        return regions.map((r, i) =>
          new Float32Array(all, at[i], alignUp(r.size, 4) / 4)
        );
      } finally {
        const t3 = performance.now();
        release();
        if (timing) timing.releaseMs = performance.now() - t3;
      }
    };
  };
  const readMany = async (
    regions: readonly Region[],
    options?: ReadOptions,
  ): Promise<Float32Array[]> => (await readManyLater(regions, options))();

  const pipelineOf = (code: string, label: string): GPUComputePipeline => {
    let p = compiled.get(code);
    if (!p) {
      used++;
      let c = compiles.get(device);
      if (!c) {
        compiles.set(
          device,
          c = { pipelines: 0, moduleMs: 0, pipelineMs: 0, wgslChars: 0 },
        );
      }
      const t0 = performance.now();
      const module = device.createShaderModule({ code, label });
      const t1 = performance.now();
      p = device.createComputePipeline({
        label,
        layout: "auto",
        compute: { module, entryPoint: "main" },
      });
      c.pipelines++;
      c.moduleMs += t1 - t0;
      c.pipelineMs += performance.now() - t1;
      c.wgslChars += code.length;
      compiled.set(code, p);
    }
    return p;
  };

  const encodeLists = (
    encoder: GPUCommandEncoder,
    lists: readonly (readonly Dispatch[])[],
    timed?: BusyPair,
  ): void => {
    const passes = lists.filter((l) => l.length > 0);
    for (const [i, list] of passes.entries()) {
      const writes = timed && (i === 0 || i === passes.length - 1)
        ? {
          timestampWrites: {
            querySet: timed.querySet,
            ...(i === 0 ? { beginningOfPassWriteIndex: timed.begin } : {}),
            ...(i === passes.length - 1
              ? { endOfPassWriteIndex: timed.end }
              : {}),
          },
        }
        : undefined;
      const pass = encoder.beginComputePass(writes);
      let current: GPUComputePipeline | undefined;
      for (const d of list) {
        encodeDispatch(pass, d, d.pipeline !== current);
        current = d.pipeline;
      }
      pass.end();
    }
  };

  return {
    device,
    alloc(label, floats) {
      const size = alignUp(Math.max(1, floats) * 4, 16);
      return {
        buffer: newBuffer(label, size),
        offset: 0,
        size: Math.max(1, floats) * 4,
        label,
      };
    },
    arena(label, parts) {
      let at = 0;
      const offsets: number[] = [];
      for (const p of parts) {
        offsets.push(at);
        at = alignUp(at + Math.max(1, p.floats) * 4, ALIGN);
      }
      const size = Math.max(at, 16);
      const buffer = newBuffer(label, size);
      const map = new Map<string, Region>();
      parts.forEach((p, i) =>
        map.set(p.name, {
          buffer,
          offset: offsets[i],
          size: Math.max(1, p.floats) * 4,
          label: p.name,
        })
      );
      return { whole: { buffer, offset: 0, size, label }, parts: map };
    },
    record(list, kernel, bindings) {
      const label = labelOf(kernel);
      for (const n of kernel.workgroups) {
        if (!Number.isInteger(n) || n < 1 || n > 65535) {
          throw new Error(
            `Cannot record kernel ${label}: workgroup count ${n} is outside 1…65535 (${kernel.workgroups}); lay the groups out with grid2d`,
          );
        }
      }
      if (F16_DIRECTIVE.test(kernel.code) && !device.features.has(SHADER_F16)) {
        throw new Error(
          `Cannot record kernel ${label}: it uses f16 (enable f16;) and this device lacks the WebGPU feature "${SHADER_F16}"; request the device with that feature (requestEngineDevice does when the adapter offers it), or use f32 operands on this adapter`,
        );
      }
      // A binding over the device's limit would only fail as a GPU
      // validation error later, far from its cause.
      const limit = device.limits.maxStorageBufferBindingSize;
      for (const r of bindings) {
        if (alignUp(r.size, 4) > limit) {
          throw new RangeError(
            `Cannot record kernel ${label}: region "${r.label}" is ${r.size} bytes, over the device's maxStorageBufferBindingSize of ${limit}; use a smaller batchSize, or engine: tfjs`,
          );
        }
      }
      // wgpu rejects a buffer bound writable and bound again in one dispatch.
      const writable = writableBindings(kernel.code);
      bindings.forEach((r, i) => {
        if (!writable.has(i)) return;
        bindings.forEach((o, j) => {
          if (j !== i && o.buffer === r.buffer) {
            throw new Error(
              `Cannot record kernel ${label}: region "${r.label}" is bound writable and its buffer again as "${o.label}" in one dispatch; give one of them its own buffer`,
            );
          }
        });
      });
      const pipeline = pipelineOf(kernel.code, label);
      const bindGroup = device.createBindGroup({
        label,
        layout: pipeline.getBindGroupLayout(0),
        entries: bindings.map((r, i) => ({
          binding: i,
          resource: {
            buffer: r.buffer,
            offset: r.offset,
            size: alignUp(r.size, 4),
          },
        })),
      });
      list.push({ label, pipeline, bindGroup, workgroups: kernel.workgroups });
    },
    run(lists, before, after) {
      const encoder = device.createCommandEncoder();
      before?.(encoder);
      const meter = lists.some((l) => l.length > 0)
        ? busyMeterOf(device)
        : undefined;
      encodeLists(encoder, lists, meter?.pair());
      after?.(encoder);
      device.queue.submit([encoder.finish()]);
      meter?.submitted();
    },
    async profile(lists, before) {
      const all = lists.flat();
      const n = all.length;
      // A query set holds at most 4,096 timestamps: 2,048 dispatches each.
      const chunk = 2048;
      const sets: GPUQuerySet[] = [];
      const bytes = alignUp(16 * Math.max(1, n), 256);
      const resolve = device.createBuffer({
        size: bytes,
        usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
      });
      const readback = device.createBuffer({
        size: bytes,
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      });
      const encoder = device.createCommandEncoder();
      before?.(encoder);
      for (let start = 0; start < n; start += chunk) {
        const count = Math.min(chunk, n - start);
        const querySet = device.createQuerySet({
          type: "timestamp",
          count: 2 * count,
        });
        sets.push(querySet);
        for (let j = 0; j < count; j++) {
          const d = all[start + j];
          const pass = encoder.beginComputePass({
            timestampWrites: {
              querySet,
              beginningOfPassWriteIndex: 2 * j,
              endOfPassWriteIndex: 2 * j + 1,
            },
          });
          encodeDispatch(pass, d, true);
          pass.end();
        }
        encoder.resolveQuerySet(querySet, 0, 2 * count, resolve, 16 * start);
      }
      encoder.copyBufferToBuffer(resolve, 0, readback, 0, bytes);
      device.queue.submit([encoder.finish()]);
      await readback.mapAsync(GPUMapMode.READ);
      const t = new BigUint64Array(mappedCopy(readback));
      readback.unmap();
      readback.destroy();
      resolve.destroy();
      for (const q of sets) q.destroy();
      const sums = new Map<string, { count: number; ns: number }>();
      all.forEach((d, i) => {
        const e = sums.get(d.label) ?? { count: 0, ns: 0 };
        e.count++;
        e.ns += Number(t[2 * i + 1] - t[2 * i]);
        sums.set(d.label, e);
      });
      return [...sums].map(([label, e]) => ({
        label,
        count: e.count,
        ms: e.ns / 1e6,
      }))
        .sort((a, b) => b.ms - a.ms);
    },
    write(region, data) {
      if (data.byteLength > region.size) {
        throw new Error(
          `Cannot write ${data.byteLength} bytes to region "${region.label}" (${region.size} bytes); allocate a larger region`,
        );
      }
      device.queue.writeBuffer(
        region.buffer,
        region.offset,
        data.buffer as ArrayBuffer,
        data.byteOffset,
        data.byteLength,
      );
    },
    async read(region) {
      return (await readMany([region]))[0];
    },
    readMany,
    readManyLater,
    stats() {
      return { bytes, buffers: buffers.length, pipelines: used };
    },
    release(region) {
      const i = buffers.indexOf(region.buffer);
      if (i < 0) return;
      buffers.splice(i, 1);
      bytes -= region.buffer.size;
      live.bytes -= region.buffer.size;
      region.buffer.destroy();
    },
    destroy() {
      keptStaging?.destroy();
      keptStaging = undefined;
      for (const b of buffers) b.destroy();
      buffers.length = 0;
      live.bytes -= bytes;
      bytes = 0;
    },
  };
}

/**
 * Whether `error` is the runtime's refusal of a binding over the device's
 * `maxStorageBufferBindingSize` (thrown while recording, before any work
 * was queued, so a caller may move to another engine).
 */
export function isBindingLimitError(error: unknown): boolean {
  return error instanceof RangeError &&
    error.message.includes("over the device's maxStorageBufferBindingSize");
}

/**
 * Bytes of the buffers that every live runtime on `device` holds (what the
 * fused engine and front end add to tfjs's own `numBytesInGPUAllocated`).
 *
 * @param device The device.
 * @returns Bytes allocated and not yet released or destroyed.
 */
export function runtimeBytes(device: GPUDevice): number {
  return liveBytes.get(device)?.bytes ?? 0;
}

/**
 * Requests a device on the first WebGPU adapter with the limits and features
 * the engine can use (the adapter's storage-binding and buffer sizes, its
 * workgroup limits, `timestamp-query` and `shader-f16` when offered: the
 * f16-operand matmuls need the latter). tfjs creates its own
 * device; this one is for tools and tests that run the engine alone.
 *
 * @returns The device.
 * @throws {Error} Without a WebGPU adapter.
 */
export async function requestEngineDevice(): Promise<GPUDevice> {
  const gpu = (globalThis.navigator as { gpu?: GPU }).gpu;
  const adapter = await gpu?.requestAdapter();
  if (!adapter) {
    throw new Error(
      "Cannot request a WebGPU device: no adapter was found; install a Vulkan driver (Mesa lavapipe will do) or run on the cpu backend",
    );
  }
  const l = adapter.limits;
  const wanted: GPUFeatureName[] = ["timestamp-query", SHADER_F16];
  const device = await adapter.requestDevice({
    requiredFeatures: wanted.filter((f) => adapter.features.has(f)),
    requiredLimits: {
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxBufferSize: l.maxBufferSize,
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
      maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
    },
  });
  // Deno's wgpu panics ("Adapter … does not exist") when a device outlives
  // a collected adapter object: keep the adapter as long as the device.
  adapters.set(device, adapter);
  return device;
}

/** The adapters of devices {@linkcode requestEngineDevice} made, kept alive. */
const adapters = new WeakMap<GPUDevice, GPUAdapter>();
