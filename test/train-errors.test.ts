// What a user sees when training input is wrong, end to end through the built CLI (dist/src/cli/main.js):
//   - malformed data, config files, overrides and folders for `tsdpo train`, `tsdpo logprobs` and `tsdpo eval`: a
//     non-zero exit (1 bad input, 2 bad usage/config), exactly one `error:` line on stderr that names the file and
//     line and field, or the key, no stack trace, nothing on stdout, and nothing written: each case runs in an empty
//     folder of its own (its working directory, holding only its input files) with TSDPO_CACHE_DIR inside it, and
//     the folder must hold exactly its input files afterwards (no run folder, no cache, no invalid-row report);
//   - a run whose loss stops being finite: the message names the step and the last good checkpoint, which is left
//     exactly as an independent run to that step writes it;
//   - --skip-invalid / skip_invalid: malformed rows become a count and invalid_rows.jsonl in the run folder.

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { loadModel } from "../src/io/load.js";
import { fixture, repoRoot, storiesGguf, testBackendName } from "./helpers.js";

const tmp = mkdtempSync(join(tmpdir(), "tsdpo-train-errors-"));
after(() => rmSync(tmp, { recursive: true, force: true }));
const cli = join(repoRoot, "dist", "src", "cli", "main.js");

interface Run { code: number | null; stdout: string; stderr: string }

