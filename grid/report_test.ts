import assert from "node:assert/strict";
import {
  formatStat,
  groupRuns,
  renderGridHtml,
  renderGridMarkdown,
  stat,
} from "./report.ts";
import type { GridReport, RunScores } from "./report.ts";

function run(
  index: number,
  preset: string,
  vary: Record<string, string>,
  repeat: number,
  scores: RunScores["scores"],
  state: "ok" | "failed" = "ok",
): RunScores {
  const name = `${preset}-${index}`;
  return {
    index,
    name,
    preset,
    vary,
    repeat,
    seed: 2025,
    state: {
      index,
      name,
      state,
      epochsDone: 2,
      epochs: 2,
      resumable: true,
      backend: "cpu",
    },
    scores,
    folder: `runs/${name}`,
    ...(state === "ok" ? { reportHtml: `runs/${name}/report.html` } : {}),
  };
}

const RUNS = [
  run(0, "am", { "data.fold": "0" }, 0, { orig: 0.99, aug: 0.98, ttda: 0.995 }),
  run(1, "am", { "data.fold": "0" }, 1, {
    orig: 0.97,
    aug: 0.96,
    mlt: 0.99,
    hyb: 0.985,
    ttda: 0.99,
  }),
  run(2, "am", { "data.fold": "1" }, 0, { orig: 0.95, aug: 0.94, ttda: 0.96 }),
  run(3, "am", { "data.fold": "1" }, 1, { orig: 0.93, mlt: 0.97, hyb: 0.96 }),
  run(4, "am", { "data.fold": "2" }, 0, { orig: 0.1 }, "failed"),
  run(5, "mine", { "train.epochs": "5" }, 0, { orig: 0.5 }),
  run(6, "mine", { "train.epochs": "9" }, 0, { orig: 0.7 }),
];

Deno.test("groupRuns averages finished runs over folds and repeats per preset and non-fold setting", () => {
  const groups = groupRuns(RUNS);
  assert.equal(groups.length, 3);
  const am = groups[0];
  assert.equal(am.runs, 5);
  assert.equal(am.finished, 4);
  assert.deepEqual(am.folds, ["0", "1", "2"]);
  assert.deepEqual(am.stats.orig, stat([0.99, 0.97, 0.95, 0.93]));
  assert.ok(Math.abs(am.stats.orig!.mean - 0.96) < 1e-12);
  assert.equal(am.stats.aug?.n, 3);
  assert.deepEqual(am.stats.mlt, stat([0.99, 0.97]));
  assert.equal(am.stats.ttda?.n, 3);
  assert.equal(am.paper?.orig, 99.71, "AM over folds: the 5-fold mean");
  assert.deepEqual(groups[1].setting, { "train.epochs": "5" });
  assert.equal(groups[1].paper, undefined);
  // One AM fold alone gets that fold's Table 6 row.
  const fold3 = groupRuns([
    run(0, "am", { "data.fold": "3" }, 0, { orig: 0.99 }),
  ]);
  assert.equal(fold3[0].paper?.orig, 99.68);
  assert.equal(formatStat(stat([0.5, 0.7])), "60.00 ± 14.14");
  assert.equal(formatStat(stat([0.5])), "50.00");
  assert.equal(formatStat(undefined), "–");
});

Deno.test("the grid report's Markdown and HTML hold the paper rows, charts and a link to every run", async () => {
  const report: GridReport = {
    format: "amaut-grid-report/1",
    name: "am",
    createdAt: "2026-01-01T00:00:00.000Z",
    groups: groupRuns(RUNS),
    runs: RUNS,
  };
  const md = renderGridMarkdown(report);
  assert.match(
    md,
    /\| am \| measured \| 4\/5 \| 96\.00 ± 2\.58 \| 96\.00 ± 2\.00 \| 98\.00 ± 1\.41 \| 97\.25 ± 1\.77 \| 98\.17 ± 1\.89 \| – \|/,
  );
  assert.match(
    md,
    /\| {2}\| paper \(Tables 6, 8 .*\) \| {2}\| 99\.71 \| 99\.66 \| 99\.75 \| 99\.45 \| 99\.82 \| 99\.82 \|/,
  );
  assert.match(
    md,
    /\| mine \(train\.epochs=5\) \| measured \| 1\/1 \| 50\.00 \|/,
  );
  for (const r of RUNS) {
    assert.ok(md.includes(`[${r.name}](${r.reportHtml ?? r.folder})`), r.name);
  }
  assert.match(md, /\| \[am-4\]\(runs\/am-4\) \| failed \|/);
  const html = await renderGridHtml(report);
  assert.equal((html.match(/<svg/g) ?? []).length, 3);
  assert.ok(html.includes('<a href="runs/am-1/report.html">am-1</a>'));
  assert.doesNotMatch(html, /<script/);
  assert.match(html, /default-src 'none'/);
});
