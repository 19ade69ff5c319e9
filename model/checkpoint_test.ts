import assert from "node:assert/strict";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { createRng } from "../pipeline/rng.ts";
import {
  checkCompatible,
  type CheckpointMeta,
  loadCheckpoint,
  modelSignature,
  saveCheckpoint,
} from "./checkpoint.ts";

async function names(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) out.push(e.name);
  return out.sort();
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  await tf.setBackend("cpu");
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function bits(values: Float32Array | Int32Array | Uint8Array): number[] {
  return Array.from(new Uint32Array(values.slice().buffer));
}

function meta(overrides: Partial<CheckpointMeta> = {}): CheckpointMeta {
  return { epoch: 3, specHash: "abc123", modelSignature: "[]", ...overrides };
}

/** 1000 float32 values (4000 bytes). */
function bigGroups(): Record<string, Map<string, tf.Tensor>> {
  return { params: new Map([["w", tf.range(0, 1000, 1, "float32")]]) };
}

Deno.test("checkpoint round trip: values bit-exact, dtypes, shapes, groups and meta preserved", async () => {
  await withDir(async (dir) => {
    const special = new Float32Array([
      0,
      -0,
      1.5,
      -3.25e-38,
      1e-45, // denormal
      3.4028234663852886e38,
      Infinity,
      -Infinity,
      NaN,
      Math.PI,
      0.1,
      -7,
    ]);
    const w = tf.tensor(special, [3, 4]);
    const b = tf.tensor1d([0.1, 0.2, 0.3]);
    const scalar = tf.scalar(42.5);
    const empty = tf.zeros([0, 3]);
    const count = tf.tensor1d([7, -2147483648, 2147483647], "int32");
    const momentum = tf.randomNormal([5, 2, 3]);
    const rng = createRng("train", 2025);
    rng.next();
    const m: CheckpointMeta = {
      epoch: 12,
      specHash: "f00d",
      modelSignature: modelSignature(new Map([["w", w], ["b", b]])),
      rngState: rng.state(),
      metrics: { bestAccuracy: 0.875, history: [0.5, 0.75] },
      note: "extra keys survive",
    };
    const groups = {
      params: new Map<string, tf.Tensor>([["w", w], ["b", b], ["s", scalar], [
        "e",
        empty,
      ]]),
      buffers: new Map<string, tf.Tensor>([["count", count]]),
      optimizer: new Map<string, tf.Tensor>([["w", momentum]]),
      unused: new Map<string, tf.Tensor>(),
    };
    await saveCheckpoint(dir, "last", m, groups);
    assert.deepEqual(await names(dir), ["last.bin", "last.json"]);

    const before = tf.memory().numTensors;
    const loaded = await loadCheckpoint(tf, dir, "last");
    assert.equal(tf.memory().numTensors, before + 6);
    assert.deepEqual(loaded.meta, m);
    assert.deepEqual(Object.keys(loaded.groups), [
      "params",
      "buffers",
      "optimizer",
      "unused",
    ]);
    for (const [group, map] of Object.entries(groups)) {
      const got = loaded.groups[group];
      assert.deepEqual([...got.keys()], [...map.keys()], group);
      for (const [name, tensor] of map) {
        const copy = got.get(name)!;
        assert.deepEqual(copy.shape, tensor.shape, `${group}/${name}`);
        assert.equal(copy.dtype, tensor.dtype, `${group}/${name}`);
        assert.deepEqual(
          bits(await copy.data()),
          bits(await tensor.data()),
          `${group}/${name}`,
        );
      }
    }
    tf.dispose(Object.values(loaded.groups).flatMap((g) => [...g.values()]));
    tf.dispose([w, b, scalar, empty, count, momentum]);
  });
});

Deno.test("checkpoint files: little-endian float32 data and an index with name, shape, dtype and offset", async () => {
  await withDir(async (dir) => {
    const a = tf.tensor1d([1, -2]);
    const b = tf.tensor2d([[0.5], [4]]);
    await saveCheckpoint(dir, "x", meta(), {
      params: new Map<string, tf.Tensor>([["a", a], ["b", b]]),
    });
    const bytes = await Deno.readFile(join(dir, "x.bin"));
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const floats = [0, 4, 8, 12].map((o) => view.getFloat32(o, true));
    assert.deepEqual(floats, [1, -2, 0.5, 4]);
    const index = JSON.parse(await Deno.readTextFile(join(dir, "x.json")));
    assert.deepEqual(index.meta, meta());
    assert.deepEqual(index.tensors, [
      {
        group: "params",
        name: "a",
        dtype: "float32",
        shape: [2],
        offset: 0,
        byteLength: 8,
      },
      {
        group: "params",
        name: "b",
        dtype: "float32",
        shape: [2, 1],
        offset: 8,
        byteLength: 8,
      },
    ]);
    assert.equal(index.data.file, "x.bin");
    assert.equal(index.data.byteLength, 16);
    tf.dispose([a, b]);
  });
});

