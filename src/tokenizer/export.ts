// Hugging Face tokenizer files (tokenizer.json, tokenizer_config.json, special_tokens_map.json) for a vocabulary
// embedded in a GGUF file, so that an exported model folder tokenises exactly as the GGUF did (the reference is
// tsdpo's GGUF tokenizer, which is checked against llama.cpp's golden tables).
//
// SentencePiece vocabularies (tokenizer.ggml.model = "llama") become what transformers' LlamaConverter builds for a
// legacy Llama-2 tokenizer: a BPE model with byte fallback whose merges are derived from the token scores, the
// normalizer Prepend("▁") + Replace(" " -> "▁") and no pre-tokenizer. That BPE model reproduces llama.cpp's
// bigram merge because every pair of adjacent symbols whose concatenation is a token gets a merge, ranked by that
// token's score (see mergesFromScores for the tie rules).
//
// Byte-level BPE vocabularies (tokenizer.ggml.model = "gpt2") keep their GGUF merges; tokenizer.ggml.pre selects the
// pre-tokenizer, written in the form the original tokenizer.json files use (ByteLevel with GPT-2's regex, or a
// Split regex followed by ByteLevel without one).
//
// tokenizer_class is "PreTrainedTokenizerFast", not "LlamaTokenizerFast"/"GPT2TokenizerFast": transformers v4
// loads tokenizer.json as written for any of them, but v5's LlamaTokenizer replaces the normalizer and
// pre-tokenizer with its own Metaspace ones (which, e.g., encode " Hello" as "▁Hello" where llama.cpp gives
// "▁▁Hello"), whereas PreTrainedTokenizerFast keeps tokenizer.json in both versions.

import type { GgufFile } from "../io/gguf.js";
import { metaArray, metaNumber, metaString, readGguf } from "../io/gguf.js";
import { TsdpoError } from "../errors.js";
import { tokenizerFromGguf } from "./gguf.js";
import { SpmTokenizer } from "./spm.js";
import { BpeTokenizer } from "./bpe.js";
import { TokenType, validId } from "./common.js";

type Json = Record<string, unknown>;

const SPACE_MARK = "\u2581";

/**
 * The Hugging Face tokenizer files for the vocabulary in a GGUF file, as JSON objects keyed by file name, or null
 * when the vocabulary kind (tokenizer.ggml.model, or for byte-level BPE tokenizer.ggml.pre) has no export.
 * This reads the whole file; a caller that already holds the GgufFile should use hfTokenizerFilesFromGgufFile.
 */
export function hfTokenizerFilesFromGguf(ggufPath: string): Record<string, object> | null {
  return hfTokenizerFilesFromGgufFile(readGguf(ggufPath));
}

