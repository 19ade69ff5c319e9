import assert from "node:assert/strict";
import { join } from "node:path";
import * as z from "zod";
import { compile, formatPlan } from "./compile.ts";
import { ConfigError } from "./diagnostics.ts";
import { defineStage } from "./define_stage.ts";
import { BUILTIN_STAGES } from "../stages/mod.ts";

const SPEC = `name: t
data:
  layout: synthetic
  perClass: { train: 2, validation: 1, test: 1 }
stages:
  - use: load
  - use: mono_mix
  - use: describe_data
`;

async function write(entries: Record<string, string>): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "compile_test_" });
  for (const [name, text] of Object.entries(entries)) {
    await Deno.mkdir(join(dir, name, ".."), { recursive: true });
    await Deno.writeTextFile(join(dir, name), text);
  }
  return dir;
}

async function issuesOf(p: Promise<unknown>) {
  try {
    await p;
  } catch (e) {
    if (e instanceof ConfigError) return e.issues;
    throw e;
  }
  throw new Error("Cannot find the expected ConfigError: compile succeeded");
}

const STAGE_FILE = (projectUrl: string, body: string) => `
import * as z from "zod";
import { defineStage } from "${projectUrl}pipeline/define_stage.ts";
${body}
`;
const PROJECT = new URL("../", import.meta.url).href;

Deno.test("compile() fills in every default and records a JSON-serialisable plan", async () => {
  const dir = await write({ "spec.yaml": SPEC });
  const c = await compile(join(dir, "spec.yaml"), { builtins: BUILTIN_STAGES });
  const plan = JSON.parse(JSON.stringify(c.plan));
  assert.deepEqual(plan, c.plan);
  assert.deepEqual(c.plan.runtime, {
    backend: "auto",
    frontEnd: "auto",
    seed: 0,
    outputDir: "runs",
  });
  assert.equal((c.plan.data as Record<string, unknown>).sampleRateHz, 16000);
  assert.deepEqual(c.plan.stages.map((s) => [s.name, s.kind, s.origin]), [
    ["load", "source", "builtin"],
    ["mono_mix", "map", "builtin"],
    ["describe_data", "step", "builtin"],
  ]);
  assert.deepEqual(c.plan.stages[2].options, { batchSize: 64 });
  assert.match(c.plan.specHash, /^sha256-[0-9a-f]{64}$/);
  assert.match(
    formatPlan(c.plan),
    /2\. describe_data {2}\(step, describe_data@/,
  );
});

Deno.test("compile() gives the resolved spec, which compiles to the same hash", async () => {
  const dir = await write({ "spec.yaml": SPEC });
  const a = await compile(join(dir, "spec.yaml"), {
    builtins: BUILTIN_STAGES,
    overrides: ["runtime.seed=9", "describe_data.batchSize=3"],
  });
  assert.equal(a.plan.runtime.seed, 9);
  await Deno.writeTextFile(join(dir, "resolved.yaml"), a.resolvedYaml);
  const b = await compile(join(dir, "resolved.yaml"), {
    builtins: BUILTIN_STAGES,
  });
  assert.equal(b.plan.specHash, a.plan.specHash);
  const plain = await compile(join(dir, "spec.yaml"), {
    builtins: BUILTIN_STAGES,
  });
  assert.notEqual(plain.plan.specHash, a.plan.specHash);
});

Deno.test("compile() resolves relative stage paths against the file that names them", async () => {
  const dir = await write({
    "base/parent.yaml": SPEC.replace(
      "  - use: describe_data\n",
      "  - use: ./local/count.ts\n",
    ),
    "base/local/count.ts": STAGE_FILE(
      PROJECT,
      `export const stage = defineStage({
  id: "count", version: "1.2.3", api: 1, kind: "step",
  summary: "Count clips",
  options: z.strictObject({ split: z.string().default("train") }),
  takes: ["waveform"], provides: ["count"],
  run: () => Promise.resolve({ count: 1 }),
});`,
    ),
    "child.yaml": "extends: ./base/parent.yaml\nname: child\n",
  });
  const c = await compile(join(dir, "child.yaml"), {
    builtins: BUILTIN_STAGES,
  });
  const s = c.plan.stages[2];
  assert.equal(s.origin, "file");
  assert.equal(s.name, "count");
  assert.equal(s.version, "1.2.3");
  assert.deepEqual(s.options, { split: "train" });
  assert.ok(s.specifier!.endsWith("/base/local/count.ts"));
});

Deno.test("compile() rejects stage modules that do not match the contract, naming what is missing", async () => {
  const dir = await write({
    "spec.yaml": SPEC +
      "  - use: ./no_run.ts\n  - use: ./no_stage.ts\n  - use: ./missing.ts\n",
    "no_run.ts": STAGE_FILE(
      PROJECT,
      `export const stage = { id: "no_run", version: "1.0.0", api: 1, kind: "step",
  summary: "x", options: z.strictObject({}), takes: [], provides: [] };`,
    ),
    "no_stage.ts": "export const other = 1;\n",
  });
  const issues = await issuesOf(
    compile(join(dir, "spec.yaml"), { builtins: BUILTIN_STAGES }),
  );
  assert.deepEqual(issues.map((i) => [i.code, i.line]), [
    ["bad_stage_module", 9],
    ["bad_stage_module", 10],
    ["bad_stage_module", 11],
  ]);
  assert.match(issues[0].message, /lacks "run"/);
  assert.match(
    issues[1].message,
    /does not export `stage` \(its exports: other\)/,
  );
  assert.match(issues[2].message, /file not found/);
});

Deno.test("compile() rejects duplicate stage names and a misplaced source", async () => {
  const dir = await write({
    "spec.yaml": SPEC +
      "  - use: describe_data\n  - use: load\n    name: second\n",
  });
  const issues = await issuesOf(
    compile(join(dir, "spec.yaml"), { builtins: BUILTIN_STAGES }),
  );
  assert.deepEqual(issues.map((i) => [i.code, i.line]), [
    ["duplicate_stage_name", 9],
    ["bad_source", 10],
  ]);
});

Deno.test("compile() checks takes against earlier stages only, in spec order", async () => {
  const late = defineStage({
    id: "late",
    version: "1.0.0",
    api: 1,
    kind: "step",
    summary: "Take a key provided later",
    options: z.strictObject({}),
    takes: ["dataSummary"],
    provides: [],
    run: () => Promise.resolve({}),
  });
  const dir = await write({
    "spec.yaml": SPEC.replace(
      "  - use: mono_mix\n",
      "  - use: late\n  - use: mono_mix\n",
    ),
  });
  const issues = await issuesOf(
    compile(join(dir, "spec.yaml"), { builtins: { ...BUILTIN_STAGES, late } }),
  );
  assert.equal(issues.length, 1);
  assert.equal(issues[0].code, "unmet_takes");
  assert.equal(issues[0].line, 7);
  assert.equal(issues[0].hint, "add `- use: describe_data` before late");
});

Deno.test("compile() refuses plain http URLs to non-loopback hosts", async () => {
  const dir = await write({
    "spec.yaml": SPEC + "  - use: http://example.org/stage@1.0.0/mod.ts\n",
  });
  const issues = await issuesOf(
    compile(join(dir, "spec.yaml"), { builtins: BUILTIN_STAGES }),
  );
  assert.equal(issues[0].code, "bad_stage_module");
  assert.match(issues[0].message, /must use https/);
  assert.equal(
    issues[0].hint,
    'write "https://example.org/stage@1.0.0/mod.ts"',
  );
});
