// The one loader every command uses (loadPreferenceData) and what it refuses to guess: the chat renderer comes from
// the model's tokenizer, a renamed prompt is never replaced by a prompt inferred from the answers, an SFT file is
// named as such, boolean answers are invalid rows, warnings can be written and shown, and no message names an
// option by its camelCase code name. The tokenizer maps byte b to id b + 4, so every expected id is written by hand.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import { join, resolve } from "node:path";
import { TsdpoError } from "../src/errors.js";
import type { EncodeOptions, Tokenizer } from "../src/tokenizer/types.js";
import {
  couldBePrompt,
  dataOptionsFromConfig,
  describeMapping,
  formatIssues,
  formatPreferenceData,
  formatWarnings,
  isHarmlessKey,
  loadPreferenceData,
  loadPreferencePairs,
  loadPreferences,
  prepareDataset,
  splitTrainEval,
  tokenizePairs,
  writeWarningsReport,
} from "../src/data/index.js";
import type { ChatMessage, PreferencePair } from "../src/data/index.js";
import { fixture } from "./helpers.js";
import { rejectsWith, scratchFiles, triples } from "./data-helpers.js";

const BOS = 1;
const EOS = 2;
const enc = (s: string): number[] => [...Buffer.from(s, "utf8")].map((b) => b + 4);
const dec = (ids: ArrayLike<number>): string => Buffer.from(Array.from(ids).map((i) => i - 4)).toString("utf8");

// A ChatML template that also writes the BOS string, so the test sees that the renderer got the tokenizer's BOS.
const CHATML =
  "{{ bos_token }}{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}" +
  "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/** Bytes as ids, no special tokens except BOS/EOS by id; "<s>" is the BOS string (pairEncoder strips it from text). */
class ByteTokenizer implements Tokenizer {
  readonly vocabSize = 260;
  readonly bosId = BOS;
  readonly eosId = EOS;
  readonly addBos = true;
  readonly stopIds: number[] = [];
  constructor(readonly chatTemplate: string | null = null) {}
  encode(text: string, _o?: EncodeOptions): number[] {
    return enc(text);
  }
  encodeWithSpecials(text: string, o?: EncodeOptions): number[] {
    return this.encode(text, o);
  }
  decode(ids: readonly number[]): string {
    return dec(ids.filter((i) => i >= 4));
  }
  idToToken(id: number): string {
    return ["<pad>", "<s>", "</s>", "<unk>"][id] ?? String.fromCharCode(id - 4);
  }
}

const tmpFile = scratchFiles("data-load");
const tmp = tmpFile.dir;
const jsonl = (...rows: unknown[]): string => rows.map((r) => (typeof r === "string" ? r : JSON.stringify(r))).join("\n") + "\n";

const m = (role: string, content: string): ChatMessage => ({ role, content });

// ---------------------------------------------------------------------------------------------------------------
// 1. One call for every command

test("loadPreferenceData renders message lists with the model tokenizer's own chat template (logprobs/eval as train)", async () => {
  const tok = new ByteTokenizer(CHATML);
  const path = fixture("data", "conversational.jsonl");
  const d = await loadPreferenceData(path, tok, { maxLength: 256 });
  assert.equal(prepareDataset, loadPreferenceData);
  assert.equal(loadPreferencePairs, loadPreferenceData);
  assert.equal(d.pairs.length, 2);
  const p = d.pairs[0]!;
  // "<s>" from bos_token became the one BOS id; the rest is the rendered ChatML prompt, then the answer + EOS.
  assert.equal(p.promptIds[0], BOS);
  assert.equal(dec(p.promptIds.subarray(1)), "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n");
  assert.deepEqual([...p.chosenIds], [...enc("4<|im_end|>\n"), EOS]);
  assert.deepEqual([...p.rejectedIds], [...enc("5<|im_end|>\n"), EOS]);
  assert.deepEqual([d.stats.rows, d.stats.usable, d.eval.length, d.evalStats], [2, 2, 0, null]);

  // train's path: loadPreferences with the tokenizer option renders the same text.
  const loaded = await loadPreferences(path, { tokenizer: tok });
  assert.equal(loaded.pairs[0]!.prompt, "<s>" + dec(p.promptIds.subarray(1)));
  assert.ok(loaded.pairs.every((q) => q.shape === "conversational"));

  // A model without a chat template: the same config error as before, from every command.
  await rejectsWith(loadPreferenceData(path, new ByteTokenizer(null)), new RegExp(`^${esc(path)}:1: chosen: is a list of chat messages, which needs the model's chat template`), "config");
});

