/**
 * Fault injection, as a user meets faults: real signals to a CLI subprocess
 * mid-epoch (SIGINT, SIGTERM, a second Ctrl-C), resumes that must end with
 * the weights of an uninterrupted run, refused resumes that must leave every
 * byte of the run folder alone, a read-only output folder, errors printed
 * once and as JSON, a map stage that throws or returns the wrong shape, and
 * remote stages that change or are served with the wrong content type.
 *
 * Everything runs on the cpu backend with tiny configs.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { tinyTrainSpec } from "./_tiny_run.ts";
import {
  compile,
  RunInterrupted,
  runPipeline,
  StageError,
} from "../pipeline/mod.ts";
import { BUILTIN_STAGES } from "../stages/mod.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CLI = join(ROOT, "cli.ts");
const CONFIG = join(ROOT, "deno.json");
const PERMISSIONS = ["--allow-read", "--allow-write", "--allow-env"];

interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

function explain(r: CliResult): string {
  return `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
}

/** A CLI subprocess whose stderr can be awaited line by line. */
function startCli(args: readonly string[], deno: readonly string[] = []) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--config", CONFIG, ...PERMISSIONS, ...deno, CLI, ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let stderr = "";
  let ended = false;
  const waiters: {
    re: RegExp;
    resolve: () => void;
    reject: (e: Error) => void;
  }[] = [];
  const settle = () => {
    for (const w of [...waiters]) {
      if (w.re.test(stderr)) w.resolve();
      else if (ended) w.reject(new Error(`never printed ${w.re}:\n${stderr}`));
      else continue;
      waiters.splice(waiters.indexOf(w), 1);
    }
  };
  const pump = (async () => {
    for await (
      const chunk of child.stderr.pipeThrough(new TextDecoderStream())
    ) {
      stderr += chunk;
      settle();
    }
    ended = true;
    settle();
  })();
  const stdout = new Response(child.stdout).text();
  return {
    child,
    /** Resolves once stderr matches `re` (rejects if the process ends first). */
    waitFor(re: RegExp): Promise<void> {
      return new Promise((resolve, reject) => {
        waiters.push({ re, resolve, reject });
        settle();
      });
    },
    async done(): Promise<CliResult> {
      const status = await child.status;
      await pump;
      return { code: status.code, stdout: await stdout, stderr };
    },
  };
}

function cli(args: readonly string[], deno: readonly string[] = []) {
  return startCli(args, deno).done();
}

async function sha256(bytes: Uint8Array): Promise<string> {
  const d = await crypto.subtle.digest(
    "SHA-256",
    bytes as Uint8Array<ArrayBuffer>,
  );
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, "0"))
    .join("");
}

/** Every file under `dir` (relative path → sha256), folders included by name. */
async function hashTree(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (sub: string) => {
    for await (const e of Deno.readDir(join(dir, sub))) {
      const rel = sub ? join(sub, e.name) : e.name;
      if (e.isDirectory) {
        out[rel + "/"] = "dir";
        await walk(rel);
      } else out[rel] = await sha256(await Deno.readFile(join(dir, rel)));
    }
  };
  await walk("");
  return out;
}

async function copyTree(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const e of Deno.readDir(from)) {
    if (e.isDirectory) await copyTree(join(from, e.name), join(to, e.name));
    else await Deno.copyFile(join(from, e.name), join(to, e.name));
  }
}

async function readJson(path: string): Promise<Record<string, unknown>> {
  return JSON.parse(await Deno.readTextFile(path));
}

function count(text: string, needle: string): number {
  return text.split(needle).length - 1;
}

/** The single run folder under `outDir`. */
async function onlyRun(outDir: string): Promise<string> {
  const dirs = [];
  for await (const e of Deno.readDir(outDir)) if (e.isDirectory) dirs.push(e);
  assert.equal(dirs.length, 1, `one run folder in ${outDir}`);
  return join(outDir, dirs[0].name);
}

