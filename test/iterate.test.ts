// `tsdpo iterate` (src/iterate/): the built-in and module judges, pair forming, one tiny round end to end with its
// pairs re-scored from the samples file, kill -9 at three moments (sampling, judging, training) and a resume that
// ends with the same weights as an uninterrupted run, and bad input (one line, exit 1).

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { TsdpoError } from "../src/errors.js";
import { afinnReward } from "../src/demo/afinn.js";
import { makeJudge } from "../src/judge/index.js";
import { formPairs, readLog, runIterate } from "../src/iterate/iterate.js";
import { resolveIterateConfig } from "../src/iterate/config.js";
import { loadModel } from "../src/io/load.js";
import { readDemoPrompts } from "../src/demo/demo.js";
import { testBackendName } from "./helpers.js";

const cli = join(dirname(fileURLToPath(import.meta.url)), "..", "src", "cli", "main.js");
const tmp = mkdtempSync(join(tmpdir(), "tsdpo-iterate-"));
after(() => rmSync(tmp, { recursive: true, force: true }));
const ctx = { where: "test.json: judge", baseDir: tmp };
const file = (name: string, text: string): string => {
  const p = join(tmp, name);
  mkdirSync(dirname(p), { recursive: true });
  writeFileSync(p, text);
  return p;
};

test("built-in judges: afinn, length, regex (weighted match counts), json (parse, and a JSON Schema through ajv)", async () => {
  assert.equal(await (await makeJudge("afinn", ctx)).score!("p", " a happy good day"), afinnReward(" a happy good day"));
  assert.equal(await (await makeJudge("length", ctx)).score!("p", "abcde"), 5);
  const re = await makeJudge({ regex: [{ pattern: "cat", weight: 2 }, { pattern: "DOG", flags: "i", weight: -1 }] }, ctx);
  assert.equal(await re.score!("p", "cat dog cat Dog"), 2 * 2 - 1 * 2);
  const js = await makeJudge("json", ctx);
  assert.equal(await js.score!("p", ' {"a": 1} '), 1);
  assert.equal(await js.score!("p", "{a: 1}"), 0);
  const schema = await makeJudge({ json: { type: "object", required: ["name"], properties: { name: { type: "string" } } } }, ctx);
  assert.equal(await schema.score!("p", '{"name": "x"}'), 1);
  assert.equal(await schema.score!("p", '{"name": 3}'), 0);
  assert.equal(await schema.score!("p", "[]"), 0);
  await assert.rejects(makeJudge("sentiment", ctx), /judge "sentiment" is not one tsdpo knows/);
  await assert.rejects(makeJudge({ regex: [{ pattern: "(" }] }, ctx), /not a valid regular expression/);
  await assert.rejects(makeJudge({ llm: "m.gguf", templat: "t.txt" }, ctx), /unknown key "templat" in the judge; it takes "llm" and "template"/);
});

test("module judges: score or compare, sync or async, JavaScript or TypeScript; a throw or a non-number is one clear error", async () => {
  file("j/sync.mjs", "export function score(prompt, completion) { return completion.length + prompt.length; }\n");
  file("j/async.mjs", "export default { async compare(p, a, b) { await new Promise((r) => setTimeout(r, 1)); return a.length > b.length ? 0.75 : 0.25; } };\n");
  file("j/typed.ts", "export function score(prompt: string, completion: string): number { const n: number = completion.split(' ').length; return n; }\n");
  file("j/throws.mjs", "export function score() { throw new Error('service unavailable'); }\n");
  file("j/nan.mjs", "export async function score() { return 'seven'; }\n");
  file("j/none.mjs", "export const x = 1;\n");
  file("j/range.mjs", "export function compare() { return 2; }\n");
  assert.equal(await (await makeJudge("module:j/sync.mjs", ctx)).score!("ab", "cde"), 5);
  const cmp = await makeJudge("module:j/async.mjs", ctx);
  assert.equal(cmp.score, undefined);
  assert.equal(await cmp.compare!("p", "long one", "x"), 0.75);
  assert.equal(await (await makeJudge("module:j/typed.ts", ctx)).score!("p", "one two three"), 3);
  await assert.rejects((await makeJudge("module:j/throws.mjs", ctx)).score!("p", "c"), /j\/throws\.mjs: score\(prompt, completion\) threw: service unavailable/);
  await assert.rejects((await makeJudge("module:j/nan.mjs", ctx)).score!("p", "c"), /returned string "seven"; expected a finite number/);
  await assert.rejects((await makeJudge("module:j/range.mjs", ctx)).compare!("p", "a", "b"), /returned 2; expected a finite number in \[0, 1\]/);
  await assert.rejects(makeJudge("module:j/none.mjs", ctx), /exports neither score\(prompt, completion\) nor compare/);
  await assert.rejects(makeJudge("module:j/missing.mjs", ctx), /does not exist/);
});

