import assert from "node:assert/strict";
import {
  ConfigError,
  didYouMean,
  editDistance,
  formatIssue,
  type Issue,
  sortIssues,
} from "./diagnostics.ts";

function issue(partial: Partial<Issue>): Issue {
  return {
    file: "spec.yaml",
    line: 1,
    column: 1,
    code: "invalid_value",
    path: "x",
    message: "Bad",
    ...partial,
  };
}

Deno.test("editDistance matches known Levenshtein distances", () => {
  assert.equal(editDistance("", ""), 0);
  assert.equal(editDistance("abc", ""), 3);
  assert.equal(editDistance("", "abc"), 3);
  assert.equal(editDistance("same", "same"), 0);
  assert.equal(editDistance("kitten", "sitting"), 3);
  assert.equal(editDistance("flaw", "lawn"), 2);
  assert.equal(editDistance("mono_mx", "mono_mix"), 1);
  assert.equal(editDistance("ab", "ba"), 2);
});

Deno.test("didYouMean finds close candidates and rejects far words", () => {
  const stages = ["load", "mono_mix", "describe_data", "train"];
  assert.equal(didYouMean("mono_mx", stages), "mono_mix");
  assert.equal(didYouMean("MONO_MIX", stages), "mono_mix");
  assert.equal(didYouMean("sed", ["seed", "stages", "data"]), "seed");
  assert.equal(didYouMean("spectrogram", stages), undefined);
  assert.equal(didYouMean("anything", []), undefined);
});

Deno.test("formatIssue prints header, path, snippet, carets and hint", () => {
  const text = formatIssue({
    file: "specs/a.yaml",
    line: 3,
    column: 12,
    length: 7,
    sourceLine: "  backend: webgpuu",
    code: "bad_enum",
    path: "backend",
    message: 'Unknown backend "webgpuu"',
    hint: 'Did you mean "webgpu"?',
  });
  assert.equal(
    text,
    [
      'specs/a.yaml:3:12  bad_enum  Unknown backend "webgpuu"',
      "  at backend",
      "  3 |   backend: webgpuu",
      "    |            ^^^^^^^",
      '  hint: Did you mean "webgpu"?',
    ].join("\n"),
  );
});

Deno.test("formatIssue prints no snippet for an override location", () => {
  const text = formatIssue({
    file: "--set seed=x",
    line: 0,
    column: 0,
    sourceLine: "seed=x",
    code: "bad_override",
    path: "seed",
    message: "Cannot set seed: not a number",
  });
  assert.equal(
    text,
    "--set seed=x  bad_override  Cannot set seed: not a number\n  at seed",
  );
});

Deno.test("formatIssue clips the caret to the end of the source line", () => {
  const text = formatIssue(
    issue({ line: 10, column: 4, length: 50, sourceLine: "ab: cd" }),
  );
  assert.equal(
    text,
    "spec.yaml:10:4  invalid_value  Bad\n  at x\n  10 | ab: cd\n     |    ^^^",
  );
});

Deno.test("ConfigError message counts problems and sorts its issues", () => {
  const one = new ConfigError("s.yaml", [issue({})]);
  assert.equal(one.message, 'Cannot compile spec "s.yaml": 1 problem');
  assert.equal(one.name, "ConfigError");
  assert.equal(one.specFile, "s.yaml");
  assert.ok(one instanceof Error);
  const three = new ConfigError("s.yaml", [
    issue({ line: 5 }),
    issue({ line: 2 }),
    issue({ line: 3 }),
  ]);
  assert.equal(three.message, 'Cannot compile spec "s.yaml": 3 problems');
  assert.deepEqual(three.issues.map((i) => i.line), [2, 3, 5]);
});

Deno.test("sortIssues orders by file, line, column with --set locations last", () => {
  const input = [
    issue({ file: "--set a=1", line: 0, column: 0, message: "o1" }),
    issue({ file: "b.yaml", line: 1, column: 1, message: "b" }),
    issue({ file: "a.yaml", line: 4, column: 9, message: "a4:9" }),
    issue({ file: "--set b=2", line: 0, column: 0, message: "o2" }),
    issue({ file: "a.yaml", line: 4, column: 2, message: "a4:2" }),
    issue({ file: "a.yaml", line: 2, column: 30, message: "a2" }),
  ];
  const sorted = sortIssues(input);
  assert.deepEqual(sorted.map((i) => i.message), [
    "a2",
    "a4:2",
    "a4:9",
    "b",
    "o1",
    "o2",
  ]);
  assert.equal(input[0].message, "o1", "input must not be reordered");
});
