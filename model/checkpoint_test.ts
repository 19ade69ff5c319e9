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
  snapshotCheckpoint,
  writeCheckpoint,
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

/** Three groups: params (1000 floats), buffers (10 ints), optimizer (600 floats). */
function threeGroups(): Record<string, Map<string, tf.Tensor>> {
  return {
    params: new Map<string, tf.Tensor>([
      ["w", tf.range(0, 1000, 1, "float32").reshape([10, 100])],
      ["e", tf.zeros([0, 2])],
    ]),
    buffers: new Map<string, tf.Tensor>([
      ["n", tf.range(0, 10, 1, "int32")],
    ]),
    optimizer: new Map<string, tf.Tensor>([
      ["w", tf.fill([600], -0.5)],
    ]),
  };
}

function disposeGroups(
  groups: Record<string, ReadonlyMap<string, tf.Tensor>>,
): void {
  tf.dispose(Object.values(groups).flatMap((g) => [...g.values()]));
}

async function valuesOf(
  groups: Record<string, ReadonlyMap<string, tf.Tensor>>,
): Promise<Record<string, number[]>> {
  const out: Record<string, number[]> = {};
  for (const [group, map] of Object.entries(groups)) {
    for (const [name, t] of map) {
      out[`${group}/${name}`] = Array.from(await t.data());
    }
  }
  return out;
}

Deno.test("checkpoint index version 2: each group contiguous, cut into pieces with a SHA-256 each", async () => {
  await withDir(async (dir) => {
    const groups = threeGroups();
    await saveCheckpoint(dir, "last", meta(), groups, { pieceBytes: 1600 });
    const index = JSON.parse(await Deno.readTextFile(join(dir, "last.json")));
    assert.equal(index.version, 2);
    assert.equal(index.data.byteLength, 4000 + 40 + 2400);
    assert.equal(index.data.sha256, undefined);
    const bytes = await Deno.readFile(join(dir, "last.bin"));
    const pieces = index.pieces.map((
      p: { group: string; offset: number; byteLength: number },
    ) => [p.group, p.offset, p.byteLength]);
    assert.deepEqual(pieces, [
      ["params", 0, 1600],
      ["params", 1600, 1600],
      ["params", 3200, 800],
      ["buffers", 4000, 40],
      ["optimizer", 4040, 1600],
      ["optimizer", 5640, 800],
    ]);
    for (const p of index.pieces) {
      const digest = new Uint8Array(
        await crypto.subtle.digest(
          "SHA-256",
          bytes.slice(p.offset, p.offset + p.byteLength),
        ),
      );
      assert.equal(
        p.sha256,
        Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join(""),
      );
    }
    const loaded = await loadCheckpoint(tf, dir, "last");
    assert.deepEqual(await valuesOf(loaded.groups), await valuesOf(groups));
    assert.deepEqual(loaded.groups.params.get("e")!.shape, [0, 2]);
    assert.equal(loaded.groups.buffers.get("n")!.dtype, "int32");
    disposeGroups(loaded.groups);
    disposeGroups(groups);
  });
});

Deno.test("loadCheckpoint with groups reads and verifies only those groups", async () => {
  await withDir(async (dir) => {
    const groups = threeGroups();
    await saveCheckpoint(dir, "last", meta(), groups, { pieceBytes: 1600 });
    // Damage the optimizer's second piece: a partial load of the other
    // groups never reads it, a full load refuses it, naming the piece.
    const file = await Deno.open(join(dir, "last.bin"), { write: true });
    await file.seek(5700, Deno.SeekMode.Start);
    await file.write(new Uint8Array([1, 2, 3, 4]));
    file.close();
    const before = tf.memory().numTensors;
    const part = await loadCheckpoint(tf, dir, "last", {
      groups: ["buffers", "params"],
    });
    assert.deepEqual(Object.keys(part.groups), ["params", "buffers"]);
    assert.equal(tf.memory().numTensors, before + 3);
    const all = await valuesOf(groups);
    assert.deepEqual(await valuesOf(part.groups), {
      "params/w": all["params/w"],
      "params/e": all["params/e"],
      "buffers/n": all["buffers/n"],
    });
    disposeGroups(part.groups);
    await assert.rejects(
      () => loadCheckpoint(tf, dir, "last"),
      {
        message: `Cannot load checkpoint "${
          join(dir, "last")
        }": the data file ${
          join(dir, "last.bin")
        } does not match its index (SHA-256 differs) in group "optimizer", bytes 5640–6440; it was probably overwritten by another save, or damaged`,
      },
    );
    await assert.rejects(
      () => loadCheckpoint(tf, dir, "last", { groups: ["params", "momentum"] }),
      {
        message: `Cannot load checkpoint "${
          join(dir, "last")
        }": it has no group "momentum" (it has: params, buffers, optimizer); load one of those`,
      },
    );
    assert.equal(tf.memory().numTensors, before);
    disposeGroups(groups);
  });
});

