// Real architectures (the config.json values of the published models) with deterministic random weights, for
// benchmarks: no download, the same numbers in every run and in any language (arange → sin, as the PyTorch
// fixtures do).
//
// Where each shape comes from: the model's config.json on the Hugging Face Hub (the repository named above each
// entry). The three larger presets were checked against copies of those files reachable offline: Llama-3.2-1B's in
// the public repositories kevinstephano/thunder_model_blocks (hf_llama/llama_config.py, Llama-3.2-1B-Instruct at
// commit 4e20de36, the same architecture as the base model) and Anthony-Lionetti/PyTorch-nn-Tinkering
// (llama_play/configs.py); Llama-3.2-3B's in citsjtu2020/LLM-Prof (sglang/Model_Config.md); Qwen2.5-1.5B's
// (the base model, not -Instruct, whose max_position_embeddings is 32768 instead) in Lightning-AI litgpt's config
// table and in a test that pins the file's revision 8faed761. ../shared/data holds no config.json of these models.

import { type LayerAttention, type LlamaConfig, decoderOptions, gemmaLayerIsLocal, paramSpecs } from "./config.js";
import { type FloatCtor, type Model, createModel } from "./decoder.js";

// Llama 3's RoPE: theta 500000 and the "llama3" frequency scaling of the 3.2 models (rope_scaling in config.json).
const LLAMA32_ROPE = {
  ropeTheta: 500000,
  ropeScaling: { type: "llama3", factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 },
} as const;

/** Gemma's options (hfconfig.ts's gemmaConfigFromHf gives the same for a real config.json). */
function gemmaLayers(L: number, pattern: number, window: number, localTheta: number, globalTheta: number): LayerAttention[] {
  return Array.from({ length: L }, (_, l) =>
    gemmaLayerIsLocal(l, pattern)
      ? { window, rope: true, ropeTheta: localTheta, ropeScaling: { type: "none" } }
      : { window: null, rope: true, ropeTheta: globalTheta, ropeScaling: { type: "none" } },
  );
}
const GEMMA = { norms: "sandwich", normOffset: 1, activation: "gelu_tanh", attnScale: 1 / 16 } as const; // query_pre_attn_scalar 256