test("loadPreferenceData holds out eval pairs with the same limits, caps max_length at the model's context and counts every row", async () => {
  const tok = new ByteTokenizer();
  const path = fixture("data", "standard.jsonl");
  const held = await loadPreferenceData(path, tok, { split: { kind: "count", count: 1, seed: 3 } });
  // The same rows as splitTrainEval picks from the text pairs (seeded, tokenizer-independent).
  const want = splitTrainEval((await loadPreferences(path)).pairs, { kind: "count", count: 1, seed: 3 });
  assert.deepEqual(held.eval.map((q) => q.source.line), want.eval.map((q) => q.source.line));
  assert.deepEqual(held.pairs.map((q) => q.source.line), want.train.map((q) => q.source.line));
  assert.deepEqual([held.pairs.length, held.eval.length, held.stats.usable, held.overlap, held.evalStats], [2, 1, 3, 0, null]);

  const fromFile = await loadPreferenceData(path, tok, { split: { kind: "file", path: fixture("data", "standard.json") } });
  assert.deepEqual([fromFile.pairs.length, fromFile.eval.length, fromFile.stats.usable, fromFile.evalStats?.usable, fromFile.overlap], [3, 3, 3, 3, 3]);
  assert.match(formatPreferenceData(fromFile), /train pairs: 3, eval pairs: 3; 3 eval pairs also occur in the training data/);

  // contextLength caps max_length; a prompt cap the context leaves without room is dropped (as train did).
  const capped = await loadPreferenceData(path, tok, { maxLength: 1024, maxPromptLength: 512, contextLength: 64 });
  assert.deepEqual([capped.limits.maxLength, capped.limits.maxPromptLength], [64, null]);
  assert.deepEqual([(await loadPreferenceData(path, tok, { maxLength: 32, contextLength: 64 })).limits.maxLength], [32]);
  assert.deepEqual((await loadPreferenceData(path, tok, { contextLength: 64, maxPromptLength: 16 })).limits.maxPromptLength, 16);
  // Context 15: "What is 2+2?" (13 tokens with BOS) keeps 2 answer tokens and loses EOS, "Name a colour." (15) has no
  // room left, "Say hi." (8 + 5) fits.
  const tight = await loadPreferenceData(path, tok, { contextLength: 15 });
  assert.deepEqual(tight.pairs.map((q) => [q.source.line, [...q.chosenIds]]), [[1, enc(" 4")], [4, [...enc(" Hi!"), EOS]]]);
  assert.deepEqual([tight.stats.truncated, tight.stats.droppedByReason["no-room-for-completion"]], [1, 1]);

  await rejectsWith(
    loadPreferenceData(path, tok, { contextLength: 8 }),
    new RegExp(`^${esc(path)}: no usable pairs remain \\(.*3 dropped \\(no-room-for-completion 3\\).*\\); fix the rows, or loosen max_length / max_prompt_length \\(max_length is capped at the model's context length, 8 tokens\\)$`, "s"),
  );

  // skipInvalid: invalid rows and warnings of both files are collected, data file first.
  const data = tmpFile("data.jsonl", jsonl({ prompt: "p", chosen: " a", rejected: " b" }, { prompt: "q", chosen: 3, rejected: " b" }));
  const evalFile = tmpFile("eval.jsonl", jsonl({ prompt: "p", chosen: " ", rejected: " b" }, "{"));
  const both = await loadPreferenceData(data, tok, { skipInvalid: true, split: { kind: "file", path: evalFile } });
  assert.deepEqual(both.invalid.map((i) => [i.file, i.line, i.field]), [[data, 2, "chosen"], [evalFile, 2, "row"]]);
  assert.deepEqual(both.warnings.map((w) => [w.file, w.line, w.field]), [[evalFile, 1, "chosen"]]);
});

