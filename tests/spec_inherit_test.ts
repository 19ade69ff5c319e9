/**
 * What a spec inherits through `extends:` and where its paths point: a child
 * that replaces `data:` but keeps the parent's `classes:` gets one error
 * naming the parent's file and line; `classes: null` unsets it; numbers in
 * `classes:` are names; `--dry-run` lists every inherited value with its
 * origin; `root` is relative to the spec file that writes it (with a located
 * migration error for a path that only exists relative to the working
 * directory); a missing root is named by its resolved path.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join, relative } from "node:path";
import {
  compile,
  ConfigError,
  formatConfigError,
  formatInherited,
  openSource,
} from "../pipeline/mod.ts";
import { displayPath } from "../pipeline/spec_load.ts";
import { BUILTIN_STAGES } from "../stages/mod.ts";
import { writeToneWav } from "./_fixtures.ts";

const ROOT = new URL("../", import.meta.url).pathname;

const PARENT = `name: parent
runtime: { backend: cpu }
data:
  layout: folder
  root: words
  classes: [zero, one, two]
stages:
  - use: load
    with: { workers: 0 }
  - use: describe_data
`;

/** A temp tree: parent.yaml (word classes) and digits/ (a manifest labelled 0, 1, 2). */
async function tree(): Promise<string> {
  const dir = await Deno.realPath(
    await Deno.makeTempDir({ prefix: "spec_inherit_" }),
  );
  await Deno.writeTextFile(join(dir, "parent.yaml"), PARENT);
  const rows = ["path,label"];
  for (let label = 0; label < 3; label++) {
    for (let i = 0; i < 10; i++) {
      const file = `d${label}_${i}.wav`;
      await writeToneWav(join(dir, "digits", file), {
        sampleRateHz: 8000,
        seconds: 0.1,
      });
      rows.push(`${file},${label}`);
    }
  }
  await Deno.writeTextFile(
    join(dir, "digits", "m.csv"),
    rows.join("\n") + "\n",
  );
  return dir;
}

async function child(dir: string, name: string, data: string) {
  const path = join(dir, "specs", name);
  await Deno.mkdir(join(dir, "specs"), { recursive: true });
  await Deno.writeTextFile(
    path,
    `extends: ../parent.yaml\nname: ${
      name.replace(".yaml", "")
    }\ndata:\n${data}`,
  );
  return path;
}

const compileIt = (path: string) => compile(path, { builtins: BUILTIN_STAGES });

Deno.test("an inherited classes: that conflicts with the child's data is named with the parent's file and line, once", async () => {
  const dir = await tree();
  const path = await child(
    dir,
    "keeps.yaml",
    "  root: ../digits\n  manifest: m.csv\n",
  );
  const compiled = await compileIt(path);
  const error = await openSource(compiled).then(
    () => assert.fail("opened"),
    (e: Error) => e,
  );
  const parent = displayPath(join(dir, "parent.yaml"));
  assert.match(
    error.message,
    new RegExp(
      `30 rows of m\\.csv have 3 labels not in classes: "0" \\(10 rows from line 2\\), "1" \\(10 rows from line 12\\), "2" \\(10 rows from line 22\\); classes lists zero, one, two \\(classes is inherited from ${
        parent.replaceAll(".", "\\.")
      }:6; write \`classes: null\` under data: to drop it, or list this dataset's classes\\)`,
    ),
  );
  assert.equal(error.message.match(/not in classes/g)?.length, 1);
  // --dry-run names the origin of every inherited value.
  const text = formatInherited(compiled);
  assert.match(
    text,
    new RegExp(
      `data\\.classes +\\["zero","one","two"\\] +← ${
        parent.replaceAll(".", "\\.")
      }:6`,
    ),
  );
  assert.match(text, /data\.layout +"folder" +← .*parent\.yaml:4/);
  assert.match(text, /stages +\[\{"use":"load".* +← .*parent\.yaml:7/);
  assert.doesNotMatch(text, /data\.root|data\.manifest/, "the child's own");
});

Deno.test("deno task validate notes an inherited classes: beside the child's own root, naming the parent's line", async () => {
  const dir = await tree();
  const path = await child(
    dir,
    "keeps.yaml",
    "  root: ../digits\n  manifest: m.csv\n",
  );
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-env",
      join(ROOT, "cli.ts"),
      "validate",
      path,
    ],
    cwd: ROOT,
    stdin: "null",
    env: { NO_COLOR: "1" },
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  assert.match(
    stdout,
    new RegExp(
      `^ {4}note: data\\.classes is inherited from ${
        displayPath(join(dir, "parent.yaml")).replaceAll(".", "\\.")
      }:6 while .*keeps\\.yaml sets data\\.root and data\\.manifest: if this data has other labels, write \`classes: null\` under data: \\(or list its classes\\)$`,
      "m",
    ),
  );
  // --dry-run lists the inherited values with their origin.
  const dry = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-env",
      join(ROOT, "cli.ts"),
      "run",
      path,
      "--dry-run",
    ],
    cwd: ROOT,
    stdin: "null",
    env: { NO_COLOR: "1" },
  }).output();
  const plan = new TextDecoder().decode(dry.stdout);
  assert.equal(dry.code, 0, new TextDecoder().decode(dry.stderr));
  assert.match(
    plan,
    /^inherited through extends \(value, then where it was written\):$/m,
  );
  assert.match(
    plan,
    /^ {2}data\.classes +\["zero","one","two"\] +← .*parent\.yaml:6$/m,
  );
  assert.match(plan, /^note: data\.classes is inherited from /m);
  // With classes unset, no note.
  const unset = await child(
    dir,
    "unset.yaml",
    "  root: ../digits\n  manifest: m.csv\n  classes: null\n",
  );
  assert.deepEqual((await compileIt(unset)).notes, []);
});

