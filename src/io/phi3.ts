// Phi-3's Hugging Face layout <-> tsdpo's parameters. Phi-3 keeps Llama's computation but fuses projections: one
// qkv_proj holds q, k and v stacked by rows ((NH + 2·NKV)·HS, C), and one gate_up_proj holds gate over up (2·FF, C).
// tsdpo keeps them as separate matrices for its kernels; the loader splits them by rows and the exporter stacks them
// back, without changing a value. Every other tensor has its Llama name (names.ts).

import type { Buf } from "../backend/contract.js";
import type { LlamaConfig } from "../model/config.js";
import { floatArrayLike } from "./dtype.js";
import { hfTensorName } from "./names.js";


/** The HF tensors of a Phi-3 model with their shapes, in Phi3ForCausalLM's state-dict order. */
export function phi3HfSpecs(cfg: LlamaConfig): { name: string; shape: number[] }[] {
  const { V, C, L, NH, NKV, HS, FF } = cfg;
  const specs = [{ name: "model.embed_tokens.weight", shape: [V, C] }];
  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}.`;
    specs.push(
      { name: p + "self_attn.o_proj.weight", shape: [C, NH * HS] },
      { name: p + "self_attn.qkv_proj.weight", shape: [(NH + 2 * NKV) * HS, C] },
      { name: p + "mlp.gate_up_proj.weight", shape: [2 * FF, C] },
      { name: p + "mlp.down_proj.weight", shape: [C, FF] },
      { name: p + "input_layernorm.weight", shape: [C] },
      { name: p + "post_attention_layernorm.weight", shape: [C] },
    );
  }
  specs.push({ name: "model.norm.weight", shape: [C] });
  if (!cfg.tiedEmbeddings) specs.push({ name: "lm_head.weight", shape: [V, C] });
  return specs;
}

/** tsdpo's parameters from Phi-3's HF tensors (`get` by HF name, shapes checked against phi3HfSpecs). */
export function phi3FromHf(cfg: LlamaConfig, get: (hfName: string) => Buf): Map<string, Buf> {
  const { C, L, NH, NKV, HS, FF } = cfg;
  const out = new Map<string, Buf>();
  const plain = (name: string): void => void out.set(name, get(hfTensorName(name, "llama")));
  plain("tok_embd");
  for (let l = 0; l < L; l++) {
    const t = `layers.${l}.`, h = `model.layers.${l}.`;
    const qkv = get(h + "self_attn.qkv_proj.weight"), gateUp = get(h + "mlp.gate_up_proj.weight");
    const q = NH * HS * C, kv = NKV * HS * C;
    out.set(t + "wq", qkv.slice(0, q)).set(t + "wk", qkv.slice(q, q + kv)).set(t + "wv", qkv.slice(q + kv, q + 2 * kv));
    out.set(t + "w_gate", gateUp.slice(0, FF * C)).set(t + "w_up", gateUp.slice(FF * C, 2 * FF * C));
    for (const n of ["attn_norm", "wo", "ffn_norm", "w_down"]) plain(t + n);
  }
  plain("out_norm");
  if (!cfg.tiedEmbeddings) plain("lm_head");
  return out;
}

/** The inverse of phi3FromHf: Phi-3's HF tensors from tsdpo's parameters (`get` by tsdpo name). */
export function phi3ToHf(cfg: LlamaConfig, get: (name: string) => Buf): Map<string, Buf> {
  const { L } = cfg;
  const out = new Map<string, Buf>();
  const plain = (name: string): void => void out.set(hfTensorName(name, "llama"), get(name));
  const stacked = (parts: Buf[]): Buf => {
    const m = floatArrayLike(parts[0]!, parts.reduce((a, p) => a + p.length, 0));
    let off = 0;
    for (const p of parts) {
      m.set(p, off);
      off += p.length;
    }
    return m;
  };
  plain("tok_embd");
  for (let l = 0; l < L; l++) {
    const t = `layers.${l}.`, h = `model.layers.${l}.`;
    out.set(h + "self_attn.qkv_proj.weight", stacked([get(t + "wq"), get(t + "wk"), get(t + "wv")]));
    out.set(h + "mlp.gate_up_proj.weight", stacked([get(t + "w_gate"), get(t + "w_up")]));
    for (const n of ["attn_norm", "wo", "ffn_norm", "w_down"]) plain(t + n);
  }
  plain("out_norm");
  if (!cfg.tiedEmbeddings) plain("lm_head");
  return out;
}