test("dataOptionsFromConfig: the config keys map onto the loader's options; prompt_field unset and null stay apart", async () => {
  assert.deepEqual(dataOptionsFromConfig({}), {
    promptField: undefined, chosenField: undefined, rejectedField: undefined, skipInvalid: false, maxLength: null,
    maxPromptLength: null, maxCompletionLength: null, truncationMode: "keep_end", contextLength: null, split: { kind: "none" },
  });
  const o = dataOptionsFromConfig(
    { prompt_field: null, chosen_field: "a", rejected_field: "b", skip_invalid: true, max_length: 64, max_prompt_length: 32, max_completion_length: 16, truncation_mode: "keep_start", eval_size: 0.25, seed: 7 },
    128,
  );
  assert.deepEqual(o, {
    promptField: null, chosenField: "a", rejectedField: "b", skipInvalid: true, maxLength: 64, maxPromptLength: 32,
    maxCompletionLength: 16, truncationMode: "keep_start", contextLength: 128, split: { kind: "fraction", fraction: 0.25, seed: 7 },
  });
  assert.deepEqual(dataOptionsFromConfig({ eval_size: 2 }).split, { kind: "count", count: 2, seed: 42 });
  assert.deepEqual(dataOptionsFromConfig({ eval_data: "held.jsonl" }).split, { kind: "file", path: resolve("held.jsonl") });
  assert.throws(
    () => dataOptionsFromConfig({ eval_data: "held.jsonl", eval_size: 2 }),
    (e: unknown) => e instanceof TsdpoError && e.kind === "config" && e.message === "set either eval_data (a file) or eval_size (held out of data), not both (now: eval_data=held.jsonl, eval_size=2)",
  );

  // Through the config: a renamed prompt is refused while prompt_field is unset, used once it is set.
  const path = fixture("data", "renamed-prompt.jsonl");
  const tok = new ByteTokenizer();
  await rejectsWith(loadPreferenceData(path, tok, dataOptionsFromConfig({ chosen_field: "answer_good", rejected_field: "answer_bad" })), /:1: the prompt would be inferred/, "config");
  const set = await loadPreferenceData(path, tok, dataOptionsFromConfig({ prompt_field: "question", chosen_field: "answer_good", rejected_field: "answer_bad" }));
  assert.equal(dec(set.pairs[0]!.promptIds.subarray(1)), "Once upon a time");
});

// ---------------------------------------------------------------------------------------------------------------
// 2. A renamed prompt is not silently replaced by a guess

const RENAMED = { chosenField: "answer_good", rejectedField: "answer_bad" };

