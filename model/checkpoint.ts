/**
 * Training checkpoints: named groups of tensors (parameters, BatchNorm
 * buffers, optimizer state) plus JSON metadata (epoch, spec hash, model
 * signature, RNG state, metrics), stored as two files:
 *
 * - `<dir>/<name>.bin`: the tensor values back to back, little-endian, 4 bytes
 *   per element (float32, or int32 for int32 tensors);
 * - `<dir>/<name>.json`: the metadata and an index of the tensors (group,
 *   name, dtype, shape, byte offset and length) with the data file's length
 *   and SHA-256.
 *
 * Each file is written atomically (temporary file + rename), the data file
 * first, so a reader never sees an index pointing at a missing file. The
 * checksum in the index catches the one remaining window, a crash between
 * the two renames while replacing an older checkpoint: the old index then
 * refuses the new data instead of loading mismatched values.
 *
 * @module
 */
import type { Tensor } from "@tensorflow/tfjs";
import * as z from "zod";
import { join } from "node:path";
import type { Tf } from "../pipeline/types.ts";
import { writeFileAtomic, writeJsonAtomic } from "../pipeline/atomic.ts";

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

const FORMAT = "amaut-checkpoint";
const VERSION = 1;
const BYTES_PER_ELEMENT = 4;
const DTYPES = ["float32", "int32"] as const;
type StoredDtype = typeof DTYPES[number];

const MetaSchema = z.looseObject({
  epoch: z.int().min(0),
  specHash: z.string(),
  modelSignature: z.string(),
  rngState: z.array(z.number()).optional(),
  metrics: z.record(z.string(), z.unknown()).optional(),
});

const IndexSchema = z.object({
  format: z.literal(FORMAT),
  version: z.literal(VERSION),
  meta: MetaSchema,
  data: z.object({
    file: z.string(),
    byteOrder: z.literal("little-endian"),
    byteLength: z.int().min(0),
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
  }),
  groups: z.array(z.string()),
  tensors: z.array(z.object({
    group: z.string(),
    name: z.string(),
    dtype: z.enum(DTYPES),
    shape: z.array(z.int().min(0)),
    offset: z.int().min(0),
    byteLength: z.int().min(0),
  })),
});
type Index = z.infer<typeof IndexSchema>;
type IndexEntry = Index["tensors"][number];

const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

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

/**
 * Saves a checkpoint as `<dir>/<name>.bin` and `<dir>/<name>.json`, each
 * atomically, the data file first; an existing checkpoint of that name is
 * replaced whole. Creates `dir` if needed. Reads tensor values with
 * `await t.data()` one tensor at a time (works on WebGPU); the tensors stay
 * owned by the caller.
 *
 * @param dir Folder for the two files.
 * @param name File stem (no folder part), e.g. `last` or `best`.
 * @param meta Metadata; must be JSON-serialisable (non-finite numbers in
 *   extra keys or metrics become `null`, as in `JSON.stringify`).
 * @param groups Named groups of named tensors, e.g.
 *   `{ params, buffers, optimizer }`; float32 or int32 only.
 * @throws {Error} On an invalid name or meta, or a tensor of another dtype.
 */
export async function saveCheckpoint(
  dir: string,
  name: string,
  meta: CheckpointMeta,
  groups: Readonly<Record<string, ReadonlyMap<string, Tensor>>>,
): Promise<void> {
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
  const sources: Tensor[] = [];
  let offset = 0;
  for (const [group, map] of Object.entries(groups)) {
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
      sources.push(tensor);
      offset += byteLength;
    }
  }

  const bytes = new Uint8Array(offset);
  for (let i = 0; i < sources.length; i++) {
    const values = await sources[i].data();
    const entry = tensors[i];
    if (values.byteLength !== entry.byteLength) {
      throw new Error(
        `Cannot save checkpoint "${
          join(dir, name)
        }": tensor ${entry.group}/${entry.name} gave ${values.byteLength} bytes, expected ${entry.byteLength}`,
      );
    }
    bytes.set(
      new Uint8Array(values.buffer, values.byteOffset, values.byteLength),
      entry.offset,
    );
  }
  if (!HOST_LITTLE_ENDIAN) swap32(bytes);

  const index: Index = {
    format: FORMAT,
    version: VERSION,
    meta: parsedMeta.data,
    data: {
      file: `${name}.bin`,
      byteOrder: "little-endian",
      byteLength: bytes.byteLength,
      sha256: await sha256Hex(bytes),
    },
    groups: Object.keys(groups),
    tensors,
  };
  await Deno.mkdir(dir, { recursive: true });
  await writeFileAtomic(join(dir, `${name}.bin`), bytes);
  await writeJsonAtomic(join(dir, `${name}.json`), index);
}

/**
 * Loads a checkpoint written by {@linkcode saveCheckpoint}. The returned
 * tensors are new and owned by the caller.
 *
 * @param tf The TensorFlow.js namespace to create the tensors with.
 * @param dir Folder of the checkpoint.
 * @param name File stem, e.g. `last`.
 * @returns The metadata and the groups of tensors, in the order saved.
 * @throws {Error} Naming the checkpoint and the file, when the index or data
 *   file is missing, malformed, truncated or does not match its index.
 */
export async function loadCheckpoint(
  tf: Tf,
  dir: string,
  name: string,
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
  const parsed = IndexSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue.path.length > 0 ? ` at ${issue.path.join(".")}` : "";
    fail(`the index file ${indexPath} is malformed${where}: ${issue.message}`);
  }
  const index = parsed.data;

  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(dataPath);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      fail(`the data file ${dataPath} is missing`);
    }
    throw error;
  }
  if (bytes.byteLength !== index.data.byteLength) {
    fail(
      `the data file holds ${bytes.byteLength} bytes, the index expects ${index.data.byteLength}`,
    );
  }
  if ((await sha256Hex(bytes)) !== index.data.sha256) {
    fail(
      `the data file ${dataPath} does not match its index (SHA-256 differs); it was probably overwritten by another save`,
    );
  }

  const groups: Record<string, Map<string, Tensor>> = {};
  for (const group of index.groups) groups[group] = new Map();
  for (const entry of index.tensors) {
    const label = `${entry.group}/${entry.name}`;
    const map = groups[entry.group] ??
      fail(`tensor ${label} belongs to no listed group`);
    if (map.has(entry.name)) fail(`tensor ${label} is listed twice`);
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
      entry.offset + entry.byteLength > bytes.byteLength
    ) {
      fail(
        `tensor ${label} lies outside the data file (offset ${entry.offset}, ${entry.byteLength} bytes)`,
      );
    }
  }
  const created: Tensor[] = [];
  try {
    for (const entry of index.tensors) {
      const slice = bytes.slice(entry.offset, entry.offset + entry.byteLength);
      if (!HOST_LITTLE_ENDIAN) swap32(slice);
      const values = entry.dtype === "float32"
        ? new Float32Array(slice.buffer)
        : new Int32Array(slice.buffer);
      const tensor = tf.tensor(values, entry.shape, entry.dtype);
      created.push(tensor);
      groups[entry.group].set(entry.name, tensor);
    }
  } catch (error) {
    tf.dispose(created);
    throw error;
  }
  return { meta: index.meta as CheckpointMeta, groups };
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
