// Export to a GGUF v3 file that llama.cpp (and so ollama, LM Studio, node-llama-cpp) loads and runs: the metadata
// llama.cpp's llm_load_hparams reads, the vocabulary, and the weights in F32 or F16.
//
// This is the exact inverse of io/load.ts's loadGgufModel (test/gguf-export.test.ts checks the round trip):
// - general.architecture is "llama" for the llama and mistral families (llama.cpp's converter writes Mistral
//   models as llama), the family's own name for the others (qwen2, qwen3, gemma2, gemma3, smollm3, granite, olmo2,
//   gpt2, phi3). A mistral-family model therefore loads back as family llama;
//   the computation is the same. Its sliding window is not written: llama.cpp's llama architecture has none (its
//   converter drops it as well), so beyond the window llama.cpp attends to more tokens than the model was trained
//   with. exportGguf reports that in its notes.
// - Tensor names come from io/names.ts (ggufTensorName); dims are written innermost first, so the row-major
//   [out][in] bytes go out unchanged. GPT-2 and Phi-3 fuse projections as llama.cpp's converter does (q, k, v in
//   attn_qkv; Phi-3's gate over up in ffn_up): io/gguflayout.ts stacks their rows. For llama/mistral the rows of
//   attn_q / attn_k (and their biases) are permuted back to llama.cpp's interleaved RoPE order (hfToGgufQkRows), the
//   inverse of what the loader undoes.
// - Tied embeddings: no output.weight, which is how llama.cpp and the loader recognise them.
// - RoPE scaling: linear is written as rope.scaling.type/factor. Llama-3 scaling ("llama3", Llama 3.1+) has no
//   metadata key in llama.cpp: its converter writes a rope_freqs.weight tensor of HS/2 per-frequency divisors, and
//   llama.cpp divides each rotation frequency by them. We write the same tensor, computed from tsdpo's own RoPE
//   frequencies (model/rope.ts) as unscaled / scaled, so llama.cpp rotates exactly as tsdpo does; tsdpo's GGUF loader
//   reads the tensor back as the llama3 scaling it encodes (io/ggufconfig.ts).
// - Gemma 2 / Gemma 3 are written as llama.cpp's gemma2 / gemma3: norms as 1 + w (llama.cpp multiplies by the stored
//   weight), the local layers' window and pattern, the soft-caps, and Gemma 3's local RoPE base (rope.freq_base_swa);
//   rope.freq_base and any linear scaling belong to the global layers. llama.cpp derives the attention scale from
//   the shapes (1/√HS, or 1/√(C/NH) for the 27B models); a model whose query_pre_attn_scalar says otherwise is refused.
// - F16 export stores matrices in F16 and keeps 1-D tensors (norms, biases, rope_freqs) in F32, as llama.cpp's
//   converter does for --outtype f16; general.file_type says which (0 all F32, 1 mostly F16).
// - LoRA: a model whose adapters are on is written merged, as the Hugging Face export does.
// - GPT-2 is written with the keys of llama.cpp's gpt2 (LayerNorm eps, no RoPE keys, position_embd); Phi-3 with
//   phi3's, its sliding window as attention.sliding_window, which llama.cpp reads and disables (a note says so),
//   and its partial RoPE (Phi-4-mini) as rope.dimension_count. LongRoPE (llama.cpp's rope_factors_long/short
//   tensors) is not written yet, and refused.
// - Tokenizer: a GGUF-sourced model gets its source file's tokenizer.* keys copied with their types; an
//   HF-sourced one gets its tokenizer.json converted (export/ggufvocab.ts), with the family's tokenizer.ggml.pre.
//
// The output is deterministic (no dates, fixed key and tensor order), so the same model always gives the same
// bytes; test/gguf-export.test.ts relies on that to tie committed llama.cpp numbers to one exact file.

import { basename, resolve } from "node:path";
import { TsdpoError, inputError, unsupportedError } from "../errors.js";
import { metaString, readGguf } from "../io/gguf.js";
import { type GgufMetaValue, type GgufTensorToWrite, gv, writeGguf } from "../io/ggufwriter.js";
import type { LoadedModel } from "../io/load.js";
import { llamaCppGemmaAttnScale } from "../io/ggufconfig.js";
import { ggufLayout } from "../io/gguflayout.js";
import { ggufNormShift, ggufQkPermuted, hfToGgufQkRows } from "../io/names.js";
import { type LlamaConfig, type ModelFamily, decoderOptions, gemmaWindowPattern, layerAttention } from "../model/config.js";
import { exportedWeights } from "./hf.js";
import { type QuantMix, quantTypeFor } from "./quanttypes.js";
import { GGML_TYPE_ID, type QuantType, quantizeRow, rowBytes } from "../quant/ggml.js";
import { ropeFreqFactors, rotaryDim } from "../model/rope.js";
import { ggufVocabFromGguf, ggufVocabFromHf } from "./ggufvocab.js";

