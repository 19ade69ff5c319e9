/**
 * The grid on a real Slurm: a single-node cluster on localhost
 * (tests/_slurm.ts) runs a tiny grid (2 folds × 2 repeats, cpu backend)
 * submitted with the Slurm executor; one task is requeued mid-training and
 * must resume from its checkpoint (no epoch trained twice); the grid report
 * must list all four runs with their numbers. Skipped, saying why, where
 * Slurm is not installed or cannot run (not root).
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { planGrid, writeGridFolder } from "../grid/expand.ts";
import { readGrid, runFolder } from "../grid/grid_file.ts";
import { submitSlurm } from "../grid/slurm.ts";
import { runState, trainedEpochs } from "../grid/run_state.ts";
import { gridStatus } from "../grid/status.ts";
import { writeGridReport } from "../grid/report.ts";
import { slurmUnavailable, startSlurm } from "./_slurm.ts";

const why = await slurmUnavailable();
const EPOCHS = 3;

async function until(
  what: string,
  check: () => Promise<boolean>,
  seconds: number,
) {
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out after ${seconds} s waiting until ${what}`);
}

async function slurm(args: string[], env: Record<string, string>) {
  const [cmd, ...rest] = args;
  const out = await new Deno.Command(cmd, { args: rest, env, stdin: "null" })
    .output();
  return {
    ok: out.success,
    text: new TextDecoder().decode(out.stdout) +
      new TextDecoder().decode(out.stderr),
  };
}

Deno.test({
  name: why
    ? `grid on Slurm: skipped, ${why}`
    : "grid on Slurm: a 2 folds × 2 repeats grid finishes with one task requeued mid-training and resumed, and reports all four runs",
  ignore: why !== undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const cluster = await startSlurm();
    const previous = Deno.env.get("SLURM_CONF");
    Deno.env.set("SLURM_CONF", cluster.env.SLURM_CONF);
    const work = await Deno.makeTempDir({ prefix: "grid_slurm_test_" });
    let ok = false;
    try {
      const dir = join(work, "grid");
      const grid = await planGrid({
        specs: ["presets/tiny_grid.yaml"],
        vary: ["data.fold=0,1"],
        set: [`train.epochs=${EPOCHS}`],
        repeat: 2,
      }, dir);
      await writeGridFolder(dir, grid);
      const sub = await submitSlurm(dir, { cpusPerTask: 1 });
      // Independent repeats first, the ensembling ones after them.
      assert.equal(sub.jobIds?.length, 2);
      assert.deepEqual(sub.runs, [0, 1, 2, 3]);
      const recorded = await readGrid(dir);
      assert.deepEqual(recorded.submissions.at(-1)?.jobIds, sub.jobIds);
      const script = await Deno.readTextFile(join(dir, "grid.sbatch"));
      assert.match(script, /^#SBATCH --requeue$/m);
      assert.match(script, /^#SBATCH --cpus-per-task=1$/m);

      // Requeue run 0 once it has saved a checkpoint, before it has trained every epoch.
      const run0 = recorded.runs[0];
      const folder0 = runFolder(dir, run0);
      await until("run 0 has trained one epoch", async () => {
        const s = await runState(folder0, run0);
        return s.epochsDone >= 1 && s.resumable;
      }, 240);
      const before = await runState(folder0, run0);
      assert.ok(before.epochsDone < EPOCHS, "requeued mid-training");
      const task = `${sub.jobIds![0]}_0`;
      const requeue = await slurm(["scontrol", "requeue", task], cluster.env);
      assert.ok(requeue.ok, requeue.text);
      // Slurm holds a requeued job for a while (BeginTime); start it now.
      await until(
        "the requeued task is released",
        async () =>
          (await slurm(
            ["scontrol", "update", `jobid=${task}`, "starttime=now"],
            cluster.env,
          )).ok,
        30,
      );

      await until("every run finished", async () => {
        const states = await Promise.all(
          recorded.runs.map((r) => runState(runFolder(dir, r), r)),
        );
        // A requeued task's folder says "failed" until Slurm starts it again:
        // a failure counts only once Slurm has nothing left to run.
        const queued = await slurm(
          ["squeue", "-h", "-r", "-o", "%i"],
          cluster.env,
        );
        if (
          states.some((s) => s.state === "failed") && queued.ok &&
          queued.text.trim() === ""
        ) {
          throw new Error(
            `a run failed: ${
              JSON.stringify(states.filter((s) => s.state === "failed"))
            }\n${await Deno.readTextFile(join(dir, "logs", "task-0.log")).catch(
              () => "",
            )}`,
          );
        }
        return states.every((s) => s.state === "ok");
      }, 600);

      // Run 0 resumed after the epoch it had saved, and trained no epoch twice.
      const manifest = JSON.parse(
        await Deno.readTextFile(join(folder0, "manifest.json")),
      );
      assert.ok(
        manifest.grid.resumedAfterEpoch >= 1 &&
          manifest.grid.resumedAfterEpoch < EPOCHS,
        `resumed after epoch ${manifest.grid.resumedAfterEpoch}`,
      );
      assert.equal(manifest.grid.scheduler.SLURM_RESTART_COUNT, "1");
      const log = (await Deno.readTextFile(join(folder0, "log.jsonl")))
        .split("\n").filter(Boolean).map((l) => JSON.parse(l));
      const starts = log.filter((l) => l.event === "run:start");
      assert.equal(starts.length, 2);
      assert.equal(starts[1].resume, true);
      const epochLines = log.map((l) =>
        String(l.message ?? "").match(/^epoch (\d+)\/\d+:/)
      )
        .filter((m): m is RegExpMatchArray => m !== null).map((m) =>
          Number(m[1])
        );
      assert.deepEqual(epochLines, [1, 2, 3], "each epoch trained once");
      assert.deepEqual(
        trainedEpochs(await Deno.readTextFile(join(folder0, "metrics.jsonl"))),
        [1, 2, 3],
      );
      const taskLog = await Deno.readTextFile(join(dir, "logs", "task-0.log"));
      assert.match(taskLog, /attempt 0 on/);
      assert.match(taskLog, /attempt 1 on/);
      assert.match(taskLog, /resuming in .* after epoch [12]/);

      // Status: folders and Slurm agree.
      const { rows } = await gridStatus(dir);
      assert.deepEqual(rows.map((r) => r.state), ["ok", "ok", "ok", "ok"]);
      assert.ok(rows.every((r) => r.epochsDone === EPOCHS));

      // The report lists all four runs with their own numbers.
      const { report } = await writeGridReport(dir);
      assert.equal(report.runs.length, 4);
      const origs: number[] = [];
      for (const r of report.runs) {
        const own = JSON.parse(
          await Deno.readTextFile(
            join(runFolder(dir, recorded.runs[r.index]), "report.json"),
          ),
        );
        assert.equal(r.scores.orig, own.table6.orig, r.name);
        assert.equal(r.scores.ttda, own.table6.ttda.accuracy, r.name);
        origs.push(own.table6.orig);
        if (r.repeat === 1) {
          assert.equal(r.scores.mlt, own.table6.mlt);
          assert.equal(r.members, 2, "the last repeat ensembles both");
        } else assert.equal(r.scores.mlt, undefined);
      }
      const [group] = report.groups;
      assert.equal(report.groups.length, 1);
      assert.equal(group.finished, 4);
      assert.equal(group.stats.orig?.n, 4);
      assert.ok(
        Math.abs(group.stats.orig!.mean - origs.reduce((a, b) => a + b) / 4) <
          1e-12,
      );
      assert.equal(group.stats.mlt?.n, 2);
      const md = await Deno.readTextFile(join(dir, "grid_report.md"));
      for (const r of recorded.runs) {
        assert.ok(md.includes(`](runs/${r.name}/report.html)`), r.name);
      }
      const html = await Deno.readTextFile(join(dir, "grid_report.html"));
      assert.match(html, /<svg/);
      assert.doesNotMatch(html, /<script/);
      ok = true;
    } finally {
      if (previous === undefined) Deno.env.delete("SLURM_CONF");
      else Deno.env.set("SLURM_CONF", previous);
      await cluster.stop(!ok);
      if (ok) await Deno.remove(work, { recursive: true }).catch(() => {});
    }
  },
});