/** hfTokenizerFilesFromGguf for a GGUF already read; broken vocabularies throw the GGUF tokenizer's input errors. */
export function hfTokenizerFilesFromGgufFile(f: GgufFile): Record<string, object> | null {
  const model = metaString(f, "tokenizer.ggml.model");
  if (model !== "llama" && model !== "gpt2") return null;
  let tok: SpmTokenizer | BpeTokenizer;
  try {
    // validates the vocabulary and resolves llama.cpp's defaults for absent keys
    tok = tokenizerFromGguf(f);
  } catch (e) {
    if (e instanceof TsdpoError && e.kind === "unsupported") return null;
    throw e;
  }
  const tokens = vocabTokens(f);
  const types = metaArray(f, "tokenizer.ggml.token_type") as number[] | undefined;
  const typeOf = (id: number): number => (types ? types[id]! : TokenType.Normal);
  const added = addedTokens(tokens, typeOf);
  const addEos = metaBool(f, "tokenizer.ggml.add_eos_token") ?? false;

  let json: Json;
  if (tok instanceof SpmTokenizer) {
    const scores = (metaArray(f, "tokenizer.ggml.scores") as number[] | undefined) ?? new Array<number>(tokens.length).fill(0);
    json = spmTokenizerJson(tok, tokens, scores, added, addEos);
  } else {
    const pre = BPE_PRE.get(tok.pre);
    if (!pre) return null;
    json = bpeTokenizerJson(tok, tokens, metaArray(f, "tokenizer.ggml.merges") as string[], pre, added, addEos);
  }

  const text = (id: number | null): string | null => (id === null ? null : tokens[id]!);
  const unkId = tok instanceof SpmTokenizer ? tok.unkId : validId(metaNumber(f, "tokenizer.ggml.unknown_token_id"), tokens.length);
  const padId = validId(metaNumber(f, "tokenizer.ggml.padding_token_id"), tokens.length);
  const specials: Json = {};
  for (const [key, id] of [["bos_token", tok.bosId], ["eos_token", tok.eosId], ["unk_token", unkId], ["pad_token", padId]] as const)
    if (id !== null) specials[key] = addedTokenMap(text(id)!);

  const config: Json = {
    tokenizer_class: "PreTrainedTokenizerFast",
    add_bos_token: tok.addBos && tok.bosId !== null,
    add_eos_token: addEos && tok.eosId !== null,
    bos_token: text(tok.bosId),
    eos_token: text(tok.eosId),
    unk_token: text(unkId),
    pad_token: text(padId),
    // decode(encode(s)) === s, as llama.cpp's detokenizer without its own clean-up
    clean_up_tokenization_spaces: false,
    added_tokens_decoder: Object.fromEntries(added.map((a) => [String(a.id), withoutId(a)])),
  };
  if (tok instanceof SpmTokenizer) {
    // what LlamaTokenizer(Fast) writes for a SentencePiece vocabulary; legacy = a "▁" after every special token
    config.legacy = true;
    config.spaces_between_special_tokens = false;
  }
  const contextLength = metaNumber(f, `${metaString(f, "general.architecture") ?? "llama"}.context_length`);
  if (contextLength !== undefined && contextLength > 0) config.model_max_length = contextLength;
  if (tok.chatTemplate !== null) config.chat_template = tok.chatTemplate;

  return { "tokenizer.json": json, "tokenizer_config.json": config, "special_tokens_map.json": specials };
}

/** The GGUF token texts, with llama.cpp's name for an empty token so that every id has a distinct vocabulary key. */
function vocabTokens(f: GgufFile): string[] {
  return (metaArray(f, "tokenizer.ggml.tokens") as string[]).map((t, id) => (t.length === 0 ? `[EMPTY_${id}]` : t));
}

/** token -> id; built with fromEntries so that a token spelled "__proto__" is a key like any other. */
function vocabJson(tokens: readonly string[]): Record<string, number> {
  return Object.fromEntries(tokens.map((t, id) => [t, id]));
}

function metaBool(f: GgufFile, key: string): boolean | undefined {
  const v = f.metadata.get(key);
  return typeof v === "boolean" ? v : undefined;
}

interface AddedToken {
  id: number;
  content: string;
  single_word: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
  special: boolean;
}

/**
 * Control and unknown tokens become special added tokens, user-defined ones non-special added tokens (as in
 * transformers' SpmConverter). Both are matched in the raw text before normalisation, like llama.cpp's
 * special-token partition; only the special ones are skipped by skip_special_tokens, like llama.cpp's decode.
 */
function addedTokens(tokens: readonly string[], typeOf: (id: number) => number): AddedToken[] {
  const out: AddedToken[] = [];
  tokens.forEach((content, id) => {
    const type = typeOf(id);
    if (type !== TokenType.Control && type !== TokenType.Unknown && type !== TokenType.UserDefined) return;
    out.push({
      id,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: type !== TokenType.UserDefined,
    });
  });
  return out;
}

function withoutId(a: AddedToken): Json {
  const { id: _id, ...rest } = a;
  return rest;
}

function addedTokenMap(content: string): Json {
  return { content, lstrip: false, normalized: false, rstrip: false, single_word: false };
}

/** TemplateProcessing that adds BOS and/or EOS the way LlamaTokenizerFast.update_post_processor builds it. */
function templateProcessing(bos: { text: string; id: number } | null, eos: { text: string; id: number } | null): Json {
  const special = (t: { text: string }, typeId: number): Json => ({ SpecialToken: { id: t.text, type_id: typeId } });
  const sequence = (id: string, typeId: number): Json => ({ Sequence: { id, type_id: typeId } });
  const wrap = (id: string, typeId: number): Json[] => [
    ...(bos ? [special(bos, typeId)] : []),
    sequence(id, typeId),
    ...(eos ? [special(eos, typeId)] : []),
  ];
  const specialTokens: Json = {};
  for (const t of [bos, eos]) if (t) specialTokens[t.text] = { id: t.text, ids: [t.id], tokens: [t.text] };
  return { type: "TemplateProcessing", single: wrap("A", 0), pair: [...wrap("A", 0), ...wrap("B", 1)], special_tokens: specialTokens };
}

