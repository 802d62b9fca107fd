// Hugging Face config.json <-> LlamaConfig, for model_type llama (also SmolLM), mistral, qwen2, qwen3, gemma2,
// gemma3_text, and gemma3 (the multimodal checkpoint, whose text_config is read and whose vision tower is skipped).
//
// Defaults are the ones transformers' LlamaConfig / MistralConfig / Qwen2Config / Qwen3Config constructors apply,
// so a config.json that transformers loads means the same model here. The five sizes (vocab_size, hidden_size,
// intermediate_size, num_hidden_layers, num_attention_heads) are required even though transformers has defaults
// for them too: a config.json without them is not a real checkpoint's, and silently building a 7B-shaped model
// would only fail later with a confusing shape error. A key set to null counts as absent (transformers writes
// null for unset optional keys such as num_key_value_heads or head_dim); sliding_window null means "no window".
//
// transformers 5 may write RoPE settings as "rope_parameters" {rope_type, rope_theta, ...} instead of the older
// "rope_theta" + "rope_scaling"; both forms are read. We write the older form, which both major versions load.

import { readFileSync } from "node:fs";
import { describeJsonError, describeValue, inputError, TsdpoError, unsupportedError } from "../errors.js";
import {
  type LayerAttention, type LlamaConfig, type ModelFamily, type RopeScaling, decoderOptions, gemmaLayerIsLocal, gemmaWindowPattern, layerAttention,
  unsupportedArchitectureKind,
} from "../model/config.js";
import { longropeAttentionFactor } from "../model/rope.js";

/** The model_type values read (gemma3_text and gemma3 both become family gemma3). */
export const SUPPORTED_MODEL_TYPES: readonly string[] = [
  "llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3_text", "gemma3", "smollm3", "granite", "olmo2", "gpt2", "phi3",
];

const ARCHITECTURES: Record<ModelFamily, string> = {
  llama: "LlamaForCausalLM",
  mistral: "MistralForCausalLM",
  qwen2: "Qwen2ForCausalLM",
  qwen3: "Qwen3ForCausalLM",
  gemma2: "Gemma2ForCausalLM",
  gemma3: "Gemma3ForCausalLM",
  smollm3: "SmolLM3ForCausalLM",
  granite: "GraniteForCausalLM",
  olmo2: "Olmo2ForCausalLM",
  gpt2: "GPT2LMHeadModel",
  phi3: "Phi3ForCausalLM",
};
/** The model_type a family is written as (a multimodal gemma3 checkpoint is exported as its text model). */
const MODEL_TYPE: Record<ModelFamily, string> = {
  llama: "llama", mistral: "mistral", qwen2: "qwen2", qwen3: "qwen3", gemma2: "gemma2", gemma3: "gemma3_text",
  smollm3: "smollm3", granite: "granite", olmo2: "olmo2", gpt2: "gpt2", phi3: "phi3",
};

// transformers' constructor defaults for the keys we let default.
const DEFAULTS: Record<ModelFamily, { maxPos: number; headDim: number | null; slidingWindow: number | null }> = {
  llama: { maxPos: 2048, headDim: null, slidingWindow: null },
  mistral: { maxPos: 4096 * 32, headDim: null, slidingWindow: 4096 },
  qwen2: { maxPos: 32768, headDim: null, slidingWindow: 4096 },
  qwen3: { maxPos: 32768, headDim: 128, slidingWindow: 4096 },
  gemma2: { maxPos: 8192, headDim: 256, slidingWindow: 4096 },
  gemma3: { maxPos: 131072, headDim: 256, slidingWindow: 4096 },
  smollm3: { maxPos: 32768, headDim: null, slidingWindow: null },
  granite: { maxPos: 2048, headDim: null, slidingWindow: null },
  olmo2: { maxPos: 2048, headDim: null, slidingWindow: null },
  gpt2: { maxPos: 1024, headDim: null, slidingWindow: null },
  phi3: { maxPos: 4096, headDim: null, slidingWindow: null },
};
const SMOLLM3_NO_ROPE_INTERVAL = 4; // SmolLM3Config.no_rope_layer_interval: every 4th layer has no RoPE
// Gemma2Config / Gemma3TextConfig defaults that real checkpoints rely on: a multimodal Gemma 3's text_config often
// leaves out vocab_size, the head counts and query_pre_attn_scalar.
const GEMMA_DEFAULTS = {
  gemma2: { vocab: 256000, heads: 8, kvHeads: 4, queryPreAttnScalar: 256, attnSoftcap: 50, finalSoftcap: 30, pattern: 2 },
  gemma3: { vocab: 262208, heads: 8, kvHeads: 4, queryPreAttnScalar: 256, attnSoftcap: null, finalSoftcap: null, pattern: 6 },
} as const;
const GEMMA3_LOCAL_ROPE_THETA = 10000; // Gemma3TextConfig.rope_local_base_freq
const DEFAULT_RMS_EPS = 1e-6;
const DEFAULT_ROPE_THETA = 10000;
const DEFAULT_MAX_WINDOW_LAYERS = 28; // Qwen2Config / Qwen3Config
const PHI3_ORIGINAL_MAX_POS = 4096; // Phi3Config.original_max_position_embeddings

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