test("a row whose prompt would be inferred but that has an unused key that could be the prompt fails, naming file:line and all three mappings", async () => {
  const path = fixture("data", "renamed-prompt.jsonl");
  const message =
    `${path}:1: the prompt would be inferred from the answers' shared start, but the row also has "question"; ` +
    `set prompt_field=question, or set prompt_field=null to infer the prompt on purpose ` +
    `(now: prompt_field unset → inferred, chosen_field=answer_good, rejected_field=answer_bad)`;
  await rejectsWith(loadPreferences(path, RENAMED), message, "config");
  // Not a bad row that skip_invalid could skip: every row would go, each with the same cause.
  await rejectsWith(loadPreferences(path, { ...RENAMED, skipInvalid: true }), message, "config");
  // Parquet reads the unmapped columns too, so the same check applies there (id and the scores are harmless).
  const pq = fixture("data", "renamed-prompt.parquet");
  await rejectsWith(loadPreferences(pq, RENAMED), message.replace(`${path}:1:`, `${pq} (row 0):`), "config");

  // Mapped: the question is the prompt.
  for (const file of [path, pq])
    assert.deepEqual(triples((await loadPreferences(file, { ...RENAMED, promptField: "question" })).pairs), [
      ["Once upon a time", " there was a cat who sang.", " there was a dog who slept."],
      ["Name a fruit.", " An apple.", " An engine."],
    ]);
  // prompt_field null: inferred on purpose, which is what the guess would have been.
  assert.deepEqual(triples((await loadPreferences(path, { ...RENAMED, promptField: null })).pairs), [
    [" there was a", " cat who sang.", " dog who slept."],
    [" An", " apple.", " engine."],
  ]);
});

test("keys that name provenance or a judgement, and values that cannot be a prompt, leave the implicit prompt alone", async () => {
  const chosen = "Q: hi A: yes";
  const rejected = "Q: hi A: no";
  const harmless = {
    id: "row-17", qid: "9", prompt_id: "abc", source: "hh", dataset: "d", split: "train", "Unnamed: 0": "4", "": "0",
    metadata: "{\"k\": 1}", chosen_model: "gpt", "chosen-rating": "5", score_chosen: 4.5, score_rejected: 1, rejected_rating: "2",
    // values that cannot be a prompt, whatever the key
    flagged: true, notes: "4.5", empty: "", nothing: null, nested: { text: "a prompt?" }, list: [],
  };
  const path = tmpFile("harmless.jsonl", jsonl({ ...harmless, chosen, rejected }));
  assert.deepEqual(triples((await loadPreferences(path)).pairs), [["Q: hi A:", " yes", " no"]]);

  // Text under any other key stops loading; several candidates are all named.
  const two = tmpFile("two.jsonl", jsonl({ id: 1, system: "Be kind.", question: "hi", chosen, rejected }));
  await rejectsWith(
    loadPreferences(two),
    `${two}:1: the prompt would be inferred from the answers' shared start, but the row also has "system", "question"; ` +
      `set prompt_field to the one that holds the prompt (e.g. prompt_field=system), or set prompt_field=null to infer ` +
      `the prompt on purpose (now: prompt_field unset → inferred, chosen_field unset → chosen, rejected_field unset → rejected)`,
    "config",
  );
  // Also when the answers are message lists (the prompt would be their shared leading messages), and on a later row.
  const conv = tmpFile("conv.jsonl", jsonl(
    { prompt: "p", chosen: " a", rejected: " b" },
    { history: [m("user", "earlier")], chosen: [m("user", "q"), m("assistant", "a")], rejected: [m("user", "q"), m("assistant", "b")] },
  ));
  await rejectsWith(loadPreferences(conv, { chat: (ms) => ms.map((x) => x.content).join("|") }), new RegExp(`^${esc(conv)}:2: the prompt would be inferred .* the row also has "history"; set prompt_field=history`), "config");
  // A row that has "prompt" is not inferred, so its other keys do not matter.
  const std = tmpFile("std.jsonl", jsonl({ prompt: "p", question: "q", chosen: " a", rejected: " b" }));
  assert.equal((await loadPreferences(std)).pairs.length, 1);

  for (const k of ["id", "post_id", "score", "chosen_score", "score_chosen", "rejected-rating", "Unnamed: 0", "source", "chosen_model", "label"])
    assert.ok(isHarmlessKey(k), k);
  for (const k of ["question", "instruction", "input", "system", "context", "history", "messages", "text", "query", "title"])
    assert.ok(!isHarmlessKey(k), k);
  assert.deepEqual(["a", "  ", "-1.5e3", "TRUE", "none", [], [1], 3, null].map(couldBePrompt), [true, false, false, false, false, false, true, false, false]);
});

