/** Tests of the fused front end's segment rule and its log lines. */
import assert from "node:assert/strict";
import {
  describeFusion,
  type FrontEndStage,
  fusableTail,
  type FusedFrontEnd,
  useFrontEnd,
} from "./front_end.ts";
import { createRng } from "./rng.ts";
import type { Batch } from "./types.ts";

const s = (
  name: string,
  id = name,
  origin: FrontEndStage["origin"] = "builtin",
): FrontEndStage => ({ name, id, origin, options: {} });

Deno.test("fusableTail takes (augment | fixed_length)* mel tokenize? at the end, built-in only", () => {
  const preset = [
    s("load_mix", "mono_mix"),
    s("augment"),
    s("fixed_length"),
    s("mel"),
    s("tokenize"),
  ];
  assert.deepEqual(fusableTail(preset), {
    count: 4,
    why: '"load_mix" runs before it',
  });
  assert.deepEqual(fusableTail(preset.slice(1)), { count: 4 });
  assert.deepEqual(fusableTail([s("mel")]), { count: 1 });
  assert.deepEqual(fusableTail([s("fixed_length"), s("mel")]), { count: 2 });
  // Two augment stages in a row fuse too.
  assert.equal(
    fusableTail([s("augment"), s("views2", "augment"), s("mel"), s("tokenize")])
      .count,
    4,
  );
  // A custom stage ends the segment where it stands.
  assert.deepEqual(
    fusableTail([
      s("augment"),
      s("denoise", "denoise", "file"),
      s("mel"),
      s("tokenize"),
    ]),
    { count: 2, why: '"denoise" (file stage) runs before it' },
  );
  // A path stage with a built-in id does not fuse.
  assert.deepEqual(
    fusableTail([s("augment"), s("mel", "mel", "url"), s("tokenize")]),
    { count: 0, why: '"mel" (url stage) is not the built-in mel stage' },
  );
  assert.deepEqual(fusableTail([s("mel"), s("tokenize"), s("extra")]), {
    count: 0,
    why: '"extra" is not the built-in mel stage',
  });
  assert.deepEqual(fusableTail([]), { count: 0, why: "no map stages" });
  assert.deepEqual(fusableTail([s("tokenize")]), {
    count: 0,
    why: "no mel stage",
  });
});

Deno.test("describeFusion names what runs where", () => {
  const stages = [s("mono_mix"), s("augment"), s("mel"), s("tokenize")];
  assert.equal(
    describeFusion("fit", stages, fusableTail(stages), "WebGPU"),
    'phase fit: mono_mix on tfjs/host, then augment → mel → tokenize fused on WebGPU ("mono_mix" runs before it)',
  );
  const custom = [s("mel", "mel", "file")];
  assert.equal(
    describeFusion("eval", custom, fusableTail(custom), "WebGPU"),
    'phase eval: mel on tfjs/host ("mel" (file stage) is not the built-in mel stage)',
  );
});

Deno.test("useFrontEnd logs each phase's fusion and each declined reason once", () => {
  const lines: string[] = [];
  let calls = 0;
  const engine: FusedFrontEnd = {
    where: "WebGPU",
    apply(batch, stages) {
      calls++;
      assert.deepEqual(stages.map((x) => x.name), ["mel", "tokenize"]);
      assert.equal(typeof stages[0].rng.next(), "number");
      return calls <= 2
        ? {
          batch: { ...batch, tokens: "t" } as Batch,
          upload: { format: "float32", why: "the clips are float WAVs" },
        }
        : calls === 3
        ? {
          batch: { ...batch, tokens: "u" } as Batch,
          upload: { format: "int16" },
        }
        : { declined: "the batch is too large" };
    },
    dispose() {},
  };
  const use = useFrontEnd(engine, (l) => lines.push(l));
  const active = [s("mel"), s("tokenize")];
  assert.equal(use.fusion("fit", active).count, 2);
  assert.equal(use.fusion("fit", active).count, 2);
  assert.equal(use.fusion("eval", active).count, 2);
  assert.deepEqual(lines, [
    "front end, phase fit: mel → tokenize fused on WebGPU",
    "front end, phase eval: mel → tokenize fused on WebGPU",
  ]);
  const ctx = {
    tf: undefined as never,
    phase: "fit",
    split: "train",
    epoch: 0,
    batchIndex: 0,
    assets: {},
  };
  const batch = { size: 1 } as unknown as Batch;
  const rngOf = (name: string) => createRng(name, 1);
  assert.equal(use.run(batch, active, ctx, rngOf)?.tokens, "t");
  assert.equal(use.run(batch, active, ctx, rngOf)?.tokens, "t");
  assert.equal(
    use.run(batch, active, { ...ctx, phase: "eval" }, rngOf)?.tokens,
    "u",
  );
  assert.equal(use.run(batch, active, ctx, rngOf), undefined);
  assert.equal(use.run(batch, active, ctx, rngOf), undefined);
  // Each phase's upload format and each reason to decline, said once.
  assert.deepEqual(lines.slice(2), [
    "front end, phase fit: decoded clips go up as float32 (the clips are float WAVs)",
    "front end, phase eval: decoded clips go up as 16-bit integers (half the bytes of float32)",
    "front end: the batch is too large; such batches run mel → tokenize on tfjs/host",
  ]);
});
