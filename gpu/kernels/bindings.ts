/**
 * The one binding generator of the kernel generators: from a typed list of
 * storage bindings it writes both the WGSL declarations
 * (`@group(0) @binding(i) var<storage, …> name: array<T>;`) and the plan's
 * `bind` list, so the two cannot drift apart, and the list's names type the
 * step ({@linkcode KernelStep}`<N>`).
 *
 * @module
 */
import type { KernelStep } from "../runtime.ts";

/** Access mode of a storage binding. */
export type Access = "read" | "read_write";

/**
 * Element type of a storage array (`atomic<u32>` for kernels that merge
 * per-workgroup results with `atomicMax`/`atomicAdd`; bind it `read_write`;
 * `f16`/`vec4<f16>` need `enable f16;` in the module and the device's
 * `shader-f16` feature, which the runtime checks when it records).
 */
export type ElementType =
  | "f32"
  | "i32"
  | "u32"
  | "f16"
  | "vec4<f32>"
  | "vec4<i32>"
  | "vec4<u32>"
  | "vec2<f16>"
  | "vec4<f16>"
  | "atomic<u32>";

/** One storage binding: the plan's name for it, access and element type. */
export interface StorageBinding<N extends string = string> {
  /** Binding name in the plan (what the caller maps to a region). */
  readonly name: N;
  /** `read` or `read_write`. */
  readonly access: Access;
  /** Element type of the array (default `f32`). */
  readonly type?: ElementType;
  /**
   * WGSL identifier of the array when it differs from `name` (scratch
   * names such as `columnSum.partial` are not identifiers).
   */
  readonly wgsl?: string;
}

/** WebGPU's default `maxStorageBuffersPerShaderStage`: no dispatch binds more. */
export const MAX_STORAGE_BINDINGS = 8;

/** A read-only binding (element type `f32` unless given). */
export function readOnly<const N extends string>(
  name: N,
  type: ElementType = "f32",
  wgsl?: string,
): StorageBinding<N> {
  return { name, access: "read", type, wgsl };
}

/** A read-write binding (element type `f32` unless given). */
export function readWrite<const N extends string>(
  name: N,
  type: ElementType = "f32",
  wgsl?: string,
): StorageBinding<N> {
  return { name, access: "read_write", type, wgsl };
}

/** The names of a binding list (entries that are `false` are skipped). */
export type BindingNames<B extends readonly (StorageBinding | false)[]> =
  B[number] extends infer E ? E extends StorageBinding<infer N> ? N : never
    : never;

/**
 * Writes the WGSL storage declarations of `list` (binding `i` = the `i`-th
 * entry that is not `false`) and the matching `bind` list.
 *
 * @param list Bindings in order; `false` entries (an option that is off)
 *   are skipped.
 * @returns `decls`: the declarations, one per line; `bind`: the names.
 * @throws {RangeError} On more than {@linkcode MAX_STORAGE_BINDINGS}
 *   bindings or a name bound twice.
 */
export function storageBindings<
  const B extends readonly (StorageBinding | false)[],
>(list: B): { decls: string; bind: BindingNames<B>[] } {
  const used = list.filter((b): b is StorageBinding => b !== false);
  if (used.length > MAX_STORAGE_BINDINGS) {
    throw new RangeError(
      `Cannot bind ${used.length} storage buffers (${
        used.map((b) => b.name).join(", ")
      }) in one dispatch: WebGPU's default limit is ${MAX_STORAGE_BINDINGS}; split the kernel`,
    );
  }
  const names = used.map((b) => b.name);
  const twice = names.find((n, i) => names.indexOf(n) !== i);
  if (twice !== undefined) {
    throw new RangeError(
      `Cannot bind "${twice}" twice in one dispatch; give each binding its own name`,
    );
  }
  const decls = used.map((b, i) =>
    `@group(0) @binding(${i}) var<storage, ${b.access}> ${
      b.wgsl ?? b.name
    }: array<${b.type ?? "f32"}>;`
  ).join("\n");
  return { decls, bind: names as BindingNames<B>[] };
}

/**
 * One kernel step from its bindings and WGSL: `code(decls)` receives the
 * declarations and returns the complete module.
 *
 * @param label Profile label of the kernel.
 * @param workgroups Workgroup counts.
 * @param list Bindings in order (`false` entries skipped).
 * @param code Builds the WGSL module around the declarations.
 * @returns The step, typed by its binding names.
 */
export function kernelStep<
  const B extends readonly (StorageBinding | false)[],
>(
  label: string,
  workgroups: readonly [number, number, number],
  list: B,
  code: (decls: string) => string,
): KernelStep<BindingNames<B>> {
  const { decls, bind } = storageBindings(list);
  return { spec: { code: code(decls), workgroups, label }, bind };
}