function run(cwd: string, args: string[]): Run {
  const env: NodeJS.ProcessEnv = { ...process.env, TSDPO_CACHE_DIR: join(cwd, "cache") };
  delete env["TSDPO_DEBUG"]; // would print stacks on purpose
  const r = spawnSync(process.execPath, [cli, ...args], { cwd, encoding: "utf8", env, timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Every file under dir, as relative paths, sorted. */
function listing(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else out.push(relative(dir, p));
    }
  };
  walk(dir);
  return out.sort();
}

/** Exit code, exactly one `error:` line holding every fragment, no stack trace, nothing on stdout. */
function assertOneError(r: Run, code: 1 | 2, fragments: string[]): void {
  const show = `\n--- stderr ---\n${r.stderr}--- stdout ---\n${r.stdout}`;
  assert.equal(r.code, code, `exit code${show}`);
  assert.match(r.stderr, /^error: [^\n]+\n$/, `expected exactly one "error: ..." line${show}`);
  assert.doesNotMatch(r.stderr, /^\s+at /m, `stack trace printed${show}`);
  for (const f of fragments) assert.ok(r.stderr.includes(f), `stderr lacks ${JSON.stringify(f)}${show}`);
  assert.equal(r.stdout, "", `stdout should be empty${show}`);
}

// ---------------------------------------------------------------------------------------------------------------
// Inputs

const row = (prompt: string, chosen: string, rejected: string): string => JSON.stringify({ prompt, chosen, rejected });
const GOOD = [row("Tom had a ball.", " He threw it.", " It ate the sun."), row("The sun was out.", " It was a happy day.", " It was dark.")];
const jsonl = (...lines: string[]): string => lines.join("\n") + "\n";

/** A train config; precompute_ref_log_probs so that a cache written too early would show. */
const trainConfig = (extra: Record<string, unknown> = {}): string =>
  JSON.stringify({
    model: storiesGguf, data: "pairs.jsonl", backend: testBackendName, max_length: 48, max_steps: 1, output_dir: "run",
    precompute_ref_log_probs: true, ...extra,
  });

interface Case {
  name: string;
  /** Written into the case's folder, which is also its working directory. */
  files: Record<string, string | { copy: string }>;
  /** "{dir}" stands for the case's folder. */
  args: string[];
  code: 1 | 2;
  says: string[];
}

const base = { "pairs.jsonl": jsonl(...GOOD) };
const M = `--model=${storiesGguf}`;

const CASES: Case[] = [
  // --- train: data files
  {
    name: "bad JSON line (no config file: the default run folder under runs/ must not appear either)",
    files: { "bad.jsonl": jsonl(GOOD[0]!, '{"prompt": "a", "chosen": " b"') },
    args: ["train", "--data=bad.jsonl", M, "--max_length=48", "--max_prompt_length=24"],
    code: 1, says: ["{dir}/bad.jsonl:2: row: is not valid JSON"],
  },
  {
    name: "missing field",
    files: { "cfg.json": trainConfig({ data: "missing.jsonl" }), "missing.jsonl": jsonl(...GOOD, '{"prompt": "a", "chosen": " b"}') },
    args: ["train", "cfg.json"], code: 1, says: ['{dir}/missing.jsonl:3: rejected: is missing (the row has keys "prompt", "chosen")'],
  },
  {
    name: "empty completion",
    files: { "cfg.json": trainConfig({ data: "empty.jsonl" }), "empty.jsonl": jsonl(row("a", "", " b"), ...GOOD) },
    args: ["train", "cfg.json"], code: 1, says: ["{dir}/empty.jsonl:1: chosen: is an empty string"],
  },
  {
    name: "wrong type of an answer",
    files: { "cfg.json": trainConfig({ data: "type.jsonl" }), "type.jsonl": jsonl(GOOD[0]!, '{"prompt": "a", "chosen": 5, "rejected": " b"}') },
    args: ["train", "cfg.json"], code: 1, says: ["{dir}/type.jsonl:2: chosen: is a number (5)"],
  },
  {
    name: "wrong type of a prompt",
    files: { "cfg.json": trainConfig({ data: "prompt.jsonl" }), "prompt.jsonl": jsonl('{"prompt": {"text": "a"}, "chosen": " b", "rejected": " c"}') },
    args: ["train", "cfg.json"], code: 1, says: ["{dir}/prompt.jsonl:1: prompt: is"],
  },
  {
    name: "a row that is not an object",
    files: { "cfg.json": trainConfig({ data: "list.jsonl" }), "list.jsonl": jsonl(GOOD[0]!, "", '["a", " b", " c"]') },
    args: ["train", "cfg.json"], code: 1, says: ["{dir}/list.jsonl:3: row: is"],
  },
  {
    name: "a bad item of a JSON array file",
    files: { "cfg.json": trainConfig({ data: "rows.json" }), "rows.json": `[\n  ${GOOD[0]},\n  {"prompt": "a", "chosen": " b"}\n]\n` },
    args: ["train", "cfg.json"], code: 1, says: ["{dir}/rows.json:3 (item 1): rejected: is missing"],
  },
  {
    name: "nonexistent data file",
    files: { "cfg.json": trainConfig({ data: "nope.jsonl" }) },
    args: ["train", "cfg.json"], code: 1, says: ['cfg.json: "data": "nope.jsonl" ({dir}/nope.jsonl) does not exist (a path in a config file is relative to the file\'s folder)'],
  },
  {
    name: "Parquet file without the mapped column",
    files: { "cfg.json": trainConfig({ data: "pairs.parquet" }), "pairs.parquet": { copy: fixture("data", "standard.parquet") } },
    args: ["train", "cfg.json", "--chosen_field=response_j"], code: 1,
    says: ['{dir}/pairs.parquet: has no column "response_j" (columns: "prompt", "chosen", "rejected"'],
  },
  {
    name: "a bad row in eval_data",
    files: { ...base, "cfg.json": trainConfig({ eval_data: "eval.jsonl" }), "eval.jsonl": jsonl(GOOD[1]!, row("a", " b", "")) },
    args: ["train", "cfg.json"], code: 1, says: ["{dir}/eval.jsonl:2: rejected: is an empty string"],
  },
  {
    name: "chat messages and a model without a chat template",
    files: {
      "cfg.json": trainConfig({ data: "chat.jsonl" }),
      "chat.jsonl": jsonl(JSON.stringify({ prompt: [{ role: "user", content: "hi" }], chosen: [{ role: "assistant", content: "hello" }], rejected: [{ role: "assistant", content: "go" }] })),
    },
    args: ["train", "cfg.json"], code: 2, says: ["{dir}/chat.jsonl:1: chosen: is a list of chat messages"],
  },
  {
    name: "no pair left (chosen = rejected in every row)",
    files: { "cfg.json": trainConfig({ data: "same.jsonl" }), "same.jsonl": jsonl(row("a", " b", " b"), row("c", " d", " d")) },
    args: ["train", "cfg.json"], code: 1, says: ["{dir}/same.jsonl: no usable pairs remain", "identical 2"],
  },
  {
    name: "skip_invalid with every row invalid (no run folder, so no invalid_rows.jsonl either)",
    files: { "cfg.json": trainConfig({ data: "allbad.jsonl", skip_invalid: true }), "allbad.jsonl": jsonl(row("a", "", " b"), "{") },
    args: ["train", "cfg.json"], code: 1, says: ["{dir}/allbad.jsonl: no usable pairs remain", "2 invalid"],
  },
  // --- train: config files and overrides
  {
    name: "unknown key in a config file, with a suggestion",
    files: { ...base, "cfg.json": JSON.stringify({ learning_rat: 1e-3 }) },
    args: ["train", "cfg.json"], code: 2, says: ['cfg.json: unknown key "learning_rat" (did you mean "learning_rate"?)'],
  },
  {
    name: "unknown key on the command line, with a suggestion",
    files: { ...base, "cfg.json": trainConfig() },
    args: ["train", "cfg.json", "--bta=0.2"], code: 2, says: ["train: unknown option --bta (did you mean --beta?)"],
  },
  {
    name: "wrong type in a config file",
    files: { ...base, "cfg.json": trainConfig({ learning_rate: "fast" }) },
    args: ["train", "cfg.json"], code: 2, says: ['cfg.json: "learning_rate" must be a finite number, got "fast"'],
  },
  {
    name: "wrong type in an override",
    files: { ...base, "cfg.json": trainConfig() },
    args: ["train", "cfg.json", "--max_steps", "1.5"], code: 2, says: ['--max_steps 1.5: "max_steps" must be a whole number, got 1.5'],
  },
  {
    name: "a value out of range",
    files: { ...base, "cfg.json": trainConfig({ per_device_train_batch_size: 0 }) },
    args: ["train", "cfg.json"], code: 2, says: ['cfg.json: "per_device_train_batch_size" must be ≥ 1, got 0'],
  },
  {
    name: "a setting without its dashes",
    files: { ...base, "cfg.json": trainConfig() },
    args: ["train", "cfg.json", "max_steps=2"], code: 2, says: ["train: give one config file, got 2 (cfg.json, max_steps=2); settings go as --key value"],
  },
  {
    name: "config file that is not JSON (line and column)",
    files: { ...base, "cfg.json": '{\n  "beta": 0.1,\n}\n' },
    args: ["train", "cfg.json"], code: 2, says: ["cfg.json: not valid JSON", "at line 3 column 1"],
  },
  {
    name: "config file that is a list",
    files: { ...base, "cfg.json": "[1, 2]" },
    args: ["train", "cfg.json"], code: 2, says: ["cfg.json: a training config is a JSON object"],
  },
  {
    name: "nonexistent config file",
    files: base,
    args: ["train", "nope.json"], code: 1, says: ["nope.json: cannot read the config file (ENOENT)"],
  },
  {
    name: "nonexistent model",
    files: { ...base, "cfg.json": trainConfig({ model: "nope.gguf" }) },
    args: ["train", "cfg.json"], code: 1, says: ['cfg.json: "model": "nope.gguf" ({dir}/nope.gguf) does not exist'],
  },
  {
    name: "nonexistent reference model",
    files: { ...base, "cfg.json": trainConfig({ ref_model: "ref.gguf" }) },
    args: ["train", "cfg.json"], code: 1, says: ['cfg.json: "ref_model": "ref.gguf" ({dir}/ref.gguf) does not exist'],
  },
  {
    name: "max_prompt_length ≥ max_length",
    files: { ...base, "cfg.json": trainConfig({ max_prompt_length: 48 }) },
    args: ["train", "cfg.json"], code: 2, says: ['cfg.json: "max_prompt_length" (48) must be below "max_length" (48)'],
  },
  {
    name: "eval_data and eval_size both set",
    files: { ...base, "cfg.json": trainConfig({ eval_data: "pairs.jsonl", eval_size: 1 }) },
    args: ["train", "cfg.json"], code: 2, says: ['cfg.json: set either "eval_data" (a file) or "eval_size"'],
  },
  {
    name: "unknown loss_type",
    files: { ...base, "cfg.json": trainConfig({ loss_type: "dpoo" }) },
    args: ["train", "cfg.json"], code: 2, says: ['cfg.json: loss.loss_type: unknown loss "dpoo"; known: sigmoid'],
  },
  {
    name: "loss_weights of the wrong length",
    files: { ...base, "cfg.json": trainConfig({ loss_type: ["sigmoid", "ipo"], loss_weights: [1] }) },
    args: ["train", "cfg.json"], code: 2, says: ["cfg.json: loss.loss_weights: has 1 weights but loss_type has 2 entries"],
  },
  {
    name: "a loss option of another loss",
    files: { ...base, "cfg.json": trainConfig({ simpo_gamma: 0.5 }) },
    args: ["train", "cfg.json"], code: 2, says: ['cfg.json: loss: key "simpo_gamma" does not apply to the DPO family'],
  },
  // --- train --resume
  {
    name: "--resume on a folder without a run",
    files: { ...base, "empty/.keep": "" },
    args: ["train", "--resume", "empty"], code: 1, says: ["train --resume empty: not a tsdpo run folder"],
  },
  {
    name: "--resume with settings",
    files: { ...base, "cfg.json": trainConfig() },
    args: ["train", "--resume", "run", "--beta=0.2"], code: 2, says: ["train --resume takes the run's saved config; remove --beta"],
  },
  // --- logprobs
  {
    name: "logprobs: bad JSON line",
    files: { "bad.jsonl": jsonl(GOOD[0]!, "{") },
    args: ["logprobs", "--data", "bad.jsonl"], code: 1, says: ["{dir}/bad.jsonl:2: row: is not valid JSON"],
  },
  {
    name: "logprobs: wrong type of an answer",
    files: { "missing.jsonl": jsonl('{"chosen": " b", "rejected": 7}') },
    args: ["logprobs", "--data", "missing.jsonl"], code: 1, says: ["{dir}/missing.jsonl:1: rejected: is a number (7)"],
  },
  {
    name: "logprobs: nonexistent model",
    files: base,
    args: ["logprobs", "--data", "pairs.jsonl", "--model", "nope.gguf"], code: 1, says: ["nope.gguf: no such model file or folder"],
  },
  {
    name: "logprobs: no --data",
    files: {},
    args: ["logprobs"], code: 2, says: ["logprobs: --data <file> is required"],
  },
  {
    name: "logprobs: unknown option",
    files: base,
    args: ["logprobs", "--dat", "pairs.jsonl"], code: 2, says: ["logprobs: unknown option --dat (did you mean --data?)"],
  },
  // --- eval
  {
    name: "eval: empty completion",
    files: { "empty.jsonl": jsonl(GOOD[0]!, row("a", " b", "")) },
    args: ["eval", "--model", storiesGguf, "--reference", storiesGguf, "--data", "empty.jsonl"], code: 1,
    says: ["{dir}/empty.jsonl:2: rejected: is an empty string"],
  },
  {
    name: "eval: β ≤ 0",
    files: base,
    args: ["eval", "--model", storiesGguf, "--reference", storiesGguf, "--data", "pairs.jsonl", "--beta=-1"], code: 2,
    says: ["--beta -1: expected a number > 0"],
  },
  {
    name: "eval: nonexistent reference",
    files: base,
    args: ["eval", "--model", storiesGguf, "--reference", "ref.gguf", "--data", "pairs.jsonl"], code: 1,
    says: ["ref.gguf: no such model file or folder"],
  },
  {
    name: "eval: no --model",
    files: base,
    args: ["eval", "--data", "pairs.jsonl"], code: 2, says: ["eval: --model and --data are required"],
  },
];

let caseCount = 0;
function caseDir(files: Case["files"]): string {
  const dir = join(tmp, `case-${caseCount++}`);
  mkdirSync(dir);
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(join(dir, name, ".."), { recursive: true });
    if (typeof content === "string") writeFileSync(join(dir, name), content);
    else copyFileSync(content.copy, join(dir, name));
  }
  return dir;
}

