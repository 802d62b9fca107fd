// GGUF metadata -> LlamaConfig, for general.architecture llama (also Mistral models, which llama.cpp's converter
// writes as llama), mistral, qwen2, qwen3, gemma2, gemma3, smollm3, granite, olmo2, gpt2 and phi3.
//
// We read the keys the way llama.cpp does (src/llama-model.cpp, llm_load_hparams), because GGUF files are made to
// be run by llama.cpp: what it ignores we ignore too (e.g. no sliding window for these architectures), and what
// changes its computation that we cannot reproduce (per-layer sizes, partial RoPE outside phi3, YaRN, LongRoPE,
// mixture of experts, output biases) is refused with a message instead of being silently dropped. Llama 3.x's
// rope_freqs tensor is read back as the llama3 RoPE scaling it encodes (llama3ScalingFromFactors).
//
// Shapes come from the tensors where the metadata is silent: the vocabulary size is the number of rows of
// token_embd.weight, and the embeddings are tied exactly when there is no output.weight tensor (stories260K has
// one, a copy of token_embd, so it is untied).

import { closeSync, openSync, readSync } from "node:fs";
import { inputError, unsupportedError } from "../errors.js";
import { ropeFreqFactors } from "../model/rope.js";
import { type LayerAttention, type LlamaConfig, type ModelFamily, type RopeScaling, gemmaLayerIsLocal, unsupportedArchitectureKind } from "../model/config.js";
import { type GgufFile, type GgufValue, metaArray } from "./gguf.js";

export const SUPPORTED_GGUF_ARCHITECTURES: readonly ModelFamily[] = ["llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3", "smollm3", "granite", "olmo2", "gpt2", "phi3"];
const DEFAULT_ROPE_THETA = 10000; // llama.cpp's default when rope.freq_base is absent

function describe(v: GgufValue | undefined): string {
  if (typeof v === "bigint") return v.toString();
  if (Array.isArray(v)) return `an array of ${v.length}`;
  return JSON.stringify(v);
}

class Meta {
  constructor(readonly f: GgufFile, readonly arch: string) {}
  private key(k: string): string {
    return `${this.arch}.${k}`;
  }
  private num(k: string): number | undefined {
    const key = this.key(k);
    const v = this.f.metadata.get(key);
    if (v === undefined) return undefined;
    if (typeof v === "number") return v;
    if (typeof v === "bigint" && v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= 0n) return Number(v);
    // llama.cpp allows some sizes to be per-layer arrays; we accept them only when every layer agrees.
    if (Array.isArray(v) && v.length > 0 && v.every((x) => x === v[0]) && typeof v[0] === "number") return v[0];
    if (Array.isArray(v))
      throw unsupportedError(
        `${this.f.path}: GGUF key ${key} differs between layers (${describe(v)}); tsdpo needs the same value in every layer`,
      );
    throw inputError(`${this.f.path}: GGUF key ${key} must be a number, got ${describe(v)}; the file is malformed`);
  }
  posInt(k: string, def?: number): number {
    const v = this.num(k);
    if (v === undefined) {
      if (def !== undefined) return def;
      throw inputError(`${this.f.path}: GGUF metadata key ${this.key(k)} is missing; re-convert the model`);
    }
    if (!Number.isSafeInteger(v) || v <= 0)
      throw inputError(`${this.f.path}: GGUF key ${this.key(k)} must be a positive integer, got ${v}`);
    return v;
  }
  posNumber(k: string, def?: number): number {
    const v = this.num(k);
    if (v === undefined) {
      if (def !== undefined) return def;
      throw inputError(`${this.f.path}: GGUF metadata key ${this.key(k)} is missing; re-convert the model`);
    }
    if (!Number.isFinite(v) || v <= 0)
      throw inputError(`${this.f.path}: GGUF key ${this.key(k)} must be a positive number, got ${v}`);
    return v;
  }
  optNumber(k: string): number | undefined {
    return this.num(k);
  }
  optString(k: string): string | undefined {
    const v = this.f.metadata.get(this.key(k));
    if (v === undefined) return undefined;
    if (typeof v !== "string")
      throw inputError(`${this.f.path}: GGUF key ${this.key(k)} must be a string, got ${describe(v)}`);
    return v;
  }
}

