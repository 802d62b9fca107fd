// Hugging Face tokenizer.json -> GGUF vocabulary (src/export/ggufvocab.ts), checked against independent answers:
// - llama.cpp's own tokenizer run on the converted Mistral-7B and Qwen3 vocabularies (committed ids from
//   tools/llama-ref/check-export.mjs, tied to the exported bytes by sha256), against @huggingface/tokenizers;
// - llama.cpp's golden tables (test-tokenizer-0) for Llama 2's SentencePiece vocabulary and GPT-2's, after a trip
//   GGUF -> tokenizer.json (tokenizer/export.ts) -> GGUF, where the scores are rebuilt from merge ranks;
// - a toy vocabulary whose scores and ids are derived by hand;
// - the refusals, each naming the file and the way out.

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TsdpoError } from "../src/errors.js";
import { exportGguf } from "../src/export/gguf.js";
import { ggufVocabFromGguf, ggufVocabFromHf } from "../src/export/ggufvocab.js";
import { metaArray, readGguf } from "../src/io/gguf.js";
import { type GgufMetaValue, gv, readGgufMetadataTyped, writeGguf } from "../src/io/ggufwriter.js";
import { loadHfTokenizer, tokenizerFromGguf } from "../src/tokenizer/index.js";
import { hfTokenizerFilesFromGguf } from "../src/tokenizer/export.js";
import { TokenType } from "../src/tokenizer/common.js";
import { CHECK_FIXTURE, vocabModels, vocabTexts } from "./gguf-export-models.js";
import { fixture, storiesGguf } from "./helpers.js";