// A two-epoch tiny training run with 30 steps per epoch (enough that a signal
// sent when epoch 1 ends lands inside epoch 2).
const SETS = ["--set", "train.epochs=2", "--set", "train.readEvery=5"];

/** `cli.ts` arguments that run `spec` with {@linkcode SETS} into the output folder `out`. */
function runInto(spec: string, out: string): string[] {
  return ["run", spec, ...SETS, "--set", `runtime.outputDir=${out}`];
}

async function trainingSpec(dir: string, name = "faults"): Promise<string> {
  const spec = join(dir, "spec.yaml");
  await Deno.writeTextFile(
    spec,
    tinyTrainSpec({ name, perClass: [20, 2, 2], batchSize: 2 }),
  );
  return spec;
}

let reference:
  | Promise<{ dir: string; spec: string; runDir: string }>
  | undefined;
/** One uninterrupted run, shared by the tests that compare with it. */
function uninterrupted() {
  reference ??= (async () => {
    const dir = await Deno.makeTempDir({ prefix: "faults_ref_" });
    const spec = await trainingSpec(dir);
    const out = join(dir, "runs");
    const r = await cli(runInto(spec, out));
    assert.equal(r.code, 0, explain(r));
    return { dir, spec, runDir: await onlyRun(out) };
  })();
  return reference;
}

async function lastWeights(runDir: string): Promise<string> {
  return await sha256(
    await Deno.readFile(join(runDir, "checkpoints", "last.bin")),
  );
}