Deno.test("loadCheckpoint still loads version-1 checkpoints (one SHA-256 of the whole file), whole or in part", async () => {
  await withDir(async (dir) => {
    // The version-1 layout, as saveCheckpoint wrote it before version 2.
    const values = new Float32Array([1.5, -2, 3, 0.25]);
    const counts = new Int32Array([7, -8]);
    const bytes = new Uint8Array(24);
    const view = new DataView(bytes.buffer);
    values.forEach((v, i) => view.setFloat32(4 * i, v, true));
    counts.forEach((v, i) => view.setInt32(16 + 4 * i, v, true));
    const sha = async (b: Uint8Array) =>
      Array.from(
        new Uint8Array(
          await crypto.subtle.digest("SHA-256", b as Uint8Array<ArrayBuffer>),
        ),
        (x) => x.toString(16).padStart(2, "0"),
      ).join("");
    const index = {
      format: "amaut-checkpoint",
      version: 1,
      meta: meta({ epoch: 4 }),
      data: {
        file: "old.bin",
        byteOrder: "little-endian",
        byteLength: 24,
        sha256: await sha(bytes),
      },
      groups: ["params", "buffers"],
      tensors: [
        {
          group: "params",
          name: "w",
          dtype: "float32",
          shape: [2, 2],
          offset: 0,
          byteLength: 16,
        },
        {
          group: "buffers",
          name: "n",
          dtype: "int32",
          shape: [2],
          offset: 16,
          byteLength: 8,
        },
      ],
    };
    await Deno.writeFile(join(dir, "old.bin"), bytes);
    await Deno.writeTextFile(join(dir, "old.json"), JSON.stringify(index));
    const all = await loadCheckpoint(tf, dir, "old");
    assert.equal(all.meta.epoch, 4);
    assert.deepEqual(await valuesOf(all.groups), {
      "params/w": [1.5, -2, 3, 0.25],
      "buffers/n": [7, -8],
    });
    assert.equal(all.groups.buffers.get("n")!.dtype, "int32");
    disposeGroups(all.groups);
    const part = await loadCheckpoint(tf, dir, "old", { groups: ["buffers"] });
    assert.deepEqual(await valuesOf(part.groups), { "buffers/n": [7, -8] });
    disposeGroups(part.groups);
    bytes[20] ^= 1;
    await Deno.writeFile(join(dir, "old.bin"), bytes);
    await assert.rejects(
      () => loadCheckpoint(tf, dir, "old", { groups: ["params"] }),
      {
        message: `Cannot load checkpoint "${join(dir, "old")}": the data file ${
          join(dir, "old.bin")
        } does not match its index (SHA-256 differs); it was probably overwritten by another save, or damaged`,
      },
    );
    index.version = 3;
    await Deno.writeTextFile(join(dir, "old.json"), JSON.stringify(index));
    await assert.rejects(
      () => loadCheckpoint(tf, dir, "old"),
      /: the index file .*old\.json has format version 3; this program reads versions 1 and 2 \(update it to load this checkpoint\)$/,
    );
  });
});

