/**
 * The `web/` page end to end: train the demo preset briefly (one epoch, one
 * TTDA epoch, cpu), export the package, classify a test-split WAV of
 * `data/demo_digits` with the predict CLI (`--json`, cpu), then serve the
 * page (`web/serve.ts`, bundled with `deno bundle`) with that package at
 * `/model/`, open it in headless Chromium, feed the same WAV bytes through
 * `window.amaut.classify`, and check the same top label and every
 * probability within 1e-4 of the CLI's, the cpu backend, a drawn
 * spectrogram and sorted bars, and no page error, console error or failed
 * request.
 *
 * Needs Chromium at `/usr/bin/chromium` (Debian: `apt-get install -y
 * chromium`; `CHROMIUM_PATH` overrides the path). Without it the test fails.
 * As in `tests/report_browser_test.ts`, Playwright runs in a child
 * `deno run -A` of this file (playwright-core needs `--allow-all` at import)
 * and prints what it saw as JSON.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  collectErrors,
  launchChromium,
  requireChromium,
  runBrowserChild,
} from "./_chromium.ts";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { compileSpec, runPipeline } from "../mod.ts";
import { exportRun, writePackage } from "../lib/export.ts";
import { startServer } from "../web/serve.ts";

const DATA = "data/demo_digits";
const TOLERANCE = 1e-4;

/** What the child process reports about the page. */
interface BrowserResult {
  readonly ready: {
    labels: string[];
    backend: string;
    sampleRateHz: number;
  };
  readonly result: {
    labels: string[];
    probabilities: number[];
    top: string;
    backend: string;
  };
  readonly bars: { label: string; probability: number }[];
  readonly canvas: { frames: number; mels: number; painted: number };
  readonly status: string;
  /** The page after a broken file followed the good one. */
  readonly afterError: {
    rejected: boolean;
    bars: number;
    painted: number;
    frames: string | null;
    clip: string;
    statusClass: string;
  };
  readonly errors: string[];
  readonly seconds: number;
}

/** Child side: opens `pageUrl`, classifies the WAV at `wavPath`, prints a {@linkcode BrowserResult}. */
async function browse(pageUrl: string, wavPath: string, profile: string) {
  const t0 = performance.now();
  const context = await launchChromium(profile);
  try {
    const page = context.pages()[0] ?? await context.newPage();
    const errors = collectErrors(page);
    page.on("requestfailed", (r) => errors.push(`requestfailed: ${r.url()}`));
    page.on("response", (r) => {
      if (!r.ok()) errors.push(`status ${r.status()}: ${r.url()}`);
    });
    await page.goto(pageUrl, { waitUntil: "load" });
    const bytes = [...await Deno.readFile(wavPath)];
    const name = wavPath.split("/").pop()!;
    const seen = await page.evaluate(async ([bytes, name]) => {
      // deno-lint-ignore no-explicit-any -- the page's globals, untyped here
      const page = globalThis as any;
      const amaut = page.amaut;
      const ready = await amaut.ready;
      const result = await amaut.classify(
        new Uint8Array(bytes as number[]),
        name,
      );
      const doc = page.document;
      const canvas = doc.getElementById("spectrogram");
      const paintedShare = () => {
        const pixels = canvas.getContext("2d").getImageData(
          0,
          0,
          canvas.width,
          canvas.height,
        ).data;
        let n = 0;
        for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) n++;
        return n / (canvas.width * canvas.height);
      };
      const shown = {
        bars: [...doc.querySelectorAll("#bars li")].map((
          li: { dataset: { label: string; probability: string } },
        ) => ({
          label: li.dataset.label,
          probability: Number(li.dataset.probability),
        })),
        canvas: {
          frames: Number(canvas.dataset.frames),
          mels: Number(canvas.dataset.mels),
          painted: paintedShare(),
        },
        status: doc.getElementById("status").textContent,
      };
      // A broken file next: its error must not sit beside the last result.
      let rejected = false;
      await amaut.classify(new Uint8Array([1, 2, 3, 4]), "broken.wav")
        .catch(() => rejected = true);
      const afterError = {
        rejected,
        bars: doc.querySelectorAll("#bars li").length,
        painted: paintedShare(),
        frames: canvas.dataset.frames ?? null,
        clip: doc.getElementById("clip").textContent,
        statusClass: doc.getElementById("status").className,
      };
      return { ready, result, ...shown, afterError };
    }, [bytes, name] as const);
    const out: BrowserResult = {
      ...seen,
      errors,
      seconds: (performance.now() - t0) / 1000,
    };
    await Deno.stdout.write(
      new TextEncoder().encode(JSON.stringify(out) + "\n"),
    );
  } finally {
    await context.close();
  }
}

