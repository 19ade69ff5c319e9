/**
 * Diagnostics end to end: each broken spec in `tests/errors/` must produce
 * exactly the expected issue codes at the expected `file:line:col`, and its
 * formatted report must match the golden `*.txt` beside it (refresh with
 * `deno task test:update`).
 *
 * @module
 */
import assert from "node:assert/strict";
import { compile, ConfigError, formatConfigError } from "../pipeline/mod.ts";
import { BUILTIN_STAGES } from "../stages/mod.ts";

const DIR = "tests/errors";
const UPDATE = Deno.env.get("UPDATE_GOLDENS") === "1";

interface Case {
  readonly spec: string;
  readonly overrides?: string[];
  /** Expected `location  code` pairs, in report order. */
  readonly expect: string[];
}

const CASES: Record<string, Case> = {
  "unknown_key": {
    spec: "unknown_key.yaml",
    expect: [`${DIR}/unknown_key.yaml:3:3  unknown_key`],
  },
  "wrong_type": {
    spec: "wrong_type.yaml",
    expect: [`${DIR}/wrong_type.yaml:4:17  wrong_type`],
  },
  "bad_enum": {
    spec: "bad_enum.yaml",
    expect: [`${DIR}/bad_enum.yaml:3:12  bad_enum`],
  },
  "missing_required": {
    spec: "missing_required.yaml",
    expect: [`${DIR}/missing_required.yaml:1:1  missing_required`],
  },
  "unknown_stage": {
    spec: "unknown_stage.yaml",
    expect: [`${DIR}/unknown_stage.yaml:6:10  unknown_stage`],
  },
  "unmet_takes": {
    spec: "unmet_takes.yaml",
    expect: [`${DIR}/unmet_takes.yaml:6:10  unmet_takes`],
  },
  "bad_override": {
    spec: "bad_override.yaml",
    overrides: [
      "describ_data.batchSize=4",
      "runtime.seed",
      "describe_data.batchSze=4",
      "runtime.seed=seven",
    ],
    expect: [
      `--set describ_data.batchSize=4  bad_override`,
      `--set describe_data.batchSze=4  unknown_key`,
      `--set runtime.seed  bad_override`,
      `--set runtime.seed=seven  wrong_type`,
    ],
  },
  "extends_cycle": {
    spec: "cycle_a.yaml",
    expect: [`${DIR}/cycle_b.yaml:1:10  extends_cycle`],
  },
  "unreadable_file": {
    spec: "unreadable_file.yaml",
    expect: [`${DIR}/unreadable_file.yaml:1:10  unreadable_file`],
  },
  "unreadable_top": {
    spec: "no_such_spec.yaml",
    expect: [`${DIR}/no_such_spec.yaml  unreadable_file`],
  },
  "yaml_syntax": {
    spec: "yaml_syntax.yaml",
    expect: [`${DIR}/yaml_syntax.yaml:3:1  yaml_syntax`],
  },
  "patch_unknown_stage": {
    spec: "patch_unknown_stage.yaml",
    expect: [`${DIR}/patch_unknown_stage.yaml:4:3  unknown_key`],
  },
  "stage_entry": {
    spec: "stage_entry.yaml",
    expect: [
      `${DIR}/stage_entry.yaml:2:7  wrong_type`,
      `${DIR}/stage_entry.yaml:4:5  wrong_type`,
      `${DIR}/stage_entry.yaml:5:10  unmet_takes`,
      `${DIR}/stage_entry.yaml:6:11  wrong_type`,
    ],
  },
  "many_errors": {
    spec: "many_errors.yaml",
    expect: [
      `${DIR}/many_errors.yaml:1:7  invalid_value`,
      `${DIR}/many_errors.yaml:3:12  bad_enum`,
      `${DIR}/many_errors.yaml:4:9  out_of_range`,
      `${DIR}/many_errors.yaml:7:12  wrong_type`,
      `${DIR}/many_errors.yaml:8:3  unknown_key`,
      `${DIR}/many_errors.yaml:11:10  unknown_stage`,
      `${DIR}/many_errors.yaml:14:18  out_of_range`,
      `${DIR}/many_errors.yaml:15:7  unknown_key`,
    ],
  },
};

async function diagnose(c: Case): Promise<ConfigError> {
  try {
    await compile(`${DIR}/${c.spec}`, {
      builtins: BUILTIN_STAGES,
      overrides: c.overrides,
    });
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error(`Cannot find the expected errors: ${c.spec} compiled`);
}

for (const [name, c] of Object.entries(CASES)) {
  Deno.test(`compile() reports ${name} at the exact location`, async () => {
    const error = await diagnose(c);
    const got = error.issues.map((i) =>
      `${i.line > 0 ? `${i.file}:${i.line}:${i.column}` : i.file}  ${i.code}`
    );
    assert.deepEqual(got, c.expect);
    for (const issue of error.issues) {
      assert.match(issue.message, /^Cannot /, "messages start with Cannot");
      assert.doesNotMatch(issue.message, /\.$/, "no final period");
    }
    const text = formatConfigError(error) + "\n";
    const golden = `${DIR}/${name}.txt`;
    if (UPDATE) await Deno.writeTextFile(golden, text);
    assert.equal(text, await Deno.readTextFile(golden));
  });
}

Deno.test("compile() reports every problem of a spec in one pass, in file order", async () => {
  const error = await diagnose(CASES["many_errors"]);
  assert.equal(error.issues.length, 8);
  assert.equal(
    error.message,
    `Cannot compile spec "${DIR}/many_errors.yaml": 8 problems`,
  );
  const lines = error.issues.map((i) => i.line);
  assert.deepEqual(lines, [...lines].sort((a, b) => a - b));
});

Deno.test("diagnostics give did-you-mean hints and allowed values", async () => {
  const byCode = async (c: Case, code: string) =>
    (await diagnose(c)).issues.find((i) => i.code === code)!;
  assert.equal(
    (await byCode(CASES["unknown_key"], "unknown_key")).hint,
    'did you mean "seed"?',
  );
  assert.equal(
    (await byCode(CASES["bad_enum"], "bad_enum")).hint,
    'did you mean "webgpu"? allowed values: "auto", "webgpu", "cpu"',
  );
  assert.match(
    (await byCode(CASES["unknown_stage"], "unknown_stage")).hint!,
    /^did you mean "mono_mix"\?/,
  );
  assert.equal(
    (await byCode(CASES["unmet_takes"], "unmet_takes")).hint,
    "add `- use: mono_mix` before _needs_waveform",
  );
  const wrong = await byCode(CASES["wrong_type"], "wrong_type");
  assert.match(wrong.message, /expected a number, found string/);
  assert.match(wrong.message, /"16k"/);
});
