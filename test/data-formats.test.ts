// The public preference datasets people start from load as published (issue 23): Chatbot Arena Conversations
// (Parquet), WebGPT Comparisons (JSON Lines) and Anthropic HH-RLHF (gzipped JSON Lines), each recognised from its
// columns, and the two general mappings they are built on (winner_field + a_field/b_field + winner_values;
// score_fields). The fixtures in test/fixtures/data/formats/ are hand-written rows in each published schema, a dozen
// each, with ties, "tie (bothbad)", multi-turn rows, scores of 0, a missing answer and an unknown winner value
// (tools/make-format-fixtures.mjs writes the Parquet and the gzip). Every expected pair is written out by hand.

import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TsdpoError } from "../src/errors.js";
import {
  dataOptionsFromConfig,
  dataStats,
  formatConfigProblem,
  formatDataStats,
  loadPreferences,
  webgptAnswer,
} from "../src/data/index.js";
import type { ChatMessage, LoadOptions, LoadedFile } from "../src/data/index.js";
import { exportHf } from "../src/export/hf.js";
import { loadModel } from "../src/io/load.js";
import { applyOverrides, resolveTrainConfig, trainConfigToJson } from "../src/train/config.js";
import { train } from "../src/train/train.js";
import { fixture, repoRoot, storiesGguf, testBackendName } from "./helpers.js";

