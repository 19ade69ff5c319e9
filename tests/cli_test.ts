/**
 * The command line as users run it: subcommands, exit codes (0 ok, 1 failure
 * while running, 2 invalid spec or command line), `--dry-run`, `--json` and
 * `--set`, through a real `deno run` subprocess.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";

const ROOT = new URL("../", import.meta.url).pathname;

async function cli(...args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-write",
      "--allow-env",
      join(ROOT, "cli.ts"),
      ...args,
    ],
    cwd: ROOT,
    stdin: "null",
    env: { NO_COLOR: "1" },
  }).output();
  const dec = new TextDecoder();
  return {
    code: out.code,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
  };
}

Deno.test("cli validate exits 0 for valid specs and 2 with every problem for invalid ones", async () => {
  const ok = await cli("validate", "presets/tiny/synthetic.yaml");
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(
    ok.stdout,
    /^ok {2}presets\/tiny\/synthetic\.yaml {2}\(3 stages: load → mono_mix → describe_data\)/,
  );
  const bad = await cli(
    "validate",
    "presets/tiny/synthetic.yaml",
    "tests/errors/many_errors.yaml",
  );
  assert.equal(bad.code, 2);
  assert.match(bad.stdout, /^ok {2}presets\/tiny\/synthetic\.yaml/);
  assert.match(bad.stderr, /many_errors\.yaml": 8 problems/);
  assert.match(
    bad.stderr,
    /tests\/errors\/many_errors\.yaml:11:10 {2}unknown_stage/,
  );
});

Deno.test("cli run --dry-run prints the plan (text and JSON) without running", async () => {
  const text = await cli(
    "run",
    "presets/tiny/synthetic.yaml",
    "--dry-run",
    "--set",
    "runtime.seed=7",
  );
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /runtime {4}backend auto, seed 7/);
  assert.match(
    text.stdout,
    /1\. mono_mix {2}\(map, mono_mix@1\.0\.0, built-in\)/,
  );
  const json = await cli(
    "run",
    "presets/tiny/synthetic.yaml",
    "--dry-run",
    "--json",
  );
  const plan = JSON.parse(json.stdout).plan;
  assert.equal(plan.name, "synthetic");
  assert.deepEqual(plan.stages.map((s: { name: string }) => s.name), [
    "load",
    "mono_mix",
    "describe_data",
  ]);
});

Deno.test("cli run exits 0 and writes a run folder; overrides reach the plan", async () => {
  const out = await Deno.makeTempDir({ prefix: "cli_test_" });
  const r = await cli(
    "run",
    "presets/tiny/synthetic.yaml",
    "--json",
    "--set",
    `runtime.outputDir=${out}`,
    "--set",
    "describe_data.batchSize=5",
  );
  assert.equal(r.code, 0, r.stderr);
  const { runDir } = JSON.parse(r.stdout);
  assert.ok(runDir.startsWith(join(out, "synthetic-")));
  const plan = JSON.parse(await Deno.readTextFile(join(runDir, "plan.json")));
  assert.deepEqual(plan.stages[2].options, { batchSize: 5 });
  assert.deepEqual(plan.overrides, [
    `runtime.outputDir=${out}`,
    "describe_data.batchSize=5",
  ]);
  for (
    const f of ["spec.yaml", "manifest.json", "log.jsonl", "data_summary.json"]
  ) {
    await Deno.stat(join(runDir, f));
  }
  assert.match(r.stderr, /\[describe_data\] train: 24 clips/);
});

Deno.test("cli run exits 1 naming the failed stage and keeps the run folder", async () => {
  const out = await Deno.makeTempDir({ prefix: "cli_test_" });
  const r = await cli(
    "run",
    "tests/specs/fails.yaml",
    "--set",
    `runtime.outputDir=${out}`,
  );
  assert.equal(r.code, 1);
  assert.match(
    r.stderr,
    /error: Cannot finish stage "_fail_stage": the disk is full/,
  );
  const dirs = [...Deno.readDirSync(out)].map((e) => e.name);
  assert.equal(dirs.length, 1);
  const manifest = JSON.parse(
    await Deno.readTextFile(join(out, dirs[0], "manifest.json")),
  );
  assert.equal(manifest.status, "failed");
  assert.equal(manifest.failedStage, "_fail_stage");
  await Deno.stat(join(out, dirs[0], "data_summary.json"));
});

Deno.test("cli exits 2 for invalid specs, bad overrides and bad command lines", async () => {
  const spec = await cli("run", "tests/errors/unknown_stage.yaml");
  assert.equal(spec.code, 2);
  assert.match(spec.stderr, /unknown_stage/);
  const override = await cli(
    "run",
    "presets/tiny/synthetic.yaml",
    "--dry-run",
    "--set",
    "trian.epochs=5",
  );
  assert.equal(override.code, 2);
  assert.match(override.stderr, /^--set trian\.epochs=5 {2}bad_override/m);
  const flag = await cli("run", "presets/tiny/synthetic.yaml", "--bogus");
  assert.equal(flag.code, 2);
  assert.match(flag.stderr, /Unknown option '--bogus'/);
  const command = await cli("train", "x.yaml");
  assert.equal(command.code, 2);
  assert.match(command.stderr, /unknown command "train"/);
  const none = await cli("run");
  assert.equal(none.code, 2);
});

Deno.test("cli backend reports the chosen backend and a passing self-check", async () => {
  const r = await cli("backend", "--backend", "cpu", "--json");
  assert.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  assert.equal(report.backend, "cpu");
  assert.equal(report.requested, "cpu");
  assert.ok(report.matmulMaxAbsError < 1e-3);
  const bad = await cli("backend", "--backend", "tpu");
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--backend must be auto, webgpu or cpu, got "tpu"/);
});

Deno.test("cli run --dry-run prints the model summary with the parameter count", async () => {
  const r = await cli("run", "presets/demo.yaml", "--dry-run");
  assert.equal(r.code, 0, r.stderr);
  assert.match(
    r.stdout,
    /^train:\nmodel dims \{"nMels":32,"frames":41,"classes":10\}$/m,
  );
  assert.match(
    r.stdout,
    /^ {2}transform\.embedding\.restnet\.root +\[20, 16\]$/m,
  );
  assert.match(r.stdout, /^ {2}classifier\.fc3 +\[10\]$/m);
  assert.match(r.stdout, /^parameters: 146804$/m);
});

Deno.test("cli run --repeat writes one run folder per repeat with distinct seeds, or shared with --same-seed", async () => {
  const out = await Deno.makeTempDir({ prefix: "cli_test_" });
  const r = await cli(
    "run",
    "presets/tiny/synthetic.yaml",
    "--repeat",
    "2",
    "--json",
    "--set",
    `runtime.outputDir=${out}`,
  );
  assert.equal(r.code, 0, r.stderr);
  const dirs = r.stdout.trim().split("\n").map((l) => JSON.parse(l).runDir);
  assert.equal(dirs.length, 2);
  const seeds = await Promise.all(
    dirs.map(async (d: string) =>
      JSON.parse(await Deno.readTextFile(join(d, "plan.json"))).runtime.seed
    ),
  );
  assert.deepEqual(seeds, [0, 1]);
  const same = await cli(
    "run",
    "presets/tiny/synthetic.yaml",
    "--repeat",
    "2",
    "--same-seed",
    "--json",
    "--set",
    `runtime.outputDir=${out}`,
  );
  const sameSeeds = await Promise.all(
    same.stdout.trim().split("\n").map(async (l) =>
      JSON.parse(
        await Deno.readTextFile(join(JSON.parse(l).runDir, "plan.json")),
      ).runtime.seed
    ),
  );
  assert.deepEqual(sameSeeds, [0, 0]);
  const bad = await cli("run", "presets/tiny/synthetic.yaml", "--repeat", "0");
  assert.equal(bad.code, 2);
});
