// The tokenizer.* metadata of an exported GGUF: llama.cpp's vocabulary keys built from a Hugging Face
// tokenizer.json, or copied with their types from the GGUF a model was loaded from.
//
// Two tokenizer.json kinds convert, the two that llama.cpp runs with its own tokenizers:
//
// - SentencePiece-style BPE with byte fallback (Llama 2, Mistral v0.1-v0.3, TinyLlama, and every SentencePiece
//   vocabulary tsdpo itself exports): tokenizer.ggml.model "llama". llama.cpp's SentencePiece tokenizer merges the
//   adjacent pair whose concatenation has the highest *score*, where the BPE model merges the pair with the lowest
//   merge *rank*. We give each token the score -(rank + 1) of the first merge that produces it, so both pick the same
//   pair. (llama.cpp's convert_hf_to_gguf.py, without the original tokenizer.model, writes -1000 for every score,
//   which reduces the merge order to leftmost-first.) Tokens no merge produces get a score below every merge.
//   The one remaining difference: when two different merges that produce the *same* token are both possible at
//   once, BPE takes the lower rank and llama.cpp the leftmost. SentencePiece-derived merge lists make that rare.
// - Byte-level BPE (GPT-2, Qwen2/Qwen3, Llama 3, SmolLM, Granite, OLMo 2): tokenizer.ggml.model "gpt2" with the
//   merges as they are and tokenizer.ggml.pre naming llama.cpp's pre-tokenizer (bpePreName). The pre-tokenizer is
//   recognised by comparing the tokenizer.json's pre_tokenizer with the forms tsdpo's own exporter writes
//   (tokenizer/export.ts BPE_PRE), which are the forms the original model repositories use. Several llama.cpp names
//   share one regex; the name is the one llama.cpp's converter gives the family's own tokenizer (FAMILY_BPE_PRE)
//   when that regex is the tokenizer's, else the one whose detokenizer clean-up matches the tokenizer's.
//
// Anything else (Unigram, WordPiece, other normalizers or pre-tokenizers) is refused with a message: a GGUF whose
// vocabulary llama.cpp tokenises differently from the model's training would be worse than no GGUF.
//
// The token list always has exactly V entries (llama.cpp requires as many tokens as token_embd rows); ids the
// tokenizer does not use become "[PAD<id>]" with type UNUSED, as llama.cpp's converter writes them.

import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { inputError, unsupportedError } from "../errors.js";
import { type GgufMetaValue, gv, readGgufMetadataTyped } from "../io/ggufwriter.js";
import { BPE_PRE } from "../tokenizer/export.js";
import { TokenType } from "../tokenizer/common.js";
import type { Tokenizer } from "../tokenizer/types.js";
import type { ModelFamily } from "../model/config.js";

type Json = Record<string, unknown>;
type Meta = Array<[string, GgufMetaValue]>;

const SPACE_MARK = "\u2581";
const BYTE_TOKEN = /^<0x[0-9A-Fa-f]{2}>$/;

const isObj = (v: unknown): v is Json => v !== null && typeof v === "object" && !Array.isArray(v);

// ---------------------------------------------------------------------------------------------------------------
// GGUF source: copy

/**
 * The source GGUF's tokenizer.* keys, in file order and with their types. If the token list is shorter than V
 * (unused embedding rows), tokens, scores and token types are padded to V so that llama.cpp accepts the file.
 */
export function ggufVocabFromGguf(path: string, V: number): Meta {
  const keys = readGgufMetadataTyped(path).filter(([k]) => k.startsWith("tokenizer."));
  const tokens = keys.find(([k]) => k === "tokenizer.ggml.tokens")?.[1];
  if (tokens?.type !== "array" || tokens.itemType !== "string")
    throw inputError(`${path}: tokenizer.ggml.tokens is missing or not a list of strings; cannot export its vocabulary`);
  const n = tokens.value.length;
  if (n > V) throw inputError(`${path}: tokenizer.ggml.tokens has ${n} tokens but the embedding has only ${V} rows`);
  if (n === V) return keys;
  const known = new Set(tokens.value);
  const padNames = padTokenNames(n, V, known);
  return keys.map(([k, v]): [string, GgufMetaValue] => {
    if (v.type !== "array" || v.value.length !== n) return [k, v];
    if (k === "tokenizer.ggml.tokens") return [k, gv.strings([...tokens.value, ...padNames])];
    if (k === "tokenizer.ggml.scores" && v.itemType === "f32") return [k, gv.f32s([...v.value, ...padNames.map(() => 0)])];
    if (k === "tokenizer.ggml.token_type" && v.itemType === "i32")
      return [k, gv.i32s([...v.value, ...padNames.map(() => TokenType.Unused)])];
    return [k, v];
  });
}

