/**
 * Parallel WAV decoding: a pool of workers that read and decode files off the
 * main thread, so data loading overlaps with model work and uses every core.
 * With zero workers (or when workers cannot start, e.g. inside a single-file
 * bundle) files are decoded on the calling thread.
 *
 * @module
 */
import { readWav, WavError } from "./wav.ts";
import { attachPcm16 } from "./pcm16.ts";

/** Decoded samples of one file. */
export interface DecodedAudio {
  readonly sampleRateHz: number;
  /**
   * Channels-first samples in [-1, 1]; from 16-bit PCM, each with its
   * integer samples attached (`lib/pcm16.ts`).
   */
  readonly channels: Float32Array[];
  /** Bits per sample of the source encoding. */
  readonly bitsPerSample: number;
  /** Source encoding. */
  readonly encoding: "pcm" | "float";
}

/** A pool of decoders. */
export interface DecodePool {
  /** Number of worker threads (0: decoding on the calling thread). */
  readonly workers: number;
  /** Reads and decodes one file; rejects with a {@linkcode WavError} for a bad file. */
  decode(path: string): Promise<DecodedAudio>;
  /** Stops the workers. */
  close(): void;
}

interface Pending {
  resolve(value: DecodedAudio): void;
  reject(error: Error): void;
}

interface Slot {
  worker?: Worker;
  pending: Map<number, Pending>;
}

async function decodeHere(path: string): Promise<DecodedAudio> {
  const d = await readWav(path);
  return {
    sampleRateHz: d.sampleRateHz,
    channels: d.channels,
    bitsPerSample: d.info.bitsPerSample,
    encoding: d.info.encoding,
  };
}

/**
 * Starts a decode pool.
 *
 * @param workers Number of worker threads; 0 decodes on the calling thread.
 * @param onFallback Called once if workers fail to start and decoding falls back to this thread.
 */
export function createDecodePool(
  workers: number,
  onFallback?: (reason: string) => void,
): DecodePool {
  if (workers <= 0) {
    return { workers: 0, decode: decodeHere, close() {} };
  }
  let nextId = 0;
  let fellBack = false;
  const url = new URL("./decode_worker.ts", import.meta.url).href;
  const slots: Slot[] = [];
  const fail = (slot: Slot, reason: string) => {
    slot.worker?.terminate();
    slot.worker = undefined;
    for (const p of slot.pending.values()) p.reject(new Error(reason));
    slot.pending.clear();
    if (!fellBack) {
      fellBack = true;
      onFallback?.(reason);
    }
  };
  for (let i = 0; i < workers; i++) {
    const slot: Slot = { pending: new Map() };
    try {
      slot.worker = new Worker(url, { type: "module" });
    } catch (error) {
      fail(slot, `Cannot start decode workers: ${(error as Error).message}`);
    }
    slot.worker?.addEventListener("message", (event: MessageEvent) => {
      const m = event.data;
      const p = slot.pending.get(m.id);
      if (!p) return;
      slot.pending.delete(m.id);
      if (m.ok) {
        const channels = m.channels as Float32Array[];
        const pcm16 = m.pcm16 as Int16Array[] | undefined;
        // Attachments do not cross threads: put them back.
        pcm16?.forEach((s, c) => attachPcm16(channels[c], s));
        p.resolve({
          sampleRateHz: m.sampleRateHz,
          channels,
          bitsPerSample: m.bitsPerSample,
          encoding: m.encoding,
        });
      } else if (m.wav) {
        // Rebuild the WavError so callers can tell bad files from I/O errors.
        const e = new WavError(m.file, "");
        e.message = m.message;
        p.reject(e);
      } else p.reject(new Error(m.message));
    });
    slot.worker?.addEventListener("error", (event: ErrorEvent) => {
      event.preventDefault();
      fail(slot, `Cannot use decode worker: ${event.message}`);
    });
    slots.push(slot);
  }
  return {
    workers,
    decode(path) {
      const live = slots.filter((s) => s.worker);
      if (live.length === 0) return decodeHere(path);
      const slot = live.reduce((a, b) =>
        a.pending.size <= b.pending.size ? a : b
      );
      const id = nextId++;
      return new Promise<DecodedAudio>((resolve, reject) => {
        slot.pending.set(id, {
          resolve,
          // A worker that died mid-request: decode here instead.
          reject: (error) =>
            error instanceof WavError
              ? reject(error)
              : slot.worker
              ? reject(error)
              : decodeHere(path).then(resolve, reject),
        });
        slot.worker!.postMessage({ id, path });
      });
    },
    close() {
      for (const s of slots) s.worker?.terminate();
      slots.length = 0;
    },
  };
}

/**
 * Decoding threads for `workers`: the number itself, or for `auto` the
 * machine's cores less two (the main thread and the GPU driver), between 2
 * and 8.
 *
 * @param workers The option.
 * @param cores Logical cores (default `navigator.hardwareConcurrency`).
 */
export function decodeWorkers(
  workers: number | "auto",
  cores: number = navigator.hardwareConcurrency ?? 2,
): number {
  return workers === "auto" ? Math.min(8, Math.max(2, cores - 2)) : workers;
}
