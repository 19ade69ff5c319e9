/**
 * Parity of the fused TTDA step (`ttda_fused.ts`) with the tfjs TTDA step of
 * the `test_time_adaptation` stage on the cpu backend, on the tiny config:
 * the loss of every step, and the weights' and running statistics' changes
 * after steps with and without momentum and a per-module learning rate.
 *
 * @module
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import type { Tensor } from "@tensorflow/tfjs";
import { createRng } from "../pipeline/rng.ts";
import { createModel } from "../model/amaut.ts";
import { createSgd } from "../model/sgd.ts";
import { tfjsTtdaStep } from "../model/ttda_step.ts";
import {
  memoryData,
  memorySplit,
  snapshot,
  TINY_DIMS,
  TINY_OPTIONS,
} from "../model/trainer_testing.ts";
import {
  moduleLrDecay,
  ttdaLearningRateFactor,
  ttdaSgdOptions,
} from "../stages/test_time_adaptation.ts";
import { structurallyZero } from "../model/fixture.ts";
import { relativeError } from "./parity.ts";
import { createFusedTtda } from "./ttda_fused.ts";
import { gpuTests, testRuntime } from "./testing.ts";

const CASES = [
  {
    label: "AM/VS/CS rates, decays 0.55 / 1.0",
    rates: { alpha: 1, beta: 0.5, gamma: 0.5, q: 1.1 },
    decays: { featureLrDecay: 0.55, classifierLrDecay: 1 },
  },
  {
    label: "SC1 rates (GEN off), feature extractor frozen (decay 0)",
    rates: { alpha: 0.2, beta: 1, gamma: 0, q: 0.8 },
    decays: { featureLrDecay: 0, classifierLrDecay: 0.45 },
  },
] as const;

for (const c of CASES) {
  Deno.test({
    name:
      `fused TTDA: 3 steps (epoch 0 without momentum, then momentum, weight decay and the schedule) equal the tfjs TTDA step, ${c.label}`,
    ignore: !gpuTests,
    async fn() {
      await tf.setBackend("cpu");
      const rt = (await testRuntime())!;
      const a = createModel(tf, TINY_OPTIONS, TINY_DIMS, createRng("tt", 2));
      const b = createModel(tf, TINY_OPTIONS, TINY_DIMS, createRng("tt", 2));
      const initial = await snapshot(a.params);
      const initialRunning = await snapshot(a.buffers);
      const sgd = createSgd(tf);
      const fused = await createFusedTtda(tf, b, { device: rt.device });
      const views = 2;
      const perView = 5;
      const schedule = { gamma: 30, cardinality: 4, stopBefore: 1 };
      try {
        const tfjsLosses: number[] = [];
        const fusedLosses: number[] = [];
        for (const epoch of [0, 1, 2]) {
          const split = memorySplit(views * perView, TINY_DIMS, 30 + epoch);
          const lr = 2e-2 * ttdaLearningRateFactor(epoch, schedule);
          const lrOf = (name: string) => lr * moduleLrDecay(name, c.decays);
          const sgdOptions = ttdaSgdOptions(epoch, {
            momentum: 0.9,
            weightDecay: 1e-3,
            nesterov: false,
            ...schedule,
          });
          assert.equal(sgdOptions.momentum, epoch === 0 ? 0 : 0.9);
          const tokens = tf.tensor3d(split.tokens, [
            views * perView,
            TINY_DIMS.frames,
            TINY_DIMS.nMels,
          ]);
          tfjsLosses.push(
            // The tfjs step exactly as the test_time_adaptation stage takes it.
            await tfjsTtdaStep(tf, a, sgd, tokens, views, {
              rates: c.rates,
              lr: lrOf,
              sgd: sgdOptions,
              rng: createRng("ttda-parity/dropout", 0),
            }),
          );
          await fused.step(tokens, views, {
            rates: c.rates,
            lr: lrOf,
            sgd: sgdOptions,
            seed: epoch,
          });
          tokens.dispose();
          const m = await fused.loss();
          assert.equal(m.steps, 1);
          fusedLosses.push(m.lossSum);
        }
        for (let i = 0; i < 3; i++) {
          assert.ok(
            Math.abs(fusedLosses[i] - tfjsLosses[i]) <=
              5e-5 * Math.abs(tfjsLosses[i]) + 1e-6,
            `step ${i}: fused ${fusedLosses[i]} vs tfjs ${tfjsLosses[i]}`,
          );
        }
        assert.equal(fused.momentumBuffers() > 0, true);
        await fused.sync();
        // Compare each tensor's change (not its value: a small lr would hide a
        // wrong update), relative to the tfjs change's norm.
        const check = async (
          what: string,
          ours: ReadonlyMap<string, Tensor>,
          ref: ReadonlyMap<string, Tensor>,
          start: Map<string, Float32Array>,
        ) => {
          let moved = 0;
          for (const [name, t] of ref) {
            const s = start.get(name)!;
            const want = (await t.data()).map((x, i) => x - s[i]);
            const got = (await ours.get(name)!.data()).map((x, i) => x - s[i]);
            const frozen = what === "param" &&
              moduleLrDecay(name, c.decays) === 0;
            if (frozen) {
              assert.ok(
                got.every((d) => d === 0) && want.every((d) => d === 0),
                `${name} has lr 0 but changed`,
              );
              continue;
            }
            const r = relativeError(got, want);
            if (structurallyZero(name, TINY_OPTIONS.head)) {
              // A zero gradient in exact arithmetic: float32 noise in both.
              assert.ok(
                got.every((d, i) => Math.abs(d - want[i]) <= 1e-6),
                `${name}: fused moved ${r.normA}, tfjs ${r.normB}`,
              );
              continue;
            }
            moved++;
            assert.ok(
              r.relative <= 5e-4,
              `${what} ${name}: change off by ${r.relative} (|Δ| ${r.normB})`,
            );
          }
          return moved;
        };
        const movedParams = await check("param", b.params, a.params, initial);
        assert.ok(movedParams >= 3, `only ${movedParams} tensors moved`);
        const movedRunning = await check(
          "running",
          b.buffers,
          a.buffers,
          initialRunning,
        );
        assert.ok(movedRunning >= 2, `only ${movedRunning} buffers moved`);
        // The adapted weights evaluate alike on both engines.
        const data = memoryData(
          tf,
          { test: memorySplit(7, TINY_DIMS, 40) },
          TINY_DIMS,
        );
        const ours = await fused.evaluate(data, "test", 4);
        const x = tf.tensor3d(memorySplit(7, TINY_DIMS, 40).tokens, [
          7,
          TINY_DIMS.frames,
          TINY_DIMS.nMels,
        ]);
        const ref = a.apply(x, { training: false }).logits;
        const want = await ref.data();
        tf.dispose([x, ref]);
        assert.ok(
          relativeError(ours.logits, want).relative <= 1e-4,
          "eval logits",
        );
      } finally {
        fused.dispose();
        a.dispose();
        b.dispose();
        sgd.dispose();
      }
    },
  });
}