export interface GgufExportOptions {
  /** F32 or F16 weights, or a quantised mix chosen per tensor as llama.cpp's quantiser does (export/quanttypes.ts). */
  dtype: "F32" | "F16" | "Q8_0" | "Q4_K_M" | "Q6_K";
  /** general.name; default: the source GGUF's general.name, else the model file or folder name. */
  name?: string;
}

export interface GgufExportResult {
  path: string;
  bytes: number;
  tensors: number;
  /** Things the user should know about the file (e.g. a sliding window llama.cpp will not apply). */
  notes: string[];
}

const F16_MAX = 65504; // the largest finite half; from 65520 up, values round to infinity

/** GGUF architecture name for a family (see the header for why mistral is llama). */
export function ggufArchitecture(family: ModelFamily): Exclude<ModelFamily, "mistral"> {
  switch (family) {
    case "llama":
    case "mistral":
      return "llama";
    case "qwen2":
    case "qwen3":
    case "gemma2":
    case "gemma3":
    case "smollm3":
    case "granite":
    case "olmo2":
    case "gpt2":
    case "phi3":
      return family;
    default: {
      const never: never = family;
      throw unsupportedError(`GGUF export of model family ${String(never)} is not supported`);
    }
  }
}

export { ropeFreqFactors }; // (defined beside the other RoPE tables; tests import it from here)

/**
 * Why exportGguf would refuse a model of this config (what llama.cpp's architecture for it cannot express), or null
 * when it exports: the checks of the export without the writing, for callers that only suggest a GGUF.
 */
export function ggufExportRefusal(cfg: LlamaConfig): string | null {
  try {
    hyperparameters(cfg, ggufArchitecture(cfg.family));
    return null;
  } catch (e) {
    if (e instanceof TsdpoError && e.kind === "unsupported") return e.message;
    throw e;
  }
}

function hyperparameters(cfg: LlamaConfig, arch: string): Array<[string, GgufMetaValue]> {
  const k = (s: string): string => `${arch}.${s}`;
  if (cfg.family === "gpt2") return gpt2Hyperparameters(cfg, k);
  const out: Array<[string, GgufMetaValue]> = [
    [k("context_length"), gv.u32(cfg.maxSeqLen)],
    [k("embedding_length"), gv.u32(cfg.C)],
    [k("block_count"), gv.u32(cfg.L)],
    [k("feed_forward_length"), gv.u32(cfg.FF)],
    [k("attention.head_count"), gv.u32(cfg.NH)],
    [k("attention.head_count_kv"), gv.u32(cfg.NKV)],
  ];
  // llama.cpp assumes a head size of C/NH unless told otherwise (Qwen3 and some Mistral models differ)
  if (cfg.C % cfg.NH !== 0 || cfg.C / cfg.NH !== cfg.HS)
    out.push([k("attention.key_length"), gv.u32(cfg.HS)], [k("attention.value_length"), gv.u32(cfg.HS)]);
  // Partial RoPE (Phi-4-mini) is rope.dimension_count < HS: llama.cpp's phi3 rotates the first n_rot features of each
  // head NEOX-style, pairs (i, i + n_rot/2) at theta^(−2i/n_rot), as tsdpo does. Only phi3 is checked against it
  // (the interleaved llama layout and the other families would need their own checks): refuse the rest.
  if (cfg.ropeDim !== undefined && cfg.ropeDim !== cfg.HS && cfg.family !== "phi3")
    throw unsupportedError(`GGUF export: partial RoPE (rotary width ${cfg.ropeDim} of head size ${cfg.HS}, partial_rotary_factor) is supported for phi3 only; export to Hugging Face format instead`);
  out.push(
    [k("attention.layer_norm_rms_epsilon"), gv.f32(cfg.rmsEps)],
    [k("rope.freq_base"), gv.f32(cfg.ropeTheta)],
    [k("rope.dimension_count"), gv.u32(rotaryDim(cfg))],
  );
  const s = cfg.ropeScaling;
  switch (s.type) {
    case "none":
    case "llama3": // written as the rope_freqs tensor
      break;
    case "linear":
      out.push([k("rope.scaling.type"), gv.str("linear")], [k("rope.scaling.factor"), gv.f32(s.factor)]);
      break;
    case "longrope":
      throw unsupportedError("GGUF export: LongRoPE scaling (rope_scaling longrope) is not supported yet; export to Hugging Face format instead");
    default: {
      const never: never = s;
      throw unsupportedError(`GGUF export: RoPE scaling ${JSON.stringify(never)} is not supported`);
    }
  }
  if (cfg.family === "gemma2" || cfg.family === "gemma3") out.push(...gemmaHyperparameters(cfg, cfg.family, k));
  else out.push(...otherHyperparameters(cfg, k));
  return out;
}

