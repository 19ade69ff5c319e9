/**
 * Training checkpoints: named groups of tensors (parameters, BatchNorm
 * buffers, optimizer state) plus JSON metadata (epoch, spec hash, model
 * signature, RNG state, metrics), stored as two files:
 *
 * - `<dir>/<name>.bin`: the tensor values group by group (each group's
 *   tensors back to back, so a group is one contiguous byte range),
 *   little-endian, 4 bytes per element (float32, or int32 for int32 tensors);
 * - `<dir>/<name>.json` (format `amaut-checkpoint`, version 2): the metadata,
 *   an index of the tensors (group, name, dtype, shape, byte offset and
 *   length), the data file's name and length, and the SHA-256 of every
 *   *piece*: each group's bytes cut into pieces of at most
 *   {@linkcode PIECE_BYTES} (64 MiB), hashed concurrently on save (on Deno's
 *   thread pool, while the file is written) and verified concurrently on
 *   load.
 *
 * {@linkcode loadCheckpoint} can load some groups only (`{ groups: ["params",
 * "buffers"] }`): it then reads only their byte ranges of the data file and
 * verifies only their pieces, skipping e.g. the momentum (half the bytes).
 * Version-1 checkpoints (one SHA-256 over the whole data file, written before
 * version 2) still load: their whole file is read and verified, as before.
 *
 * Each file is written atomically (temporary file + rename), the data file
 * first, so a reader never sees an index pointing at a missing file. The
 * checksums in the index catch the one remaining window, a crash between
 * the two renames while replacing an older checkpoint: the old index then
 * refuses the new data instead of loading mismatched values.
 *
 * One save can put the same data under several names
 * ({@linkcode writeCheckpoint}'s `alsoAs`, e.g. `best` beside `last`): the
 * data file is written once and each other name gets a hard link to it
 * (linked to a temporary name, renamed over `<other>.bin`, then its own
 * index), or a copy where the file system refuses hard links. A later save
 * renames a new file over `<name>.bin`, so the linked copy keeps its values.
 *
 * Saving is two steps, so that a caller can train on while a checkpoint is
 * written: {@linkcode snapshotCheckpoint} copies the tensors' values to the
 * host (after it, the tensors may change), {@linkcode writeCheckpoint}
 * hashes and writes them. {@linkcode saveCheckpoint} does both.
 *
 * @module
 */
import { HOST_LITTLE_ENDIAN } from "../lib/endian.ts";
import type { Tensor } from "@tensorflow/tfjs";
import * as z from "zod";
import { basename, dirname, join } from "node:path";
import type { Tf } from "../pipeline/types.ts";
import { writeJsonAtomic } from "../pipeline/atomic.ts";

/** Metadata stored with a checkpoint. Extra keys must be JSON-serialisable. */
export interface CheckpointMeta {
  /** Last completed epoch, 0-based. */
  readonly epoch: number;
  /** Hash of the spec the run was started with. */
  readonly specHash: string;
  /** The model's {@linkcode modelSignature} (parameter names and shapes). */
  readonly modelSignature: string;
  /** State of the run's random stream (`Rng.state()`: four unsigned 32-bit words). */
  readonly rngState?: readonly number[];
  /** Metrics so far (e.g. best validation accuracy). */
  readonly metrics?: Record<string, unknown>;
  readonly [key: string]: unknown;
}

/** Largest piece of a group's bytes one SHA-256 of the index covers (64 MiB). */
export const PIECE_BYTES = 64 * 1024 * 1024;

const FORMAT = "amaut-checkpoint";
const VERSIONS = [1, 2] as const;
const BYTES_PER_ELEMENT = 4;
const DTYPES = ["float32", "int32"] as const;
type StoredDtype = typeof DTYPES[number];
/**
 * Pieces hashed at once: each digest runs on Deno's thread pool and holds a
 * copy of its piece, so this bounds the extra memory (≤ 8 × 64 MiB).
 */
const HASH_CONCURRENCY = Math.max(
  2,
  Math.min(8, navigator.hardwareConcurrency ?? 2),
);

