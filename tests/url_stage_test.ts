/**
 * End-to-end tests of stages named by URL (served from a loopback HTTP
 * server) and by relative path. The CLI runs as a subprocess with its own
 * copy of the lockfile, so the project's `deno.lock` is never modified; every
 * served URL holds a random token so Deno's remote-module cache never holds a
 * stale copy from an earlier test.
 *
 * Remote modules may not import `file:` modules (Deno refuses static imports
 * of local modules from remote ones), so the served stages are plain object
 * literals with a hand-written options schema (`safeParse`).
 *
 * @module
 */
import assert from "node:assert/strict";
import { isAbsolute, join, relative } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CLI = join(ROOT, "cli.ts");
const CONFIG = join(ROOT, "deno.json");
const DEFINE_STAGE_URL = new URL("../pipeline/define_stage.ts", import.meta.url)
  .href;

/** A step stage that writes the peak absolute test sample to `peak.json`. */
function peakStageSource(
  { scale = 1, imports = false }: { scale?: number; imports?: boolean } = {},
): string {
  const body = `{
  id: "peak",
  version: "1.0.0",
  api: 1,
  kind: "step",
  summary: "Write the peak absolute sample of the test split to peak.json",
  options: { safeParse: (_input) => ({ success: true, data: {} }) },
  takes: ["waveform"],
  provides: ["peak"],
  async run(_options, ctx) {
    let peak = 0;
    for await (
      const batch of ctx.data.batches("test", { batchSize: 8, phase: "eval", shuffle: false })
    ) {
      for (const wave of batch.waveform) {
        for (const v of wave) peak = Math.max(peak, Math.abs(v));
      }
    }
    peak *= ${scale};
    await Deno.writeTextFile(ctx.runDir + "/peak.json", JSON.stringify({ peak }));
    return { peak };
  },
}`;
  return imports
    ? `import { defineStage } from "${DEFINE_STAGE_URL}";\nexport const stage = defineStage(${body});\n`
    : `export const stage = ${body};\n`;
}

/** A loopback server of module sources, by path. */
interface StageServer {
  /** `127.0.0.1:<port>` */
  readonly host: string;
  /** Serves `source` at a fresh, unique URL ending in `/stages/<file>`. */
  serve(file: string, source: string): string;
  /** Replaces what `url` serves. */
  replace(url: string, source: string): void;
  close(): Promise<void>;
}

function startServer(): StageServer {
  const files = new Map<string, string>();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (request) => {
      const source = files.get(new URL(request.url).pathname);
      return source === undefined
        ? new Response("not found", { status: 404 })
        : new Response(source, {
          headers: { "content-type": "application/typescript; charset=utf-8" },
        });
    },
  );
  const host = `127.0.0.1:${server.addr.port}`;
  return {
    host,
    serve(file, source) {
      const path = `/${crypto.randomUUID()}/stages/${file}`;
      files.set(path, source);
      return `http://${host}${path}`;
    },
    replace(url, source) {
      files.set(new URL(url).pathname, source);
    },
    close: () => server.shutdown(),
  };
}

/** A temp dir with a lockfile copy, a spec and an output folder. */
interface Fixture {
  readonly dir: string;
  readonly lock: string;
  readonly spec: string;
  readonly outDir: string;
}

async function makeFixture(): Promise<Fixture> {
  const dir = await Deno.makeTempDir({ prefix: "url_stage_test_" });
  const lock = join(dir, "deno.lock");
  await Deno.copyFile(join(ROOT, "deno.lock"), lock);
  return { dir, lock, spec: join(dir, "spec.yaml"), outDir: join(dir, "runs") };
}

/**
 * Writes a spec (load → mono_mix → the given `use:` values) and returns the
 * 1-based line and column of each extra `use:` value.
 */