/**
 * llama.cpp's gpt2 keys, those its converter writes (GPT2Model.set_gguf_parameters): no head_count_kv (it defaults to
 * head_count), no RoPE keys, and the LayerNorm's attention.layer_norm_epsilon. After checking that the model is
 * GPT-2 as llama.cpp computes it: learned positions (position_embd has context_length rows), pre-LayerNorms with
 * biases, biases on every projection (attn_qkv's included), a tanh-GELU MLP without a gate (ggml_gelu is the tanh
 * form, as GPT-2's gelu_new), 1/√HS attention over NH = NKV heads of C/NH, and the output tied to token_embd.
 */
function gpt2Hyperparameters(cfg: LlamaConfig, k: (s: string) => string): Array<[string, GgufMetaValue]> {
  const o = decoderOptions(cfg);
  const cannot = (why: string): never => {
    throw unsupportedError(`GGUF export: llama.cpp's gpt2 architecture cannot express this model: ${why}`);
  };
  if (o.normKind !== "layer" || o.positions !== "learned" || o.mlp !== "plain" || !o.linearBiases || !cfg.qkvBias || o.activation !== "gelu_tanh" || o.norms !== "pre" || o.normOffset !== 0 || cfg.qkNorm)
    cannot("its norms, positions, MLP or biases are not GPT-2's");
  if (!cfg.tiedEmbeddings) cannot("its output layer is not tied to token_embd");
  if (cfg.NKV !== cfg.NH || cfg.NH * cfg.HS !== cfg.C) cannot(`its heads (NH ${cfg.NH}, NKV ${cfg.NKV}, HS ${cfg.HS}) are not C/NH-wide multi-head attention`);
  if (o.attnSoftcap > 0 || o.finalSoftcap > 0 || o.embedScale !== 1 || o.residualScale !== 1 || o.logitScale !== 1 || Math.abs(o.attnScale * Math.sqrt(cfg.HS) - 1) > 1e-12)
    cannot("it scales or soft-caps what GPT-2 does not");
  if (Array.from({ length: cfg.L }, (_, l) => layerAttention(cfg, l)).some((a) => a.window !== null))
    cannot("it has a sliding window");
  return [
    [k("context_length"), gv.u32(cfg.maxSeqLen)],
    [k("embedding_length"), gv.u32(cfg.C)],
    [k("block_count"), gv.u32(cfg.L)],
    [k("feed_forward_length"), gv.u32(cfg.FF)],
    [k("attention.head_count"), gv.u32(cfg.NH)],
    [k("attention.layer_norm_epsilon"), gv.f32(cfg.rmsEps)],
  ];
}

/**
 * The keys of the other families' options, after checking that llama.cpp's architecture computes what the model
 * does: Granite's four multipliers; SmolLM3's NoPE layers, which llama.cpp fixes at every 4th; OLMo 2's post-norms
 * and whole-projection q/k norms (implied by the architecture) and its untied output layer (llama.cpp requires
 * output.weight). Anything else must have Llama's values.
 */
