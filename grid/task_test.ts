import assert from "node:assert/strict";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { planGrid, writeGridFolder } from "./expand.ts";
import { readGrid, runFolder } from "./grid_file.ts";
import { runGridTask } from "./task.ts";
import { runState } from "./run_state.ts";
import { tinyTrainSpec } from "../tests/_tiny_run.ts";

async function tinyGrid(epochs: number, vary: string[] = []) {
  const work = await Deno.makeTempDir({ prefix: "grid_task_test_" });
  const spec = join(work, "tiny.yaml");
  await Deno.writeTextFile(
    spec,
    tinyTrainSpec({ name: "tiny" }).replace("epochs: 1", `epochs: ${epochs}`),
  );
  const dir = join(work, "grid");
  await writeGridFolder(dir, await planGrid({ specs: [spec], vary }, dir));
  return { work, dir };
}

Deno.test("grid.json alone reproduces a run: deno task run on its resolved spec gives the same weights on cpu", async () => {
  await tf.setBackend("cpu");
  const { work, dir } = await tinyGrid(1, ["data.fold=1"]);
  const grid = await readGrid(dir);
  const result = await runGridTask(dir, 0);
  assert.equal(result.outcome, "started");
  // Only grid.json: write the run's spec to a fresh folder and run the CLI there.
  const elsewhere = join(work, "elsewhere");
  await Deno.mkdir(elsewhere);
  await Deno.writeTextFile(join(elsewhere, "spec.yaml"), grid.runs[0].spec);
  const root = new URL("..", import.meta.url).pathname;
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-write",
      "--allow-env",
      "--config",
      join(root, "deno.json"),
      join(root, "cli.ts"),
      "run",
      "spec.yaml",
      "--json",
    ],
    cwd: elsewhere,
    stdin: "null",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  const { runDir } = JSON.parse(new TextDecoder().decode(out.stdout));
  const again = join(elsewhere, runDir);
  for (const file of ["last.bin", "best.bin"]) {
    const a = await Deno.readFile(
      join(runFolder(dir, grid.runs[0]), "checkpoints", file),
    );
    const b = await Deno.readFile(join(again, "checkpoints", file));
    assert.equal(a.length, b.length);
    assert.ok(a.every((v, i) => v === b[i]), `${file} differs`);
  }
  const plan = JSON.parse(await Deno.readTextFile(join(again, "plan.json")));
  assert.equal(plan.specHash, grid.runs[0].specHash);
  assert.equal(plan.data.fold, 1);
  await Deno.remove(work, { recursive: true });
});

Deno.test("a grid task interrupted mid-training resumes from its checkpoint and trains no epoch twice; a finished one is left alone", async () => {
  await tf.setBackend("cpu");
  const { work, dir } = await tinyGrid(3);
  const grid = await readGrid(dir);
  const folder = runFolder(dir, grid.runs[0]);
  const controller = new AbortController();
  // Interrupt as soon as the first epoch is logged (train checks the signal per batch).
  await assert.rejects(
    runGridTask(dir, 0, {
      signal: controller.signal,
      console: (line) => {
        if (/epoch 1\/3:/.test(line)) {
          controller.abort(new Error("interrupted by the test"));
        }
      },
    }),
    /interrupted by the test/,
  );
  const cut = await runState(folder, grid.runs[0]);
  assert.equal(cut.state, "interrupted");
  assert.ok(
    cut.epochsDone >= 1 && cut.epochsDone < 3,
    `cut after ${cut.epochsDone}`,
  );
  const resumed = await runGridTask(dir, 0);
  assert.equal(resumed.outcome, "resumed");
  const manifest = JSON.parse(
    await Deno.readTextFile(join(folder, "manifest.json")),
  );
  assert.equal(manifest.status, "ok");
  assert.equal(manifest.grid.resumedAfterEpoch, cut.epochsDone);
  const epochs = (await Deno.readTextFile(join(folder, "log.jsonl"))).split(
    "\n",
  )
    .filter(Boolean).map((l) => JSON.parse(l).message ?? "")
    .map((m: string) => m.match(/^epoch (\d+)\/3:/)?.[1]).filter(Boolean);
  assert.deepEqual(epochs, ["1", "2", "3"]);
  assert.equal((await runGridTask(dir, 0)).outcome, "done");
  await assert.rejects(
    runGridTask(dir, 7),
    /Cannot run task 7 of grid .*: it has runs 0 to 0/,
  );
  // A spec edited after the grid was made is refused.
  await Deno.writeTextFile(
    join(dir, "specs", `${grid.runs[0].name}.yaml`),
    grid.runs[0].spec.replace("seed: 3", "seed: 4"),
  );
  await Deno.remove(join(folder, "manifest.json"));
  await assert.rejects(runGridTask(dir, 0), /no longer matches grid.json/);
  await Deno.remove(work, { recursive: true });
});
