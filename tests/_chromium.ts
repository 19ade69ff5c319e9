/**
 * Shared plumbing of the headless-Chromium tests: where Chromium is, a clear
 * failure when it is missing, launching it with the flags this machine needs,
 * collecting page errors, and running a test file's browser half in a child
 * `deno run -A` (playwright-core probes files at import that only `-A`
 * allows) whose last stdout line is JSON.
 *
 * @module
 */
import type { BrowserContext, Page } from "playwright-core";

/** The Chromium executable (Debian's package; `CHROMIUM_PATH` overrides it). */
export const CHROMIUM = Deno.env.get("CHROMIUM_PATH") ?? "/usr/bin/chromium";

/** Throws naming the install command when Chromium is missing. */
export async function requireChromium(what: string): Promise<void> {
  const found = await Deno.stat(CHROMIUM).catch(() => undefined);
  if (!found?.isFile) {
    throw new Error(
      `Cannot run ${what}: no Chromium at ${CHROMIUM}. Install it (Debian: apt-get update && apt-get install -y chromium) or set CHROMIUM_PATH`,
    );
  }
}

/** Launches headless Chromium with a fresh profile folder (`--user-data-dir`). */
export async function launchChromium(profile: string): Promise<BrowserContext> {
  const { chromium } = await import("playwright-core");
  return await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport: { width: 1200, height: 900 },
    timeout: 60_000,
  });
}

/** Collects uncaught page errors and console errors of `page` into a list. */
export function collectErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(`console: ${m.text()}`);
  });
  return errors;
}

/**
 * Runs `file` (a test module's own URL) as a child `deno run -A --no-lock`
 * with `args`, and parses the last line of its stdout as JSON.
 */
export async function runBrowserChild<T>(
  file: string,
  args: string[],
): Promise<T> {
  const child = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--no-lock", new URL(file).pathname, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(child.stderr);
  if (child.code !== 0) {
    throw new Error(`the browser process failed:\n${stderr}`);
  }
  return JSON.parse(
    new TextDecoder().decode(child.stdout).trim().split("\n").pop()!,
  ) as T;
}
