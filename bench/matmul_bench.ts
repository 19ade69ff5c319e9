/**
 * Tile × split-K × stages sweep of the fused engine's matmul at the shapes
 * the paper presets use (`deno task bench matmul [--shapes cs|sc1|all|tiny]
 * [--only NAME[,NAME]] [--stages 1|2|both] [--operands f32|f16|both]
 * [--bk 16[,32]] [--packed 0[,2,4,8]] [--staging f16[,f32]] [--out-f16]
 * [--chosen-only]
 * [--repeat N] [--warmup S]`): for each shape, the GPU time per dispatch (timestamp
 * queries; mean of `N` = 20 dispatches, best of three rounds) of the
 * configuration the cost model in `gpu/kernels/matmul.ts` picks (with its
 * default stages, and with each swept stages count) and of every tile ×
 * split × stages (× K-slice depth `bk`, × packed f16 products for f16
 * operands), with TFLOP/s — the data that cost model is tuned from.
 * `stages` 2 is the double-buffered K loop. With `--operands f16` the same
 * shapes run with f16 A and B (f32 accumulation; `--out-f16` stores C as
 * f16 too); with `both`, each shape reports `f32` and `f16` side by side
 * and the speed-up of the chosen f16 kernel over the chosen f32 one. Before timing, the first shape's default kernel runs in
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
  SHADER_F16,
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
  const plan = matmul(opts); // f16 regions get f32 sizes: room to spare
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
  bk: 16 | 32;
  packedK: 0 | 2 | 4 | 8;
  /** Workgroup tiles of f16 operands ("f16" or "f32"; absent for f32). */
  staging?: "f16" | "f32";
  ms: number;
}

/** Parses a comma list of allowed values, naming the flag on a bad one. */
function list<T extends number>(
  flag: string,
  text: string,
  allowed: readonly T[],
): T[] {
  const xs = text.split(",").map((x) => Number(x.trim()));
  const bad = xs.filter((x) => !allowed.includes(x as T));
  if (bad.length || xs.length === 0) {
    throw new Error(
      `Cannot run bench matmul: ${flag} takes a comma list of ${
        allowed.join(", ")
      }, got "${text}"`,
    );
  }
  return xs as T[];
}

/**
 * Times one shape with one operand type: the model's choice (default and
 * per stages count) and the sweep of tile × split × stages × bk × packedK.
 */
async function sweepShape(
  device: GPUDevice,
  o: MatmulOptions,
  stagesList: readonly (1 | 2)[],
  bks: readonly (16 | 32)[],
  packs: readonly (0 | 2 | 4 | 8)[],
  stagings: readonly ("f16" | "f32" | undefined)[],
  repeat: number,
  chosenOnly: boolean,
): Promise<Record<string, unknown>> {
  const flops = 2 * o.m * o.n * o.k * (o.batch ?? 1);
  const tflops = (ms: number) => Number((flops / ms / 1e9).toFixed(1));
  const fmt = (r: Row) => ({
    ...r,
    ms: Number(r.ms.toFixed(4)),
    tflops: tflops(r.ms),
  });
  const chosen = matmul(o).steps[0].spec.label;
  const defaultMs = await time(device, o, o, repeat);
  const chosenByStages: Record<string, { ms: number; tflops: number }> = {};
  for (const stages of stagesList) {
    let ms: number;
    try {
      ms = stages === chosenStages(o)
        ? defaultMs
        : await time(device, o, { ...o, stages }, repeat);
    } catch {
      continue; // the chosen tile does not fit these stages
    }
    chosenByStages[stages] = { ms: Number(ms.toFixed(4)), tflops: tflops(ms) };
  }
  const sweep: Row[] = [];
  for (const stages of chosenOnly ? [] : stagesList) {
    for (const bk of bks) {
      for (const packedK of packs) {
        for (const staging of stagings) {
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
                opts = { ...o, tile, splitK: split, stages, bk };
                if (packedK) opts = { ...opts, packedK };
                if (staging) opts = { ...opts, staging };
                matmul(opts);
              } catch {
                continue; // configuration outside the grid or memory limits
              }
              sweep.push({
                tile: `${tile[0]}x${tile[1]}`,
                split,
                stages,
                bk,
                packedK,
                ...(staging ? { staging } : {}),
                ms: await time(device, o, opts, repeat),
              });
            }
          }
        }
      }
    }
  }
  sweep.sort((a, b) => a.ms - b.ms);
  const bestByStages: Record<string, unknown> = {};
  for (const stages of stagesList) {
    const r = sweep.find((x) => x.stages === stages);
    if (r) bestByStages[stages] = fmt(r);
  }
  const bestByPacked: Record<string, unknown> = {};
  if (packs.length > 1) {
    for (const p of packs) {
      const r = sweep.find((x) => x.packedK === p);
      if (r) bestByPacked[p] = fmt(r);
    }
  }
  const bestByStaging: Record<string, unknown> = {};
  if (stagings.length > 1) {
    for (const st of stagings) {
      const r = sweep.find((x) => x.staging === st);
      if (r) bestByStaging[st!] = fmt(r);
    }
  }
  return {
    chosen,
    chosenMs: Number(defaultMs.toFixed(4)),
    chosenTflops: tflops(defaultMs),
    chosenByStages,
    best: sweep.slice(0, 3).map(fmt),
    bestByStages,
    ...(packs.length > 1 ? { bestByPacked } : {}),
    ...(stagings.length > 1 ? { bestByStaging } : {}),
  };
}