const MetaSchema = z.looseObject({
  epoch: z.int().min(0),
  specHash: z.string(),
  modelSignature: z.string(),
  rngState: z.array(z.number()).optional(),
  metrics: z.record(z.string(), z.unknown()).optional(),
});

const Sha256 = z.string().regex(/^[0-9a-f]{64}$/);

const TensorEntry = z.object({
  group: z.string(),
  name: z.string(),
  dtype: z.enum(DTYPES),
  shape: z.array(z.int().min(0)),
  offset: z.int().min(0),
  byteLength: z.int().min(0),
});
type IndexEntry = z.infer<typeof TensorEntry>;

/** What both index versions hold besides their checksums. */
const IndexFields = {
  format: z.literal(FORMAT),
  meta: MetaSchema,
  groups: z.array(z.string()),
  tensors: z.array(TensorEntry),
};

/** The data file's description in both index versions. */
const DataFields = {
  file: z.string(),
  byteOrder: z.literal("little-endian"),
  byteLength: z.int().min(0),
};

/** Version 1: one SHA-256 over the whole data file. */
const IndexV1Schema = z.object({
  ...IndexFields,
  version: z.literal(1),
  data: z.object({ ...DataFields, sha256: Sha256 }),
});

const PieceSchema = z.object({
  group: z.string(),
  offset: z.int().min(0),
  byteLength: z.int().min(1),
  sha256: Sha256,
});
type Piece = z.infer<typeof PieceSchema>;

/** Version 2: a SHA-256 per piece of each group. */
const IndexV2Schema = z.object({
  ...IndexFields,
  version: z.literal(2),
  data: z.object(DataFields),
  pieces: z.array(PieceSchema),
});
type IndexV2 = z.infer<typeof IndexV2Schema>;

const IndexSchema = z.discriminatedUnion("version", [
  IndexV1Schema,
  IndexV2Schema,
]);

/** Reverses the byte order of every 4-byte word, in place (big-endian hosts only). */
function swap32(bytes: Uint8Array): void {
  for (let i = 0; i + 3 < bytes.length; i += 4) {
    const a = bytes[i];
    const b = bytes[i + 1];
    bytes[i] = bytes[i + 3];
    bytes[i + 1] = bytes[i + 2];
    bytes[i + 2] = b;
    bytes[i + 3] = a;
  }
}

async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(
    await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>),
  );
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Runs at most `max` of the given tasks at once (a slot passes straight to
 * the next waiting task).
 */
function limiter(
  max: number,
): <T>(task: () => Promise<T>) => Promise<T> {
  let active = 0;
  const waiting: (() => void)[] = [];
  return async (task) => {
    if (active < max) active++;
    else await new Promise<void>((resolve) => waiting.push(resolve));
    try {
      return await task();
    } finally {
      const next = waiting.shift();
      if (next) next();
      else active--;
    }
  };
}

/**
 * Starts a task now and returns its promise with a no-op rejection handler
 * attached, so that a failure is reported where the promise is awaited
 * (later), not as an unhandled rejection while other work is awaited.
 */
function started<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => {});
  return promise;
}

function checkName(name: string): void {
  if (name === "" || name === "." || name === ".." || /[\\/]/.test(name)) {
    throw new Error(
      `Cannot use checkpoint name "${name}": it must be a plain file name without a folder`,
    );
  }
}

function shapeText(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

function sizeOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function tempName(path: string): string {
  return join(
    dirname(path),
    `.${basename(path)}.${crypto.randomUUID().slice(0, 8)}.tmp`,
  );
}

/** Writes all of `bytes` at the file's position (a write may take part of them). */
async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    done += await file.write(bytes.subarray(done));
  }
}

/** Reads `into.length` bytes from byte `at`; false when the file ends first. */
async function readAt(
  file: Deno.FsFile,
  at: number,
  into: Uint8Array,
): Promise<boolean> {
  await file.seek(at, Deno.SeekMode.Start);
  let done = 0;
  while (done < into.length) {
    const n = await file.read(into.subarray(done));
    if (n === null || n === 0) return false;
    done += n;
  }
  return true;
}

