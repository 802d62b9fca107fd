// The two model-based judges of `tsdpo iterate` (src/judge/reward.ts, src/judge/llm.ts).
// - Reward model: two tiny sequence-classification folders (Llama, untied, no chat template; Qwen2, q/k/v biases, a
//   ChatML template) whose scores tools/reward_fixtures.py computed in float64 PyTorch (test/fixtures/reward):
//   the token ids scored, each score one at a time and in a right-padded batch, to 1e-9 in float64 on the js kernels
//   and to float32 tolerance through the judge on the backend under test; the refusals of what is not a reward model.
// - LLM judge on stories260K: both orders' label log-probs recomputed through the training forward
//   (completionLogps over the judge prompt + the label token, the prompt built here by hand from the template), the
//   averaged preference and the agreement from them, and the template and label refusals.

import { test } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jsBackend } from "../src/backend/js/kernels.js";
import { completionLogps, encodePrompt } from "../src/demo/sample.js";
import { loadModel } from "../src/io/load.js";
import { readSafetensors, writeSafetensors } from "../src/io/safetensors.js";
import { DEFAULT_JUDGE_TEMPLATE, judgeInput, judgeText, loadLlmJudge } from "../src/judge/llm.js";
import { loadRewardJudge, openRewardModel, rewardInput, rewardScores } from "../src/judge/reward.js";
import { loadHfTokenizer } from "../src/tokenizer/hf.js";
import { assertAllClose, fixture, repoRoot, storiesGguf, testBackend, testBackendName } from "./helpers.js";

interface Expected {
  items: { prompt: string; completion: string; ids: number[]; score: number }[];
  batch: { ids: number[][]; scores: number[] };
}
const expected = JSON.parse(readFileSync(fixture("reward", "expected.json"), "utf8")) as Record<string, Expected>;
const ctx = { where: "run.json: judge", baseDir: repoRoot, backend: testBackendName };

for (const name of ["llama", "qwen2"]) {
  const folder = fixture("reward", name);
  const want = expected[name]!;

  test(`reward ${name}: the scored ids, and every score one at a time and right-padded in a batch, match PyTorch (float64, 1e-9)`, () => {
    const rm = openRewardModel(folder, jsBackend, Float64Array);
    const tok = rm.loaded.tokenizer;
    for (const it of want.items) assert.deepEqual(rewardInput(tok, it.prompt, it.completion), it.ids, `${name} ids of ${JSON.stringify(it.prompt)}`);
    const one = want.items.map((it) => rewardScores(rm, [it.ids])[0]!);
    assertAllClose(one, want.items.map((it) => it.score), 1e-9, 0, `${name} scores one at a time`);
    // all four rows in one right-padded forward, and in batches of three and one
    for (const rows of [4, 3]) assertAllClose(rewardScores(rm, want.items.map((it) => it.ids), rows), want.batch.scores, 1e-9, 0, `${name} batch of ${rows}`);
  });

  test(`reward ${name}: the judge scores match PyTorch on the ${testBackendName} backend (float32)`, async () => {
    const judge = loadRewardJudge(folder, ctx);
    assert.equal(judge.name, `reward:${folder}`);
    assert.ok(judge.score && !judge.compare);
    const got: number[] = [];
    for (const it of want.items) got.push(await judge.score(it.prompt, it.completion));
    // scores of order 1 from sums of 32 products of order 1: float32 rounding is ~1e-6
    assertAllClose(got, want.items.map((it) => it.score), 2e-5, 0, `${name} judge scores`);
    const rm = openRewardModel(folder, testBackend());
    assertAllClose(rewardScores(rm, want.items.map((it) => it.ids)), want.batch.scores, 2e-5, 0, `${name} right-padded batch`);
    judge.close?.();
  });
}

test("reward: the last non-padding token is the rightmost token that is not pad_token_id (transformers' rule)", () => {
  const rm = openRewardModel(fixture("reward", "llama"), jsBackend, Float64Array);
  const ids = expected.llama!.items[0]!.ids;
  const pad = rm.head.padId!;
  assert.equal(pad, 3);
  // a sequence ending in pad tokens is scored where transformers scores it: at its last real token
  assertAllClose(rewardScores(rm, [[...ids, pad, pad]]), [expected.llama!.items[0]!.score], 1e-9, 0, "trailing pads");
  // and not at the sequence's last position
  assert.ok(Math.abs(rewardScores(rm, [ids.slice(0, -1)])[0]! - expected.llama!.items[0]!.score) > 1e-3);
});

/** A copy of a reward fixture folder with its weights and config changed, in a fresh temporary directory. */
function alteredFolder(
  name: string, change: (tensors: { name: string; shape: number[]; data: Float32Array }[], config: Record<string, unknown>) => void, dtype: "F32" | "BF16" = "F32",
): string {
  const dir = mkdtempSync(join(tmpdir(), "tsdpo-rm-"));
  cpSync(fixture("reward", name), dir, { recursive: true });
  const st = readSafetensors(join(dir, "model.safetensors"));
  const tensors = [...st.tensors].map(([n, t]) => ({ name: n, shape: [...t.shape], data: Float32Array.from(t.data as Float32Array) }));
  const config = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as Record<string, unknown>;
  change(tensors, config);
  writeSafetensors(join(dir, "model.safetensors"), tensors, { dtype });
  writeFileSync(join(dir, "config.json"), JSON.stringify(config));
  return dir;
}