/**
 * Runs the sweep.
 *
 * @param args `--shapes cs|sc1|all|tiny` (default cs; tiny checks the tool
 *   itself on a slow adapter), `--only NAME[,NAME]` (only these shapes of
 *   the set), `--stages 1|2|both` (stages swept, default both),
 *   `--operands f32|f16|both` (element type of A and B, default f32),
 *   `--bk 16[,32]` (K-slice depths swept, default 16), `--packed
 *   0[,2,4,8]` (f16 only: k steps per packed f16 product chain swept,
 *   default 0 = products in f32), `--staging f16[,f32]` (f16 only:
 *   workgroup tiles swept, default f16), `--out-f16` (f16 runs store C, r
 *   and pre as f16), `--chosen-only` (time the model's choices, no sweep),
 *   `--repeat N` (dispatches per timing, 20), `--warmup S` (seconds of
 *   warm-up before timing, 2).
 * @returns `{ bench, device, warmup, stages, operands, results }`: per
 *   shape (with `--operands both`, per shape and operand type, plus
 *   `f16Speedup`, the chosen f32 kernel's time over the chosen f16 one's)
 *   the model's choice (`chosen` label, `chosenMs`, `chosenTflops` with the
 *   default stages, `chosenByStages` for each swept stages count), the three
 *   fastest rows of the sweep (`best`), the fastest row of each stages count
 *   (`bestByStages`) and, with several `--packed` values, of each
 *   (`bestByPacked`), likewise with several `--staging` values
 *   (`bestByStaging`); every row gives its tile, split, stages, bk, packedK,
 *   staging (f16 runs), ms and TFLOP/s.
 */
export async function benchMatmul(args: string[]): Promise<unknown> {
  const { values } = parseArgs({
    args,
    options: {
      shapes: { type: "string", default: "cs" },
      only: { type: "string" },
      stages: { type: "string", default: "both" },
      operands: { type: "string", default: "f32" },
      bk: { type: "string", default: "16" },
      packed: { type: "string", default: "0" },
      staging: { type: "string", default: "f16" },
      "out-f16": { type: "boolean", default: false },
      "chosen-only": { type: "boolean", default: false },
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
  const operands: ("f32" | "f16")[] = values.operands === "f32"
    ? ["f32"]
    : values.operands === "f16"
    ? ["f16"]
    : values.operands === "both"
    ? ["f32", "f16"]
    : [];
  if (operands.length === 0) {
    throw new Error(
      `Cannot run bench matmul: --operands must be f32, f16 or both, got ${values.operands}`,
    );
  }
  const bks = list("--bk", values.bk, [16, 32] as const);
  const packs = list("--packed", values.packed, [0, 2, 4, 8] as const);
  if (packs.some((p) => p > 0) && !operands.includes("f16")) {
    throw new Error(
      "Cannot run bench matmul: --packed needs --operands f16 or both",
    );
  }
  const stagings = values.staging.split(",").map((x) => x.trim());
  if (
    stagings.length === 0 ||
    stagings.some((x) => x !== "f16" && x !== "f32")
  ) {
    throw new Error(
      `Cannot run bench matmul: --staging takes a comma list of f16, f32, got "${values.staging}"`,
    );
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
  if (operands.includes("f16") && !device.features.has(SHADER_F16)) {
    throw new Error(
      `Cannot run bench matmul --operands ${values.operands}: this adapter lacks the WebGPU feature "${SHADER_F16}"; use --operands f32`,
    );
  }
  const info = (device as { adapterInfo?: GPUAdapterInfo }).adapterInfo;
  const warmup = set.length && warmupS > 0
    ? { shape: set[0][0], ...await warmUp(device, set[0][1], repeat, warmupS) }
    : undefined;
  const variant = (o: MatmulOptions, kind: "f32" | "f16"): MatmulOptions =>
    kind === "f32" ? o : {
      ...o,
      operands: "f16",
      ...(values["out-f16"] ? { outF16: true } : {}),
    };
  const out: Record<string, unknown> = {};
  for (const [name, o] of set) {
    const byKind: Record<string, Record<string, unknown>> = {};
    for (const kind of operands) {
      byKind[kind] = await sweepShape(
        device,
        variant(o, kind),
        stagesList,
        bks,
        kind === "f16" ? packs : [0],
        kind === "f16" ? stagings as ("f16" | "f32")[] : [undefined],
        repeat,
        values["chosen-only"],
      );
    }
    if (operands.length === 1) {
      out[name] = byKind[operands[0]];
    } else {
      const ratio = (byKind.f32.chosenMs as number) /
        (byKind.f16.chosenMs as number);
      out[name] = { ...byKind, f16Speedup: Number(ratio.toFixed(2)) };
    }
  }
  return {
    bench: "matmul",
    device: info?.description ||
      [info?.vendor, info?.architecture, info?.device].filter((x) => x)
        .join(" "),
    warmup,
    stages: stagesList,
    operands,
    bk: bks,
    ...(operands.includes("f16")
      ? { packedK: packs, staging: stagings, outF16: values["out-f16"] }
      : {}),
    defaultStages:
      "2 for n ≥ 1024, B not transposed, K slice ≤ 768 (and the tile fits); else 1",
    results: out,
  };
}
