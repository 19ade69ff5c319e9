/**
 * The interrupt switch: requests, the abort reason, boundaries that throw
 * with where a resume picks up, and last words for the signal thread.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  boundaryOf,
  createInterrupt,
  InterruptedError,
  interruptFromSignal,
} from "./interrupt.ts";

Deno.test("a boundary passes until the interrupt is requested, then throws with the restart point", async () => {
  const interrupt = createInterrupt();
  const boundary = boundaryOf(interrupt);
  await boundary("epoch 2");
  interrupt.request("SIGINT");
  interrupt.request("SIGTERM"); // later requests change nothing
  assert.equal(interrupt.reason, "SIGINT");
  assert.ok(interrupt.signal.aborted);
  assert.ok(interrupt.signal.reason instanceof InterruptedError);
  await assert.rejects(boundary("epoch 2"), (e: unknown) => {
    assert.ok(e instanceof InterruptedError);
    assert.equal(e.reason, "SIGINT");
    assert.equal(e.restarts, "epoch 2");
    return true;
  });
});

Deno.test("an AbortSignal drives an interrupt (library callers)", () => {
  const controller = new AbortController();
  const interrupt = interruptFromSignal(controller.signal);
  assert.equal(interrupt.reason, undefined);
  controller.abort(new Error("stop now"));
  assert.equal(interrupt.reason, "stop now");
});

Deno.test("last words reach their listeners until unsubscribed", () => {
  const interrupt = createInterrupt();
  const seen: unknown[] = [];
  const off = interrupt.onLastWords((w) => seen.push(w?.text));
  interrupt.setLastWords({ path: "m.json", text: "a" });
  off();
  interrupt.setLastWords(undefined);
  assert.deepEqual(seen, ["a"]);
  assert.equal(interrupt.lastWords, undefined);
});
