// Tokenizers: the GGUF-embedded vocabularies (SentencePiece, byte-level BPE) and Hugging Face tokenizer.json, all
// behind the Tokenizer contract of types.ts, plus chat-template rendering.

import { existsSync, statSync } from "node:fs";
import { basename, dirname } from "node:path";
import { inputError } from "../errors.js";
import { readGguf } from "../io/gguf.js";
import type { EncodeOptions, Tokenizer } from "./types.js";
import { tokenizerFromGguf } from "./gguf.js";
import { loadHfTokenizer } from "./hf.js";

export type { EncodeOptions, Tokenizer } from "./types.js";
export { SpmTokenizer, type SpmVocab } from "./spm.js";
export { BpeTokenizer, type BpeVocab, SUPPORTED_BPE_PRE } from "./bpe.js";
export { tokenizerFromGguf } from "./gguf.js";
export { HfTokenizer, loadHfTokenizer } from "./hf.js";
export { renderChat, type ChatMessage, type RenderChatOptions, type ToolSpec } from "./chat.js";

/**
 * What every tokenizer in this folder offers beyond the Tokenizer contract: encoding text in which special-token
 * strings (as written by a chat template, e.g. "<|im_start|>") stand for their ids.
 */
export interface LoadedTokenizer extends Tokenizer {
  encodeWithSpecials(text: string, options?: EncodeOptions): number[];
}

/**
 * The tokenizer of a model given as a GGUF file or a Hugging Face folder (a path to the folder's tokenizer.json
 * also works). Reading a GGUF this way loads the whole file; if you already hold a GgufFile, call
 * tokenizerFromGguf on it instead.
 */
export function loadTokenizer(modelPath: string): LoadedTokenizer {
  if (!existsSync(modelPath))
    throw inputError(`${modelPath}: no such file or folder; give a GGUF file or a Hugging Face model folder`);
  if (statSync(modelPath).isDirectory()) return loadHfTokenizer(modelPath);
  if (basename(modelPath) === "tokenizer.json") return loadHfTokenizer(dirname(modelPath));
  return tokenizerFromGguf(readGguf(modelPath));
}
