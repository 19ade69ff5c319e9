/**
 * `deno task predict --model <run or package folder> [--which best|last]
 * [--top 3] [--json] [--resample] [--backend auto|cpu|webgpu] [--precision fp32|mixed] a.wav ...`:
 * the command line of `lib/predict.ts` — the top-k labels with their
 * probabilities per file, as text or JSON (`--json`). `--precision mixed`
 * runs the forwards on the fused WebGPU eval graph with f16 matmul operands
 * (webgpu backend with `shader-f16`; refused otherwise).
 *
 * Exit codes: 0 every file predicted; 1 the model or a file could not be
 * read or predicted (the other files are still predicted); 2 bad command line.
 *
 * @module
 */
// deno-lint-ignore-file no-console -- a command-line tool: printing is its job
import { parseCommandLine, usageError } from "../lib/cli.ts";
import { selectBackend } from "../pipeline/backend.ts";
import type { BackendChoice } from "../pipeline/backend.ts";
import type { LoadedModel } from "../lib/inference.ts";
import {
  type FileResult,
  formatResult,
  loadModel,
  predictFile,
} from "../lib/predict.ts";

const USAGE =
  "usage: deno task predict --model <run or package folder> [--which best|last] [--top 3] [--json] [--resample] [--backend auto|cpu|webgpu] [--precision fp32|mixed] a.wav ...";

/**
 * The command line.
 *
 * @param args Command-line arguments.
 * @returns The exit code: 0 ok, 1 the model or some file failed, 2 bad command line.
 */
export async function main(args: string[]): Promise<number> {
  const parsed = parseCommandLine(args, {
    model: { type: "string" },
    top: { type: "string", default: "3" },
    json: { type: "boolean", default: false },
    resample: { type: "boolean", default: false },
    backend: { type: "string", default: "auto" },
    which: { type: "string", default: "best" },
    precision: { type: "string", default: "fp32" },
  }, USAGE);
  if (typeof parsed === "number") return parsed;
  const v = parsed.values;
  const bad = (why: string) => usageError(why, USAGE);
  if (!v.model) return bad("--model is required");
  const top = Number(v.top);
  if (!Number.isInteger(top) || top < 1) {
    return bad(`--top must be a whole number >= 1, not "${v.top}"`);
  }
  if (!["auto", "cpu", "webgpu"].includes(v.backend)) {
    return bad(`--backend must be auto, cpu or webgpu, not "${v.backend}"`);
  }
  if (v.which !== "best" && v.which !== "last") {
    return bad(`--which must be best or last, not "${v.which}"`);
  }
  if (v.precision !== "fp32" && v.precision !== "mixed") {
    return bad(`--precision must be fp32 or mixed, not "${v.precision}"`);
  }
  if (parsed.positionals.length === 0) return bad("no WAV files given");

  let model: LoadedModel;
  try {
    const { tf } = await selectBackend(v.backend as BackendChoice);
    model = await loadModel(tf, v.model, v.which, {
      precision: v.precision,
    });
  } catch (error) {
    console.error((error as Error).message);
    return 1;
  }
  const results: FileResult[] = [];
  try {
    for (const file of parsed.positionals) {
      const r = await predictFile(model, file, {
        top: Math.min(top, model.labels.length),
        resample: v.resample,
      });
      results.push(r);
      if (!v.json) {
        if (r.ok) console.log(formatResult(r));
        else console.error(formatResult(r));
      } else if (!r.ok) console.error(r.error);
    }
  } finally {
    model.dispose();
  }
  if (v.json) {
    console.log(JSON.stringify(
      {
        model: {
          name: model.config.name,
          labels: model.labels,
          sampleRateHz: model.sampleRateHz,
          lengthSamples: model.lengthSamples,
          precision: model.precision,
        },
        results,
      },
      null,
      2,
    ));
  }
  return results.every((r) => r.ok) ? 0 : 1;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
