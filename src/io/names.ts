// The one place that knows external tensor names and layouts.
//
// tsdpo's parameter names (model/config.ts paramSpecs) map one to one to Hugging Face names (transformers'
// LlamaForCausalLM / MistralForCausalLM / Qwen2ForCausalLM / Qwen3ForCausalLM / Gemma2ForCausalLM /
// Gemma3ForCausalLM state dicts) and to GGUF names (llama.cpp's LLM_TENSOR_NAMES for the llama, qwen2, qwen3, gemma2,
// gemma3, smollm3, granite, olmo2, gpt2 and phi3 architectures; the tensors GPT-2 and Phi-3 fuse in GGUF are
// io/gguflayout.ts's, their fused HF layouts io/hflayout.ts's). One HF name means different tensors by family:
// Llama's "post_attention_layernorm" is the norm before the MLP (tsdpo's ffn_norm), Gemma's is the norm of the
// attention output (attn_post_norm), so the HF mapping takes the family.
// - Gemma's norms multiply by (1 + w) and HF stores w; llama.cpp multiplies by the stored weight, so Gemma GGUFs
//   hold 1 + w (convert_hf_to_gguf.py adds 1 to every "norm.weight"); ggufNormShift says which tensors.
//
// Layout facts a loader or exporter needs:
// - Matrices are row-major [out][in] everywhere (nn.Linear.weight). GGUF lists dims innermost first, so an
//   [out][in] matrix has dims [in, out] and the bytes are already in [out][in] order: reverse the dims, never
//   transpose the data (test/io.test.ts checks this on stories260K by running its first tokens).
// - RoPE. tsdpo keeps Q and K in Hugging Face's rotate-half ("NEOX") layout: within a head of size HS, dimension i
//   pairs with i + HS/2. llama.cpp runs architectures llama and mistral with interleaved ("NORM") RoPE, pairing 2i
//   with 2i+1, so their GGUF files store the rows of attn_q / attn_k (and their biases) permuted: HF row
//   s*(HS/2) + i of a head is GGUF row 2i + s of the same head (s = 0, 1; i < HS/2). convert_hf_to_gguf.py applies
//   this permutation when writing llama GGUFs, and llama2.c-derived files (stories260K) were interleaved from the
//   start. Architectures qwen2 and qwen3 use NEOX RoPE in llama.cpp and their GGUF rows are NOT permuted.

import { unsupportedError } from "../errors.js";
import type { ModelFamily } from "../model/config.js";

const LAYER_HF: Record<string, string> = {
  attn_norm: "input_layernorm.weight",
  wq: "self_attn.q_proj.weight",
  wk: "self_attn.k_proj.weight",
  wv: "self_attn.v_proj.weight",
  bq: "self_attn.q_proj.bias",
  bk: "self_attn.k_proj.bias",
  bv: "self_attn.v_proj.bias",
  q_norm: "self_attn.q_norm.weight",
  k_norm: "self_attn.k_norm.weight",
  wo: "self_attn.o_proj.weight",
  ffn_norm: "post_attention_layernorm.weight",
  w_gate: "mlp.gate_proj.weight",
  w_up: "mlp.up_proj.weight",
  w_down: "mlp.down_proj.weight",
};
const LAYER_GGUF: Record<string, string> = {
  attn_norm: "attn_norm.weight",
  wq: "attn_q.weight",
  wk: "attn_k.weight",
  wv: "attn_v.weight",
  bq: "attn_q.bias",
  bk: "attn_k.bias",
  bv: "attn_v.bias",
  q_norm: "attn_q_norm.weight",
  k_norm: "attn_k_norm.weight",
  wo: "attn_output.weight",
  ffn_norm: "ffn_norm.weight",
  w_gate: "ffn_gate.weight",
  w_up: "ffn_up.weight",
  w_down: "ffn_down.weight",
  attn_post_norm: "post_attention_norm.weight",
  ffn_post_norm: "post_ffw_norm.weight",
  // GPT-2's LayerNorm and projection biases (its fused q/k/v are io/gguflayout.ts's)
  attn_norm_b: "attn_norm.bias",
  bo: "attn_output.bias",
  ffn_norm_b: "ffn_norm.bias",
  b_up: "ffn_up.bias",
  b_down: "ffn_down.bias",
};
// Gemma 2/3 and OLMo 2 (norms after the sublayers): the HF names that differ from LAYER_HF.
const LAYER_HF_GEMMA: Record<string, string> = {
  ...LAYER_HF,
  attn_post_norm: "post_attention_layernorm.weight",
  ffn_norm: "pre_feedforward_layernorm.weight",
  ffn_post_norm: "post_feedforward_layernorm.weight",
};
const GLOBAL_HF: Record<string, string> = {
  tok_embd: "model.embed_tokens.weight",
  out_norm: "model.norm.weight",
  lm_head: "lm_head.weight",
};
const GLOBAL_GGUF: Record<string, string> = {
  tok_embd: "token_embd.weight",
  pos_embd: "position_embd.weight", // GPT-2's learned positions
  out_norm: "output_norm.weight",
  out_norm_b: "output_norm.bias",
  lm_head: "output.weight",
};