/**
 * A rope_freqs.weight tensor's HS/2 values, F32, from the file's buffer or (when readGgufHeader kept only a
 * prefix) straight from the file; null when it is not a plain F32 vector of that length.
 */
function ropeFreqValues(f: GgufFile, half: number): Float32Array | null {
  const t = f.tensors.get("rope_freqs.weight")!;
  if (t.type !== 0 || t.dims.length !== 1 || t.dims[0] !== half) return null;
  const start = f.dataOffset + t.offset, bytes = 4 * half;
  const raw = new Uint8Array(bytes); // a copy: a Buffer's slice would share (and view) the whole file
  if (start + bytes <= f.buffer.length) raw.set(f.buffer.subarray(start, start + bytes));
  else {
    try {
      const fd = openSync(f.path, "r");
      try {
        if (readSync(fd, raw, 0, bytes, start) !== bytes) return null;
      } finally {
        closeSync(fd);
      }
    } catch {
      return null; // unreadable: refused below as unrecognised
    }
  }
  return new Float32Array(raw.buffer);
}

/**
 * Llama 3.1+'s RoPE scaling, recovered from llama.cpp's rope_freqs divisors (its converter writes the tensor and no
 * metadata key). The divisors are 1 for short wavelengths, `factor` for long ones, and 1/((1−s)/factor + s) between,
 * with s = (original_max_position_embeddings/wavelength − low)/(high − low): linear in 1/wavelength, so the band's
 * points give orig/(high − low) and low/(high − low). With the original context (8192 for every Llama 3.x; other
 * powers of two are tried) that fixes low and high. The candidate is accepted only if it reproduces every divisor
 * to float32 precision, so a file tsdpo cannot describe exactly is still refused.
 */
export function llama3ScalingFromFactors(factors: Float32Array, HS: number, theta: number): RopeScaling | null {
  const half = HS / 2;
  const inv = Array.from({ length: half }, (_, i) => 1 / theta ** ((2 * i) / HS));
  const factor = factors.reduce((a, b) => Math.max(a, b), -Infinity);
  if (!(factor > 1) || factors.some((x) => !(x >= 1 - 1e-6))) return null;
  const band: { x: number; s: number }[] = [];
  factors.forEach((fi, i) => {
    if (Math.abs(fi - 1) > 1e-6 && Math.abs(fi - factor) > 1e-6 * factor)
      band.push({ x: inv[i]! / (2 * Math.PI), s: (1 / fi - 1 / factor) / (1 - 1 / factor) });
  });
  // the thresholds alone when no divisor falls in the band: Meta's published low 1, high 4
  let slope: number | null = null, intercept: number | null = null;
  if (band.length >= 2) {
    const n = band.length, mx = band.reduce((a, p) => a + p.x, 0) / n, ms = band.reduce((a, p) => a + p.s, 0) / n;
    slope = band.reduce((a, p) => a + (p.x - mx) * (p.s - ms), 0) / band.reduce((a, p) => a + (p.x - mx) ** 2, 0);
    intercept = ms - slope * mx;
  }
  for (const orig of [8192, 4096, 16384, 2048, 32768, 65536, 1024]) {
    const candidates: [number, number][] = slope !== null && intercept !== null
      ? [[-intercept * (orig / slope), -intercept * (orig / slope) + orig / slope]]
      : [[1, 4]];
    for (const [low, high] of candidates) {
      if (!(low > 0 && high > low)) continue;
      const nice = (v: number): number => (Math.abs(v - Math.round(v * 4) / 4) < 1e-3 ? Math.round(v * 4) / 4 : v);
      const scaling: RopeScaling = { type: "llama3", factor, lowFreqFactor: nice(low), highFreqFactor: nice(high), originalMaxPositionEmbeddings: orig };
      const want = ropeFreqFactors({ HS, ropeTheta: theta, ropeScaling: scaling });
      if (want.every((w, i) => Math.abs(w - factors[i]!) <= 2e-6 * w)) return scaling;
    }
  }
  return null;
}