Deno.test("saveCheckpoint writes the data file before the index, each via a temp file and rename", async () => {
  await withDir(async (dir) => {
    const renamed: string[] = [];
    const rename = Deno.rename;
    Deno.rename = (from: string | URL, to: string | URL) => {
      assert.match(String(from), /\.tmp$/);
      renamed.push(String(to));
      return rename(from, to);
    };
    const a = tf.tensor1d([1]);
    try {
      await saveCheckpoint(join(dir, "nested", "run"), "best", meta(), {
        params: new Map([["a", a]]),
      });
    } finally {
      Deno.rename = rename;
      a.dispose();
    }
    assert.deepEqual(renamed, [
      join(dir, "nested", "run", "best.bin"),
      join(dir, "nested", "run", "best.json"),
    ]);
  });
});

Deno.test("saveCheckpoint replaces an existing checkpoint whole and leaves no temp file", async () => {
  await withDir(async (dir) => {
    const big = bigGroups();
    await saveCheckpoint(dir, "last", meta({ epoch: 1 }), big);
    const small = {
      params: new Map([["v", tf.tensor1d([9, 8])]]),
      extra: new Map(),
    };
    await saveCheckpoint(dir, "last", meta({ epoch: 2 }), small);
    assert.deepEqual(await names(dir), ["last.bin", "last.json"]);
    assert.equal((await Deno.stat(join(dir, "last.bin"))).size, 8);
    const loaded = await loadCheckpoint(tf, dir, "last");
    assert.equal(loaded.meta.epoch, 2);
    assert.deepEqual(Object.keys(loaded.groups), ["params", "extra"]);
    assert.deepEqual([...loaded.groups.params.keys()], ["v"]);
    assert.deepEqual(Array.from(await loaded.groups.params.get("v")!.data()), [
      9,
      8,
    ]);
    tf.dispose([
      ...big.params.values(),
      ...small.params.values(),
      ...loaded.groups.params.values(),
    ]);
  });
});

Deno.test("loadCheckpoint names the file when the data is truncated or missing", async () => {
  await withDir(async (dir) => {
    const groups = bigGroups();
    await saveCheckpoint(dir, "last", meta(), groups);
    const bin = join(dir, "last.bin");
    await Deno.truncate(bin, 100);
    const before = tf.memory().numTensors;
    await assert.rejects(
      () => loadCheckpoint(tf, dir, "last"),
      {
        message: `Cannot load checkpoint "${
          join(dir, "last")
        }": the data file holds 100 bytes, the index expects 4000`,
      },
    );
    await Deno.remove(bin);
    await assert.rejects(
      () => loadCheckpoint(tf, dir, "last"),
      {
        message: `Cannot load checkpoint "${
          join(dir, "last")
        }": the data file ${bin} is missing`,
      },
    );
    await assert.rejects(
      () => loadCheckpoint(tf, dir, "nothing"),
      {
        message: `Cannot load checkpoint "${
          join(dir, "nothing")
        }": the index file ${join(dir, "nothing.json")} is missing`,
      },
    );
    assert.equal(tf.memory().numTensors, before);
    tf.dispose([...groups.params.values()]);
  });
});

Deno.test("loadCheckpoint refuses a truncated or malformed index", async () => {
  await withDir(async (dir) => {
    const groups = bigGroups();
    await saveCheckpoint(dir, "last", meta(), groups);
    const json = join(dir, "last.json");
    const text = await Deno.readTextFile(json);
    await Deno.writeTextFile(json, text.slice(0, 50));
    await assert.rejects(
      () => loadCheckpoint(tf, dir, "last"),
      (error: Error) => {
        assert.match(
          error.message,
          new RegExp(
            `^Cannot load checkpoint ".*last": the index file .*last\\.json is not valid JSON \\(`,
          ),
        );
        return true;
      },
    );
    const index = JSON.parse(text);
    index.tensors[0].shape = [999];
    await Deno.writeTextFile(json, JSON.stringify(index));
    await assert.rejects(
      () => loadCheckpoint(tf, dir, "last"),
      /: tensor params\/w of shape \[999\] needs 3996 bytes, the index says 4000$/,
    );
    index.tensors[0].shape = [1000];
    index.meta.epoch = -1;
    await Deno.writeTextFile(json, JSON.stringify(index));
    await assert.rejects(
      () => loadCheckpoint(tf, dir, "last"),
      /: the index file .*last\.json is malformed at meta\.epoch: /,
    );
    tf.dispose([...groups.params.values()]);
  });
});

