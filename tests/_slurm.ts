/**
 * A throwaway single-node Slurm for tests: munged with its own key and
 * socket, slurmctld and slurmd on free localhost ports, state in a
 * temporary folder, configured from `tests/slurm/slurm.conf`. Needs
 * Debian's `slurm-wlm` and `munge` (`.ci/run` installs them) and root
 * (slurmd launches the jobs). {@linkcode slurmUnavailable} says why not.
 *
 * @module
 */
import { join } from "node:path";

const BINARIES = [
  "munged",
  "slurmctld",
  "slurmd",
  "sbatch",
  "squeue",
  "scontrol",
  "scancel",
];

async function onPath(name: string): Promise<boolean> {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (!dir) continue;
    const ok = await Deno.stat(join(dir, name)).then(
      (s) => s.isFile,
      () => false,
    );
    if (ok) return true;
  }
  // Debian puts the daemons in /usr/sbin, which a user's PATH may lack.
  return await Deno.stat(join("/usr/sbin", name)).then(() => true, () => false);
}

/** Why Slurm cannot run here, or undefined when it can. */
export async function slurmUnavailable(): Promise<string | undefined> {
  if (Deno.build.os !== "linux") return "Slurm needs Linux";
  for (const b of BINARIES) {
    if (!(await onPath(b))) {
      return `${b} is not installed (apt-get install slurm-wlm munge; .ci/run does)`;
    }
  }
  // Deno.uid() needs --allow-sys, which the test task does not grant.
  const id = await new Deno.Command("id", { args: ["-u"], stdin: "null" })
    .output().catch(() => undefined);
  if (new TextDecoder().decode(id?.stdout).trim() !== "0") {
    return "slurmd must run as root to launch jobs";
  }
  return undefined;
}

/** A running test cluster. */
export interface TestSlurm {
  /** Folder holding the configuration, state and logs. */
  readonly dir: string;
  /** Environment for Slurm commands (`SLURM_CONF`). */
  readonly env: Record<string, string>;
  /** CPUs the node offers. */
  readonly cpus: number;
  /** Stops the daemons (by their process ids) and removes the folder unless `keep`. */
  stop(keep?: boolean): Promise<void>;
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

const bin = (name: string) =>
  name === "munged" || name.startsWith("slurm") ? `/usr/sbin/${name}` : name;

async function run(cmd: string, args: string[], env: Record<string, string>) {
  const out = await new Deno.Command(bin(cmd), { args, env, stdin: "null" })
    .output();
  if (!out.success) {
    throw new Error(
      `Cannot start the test Slurm: ${cmd} ${args.join(" ")} failed: ${
        new TextDecoder().decode(out.stderr)
      }`,
    );
  }
  return new TextDecoder().decode(out.stdout);
}

async function readPid(path: string): Promise<number | undefined> {
  const text = await Deno.readTextFile(path).catch(() => "");
  const pid = Number(text.trim());
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

async function waitFor(
  what: string,
  check: () => Promise<boolean>,
  seconds: number,
) {
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`Cannot start the test Slurm: ${what} after ${seconds} s`);
}

/**
 * Starts munged, slurmctld and slurmd; resolves once the node is idle.
 *
 * @param cpus CPUs the node offers (default: this machine's).
 */
export async function startSlurm(
  cpus = navigator.hardwareConcurrency,
): Promise<TestSlurm> {
  const dir = await Deno.makeTempDir({ prefix: "amaut-slurm-" });
  const munge = join(dir, "munge");
  for (const d of [munge, join(dir, "state"), join(dir, "spool")]) {
    await Deno.mkdir(d, { recursive: true, mode: 0o700 });
  }
  const template = await Deno.readTextFile(
    new URL("./slurm/slurm.conf", import.meta.url),
  );
  const conf = join(dir, "slurm.conf");
  await Deno.writeTextFile(
    conf,
    template.replaceAll("@DIR@", dir).replaceAll("@USER@", "root")
      .replaceAll("@CTLD_PORT@", String(freePort()))
      .replaceAll("@D_PORT@", String(freePort()))
      .replaceAll("@CPUS@", String(cpus)),
  );
  const key = new Uint8Array(1024);
  crypto.getRandomValues(key);
  await Deno.writeFile(join(munge, "munge.key"), key, { mode: 0o400 });
  const env = { SLURM_CONF: conf };
  const pids = [
    join(dir, "slurmd.pid"),
    join(dir, "slurmctld.pid"),
    join(munge, "munged.pid"),
  ];
  const stop = async (keep = false) => {
    await new Deno.Command("scancel", {
      args: ["--user=root"],
      env,
      stdin: "null",
      stderr: "null",
    }).output().catch(() => {});
    for (const file of pids) {
      const pid = await readPid(file);
      if (pid === undefined) continue;
      try {
        Deno.kill(pid, "SIGTERM");
      } catch {
        continue; // already gone
      }
      const end = Date.now() + 10_000;
      while (Date.now() < end) {
        try {
          Deno.kill(pid, "SIGCONT"); // throws once the process is gone
        } catch {
          break;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    if (!keep) await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  try {
    await run("munged", [
      "--force",
      `--socket=${join(munge, "munge.socket")}`,
      `--key-file=${join(munge, "munge.key")}`,
      `--log-file=${join(munge, "munged.log")}`,
      `--pid-file=${join(munge, "munged.pid")}`,
      `--seed-file=${join(munge, "munged.seed")}`,
    ], env);
    await run("slurmctld", ["-f", conf], env);
    await run("slurmd", ["-f", conf, "-N", "amautci-node"], env);
    await waitFor("the node is not idle", async () => {
      const out = await new Deno.Command("sinfo", {
        args: ["-h", "-o", "%t"],
        env,
        stdin: "null",
        stderr: "null",
      }).output().catch(() => undefined);
      return !!out?.success &&
        new TextDecoder().decode(out.stdout).trim() === "idle";
    }, 30);
  } catch (error) {
    await stop(true);
    throw error;
  }
  return { dir, env, cpus, stop };
}
