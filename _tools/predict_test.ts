import assert from "node:assert/strict";
import { tinyTrainSpec } from "../tests/_tiny_run.ts";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { compile, runPipeline } from "../pipeline/mod.ts";
import { BUILTIN_STAGES } from "../stages/mod.ts";
import { encodeWav, toneInt16 } from "../tests/_fixtures.ts";
import { selectBackend } from "../pipeline/backend.ts";
import { loadModel, predictFile } from "../lib/predict.ts";
import { gpuTests } from "../gpu/testing.ts";

const SPEC = tinyTrainSpec({ name: "tiny-predict" });

/** The `deno task predict` permissions, so the task line is tested too. */
async function predict(args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-env=LOG_TOKENS,LOG_STREAM",
      join(import.meta.dirname!, "predict.ts"),
      "--backend",
      "cpu",
      ...args,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return {
    code: out.code,
    stdout: decode(out.stdout),
    stderr: decode(out.stderr),
  };
}

async function setup() {
  await tf.setBackend("cpu");
  const dir = await Deno.makeTempDir({ prefix: "predict_test_" });
  await Deno.writeTextFile(join(dir, "spec.yaml"), SPEC);
  const compiled = await compile(join(dir, "spec.yaml"), {
    builtins: BUILTIN_STAGES,
    overrides: [`runtime.outputDir=${join(dir, "runs")}`],
  });
  const { runDir } = await runPipeline(compiled, {});
  const wav = async (name: string, rate: number, seconds: number) => {
    const path = join(dir, name);
    const tone = toneInt16(Math.round(rate * seconds), 440, rate);
    await Deno.writeFile(path, encodeWav([tone], { sampleRateHz: rate }));
    return path;
  };
  return {
    dir,
    runDir,
    exact: await wav("exact.wav", 8000, 0.5),
    short: await wav("short.wav", 8000, 0.3),
    long: await wav("long.wav", 8000, 0.8),
    wrongRate: await wav("wrong_rate.wav", 16000, 0.5),
  };
}

Deno.test("predict prints top-k labels per file, notes padding and clipping, and refuses another rate unless --resample", async () => {
  const f = await setup();
  const text = await predict([
    "--model",
    f.runDir,
    "--top",
    "2",
    f.exact,
    f.short,
    f.long,
  ]);
  assert.equal(text.code, 0, text.stderr);
  const blocks = text.stdout.trim().split(/\n(?=\/)/);
  assert.equal(blocks.length, 3, text.stdout);
  for (const b of blocks) {
    assert.equal(
      b.match(/^ {2}\d\. (low|mid|high) +0\.\d{4}$/gm)?.length,
      2,
      b,
    );
  }
  assert.doesNotMatch(blocks[0], /note:/);
  assert.match(blocks[1], /padded from 2400 to 4000 samples .*centred/);
  assert.match(blocks[2], /clipped from 6400 to 4000 samples/);

  // --json, from an exported package folder.
  const out = join(f.dir, "package");
  const exported = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", join(import.meta.dirname!, "export.ts"), f.runDir, out],
  }).output();
  assert.equal(exported.code, 0);
  const json = await predict(["--model", out, "--json", f.short, f.long]);
  assert.equal(json.code, 0, json.stderr);
  const parsed = JSON.parse(json.stdout);
  assert.deepEqual(parsed.model.labels, ["low", "mid", "high"]);
  assert.equal(parsed.model.sampleRateHz, 8000);
  const [short, long] = parsed.results;
  assert.equal(short.length, "padded");
  assert.equal(long.length, "clipped");
  assert.equal(short.top.length, 3);
  const sum = Object.values(short.probabilities as Record<string, number>)
    .reduce((a, b) => a + b, 0);
  assert.ok(Math.abs(sum - 1) < 1e-5);
  // The run folder and its package predict the same.
  const fromRun = await predict(["--model", f.runDir, "--json", f.short]);
  assert.deepEqual(
    JSON.parse(fromRun.stdout).results[0].probabilities,
    short.probabilities,
  );

  // Another sample rate: refused naming both rates, the other files still run.
  const refused = await predict(["--model", out, f.wrongRate, f.exact]);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /16000 Hz and the model expects 8000 Hz/);
  assert.match(refused.stdout, /exact\.wav\n {2}1\. /);
  const resampled = await predict(["--model", out, "--resample", f.wrongRate]);
  assert.equal(resampled.code, 0, resampled.stderr);
  assert.match(resampled.stdout, /resampled from 16000 Hz to 8000 Hz/);
  assert.match(resampled.stdout, / {2}1\. (low|mid|high) /);

  // A missing file: exit 1; bad command lines: exit 2.
  const missing = await predict(["--model", out, join(f.dir, "none.wav")]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /none\.wav/);
  assert.equal((await predict([f.exact])).code, 2);
  assert.equal((await predict(["--model", out])).code, 2);
  assert.equal(
    (await predict(["--model", out, "--top", "0", f.exact])).code,
    2,
  );
  assert.equal(
    (await predict(["--model", out, "--frobnicate", f.exact])).code,
    2,
  );
  // --precision: mixed needs the webgpu backend (refused on cpu, naming
  // the fix); another value is a bad command line; --json names it.
  assert.equal(parsed.model.precision, "fp32");
  const mixedOnCpu = await predict([
    "--model",
    out,
    "--precision",
    "mixed",
    f.exact,
  ]);
  assert.equal(mixedOnCpu.code, 1);
  assert.equal(
    mixedOnCpu.stderr.trim(),
    'Cannot predict with precision mixed: it needs the fused WebGPU engine, and this run uses the "cpu" backend; select the webgpu backend (--backend webgpu), or use --precision fp32',
  );
  const badPrecision = await predict([
    "--model",
    out,
    "--precision",
    "bf16",
    f.exact,
  ]);
  assert.equal(badPrecision.code, 2);
  assert.match(badPrecision.stderr, /--precision must be fp32 or mixed/);
  const notModel = await predict(["--model", f.dir, f.exact]);
  assert.equal(notModel.code, 1);
  assert.match(notModel.stderr, /neither model\.json .* nor plan\.json/);
});

Deno.test({
  name:
    "predict --precision mixed on the webgpu backend gives probabilities within 1e-2 of fp32's (the fused eval graph with f16 matmul operands)",
  ignore: !gpuTests,
  async fn() {
    const f = await setup(); // trained on the cpu backend
    const { tf: gpu } = await selectBackend("webgpu");
    const fp32 = await loadModel(gpu, f.runDir, "best");
    const mixed = await loadModel(gpu, f.runDir, "best", {
      precision: "mixed",
    });
    try {
      assert.equal(fp32.precision, "fp32");
      assert.equal(mixed.precision, "mixed");
      const files = [f.exact, f.short, f.long];
      for (const file of files) {
        const want = await predictFile(fp32, file, { top: 3, resample: false });
        const got = await predictFile(mixed, file, { top: 3, resample: false });
        assert.ok(got.ok && want.ok, got.error ?? want.error ?? "");
        for (const [label, p] of Object.entries(want.probabilities!)) {
          const q = got.probabilities![label];
          assert.ok(Number.isFinite(q), `${file} ${label}: ${q}`);
          assert.ok(
            Math.abs(q - p) <= 1e-2,
            `${file} ${label}: mixed ${q} vs fp32 ${p}`,
          );
        }
      }
    } finally {
      fp32.dispose();
      mixed.dispose();
      await tf.setBackend("cpu");
    }
  },
});
