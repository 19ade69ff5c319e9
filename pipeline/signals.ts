/**
 * Signal handling for a run: SIGINT and SIGTERM are watched on their own
 * thread (`signal_worker.ts`), so the first is acknowledged at once even
 * during a long synchronous step, and a second ends the process at once
 * (the default action, after the run's manifest was marked interrupted).
 * The first signal requests a stop through the run's {@linkcode Interrupt};
 * the run stops at its next step boundary.
 *
 * @module
 */
import type { Interrupt } from "./interrupt.ts";

/** A running signal watcher. */
export interface SignalWatch {
  /** Stops watching (signals get their default action again). */
  close(): void;
}

/**
 * Watches SIGINT and SIGTERM for a run.
 *
 * @param interrupt The run's interrupt: requested on the first signal; its
 *   last words are forwarded to the signal thread as they change.
 * @returns The watcher, once its listeners are installed.
 */
export async function watchSignals(interrupt: Interrupt): Promise<SignalWatch> {
  const worker = new Worker(new URL("./signal_worker.ts", import.meta.url), {
    type: "module",
  });
  const ready = Promise.withResolvers<void>();
  worker.onmessage = (event: MessageEvent) => {
    const data = event.data as { ready?: boolean; signal?: string };
    if (data.ready) ready.resolve();
    if (data.signal) interrupt.request(data.signal);
  };
  worker.onerror = (event) => {
    event.preventDefault();
    ready.reject(new Error(`Cannot watch signals: ${event.message}`));
  };
  const forward = (words: Interrupt["lastWords"]) =>
    worker.postMessage({ lastWords: words ?? null });
  forward(interrupt.lastWords);
  const unsubscribe = interrupt.onLastWords(forward);
  worker.postMessage({ signals: ["SIGINT", "SIGTERM"] });
  try {
    await ready.promise;
  } catch (error) {
    unsubscribe();
    worker.terminate();
    throw error;
  }
  return {
    close() {
      unsubscribe();
      worker.terminate();
    },
  };
}