test(`${CASES.length} malformed inputs: one error line naming the place, no stack, nothing left behind`, async (t) => {
  assert.ok(CASES.length >= 20);
  for (const c of CASES)
    await t.test(c.name, () => {
      const dir = caseDir(c.files);
      const before = listing(dir);
      const r = run(dir, c.args.map((a) => a.replaceAll("{dir}", dir)));
      assertOneError(r, c.code, c.says.map((s) => s.replaceAll("{dir}", dir)));
      assert.deepEqual(listing(dir), before, "the failed command left files behind");
    });
});

test("output_dir that already holds a run: refused, and the run is left as it was", () => {
  const dir = caseDir({ ...base, "cfg.json": trainConfig({ precompute_ref_log_probs: false }) });
  const first = run(dir, ["train", "cfg.json", "--quiet"]);
  assert.equal(first.code, 0, first.stderr);
  const before = listing(dir).map((f) => [f, readFileSync(join(dir, f), "utf8")]);
  assert.ok(before.some(([f]) => f === join("run", "final", "model.safetensors")));
  const again = run(dir, ["train", "cfg.json", "--learning_rate=0.5"]);
  assertOneError(again, 2, [`${dir}/run: already holds a run; continue it with \`tsdpo train --resume ${dir}/run\``]);
  assert.deepEqual(listing(dir).map((f) => [f, readFileSync(join(dir, f), "utf8")]), before);
});