function ropeScaling(m: Meta, HS: number, theta: number): RopeScaling {
  const f = m.f;
  if (f.tensors.has("rope_freqs.weight")) {
    const factors = ropeFreqValues(f, HS / 2);
    const scaling = factors ? llama3ScalingFromFactors(factors, HS, theta) : null;
    if (scaling) return scaling;
    throw unsupportedError(
      `${f.path}: has a rope_freqs.weight tensor whose per-frequency divisors are not Llama 3's RoPE scaling (factor, ` +
        `low/high frequency factors, original context) as llama.cpp's converter writes it; tsdpo cannot reproduce ` +
        `them. Load the Hugging Face folder (config.json + safetensors) instead`,
    );
  }
  const type = m.optString("rope.scaling.type");
  if (type === undefined || type === "none") {
    // Older converters wrote only rope.scale_linear.
    const legacy = m.optNumber("rope.scale_linear");
    return legacy === undefined || legacy === 1 ? { type: "none" } : { type: "linear", factor: legacy };
  }
  if (type === "linear") {
    const factor = m.posNumber("rope.scaling.factor");
    return factor === 1 ? { type: "none" } : { type: "linear", factor };
  }
  throw unsupportedError(
    `${f.path}: GGUF key ${m.arch}.rope.scaling.type is ${JSON.stringify(type)}; tsdpo supports "none" and "linear"` +
      ` RoPE scaling in GGUF files, and Llama 3's as a rope_freqs.weight tensor`,
  );
}

