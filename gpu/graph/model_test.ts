import assert from "node:assert/strict";
import { ModelOptions, modelPlan } from "../../model/config.ts";
import type { KernelSpec, Region, Runtime } from "../runtime.ts";
import { createArenas } from "./arenas.ts";
import { createBufferPool, type Graph } from "./builder.ts";
import { buildGraph } from "./model.ts";
import { graphLayers, type GraphTransformer, isFolded } from "./passes.ts";
import { TINY_DIMS, TINY_SIZES } from "../../model/trainer_testing.ts";

/**
 * A runtime that records dispatches without a GPU: buffers are plain
 * objects, `record` keeps the kernel and its bound regions.
 */
function recordingRuntime(): Runtime {
  const region = (label: string, floats: number): Region => ({
    buffer: { label } as unknown as GPUBuffer,
    offset: 0,
    size: Math.max(1, floats) * 4,
    label,
  });
  return {
    device: {} as GPUDevice,
    alloc: region,
    arena(label, parts) {
      const buffer = { label } as unknown as GPUBuffer;
      const map = new Map<string, Region>();
      let at = 0;
      for (const p of parts) {
        const size = Math.max(1, p.floats) * 4;
        map.set(p.name, { buffer, offset: at, size, label: p.name });
        at = Math.ceil((at + size) / 256) * 256;
      }
      return { whole: { buffer, offset: 0, size: at, label }, parts: map };
    },
    record(list, kernel: KernelSpec, bindings) {
      (list as unknown[]).push({ kernel, bindings });
    },
  } as Runtime;
}

interface Recorded {
  kernel: KernelSpec;
  bindings: Region[];
}

function graph(o: object, training: boolean): {
  g: Graph;
  rt: Runtime;
  arenas: ReturnType<typeof createArenas>;
} {
  const rt = recordingRuntime();
  const options = ModelOptions.parse({ ...TINY_SIZES, ...o });
  const arenas = createArenas(rt, options, TINY_DIMS);
  const g = buildGraph(rt, arenas, options, TINY_DIMS, {
    training,
    views: 2,
    perView: 3,
    pool: createBufferPool(),
  });
  return { g, rt, arenas };
}

const counts = (g: Graph) =>
  Object.values(g.lists).map((l) => l.length).join("/");

// Recorded from gpu/amaut_graph.ts before the restructure (issue 13); the
// sc1 and cs paper models gave 711/992/65 and 821/1250/80 for 2 × 3 clips.
Deno.test("graph dispatch counts of the tiny models are those of the single-function graph", () => {
  assert.equal(counts(graph({ head: "avg" }, true).g), "0/121/184/14");
  assert.equal(counts(graph({ head: "fce" }, true).g), "0/118/179/13");
  assert.equal(counts(graph({ head: "avg" }, false).g), "52/43/0/0");
  assert.equal(counts(graph({ head: "fce" }, false).g), "52/43/0/0");
  assert.equal(
    counts(graph({ head: "fce", tokenMode: "cls", ffnNorm: true }, true).g),
    "0/120/182/13",
  );
});

Deno.test("rootPool false: the stem records no max-pool, one dispatch fewer in the forward and in the backward", () => {
  const pools = (g: Graph) =>
    Object.values(g.lists).flatMap((l) =>
      (l as unknown as Recorded[]).filter((d) =>
        d.kernel.label?.startsWith("maxPool")
      )
    ).length;
  const training = graph({ head: "avg", rootPool: false }, true).g;
  assert.equal(counts(training), "0/120/183/14");
  assert.equal(pools(training), 0);
  assert.equal(pools(graph({ head: "avg" }, true).g), 2);
  const evaluation = graph({ head: "fce", rootPool: false }, false).g;
  assert.equal(counts(evaluation), "52/42/0/0");
  assert.equal(pools(evaluation), 0);
});

const overlaps = (r: Region, slot: { offset: number; size: number }) =>
  r.offset < (slot.offset + slot.size) * 4 &&
  slot.offset * 4 < r.offset + r.size;

for (const head of ["avg", "fce"] as const) {
  Deno.test(`training graph (${head} head): every trained parameter's gradient is written by the backward, the unused ffn_norm's never`, () => {
    const { g, arenas } = graph({ head }, true);
    const grads = arenas.grads.buffer;
    const written = (g.lists.backward as unknown as Recorded[]).flatMap((d) =>
      d.bindings.filter((r) => r.buffer === grads && r.size < arenas.grads.size)
    );
    for (const slot of arenas.slots) {
      const hit = written.some((r) => overlaps(r, slot));
      assert.equal(hit, slot.trained, slot.name);
    }
    assert.ok(arenas.slots.some((s) => !s.trained));
  });
}

Deno.test("eval graph binds no gradient, labels, SGD state or clears", () => {
  const { g, arenas } = graph({ head: "fce" }, false);
  const all = [...g.lists.prepare, ...g.lists.forward] as unknown as Recorded[];
  assert.ok(
    all.every((d) => d.bindings.every((r) => r.buffer !== arenas.grads.buffer)),
  );
  assert.equal(g.labels, undefined);
  assert.equal(g.hyper, undefined);
  assert.equal(g.clears.length, 0);
});

Deno.test("graph passes: training keeps BatchNorm and separate projections; eval folds and packs; the fce head trims the last block", () => {
  const options = ModelOptions.parse({ ...TINY_SIZES, head: "fce" });
  const plan = modelPlan(options, TINY_DIMS);
  for (const training of [true, false]) {
    const layers = graphLayers(plan.layers, training);
    assert.equal(layers.length, plan.layers.length);
    const convs = layers.flatMap((l) =>
      l.kind === "stem"
        ? [l.conv]
        : l.kind === "bottleneck"
        ? [l.conv1, l.conv2, l.conv3, ...(l.shortcut ? [l.shortcut] : [])]
        : []
    );
    assert.equal(convs.length, 1 + 3 * plan.blocks.length + 2);
    assert.ok(convs.every((c) => isFolded(c) === !training));
    const blocks = layers.filter((l) =>
      l.kind === "transformer"
    ) as GraphTransformer[];
    assert.deepEqual(
      blocks.map((l) => [l.queries, l.packedQkv === true]),
      [[undefined, !training], [plan.specialPositions, !training]],
    );
    const head = layers.at(-1)!;
    assert.equal(head.kind, "fceHead");
    if (head.kind === "fceHead") {
      assert.deepEqual(head.positions, [0, 1]);
      assert.equal(head.sequence, 2);
    }
  }
  // the description itself is left as it was
  assert.ok(
    plan.layers.every((l) => l.kind !== "stem" || !isFolded(l.conv)),
  );
  const avg = modelPlan(
    ModelOptions.parse({ ...TINY_SIZES, head: "avg" }),
    TINY_DIMS,
  );
  assert.deepEqual(graphLayers(avg.layers, true), avg.layers);
});
