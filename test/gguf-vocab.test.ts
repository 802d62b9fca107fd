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
import { FAMILY_BPE_PRE, ggufVocabFromGguf, ggufVocabFromHf } from "../src/export/ggufvocab.js";
import type { LlamaConfig } from "../src/model/config.js";
import { metaArray, readGguf } from "../src/io/gguf.js";
import { type GgufMetaValue, gv, readGgufMetadataTyped, writeGguf } from "../src/io/ggufwriter.js";
import { loadHfTokenizer, tokenizerFromGguf } from "../src/tokenizer/index.js";
import { hfTokenizerFilesFromGguf } from "../src/tokenizer/export.js";
import { TokenType } from "../src/tokenizer/common.js";
import { CHECK_FIXTURE, preVariantFiles, vocabModels, vocabTexts } from "./gguf-export-models.js";
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

// ---------------------------------------------------------------------------------------------------------------
// tokenizer.ggml.pre: which name each family gets, and that llama.cpp runs each name as tsdpo does

interface PreVariantFixture {
  pre: string;
  sha256: string;
  plain: number[][];
}
const preVariants = (JSON.parse(readFileSync(CHECK_FIXTURE, "utf8")) as { preVariants: PreVariantFixture[] }).preVariants;

test("llama.cpp accepts every family's tokenizer.ggml.pre and tokenises GPT-2's vocabulary under it exactly as tsdpo's GGUF tokenizer", () => {
  const texts = vocabTexts();
  const files = preVariantFiles(tmp);
  assert.deepEqual(files.map((f) => f.pre), preVariants.map((v) => v.pre), "rerun tools/llama-ref/check-export.mjs");
  // every family's name is among those checked
  for (const pre of Object.values(FAMILY_BPE_PRE)) assert.ok(files.some((f) => f.pre === pre), `${pre} is not checked against llama.cpp`);
  const numbers = texts.indexOf("Numbers 1234567 and 3.14159, code: x+=1; y = f(x)**2");
  const digitPieces = new Map<string, string[]>();
  for (const { pre, path } of files) {
    const ref = preVariants.find((v) => v.pre === pre)!;
    const sha = createHash("sha256").update(readFileSync(path)).digest("hex");
    assert.equal(sha, ref.sha256, `${pre}: the file changed since llama.cpp's ids were recorded; rerun tools/llama-ref/check-export.mjs`);
    const tok = tokenizerFromGguf(readGguf(path));
    texts.forEach((text, i) => assert.deepEqual(tok.encode(text), ref.plain[i], `${pre}: ${JSON.stringify(text).slice(0, 60)}`));
    digitPieces.set(pre, ref.plain[numbers]!.map((id) => tok.decode([id])).filter((p) => /\d/.test(p)));
  }
  // what the names do differently (llama-vocab.cpp's regexes): GPT-2's keeps a run of digits with its space and lets
  // the merges cut it; Llama 3's (llama-bpe, and dbrx / smaug-bpe) cuts digits in threes; Qwen2's and the
  // digit-first ones (smollm, refact) one digit at a time
  assert.deepEqual(digitPieces.get("gpt-2"), [" 123", "45", "67", " 3", "14", "159", "1", "2"]);
  for (const pre of ["llama-bpe", "dbrx", "smaug-bpe"]) assert.deepEqual(digitPieces.get(pre), ["123", "456", "7", "3", "141", "59", "1", "2"], pre);
  for (const pre of ["qwen2", "stablelm2", "smollm", "refact"])
    assert.deepEqual(digitPieces.get(pre), ["1", "2", "3", "4", "5", "6", "7", "3", "1", "4", "1", "5", "9", "1", "2"], pre);
});

/**
 * GPT-2's vocabulary with the pre-tokenizer (and merge rule, and normalizer) of each family's own tokenizer.json, in
 * the form the original repositories have it; these folders are not available offline, so the forms are written
 * here: Llama 3 (and SmolLM3, which uses Llama 3.2's tokenizer) split with Llama 3's regex and set ignore_merges;
 * Qwen2/Qwen3 split with Qwen2's regex after an NFC normalizer; OLMo 2 (cl100k_base) splits with Llama 3's regex
 * without ignore_merges; Granite 3 (StarCoder's scheme) and SmolLM 1/2 split digits before GPT-2's ByteLevel regex.
 */