/** Reads the architecture of a GGUF file into a LlamaConfig. */
export function llamaConfigFromGguf(f: GgufFile): LlamaConfig {
  const archValue = f.metadata.get("general.architecture");
  if (typeof archValue !== "string")
    throw inputError(`${f.path}: GGUF metadata key general.architecture is missing or not a string`);
  if (!(SUPPORTED_GGUF_ARCHITECTURES as readonly string[]).includes(archValue)) {
    const kind = unsupportedArchitectureKind(archValue);
    throw unsupportedError(
      kind
        ? `${f.path}: GGUF general.architecture ${JSON.stringify(archValue)} is ${kind}; tsdpo trains dense decoders only (${SUPPORTED_GGUF_ARCHITECTURES.join(", ")})`
        : `${f.path}: GGUF general.architecture ${JSON.stringify(archValue)} is not supported; tsdpo supports ${SUPPORTED_GGUF_ARCHITECTURES.join(", ")}`,
    );
  }
  const family = archValue as ModelFamily;
  const m = new Meta(f, family);

  const expertCount = m.optNumber("expert_count");
  if (expertCount !== undefined && expertCount > 0)
    throw unsupportedError(`${f.path}: mixture-of-experts models (${family}.expert_count ${expertCount}) are not supported`);
  // GPT-2 has a bias on every projection and LayerNorm (all required, as llama.cpp requires them); the others none
  // beyond q/k/v's (Qwen2), and Phi-3 not even those
  const gpt2 = family === "gpt2";
  const foreignBiases = gpt2 ? ["blk.0.ffn_gate.bias", "output.bias"]
    : ["blk.0.attn_output.bias", "blk.0.ffn_gate.bias", "blk.0.ffn_up.bias", "blk.0.ffn_down.bias", "output.bias",
      ...(family === "phi3" ? ["blk.0.attn_qkv.bias", "blk.0.attn_q.bias"] : [])];
  for (const t of foreignBiases)
    if (f.tensors.has(t)) throw unsupportedError(`${f.path}: tensor ${t} (a bias tsdpo's ${family} model lacks) is not supported`);

  const C = m.posInt("embedding_length");
  const L = m.posInt("block_count");
  const FF = m.posInt("feed_forward_length");
  const NH = m.posInt("attention.head_count");
  const NKV = m.posInt("attention.head_count_kv", NH);
  if (NH % NKV !== 0)
    throw inputError(`${f.path}: attention.head_count ${NH} is not a multiple of attention.head_count_kv ${NKV}`);
  if (!m.optNumber("attention.key_length") && C % NH !== 0)
    throw inputError(`${f.path}: embedding_length ${C} is not divisible by attention.head_count ${NH}`);
  const HS = m.posInt("attention.key_length", C / NH);
  const valueLength = m.posInt("attention.value_length", HS);
  if (valueLength !== HS)
    throw unsupportedError(`${f.path}: attention.value_length ${valueLength} differs from key_length ${HS}`);
  const ropeDims = m.posInt("rope.dimension_count", HS);
  // partial RoPE: phi3's (Phi-4-mini), which llama.cpp rotates NEOX-style over the first n_rot features as tsdpo does
  if (ropeDims !== HS && !(family === "phi3" && ropeDims < HS && ropeDims % 2 === 0))
    throw unsupportedError(
      `${f.path}: ${family}.rope.dimension_count is ${ropeDims} but the head size is ${HS}; partial RoPE is not supported${family === "phi3" ? " beyond an even width below the head size" : ` for ${family}`}`,
    );
  if (HS % 2 !== 0) throw inputError(`${f.path}: head size ${HS} must be even for RoPE`);

  // The embedding matrix is the truth about V; the token list may be shorter (unused padding rows) but not longer.
  const embd = f.tensors.get("token_embd.weight") ?? f.tensors.get("output.weight");
  if (!embd) throw inputError(`${f.path}: has neither token_embd.weight nor output.weight; is this a model file?`);
  if (embd.dims.length !== 2 || embd.dims[0] !== C)
    throw inputError(
      `${f.path}: tensor ${embd.name} has dims [${embd.dims.join(", ")}] but embedding_length is ${C} (expected [${C}, V])`,
    );
  const V = embd.dims[1]!;
  const tokens = metaArray(f, "tokenizer.ggml.tokens");
  if (tokens && tokens.length > V)
    throw inputError(
      `${f.path}: tokenizer.ggml.tokens has ${tokens.length} tokens but ${embd.name} has only ${V} rows`,
    );

  const cfg: LlamaConfig = {
    family,
    V,
    C,
    L,
    NH,
    NKV,
    HS,
    FF,
    ropeTheta: m.posNumber("rope.freq_base", DEFAULT_ROPE_THETA),
    ropeScaling: ropeScaling(m, HS, m.posNumber("rope.freq_base", DEFAULT_ROPE_THETA)),
    rmsEps: m.posNumber(gpt2 ? "attention.layer_norm_epsilon" : "attention.layer_norm_rms_epsilon"), // GPT-2's LayerNorm eps
    tiedEmbeddings: !f.tensors.has("output.weight"),
    qkvBias: gpt2 || f.tensors.has("blk.0.attn_q.bias"),
    qkNorm: f.tensors.has("blk.0.attn_q_norm.weight"),
    maxSeqLen: m.posInt("context_length"),
    slidingWindow: null,
    ...(ropeDims !== HS ? { ropeDim: ropeDims } : {}),
  };
  switch (family) {
    case "gemma2":
    case "gemma3":
      return gemmaFromGguf(m, cfg, family);
    case "smollm3":
      // llama.cpp's smollm3 has no key for its NoPE layers: every 4th layer (n_no_rope_layer_step) skips RoPE
      checkPerLayerCount(f, family, cfg.L);
      return { ...cfg, layers: Array.from({ length: cfg.L }, (_, l) => ({ window: null, rope: (l + 1) % 4 !== 0, ropeTheta: cfg.ropeTheta, ropeScaling: cfg.ropeScaling })) };
    case "granite": {
      // llama.cpp: a missing (or 0) attention.scale means 1/√HS, a missing residual or embedding scale means 1
      const opt = (key: string): number | undefined => {
        const v = m.optNumber(key);
        return v === undefined || v === 0 ? undefined : m.posNumber(key);
      };
      return {
        ...cfg,
        embedScale: opt("embedding_scale") ?? 1,
        attnScale: opt("attention.scale") ?? 1 / Math.sqrt(cfg.HS),
        residualScale: opt("residual_scale") ?? 1,
        logitScale: m.posNumber("logit_scale"),
      };
    }
    case "gpt2":
      return gpt2FromGguf(m, cfg);
    case "phi3":
      return phi3FromGguf(m, cfg);
    case "olmo2":
      if (m.optNumber("attention.sliding_window") !== undefined)
        throw unsupportedError(`${f.path}: an olmo2 GGUF with a sliding window (OLMo 3) is not supported yet`);
      if (!cfg.qkNorm) throw inputError(`${f.path}: an olmo2 GGUF needs attn_q_norm / attn_k_norm tensors`);
      return { ...cfg, norms: "post", qkNormScope: "projection" };
    default:
      return cfg;
  }
}

