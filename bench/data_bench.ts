/**
 * Data-loading benchmark: writes a folder dataset of WAV files, then times
 * opening it (index + header scan) and reading every clip through the
 * scheduler's batches (batch 32, one batch prefetched), with decoding on the
 * main thread and in worker threads.
 *
 * @module
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import * as z from "zod";
import { compile } from "../pipeline/compile.ts";
import { defineStage } from "../pipeline/define_stage.ts";
import { runPipeline } from "../pipeline/run.ts";
import { BUILTIN_STAGES } from "../stages/mod.ts";

/** A step stage that reads every clip of the train split and times it. */
const consume = defineStage({
  id: "consume",
  version: "1.0.0",
  api: 1,
  kind: "step",
  summary: "Read every training clip",
  options: z.strictObject({
    batchSize: z.int().default(32).describe("Clips per batch"),
  }),
  takes: ["channels"],
  provides: ["readSeconds", "clipsRead"],
  async run(options, ctx) {
    const t0 = performance.now();
    let clips = 0;
    for await (
      const b of ctx.data.batches("train", {
        batchSize: options.batchSize,
        phase: "fit",
      })
    ) clips += b.size;
    return { readSeconds: (performance.now() - t0) / 1000, clipsRead: clips };
  },
});

function tone(length: number, rate: number, seed: number): Uint8Array {
  const header = 44;
  const buf = new ArrayBuffer(header + length * 2);
  const v = new DataView(buf);
  const w = (o: number, s: string) =>
    [...s].forEach((c, i) => v.setUint8(o + i, c.charCodeAt(0)));
  w(0, "RIFF");
  v.setUint32(4, buf.byteLength - 8, true);
  w(8, "WAVE");
  w(12, "fmt ");
  v.setUint32(16, 16, true);
  v.setUint16(20, 1, true);
  v.setUint16(22, 1, true);
  v.setUint32(24, rate, true);
  v.setUint32(28, rate * 2, true);
  v.setUint16(32, 2, true);
  v.setUint16(34, 16, true);
  w(36, "data");
  v.setUint32(40, length * 2, true);
  const f = 200 + 37 * seed;
  for (let i = 0; i < length; i++) {
    v.setInt16(
      header + 2 * i,
      Math.round(12000 * Math.sin((2 * Math.PI * f * i) / rate)),
      true,
    );
  }
  return new Uint8Array(buf);
}

async function writeDataset(
  dir: string,
  clips: number,
  seconds: number,
  rate: number,
) {
  for (let i = 0; i < clips; i++) {
    const cls = `class${i % 4}`;
    await Deno.mkdir(join(dir, cls), { recursive: true });
    await Deno.writeFile(
      join(dir, cls, `${String(i).padStart(5, "0")}.wav`),
      tone(Math.round(seconds * rate), rate, i % 17),
    );
  }
}

/**
 * Runs the data benchmark.
 *
 * @param args `--clips1s N` (default 2000) and `--clips10s N` (default 200).
 */
export async function benchData(args: string[]): Promise<unknown> {
  const { values } = parseArgs({
    args,
    options: {
      clips1s: { type: "string", default: "2000" },
      clips10s: { type: "string", default: "200" },
    },
  });
  const root = await Deno.makeTempDir({ prefix: "amaut_bench_data_" });
  const cases = [
    {
      name: "1 s 16 kHz mono int16",
      clips: Number(values.clips1s),
      seconds: 1,
      rate: 16000,
      target: 1000,
    },
    {
      name: "10 s 44.1 kHz mono int16",
      clips: Number(values.clips10s),
      seconds: 10,
      rate: 44100,
      target: 60,
    },
  ];
  const results = [];
  try {
    for (const c of cases) {
      const dir = join(root, `${c.rate}_${c.seconds}`);
      await writeDataset(dir, c.clips, c.seconds, c.rate);
      for (const workers of [0, 2]) {
        const spec = join(root, "spec.yaml");
        await Deno.writeTextFile(
          spec,
          `name: bench
runtime: { backend: cpu, outputDir: ${JSON.stringify(join(root, "runs"))} }
data: { layout: folder, root: ${
            JSON.stringify(dir)
          }, split: { validation: 0.01, test: 0.01 } }
stages:
  - use: load
    with: { workers: ${workers} }
  - use: consume
`,
        );
        const compiled = await compile(spec, {
          builtins: { ...BUILTIN_STAGES, consume },
        });
        const t0 = performance.now();
        const result = await runPipeline(compiled, {});
        const total = (performance.now() - t0) / 1000;
        const read = result.values.readSeconds as number;
        const clips = result.values.clipsRead as number;
        results.push({
          case: c.name,
          workers,
          clips,
          openSeconds: Number((result.timings.load / 1000).toFixed(3)),
          readSeconds: Number(read.toFixed(3)),
          clipsPerSecond: Math.round(clips / read),
          clipsPerSecondIncludingOpen: Math.round(
            clips / (read + result.timings.load / 1000),
          ),
          targetClipsPerSecond: c.target,
          meetsTarget: clips / read >= c.target,
          totalSeconds: Number(total.toFixed(2)),
        });
      }
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
  return {
    bench: "data",
    machine: { cores: navigator.hardwareConcurrency, deno: Deno.version.deno },
    results,
  };
}
