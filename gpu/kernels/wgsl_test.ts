/**
 * Tests of `gpu/kernels/wgsl.ts`: float32 literals (pure: exact float32
 * rounding, valid WGSL float syntax) and the shared erf's accuracy over
 * [−6, 6] on the GPU (f32 and vec4).
 *
 * @module
 */
import assert from "node:assert/strict";
import { erfWgsl, f32Literal } from "./wgsl.ts";
import {
  gridFor,
  linearGroupWgsl,
  MAIN_HEADER,
  WORKGROUP_SIZE,
} from "./grid.ts";
import { erf64, gpuRuntime, gpuTests, runKernel } from "../testing.ts";

const nans = (n: number): Float32Array => new Float32Array(n).fill(NaN);

/** WGSL's decimal float literal (abstract float, no suffix). */
const WGSL_FLOAT = /^-?(?:(?:\d*\.\d+|\d+\.\d*)(?:e[+-]?\d+)?|\d+e[+-]?\d+)$/;

Deno.test("f32Literal: rounds to float32 exactly and writes a WGSL float", () => {
  const values = [
    0,
    1,
    -2,
    0.1,
    1 / 3,
    1e-5,
    Math.SQRT1_2,
    1 / Math.sqrt(2 * Math.PI),
    123456789,
    1e21,
    -3.4028234663852886e38,
    1.401298464324817e-45,
    2 ** -126,
    0.9 - 1e-12,
  ];
  for (const v of values) {
    const s = f32Literal(v);
    assert.match(s, WGSL_FLOAT, `${v} → ${s}`);
    // The literal reads back as exactly the float32 nearest v.
    assert.equal(Number(s), Math.fround(v), `${v} → ${s}`);
    assert.equal(Math.fround(Number(s)), Number(s), `${s} is a float32`);
  }
  assert.equal(f32Literal(1), "1.0");
  assert.equal(f32Literal(0.1), "0.10000000149011612");
  assert.equal(f32Literal(1e21), "1.0000000200408773e+21");
  assert.equal(f32Literal(-0), "-0.0");
  for (const bad of [NaN, Infinity, -Infinity, 3.5e38]) {
    assert.throws(
      () => f32Literal(bad),
      /Cannot write .* as a WGSL f32 literal: it is not a finite float32/,
    );
  }
});

Deno.test("erfWgsl: one function text, named as asked, for f32 and vec4", () => {
  const f = erfWgsl("f32");
  assert(f.startsWith("fn erf_(a: f32) -> f32 {"));
  const v = erfWgsl("vec4<f32>", "erf4");
  assert(v.startsWith("fn erf4(a: vec4<f32>) -> vec4<f32> {"));
  // The same polynomial whatever the type.
  const body = (s: string) =>
    s.slice(s.indexOf("{")).replaceAll("vec4<f32>(", "f32(");
  assert.equal(body(v), body(f));
});

Deno.test({
  name: "erf: max abs error ≤ 2e-7 over [−6, 6] (f32 and vec4)",
  ignore: !gpuTests,
  async fn() {
    const r = await gpuRuntime();
    const n = 12_004;
    const x = new Float32Array(n);
    for (let i = 0; i < 12_001; i++) x[i] = -6 + i / 1000;
    x[12_001] = 0.927734375;
    x[12_002] = Math.fround(0.927734375 + 1e-7);
    x[12_003] = 1e-30;
    for (const t of ["f32", "vec4<f32>"]) {
      const items = t === "f32" ? n : n / 4;
      const { workgroups } = gridFor(items);
      const code = `@group(0) @binding(0) var<storage, read> x: array<${t}>;
@group(0) @binding(1) var<storage, read_write> y: array<${t}>;
${erfWgsl(t)}
${MAIN_HEADER}
  let i = ${linearGroupWgsl(workgroups)} * ${WORKGROUP_SIZE}u + li;
  if (i < ${items}u) { y[i] = erf_(x[i]); }
}`;
      const [y] = await runKernel(r, { code, workgroups }, [x, nans(n)], [1]);
      let worst = 0;
      for (let i = 0; i < n; i++) {
        worst = Math.max(worst, Math.abs(y[i] - erf64(x[i])));
      }
      assert(worst <= 2e-7, `${t}: erf max abs error ${worst}`);
      const tiny = 1e-30 * 2 / Math.sqrt(Math.PI);
      assert(Math.abs(y[12_003] / tiny - 1) < 1e-6, `${t}: erf(1e-30)`);
    }
    // The float64 reference itself, at known values.
    assert(Math.abs(erf64(0.5) - 0.5204998778130465) < 1e-15);
    assert(Math.abs(erf64(2.5) - 0.9995930479825550) < 1e-14);
    assert(Math.abs(erf64(-3.5) + 0.9999992569016276) < 1e-15);
  },
});
