// GPT-2 style byte-level BPE for GGUF vocabularies with tokenizer.ggml.model = "gpt2" (GPT-2, Qwen2/Qwen3, SmolLM,
// Llama 3, ...), following llama.cpp's llm_tokenizer_bpe:
//   1. a pre-tokenizer regex (chosen by tokenizer.ggml.pre) cuts the text into words; the text between matches is
//      kept as words too;
//   2. each word's UTF-8 bytes are mapped to printable characters with GPT-2's bytes_to_unicode table
//      (so a space becomes "Ġ" and a newline "Ċ");
//   3. adjacent symbols are merged in the order of tokenizer.ggml.merges (lowest rank first, ties leftmost first)
//      until no listed pair remains; each final symbol is a vocabulary token.
// Decoding maps the characters back to bytes. Unlike llama.cpp we do not "clean up" spaces before punctuation on
// decode, so decode(encode(s)) === s.

import type { EncodeOptions, Tokenizer } from "./types.js";
import { inputError, unsupportedError } from "../errors.js";
import { ByteSink, checkId, type Fragment, Heap, LiteralSplitter, TokenType, utf8Bytes } from "./common.js";

export interface BpeVocab {
  tokens: readonly string[];
  /** "left right" pairs, highest priority first (tokenizer.ggml.merges). */
  merges: readonly string[];
  /** llama.cpp token types; null means every token is normal. */
  types: ArrayLike<number> | null;
  /** tokenizer.ggml.pre: selects the pre-tokenizer regex. */
  pre: string;
  bosId: number | null;
  eosId: number | null;
  /** null: use the default of the pre-tokenizer (llama.cpp adds BOS for Llama 3 style vocabularies only). */
  addBos: boolean | null;
  stopIds: readonly number[];
  chatTemplate: string | null;
  source: string;
}

// The regexes llama.cpp uses (llama-vocab.cpp, llm_tokenizer_bpe). JavaScript's \p{L}/\p{N} with the u flag match
// Python's `regex` module that the original tokenizers use. llama.cpp drops the trailing "|\s+" of GPT-2's
// pattern but keeps unmatched text as its own word, which splits whitespace the same way.
const GPT2 = String.raw`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\p{White_Space}\p{L}\p{N}]+|\p{White_Space}+(?!\P{White_Space})|\p{White_Space}+`;
// Llama 3's (?i:'s|'t|...) written without the inline flag, which JavaScript lacks
const CONTRACTIONS = String.raw`(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])`;
const LLAMA3 = CONTRACTIONS + String.raw`|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\p{White_Space}\p{L}\p{N}]+[\r\n]*|\p{White_Space}*[\r\n]+|\p{White_Space}+(?!\P{White_Space})|\p{White_Space}+`;
const QWEN2 = CONTRACTIONS + String.raw`|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\p{White_Space}\p{L}\p{N}]+[\r\n]*|\p{White_Space}*[\r\n]+|\p{White_Space}+(?!\P{White_Space})|\p{White_Space}+`;
const DIGIT = String.raw`\p{N}`;

interface PreTokenizer {
  regexes: readonly string[]; // applied in turn, each one to the words the previous one produced
  ignoreMerges: boolean; // a word that is already a token is emitted whole (llama.cpp: Llama 3 style)
  addBos: boolean; // llama.cpp's default when the GGUF has no tokenizer.ggml.add_bos_token
}

const PRE_TOKENIZERS = new Map<string, PreTokenizer>();
function register(names: string[], p: PreTokenizer): void {
  for (const n of names) PRE_TOKENIZERS.set(n, p);
}
register(["gpt-2", "phi-2", "mpt", "olmo", "jais", "trillion", "granite-docling", "gigachat", "mellum", "exaone4", "a.x-4.0"], {
  regexes: [GPT2],
  ignoreMerges: false,
  addBos: false,
});
register(["qwen2", "deepseek-r1-qwen", "stablelm2", "megrez"], { regexes: [QWEN2], ignoreMerges: false, addBos: false });
register(["llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral"], { regexes: [LLAMA3], ignoreMerges: true, addBos: true });
register(["dbrx", "smaug-bpe"], { regexes: [LLAMA3], ignoreMerges: false, addBos: false });
register(["smollm", "starcoder", "refact", "codeshell", "exaone", "minerva-7b", "command-r"], {
  regexes: [DIGIT, GPT2],
  ignoreMerges: false,
  addBos: false,
});

export const SUPPORTED_BPE_PRE: readonly string[] = [...PRE_TOKENIZERS.keys()];

