// Preference data: file formats, row shapes, field mapping, validation messages, token layout, truncation, batch
// layout, splitting, and the shipped HH-RLHF test split. Tokenisation tests use a byte-level test tokenizer
// (id = byte + 4) so every expected id can be written down by hand.

import { test } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, readFileSync } from "node:fs";

import { join } from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import { TsdpoError } from "../src/errors.js";
import type { EncodeOptions, Tokenizer } from "../src/tokenizer/types.js";
import {
  allocBatch,
  buildBatch,
  chatRendererFor,
  dataStats,
  fillBatch,
  formatDataStats,
  inferTextPrompt,
  loadPreferencePairs,
  loadPreferences,
  prepareDataset,
  shuffledIndices,
  splitPreferences,
  splitTrainEval,
  tokenizePairs,
  writeInvalidReport,
} from "../src/data/index.js";
import type { ChatMessage, LoadOptions, PreferencePair, TokenizeOptions, TokenizedPair } from "../src/data/index.js";
import { asset, fixture, rng } from "./helpers.js";
import { rejectsWith, scratchFiles, triples } from "./data-helpers.js";

// ---------------------------------------------------------------------------------------------------------------
// Test tokenizer: 0 <pad>, 1 <s>, 2 </s>, 3 <|im_end|> (a stop token), 4 + b for byte b, 259 <|im_start|>.

const BOS = 1;
const EOS = 2;
const IM_END = 3;
const IM_START = 259;
const SPECIALS: [string, number][] = [["<|im_start|>", IM_START], ["<|im_end|>", IM_END], ["</s>", EOS], ["<s>", BOS]];
const enc = (s: string): number[] => [...Buffer.from(s, "utf8")].map((b) => b + 4);

class ByteTokenizer implements Tokenizer {
  readonly vocabSize = 260;
  readonly eosId = EOS;
  readonly stopIds = [IM_END];
  readonly chatTemplate: string | null = null;
  constructor(
    readonly addBos = true,
    /** SentencePiece-like: a leading space token unless encoding a continuation. */
    readonly dummyPrefix = false,
    readonly bosId: number | null = BOS,
  ) {}
  encode(text: string, options?: EncodeOptions): number[] {
    return [...(this.dummyPrefix && !options?.continuation ? enc(" ") : []), ...enc(text)];
  }
  encodeWithSpecials(text: string, options?: EncodeOptions): number[] {
    if (!text.includes("<")) return this.encode(text, options);
    const out = this.dummyPrefix && !options?.continuation ? enc(" ") : [];
    let i = 0;
    let plain = "";
    outer: while (i < text.length) {
      for (const [s, id] of SPECIALS)
        if (text.startsWith(s, i)) {
          out.push(...enc(plain), id);
          plain = "";
          i += s.length;
          continue outer;
        }
      plain += text[i++];
    }
    out.push(...enc(plain));
    return out;
  }
  decode(ids: readonly number[]): string {
    return Buffer.from(ids.filter((i) => i >= 4).map((i) => i - 4)).toString("utf8");
  }
  idToToken(id: number): string {
    return id === IM_START ? "<|im_start|>" : (["<pad>", "<s>", "</s>", "<|im_end|>"][id] ?? String.fromCharCode(id - 4));
  }
}

const pair = (prompt: string, chosen: string, rejected: string): PreferencePair => ({
  source: { file: "mem", format: "jsonl", line: 1, index: 0 },
  prompt,
  chosen,
  rejected,
  shape: "standard",
});

function tokenizeOne(p: PreferencePair, tok: Tokenizer = new ByteTokenizer(), o: TokenizeOptions = {}) {
  const r = tokenizePairs([p], tok, o);
  return { pair: r.pairs[0], drop: r.drops[0], truncated: r.truncated };
}

const ids = (p: TokenizedPair | undefined) => {
  assert.ok(p, "expected a kept pair");
  return { prompt: [...p.promptIds], chosen: [...p.chosenIds], rejected: [...p.rejectedIds] };
};

// A ChatML renderer standing in for the model's chat template.
const chatml = (messages: readonly ChatMessage[], gen: boolean): string =>
  messages.map((m) => `<|im_start|>${m.role}\n${m.content}<|im_end|>\n`).join("") + (gen ? "<|im_start|>assistant\n" : "");

const tmpFile = scratchFiles("data");
const tmp = tmpFile.dir;
const STANDARD = [
  ["What is 2+2?", " 4", " 5"],
  ["Name a colour.", " Blue.", " Seven."],
  ["Say hi.", " Hi!", " No."],
];

// ---------------------------------------------------------------------------------------------------------------
// Formats

test("JSONL, JSON, gzip of each and Parquet (Snappy, GZIP and arrow-rs's ZSTD pages) read the same pairs with their positions", async () => {
  const expectPositions: Record<string, { format: string; lines: (number | null)[] }> = {
    "standard.jsonl": { format: "jsonl", lines: [1, 3, 4] }, // line 2 is blank
    "standard.jsonl.gz": { format: "jsonl", lines: [1, 3, 4] },
    "standard.json": { format: "json", lines: [2, 3, 8] }, // item 1 spans lines 3-7
    "standard.json.gz": { format: "json", lines: [2, 3, 8] },
    "standard.parquet": { format: "parquet", lines: [null, null, null] },
    "standard-gzip.parquet": { format: "parquet", lines: [null, null, null] },
    // written by arrow-rs (tools/parquet-ref), not by the reader's own family: dictionary pages, ZSTD, data page v2
    "arrow-rs-standard.parquet": { format: "parquet", lines: [null, null, null] },
  };
  for (const [name, want] of Object.entries(expectPositions)) {
    const path = fixture("data", name);
    const loaded = await loadPreferences(path);
    assert.deepEqual(triples(loaded.pairs), STANDARD, name);
    assert.equal(loaded.format, want.format, name);
    assert.deepEqual(loaded.pairs.map((p) => p.source.line), want.lines, name);
    assert.deepEqual(loaded.pairs.map((p) => p.source.index), [0, 1, 2], name);
    assert.equal(loaded.rows, 3);
    assert.ok(loaded.pairs.every((p) => p.shape === "standard" && p.source.file === path));
  }
});