/**
 * A checkpoint's values copied to the host by
 * {@linkcode snapshotCheckpoint}, ready for {@linkcode writeCheckpoint}:
 * independent of the tensors it was taken from.
 */
export interface CheckpointSnapshot {
  /** Folder of the checkpoint. */
  readonly dir: string;
  /** File stem, e.g. `last`. */
  readonly name: string;
  /** The metadata, as a JSON copy taken with the values. */
  readonly meta: CheckpointMeta;
  /** Group names in the order saved (empty groups included). */
  readonly groups: readonly string[];
  /** The index entries (byte offsets in the data file). */
  readonly tensors: readonly Readonly<IndexEntry>[];
  /** Each non-empty group's bytes (little-endian) and where they start in the data file. */
  readonly data: readonly {
    readonly group: string;
    readonly offset: number;
    readonly bytes: Uint8Array;
  }[];
  /** Length of the data file in bytes. */
  readonly byteLength: number;
}

/**
 * Copies a checkpoint's tensor values to the host: one buffer per group (the
 * group's bytes as the data file will hold them). Reads values with
 * `await t.data()` one tensor at a time (works on WebGPU); once it resolves
 * the tensors may change or be disposed. Validates the name and the meta.
 *
 * @param dir Folder the checkpoint will be written to.
 * @param name File stem (no folder part), e.g. `last`.
 * @param meta Metadata; must be JSON-serialisable (copied now, as
 *   `JSON.stringify` writes it: non-finite numbers become `null`).
 * @param groups Named groups of named tensors, e.g.
 *   `{ params, buffers, optimizer }`; float32 or int32 only.
 * @throws {Error} On an invalid name or meta, or a tensor of another dtype.
 */
export async function snapshotCheckpoint(
  dir: string,
  name: string,
  meta: CheckpointMeta,
  groups: Readonly<Record<string, ReadonlyMap<string, Tensor>>>,
): Promise<CheckpointSnapshot> {
  checkName(name);
  const parsedMeta = MetaSchema.safeParse(meta);
  if (!parsedMeta.success) {
    const issue = parsedMeta.error.issues[0];
    throw new Error(
      `Cannot save checkpoint "${join(dir, name)}": the meta is invalid at ${
        issue.path.join(".")
      }: ${issue.message}`,
    );
  }
  const tensors: IndexEntry[] = [];
  const layout: { group: string; offset: number; sources: Tensor[] }[] = [];
  let offset = 0;
  for (const [group, map] of Object.entries(groups)) {
    const entry = { group, offset, sources: [] as Tensor[] };
    for (const [tensorName, tensor] of map) {
      if (!(DTYPES as readonly string[]).includes(tensor.dtype)) {
        throw new Error(
          `Cannot save checkpoint "${
            join(dir, name)
          }": tensor ${group}/${tensorName} has dtype ${tensor.dtype}, only float32 and int32 are stored`,
        );
      }
      const byteLength = tensor.size * BYTES_PER_ELEMENT;
      tensors.push({
        group,
        name: tensorName,
        dtype: tensor.dtype as StoredDtype,
        shape: [...tensor.shape],
        offset,
        byteLength,
      });
      entry.sources.push(tensor);
      offset += byteLength;
    }
    layout.push(entry);
  }

  const data: { group: string; offset: number; bytes: Uint8Array }[] = [];
  let at = 0;
  for (const { group, offset: start, sources } of layout) {
    const entries = tensors.slice(at, at + sources.length);
    at += sources.length;
    const end = entries.length > 0
      ? entries[entries.length - 1].offset +
        entries[entries.length - 1].byteLength
      : start;
    if (end === start) continue;
    const bytes = new Uint8Array(end - start);
    for (let i = 0; i < sources.length; i++) {
      const values = await sources[i].data();
      const entry = entries[i];
      if (values.byteLength !== entry.byteLength) {
        throw new Error(
          `Cannot save checkpoint "${
            join(dir, name)
          }": tensor ${entry.group}/${entry.name} gave ${values.byteLength} bytes, expected ${entry.byteLength}`,
        );
      }
      bytes.set(
        new Uint8Array(values.buffer, values.byteOffset, values.byteLength),
        entry.offset - start,
      );
    }
    if (!HOST_LITTLE_ENDIAN) swap32(bytes);
    data.push({ group, offset: start, bytes });
  }
  return {
    dir,
    name,
    meta: JSON.parse(JSON.stringify(parsedMeta.data)),
    groups: Object.keys(groups),
    tensors,
    data,
    byteLength: offset,
  };
}

