/**
 * Tile and split-K sweep of the fused engine's matmul at the shapes the
 * paper presets use (`deno task bench matmul [--shapes cs|sc1|all]`): for
 * each shape, the GPU time per dispatch (timestamp queries; mean of 20
 * dispatches, best of three rounds) of the configuration the cost model in
 * `gpu/kernels/matmul.ts` picks and of every tile × split, with TFLOP/s —
 * the data that cost model is tuned from. Needs `timestamp-query`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  createRuntime,
  type Dispatch,
  requestEngineDevice,
} from "../gpu/runtime.ts";
import { matmul, type MatmulOptions } from "../gpu/kernels/matmul.ts";

/** Shapes by preset: transformer and CNN matmuls of a training step and an eval forward. */
function shapes(name: string): Record<string, MatmulOptions> {
  const heads = (T: number, rows: number): Record<string, MatmulOptions> => ({
    [`scores T${T} b${rows}`]: {
      m: T,
      n: T,
      k: 64,
      transB: true,
      lda: 768,
      ldb: 768,
      batch: rows * 12,
      batchInner: 12,
      strideA: [T * 768, 64],
      strideB: [T * 768, 64],
      strideC: [12 * T * T, T * T],
    },
    [`pv T${T} b${rows}`]: {
      m: T,
      n: 64,
      k: T,
      ldb: 768,
      ldc: 768,
      batch: rows * 12,
      batchInner: 12,
      strideA: [12 * T * T, T * T],
      strideB: [T * 768, 64],
      strideC: [T * 768, 64],
    },
  });
  const linear = (rows: number): Record<string, MatmulOptions> => ({
    [`qkvo ${rows}`]: { m: rows, n: 768, k: 768, bias: true },
    [`fc1 ${rows}`]: { m: rows, n: 3072, k: 768, bias: true, gelu: true },
    [`fc2 ${rows}`]: { m: rows, n: 768, k: 3072, bias: true, residual: true },
  });
  const train = (rows: number): Record<string, MatmulOptions> => ({
    [`dX qkvo ${rows}`]: { m: rows, n: 768, k: 768, transB: true },
    [`dW qkvo ${rows}`]: {
      m: 768,
      n: 768,
      k: rows,
      transA: true,
      accumulate: true,
    },
    [`dW fc1 ${rows}`]: {
      m: 768,
      n: 3072,
      k: rows,
      transA: true,
      accumulate: true,
    },
  });
  const cs = {
    ...linear(32 * 94),
    ...heads(94, 32),
    ...linear(128 * 94),
    ...train(128 * 94),
    ...heads(94, 128),
  };
  const sc1 = { ...linear(32 * 15), ...linear(128 * 15), ...train(128 * 15) };
  if (name === "tiny") {
    return { "tiny": { m: 40, n: 24, k: 160, bias: true }, ...heads(5, 2) };
  }
  if (name === "cs") return cs;
  if (name === "sc1") return sc1;
  return { ...cs, ...sc1 };
}

/**
 * Runs the sweep.
 *
 * @param args `--shapes cs|sc1|all|tiny` (default cs; tiny checks the tool
 *   itself on a slow adapter), `--repeat N` (20).
 */
export async function benchMatmul(args: string[]): Promise<unknown> {
  const { values } = parseArgs({
    args,
    options: {
      shapes: { type: "string", default: "cs" },
      repeat: { type: "string", default: "20" },
    },
  });
  const device = await requestEngineDevice();
  if (!device.features.has("timestamp-query")) {
    throw new Error("bench matmul needs a GPU with timestamp-query");
  }
  const repeat = Number(values.repeat);
  const out: Record<string, unknown> = {};
  for (const [name, o] of Object.entries(shapes(values.shapes))) {
    const flops = 2 * o.m * o.n * o.k * (o.batch ?? 1);
    const time = async (opts: MatmulOptions): Promise<number> => {
      const plan = matmul(opts);
      const rt = createRuntime(device);
      try {
        const sizes: Record<string, number> = { ...plan.scratch };
        const span = (
          rows: number,
          ld: number,
          s?: readonly [number, number],
        ) =>
          (s ? ((o.batch ?? 1) / (o.batchInner ?? 1)) * s[0] : 0) + rows * ld +
          4096;
        sizes.a = span(
          o.transA ? o.k : o.m,
          o.lda ?? (o.transA ? o.m : o.k),
          o.strideA,
        ) *
          ((o.batch ?? 1) > 1 && !o.strideA ? o.batch! : 1);
        sizes.b = span(
          o.transB ? o.n : o.k,
          o.ldb ?? (o.transB ? o.k : o.n),
          o.strideB,
        ) *
          ((o.batch ?? 1) > 1 && !o.strideB ? o.batch! : 1);
        sizes.c = span(o.m, o.ldc ?? o.n, o.strideC) *
          ((o.batch ?? 1) > 1 && !o.strideC ? o.batch! : 1);
        sizes.r = sizes.c;
        sizes.pre = sizes.c;
        sizes.bias = o.n;
        const regions = new Map(
          Object.entries(sizes).map(([k, v]) => [k, rt.alloc(k, v)]),
        );
        const list: Dispatch[] = [];
        for (let i = 0; i < repeat; i++) {
          for (const step of plan.steps) {
            rt.record(list, step.spec, step.bind.map((b) => regions.get(b)!));
          }
        }
        // Best of three: the first runs after an idle spell find the GPU
        // clocked down.
        let best = Infinity;
        for (let round = 0; round < 3; round++) {
          const entries = await rt.profile([list]);
          best = Math.min(best, entries.reduce((a, e) => a + e.ms, 0) / repeat);
        }
        return best;
      } finally {
        rt.destroy();
      }
    };
    const chosen = matmul(o).steps[0].spec.label;
    const defaultMs = await time(o);
    const sweep: { tile: string; split: number; ms: number }[] = [];
    for (
      const tile of [[128, 128], [128, 64], [64, 128], [64, 64], [
        32,
        32,
      ]] as const
    ) {
      for (const split of [1, 2, 3, 4, 6, 8]) {
        if (split > 1 && o.k / split < 64) continue;
        try {
          sweep.push({
            tile: `${tile[0]}x${tile[1]}`,
            split,
            ms: await time({ ...o, tile, splitK: split }),
          });
        } catch {
          // configuration outside the grid limits
        }
      }
    }
    sweep.sort((a, b) => a.ms - b.ms);
    out[name] = {
      chosen,
      chosenMs: Number(defaultMs.toFixed(4)),
      chosenTflops: Number((flops / defaultMs / 1e9).toFixed(1)),
      best: sweep.slice(0, 3).map((s) => ({
        ...s,
        ms: Number(s.ms.toFixed(4)),
        tflops: Number((flops / s.ms / 1e9).toFixed(1)),
      })),
    };
  }
  return { bench: "matmul", results: out };
}