test("gzip is recognised by its magic bytes and the format by content when the name says nothing", async () => {
  const gz = join(tmp, "prefs-no-extension");
  copyFileSync(fixture("data", "standard.jsonl.gz"), gz);
  assert.deepEqual(triples((await loadPreferences(gz)).pairs), STANDARD);
  const pq = join(tmp, "prefs.bin");
  copyFileSync(fixture("data", "standard.parquet"), pq);
  assert.deepEqual(triples((await loadPreferences(pq)).pairs), STANDARD);
  const pqGz = tmpFile("prefs.parquet.gz", gzipSync(readFileSync(fixture("data", "standard.parquet"))));
  assert.deepEqual(triples((await loadPreferences(pqGz)).pairs), STANDARD);
  // One row pretty-printed as a single object under a .json name.
  const one = tmpFile("one.json", "\n" + JSON.stringify({ prompt: "p", chosen: " c", rejected: " r" }, null, 2));
  const single = await loadPreferences(one);
  assert.deepEqual([triples(single.pairs), single.pairs[0]!.source.line], [[["p", " c", " r"]], 2]);
  // JSON Lines under a .json name (common on the Hub), with a BOM and CRLF line ends.
  const lines = readFileSync(fixture("data", "standard.jsonl"), "utf8").split("\n").join("\r\n");
  const hub = tmpFile("hub.json", "\ufeff" + lines);
  const loaded = await loadPreferences(hub);
  assert.deepEqual(triples(loaded.pairs), STANDARD);
  assert.equal(loaded.pairs[2]!.source.line, 4);
});

// ---------------------------------------------------------------------------------------------------------------
// Shapes

test("implicit prompt: cut after the last '\\n\\nAssistant:' of the common prefix, else at the last whitespace run", async () => {
  const loaded = await loadPreferences(fixture("data", "implicit.jsonl"));
  assert.deepEqual(triples(loaded.pairs), [
    ["\n\nHuman: Is the sky blue?\n\nAssistant:", " Yes, on a clear day.", " No."],
    // Both answers start with " I": that shared word stays in the answers.
    [
      "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Tell me a joke\n\nAssistant:",
      " I think you will like this one.",
      " I don't know any.",
    ],
    ["Q: capital of France? A:", " Paris", " Lyon"],
  ]);
  assert.ok(loaded.pairs.every((p) => p.shape === "implicit"));
  // The common prefix ends inside a word ("y") and after a run of two spaces.
  assert.deepEqual(inferTextPrompt("A:  yes", "A:  yup"), { prompt: "A:", chosen: "  yes", rejected: "  yup" });
});

test("conversational rows go through the chat template; the answer is the full render minus the prompt render", async () => {
  const expected = [
    [
      "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n",
      "4<|im_end|>\n",
      "5<|im_end|>\n",
    ],
    ["<|im_start|>user\nColour of grass?<|im_end|>\n<|im_start|>assistant\n", "Green<|im_end|>\n", "Purple<|im_end|>\n"],
  ];
  for (const name of ["conversational.jsonl", "conversational.parquet", "arrow-rs-conversational.parquet"]) {
    const loaded = await loadPreferences(fixture("data", name), { chat: chatml });
    assert.deepEqual(triples(loaded.pairs), expected, name);
    assert.ok(loaded.pairs.every((p) => p.shape === "conversational"));
  }
  const implicit = await loadPreferences(fixture("data", "conversational-implicit.jsonl"), { chat: chatml });
  assert.deepEqual(triples(implicit.pairs), [
    ["<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n", "4<|im_end|>\n", "5<|im_end|>\n"],
    [
      "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n",
      "Goodbye<|im_end|>\n",
      "Whatever<|im_end|>\n",
    ],
  ]);
  assert.ok(implicit.pairs.every((p) => p.shape === "conversational-implicit"));

  // Tokenised, "<|im_end|>" (a stop token) ends each answer: no EOS after it, and the trailing "\n" is cut.
  const t = tokenizePairs(implicit.pairs.slice(0, 1), new ByteTokenizer());
  assert.deepEqual([...t.pairs[0]!.chosenIds], [...enc("4"), IM_END]);
});

test("a template that does not render the prompt as a prefix of the conversation is an error", async () => {
  // This template only writes the system prompt when generating, so the prompt is not a prefix.
  const odd = (m: readonly ChatMessage[], gen: boolean) => (gen ? "[sys]" : "") + chatml(m, gen);
  const path = fixture("data", "conversational.jsonl");
  await rejectsWith(
    loadPreferences(path, { chat: odd }),
    `${path}:1: chosen: the chat template renders the conversation with this answer so that it does not start with ` +
      `the rendered prompt (they differ at character 0: prompt has "[sys]<|im_start|>system\\n", conversation has ` +
      `"<|im_start|>system\\nBe br"); tsdpo needs the answer to extend the prompt text, so use a template whose ` +
      `generation prompt is a prefix of the rendered answer, or give the rows as plain strings`,
  );
  await rejectsWith(
    loadPreferences(path),
    `${path}:1: chosen: is a list of chat messages, which needs the model's chat template to become text; use a ` +
      `model that ships a chat template (tokenizer.chat_template), or convert the rows to plain strings`,
    "config",
  );
});

test("chatRendererFor binds the template and the tokenizer's BOS/EOS strings to renderChat", () => {
  const calls: unknown[] = [];
  const renderChat = (template: string, messages: ChatMessage[], opts: object) => {
    calls.push({ template, messages, opts });
    return "x";
  };
  const tok = new ByteTokenizer();
  assert.equal(chatRendererFor(renderChat, tok), undefined); // no template, no renderer
  const r = chatRendererFor(renderChat, tok, "{{ messages }}")!;
  assert.equal(r([{ role: "user", content: "hi" }], true), "x");
  assert.deepEqual(calls, [
    {
      template: "{{ messages }}",
      messages: [{ role: "user", content: "hi" }],
      opts: { addGenerationPrompt: true, bosToken: "<s>", eosToken: "</s>" },
    },
  ]);
});

