// GPT-2's real tokenizer as a Hugging Face tokenizer.json (test/fixtures/tokenizers/gpt2, converted from OpenAI's
// encoder.json and vocab.bpe by tools/gpt2-tokenizer/make.mjs; see NOTE.txt there), loaded by tsdpo's HF loader as
// `--model <gpt2 folder>` does, checked against answers that do not come from that conversion:
//   - the data: in Hugging Face's 2020 serialisation it is byte for byte openai-community/gpt2's tokenizer.json (by
//     sha256), and its tokens and merges are those of llama.cpp's ggml-vocab-gpt-2.gguf;
//   - the encoding: llama.cpp's golden table for GPT-2 (test-tokenizer-0, add_special = false, parse_special = false),
//     all 46 cases, and tsdpo's own llama.cpp-style BPE on the GGUF for special-token handling;
//   - no BOS (GPT-2 has none: add_bos_token false, encode("") is empty), decode round trips, and <|endoftext|> (50256)
//     as a special token that is plain text to encode() and an id to encodeWithSpecials().

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { pairEncoder } from "../src/data/tokenize.js";
import { metaArray, readGguf } from "../src/io/gguf.js";
import { loadTokenizer, tokenizerFromGguf, type HfTokenizer } from "../src/tokenizer/index.js";
import { fixture } from "./helpers.js";

type Json = Record<string, any>;

function memo<T>(make: () => T): () => T {
  let v: T | undefined;
  return () => (v ??= make());
}
const folder = fixture("tokenizers", "gpt2");
const json = memo((): Json => JSON.parse(readFileSync(fixture("tokenizers", "gpt2", "tokenizer.json"), "utf8")));
const gpt2 = memo(() => loadTokenizer(folder) as HfTokenizer);
const ggufPath = fixture("vocab", "ggml-vocab-gpt-2.gguf");
const gguf = memo(() => readGguf(ggufPath));
/** tsdpo's llama.cpp-style byte-level BPE on llama.cpp's GGUF vocabulary (itself checked in tokenizer.test.ts). */
const ggufTok = memo(() => tokenizerFromGguf(gguf()));

/** The token texts by id, from the tokenizer.json's model.vocab. */
function tokensById(j: Json): string[] {
  const out: string[] = [];
  for (const [t, id] of Object.entries(j.model.vocab as Record<string, number>)) out[id] = t;
  return out;
}

/** llama.cpp's test-tokenizer-0 table, read as its read_tests does (the file ends with a separator). */
function goldenTable(): { text: string; ids: number[] }[] {
  const inputs = readFileSync(ggufPath + ".inp", "utf8").split("\n__ggml_vocab_test__\n");
  assert.equal(inputs.pop(), "");
  const lines = readFileSync(ggufPath + ".out", "utf8").split("\n");
  if (lines.at(-1) === "") lines.pop();
  assert.equal(lines.length, inputs.length, ".inp and .out disagree on the number of cases");
  return inputs.map((text, i) => ({ text, ids: lines[i]!.trim() === "" ? [] : lines[i]!.trim().split(" ").map(Number) }));
}

const EOT = "<|endoftext|>";
const EOT_ID = 50256;