/** GPT-2's bytes_to_unicode: bytes that are printable Latin-1 map to themselves, the rest to U+0100 onwards. */
function byteToUnicodeTable(): string[] {
  const table: string[] = new Array(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    table[b] = String.fromCharCode(printable ? b : 256 + extra++);
  }
  return table;
}
const BYTE_TO_UNICODE = byteToUnicodeTable();
const UNICODE_TO_BYTE = new Map(BYTE_TO_UNICODE.map((ch, b) => [ch, b]));

/** Splits text into words with each regex in turn, keeping the text between matches (llama.cpp unicode_regex_split). */
export function splitWords(text: string, regexes: readonly RegExp[]): string[] {
  let pieces = [text];
  for (const re of regexes) {
    const next: string[] = [];
    for (const p of pieces) {
      let last = 0;
      for (const m of p.matchAll(re)) {
        if (m[0].length === 0) continue;
        if (m.index > last) next.push(p.slice(last, m.index));
        next.push(m[0]);
        last = m.index + m[0].length;
      }
      if (last < p.length) next.push(p.slice(last));
    }
    pieces = next;
  }
  return pieces;
}

interface Bigram {
  left: number;
  right: number;
  rank: number;
  text: string; // the merged text when queued; stale if the symbols have changed since
}

const CACHE_LIMIT = 50_000;

