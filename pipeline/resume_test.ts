/**
 * Resume acceptance: the key-by-key diff, which keys may change, and that a
 * refusal names every differing key with both values.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { compile } from "./compile.ts";
import { checkResume, diffValues, ResumeError } from "./resume.ts";
import { BUILTIN_STAGES } from "../stages/mod.ts";

Deno.test("diffValues lists differing leaves by dotted path; arrays compare whole", () => {
  assert.deepEqual(
    diffValues(
      { a: 1, b: { c: [1, 2], d: "x" }, e: true },
      { a: 1, b: { c: [1, 3], d: "x" }, f: 2 },
    ),
    [
      { path: "b.c", before: [1, 2], after: [1, 3] },
      { path: "e", before: true, after: undefined },
      { path: "f", before: undefined, after: 2 },
    ],
  );
});

async function compiled(dir: string, overrides: string[]) {
  const spec = join(dir, "spec.yaml");
  await Deno.writeTextFile(
    spec,
    `name: r
runtime: { backend: cpu }
data: { layout: synthetic, sampleRateHz: 8000, durationSeconds: 0.1, perClass: { train: 1, validation: 1, test: 1 } }
stages:
  - use: load
  - use: mono_mix
  - use: mel
    with: { sampleRateHz: 8000, nFft: 256, winLength: 200, hopLength: 80, nMels: 16 }
  - use: tokenize
  - use: train
    with: { epochs: 2 }
`,
  );
  return await compile(spec, { builtins: BUILTIN_STAGES, overrides });
}

Deno.test("checkResume accepts output folder, backend, more epochs and engine; refuses the rest, listing each key", async () => {
  const dir = await Deno.makeTempDir({ prefix: "resume_test_" });
  try {
    const runDir = join(dir, "run");
    await Deno.mkdir(runDir);
    const before = await compiled(dir, []);
    await Deno.writeTextFile(
      join(runDir, "plan.json"),
      JSON.stringify(before.plan),
    );
    await Deno.writeTextFile(
      join(runDir, "manifest.json"),
      JSON.stringify({ specHash: "sha256-original", status: "ok" }),
    );
    const ok = await checkResume(
      runDir,
      await compiled(dir, [
        "runtime.outputDir=elsewhere",
        "runtime.backend=webgpu",
        "train.epochs=5",
        "train.engine=tfjs",
      ]),
    );
    assert.equal(ok.runSpecHash, "sha256-original");
    assert.deepEqual(ok.changes.map((c) => c.path).sort(), [
      "runtime.backend",
      "runtime.outputDir",
      "stages.train.with.engine",
      "stages.train.with.epochs",
    ]);
    await assert.rejects(
      checkResume(
        runDir,
        await compiled(dir, [
          "train.epochs=1",
          "mel.nMels=20",
          "runtime.seed=4",
        ]),
      ),
      (e: unknown) => {
        assert.ok(e instanceof ResumeError);
        assert.match(
          e.message,
          /in 3 keys a resume may not change:\n {2}runtime\.seed: 0 in the run, 4 now\n {2}stages\.mel\.with\.nMels: 16 in the run, 20 now\n {2}stages\.train\.with\.epochs: 2 in the run, 1 now\n/,
        );
        return true;
      },
    );
    await assert.rejects(
      checkResume(join(dir, "nope"), before),
      /Cannot resume ".*nope": no such folder/,
    );
    await assert.rejects(
      checkResume(dir, before),
      /it holds no plan\.json, so it is not a run folder/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
