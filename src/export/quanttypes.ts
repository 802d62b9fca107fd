// Which GGML type each tensor gets in a quantised GGUF export, chosen as llama.cpp's `llama_model_quantize` chooses
// them (src/llama-quant.cpp, llama_tensor_get_type) for the two mixes tsdpo writes, without an importance matrix:
//
//   q8_0     every 2-D weight Q8_0;
//   q6_k     every 2-D weight Q6_K (used by the tests, which compare with llama.cpp's Q6_K files);
//   q4_k_m   Q4_K, except: the output matrix (or the token embedding when it is tied to the output) Q6_K;
//            attn_v (or a fused attn_qkv) and ffn_down Q6_K in the layers where use_more_bits is true (the first
//            and last eighth of the layers and every third one between);
//
// then, for rows that are not a whole number of blocks, llama.cpp's fallbacks: Q4_K → Q5_0, Q5_K → Q5_1,
// Q6_K → Q8_0 when the row length is not a multiple of 256 (the output matrix goes straight to Q8_0), and F16 when
// it is not even a multiple of 32. Norms, other 1-D tensors and GPT-2's position_embd stay F32.
// test/quant-export.test.ts compares the choices with files quantised by llama.cpp itself.

import { BLOCK, type QuantType } from "../quant/ggml.js";

export type QuantMix = "q8_0" | "q4_k_m" | "q6_k";

/** The mix's type for each tensor: "F32" (not quantised), "F16" (the last fallback) or a block type. */
export type ChosenType = "F32" | QuantType;

/** llama.cpp's rule for the layers that get more bits in a K-quant mix (C integer division). */
export function useMoreBits(i: number, n: number): boolean {
  const e = Math.floor(n / 8);
  return i < e || i >= Math.floor((7 * n) / 8) || (i - e) % 3 === 2;
}

/**
 * The type of GGUF tensor `name` (llama.cpp's names: token_embd.weight, output.weight, blk.N.attn_v.weight, …) with
 * `cols` values per row, in a model of `layers` layers whose output is tied to the embedding when `tied`.
 */
export function quantTypeFor(mix: QuantMix, name: string, dims: readonly number[], layers: number, tied: boolean): ChosenType {
  // llama.cpp keeps learned position embeddings (GPT-2's position_embd) unquantised, as it keeps norms
  if (dims.length !== 2 || !name.endsWith(".weight") || /norm/.test(name) || name === "position_embd.weight") return "F32";
  const cols = dims[0]!;
  const isOutput = name === "output.weight" || (tied && name === "token_embd.weight");
  let t: QuantType;
  if (mix === "q8_0") t = "Q8_0";
  else if (mix === "q6_k") t = isOutput && cols % BLOCK.Q6_K.elems !== 0 ? "Q8_0" : "Q6_K";
  else if (isOutput) t = cols % BLOCK.Q4_K.elems !== 0 ? "Q8_0" : "Q6_K";
  else {
    t = "Q4_K";
    const layer = /^blk\.(\d+)\./.exec(name);
    const i = layer ? Number(layer[1]) : -1;
    // a fused attn_qkv counts as attn_v (llama-quant.cpp category_is_attn_v), so it gets attn_v's bits
    if ((name.endsWith(".attn_v.weight") || name.endsWith(".attn_qkv.weight") || name.endsWith(".ffn_down.weight")) && useMoreBits(i, layers)) t = "Q6_K";
  }
  return fallback(t, cols);
}

/** llama.cpp's tensor_type_fallback: a type whose blocks do not tile the row gives way to a 32-block one, or F16. */
function fallback(t: QuantType, cols: number): QuantType {
  if (cols % BLOCK[t].elems === 0) return t;
  const smaller: Partial<Record<QuantType, QuantType>> = { Q4_K: "Q5_0", Q5_K: "Q5_1", Q6_K: "Q8_0" };
  const next = smaller[t] ?? t;
  return cols % BLOCK[next].elems === 0 ? next : "F16";
}
