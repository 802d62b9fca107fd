// The CLI as a new user meets it, through the built dist/src/cli/main.js: options in either spelling and form,
// "did you mean", help texts, paths relative to where they were written, a bare `tsdpo train` that runs the shipped
// config, export that refuses to overwrite, evaluation progress, and the summary a run ends with.

import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { isAbsolute, join } from "node:path";
import { readSafetensors } from "../src/io/safetensors.js";
import { DEFAULT_TRAIN_CONFIG } from "../src/train/config.js";
import { etaSeconds, evalsAfter } from "../src/train/progress.js";
import { fixture, repoRoot, storiesGguf, testBackendName } from "./helpers.js";

const cli = join(repoRoot, "dist", "src", "cli", "main.js");
const tmp = mkdtempSync(join(tmpdir(), "tsdpo-cli-forgiving-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

interface Run { code: number | null; stdout: string; stderr: string }

function run(args: string[], cwd = tmp): Run {
  const env: NodeJS.ProcessEnv = { ...process.env, TSDPO_CACHE_DIR: join(tmp, "cache"), TSDPO_BACKEND: testBackendName };
  delete env["TSDPO_DEBUG"];
  const r = spawnSync(process.execPath, [cli, ...args], { cwd, encoding: "utf8", env, timeout: 300_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const show = (r: Run): string => `\n--- stderr ---\n${r.stderr}--- stdout ---\n${r.stdout}`;
function ok(r: Run): Run {
  assert.equal(r.code, 0, `exit code${show(r)}`);
  return r;
}
function fails(r: Run, code: 1 | 2, ...fragments: string[]): void {
  assert.equal(r.code, code, `exit code${show(r)}`);
  assert.match(r.stderr, /^error: [^\n]+\n$/, `one error line${show(r)}`);
  for (const f of fragments) assert.ok(r.stderr.includes(f), `stderr lacks ${JSON.stringify(f)}${show(r)}`);
}

const pairs = fixture("train", "pairs.jsonl");
/** A tiny run: 2 steps on the shipped model and the test pairs. */
const tiny = ["--model", storiesGguf, "--data", pairs, "--max_length", "48", "--max_prompt_length", "24", "--per_device_train_batch_size", "2"];

describe("options: one parser for every command", () => {
  test("--key value, --key=value, kebab-case and snake_case give the same generation", () => {
    const a = ok(run(["generate", "--model", storiesGguf, "--prompt", "Once", "--max-new-tokens", "4", "--json"]));
    const b = ok(run(["generate", `--model=${storiesGguf}`, "--prompt=Once", "--max_new_tokens=4", "--json"]));
    const c = ok(run(["generate", "--model", storiesGguf, "--prompt", "Once", "--max_new_tokens", "4", "--json"]));
    assert.equal(JSON.parse(a.stdout).ids.length, 4);
    assert.equal(b.stdout, a.stdout);
    assert.equal(c.stdout, a.stdout);
    // a value that starts with a dash is still a value (parseArgs alone calls it ambiguous)
    const d = ok(run(["generate", "--model", storiesGguf, "--prompt", "Once", "--max-new-tokens", "4", "--temperature", "1", "--seed", "-3", "--json"]));
    const e = ok(run(["generate", "--model", storiesGguf, "--prompt", "Once", "--max-new-tokens", "4", "--temperature", "1", "--seed=-3", "--json"]));
    assert.equal(d.stdout, e.stdout);
  });

  test("train takes --key value (the old parser read `--max_steps 1` as max_steps=true)", () => {
    const out = join(tmp, "spaced");
    const r = ok(run(["train", ...tiny, "--max_steps", "1", "--eval_size", "0", "--load_best_model_at_end", "false", "--max-grad-norm", "0.5", "--quiet", "--output_dir", out]));
    const saved = JSON.parse(readFileSync(join(out, "config.json"), "utf8"));
    assert.equal(saved.max_steps, 1, show(r));
    assert.equal(saved.max_grad_norm, 0.5);
    assert.equal(saved.max_length, 48);
    // a boolean alone, then followed by an explicit false
    const out2 = join(tmp, "flags");
    ok(run(["train", ...tiny, "--max_steps", "1", "--eval_size", "0", "--load_best_model_at_end=false", "--skip-invalid", "--shared_prefix", "false", "--quiet", "--output_dir", out2]));
    const saved2 = JSON.parse(readFileSync(join(out2, "config.json"), "utf8"));
    assert.equal(saved2.skip_invalid, true);
    assert.equal(saved2.shared_prefix, false);
  });

  test("a string option followed by another option says the value is missing", () => {
    fails(run(["generate", "--prompt", "--model", storiesGguf]), 2, "generate: --prompt needs a value");
  });

  test("did you mean: commands, options, train settings", () => {
    fails(run(["trian"]), 2, 'unknown command "trian"', "did you mean `tsdpo train`?");
    fails(run(["generate", "--prompt", "x", "--temprature", "0.5"]), 2, "unknown option --temprature (did you mean --temperature?)");
    fails(run(["train", "--learning-rat", "1e-4"]), 2, "unknown option --learning-rat (did you mean --learning_rate?)");
    fails(run(["eval", "--modle", "x"]), 2, "did you mean --model?");
  });

  test("--loss_type dpo says that DPO's loss is sigmoid", () => {
    fails(run(["train", ...tiny, "--loss_type", "dpo"]), 2, 'unknown loss "dpo"', `DPO's loss (the paper's) is "sigmoid"`);
  });

  test("a Hub id as --model says that tsdpo reads local files only", () => {
    fails(run(["generate", "--model", "HuggingFaceTB/SmolLM-135M", "--prompt", "x"]), 1, "tsdpo reads local files only", "huggingface-cli download");
    fails(run(["train", "--model", "Qwen/Qwen2.5-0.5B", "--data", pairs]), 1, '"model": "Qwen/Qwen2.5-0.5B"', "tsdpo reads local files only");
  });
});

describe("help", () => {
  test("tsdpo --help starts with demo", () => {
    const r = ok(run(["--help"]));
    const first = /commands:\n\s+(\w+)/.exec(r.stdout);
    assert.equal(first?.[1], "demo", r.stdout);
    assert.match(r.stdout, /Start with `tsdpo demo`/);
    assert.equal(ok(run(["help", "export"])).stdout, ok(run(["export", "--help"])).stdout);
  });

  test("train --help points at --list-keys, which lists every key with its default", () => {
    assert.match(ok(run(["train", "--help"])).stdout, /--list-keys/);
    const list = ok(run(["train", "--list-keys"])).stdout;
    for (const key of Object.keys(DEFAULT_TRAIN_CONFIG)) assert.match(list, new RegExp(`^  ${key} +\\S`, "m"), `${key} listed`);
    for (const key of ["loss_type", "beta", "label_smoothing", "rpo_alpha", "ld_alpha", "simpo_gamma", "cpo_alpha"])
      assert.match(list, new RegExp(`^  ${key} +\\S`, "m"), `${key} listed`);
    assert.doesNotMatch(list, / \?$/m, "every key has a meaning");
    assert.match(list, /^  learning_rate +1e-6 /m, "TRL's default shown");
  });

  test("export --help documents --format, --dtype, --max-shard-size with defaults, and --force; eval --help lists --adapter", () => {
    const e = ok(run(["export", "--help"])).stdout;
    assert.match(e, /--format F +hf \(default\), peft or gguf/);
    assert.match(e, /--dtype D +f32 \(default\)/);
    assert.match(e, /--max-shard-size S .*default 5GB/);
    assert.match(e, /--force/);
    assert.match(ok(run(["eval", "--help"])).stdout, /--adapter <folder>/);
    for (const cmd of ["eval", "logprobs"]) assert.match(ok(run([cmd, "--help"])).stdout, /--skip-invalid/);
  });
});

describe("export refuses to overwrite without --force", () => {
  test("an existing output file is kept unless --force", () => {
    const out = join(tmp, "exists.gguf");
    writeFileSync(out, "precious");
    fails(run(["export", storiesGguf, "--format", "gguf", "--out", out]), 2, `${out} already exists`, "--force");
    assert.equal(readFileSync(out, "utf8"), "precious");
    ok(run(["export", storiesGguf, "--format", "gguf", "--out", out, "--force"]));
    assert.equal(readFileSync(out).subarray(0, 4).toString("latin1"), "GGUF");
    // an empty folder is not "existing output"
    const empty = join(tmp, "empty-out");
    mkdirSync(empty);
    ok(run(["export", storiesGguf, "--out", empty]));
    assert.ok(existsSync(join(empty, "config.json")));
  });
});

describe("paths: relative to the config file, or to the current folder; saved absolute", () => {
  test("a config in another folder, run from a third, resumed and evaluated from a fourth", () => {
    const proj = join(tmp, "proj");
    mkdirSync(join(proj, "configs"), { recursive: true });
    mkdirSync(join(proj, "data"), { recursive: true });
    cpSync(pairs, join(proj, "data", "pairs.jsonl"));
    cpSync(storiesGguf, join(proj, "model.gguf"));
    writeFileSync(join(proj, "configs", "run.json"), JSON.stringify({
      model: "../model.gguf", data: "../data/pairs.jsonl", max_length: 48, max_prompt_length: 24,
      per_device_train_batch_size: 2, max_steps: 2, save_steps: 1, learning_rate: 1e-3, output_dir: "out/run",
    }));
    const elsewhere = join(tmp, "elsewhere");
    mkdirSync(elsewhere, { recursive: true });
    ok(run(["train", join(proj, "configs", "run.json"), "--quiet"], elsewhere));
    const runDir = join(elsewhere, "out", "run"); // output_dir: the current folder
    const saved = JSON.parse(readFileSync(join(runDir, "config.json"), "utf8"));
    assert.equal(saved.model, join(proj, "model.gguf"));
    assert.equal(saved.data, join(proj, "data", "pairs.jsonl"));
    assert.ok(isAbsolute(saved.output_dir));
    // eval and resume from yet another folder
    const other = join(tmp, "other");
    mkdirSync(other, { recursive: true });
    const ev = ok(run(["eval", "--model", runDir, "--data", join(proj, "data", "pairs.jsonl"), "--json"], other));
    assert.equal(JSON.parse(ev.stdout).reference, join(proj, "model.gguf"));
    rmSync(join(runDir, "final"), { recursive: true });
    rmSync(join(runDir, "checkpoints", "step-2"), { recursive: true });
    ok(run(["train", "--resume", runDir, "--quiet"], other));
    assert.ok(existsSync(join(runDir, "final", "model.safetensors")));
  });

  test("a missing path names its key and the rule it was resolved by", () => {
    const dir = join(tmp, "missing");
    mkdirSync(join(dir, "sub"), { recursive: true });
    writeFileSync(join(dir, "sub", "cfg.json"), JSON.stringify({ data: "pairs.jsonl" }));
    cpSync(pairs, join(dir, "pairs.jsonl")); // beside the cwd, not beside the config
    fails(run(["train", "sub/cfg.json"], dir), 1, `sub/cfg.json: "data": "pairs.jsonl" (${join(dir, "sub", "pairs.jsonl")}) does not exist`,
      "relative to the file's folder");
    fails(run(["train", "--eval_data", "nope.jsonl"], dir), 1, `command line: "eval_data": "nope.jsonl"`, "relative to the current folder");
  });
});

describe("a bare `tsdpo train` runs the shipped configs/default.json", () => {
  test("its settings, with absolute asset paths, and the overrides on top", () => {
    const dir = join(tmp, "bare");
    mkdirSync(dir, { recursive: true });
    const r = ok(run(["train", "--max_steps", "1", "--eval_size", "4", "--eval_on_start", "false", "--output_dir", "r"], dir));
    assert.match(r.stderr, /config: .*configs\/default\.json \(the shipped default/);
    const shipped = JSON.parse(readFileSync(join(repoRoot, "configs", "default.json"), "utf8"));
    const saved = JSON.parse(readFileSync(join(dir, "r", "config.json"), "utf8"));
    assert.equal(saved.learning_rate, shipped.learning_rate);
    assert.equal(saved.max_length, shipped.max_length);
    assert.notEqual(saved.learning_rate, DEFAULT_TRAIN_CONFIG.learning_rate, "not TRL's 1e-6");
    assert.equal(saved.model, join(repoRoot, "assets", "models", "stories260K", "stories260K.gguf"));
    assert.equal(saved.data, join(repoRoot, "assets", "data", "hh-rlhf", "harmless-base-test.jsonl.gz"));
    assert.equal(saved.max_steps, 1);
    assert.equal(saved.eval_size, 4);
  });

  test("configs/ ships in the package", () => {
    const pkg = JSON.parse(readFileSync(join(repoRoot, "package.json"), "utf8"));
    assert.ok(pkg.files.includes("configs"), "package.json files lists configs");
  });
});

describe("data: one loader for every command", () => {
  const dataDir = join(tmp, "data");
  mkdirSync(dataDir, { recursive: true });

  test("a renamed prompt is never replaced by a guess: the first error gives all three mappings", () => {
    const file = fixture("data", "renamed-prompt.jsonl");
    const mapped = ["--chosen_field", "answer_good", "--rejected_field", "answer_bad"];
    fails(run(["train", ...tiny, "--data", file, ...mapped, "--output_dir", join(dataDir, "x")]), 2,
      `${file}:1:`, '"question"', "prompt_field=question", "chosen_field=answer_good", "rejected_field=answer_bad");
    assert.ok(!existsSync(join(dataDir, "x")), "no run folder");
    for (const cmd of [["logprobs"], ["eval", "--reference", storiesGguf]])
      fails(run([...cmd, "--model", storiesGguf, "--data", file, ...mapped]), 2, "prompt_field=question");
    // the mapping the error asks for works, in each command
    const lp = ok(run(["logprobs", "--model", storiesGguf, "--data", file, ...mapped, "--prompt-field", "question"]));
    assert.equal(lp.stdout.trim().split("\n").length, readFileSync(file, "utf8").trim().split("\n").length);
  });

  test("logprobs and eval read conversational rows with the model's chat template, as train does", () => {
    const hf = join(dataDir, "chat-model");
    ok(run(["export", storiesGguf, "--out", hf]));
    const tc = JSON.parse(readFileSync(join(hf, "tokenizer_config.json"), "utf8"));
    tc.chat_template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}";
    writeFileSync(join(hf, "tokenizer_config.json"), JSON.stringify(tc));
    const conv = fixture("data", "conversational.jsonl");
    const rows = readFileSync(conv, "utf8").trim().split("\n").length;
    const lp = ok(run(["logprobs", "--model", hf, "--data", conv]));
    assert.equal(lp.stdout.trim().split("\n").length, rows);
    const ev = ok(run(["eval", "--model", hf, "--reference", hf, "--data", conv, "--json"]));
    assert.equal(JSON.parse(ev.stdout).pairs, rows);
    // and the model without a template says what is missing
    fails(run(["logprobs", "--model", storiesGguf, "--data", conv]), 2, "chat template");
  });

  test("CSV and TSV, with quoted commas and newlines, through the CLI", () => {
    for (const name of ["quoted.csv", "quoted.tsv"]) {
      const lp = ok(run(["logprobs", "--model", storiesGguf, "--data", fixture("data", name)]));
      assert.ok(lp.stdout.trim().split("\n").length >= 2, lp.stdout);
    }
    fails(run(["logprobs", "--model", storiesGguf, "--data", fixture("data", "bad.csv")]), 1, "bad.csv:");
  });

  test("junk rows: --skip-invalid in logprobs and eval, with the skipped rows shown", () => {
    const file = join(dataDir, "junk.jsonl");
    writeFileSync(file, [
      JSON.stringify({ prompt: "Tom had a ball.", chosen: " He threw it.", rejected: " It ate the sun." }),
      JSON.stringify({ prompt: "Is the sky blue?", chosen: true, rejected: false }), // PandaLM-style booleans
      JSON.stringify({ prompt: "The sun was out.", chosen: " It was a happy day.", rejected: " It was dark." }),
    ].join("\n") + "\n");
    fails(run(["logprobs", "--model", storiesGguf, "--data", file]), 1, `${file}:2: chosen: is true, a boolean`);
    const lp = ok(run(["logprobs", "--model", storiesGguf, "--data", file, "--skip-invalid"]));
    assert.deepEqual(lp.stdout.trim().split("\n").map((l) => JSON.parse(l).index), [0, 2], "row indices of the file");
    assert.match(lp.stderr, new RegExp(`invalid ${file.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}:2: chosen: is true, a boolean`));
    const ev = ok(run(["eval", "--model", storiesGguf, "--reference", storiesGguf, "--data", file, "--skip_invalid", "--json"]));
    assert.equal(JSON.parse(ev.stdout).pairs, 2);
  });

  test("a messages-only (SFT) file says what it is", () => {
    fails(run(["logprobs", "--model", storiesGguf, "--data", fixture("data", "sft.jsonl")]), 1, "SFT", "not preference pairs");
    fails(run(["train", ...tiny, "--data", fixture("data", "sft.jsonl")]), 1, "SFT");
  });

  test("data warnings are shown and written to data_warnings.jsonl in the run folder", () => {
    const file = join(dataDir, "warn.jsonl");
    const good = readFileSync(pairs, "utf8").trim().split("\n");
    writeFileSync(file, [...good, JSON.stringify({ prompt: "Say nothing.", chosen: " ", rejected: " Something." })].join("\n") + "\n");
    const out = join(dataDir, "warn-run");
    const r = ok(run(["train", ...tiny, "--data", file, "--max_steps", "1", "--eval_size", "0", "--load_best_model_at_end", "false", "--output_dir", out]));
    const line = good.length + 1;
    assert.match(r.stderr, /1 warnings/);
    assert.ok(r.stderr.includes(`warning ${file}:${line}: chosen: is only whitespace`), show(r));
    assert.ok(r.stderr.includes(join(out, "data_warnings.jsonl")), "says where the warnings are");
    const written = readFileSync(join(out, "data_warnings.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(written.map((w) => [w.line, w.field]), [[line, "chosen"]]);
  });
});

describe("long silences", () => {
  test("the training ETA counts the evaluations still to come (worked by hand)", () => {
    // 100 steps, eval every 30 (at 30, 60, 90) and at the end (100): after step 40, three evaluations remain.
    assert.equal(evalsAfter(40, 100, 30, 300), 3);
    assert.equal(evalsAfter(90, 100, 30, 300), 1);
    assert.equal(evalsAfter(100, 100, 30, 300), 0);
    assert.equal(evalsAfter(40, 100, 0, 300), 1, "eval_steps 0: only at the end");
    assert.equal(evalsAfter(40, 100, 25, 300), 3, "50, 75, 100: the last is already a multiple");
    assert.equal(evalsAfter(40, 100, 30, 0), 0, "no held-out pairs");
    const base = { step: 40, totalSteps: 100, trainSeconds: 80, trainSteps: 40, evalSize: 300, evalSteps: 30, pairsPerStep: 8, evalPairsPending: 0 };
    // measured: 2 s a step, 0.01 s an eval pair → 60 steps · 2 + 3 · 300 · 0.01 = 129
    assert.equal(etaSeconds({ ...base, evalSeconds: 3, evalPairs: 300 }), 129);
    // before any evaluation: a pair at half a training pair, 2 / 8 / 2 = 0.125 s → 120 + 900 · 0.125 = 232.5
    assert.equal(etaSeconds({ ...base, evalSeconds: 0, evalPairs: 0 }), 232.5);
    // inside an evaluation: its pairs still to go count too
    assert.equal(etaSeconds({ ...base, evalSeconds: 3, evalPairs: 300, evalPairsPending: 100 }), 130);
    assert.equal(etaSeconds({ ...base, trainSteps: 0, trainSeconds: 0, evalSeconds: 0, evalPairs: 0 }), undefined);
  });

  test("eval shows its progress through the pairs (policy, then reference) and ends at the total", () => {
    const r = ok(run(["eval", "--model", storiesGguf, "--reference", storiesGguf, "--data", pairs, "--json"]));
    assert.match(r.stderr, /^eval scored 32\/32 \(reference\) eta 0:00$/m, show(r));
    assert.equal(JSON.parse(r.stdout).pairs, 16, "stdout keeps only the result");
  });
});

describe("the end of a run", () => {
  test("a summary table (start → end, best) and the next commands, which run as printed", () => {
    const dir = join(tmp, "summary");
    mkdirSync(dir, { recursive: true });
    const r = ok(run(["train", ...tiny, "--max_steps", "4", "--eval_size", "4", "--eval_steps", "2", "--eval_on_start", "--learning_rate", "1e-3", "--output_dir", "r"], dir));
    const rows = readFileSync(join(dir, "r", "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    const evals = rows.filter((x) => "eval_loss" in x);
    assert.deepEqual(evals.map((x) => x.step), [0, 2, 4], "eval_on_start adds step 0");
    assert.ok(Math.abs(evals[0].eval_loss - Math.LN2) < 1e-6, "at step 0 the policy is the reference: loss ln 2");
    const line = (key: string): string[] => {
      const m = new RegExp(`^  ${key.replace("/", "\\/")} +(.*)$`, "m").exec(r.stderr);
      assert.ok(m, `${key} row${show(r)}`);
      return m[1]!.trim().split(/\s+/);
    };
    const [start, end] = line("eval_loss");
    assert.equal(Number(start), Number(evals[0].eval_loss.toFixed(4)));
    assert.equal(Number(end), Number(evals[2].eval_loss.toFixed(4)));
    const bestLoss = Math.min(...evals.map((x) => x.eval_loss));
    assert.equal(line("eval_loss")[2], bestLoss.toFixed(4), "best column: the lowest eval_loss");
    assert.match(r.stderr, /^done: 4 steps in /m);
    assert.match(r.stderr, /^next:$/m);
    const next = r.stderr.split("\n").filter((l) => l.startsWith("  tsdpo "));
    assert.equal(next.length, 3, show(r));
    // the printed commands work as printed (from the same folder), export with a fresh output path
    for (const cmd of next) {
      const args = cmd.replace(/#.*$/, "").trim().split(/\s+/).slice(1);
      if (args[0] === "sample") args.push("--max-new-tokens", "4", "--n", "1");
      ok(run(args, dir));
    }
    assert.ok(existsSync(join(dir, "r", "model.gguf")));
  });

  test("load_best_model_at_end: final/ holds the weights of the best evaluation (checked against its checkpoint)", () => {
    const dir = join(tmp, "best");
    mkdirSync(dir, { recursive: true });
    const r = ok(run(["train", ...tiny, "--max_steps", "6", "--eval_size", "4", "--eval_steps", "1", "--save_steps", "1", "--save_total_limit", "null",
      "--learning_rate", "3e-2", "--load_best_model_at_end", "--metric_for_best_model", "rewards/accuracies", "--output_dir", "r", "--quiet"], dir));
    const rows = readFileSync(join(dir, "r", "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    const evals = rows.filter((x) => "eval_loss" in x);
    // the first evaluation with the highest accuracy (ties keep the earlier: "better" is strict)
    const bestStep = evals.reduce((a, b) => (b["eval_rewards/accuracies"] > a["eval_rewards/accuracies"] ? b : a)).step;
    const summary = JSON.parse(readFileSync(join(dir, "r", "summary.json"), "utf8"));
    assert.equal(summary.best.step, bestStep, show(r));
    assert.equal(summary.best.metric, "eval_rewards/accuracies");
    assert.notEqual(bestStep, 6, "the run must be one where the best is not the last step, or the test proves nothing");
    const weights = (d: string): Buffer => Buffer.from(readSafetensors(join(d, "model.safetensors")).tensors.get("model.layers.0.mlp.up_proj.weight")!.data.buffer);
    const final = weights(join(dir, "r", "final"));
    assert.ok(final.equals(weights(join(dir, "r", "checkpoints", `step-${bestStep}`))), "final/ = the best step's checkpoint");
    assert.ok(final.equals(weights(join(dir, "r", "best"))));
    assert.ok(!final.equals(weights(join(dir, "r", "checkpoints", "step-6"))), "not the last step's weights");
    assert.equal(summary.eval.step, bestStep, "summary.json's eval is the final weights' evaluation");
    assert.deepEqual(readdirSync(join(dir, "r")).filter((n) => n.includes(".tmp-")), []);
  });
});