class Reader {
  constructor(readonly obj: Json, readonly path: string, readonly prefix = "") {}
  private fail(key: string, want: string): TsdpoError {
    return inputError(
      `${this.path}: key "${this.prefix}${key}" must be ${want}, got ${describeValue(this.obj[key])}; fix config.json`,
    );
  }
  has(key: string): boolean {
    return this.obj[key] !== undefined && this.obj[key] !== null;
  }
  posInt(key: string, def?: number): number {
    const v = this.obj[key];
    if ((v === undefined || v === null) && def !== undefined) return def;
    if (v === undefined) throw inputError(`${this.path}: required key "${this.prefix}${key}" is missing`);
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v <= 0) throw this.fail(key, "a positive integer");
    return v;
  }
  int(key: string, def: number): number {
    const v = this.obj[key];
    if (v === undefined || v === null) return def;
    if (typeof v !== "number" || !Number.isSafeInteger(v)) throw this.fail(key, "an integer");
    return v;
  }
  posNumber(key: string, def?: number): number {
    const v = this.obj[key];
    if ((v === undefined || v === null) && def !== undefined) return def;
    if (v === undefined) throw inputError(`${this.path}: required key "${this.prefix}${key}" is missing`);
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) throw this.fail(key, "a positive number");
    return v;
  }
  bool(key: string, def: boolean): boolean {
    const v = this.obj[key];
    if (v === undefined || v === null) return def;
    if (typeof v !== "boolean") throw this.fail(key, "true or false");
    return v;
  }
  str(key: string, def?: string): string {
    const v = this.obj[key];
    if ((v === undefined || v === null) && def !== undefined) return def;
    if (v === undefined) throw inputError(`${this.path}: required key "${this.prefix}${key}" is missing`);
    if (typeof v !== "string") throw this.fail(key, "a string");
    return v;
  }
  nullablePosInt(key: string, def: number | null): number | null {
    const v = this.obj[key];
    if (v === undefined) return def;
    if (v === null) return null;
    return this.posInt(key);
  }
  /** A positive number, null (none, returned as 0) or absent (def; null means none). */
  capOrNone(key: string, def: number | null): number {
    const v = this.obj[key];
    if (v === undefined) return def ?? 0;
    if (v === null) return 0;
    return this.posNumber(key);
  }
}

/**
 * rope_scaling as config.json writes it (null: none). maxPos (max_position_embeddings) decides whether LongRoPE's
 * attention factor is transformers' default for it, which is then left out as real checkpoints leave it out.
 */
function ropeScalingJson(s: RopeScaling, maxPos: number): Record<string, unknown> | null {
  switch (s.type) {
    case "none": return null;
    case "longrope":
      // As Phi checkpoints write it: transformers 4's Phi3Config accepts exactly these three keys (with "type", not
      // "rope_type"), and original_max_position_embeddings goes at the top level (hfConfigFromLlama). An attention
      // factor other than the default has no other place; only transformers 5 reads it.
      return {
        type: "longrope",
        short_factor: s.shortFactor,
        long_factor: s.longFactor,
        ...(s.attentionFactor === longropeAttentionFactor(maxPos, s.originalMaxPositionEmbeddings) ? {} : { attention_factor: s.attentionFactor }),
      };
    case "linear": return { rope_type: "linear", factor: s.factor };
    case "llama3":
      return {
        rope_type: "llama3",
        factor: s.factor,
        low_freq_factor: s.lowFreqFactor,
        high_freq_factor: s.highFreqFactor,
        original_max_position_embeddings: s.originalMaxPositionEmbeddings,
      };
  }
}

/**
 * What LongRoPE needs from outside rope_scaling (Phi-3): max_position_embeddings, the top-level
 * original_max_position_embeddings (null: absent) and its default, and the number of frequencies RD/2.
 */
interface LongropeContext {
  maxPos: number;
  originalMax: number | null;
  originalMaxDefault: number;
  half: number;
}

function ropeScalingFrom(r: Reader, key: string, obj: unknown, longrope?: LongropeContext): RopeScaling {
  if (obj === undefined || obj === null) return { type: "none" };
  if (!isObject(obj))
    throw inputError(`${r.path}: key "${key}" must be null or an object, got ${describeValue(obj)}; fix config.json`);
  const s = new Reader(obj, r.path, `${key}.`);
  let kind = s.has("rope_type") ? s.str("rope_type") : s.has("type") ? s.str("type") : "default";
  // Phi3Config reads the early Phi-3 names "su" and "yarn" as longrope
  if (longrope && (kind === "su" || kind === "yarn")) kind = "longrope";
  switch (kind) {
    case "default":
      return { type: "none" };
    case "linear":
      return { type: "linear", factor: s.posNumber("factor") };
    case "llama3":
      return {
        type: "llama3",
        factor: s.posNumber("factor"),
        lowFreqFactor: s.posNumber("low_freq_factor"),
        highFreqFactor: s.posNumber("high_freq_factor"),
        originalMaxPositionEmbeddings: s.posInt("original_max_position_embeddings"),
      };
    case "longrope":
      if (longrope) return longropeFrom(r, s, key, longrope);
      throw unsupportedError(`${r.path}: ${key} type "longrope" is supported for model_type phi3 only`);
    default:
      throw unsupportedError(
        `${r.path}: ${key} type ${JSON.stringify(kind)} is not supported; tsdpo supports RoPE scaling ` +
          `"default", "linear", "llama3" and (phi3) "longrope"`,
      );
  }
}

/**
 * LongRoPE as transformers reads it (modeling_rope_utils._compute_longrope_parameters): short_factor and long_factor
 * hold one divisor per frequency; original_max_position_embeddings comes from rope_scaling (transformers 5) or the
 * top level (Phi3Config, default 4096); the attention factor is attention_factor, or √(1 + ln s / ln original) with
 * s = factor, or max_position_embeddings / original when rope_scaling has no factor. transformers 4.x takes s from
 * max_position_embeddings / original even when factor is given, so a factor that disagrees is refused rather than
 * read one way or the other.
 */
