/**
 * Interrupting a run (Ctrl-C, SIGTERM): the state the scheduler carries in
 * its context. The first request aborts the run's signal; steps notice it at
 * their next step boundary (`StepContext.boundary`), which throws an
 * {@linkcode InterruptedError}, and the scheduler records the run as
 * `interrupted`. A hard stop (a second Ctrl-C) runs the scheduler's
 * synchronous last words (the manifest) and lets the caller exit at once.
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

/** An interrupt switch shared by the caller (signal handlers) and the scheduler. */
export interface Interrupt {
  /** Aborts on the first request; its reason is an {@linkcode InterruptedError}. */
  readonly signal: AbortSignal;
  /** The first request's reason, once requested. */
  readonly reason: string | undefined;
  /** Requests a stop at the next step boundary; later requests are ignored. */
  request(reason: string): void;
  /**
   * Registers synchronous work for a hard stop (e.g. marking the manifest);
   * returns a function that unregisters it.
   */
  onHardStop(fn: () => void): () => void;
  /** Runs the hard-stop work (each once, errors swallowed); the caller then exits. */
  hardStop(): void;
}

/** Creates an {@linkcode Interrupt}. */
export function createInterrupt(): Interrupt {
  const controller = new AbortController();
  const last = new Set<() => void>();
  let reason: string | undefined;
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
    onHardStop(fn) {
      last.add(fn);
      return () => last.delete(fn);
    },
    hardStop() {
      for (const fn of [...last]) {
        last.delete(fn);
        try {
          fn();
        } catch {
          // The process is going away; nothing better to do.
        }
      }
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
 * Makes the `boundary` function of a step's context: yields to the event
 * loop at most every {@linkcode YIELD_EVERY_MS} ms (so signal handlers run
 * even when every await of a busy loop resolves at once), then throws an
 * {@linkcode InterruptedError} when the run was interrupted.
 *
 * @param interrupt The run's interrupt.
 */
export function boundaryOf(
  interrupt: Interrupt,
): (restarts?: string) => Promise<void> {
  let lastYield = performance.now();
  return async (restarts?: string) => {
    if (performance.now() - lastYield >= YIELD_EVERY_MS) {
      await new Promise((resolve) => setTimeout(resolve, 0));
      lastYield = performance.now();
    }
    if (interrupt.reason !== undefined) {
      throw new InterruptedError(interrupt.reason, restarts);
    }
  };
}
