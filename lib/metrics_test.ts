import assert from "node:assert/strict";
import {
  argmaxRows,
  classificationReport,
  confusionMatrix,
} from "./metrics.ts";

const close = (a: number, b: number, what: string) =>
  assert.ok(Math.abs(a - b) < 1e-12, `${what}: ${a} != ${b}`);

Deno.test("confusionMatrix counts matrix[label][prediction]", () => {
  const labels = [0, 0, 0, 1, 1, 2, 2, 2, 2];
  const preds = [0, 0, 1, 1, 2, 2, 2, 0, 2];
  assert.deepEqual(confusionMatrix(labels, preds, ["a", "b", "c"]), [
    [2, 1, 0],
    [0, 1, 1],
    [1, 0, 3],
  ]);
});

Deno.test("classificationReport matches hand-computed values", () => {
  // Same data as above. Column sums (predicted): a 3, b 2, c 4.
  const r = classificationReport(
    [0, 0, 0, 1, 1, 2, 2, 2, 2],
    [0, 0, 1, 1, 2, 2, 2, 0, 2],
    ["a", "b", "c"],
  );
  const expected = [
    // a: tp 2, predicted 3, support 3 → P 2/3, R 2/3, F1 2/3
    { name: "a", precision: 2 / 3, recall: 2 / 3, f1: 2 / 3, support: 3 },
    // b: tp 1, predicted 2, support 2 → P 1/2, R 1/2, F1 1/2
    { name: "b", precision: 1 / 2, recall: 1 / 2, f1: 1 / 2, support: 2 },
    // c: tp 3, predicted 4, support 4 → P 3/4, R 3/4, F1 3/4
    { name: "c", precision: 3 / 4, recall: 3 / 4, f1: 3 / 4, support: 4 },
  ];
  r.perClass.forEach((c, i) => {
    assert.equal(c.name, expected[i].name);
    assert.equal(c.support, expected[i].support);
    close(c.precision, expected[i].precision, `${c.name} precision`);
    close(c.recall, expected[i].recall, `${c.name} recall`);
    close(c.f1, expected[i].f1, `${c.name} f1`);
  });
  close(r.accuracy, 6 / 9, "accuracy");
  close(r.macroF1, (2 / 3 + 1 / 2 + 3 / 4) / 3, "macro-F1");
  assert.equal(r.total, 9);
});

Deno.test("classificationReport: asymmetric precision and recall", () => {
  // a: tp 1, predicted 1, support 3 → P 1, R 1/3, F1 2·(1/3)/(4/3) = 1/2
  // b: tp 1, predicted 3, support 1 → P 1/3, R 1, F1 1/2
  const r = classificationReport([0, 0, 0, 1], [0, 1, 1, 1], ["a", "b"]);
  close(r.perClass[0].precision, 1, "a precision");
  close(r.perClass[0].recall, 1 / 3, "a recall");
  close(r.perClass[0].f1, 1 / 2, "a f1");
  close(r.perClass[1].precision, 1 / 3, "b precision");
  close(r.perClass[1].recall, 1, "b recall");
  close(r.perClass[1].f1, 1 / 2, "b f1");
  close(r.macroF1, 1 / 2, "macro-F1");
  close(r.macroPrecision, 2 / 3, "macro precision");
  close(r.macroRecall, 2 / 3, "macro recall");
  close(r.accuracy, 1 / 2, "accuracy");
});

Deno.test("classificationReport: zero divisions give 0", () => {
  // c is never predicted and never a label; b is predicted but never a label.
  const r = classificationReport([0, 0], [0, 1], ["a", "b", "c"]);
  assert.deepEqual(
    r.perClass.map((c) => [c.precision, c.recall, c.f1, c.support]),
    [[1, 0.5, 2 / 3, 2], [0, 0, 0, 0], [0, 0, 0, 0]],
  );
  close(r.macroF1, 2 / 9, "macro-F1 counts every class");
  const empty = classificationReport([], [], ["a"]);
  assert.ok(Number.isNaN(empty.accuracy));
  assert.equal(empty.macroF1, 0);
});

Deno.test("metrics reject mismatched lengths and out-of-range indices", () => {
  assert.throws(
    () => confusionMatrix([0], [0, 1], ["a", "b"]),
    /counts differ/,
  );
  assert.throws(
    () => confusionMatrix([0, 2], [0, 1], ["a", "b"]),
    /label 2: it must be an integer class index in \[0, 2\)/,
  );
  assert.throws(
    () => classificationReport([0], [-1], ["a"]),
    /prediction -1/,
  );
});

Deno.test("argmaxRows picks the first maximum per row", () => {
  assert.deepEqual(
    argmaxRows(new Float32Array([0.1, 0.9, 0.3, 0.3, -1, -2]), 2),
    [1, 0, 0],
  );
  assert.throws(() => argmaxRows([1, 2, 3], 2), /Cannot split 3 values/);
});