function longropeFrom(r: Reader, s: Reader, key: string, ctx: LongropeContext): RopeScaling {
  const factors = (name: string): number[] => {
    const v = s.obj[name];
    if (!Array.isArray(v) || v.length !== ctx.half || v.some((x) => typeof x !== "number" || !Number.isFinite(x) || x <= 0))
      throw inputError(`${r.path}: key "${key}.${name}" must be a list of ${ctx.half} positive numbers (one per rotary frequency), got ${describeValue(v)}; fix config.json`);
    return v as number[];
  };
  const shortFactor = factors("short_factor"), longFactor = factors("long_factor");
  const inner = s.has("original_max_position_embeddings") ? s.posInt("original_max_position_embeddings") : null;
  if (inner !== null && ctx.originalMax !== null && inner !== ctx.originalMax)
    throw inputError(`${r.path}: original_max_position_embeddings is ${ctx.originalMax} at the top level but ${inner} in "${key}"; fix config.json`);
  const original = inner ?? ctx.originalMax ?? ctx.originalMaxDefault;
  let attentionFactor: number;
  if (s.has("attention_factor")) attentionFactor = s.posNumber("attention_factor");
  else {
    const extension = ctx.maxPos / original;
    if (s.has("factor") && s.posNumber("factor") !== extension)
      throw unsupportedError(
        `${r.path}: "${key}.factor" ${s.posNumber("factor")} differs from max_position_embeddings / original_max_position_embeddings = ${extension}, ` +
          `and transformers versions disagree on which sets LongRoPE's attention factor; add "attention_factor" to "${key}"`,
      );
    attentionFactor = longropeAttentionFactor(ctx.maxPos, original);
  }
  return { type: "longrope", shortFactor, longFactor, originalMaxPositionEmbeddings: original, attentionFactor };
}

/**
 * A per-layer list of L entries. L is not yet checked against the weights when the config is read (the loader does
 * that, with a better message, for models whose layers are all alike), so a corrupt count must not become a huge
 * allocation here.
 */
function perLayer<T>(r: Reader, L: number, f: (l: number) => T): T[] {
  if (L > MAX_LAYERS)
    throw inputError(`${r.path}: key "${r.prefix}num_hidden_layers" is ${L}; no model has more than ${MAX_LAYERS} layers, so the config is corrupt`);
  return Array.from({ length: L }, (_, l) => f(l));
}
const MAX_LAYERS = 65536;

/**
 * Qwen2/Qwen3: sliding attention applies only to layers >= max_window_layers, and only with use_sliding_window.
 * Returns each layer's window (null: global attention), or one window for all layers.
 */
function qwenLayerWindows(r: Reader, L: number, family: ModelFamily): (number | null)[] | number | null {
  const layerTypes = r.obj["layer_types"];
  if (Array.isArray(layerTypes)) {
    // Newer transformers write the per-layer outcome explicitly; it is authoritative.
    if (layerTypes.length !== L)
      throw inputError(`${r.path}: key "layer_types" has ${layerTypes.length} entries but num_hidden_layers is ${L}`);
    const kinds = new Set(layerTypes);
    for (const k of kinds)
      if (k !== "full_attention" && k !== "sliding_attention")
        throw unsupportedError(`${r.path}: layer_types entry ${describeValue(k)} is not supported`);
    if (!kinds.has("sliding_attention")) return null;
    const window = r.posInt("sliding_window");
    return kinds.size === 1 ? window : layerTypes.map((k) => (k === "sliding_attention" ? window : null));
  }
  if (!r.bool("use_sliding_window", false)) return null;
  const window = r.nullablePosInt("sliding_window", DEFAULTS[family].slidingWindow);
  if (window === null) return null;
  const maxWindowLayers = r.int("max_window_layers", DEFAULT_MAX_WINDOW_LAYERS);
  if (maxWindowLayers <= 0) return window;
  if (maxWindowLayers >= L) return null;
  return perLayer(r, L, (l) => (l >= maxWindowLayers ? window : null));
}

/** The model-wide window and, when the layers differ, the per-layer attention that says which layers slide. */
function windowsToConfig(windows: (number | null)[] | number | null, ropeTheta: number, ropeScaling: RopeScaling): Pick<LlamaConfig, "slidingWindow" | "layers"> {
  if (!Array.isArray(windows)) return { slidingWindow: windows };
  return {
    slidingWindow: windows.find((w) => w !== null) ?? null,
    layers: windows.map((window) => ({ window, rope: true, ropeTheta, ropeScaling })),
  };
}