const invert = (m: Record<string, string>): Map<string, string> => new Map(Object.entries(m).map(([k, v]) => [v, k]));
const LAYER_HF_INV = invert(LAYER_HF);
const LAYER_HF_GEMMA_INV = invert(LAYER_HF_GEMMA);
const LAYER_GGUF_INV = invert(LAYER_GGUF);
const GLOBAL_HF_INV = invert(GLOBAL_HF);
const GLOBAL_GGUF_INV = invert(GLOBAL_GGUF);

const TSDPO_LAYER_RE = /^layers\.(\d+)\.(\w+)$/;
const HF_LAYER_RE = /^model\.layers\.(\d+)\.(.+)$/;
const GGUF_LAYER_RE = /^blk\.(\d+)\.(.+)$/;

function toExternal(name: string, global: Record<string, string>, layer: Record<string, string>, prefix: string): string {
  const g = global[name];
  if (g !== undefined) return g;
  const m = TSDPO_LAYER_RE.exec(name);
  const suffix = m ? layer[m[2]!] : undefined;
  if (!m || suffix === undefined) throw new Error(`names: ${JSON.stringify(name)} is not a tsdpo parameter name`);
  return `${prefix}${m[1]}.${suffix}`;
}

function fromExternal(
  name: string,
  global: Map<string, string>,
  layer: Map<string, string>,
  re: RegExp,
): string | null {
  const g = global.get(name);
  if (g !== undefined) return g;
  const m = re.exec(name);
  if (!m || String(Number(m[1])) !== m[1]) return null; // "01" is not a layer index any writer produces
  const suffix = layer.get(m[2]!);
  return suffix === undefined ? null : `layers.${m[1]}.${suffix}`;
}

const isGemma = (family: ModelFamily): boolean => family === "gemma2" || family === "gemma3";
/** Families whose "post_attention_layernorm" normalises the attention output (not the MLP input, as in Llama). */
const hasPostNormNames = (family: ModelFamily): boolean => isGemma(family) || family === "olmo2";

/** tsdpo name (e.g. "layers.3.wq") -> Hugging Face name ("model.layers.3.self_attn.q_proj.weight") in `family`. */
export const hfTensorName = (name: string, family: ModelFamily): string =>
  toExternal(name, GLOBAL_HF, hasPostNormNames(family) ? LAYER_HF_GEMMA : LAYER_HF, "model.layers.");