test("field mapping: promptField/chosenField/rejectedField, and promptField null to infer", async () => {
  const path = fixture("data", "mapped.jsonl");
  const opts: LoadOptions = { promptField: "question", chosenField: "response_j", rejectedField: "response_k" };
  const loaded = await loadPreferences(path, opts);
  assert.deepEqual(triples(loaded.pairs), [
    ["How do I reverse a list in Python?", " Use reversed(xs) or xs[::-1].", " You cannot."],
    ["What does git status do?", " It shows the working tree status.", " It deletes files."],
  ]);
  await rejectsWith(
    loadPreferences(path),
    `${path}:1: chosen: is missing (the row has keys "qid", "question", "response_j", "response_k"); add it, or set ` +
      `chosen_field to the key that holds the preferred answer (now: prompt_field unset → inferred, chosen_field unset → chosen, rejected_field unset → rejected)`,
  );
  // Answers that repeat the prompt: a warning by default, inferred correctly with promptField null.
  const rep = tmpFile("repeat.jsonl", JSON.stringify({ prompt: "Q: hi A:", chosen: "Q: hi A: yes", rejected: "Q: hi A: no" }) + "\n");
  const warned = await loadPreferences(rep);
  assert.equal(warned.warnings.length, 1);
  assert.match(warned.warnings[0]!.reason, /^both answers begin with the prompt text/);
  const inferred = await loadPreferences(rep, { promptField: null });
  assert.deepEqual(triples(inferred.pairs), [["Q: hi A:", " yes", " no"]]);
  assert.equal(inferred.warnings.length, 0);
});

// ---------------------------------------------------------------------------------------------------------------
// Validation