describe("GPT-2 tokenizer.json (converted from OpenAI's encoder.json and vocab.bpe)", () => {
  it("is laid out as GPT2TokenizerFast's: BPE model, byte-level pre-tokenizer, decoder and post-processor", () => {
    const j = json();
    const byteLevel = (addPrefixSpace: boolean, trimOffsets: boolean) => ({
      type: "ByteLevel", add_prefix_space: addPrefixSpace, trim_offsets: trimOffsets, use_regex: true,
    });
    assert.deepEqual(Object.keys(j), [
      "version", "truncation", "padding", "added_tokens", "normalizer", "pre_tokenizer", "post_processor", "decoder", "model",
    ]);
    assert.equal(j.normalizer, null);
    assert.deepEqual(j.pre_tokenizer, byteLevel(false, true));
    assert.deepEqual(j.post_processor, byteLevel(true, false));
    assert.deepEqual(j.decoder, byteLevel(true, true));
    assert.deepEqual(j.added_tokens, [
      { id: EOT_ID, content: EOT, single_word: false, lstrip: false, rstrip: false, normalized: true, special: true },
    ]);
    const { vocab, merges, ...settings } = j.model;
    assert.deepEqual(settings, {
      type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: "", end_of_word_suffix: "",
      fuse_unk: false, byte_fallback: false, ignore_merges: false,
    });
    assert.equal(Object.keys(vocab).length, 50257);
    assert.equal(vocab[EOT], EOT_ID);
    assert.equal(merges.length, 50000);
    assert.deepEqual(merges[0], ["Ġ", "t"]);

    const config = JSON.parse(readFileSync(fixture("tokenizers", "gpt2", "tokenizer_config.json"), "utf8"));
    assert.equal(config.bos_token, EOT);
    assert.equal(config.eos_token, EOT);
    assert.equal(config.add_bos_token, false);
    assert.equal(config.model_max_length, 1024);
    assert.equal(config.chat_template, undefined); // GPT-2 has no chat template, nor a file holding one
    for (const f of ["chat_template.jinja", "chat_template.json"]) assert.ok(!existsSync(fixture("tokenizers", "gpt2", f)));
  });

  it("holds openai-community/gpt2's vocabulary and merges to the byte (its 2020 tokenizer.json, by sha256)", () => {
    // Hugging Face's own tokenizer.json for GPT-2 (revision 607a30d) predates use_regex, the model's "type" and merges
    // as pairs; written back in that format, the fixture's data must give exactly that file.
    const j = json();
    const byteLevel = (p: boolean, t: boolean) => `{"type":"ByteLevel","add_prefix_space":${p},"trim_offsets":${t}}`;
    const vocab = tokensById(j).map((t, id) => `${JSON.stringify(t)}:${id}`).join(",");
    const merges = JSON.stringify((j.model.merges as [string, string][]).map((m) => m.join(" ")));
    const hub =
      `{"version":"1.0","truncation":null,"padding":null,"added_tokens":[{"id":50256,"special":true,` +
      `"content":"<|endoftext|>","single_word":false,"lstrip":false,"rstrip":false,"normalized":true}],` +
      `"normalizer":null,"pre_tokenizer":${byteLevel(false, true)},"post_processor":${byteLevel(true, false)},` +
      `"decoder":${byteLevel(true, true)},"model":{"dropout":null,"unk_token":null,"continuing_subword_prefix":"",` +
      `"end_of_word_suffix":"","fuse_unk":false,"vocab":{${vocab}},"merges":${merges}}}`;
    const bytes = Buffer.from(hub, "utf8");
    assert.equal(bytes.length, 1355256);
    assert.equal(createHash("sha256").update(bytes).digest("hex"), "8414cab924d8b9b33013f0d221c5862f365ee9be39c5c2bfae8a5a9e970478a6");
  });

  it("has the tokens and merges of llama.cpp's ggml-vocab-gpt-2.gguf", () => {
    const j = json();
    const tokens = tokensById(j);
    assert.equal(tokens.length, 50257);
    assert.deepEqual(tokens, metaArray(gguf(), "tokenizer.ggml.tokens"));
    assert.deepEqual(
      (j.model.merges as [string, string][]).map((m) => m.join(" ")),
      metaArray(gguf(), "tokenizer.ggml.merges"),
    );
  });

  it("loads as a Hugging Face folder: <|endoftext|> as BOS and EOS, no BOS added, no prefix space, no template", () => {
    const tok = gpt2();
    assert.equal(tok.vocabSize, 50257);
    assert.equal(tok.bosId, EOT_ID);
    assert.equal(tok.eosId, EOT_ID);
    assert.equal(tok.addBos, false);
    assert.equal(tok.hasPrefixSpace, false);
    assert.deepEqual(tok.stopIds, []); // <|endoftext|> is the EOS already
    assert.equal(tok.chatTemplate, null);
    assert.deepEqual([tok.idToToken(EOT_ID), tok.idToToken(220), tok.idToToken(198)], [EOT, "Ġ", "Ċ"]);
    // the same settings as llama.cpp's GGUF of GPT-2
    const g = ggufTok();
    assert.deepEqual([g.vocabSize, g.bosId, g.eosId, g.addBos], [tok.vocabSize, tok.bosId, tok.eosId, tok.addBos]);
  });

  it("adds no BOS: encode of \"\" is empty, text starts with its own tokens, a DPO prompt has no BOS", () => {
    const tok = gpt2();
    assert.deepEqual(tok.encode(""), []);
    assert.deepEqual(tok.encodeWithSpecials(""), []);
    assert.deepEqual(tok.encode("", { continuation: true }), []);
    assert.deepEqual(tok.encode("Hello world"), [15496, 995]);
    assert.deepEqual(tok.encodeWithSpecials("Hello world"), [15496, 995]);
    assert.deepEqual(tok.encode(" Hello world", { continuation: true }), [18435, 995]); // byte-level BPE: no prefix to drop
    const enc = pairEncoder(tok);
    assert.deepEqual(enc.prompt("Hello world"), { ids: [15496, 995], bos: false });
    assert.deepEqual(enc.completion(" world"), [995, EOT_ID]); // EOS appended once
    assert.deepEqual(enc.completion(" world<|endoftext|>"), [995, EOT_ID]); // …and not twice
  });

  it("matches llama.cpp on all 46 cases of ggml-vocab-gpt-2", () => {
    const tok = gpt2();
    const table = goldenTable();
    assert.equal(table.length, 46);
    const failures: string[] = [];
    for (const { text, ids } of table) {
      const got = {
        encode: tok.encode(text),
        continuation: tok.encode(text, { continuation: true }),
        encodeWithSpecials: tok.encodeWithSpecials(text),
      };
      for (const [how, g] of Object.entries(got))
        if (JSON.stringify(g) !== JSON.stringify(ids))
          failures.push(`${how}(${JSON.stringify(text)}): tsdpo [${g.join(" ")}], llama.cpp [${ids.join(" ")}]`);
    }
    assert.deepEqual(failures, [], `${failures.length} of ${3 * table.length} encodings differ from llama.cpp`);
  });

  it("decodes every golden case, and more, back to its text", () => {
    const tok = gpt2();
    const texts = [
      ...goldenTable().map((c) => c.text),
      "I'M HERE it's 'LL",
      "a\r\nb  \n\n  c\t\t",
      "١٢٣ 12345 ⅷ",
      "naïve cafe\u0301 日本語 🦙‍🔥",
      "  trailing   ",
    ];
    for (const text of texts) {
      const ids = tok.encode(text);
      assert.equal(tok.decode(ids), text, `round trip of ${JSON.stringify(text)}`);
      assert.equal(tok.decode(ids, { keepSpecial: true }), text);
      assert.deepEqual(ids, ggufTok().encode(text), `the GGUF tokenizer on ${JSON.stringify(text)}`);
    }
  });

  it("treats <|endoftext|> as a special token: text to encode(), id 50256 to encodeWithSpecials(), dropped by decode()", () => {
    const tok = gpt2();
    const g = ggufTok();
    const plain = tok.encode(EOT);
    assert.ok(plain.length > 1 && !plain.includes(EOT_ID), `encode spelled it [${plain.join(" ")}]`);
    assert.deepEqual(plain, g.encode(EOT));
    assert.equal(tok.decode(plain), EOT);
    assert.deepEqual(tok.encodeWithSpecials(EOT), [EOT_ID]);
    assert.deepEqual(tok.encodeWithSpecials("a<|endoftext|>"), [64, EOT_ID]);
    assert.equal(tok.decode([64, EOT_ID]), "a");
    assert.equal(tok.decode([64, EOT_ID], { keepSpecial: true }), "a<|endoftext|>");
    for (const text of [
      "Hello<|endoftext|> world",
      "<|endoftext|><|endoftext|>\n<|endoftext|",
      "x <|endoftext|>y <|endoftext|>",
      "<|endoftext|>The end.",
    ]) {
      const ids = tok.encodeWithSpecials(text);
      assert.deepEqual(ids, g.encodeWithSpecials(text), JSON.stringify(text));
      assert.deepEqual(tok.encode(text), g.encode(text), JSON.stringify(text));
      assert.equal(tok.decode(ids, { keepSpecial: true }), text);
      assert.equal(tok.decode(ids), text.split(EOT).join(""));
    }
  });
});
