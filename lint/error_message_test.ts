/**
 * Tests of the `amaut/error-message` lint rule (`lint/error_message.ts`)
 * through `Deno.lint.runPlugin`: which messages it flags, where, and which
 * files it covers.
 *
 * @module
 */
import assert from "node:assert/strict";
import plugin, { isProductFile } from "./error_message.ts";

const lint = (file: string, source: string) =>
  Deno.lint.runPlugin(plugin, file, source);

Deno.test("error-message: flags product-code messages that do not start with Cannot", () => {
  const source = [
    'throw new Error("bad size");', // 1: flagged
    "throw new RangeError(`bad ${n}`);", // 2: flagged
    "throw new TypeError(`${what}: bad`);", // 3: flagged (starts with a value)
    'throw new Error("bad " + n);', // 4: flagged
    'const e = new Error("no", { cause });', // 5: flagged (not only throws)
    'throw new Error("Cannot read x.yaml: no such file; check the path");',
    "throw new RangeError(`Cannot build kernel ${label}: too big`);",
    'throw new Error("Cannot " + what);',
    "throw new Error(message);", // not literal: not checked
    "throw new Error();",
    'throw new WavError("header", "bad");', // not a built-in error
  ].join("\n");
  const d = lint("/repo/gpu/kernels/x.ts", source);
  assert.deepEqual(
    d.map((x) => x.id),
    Array(5).fill("amaut/error-message"),
  );
  const lines = d.map((x) => source.slice(0, x.range[0]).split("\n").length);
  assert.deepEqual(lines, [1, 2, 3, 4, 5]);
  assert.match(d[0].message, /start with "Cannot …" \(got "bad size…"\)/);
  // The report points at the message, so the editor underlines the text.
  assert.equal(source.slice(d[0].range[0], d[0].range[1]), '"bad size"');
});

Deno.test("error-message: covers product folders, not tests or other folders", () => {
  const bad = 'throw new Error("bad");';
  for (
    const f of [
      "/r/stages/train.ts",
      "/r/pipeline/spec.ts",
      "/r/model/sgd.ts",
      "/r/gpu/runtime.ts",
      "/r/lib/wav.ts",
      "C:\\r\\lib\\wav.ts",
    ]
  ) {
    assert.equal(lint(f, bad).length, 1, f);
    assert.ok(isProductFile(f), f);
  }
  for (
    const f of [
      "/r/model/sgd_test.ts",
      "/r/gpu/testing.ts",
      "/r/stages/datasets/_testing.ts",
      "/r/bench/main.ts",
      "/r/_tools/predict.ts",
      "/r/cli.ts",
    ]
  ) {
    assert.equal(lint(f, bad).length, 0, f);
    assert.ok(!isProductFile(f), f);
  }
});