test("the first missing-field error gives all three mappings", async () => {
  const path = tmpFile("mapped.jsonl", jsonl({ question: "q", response_j: " a", response_k: " b" }));
  await rejectsWith(
    loadPreferences(path, { chosenField: "response_j" }),
    `${path}:1: rejected: is missing (the row has keys "question", "response_j", "response_k"); add it, or set ` +
      `rejected_field to the key that holds the dispreferred answer (now: prompt_field unset → inferred, ` +
      `chosen_field=response_j, rejected_field unset → rejected)`,
  );
  await rejectsWith(
    loadPreferences(path, { promptField: "prompt", chosenField: "response_j", rejectedField: "response_k" }),
    `${path}:1: prompt: is missing (the row has keys "question", "response_j", "response_k"); add it, or set ` +
      `prompt_field to the key that holds the prompt, or to null to infer the prompt from the answers' shared start ` +
      `(now: prompt_field=prompt, chosen_field=response_j, rejected_field=response_k)`,
  );
  assert.equal(describeMapping({ promptField: null, chosenField: "c" }, true), "prompt_field=null → inferred, chosen_field=c, rejected_field unset → rejected");
  assert.equal(describeMapping({}, false), "prompt_field unset → prompt, chosen_field unset → chosen, rejected_field unset → rejected");
});

// ---------------------------------------------------------------------------------------------------------------
// 4. An SFT file says what it is

test("a messages-only (SFT) file is named as such, with what a preference row looks like, even with skipInvalid", async () => {
  const path = fixture("data", "sft.jsonl");
  const tail =
    `DPO learns from two answers to one prompt, one preferred over the other; a preference row looks like ` +
    `{"prompt": "...", "chosen": "...", "rejected": "..."} (or "chosen" and "rejected" as lists of {"role", "content"} ` +
    `messages that end with the two assistant answers). Convert the file to such rows, or, if both answers are there ` +
    `under other names, set chosen_field and rejected_field (now: prompt_field unset → inferred, chosen_field unset → ` +
    `chosen, rejected_field unset → rejected)`;
  const message = `${path}:1: this is an SFT/chat dataset (one conversation per row, in "messages"), not preference pairs: ` +
    `the row has "messages" but no "chosen" and "rejected" answers. ${tail}`;
  await rejectsWith(loadPreferences(path), message);
  await rejectsWith(loadPreferences(path, { skipInvalid: true }), message);
  await rejectsWith(loadPreferenceData(path, new ByteTokenizer(CHATML)), message);
  const pq = fixture("data", "sft.parquet");
  await rejectsWith(
    loadPreferences(pq),
    `${pq}: this is an SFT/chat dataset (one conversation per row, in "messages"), not preference pairs: the file has ` +
      `columns "messages" but no "chosen" and "rejected" answers. ${tail}`,
  );
  const csv = tmpFile("sft.csv", 'id,messages\n1,"[{""role"": ""user"", ""content"": ""hi""}]"\n');
  await rejectsWith(loadPreferences(csv), new RegExp(`^${esc(csv)}: this is an SFT/chat dataset .* the file has columns "id", "messages" but no`));

  const kinds: [unknown, string][] = [
    [{ prompt: "p", completion: " c", label: true }, "an unpaired preference (KTO) dataset (one completion per row, labelled good or bad)"],
    [{ prompt: "p", completion: " c" }, "an SFT prompt-completion dataset (one answer per prompt)"],
    [{ instruction: "i", input: "", output: "o" }, 'an SFT instruction dataset (one "output" per "instruction")'],
    [{ id: 3, text: "t" }, 'a plain-text dataset (one "text" per row)'],
    [{ conversations: [{ from: "human", value: "hi" }] }, 'an SFT/chat dataset (one conversation per row, in "conversations")'],
  ];
  for (const [row, kind] of kinds) {
    const p = tmpFile("other.jsonl", jsonl(row));
    await rejectsWith(loadPreferences(p), new RegExp(`^${esc(p)}:1: this is ${esc(kind)}, not preference pairs: the row has `));
  }
  // Neither answer and nothing recognisable: the ordinary missing-field row problem (skippable).
  const odd = tmpFile("odd.jsonl", jsonl({ prompt: "p", chosen: " a", rejected: " b" }, { prompt: "p", good: " a" }));
  await rejectsWith(loadPreferences(odd), new RegExp(`^${esc(odd)}:2: chosen: is missing`));
  assert.equal((await loadPreferences(odd, { skipInvalid: true })).invalid.length, 1);
});