async function writeSpec(
  fx: Fixture,
  uses: readonly string[],
): Promise<{ line: number; column: number }[]> {
  const lines = [
    "name: url_stage",
    "runtime:",
    "  backend: cpu",
    "  seed: 0",
    `  outputDir: ${JSON.stringify(fx.outDir)}`,
    "data:",
    "  layout: synthetic",
    "  classes: [low, high]",
    "  sampleRateHz: 8000",
    "  durationSeconds: 0.1",
    "  channels: 2",
    "  perClass: { train: 1, validation: 1, test: 2 }",
    "stages:",
    "  - use: load",
    "  - use: mono_mix",
  ];
  const at = uses.map((use) => {
    const text = `  - use: ${use}`;
    lines.push(text);
    return { line: lines.length, column: text.indexOf(use) + 1 };
  });
  await Deno.writeTextFile(fx.spec, lines.join("\n") + "\n");
  return at;
}

interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `cli.ts run <spec>` in a subprocess with the fixture's lockfile. */
async function runCli(
  fx: Fixture,
  permissions: readonly string[],
): Promise<CliResult> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--config",
      CONFIG,
      `--lock=${fx.lock}`,
      "--allow-read",
      "--allow-write",
      "--allow-env",
      ...permissions,
      CLI,
      "run",
      fx.spec,
      "--lock",
      fx.lock,
    ],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return {
    code: out.code,
    stdout: text.decode(out.stdout),
    stderr: text.decode(out.stderr),
  };
}

function allow(host: string): string[] {
  return [`--allow-import=${host}`, `--allow-net=${host}`];
}

/** Run folders under the output folder (none when it does not exist). */
async function runFolders(outDir: string): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(outDir)) {
      if (e.isDirectory) names.push(join(outDir, e.name));
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return names.sort();
}

async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest(
    "SHA-256",
    new TextEncoder().encode(text),
  );
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0"))
    .join("");
}

async function readJson(path: string): Promise<Record<string, unknown>> {
  return JSON.parse(await Deno.readTextFile(path));
}

/** The spec path as the CLI prints it (relative to its working directory when inside it). */
function shownPath(path: string): string {
  const rel = relative(ROOT, path);
  return rel.startsWith("..") || isAbsolute(rel) ? path : rel;
}

function explain(result: CliResult): string {
  return `exit ${result.code}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`;
}

type StageRecord = {
  name: string;
  origin: string;
  specifier?: string;
  integrity?: string;
};

Deno.test("url stage: a loopback stage loads, runs, and its integrity is recorded", async () => {
  const server = startServer();
  const fx = await makeFixture();
  try {
    const source = peakStageSource();
    const url = server.serve("peak.ts", source);
    await writeSpec(fx, [url]);
    const result = await runCli(fx, allow(server.host));
    assert.equal(result.code, 0, explain(result));

    const [runDir, ...others] = await runFolders(fx.outDir);
    assert.ok(runDir, "a run folder was created");
    assert.deepEqual(others, []);
    const hex = await sha256Hex(source);
    const integrity = `sha256-${hex}`;

    const plan = await readJson(join(runDir, "plan.json"));
    const planned = (plan.stages as StageRecord[]).find((s) =>
      s.name === "peak"
    );
    assert.ok(planned, "plan.json lists the URL stage");
    assert.equal(planned.origin, "url");
    assert.equal(planned.specifier, url);
    assert.equal(planned.integrity, integrity);

    const manifest = await readJson(join(runDir, "manifest.json"));
    assert.equal(manifest.status, "ok");
    const recorded = (manifest.stages as StageRecord[]).find((s) =>
      s.name === "peak"
    );
    assert.equal(recorded?.integrity, integrity);

    const lock = await readJson(fx.lock);
    assert.equal((lock.remote as Record<string, string>)[url], hex);

    const { peak } = await readJson(join(runDir, "peak.json"));
    assert.equal(typeof peak, "number");
    assert.ok(Number.isFinite(peak) && (peak as number) > 0, `peak ${peak}`);
  } finally {
    await server.close();
    await Deno.remove(fx.dir, { recursive: true });
  }
});

