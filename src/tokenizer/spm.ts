// SentencePiece-style tokenizer for GGUF vocabularies with tokenizer.ggml.model = "llama" (Llama 1/2, Mistral v0.1,
// TinyLlama, stories260K, ...). It reproduces llama.cpp's llm_tokenizer_spm, which is what the model was served
// with when converted to GGUF:
//   1. spaces become "▁" (U+2581), and a "▁" is prepended at the start of the text (the "dummy prefix");
//   2. the text is split into Unicode characters; every adjacent pair whose concatenation is a vocabulary token is
//      a candidate merge, and the candidate with the highest token score is merged first (ties: leftmost first),
//      repeatedly, until no adjacent pair forms a token;
//   3. a piece that is not a token is written as its UTF-8 bytes with the <0xXX> byte tokens ("byte fallback"),
//      or as the unknown token when the vocabulary has no byte tokens.
// User-defined tokens are cut out of the text first, as llama.cpp does even when special tokens are not parsed.

import type { EncodeOptions, Tokenizer } from "./types.js";
import { inputError } from "../errors.js";
import { ByteSink, checkId, type Fragment, Heap, LiteralSplitter, TokenType, utf8Bytes } from "./common.js";

export interface SpmVocab {
  tokens: readonly string[];
  scores: ArrayLike<number>;
  /** llama.cpp token types (TokenType); null means every token is normal, as llama.cpp assumes. */
  types: ArrayLike<number> | null;
  bosId: number | null;
  eosId: number | null;
  unkId: number | null;
  addBos: boolean;
  /** tokenizer.ggml.add_space_prefix; true for SentencePiece models unless the GGUF says otherwise. */
  addSpacePrefix: boolean;
  stopIds: readonly number[];
  chatTemplate: string | null;
  /** Where the vocabulary came from, for error messages. */
  source: string;
}

interface Bigram {
  left: number;
  right: number;
  score: number;
  size: number; // combined length in UTF-16 units when queued; stale if either side has changed since
}

const SPACE_MARK = "\u2581";
const BYTE_TOKEN = /^<0x([0-9A-Fa-f]{2})>$/;

