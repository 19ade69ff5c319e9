/**
 * GPU busy time over a whole run, from timestamp queries: while a meter is
 * attached to a device, every submit of every {@linkcode Runtime} on it (the
 * fused engine's steps and evaluations, the fused front end) writes a GPU
 * timestamp at the start of its first compute pass and at the end of its
 * last, with the host time of the submit. `bench e2e` attaches one and turns
 * the intervals into the fraction of each phase's wall time the GPU was idle.
 *
 * The meter lives in a per-device registry (a `WeakMap`, like the pipeline
 * cache) because the runtimes are created deep inside stages; only
 * benchmarks attach one, and a detached device pays nothing. Work that tfjs
 * queues itself (tfjs-model evaluation on the cpu path, its copies) is not
 * timed, so the idle fraction is an upper bound where tfjs ops run.
 *
 * @module
 */

/** One timed submit. */
export interface BusySample {
  /** Host time of the submit, ms since the epoch (`Date.now()`). */
  readonly hostMs: number;
  /** GPU time from the first pass's start to the last pass's end, in ms. */
  readonly gpuMs: number;
}

/** The timestamp writes of one submit. */
export interface BusyPair {
  readonly querySet: GPUQuerySet;
  /** Query index written at the start of the first pass. */
  readonly begin: number;
  /** Query index written at the end of the last pass. */
  readonly end: number;
}

/** A meter attached to a device. */
export interface BusyMeter {
  /** Query indices for the next submit (the runtime calls it per submit). */
  pair(): BusyPair;
  /** The runtime reports the submit it just made with {@linkcode pair}'s indices. */
  submitted(): void;
  /** Detaches the meter and reads every interval back. */
  stop(): Promise<BusySample[]>;
}

/** Submits per query set before its timestamps are resolved and read. */
const PAIRS = 1024;

const meters = new WeakMap<GPUDevice, BusyMeter>();

/** The meter attached to `device`, if any (what `Runtime.run` asks). */
export function busyMeterOf(device: GPUDevice): BusyMeter | undefined {
  return meters.get(device);
}

/**
 * Attaches a busy meter to a device with the `timestamp-query` feature.
 *
 * @param device The device (tfjs's, which the engine and front end share).
 * @returns The meter, or `undefined` when the device has no timestamp queries.
 */
export function attachBusyMeter(device: GPUDevice): BusyMeter | undefined {
  if (!device.features.has("timestamp-query")) return undefined;
  const querySet = device.createQuerySet({
    type: "timestamp",
    count: 2 * PAIRS,
  });
  const resolve = device.createBuffer({
    size: 16 * PAIRS,
    usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
  });
  let next = 0;
  let hostTimes: number[] = [];
  const reads: Promise<BusySample[]>[] = [];
  const flush = () => {
    if (next === 0) return;
    const n = next;
    const times = hostTimes;
    const readback = device.createBuffer({
      size: 16 * PAIRS,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    const encoder = device.createCommandEncoder();
    encoder.resolveQuerySet(querySet, 0, 2 * n, resolve, 0);
    encoder.copyBufferToBuffer(resolve, 0, readback, 0, 16 * n);
    device.queue.submit([encoder.finish()]);
    reads.push(
      readback.mapAsync(GPUMapMode.READ).then(() => {
        const ns = new BigUint64Array(readback.getMappedRange(0, 16 * n));
        const out = times.map((hostMs, i) => ({
          hostMs,
          gpuMs: ns[2 * i + 1] > ns[2 * i]
            ? Number(ns[2 * i + 1] - ns[2 * i]) / 1e6
            : 0,
        }));
        readback.unmap();
        readback.destroy();
        return out;
      }),
    );
    next = 0;
    hostTimes = [];
  };
  const meter: BusyMeter = {
    pair() {
      if (next === PAIRS) flush();
      return { querySet, begin: 2 * next, end: 2 * next + 1 };
    },
    submitted() {
      hostTimes.push(Date.now());
      next++;
    },
    async stop() {
      meters.delete(device);
      flush();
      const all = (await Promise.all(reads)).flat();
      querySet.destroy();
      resolve.destroy();
      return all;
    },
  };
  meters.set(device, meter);
  return meter;
}

/**
 * The fraction of `[startMs, endMs]` the GPU was idle, from the samples
 * submitted in it (host clock): `1 − Σ gpuMs / (endMs − startMs)`, clamped
 * to [0, 1].
 *
 * @param samples The meter's samples.
 * @param startMs Phase start, ms since the epoch.
 * @param endMs Phase end, ms since the epoch.
 */
export function idleFraction(
  samples: readonly BusySample[],
  startMs: number,
  endMs: number,
): number {
  const wall = endMs - startMs;
  if (!(wall > 0)) return 0;
  const busy = samples.filter((s) => s.hostMs >= startMs && s.hostMs <= endMs)
    .reduce((sum, s) => sum + s.gpuMs, 0);
  return Math.min(1, Math.max(0, 1 - busy / wall));
}
