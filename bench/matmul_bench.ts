/**
 * Tile × split-K × stages sweep of the fused engine's matmul at the shapes
 * the paper presets use (`deno task bench matmul [--shapes cs|sc1|all|tiny]
 * [--only NAME[,NAME]] [--stages 1|2|both] [--repeat N] [--warmup S]`): for
 * each shape, the GPU time per dispatch (timestamp queries; mean of `N` = 20
 * dispatches, best of three rounds) of the configuration the cost model in
 * `gpu/kernels/matmul.ts` picks (with its default stages, and with each
 * swept stages count) and of every tile × split × stages, with TFLOP/s —
 * the data that cost model is tuned from. `stages` 2 is the double-buffered
 * K loop. Before timing, the first shape's default kernel runs in
 * back-to-back submits for `S` = 2 seconds, so the GPU's clocks have ramped
 * up. `--only` keeps the named shapes of the set (names as in the output,
 * e.g. `--only "qkv 3008,fc1 eval 3008"`). Needs `timestamp-query`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  createRuntime,
  type Dispatch,
  requestEngineDevice,
  type Runtime,
} from "../gpu/runtime.ts";
import {
  chosenStages,
  matmul,
  type MatmulOptions,
} from "../gpu/kernels/matmul.ts";

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
    // q, k and v projections as one matmul; fc1 of an eval forward
    "qkv 3008": { m: 3008, n: 2304, k: 768, bias: true },
    "fc1 eval 3008": {
      m: 3008,
      n: 3072,
      k: 768,
      bias: true,
      gelu: true,
      keepPre: false,
    },
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
 * Buffers for shape `o` and `repeat` recorded copies of the plan of `opts`
 * (`o` with tuning overrides) in one list.
 */
function prepare(
  device: GPUDevice,
  o: MatmulOptions,
  opts: MatmulOptions,
  repeat: number,
): { rt: Runtime; list: Dispatch[] } {
  const plan = matmul(opts);
  const rt = createRuntime(device);
  try {
    const batch = o.batch ?? 1;
    const sizes: Record<string, number> = { ...plan.scratch };
    const span = (
      rows: number,
      ld: number,
      s?: readonly [number, number],
    ) =>
      ((s ? (batch / (o.batchInner ?? 1)) * s[0] : 0) + rows * ld + 4096) *
      (batch > 1 && !s ? batch : 1);
    sizes.a = span(
      o.transA ? o.k : o.m,
      o.lda ?? (o.transA ? o.m : o.k),
      o.strideA,
    );
    sizes.b = span(
      o.transB ? o.n : o.k,
      o.ldb ?? (o.transB ? o.k : o.n),
      o.strideB,
    );
    sizes.c = span(o.m, o.ldc ?? o.n, o.strideC);
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
    return { rt, list };
  } catch (e) {
    rt.destroy();
    throw e;
  }
}