const oneLine = (re: RegExp) => (e: unknown): boolean => {
  const msg = (e as Error).message;
  assert.ok(!msg.includes("\n"), `one line: ${msg}`);
  assert.match(msg, re);
  return true;
};

test("reward: what is not a one-label sequence classifier is refused with one line", () => {
  const noHead = alteredFolder("llama", (t) => t.splice(t.findIndex((x) => x.name === "score.weight"), 1));
  const twoLabels = alteredFolder("qwen2", (t) => {
    const s = t.find((x) => x.name === "score.weight")!;
    s.shape = [2, 32];
    s.data = Float32Array.from([...s.data, ...s.data]);
  });
  const causal = alteredFolder("llama", (_, c) => void (c.architectures = ["LlamaForCausalLM"]));
  const gemma = alteredFolder("llama", (_, c) => void (c.architectures = ["Gemma2ForSequenceClassification"]));
  try {
    assert.throws(() => loadRewardJudge(noHead, ctx), oneLine(/^run\.json: judge: .*tsdpo-rm-.*: has no score head \(score\.weight\)/));
    assert.throws(() => loadRewardJudge(twoLabels, ctx), oneLine(/score head has 2 labels .*needs num_labels 1/));
    assert.throws(() => loadRewardJudge(causal, ctx), oneLine(/LlamaForCausalLM.*has no score head \(score\.weight\)/));
    assert.throws(() => loadRewardJudge(storiesGguf, ctx), oneLine(/GGUF file has no score head \(score\.weight\)/));
    assert.throws(() => loadRewardJudge(gemma, ctx), oneLine(/Gemma2ForSequenceClassification is not supported as a reward model; tsdpo reads LlamaForSequenceClassification/));
    // and a reward model is not a causal LM: loading one for training or sampling is refused too
    assert.throws(() => loadModel(fixture("reward", "llama")), oneLine(/LlamaForSequenceClassification, a sequence-classification \(reward\) model: it has no LM head/));
  } finally {
    for (const d of [noHead, twoLabels, causal, gemma]) rmSync(d, { recursive: true, force: true });
  }
});