/** What {@linkcode writeCheckpoint} did for each name of `alsoAs`. */
export interface CheckpointWriteReport {
  /**
   * The names whose data file is a copy, not a hard link, with the reason
   * the link failed (e.g. a file system without hard links).
   */
  readonly copied: readonly { name: string; reason: string }[];
}

/**
 * Writes a snapshot as `<dir>/<name>.bin` and `<dir>/<name>.json`, each
 * atomically, the data file first; an existing checkpoint of that name is
 * replaced whole. Hashes the pieces concurrently while the data file is
 * written. Creates `dir` if needed.
 *
 * With `alsoAs`, the same checkpoint is first put under each of those names
 * too (in order, before `name`): `<other>.bin` becomes a hard link to the
 * data file (a copy where hard links fail), renamed into place, then
 * `<other>.json` is written, the same index naming its own data file.
 *
 * @param snapshot From {@linkcode snapshotCheckpoint}.
 * @param options `alsoAs`: other names (file stems) for the same data;
 *   `pieceBytes`: bytes per checksummed piece (default
 *   {@linkcode PIECE_BYTES}; a positive multiple of 4).
 * @returns Which of `alsoAs` got a copy instead of a hard link, and why.
 * @throws {Error} On a bad name in `alsoAs`, or when a file cannot be
 *   written (the error of the file system; temporary files are removed).
 */
export async function writeCheckpoint(
  snapshot: CheckpointSnapshot,
  options: { alsoAs?: readonly string[]; pieceBytes?: number } = {},
): Promise<CheckpointWriteReport> {
  const { dir, name } = snapshot;
  const pieceBytes = options.pieceBytes ?? PIECE_BYTES;
  if (!Number.isInteger(pieceBytes) || pieceBytes <= 0 || pieceBytes % 4) {
    throw new Error(
      `Cannot save checkpoint "${
        join(dir, name)
      }" with pieces of ${pieceBytes} bytes: use a positive multiple of 4`,
    );
  }
  const others = options.alsoAs ?? [];
  for (const other of others) {
    checkName(other);
    if (other === name) {
      throw new Error(
        `Cannot save checkpoint "${
          join(dir, name)
        }" also as "${other}": that is its own name`,
      );
    }
  }
  await Deno.mkdir(dir, { recursive: true });
  const hash = limiter(HASH_CONCURRENCY);
  const hashes: Promise<Piece>[] = [];
  for (const { group, offset, bytes } of snapshot.data) {
    for (let at = 0; at < bytes.length; at += pieceBytes) {
      const piece = bytes.subarray(
        at,
        Math.min(bytes.length, at + pieceBytes),
      );
      hashes.push(started(hash(async () => ({
        group,
        offset: offset + at,
        byteLength: piece.byteLength,
        sha256: await sha256Hex(piece),
      }))));
    }
  }
  const dataPath = join(dir, `${name}.bin`);
  const tmp = tempName(dataPath);
  const copied: { name: string; reason: string }[] = [];
  try {
    const file = await Deno.open(tmp, {
      write: true,
      create: true,
      truncate: true,
    });
    try {
      for (const { bytes } of snapshot.data) await writeAll(file, bytes);
    } finally {
      file.close();
    }
    const index: IndexV2 = {
      format: FORMAT,
      version: 2,
      meta: snapshot.meta as IndexV2["meta"],
      data: {
        file: `${name}.bin`,
        byteOrder: "little-endian",
        byteLength: snapshot.byteLength,
      },
      groups: [...snapshot.groups],
      pieces: await Promise.all(hashes),
      tensors: snapshot.tensors.map((t) => ({ ...t, shape: [...t.shape] })),
    };
    for (const other of others) {
      const reason = await placeLinked(tmp, join(dir, `${other}.bin`));
      if (reason !== undefined) copied.push({ name: other, reason });
      await writeJsonAtomic(join(dir, `${other}.json`), {
        ...index,
        data: { ...index.data, file: `${other}.bin` },
      });
    }
    await Deno.rename(tmp, dataPath);
    await writeJsonAtomic(join(dir, `${name}.json`), index);
  } catch (error) {
    await Deno.remove(tmp).catch(() => {});
    throw error;
  }
  return { copied };
}