Deno.test("faults: SIGINT mid-epoch stops at a step boundary, marks the run interrupted, and a resume ends with the uninterrupted run's weights", async () => {
  const ref = await uninterrupted();
  const dir = await Deno.makeTempDir({ prefix: "faults_sigint_" });
  try {
    const out = join(dir, "runs");
    const run = startCli(runInto(ref.spec, out));
    await run.waitFor(/\[train\] epoch 1\/2:/);
    run.child.kill("SIGINT");
    const r = await run.done();
    assert.equal(r.code, 130, explain(r));
    assert.match(
      r.stderr,
      /SIGINT received: stopping at the next step boundary/,
    );
    assert.equal(count(r.stderr, "Interrupted (SIGINT)"), 1, explain(r));
    assert.match(
      r.stderr,
      /Interrupted \(SIGINT\) in stage "train"; a resume restarts epoch 2, from the checkpoint of epoch 1/,
    );
    const runDir = await onlyRun(out);
    assert.ok(r.stderr.includes(`--resume ${runDir}`), explain(r));
    const manifest = await readJson(join(runDir, "manifest.json"));
    assert.equal(manifest.status, "interrupted");
    assert.deepEqual(manifest.interrupted, {
      stage: "train",
      reason: "SIGINT",
      resume: "a resume restarts epoch 2, from the checkpoint of epoch 1",
    });
    const last = await readJson(join(runDir, "checkpoints", "last.json"));
    assert.equal(
      (last.meta as { epoch: number }).epoch,
      0,
      "epoch 2 never finished",
    );

    const resumed = await cli(["run", ref.spec, ...SETS, "--resume", runDir]);
    assert.equal(resumed.code, 0, explain(resumed));
    assert.equal(await lastWeights(runDir), await lastWeights(ref.runDir));
    const after = await readJson(join(runDir, "manifest.json"));
    assert.equal(after.status, "ok");
    assert.equal(
      (after.resumes as { previousStatus: string }[])[0].previousStatus,
      "interrupted",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("faults: SIGTERM before the first checkpoint; the resume starts afresh, saying so, and matches an uninterrupted run", async () => {
  const ref = await uninterrupted();
  const dir = await Deno.makeTempDir({ prefix: "faults_sigterm_" });
  try {
    const out = join(dir, "runs");
    const run = startCli(runInto(ref.spec, out));
    await run.waitFor(/\[train\] model: /);
    run.child.kill("SIGTERM");
    const r = await run.done();
    assert.equal(r.code, 143, explain(r));
    assert.match(
      r.stderr,
      /SIGTERM received: stopping at the next step boundary/,
    );
    assert.match(
      r.stderr,
      /Interrupted \(SIGTERM\) in stage "train"; a resume runs stage "train" again from its start/,
    );
    const runDir = await onlyRun(out);
    const manifest = await readJson(join(runDir, "manifest.json"));
    assert.equal(manifest.status, "interrupted");
    await assert.rejects(Deno.stat(join(runDir, "checkpoints", "last.json")));

    const resumed = await cli(["run", ref.spec, ...SETS, "--resume", runDir]);
    assert.equal(resumed.code, 0, explain(resumed));
    assert.match(
      resumed.stderr,
      /\[train\] no checkpoint yet \(the run stopped before its first epoch ended\): training starts afresh/,
    );
    assert.equal(await lastWeights(runDir), await lastWeights(ref.runDir));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("faults: a second Ctrl-C quits at once and leaves the manifest interrupted", async () => {
  const dir = await Deno.makeTempDir({ prefix: "faults_twice_" });
  try {
    const spec = join(dir, "spec.yaml");
    await Deno.writeTextFile(
      spec,
      `name: twice
runtime: { backend: cpu, outputDir: ${JSON.stringify(join(dir, "runs"))} }
data: { layout: synthetic, sampleRateHz: 8000, durationSeconds: 0.1, perClass: { train: 1, validation: 1, test: 1 } }
stages:
  - use: load
  - use: ${join(ROOT, "tests/specs/_slow_step.ts")}
    name: slow
`,
    );
    const run = startCli(["run", spec]);
    await run.waitFor(/slow step started/);
    run.child.kill("SIGINT");
    await run.waitFor(/SIGINT received: stopping/);
    run.child.kill("SIGINT");
    const r = await run.done();
    assert.equal(r.code, 130, explain(r));
    assert.equal((await run.child.status).signal, "SIGINT", "killed by it");
    assert.ok(!r.stderr.includes("slow step done"), explain(r));
    const manifest = await readJson(
      join(await onlyRun(join(dir, "runs")), "manifest.json"),
    );
    assert.equal(manifest.status, "interrupted");
    assert.equal(
      (manifest.interrupted as { hardStop: boolean }).hardStop,
      true,
    );
    assert.equal((manifest.interrupted as { stage: string }).stage, "slow");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("faults: a refused resume lists each differing key with both values and changes no byte of the run folder", async () => {
  const ref = await uninterrupted();
  const before = await hashTree(ref.runDir);
  const r = await cli([
    "run",
    ref.spec,
    ...SETS,
    "--set",
    "train.batchSize=3",
    "--set",
    "train.lr=0.01",
    "--resume",
    ref.runDir,
    "--json",
  ]);
  assert.equal(r.code, 2, explain(r));
  assert.match(
    r.stderr,
    /the spec differs from the run's in 2 keys a resume may not change:\n {2}stages\.train\.with\.batchSize: 2 in the run, 3 now\n {2}stages\.train\.with\.lr: 0\.05 in the run, 0\.01 now\n/,
  );
  assert.match(
    r.stderr,
    /A resume may change only runtime\.outputDir, runtime\.backend, runtime\.frontEnd, stages\.load\.with\.workers, stages\.load\.with\.cacheMegabytes, stages\.train\.with\.epochs \(larger only\), stages\.train\.with\.engine, stages\.train\.with\.readEvery\./,
  );
  assert.equal(count(r.stderr, "Cannot resume"), 1, explain(r));
  const error = JSON.parse(r.stdout.trim()).error;
  assert.equal(error.code, "resume_refused");
  assert.equal(error.runDir, ref.runDir);
  // Fewer epochs than the run has is refused too.
  const shorter = await cli([
    "run",
    ref.spec,
    "--set",
    "train.epochs=1",
    "--resume",
    ref.runDir,
  ]);
  assert.equal(shorter.code, 2, explain(shorter));
  assert.match(
    shorter.stderr,
    /stages\.train\.with\.epochs: 2 in the run, 1 now/,
  );
  assert.deepEqual(await hashTree(ref.runDir), before);
});

Deno.test("faults: more epochs extend a finished run on resume; a missing run folder is a command-line error", async () => {
  const ref = await uninterrupted();
  const dir = await Deno.makeTempDir({ prefix: "faults_extend_" });
  try {
    const runDir = join(dir, "run");
    await copyTree(ref.runDir, runDir);
    const r = await cli([
      "run",
      ref.spec,
      ...SETS,
      "--set",
      "train.epochs=3",
      "--resume",
      runDir,
    ]);
    assert.equal(r.code, 0, explain(r));
    assert.match(r.stderr, /resume changes stages\.train\.with\.epochs: 2 → 3/);
    const last = await readJson(join(runDir, "checkpoints", "last.json"));
    assert.equal((last.meta as { epoch: number }).epoch, 2);
    const manifest = await readJson(join(runDir, "manifest.json"));
    assert.equal(manifest.status, "ok");
    assert.equal(
      manifest.specHash,
      (await readJson(join(ref.runDir, "manifest.json"))).specHash,
    );
    // The output folder differs too (the reference run named one); both may.
    assert.deepEqual(
      (manifest.resumes as { changes: { path: string }[] }[])[0].changes
        .filter((c) => c.path !== "runtime.outputDir"),
      [{ path: "stages.train.with.epochs", before: 2, after: 3 }],
    );
    assert.match(
      await Deno.readTextFile(join(runDir, "spec.yaml")),
      /epochs: 3/,
    );

    const missing = await cli([
      "run",
      ref.spec,
      "--resume",
      join(dir, "nonexistent"),
      "--json",
    ]);
    assert.equal(missing.code, 2, explain(missing));
    assert.equal(
      missing.stderr,
      `error: Cannot resume "${
        join(dir, "nonexistent")
      }": no such folder; give the run folder an earlier run printed ("run folder: runs/<name>-<time>")\n`,
    );
    assert.equal(JSON.parse(missing.stdout).error.code, "resume_refused");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("faults: a read-only output folder is one clear error, no stack trace", async () => {
  const dir = await Deno.makeTempDir({ prefix: "faults_readonly_" });
  try {
    let outputDir = join(dir, "ro");
    await Deno.mkdir(outputDir);
    await Deno.chmod(outputDir, 0o555);
    // root ignores file modes: then a path under a plain file stands in for it.
    const probe = join(outputDir, "probe");
    if (await Deno.writeTextFile(probe, "").then(() => true, () => false)) {
      await Deno.remove(probe);
      await Deno.writeTextFile(join(dir, "file"), "");
      outputDir = join(dir, "file", "runs");
    }
    const r = await cli([
      "run",
      "presets/tiny/synthetic.yaml",
      "--set",
      `runtime.outputDir=${outputDir}`,
      "--json",
    ]);
    assert.equal(r.code, 1, explain(r));
    const lines = r.stderr.trimEnd().split("\n");
    assert.equal(lines.length, 1, explain(r));
    assert.match(
      lines[0],
      new RegExp(
        `^error: Cannot create a run folder in "${outputDir}": .+; make it writable or choose another with --set runtime\\.outputDir=<folder>$`,
      ),
    );
    assert.ok(!r.stderr.includes("\x1b["), "no ANSI codes");
    assert.equal(JSON.parse(r.stdout).error.code, "run_folder");
  } finally {
    await Deno.chmod(join(dir, "ro"), 0o755).catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("faults: a failing stage's error is printed once; --json prints an error object; so does an invalid spec", async () => {
  const out = await Deno.makeTempDir({ prefix: "faults_once_" });
  try {
    const r = await cli([
      "run",
      "tests/specs/fails.yaml",
      "--set",
      `runtime.outputDir=${out}`,
      "--json",
    ]);
    assert.equal(r.code, 1, explain(r));
    assert.equal(
      count(r.stderr, 'Cannot finish stage "_fail_stage": the disk is full'),
      1,
      explain(r),
    );
    const error = JSON.parse(r.stdout.trim().split("\n").at(-1)!).error;
    assert.equal(error.code, "stage_failed");
    assert.equal(error.stage, "_fail_stage");
    assert.equal(
      error.message,
      'Cannot finish stage "_fail_stage": the disk is full',
    );
    assert.equal(error.runDir, await onlyRun(out));

    const bad = await cli(["run", "tests/errors/unknown_stage.yaml", "--json"]);
    assert.equal(bad.code, 2, explain(bad));
    const invalid = JSON.parse(bad.stdout).error;
    assert.equal(invalid.code, "invalid_spec");
    assert.equal(invalid.issues[0].code, "unknown_stage");
    assert.equal(
      count(bad.stderr, "unknown_stage"),
      count(bad.stderr, "unknown_stage"),
    );
    assert.equal(count(bad.stderr, invalid.issues[0].message), 1, explain(bad));
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

/** A tiny training spec with a faulty map stage before `train`. */
async function faultySpec(dir: string, fault: "throw" | "shrink") {
  const text = tinyTrainSpec({ name: `faulty_${fault}` }).replace(
    "  - use: train\n",
    `  - use: ${
      join(ROOT, "tests/specs/_faulty_map.ts")
    }\n    name: faulty\n    with: { fault: ${fault} }\n  - use: train\n`,
  );
  const spec = join(dir, "spec.yaml");
  await Deno.writeTextFile(spec, text);
  return await compile(spec, {
    builtins: BUILTIN_STAGES,
    overrides: [`runtime.outputDir=${join(dir, "runs")}`],
  });
}

Deno.test("faults: a map stage that throws is blamed, in the error and the manifest", async () => {
  const dir = await Deno.makeTempDir({ prefix: "faults_map_" });
  try {
    const compiled = await faultySpec(dir, "throw");
    let runDir = "";
    await assert.rejects(runPipeline(compiled, {}), (e: unknown) => {
      assert.ok(e instanceof StageError);
      assert.equal(e.stage, "faulty");
      assert.equal(
        e.message,
        'Cannot finish stage "faulty": the custom transform broke',
      );
      runDir = e.runDir;
      return true;
    });
    const manifest = await readJson(join(runDir, "manifest.json"));
    assert.equal(manifest.failedStage, "faulty");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("faults: a map stage's output is checked against its declared layouts, naming stage, key, expected and actual shape", async () => {
  const dir = await Deno.makeTempDir({ prefix: "faults_shape_" });
  try {
    const compiled = await faultySpec(dir, "shrink");
    await assert.rejects(
      runPipeline(compiled, {}),
      (e: unknown) => {
        assert.ok(e instanceof StageError);
        assert.equal(e.stage, "faulty");
        assert.match(
          e.message,
          /^Cannot finish stage "faulty": Cannot use the output of map stage "faulty" \(phase eval\): key "tokens" should be \[b, t, 16\] float32 and is \[1, 51, 7\] float32 \(b = 1, the batch size\)/,
        );
        return true;
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("faults: an interrupt given to runPipeline surfaces as RunInterrupted naming the stage", async () => {
  const dir = await Deno.makeTempDir({ prefix: "faults_lib_" });
  try {
    await Deno.writeTextFile(
      join(dir, "spec.yaml"),
      tinyTrainSpec({ name: "lib" }),
    );
    const compiled = await compile(join(dir, "spec.yaml"), {
      builtins: BUILTIN_STAGES,
      overrides: [`runtime.outputDir=${join(dir, "runs")}`],
    });
    const controller = new AbortController();
    controller.abort(new Error("stop"));
    await assert.rejects(
      runPipeline(compiled, { signal: controller.signal }),
      (e: unknown) => {
        assert.ok(e instanceof RunInterrupted);
        assert.equal(e.stage, "train");
        assert.equal(e.reason, "stop");
        return true;
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ---- remote stages ----

/** A loopback server of one module whose source and content type can change. */
function moduleServer() {
  let source = "";
  let type = "application/typescript; charset=utf-8";
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response(source, { headers: { "content-type": type } }),
  );
  const host = `127.0.0.1:${server.addr.port}`;
  return {
    host,
    url: `http://${host}/${crypto.randomUUID()}/mark.ts`,
    set(text: string, contentType = "application/typescript; charset=utf-8") {
      source = text;
      type = contentType;
    },
    close: () => server.shutdown(),
  };
}

/** A step stage that writes `mark.json` with a version number. */
function markStage(version: number): string {
  return `export const stage = {
  id: "mark", version: "1.0.0", api: 1, kind: "step",
  summary: "Write mark.json",
  options: { safeParse: (_input) => ({ success: true, data: {} }) },
  takes: [], provides: [],
  async run(_options, ctx) {
    await Deno.writeTextFile(ctx.runDir + "/mark.json", JSON.stringify({ version: ${version} }));
    return {};
  },
};
`;
}

async function remoteFixture(url: string) {
  const dir = await Deno.makeTempDir({ prefix: "faults_remote_" });
  const lock = join(dir, "deno.lock");
  await Deno.copyFile(join(ROOT, "deno.lock"), lock);
  const spec = join(dir, "spec.yaml");
  await Deno.writeTextFile(
    spec,
    `name: remote
runtime: { backend: cpu, outputDir: ${JSON.stringify(join(dir, "runs"))} }
data: { layout: synthetic, sampleRateHz: 8000, durationSeconds: 0.1, perClass: { train: 1, validation: 1, test: 1 } }
stages:
  - use: load
  - use: ${url}
`,
  );
  return { dir, lock, spec };
}

Deno.test("faults: changed remote stage code is accepted in one step with --update-lock, and only then", async () => {
  const server = moduleServer();
  const fx = await remoteFixture(server.url);
  const allow = [
    `--lock=${fx.lock}`,
    `--allow-import=${server.host}`,
    `--allow-net=${server.host}`,
  ];
  const run = (...extra: string[]) =>
    cli(["run", fx.spec, "--lock", fx.lock, ...extra], allow);
  const marks = async () => {
    const out: number[] = [];
    for (
      const e of [...Deno.readDirSync(join(fx.dir, "runs"))].sort((a, b) =>
        a.name < b.name ? -1 : 1
      )
    ) {
      out.push(
        (await readJson(join(fx.dir, "runs", e.name, "mark.json")))
          .version as number,
      );
    }
    return out.sort();
  };
  try {
    server.set(markStage(1));
    const first = await run();
    assert.equal(first.code, 0, explain(first));
    server.set(markStage(2));
    const changed = await run();
    assert.equal(changed.code, 2, explain(changed));
    assert.match(changed.stderr, /integrity_mismatch/);
    assert.ok(
      changed.stderr.includes(`run once with --update-lock ${server.url}`),
      explain(changed),
    );

    const update = await run("--update-lock", server.url);
    assert.equal(update.code, 0, explain(update));
    const lock = await readJson(fx.lock);
    assert.equal(
      (lock.remote as Record<string, string>)[server.url],
      await sha256(new TextEncoder().encode(markStage(2))),
    );
    const again = await run();
    assert.equal(again.code, 0, explain(again));
    assert.deepEqual(
      await marks(),
      [1, 2, 2],
      "the new code ran, then stayed accepted",
    );

    const unused = await run("--update-lock", `http://${server.host}/other.ts`);
    assert.equal(unused.code, 2, explain(unused));
    assert.match(
      unused.stderr,
      /Cannot update the lock entry of .*other\.ts: the spec uses no stage at this URL/,
    );
  } finally {
    await server.close();
    await Deno.remove(fx.dir, { recursive: true });
  }
});

Deno.test("faults: a remote stage served with a non-JavaScript content type is named as such; the permission hint is one that works", async () => {
  const server = moduleServer();
  const fx = await remoteFixture(server.url);
  try {
    server.set(markStage(1), "text/vnd.trolltech.linguist");
    const r = await cli(["run", fx.spec, "--lock", fx.lock], [
      `--lock=${fx.lock}`,
      `--allow-import=${server.host}`,
      `--allow-net=${server.host}`,
    ]);
    assert.equal(r.code, 2, explain(r));
    assert.match(
      r.stderr,
      /bad_stage_module {2}Cannot load stage ".*mark\.ts": the server sends it with content type "text\/vnd\.trolltech\.linguist", which is not JavaScript or TypeScript/,
    );
    assert.match(r.stderr, /hint: serve \.ts files as application\/typescript/);

    server.set(markStage(1));
    const denied = await cli(["run", fx.spec, "--lock", fx.lock], [
      `--lock=${fx.lock}`,
    ]);
    assert.equal(denied.code, 2, explain(denied));
    assert.match(denied.stderr, /import_denied/);
    assert.ok(
      denied.stderr.includes(
        `run "deno run --allow-read --allow-write --allow-env --allow-import=${server.host} --allow-net=${server.host} cli.ts run <spec>"`,
      ),
      explain(denied),
    );
    assert.ok(!denied.stderr.includes("permissions.run"), explain(denied));
  } finally {
    await server.close();
    await Deno.remove(fx.dir, { recursive: true });
  }
});

Deno.test("faults: --dry-run without the data prints the model summary planned from the preset, saying so", async () => {
  const absent = join(
    await Deno.makeTempDir({ prefix: "faults_absent_" }),
    "none",
  );
  const r = await cli([
    "run",
    "presets/sc1.yaml",
    "--dry-run",
    "--set",
    `data.root=${absent}`,
  ]);
  assert.equal(r.code, 0, explain(r));
  assert.match(
    r.stderr,
    /note: the data cannot be opened \(Cannot open dataset "speech_commands" at .*none: 1 problem\); the summary below is planned from the spec: 30 classes, silent 1 s clips at 16000 Hz/,
  );
  assert.match(
    r.stdout,
    /^train:\nmodel dims \{"nMels":80,"frames":104,"classes":30\}$/m,
  );
  assert.match(r.stdout, /^parameters: 103070780$/m);
});

Deno.test("faults: the docs' extends-patch example compiles (one view, a swapped mel module, a dropped stage)", async () => {
  const readme = await Deno.readTextFile(join(ROOT, "docs/spec_format.md"));
  const block = readme.match(
    /```yaml\n(\s*extends: \.\.\/sc1\.yaml\n[\s\S]*?)```/,
  );
  assert.ok(block, "docs/spec_format.md shows the sc1_one_view patch");
  const dir = await Deno.makeTempDir({ prefix: "faults_readme_" });
  try {
    const text = block[1].replace(/^ {2}/gm, "").replace(
      "extends: ../sc1.yaml",
      `extends: ${join(ROOT, "presets/sc1.yaml")}`,
    );
    await Deno.writeTextFile(join(dir, "one_view.yaml"), text);
    await Deno.writeTextFile(
      join(dir, "my_mel.ts"),
      `export { stage } from ${
        JSON.stringify(new URL("../stages/mel.ts", import.meta.url).href)
      };\n`,
    );
    const { plan } = await compile(join(dir, "one_view.yaml"), {
      builtins: BUILTIN_STAGES,
    });
    const augment = plan.stages.find((s) => s.name === "augment")!;
    assert.deepEqual(
      (augment.options as { views: { name: string }[] }).views.map((v) =>
        v.name
      ),
      ["shift"],
    );
    assert.equal(
      plan.stages.find((s) => s.use === "./my_mel.ts")?.origin,
      "file",
    );
    assert.ok(!plan.stages.some((s) => s.id === "test_time_adaptation"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
