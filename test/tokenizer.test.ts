// Tokenizers against independent answers: llama.cpp's golden tables (test-tokenizer-0: ggml-vocab-*.gguf with .inp/.out,
// produced with add_special = false and parse_special = false, i.e. no BOS, SentencePiece space prefix at the start),
// llama.cpp's tokenisation of a stories260K sentence, @huggingface/tokenizers on real tokenizer.json files, and
// hand-derived merges on a toy vocabulary.

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Tokenizer as HfLibTokenizer } from "@huggingface/tokenizers";
import { readGguf, metaArray, type GgufFile } from "../src/io/gguf.js";
import { TsdpoError } from "../src/errors.js";
import {
  BpeTokenizer,
  loadHfTokenizer,
  loadTokenizer,
  renderChat,
  SpmTokenizer,
  tokenizerFromGguf,
  type HfTokenizer,
  type LoadedTokenizer,
} from "../src/tokenizer/index.js";
import { fixture, storiesGguf } from "./helpers.js";

// Loaded once per file: the vocabularies take 0.1–1 s each to build.
function memo<T>(make: () => T): () => T {
  let v: T | undefined;
  return () => (v ??= make());
}
const ggufFile = memo(() => new Map<string, GgufFile>());
const gguf = (path: string): GgufFile => {
  let f = ggufFile().get(path);
  if (!f) ggufFile().set(path, (f = readGguf(path)));
  return f;
};
const spmVocab = memo(() => tokenizerFromGguf(gguf(fixture("vocab", "ggml-vocab-llama-spm.gguf"))));
const gpt2Vocab = memo(() => tokenizerFromGguf(gguf(fixture("vocab", "ggml-vocab-gpt-2.gguf"))));
const stories = memo(() => tokenizerFromGguf(gguf(storiesGguf)));
const mistral = memo(() => loadHfTokenizer(fixture("tokenizers", "mistral-7b")));
const qwen3 = memo(() => loadHfTokenizer(fixture("tokenizers", "qwen3")));
const qwen3Json = memo(() => JSON.parse(readFileSync(fixture("tokenizers", "qwen3", "tokenizer.json"), "utf8")));

/** Reads a golden table exactly as llama.cpp's test-tokenizer-0 does (read_tests). */
function goldenTable(name: string): { text: string; ids: number[] }[] {
  const base = fixture("vocab", `ggml-vocab-${name}.gguf`);
  const raw = readFileSync(base + ".inp", "utf8");
  const sep = "\n__ggml_vocab_test__\n";
  const inputs: string[] = [];
  // the file ends with a separator, after which llama.cpp's loop stops: no empty trailing case
  for (let pos = 0; pos < raw.length; ) {
    const next = raw.indexOf(sep, pos);
    if (next < 0) {
      inputs.push(raw.slice(pos));
      break;
    }
    inputs.push(raw.slice(pos, next));
    pos = next + sep.length;
  }
  const lines = readFileSync(base + ".out", "utf8").split("\n");
  if (lines.at(-1) === "") lines.pop();
  assert.equal(lines.length, inputs.length, `${name}: .inp and .out disagree on the number of cases`);
  return inputs.map((text, i) => ({
    text,
    ids: lines[i]!.trim() === "" ? [] : lines[i]!.trim().split(" ").map(Number),
  }));
}

function checkGolden(tok: LoadedTokenizer, name: string): void {
  const table = goldenTable(name);
  // 46 cases: the separator count of the .inp file (a naive split on the separator yields 47 pieces, the last empty)
  assert.equal(table.length, 46);
  const failures: string[] = [];
  for (const { text, ids } of table) {
    const got = tok.encode(text);
    if (JSON.stringify(got) !== JSON.stringify(ids))
      failures.push(`${JSON.stringify(text)}: got [${got.join(" ")}], llama.cpp [${ids.join(" ")}]`);
  }
  assert.deepEqual(failures, [], `${name}: ${table.length - failures.length}/${table.length} cases pass`);
}

function checkRoundTrip(tok: LoadedTokenizer, texts: readonly string[]): void {
  for (const text of texts) assert.equal(tok.decode(tok.encode(text)), text, `round trip of ${JSON.stringify(text)}`);
}

function assertTsdpoError(fn: () => unknown, kind: string, ...patterns: RegExp[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof TsdpoError, `expected a TsdpoError, got ${String(e)}`);
    assert.equal(e.kind, kind, e.message);
    for (const p of patterns) assert.match(e.message, p);
    return true;
  });
}

const escapeRe = (s: string): RegExp => new RegExp(s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));