const tmp = mkdtempSync(join(tmpdir(), "tsdpo-formats-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

const ARENA = fixture("data", "formats", "chatbot-arena.parquet");
const ARENA_JSONL = fixture("data", "formats", "chatbot-arena.jsonl");
const WEBGPT = fixture("data", "formats", "webgpt-comparisons.jsonl");
const HH = fixture("data", "formats", "hh-rlhf.jsonl.gz");

/** A stand-in chat template: "<role>content\n" per message, "<assistant>" as the generation prompt. */
const chat = (messages: readonly ChatMessage[], gen: boolean): string =>
  messages.map((m) => `<${m.role}>${m.content}\n`).join("") + (gen ? "<assistant>" : "");

const load = (path: string, o: LoadOptions = {}): Promise<LoadedFile> => loadPreferences(path, { chat, skipInvalid: true, ...o });
/** [row index, prompt, chosen, rejected] of every pair. */
const pairsOf = (l: LoadedFile): [number, string, string, string][] => l.pairs.map((p) => [p.source.index, p.prompt, p.chosen, p.rejected]);
const dropsOf = (l: LoadedFile): [number, string][] => l.drops.map((d) => [d.index, d.reason]);

function tmpFile(name: string, text: string): string {
  const path = join(tmp, name);
  writeFileSync(path, text);
  return path;
}
const jsonl = (rows: unknown[]): string => rows.map((r) => JSON.stringify(r)).join("\n") + "\n";

async function rejects(p: Promise<unknown>, kind: string, message: string | RegExp): Promise<string> {
  let err: unknown;
  await p.then(
    () => assert.fail("expected an error"),
    (e) => (err = e),
  );
  assert.ok(err instanceof TsdpoError, `a TsdpoError, got ${String(err)}`);
  assert.equal(err.kind, kind, err.message);
  if (typeof message === "string") assert.equal(err.message, message);
  else assert.match(err.message, message);
  assert.ok(!err.message.includes("\n"), `one line: ${err.message}`);
  return err.message;
}

const u = (content: string): ChatMessage => ({ role: "user", content });
const a = (content: string): ChatMessage => ({ role: "assistant", content });

// ---------------------------------------------------------------------------------------------------------------
// Chatbot Arena Conversations

const ARENA_PAIRS: [number, string, string, string][] = [
  [0, "<user>What did Tom find in the park?\n<assistant>", "Tom found a red ball under a tree.\n", "Tom found the moon in his soup.\n"],
  [1, "<user>Write one line about a cat.\n<assistant>", "The cat slept in the warm sun.\n", "cat cat cat cat\n"],
  [5, "<user>¿De qué color es el cielo?\n<assistant>", "El cielo es azul.\n", "El cielo es verde.\n"],
  [10, "<user>Where do fish live?\n<assistant>", "Fish live in water:\nrivers, lakes and the sea.\n", "Fish live in trees.\n"],
  [11, "<user>Finish: The sun was\n<assistant>", "The sun was bright and warm.\n", "The sun was\n"],
];
const ARENA_NOTE = "recognised as Chatbot Arena Conversations (winner/conversation_a/conversation_b); set data_format to override";

describe("Chatbot Arena Conversations (Parquet, as published)", () => {
  test("recognised from its columns: single-turn rows load with the winner as chosen; ties and multi-turn rows are counted drops", async () => {
    const l = await load(ARENA);
    assert.equal(l.dataFormat, "chatbot_arena");
    assert.equal(l.recognised, ARENA_NOTE);
    assert.deepEqual(pairsOf(l), ARENA_PAIRS);
    assert.ok(l.pairs.every((p) => p.shape === "conversational-implicit"));
    assert.deepEqual(dropsOf(l), [[2, "tie"], [3, "tie"], [4, "multi-turn"], [8, "tie"], [9, "multi-turn"]]);
    assert.equal(l.drops[1]!.detail, `winner is "tie (bothbad)", a tie: neither answer is preferred, so DPO has no pair to learn from`);
    assert.match(l.drops[2]!.detail, /^conversation_a and conversation_b share their 2 user turns but differ from message 1 \(an assistant answer\) on/);
    // Row 8 is a two-turn tie: the verdict is read first, so it counts as a tie.
    const s = dataStats(l);
    assert.deepEqual(
      [s.rows, s.usable, s.invalid, s.dropped, s.droppedByReason.tie, s.droppedByReason["multi-turn"], s.dataFormat, s.recognised],
      [12, 5, 2, 5, 3, 2, "chatbot_arena", ARENA_NOTE],
    );
    const summary = formatDataStats(s, 1).split("\n");
    assert.equal(summary[0], `${ARENA} (parquet): 12 rows -> 5 usable pairs (0 truncated); 2 invalid; 5 dropped (tie 3, multi-turn 2); 0 warnings`);
    assert.equal(summary[1], `  ${ARENA_NOTE}`);
  });

  test("the unknown winner value and the missing answer: one-line errors, or skipped and listed under skip_invalid", async () => {
    const l = await load(ARENA);
    assert.deepEqual(
      l.invalid.map((i) => [i.where, i.field, i.reason]),
      [
        [`${ARENA} (row 6)`, "winner",
          `is "model_c", which winner_values does not list (now {"a":["model_a"],"b":["model_b"],"tie":["tie","tie (bothbad)"]}); add it to the "a", "b" or "tie" list of winner_values, or fix the row`],
        [`${ARENA} (row 7)`, "conversation_b[0].role", `is "user", but an answer must end with a message whose role is "assistant"`],
      ],
    );
    await rejects(
      loadPreferences(ARENA, { chat }),
      "input",
      `${ARENA} (row 6): winner: is "model_c", which winner_values does not list (now {"a":["model_a"],"b":["model_b"],"tie":["tie","tie (bothbad)"]}); add it to the "a", "b" or "tie" list of winner_values, or fix the row`,
    );
  });

  test("the same rows as JSON Lines give the same pairs, with line numbers", async () => {
    const l = await load(ARENA_JSONL);
    assert.deepEqual(pairsOf(l), ARENA_PAIRS);
    assert.deepEqual(dropsOf(l), [[2, "tie"], [3, "tie"], [4, "multi-turn"], [8, "tie"], [9, "multi-turn"]]);
    assert.deepEqual(l.invalid.map((i) => i.where), [`${ARENA_JSONL}:7`, `${ARENA_JSONL}:8`]);
  });

  test("data_format chatbot_arena is a preset: winner_values (or any mapping key) given with it wins", async () => {
    const l = await load(ARENA, { dataFormat: "chatbot_arena", winnerValues: { a: ["model_a"], b: ["model_b", "model_c"], tie: ["tie", "tie (bothbad)"] } });
    assert.equal(l.recognised, null, "set, not recognised: no note");
    assert.deepEqual(pairsOf(l).map((p) => p[0]), [0, 1, 5, 6, 10, 11]);
    assert.deepEqual(pairsOf(l)[3], [6, "<user>Name a fruit.\n<assistant>", "A chair.\n", "An apple.\n"]);
  });

  test("data_format generic overrides the recognition: the file is then read as chosen/rejected, which it does not have", async () => {
    await rejects(load(ARENA, { dataFormat: "generic" }), "input", /^.*chatbot-arena\.parquet: has no column "chosen" \(columns: "question_id", .*\); set chosen_field to the column that holds it/);
  });

  test("renamed answer fields say how to read the file: no recognition then", async () => {
    const l = await load(ARENA_JSONL, { chosenField: "conversation_a", rejectedField: "conversation_b", promptField: null });
    assert.deepEqual([l.dataFormat, l.recognised, l.pairs.length], ["generic", null, 8], "conversation_a taken as chosen in every row, as asked");
    await rejects(load(ARENA, { chosenField: "best" }), "input", /chatbot-arena\.parquet: has no column "best" .*; set chosen_field to the column that holds it/);
  });

  test("without a chat template the message lists say what is missing", async () => {
    await rejects(loadPreferences(ARENA, {}), "config", /conversation_a: is a list of chat messages, which needs the model's chat template/);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// WebGPT Comparisons

const WEBGPT_PAIRS: [number, string, string, string][] = [
  [0, "Why do cats purr?", "Cats purr when they feel safe and happy, and sometimes to calm themselves down [1].", "Cats are small mammals."],
  [1, "Why is the sky blue?", "Sunlight is scattered by the air, and blue light, with its short waves, is scattered the most [1][2].", "Because the sky is painted."],
  [3, "How do birds fly?", "Birds flap their wings, which pushes air down and back and lifts them up [1].", "Birds fly with magic."],
  [4, "What do plants need to make food?", "Plants need sunlight, water and carbon dioxide to make their food [1][2].", "Plants need soil."],
  [7, "Who wrote Romeo and Juliet?", "William Shakespeare wrote it [1].", "Charles Dickens."],
  [8, "Why do leaves change color in autumn?", "The green chlorophyll breaks down, so the yellow and orange colors underneath show [1].", "Leaves get tired."],
  [9, "How does a magnet work?", "A magnet makes a magnetic field that pulls on iron [1].", "Magnets are sticky."],
  [11, "Why do we need sleep?", "Sleep lets the body and the brain rest and recover [1].", "We do not need sleep."],
];
const WEBGPT_NOTE = "recognised as WebGPT Comparisons (question/answer_0/answer_1/score_0/score_1); set data_format to override";

describe("WebGPT Comparisons (JSON Lines, as published)", () => {
  test("recognised from its keys: the prompt is question.full_text, the higher score wins, scores of 0 are ties", async () => {
    const l = await load(WEBGPT);
    assert.equal(l.dataFormat, "webgpt");
    assert.deepEqual(pairsOf(l), WEBGPT_PAIRS);
    assert.ok(l.pairs.every((p) => p.shape === "standard"));
    assert.deepEqual(dropsOf(l), [[2, "tie"], [5, "tie"], [10, "tie"]]);
    assert.equal(l.drops[0]!.detail, "score_0 and score_1 are both 0, a tie: neither answer is preferred, so DPO has no pair to learn from");
    const s = dataStats(l);
    const summary = formatDataStats(s, 0).split("\n");
    assert.deepEqual(summary, [
      `${WEBGPT} (jsonl): 12 rows -> 8 usable pairs (0 truncated); 1 invalid; 3 dropped (tie 3); 0 warnings`,
      `  ${WEBGPT_NOTE}`,
      "  … and 3 more dropped",
    ]);
  });

  test("the missing answer is a one-line error naming the field and the mapping, or skipped under skip_invalid", async () => {
    const l = await load(WEBGPT);
    const reason =
      `is missing (the row has keys "question", "quotes_0", "answer_0", "tokens_0", "score_0", "tokens_1", "score_1"); add it, or set ` +
      `b_field to the key that holds answer b (now: data_format webgpt (score_fields=["score_0","score_1"], a_field=answer_0, ` +
      `b_field=answer_1, prompt question.full_text))`;
    assert.deepEqual(l.invalid.map((i) => [i.where, i.field, i.reason]), [[`${WEBGPT}:7`, "answer_1", reason]]);
    await rejects(loadPreferences(WEBGPT, {}), "input", `${WEBGPT}:7: answer_1: ${reason}`);
  });

  test("webgpt_quotes: each answer's quotes in front of it, numbered as the answer cites them", async () => {
    const l = await load(WEBGPT, { webgptQuotes: true });
    assert.deepEqual(pairsOf(l).map((p) => p[0]), WEBGPT_PAIRS.map((p) => p[0]));
    assert.deepEqual(pairsOf(l)[1], [
      1,
      "Why is the sky blue?",
      "\n\nQuotes:\n[1] Rayleigh scattering (en.wikipedia.org)\nShorter wavelengths of light are scattered more strongly.\n\n" +
        "[2] Why is the sky blue? (spaceplace.nasa.gov)\nBlue light is scattered more than other colors because it travels as shorter waves.\n\n" +
        "Answer: Sunlight is scattered by the air, and blue light, with its short waves, is scattered the most [1][2].",
      "\n\nQuotes:\n(none)\n\nAnswer: Because the sky is painted.",
    ]);
    // The raw list-of-objects layout of the quotes gives the same text as the published {title: [...], extract: [...]}.
    assert.equal(
      webgptAnswer("quotes_0", [{ title: "T (x.org)", extract: "E" }], "A [1]."),
      webgptAnswer("quotes_0", { title: ["T (x.org)"], extract: ["E"] }, "A [1]."),
    );
    const bad = tmpFile("webgpt-bad-quotes.jsonl", jsonl([
      { question: { dataset: "eli5", id: "x", full_text: "Q?" }, quotes_0: { title: ["t1", "t2"], extract: ["e1"] }, answer_0: "A", score_0: 1, quotes_1: { title: [], extract: [] }, answer_1: "B", score_1: -1 },
      { question: { dataset: "eli5", id: "y", full_text: "Q?" }, quotes_0: { title: [], extract: [] }, answer_0: "A", score_0: 1, answer_1: "B", score_1: -1 },
    ]));
    const q = await load(bad, { webgptQuotes: true });
    assert.deepEqual(q.invalid.map((i) => [i.line, i.field, i.reason]), [
      [1, "quotes_0", "has 2 titles but 1 extracts; each quote is one title and one extract"],
      [2, "quotes_1", "is missing; webgpt_quotes puts each answer's quotes in front of it, so the row needs quotes_1 (or set webgpt_quotes to false)"],
    ]);
  });

  test("prompt_field null (infer) does not apply to WebGPT: an error naming the file, not ignored", async () => {
    await rejects(load(WEBGPT, { promptField: null }), "config", `${WEBGPT}:1: WebGPT Comparisons take the prompt from question.full_text; prompt_field null (infer it) does not apply, so remove it (or set data_format generic)`);
    // A re-upload with the question flattened to its text: the error says which key to set, and that key wins.
    const row = JSON.parse(readFileSync(WEBGPT, "utf8").split("\n")[0]!) as { question: { full_text: string } };
    const flat = tmpFile("webgpt-flat.jsonl", jsonl([{ ...row, question: row.question.full_text }]));
    await rejects(load(flat, { skipInvalid: false }), "input",
      `${flat}:1: question: is a string; WebGPT's question is an object {"full_text", "dataset", "id"}; if this column holds the question text itself, set prompt_field=question`);
    assert.deepEqual(pairsOf(await load(flat, { promptField: "question" })), [WEBGPT_PAIRS[0]]);
  });

  test("webgpt_quotes on a file that is not WebGPT's is an error, not ignored", async () => {
    await rejects(load(HH, { webgptQuotes: true }), "config", /webgpt_quotes is set, but the file is read as data_format hh_rlhf .* not WebGPT Comparisons/);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Anthropic HH-RLHF

const hh = (i: number, q: string, c: string, r: string): [number, string, string, string] => [i, `\n\nHuman: ${q}\n\nAssistant:`, ` ${c}`, ` ${r}`];
const HH_PAIRS = [
  hh(0, "What should I name my cat?", "How about Whiskers?", "Name it Cat."),
  hh(1, "How do I make tea?", "Boil water, pour it over a tea bag, and wait a few minutes.", "I don't know."),
  hh(2, "Can you help me with my homework?", "Sure, what is the question?", "No."),
  hh(3, "Tell me a joke.", "Why did the cat sit on the computer? To keep an eye on the mouse!", "Jokes are bad."),
  hh(5, "What is the capital of France?", "Paris.", "London."),
  hh(6, "I feel sad.", "I'm sorry to hear that. Do you want to talk about it?", "Okay."),
  hh(7, "How far is the moon?", "About 384,000 kilometres.", "About ten metres."),
  // The dialogues differ at the first answer and the chosen one goes on: its further turns are part of its answer.
  hh(8, "Should I be nice to my sister?", "Yes\n\nHuman: Why?\n\nAssistant: Because kindness helps.", "No."),
  hh(9, "What do cows eat?", "Mostly grass and hay.", "Cows eat rocks."),
  hh(10, "Is it safe to touch a hot stove?", "No, you could burn yourself.", "Yes, go ahead."),
  hh(11, "Give me a word that rhymes with cat.", "Hat.", "Dog."),
];

describe("Anthropic HH-RLHF (gzipped JSON Lines, as published)", () => {
  test("recognised: the prompt is the dialogue up to the last Assistant turn", async () => {
    const l = await load(HH);
    assert.equal(l.dataFormat, "hh_rlhf");
    assert.match(l.recognised!, /^recognised as Anthropic HH-RLHF \(chosen\/rejected dialogues .*\); set data_format to override$/);
    assert.deepEqual(pairsOf(l), HH_PAIRS);
    assert.deepEqual(dropsOf(l), [[4, "identical"]]);
    assert.equal(formatDataStats(dataStats(l), 0).split("\n")[0], `${HH} (jsonl): 12 rows -> 11 usable pairs (0 truncated); 0 invalid; 1 dropped (identical 1); 0 warnings`);
  });

  test("set explicitly: the same pairs and no note; a file with other keys is not taken for HH-RLHF", async () => {
    const l = await load(HH, { dataFormat: "hh_rlhf" });
    assert.deepEqual([pairsOf(l), l.recognised], [HH_PAIRS, null]);
    const other = tmpFile("not-hh.jsonl", jsonl([{ chosen: "Tom ran home.", rejected: "Tom ran to the sun.", id: 1 }]));
    assert.deepEqual([(await load(other)).dataFormat, (await load(other)).recognised], ["generic", null]);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// The general mappings

describe("winner_field and score_fields on files of any name", () => {
  test("winner mapping on a CSV whose verdict is a number: winner_values compares as text, ties dropped, unknown values invalid", async () => {
    const path = tmpFile("label.csv", [
      "id,prompt,response_a,response_b,label",
      "1,Tom had a ball.,He threw it.,It ate the sun.,0",
      "2,The sky was,blue.,made of cheese.,1",
      "3,Lily saw a dog.,It barked.,It barked.,2",
      "4,Sam was sad.,He cried.,He flew.,3",
      "",
    ].join("\n"));
    const l = await load(path, { winnerField: "label", aField: "response_a", bField: "response_b", winnerValues: { a: ["0"], b: ["1"], tie: ["2"] } });
    assert.equal(l.dataFormat, "generic");
    assert.deepEqual(pairsOf(l), [[0, "Tom had a ball.", "He threw it.", "It ate the sun."], [1, "The sky was", "made of cheese.", "blue."]]);
    assert.deepEqual(dropsOf(l), [[2, "tie"]]);
    assert.deepEqual(l.invalid.map((i) => [i.line, i.field]), [[5, "label"]]);
    assert.match(l.invalid[0]!.reason, /^is "3", which winner_values does not list \(now \{"a":\["0"\],"b":\["1"\],"tie":\["2"\]\}\)/);
  });

  test("winner mapping with the default values, over conversations: the prompt is inferred only when nothing else could be it", async () => {
    const rows = [
      { winner: "a", conv_a: [u("Hi"), a("Hello!")], conv_b: [u("Hi"), a("Go away.")] },
      { winner: "model_b", conv_a: [u("2+2?"), a("5")], conv_b: [u("2+2?"), a("4")] },
      { winner: "tie (bothbad)", conv_a: [u("x"), a("y")], conv_b: [u("x"), a("z")] },
    ];
    const l = await load(tmpFile("conv-winner.jsonl", jsonl(rows)), { winnerField: "winner", aField: "conv_a", bField: "conv_b" });
    assert.deepEqual(pairsOf(l), [[0, "<user>Hi\n<assistant>", "Hello!\n", "Go away.\n"], [1, "<user>2+2?\n<assistant>", "4\n", "5\n"]]);
    assert.deepEqual(dropsOf(l), [[2, "tie"]]);
    // a text column besides the answers stops the guess, as for chosen/rejected files (the winner column does not)
    const judged = tmpFile("conv-judged.jsonl", jsonl(rows.map((r) => ({ ...r, judge: "someone" }))));
    await rejects(load(judged, { winnerField: "winner", aField: "conv_a", bField: "conv_b" }), "config", /the prompt would be inferred from the answers' shared start, but the row also has "judge"/);
  });

  test("score mapping: the higher score wins (numbers, or numbers as text), equal scores are ties, other values are invalid", async () => {
    const path = tmpFile("scores.jsonl", jsonl([
      { prompt: "Once", completion_a: " upon a time.", completion_b: " more.", rating_a: 2, rating_b: 7.5 },
      { prompt: "The cat", completion_a: " sat.", completion_b: " flew.", rating_a: "9", rating_b: "1" },
      { prompt: "A dog", completion_a: " ran.", completion_b: " sang.", rating_a: 3, rating_b: 3 },
      { prompt: "A bird", completion_a: " flew.", completion_b: " swam.", rating_a: "high", rating_b: 1 },
      { prompt: "A fish", completion_a: " swam.", completion_b: " ran.", rating_b: 1 },
    ]));
    const l = await load(path, { scoreFields: ["rating_a", "rating_b"], aField: "completion_a", bField: "completion_b" });
    assert.deepEqual(pairsOf(l), [[0, "Once", " more.", " upon a time."], [1, "The cat", " sat.", " flew."]]);
    assert.deepEqual(dropsOf(l), [[2, "tie"]]);
    assert.equal(l.drops[0]!.detail, "rating_a and rating_b are both 3, a tie: neither answer is preferred, so DPO has no pair to learn from");
    assert.deepEqual(l.invalid.map((i) => [i.line, i.field, i.reason.split(";")[0]]), [
      [4, "rating_a", `is a string`],
      [5, "rating_a", `is missing (the row has keys "prompt", "completion_a", "completion_b", "rating_b")`],
    ]);
  });

  test("Parquet: a missing mapped column is said once, with the file's columns", async () => {
    await rejects(
      load(ARENA, { winnerField: "winner", aField: "conversation_a", bField: "answer_b", promptField: null }),
      "input",
      /chatbot-arena\.parquet: has no column "answer_b" \(columns: "question_id", .*\); set b_field to the column that holds answer b \(now: the winner mapping \(winner_field=winner, a_field=conversation_a, b_field=answer_b, winner_values=/,
    );
  });
});

describe("a file that almost matches gets the mapping that reads it", () => {
  const arenaRow = (over: Record<string, unknown>): Record<string, unknown> => ({
    question_id: "q1", model_a: "m1", model_b: "m2", winner: "model_a", judge: "j",
    conversation_a: [u("Hi"), a("Hello")], conversation_b: [u("Hi"), a("Bye")], turn: 1, ...over,
  });

  test("Chatbot Arena without conversation_b", async () => {
    const { conversation_b: _b, ...row } = arenaRow({ conversation_2: [u("Hi"), a("Bye")] });
    const path = tmpFile("arena-near.jsonl", jsonl([row]));
    await rejects(load(path), "input",
      `${path}:1: almost Chatbot Arena Conversations (winner, conversation_a, conversation_b) but has no "conversation_b" ` +
        `(the columns are "question_id", "model_a", "model_b", "winner", "judge", "conversation_a", "turn", "conversation_2"); ` +
        `read it with the winner mapping: winner_field=winner, a_field=conversation_a, b_field=<answer b's column>, prompt_field=null, and winner_values for its verdicts`);
  });

  test("WebGPT without question", async () => {
    const path = tmpFile("webgpt-near.jsonl", jsonl([{ query: "Q?", answer_0: "A", answer_1: "B", score_0: 1, score_1: -1 }]));
    await rejects(load(path), "input",
      `${path}:1: almost WebGPT Comparisons (question, answer_0, answer_1, score_0, score_1) but has no "question" ` +
        `(the columns are "query", "answer_0", "answer_1", "score_0", "score_1"); read it with the score mapping: ` +
        `score_fields=["score_0", "score_1"], a_field=answer_0, b_field=answer_1, prompt_field=<the question's column>`);
  });

  test("two answers and a verdict, or two answers and their scores, under other names (CSV)", async () => {
    const verdict = tmpFile("pairwise.csv", "prompt,response_a,response_b,model_a,model_b,winner\nHi,Hello,Bye,m1,m2,a\n");
    await rejects(load(verdict), "input", new RegExp(
      `^${esc(verdict)}: holds two answers \\(response_a, response_b\\) and a verdict \\(winner\\) rather than "chosen" and "rejected" .*; ` +
        `read it with the winner mapping: winner_field=winner, a_field=response_a, b_field=response_b, and winner_values for what its values mean`));
    const labelled = tmpFile("labelled.csv", "question,answer_0,answer_1,preference\nHi?,Hello,Bye,0\n");
    await rejects(load(labelled), "input", new RegExp(
      `^${esc(labelled)}: holds two answers \\(answer_0, answer_1\\) and a verdict \\(preference\\) .*winner_field=preference, a_field=answer_0, b_field=answer_1, `));
    const scored = tmpFile("scored.csv", "prompt,output_1,output_2,score_1,score_2\nHi,Hello,Bye,1,0\n");
    await rejects(load(scored), "input", new RegExp(
      `^${esc(scored)}: holds two answers \\(output_1, output_2\\) and their scores \\(score_1, score_2\\) .*; ` +
        `read it with the score mapping: score_fields=\\["score_1", "score_2"\\], a_field=output_1, b_field=output_2$`));
    // and the mapping the message gives reads it
    const l = await load(scored, { scoreFields: ["score_1", "score_2"], aField: "output_1", bField: "output_2" });
    assert.deepEqual(pairsOf(l), [[0, "Hi", "Hello", "Bye"]]);
  });
});

const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");

// ---------------------------------------------------------------------------------------------------------------
// Multi-turn conversations in general

test("conversations that go on after differing: multi-turn when they share their user turns, else the rest of each is its answer", async () => {
  const path = tmpFile("multi.jsonl", jsonl([
    { chosen: [u("a"), a("b"), u("c"), a("d")], rejected: [u("a"), a("x"), u("c"), a("y")] },
    { chosen: [u("a"), a("b"), u("c"), a("d")], rejected: [u("a"), a("x"), u("e"), a("y")] },
    { chosen: [u("a"), a("b"), u("c"), a("d")], rejected: [u("a"), a("b"), u("c"), a("y")] },
    { chosen: [u("a"), a("b"), u("c"), a("d")], rejected: [u("a"), a("b"), u("e"), a("y")] },
  ]));
  const l = await load(path);
  assert.deepEqual(dropsOf(l), [[0, "multi-turn"]]);
  assert.deepEqual(pairsOf(l), [
    [1, "<user>a\n<assistant>", "b\n<user>c\n<assistant>d\n", "x\n<user>e\n<assistant>y\n"],
    [2, "<user>a\n<assistant>b\n<user>c\n<assistant>", "d\n", "y\n"],
    // first different at a user turn: the prompt ends with the shared answer, without a generation prompt
    [3, "<user>a\n<assistant>b\n", "<user>c\n<assistant>d\n", "<user>e\n<assistant>y\n"],
  ]);
});

// ---------------------------------------------------------------------------------------------------------------
// Config keys

describe("config keys: data_format, winner_field, a_field, b_field, winner_values, score_fields, webgpt_quotes", () => {
  test("bad combinations and shapes fail before anything is read, naming the keys", () => {
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ data_format: "arena" }, /"data_format" must be one of "auto", "generic", "chatbot_arena", "webgpt", "hh_rlhf", got "arena"/],
      [{ winner_field: "w", score_fields: ["s0", "s1"], a_field: "x", b_field: "y" }, /set either "winner_field" .* or "score_fields" .*, not both/],
      [{ winner_field: "w" }, /"winner_field" needs "a_field" and "b_field"/],
      [{ a_field: "x", b_field: "y" }, /"a_field" and "b_field" name the two answers of the winner or score mapping; set "winner_field" or "score_fields" too/],
      [{ score_fields: ["s0"], a_field: "x", b_field: "y" }, /"score_fields" must be two different field names/],
      [{ winner_field: "w", a_field: "x", b_field: "y", winner_values: { a: "model_a", b: ["model_b"] } }, /"winner_values"."a" must be a non-empty list of values/],
      [{ winner_field: "w", a_field: "x", b_field: "y", winner_values: { a: ["1"], b: [1] } }, /"winner_values" lists "1" under both "a" and "b"/],
      [{ winner_field: "w", a_field: "x", b_field: "y", winner_values: { a: ["1"], b: ["2"], draw: ["3"] } }, /"winner_values" has "draw"; its keys are "a", "b" and "tie"/],
      [{ data_format: "generic", winner_values: { a: ["1"], b: ["2"] } }, /"winner_values" says what the values of winner_field mean; set "winner_field" too/],
      [{ data_format: "hh_rlhf", webgpt_quotes: true }, /"webgpt_quotes" applies to WebGPT Comparisons only/],
      [{ winner_field: "w", a_field: "x", b_field: "y", chosen_field: "good" }, /"chosen_field" and "rejected_field" do not apply to the winner mapping/],
      [{ data_format: "webgpt", winner_field: "w" }, /"data_format" webgpt decides by score_0 and score_1/],
    ];
    for (const [cfg, want] of bad) {
      assert.match(formatConfigProblem(cfg) ?? "(no problem)", want, JSON.stringify(cfg));
      assert.throws(() => resolveTrainConfig(cfg, "cfg.json"), (e: unknown) => e instanceof TsdpoError && e.kind === "config" && e.message.startsWith("cfg.json: ") && want.test(e.message), JSON.stringify(cfg));
      assert.throws(() => dataOptionsFromConfig(cfg), want);
    }
    assert.throws(() => resolveTrainConfig({ winner_values: ["a"] }, "cfg.json"), /"winner_values" must be an object or null/);
  });

  test("the keys reach the loader's options, from a config file and from the command line", () => {
    const cfg = resolveTrainConfig(
      applyOverrides(
        { data_format: "chatbot_arena" },
        { winner_values: '{"a": ["model_a"], "b": ["model_b", 2], "tie": ["tie"]}', score_fields: "null", webgpt_quotes: false },
      ),
      "cfg.json",
    );
    const o = dataOptionsFromConfig(cfg);
    assert.deepEqual(
      [o.dataFormat, o.winnerField, o.aField, o.bField, o.winnerValues, o.scoreFields, o.webgptQuotes],
      ["chatbot_arena", undefined, undefined, undefined, { a: ["model_a"], b: ["model_b", "2"], tie: ["tie"] }, undefined, undefined],
    );
    const json = trainConfigToJson(cfg);
    assert.deepEqual([json.data_format, json.winner_values], ["chatbot_arena", { a: ["model_a"], b: ["model_b", 2], tie: ["tie"] }]);
    const def = dataOptionsFromConfig(resolveTrainConfig({}, "defaults"));
    assert.deepEqual([def.dataFormat, def.winnerField, def.scoreFields, def.webgptQuotes], [undefined, undefined, undefined, undefined], "unset: the plain mapping");
    const scores = dataOptionsFromConfig(resolveTrainConfig({ score_fields: ["s0", "s1"], a_field: "x", b_field: "y", webgpt_quotes: false }, "c"));
    assert.deepEqual([scores.scoreFields, scores.aField, scores.bField], [["s0", "s1"], "x", "y"]);
    const web = dataOptionsFromConfig(resolveTrainConfig({ data_format: "webgpt", webgpt_quotes: true, winner_field: null }, "c"));
    assert.deepEqual([web.dataFormat, web.webgptQuotes], ["webgpt", true]);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// End to end: a short training run reads each format; logprobs reads one through the CLI

describe("end to end on stories260K", () => {
  // stories260K has no chat template; Chatbot Arena's message lists are rendered with one, as every message list is,
  // so its run uses the model exported to a Hugging Face folder with a small template added.
  const hf = join(tmp, "chat-model");
  exportHf(loadModel(storiesGguf), hf);
  const tc = JSON.parse(readFileSync(join(hf, "tokenizer_config.json"), "utf8")) as Record<string, unknown>;
  tc.chat_template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}";
  writeFileSync(join(hf, "tokenizer_config.json"), JSON.stringify(tc));

  const cases: [string, string, Record<string, unknown>, string, number][] = [
    ["Chatbot Arena (Parquet)", ARENA, { model: hf }, "5 usable pairs", 5],
    ["WebGPT (JSONL, with quotes)", WEBGPT, { webgpt_quotes: true }, "8 usable pairs", 3],
    ["HH-RLHF (JSONL.gz)", HH, {}, "11 usable pairs", 1],
  ];
  for (const [name, data, extra, usable, dropped] of cases)
    test(`train reads ${name} as published: one step, and the summary says what was recognised`, async () => {
      const dir = join(tmp, `run-${name.split(" ")[0]}`);
      const cfg = resolveTrainConfig(
        { model: storiesGguf, data, backend: testBackendName, max_length: 128, max_steps: 1, per_device_train_batch_size: 2, skip_invalid: true, output_dir: dir, ...extra },
        "test config",
      );
      const result = await train(cfg, null, { quiet: true });
      assert.equal(result.steps, 1);
      assert.ok(Number.isFinite(result.lastMetrics.loss), "a finite loss");
      const summary = JSON.parse(readFileSync(join(dir, "summary.json"), "utf8")) as { data: string[] };
      assert.match(summary.data[0]!, new RegExp(`: 12 rows -> ${usable} .*; ${dropped} dropped`));
      assert.match(summary.data[1]!, /^ {2}recognised as /);
      const saved = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as Record<string, unknown>;
      assert.deepEqual([saved.data_format, saved.webgpt_quotes], ["auto", extra.webgpt_quotes === true]);
    });

  test("logprobs through the CLI: the generic mapping from its options, the recognition note on stderr", () => {
    const cli = join(repoRoot, "dist", "src", "cli", "main.js");
    const run = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: "utf8", timeout: 120_000 });
    const arena = run(["logprobs", "--model", hf, "--data", ARENA, "--skip-invalid"]);
    assert.equal(arena.status, 0, arena.stderr);
    assert.deepEqual(arena.stdout.trim().split("\n").map((l) => (JSON.parse(l) as { index: number }).index), [0, 1, 5, 10, 11]);
    assert.match(arena.stderr, new RegExp(esc(ARENA_NOTE)));
    // Nothing dropped or invalid: the note that the layout was recognised is still shown.
    const clean = tmpFile("cli-webgpt-clean.jsonl", readFileSync(WEBGPT, "utf8").split("\n").slice(0, 2).join("\n") + "\n");
    const web = run(["logprobs", "--model", storiesGguf, "--data", clean]);
    assert.equal(web.status, 0, web.stderr);
    assert.equal(web.stdout.trim().split("\n").length, 2);
    assert.match(web.stderr, new RegExp(`2 rows -> 2 usable pairs .*; 0 invalid; 0 dropped; 0 warnings\\n  ${esc(WEBGPT_NOTE)}`));
    const scored = tmpFile("cli-scored.csv", "prompt,output_1,output_2,score_1,score_2\nTom had,a ball.,a moon.,1,0\nLily saw,a sun.,a dog.,0,1\nSam ate,soup.,rocks.,1,1\n");
    const lp = run(["logprobs", "--model", storiesGguf, "--data", scored, "--score-fields", "score_1,score_2", "--a-field", "output_1", "--b-field", "output_2"]);
    assert.equal(lp.status, 0, lp.stderr);
    assert.equal(lp.stdout.trim().split("\n").length, 2);
    assert.match(lp.stderr, /3 rows -> 2 usable pairs .*; 1 dropped \(tie 1\)/);
    const wv = run(["logprobs", "--model", hf, "--data", ARENA, "--data-format", "chatbot_arena", "--winner-values", '{"a": ["model_a", "model_c"], "b": ["model_b"], "tie": ["tie", "tie (bothbad)"]}', "--skip-invalid"]);
    assert.equal(wv.status, 0, wv.stderr);
    assert.deepEqual(wv.stdout.trim().split("\n").map((l) => (JSON.parse(l) as { index: number }).index), [0, 1, 5, 6, 10, 11]);
    const bad = run(["logprobs", "--model", storiesGguf, "--data", scored, "--winner-values", "{a:"]);
    assert.equal(bad.status, 2, bad.stderr);
    assert.match(bad.stderr, /--winner-values \{a:: not JSON; give it as/);
  });
});
