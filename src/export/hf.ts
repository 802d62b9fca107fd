// Export to a Hugging Face model folder: config.json, model.safetensors (sharded with an index above a size),
// tokenizer files and generation_config.json, which transformers' AutoModelForCausalLM / AutoTokenizer load.
// Q/K rows are already in HF's rotate-half order inside tsdpo (the GGUF loader un-permutes them).

import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { unsupportedError } from "../errors.js";
import { writeFileAtomic } from "../io/atomic.js";
import { hfConfigFromLlama } from "../io/hfconfig.js";
import type { LoadedModel } from "../io/load.js";
import { hfTensorName } from "../io/names.js";
import { fusedHfLayout } from "../io/hflayout.js";
import { type TensorToWrite, type WriteDtype, writeSafetensorsSharded } from "../io/safetensors.js";
import { hfTokenizerFilesFromGguf } from "../tokenizer/export.js";
import { type Model, cloneModel, floatCopy, paramView } from "../model/decoder.js";
import { referenceBackend } from "../backend/js/kernels.js";
import { mergeLora } from "../model/lora.js";

/**
 * The model as it is written: float32 throughout (quantised matrices dequantised) and, when its adapters are on,
 * with LoRA merged (W + s·B·A, what it computes with the adapters on). The merge is onto the dequantised base.
 */
export function exportedWeights(model: Model): Model {
  const merge = model.lora?.enabled === true;
  if (!merge && model.quant.size === 0) return model;
  const copy = model.quant.size > 0 ? floatCopy(referenceBackend, model) : cloneModel(model);
  if (merge) mergeLora(copy, model.lora!);
  return copy;
}

export interface HfExportOptions {
  dtype: WriteDtype;
  maxShardBytes: number; // shard above this many bytes of weights (transformers' default is 5 GB)
}

export const defaultHfExportOptions: HfExportOptions = { dtype: "F32", maxShardBytes: 5 * 1024 ** 3 };

const TORCH_DTYPE = { F32: "float32", F16: "float16", BF16: "bfloat16" } as const;

// The trainer exports the same loaded model at every checkpoint; converting its GGUF vocabulary means re-reading the
// whole file and rebuilding the merges, so do it once per loaded model.
const tokenizerFilesCache = new WeakMap<LoadedModel, Record<string, object> | null>();
function ggufTokenizerFiles(loaded: LoadedModel): Record<string, object> | null {
  if (!tokenizerFilesCache.has(loaded)) tokenizerFilesCache.set(loaded, hfTokenizerFilesFromGguf(loaded.path));
  return tokenizerFilesCache.get(loaded)!;
}

export function exportHf(loaded: LoadedModel, outDir: string, opts: HfExportOptions = defaultHfExportOptions): string[] {
  const { tokenizer } = loaded;
  // A model with LoRA adapters is exported merged: W + s·B·A, what it computes with the adapters on.
  const model = exportedWeights(loaded.model);
  mkdirSync(outDir, { recursive: true });
  const param = (name: string): Float32Array => Float32Array.from(paramView(model, name));
  const fused = fusedHfLayout(model.cfg); // GPT-2's Conv1D layout and c_attn, Phi-3's qkv_proj and gate_up_proj
  const hf = fused ? fused.toHf(model.cfg, param) : null;
  const tensors: TensorToWrite[] = fused
    ? fused.specs(model.cfg).map((s) => ({ name: s.name, shape: s.shape, data: hf!.get(s.name)! as Float32Array }))
    : model.entries.map((e) => ({ name: hfTensorName(e.name, model.cfg.family), shape: e.shape, data: param(e.name) }));
  const written: string[] = writeSafetensorsSharded(outDir, tensors, {
    dtype: opts.dtype,
    maxShardBytes: opts.maxShardBytes,
    metadata: { format: "pt" },
  });
  const config = hfConfigFromLlama(model.cfg, {
    bosTokenId: tokenizer.bosId,
    eosTokenId: tokenizer.eosId,
    torchDtype: TORCH_DTYPE[opts.dtype],
  });
  writeFileAtomic(join(outDir, "config.json"), JSON.stringify(config, null, 2) + "\n");
  const generation: Record<string, unknown> = { _from_model_config: true };
  if (tokenizer.bosId !== null) generation["bos_token_id"] = tokenizer.bosId;
  if (tokenizer.eosId !== null) generation["eos_token_id"] = tokenizer.eosId;
  writeFileAtomic(join(outDir, "generation_config.json"), JSON.stringify(generation, null, 2) + "\n");
  written.push("config.json", "generation_config.json");

  if (loaded.format === "hf") {
    for (const f of ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "chat_template.json"]) {
      const src = join(loaded.path, f);
      if (!existsSync(src)) continue;
      writeFileAtomic(join(outDir, f), readFileSync(src));
      written.push(f);
    }
  } else {
    const files = ggufTokenizerFiles(loaded);
    if (!files) throw unsupportedError(`${loaded.path}: cannot build a Hugging Face tokenizer.json from this GGUF vocabulary`);
    for (const [name, content] of Object.entries(files)) {
      writeFileAtomic(join(outDir, name), JSON.stringify(content, null, 2) + "\n");
      written.push(name);
    }
  }
  return written;
}