export class SpmTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosId: number | null;
  readonly unkId: number | null;
  readonly addBos: boolean;
  readonly addSpacePrefix: boolean;
  readonly stopIds: readonly number[];
  readonly chatTemplate: string | null;
  readonly source: string;

  private readonly tokens: readonly string[];
  private readonly scores: ArrayLike<number>;
  private readonly types: ArrayLike<number> | null;
  private readonly pieceToId = new Map<string, number>();
  private readonly byteIds = new Int32Array(256).fill(-1); // byte value -> id of its fallback token
  private readonly byteValue: Int16Array; // id -> byte value for byte tokens, -1 otherwise
  private readonly userDefined: LiteralSplitter; // cut out of plain text, like llama.cpp
  private readonly allSpecial: LiteralSplitter; // also control/unknown, for encodeWithSpecials
  private readonly pieceBytes: (Uint8Array | undefined)[];

  constructor(v: SpmVocab) {
    this.tokens = v.tokens;
    this.scores = v.scores;
    this.types = v.types;
    this.vocabSize = v.tokens.length;
    this.bosId = v.bosId;
    this.eosId = v.eosId;
    this.unkId = v.unkId;
    this.addBos = v.addBos;
    this.addSpacePrefix = v.addSpacePrefix;
    this.stopIds = v.stopIds;
    this.chatTemplate = v.chatTemplate;
    this.source = v.source;
    this.byteValue = new Int16Array(this.vocabSize).fill(-1);
    this.pieceBytes = new Array(this.vocabSize);

    const userDefined: { text: string; id: number }[] = [];
    const special: { text: string; id: number }[] = [];
    for (let id = 0; id < this.vocabSize; id++) {
      const text = v.tokens[id]!;
      if (text.length === 0) continue; // llama.cpp renames empty tokens to "[EMPTY_<id>]"; they never match text
      const prior = this.pieceToId.get(text);
      if (prior !== undefined)
        throw inputError(
          `${v.source}: the vocabulary lists token ${JSON.stringify(text)} twice (ids ${prior} and ${id}); ` +
            `the tokenizer cannot be built (llama.cpp refuses this file too). Re-convert the model`,
        );
      this.pieceToId.set(text, id);
      const type = this.typeOf(id);
      if (type === TokenType.Byte) {
        const m = BYTE_TOKEN.exec(text);
        if (!m)
          throw inputError(
            `${v.source}: token ${id} (${JSON.stringify(text)}) has type BYTE but is not of the form <0xXX>; ` +
              `the tokenizer.ggml.token_type array is inconsistent. Re-convert the model`,
          );
        this.byteValue[id] = parseInt(m[1]!, 16);
      }
      if (type === TokenType.UserDefined) userDefined.push({ text, id });
      if (type === TokenType.UserDefined || type === TokenType.Control || type === TokenType.Unknown)
        special.push({ text, id });
    }
    this.userDefined = new LiteralSplitter(userDefined);
    this.allSpecial = new LiteralSplitter(special);
    for (let b = 0; b < 256; b++) {
      const hex = b.toString(16).toUpperCase().padStart(2, "0");
      // llama.cpp's byte_to_token: the <0xXX> token, else the byte itself as a one-character token
      const id = this.pieceToId.get(`<0x${hex}>`) ?? (b < 0x80 ? this.pieceToId.get(String.fromCharCode(b)) : undefined);
      if (id !== undefined) this.byteIds[b] = id;
    }
  }

  private typeOf(id: number): number {
    return this.types ? this.types[id]! : TokenType.Normal;
  }

  encode(text: string, options?: EncodeOptions): number[] {
    return this.encodeFragments(this.userDefined.split(text), options?.continuation ?? false);
  }

  /**
   * Like encode, but control-token texts in `text` (e.g. "<s>", "[INST]" in some vocabularies) become their ids, as
   * llama.cpp does with parse_special. Use this for text produced by a chat template.
   */
  encodeWithSpecials(text: string, options?: EncodeOptions): number[] {
    return this.encodeFragments(this.allSpecial.split(text), options?.continuation ?? false);
  }

  private encodeFragments(fragments: Fragment[], continuation: boolean): number[] {
    const out: number[] = [];
    // llama.cpp prefixes a space to the first text fragment and to every fragment that follows a special token.
    let prevSpecial = !continuation;
    for (const f of fragments) {
      if ("id" in f) {
        out.push(f.id);
        prevSpecial = true;
        continue;
      }
      const prefixed = this.addSpacePrefix && prevSpecial ? " " + f.text : f.text;
      this.encodePiece(prefixed.replaceAll(" ", SPACE_MARK), out);
      prevSpecial = false;
    }
    return out;
  }

  /** The bigram merge of llama.cpp's llm_tokenizer_spm_session::tokenize over one escaped text fragment. */
  private encodePiece(text: string, out: number[]): void {
    if (text.length === 0) return;
    // symbols: one per Unicode character, as (start, length) in UTF-16 units, linked into a list
    const start: number[] = [];
    const len: number[] = [];
    for (let i = 0; i < text.length; ) {
      const n = text.codePointAt(i)! > 0xffff ? 2 : 1;
      start.push(i);
      len.push(n);
      i += n;
    }
    const count = start.length;
    const prev = Int32Array.from({ length: count }, (_, i) => i - 1);
    const next = Int32Array.from({ length: count }, (_, i) => (i + 1 < count ? i + 1 : -1));

    // highest score first; on equal scores the leftmost pair first (llama.cpp's llm_bigram_spm::comparator)
    const queue = new Heap<Bigram>((a, b) => a.score > b.score || (a.score === b.score && a.left < b.left));
    const tryAdd = (left: number, right: number): void => {
      if (left < 0 || right < 0) return;
      const size = len[left]! + len[right]!;
      const id = this.pieceToId.get(text.slice(start[left]!, start[left]! + size));
      if (id === undefined) return;
      queue.push({ left, right, score: this.scores[id]!, size });
    };
    for (let i = 1; i < count; i++) tryAdd(i - 1, i);

    while (queue.size > 0) {
      const b = queue.pop()!;
      if (len[b.left] === 0 || len[b.right] === 0 || len[b.left]! + len[b.right]! !== b.size) continue;
      len[b.left] = b.size;
      len[b.right] = 0;
      next[b.left] = next[b.right]!;
      if (next[b.right]! >= 0) prev[next[b.right]!] = b.left;
      tryAdd(prev[b.left]!, b.left);
      tryAdd(b.left, next[b.left]!);
    }

    for (let i = 0; i !== -1; i = next[i]!) {
      const piece = text.slice(start[i]!, start[i]! + len[i]!);
      const id = this.pieceToId.get(piece);
      if (id !== undefined) {
        out.push(id);
        continue;
      }
      // Every merge produced a token, so only single characters can be missing: fall back to their bytes.
      const bytes = utf8Bytes(piece);
      if (bytes.every((byte) => this.byteIds[byte]! >= 0)) {
        for (const byte of bytes) out.push(this.byteIds[byte]!);
      } else if (this.unkId !== null) {
        out.push(this.unkId);
      } else {
        throw inputError(
          `${this.source}: cannot encode ${JSON.stringify(piece)}: it is not in the vocabulary, which has neither ` +
            `<0xXX> byte tokens nor an unknown token. Remove the character from the data`,
        );
      }
    }
  }

  decode(ids: readonly number[], options?: { keepSpecial?: boolean }): string {
    const keepSpecial = options?.keepSpecial ?? false;
    const sink = new ByteSink();
    let first = true;
    for (const id of ids) {
      checkId(id, this.vocabSize);
      const type = this.typeOf(id);
      let bytes: Uint8Array;
      switch (type) {
        case TokenType.Normal:
          bytes = this.normalPieceBytes(id);
          break;
        case TokenType.Byte:
          bytes = Uint8Array.of(this.byteValue[id]!);
          break;
        case TokenType.UserDefined:
          bytes = utf8Bytes(this.tokens[id]!);
          break;
        case TokenType.Control:
        case TokenType.Unknown:
          if (!keepSpecial) continue;
          bytes = utf8Bytes(this.tokens[id]!);
          break;
        default:
          continue; // unused / undefined types render as nothing in llama.cpp
      }
      // the dummy prefix added at the start of a document comes back as a leading space: drop it
      if (first && this.addSpacePrefix && bytes[0] === 0x20) bytes = bytes.subarray(1);
      first = false;
      sink.push(bytes);
    }
    return sink.text();
  }

  private normalPieceBytes(id: number): Uint8Array {
    let b = this.pieceBytes[id];
    if (!b) this.pieceBytes[id] = b = utf8Bytes(this.tokens[id]!.replaceAll(SPACE_MARK, " "));
    return b;
  }

  idToToken(id: number): string {
    checkId(id, this.vocabSize);
    return this.tokens[id]!;
  }
}