describe("GGUF SentencePiece (llama.cpp llm_tokenizer_spm)", () => {
  it("matches llama.cpp on all 46 cases of ggml-vocab-llama-spm", () => {
    const tok = spmVocab();
    assert.ok(tok instanceof SpmTokenizer);
    checkGolden(tok, "llama-spm");
  });

  it("decodes every golden case back to its text (the dummy-prefix space is dropped)", () => {
    checkRoundTrip(spmVocab(), goldenTable("llama-spm").map((c) => c.text));
  });

  it("reads ids and flags from the GGUF", () => {
    const tok = spmVocab();
    assert.equal(tok.vocabSize, 32000);
    assert.equal(tok.bosId, 1);
    assert.equal(tok.eosId, 2);
    assert.equal(tok.addBos, true);
    assert.deepEqual(tok.stopIds, []);
    assert.equal(tok.idToToken(15043), "▁Hello");
  });

  it("stories260K: llama.cpp's tokens for a sentence, and back", () => {
    const tok = stories();
    const text = "Once upon a time, there was a little girl named Lily.";
    const ids = tok.encode(text);
    assert.deepEqual(ids, [403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426]);
    assert.equal(tok.decode(ids), text);
    assert.equal(tok.decode([tok.bosId!, ...ids, tok.eosId!]), text);
    assert.equal(tok.decode([tok.bosId!, 403, tok.eosId!], { keepSpecial: true }), "<s> Once</s>");
  });

  it("stories260K: characters outside the 512-token vocabulary fall back to <0xXX> byte tokens", () => {
    const tok = stories();
    // 🦙 = U+1F999 = F0 9F A6 99 in UTF-8; <0x00> is id 3, so byte b is id 3 + b
    const ids = tok.encode("🦙", { continuation: true });
    assert.deepEqual(ids, [3 + 0xf0, 3 + 0x9f, 3 + 0xa6, 3 + 0x99]);
    assert.equal(tok.decode(ids), "🦙");
    checkRoundTrip(tok, ["Zebra é 🦙\n\tx", "  two leading spaces", ""]);
  });

  it("continuation suppresses the space prefix, so prompt ++ completion tokenises like the whole text", () => {
    for (const tok of [stories(), spmVocab()]) {
      const prompt = "Once upon a time,";
      const completion = " there was a little girl.";
      assert.deepEqual(
        [...tok.encode(prompt), ...tok.encode(completion, { continuation: true })],
        tok.encode(prompt + completion),
      );
      const first = tok.idToToken(tok.encode("Once", { continuation: true })[0]!);
      assert.ok(!first.startsWith("▁"), `continuation starts with ${first}`);
      assert.ok(tok.idToToken(tok.encode("Once")[0]!).startsWith("▁"));
    }
  });

  it("merges the highest-scoring pair first, leftmost on ties (hand-derived on a toy vocabulary)", () => {
    // ids:           0        1      2      3    4    5    6    7     8     9     10
    const tokens = ["<unk>", "<s>", "</s>", "▁", "a", "b", "c", "ab", "bc", "▁a", "<x>"];
    const scores = [0, 0, 0, -10, -10, -10, -10, -2, -1, -3, 0];
    const types = [2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 4]; // <x> is user-defined
    const make = (s: number[]): SpmTokenizer =>
      new SpmTokenizer({
        tokens, scores: s, types, bosId: 1, eosId: 2, unkId: 0, addBos: true, addSpacePrefix: true,
        stopIds: [], chatTemplate: null, source: "toy",
      });
    const tok = make(scores);
    // "▁abc": candidates ▁a (-3), ab (-2), bc (-1): bc merges first, then ▁a (ab is gone) -> [▁a, bc]
    assert.deepEqual(tok.encode("abc"), [9, 8]);
    // equal scores for ab and bc: the leftmost pair wins -> ▁ + ab + c, then ▁a cannot form (a is inside ab)
    const tied = [...scores];
    tied[8] = -2;
    tied[9] = -5;
    assert.deepEqual(make(tied).encode("abc"), [3, 7, 6]);
    // a user-defined token is cut out first, and the text after it gets a space prefix again, as in llama.cpp
    assert.deepEqual(tok.encode("a<x>a"), [9, 10, 9]);
    assert.deepEqual(tok.encodeWithSpecials("a</s>a", { continuation: true }), [4, 2, 9]);
    // "d" is neither a token nor covered by byte tokens: the unknown token
    assert.deepEqual(tok.encode("d", { continuation: true }), [0]);
  });
});

