import assert from "node:assert/strict";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { planGrid, writeGridFolder } from "./expand.ts";
import { readGrid } from "./grid_file.ts";
import { cancelSlurm, slurmScript, submitSlurm } from "./slurm.ts";
import { k8sManifest, writeK8sManifest } from "./k8s.ts";

async function grid() {
  const dir = await Deno.makeTempDir({ prefix: "grid_slurm_unit_" });
  await writeGridFolder(
    dir,
    await planGrid({
      specs: ["presets/tiny_grid.yaml"],
      vary: ["data.fold=0,1"],
      repeat: 2,
    }, dir),
  );
  return dir;
}

Deno.test("slurmScript writes the sbatch header, the adapt block and exec of the array task", async () => {
  const dir = await grid();
  const g = await readGrid(dir);
  const script = slurmScript(g, dir, {
    partition: "gpu",
    gres: "gpu:1",
    time: "04:00:00",
    account: "proj42",
    sbatchArgs: ["--mem=16G"],
    deno: "/opt/deno/bin/deno",
  });
  for (
    const line of [
      "#SBATCH --job-name=amaut-tiny_grid",
      `#SBATCH --output=${join(dir, "logs", "task-%a.log")}`,
      "#SBATCH --open-mode=append",
      "#SBATCH --requeue",
      "#SBATCH --partition=gpu",
      "#SBATCH --gres=gpu:1",
      "#SBATCH --time=04:00:00",
      "#SBATCH --account=proj42",
      "#SBATCH --mem=16G",
      'DENO="${DENO:-/opt/deno/bin/deno}"',
      `GRID_DIR='${dir}'`,
      `cd '${g.cwd}'`,
    ]
  ) assert.ok(script.includes(line + "\n"), line);
  assert.match(
    script,
    /exec "\$DENO" run .*\n.*grid\/cli\.ts" \\\n {2}exec "\$GRID_DIR" "\$SLURM_ARRAY_TASK_ID"\n$/,
  );
  assert.throws(
    () => slurmScript(g, dir, { sbatchArgs: ["--mem=1G\nrm -rf /"] }),
    /Cannot write the sbatch argument .*line break/,
  );
  // bash accepts it
  const check = await new Deno.Command("bash", { args: ["-n"], stdin: "piped" })
    .spawn();
  const w = check.stdin.getWriter();
  await w.write(new TextEncoder().encode(script));
  await w.close();
  assert.ok((await check.status).success);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("submitSlurm submits independent runs, then ensembling runs after them, and records the job ids", async () => {
  const dir = await grid();
  const calls = join(dir, "calls.txt");
  const fake = join(dir, "fake_sbatch.sh");
  await Deno.writeTextFile(
    fake,
    `#!/bin/sh\necho "$@" >> '${calls}'\nn=$(wc -l < '${calls}')\necho "$((4240 + n));cluster"\n`,
  );
  await Deno.chmod(fake, 0o755);
  const sub = await submitSlurm(dir, { sbatch: fake });
  assert.deepEqual(sub.jobIds, ["4241", "4242"]);
  assert.deepEqual(
    (await Deno.readTextFile(calls)).trim().split("\n"),
    [
      "--parsable --array=0,2 grid.sbatch",
      "--parsable --array=1,3 --dependency=afterany:4241 grid.sbatch",
    ],
  );
  const g = await readGrid(dir);
  assert.equal(g.submissions.length, 1);
  assert.deepEqual(g.submissions[0].jobIds, ["4241", "4242"]);
  assert.equal(g.submissions[0].file, "grid.sbatch");
  assert.ok(await Deno.stat(join(dir, "grid.sbatch")));
  // A failing sbatch is reported with its message, and nothing is recorded.
  await Deno.writeTextFile(
    fake,
    "#!/bin/sh\necho 'invalid partition' >&2\nexit 1\n",
  );
  await assert.rejects(
    submitSlurm(dir, { sbatch: fake }),
    /Cannot submit to Slurm: .* failed: invalid partition/,
  );
  assert.equal((await readGrid(dir)).submissions.length, 1);
  await assert.rejects(
    submitSlurm(dir, { sbatch: "no-such-sbatch" }),
    /"no-such-sbatch" is not on PATH/,
  );
  // grid cancel: scancel every recorded job.
  await Deno.writeTextFile(
    fake,
    `#!/bin/sh\necho "scancel $@" >> '${calls}'\n`,
  );
  assert.deepEqual(await cancelSlurm(dir, fake), ["4241", "4242"]);
  assert.match(await Deno.readTextFile(calls), /scancel 4241 4242\n$/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("the k8s manifest is an Indexed Job running grid exec with the completion index", async () => {
  const dir = await grid();
  const g = await readGrid(dir);
  const m = k8sManifest(g, dir, {
    claim: "work",
    gpusPerRun: 1,
    parallel: 2,
  }) as {
    kind: string;
    spec: Record<string, unknown> & {
      template: {
        spec: {
          containers: { command: string[]; resources: unknown }[];
          volumes: unknown[];
        };
      };
    };
  };
  assert.equal(m.kind, "Job");
  assert.equal(m.spec.completionMode, "Indexed");
  assert.equal(m.spec.completions, 4);
  assert.equal(m.spec.parallelism, 2);
  const c = m.spec.template.spec.containers[0];
  assert.match(
    c.command[2],
    /grid\/cli\.ts' exec '.*' "\$JOB_COMPLETION_INDEX" --wait$/,
  );
  assert.deepEqual(c.resources, { limits: { "nvidia.com/gpu": 1 } });
  const path = await writeK8sManifest(dir, {});
  const back = parseYaml(await Deno.readTextFile(path)) as {
    metadata: { name: string };
  };
  assert.equal(back.metadata.name, "amaut-grid-tiny-grid");
  assert.equal(
    (await readGrid(dir)).submissions.at(-1)?.executor,
    "k8s-manifest",
  );
  await Deno.remove(dir, { recursive: true });
});