/**
 * llama.cpp's gpt2 (src/models/gpt2.cpp): learned positions (position_embd, one row per context_length position),
 * LayerNorms with biases (eps attention.layer_norm_epsilon), attn_qkv with its bias, biases on attn_output, ffn_up
 * and ffn_down, a GELU MLP without a gate, no RoPE. Its converter writes no output.weight (GPT-2 ties it to
 * token_embd); tsdpo's GPT-2 is tied as well, so a file with one is refused.
 */
function gpt2FromGguf(m: Meta, cfg: LlamaConfig): LlamaConfig {
  const { f } = m;
  if (!cfg.tiedEmbeddings) throw unsupportedError(`${f.path}: a gpt2 GGUF with an output.weight tensor is not supported (GPT-2 ties its output layer to token_embd)`);
  if (cfg.NKV !== cfg.NH || cfg.HS * cfg.NH !== cfg.C)
    throw unsupportedError(`${f.path}: a gpt2 GGUF with head_count_kv ${cfg.NKV} or a head size ${cfg.HS} other than embedding_length / head_count is not GPT-2`);
  return {
    ...cfg,
    ropeTheta: DEFAULT_ROPE_THETA, ropeScaling: { type: "none" }, // unused: positions are learned
    normKind: "layer", positions: "learned", mlp: "plain", linearBiases: true, activation: "gelu_tanh",
  };
}

/**
 * llama.cpp's phi3 (src/models/phi3.cpp): Llama's computation with NEOX RoPE, q/k/v in attn_qkv (or separate), and
 * gate and up stacked in ffn_up (io/gguflayout.ts). Its attention.sliding_window key is read and then disabled
 * ("Phi SWA is currently disabled"), so llama.cpp attends to the whole context and so does tsdpo on a phi3 GGUF.
 * LongRoPE (Phi-3-mini-128k, Phi-3.5) is stored as rope_factors_long / rope_factors_short tensors, which tsdpo does
 * not read yet: such a file is refused rather than rotated without its factors.
 */
function phi3FromGguf(m: Meta, cfg: LlamaConfig): LlamaConfig {
  const { f } = m;
  for (const t of ["rope_factors_long.weight", "rope_factors_short.weight"])
    if (f.tensors.has(t))
      throw unsupportedError(`${f.path}: a phi3 GGUF with LongRoPE factors (tensor ${t}) is not supported yet; load the Hugging Face folder instead`);
  return cfg;
}

/**
 * Before a per-layer list is built: block_count is checked against the tensors only after the config is read, so a
 * corrupt one must not become a huge allocation here.
 */
function checkPerLayerCount(f: GgufFile, family: string, L: number): void {
  if (L > 65536) throw inputError(`${f.path}: GGUF key ${family}.block_count is ${L}; no model has more than 65536 layers, so the file is corrupt`);
}

