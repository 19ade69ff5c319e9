/**
 * The signal thread of a run (see `signals.ts`): a worker, so a signal is
 * acknowledged at once even while the main thread is inside a long
 * synchronous computation (a training step on the cpu backend). On the first
 * SIGINT or SIGTERM it prints the acknowledgement, writes the run's last
 * words (its manifest marked interrupted), tells the main thread, and removes
 * its listeners: a second signal then gets the default action and ends the
 * process at once.
 *
 * Messages in: `{ lastWords: { path, text } | null }`, `{ signals: string[] }`.
 * Messages out: `{ ready: true }`, `{ signal: "SIGINT" }`.
 *
 * @module
 */
/// <reference lib="deno.worker" />

interface LastWords {
  readonly path: string;
  readonly text: string;
}

const encoder = new TextEncoder();
let lastWords: LastWords | null = null;
const installed: [Deno.Signal, () => void][] = [];

function writeLastWords(words: LastWords): void {
  const tmp = `${words.path}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  try {
    Deno.writeTextFileSync(tmp, words.text);
    Deno.renameSync(tmp, words.path);
  } catch {
    try {
      Deno.removeSync(tmp);
    } catch {
      // nothing was written
    }
  }
}

function onSignal(name: Deno.Signal): void {
  // The manifest first, then the default action back, then the message: a
  // second signal sent once the message shows ends the process at once.
  if (lastWords) writeLastWords(lastWords);
  for (const [n, fn] of installed) Deno.removeSignalListener(n, fn);
  installed.length = 0;
  Deno.stderr.writeSync(
    encoder.encode(
      `\n${name} received: stopping at the next step boundary (the run stays resumable); press Ctrl-C again to quit at once\n`,
    ),
  );
  self.postMessage({ signal: name });
}

self.onmessage = (event: MessageEvent) => {
  const data = event.data as {
    lastWords?: LastWords | null;
    signals?: Deno.Signal[];
  };
  if ("lastWords" in data) lastWords = data.lastWords ?? null;
  if (data.signals) {
    for (const name of data.signals) {
      const fn = () => onSignal(name);
      try {
        Deno.addSignalListener(name, fn);
        installed.push([name, fn]);
      } catch {
        // SIGTERM cannot be listened to on Windows
      }
    }
    self.postMessage({ ready: true });
  }
};
