/**
 * Parallel pipeline compilation for the fused engine. Deno creates compute
 * pipelines synchronously on the calling thread (its
 * `createComputePipelineAsync` too), and a paper-size graph has 200–330
 * kernels: about 15 s of driver compile on an H100 for the CS training
 * graph, against 0.2 s when the driver's shader cache already holds them
 * (`deno task bench compile`). So before the engine records a new graph, the
 * modules it has not compiled yet are compiled on a few workers first, each
 * on its own device: the driver caches them, and the engine's own compile
 * of the same modules then mostly hits that cache. Best effort: a worker
 * that cannot get a device or compile a module changes nothing but speed.
 *
 * @module
 */

/** Compiles WGSL modules on worker threads (see the module doc). */
export interface CompilePool {
  /** Worker threads used. */
  readonly workers: number;
  /**
   * Compiles `codes` spread over the workers; resolves when all are done.
   *
   * @returns Modules compiled and modules that failed there.
   */
  warm(codes: readonly string[]): Promise<{ done: number; failed: number }>;
  /** Stops the workers. */
  close(): void;
}

/**
 * Workers to use on this machine: the cores less two (the engine's thread
 * and the decoders keep theirs), between 0 and 8; 0 turns the pool off.
 *
 * @param cores Logical cores (default `navigator.hardwareConcurrency`).
 */
export function compileWorkers(
  cores = navigator.hardwareConcurrency ?? 1,
): number {
  return Math.max(0, Math.min(8, cores - 2));
}

/**
 * Starts a pool of `workers` compile workers (`gpu/compile_worker.ts`,
 * beside this module).
 *
 * @param workers Threads (≥ 1).
 * @returns The pool; call `close()` when done.
 */
export function createCompilePool(workers: number): CompilePool {
  if (!(Number.isInteger(workers) && workers >= 1)) {
    throw new RangeError(
      `Cannot start a compile pool of ${workers} workers: give a whole number ≥ 1`,
    );
  }
  const url = new URL("./compile_worker.ts", import.meta.url).href;
  const threads = Array.from(
    { length: workers },
    () => new Worker(url, { type: "module" }),
  );
  const ask = (w: Worker, codes: string[]) =>
    new Promise<{ done: number; failed: number }>((resolve) => {
      w.onmessage = (e) => resolve(e.data);
      w.onerror = (e) => {
        e.preventDefault();
        resolve({ done: 0, failed: codes.length });
      };
      w.postMessage({ codes });
    });
  return {
    workers,
    async warm(codes) {
      // Longest first, dealt round robin: the shares end at about the same time.
      const order = [...codes].sort((a, b) => b.length - a.length);
      const shares = threads.map(() => [] as string[]);
      order.forEach((c, i) => shares[i % threads.length].push(c));
      const replies = await Promise.all(
        threads.map((w, i) =>
          shares[i].length
            ? ask(w, shares[i])
            : Promise.resolve({ done: 0, failed: 0 })
        ),
      );
      return {
        done: replies.reduce((s, r) => s + r.done, 0),
        failed: replies.reduce((s, r) => s + r.failed, 0),
      };
    },
    close() {
      for (const w of threads) w.terminate();
    },
  };
}
