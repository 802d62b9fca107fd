// GPT-2's Hugging Face layout <-> tsdpo's parameters. GPT-2 is the one family whose tensors do not map one to one:
// its Conv1D weights are stored [in, out] (tsdpo keeps nn.Linear's [out, in]), and one c_attn holds q, k and v side
// by side ([C, 3C], bias [3C]). So instead of names.ts's renaming, the loader and the exporter go through these two
// functions, which split and transpose (and join and transpose back) without changing a value.
//
// HF names (GPT2LMHeadModel): transformer.wte / wpe, transformer.h.{l}.ln_1, attn.c_attn, attn.c_proj, ln_2,
// mlp.c_fc, mlp.c_proj, transformer.ln_f (LayerNorms with weight and bias), and lm_head tied to wte.

import type { Buf } from "../backend/contract.js";
import type { LlamaConfig } from "../model/config.js";
import { floatArrayLike } from "./dtype.js";


/** The HF tensors of a GPT-2 model with their shapes, in the order GPT2LMHeadModel's state dict lists them. */
export function gpt2HfSpecs(cfg: LlamaConfig): { name: string; shape: number[] }[] {
  const { V, C, L, FF, maxSeqLen } = cfg;
  const specs = [{ name: "transformer.wte.weight", shape: [V, C] }, { name: "transformer.wpe.weight", shape: [maxSeqLen, C] }];
  for (let l = 0; l < L; l++) {
    const p = `transformer.h.${l}.`;
    specs.push(
      { name: p + "ln_1.weight", shape: [C] }, { name: p + "ln_1.bias", shape: [C] },
      { name: p + "attn.c_attn.weight", shape: [C, 3 * C] }, { name: p + "attn.c_attn.bias", shape: [3 * C] },
      { name: p + "attn.c_proj.weight", shape: [C, C] }, { name: p + "attn.c_proj.bias", shape: [C] },
      { name: p + "ln_2.weight", shape: [C] }, { name: p + "ln_2.bias", shape: [C] },
      { name: p + "mlp.c_fc.weight", shape: [C, FF] }, { name: p + "mlp.c_fc.bias", shape: [FF] },
      { name: p + "mlp.c_proj.weight", shape: [FF, C] }, { name: p + "mlp.c_proj.bias", shape: [C] },
    );
  }
  specs.push({ name: "transformer.ln_f.weight", shape: [C] }, { name: "transformer.ln_f.bias", shape: [C] });
  return specs;
}

/** Columns c0..c0+n of a row-major (rows, cols) matrix, transposed: the (n, rows) [out][in] matrix tsdpo keeps. */
function columnsTransposed(src: Buf, rows: number, cols: number, c0: number, n: number): Buf {
  const out = floatArrayLike(src, n * rows);
  for (let r = 0; r < rows; r++) for (let j = 0; j < n; j++) out[j * rows + r] = src[r * cols + c0 + j]!;
  return out;
}

/**
 * tsdpo's parameters (by tsdpo name) from GPT-2's HF tensors, which `get` returns as float32 by HF name (shapes
 * already checked against gpt2HfSpecs).
 */
export function gpt2FromHf(cfg: LlamaConfig, get: (hfName: string) => Buf): Map<string, Buf> {
  const { C, L, FF } = cfg;
  const out = new Map<string, Buf>([["tok_embd", get("transformer.wte.weight")], ["pos_embd", get("transformer.wpe.weight")]]);
  for (let l = 0; l < L; l++) {
    const h = `transformer.h.${l}.`, t = `layers.${l}.`;
    const qkv = get(h + "attn.c_attn.weight"), qkvBias = get(h + "attn.c_attn.bias");
    out.set(t + "attn_norm", get(h + "ln_1.weight")).set(t + "attn_norm_b", get(h + "ln_1.bias"));
    ["wq", "wk", "wv"].forEach((w, i) => out.set(t + w, columnsTransposed(qkv, C, 3 * C, i * C, C)));
    ["bq", "bk", "bv"].forEach((b, i) => out.set(t + b, qkvBias.slice(i * C, (i + 1) * C)));
    out.set(t + "wo", columnsTransposed(get(h + "attn.c_proj.weight"), C, C, 0, C)).set(t + "bo", get(h + "attn.c_proj.bias"));
    out.set(t + "ffn_norm", get(h + "ln_2.weight")).set(t + "ffn_norm_b", get(h + "ln_2.bias"));
    out.set(t + "w_up", columnsTransposed(get(h + "mlp.c_fc.weight"), C, FF, 0, FF)).set(t + "b_up", get(h + "mlp.c_fc.bias"));
    out.set(t + "w_down", columnsTransposed(get(h + "mlp.c_proj.weight"), FF, C, 0, C)).set(t + "b_down", get(h + "mlp.c_proj.bias"));
  }
  out.set("out_norm", get("transformer.ln_f.weight")).set("out_norm_b", get("transformer.ln_f.bias"));
  return out;
}

/** The inverse of gpt2FromHf: GPT-2's HF tensors (by HF name) from tsdpo's parameters (`get` by tsdpo name). */
export function gpt2ToHf(cfg: LlamaConfig, get: (name: string) => Buf): Map<string, Buf> {
  const { C, L, FF } = cfg;
  // an [out][in] (n, rows) matrix back into columns c0..c0+n of a (rows, cols) one
  const intoColumns = (dst: Buf, src: Buf, rows: number, cols: number, c0: number, n: number): void => {
    for (let r = 0; r < rows; r++) for (let j = 0; j < n; j++) dst[r * cols + c0 + j] = src[j * rows + r]!;
  };
  const transposed = (src: Buf, rows: number, cols: number): Buf => {
    const m = floatArrayLike(src, rows * cols);
    intoColumns(m, src, rows, cols, 0, cols);
    return m;
  };
  const out = new Map<string, Buf>([["transformer.wte.weight", get("tok_embd")], ["transformer.wpe.weight", get("pos_embd")]]);
  for (let l = 0; l < L; l++) {
    const h = `transformer.h.${l}.`, t = `layers.${l}.`;
    const wq = get(t + "wq");
    const qkv = floatArrayLike(wq, C * 3 * C), qkvBias = floatArrayLike(wq, 3 * C);
    ["wq", "wk", "wv"].forEach((w, i) => intoColumns(qkv, get(t + w), C, 3 * C, i * C, C));
    ["bq", "bk", "bv"].forEach((b, i) => qkvBias.set(get(t + b), i * C));
    out.set(h + "ln_1.weight", get(t + "attn_norm")).set(h + "ln_1.bias", get(t + "attn_norm_b"));
    out.set(h + "attn.c_attn.weight", qkv).set(h + "attn.c_attn.bias", qkvBias);
    out.set(h + "attn.c_proj.weight", transposed(get(t + "wo"), C, C)).set(h + "attn.c_proj.bias", get(t + "bo"));
    out.set(h + "ln_2.weight", get(t + "ffn_norm")).set(h + "ln_2.bias", get(t + "ffn_norm_b"));
    out.set(h + "mlp.c_fc.weight", transposed(get(t + "w_up"), C, FF)).set(h + "mlp.c_fc.bias", get(t + "b_up"));
    out.set(h + "mlp.c_proj.weight", transposed(get(t + "w_down"), FF, C)).set(h + "mlp.c_proj.bias", get(t + "b_down"));
  }
  out.set("transformer.ln_f.weight", get("out_norm")).set("transformer.ln_f.bias", get("out_norm_b"));
  return out;
}