// ---------------------------------------------------------------------------------------------------------------
// Divergence

/**
 * learning_rate 1e30 is an honest way to diverge: AdamW's first update is about lr·sign(g), so after step 1 the
 * weights are ±1e30 (finite in float32), and step 2's forward squares them in RMSNorm (1e60 > float32's 3.4e38):
 * the loss is NaN. Step 1 itself is computed from the shipped weights, so its loss is ln 2.
 */
const divergingConfig = (extra: Record<string, unknown>): string =>
  JSON.stringify({
    model: storiesGguf, data: fixture("train", "pairs.jsonl"), backend: testBackendName, max_length: 48, per_device_train_batch_size: 2,
    learning_rate: 1e30, lr_scheduler_type: "constant", max_steps: 6, output_dir: "run", ...extra,
  });

test("a non-finite loss stops the run, naming the step and the last good checkpoint, which stays intact", () => {
  const dir = caseDir({ "cfg.json": divergingConfig({ save_steps: 1 }) });
  const r = run(dir, ["train", "cfg.json", "--quiet"]);
  const out = join(dir, "run");
  assertOneError(r, 1, ["step 2: the loss is not finite", `The last good checkpoint is ${out}/checkpoints/step-1.`, "Lower learning_rate (now 1e+30)."]);
  assert.ok(!existsSync(join(out, "final")) && !existsSync(join(out, "summary.json")), "a diverged run must not look finished");
  assert.deepEqual(readdirSync(join(out, "checkpoints")), ["step-1"], "nothing after the last good step, not even a temp folder");
  const rows = readFileSync(join(out, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, number>);
  assert.deepEqual(rows.map((m) => m.step), [1]);
  assert.equal(rows[0]!.loss, Math.LN2);

  // Intact: the same bytes as the checkpoint of a run that is simply told to stop after step 1.
  const refDir = caseDir({ "cfg.json": divergingConfig({ save_steps: 1, max_steps: 1 }) });
  const ok = run(refDir, ["train", "cfg.json", "--quiet"]);
  assert.equal(ok.code, 0, ok.stderr);
  for (const f of ["model.safetensors", "optimizer.safetensors", "trainer_state.json", "tokenizer.json", "config.json"])
    assert.ok(
      readFileSync(join(out, "checkpoints", "step-1", f)).equals(readFileSync(join(refDir, "run", "checkpoints", "step-1", f))),
      `checkpoints/step-1/${f} differs from an uninterrupted run's`,
    );
  const params = loadModel(join(out, "checkpoints", "step-1")).model.params;
  let big = 0;
  for (let i = 0; i < params.length; i++) {
    assert.ok(Number.isFinite(params[i]!), `parameter ${i} is ${params[i]}`);
    big = Math.max(big, Math.abs(params[i]!));
  }
  assert.ok(big >= 1e29, `after one step at lr 1e30 some weight should be ~1e30 (max ${big})`);
});

test("a non-finite loss before any checkpoint says so", () => {
  const dir = caseDir({ "cfg.json": divergingConfig({ save_steps: 0 }) });
  const r = run(dir, ["train", "cfg.json", "--quiet"]);
  assertOneError(r, 1, ["step 2: the loss is not finite", "No checkpoint was written yet."]);
  assert.ok(!existsSync(join(dir, "run", "checkpoints")) && !existsSync(join(dir, "run", "final")));
});

// ---------------------------------------------------------------------------------------------------------------
// Skipping malformed rows

test("--skip-invalid and skip_invalid: true count malformed rows and list them in invalid_rows.jsonl", () => {
  const data = jsonl(
    GOOD[0]!, // line 1
    '{"prompt": "a", "chosen": " b"', // line 2: not JSON
    GOOD[1]!, // line 3
    "", // line 4: blank, not a row
    '{"prompt": "a", "chosen": " b"}', // line 5: no rejected
    row("a", "", " b"), // line 6: empty chosen
    row("The dog was hungry.", " He found a bone.", " He was a fish."), // line 7
  );
  const reports: string[] = [];
  for (const [args, extra] of [[["--skip-invalid"], {}], [[], { skip_invalid: true }]] as const) {
    const dir = caseDir({ "cfg.json": trainConfig({ data: "rows.jsonl", precompute_ref_log_probs: false, ...extra }), "rows.jsonl": data });
    const r = run(dir, ["train", "cfg.json", ...args, "--quiet"]);
    assert.equal(r.code, 0, r.stderr);
    const file = join(dir, "rows.jsonl");
    const report = readFileSync(join(dir, "run", "invalid_rows.jsonl"), "utf8");
    const issues = report.trim().split("\n").map((l) => JSON.parse(l) as { file: string; line: number; index: number; where: string; field: string; reason: string });
    assert.deepEqual(issues.map((i) => [i.line, i.index, i.field, i.where]), [
      [2, 1, "row", `${file}:2`],
      [5, 3, "rejected", `${file}:5`],
      [6, 4, "chosen", `${file}:6`],
    ]);
    for (const i of issues) assert.equal(i.file, file);
    assert.match(issues[0]!.reason, /not valid JSON/);
    assert.match(issues[1]!.reason, /is missing/);
    assert.match(issues[2]!.reason, /empty string/);
    const summary = JSON.parse(readFileSync(join(dir, "run", "summary.json"), "utf8")) as { data: string[] };
    assert.match(summary.data[0]!, /: 6 rows -> 3 usable pairs .*; 3 invalid;/);
    // the first invalid rows shown, and where all of them are
    assert.deepEqual(summary.data.slice(1, 4).map((l) => l.replaceAll(dir, "{dir}").replace(/ \(.*$|;.*$/, "")), [
      "  invalid {dir}/rows.jsonl:2: row: is not valid JSON", "  invalid {dir}/rows.jsonl:5: rejected: is missing", "  invalid {dir}/rows.jsonl:6: chosen: is an empty string",
    ]);
    assert.match(summary.data.at(-1)!, /^  \(all 3 invalid rows in .*invalid_rows\.jsonl\)$/);
    reports.push(report.replaceAll(dir, "{dir}"));
  }
  assert.equal(reports[0], reports[1], "the flag and the config key must do the same");
});
