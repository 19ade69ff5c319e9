/**
 * The `k8s-manifest` executor: writes `grid.k8s.yaml`, a Kubernetes Indexed
 * Job (completion index `i` runs grid run `i` with `grid exec`), not
 * submitted: apply it with `kubectl apply -f`. Each index is retried
 * `backoffLimitPerIndex` times and a retry resumes from the run folder's
 * checkpoint; ensembling runs wait (`--wait`) for the repeats they merge.
 * The grid folder must be on the volume mounted at the same path in every
 * pod (a ReadWriteMany PersistentVolumeClaim).
 *
 * @module
 */
import { join, resolve } from "node:path";
import { stringify as stringifyYaml } from "yaml";
import { writeFileAtomic } from "../pipeline/atomic.ts";
import { readGrid, recordSubmission } from "./grid_file.ts";
import type { GridFile } from "./grid_file.ts";

/** Manifest settings. */
export interface K8sOptions {
  /** Container image with Deno and the repository (default `denoland/deno:2.9.6`). */
  readonly image?: string;
  /** Pods at once (default: every run). */
  readonly parallel?: number;
  /** GPUs per pod (`nvidia.com/gpu` limit; default 0). */
  readonly gpusPerRun?: number;
  /** PersistentVolumeClaim holding the repository, data and grid folder, mounted at `mountPath`. */
  readonly claim?: string;
  /** Where the claim is mounted (default: the grid's working directory). */
  readonly mountPath?: string;
  /** Retries per index (default 3). */
  readonly retries?: number;
}

/** The manifest file name inside the grid folder. */
export const K8S_MANIFEST = "grid.k8s.yaml";

/** The Indexed Job as a plain object. */
export function k8sManifest(
  grid: GridFile,
  dir: string,
  options: K8sOptions = {},
): Record<string, unknown> {
  const abs = resolve(dir);
  const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
  const script = [
    `cd '${grid.cwd}'`,
    `exec deno run --allow-read --allow-write --allow-env --allow-run --config '${root}/deno.json' '${root}/grid/cli.ts' exec '${abs}' "$JOB_COMPLETION_INDEX" --wait`,
  ].join(" && ");
  const mountPath = options.mountPath ?? grid.cwd;
  const name = `amaut-grid-${grid.name}`.toLowerCase().replace(
    /[^a-z0-9-]+/g,
    "-",
  ).slice(0, 50);
  return {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: { name },
    spec: {
      completionMode: "Indexed",
      completions: grid.runs.length,
      parallelism: options.parallel ?? grid.runs.length,
      backoffLimitPerIndex: options.retries ?? 3,
      maxFailedIndexes: grid.runs.length,
      template: {
        spec: {
          restartPolicy: "Never",
          containers: [{
            name: "run",
            image: options.image ?? "denoland/deno:2.9.6",
            command: ["sh", "-c", script],
            ...(options.gpusPerRun
              ? {
                resources: { limits: { "nvidia.com/gpu": options.gpusPerRun } },
              }
              : {}),
            ...(options.claim
              ? { volumeMounts: [{ name: "work", mountPath }] }
              : {}),
          }],
          ...(options.claim
            ? {
              volumes: [{
                name: "work",
                persistentVolumeClaim: { claimName: options.claim },
              }],
            }
            : {}),
        },
      },
    },
  };
}

/**
 * Writes `grid.k8s.yaml` and records it in grid.json.
 *
 * @param dir The grid folder.
 * @returns The manifest's path.
 */
export async function writeK8sManifest(
  dir: string,
  options: K8sOptions = {},
): Promise<string> {
  const grid = await readGrid(dir);
  const path = join(dir, K8S_MANIFEST);
  await writeFileAtomic(
    path,
    `# Kubernetes Indexed Job of grid "${grid.name}": kubectl apply -f ${K8S_MANIFEST}\n` +
      stringifyYaml(k8sManifest(grid, dir, options)),
  );
  await recordSubmission(dir, {
    executor: "k8s-manifest",
    at: new Date().toISOString(),
    runs: grid.runs.map((r) => r.index),
    file: K8S_MANIFEST,
  });
  return path;
}
