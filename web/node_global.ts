/**
 * Gives the page the Node.js `global` alias that `wav-decoder` (used by
 * `lib/wav.ts`) reads in its decode path (`global.Buffer && buffer instanceof
 * global.Buffer`); browsers have no `global`, so decoding threw
 * "global is not defined". With no `Buffer` here that check is false, as
 * intended. `web/app.ts` imports this module first, so it runs before
 * `wav-decoder` is first used.
 *
 * @module
 */
const scope = globalThis as { global?: unknown };
scope.global ??= globalThis;