Deno.test("loadCheckpoint refuses data that another save replaced under an old index", async () => {
  await withDir(async (dir) => {
    const one = { params: new Map([["w", tf.tensor1d([1, 2, 3])]]) };
    const two = { params: new Map([["w", tf.tensor1d([4, 5, 6])]]) };
    await saveCheckpoint(dir, "last", meta(), one);
    const oldIndex = await Deno.readTextFile(join(dir, "last.json"));
    await saveCheckpoint(dir, "last", meta(), two);
    await Deno.writeTextFile(join(dir, "last.json"), oldIndex); // as after a crash between the renames
    await assert.rejects(
      () => loadCheckpoint(tf, dir, "last"),
      /: the data file .*last\.bin does not match its index \(SHA-256 differs\)/,
    );
    tf.dispose([...one.params.values(), ...two.params.values()]);
  });
});

Deno.test("saveCheckpoint refuses unsupported dtypes, bad names and bad meta", async () => {
  await withDir(async (dir) => {
    const flag = tf.tensor1d([true, false], "bool");
    await assert.rejects(
      () =>
        saveCheckpoint(dir, "x", meta(), {
          buffers: new Map([["flag", flag]]),
        }),
      /tensor buffers\/flag has dtype bool, only float32 and int32 are stored$/,
    );
    await assert.rejects(
      () => saveCheckpoint(dir, "a/b", meta(), {}),
      /Cannot use checkpoint name "a\/b": it must be a plain file name without a folder/,
    );
    await assert.rejects(
      () => saveCheckpoint(dir, "x", meta({ epoch: 1.5 }), {}),
      /Cannot save checkpoint ".*x": the meta is invalid at epoch: /,
    );
    assert.deepEqual(await names(dir), []);
    flag.dispose();
  });
});

Deno.test("modelSignature sorts names and records shapes", () => {
  const a = modelSignature(
    new Map([["b", { shape: [2, 3] }], ["a", { shape: [] }], ["10", {
      shape: [4],
    }]]),
  );
  const b = modelSignature(
    new Map([["10", { shape: [4] }], ["a", { shape: [] }], ["b", {
      shape: [2, 3],
    }]]),
  );
  assert.equal(a, b);
  assert.equal(a, '[["10",[4]],["a",[]],["b",[2,3]]]');
});

Deno.test("checkCompatible says exactly what differs", () => {
  const sig = modelSignature(
    new Map([["enc.w", { shape: [4, 8] }], ["head.b", { shape: [10] }]]),
  );
  const saved = meta({ specHash: "aaa", modelSignature: sig });
  checkCompatible(saved, { specHash: "aaa", modelSignature: sig });
  checkCompatible(saved, {
    specHash: "bbb",
    modelSignature: sig,
    allowSpecChange: true,
  });

  assert.throws(
    () => checkCompatible(saved, { specHash: "bbb", modelSignature: sig }),
    {
      message:
        "Cannot use the checkpoint: it was made for another spec (spec hash aaa in the checkpoint, bbb in this run)",
    },
  );

  const wider = modelSignature(
    new Map([["enc.w", { shape: [4, 16] }], ["head.b", { shape: [10] }]]),
  );
  assert.throws(
    () =>
      checkCompatible(saved, {
        specHash: "bbb",
        modelSignature: wider,
        allowSpecChange: true,
      }),
    {
      message:
        'Cannot use the checkpoint: it holds another model: parameter "enc.w" has shape [4, 8] in the checkpoint, [4, 16] in this model',
    },
  );

  const more = modelSignature(
    new Map([["enc.w", { shape: [4, 8] }], ["head.b", { shape: [10] }], [
      "head.g",
      { shape: [10] },
    ]]),
  );
  assert.throws(
    () => checkCompatible(saved, { specHash: "aaa", modelSignature: more }),
    {
      message:
        'Cannot use the checkpoint: it holds another model: parameter "head.g" (shape [10]) is missing from the checkpoint',
    },
  );

  const fewer = modelSignature(new Map([["head.b", { shape: [12] }]]));
  assert.throws(
    () => checkCompatible(saved, { specHash: "zzz", modelSignature: fewer }),
    {
      message:
        "Cannot use the checkpoint: it was made for another spec (spec hash aaa in the checkpoint, zzz in this run), and " +
        'holds another model: the checkpoint has parameter "enc.w" (shape [4, 8]) that this model lacks ' +
        "(2 parameters differ in all)",
    },
  );

  assert.throws(
    () =>
      checkCompatible(meta({ modelSignature: "v1" }), {
        specHash: "abc123",
        modelSignature: "v2",
      }),
    {
      message:
        'Cannot use the checkpoint: it holds another model: its model signature "v1" differs from this model\'s "v2"',
    },
  );
});