/** Parses a transformers config.json object. `path` is only used in error messages. */
export function llamaConfigFromHf(configJson: unknown, path: string): LlamaConfig {
  if (!isObject(configJson)) throw inputError(`${path}: config.json must hold a JSON object`);
  const r = new Reader(configJson, path);
  const modelType = configJson["model_type"];
  if (typeof modelType !== "string")
    throw inputError(`${path}: key "model_type" is missing or not a string; is this a transformers config.json?`);
  if (!SUPPORTED_MODEL_TYPES.includes(modelType)) {
    const kind = unsupportedArchitectureKind(modelType);
    throw unsupportedError(
      kind
        ? `${path}: model_type ${JSON.stringify(modelType)} is ${kind}; tsdpo trains dense decoders only (${SUPPORTED_MODEL_TYPES.join(", ")})`
        : `${path}: model_type ${JSON.stringify(modelType)} is not supported; tsdpo supports ${SUPPORTED_MODEL_TYPES.join(", ")} (SmolLM is "llama")`,
    );
  }
  if (modelType === "gemma2" || modelType === "gemma3_text") return gemmaConfigFromHf(r, modelType === "gemma2" ? "gemma2" : "gemma3");
  if (modelType === "gpt2") return gpt2ConfigFromHf(r);
  if (modelType === "gemma3") {
    const text = configJson["text_config"];
    if (!isObject(text)) throw inputError(`${path}: model_type "gemma3" needs a "text_config" object (the language model's settings); fix config.json`);
    return gemmaConfigFromHf(new Reader(text, path, "text_config."), "gemma3");
  }
  const family = modelType as ModelFamily;
  const d = DEFAULTS[family];

  const V = r.posInt("vocab_size");
  const C = r.posInt("hidden_size");
  const FF = r.posInt("intermediate_size");
  const L = r.posInt("num_hidden_layers");
  const NH = r.posInt("num_attention_heads");
  const NKV = r.posInt("num_key_value_heads", NH);
  if (NH % NKV !== 0)
    throw inputError(
      `${path}: num_attention_heads ${NH} is not a multiple of num_key_value_heads ${NKV}; fix config.json`,
    );
  let HS: number;
  if (r.has("head_dim") || d.headDim !== null) HS = r.posInt("head_dim", d.headDim ?? undefined);
  else {
    if (C % NH !== 0)
      throw inputError(
        `${path}: hidden_size ${C} is not divisible by num_attention_heads ${NH} and there is no "head_dim"; fix config.json`,
      );
    HS = C / NH;
  }
  if (HS % 2 !== 0) throw inputError(`${path}: head size ${HS} must be even for RoPE; fix config.json`);
  const params = configJson["rope_parameters"];
  // Phi-4-mini's partial RoPE: int(head size · partial_rotary_factor) features rotate (transformers 5 may keep the
  // factor in rope_parameters)
  let ropeDim = HS;
  if (family === "phi3") {
    const inParams = isObject(params) && params["partial_rotary_factor"] !== undefined && params["partial_rotary_factor"] !== null;
    const factor = inParams ? new Reader(params, path, "rope_parameters.").posNumber("partial_rotary_factor") : r.posNumber("partial_rotary_factor", 1);
    ropeDim = Math.trunc(HS * factor);
    if (factor > 1 || ropeDim < 2 || ropeDim % 2 !== 0)
      throw unsupportedError(`${path}: partial_rotary_factor ${factor} gives ${ropeDim} rotary features of head size ${HS}; tsdpo needs an even number from 2 to the head size`);
  }
  const maxSeqLen = r.posInt("max_position_embeddings", d.maxPos);
  const longrope: LongropeContext | undefined = family === "phi3"
    ? { maxPos: maxSeqLen, originalMax: r.has("original_max_position_embeddings") ? r.posInt("original_max_position_embeddings") : null, originalMaxDefault: PHI3_ORIGINAL_MAX_POS, half: ropeDim / 2 }
    : undefined;

  const act = r.str("hidden_act", "silu");
  if (act !== "silu" && act !== "swish")
    throw unsupportedError(`${path}: hidden_act ${JSON.stringify(act)} is not supported; tsdpo implements SwiGLU (silu)`);

  let ropeTheta: number;
  let ropeScaling: RopeScaling;
  if (params !== undefined && params !== null) {
    if (!isObject(params)) throw inputError(`${path}: key "rope_parameters" must be an object; fix config.json`);
    if (Object.values(params).some(isObject))
      throw unsupportedError(`${path}: per-layer-type rope_parameters are not supported`);
    ropeTheta = new Reader(params, path, "rope_parameters.").posNumber(
      "rope_theta",
      r.posNumber("rope_theta", DEFAULT_ROPE_THETA),
    );
    ropeScaling = ropeScalingFrom(r, "rope_parameters", params, longrope);
  } else {
    ropeTheta = r.posNumber("rope_theta", DEFAULT_ROPE_THETA);
    ropeScaling = ropeScalingFrom(r, "rope_scaling", configJson["rope_scaling"], longrope);
  }

  // Biases: Llama's and Qwen3's attention_bias switches on q, k, v AND o_proj biases (tsdpo has no o bias);
  // Qwen2 always has q/k/v biases and never an o_proj bias; Mistral has none.
  if (family !== "qwen2" && family !== "mistral" && r.bool("attention_bias", false))
    throw unsupportedError(
      `${path}: attention_bias true (biases on q/k/v/o projections) is not supported for model_type ${family}`,
    );
  if (family !== "qwen2" && family !== "qwen3" && family !== "mistral" && r.bool("mlp_bias", false))
    throw unsupportedError(`${path}: mlp_bias true is not supported`);

  let windows: (number | null)[] | number | null = null;
  if (family === "mistral" || family === "phi3") windows = r.nullablePosInt("sliding_window", d.slidingWindow);
  else if (family === "qwen2" || family === "qwen3" || family === "smollm3") windows = qwenLayerWindows(r, L, family);

  const cfg: LlamaConfig = {
    family,
    V,
    C,
    L,
    NH,
    NKV,
    HS,
    FF,
    ropeTheta,
    ropeScaling,
    rmsEps: r.posNumber("rms_norm_eps", DEFAULT_RMS_EPS),
    tiedEmbeddings: r.bool("tie_word_embeddings", false),
    qkvBias: family === "qwen2",
    qkNorm: family === "qwen3" || family === "olmo2",
    maxSeqLen,
    ...(ropeDim !== HS ? { ropeDim } : {}),
    ...windowsToConfig(windows, ropeTheta, ropeScaling),
  };
  switch (family) {
    case "smollm3": {
      // no_rope_layers[l] is 1 where layer l uses RoPE (SmolLM3's NoPE layers are the 0s)
      const given = r.obj["no_rope_layers"];
      if (given !== undefined && given !== null && (!Array.isArray(given) || given.length !== L || given.some((x) => x !== 0 && x !== 1)))
        throw inputError(`${path}: key "no_rope_layers" must be a list of ${L} zeros and ones (1: the layer uses RoPE), got ${describeValue(given)}; fix config.json`);
      const interval = r.posInt("no_rope_layer_interval", SMOLLM3_NO_ROPE_INTERVAL);
      const rope = Array.isArray(given) ? given.map((x) => x === 1) : perLayer(r, L, (l) => (l + 1) % interval !== 0);
      if (rope.every((x) => x)) return cfg;
      return { ...cfg, layers: rope.map((useRope, l) => ({ ...layerAttention(cfg, l), rope: useRope })) };
    }
    case "granite":
      return {
        ...cfg,
        embedScale: r.posNumber("embedding_multiplier", 1),
        attnScale: r.posNumber("attention_multiplier", 1),
        residualScale: r.posNumber("residual_multiplier", 1),
        logitScale: r.posNumber("logits_scaling", 1),
      };
    case "olmo2":
      return { ...cfg, norms: "post", qkNormScope: "projection" };
    default:
      return cfg;
  }
}