function familyForm(name: string, change: (j: Record<string, any>, config: Record<string, unknown>) => void): string {
  const src = fixture("tokenizers", "gpt2");
  const json = JSON.parse(readFileSync(join(src, "tokenizer.json"), "utf8"));
  const config = JSON.parse(readFileSync(join(src, "tokenizer_config.json"), "utf8"));
  change(json, config);
  return writeFolder(`form-${name}`, { "tokenizer.json": json, "tokenizer_config.json": config });
}
const LLAMA3_REGEX = String.raw`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;
const QWEN2_REGEX = String.raw`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;
const split = (regex: string, trimOffsets = true) => ({
  type: "Sequence",
  pretokenizers: [
    { type: "Split", pattern: { Regex: regex }, behavior: "Isolated", invert: false },
    { type: "ByteLevel", add_prefix_space: false, trim_offsets: trimOffsets, use_regex: false },
  ],
});
const digitsFirst = {
  type: "Sequence",
  pretokenizers: [{ type: "Digits", individual_digits: true }, { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true }],
};
const FORMS: Record<string, (j: Record<string, any>, config: Record<string, unknown>) => void> = {
  gpt2: () => {},
  llama3: (j) => ((j.pre_tokenizer = split(LLAMA3_REGEX)), (j.model.ignore_merges = true)),
  qwen2: (j) => ((j.pre_tokenizer = split(QWEN2_REGEX, false)), (j.normalizer = { type: "NFC" })),
  cl100k: (j) => (j.pre_tokenizer = split(LLAMA3_REGEX)),
  digitsFirst: (j, c) => ((j.pre_tokenizer = digitsFirst), (c.clean_up_tokenization_spaces = true)),
  smollm: (j, c) => ((j.pre_tokenizer = digitsFirst), (c.clean_up_tokenization_spaces = false)),
};

const FORMS_WITH_DIGITS = new Set(["digitsFirst", "smollm"]);

test("each family's own byte-level tokenizer gets the tokenizer.ggml.pre llama.cpp's converter gives it, and tokenises as before", () => {
  // family → pre, as convert_hf_to_gguf.py names each family's tokenizer (ggufvocab.ts FAMILY_BPE_PRE says why)
  assert.deepEqual(FAMILY_BPE_PRE, { llama: "llama-bpe", qwen2: "qwen2", qwen3: "qwen2", smollm3: "llama-bpe", granite: "refact", olmo2: "dbrx", gpt2: "gpt-2" });
  const cases: [LlamaConfig["family"] | undefined, keyof typeof FORMS, string][] = [
    ["gpt2", "gpt2", "gpt-2"],
    ["llama", "llama3", "llama-bpe"],
    ["smollm3", "llama3", "llama-bpe"],
    ["qwen2", "qwen2", "qwen2"],
    ["qwen3", "qwen2", "qwen2"],
    ["olmo2", "cl100k", "dbrx"],
    ["granite", "digitsFirst", "refact"],
    // where the family's name does not fit the tokenizer, the pre-tokenizer decides, and among the names sharing its
    // regex the clean-up of tokenizer_config.json (llama.cpp's "smollm" does not clean up spaces, "refact" does)
    ["llama", "smollm", "smollm"],
    ["llama", "digitsFirst", "refact"],
    ["granite", "llama3", "llama-bpe"],
    [undefined, "cl100k", "smaug-bpe"],
    [undefined, "gpt2", "gpt-2"],
  ];
  const texts = vocabTexts();
  const checked = new Set<string>();
  for (const [family, form, want] of cases) {
    const folder = familyForm(form, FORMS[form]!);
    const hf = loadHfTokenizer(folder);
    const meta = ggufVocabFromHf(folder, hf, 50257, family);
    assert.deepEqual(get(meta, "tokenizer.ggml.pre"), gv.str(want), `${family ?? "no family"} with the ${form} form`);
    if (checked.has(`${form}/${want}`)) continue;
    checked.add(`${form}/${want}`);
    // the GGUF tokenises as tokenizer.json does (and llama.cpp as tsdpo does under each name: the test above)
    const tok = ggufTokenizer(meta, `form-${form}-${want}`);
    for (const text of texts) {
      // @huggingface/tokenizers' JavaScript Digits splits ASCII digits only, where the Rust library (char::is_numeric)
      // and llama.cpp (\p{N}) split every numeric character, e.g. "½"
      if (FORMS_WITH_DIGITS.has(form) && /(?![0-9])\p{N}/u.test(text)) continue;
      assert.deepEqual(tok.encode(text), hf.encode(text), `${form} as ${want}: ${JSON.stringify(text).slice(0, 60)}`);
    }
  }
});