export class BpeTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosId: number | null;
  readonly addBos: boolean;
  readonly stopIds: readonly number[];
  readonly chatTemplate: string | null;
  readonly source: string;
  readonly pre: string;

  private readonly tokens: readonly string[];
  private readonly types: ArrayLike<number> | null;
  private readonly tokenToId = new Map<string, number>();
  private readonly ranks = new Map<string, number>(); // "left right" -> merge rank
  private readonly regexes: RegExp[];
  private readonly ignoreMerges: boolean;
  private readonly userDefined: LiteralSplitter;
  private readonly allSpecial: LiteralSplitter;
  private readonly wordCache = new Map<string, number[]>();
  private readonly pieceBytes: (Uint8Array | undefined)[];

  constructor(v: BpeVocab) {
    const spec = PRE_TOKENIZERS.get(v.pre);
    if (!spec)
      throw unsupportedError(
        `${v.source}: tokenizer.ggml.pre is ${JSON.stringify(v.pre)}, a pre-tokenizer tsdpo does not implement ` +
          `(supported: ${SUPPORTED_BPE_PRE.join(", ")}). Load the tokenizer from the model's Hugging Face folder ` +
          `(tokenizer.json) instead`,
      );
    this.tokens = v.tokens;
    this.types = v.types;
    this.vocabSize = v.tokens.length;
    this.bosId = v.bosId;
    this.eosId = v.eosId;
    this.addBos = v.addBos ?? spec.addBos;
    this.stopIds = v.stopIds;
    this.chatTemplate = v.chatTemplate;
    this.source = v.source;
    this.pre = v.pre;
    this.regexes = spec.regexes.map((r) => new RegExp(r, "gu"));
    this.ignoreMerges = spec.ignoreMerges;
    this.pieceBytes = new Array(this.vocabSize);

    const userDefined: { text: string; id: number }[] = [];
    const special: { text: string; id: number }[] = [];
    for (let id = 0; id < this.vocabSize; id++) {
      const text = v.tokens[id]!;
      if (text.length === 0) continue;
      const prior = this.tokenToId.get(text);
      if (prior !== undefined)
        throw inputError(
          `${v.source}: the vocabulary lists token ${JSON.stringify(text)} twice (ids ${prior} and ${id}); ` +
            `the tokenizer cannot be built (llama.cpp refuses this file too). Re-convert the model`,
        );
      this.tokenToId.set(text, id);
      const type = this.typeOf(id);
      if (type === TokenType.UserDefined) userDefined.push({ text, id });
      if (type === TokenType.UserDefined || type === TokenType.Control || type === TokenType.Unknown)
        special.push({ text, id });
    }
    this.userDefined = new LiteralSplitter(userDefined);
    this.allSpecial = new LiteralSplitter(special);

    v.merges.forEach((m, rank) => {
      const sp = m.indexOf(" ", 1); // from 1, as llama.cpp does, so a merge may start with a space
      if (sp < 0)
        throw inputError(
          `${v.source}: tokenizer.ggml.merges[${rank}] is ${JSON.stringify(m)}, not "left right"; re-convert the model`,
        );
      const key = m.slice(0, sp) + " " + m.slice(sp + 1);
      if (!this.ranks.has(key)) this.ranks.set(key, rank);
    });
  }

  private typeOf(id: number): number {
    return this.types ? this.types[id]! : TokenType.Normal;
  }

  /** `continuation` is ignored: byte-level BPE adds no prefix at the start of a text. */
  encode(text: string, _options?: EncodeOptions): number[] {
    return this.encodeFragments(this.userDefined.split(text));
  }

  /** Like encode, but control-token texts in `text` (e.g. "<|im_start|>") become their ids. */
  encodeWithSpecials(text: string, _options?: EncodeOptions): number[] {
    return this.encodeFragments(this.allSpecial.split(text));
  }

  private encodeFragments(fragments: Fragment[]): number[] {
    const out: number[] = [];
    for (const f of fragments) {
      if ("id" in f) {
        out.push(f.id);
        continue;
      }
      for (const word of splitWords(f.text, this.regexes)) {
        for (const id of this.encodeWord(word)) out.push(id);
      }
    }
    return out;
  }

  private encodeWord(word: string): number[] {
    const cached = this.wordCache.get(word);
    if (cached) return cached;
    let mapped = "";
    for (const b of utf8Bytes(word)) mapped += BYTE_TO_UNICODE[b]!;
    const ids = this.mergeWord(mapped);
    if (this.wordCache.size >= CACHE_LIMIT) this.wordCache.clear();
    this.wordCache.set(word, ids);
    return ids;
  }

  /** llama.cpp's llm_tokenizer_bpe_session::tokenize for one byte-mapped word. */
  private mergeWord(word: string): number[] {
    if (this.ignoreMerges) {
      const whole = this.tokenToId.get(word);
      if (whole !== undefined) return [whole];
    }
    const sym = Array.from(word); // every byte-mapped character is a single UTF-16 unit
    const n = sym.length;
    const prev = Int32Array.from({ length: n }, (_, i) => i - 1);
    const next = Int32Array.from({ length: n }, (_, i) => (i + 1 < n ? i + 1 : -1));
    const queue = new Heap<Bigram>((a, b) => a.rank < b.rank || (a.rank === b.rank && a.left < b.left));
    const tryAdd = (left: number, right: number): void => {
      if (left < 0 || right < 0) return;
      const rank = this.ranks.get(sym[left] + " " + sym[right]);
      if (rank !== undefined) queue.push({ left, right, rank, text: sym[left]! + sym[right]! });
    };
    for (let i = 1; i < n; i++) tryAdd(i - 1, i);
    while (queue.size > 0) {
      const b = queue.pop()!;
      if (sym[b.left] === "" || sym[b.right] === "" || sym[b.left]! + sym[b.right]! !== b.text) continue;
      sym[b.left] = b.text;
      sym[b.right] = "";
      next[b.left] = next[b.right]!;
      if (next[b.right]! >= 0) prev[next[b.right]!] = b.left;
      tryAdd(prev[b.left]!, b.left);
      tryAdd(b.left, next[b.left]!);
    }
    const out: number[] = [];
    for (let i = 0; i !== -1; i = next[i]!) {
      const id = this.tokenToId.get(sym[i]!);
      if (id !== undefined) {
        out.push(id);
        continue;
      }
      for (const ch of sym[i]!) {
        const byteId = this.tokenToId.get(ch);
        if (byteId === undefined)
          throw inputError(
            `${this.source}: the vocabulary has no token for the byte character ${JSON.stringify(ch)}, so ` +
              `${JSON.stringify(word)} cannot be encoded; the GGUF vocabulary is incomplete. Re-convert the model`,
          );
        out.push(byteId);
      }
    }
    return out;
  }

  decode(ids: readonly number[], options?: { keepSpecial?: boolean }): string {
    const keepSpecial = options?.keepSpecial ?? false;
    const sink = new ByteSink();
    for (const id of ids) {
      checkId(id, this.vocabSize);
      switch (this.typeOf(id)) {
        case TokenType.Normal:
          sink.push(this.normalPieceBytes(id));
          break;
        case TokenType.UserDefined:
          sink.push(utf8Bytes(this.tokens[id]!));
          break;
        case TokenType.Byte: {
          const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(this.tokens[id]!);
          sink.push(m ? [parseInt(m[1]!, 16)] : utf8Bytes(this.tokens[id]!));
          break;
        }
        case TokenType.Control:
        case TokenType.Unknown:
          if (keepSpecial) sink.push(utf8Bytes(this.tokens[id]!));
          break;
        default:
          break; // unused / undefined types render as nothing in llama.cpp
      }
    }
    return sink.text();
  }

  private normalPieceBytes(id: number): Uint8Array {
    let b = this.pieceBytes[id];
    if (!b) {
      const bytes: number[] = [];
      for (const ch of this.tokens[id]!) {
        const byte = UNICODE_TO_BYTE.get(ch);
        // a character outside the byte map (not produced by byte-level BPE) stands for itself
        if (byte !== undefined) bytes.push(byte);
        else bytes.push(...utf8Bytes(ch));
      }
      this.pieceBytes[id] = b = Uint8Array.from(bytes);
    }
    return b;
  }

  idToToken(id: number): string {
    checkId(id, this.vocabSize);
    return this.tokens[id]!;
  }
}
