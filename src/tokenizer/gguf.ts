// The tokenizer embedded in a GGUF file: tokenizer.ggml.* metadata, read the way llama.cpp's vocabulary loader reads
// it (llama-vocab.cpp, llama_vocab::impl::load), including its defaults for keys that older converters left out.

import type { GgufFile, GgufValue } from "../io/gguf.js";
import { metaArray, metaNumber, metaString } from "../io/gguf.js";
import { inputError, unsupportedError } from "../errors.js";
import { SpmTokenizer } from "./spm.js";
import { BpeTokenizer } from "./bpe.js";
import { END_OF_TURN_TEXTS, validId } from "./common.js";

export function tokenizerFromGguf(f: GgufFile): SpmTokenizer | BpeTokenizer {
  const model = metaString(f, "tokenizer.ggml.model");
  const tokensValue = metaArray(f, "tokenizer.ggml.tokens");
  if (model === undefined || model === "no_vocab" || model === "none" || tokensValue === undefined)
    throw inputError(
      `${f.path}: this GGUF holds no tokenizer vocabulary (tokenizer.ggml.model / tokenizer.ggml.tokens are ` +
        `missing). Use a GGUF converted with its vocabulary (llama.cpp's convert_hf_to_gguf.py writes it), or ` +
        `load the model from its Hugging Face folder with tokenizer.json`,
    );
  const tokens = stringArray(f, "tokenizer.ggml.tokens", tokensValue);
  const n = tokens.length;
  if (n === 0) throw inputError(`${f.path}: tokenizer.ggml.tokens is empty; the GGUF vocabulary is broken`);
  const types = optionalNumberArray(f, "tokenizer.ggml.token_type", n);
  const chatTemplate = metaString(f, "tokenizer.chat_template") ?? null;
  const addBos = metaBool(f, "tokenizer.ggml.add_bos_token");

  switch (model) {
    case "llama": {
      const scores = optionalNumberArray(f, "tokenizer.ggml.scores", n) ?? new Float32Array(n);
      // llama.cpp's SentencePiece defaults: <unk> = 0, <s> = 1, </s> = 2, BOS added, space prefix added
      const bosId = specialId(f, "tokenizer.ggml.bos_token_id", 1, n);
      const eosId = specialId(f, "tokenizer.ggml.eos_token_id", 2, n);
      return new SpmTokenizer({
        tokens,
        scores,
        types,
        bosId,
        eosId,
        unkId: specialId(f, "tokenizer.ggml.unknown_token_id", 0, n),
        addBos: addBos ?? true,
        addSpacePrefix: metaBool(f, "tokenizer.ggml.add_space_prefix") ?? true,
        stopIds: stopIds(f, tokens, eosId),
        chatTemplate,
        source: f.path,
      });
    }
    case "gpt2": {
      const mergesValue = metaArray(f, "tokenizer.ggml.merges");
      if (mergesValue === undefined)
        throw inputError(
          `${f.path}: tokenizer.ggml.model is "gpt2" but tokenizer.ggml.merges is missing; re-convert the model ` +
            `with a current llama.cpp convert_hf_to_gguf.py`,
        );
      const pre = metaString(f, "tokenizer.ggml.pre");
      if (pre === undefined)
        throw unsupportedError(
          `${f.path}: tokenizer.ggml.pre is missing, so the pre-tokenizer regex is unknown (llama.cpp guesses and ` +
            `warns that quality degrades). Re-convert the model with a current llama.cpp, or load the tokenizer ` +
            `from the Hugging Face folder (tokenizer.json)`,
        );
      // llama.cpp defaults BPE bos/eos to id 11 (a Falcon leftover); without the keys we report none instead
      const eosId = specialId(f, "tokenizer.ggml.eos_token_id", null, n);
      return new BpeTokenizer({
        tokens,
        merges: stringArray(f, "tokenizer.ggml.merges", mergesValue),
        types,
        pre,
        bosId: specialId(f, "tokenizer.ggml.bos_token_id", null, n),
        eosId,
        addBos: addBos ?? null,
        stopIds: stopIds(f, tokens, eosId),
        chatTemplate,
        source: f.path,
      });
    }
    default:
      throw unsupportedError(
        `${f.path}: tokenizer.ggml.model is ${JSON.stringify(model)}; tsdpo reads "llama" (SentencePiece) and ` +
          `"gpt2" (byte-level BPE) GGUF vocabularies. Load the tokenizer from the model's Hugging Face folder instead`,
      );
  }
}

function stringArray(f: GgufFile, key: string, v: GgufValue[]): string[] {
  const bad = v.findIndex((x) => typeof x !== "string");
  if (bad >= 0)
    throw inputError(`${f.path}: ${key}[${bad}] is not a string; the GGUF vocabulary is broken. Re-convert the model`);
  return v as string[];
}

function optionalNumberArray(f: GgufFile, key: string, n: number): Float64Array | null {
  const v = metaArray(f, key);
  if (v === undefined) return null;
  if (v.length < n)
    throw inputError(
      `${f.path}: ${key} has ${v.length} entries but tokenizer.ggml.tokens has ${n}; re-convert the model`,
    );
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const x = v[i];
    if (typeof x !== "number")
      throw inputError(`${f.path}: ${key}[${i}] is not a number; the GGUF vocabulary is broken. Re-convert the model`);
    out[i] = x;
  }
  return out;
}

function metaBool(f: GgufFile, key: string): boolean | undefined {
  const v = f.metadata.get(key);
  if (v === undefined) return undefined;
  if (typeof v !== "boolean") throw inputError(`${f.path}: ${key} should be a boolean but is ${String(v)}`);
  return v;
}

/** An id key, with llama.cpp's default when absent; an out-of-range id (GGUF writes u32 -1) means "none". */
function specialId(f: GgufFile, key: string, fallback: number | null, n: number): number | null {
  const v = metaNumber(f, key);
  return validId(v === undefined ? fallback : v, n);
}

function stopIds(f: GgufFile, tokens: readonly string[], eosId: number | null): number[] {
  const ids = new Set<number>();
  for (const key of ["tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"]) {
    const id = validId(metaNumber(f, key), tokens.length);
    if (id !== null) ids.add(id);
  }
  const wanted = new Set(END_OF_TURN_TEXTS);
  tokens.forEach((t, id) => {
    if (wanted.has(t)) ids.add(id);
  });
  if (eosId !== null) ids.delete(eosId);
  return [...ids].sort((a, b) => a - b);
}