Deno.test("url stage: a served file that changed after it was locked is refused", async () => {
  const server = startServer();
  const fx = await makeFixture();
  try {
    const url = server.serve("peak.ts", peakStageSource());
    const [at] = await writeSpec(fx, [url]);
    const first = await runCli(fx, allow(server.host));
    assert.equal(first.code, 0, explain(first));
    const before = await runFolders(fx.outDir);
    assert.equal(before.length, 1);

    server.replace(url, peakStageSource({ scale: 2 }));
    const second = await runCli(fx, allow(server.host));
    assert.equal(second.code, 2, explain(second));
    assert.match(second.stderr, /integrity_mismatch/);
    assert.ok(
      second.stderr.includes(`${shownPath(fx.spec)}:${at.line}:${at.column}`),
      explain(second),
    );
    assert.ok(second.stderr.includes(url), explain(second));
    assert.deepEqual(await runFolders(fx.outDir), before, "no new run folder");
  } finally {
    await server.close();
    await Deno.remove(fx.dir, { recursive: true });
  }
});

Deno.test("url stage: without import and net permission for the host it is denied with a hint", async () => {
  const server = startServer();
  const fx = await makeFixture();
  try {
    const url = server.serve("peak.ts", peakStageSource());
    await writeSpec(fx, [url]);
    const hint = `--allow-import=${server.host}`;

    const none = await runCli(fx, []);
    assert.equal(none.code, 2, explain(none));
    assert.match(none.stderr, /import_denied/);
    assert.ok(none.stderr.includes(hint), explain(none));

    // Net alone lets the resolver fetch and hash it, but not import it.
    const netOnly = await runCli(fx, [`--allow-net=${server.host}`]);
    assert.equal(netOnly.code, 2, explain(netOnly));
    assert.match(netOnly.stderr, /import_denied/);
    assert.ok(netOnly.stderr.includes(hint), explain(netOnly));
    assert.deepEqual(await runFolders(fx.outDir), []);
  } finally {
    await server.close();
    await Deno.remove(fx.dir, { recursive: true });
  }
});

Deno.test("url stage: a module that breaks the stage contract names the missing export", async () => {
  const server = startServer();
  const fx = await makeFixture();
  try {
    const noRun = server.serve(
      "no_run.ts",
      peakStageSource().replace(/async run\(/, "async notRun("),
    );
    const noStage = server.serve(
      "no_stage.ts",
      peakStageSource().replace("export const stage", "export const notStage"),
    );
    await writeSpec(fx, [noRun, noStage]);
    const result = await runCli(fx, allow(server.host));
    assert.equal(result.code, 2, explain(result));
    const lines = result.stderr.split("\n");
    const lineOf = (url: string) =>
      lines.find((l) => l.includes("bad_stage_module") && l.includes(url)) ??
        "";
    assert.match(lineOf(noRun), /lacks "run"/, explain(result));
    assert.match(lineOf(noStage), /does not export `stage`/, explain(result));
    assert.deepEqual(await runFolders(fx.outDir), []);
  } finally {
    await server.close();
    await Deno.remove(fx.dir, { recursive: true });
  }
});

Deno.test("url stage: a relative-path stage next to the spec loads and runs", async () => {
  const fx = await makeFixture();
  try {
    await Deno.writeTextFile(
      join(fx.dir, "local_stage.ts"),
      peakStageSource({ imports: true }),
    );
    await writeSpec(fx, ["./local_stage.ts"]);
    const result = await runCli(fx, []);
    assert.equal(result.code, 0, explain(result));
    const [runDir] = await runFolders(fx.outDir);
    const plan = await readJson(join(runDir, "plan.json"));
    const planned = (plan.stages as StageRecord[]).find((s) =>
      s.name === "local_stage"
    );
    assert.ok(planned, "plan.json lists the file stage");
    assert.equal(planned.origin, "file");
    assert.equal(
      planned.specifier,
      pathToFileURL(join(fx.dir, "local_stage.ts")).href,
    );
    assert.equal(planned.integrity, undefined);
    const { peak } = await readJson(join(runDir, "peak.json"));
    assert.ok(Number.isFinite(peak) && (peak as number) > 0, `peak ${peak}`);
  } finally {
    await Deno.remove(fx.dir, { recursive: true });
  }
});
