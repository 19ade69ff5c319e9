import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { dataAccess } from "./run.ts";
import type { BackendInfo } from "./backend.ts";
import type { Batch, Dataset, Example } from "./types.ts";

/** A dataset of 10 train clips that logs every read, as "split:index". */
function loggedDataset(reads: string[]): Dataset {
  return {
    classes: ["a", "b"],
    splits: { train: 10, test: 4 },
    info: {},
    example(split: string, i: number): Promise<Example> {
      reads.push(`${split}:${i}`);
      return Promise.resolve({
        waveform: new Float32Array([i]),
        label: i % 2,
        path: `${split}/${i}.wav`,
      });
    },
  };
}

function access(reads: string[]) {
  return dataAccess(loggedDataset(reads), [], {
    tf,
    backend: { name: "cpu", checkErrors() {} } as unknown as BackendInfo,
    seed: 7,
    timings: {},
    runDir: "/tmp/none",
    checked: new Set(),
  });
}

async function paths(it: AsyncIterable<Batch>) {
  const out: string[] = [];
  for await (const b of it) out.push(...b.path as string[]);
  return out;
}

Deno.test("prefetch reads a later call's first batches now, and that call reads them no more", async () => {
  await tf.setBackend("cpu");
  const reads: string[] = [];
  const data = access(reads);
  const o = { batchSize: 2, phase: "fit", epoch: 3 } as const;
  const plain = await paths(access([]).batches("train", o));
  data.prefetch!("train", o);
  // The first three batches (FETCH_AHEAD) were read before any iteration.
  assert.equal(reads.length, 6);
  const first = [...reads];
  // Same clips, same order as without a prefetch; each clip read once.
  assert.deepEqual(await paths(data.batches("train", o)), plain);
  assert.equal(reads.length, 10);
  assert.deepEqual(reads.slice(0, 6), first);
  assert.equal(new Set(reads).size, 10);
  // Used up: the same call again reads every clip again.
  await paths(data.batches("train", o));
  assert.equal(reads.length, 20);
});

Deno.test("prefetch is keyed by what decides the clips: another epoch's shuffle or batch size is not used; the phase alone does not matter", async () => {
  await tf.setBackend("cpu");
  const reads: string[] = [];
  const data = access(reads);
  data.prefetch!("train", { batchSize: 2, phase: "fit", epoch: 1 });
  reads.length = 0;
  await paths(data.batches("train", { batchSize: 2, phase: "fit", epoch: 2 }));
  assert.equal(reads.length, 10); // epoch 2's order: read afresh
  reads.length = 0;
  await paths(data.batches("train", { batchSize: 2, phase: "fit", epoch: 1 }));
  assert.equal(reads.length, 4); // epoch 1's first 6 clips were ready
  // Unshuffled reads of one split are the same in every phase.
  data.prefetch!("test", { batchSize: 4, phase: "eval", shuffle: false });
  reads.length = 0;
  await paths(
    data.batches("test", { batchSize: 4, phase: "ttau", shuffle: false }),
  );
  assert.equal(reads.length, 0);
  data.prefetch!("test", { batchSize: 4, phase: "eval", shuffle: false });
  reads.length = 0;
  await paths(
    data.batches("test", { batchSize: 3, phase: "eval", shuffle: false }),
  );
  assert.equal(reads.length, 4); // another batch size: read afresh
});

Deno.test("prefetch never throws; the later batches call names the problem", async () => {
  await tf.setBackend("cpu");
  const data = access([]);
  data.prefetch!("nope", { batchSize: 2, phase: "eval" });
  data.prefetch!("train", { batchSize: 0, phase: "eval" });
  await assert.rejects(
    () => paths(data.batches("nope", { batchSize: 2, phase: "eval" })),
    /Cannot read split "nope": the dataset has splits "train", "test"/,
  );
});

Deno.test("prefetch keeps the last four; an older one is dropped and read afresh", async () => {
  await tf.setBackend("cpu");
  const reads: string[] = [];
  const data = access(reads);
  for (let e = 0; e < 5; e++) {
    data.prefetch!("train", { batchSize: 1, phase: "fit", epoch: e });
  }
  reads.length = 0;
  await paths(data.batches("train", { batchSize: 1, phase: "fit", epoch: 0 }));
  assert.equal(reads.length, 10); // dropped
  reads.length = 0;
  await paths(data.batches("train", { batchSize: 1, phase: "fit", epoch: 4 }));
  assert.equal(reads.length, 7); // kept: 3 clips were ready
});