function otherHyperparameters(cfg: LlamaConfig, k: (s: string) => string): Array<[string, GgufMetaValue]> {
  const o = decoderOptions(cfg);
  const cannot = (why: string): never => {
    throw unsupportedError(`GGUF export: llama.cpp's ${ggufArchitecture(cfg.family)} architecture cannot express this model: ${why}`);
  };
  const olmo2 = cfg.family === "olmo2", granite = cfg.family === "granite", phi3 = cfg.family === "phi3";
  if (o.norms !== (olmo2 ? "post" : "pre") || o.qkNormScope !== (olmo2 ? "projection" : "head") || o.normOffset !== 0 || o.activation !== "silu" ||
      o.normKind !== "rms" || o.positions !== "rope" || o.mlp !== "gated" || o.linearBiases)
    cannot("its norms or activation differ from the architecture's");
  if (o.attnSoftcap > 0 || o.finalSoftcap > 0) cannot("it soft-caps scores or logits");
  if (olmo2 && cfg.NH * cfg.HS !== cfg.C) cannot("llama.cpp's olmo2 sizes attn_q_norm by the embedding width, so NH·HS must equal C");
  if (olmo2 && cfg.tiedEmbeddings) cannot("llama.cpp's olmo2 requires an output.weight tensor, and the model ties its output layer to token_embd");
  if (phi3 && cfg.NH * cfg.HS !== cfg.C) cannot("llama.cpp's phi3 sizes attn_output and the q rows of attn_qkv by the embedding width, so NH·HS must equal C");
  if (phi3 && (cfg.qkvBias || cfg.qkNorm)) cannot("it has q/k/v biases or q/k norms, which Phi-3 has not");
  const layers = Array.from({ length: cfg.L }, (_, l) => layerAttention(cfg, l));
  const wantRope = (l: number): boolean => cfg.family !== "smollm3" || (l + 1) % 4 !== 0;
  if (layers.some((a, l) => a.rope !== wantRope(l)))
    cannot(cfg.family === "smollm3" ? "llama.cpp's smollm3 skips RoPE on every 4th layer and no other" : "it has layers without RoPE");
  if (layers.some((a) => a.ropeTheta !== cfg.ropeTheta || JSON.stringify(a.ropeScaling) !== JSON.stringify(cfg.ropeScaling)))
    cannot("its layers have different RoPE settings");
  if (!granite && (o.embedScale !== 1 || o.residualScale !== 1 || o.logitScale !== 1 || Math.abs(o.attnScale * Math.sqrt(cfg.HS) - 1) > 1e-12))
    cannot("it has Granite's multipliers");
  // Phi-3: the keys convert_hf_to_gguf.py writes (Phi3MiniModel); llama.cpp reads sliding_window and then disables
  // it (the exporter's notes say so), and the original context only matters with LongRoPE, which is refused above
  if (phi3)
    return [[k("rope.scaling.original_context_length"), gv.u32(cfg.maxSeqLen)], [k("attention.sliding_window"), gv.u32(cfg.slidingWindow ?? 0)]];
  if (!granite) return [];
  return [
    [k("embedding_scale"), gv.f32(o.embedScale)], [k("attention.scale"), gv.f32(o.attnScale)],
    [k("residual_scale"), gv.f32(o.residualScale)], [k("logit_scale"), gv.f32(o.logitScale)],
  ];
}