// "question" lets the good row pass when a case maps promptField to it.
const GOOD = JSON.stringify({ prompt: "p", question: "p", chosen: " c", rejected: " r" });
const m = (role: string, content: unknown) => ({ role, content });
const jsonError = (text: string): string => {
  try {
    JSON.parse(text);
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error("text parsed");
};

test("each malformed row gives '<file>:<line>: <field>: <what is wrong>; <how to fix>'", async () => {
  const conv = { chat: chatml };
  const cases: [string, unknown, LoadOptions, string][] = [
    ["bad JSON", '{"prompt": "p", "chosen": "c",}', {},
      `row: is not valid JSON (${jsonError('{"prompt": "p", "chosen": "c",}')}); each line must be one JSON object such as {"prompt": "...", "chosen": "...", "rejected": "..."}`],
    ["array row", [1, 2], {},
      `row: is a list, not a JSON object; each row must be an object with "chosen" and "rejected" (and usually "prompt") fields`],
    ["string row", "text", {},
      `row: is a string, not a JSON object; each row must be an object with "chosen" and "rejected" (and usually "prompt") fields`],
    ["missing chosen", { prompt: "p", rejected: "r" }, {},
      `chosen: is missing (the row has keys "prompt", "rejected"); add it, or set chosen_field to the key that holds the preferred answer (now: prompt_field unset → prompt, chosen_field unset → chosen, rejected_field unset → rejected)`],
    ["missing rejected", { prompt: "p", chosen: "c" }, {},
      `rejected: is missing (the row has keys "prompt", "chosen"); add it, or set rejected_field to the key that holds the dispreferred answer (now: prompt_field unset → prompt, chosen_field unset → chosen, rejected_field unset → rejected)`],
    ["missing mapped prompt", { prompt: "p", chosen: "c", rejected: "r" }, { promptField: "question" },
      `question: is missing (the row has keys "prompt", "chosen", "rejected"); add it, or set prompt_field to the key that holds the prompt, or to null to infer the prompt from the answers' shared start (now: prompt_field=question, chosen_field unset → chosen, rejected_field unset → rejected)`],
    ["empty chosen", { prompt: "p", chosen: "", rejected: "r" }, {},
      `chosen: is an empty string; an empty answer cannot be scored, so fill it in or remove the row`],
    ["empty prompt", { prompt: "", chosen: "c", rejected: "r" }, {},
      `prompt: is an empty string; give the prompt text, or remove the field (or set prompt_field to null) to infer it from chosen and rejected`],
    ["number answer", { prompt: "p", chosen: 42, rejected: "r" }, {},
      `chosen: is a number (42); it must be a string (the answer) or a list of {"role", "content"} messages`],
    ["null answer", { prompt: "p", chosen: "c", rejected: null }, {},
      `rejected: is null; it must be a string (the answer) or a list of {"role", "content"} messages`],
    ["object prompt", { prompt: { text: "p" }, chosen: "c", rejected: "r" }, {},
      `prompt: is an object; it must be a string or a list of {"role", "content"} messages`],
    ["list and string answers", { prompt: [m("user", "q")], chosen: [m("assistant", "a")], rejected: "r" }, conv,
      `chosen: is a list of messages but rejected is a string; give prompt, chosen and rejected all as strings or all as message lists`],
    ["string prompt, list answers", { prompt: "p", chosen: [m("assistant", "a")], rejected: [m("assistant", "b")] }, conv,
      `prompt: is a string but chosen is a list of messages; give prompt, chosen and rejected all as strings or all as message lists`],
    ["message without role", { prompt: [{ content: "q" }], chosen: [m("assistant", "a")], rejected: [m("assistant", "b")] }, conv,
      `prompt[0].role: is missing; each message needs a "role" ("system", "user" or "assistant") and a "content" string`],
    ["message without content", { prompt: [{ role: "user" }], chosen: [m("assistant", "a")], rejected: [m("assistant", "b")] }, conv,
      `prompt[0].content: is missing; each message needs a "content" string`],
    ["content parts", { prompt: [m("user", "q")], chosen: [m("assistant", [{ type: "text", text: "a" }])], rejected: [m("assistant", "b")] }, conv,
      `chosen[0].content: is a list; tsdpo takes message content as a string (content parts such as images are not supported), so join the text parts`],
    ["message not an object", { prompt: [m("user", "q")], chosen: ["a"], rejected: [m("assistant", "b")] }, conv,
      `chosen[0]: is a string, not a message; each message must be an object {"role": ..., "content": ...}`],
    ["answer not by the assistant", { prompt: [m("user", "q")], chosen: [m("user", "a")], rejected: [m("assistant", "b")] }, conv,
      `chosen[0].role: is "user", but an answer must end with a message whose role is "assistant"`],
    ["empty message list", { prompt: [m("user", "q")], chosen: [m("assistant", "a")], rejected: [] }, conv,
      `rejected: is an empty list of messages; it must hold the assistant's answer`],
    ["empty assistant message", { prompt: [m("user", "q")], chosen: [m("assistant", "")], rejected: [m("assistant", "b")] }, conv,
      `chosen[0].content: is an empty string; an empty answer cannot be scored, so fill it in or remove the row`],
    ["implicit: no common start", { chosen: "abc", rejected: "xyz" }, {},
      `chosen: shares no beginning with rejected that ends at "\\n\\nAssistant:" or at a space, so the prompt cannot be inferred; add a "prompt" field`],
    ["implicit: chosen is a prefix", { chosen: "\n\nHuman: hi\n\nAssistant:", rejected: "\n\nHuman: hi\n\nAssistant: yo" }, {},
      `chosen: has no text after the prompt shared with rejected (it is a prefix of rejected), so it has no answer; fix the row or add a "prompt" field`],
    ["implicit conversation: no shared messages", { chosen: [m("user", "a"), m("assistant", "b")], rejected: [m("user", "x"), m("assistant", "b")] }, conv,
      `chosen: shares no leading messages with rejected, so there is no prompt; add a "prompt" field with the conversation so far`],
  ];
  assert.ok(cases.length >= 12);
  for (const [name, row, opts, expected] of cases) {
    const line = typeof row === "string" && name === "bad JSON" ? row : JSON.stringify(row);
    // The bad row is on line 3, after a good row and a blank line, so line numbers are checked too.
    const path = tmpFile("bad.jsonl", `${GOOD}\n\n${line}\n`);
    await rejectsWith(loadPreferences(path, opts), `${path}:3: ${expected}`).catch((e: Error) => {
      throw new Error(`case "${name}": ${e.message}`);
    });
  }
});

test("JSON array rows are named by line and item; Parquet rows by row index", async () => {
  const path = tmpFile("bad.json", `[\n  ${GOOD},\n  {"prompt": "p",\n   "rejected": "r"}\n]\n`);
  await rejectsWith(
    loadPreferences(path),
    `${path}:3 (item 1): chosen: is missing (the row has keys "prompt", "rejected"); add it, or set chosen_field to the key that holds the preferred answer (now: prompt_field unset → prompt, chosen_field unset → chosen, rejected_field unset → rejected)`,
  );
  // conversational.parquet row 0 rendered without the system turn's generation prompt mismatch: reuse the odd template.
  const pq = fixture("data", "conversational.parquet");
  const odd = (msgs: readonly ChatMessage[], gen: boolean) => (gen ? "!" : "") + chatml(msgs, gen);
  await rejectsWith(loadPreferences(pq, { chat: odd }), new RegExp(`^${escapeRe(pq)} \\(row 0\\): chosen: the chat template renders`));
});

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

test("problems with the whole file name the file and say what to do", async () => {
  const empty = tmpFile("empty.jsonl", "\n\n");
  await rejectsWith(loadPreferences(empty), `${empty}: holds no rows; a preference file needs at least one {"prompt", "chosen", "rejected"} row`);

  const garbage = Uint8Array.from([0x1f, 0x8b, 1, 2, 3, 4, 5, 6, 7, 8]);
  let zmsg = "";
  try {
    gunzipSync(garbage);
  } catch (e) {
    zmsg = (e as Error).message;
  }
  const badGz = tmpFile("bad.jsonl.gz", garbage);
  await rejectsWith(
    loadPreferences(badGz),
    `${badGz}: starts like gzip but does not decompress (${zmsg}); the file is probably truncated or corrupt, so download or compress it again`,
  );

  const badJson = tmpFile("broken.json", `[\n  {"prompt": "p", "chosen": "c" "rejected": "r"}\n]`);
  await rejectsWith(loadPreferences(badJson), new RegExp(`^${escapeRe(badJson)}: is not valid JSON \\(.*at line 2 column 33\\); fix the syntax`));

  const latin1 = tmpFile("latin1.jsonl", Uint8Array.from([...Buffer.from('{"prompt": "caf'), 0xe9, ...Buffer.from('"}\n')]));
  await rejectsWith(loadPreferences(latin1), `${latin1}: is not valid UTF-8 text; re-save it as UTF-8 (JSON files must be UTF-8; CSV from a spreadsheet: save as "CSV UTF-8")`);

  const txt = tmpFile("notes.txt", "hello");
  await rejectsWith(
    loadPreferences(txt),
    `${txt}: cannot tell the file format from its name or content; name it .jsonl (one JSON object per line), .json (an array of objects), .parquet, .csv or .tsv (a header row, then one row per pair), optionally followed by .gz`,
  );

  const wrapped = tmpFile("wrapped.json", JSON.stringify({ data: [JSON.parse(GOOD)] }));
  await rejectsWith(
    loadPreferences(wrapped),
    `${wrapped}: holds a single JSON object with keys "data", not rows; tsdpo reads a JSON array of rows ([{...}, {...}]) or JSON Lines (one object per line), so extract the rows into one of those`,
  );

  const pq = fixture("data", "standard.parquet");
  await rejectsWith(
    loadPreferences(pq, { chosenField: "response_j" }),
    `${pq}: has no column "response_j" (columns: "prompt", "chosen", "rejected", "score"); set chosen_field to the column that holds it (now: prompt_field unset → prompt, chosen_field=response_j, rejected_field unset → rejected)`,
  );

  const truncated = tmpFile("cut.parquet", readFileSync(pq).subarray(0, 200));
  await rejectsWith(loadPreferences(truncated), new RegExp(`^${escapeRe(truncated)}: is not a readable Parquet file \\(`));

  await rejectsWith(loadPreferences(join(tmp, "nope.jsonl")), new RegExp(`nope\\.jsonl: cannot read the preference file \\(ENOENT\\)`), "io");
});

test("skipInvalid collects malformed rows into a count and a JSONL report; identical pairs are dropped, not errors", async () => {
  const path = tmpFile(
    "mixed.jsonl",
    [
      GOOD,
      '{"prompt": "p", "chosen": 1, "rejected": "r"}',
      "not json",
      JSON.stringify({ prompt: "p", chosen: " same", rejected: " same" }),
      JSON.stringify({ prompt: "q", chosen: " ", rejected: " r" }),
    ].join("\n"),
  );
  await rejectsWith(loadPreferences(path), /:2: chosen: is a number \(1\)/);
  const loaded = await loadPreferences(path, { skipInvalid: true });
  assert.equal(loaded.rows, 5);
  assert.deepEqual(triples(loaded.pairs), [["p", " c", " r"], ["q", " ", " r"]]);
  assert.deepEqual(
    loaded.invalid.map((i) => [i.line, i.field]),
    [[2, "chosen"], [3, "row"]],
  );
  assert.deepEqual(loaded.drops.map((d) => [d.line, d.reason]), [[4, "identical"]]);
  assert.deepEqual(loaded.warnings.map((w) => [w.line, w.field]), [[5, "chosen"]]);

  const stats = dataStats(loaded);
  assert.equal(stats.rows, stats.usable + stats.invalid + stats.dropped);
  assert.deepEqual([stats.usable, stats.invalid, stats.dropped, stats.droppedByReason.identical], [2, 2, 1, 1]);

  const report = join(tmp, "reports", "invalid.jsonl");
  writeInvalidReport(report, loaded.invalid);
  const back = readFileSync(report, "utf8").trimEnd().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(back, [
    {
      file: path, line: 2, index: 1, where: `${path}:2`, field: "chosen",
      reason: `is a number (1); it must be a string (the answer) or a list of {"role", "content"} messages`,
    },
    {
      file: path, line: 3, index: 2, where: `${path}:3`, field: "row",
      reason: `is not valid JSON (${jsonError("not json")}); each line must be one JSON object such as {"prompt": "...", "chosen": "...", "rejected": "..."}`,
    },
  ]);
});

test("dialogues that differ before their final assistant answer load, each answer the rest of its dialogue", async () => {
  const path = tmpFile(
    "diverge.jsonl",
    [
      GOOD,
      JSON.stringify({ chosen: "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant: d", rejected: "\n\nHuman: a\n\nAssistant: x" }),
      JSON.stringify({
        chosen: [m("user", "a"), m("assistant", "b"), m("user", "c"), m("assistant", "d")],
        rejected: [m("user", "a"), m("assistant", "b"), m("user", "e"), m("assistant", "f")],
      }),
      // text dialogues first different inside a Human turn: the shared answer before it is prompt, as for messages
      JSON.stringify({ chosen: "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant: d", rejected: "\n\nHuman: a\n\nAssistant: b\n\nHuman: e\n\nAssistant: f" }),
    ].join("\n"),
  );
  const loaded = await loadPreferences(path, { chat: chatml });
  assert.deepEqual(loaded.drops, []);
  assert.deepEqual(triples(loaded.pairs.slice(1)), [
    ["\n\nHuman: a\n\nAssistant:", " b\n\nHuman: c\n\nAssistant: d", " x"],
    [
      "<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\nb<|im_end|>\n",
      "<|im_start|>user\nc<|im_end|>\n<|im_start|>assistant\nd<|im_end|>\n",
      "<|im_start|>user\ne<|im_end|>\n<|im_start|>assistant\nf<|im_end|>\n",
    ],
    ["\n\nHuman: a\n\nAssistant: b", "\n\nHuman: c\n\nAssistant: d", "\n\nHuman: e\n\nAssistant: f"],
  ]);
});

// ---------------------------------------------------------------------------------------------------------------
// Token layout

test("tokens: [BOS] prompt | answer EOS, prompt and answer encoded separately, answer as a continuation", () => {
  const p = pair("ab", "c", "de");
  assert.deepEqual(ids(tokenizeOne(p).pair), {
    prompt: [BOS, ...enc("ab")],
    chosen: [...enc("c"), EOS],
    rejected: [...enc("de"), EOS],
  });
  // No BOS when the tokenizer does not add one.
  assert.deepEqual(ids(tokenizeOne(p, new ByteTokenizer(false)).pair).prompt, enc("ab"));
  // SentencePiece-like dummy space: on the prompt only; the answer is a continuation.
  assert.deepEqual(ids(tokenizeOne(p, new ByteTokenizer(true, true)).pair), {
    prompt: [BOS, ...enc(" ab")],
    chosen: [...enc("c"), EOS],
    rejected: [...enc("de"), EOS],
  });
});

test("BOS once and EOS once, whatever the text already contains", () => {
  const tok = new ByteTokenizer();
  // A prompt rendered with the BOS string gets one BOS id, not two, with or without addBos.
  assert.deepEqual(ids(tokenizeOne(pair("<s>ab", "c", "d"), tok).pair).prompt, [BOS, ...enc("ab")]);
  assert.deepEqual(ids(tokenizeOne(pair("<s>ab", "c", "d"), new ByteTokenizer(false)).pair).prompt, [BOS, ...enc("ab")]);
  // An answer ending with the EOS string (or a stop token's, then whitespace) is not given a second end token.
  const t = ids(tokenizeOne(pair("ab", "c</s>", "d<|im_end|>\n"), tok).pair);
  assert.deepEqual(t.chosen, [...enc("c"), EOS]);
  assert.deepEqual(t.rejected, [...enc("d"), IM_END]);
  // Trailing whitespace without an end token is part of the answer.
  assert.deepEqual(ids(tokenizeOne(pair("ab", "c ", "d"), tok).pair).chosen, [...enc("c "), EOS]);
  // Special-token strings inside text become their ids (encodeWithSpecials), as with Hugging Face tokenizers.
  assert.deepEqual(ids(tokenizeOne(pair("<|im_start|>u<|im_end|>", "c", "d"), tok).pair).prompt, [BOS, IM_START, ...enc("u"), IM_END]);
  // A tokenizer that spells "</s>" out as text: the answer still gets its EOS id.
  const literal = Object.assign(new ByteTokenizer(), { encodeWithSpecials: ByteTokenizer.prototype.encode });
  assert.deepEqual(ids(tokenizeOne(pair("ab", "c</s>", "d"), literal).pair).chosen, [...enc("c</s>"), EOS]);
  // No EOS id: nothing is appended.
  const noEos = Object.assign(new ByteTokenizer(), { eosId: null, stopIds: [] });
  assert.deepEqual(ids(tokenizeOne(pair("ab", "c", "d"), noEos).pair).chosen, enc("c"));
});

test("batch layout: (2B, T) chosen rows then rejected rows, targets shifted by one, mask on answer targets only", () => {
  const P1 = [BOS, 10, 11];
  const P2 = [BOS, 12];
  const mk = (prompt: number[], chosen: number[], rejected: number[]): TokenizedPair => ({
    source: { file: "mem", format: "jsonl", line: 1, index: 0 },
    promptIds: Int32Array.from(prompt),
    chosenIds: Int32Array.from(chosen),
    rejectedIds: Int32Array.from(rejected),
    truncated: false,
  });
  const pairs = [mk(P1, [20, EOS], [21, 22, EOS]), mk(P2, [23, EOS], [24, EOS])];
  const PAD = 0;
  const b = buildBatch(pairs, { padId: PAD });
  assert.equal(b.B, 2);
  assert.equal(b.T, 6); // longest row: 3 + 3
  // prettier-ignore
  const wantIds = [
    1, 10, 11, 20,  2,  0, // pair 0 chosen
    1, 12, 23,  2,  0,  0, // pair 1 chosen
    1, 10, 11, 21, 22,  2, // pair 0 rejected
    1, 12, 24,  2,  0,  0, // pair 1 rejected
  ];
  // prettier-ignore
  const wantTargets = [
    10, 11, 20,  2,  0,  0,
    12, 23,  2,  0,  0,  0,
    10, 11, 21, 22,  2,  0,
    12, 24,  2,  0,  0,  0,
  ];
  // prettier-ignore
  const wantMask = [
    0, 0, 1, 1, 0, 0,
    0, 1, 1, 0, 0, 0,
    0, 0, 1, 1, 1, 0,
    0, 1, 1, 0, 0, 0,
  ];
  assert.deepEqual([...b.ids], wantIds);
  assert.deepEqual([...b.targets], wantTargets);
  assert.deepEqual([...b.mask], wantMask);
  assert.deepEqual([...b.completionLengths], [2, 2, 3, 2]);
  assert.deepEqual([...b.promptLengths], [3, 2, 3, 2]);
  assert.deepEqual([...b.seqLengths], [5, 4, 6, 4]);

  // Rounded T, and an arena filled twice: the second, shorter fill leaves nothing of the first behind.
  assert.equal(buildBatch(pairs, { padToMultiple: 4 }).T, 8);
  const arena = allocBatch(2, 8);
  fillBatch(arena, pairs, EOS);
  fillBatch(arena, [mk([BOS], [30, EOS], [31, EOS]), mk([BOS], [32, EOS], [33, EOS])], EOS);
  assert.deepEqual([...arena.ids.subarray(0, 8)], [1, 30, 2, 2, 2, 2, 2, 2]);
  assert.deepEqual([...arena.mask.subarray(0, 8)], [1, 1, 0, 0, 0, 0, 0, 0]);
  assert.throws(() => fillBatch(allocBatch(2, 5), pairs, 0), /row 2 needs 6 positions but T is 5/);
});

test("every row's masked targets are exactly its answer ids (random pairs)", () => {
  const r = rng(11);
  const rand = (n: number) => Int32Array.from({ length: n }, () => 4 + Math.floor(r() * 250));
  const pairs: TokenizedPair[] = Array.from({ length: 5 }, () => ({
    source: { file: "mem", format: "jsonl", line: 1, index: 0 },
    promptIds: rand(1 + Math.floor(r() * 6)),
    chosenIds: rand(1 + Math.floor(r() * 6)),
    rejectedIds: rand(1 + Math.floor(r() * 6)),
    truncated: false,
  }));
  const b = buildBatch(pairs, { padToMultiple: 8 });
  for (let row = 0; row < 2 * b.B; row++) {
    const p = pairs[row % b.B]!;
    const answer = row < b.B ? p.chosenIds : p.rejectedIds;
    const picked: number[] = [];
    for (let t = 0; t < b.T; t++) if (b.mask[row * b.T + t] === 1) picked.push(b.targets[row * b.T + t]!);
    assert.deepEqual(picked, [...answer], `row ${row}`);
    assert.equal(b.completionLengths[row], answer.length);
    assert.deepEqual([...b.ids.subarray(row * b.T, row * b.T + p.promptIds.length)], [...p.promptIds]);
  }
});

// ---------------------------------------------------------------------------------------------------------------
// Truncation. Prompt "abcdefgh" is 9 tokens with BOS; chosen "xyz" 4 with EOS; rejected "uv" 3 with EOS.

test("truncation: maxPromptLength keeps the prompt's end (BOS kept) or start; maxLength cuts answers to what is left", () => {
  const p = pair("abcdefgh", "xyz", "uv");
  assert.deepEqual(ids(tokenizeOne(p, undefined, { maxPromptLength: 4 }).pair).prompt, [BOS, ...enc("fgh")]);
  assert.deepEqual(ids(tokenizeOne(p, undefined, { maxPromptLength: 4, truncationMode: "keep_start" }).pair).prompt, [BOS, ...enc("abc")]);
  assert.deepEqual(ids(tokenizeOne(p, new ByteTokenizer(false), { maxPromptLength: 4 }).pair).prompt, enc("efgh"));

  // P = 4 after the prompt cut; P + 4 > 7, so each answer keeps its first 3 tokens: chosen loses its EOS.
  const cut = tokenizeOne(p, undefined, { maxLength: 7, maxPromptLength: 4 });
  assert.deepEqual(ids(cut.pair), { prompt: [BOS, ...enc("fgh")], chosen: enc("xyz"), rejected: [...enc("uv"), EOS] });
  assert.equal(cut.truncated, 1);
  // Exactly at the limit: untouched.
  const fits = tokenizeOne(p, undefined, { maxLength: 13 });
  assert.deepEqual(ids(fits.pair), { prompt: [BOS, ...enc("abcdefgh")], chosen: [...enc("xyz"), EOS], rejected: [...enc("uv"), EOS] });
  assert.equal(fits.truncated, 0);
  assert.equal(fits.pair!.truncated, false);
  // maxCompletionLength cuts each answer on its own.
  assert.deepEqual(ids(tokenizeOne(p, undefined, { maxCompletionLength: 2 }).pair).chosen, enc("xy"));
});

test("truncation drops pairs that cannot be used, each with a reason", () => {
  const p = pair("abcdefgh", "xyz", "uv");
  const noRoom = tokenizeOne(p, undefined, { maxLength: 9 });
  assert.equal(noRoom.pair, undefined);
  assert.equal(noRoom.drop!.reason, "no-room-for-completion");
  assert.equal(
    noRoom.drop!.detail,
    "the prompt alone is 9 tokens and max_length is 9; set max_prompt_length below max_length so that answers keep some tokens",
  );
  // One token of room is enough.
  assert.deepEqual(ids(tokenizeOne(p, undefined, { maxLength: 10 }).pair).chosen, enc("x"));

  const over = tokenizeOne(p, undefined, { maxLength: 12, overlong: "drop" });
  assert.equal(over.drop!.reason, "overlong");
  assert.equal(over.drop!.detail, 'prompt 9 + answers 4/3 tokens exceed max_length 12 (overlong: "drop")');
  assert.ok(tokenizeOne(p, undefined, { maxLength: 13, overlong: "drop" }).pair);

  const same = tokenizeOne(pair("q", "same-a", "same-b"), undefined, { maxCompletionLength: 4 });
  assert.equal(same.drop!.reason, "identical-after-truncation");
  assert.match(same.drop!.detail, /^the answers only differ after their first 4 tokens/);
  // Different text, same ids: "c</s>" and "c</s>  " both end at EOS.
  assert.equal(tokenizeOne(pair("q", "c</s>", "c</s>  ")).drop!.reason, "identical");
});

test("truncation options are validated", () => {
  const p = [pair("a", "b", "c")];
  const tok = new ByteTokenizer();
  const cases: [TokenizeOptions, string][] = [
    [{ maxLength: 8, maxPromptLength: 8 }, "max_prompt_length: 8 leaves no room for an answer within max_length 8; set it below max_length (e.g. half of it)"],
    [{ maxLength: 0 }, "max_length: must be a positive integer or null, got 0"],
    [{ maxPromptLength: 2.5 }, "max_prompt_length: must be a positive integer or null, got 2.5"],
    [{ truncationMode: "left" as "keep_end" }, 'truncation_mode: must be "keep_end" or "keep_start", got "left"'],
    [{ overlong: "skip" as "drop" }, 'overlong: must be "truncate" or "drop", got "skip"'],
  ];
  for (const [o, msg] of cases)
    assert.throws(() => tokenizePairs(p, tok, o), (e: unknown) => e instanceof TsdpoError && e.kind === "config" && e.message === msg);
});

test("prepareDataset (alias loadPreferencePairs) loads, tokenises and reports stats", async () => {
  const path = fixture("data", "standard.jsonl");
  const prepared = await prepareDataset(path, new ByteTokenizer(), { maxLength: 64 });
  assert.equal(loadPreferencePairs, prepareDataset);
  assert.equal(prepared.pairs.length, 3);
  assert.deepEqual([...prepared.pairs[0]!.promptIds], [BOS, ...enc("What is 2+2?")]);
  assert.deepEqual([...prepared.pairs[0]!.chosenIds], [...enc(" 4"), EOS]);
  assert.equal(prepared.stats.usable, 3);
  await rejectsWith(
    prepareDataset(path, new ByteTokenizer(), { maxLength: 8 }),
    new RegExp(`^${escapeRe(path)}: no usable pairs remain \\(.*3 dropped \\(no-room-for-completion 3\\)`),
  );
});

// ---------------------------------------------------------------------------------------------------------------
// Splitting

test("eval split: deterministic by seed, disjoint, file order kept; a count, a fraction or a file", async () => {
  const items = Array.from({ length: 20 }, (_, i) => i);
  const a = splitTrainEval(items, { kind: "fraction", fraction: 0.25, seed: 7 });
  const b = splitTrainEval(items, { kind: "fraction", fraction: 0.25, seed: 7 });
  const c = splitTrainEval(items, { kind: "fraction", fraction: 0.25, seed: 8 });
  assert.deepEqual(a, b);
  assert.notDeepEqual(a.eval, c.eval);
  assert.equal(a.eval.length, 5);
  assert.deepEqual([...a.train, ...a.eval].sort((x, y) => x - y), items);
  assert.deepEqual(a.eval, [...a.eval].sort((x, y) => x - y));
  assert.equal(splitTrainEval(items, { kind: "count", count: 3, seed: 1 }).eval.length, 3);
  assert.deepEqual(splitTrainEval(items, { kind: "none" }), { train: items, eval: [] });

  // The permutation is Fisher–Yates driven by mulberry32 (test/helpers.ts rng), so it can be rebuilt anywhere.
  const r = rng(42);
  const want = Array.from({ length: 10 }, (_, i) => i);
  for (let i = 9; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [want[i], want[j]] = [want[j]!, want[i]!];
  }
  assert.deepEqual([...shuffledIndices(10, 42)], want);

  assert.throws(() => splitTrainEval(items, { kind: "fraction", fraction: 1.5, seed: 1 }), /^TsdpoError: eval_size: a fraction of the pairs must be between 0 and 1 \(exclusive\), got 1\.5/);
  assert.throws(() => splitTrainEval(items, { kind: "count", count: 20, seed: 1 }), /^TsdpoError: eval_size: holding out 20 of 20 pairs leaves none to train on; lower eval_size or give a separate eval file \(eval_data\)/);
  assert.throws(() => splitTrainEval(items, { kind: "count", count: 2.5, seed: 1 }), /^TsdpoError: eval_size: a count of pairs must be a whole number ≥ 1, got 2\.5/);

  const loaded = await loadPreferences(fixture("data", "standard.jsonl"));
  const fromFile = await splitPreferences(loaded, { kind: "file", path: fixture("data", "standard.json") });
  assert.equal(fromFile.train.length, 3);
  assert.equal(fromFile.eval.length, 3);
  assert.equal(fromFile.overlap, 3); // the same rows: every eval pair leaks
  const held = await splitPreferences(loaded, { kind: "count", count: 1, seed: 3 });
  assert.deepEqual([held.train.length, held.eval.length, held.overlap], [2, 1, 0]);
});

// ---------------------------------------------------------------------------------------------------------------
// HH-RLHF harmless-base test split (shipped in assets/)

const HH = asset("data", "hh-rlhf", "harmless-base-test.jsonl.gz");
const MARKER = "\n\nAssistant:";

test("HH-RLHF loads as is with the implicit prompt rule, every row a pair", async (t) => {
  const loaded = await loadPreferences(HH);
  assert.equal(loaded.rows, 2312);
  assert.equal(loaded.invalid.length, 0);
  assert.deepEqual(loaded.drops, []);
  assert.equal(loaded.pairs.length, 2312);
  // Five rows whose chosen answer holds a second Assistant turn after the shared prompt (found by reading the file
  // independently): they load, that turn part of the answer.
  const longer = [1255, 1689, 1951, 1953, 2037];
  assert.deepEqual(
    loaded.pairs.filter((p) => p.chosen.includes(MARKER) || p.rejected.includes(MARKER)).map((p) => [p.source.line, p.chosen.includes(MARKER), p.rejected.includes(MARKER)]),
    longer.map((l) => [l, l !== 1951, l === 1951]),
  );
  // Four chosen answers are a single space (found by reading the file independently): kept, with a warning.
  assert.deepEqual(loaded.warnings.map((w) => [w.line, w.field]), [[87, "chosen"], [517, "chosen"], [926, "chosen"], [1104, "chosen"]]);
  for (const p of loaded.pairs) {
    assert.ok(p.prompt.endsWith(MARKER) && p.prompt.startsWith("\n\nHuman:"), p.source.line?.toString());
    assert.ok(!p.chosen.includes("\n\nHuman:") && !p.rejected.includes("\n\nHuman:"));
  }

  // Independent expectation for a byte tokenizer with BOS: prompt = the two dialogues' common start up to its last
  // marker, P = 1 + bytes, answers = bytes + EOS, cut to maxLength − P, drop when P >= maxLength or equal.
  const raw = gunzipSync(readFileSync(HH))
    .toString("utf8")
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l));
  assert.equal(raw.length, 2312);
  const expect = (maxLength: number, maxPrompt: number | null) => {
    const counts = { "no-room-for-completion": 0, "identical-after-truncation": 0, truncated: 0 };
    for (const { chosen, rejected } of raw) {
      let n = 0;
      while (n < chosen.length && chosen[n] === rejected[n]) n++;
      const cut = chosen.lastIndexOf(MARKER, n - MARKER.length) + MARKER.length;
      let P = 1 + Buffer.byteLength(chosen.slice(0, cut));
      let truncated = false;
      if (maxPrompt !== null && P > maxPrompt) (P = maxPrompt), (truncated = true);
      if (P >= maxLength) {
        counts["no-room-for-completion"]++;
        continue;
      }
      const room = maxLength - P;
      const c = [...Buffer.from(chosen.slice(cut)), -1];
      const r = [...Buffer.from(rejected.slice(cut)), -1];
      if (c.length > room || r.length > room) truncated = true;
      if (c.slice(0, room).join() === r.slice(0, room).join()) counts["identical-after-truncation"]++;
      else if (truncated) counts.truncated++;
    }
    return counts;
  };

  const tok = new ByteTokenizer();
  for (const [opts, want] of [
    [{}, { "no-room-for-completion": 0, "identical-after-truncation": 0, truncated: 0 }],
    [{ maxLength: 1024, maxPromptLength: 512 }, expect(1024, 512)],
    [{ maxLength: 512, truncationMode: "keep_start" }, expect(512, null)],
  ] as [TokenizeOptions, ReturnType<typeof expect>][]) {
    const tokenized = tokenizePairs(loaded.pairs, tok, opts);
    const stats = dataStats(loaded, tokenized);
    t.diagnostic(`options ${JSON.stringify(opts)}:`);
    for (const line of formatDataStats(stats, 2).split("\n")) t.diagnostic(line);
    assert.equal(stats.droppedByReason["no-room-for-completion"], want["no-room-for-completion"]);
    assert.equal(stats.droppedByReason["identical-after-truncation"], want["identical-after-truncation"]);
    assert.equal(stats.truncated, want.truncated);
    assert.equal(stats.rows, stats.usable + stats.invalid + stats.dropped);
    assert.ok(stats.drops.every((d) => d.detail.length > 0 && d.where.startsWith(`${HH}:`)));
    if (opts.maxPromptLength !== undefined || opts.maxLength === undefined) assert.ok(stats.usable >= 2300, `usable ${stats.usable}`);
  }
  // The settings with a prompt cap lose almost nothing; the keep_start one without it really does drop rows.
  assert.ok(expect(512, null)["no-room-for-completion"] > 0);
});