function padTokenNames(from: number, to: number, known: Set<string>): string[] {
  const out: string[] = [];
  for (let id = from; id < to; id++) {
    let name = `[PAD${id}]`;
    while (known.has(name)) name = `[${name}]`; // never collide with a real token
    out.push(name);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Hugging Face source: convert tokenizer.json

interface HfVocab {
  path: string; // tokenizer.json, for messages
  json: Json;
  model: Json;
  config: Json; // tokenizer_config.json ({} if absent)
  tokens: (string | null)[]; // by id, null = gap
  addedSpecial: Map<number, boolean>; // added-token id -> special
}

function readJson(path: string): Json {
  let v: unknown;
  try {
    v = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw inputError(`${path}: cannot read it as JSON (${(e as Error).message})`);
  }
  if (!isObj(v)) throw inputError(`${path}: expected a JSON object`);
  return v;
}

function loadHfVocab(folder: string, V: number): HfVocab {
  const path = join(folder, "tokenizer.json");
  if (!existsSync(path)) throw inputError(`${folder}: no tokenizer.json; the GGUF export needs the model's tokenizer`);
  const json = readJson(path);
  const configPath = join(folder, "tokenizer_config.json");
  const config = existsSync(configPath) ? readJson(configPath) : {};
  const model = json.model;
  if (!isObj(model)) throw inputError(`${path}: "model" is missing or not an object`);
  if (model.type !== "BPE")
    throw unsupportedError(
      `${path}: the tokenizer model is ${JSON.stringify(model.type)}; GGUF export converts BPE tokenizers only ` +
        `(SentencePiece-style with byte fallback, as Llama 2 and Mistral, or byte-level, as GPT-2, Qwen and Llama 3). ` +
        `Export with --format hf, or convert the folder with llama.cpp's convert_hf_to_gguf.py`,
    );
  const tokens: (string | null)[] = new Array(V).fill(null);
  const put = (id: unknown, text: string, where: string): void => {
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0 || id >= V)
      throw inputError(`${path}: ${where} has id ${JSON.stringify(id)}, outside the model's vocabulary of ${V}`);
    const prior = tokens[id];
    if (prior !== null && prior !== text)
      throw inputError(`${path}: id ${id} is both ${JSON.stringify(prior)} and ${JSON.stringify(text)}; the tokenizer is inconsistent`);
    tokens[id] = text;
  };
  const vocab = model.vocab;
  if (!isObj(vocab)) throw inputError(`${path}: model.vocab is missing or not an object of token -> id`);
  for (const [text, id] of Object.entries(vocab)) put(id, text, `model.vocab ${JSON.stringify(text)}`);
  const addedSpecial = new Map<number, boolean>();
  const added = json.added_tokens ?? [];
  if (!Array.isArray(added)) throw inputError(`${path}: added_tokens should be a list`);
  added.forEach((t, i) => {
    if (!isObj(t) || typeof t.content !== "string") throw inputError(`${path}: added_tokens[${i}] has no string "content"`);
    put(t.id, t.content, `added_tokens[${i}]`);
    addedSpecial.set(t.id as number, t.special === true);
  });
  const seen = new Map<string, number>();
  tokens.forEach((t, id) => {
    if (t === null) return;
    const prior = seen.get(t);
    if (prior !== undefined)
      throw inputError(`${path}: token ${JSON.stringify(t)} has two ids (${prior} and ${id}); llama.cpp needs one id per token text`);
    seen.set(t, id);
  });
  return { path, json, model, config, tokens, addedSpecial };
}

/** Merges as [left, right], from either the "left right" string form or the [left, right] pair form. */
function mergePairs(v: HfVocab): [string, string][] {
  const merges = v.model.merges ?? [];
  if (!Array.isArray(merges)) throw inputError(`${v.path}: model.merges should be a list`);
  return merges.map((m, i): [string, string] => {
    if (typeof m === "string") {
      const parts = m.split(" ");
      if (parts.length !== 2) throw inputError(`${v.path}: model.merges[${i}] ${JSON.stringify(m)} is not "left right"`);
      return [parts[0]!, parts[1]!];
    }
    if (Array.isArray(m) && m.length === 2 && typeof m[0] === "string" && typeof m[1] === "string") return [m[0], m[1]];
    throw inputError(`${v.path}: model.merges[${i}] is neither "left right" nor ["left", "right"]`);
  });
}

function tokenId(v: HfVocab, text: unknown): number | null {
  const t = typeof text === "string" ? text : isObj(text) && typeof text.content === "string" ? text.content : null;
  if (t === null) return null;
  const id = v.tokens.indexOf(t);
  return id >= 0 ? id : null;
}

function fillGaps(v: HfVocab): { tokens: string[]; gaps: Set<number> } {
  const known = new Set(v.tokens.filter((t): t is string => t !== null));
  const gaps = new Set<number>();
  const tokens = v.tokens.map((t, id) => {
    if (t !== null) return t;
    gaps.add(id);
    let name = `[PAD${id}]`;
    while (known.has(name)) name = `[${name}]`;
    return name;
  });
  return { tokens, gaps };
}

const describe = (x: unknown): string => JSON.stringify(x)?.slice(0, 200) ?? String(x);

/** Keys shared by both kinds: special ids, add_bos/add_eos, chat template. */
function commonKeys(v: HfVocab, tok: Tokenizer): Meta {
  const out: Meta = [];
  const id = (key: string, value: number | null): void => {
    if (value !== null) out.push([`tokenizer.ggml.${key}`, gv.u32(value)]);
  };
  id("bos_token_id", tok.bosId);
  id("eos_token_id", tok.eosId);
  id("unknown_token_id", tokenId(v, v.model.unk_token));
  id("padding_token_id", tokenId(v, v.config.pad_token));
  out.push(["tokenizer.ggml.add_bos_token", gv.bool(tok.addBos)]);
  if (typeof v.config.add_eos_token === "boolean") out.push(["tokenizer.ggml.add_eos_token", gv.bool(v.config.add_eos_token)]);
  if (tok.chatTemplate !== null) out.push(["tokenizer.chat_template", gv.str(tok.chatTemplate)]);
  return out;
}

/**
 * tokenizer.* metadata for the tokenizer.json in `folder`. `tok` is the same folder's loaded tokenizer, which has
 * resolved the special tokens, add_bos and the chat template the way transformers does.
 */
export function ggufVocabFromHf(folder: string, tok: Tokenizer, V: number, family?: ModelFamily): Meta {
  const v = loadHfVocab(folder, V);
  const kind = vocabKind(v, family);
  return kind.kind === "spm" ? spmKeys(v, tok, kind.addSpacePrefix) : bpeKeys(v, tok, kind.pre);
}

type Kind = { kind: "spm"; addSpacePrefix: boolean } | { kind: "bpe"; pre: string };

function vocabKind(v: HfVocab, family: ModelFamily | undefined): Kind {
  const { json, model, path } = v;
  const suffixFree = (k: string): boolean => model[k] === undefined || model[k] === null || model[k] === "";
  if (!suffixFree("continuing_subword_prefix") || !suffixFree("end_of_word_suffix"))
    throw unsupportedError(`${path}: BPE with a continuing_subword_prefix or end_of_word_suffix has no llama.cpp equivalent; export with --format hf`);
  const pre = json.pre_tokenizer ?? null;
  const byteLevelPre = pre !== null && JSON.stringify(pre).includes('"ByteLevel"');
  if (byteLevelPre) {
    if (model.byte_fallback === true) throw unsupportedError(`${path}: byte-level BPE with byte_fallback has no llama.cpp equivalent; export with --format hf`);
    const norm = json.normalizer ?? null;
    // Qwen2's NFC normalizer: llama.cpp does not normalise either, and NFC text (nearly all text) is unaffected
    if (norm !== null && !(isObj(norm) && norm.type === "NFC"))
      throw unsupportedError(`${path}: byte-level BPE with the normalizer ${describe(norm)} is not supported for GGUF export; export with --format hf`);
    return { kind: "bpe", pre: bpePreName(v, pre, family) };
  }
  // SentencePiece style: spaces become "▁" through the normalizer (older files) or a Metaspace pre-tokenizer
  let prepend = false;
  let replace = false;
  const norms = json.normalizer == null ? [] : isObj(json.normalizer) && json.normalizer.type === "Sequence" ? json.normalizer.normalizers : [json.normalizer];
  if (!Array.isArray(norms)) throw inputError(`${path}: normalizer.normalizers should be a list`);
  for (const n of norms) {
    if (isObj(n) && n.type === "Prepend" && n.prepend === SPACE_MARK) prepend = true;
    else if (isObj(n) && n.type === "Replace" && isObj(n.pattern) && n.pattern.String === " " && n.content === SPACE_MARK) replace = true;
    else
      throw unsupportedError(
        `${path}: the normalizer ${describe(n)} has no llama.cpp equivalent; GGUF export supports SentencePiece-style ` +
          `tokenizers whose normalizer only prepends "▁" and replaces spaces by "▁". Export with --format hf`,
      );
  }
  if (pre !== null) {
    if (!(isObj(pre) && pre.type === "Metaspace" && (pre.replacement ?? SPACE_MARK) === SPACE_MARK))
      throw unsupportedError(
        `${path}: the pre_tokenizer ${describe(pre)} is not supported for GGUF export (supported: none or Metaspace with ` +
          `"▁" for SentencePiece-style vocabularies, ByteLevel forms for byte-level BPE). Export with --format hf`,
      );
    replace = true;
    const scheme = pre.prepend_scheme ?? (pre.add_prefix_space === false ? "never" : "always");
    if (scheme !== "never") prepend = true;
  }
  if (!replace)
    throw unsupportedError(
      `${path}: a BPE tokenizer that neither maps spaces to "▁" nor uses ByteLevel is neither SentencePiece-style nor ` +
        `byte-level; GGUF export cannot express it. Export with --format hf`,
    );
  if (model.byte_fallback !== true)
    throw unsupportedError(
      `${path}: a SentencePiece-style BPE without byte_fallback is not supported for GGUF export (llama.cpp falls back ` +
        `to byte tokens where this tokenizer writes <unk>). Export with --format hf`,
    );
  return { kind: "spm", addSpacePrefix: prepend };
}

function spmKeys(v: HfVocab, tok: Tokenizer, addSpacePrefix: boolean): Meta {
  const { tokens, gaps } = fillGaps(v);
  const idOf = new Map(tokens.map((t, id) => [t, id]));
  const merges = mergePairs(v);
  const scores = new Array<number>(tokens.length).fill(0);
  const scored = new Set<number>();
  merges.forEach(([l, r], rank) => {
    const id = idOf.get(l + r);
    if (id === undefined || scored.has(id)) return;
    scored.add(id);
    scores[id] = -(rank + 1);
  });
  const unkId = tokenId(v, v.model.unk_token);
  const types = tokens.map((t, id) => {
    if (gaps.has(id)) return TokenType.Unused;
    if (id === unkId) return TokenType.Unknown;
    const special = v.addedSpecial.get(id);
    if (special !== undefined) return special ? TokenType.Control : TokenType.UserDefined;
    if (BYTE_TOKEN.test(t)) return TokenType.Byte;
    return TokenType.Normal;
  });
  // a multi-character normal token that no merge produces: BPE never forms it, so it goes last in llama.cpp
  types.forEach((type, id) => {
    if (type === TokenType.Normal && !scored.has(id) && [...tokens[id]!].length > 1) scores[id] = -(merges.length + 1);
  });
  return [
    ["tokenizer.ggml.model", gv.str("llama")],
    ["tokenizer.ggml.pre", gv.str("default")],
    ["tokenizer.ggml.tokens", gv.strings(tokens)],
    ["tokenizer.ggml.scores", gv.f32s(scores)],
    ["tokenizer.ggml.token_type", gv.i32s(types)],
    ["tokenizer.ggml.add_space_prefix", gv.bool(addSpacePrefix)],
    ...commonKeys(v, tok),
  ];
}

/**
 * tokenizer.ggml.pre of each family's own byte-level tokenizer: the name llama.cpp's convert_hf_to_gguf.py gives it.
 * The converter recognises a tokenizer by a hash of its ids on a test text (get_vocab_base_pre), so a family whose
 * tokenizer is another model's gets that model's name: SmolLM3 has Llama 3.2's tokenizer, OLMo 2's dolma2 tokenizer
 * is cl100k_base, as DBRX's, and Granite 3's (GPT-2's regex after single digits, StarCoder's scheme) is recorded as
 * "refact" in llama.cpp's own Granite GGUFs. llama.cpp runs each name's regex and settings (llama-vocab.cpp):
 * gpt-2, refact and dbrx clean up spaces before punctuation on detokenize, qwen2 does not, llama-bpe also skips the
 * merges of a word that is a token and adds BOS by default. Families without an entry (Llama 2, Mistral, Gemma, Phi-3)
 * have SentencePiece vocabularies ("default").
 */
export const FAMILY_BPE_PRE: Readonly<Partial<Record<ModelFamily, string>>> = {
  llama: "llama-bpe", // Llama 3.x
  qwen2: "qwen2",
  qwen3: "qwen2",
  smollm3: "llama-bpe",
  granite: "refact",
  olmo2: "dbrx",
  gpt2: "gpt-2",
};

/**
 * The names written when the family's does not describe the tokenizer (say a SmolLM 2 loaded as llama), in order of
 * preference; each shares its regex with others, told apart by llama.cpp's detokenizer clean-up (LLAMACPP_NO_CLEAN).
 */
const PRE_CANDIDATES = ["gpt-2", "qwen2", "stablelm2", "llama-bpe", "smaug-bpe", "dbrx", "smollm", "refact"] as const;
/** The candidates for which llama.cpp sets clean_spaces = false (llama-vocab.cpp); the others clean up. */
const LLAMACPP_NO_CLEAN: ReadonlySet<string> = new Set(["qwen2", "smollm"]);

/** The comparable content of a pre-tokenizer: Split regexes, Digits, ByteLevel's regex switch and prefix space. */
function preSignature(p: unknown, path: string): string[] {
  const list = isObj(p) && p.type === "Sequence" ? p.pretokenizers : [p];
  if (!Array.isArray(list)) throw inputError(`${path}: pre_tokenizer.pretokenizers should be a list`);
  return list.map((x) => {
    if (!isObj(x)) return describe(x);
    switch (x.type) {
      case "ByteLevel":
        // the Rust library's defaults: add_prefix_space true, use_regex true
        return `ByteLevel(regex=${x.use_regex !== false}, prefix=${x.add_prefix_space !== false})`;
      case "Split": {
        const pattern = isObj(x.pattern) ? (x.pattern.Regex ?? `string:${String(x.pattern.String)}`) : x.pattern;
        return `Split(${String(pattern)}, ${String(x.behavior)}, invert=${x.invert === true})`;
      }
      case "Digits":
        // one digit per piece, the same split as Split(\p{N}, Isolated)
        return x.individual_digits === true ? String.raw`Split(\p{N}, Isolated, invert=false)` : describe(x);
      default:
        return describe(x);
    }
  });
}

/**
 * llama.cpp's name for a byte-level pre-tokenizer: among the names whose regex and merge rule are the tokenizer's
 * (BPE_PRE), the family's own (FAMILY_BPE_PRE), else the first that cleans up spaces on detokenize as
 * tokenizer_config.json's clean_up_tokenization_spaces says, else the first.
 */
function bpePreName(v: HfVocab, pre: unknown, family: ModelFamily | undefined): string {
  const sig = JSON.stringify(preSignature(pre, v.path));
  const ignoreMerges = v.model.ignore_merges === true;
  const matches = (name: string): boolean => {
    const e = BPE_PRE.get(name);
    return e !== undefined && e.ignoreMerges === ignoreMerges && JSON.stringify(preSignature(e.preTokenizer, "tokenizer/export.ts")) === sig;
  };
  const own = family === undefined ? undefined : FAMILY_BPE_PRE[family];
  if (own !== undefined && matches(own)) return own;
  const candidates = PRE_CANDIDATES.filter(matches);
  const cleanUp = v.config.clean_up_tokenization_spaces;
  const name = (typeof cleanUp === "boolean" ? candidates.find((n) => !LLAMACPP_NO_CLEAN.has(n) === cleanUp) : undefined) ?? candidates[0];
  if (name !== undefined) return name;
  throw unsupportedError(
    `${v.path}: the byte-level pre_tokenizer ${describe(pre)} (ignore_merges ${ignoreMerges}) is not one llama.cpp ` +
      `pre-tokenizer tsdpo recognises (GPT-2, Qwen2, Llama 3, SmolLM forms). Export with --format hf, or convert ` +
      `with llama.cpp's convert_hf_to_gguf.py`,
  );
}

function bpeKeys(v: HfVocab, tok: Tokenizer, pre: string): Meta {
  const { tokens, gaps } = fillGaps(v);
  const types = tokens.map((_, id) => {
    if (gaps.has(id)) return TokenType.Unused;
    const special = v.addedSpecial.get(id);
    if (special !== undefined) return special ? TokenType.Control : TokenType.UserDefined;
    return TokenType.Normal;
  });
  // A piece with a raw space cannot be written in GGUF's "left right" form; byte-level vocabularies spell spaces
  // as "Ġ", so such a merge refers to no token and could never fire: leave it out.
  const merges = mergePairs(v)
    .filter(([l, r]) => !l.includes(" ") && !r.includes(" "))
    .map(([l, r]) => `${l} ${r}`);
  const out: Meta = [
    ["tokenizer.ggml.model", gv.str("gpt2")],
    ["tokenizer.ggml.pre", gv.str(pre)],
    ["tokenizer.ggml.tokens", gv.strings(tokens)],
    ["tokenizer.ggml.token_type", gv.i32s(types)],
    ["tokenizer.ggml.merges", gv.strings(merges)],
    ...commonKeys(v, tok),
  ];
  return out;
}