test("reward: a BF16 folder runs with its matrices frozen as stored, as its float32 copy does", () => {
  const dir = alteredFolder("qwen2", () => {}, "BF16");
  try {
    const be = testBackend();
    const frozen = openRewardModel(dir, be);
    assert.ok(frozen.loaded.model.quant.size > 0, "the matrices stay BF16");
    const asFloat = loadModel(dir, Float32Array, { scoreHead: true, halvesAsFloat: true });
    assert.equal(asFloat.model.quant.size, 0);
    const rows = expected.qwen2!.items.map((it) => it.ids);
    const want = rewardScores({ loaded: asFloat, head: asFloat.scoreHead!, be, acts: null }, rows);
    assertAllClose(rewardScores(frozen, rows), want, 2e-5, 0, "BF16 frozen vs float32 copy");
    // BF16 weights are not the fixture's: the scores move by more than the float32 tolerance, so the check above is not vacuous
    assert.ok(Math.max(...want.map((x, i) => Math.abs(x - expected.qwen2!.items[i]!.score))) > 1e-4);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------------------------------------------------------
// LLM judge

const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x));

test(`LLM judge on stories260K: both orders' label log-probs equal a full forward over prompt + label (${testBackendName})`, async () => {
  const be = testBackend();
  const { model, tokenizer: tok } = loadModel(storiesGguf);
  const judge = loadLlmJudge(storiesGguf, ctx);
  assert.equal(judge.name, `llm:${storiesGguf}`);
  // stories260K has the tokens "A" and "B" but no "▁A": the labels are glued to "Better answer:"
  const idOf = (s: string): number => Array.from({ length: tok.vocabSize }, (_, i) => i).find((i) => tok.idToToken(i) === s)!;
  const [A, B] = [idOf("A"), idOf("B")];
  const prompt = "Once upon a time, Lily";
  const a = " found a big red ball in the park.", b = " the the the dog dog";
  const p = await judge.compare!(prompt, a, b);
  const d = judge.lastDetail!()!;
  const byHand = (first: string, second: string): [number, number] => {
    const text = DEFAULT_JUDGE_TEMPLATE.split("{{prompt}}").join(prompt).split("{{answer_a}}").join(first).split("{{answer_b}}").join(second);
    const promptIds = encodePrompt(tok, text);
    const lp = completionLogps(be, model, [{ promptIds, completionIds: [A] }, { promptIds, completionIds: [B] }]);
    return [lp[0]!, lp[1]!];
  };
  const [abA, abB] = byHand(a, b);
  const [baA, baB] = byHand(b, a);
  // float32: the KV-cache prefill and the training forward round differently in the last bits
  assertAllClose([d.logp_ab_A, d.logp_ab_B, d.logp_ba_A, d.logp_ba_B] as number[], [abA, abB, baA, baB], 2e-5, 0, "label log-probs");
  const pAb = sigmoid(abA - abB), pBa = sigmoid(baB - baA);
  assertAllClose([d.p_ab, d.p_ba, p] as number[], [pAb, pBa, (pAb + pBa) / 2], 1e-4, 0, "preferences");
  assert.equal(d.agree, (pAb > 0.5) === (pBa > 0.5));
  // averaging both orders makes the judge antisymmetric: swapping the answers gives 1 − p
  assertAllClose([await judge.compare!(prompt, b, a)], [1 - p], 1e-9, 0, "compare(b, a) = 1 − compare(a, b)");
});

test("LLM judge: float64 on the js kernels, the label log-probs equal the training forward's to 1e-9", async () => {
  const { model, tokenizer: tok } = loadModel(storiesGguf, Float64Array);
  const judge = loadLlmJudge(storiesGguf, { ...ctx, backend: "js" }, { ctor: Float64Array });
  const prompt = "The cat", a = " sat on the mat.", b = " was very happy.";
  await judge.compare!(prompt, a, b);
  const d = judge.lastDetail!()!;
  const input = judgeInput(tok, judgeText(tok, DEFAULT_JUDGE_TEMPLATE.replace("{{prompt}}", prompt).replace("{{answer_a}}", b).replace("{{answer_b}}", a)));
  const lp = completionLogps(jsBackend, model, [{ promptIds: input.ids, completionIds: [input.labelA] }, { promptIds: input.ids, completionIds: [input.labelB] }]);
  assertAllClose([d.logp_ba_A, d.logp_ba_B] as number[], [lp[0]!, lp[1]!], 1e-9, 0, "order (b, a) in float64");
});

test("LLM judge: a template file replaces the default; one without a placeholder, or with an unknown one, is refused with one line", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tsdpo-judge-"));
  try {
    writeFileSync(join(dir, "good.txt"), "Story: {{prompt}}\n1) {{answer_a}}\n2) {{ answer_b }}\nThe better one is");
    writeFileSync(join(dir, "nob.txt"), "Story: {{prompt}}\nA: {{answer_a}}\nWhich is better?");
    writeFileSync(join(dir, "typo.txt"), "Story: {{prompt}}\nA: {{answer_a}}\nB: {{answer_c}}\nBetter:");
    const local = { where: "run.json: judge", baseDir: dir, backend: testBackendName };
    const judge = loadLlmJudge(storiesGguf, local, { template: "good.txt" });
    await judge.compare!("Tim", " ran.", " sat.");
    const { model, tokenizer: tok } = loadModel(storiesGguf);
    const input = judgeInput(tok, "Story: Tim\n1)  ran.\n2)  sat.\nThe better one is");
    const lp = completionLogps(testBackend(), model, [{ promptIds: input.ids, completionIds: [input.labelA] }]);
    assertAllClose([judge.lastDetail!()!.logp_ab_A as number], [lp[0]!], 2e-5, 0, "the template file's prompt");
    assert.throws(() => loadLlmJudge(storiesGguf, local, { template: "nob.txt" }), oneLine(/^run\.json: judge: .*nob\.txt: the judge template has no \{\{answer_b\}\} placeholder/));
    assert.throws(() => loadLlmJudge(storiesGguf, local, { template: "typo.txt" }), oneLine(/typo\.txt:3: unknown placeholder \{\{answer_c\}\}/));
    assert.throws(() => loadLlmJudge(storiesGguf, local, { template: "missing.txt" }), oneLine(/missing\.txt: cannot read the judge template file/));
    // stories260K merges a space and "B" into "▁B", so after "Better: " the label B is not a token of its own
    writeFileSync(join(dir, "space.txt"), "{{prompt}} {{answer_a}} {{answer_b}} Better: ");
    const spaced = loadLlmJudge(storiesGguf, local, { template: "space.txt" });
    await assert.rejects(spaced.compare!("x", "y", "z"), oneLine(/the labels A and B are not one token each after the judge prompt.*"B" as/));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("LLM judge through a chat template (Qwen3's tokenizer): the filled template is the user turn, the labels the assistant's first token", () => {
  const tok = loadHfTokenizer(fixture("tokenizers", "qwen3"));
  const text = judgeText(tok, "Pick A or B.");
  assert.ok(text.startsWith("<|im_start|>user\nPick A or B.<|im_end|>\n<|im_start|>assistant\n"), JSON.stringify(text));
  const input = judgeInput(tok, text);
  assert.deepEqual([tok.idToToken(input.labelA), tok.idToToken(input.labelB)], ["A", "B"]);
  assert.deepEqual(input.ids, tok.encodeWithSpecials(text));
});
