/**
 * Interrupting a run (Ctrl-C, SIGTERM): the state the scheduler carries in
 * its context. The first request aborts the run's signal; steps notice it at
 * their next step boundary (`StepContext.boundary`), which throws an
 * {@linkcode InterruptedError}, and the scheduler records the run as
 * `interrupted`. The scheduler keeps "last words" up to date (its manifest,
 * marked interrupted) for whoever must write them when the process is about
 * to be killed (see `signals.ts`).
 *
 * @module
 */

/** Thrown at a step boundary once the run was interrupted. */
export class InterruptedError extends Error {
  /** What interrupted the run (`SIGINT`, `SIGTERM`, ...). */
  readonly reason: string;
  /** Where a resume picks up; undefined: the step runs again from its start. */
  readonly restarts?: string;

  /**
   * @param reason What interrupted the run.
   * @param restarts Where a resume picks up.
   */
  constructor(reason: string, restarts?: string) {
    super(`Interrupted (${reason})`);
    this.name = "InterruptedError";
    this.reason = reason;
    this.restarts = restarts;
  }
}

/** A file to write if the process is killed now (the run's manifest, marked interrupted). */
export interface LastWords {
  readonly path: string;
  readonly text: string;
}

/** An interrupt switch shared by the caller (signal handling) and the scheduler. */
export interface Interrupt {
  /** Aborts on the first request; its reason is an {@linkcode InterruptedError}. */
  readonly signal: AbortSignal;
  /** The first request's reason, once requested. */
  readonly reason: string | undefined;
  /** Requests a stop at the next step boundary; later requests are ignored. */
  request(reason: string): void;
  /** The scheduler's current last words (undefined: none). */
  readonly lastWords: LastWords | undefined;
  /** Sets the last words (the scheduler, whenever its manifest changes). */
  setLastWords(words: LastWords | undefined): void;
  /** Calls `fn` with every new last words (the signal watcher forwards them); returns an unsubscribe. */
  onLastWords(fn: (words: LastWords | undefined) => void): () => void;
}

/** Creates an {@linkcode Interrupt}. */
export function createInterrupt(): Interrupt {
  const controller = new AbortController();
  const listeners = new Set<(words: LastWords | undefined) => void>();
  let reason: string | undefined;
  let lastWords: LastWords | undefined;
  return {
    signal: controller.signal,
    get reason() {
      return reason;
    },
    request(why) {
      if (reason !== undefined) return;
      reason = why;
      controller.abort(new InterruptedError(why));
    },
    get lastWords() {
      return lastWords;
    },
    setLastWords(words) {
      lastWords = words;
      for (const fn of listeners) fn(words);
    },
    onLastWords(fn) {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
  };
}

/** An {@linkcode Interrupt} driven by a plain AbortSignal (library callers). */
export function interruptFromSignal(signal?: AbortSignal): Interrupt {
  const interrupt = createInterrupt();
  if (signal?.aborted) interrupt.request(reasonText(signal.reason));
  signal?.addEventListener(
    "abort",
    () => interrupt.request(reasonText(signal.reason)),
    { once: true },
  );
  return interrupt;
}

function reasonText(reason: unknown): string {
  return reason instanceof Error ? reason.message : String(reason ?? "aborted");
}

/** Milliseconds of work between yields to the event loop at boundaries. */
const YIELD_EVERY_MS = 50;

/**
 * Makes a function that yields to the event loop (a macrotask) when
 * {@linkcode YIELD_EVERY_MS} ms passed since its last yield, so signal
 * handlers run even in a busy loop whose awaits all resolve at once.
 */
export function createYielder(): () => Promise<void> {
  let lastYield = performance.now();
  return async () => {
    if (performance.now() - lastYield < YIELD_EVERY_MS) return;
    // Two macrotasks: a signal that arrived during a long synchronous stretch
    // is dispatched by the event loop turn after the first timer fires.
    for (let i = 0; i < 2; i++) {
      await new Promise((resolve) => setTimeout(resolve, 0));
    }
    lastYield = performance.now();
  };
}

/**
 * Makes the `boundary` function of a step's context: yields to the event
 * loop now and then (see {@linkcode createYielder}), then throws an
 * {@linkcode InterruptedError} when the run was interrupted.
 *
 * @param interrupt The run's interrupt.
 * @param yielder The run's yielder (shared with the batch loop).
 */
export function boundaryOf(
  interrupt: Interrupt,
  yielder: () => Promise<void> = createYielder(),
): (restarts?: string) => Promise<void> {
  return async (restarts?: string) => {
    await yielder();
    if (interrupt.reason !== undefined) {
      throw new InterruptedError(interrupt.reason, restarts);
    }
  };
}