/**
 * Puts a hard link to `source` at `target` (via a temporary name and a
 * rename, so `target` is replaced atomically), or a copy where the link
 * fails.
 *
 * @returns Undefined when linked, else why the link failed.
 */
async function placeLinked(
  source: string,
  target: string,
): Promise<string | undefined> {
  const tmp = tempName(target);
  let reason: string | undefined;
  try {
    try {
      await Deno.link(source, tmp);
    } catch (error) {
      reason = (error as Error).message;
      await Deno.copyFile(source, tmp);
    }
    await Deno.rename(tmp, target);
  } catch (error) {
    await Deno.remove(tmp).catch(() => {});
    throw error;
  }
  return reason;
}

/**
 * Saves a checkpoint as `<dir>/<name>.bin` and `<dir>/<name>.json`: a
 * {@linkcode snapshotCheckpoint} then {@linkcode writeCheckpoint} (see
 * there). The tensors stay owned by the caller.
 *
 * @param dir Folder for the two files.
 * @param name File stem (no folder part), e.g. `last` or `best`.
 * @param meta Metadata; must be JSON-serialisable (non-finite numbers in
 *   extra keys or metrics become `null`, as in `JSON.stringify`).
 * @param groups Named groups of named tensors, e.g.
 *   `{ params, buffers, optimizer }`; float32 or int32 only.
 * @param options As {@linkcode writeCheckpoint}'s: `alsoAs` (other names for
 *   the same data, hard links), `pieceBytes`.
 * @throws {Error} On an invalid name or meta, or a tensor of another dtype.
 */
export async function saveCheckpoint(
  dir: string,
  name: string,
  meta: CheckpointMeta,
  groups: Readonly<Record<string, ReadonlyMap<string, Tensor>>>,
  options: { alsoAs?: readonly string[]; pieceBytes?: number } = {},
): Promise<CheckpointWriteReport> {
  return await writeCheckpoint(
    await snapshotCheckpoint(dir, name, meta, groups),
    options,
  );
}

/** Options of {@linkcode loadCheckpoint}. */
export interface CheckpointLoadOptions {
  /**
   * Load only these groups (e.g. `["params", "buffers"]`): only their bytes
   * are read and verified (all of a version-1 file). Default: every group.
   */
  readonly groups?: readonly string[];
}

/**
 * Loads a checkpoint written by {@linkcode saveCheckpoint} (index version 2,
 * or version 1 of older runs). The returned tensors are new and owned by the
 * caller.
 *
 * @param tf The TensorFlow.js namespace to create the tensors with.
 * @param dir Folder of the checkpoint.
 * @param name File stem, e.g. `last`.
 * @param options `groups`: load only these groups (see {@linkcode CheckpointLoadOptions}).
 * @returns The metadata and the (requested) groups of tensors, in the order
 *   saved.
 * @throws {Error} Naming the checkpoint and the file, when the index or data
 *   file is missing, malformed, truncated or does not match its index, or a
 *   requested group is not in it.
 */
export async function loadCheckpoint(
  tf: Tf,
  dir: string,
  name: string,
  options: CheckpointLoadOptions = {},
): Promise<
  { meta: CheckpointMeta; groups: Record<string, Map<string, Tensor>> }