/**
 * GPT-2 (GPT2Config): learned positions, LayerNorms with biases, a GELU MLP without a gate, biases on every
 * projection, tied output. Its keys have their own names (n_embd, n_layer, n_head, n_positions, n_inner).
 */
function gpt2ConfigFromHf(r: Reader): LlamaConfig {
  const path = r.path;
  const C = r.posInt("n_embd"), L = r.posInt("n_layer"), NH = r.posInt("n_head");
  if (C % NH !== 0) throw inputError(`${path}: n_embd ${C} is not divisible by n_head ${NH}; fix config.json`);
  const act = r.str("activation_function", "gelu_new");
  if (act !== "gelu_new" && act !== "gelu_pytorch_tanh")
    throw unsupportedError(`${path}: activation_function ${JSON.stringify(act)} is not supported; tsdpo implements GPT-2's tanh GELU ("gelu_new")`);
  if (!r.bool("scale_attn_weights", true) || r.bool("scale_attn_by_inverse_layer_idx", false))
    throw unsupportedError(`${path}: only GPT-2's 1/√head_size attention scaling is supported (scale_attn_weights true, scale_attn_by_inverse_layer_idx false)`);
  if (r.bool("add_cross_attention", false)) throw unsupportedError(`${path}: add_cross_attention (an encoder-decoder GPT-2) is not supported`);
  if (!r.bool("tie_word_embeddings", true)) throw unsupportedError(`${path}: an untied GPT-2 (tie_word_embeddings false) is not supported`);
  return {
    family: "gpt2", V: r.posInt("vocab_size"), C, L, NH, NKV: NH, HS: C / NH, FF: r.posInt("n_inner", 4 * C),
    ropeTheta: DEFAULT_ROPE_THETA, ropeScaling: { type: "none" }, // unused: positions are learned
    rmsEps: r.posNumber("layer_norm_epsilon", 1e-5), tiedEmbeddings: true, qkvBias: true, qkNorm: false,
    maxSeqLen: r.posInt("n_positions", DEFAULTS.gpt2.maxPos), slidingWindow: null,
    normKind: "layer", positions: "learned", mlp: "plain", linearBiases: true, activation: "gelu_tanh",
  };
}

/** Whether a config.json is a multimodal Gemma 3 (its vision tower is not loaded; see loadHfFolder). */
export const isMultimodalGemma3 = (configJson: unknown): boolean => isObject(configJson) && configJson["model_type"] === "gemma3";

/**
 * Gemma 2 and Gemma 3 text models (Gemma2Config / Gemma3TextConfig): Llama's layout plus √C-scaled embeddings,
 * (1 + w) RMSNorms before and after each sublayer, GeGLU with tanh-GELU, scores scaled by query_pre_attn_scalar^−½,
 * Gemma 2's soft-caps, and alternating local (sliding) and global layers, which in Gemma 3 have their own RoPE bases.
 */
