/**
 * `deno task bench grid [--runs 4] [--parallel 2] [--epochs 2]`: wall time of
 * a grid of tiny independent runs (`presets/tiny_grid.yaml`, one per
 * `data.fold`) with the local executor one at a time versus `--parallel N`
 * at once (each run its own Deno process). Target: parallel 2 takes
 * ≤ 0.6× the sequential time on 2 cores.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { planGrid, writeGridFolder } from "../grid/expand.ts";
import { runLocal } from "../grid/local.ts";

/** Runs the benchmark; returns its JSON result. */
export async function benchGrid(args: string[]): Promise<unknown> {
  const { values } = parseArgs({
    args,
    options: {
      runs: { type: "string", default: "4" },
      parallel: { type: "string", default: "2" },
      epochs: { type: "string", default: "2" },
    },
  });
  const runs = Number(values.runs);
  const parallel = Number(values.parallel);
  const work = await Deno.makeTempDir({ prefix: "bench_grid_" });
  const folds = Array.from({ length: runs }, (_, i) => i).join(",");
  const timeGrid = async (name: string, at: number) => {
    const dir = join(work, name);
    await writeGridFolder(
      dir,
      await planGrid({
        specs: ["presets/tiny_grid.yaml"],
        vary: [`data.fold=${folds}`],
        set: [`train.epochs=${values.epochs}`],
      }, dir),
    );
    const result = await runLocal(dir, { parallel: at });
    if (result.failed.length) {
      throw new Error(
        `Cannot finish the benchmark: runs ${result.failed} failed (logs in ${dir}/logs)`,
      );
    }
    return result.seconds;
  };
  try {
    const sequential = await timeGrid("sequential", 1);
    const parallelSeconds = await timeGrid("parallel", parallel);
    return {
      bench: "grid",
      runs,
      epochs: Number(values.epochs),
      parallel,
      cores: navigator.hardwareConcurrency,
      sequentialSeconds: Number(sequential.toFixed(2)),
      parallelSeconds: Number(parallelSeconds.toFixed(2)),
      ratio: Number((parallelSeconds / sequential).toFixed(3)),
      target: "ratio <= 0.6 with --parallel 2 on 2 cores",
    };
  } finally {
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}