> {
  checkName(name);
  const base = join(dir, name);
  const fail: (why: string) => never = (why) => {
    throw new Error(`Cannot load checkpoint "${base}": ${why}`);
  };
  const indexPath = `${base}.json`;
  const dataPath = join(dir, `${name}.bin`);

  let text: string;
  try {
    text = await Deno.readTextFile(indexPath);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      fail(`the index file ${indexPath} is missing`);
    }
    throw error;
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    fail(
      `the index file ${indexPath} is not valid JSON (${
        (error as Error).message
      })`,
    );
  }
  const version = (raw as { version?: unknown } | null)?.version;
  if (
    typeof version === "number" &&
    !(VERSIONS as readonly number[]).includes(version)
  ) {
    fail(
      `the index file ${indexPath} has format version ${version}; this program reads versions ${
        VERSIONS.join(" and ")
      } (update it to load this checkpoint)`,
    );
  }
  const parsed = IndexSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue.path.length > 0 ? ` at ${issue.path.join(".")}` : "";
    fail(`the index file ${indexPath} is malformed${where}: ${issue.message}`);
  }
  const index = parsed.data;

  const wanted = options.groups ?? index.groups;
  for (const group of wanted) {
    if (!index.groups.includes(group)) {
      fail(
        `it has no group "${group}" (it has: ${
          index.groups.join(", ") || "none"
        }); load one of those`,
      );
    }
  }
  const wantedSet = new Set(wanted);

  const listed = new Set(index.groups);
  const seen = new Set<string>();
  for (const entry of index.tensors) {
    const label = `${entry.group}/${entry.name}`;
    if (!listed.has(entry.group)) {
      fail(`tensor ${label} belongs to no listed group`);
    }
    if (seen.has(label)) fail(`tensor ${label} is listed twice`);
    seen.add(label);
    const expected = sizeOf(entry.shape) * BYTES_PER_ELEMENT;
    if (entry.byteLength !== expected) {
      fail(
        `tensor ${label} of shape ${
          shapeText(entry.shape)
        } needs ${expected} bytes, the index says ${entry.byteLength}`,
      );
    }
    if (
      entry.offset % BYTES_PER_ELEMENT !== 0 ||
      entry.offset + entry.byteLength > index.data.byteLength
    ) {
      fail(
        `tensor ${label} lies outside the data file (offset ${entry.offset}, ${entry.byteLength} bytes)`,
      );
    }
  }

  // Each wanted group's bytes, verified: a buffer and its offset in the file.
  const bytesOf = index.version === 1
    ? await readWholeV1(index, dataPath, wantedSet, fail)
    : await readGroupsV2(index, dataPath, wantedSet, fail);

  const out: Record<string, Map<string, Tensor>> = {};
  for (const group of index.groups) {
    if (wantedSet.has(group)) out[group] = new Map();
  }
  const created: Tensor[] = [];
  try {
    for (const entry of index.tensors) {
      if (!wantedSet.has(entry.group)) continue;
      const { bytes, offset, shared } = bytesOf.get(entry.group)!;
      const start = bytes.byteOffset + entry.offset - offset;
      const count = entry.byteLength / BYTES_PER_ELEMENT;
      // A version-2 group buffer holds that group only: its tensors are
      // views of it. A version-1 buffer is the whole file: copy out.
      const buffer = shared && count > 0
        ? bytes.buffer
        : bytes.buffer.slice(start, start + entry.byteLength);
      const at = shared && count > 0 ? start : 0;
      const values = entry.dtype === "float32"
        ? new Float32Array(buffer, at, count)
        : new Int32Array(buffer, at, count);
      const tensor = tf.tensor(values, entry.shape, entry.dtype);
      created.push(tensor);
      out[entry.group].set(entry.name, tensor);
    }
  } catch (error) {
    tf.dispose(created);
    throw error;
  }
  return { meta: index.meta as CheckpointMeta, groups: out };
}

type GroupBytes = Map<
  string,
  { bytes: Uint8Array; offset: number; shared: boolean }
>;

async function openData(
  dataPath: string,
  fail: (why: string) => never,
): Promise<Deno.FsFile> {
  try {
    return await Deno.open(dataPath, { read: true });
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      fail(`the data file ${dataPath} is missing`);
    }
    throw error;
  }
}

function mismatch(dataPath: string, where: string): string {
  return `the data file ${dataPath} does not match its index (SHA-256 differs)${where}; it was probably overwritten by another save, or damaged`;
}