describe("GGUF byte-level BPE (llama.cpp llm_tokenizer_bpe)", () => {
  it("matches llama.cpp on all 46 cases of ggml-vocab-gpt-2", () => {
    const tok = gpt2Vocab();
    assert.ok(tok instanceof BpeTokenizer);
    checkGolden(tok, "gpt-2");
  });

  it("decodes every golden case back to its text", () => {
    checkRoundTrip(gpt2Vocab(), goldenTable("gpt-2").map((c) => c.text));
  });

  it("reads ids and flags from the GGUF; special-token text is plain text unless asked for", () => {
    const tok = gpt2Vocab();
    assert.equal(tok.vocabSize, 50257);
    assert.equal(tok.bosId, 50256);
    assert.equal(tok.eosId, 50256);
    assert.equal(tok.addBos, false); // no add_bos_token key: llama.cpp's default for GPT-2
    assert.deepEqual(tok.stopIds, []); // <|endoftext|> is already the EOS
    const plain = tok.encode("<|endoftext|>");
    assert.ok(!plain.includes(50256) && plain.length > 1);
    assert.equal(tok.decode(plain), "<|endoftext|>");
    assert.deepEqual(tok.encodeWithSpecials("a<|endoftext|>"), [64, 50256]);
    assert.equal(tok.decode([64, 50256]), "a");
    assert.equal(tok.decode([64, 50256], { keepSpecial: true }), "a<|endoftext|>");
  });

  it("the qwen2 pre-tokenizer matches @huggingface/tokenizers on Qwen3's vocabulary", () => {
    const j = qwen3Json();
    const tokens: string[] = [];
    for (const [t, id] of Object.entries(j.model.vocab as Record<string, number>)) tokens[id] = t;
    const types: number[] = new Array(tokens.length).fill(1);
    for (const a of j.added_tokens) {
      tokens[a.id] = a.content;
      types[a.id] = a.special ? 3 : 4;
    }
    const merges = (j.model.merges as [string, string][]).map((m) => m.join(" "));
    const mine = new BpeTokenizer({
      tokens, merges, types, pre: "qwen2", bosId: null, eosId: 151645, addBos: null, stopIds: [],
      chatTemplate: null, source: "qwen3 tokenizer.json",
    });
    const hf = qwen3();
    const texts = [...goldenTable("gpt-2").map((c) => c.text), "I'M HERE it's", "a\r\nb  \n\n  c", "x <think>y</think>"];
    for (const text of texts) assert.deepEqual(mine.encode(text), hf.encode(text), JSON.stringify(text));
  });

  it("the llama-bpe and smollm pre-tokenizers match @huggingface/tokenizers with the same pipeline", () => {
    const f = gguf(fixture("vocab", "ggml-vocab-gpt-2.gguf"));
    const tokens = metaArray(f, "tokenizer.ggml.tokens") as string[];
    const merges = metaArray(f, "tokenizer.ggml.merges") as string[];
    const model = (ignoreMerges: boolean) => ({
      type: "BPE", vocab: Object.fromEntries(tokens.map((t, i) => [t, i])), merges, ignore_merges: ignoreMerges,
      unk_token: null, continuing_subword_prefix: "", end_of_word_suffix: "", fuse_unk: false, byte_fallback: false,
    });
    const byteLevel = (useRegex: boolean) => ({ type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: useRegex });
    const split = (regex: string) => ({ type: "Split", pattern: { Regex: regex }, behavior: "Isolated", invert: false });
    const pipeline = (pre: unknown, ignoreMerges: boolean) =>
      new HfLibTokenizer(
        { added_tokens: [], normalizer: null, pre_tokenizer: pre, post_processor: null, decoder: { type: "ByteLevel" }, model: model(ignoreMerges) },
        {},
      );
    const llama3Regex = String.raw`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;
    const cases = {
      // Llama 3's tokenizer.json: Split(regex) + ByteLevel without regex, ignore_merges
      "llama-bpe": pipeline({ type: "Sequence", pretokenizers: [split(llama3Regex), byteLevel(false)] }, true),
      // SmolLM's is Digits(individual) + ByteLevel; the JS Digits matches ASCII \d only, whereas Rust's (and
      // llama.cpp's) split every \p{N}, so the digit step is written as a Split here
      smollm: pipeline({ type: "Sequence", pretokenizers: [split(String.raw`\p{N}`), byteLevel(true)] }, false),
    };
    const texts = [...goldenTable("gpt-2").map((c) => c.text), "I'M HERE it's 'LL", "١٢٣ 12345 ⅷ", "  \t x"];
    for (const [pre, hf] of Object.entries(cases)) {
      const mine = new BpeTokenizer({
        tokens, merges, types: null, pre, bosId: null, eosId: null, addBos: null, stopIds: [], chatTemplate: null, source: "gpt-2",
      });
      for (const text of texts) {
        const want = text === "" ? [] : hf.encode(text, { add_special_tokens: false }).ids;
        assert.deepEqual(mine.encode(text), want, `${pre}: ${JSON.stringify(text)}`);
      }
    }
  });

  it("refuses an unknown pre-tokenizer, naming it", () => {
    assertTsdpoError(
      () =>
        new BpeTokenizer({
          tokens: ["a"], merges: [], types: null, pre: "mystery-7b", bosId: null, eosId: null, addBos: null,
          stopIds: [], chatTemplate: null, source: "m.gguf",
        }),
      "unsupported",
      /m\.gguf/,
      /tokenizer\.ggml\.pre/,
      /mystery-7b/,
    );
  });
});

describe("GGUF loading errors", () => {
  it("a GGUF without vocabulary is an input error naming the file", () => {
    const f = gguf(storiesGguf);
    const metadata = new Map([...f.metadata].filter(([k]) => !k.startsWith("tokenizer.")));
    assertTsdpoError(() => tokenizerFromGguf({ ...f, metadata }), "input", escapeRe(storiesGguf), /no tokenizer vocabulary/);
  });

  it("an unknown tokenizer.ggml.model is refused", () => {
    const f = gguf(storiesGguf);
    const metadata = new Map(f.metadata);
    metadata.set("tokenizer.ggml.model", "t5");
    assertTsdpoError(() => tokenizerFromGguf({ ...f, metadata }), "unsupported", /"t5"/);
  });

  it("loadTokenizer picks GGUF or folder, and names a missing path", () => {
    assert.ok(loadTokenizer(storiesGguf) instanceof SpmTokenizer);
    assertTsdpoError(() => loadTokenizer(join(tmpdir(), "tsdpo-no-such-model")), "input", /tsdpo-no-such-model/);
  });
});

describe("Hugging Face tokenizer.json", () => {
  it("Mistral 7B: known ids with BOS", () => {
    const tok = mistral();
    assert.equal(tok.addBos, true);
    assert.equal(tok.bosId, 1);
    assert.equal(tok.eosId, 2);
    assert.equal(tok.vocabSize, 32000);
    assert.equal(tok.chatTemplate, null);
    const ids = [tok.bosId!, ...tok.encode("Hello world, once upon a time.")];
    assert.deepEqual(ids, [1, 22557, 1526, 28725, 2327, 3714, 264, 727, 28723]);
    assert.equal(tok.decode(ids), "Hello world, once upon a time.");
    assert.equal(tok.decode([...ids, 2], { keepSpecial: true }), "<s> Hello world, once upon a time.</s>");
    checkRoundTrip(tok, ["  two spaces\nand a newline", "Führer 🦙 ½", "x , y . z"]);
  });

  it("Mistral 7B: continuation drops the ▁ prefix", () => {
    const tok = mistral();
    assert.equal(tok.hasPrefixSpace, true);
    assert.deepEqual(tok.encode("Hello").map((id) => tok.idToToken(id)), ["▁Hello"]);
    assert.deepEqual(tok.encode("Hello", { continuation: true }).map((id) => tok.idToToken(id)), ["Hello"]);
    const prompt = "Hello world,";
    const completion = " once upon a time.";
    assert.deepEqual([...tok.encode(prompt), ...tok.encode(completion, { continuation: true })], tok.encode(prompt + completion));
  });

  it("Mistral 7B: special-token strings are plain text in encode, ids in encodeWithSpecials", () => {
    const tok = mistral();
    assert.ok(!tok.encode("<s>Hi</s>").some((id) => id === 1 || id === 2));
    assert.deepEqual(tok.encodeWithSpecials("<s>Hi</s>"), [1, ...tok.encode("Hi"), 2]);
    // with continuation only the text before the first special token loses its ▁ (llama.cpp's rule)
    assert.deepEqual(tok.encodeWithSpecials("Hi</s><s>Hi", { continuation: true }), [
      ...tok.encode("Hi", { continuation: true }), 2, 1, ...tok.encode("Hi"),
    ]);
  });

  it("Qwen3: ids, stop tokens and byte-level round trips", () => {
    const tok = qwen3();
    assert.equal(tok.bosId, null);
    assert.equal(tok.addBos, false);
    assert.equal(tok.eosId, 151645); // <|im_end|>
    assert.deepEqual(tok.stopIds, [151643]); // <|endoftext|>
    assert.equal(tok.hasPrefixSpace, false);
    assert.equal(tok.idToToken(151645), "<|im_end|>");
    assert.ok(tok.chatTemplate?.includes("<|im_start|>"));
    // byte-level BPE has no prefix: continuation changes nothing
    assert.deepEqual(tok.encode("Hello world", { continuation: true }), tok.encode("Hello world"));
    const plain = tok.encode("<|im_end|>");
    assert.ok(!plain.includes(151645));
    assert.deepEqual(tok.encodeWithSpecials("a<|im_end|>"), [...tok.encode("a"), 151645]);
    assert.equal(tok.decode(tok.encodeWithSpecials("a<|im_end|>")), "a");
    assert.equal(tok.decode(tok.encodeWithSpecials("a<|im_end|>"), { keepSpecial: true }), "a<|im_end|>");
    checkRoundTrip(tok, ["<|im_end|> is text here", " x , y . z  \n", "нещо на Български 🦙"]);
  });

  it("a folder without tokenizer.json is an input error naming the folder", () => {
    const dir = mkdtempSync(join(tmpdir(), "tsdpo-tok-"));
    try {
      assertTsdpoError(() => loadHfTokenizer(dir), "input", escapeRe(dir), /tokenizer\.json/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("finds the chat template in chat_template.jinja, then chat_template.json, then tokenizer_config.json", () => {
    const dir = mkdtempSync(join(tmpdir(), "tsdpo-tok-"));
    try {
      const tiny = {
        added_tokens: [{ id: 3, content: "<eos>", special: true }], normalizer: null, pre_tokenizer: null,
        post_processor: null, decoder: null, model: { type: "BPE", vocab: { a: 0, b: 1, ab: 2 }, merges: ["a b"] },
      };
      writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(tiny));
      writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify({ chat_template: "config", eos_token: "<eos>" }));
      const load = (): HfTokenizer => loadHfTokenizer(dir);
      assert.equal(load().chatTemplate, "config");
      assert.equal(load().eosId, 3);
      assert.deepEqual(load().encode("ab"), [2]);
      writeFileSync(join(dir, "chat_template.json"), JSON.stringify({ chat_template: "json" }));
      assert.equal(load().chatTemplate, "json");
      writeFileSync(join(dir, "chat_template.jinja"), "jinja");
      assert.equal(load().chatTemplate, "jinja");
      writeFileSync(join(dir, "tokenizer_config.json"), "{ not json");
      assertTsdpoError(load, "input", /tokenizer_config\.json/, /not valid JSON/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("chat templates", () => {
  it("Qwen3's template renders a two-turn conversation exactly", () => {
    const template = qwen3().chatTemplate!;
    const text = renderChat(
      template,
      [
        { role: "user", content: "What is 2+2?" },
        { role: "assistant", content: "4" },
      ],
      { addGenerationPrompt: false },
    );
    // the final assistant turn after the last user message gets an (empty) think block
    assert.equal(
      text,
      "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n4<|im_end|>\n",
    );
  });

  it("Qwen3's template with a system message and the generation prompt", () => {
    const text = renderChat(
      qwen3().chatTemplate!,
      [
        { role: "system", content: "Be brief." },
        { role: "user", content: "Hi" },
      ],
      { addGenerationPrompt: true },
    );
    assert.equal(text, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    // and through the tokenizer: the markers become single special ids
    const ids = qwen3().encodeWithSpecials(text);
    assert.equal(ids.filter((id) => id === 151644).length, 3); // <|im_start|>
    assert.equal(ids.filter((id) => id === 151645).length, 2); // <|im_end|>
  });

  it("passes bos_token / eos_token and reports template failures as config errors", () => {
    const t = "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{{ eos_token }}{% endfor %}";
    assert.equal(renderChat(t, [{ role: "user", content: "x" }], { addGenerationPrompt: false, bosToken: "<s>", eosToken: "</s>" }), "<s>[user]x</s>");
    const strict = "{% if messages[0].role != 'user' %}{{ raise_exception('first message must be from the user') }}{% endif %}ok";
    assertTsdpoError(
      () => renderChat(strict, [{ role: "assistant", content: "x" }], { addGenerationPrompt: false, source: "model/tokenizer_config.json" }),
      "config",
      /model\/tokenizer_config\.json/,
      /first message must be from the user/,
      /\[assistant\]/,
    );
    assertTsdpoError(() => renderChat("{% for %}", [], { addGenerationPrompt: false }), "config", /does not parse/);
  });
});