function bosEos(tok: SpmTokenizer | BpeTokenizer, tokens: readonly string[], addEos: boolean) {
  return {
    bos: tok.addBos && tok.bosId !== null ? { text: tokens[tok.bosId]!, id: tok.bosId } : null,
    eos: addEos && tok.eosId !== null ? { text: tokens[tok.eosId]!, id: tok.eosId } : null,
  };
}

/**
 * Merges as "left right" strings, the format every version of the tokenizers library reads, unless a piece holds
 * a space, which that format cannot express; then as [left, right] pairs (tokenizers >= 0.20).
 */
function mergesJson(merges: readonly [string, string][]): string[] | [string, string][] {
  if (merges.some(([l, r]) => l.includes(" ") || r.includes(" "))) return merges.map(([l, r]): [string, string] => [l, r]);
  return merges.map(([l, r]) => `${l} ${r}`);
}

// ---------------------------------------------------------------------------------------------------------------
// SentencePiece

function spmTokenizerJson(
  tok: SpmTokenizer,
  tokens: readonly string[],
  scores: ArrayLike<number>,
  added: AddedToken[],
  addEos: boolean,
): Json {
  const vocab = vocabJson(tokens);
  const known = new Set(tokens);
  let allBytes = true;
  for (let b = 0; b < 256; b++) if (!known.has(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`)) allBytes = false;
  const { bos, eos } = bosEos(tok, tokens, addEos);
  const replaceSpace = { type: "Replace", pattern: { String: " " }, content: SPACE_MARK };
  const decoders: Json[] = [
    { type: "Replace", pattern: { String: SPACE_MARK }, content: " " },
    { type: "ByteFallback" },
    { type: "Fuse" },
  ];
  // the dummy prefix comes back as a leading space, which llama.cpp's decode drops as well
  if (tok.addSpacePrefix) decoders.push({ type: "Strip", content: " ", start: 1, stop: 0 });
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: {
      type: "Sequence",
      normalizers: tok.addSpacePrefix ? [{ type: "Prepend", prepend: SPACE_MARK }, replaceSpace] : [replaceSpace],
    },
    pre_tokenizer: null,
    post_processor: templateProcessing(bos, eos),
    decoder: { type: "Sequence", decoders },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: tok.unkId === null ? null : tokens[tok.unkId]!,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      // llama.cpp writes one unknown token per unknown character; fusing only matters without byte tokens
      fuse_unk: allBytes,
      byte_fallback: true,
      ignore_merges: false,
      vocab,
      merges: mergesJson(mergesFromScores(tokens, scores)),
    },
  };
}

/**
 * BPE merges for a SentencePiece vocabulary, as transformers' generate_merges (convert_slow_tokenizer.py) derives
 * them: for every token t and every split of t into two tokens (l, r), the merge (l, r); ordered by the score of t,
 * highest first, then by the length of l and of r in code points, longest first; remaining ties keep token-id
 * order, and within one token the order of (id of l, id of r). Runs over each token's split points, so it costs
 * the total token length, not the square of the vocabulary size.
 */
export function mergesFromScores(tokens: readonly string[], scores: ArrayLike<number>): [string, string][] {
  const idOf = new Map<string, number>();
  tokens.forEach((t, id) => idOf.set(t, id));
  interface Merge {
    left: string;
    right: string;
    leftId: number;
    rightId: number;
    score: number;
    leftLen: number;
    rightLen: number;
    order: number;
  }
  const merges: Merge[] = [];
  for (let id = 0; id < tokens.length; id++) {
    const t = tokens[id]!;
    if (idOf.get(t) !== id) continue; // a repeated text (refused by the GGUF loaders) counts once, at its last id
    const local: Merge[] = [];
    const total = [...t].length;
    let leftLen = 0;
    for (let i = 0; i < t.length; ) {
      i += t.codePointAt(i)! > 0xffff ? 2 : 1;
      leftLen++;
      if (i >= t.length) break;
      const left = t.slice(0, i);
      const right = t.slice(i);
      const leftId = idOf.get(left);
      const rightId = idOf.get(right);
      if (leftId === undefined || rightId === undefined) continue;
      local.push({ left, right, leftId, rightId, score: scores[id]!, leftLen, rightLen: total - leftLen, order: 0 });
    }
    local.sort((a, b) => a.leftId - b.leftId || a.rightId - b.rightId);
    for (const m of local) {
      m.order = merges.length;
      merges.push(m);
    }
  }
  merges.sort((a, b) => b.score - a.score || b.leftLen - a.leftLen || b.rightLen - a.rightLen || a.order - b.order);
  return merges.map((m) => [m.left, m.right]);
}

// ---------------------------------------------------------------------------------------------------------------
// Byte-level BPE

interface BpePreExport {
  preTokenizer: Json;
  ignoreMerges: boolean;
}

const byteLevel = (useRegex: boolean): Json => ({ type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: useRegex });
const splitThenByteLevel = (regex: string, byteLevelRegex: boolean): Json => ({
  type: "Sequence",
  pretokenizers: [{ type: "Split", pattern: { Regex: regex }, behavior: "Isolated", invert: false }, byteLevel(byteLevelRegex)],
});
// The regexes as the original tokenizer.json files write them (Oniguruma syntax, read by both tokenizers libraries);
// bpe.ts holds the same patterns in JavaScript syntax.
const QWEN2 = String.raw`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;
const LLAMA3 = String.raw`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;

/** tokenizer.ggml.pre -> pipeline; the groups are those of bpe.ts (the test checks that every name has one). */
export const BPE_PRE = new Map<string, BpePreExport>();
function register(names: string[], e: BpePreExport): void {
  for (const n of names) BPE_PRE.set(n, e);
}
register(["gpt-2", "phi-2", "mpt", "olmo", "jais", "trillion", "granite-docling", "gigachat", "mellum", "exaone4", "a.x-4.0"], {
  preTokenizer: byteLevel(true),
  ignoreMerges: false,
});
register(["qwen2", "deepseek-r1-qwen", "stablelm2", "megrez"], { preTokenizer: splitThenByteLevel(QWEN2, false), ignoreMerges: false });
register(["llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral"], { preTokenizer: splitThenByteLevel(LLAMA3, false), ignoreMerges: true });
register(["dbrx", "smaug-bpe"], { preTokenizer: splitThenByteLevel(LLAMA3, false), ignoreMerges: false });
// SmolLM's own file says Digits(individual_digits); a \p{N} Split is what llama.cpp does and what both libraries
// read the same way (the JavaScript Digits matches ASCII digits only)
register(["smollm", "starcoder", "refact", "codeshell", "exaone", "minerva-7b", "command-r"], {
  preTokenizer: splitThenByteLevel(String.raw`\p{N}`, true),
  ignoreMerges: false,
});

function bpeTokenizerJson(
  tok: BpeTokenizer,
  tokens: readonly string[],
  ggufMerges: readonly string[],
  pre: BpePreExport,
  added: AddedToken[],
  addEos: boolean,
): Json {
  const vocab = vocabJson(tokens);
  const known = new Set(tokens);
  const merges: [string, string][] = [];
  const seen = new Set<string>();
  for (const m of ggufMerges) {
    const sp = m.indexOf(" ", 1); // from 1, as llama.cpp and bpe.ts split, so a piece may start with a space
    const left = m.slice(0, sp);
    const right = m.slice(sp + 1);
    const key = left + " " + right;
    // the first occurrence has the rank llama.cpp uses; the tokenizers libraries would keep the last one. A merge
    // with a piece outside the vocabulary is refused by the Rust library and can only fire in llama.cpp after
    // another such merge, which GGUFs converted from a loadable tokenizer.json do not have.
    if (sp < 0 || seen.has(key) || !known.has(left) || !known.has(right) || !known.has(left + right)) continue;
    seen.add(key);
    merges.push([left, right]);
  }
  const { bos, eos } = bosEos(tok, tokens, addEos);
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: added,
    // no NFC normalizer (Qwen2's tokenizer.json has one): llama.cpp does not normalise, and we match the GGUF
    normalizer: null,
    pre_tokenizer: pre.preTokenizer,
    post_processor:
      bos || eos
        ? templateProcessing(bos, eos)
        : { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: true },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: "",
      end_of_word_suffix: "",
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: pre.ignoreMerges,
      vocab,
      merges: mergesJson(merges),
    },
  };
}
