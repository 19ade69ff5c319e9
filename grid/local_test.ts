import assert from "node:assert/strict";
import { join } from "node:path";
import { planGrid, writeGridFolder } from "./expand.ts";
import { readGrid, runFolder } from "./grid_file.ts";
import { runLocal } from "./local.ts";
import { gridStatus } from "./status.ts";

Deno.test("the local executor runs repeats in parallel processes, the ensembling repeat after the others, pinned to the given GPUs", async () => {
  const dir = await Deno.makeTempDir({ prefix: "grid_local_test_" });
  await writeGridFolder(
    dir,
    await planGrid({
      specs: ["presets/tiny_grid.yaml"],
      repeat: 2,
      set: ["train.epochs=1"],
    }, dir),
  );
  const lines: string[] = [];
  const result = await runLocal(dir, {
    parallel: 2,
    gpus: ["0", "1"],
    console: (l) => lines.push(l),
  });
  assert.deepEqual(result.ok, [0, 1], lines.join("\n"));
  assert.deepEqual(result.failed, []);
  const grid = await readGrid(dir);
  const manifests = await Promise.all(
    grid.runs.map(async (r) =>
      JSON.parse(
        await Deno.readTextFile(join(runFolder(dir, r), "manifest.json")),
      )
    ),
  );
  // Run 1 ensembles run 0, so it started after run 0 finished.
  assert.ok(manifests[1].startedAt >= manifests[0].finishedAt);
  const ttau = JSON.parse(
    await Deno.readTextFile(join(runFolder(dir, grid.runs[1]), "ttau.json")),
  );
  assert.equal(ttau.members, 2);
  for (const m of manifests) {
    assert.ok(["0", "1"].includes(m.grid.pin.AMAUT_GPU));
    assert.equal(m.grid.pin.DENO_WEBGPU_BACKEND, "vulkan");
    assert.equal(m.backend.name, "cpu");
  }
  const log = await Deno.readTextFile(
    join(dir, "logs", `${grid.runs[0].name}.log`),
  );
  assert.match(log, /local executor starts tiny_grid-r0 on GPU [01]/);
  assert.match(log, /tiny_grid-r0: ok \(/);
  const { rows } = await gridStatus(dir);
  assert.deepEqual(rows.map((r) => r.state), ["ok", "ok"]);
  // Nothing left to do: a second pass starts nothing.
  const again = await runLocal(dir, { parallel: 2 });
  assert.deepEqual([again.ok, again.failed], [[], []]);
  await Deno.remove(dir, { recursive: true });
});