/** gemma2/gemma3 keys, or a refusal naming what llama.cpp's architecture cannot express. */
function gemmaHyperparameters(cfg: LlamaConfig, family: "gemma2" | "gemma3", k: (s: string) => string): Array<[string, GgufMetaValue]> {
  const o = decoderOptions(cfg);
  const cannot = (why: string): never => {
    throw unsupportedError(`GGUF export: llama.cpp's ${family} architecture cannot express this model: ${why}`);
  };
  const want = llamaCppGemmaAttnScale(family, cfg.L, cfg.C, cfg.NH, cfg.HS);
  if (Math.abs(o.attnScale - want) > 1e-7 * want)
    cannot(`its attention scale ${o.attnScale} (query_pre_attn_scalar ${(1 / o.attnScale ** 2).toPrecision(6)}) is not the ${want} llama.cpp derives from the shapes`);
  if (o.norms !== "sandwich" || o.normOffset !== 1 || o.activation !== "gelu_tanh" || !cfg.tiedEmbeddings)
    cannot("its norms, activation or untied output layer are not Gemma's");
  const layers = Array.from({ length: cfg.L }, (_, l) => layerAttention(cfg, l));
  const local = layers.filter((a) => a.window !== null), global = layers.filter((a) => a.window === null);
  const pattern = gemmaWindowPattern(cfg) ?? cannot("its local and global layers do not follow one repeating pattern");
  if (local.some((a) => a.window !== local[0]!.window)) cannot("its local layers have different windows");
  const g = global[0] ?? { ropeTheta: cfg.ropeTheta, ropeScaling: cfg.ropeScaling };
  if (global.some((a) => a.ropeTheta !== g.ropeTheta || JSON.stringify(a.ropeScaling) !== JSON.stringify(g.ropeScaling)) ||
      local.some((a) => a.ropeTheta !== local[0]!.ropeTheta || a.ropeScaling.type !== "none" && family === "gemma3"))
    cannot("layers of one kind have different RoPE settings");
  if (g.ropeTheta !== cfg.ropeTheta || JSON.stringify(g.ropeScaling) !== JSON.stringify(cfg.ropeScaling))
    cannot("rope_theta / rope_scaling must describe the global layers");
  const out: Array<[string, GgufMetaValue]> = [];
  if (local.length > 0)
    out.push([k("attention.sliding_window"), gv.u32(local[0]!.window!)], [k("attention.sliding_window_pattern"), gv.u32(pattern)]);
  if (family === "gemma2") {
    if (o.attnSoftcap <= 0 || o.finalSoftcap <= 0) cannot("llama.cpp always soft-caps Gemma 2's scores and logits; the model has no cap");
    if (local[0] && (local[0].ropeTheta !== g.ropeTheta || JSON.stringify(local[0].ropeScaling) !== JSON.stringify(g.ropeScaling)))
      cannot("Gemma 2's local and global layers share one RoPE in llama.cpp");
    out.push([k("attn_logit_softcapping"), gv.f32(o.attnSoftcap)], [k("final_logit_softcapping"), gv.f32(o.finalSoftcap)]);
  } else {
    if (o.attnSoftcap > 0) cannot("llama.cpp's gemma3 has no attention soft-cap");
    if (o.finalSoftcap > 0) out.push([k("final_logit_softcapping"), gv.f32(o.finalSoftcap)]);
    if (local[0]) out.push([k("rope.freq_base_swa"), gv.f32(local[0].ropeTheta)]);
  }
  return out;
}

function defaultName(loaded: LoadedModel, sourceName: string | undefined): string {
  if (sourceName !== undefined && sourceName !== "") return sourceName;
  const p = resolve(loaded.path);
  const base = basename(p).replace(/\.gguf$/i, "");
  // a run's final/ or checkpoint folder says little; name it after the run folder
  if (/^(final|step-\d+)$/.test(base)) return `${basename(resolve(p, base === "final" ? ".." : "../.."))}-${base}`;
  return base;
}