function gemmaConfigFromHf(r: Reader, family: "gemma2" | "gemma3"): LlamaConfig {
  const path = r.path;
  const g = GEMMA_DEFAULTS[family];
  const d = DEFAULTS[family];
  const V = r.posInt("vocab_size", g.vocab);
  const C = r.posInt("hidden_size");
  const FF = r.posInt("intermediate_size");
  const L = r.posInt("num_hidden_layers");
  const NH = r.posInt("num_attention_heads", g.heads);
  const NKV = r.posInt("num_key_value_heads", g.kvHeads);
  if (NH % NKV !== 0)
    throw inputError(`${path}: key "${r.prefix}num_attention_heads" ${NH} is not a multiple of num_key_value_heads ${NKV}; fix config.json`);
  const HS = r.posInt("head_dim", d.headDim!);
  if (HS % 2 !== 0) throw inputError(`${path}: head size ${HS} must be even for RoPE; fix config.json`);
  // Gemma configs carry hidden_activation (and sometimes hidden_act too); gelu_pytorch_tanh is the published value.
  for (const key of ["hidden_activation", "hidden_act"]) {
    if (!r.has(key)) continue;
    const act = r.str(key);
    if (act !== "gelu_pytorch_tanh" && act !== "gelu_tanh" && !(key === "hidden_act" && r.has("hidden_activation")))
      throw unsupportedError(`${path}: ${r.prefix}${key} ${JSON.stringify(act)} is not supported; tsdpo implements Gemma's GeGLU with tanh-GELU ("gelu_pytorch_tanh")`);
  }
  if (r.bool("attention_bias", false)) throw unsupportedError(`${path}: ${r.prefix}attention_bias true is not supported for ${family}`);

  // RoPE: one base for every layer (Gemma 2), or global layers at rope_theta with rope_scaling and local layers at
  // rope_local_base_freq unscaled (Gemma 3). transformers 5 writes rope_parameters, per layer type for Gemma 3.
  let globalTheta = r.posNumber("rope_theta", family === "gemma3" ? 1000000 : 10000);
  let globalScaling = ropeScalingFrom(r, "rope_scaling", r.obj["rope_scaling"]);
  let localTheta = family === "gemma3" ? r.posNumber("rope_local_base_freq", GEMMA3_LOCAL_ROPE_THETA) : globalTheta;
  let localScaling: RopeScaling = family === "gemma3" ? { type: "none" } : globalScaling;
  const params = r.obj["rope_parameters"];
  if (params !== undefined && params !== null) {
    if (!isObject(params)) throw inputError(`${path}: key "${r.prefix}rope_parameters" must be an object; fix config.json`);
    const byType = Object.values(params).some(isObject);
    const read = (obj: unknown, key: string, def: number): [number, RopeScaling] => {
      if (!isObject(obj)) throw inputError(`${path}: key "${r.prefix}${key}" must be an object; fix config.json`);
      return [new Reader(obj, path, `${r.prefix}${key}.`).posNumber("rope_theta", def), ropeScalingFrom(r, `${r.prefix}${key}`, obj)];
    };
    if (byType) {
      [globalTheta, globalScaling] = read(params["full_attention"], "rope_parameters.full_attention", globalTheta);
      if (params["sliding_attention"] !== undefined) [localTheta, localScaling] = read(params["sliding_attention"], "rope_parameters.sliding_attention", localTheta);
    } else {
      [globalTheta, globalScaling] = read(params, "rope_parameters", globalTheta);
      if (family === "gemma2") [localTheta, localScaling] = [globalTheta, globalScaling];
    }
  }

  const window = r.posInt("sliding_window", d.slidingWindow!);
  const local = layerKinds(r, L, family);
  const layers: LayerAttention[] = local.map((isLocal) =>
    isLocal
      ? { window, rope: true, ropeTheta: localTheta, ropeScaling: localScaling }
      : { window: null, rope: true, ropeTheta: globalTheta, ropeScaling: globalScaling },
  );
  return {
    family, V, C, L, NH, NKV, HS, FF,
    // the model-wide values describe the global layers (what export writes as rope_theta / rope_scaling)
    ropeTheta: globalTheta,
    ropeScaling: globalScaling,
    rmsEps: r.posNumber("rms_norm_eps", DEFAULT_RMS_EPS),
    tiedEmbeddings: r.bool("tie_word_embeddings", true),
    qkvBias: false,
    qkNorm: family === "gemma3",
    maxSeqLen: r.posInt("max_position_embeddings", d.maxPos),
    slidingWindow: local.some((x) => x) ? window : null, // the local layers' window; `layers` says which they are
    layers,
    norms: "sandwich",
    normOffset: 1,
    activation: "gelu_tanh",
    embedScale: Math.sqrt(C),
    attnScale: 1 / Math.sqrt(r.posNumber("query_pre_attn_scalar", g.queryPreAttnScalar)),
    attnSoftcap: r.capOrNone("attn_logit_softcapping", g.attnSoftcap),
    finalSoftcap: r.capOrNone("final_logit_softcapping", g.finalSoftcap),
  };
}

/** Per layer, whether it is local (sliding): layer_types when given, else the family's pattern. */
function layerKinds(r: Reader, L: number, family: "gemma2" | "gemma3"): boolean[] {
  const layerTypes = r.obj["layer_types"];
  if (Array.isArray(layerTypes)) {
    if (layerTypes.length !== L)
      throw inputError(`${r.path}: key "${r.prefix}layer_types" has ${layerTypes.length} entries but num_hidden_layers is ${L}; fix config.json`);
    return perLayer(r, L, (i) => {
      const k = layerTypes[i];
      if (k === "sliding_attention") return true;
      if (k === "full_attention") return false;
      throw inputError(`${r.path}: key "${r.prefix}layer_types[${i}]" must be "sliding_attention" or "full_attention", got ${describeValue(k)}; fix config.json`);
    });
  }
  // Gemma 2's pattern is fixed (every other layer, starting local); Gemma 3 names it sliding_window_pattern.
  const pattern = family === "gemma3" ? r.posInt("sliding_window_pattern", GEMMA_DEFAULTS.gemma3.pattern) : GEMMA_DEFAULTS.gemma2.pattern;
  return perLayer(r, L, (l) => gemmaLayerIsLocal(l, pattern));
}

/**
 * A Gemma 2 or Gemma 3 text config. What config.json cannot say is refused: local layers need one window and (Gemma
 * 2) the global layers' RoPE, (Gemma 3) their own unscaled base; every option must be Gemma's.
 */