/** tsdpo name (e.g. "layers.3.wq") -> GGUF name ("blk.3.attn_q.weight"). */
export const ggufTensorName = (name: string): string => toExternal(name, GLOBAL_GGUF, LAYER_GGUF, "blk.");
/** Hugging Face name in `family` -> tsdpo name, or null when the tensor is not one tsdpo knows. */
export const tsdpoNameFromHf = (name: string, family: ModelFamily): string | null =>
  fromExternal(name, GLOBAL_HF_INV, hasPostNormNames(family) ? LAYER_HF_GEMMA_INV : LAYER_HF_INV, HF_LAYER_RE);

/**
 * What a GGUF of `family` adds to tensor `name` (tsdpo's name) against tsdpo's weight: 1 for Gemma's norms, which
 * GGUF stores as the multiplier 1 + w (see the header), else 0.
 */
export const ggufNormShift = (family: ModelFamily, name: string): number => (isGemma(family) && /norm$/.test(name) ? 1 : 0);
/** GGUF name -> tsdpo name, or null when the tensor is not one tsdpo knows. */
export const tsdpoNameFromGguf = (name: string): string | null =>
  fromExternal(name, GLOBAL_GGUF_INV, LAYER_GGUF_INV, GGUF_LAYER_RE);

/**
 * HF tensors a loader may skip: older transformers saved each layer's RoPE inverse frequencies as a buffer, which
 * tsdpo recomputes from the config.
 */
export const isIgnorableHfTensor = (name: string): boolean => /\.rotary_emb\.inv_freq$/.test(name);

/** Row-major shape of a GGUF tensor: its dims are innermost first, so reverse them (no data transpose). */
export const ggufShape = (dims: readonly number[]): number[] => [...dims].reverse();

/** Whether the GGUF files of this family store Q/K rows permuted for interleaved RoPE (see the header). */
export function ggufQkPermuted(family: ModelFamily): boolean {
  switch (family) {
    case "llama":
    case "mistral":
    case "granite": // llama.cpp's converters write these as llama (LlamaModel's permutation, interleaved RoPE)
    case "smollm3":
      return true;
    case "qwen2":
    case "qwen3":
    case "gemma2":
    case "gemma3":
    case "olmo2":
    case "phi3": // NEOX, like qwen2 (llama_model_rope_type)
    case "gpt2": // no RoPE at all
      return false;
    default: {
      const never: never = family;
      throw unsupportedError(`GGUF Q/K layout of model family ${String(never)} is unknown`);
    }
  }
}

function permuteRows(
  data: Float32Array, // (nHeads * HS, cols)
  nHeads: number,
  HS: number,
  cols: number,
  toHf: boolean,
): Float32Array {
  if (HS % 2 !== 0 || data.length !== nHeads * HS * cols)
    throw new Error(`Q/K permutation: ${data.length} values is not ${nHeads} heads x ${HS} (even) rows x ${cols}`);
  const out = new Float32Array(data.length);
  const half = HS / 2;
  for (let h = 0; h < nHeads; h++)
    for (let s = 0; s < 2; s++)
      for (let i = 0; i < half; i++) {
        const hfRow = h * HS + s * half + i;
        const ggufRow = h * HS + 2 * i + s;
        const [from, to] = toHf ? [ggufRow, hfRow] : [hfRow, ggufRow];
        out.set(data.subarray(from * cols, (from + 1) * cols), to * cols);
      }
  return out;
}

/**
 * Un-permutes a llama/mistral GGUF attn_q or attn_k weight (cols = C) or bias (cols = 1) into HF rotate-half row
 * order. nHeads is NH for Q and NKV for K. Returns a new array.
 */
export const ggufToHfQkRows = (data: Float32Array, nHeads: number, HS: number, cols: number): Float32Array =>
  permuteRows(data, nHeads, HS, cols, true);

/** The inverse of ggufToHfQkRows: HF row order -> interleaved GGUF row order, for exporting llama/mistral GGUFs. */
export const hfToGgufQkRows = (data: Float32Array, nHeads: number, HS: number, cols: number): Float32Array =>
  permuteRows(data, nHeads, HS, cols, false);
