import assert from "node:assert/strict";
import { join } from "node:path";
import { writeFileAtomic, writeJsonAtomic } from "./atomic.ts";

async function names(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) out.push(e.name);
  return out.sort();
}

Deno.test("writeFileAtomic writes text and leaves no temp file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "a.txt");
    await writeFileAtomic(path, "héllo\nworld");
    assert.equal(await Deno.readTextFile(path), "héllo\nworld");
    assert.deepEqual(await names(dir), ["a.txt"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeFileAtomic writes bytes exactly", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "b.bin");
    const bytes = new Uint8Array([0, 1, 2, 255, 128, 10]);
    await writeFileAtomic(path, bytes);
    assert.deepEqual(await Deno.readFile(path), bytes);
    assert.deepEqual(await names(dir), ["b.bin"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeFileAtomic replaces an existing file completely", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "c.txt");
    await Deno.writeTextFile(path, "a much longer old content that must go");
    await writeFileAtomic(path, "new");
    assert.equal(await Deno.readTextFile(path), "new");
    await writeFileAtomic(path, "newer");
    assert.equal(await Deno.readTextFile(path), "newer");
    assert.deepEqual(await names(dir), ["c.txt"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeFileAtomic throws NotFound when the target folder does not exist", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await assert.rejects(
      () => writeFileAtomic(join(dir, "missing", "d.txt"), "x"),
      Deno.errors.NotFound,
    );
    assert.deepEqual(await names(dir), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeFileAtomic removes its temp file when the rename fails", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // The target is a non-empty folder, so renaming a file over it fails
    // after the temp file was written.
    const target = join(dir, "target");
    await Deno.mkdir(target);
    await Deno.writeTextFile(join(target, "keep.txt"), "k");
    await assert.rejects(() => writeFileAtomic(target, "x"));
    assert.deepEqual(await names(dir), ["target"]);
    assert.deepEqual(await names(target), ["keep.txt"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeJsonAtomic writes pretty JSON ending with a newline", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "v.json");
    await writeJsonAtomic(path, { a: 1, b: [true, "x"] });
    assert.equal(
      await Deno.readTextFile(path),
      '{\n  "a": 1,\n  "b": [\n    true,\n    "x"\n  ]\n}\n',
    );
    assert.deepEqual(await names(dir), ["v.json"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