export const PRESETS: Record<string, LlamaConfig> = {
  // HuggingFaceTB/SmolLM-135M
  "smollm-135m": {
    family: "llama", V: 49152, C: 576, L: 30, NH: 9, NKV: 3, HS: 64, FF: 1536, ropeTheta: 10000, ropeScaling: { type: "none" },
    rmsEps: 1e-5, tiedEmbeddings: true, qkvBias: false, qkNorm: false, maxSeqLen: 2048, slidingWindow: null,
  },
  // Qwen/Qwen2.5-0.5B
  "qwen2.5-0.5b": {
    family: "qwen2", V: 151936, C: 896, L: 24, NH: 14, NKV: 2, HS: 64, FF: 4864, ropeTheta: 1000000, ropeScaling: { type: "none" },
    rmsEps: 1e-6, tiedEmbeddings: true, qkvBias: true, qkNorm: false, maxSeqLen: 32768, slidingWindow: null,
  },
  // meta-llama/Llama-3.2-1B: head_dim 64 = 2048 / 32, tie_word_embeddings true, max_position_embeddings 131072
  "llama3.2-1b": {
    family: "llama", V: 128256, C: 2048, L: 16, NH: 32, NKV: 8, HS: 64, FF: 8192, ...LLAMA32_ROPE,
    rmsEps: 1e-5, tiedEmbeddings: true, qkvBias: false, qkNorm: false, maxSeqLen: 131072, slidingWindow: null,
  },
  // meta-llama/Llama-3.2-3B: head_dim 128 = 3072 / 24, tie_word_embeddings true, max_position_embeddings 131072
  "llama3.2-3b": {
    family: "llama", V: 128256, C: 3072, L: 28, NH: 24, NKV: 8, HS: 128, FF: 8192, ...LLAMA32_ROPE,
    rmsEps: 1e-5, tiedEmbeddings: true, qkvBias: false, qkNorm: false, maxSeqLen: 131072, slidingWindow: null,
  },
  // Qwen/Qwen2.5-1.5B: head size 128 = 1536 / 12, q/k/v biases, tied embeddings, max_position_embeddings 131072,
  // use_sliding_window false
  "qwen2.5-1.5b": {
    family: "qwen2", V: 151936, C: 1536, L: 28, NH: 12, NKV: 2, HS: 128, FF: 8960, ropeTheta: 1000000, ropeScaling: { type: "none" },
    rmsEps: 1e-6, tiedEmbeddings: true, qkvBias: true, qkNorm: false, maxSeqLen: 131072, slidingWindow: null,
  },
  // google/gemma-2-2b cut to 4 of its 26 layers (real widths and vocabulary, so a full fp32 DPO step fits 24 GB):
  // head_dim 256, query_pre_attn_scalar 256, sliding_window 4096 on every other layer from layer 0, soft-caps 50 / 30
  "gemma2-2b": {
    family: "gemma2", V: 256000, C: 2304, L: 4, NH: 8, NKV: 4, HS: 256, FF: 9216, ropeTheta: 10000, ropeScaling: { type: "none" },
    rmsEps: 1e-6, tiedEmbeddings: true, qkvBias: false, qkNorm: false, maxSeqLen: 8192, slidingWindow: 4096,
    layers: gemmaLayers(4, 2, 4096, 10000, 10000), ...GEMMA, embedScale: Math.sqrt(2304), attnSoftcap: 50, finalSoftcap: 30,
  },
  // google/gemma-3-1b-pt cut to 4 of its 26 layers: head_dim 256, q/k norms, sliding_window 512 with
  // sliding_window_pattern 6 (so the four kept layers are all local, RoPE base 10000; the global ones use 1e6)
  "gemma3-1b": {
    family: "gemma3", V: 262144, C: 1152, L: 4, NH: 4, NKV: 1, HS: 256, FF: 6912, ropeTheta: 1000000, ropeScaling: { type: "none" },
    rmsEps: 1e-6, tiedEmbeddings: true, qkvBias: false, qkNorm: true, maxSeqLen: 32768, slidingWindow: 512,
    layers: gemmaLayers(4, 6, 512, 10000, 1000000), ...GEMMA, embedScale: Math.sqrt(1152), attnSoftcap: 0, finalSoftcap: 0,
  },
  // microsoft/Phi-3-mini-4k-instruct cut to 4 of its 32 layers: head_dim 96 = 3072 / 32, no GQA, untied,
  // sliding_window 2047, max_position_embeddings 4096 (q, k, v and gate, up are fused in its files, not here)
  "phi3-mini": {
    family: "phi3", V: 32064, C: 3072, L: 4, NH: 32, NKV: 32, HS: 96, FF: 8192, ropeTheta: 10000, ropeScaling: { type: "none" },
    rmsEps: 1e-5, tiedEmbeddings: false, qkvBias: false, qkNorm: false, maxSeqLen: 4096, slidingWindow: 2047,
  },
  // openai-community/gpt2 (GPT-2 small, all 12 layers): n_embd 768, n_head 12, n_inner 3072 (4·768), n_positions 1024,
  // layer_norm_epsilon 1e-5, tied output; learned positions, LayerNorms with biases, a GELU MLP, biases everywhere
  "gpt2-small": {
    family: "gpt2", V: 50257, C: 768, L: 12, NH: 12, NKV: 12, HS: 64, FF: 3072, ropeTheta: 10000, ropeScaling: { type: "none" },
    rmsEps: 1e-5, tiedEmbeddings: true, qkvBias: true, qkNorm: false, maxSeqLen: 1024, slidingWindow: null,
    normKind: "layer", positions: "learned", mlp: "plain", linearBiases: true, activation: "gelu_tanh",
  },
  // karpathy/tinyllamas stories260K (the shipped model's shape)
  stories260k: {
    family: "llama", V: 512, C: 64, L: 5, NH: 8, NKV: 4, HS: 8, FF: 172, ropeTheta: 10000, ropeScaling: { type: "none" },
    rmsEps: 1e-5, tiedEmbeddings: false, qkvBias: false, qkNorm: false, maxSeqLen: 512, slidingWindow: null,
  },
};

/** The preset called `name`, or an error listing the known ones. */
export function presetConfig(name: string): LlamaConfig {
  const cfg = PRESETS[name];
  if (!cfg) throw new Error(`unknown preset ${name}; known: ${Object.keys(PRESETS).join(", ")}`);
  return cfg;
}