const tmp = mkdtempSync(join(tmpdir(), "tsdpo-ggufvocab-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

type Meta = Array<[string, GgufMetaValue]>;
const get = (meta: Meta, key: string): GgufMetaValue | undefined => meta.find(([k]) => k === key)?.[1];

/** The tokenizer tsdpo builds from a GGUF holding only this vocabulary. */
function ggufTokenizer(meta: Meta, name: string) {
  const path = join(tmp, `${name}.gguf`);
  writeGguf(path, { metadata: meta, tensors: [] });
  return tokenizerFromGguf(readGguf(path));
}

function writeFolder(name: string, files: Record<string, unknown>): string {
  const dir = join(tmp, name);
  mkdirSync(dir, { recursive: true });
  for (const [f, c] of Object.entries(files)) writeFileSync(join(dir, f), JSON.stringify(c));
  return dir;
}

interface VocabFixture {
  name: string;
  sha256: string;
  plain: number[][];
  special: number[][];
}
const llamaCpp = JSON.parse(readFileSync(CHECK_FIXTURE, "utf8")) as { vocabs: VocabFixture[] };

/** The vocabulary models, each exported once (converting Qwen3's 151k tokens takes a while). */
const exportedVocabs = (() => {
  let done: { name: string; loaded: ReturnType<typeof vocabModels>[number]["loaded"]; path: string }[] | null = null;
  return () =>
    (done ??= vocabModels().map(({ name, loaded }) => {
      const path = join(tmp, `${name}.gguf`);
      exportGguf(loaded, path, { dtype: "F32" });
      return { name, loaded, path };
    }));
})();

test("llama.cpp tokenises the converted Mistral-7B and Qwen3 vocabularies as @huggingface/tokenizers does, and so does tsdpo", () => {
  const texts = vocabTexts();
  for (const { name, loaded, path } of exportedVocabs()) {
    const ref = llamaCpp.vocabs.find((v) => v.name === name);
    assert.ok(ref, `no llama.cpp numbers for ${name}; run tools/llama-ref/check-export.mjs`);
    const sha = createHash("sha256").update(readFileSync(path)).digest("hex");
    assert.equal(sha, ref.sha256, `${name}: the export changed since the llama.cpp numbers were recorded; rerun tools/llama-ref/check-export.mjs`);
    const hf = loaded.tokenizer;
    const mine = tokenizerFromGguf(readGguf(path));
    const deviations: string[] = [];
    texts.forEach((text, i) => {
      const show = JSON.stringify(text).slice(0, 60);
      const plain = hf.encode(text);
      const special = hf.encodeWithSpecials(text);
      assert.deepEqual(mine.encode(text), plain, `${name} tsdpo GGUF tokenizer, plain: ${show}`);
      assert.deepEqual(mine.encodeWithSpecials(text), special, `${name} tsdpo GGUF tokenizer, specials: ${show}`);
      assert.deepEqual(ref.plain[i], plain, `${name} llama.cpp, plain: ${show}`);
      if (JSON.stringify(ref.special[i]) !== JSON.stringify(special)) deviations.push(`${text} -> ${ref.special[i]!.join(" ")}`);
    });
    if (name === "qwen3-vocab") {
      // llama.cpp promotes a vocabulary token spelled "</s>" to a control token (its end-of-generation detection in
      // llama-vocab.cpp) and then parses it as special; in Qwen3 "</s>" is an ordinary token that Hugging Face
      // spells out as "</", "s", ">". That is llama.cpp's rule, not the conversion's: the ids otherwise agree.
      assert.equal(hf.idToToken(128247), "</s>");
      assert.deepEqual(deviations, ["Hello <s> world</s>! <|im_start|>user\nhi<|im_end|> -> 9707 366 82 29 1879 128247 0 220 151644 872 198 6023 151645"]);
    } else {
      assert.deepEqual(deviations, [], `${name}: llama.cpp with special tokens`);
    }
  }
});

test("Qwen3: byte-level keys, the qwen2 pre-tokenizer, special tokens as control and padding up to the embedding rows", () => {
  const { loaded, path } = exportedVocabs().find((m) => m.name === "qwen3-vocab")!;
  const V = loaded.model.cfg.V;
  const meta = readGgufMetadataTyped(path).filter(([k]) => k.startsWith("tokenizer."));
  assert.deepEqual(get(meta, "tokenizer.ggml.model"), gv.str("gpt2"));
  assert.deepEqual(get(meta, "tokenizer.ggml.pre"), gv.str("qwen2"));
  const tokens = get(meta, "tokenizer.ggml.tokens")!.value as string[];
  const types = get(meta, "tokenizer.ggml.token_type")!.value as number[];
  assert.equal(tokens.length, V);
  assert.equal(types.length, V);
  assert.equal(tokens[151644], "<|im_start|>");
  assert.equal(types[151644], TokenType.Control);
  assert.equal(tokens[151669], "[PAD151669]");
  assert.equal(types[V - 1], TokenType.Unused);
  assert.equal(types[9707], TokenType.Normal); // "Hello"
  const json = JSON.parse(readFileSync(join(loaded.path, "tokenizer.json"), "utf8"));
  assert.deepEqual(get(meta, "tokenizer.ggml.merges")!.value, json.model.merges.map((m: string[]) => m.join(" ")));
  assert.deepEqual(get(meta, "tokenizer.ggml.eos_token_id"), gv.u32(151645));
  assert.equal(get(meta, "tokenizer.ggml.bos_token_id"), undefined); // Qwen3 has no BOS
  assert.deepEqual(get(meta, "tokenizer.ggml.add_bos_token"), gv.bool(false));
  assert.deepEqual(get(meta, "tokenizer.chat_template"), gv.str(loaded.tokenizer.chatTemplate!));
});

/** llama.cpp's test-tokenizer-0 inputs and ids (add_special = false, parse_special = false). */
function goldenTable(name: "llama-spm" | "gpt-2"): { text: string; ids: number[] }[] {
  const base = fixture("vocab", `ggml-vocab-${name}.gguf`);
  const inputs = readFileSync(base + ".inp", "utf8").split("\n__ggml_vocab_test__\n");
  inputs.pop();
  const lines = readFileSync(base + ".out", "utf8").split("\n");
  return inputs.map((text, i) => ({ text, ids: lines[i]!.trim() === "" ? [] : lines[i]!.trim().split(" ").map(Number) }));
}

for (const name of ["llama-spm", "gpt-2"] as const) {
  test(`${name}: GGUF -> tokenizer.json -> GGUF still gives llama.cpp's golden ids`, () => {
    const src = fixture("vocab", `ggml-vocab-${name}.gguf`);
    const files = hfTokenizerFilesFromGguf(src);
    assert.ok(files);
    const folder = writeFolder(`golden-${name}`, files);
    const n = metaArray(readGguf(src), "tokenizer.ggml.tokens")!.length;
    const meta = ggufVocabFromHf(folder, loadHfTokenizer(folder), n);
    const tok = ggufTokenizer(meta, `golden-${name}`);
    for (const { text, ids } of goldenTable(name)) assert.deepEqual(tok.encode(text), ids, JSON.stringify(text));
    // the token texts and types survive unchanged
    const orig = readGguf(src);
    assert.deepEqual(get(meta, "tokenizer.ggml.tokens")!.value, metaArray(orig, "tokenizer.ggml.tokens"));
    assert.deepEqual(get(meta, "tokenizer.ggml.token_type")!.value, metaArray(orig, "tokenizer.ggml.token_type"));
  });
}

/** A SentencePiece-style tokenizer.json small enough to work out by hand. */
function toyFolder(name: string, change: (json: Record<string, any>) => void = () => {}): string {
  const json: Record<string, any> = {
    version: "1.0",
    added_tokens: [
      { id: 0, content: "<unk>", special: true },
      { id: 1, content: "<s>", special: true },
      { id: 2, content: "</s>", special: true },
    ],
    normalizer: {
      type: "Sequence",
      normalizers: [{ type: "Prepend", prepend: "▁" }, { type: "Replace", pattern: { String: " " }, content: "▁" }],
    },
    pre_tokenizer: null,
    post_processor: null,
    decoder: null,
    model: {
      type: "BPE", unk_token: "<unk>", byte_fallback: true, fuse_unk: true, continuing_subword_prefix: null, end_of_word_suffix: null,
      vocab: { "<unk>": 0, "<s>": 1, "</s>": 2, "▁": 3, a: 4, b: 5, c: 6, ab: 7, bc: 8, "<0x41>": 9 },
      merges: ["b c", "a b"],
    },
  };
  change(json);
  return writeFolder(name, {
    "tokenizer.json": json,
    "tokenizer_config.json": { bos_token: "<s>", eos_token: "</s>", unk_token: "<unk>", add_bos_token: true },
  });
}

test("scores follow merge ranks, so llama.cpp's highest-score-first merging picks BPE's pairs", () => {
  const folder = toyFolder("toy");
  const hf = loadHfTokenizer(folder);
  const meta = ggufVocabFromHf(folder, hf, 10);
  // "bc" comes from merge 0 (score -1), "ab" from merge 1 (score -2); the rest form no merge
  assert.deepEqual(get(meta, "tokenizer.ggml.scores")!.value, [0, 0, 0, 0, 0, 0, 0, -2, -1, 0]);
  assert.deepEqual(get(meta, "tokenizer.ggml.token_type")!.value, [2, 3, 3, 1, 1, 1, 1, 1, 1, 6]);
  assert.deepEqual(get(meta, "tokenizer.ggml.add_space_prefix"), gv.bool(true));
  assert.deepEqual(get(meta, "tokenizer.ggml.bos_token_id"), gv.u32(1));
  assert.deepEqual(get(meta, "tokenizer.ggml.unknown_token_id"), gv.u32(0));
  // "▁abc": BPE merges b+c (rank 0) first, and a+bc is no merge, so ▁ a bc. Equal scores (llama.cpp's converter
  // writes -1000 for all) would merge the leftmost pair a+b instead and give ▁ ab c.
  assert.deepEqual(hf.encode("abc"), [3, 4, 8]);
  assert.deepEqual(ggufTokenizer(meta, "toy").encode("abc"), [3, 4, 8]);
  const flat = meta.map(([k, v]): [string, GgufMetaValue] => (k === "tokenizer.ggml.scores" ? [k, gv.f32s(new Array(10).fill(-1000))] : [k, v]));
  assert.deepEqual(ggufTokenizer(flat, "toy-flat").encode("abc"), [3, 7, 6]);
});

test("a Metaspace pre-tokenizer sets add_space_prefix from its prepend_scheme", () => {
  for (const [scheme, prefix] of [["first", true], ["always", true], ["never", false]] as const) {
    const folder = toyFolder(`meta-${scheme}`, (j) => {
      j.normalizer = null;
      j.pre_tokenizer = { type: "Metaspace", replacement: "▁", prepend_scheme: scheme, split: false };
    });
    const meta = ggufVocabFromHf(folder, loadHfTokenizer(folder), 10);
    assert.deepEqual(get(meta, "tokenizer.ggml.add_space_prefix"), gv.bool(prefix), scheme);
  }
});

test("tokenizers llama.cpp cannot reproduce are refused with the file named and --format hf offered", () => {
  const cases: [string, (j: Record<string, any>) => void, RegExp][] = [
    ["unigram", (j) => (j.model.type = "Unigram"), /tokenizer model is "Unigram"; GGUF export converts BPE tokenizers only/],
    ["wordpiece", (j) => (j.model.type = "WordPiece"), /"WordPiece"/],
    ["nfkc", (j) => j.normalizer.normalizers.push({ type: "NFKC" }), /the normalizer \{"type":"NFKC"\} has no llama.cpp equivalent/],
    ["no-fallback", (j) => (j.model.byte_fallback = false), /without byte_fallback/],
    ["whitespace", (j) => (j.pre_tokenizer = { type: "Whitespace" }), /the pre_tokenizer \{"type":"Whitespace"\} is not supported/],
    ["no-space-mark", (j) => (j.normalizer = null), /neither maps spaces to "▁" nor uses ByteLevel/],
    ["suffix", (j) => (j.model.continuing_subword_prefix = "##"), /continuing_subword_prefix/],
    [
      "other-regex",
      (j) => {
        j.normalizer = null;
        j.model.byte_fallback = false;
        j.pre_tokenizer = {
          type: "Sequence",
          pretokenizers: [
            { type: "Split", pattern: { Regex: "\\p{L}+" }, behavior: "Isolated", invert: false },
            { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
          ],
        };
      },
      /byte-level pre_tokenizer .* is not one llama.cpp pre-tokenizer tsdpo recognises/,
    ],
  ];
  for (const [name, change, re] of cases) {
    const folder = toyFolder(`bad-${name}`, change);
    const tokPath = join(folder, "tokenizer.json");
    assert.throws(
      () => ggufVocabFromHf(folder, loadHfTokenizer(folder), 10),
      (e: unknown) =>
        e instanceof TsdpoError && e.message.startsWith(`${tokPath}: `) && re.test(e.message) && e.message.includes("--format hf"),
      name,
    );
  }
  // an id beyond the embedding rows
  const folder = toyFolder("too-big", (j) => (j.model.vocab["x"] = 10));
  assert.throws(() => ggufVocabFromHf(folder, loadHfTokenizer(folder), 10), /model.vocab "x" has id 10, outside the model's vocabulary of 10/);
});

test("a GGUF-sourced vocabulary is copied with its types, padded when the embedding has more rows", () => {
  const same = ggufVocabFromGguf(storiesGguf, 512);
  const orig = readGguf(storiesGguf);
  assert.deepEqual(same.map(([k]) => k), [...orig.metadata.keys()].filter((k) => k.startsWith("tokenizer.")));
  assert.deepEqual(get(same, "tokenizer.ggml.seperator_token_id"), gv.u32(4294967295)); // kept as written
  const padded = ggufVocabFromGguf(storiesGguf, 515);
  const tokens = get(padded, "tokenizer.ggml.tokens")!.value as string[];
  assert.deepEqual(tokens.slice(510), [...(metaArray(orig, "tokenizer.ggml.tokens") as string[]).slice(510), "[PAD512]", "[PAD513]", "[PAD514]"]);
  assert.deepEqual((get(padded, "tokenizer.ggml.token_type")!.value as number[]).slice(511), [1, 5, 5, 5]);
  assert.deepEqual((get(padded, "tokenizer.ggml.scores")!.value as number[]).length, 515);
  assert.throws(() => ggufVocabFromGguf(storiesGguf, 100), /has 512 tokens but the embedding has only 100 rows/);
});