/** Version 1: reads and verifies the whole file; every group is a view of it. */
async function readWholeV1(
  index: z.infer<typeof IndexV1Schema>,
  dataPath: string,
  wanted: ReadonlySet<string>,
  fail: (why: string) => never,
): Promise<GroupBytes> {
  const file = await openData(dataPath, fail);
  let bytes: Uint8Array;
  try {
    const size = (await file.stat()).size;
    if (size !== index.data.byteLength) {
      fail(
        `the data file holds ${size} bytes, the index expects ${index.data.byteLength}`,
      );
    }
    bytes = new Uint8Array(size);
    if (!(await readAt(file, 0, bytes))) {
      fail(`the data file ${dataPath} ended early (it was truncated)`);
    }
  } finally {
    file.close();
  }
  if ((await sha256Hex(bytes)) !== index.data.sha256) {
    fail(mismatch(dataPath, ""));
  }
  if (!HOST_LITTLE_ENDIAN) swap32(bytes);
  const out: GroupBytes = new Map();
  for (const group of wanted) {
    out.set(group, { bytes, offset: 0, shared: false });
  }
  return out;
}

/**
 * Version 2: reads each wanted group's byte range (its pieces, which must
 * cover its tensors) and verifies every piece, hashing while reading on.
 */
async function readGroupsV2(
  index: IndexV2,
  dataPath: string,
  wanted: ReadonlySet<string>,
  fail: (why: string) => never,
): Promise<GroupBytes> {
  // Each wanted group's range: its pieces back to back.
  const ranges = new Map<
    string,
    { start: number; end: number; pieces: Piece[] }
  >();
  for (const group of wanted) {
    const pieces = index.pieces.filter((p) => p.group === group)
      .sort((a, b) => a.offset - b.offset);
    const start = pieces.length > 0 ? pieces[0].offset : 0;
    let end = start;
    for (const p of pieces) {
      if (p.offset !== end || p.offset % BYTES_PER_ELEMENT !== 0) {
        fail(
          `the pieces of group "${group}" are not contiguous (one starts at byte ${p.offset}, expected ${end})`,
        );
      }
      end += p.byteLength;
    }
    if (end > index.data.byteLength) {
      fail(
        `the pieces of group "${group}" end at byte ${end}, beyond the data file's ${index.data.byteLength}`,
      );
    }
    for (const t of index.tensors) {
      if (
        t.group === group && t.byteLength > 0 &&
        (t.offset < start || t.offset + t.byteLength > end)
      ) {
        fail(
          `tensor ${group}/${t.name} lies outside the checksummed bytes of its group (offset ${t.offset}, ${t.byteLength} bytes)`,
        );
      }
    }
    ranges.set(group, { start, end, pieces });
  }

  const out: GroupBytes = new Map();
  const hash = limiter(HASH_CONCURRENCY);
  const checks: Promise<Piece | undefined>[] = [];
  const file = await openData(dataPath, fail);
  try {
    const size = (await file.stat()).size;
    if (size !== index.data.byteLength) {
      fail(
        `the data file holds ${size} bytes, the index expects ${index.data.byteLength}`,
      );
    }
    for (const [group, { start, end, pieces }] of ranges) {
      const bytes = new Uint8Array(end - start);
      for (const p of pieces) {
        const piece = bytes.subarray(
          p.offset - start,
          p.offset - start + p.byteLength,
        );
        if (!(await readAt(file, p.offset, piece))) {
          fail(`the data file ${dataPath} ended early (it was truncated)`);
        }
        checks.push(
          started(
            hash(async () =>
              (await sha256Hex(piece)) === p.sha256 ? undefined : p
            ),
          ),
        );
      }
      out.set(group, { bytes, offset: start, shared: true });
    }
  } finally {
    file.close();
  }
  const bad = (await Promise.all(checks)).find((p) => p !== undefined);
  if (bad) {
    fail(
      mismatch(
        dataPath,
        ` in group "${bad.group}", bytes ${bad.offset}–${
          bad.offset + bad.byteLength
        }`,
      ),
    );
  }
  if (!HOST_LITTLE_ENDIAN) {
    for (const { bytes } of out.values()) {
      swap32(bytes);
    }
  }
  return out;
}