/**
 * The attention scale llama.cpp uses for a gemma2/gemma3 GGUF, which has no key for query_pre_attn_scalar: 1/√(C/NH)
 * for the 27B models (46 and 62 layers), else 1/√HS. The exporter refuses a model this rule would misdescribe.
 */
export function llamaCppGemmaAttnScale(family: "gemma2" | "gemma3", L: number, C: number, NH: number, HS: number): number {
  return L === (family === "gemma2" ? 46 : 62) ? 1 / Math.sqrt(C / NH) : 1 / Math.sqrt(HS);
}

/**
 * llama.cpp's reading of a gemma2/gemma3 file (src/models/gemma2.cpp, gemma3.cpp): local layers every
 * sliding_window_pattern (default 2 and 6) with window attention.sliding_window (Gemma 2 default 4096; a Gemma 3
 * without the key has no local layers), Gemma 2's soft-caps (defaults 50 and 30), Gemma 3's local RoPE base
 * rope.freq_base_swa (default 10000, unscaled), and the attention scale it derives from the shapes.
 */
function gemmaFromGguf(m: Meta, cfg: LlamaConfig, family: "gemma2" | "gemma3"): LlamaConfig {
  const { f } = m;
  if (!cfg.tiedEmbeddings) throw unsupportedError(`${f.path}: a ${family} GGUF with an output.weight tensor is not supported (Gemma ties its output layer to token_embd)`);
  if (cfg.qkNorm !== (family === "gemma3"))
    throw inputError(`${f.path}: a ${family} GGUF ${family === "gemma3" ? "needs" : "must not have"} attn_q_norm / attn_k_norm tensors`);
  const window = family === "gemma2" ? m.posInt("attention.sliding_window", 4096) : m.optNumber("attention.sliding_window");
  const patternValue = f.metadata.get(`${family}.attention.sliding_window_pattern`);
  if (Array.isArray(patternValue))
    throw unsupportedError(`${f.path}: ${family}.attention.sliding_window_pattern is a per-layer array; tsdpo reads the repeating pattern (a number) only`);
  const pattern = m.posInt("attention.sliding_window_pattern", family === "gemma2" ? 2 : 6);
  const hasLocal = window !== undefined && window > 0;
  if (hasLocal && !Number.isSafeInteger(window)) throw inputError(`${f.path}: ${family}.attention.sliding_window must be a positive integer, got ${window}`);
  const localTheta = family === "gemma3" ? m.posNumber("rope.freq_base_swa", 10000) : cfg.ropeTheta;
  const localScaling: RopeScaling = family === "gemma3" ? { type: "none" } : cfg.ropeScaling;
  checkPerLayerCount(f, family, cfg.L);
  const layers: LayerAttention[] = Array.from({ length: cfg.L }, (_, l) =>
    hasLocal && gemmaLayerIsLocal(l, pattern)
      ? { window: window!, rope: true, ropeTheta: localTheta, ropeScaling: localScaling }
      : { window: null, rope: true, ropeTheta: cfg.ropeTheta, ropeScaling: cfg.ropeScaling },
  );
  const cap = (key: string, def: number): number => {
    const v = m.optNumber(key);
    if (v === undefined) return def;
    if (!(Number.isFinite(v) && v >= 0)) throw inputError(`${f.path}: GGUF key ${family}.${key} must be a number ≥ 0, got ${v}`);
    return v;
  };
  const attnScale = llamaCppGemmaAttnScale(family, cfg.L, cfg.C, cfg.NH, cfg.HS);
  return {
    ...cfg,
    slidingWindow: hasLocal ? window! : null,
    layers,
    norms: "sandwich",
    normOffset: 1,
    activation: "gelu_tanh",
    embedScale: Math.sqrt(cfg.C),
    attnScale,
    attnSoftcap: family === "gemma2" ? cap("attn_logit_softcapping", 50) : 0,
    finalSoftcap: cap("final_logit_softcapping", family === "gemma2" ? 30 : 0),
  };
}