test("formPairs: best against worst, or every pair past the margin; ties and identical texts are dropped and counted", () => {
  const s = [{ j: 0, score: 1, text: "a" }, { j: 1, score: 3, text: "b" }, { j: 2, score: 3, text: "c" }, { j: 3, score: 0, text: "d" }];
  assert.deepEqual(formPairs(s, "best_vs_worst", 0, 7), { pairs: [{ prompt: 7, chosen: 1, rejected: 3, chosen_score: 3, rejected_score: 0 }], ties: 0 });
  const all = formPairs(s, "all", 0);
  assert.deepEqual(all.pairs.map((p) => [p.chosen, p.rejected]), [[1, 0], [2, 0], [0, 3], [1, 3], [2, 3]]);
  assert.equal(all.ties, 1); // 1 vs 2, both 3
  assert.deepEqual(formPairs(s, "all", 1.5).pairs.map((p) => [p.chosen, p.rejected]), [[1, 0], [2, 0], [1, 3], [2, 3]]);
  assert.equal(formPairs(s, "all", 1.5).ties, 2);
  assert.deepEqual(formPairs([{ j: 0, score: 2, text: "same" }, { j: 1, score: 1, text: "same" }], "best_vs_worst", 0), { pairs: [], ties: 1 });
  assert.deepEqual(formPairs([{ j: 0, score: 2, text: "x" }, { j: 1, score: 2, text: "y" }], "best_vs_worst", 0), { pairs: [], ties: 1 });
});

/** 24 shipped story openings and 4 held out: a small, fast run. */
const prompts = readDemoPrompts();
const promptsFile = file("prompts.txt", prompts.slice(0, 24).join("\n") + "\n");
const evalFile = file("eval.txt", prompts.slice(100, 104).join("\n") + "\n");
const small = {
  prompts: promptsFile, eval_prompts: evalFile, rounds: 1, k: 4, max_new_tokens: 8, eval_samples: 2, sample_rows: 8,
  per_device_train_batch_size: 4, learning_rate: 5e-4, beta: 0.1, num_train_epochs: 1, logging_steps: 1, backend: testBackendName,
};