function gemmaHfConfig(cfg: LlamaConfig, family: "gemma2" | "gemma3", opts: HfExportOptions): Record<string, unknown> {
  const o = decoderOptions(cfg);
  const cannot = (why: string): never => {
    throw unsupportedError(`cannot write a transformers ${MODEL_TYPE[family]} config: ${why}`);
  };
  if (o.norms !== "sandwich" || o.normOffset !== 1 || o.activation !== "gelu_tanh" || Math.abs(o.embedScale - Math.sqrt(cfg.C)) > 1e-9 * Math.sqrt(cfg.C))
    cannot("the model's norms, activation or embedding scale are not Gemma's");
  if (cfg.qkvBias || cfg.qkNorm !== (family === "gemma3")) cannot(`q/k/v biases or q/k norms differ from ${family}'s`);
  if (!cfg.tiedEmbeddings) cannot("Gemma ties its output layer to the embeddings");
  if (family === "gemma3" && o.attnSoftcap > 0) cannot("Gemma 3 has no attention soft-cap");
  const layers = Array.from({ length: cfg.L }, (_, l) => layerAttention(cfg, l));
  const local = layers.filter((a) => a.window !== null), global = layers.filter((a) => a.window === null);
  const same = (a: LayerAttention, b: LayerAttention): boolean => a.rope === b.rope && a.ropeTheta === b.ropeTheta && JSON.stringify(a.ropeScaling) === JSON.stringify(b.ropeScaling);
  if (layers.some((a) => !a.rope)) cannot("every Gemma layer uses RoPE");
  if (local.some((a) => a.window !== local[0]!.window)) cannot("the local layers have different windows");
  if (global.some((a) => !same(a, global[0] ?? a)) || local.some((a) => !same(a, local[0]!))) cannot("layers of one kind have different RoPE settings");
  const g = global[0] ?? { window: null, rope: true, ropeTheta: cfg.ropeTheta, ropeScaling: cfg.ropeScaling };
  if (family === "gemma2" && local[0] && !same(local[0], g)) cannot("Gemma 2's local and global layers share one RoPE");
  if (family === "gemma3" && local[0]?.ropeScaling.type !== undefined && local[0].ropeScaling.type !== "none") cannot("Gemma 3's local layers have unscaled RoPE");
  const qpas = 1 / (o.attnScale * o.attnScale);
  const out: Record<string, unknown> = {
    ...commonHfFields(cfg, opts),
    hidden_activation: "gelu_pytorch_tanh",
    rope_theta: g.ropeTheta,
    rope_scaling: ropeScalingJson(g.ropeScaling, cfg.maxSeqLen),
    ...(family === "gemma3" ? { rope_local_base_freq: local[0]?.ropeTheta ?? GEMMA3_LOCAL_ROPE_THETA } : {}),
    // query_pre_attn_scalar is 1/attnScale², an integer in every real config: write it as one when it is
    query_pre_attn_scalar: Math.abs(qpas - Math.round(qpas)) < 1e-6 * qpas ? Math.round(qpas) : qpas,
    attn_logit_softcapping: o.attnSoftcap > 0 ? o.attnSoftcap : null,
    final_logit_softcapping: o.finalSoftcap > 0 ? o.finalSoftcap : null,
    sliding_window: local[0]?.window ?? cfg.slidingWindow ?? DEFAULTS[family].slidingWindow,
    layer_types: layers.map((a) => (a.window === null ? "full_attention" : "sliding_attention")),
    attention_bias: false,
  };
  // Older transformers read the pattern rather than layer_types; write it when the layers follow one.
  const pattern = family === "gemma3" ? gemmaWindowPattern(cfg) : null;
  if (pattern !== null) out["sliding_window_pattern"] = pattern;
  return out;
}