// ---------------------------------------------------------------------------------------------------------------
// 5. Warnings: a report file and a human summary

test("warnings go to a JSON Lines report and the first few into the summary (where, field, reason)", async () => {
  const rows = [0, 1, 2, 3, 4].map((i) => ({ prompt: `q${i}`, chosen: i % 2 ? " " : " yes", rejected: i % 2 ? " no" : "\t" }));
  const path = tmpFile("blank.jsonl", jsonl(...rows));
  const d = await loadPreferenceData(path, new ByteTokenizer());
  assert.deepEqual(d.warnings.map((w) => [w.line, w.field]), [[1, "rejected"], [2, "chosen"], [3, "rejected"], [4, "chosen"], [5, "rejected"]]);
  const reason = "is only whitespace after the prompt; kept: the pair teaches the model to end (EOS) right after the prompt";

  const report = join(tmp, "run", "data_warnings.jsonl");
  writeWarningsReport(report, d.warnings);
  const back = readFileSync(report, "utf8").trimEnd().split("\n").map((l) => JSON.parse(l));
  assert.equal(back.length, 5);
  assert.deepEqual(back[1], { file: path, line: 2, index: 1, where: `${path}:2`, field: "chosen", reason });

  assert.equal(
    formatWarnings(d.warnings, 2, report),
    `  warning ${path}:1: rejected: ${reason}\n  warning ${path}:2: chosen: ${reason}\n  … and 3 more warnings (all 5 in ${report})`,
  );
  assert.equal(formatWarnings(d.warnings.slice(0, 1), 3, report), `  warning ${path}:1: rejected: ${reason}\n  (the warning in ${report})`);
  assert.equal(formatWarnings([]), "");
  assert.equal(formatIssues("invalid", d.warnings, 0), "  … and 5 more invalid rows");
  const summary = formatPreferenceData(d, { examples: 1, warningsReport: report }).split("\n");
  assert.deepEqual(summary, [
    `${path} (jsonl): 5 rows -> 5 usable pairs (0 truncated); 0 invalid; 0 dropped; 5 warnings`,
    `  warning ${path}:1: rejected: ${reason}`,
    `  … and 4 more warnings (all 5 in ${report})`,
  ]);
  const file = tmpFile("not-a-dir", "x");
  assert.throws(() => writeWarningsReport(join(file, "w.jsonl"), d.warnings), (e: unknown) => e instanceof TsdpoError && e.kind === "io" && e.message.startsWith(`${join(file, "w.jsonl")}: cannot write the warnings report (`));
});

// ---------------------------------------------------------------------------------------------------------------
// 6. Messages name options by their config keys