if (import.meta.main) {
  const [pageUrl, wavPath, profile] = Deno.args;
  await browse(pageUrl, wavPath, profile);
}

/** The first test-split clip of the demo data set. */
async function fixtureWav(): Promise<string> {
  const rows = (await Deno.readTextFile(join(DATA, "manifest.csv"))).trim()
    .split("\n").slice(1).map((l) => l.split(","));
  const row = rows.find((r) => r[2] === "test");
  assert.ok(row, `${DATA}/manifest.csv has no test clip`);
  return join(DATA, row[0]);
}

Deno.test("the web page classifies a WAV like the predict CLI (headless Chromium, cpu)", async () => {
  await requireChromium("the web end-to-end test");
  const t0 = performance.now();
  const dir = await Deno.makeTempDir({ prefix: "web_e2e_test_" });

  // 1. Train the demo preset briefly and export it.
  const compiled = await compileSpec("presets/demo.yaml", {
    overrides: [
      `runtime.outputDir=${join(dir, "runs")}`,
      "runtime.backend=cpu",
      "train.epochs=1",
      "train.lrCardinality=1",
      "test_time_adaptation.epochs=1",
    ],
  });
  const { runDir } = await runPipeline(compiled);
  await tf.setBackend("cpu");
  const pkgDir = join(dir, "package");
  await writePackage(pkgDir, await exportRun(tf, runDir));

  // 2. The CLI's prediction.
  const wav = await fixtureWav();
  const cli = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-env",
      "_tools/predict.ts",
      "--model",
      pkgDir,
      "--backend",
      "cpu",
      "--json",
      wav,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const cliErr = new TextDecoder().decode(cli.stderr);
  assert.equal(cli.code, 0, `the predict CLI failed:\n${cliErr}`);
  const expected = JSON.parse(new TextDecoder().decode(cli.stdout)) as {
    model: { labels: string[] };
    results: {
      ok: boolean;
      top: { label: string }[];
      probabilities: Record<string, number>;
    }[];
  };
  const [want] = expected.results;
  assert.ok(want.ok);

  // 3. The page, in headless Chromium.
  const server = await startServer({
    port: 0,
    modelDir: pkgDir,
    onListen: () => {},
  });
  let result: BrowserResult;
  try {
    result = await runBrowserChild<BrowserResult>(import.meta.url, [
      server.url,
      wav,
      join(dir, "chromium-profile"), // a fresh --user-data-dir
    ]);
  } finally {
    await server.shutdown();
  }

  assert.deepEqual(result.errors, [], "no page or console errors");
  assert.equal(result.ready.backend, "cpu", "no GPU here: the cpu backend");
  assert.equal(result.result.backend, "cpu");
  assert.deepEqual(result.ready.labels, expected.model.labels);
  assert.deepEqual(result.result.labels, expected.model.labels);
  assert.equal(result.result.top, want.top[0].label, "the same top label");
  result.result.labels.forEach((label, i) => {
    const got = result.result.probabilities[i];
    const exp = want.probabilities[label];
    assert.ok(
      Math.abs(got - exp) <= TOLERANCE,
      `P(${label}): browser ${got}, CLI ${exp} (more than ${TOLERANCE} apart)`,
    );
  });
  // The page shows what it computed: sorted bars and a painted spectrogram.
  assert.equal(result.bars.length, expected.model.labels.length);
  assert.equal(result.bars[0].label, want.top[0].label);
  for (let i = 1; i < result.bars.length; i++) {
    assert.ok(result.bars[i - 1].probability >= result.bars[i].probability);
  }
  assert.equal(result.canvas.mels, 32);
  assert.ok(result.canvas.frames > 10, `${result.canvas.frames} frames`);
  assert.ok(result.canvas.painted > 0.99, "the spectrogram fills the canvas");
  assert.match(result.status, new RegExp(`"${want.top[0].label}"`));
  // A broken file afterwards shows its error alone: no stale bars or spectrogram.
  assert.deepEqual(result.afterError, {
    rejected: true,
    bars: 0,
    painted: 0,
    frames: null,
    clip: "",
    statusClass: "error",
  });
  const seconds = (performance.now() - t0) / 1000;
  assert.ok(seconds < 120, `took ${seconds.toFixed(1)} s`);
  await Deno.remove(dir, { recursive: true });
});