Deno.test("saving with alsoAs links best to last's data; a later save of last leaves best's values intact", async () => {
  await withDir(async (dir) => {
    const epoch1 = threeGroups();
    const report = await saveCheckpoint(
      dir,
      "last",
      meta({ epoch: 1 }),
      epoch1,
      {
        alsoAs: ["best"],
      },
    );
    assert.deepEqual(report.copied, []);
    assert.deepEqual(await names(dir), [
      "best.bin",
      "best.json",
      "last.bin",
      "last.json",
    ]);
    const [a, b] = await Promise.all([
      Deno.stat(join(dir, "best.bin")),
      Deno.stat(join(dir, "last.bin")),
    ]);
    if (Deno.build.os !== "windows") {
      assert.equal(a.ino, b.ino, "best.bin is a hard link to last.bin");
      assert.equal(a.nlink, 2);
    }
    const bestIndex = JSON.parse(
      await Deno.readTextFile(join(dir, "best.json")),
    );
    const lastIndex = JSON.parse(
      await Deno.readTextFile(join(dir, "last.json")),
    );
    assert.equal(bestIndex.data.file, "best.bin");
    assert.deepEqual({
      ...bestIndex,
      data: { ...bestIndex.data, file: "last.bin" },
    }, lastIndex);

    // Epoch 2 did not improve: only last is saved.
    const epoch2 = {
      params: new Map<string, tf.Tensor>([
        ["w", tf.fill([10, 100], 9)],
        ["e", tf.zeros([0, 2])],
      ]),
      buffers: new Map<string, tf.Tensor>([["n", tf.fill([10], 3, "int32")]]),
      optimizer: new Map<string, tf.Tensor>([["w", tf.fill([600], 1)]]),
    };
    await saveCheckpoint(dir, "last", meta({ epoch: 2 }), epoch2);
    if (Deno.build.os !== "windows") {
      assert.equal((await Deno.stat(join(dir, "best.bin"))).nlink, 1);
    }
    const best = await loadCheckpoint(tf, dir, "best");
    const last = await loadCheckpoint(tf, dir, "last");
    assert.equal(best.meta.epoch, 1);
    assert.equal(last.meta.epoch, 2);
    assert.deepEqual(await valuesOf(best.groups), await valuesOf(epoch1));
    assert.deepEqual(await valuesOf(last.groups), await valuesOf(epoch2));
    assert.deepEqual(await names(dir), [
      "best.bin",
      "best.json",
      "last.bin",
      "last.json",
    ]);
    for (const g of [epoch1, epoch2, best.groups, last.groups]) {
      disposeGroups(g);
    }
  });
});

Deno.test("saving with alsoAs copies the data file where hard links fail, and says why", async () => {
  await withDir(async (dir) => {
    const groups = threeGroups();
    const link = Deno.link;
    Deno.link = () =>
      Promise.reject(new Deno.errors.NotSupported("hard links unsupported"));
    let report;
    try {
      report = await saveCheckpoint(dir, "last", meta(), groups, {
        alsoAs: ["best"],
      });
    } finally {
      Deno.link = link;
    }
    assert.deepEqual(report.copied, [
      { name: "best", reason: "hard links unsupported" },
    ]);
    const [a, b] = await Promise.all([
      Deno.readFile(join(dir, "best.bin")),
      Deno.readFile(join(dir, "last.bin")),
    ]);
    assert.deepEqual(a, b);
    if (Deno.build.os !== "windows") {
      assert.equal((await Deno.stat(join(dir, "best.bin"))).nlink, 1);
    }
    const best = await loadCheckpoint(tf, dir, "best");
    assert.deepEqual(await valuesOf(best.groups), await valuesOf(groups));
    assert.deepEqual(await names(dir), [
      "best.bin",
      "best.json",
      "last.bin",
      "last.json",
    ]);
    disposeGroups(best.groups);
    disposeGroups(groups);
  });
});

Deno.test("a snapshot keeps the values it was taken with; a failed write leaves the old checkpoint and no temp file", async () => {
  await withDir(async (dir) => {
    const v = tf.variable(tf.tensor1d([1, 2, 3]));
    await saveCheckpoint(dir, "last", meta({ epoch: 1 }), {
      params: new Map<string, tf.Tensor>([["v", v]]),
    });
    const snapshot = await snapshotCheckpoint(dir, "last", meta({ epoch: 2 }), {
      params: new Map<string, tf.Tensor>([["v", v]]),
    });
    v.assign(tf.tensor1d([7, 7, 7]));
    v.dispose();
    const open = Deno.open;
    Deno.open = ((path: string | URL, options?: Deno.OpenOptions) => {
      if (String(path).endsWith(".tmp")) {
        return Promise.reject(new Deno.errors.PermissionDenied("disk says no"));
      }
      return open(path, options);
    }) as typeof Deno.open;
    try {
      await assert.rejects(() => writeCheckpoint(snapshot), /disk says no/);
    } finally {
      Deno.open = open;
    }
    assert.deepEqual(await names(dir), ["last.bin", "last.json"]);
    const old = await loadCheckpoint(tf, dir, "last");
    assert.equal(old.meta.epoch, 1);
    disposeGroups(old.groups);
    await writeCheckpoint(snapshot);
    const loaded = await loadCheckpoint(tf, dir, "last");
    assert.equal(loaded.meta.epoch, 2);
    assert.deepEqual(await valuesOf(loaded.groups), { "params/v": [1, 2, 3] });
    disposeGroups(loaded.groups);
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
