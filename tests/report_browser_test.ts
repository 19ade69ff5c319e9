/**
 * `report.html` renders in headless Chromium: after a tiny end-to-end run
 * with the `report` stage, the page opens from disk with no page errors, no
 * console errors and no request other than the file itself; its three SVG
 * charts have non-zero boxes; and a PNG screenshot, decoded here, is not one
 * colour.
 *
 * Needs Chromium at `/usr/bin/chromium` (Debian: `apt-get install -y
 * chromium`; `CHROMIUM_PATH` overrides the path). Without it the test fails.
 *
 * Playwright runs in a child `deno run -A` of this file: at import it probes
 * `/proc/sys/fs/binfmt_misc/WSLInterop`, which Deno grants only with
 * `--allow-all`. The child drives the browser and prints what it saw as JSON;
 * this process checks it and decodes the screenshot.
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
import { pathToFileURL } from "node:url";
import * as tf from "@tensorflow/tfjs";
import { compile, runPipeline } from "../pipeline/mod.ts";
import type { Stage } from "../pipeline/mod.ts";
import { BUILTIN_STAGES } from "../stages/mod.ts";
import { stage as report } from "../stages/report.ts";

const SPEC = `name: tiny-browser
runtime: { backend: cpu, seed: 11 }
data: { layout: synthetic, sampleRateHz: 8000, durationSeconds: 0.5, perClass: { train: 6, validation: 3, test: 3 } }
stages:
  - use: load
  - use: mono_mix
  - use: fixed_length
    with: { seconds: 0.5 }
  - use: mel
    with: { sampleRateHz: 8000, nFft: 256, winLength: 200, hopLength: 80, nMels: 16 }
  - use: tokenize
  - use: train
    with:
      epochs: 3
      batchSize: 8
      lr: 0.05
      lrCardinality: 3
      model: { width: 4, groups: [1, 1], embedDim: 16, depth: 1, heads: 2, mlpDim: 32, extend: 16, conv: 8, dropout: 0.1 }
  - use: report
`;

/** Decoded 8-bit RGB(A) pixels of a PNG. */
interface Pixels {
  readonly width: number;
  readonly height: number;
  readonly channels: number;
  readonly data: Uint8Array;
}

/** Decodes an 8-bit, non-interlaced RGB or RGBA PNG (what Chromium writes). */
async function decodePng(png: Uint8Array): Promise<Pixels> {
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
  assert.deepEqual(
    [...png.subarray(0, 8)],
    [137, 80, 78, 71, 13, 10, 26, 10],
    "PNG signature",
  );
  let width = 0;
  let height = 0;
  let channels = 0;
  const idat: Uint8Array[] = [];
  for (let p = 8; p < png.length;) {
    const length = view.getUint32(p);
    const type = new TextDecoder().decode(png.subarray(p + 4, p + 8));
    const body = png.subarray(p + 8, p + 8 + length);
    if (type === "IHDR") {
      width = view.getUint32(p + 8);
      height = view.getUint32(p + 12);
      const [depth, colour, , , interlace] = body.subarray(8, 13);
      assert.equal(depth, 8, "8-bit PNG");
      assert.equal(interlace, 0, "non-interlaced PNG");
      channels = colour === 6 ? 4 : colour === 2 ? 3 : 0;
      assert.ok(channels, `PNG colour type ${colour} is RGB or RGBA`);
    } else if (type === "IDAT") idat.push(body);
    p += 12 + length;
  }
  const inflated = new Uint8Array(
    await new Response(
      new Blob(idat as BlobPart[]).stream().pipeThrough(
        new DecompressionStream("deflate"),
      ),
    ).arrayBuffer(),
  );
  const stride = width * channels;
  const data = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = inflated[y * (stride + 1)];
    const src = inflated.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const row = data.subarray(y * stride, (y + 1) * stride);
    const prev = y > 0 ? data.subarray((y - 1) * stride, y * stride) : null;
    for (let x = 0; x < stride; x++) {
      const a = x >= channels ? row[x - channels] : 0;
      const b = prev ? prev[x] : 0;
      const c = prev && x >= channels ? prev[x - channels] : 0;
      let pred = 0;
      if (filter === 1) pred = a;
      else if (filter === 2) pred = b;
      else if (filter === 3) pred = (a + b) >> 1;
      else if (filter === 4) {
        const pa = Math.abs(b - c);
        const pb = Math.abs(a - c);
        const pc = Math.abs(a + b - 2 * c);
        pred = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      }
      row[x] = (src[x] + pred) & 255;
    }
  }
  return { width, height, channels, data };
}