/** Reads and parses a config.json file. */
export function readHfConfig(path: string): LlamaConfig {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new TsdpoError("io", `${path}: cannot read (${(err as Error).message})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw inputError(`${path}: not valid JSON (${describeJsonError(text, err)})`);
  }
  return llamaConfigFromHf(json, path);
}

export interface HfExportOptions {
  bosTokenId: number | null;
  eosTokenId: number | number[] | null;
  torchDtype: "float32" | "float16" | "bfloat16"; // the dtype the safetensors weights are written in
}

/** The keys every family's config.json has, in the order transformers writes them (sizes first). */
function commonHfFields(cfg: LlamaConfig, opts: HfExportOptions): Record<string, unknown> {
  return {
    architectures: [ARCHITECTURES[cfg.family]],
    model_type: MODEL_TYPE[cfg.family],
    vocab_size: cfg.V,
    hidden_size: cfg.C,
    intermediate_size: cfg.FF,
    num_hidden_layers: cfg.L,
    num_attention_heads: cfg.NH,
    num_key_value_heads: cfg.NKV,
    head_dim: cfg.HS,
    max_position_embeddings: cfg.maxSeqLen,
    rms_norm_eps: cfg.rmsEps,
    tie_word_embeddings: cfg.tiedEmbeddings,
    attention_dropout: 0.0,
    initializer_range: 0.02,
    use_cache: true,
    bos_token_id: opts.bosTokenId,
    eos_token_id: opts.eosTokenId,
    torch_dtype: opts.torchDtype,
  };
}

/** The partial_rotary_factor f that transformers turns back into RD features: int(HS · f) = RD (RD/HS, nudged up if rounding falls short). */
function partialRotaryFactor(HS: number, RD: number): number {
  let f = RD / HS;
  while (Math.trunc(HS * f) < RD) f *= 1 + Number.EPSILON;
  return f;
}

/** A config.json object that transformers loads into the same architecture. */
export function hfConfigFromLlama(cfg: LlamaConfig, opts: HfExportOptions): Record<string, unknown> {
  const { family } = cfg;
  if (family === "gemma2" || family === "gemma3") return gemmaHfConfig(cfg, family, opts);
  if (family === "gpt2") return {
    architectures: [ARCHITECTURES.gpt2], model_type: "gpt2", vocab_size: cfg.V, n_embd: cfg.C, n_layer: cfg.L, n_head: cfg.NH,
    n_positions: cfg.maxSeqLen, n_ctx: cfg.maxSeqLen, n_inner: cfg.FF, activation_function: "gelu_new", layer_norm_epsilon: cfg.rmsEps,
    tie_word_embeddings: true, scale_attn_weights: true, scale_attn_by_inverse_layer_idx: false, reorder_and_upcast_attn: false,
    resid_pdrop: 0.0, embd_pdrop: 0.0, attn_pdrop: 0.0, initializer_range: 0.02, use_cache: true,
    bos_token_id: opts.bosTokenId, eos_token_id: opts.eosTokenId, torch_dtype: opts.torchDtype,
  };
  const want = { qkvBias: family === "qwen2", qkNorm: family === "qwen3" || family === "olmo2" };
  if (cfg.qkvBias !== want.qkvBias || cfg.qkNorm !== want.qkNorm)
    throw unsupportedError(
      `cannot write a transformers config for model_type ${family} with q/k/v biases ${cfg.qkvBias ? "on" : "off"} ` +
        `and q/k norms ${cfg.qkNorm ? "on" : "off"}: ${family} has biases ${want.qkvBias ? "on" : "off"} and norms ` +
        `${want.qkNorm ? "on" : "off"}`,
    );
  if (family === "llama" && cfg.slidingWindow !== null)
    throw unsupportedError(`cannot write a transformers llama config with a sliding window; use model_type mistral`);

  const ropeScaling = ropeScalingJson(cfg.ropeScaling, cfg.maxSeqLen);
  if (cfg.ropeDim !== undefined && cfg.ropeDim !== cfg.HS && family !== "phi3")
    throw unsupportedError(`cannot write a transformers ${family} config with partial RoPE (${cfg.ropeDim} of ${cfg.HS} features rotate); use model_type phi3`);
  if (cfg.ropeScaling.type === "longrope" && family !== "phi3")
    throw unsupportedError(`cannot write a transformers ${family} config with LongRoPE scaling; use model_type phi3`);

  const out: Record<string, unknown> = {
    ...commonHfFields(cfg, opts),
    hidden_act: "silu",
    rope_theta: cfg.ropeTheta,
    rope_scaling: ropeScaling,
  };
  const o = decoderOptions(cfg);
  const llamaOptions = { norms: "pre", normOffset: 0, activation: "silu", qkNormScope: "head", attnSoftcap: 0, finalSoftcap: 0 };
  const expected = family === "olmo2" ? { ...llamaOptions, norms: "post", qkNormScope: "projection" } : llamaOptions;
  for (const [k, v] of Object.entries(expected))
    if (o[k as keyof typeof o] !== v) throw unsupportedError(`cannot write a transformers ${family} config for a model with ${k} ${String(o[k as keyof typeof o])}`);
  if (family !== "granite" && (o.embedScale !== 1 || o.residualScale !== 1 || o.logitScale !== 1 || Math.abs(o.attnScale * Math.sqrt(cfg.HS) - 1) > 1e-12))
    throw unsupportedError(`cannot write a transformers ${family} config for a model with Granite's multipliers; use model_type granite`);
  if (family !== "smollm3" && cfg.layers?.some((a) => !a.rope))
    throw unsupportedError(`cannot write a transformers ${family} config with layers without RoPE; use model_type smollm3`);
  switch (family) {
    case "llama":
      Object.assign(out, { attention_bias: false, mlp_bias: false, pretraining_tp: 1 });
      break;
    case "granite":
      Object.assign(out, {
        attention_bias: false, mlp_bias: false, embedding_multiplier: o.embedScale, attention_multiplier: o.attnScale,
        residual_multiplier: o.residualScale, logits_scaling: o.logitScale,
      });
      break;
    case "olmo2":
      out["attention_bias"] = false;
      break;
    case "mistral":
      out["sliding_window"] = cfg.slidingWindow;
      break;
    case "phi3":
      Object.assign(out, {
        sliding_window: cfg.slidingWindow, partial_rotary_factor: partialRotaryFactor(cfg.HS, cfg.ropeDim ?? cfg.HS), attention_bias: false,
        original_max_position_embeddings: cfg.ropeScaling.type === "longrope" ? cfg.ropeScaling.originalMaxPositionEmbeddings : cfg.maxSeqLen,
      });
      break;
    case "qwen2":
    case "qwen3":
    case "smollm3": {
      if (family !== "qwen2") out["attention_bias"] = false;
      if (family === "smollm3") {
        out["mlp_bias"] = false;
        out["no_rope_layers"] = Array.from({ length: cfg.L }, (_, l) => (layerAttention(cfg, l).rope ? 1 : 0));
      }
      // Layers from max_window_layers on slide (0: all of them); with use_sliding_window false it is ignored.
      const layers = Array.from({ length: cfg.L }, (_, l) => layerAttention(cfg, l));
      const window = layers.find((a) => a.window !== null)?.window ?? null;
      const firstSliding = layers.findIndex((a) => a.window !== null);
      if (layers.some((a, l) => a.window !== (firstSliding >= 0 && l >= firstSliding ? window : null)))
        throw unsupportedError(`cannot write a transformers ${family} config whose sliding layers are not the last ones, with one window`);
      if (layers.some((a) => (!a.rope && family !== "smollm3") || a.ropeTheta !== cfg.ropeTheta || JSON.stringify(a.ropeScaling) !== JSON.stringify(cfg.ropeScaling)))
        throw unsupportedError(`cannot write a transformers ${family} config with per-layer RoPE settings`);
      Object.assign(
        out,
        window === null
          ? { use_sliding_window: false, sliding_window: null, max_window_layers: cfg.L }
          : { use_sliding_window: true, sliding_window: window, max_window_layers: firstSliding },
      );
      break;
    }
  }
  return out;
}