/**
 * Stable signature of named variables: their names and shapes, sorted by
 * name (code-unit order), as JSON `[["name", [d0, d1, …]], …]`.
 *
 * @param variables Variables (or anything with a shape) by name.
 */
export function modelSignature(
  variables: ReadonlyMap<string, { shape: readonly number[] }>,
): string {
  const entries = [...variables].map(([name, v]) =>
    [name, [...v.shape]] as const
  );
  entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return JSON.stringify(entries);
}

function parseSignature(signature: string): Map<string, number[]> | undefined {
  try {
    const value: unknown = JSON.parse(signature);
    if (!Array.isArray(value)) return undefined;
    const out = new Map<string, number[]>();
    for (const item of value) {
      if (
        !Array.isArray(item) || item.length !== 2 ||
        typeof item[0] !== "string" ||
        !Array.isArray(item[1]) || !item[1].every((d: unknown) =>
          typeof d === "number"
        )
      ) return undefined;
      out.set(item[0], item[1]);
    }
    return out;
  } catch {
    return undefined;
  }
}

function clip(text: string, max = 120): string {
  return text.length <= max ? text : `${text.slice(0, max)}…`;
}

/** Describes how two model signatures differ: the first differing parameter in name order, and the count. */
function describeModelDifference(saved: string, wanted: string): string {
  const a = parseSignature(saved);
  const b = parseSignature(wanted);
  if (!a || !b) {
    return `its model signature ${
      JSON.stringify(clip(saved))
    } differs from this model's ${JSON.stringify(clip(wanted))}`;
  }
  const names = [...new Set([...a.keys(), ...b.keys()])].sort((
    x,
    y,
  ) => (x < y ? -1 : x > y ? 1 : 0));
  const differences: string[] = [];
  for (const name of names) {
    const s = a.get(name);
    const w = b.get(name);
    if (!s) {
      differences.push(
        `parameter "${name}" (shape ${
          shapeText(w!)
        }) is missing from the checkpoint`,
      );
    } else if (!w) {
      differences.push(
        `the checkpoint has parameter "${name}" (shape ${
          shapeText(s)
        }) that this model lacks`,
      );
    } else if (shapeText(s) !== shapeText(w)) {
      differences.push(
        `parameter "${name}" has shape ${shapeText(s)} in the checkpoint, ${
          shapeText(w)
        } in this model`,
      );
    }
  }
  if (differences.length === 0) {
    // Same names and shapes, but the strings differ (e.g. formatting): compare as equal.
    return "";
  }
  const more = differences.length > 1
    ? ` (${differences.length} parameters differ in all)`
    : "";
  return `${differences[0]}${more}`;
}

/**
 * Checks that a checkpoint fits this run before resuming from it.
 *
 * @param meta The checkpoint's metadata.
 * @param expected This run's spec hash and model signature; `allowSpecChange`
 *   accepts another spec hash (the model shape must still match).
 * @throws {Error} Saying exactly what differs: another spec (both hashes),
 *   and/or another model (the first differing parameter in name order with
 *   both shapes, or the missing or extra parameter, and how many differ).
 */
export function checkCompatible(
  meta: CheckpointMeta,
  expected: {
    specHash: string;
    modelSignature: string;
    allowSpecChange?: boolean;
  },
): void {
  const reasons: string[] = [];
  if (meta.specHash !== expected.specHash && !expected.allowSpecChange) {
    reasons.push(
      `was made for another spec (spec hash ${meta.specHash} in the checkpoint, ${expected.specHash} in this run)`,
    );
  }
  if (meta.modelSignature !== expected.modelSignature) {
    const difference = describeModelDifference(
      meta.modelSignature,
      expected.modelSignature,
    );
    if (difference) reasons.push(`holds another model: ${difference}`);
  }
  if (reasons.length > 0) {
    throw new Error(`Cannot use the checkpoint: it ${reasons.join(", and ")}`);
  }
}