/** What the child process reports about the page. */
interface BrowserResult {
  readonly title: string;
  readonly errors: string[];
  readonly requests: string[];
  readonly boxes: {
    id: string;
    width: number;
    height: number;
    marks: number;
  }[];
  readonly seconds: number;
}

/** Child side: opens `pageUrl` in headless Chromium, saves a screenshot, prints a {@linkcode BrowserResult}. */
async function browse(pageUrl: string, pngPath: string, profile: string) {
  const t0 = performance.now();
  const context = await launchChromium(profile);
  try {
    const page = context.pages()[0] ?? await context.newPage();
    const errors = collectErrors(page);
    const requests: string[] = [];
    page.on("request", (r) => requests.push(r.url()));
    page.on("requestfailed", (r) => errors.push(`requestfailed: ${r.url()}`));
    const response = await page.goto(pageUrl, { waitUntil: "load" });
    if (response && !response.ok()) {
      errors.push(`status ${response.status()}`);
    }
    const boxes = await page.$$eval(".chart > svg", (svgs) =>
      svgs.map((s) => {
        const r = s.getBoundingClientRect();
        return {
          id: s.parentElement?.id ?? "",
          width: r.width,
          height: r.height,
          marks: s.querySelectorAll("path, rect, text").length,
        };
      }));
    await page.screenshot({ path: pngPath, fullPage: true, type: "png" });
    const result: BrowserResult = {
      title: await page.title(),
      errors,
      requests,
      boxes,
      seconds: (performance.now() - t0) / 1000,
    };
    await Deno.stdout.write(
      new TextEncoder().encode(JSON.stringify(result) + "\n"),
    );
  } finally {
    await context.close();
  }
}

if (import.meta.main) {
  const [pageUrl, pngPath, profile] = Deno.args;
  await browse(pageUrl, pngPath, profile);
}

Deno.test("report.html renders in headless Chromium without errors and is not blank", async () => {
  await requireChromium("the browser test");
  await tf.setBackend("cpu");
  const dir = await Deno.makeTempDir({ prefix: "report_browser_test_" });
  await Deno.writeTextFile(join(dir, "spec.yaml"), SPEC);
  const compiled = await compile(join(dir, "spec.yaml"), {
    builtins: { ...BUILTIN_STAGES, report: report as Stage },
    overrides: [`runtime.outputDir=${join(dir, "runs")}`],
  });
  const { runDir } = await runPipeline(compiled, {});
  const pageUrl = pathToFileURL(join(runDir, "report.html")).href;
  const pngPath = join(dir, "report.png");

  const result = await runBrowserChild<BrowserResult>(import.meta.url, [
    pageUrl,
    pngPath,
    join(dir, "chromium-profile"), // a fresh --user-data-dir
  ]);

  assert.equal(result.title, "Report: tiny-browser");
  assert.deepEqual(result.errors, [], "no page or console errors");
  assert.deepEqual(result.requests, [pageUrl], "no request but the page");
  assert.deepEqual(result.boxes.map((b) => b.id), [
    "confusion-test-trained-best",
    "confusion-test-trained-last",
    "curve-loss",
    "curve-accuracy",
  ]);
  for (const b of result.boxes) {
    assert.ok(
      b.width > 50 && b.height > 50,
      `${b.id} box ${b.width}x${b.height}`,
    );
    assert.ok(b.marks > 10, `${b.id} has ${b.marks} marks`);
  }

  const pixels = await decodePng(await Deno.readFile(pngPath));
  assert.ok(pixels.width >= 1000 && pixels.height >= 900);
  const colours = new Map<number, number>();
  const { data, channels } = pixels;
  for (let i = 0; i < data.length; i += channels) {
    const key = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2];
    colours.set(key, (colours.get(key) ?? 0) + 1);
  }
  const total = data.length / channels;
  const background = Math.max(...colours.values());
  assert.ok(colours.size > 50, `only ${colours.size} colours: blank?`);
  assert.ok(
    total - background > total * 0.02,
    `only ${total - background} of ${total} pixels differ from the background`,
  );
  // The confusion heatmap paints blue cells.
  assert.ok(
    [...colours.keys()].some((k) => (k & 255) > ((k >> 16) & 255) + 40),
    "no blue pixels from the heatmap",
  );
});