/**
 * Whether parameter `name` gets the norm formula 1 + 0.1·sin(…) (0.1·sin(…) where norms multiply by 1 + w, as
 * Gemma's do, so that the effective weight is the same) rather than 0.02·sin(…).
 */
export const isPresetNorm = (name: string): boolean => /norm$/.test(name);

/**
 * A preset model; parameter tensor k (paramSpecs order) gets 0.02·sin(0.37·i + 1.3·k) at element i, norm weights
 * 1 + 0.1·sin(…), each computed in float64 and rounded once to the arena's type.
 */
export function presetModel(name: string, ctor: FloatCtor = Float32Array): Model {
  const model = createModel(presetConfig(name), ctor);
  fillPresetArena(model);
  return model;
}

/** Fills every tensor of the arena with its preset values (tensor k is its place in paramSpecs, arena or not). */
export function fillPresetArena(model: Model): void {
  const index = new Map(paramSpecs(model.cfg).map((s, k) => [s.name, k]));
  const one = decoderOptions(model.cfg).normOffset === 1 ? 0 : 1;
  for (const e of model.entries) {
    const k = index.get(e.name)!;
    const v = model.params.subarray(e.offset, e.offset + e.size);
    if (isPresetNorm(e.name)) for (let i = 0; i < e.size; i++) v[i] = one + 0.1 * Math.sin(0.37 * i + 1.3 * k);
    else if (v instanceof Float32Array) presetValues(v, k, 0, e.size);
    else for (let i = 0; i < e.size; i++) v[i] = 0.02 * Math.sin(0.37 * i + 1.3 * k);
  }
}

// presetValues below computes sin(x_i) for a run of J elements from one Math.sin/Math.cos pair at the run's start
// xb and tables of sin and cos at a_j = 0.37·j: x_i = xb + a_j + δ exactly, where δ = (x_i − xb) − a_j is the
// rounding of x_i and xb (|δ| < 1e-7 for i < 2^29), so sin x_i = sin(xb + a_j) + δ·cos(xb + a_j) + O(δ²) with an
// error below 2e-14 all told. Math.sin of a large argument is slow (the full reduction modulo π/2 runs past about
// 1.6·10^6: ~100 ns an element, minutes for a 3B model); this is a few multiplies.
const J = 256;
const A = new Float64Array(J), SIN_A = new Float64Array(J), COS_A = new Float64Array(J);
for (let j = 0; j < J; j++) {
  A[j] = 0.37 * j;
  SIN_A[j] = Math.sin(A[j]!);
  COS_A[j] = Math.cos(A[j]!);
}
/** Half-width of the interval around the fast value that must round to one float32 (0.02 × 2e-14 is 4e-16). */
const BRACKET = 1e-13;

/**
 * dst[j] = float32(0.02·Math.sin(0.37·(i0 + j) + 1.3·k)) for j < n: elements i0 .. i0 + n − 1 of preset tensor k,
 * bit for bit what the float64 formula rounded to float32 gives. Each fast value is used only when the interval
 * ±BRACKET around it, which holds the exact value, rounds to a single float32 (rounding is monotonic); otherwise
 * (about 2 elements in 10^4) Math.sin itself is called.
 */
export function presetValues(dst: Float32Array, k: number, i0: number, n: number): void {
  const fr = Math.fround;
  const c = 1.3 * k;
  for (let j0 = 0; j0 < n; j0 += J) {
    const ib = i0 + j0;
    const xb = 0.37 * ib + c;
    const sb = Math.sin(xb), cb = Math.cos(xb);
    const m = Math.min(J, n - j0);
    for (let j = 0; j < m; j++) {
      const x = 0.37 * (ib + j) + c; // the very double presetModel's formula takes the sine of
      const delta = x - xb - A[j]!;
      const s = sb * COS_A[j]! + cb * SIN_A[j]!;
      const co = cb * COS_A[j]! - sb * SIN_A[j]!;
      const v = 0.02 * (s + delta * co);
      const lo = fr(v - BRACKET);
      dst[j0 + j] = lo === fr(v + BRACKET) ? lo : 0.02 * Math.sin(x);
    }
  }
}