/** GPU ms per product of `opts` on shape `o`: mean of `repeat`, best of three rounds. */
async function time(
  device: GPUDevice,
  o: MatmulOptions,
  opts: MatmulOptions,
  repeat: number,
): Promise<number> {
  const { rt, list } = prepare(device, o, opts, repeat);
  try {
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
}

/**
 * Runs the default kernel of shape `o` in back-to-back submits (each
 * awaited) until `seconds` of wall time have passed, so the GPU's clocks
 * ramp up before anything is timed.
 */
async function warmUp(
  device: GPUDevice,
  o: MatmulOptions,
  repeat: number,
  seconds: number,
): Promise<{ seconds: number; submits: number }> {
  const { rt, list } = prepare(device, o, o, repeat);
  try {
    const t0 = performance.now();
    let submits = 0;
    while (performance.now() - t0 < seconds * 1000) {
      rt.run([list]);
      await device.queue.onSubmittedWorkDone();
      submits++;
    }
    return {
      seconds: Number(((performance.now() - t0) / 1000).toFixed(2)),
      submits,
    };
  } finally {
    rt.destroy();
  }
}

/** One timed configuration of the sweep. */
interface Row {
  tile: string;
  split: number;
  stages: 1 | 2;
  ms: number;
}

/**
 * Runs the sweep.
 *
 * @param args `--shapes cs|sc1|all|tiny` (default cs; tiny checks the tool
 *   itself on a slow adapter), `--only NAME[,NAME]` (only these shapes of
 *   the set), `--stages 1|2|both` (stages swept, default both),
 *   `--repeat N` (dispatches per timing, 20), `--warmup S` (seconds of
 *   warm-up before timing, 2).
 * @returns `{ bench, device, warmup, stages, results }`: per shape the
 *   model's choice (`chosen` label, `chosenMs`, `chosenTflops` with the
 *   default stages, `chosenByStages` for each swept stages count), the three
 *   fastest rows of the sweep (`best`) and the fastest row of each stages
 *   count (`bestByStages`); every row gives its tile, split, stages, ms and
 *   TFLOP/s.
 */
export async function benchMatmul(args: string[]): Promise<unknown> {
  const { values } = parseArgs({
    args,
    options: {
      shapes: { type: "string", default: "cs" },
      only: { type: "string" },
      stages: { type: "string", default: "both" },
      repeat: { type: "string", default: "20" },
      warmup: { type: "string", default: "2" },
    },
  });
  const stagesList: (1 | 2)[] = values.stages === "1"
    ? [1]
    : values.stages === "2"
    ? [2]
    : values.stages === "both"
    ? [1, 2]
    : [];
  if (stagesList.length === 0) {
    throw new Error(`--stages must be 1, 2 or both, got ${values.stages}`);
  }
  const repeat = Number(values.repeat);
  if (!Number.isInteger(repeat) || repeat < 1) {
    throw new Error(
      `--repeat must be a positive integer, got ${values.repeat}`,
    );
  }
  const warmupS = Number(values.warmup);
  if (!Number.isFinite(warmupS) || warmupS < 0) {
    throw new Error(`--warmup must be seconds ≥ 0, got ${values.warmup}`);
  }
  let set = Object.entries(shapes(values.shapes));
  if (values.only !== undefined) {
    const names = values.only.split(",").map((x) => x.trim());
    const unknown = names.filter((x) => !set.some(([name]) => name === x));
    if (unknown.length) {
      throw new Error(
        `--only: no shape ${
          unknown.map((x) => `"${x}"`).join(", ")
        } in --shapes ${values.shapes} (${
          set.map(([name]) => name).join(", ")
        })`,
      );
    }
    set = set.filter(([name]) => names.includes(name));
  }
  const device = await requestEngineDevice();
  if (!device.features.has("timestamp-query")) {
    throw new Error("bench matmul needs a GPU with timestamp-query");
  }
  const info = (device as { adapterInfo?: GPUAdapterInfo }).adapterInfo;
  const warmup = set.length && warmupS > 0
    ? { shape: set[0][0], ...await warmUp(device, set[0][1], repeat, warmupS) }
    : undefined;
  const tflops = (flops: number, ms: number) =>
    Number((flops / ms / 1e9).toFixed(1));
  const fmt = (flops: number, r: Row) => ({
    ...r,
    ms: Number(r.ms.toFixed(4)),
    tflops: tflops(flops, r.ms),
  });
  const out: Record<string, unknown> = {};
  for (const [name, o] of set) {
    const flops = 2 * o.m * o.n * o.k * (o.batch ?? 1);
    const chosen = matmul(o).steps[0].spec.label;
    const defaultMs = await time(device, o, o, repeat);
    const chosenByStages: Record<string, { ms: number; tflops: number }> = {};
    for (const stages of stagesList) {
      const ms = stages === chosenStages(o)
        ? defaultMs
        : await time(device, o, { ...o, stages }, repeat);
      chosenByStages[stages] = {
        ms: Number(ms.toFixed(4)),
        tflops: tflops(flops, ms),
      };
    }
    const sweep: Row[] = [];
    for (const stages of stagesList) {
      for (
        const tile of [[128, 128], [128, 64], [64, 128], [64, 64], [
          32,
          32,
        ]] as const
      ) {
        for (const split of [1, 2, 3, 4, 6, 8]) {
          if (split > 1 && o.k / split < 64) continue;
          let opts: MatmulOptions;
          try {
            opts = { ...o, tile, splitK: split, stages };
            matmul(opts);
          } catch {
            continue; // configuration outside the grid or memory limits
          }
          sweep.push({
            tile: `${tile[0]}x${tile[1]}`,
            split,
            stages,
            ms: await time(device, o, opts, repeat),
          });
        }
      }
    }
    sweep.sort((a, b) => a.ms - b.ms);
    const bestByStages: Record<string, unknown> = {};
    for (const stages of stagesList) {
      const r = sweep.find((x) => x.stages === stages);
      if (r) bestByStages[stages] = fmt(flops, r);
    }
    out[name] = {
      chosen,
      chosenMs: Number(defaultMs.toFixed(4)),
      chosenTflops: tflops(flops, defaultMs),
      chosenByStages,
      best: sweep.slice(0, 3).map((r) => fmt(flops, r)),
      bestByStages,
    };
  }
  return {
    bench: "matmul",
    device: info?.description ||
      [info?.vendor, info?.architecture, info?.device].filter((x) => x)
        .join(" "),
    warmup,
    stages: stagesList,
    defaultStages: "2 for n ≥ 1024, B not transposed, K slice ≤ 768; else 1",
    results: out,
  };
}
