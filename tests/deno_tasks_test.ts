/**
 * The project's own Deno setup: no `deno task` prints Deno's "Ignored build
 * scripts for packages" warning. Its cause was `npm:core-js` (pulled in by
 * `@tensorflow/tfjs`), whose `postinstall` only prints a funding banner; the
 * `allowScripts.deny` list of `deno.json` records that it never runs. Checked
 * two ways: against `deno.lock` (every locked package with lifecycle scripts
 * is allowed or denied by name, whatever the local Deno cache holds) and by
 * running tasks as a user does.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";

const ROOT = new URL("../", import.meta.url).pathname;

/** `npm:name@version` → `name`. */
function packageName(key: string): string {
  const bare = key.replace(/^npm:/, "");
  const at = bare.indexOf("@", 1);
  return at < 0 ? bare : bare.slice(0, at);
}

Deno.test("every locked npm package with lifecycle scripts is allowed or denied in deno.json", async () => {
  const lock = JSON.parse(await Deno.readTextFile(join(ROOT, "deno.lock")));
  const config = JSON.parse(await Deno.readTextFile(join(ROOT, "deno.json")));
  const withScripts = Object.entries(
    lock.npm as Record<string, { scripts?: boolean }>,
  ).filter(([, v]) => v.scripts).map(([k]) => packageName(k));
  assert.ok(
    withScripts.includes("core-js"),
    "the lock no longer holds core-js: update this test and the README",
  );
  const listed = [
    ...(config.allowScripts?.allow ?? []),
    ...(config.allowScripts?.deny ?? []),
  ].map(packageName);
  for (const name of withScripts) {
    assert.ok(
      listed.includes(name),
      `${name} has lifecycle scripts: list it in deno.json allowScripts.deny (or allow)`,
    );
  }
});

Deno.test("installing the project's dependencies in a new folder prints no 'Ignored build scripts' warning", async () => {
  // Deno warns once per project folder (it leaves a marker in its cache), so
  // a fresh folder with this deno.json and deno.lock is a first install.
  const dir = await Deno.makeTempDir({ prefix: "deno_tasks_test_" });
  try {
    for (const f of ["deno.json", "deno.lock"]) {
      await Deno.copyFile(join(ROOT, f), join(dir, f));
    }
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["install"],
      cwd: dir,
      stdin: "null",
      env: { NO_COLOR: "1" },
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, stderr);
    assert.doesNotMatch(stderr, /Ignored build scripts|core-js/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
