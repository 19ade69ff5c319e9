/**
 * Tests of `gpu/kernels/bindings.ts`: the WGSL declarations and the bind
 * list come from one list, in order, with skipped options, element types
 * and WGSL names; too many or repeated bindings are refused.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  kernelStep,
  MAX_STORAGE_BINDINGS,
  readOnly,
  readWrite,
  storageBindings,
} from "./bindings.ts";

Deno.test("storageBindings: declarations and bind list from one list", () => {
  const residual = false as boolean;
  const { decls, bind } = storageBindings([
    readOnly("x"),
    residual && readOnly("r"),
    readOnly("labels", "i32"),
    readWrite("y", "vec4<f32>"),
    readWrite("columnSum.partial", "f32", "dst"),
  ]);
  assert.equal(
    decls,
    [
      "@group(0) @binding(0) var<storage, read> x: array<f32>;",
      "@group(0) @binding(1) var<storage, read> labels: array<i32>;",
      "@group(0) @binding(2) var<storage, read_write> y: array<vec4<f32>>;",
      "@group(0) @binding(3) var<storage, read_write> dst: array<f32>;",
    ].join("\n"),
  );
  assert.deepEqual(bind, ["x", "labels", "y", "columnSum.partial"]);
  // The names type the list: "r" is among them even when skipped.
  const names: ("x" | "r" | "labels" | "y" | "columnSum.partial")[] = bind;
  assert.equal(names.length, 4);
});

Deno.test("kernelStep: the module gets the declarations, the step the names", () => {
  const step = kernelStep(
    "double",
    [3, 1, 1],
    [readOnly("a"), readWrite("b")],
    (decls) => `// double\n${decls}\n`,
  );
  assert.deepEqual(step.bind, ["a", "b"]);
  assert.equal(step.spec.label, "double");
  assert.deepEqual(step.spec.workgroups, [3, 1, 1]);
  assert.equal(
    step.spec.code,
    "// double\n@group(0) @binding(0) var<storage, read> a: array<f32>;\n" +
      "@group(0) @binding(1) var<storage, read_write> b: array<f32>;\n",
  );
});

Deno.test("storageBindings: refuses more than 8 bindings and a name twice", () => {
  const many = Array.from(
    { length: MAX_STORAGE_BINDINGS + 1 },
    (_, i) => readOnly(`in${i}`),
  );
  assert.throws(
    () => storageBindings(many),
    /Cannot bind 9 storage buffers \(in0, .*, in8\) in one dispatch: WebGPU's default limit is 8/,
  );
  assert.equal(storageBindings(many.slice(1)).bind.length, 8);
  assert.throws(
    () => storageBindings([readOnly("x"), readWrite("x")]),
    /Cannot bind "x" twice in one dispatch/,
  );
});