test("one round end to end: samples, scores and pairs in the run folder; the pairs re-score from the samples file alone", async () => {
  const out = join(tmp, "one");
  const res = await runIterate(resolveIterateConfig({ ...small, output_dir: out }, "test"), { quiet: true });
  const samples = readLog<{ prompt: number; j: number; ids: number[]; text: string }>(join(out, "round-1", "samples.jsonl"));
  assert.equal(samples.length, 24 * 4);
  const scores = readLog<{ prompt: number; j: number; score: number }>(join(out, "round-1", "scores.jsonl"));
  // Independently: AFINN on each logged text gives the logged score
  const byKey = new Map(samples.map((s) => [`${s.prompt}/${s.j}`, s]));
  for (const sc of scores) assert.equal(sc.score, afinnReward(byKey.get(`${sc.prompt}/${sc.j}`)!.text));
  const pairs = readFileSync(join(out, "round-1", "pairs.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(pairs.length, res.rounds[0]!.pairs);
  assert.equal(pairs.length + res.rounds[0]!.ties, 24, "best_vs_worst: one pair or one tie per prompt");
  for (const p of pairs) {
    const mine = samples.filter((s) => s.prompt === p.source_prompt);
    const sc = mine.map((s) => afinnReward(s.text));
    assert.equal(p.prompt, prompts[p.source_prompt]);
    assert.equal(p.chosen, byKey.get(`${p.source_prompt}/${p.chosen_j}`)!.text);
    assert.equal(p.rejected, byKey.get(`${p.source_prompt}/${p.rejected_j}`)!.text);
    assert.equal(afinnReward(p.chosen), Math.max(...sc));
    assert.equal(afinnReward(p.rejected), Math.min(...sc));
    assert.ok(afinnReward(p.chosen) > afinnReward(p.rejected));
  }
  // round 0 is the original model: no KL, win-rate one half by definition; round 1 moved away from it
  assert.deepEqual([res.eval[0]!.kl.mean, res.eval[0]!.win_rate.mean], [0, 0.5]);
  assert.notEqual(res.eval[1]!.kl.mean, 0);
  assert.ok(existsSync(join(out, "round-1", "train", "final")));
  assert.match(readFileSync(join(out, "report.html"), "utf8"), /Win-rate against the original model/);
});

/** The CLI as a child process, on a config file. */
function spawnIterate(cfgPath: string): ChildProcess {
  return spawn(process.execPath, [cli, "iterate", cfgPath, "--quiet"], { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, TSDPO_BACKEND: testBackendName } });
}

const lines = (p: string): number => (existsSync(p) ? readFileSync(p, "utf8").split("\n").length - 1 : 0);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Starts the run and kills it with SIGKILL once `when()` holds (or lets it finish when it ends first). */
async function killWhen(cfgPath: string, when: () => boolean): Promise<"killed" | "finished"> {
  const child = spawnIterate(cfgPath);
  const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
  let done = false;
  void exited.then(() => (done = true));
  while (!done) {
    if (when()) {
      child.kill("SIGKILL");
      await exited;
      return "killed";
    }
    await sleep(5);
  }
  return "finished";
}

test("kill -9 while sampling, while judging and while training: the same command resumes to the same final weights", async () => {
  // An async judge that takes a moment per call, as one that calls out to a service would.
  const judge = file("slow-judge.mjs", "export async function score(p, c) { await new Promise((r) => setTimeout(r, 3)); return (c.match(/[aeiou]/g) ?? []).length; }\n");
  const base = { ...small, prompts: file("p80.txt", prompts.slice(0, 80).join("\n") + "\n"), k: 2, max_new_tokens: 12, judge: `module:${judge}`, max_steps: 8, save_steps: 2, per_device_train_batch_size: 8 };
  const plain = join(tmp, "plain"), killed = join(tmp, "killed");
  const cfgA = file("a.json", JSON.stringify({ ...base, output_dir: plain }));
  const cfgB = file("b.json", JSON.stringify({ ...base, output_dir: killed }));
  const r1 = join(killed, "round-1");
  assert.equal(spawnSync(process.execPath, [cli, "iterate", cfgA, "--quiet"], { env: { ...process.env, TSDPO_BACKEND: testBackendName } }).status, 0);
  const moments: string[] = [];
  moments.push(await killWhen(cfgB, () => lines(join(r1, "samples.jsonl")) >= 20)); // sampling (160 to draw)
  assert.ok(lines(join(r1, "samples.jsonl")) < 160, "killed before sampling ended");
  moments.push(await killWhen(cfgB, () => lines(join(r1, "scores.jsonl")) >= 30)); // judging
  moments.push(await killWhen(cfgB, () => existsSync(join(r1, "train", "checkpoints")) && readdirSync(join(r1, "train", "checkpoints")).some((d) => /^step-[24]$/.test(d))));
  assert.deepEqual(moments, ["killed", "killed", "killed"]);
  const last = spawnSync(process.execPath, [cli, "iterate", cfgB, "--quiet"], { encoding: "utf8", env: { ...process.env, TSDPO_BACKEND: testBackendName } });
  assert.equal(last.status, 0, last.stderr);
  for (const f of ["samples.jsonl", "scores.jsonl"]) {
    const sort = (p: string): string[] => readFileSync(p, "utf8").trim().split("\n").sort();
    assert.deepEqual(sort(join(r1, f)), sort(join(plain, "round-1", f)), `${f}: the same records, nothing asked twice`);
  }
  assert.equal(readFileSync(join(r1, "pairs.jsonl"), "utf8"), readFileSync(join(plain, "round-1", "pairs.jsonl"), "utf8"));
  const a = loadModel(join(plain, "round-1", "train", "final")).model.params;
  const b = loadModel(join(r1, "train", "final")).model.params;
  assert.ok(a.length > 0);
  assert.deepEqual(b, a, "bit-identical final weights");
  const ra = JSON.parse(readFileSync(join(plain, "results.json"), "utf8")), rb = JSON.parse(readFileSync(join(killed, "results.json"), "utf8"));
  assert.deepEqual(rb.eval, ra.eval);
});

test("bad input: one line and exit 1 for a throwing judge, a non-number, an empty prompts file and k < 2", () => {
  const run = (extra: Record<string, unknown>): { status: number | null; err: string } => {
    const cfg = file(`bad-${Math.random().toString(36).slice(2)}.json`, JSON.stringify({ ...small, output_dir: join(tmp, `bad-${Math.random()}`), ...extra }));
    const r = spawnSync(process.execPath, [cli, "iterate", cfg, "--quiet"], { encoding: "utf8", env: { ...process.env, TSDPO_BACKEND: testBackendName } });
    return { status: r.status, err: r.stderr };
  };
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ judge: `module:${file("t.mjs", "export function score() { throw new Error('boom'); }\n")}` }, /score\(prompt, completion\) threw: boom/],
    [{ judge: `module:${file("n.mjs", "export function score() { return NaN; }\n")}` }, /returned NaN; expected a finite number/],
    [{ prompts: file("empty.txt", "\n\n") }, /empty\.txt: no prompts/],
    [{ k: 1 }, /"k" is 1; it must be a whole number ≥ 2/],
  ];
  for (const [extra, re] of cases) {
    const r = run(extra);
    assert.equal(r.status, 1, r.err);
    assert.match(r.err, re);
    assert.equal(r.err.trim().split("\n").length, 1, `one line: ${r.err}`);
    assert.match(r.err, /^error: /);
  }
  assert.throws(() => resolveIterateConfig({ k: 1 }, "x"), (e: unknown) => e instanceof TsdpoError && e.kind === "input");
});

test("README's command: the shipped configs/iterate-module.json (module judge configs/judges/happy.mjs, resolved against the config's folder) runs", () => {
  const out = join(tmp, "readme");
  const r = spawnSync(process.execPath, [
    cli, "iterate", join(dirname(fileURLToPath(import.meta.url)), "..", "..", "configs", "iterate-module.json"),
    "--rounds", "1", "--prompts", promptsFile, "--eval_prompts", evalFile, "--max_new_tokens", "8", "--output_dir", out, "--quiet",
  ], { encoding: "utf8", env: { ...process.env, TSDPO_BACKEND: testBackendName } });
  assert.equal(r.status, 0, r.stderr);
  const res = JSON.parse(readFileSync(join(out, "results.json"), "utf8"));
  assert.match(res.judge, /^module:.*configs\/judges\/happy\.mjs$/);
  assert.equal(res.eval.length, 2);
  assert.ok(res.rounds[0].pairs > 0);
});