test("no data message names an option by its camelCase code name; the config keys (snake_case) instead", async () => {
  const tok = new ByteTokenizer();
  const pair: PreferencePair = { source: { file: "mem", format: "jsonl", line: 1, index: 0 }, prompt: "abcdefgh", chosen: "xyz", rejected: "uv", shape: "standard" };
  const messages: string[] = [];
  const grab = (f: () => unknown): void => {
    try {
      f();
      assert.fail("expected an error");
    } catch (e) {
      assert.ok(e instanceof TsdpoError, String(e));
      messages.push(e.message);
    }
  };
  grab(() => tokenizePairs([pair], tok, { maxLength: 0 }));
  grab(() => tokenizePairs([pair], tok, { maxPromptLength: 1.5 }));
  grab(() => tokenizePairs([pair], tok, { maxCompletionLength: -1 }));
  grab(() => tokenizePairs([pair], tok, { maxLength: 8, maxPromptLength: 8 }));
  grab(() => tokenizePairs([pair], tok, { truncationMode: "left" as "keep_end" }));
  grab(() => splitTrainEval([1, 2, 3], { kind: "fraction", fraction: 2, seed: 1 }));
  grab(() => splitTrainEval([1, 2, 3], { kind: "count", count: 0, seed: 1 }));
  grab(() => splitTrainEval([1, 2, 3], { kind: "count", count: 3, seed: 1 }));
  grab(() => splitTrainEval([1, 2, 3], { kind: "fraction", fraction: 0.9, seed: 1 }));
  grab(() => splitTrainEval([1, 2, 3], { kind: "count", count: 1, seed: 0.5 }));
  messages.push(tokenizePairs([pair], tok, { maxLength: 9 }).drops[0]!.detail);
  messages.push(tokenizePairs([pair], tok, { maxLength: 12, maxCompletionLength: 2, maxPromptLength: 4, overlong: "drop" }).drops[0]!.detail);
  const path = fixture("data", "standard.jsonl");
  await rejectsWith(loadPreferenceData(path, tok, { maxLength: 4 }), /no usable pairs/).then((e) => messages.push(e.message));
  assert.deepEqual(messages.map((s) => s.split(":")[0]), [
    "max_length", "max_prompt_length", "max_completion_length", "max_prompt_length", "truncation_mode",
    "eval_size", "eval_size", "eval_size", "eval_size", "seed", "the prompt alone is 9 tokens and max_length is 9; set max_prompt_length below max_length so that answers keep some tokens",
    'prompt 9 + answers 4/3 tokens exceed max_prompt_length 4 and max_completion_length 2 and max_length 12 (overlong', path,
  ]);
  for (const s of messages) {
    const camel = s.replace(path, "").match(/\b[a-z]+[A-Z][A-Za-z]*\b/g);
    assert.equal(camel, null, `camelCase ${JSON.stringify(camel)} in: ${s}`);
  }
});

// ---------------------------------------------------------------------------------------------------------------
// 7. Junk in real data: boolean answers (PandaLM's test set)

test("a boolean answer is an invalid row naming file:line:field, and skip_invalid skips it", async () => {
  const path = tmpFile("pandalm.jsonl", jsonl(
    { prompt: "p1", chosen: " a", rejected: " b" },
    { prompt: "p2", chosen: true, rejected: " b" },
    { prompt: "p3", chosen: " c", rejected: false },
    { prompt: "p4", chosen: " d", rejected: " e" },
  ));
  await rejectsWith(loadPreferences(path), `${path}:2: chosen: is true, a boolean; it must be a string (the answer) or a list of {"role", "content"} messages`);
  const loaded = await loadPreferences(path, { skipInvalid: true });
  assert.deepEqual(triples(loaded.pairs), [["p1", " a", " b"], ["p4", " d", " e"]]);
  assert.deepEqual(loaded.invalid.map((i) => [i.where, i.field, i.reason]), [
    [`${path}:2`, "chosen", `is true, a boolean; it must be a string (the answer) or a list of {"role", "content"} messages`],
    [`${path}:3`, "rejected", `is false, a boolean; it must be a string (the answer) or a list of {"role", "content"} messages`],
  ]);
  const d = await loadPreferenceData(path, new ByteTokenizer(), { skipInvalid: true });
  assert.deepEqual([d.stats.rows, d.stats.usable, d.stats.invalid], [4, 2, 2]);
  assert.match(formatPreferenceData(d), new RegExp(`\\n  invalid ${esc(path)}:2: chosen: is true, a boolean`));
});

function esc(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
