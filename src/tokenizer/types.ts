// The one tokenizer contract the rest of tsdpo sees. Implementations: the GGUF-embedded vocabularies (SentencePiece
// style and GPT-2 byte-level BPE) and Hugging Face tokenizer.json.

export interface EncodeOptions {
  /**
   * Encode `text` as the continuation of earlier text rather than as the start of a document. For SentencePiece
   * vocabularies this suppresses the dummy "▁" prefix that is otherwise added at the start, so that
   * encode(prompt) ++ encode(completion, {continuation: true}) tokenises the completion exactly as written.
   * Byte-level BPE ignores it.
   */
  continuation?: boolean;
}

export interface Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosId: number | null;
  /** Whether the model expects BOS at the start of every sequence (tokenizer.ggml.add_bos_token / HF config). */
  readonly addBos: boolean;
  /** Extra ids that also end generation (e.g. <|im_end|>, <|eot_id|>), besides eosId. */
  readonly stopIds: readonly number[];
  /** Text to ids, without BOS/EOS. Special-token strings in `text` are treated as plain text. */
  encode(text: string, options?: EncodeOptions): number[];
  /**
   * Like encode, but strings of special/control tokens (e.g. <|im_start|>, </s>) become their ids, as llama.cpp's
   * parse_special and Hugging Face do. Chat-template output needs this; user-supplied text does not.
   */
  encodeWithSpecials(text: string, options?: EncodeOptions): number[];
  /** Ids to text. Special tokens are dropped unless keepSpecial. */
  decode(ids: readonly number[], options?: { keepSpecial?: boolean }): string;
  /** The token string as stored in the vocabulary (for debugging and export). */
  idToToken(id: number): string;
  /** Chat template (Jinja source) if the model ships one. */
  readonly chatTemplate: string | null;
}