/** Writes `loaded` as a GGUF v3 file at outPath (atomically). */
export function exportGguf(loaded: LoadedModel, outPath: string, opts: GgufExportOptions = { dtype: "F32" }): GgufExportResult {
  const { tokenizer } = loaded;
  // A model with LoRA adapters switched on is exported merged (W + s·B·A), as export/hf.ts does.
  const model = exportedWeights(loaded.model);
  const cfg = model.cfg;
  if (!["F32", "F16", "Q8_0", "Q4_K_M", "Q6_K"].includes(opts.dtype))
    throw unsupportedError(`GGUF export: dtype ${String(opts.dtype)} is not supported (F32, F16, Q8_0, Q4_K_M or Q6_K)`);
  const mix: QuantMix | null = opts.dtype === "Q8_0" ? "q8_0" : opts.dtype === "Q4_K_M" ? "q4_k_m" : opts.dtype === "Q6_K" ? "q6_k" : null;
  const arch = ggufArchitecture(cfg.family);
  const notes: string[] = [];
  if (cfg.slidingWindow !== null && cfg.slidingWindow < cfg.maxSeqLen && arch !== "gemma2" && arch !== "gemma3")
    notes.push(
      (arch === "phi3"
        ? `the model's sliding window (${cfg.slidingWindow} tokens) is written as phi3.attention.sliding_window, but ` +
          `llama.cpp disables Phi's sliding window and attends to the whole context (as tsdpo does on the GGUF)`
        : `the model's sliding window (${cfg.slidingWindow} tokens) is not in the GGUF: llama.cpp's ${arch} architecture ` +
          `attends to the whole context`) + `, so outputs differ from tsdpo's beyond ${cfg.slidingWindow} tokens`,
    );

  let vocab: Array<[string, GgufMetaValue]>;
  let sourceName: string | undefined;
  if (loaded.format === "gguf") {
    sourceName = metaString(readGguf(loaded.path), "general.name");
    vocab = ggufVocabFromGguf(loaded.path, cfg.V);
  } else {
    vocab = ggufVocabFromHf(loaded.path, tokenizer, cfg.V, cfg.family);
  }

  const metadata: Array<[string, GgufMetaValue]> = [
    ["general.architecture", gv.str(arch)],
    ["general.name", gv.str(opts.name ?? defaultName(loaded, sourceName))],
    ["general.alignment", gv.u32(32)],
    // llama_ftype: ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q8_0 7, MOSTLY_Q4_K_M 15, MOSTLY_Q6_K 18
    ["general.file_type", gv.u32({ F32: 0, F16: 1, Q8_0: 7, Q4_K_M: 15, Q6_K: 18 }[opts.dtype])],
    ...(mix ? ([["general.quantization_version", gv.u32(2)]] as Array<[string, GgufMetaValue]>) : []),
    ...hyperparameters(cfg, arch),
    ...vocab,
  ];

  const tensors: GgufTensorToWrite[] = [];
  if (cfg.ropeScaling.type === "llama3")
    tensors.push({ name: "rope_freqs.weight", dims: [cfg.HS / 2], type: "F32", data: ropeFreqFactors(cfg) });
  const permuted = ggufQkPermuted(cfg.family);
  const entries = new Map(model.entries.map((e) => [e.name, e]));
  // one GGUF tensor per parameter, or per fused group (GPT-2's and Phi-3's attn_qkv, Phi-3's ffn_up): its parts'
  // rows one after the other (io/gguflayout.ts)
  for (const t of ggufLayout(cfg).tensors) {
    const name = t.name;
    const parts = t.parts.map((p) => {
      const e = entries.get(p)!;
      let data = model.params.subarray(e.offset, e.offset + e.size);
      const cols = e.shape.length === 2 ? e.shape[1]! : 1;
      if (permuted && /\.(wq|wk|bq|bk)$/.test(e.name)) {
        const heads = /\.(wq|bq)$/.test(e.name) ? cfg.NH : cfg.NKV;
        data = hfToGgufQkRows(Float32Array.from(data), heads, cfg.HS, cols);
      }
      const shift = ggufNormShift(cfg.family, e.name); // Gemma's norms are stored as 1 + w
      if (shift !== 0) data = Float32Array.from(data, (x) => x + shift);
      return data;
    });
    let f32: Float32Array;
    if (parts.length === 1 && parts[0] instanceof Float32Array) f32 = parts[0];
    else {
      f32 = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
      let off = 0;
      for (const p of parts) (f32.set(p, off), (off += p.length));
    }
    const dims = [...t.shape].reverse();
    if (mix) {
      const chosen = quantTypeFor(mix, name, dims, cfg.L, cfg.tiedEmbeddings);
      checkValues(loaded.path, name, f32, chosen === "F16" ? "F16" : "F32");
      if (chosen === "F32" || chosen === "F16") tensors.push({ name, dims, type: chosen, data: f32 });
      else tensors.push({ name, dims, type: "F32", data: new Float32Array(0), blocks: { bytes: quantizeMatrix(chosen, f32, t.shape[0]!, t.shape[1]!), blockType: GGML_TYPE_ID[chosen] } });
      continue;
    }
    const type = opts.dtype === "F16" && t.shape.length >= 2 ? "F16" : "F32";
    checkValues(loaded.path, name, f32, type);
    tensors.push({ name, dims, type, data: f32 });
  }
  const bytes = writeGguf(outPath, { metadata, tensors });
  return { path: outPath, bytes, tensors: tensors.length, notes };
}

/** A (rows, cols) float matrix as GGML blocks, row by row. */
function quantizeMatrix(type: QuantType, data: Float32Array, rows: number, cols: number): Uint8Array {
  const rb = rowBytes(type, cols);
  const out = new Uint8Array(rows * rb);
  for (let r = 0; r < rows; r++) quantizeRow(type, data, r * cols, cols, out, r * rb);
  return out;
}

function checkValues(source: string, tensor: string, data: Float32Array, type: "F32" | "F16"): void {
  for (let i = 0; i < data.length; i++) {
    const x = data[i]!;
    if (!Number.isFinite(x))
      throw inputError(`${source}: ${tensor} holds ${x} at index ${i}; a model with non-finite weights cannot be exported (was training diverging?)`);
    if (type === "F16" && Math.abs(x) >= 65520)
      throw unsupportedError(
        `${source}: ${tensor} holds ${x} at index ${i}, beyond F16's range (±${F16_MAX}); export with --dtype f32`,
      );
  }
}
