/**
 * Tests of `gpu/kernels/grid.ts`: the 2-D grid arithmetic (pure, including
 * sizes too big to run on lavapipe) and the element-wise kernels' use of it.
 *
 * @module
 */
import assert from "node:assert/strict";
import { add } from "./elementwise.ts";
import {
  checkSize,
  grid2d,
  gridFor,
  linearGroupWgsl,
  MAX_GRID_DIM,
} from "./grid.ts";

Deno.test("grid2d: arithmetic for small and huge workgroup counts", () => {
  const counts = [
    1,
    2,
    255,
    65534,
    65535,
    65536,
    65537,
    131070,
    131071,
    Math.ceil(37_000_000 / 256),
    Math.ceil(94_208 * 896 / 4 / 256),
    Math.ceil(94_208 * 896 / 256),
    Math.ceil(2 ** 31 / 256),
    MAX_GRID_DIM * MAX_GRID_DIM,
  ];
  for (const g of counts) {
    const [x, y, z] = grid2d(g);
    assert.equal(z, 1);
    assert(x >= 1 && x <= MAX_GRID_DIM && y >= 1 && y <= MAX_GRID_DIM, `${g}`);
    assert(x * y >= g, `${g} covered`);
    assert(x * y - g < y, `${g}: at most y − 1 surplus groups`);
    // The last group's linear index lands on the last grid row.
    assert.equal(Math.floor((g - 1) / x), y - 1);
    if (g <= MAX_GRID_DIM) assert.deepEqual([x, y], [g, 1]);
  }
  for (const bad of [0, -1, 1.5, MAX_GRID_DIM * MAX_GRID_DIM + 1]) {
    assert.throws(() => grid2d(bad), RangeError);
  }
  const big = gridFor(37_748_736 / 4);
  assert.equal(big.groups, 36_864);
  assert.deepEqual(big.workgroups, [36_864, 1, 1]);
  const huge = gridFor(37_748_736);
  assert.equal(huge.groups, 147_456);
  assert.deepEqual(huge.workgroups, [49_152, 3, 1]);
  assert.equal(linearGroupWgsl(huge.workgroups), "(wid.y * 49152u + wid.x)");
  assert.equal(linearGroupWgsl([7, 1, 1]), "wid.x");
  // The generated element-wise kernels use the 2-D index for big n.
  const plan = add({ n: 37_748_737 });
  assert.deepEqual(plan.steps[0].spec.workgroups, [49_153, 3, 1]);
  assert(plan.steps[0].spec.code.includes("(wid.y * 49153u + wid.x)"));
  assert(plan.steps[0].spec.code.includes("const N: u32 = 37748737u;"));
});

Deno.test("checkSize: names the option and the bound", () => {
  checkSize("gelu n", 1);
  checkSize("pad", 0, 0);
  assert.throws(
    () => checkSize("gelu n", 0),
    /Cannot build kernel: gelu n must be an integer ≥ 1, got 0/,
  );
  assert.throws(() => checkSize("pad", 1.5, 0), /pad must be an integer ≥ 0/);
});