Deno.test("classes: null unsets the inherited list; numbers in classes are names", async () => {
  const dir = await tree();
  const unset = await child(
    dir,
    "unset.yaml",
    "  root: ../digits\n  manifest: m.csv\n  classes: null\n",
  );
  const compiled = await compileIt(unset);
  assert.equal(
    (compiled.plan.data as { classes?: unknown }).classes,
    undefined,
  );
  assert.match(
    formatInherited(compiled),
    /data\.classes +unset \(null\) +← .*specs\/unset\.yaml:6/,
  );
  const dataset = await openSource(compiled);
  assert.deepEqual(dataset.classes, ["0", "1", "2"]);
  await dataset.close?.();

  const numbers = await child(
    dir,
    "numbers.yaml",
    "  root: ../digits\n  manifest: m.csv\n  classes: [2, 1, 0]\n",
  );
  const n = await compileIt(numbers);
  assert.deepEqual((n.plan.data as { classes: unknown }).classes, [
    "2",
    "1",
    "0",
  ]);
  // The synthetic layout reads numbers as names too.
  await Deno.writeTextFile(
    join(dir, "tones.yaml"),
    "name: tones\ndata: { layout: synthetic, classes: [7, 8] }\nstages:\n  - use: load\n",
  );
  const tones = await compileIt(join(dir, "tones.yaml"));
  assert.deepEqual((tones.plan.data as { classes: unknown }).classes, [
    "7",
    "8",
  ]);
  const d = await openSource(n);
  assert.deepEqual(d.classes, ["2", "1", "0"]);
  assert.deepEqual(d.labels?.("train").slice(0, 1), [2], "label of '0'");
  await d.close?.();
});

Deno.test("root is relative to the spec file that writes it; --set to the working directory", async () => {
  const dir = await tree();
  const path = await child(
    dir,
    "rel.yaml",
    "  root: ../digits\n  manifest: m.csv\n  classes: null\n",
  );
  const compiled = await compileIt(path);
  assert.equal(
    (compiled.plan.data as { root: string }).root,
    join(dir, "digits"),
  );
  // Inherited from the parent: relative to the parent's folder.
  await Deno.mkdir(join(dir, "words"));
  const inherits = await child(dir, "inherits.yaml", "  classes: null\n");
  const c = await compileIt(inherits);
  assert.equal((c.plan.data as { root: string }).root, join(dir, "words"));
  const set = await compile(inherits, {
    builtins: BUILTIN_STAGES,
    overrides: [`data.root=${relative(Deno.cwd(), join(dir, "digits"))}`],
  });
  assert.equal(
    (set.plan.data as { root: string }).root,
    join(dir, "digits"),
  );
});

Deno.test("a root that only exists relative to the working directory gets a located error with the spec-relative fix", async () => {
  const dir = await tree();
  const path = await child(
    dir,
    "old.yaml",
    "  root: data/demo_digits\n  manifest: manifest.csv\n  classes: null\n",
  );
  const error = await compileIt(path).then(
    () => assert.fail("compiled"),
    (e: ConfigError) => e,
  );
  assert.ok(error instanceof ConfigError);
  const text = formatConfigError(error);
  const abs = join(dir, "specs", "data", "demo_digits");
  assert.match(
    text,
    new RegExp(
      `specs/old\\.yaml:4:9 {2}invalid_value {2}Cannot find "data/demo_digits" at ${abs}: paths in a spec are relative to the spec file that writes them`,
    ),
  );
  const fix = relative(join(dir, "specs"), join(ROOT, "data", "demo_digits"));
  assert.ok(
    text.includes(
      `hint: it exists relative to the working directory: write \`root: ${fix}\``,
    ),
    text,
  );
});

Deno.test("a missing root is reported with its resolved path", async () => {
  const dir = await tree();
  const path = await child(
    dir,
    "missing.yaml",
    "  root: ../nowhere\n  manifest: m.csv\n  classes: null\n",
  );
  const error = await openSource(await compileIt(path)).then(
    () => assert.fail("opened"),
    (e: Error) => e,
  );
  assert.ok(
    error.message.includes(
      `${join(dir, "nowhere")}: Cannot find the dataset folder`,
    ),
    error.message,
  );
});
