/**
 * Workgroup grids of the kernel generators: WebGPU allows at most 65,535
 * workgroups along each grid dimension, so large launches are laid out on a
 * 2-D grid ({@linkcode grid2d}) and a kernel recovers its linear workgroup
 * index with {@linkcode linearGroupWgsl}.
 *
 * @module
 */

/** Threads per workgroup of the element-wise and reduction kernels. */
export const WORKGROUP_SIZE = 256;

/** Largest workgroup count WebGPU allows along one grid dimension. */
export const MAX_GRID_DIM = 65535;

/** WGSL `main` header of a 256-thread kernel on a 2-D grid. */
export const MAIN_HEADER = `@compute @workgroup_size(${WORKGROUP_SIZE})
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {`;

/**
 * Lays `groups` workgroups out on a 2-D grid with each dimension ≤ 65,535:
 * `y = ceil(groups / 65535)` rows of `x = ceil(groups / y)` groups, so at
 * most `y − 1` workgroups are surplus. A kernel recovers the linear group
 * index as `wid.y * x + wid.x` and must skip indices ≥ `groups`
 * ({@linkcode linearGroupWgsl}).
 *
 * @param groups Workgroups needed (≥ 1, integer).
 * @returns `[x, y, 1]` workgroup counts.
 * @throws {RangeError} When `groups` is not a positive integer or needs
 *   more than 65,535² workgroups.
 */
export function grid2d(groups: number): [number, number, number] {
  if (!Number.isInteger(groups) || groups < 1) {
    throw new RangeError(
      `Cannot lay out ${groups} workgroups: expected a positive integer`,
    );
  }
  const y = Math.ceil(groups / MAX_GRID_DIM);
  if (y > MAX_GRID_DIM) {
    throw new RangeError(
      `Cannot lay out ${groups} workgroups on a 2-D grid of at most 65,535 × 65,535; split the work into several dispatches`,
    );
  }
  return [Math.ceil(groups / y), y, 1];
}

/**
 * The grid for one thread per item: `ceil(items / 256)` workgroups laid out
 * by {@linkcode grid2d}.
 *
 * @param items Threads needed (≥ 1).
 * @returns The workgroup counts and the number of groups actually needed.
 */
export function gridFor(
  items: number,
): { workgroups: [number, number, number]; groups: number } {
  const groups = Math.ceil(Math.max(1, items) / WORKGROUP_SIZE);
  return { workgroups: grid2d(groups), groups };
}

/**
 * WGSL expression of the linear workgroup index on a grid from
 * {@linkcode grid2d} (`wid` is the `workgroup_id` builtin).
 *
 * @param workgroups The grid.
 * @returns For example `(wid.y * 1234u + wid.x)`.
 */
export function linearGroupWgsl(
  workgroups: readonly [number, number, number],
): string {
  return workgroups[1] === 1 ? "wid.x" : `(wid.y * ${workgroups[0]}u + wid.x)`;
}

/**
 * Checks a size option of a kernel generator.
 *
 * @param name What the value is, for example `"gelu n"`.
 * @param v The value.
 * @param min Smallest value allowed (default 1).
 * @throws {RangeError} When `v` is not an integer ≥ `min`, naming it.
 */
export function checkSize(name: string, v: number, min = 1): void {
  if (!Number.isInteger(v) || v < min) {
    throw new RangeError(
      `Cannot build kernel: ${name} must be an integer ≥ ${min}, got ${v}`,
    );
  }
}

/**
 * The grid and WGSL prologue of a kernel with one thread per item: the
 * workgroups of {@linkcode gridFor}, the `main` header
 * ({@linkcode MAIN_HEADER}), `i` the item index, and an early return for
 * the surplus threads.
 *
 * @param items Threads needed (≥ 1).
 * @param bound WGSL expression of the item count (default the literal
 *   `items`; a kernel declaring `const N` passes `"N"`).
 * @param index Name of the item index (default `i`).
 * @returns The workgroups and the prologue (the caller closes the brace).
 */
export function itemMainWgsl(
  items: number,
  bound = `${items}u`,
  index = "i",
): { workgroups: [number, number, number]; main: string } {
  const { workgroups } = gridFor(items);
  return {
    workgroups,
    main: `${MAIN_HEADER}
  let ${index} = ${linearGroupWgsl(workgroups)} * ${WORKGROUP_SIZE}u + li;
  if (${index} >= ${bound}) { return; }`,
  };
}
