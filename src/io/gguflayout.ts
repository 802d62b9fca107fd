// GGUF tensors <-> tsdpo's parameters. Most families map one to one (names.ts ggufTensorName). GPT-2 and Phi-3 are
// written as llama.cpp's converter writes them (convert_hf_to_gguf.py GPT2Model, Phi3MiniModel), with projections
// fused:
// - attn_qkv: q, k and v stacked by rows ((NH + 2·NKV)·HS, C), and for GPT-2 its bias stacked alike. llama.cpp's
//   gpt2 requires it (GPT-2's c_attn, transposed); its phi3 takes either attn_qkv or separate attn_q / attn_k /
//   attn_v (create_tensor_qkv), and the converter writes attn_qkv (Phi-3's qkv_proj), so the exporter does and the
//   loader reads both.
// - ffn_up (Phi-3): gate over up (2·FF, C), Phi-3's gate_up_proj. llama.cpp's phi3 has no ffn_gate: its SwiGLU
//   (LLM_FFN_SWIGLU on the whole ffn_up output) is silu of the first half times the second.
// Matrices are [out][in] and stacked by rows, so each part is a contiguous run of rows of the fused tensor: splitting
// and joining moves whole rows, whatever the tensor's type (F32, F16, or quantised blocks, which never straddle rows).

import type { LlamaConfig } from "../model/config.js";
import { paramSpecs } from "../model/config.js";
import { ggufTensorName } from "./names.js";

/** One GGUF tensor: its name, its row-major shape, and the tsdpo parameters it holds, stacked by rows in this order. */
export interface GgufTensorSpec {
  name: string;
  shape: number[];
  parts: string[];
}

export interface GgufLayout {
  /** The GGUF tensors of the model's parameters, in file order (paramSpecs order, a fused tensor at its first part). */
  tensors: GgufTensorSpec[];
  /** For each tsdpo parameter: its GGUF tensor and the first of its rows there (0 unless fused). */
  where: Map<string, { tensor: string; row0: number }>;
}

/** Whether GGUF files of this family fuse q, k and v into attn_qkv when llama.cpp's converter writes them. */
export const ggufFusesQkv = (cfg: LlamaConfig): boolean => cfg.family === "gpt2" || cfg.family === "phi3";

/**
 * The GGUF tensors of `cfg`'s parameters. `fusedQkv` (default: as the converter writes the family) says whether q, k
 * and v go into one attn_qkv; a phi3 file may hold them separately, as llama.cpp accepts.
 */
export function ggufLayout(cfg: LlamaConfig, fusedQkv = ggufFusesQkv(cfg)): GgufLayout {
  const fusedUp = cfg.family === "phi3";
  const tensors: GgufTensorSpec[] = [];
  const byName = new Map<string, GgufTensorSpec>();
  const where = new Map<string, { tensor: string; row0: number }>();
  for (const s of paramSpecs(cfg)) {
    const m = /^layers\.(\d+)\.(\w+)$/.exec(s.name);
    let name = ggufTensorName(s.name);
    if (m && fusedQkv && /^(wq|wk|wv)$/.test(m[2]!)) name = `blk.${m[1]}.attn_qkv.weight`;
    else if (m && fusedQkv && /^(bq|bk|bv)$/.test(m[2]!)) name = `blk.${m[1]}.attn_qkv.bias`;
    else if (m && fusedUp && /^(w_gate|w_up)$/.test(m[2]!)) name = `blk.${m[1]}.ffn_up.weight`;
    const t = byName.get(name);
    if (!t) {
      const spec = { name, shape: [...s.shape], parts: [s.name] };
      tensors.push(spec);
      byName.set(name, spec);
      where.set(s.name, { tensor: name, row0: 0 });
    } else {
      where.set(s.name, { tensor: name, row0: t.shape[0]! });
      t.shape[0] += s.shape[0]!;
      t.parts.push(s.name);
    }
  }
  return { tensors, where };
}
