// Hugging Face config.json <-> LlamaConfig, for model_type llama (also SmolLM), mistral, qwen2 and qwen3.
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
import { type LlamaConfig, type ModelFamily, type RopeScaling, unsupportedArchitectureKind } from "../model/config.js";

export const SUPPORTED_MODEL_TYPES: readonly ModelFamily[] = ["llama", "mistral", "qwen2", "qwen3"];

const ARCHITECTURES: Record<ModelFamily, string> = {
  llama: "LlamaForCausalLM",
  mistral: "MistralForCausalLM",
  qwen2: "Qwen2ForCausalLM",
  qwen3: "Qwen3ForCausalLM",
};

// transformers' constructor defaults for the keys we let default.
const DEFAULTS: Record<ModelFamily, { maxPos: number; headDim: number | null; slidingWindow: number | null }> = {
  llama: { maxPos: 2048, headDim: null, slidingWindow: null },
  mistral: { maxPos: 4096 * 32, headDim: null, slidingWindow: 4096 },
  qwen2: { maxPos: 32768, headDim: null, slidingWindow: 4096 },
  qwen3: { maxPos: 32768, headDim: 128, slidingWindow: 4096 },
};
const DEFAULT_RMS_EPS = 1e-6;
const DEFAULT_ROPE_THETA = 10000;
const DEFAULT_MAX_WINDOW_LAYERS = 28; // Qwen2Config / Qwen3Config

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
}

function ropeScalingFrom(r: Reader, key: string, obj: unknown): RopeScaling {
  if (obj === undefined || obj === null) return { type: "none" };
  if (!isObject(obj))
    throw inputError(`${r.path}: key "${key}" must be null or an object, got ${describeValue(obj)}; fix config.json`);
  const s = new Reader(obj, r.path, `${key}.`);
  const kind = s.has("rope_type") ? s.str("rope_type") : s.has("type") ? s.str("type") : "default";
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
    default:
      throw unsupportedError(
        `${r.path}: ${key} type ${JSON.stringify(kind)} is not supported; tsdpo supports RoPE scaling ` +
          `"default", "linear" and "llama3"`,
      );
  }
}

/** Qwen2/Qwen3: sliding attention applies only to layers >= max_window_layers, and only with use_sliding_window. */
function qwenSlidingWindow(r: Reader, L: number, family: ModelFamily): number | null {
  const layerTypes = r.obj["layer_types"];
  if (Array.isArray(layerTypes)) {
    // Newer transformers write the per-layer outcome explicitly; it is authoritative.
    if (layerTypes.length !== L)
      throw inputError(`${r.path}: key "layer_types" has ${layerTypes.length} entries but num_hidden_layers is ${L}`);
    const kinds = new Set(layerTypes);
    for (const k of kinds)
      if (k !== "full_attention" && k !== "sliding_attention")
        throw unsupportedError(`${r.path}: layer_types entry ${describeValue(k)} is not supported`);
    if (kinds.size > 1)
      throw unsupportedError(
        `${r.path}: layer_types mixes full and sliding attention; tsdpo supports one attention kind for all layers`,
      );
    if (!kinds.has("sliding_attention")) return null;
    return r.posInt("sliding_window");
  }
  if (!r.bool("use_sliding_window", false)) return null;
  const window = r.nullablePosInt("sliding_window", DEFAULTS[family].slidingWindow);
  if (window === null) return null;
  const maxWindowLayers = r.int("max_window_layers", DEFAULT_MAX_WINDOW_LAYERS);
  if (maxWindowLayers >= L) return null;
  if (maxWindowLayers <= 0) return window;
  throw unsupportedError(
    `${r.path}: use_sliding_window with max_window_layers ${maxWindowLayers} < num_hidden_layers ${L} gives ` +
      `full attention in some layers and sliding attention in others; tsdpo supports one kind for all layers`,
  );
}

/** Parses a transformers config.json object. `path` is only used in error messages. */
export function llamaConfigFromHf(configJson: unknown, path: string): LlamaConfig {
  if (!isObject(configJson)) throw inputError(`${path}: config.json must hold a JSON object`);
  const r = new Reader(configJson, path);
  const modelType = configJson["model_type"];
  if (typeof modelType !== "string")
    throw inputError(`${path}: key "model_type" is missing or not a string; is this a transformers config.json?`);
  if (!(SUPPORTED_MODEL_TYPES as readonly string[]).includes(modelType)) {
    const kind = unsupportedArchitectureKind(modelType);
    throw unsupportedError(
      kind
        ? `${path}: model_type ${JSON.stringify(modelType)} is ${kind}; tsdpo trains dense decoders only (${SUPPORTED_MODEL_TYPES.join(", ")})`
        : `${path}: model_type ${JSON.stringify(modelType)} is not supported; tsdpo supports ${SUPPORTED_MODEL_TYPES.join(", ")} (SmolLM is "llama")`,
    );
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

  const act = r.str("hidden_act", "silu");
  if (act !== "silu" && act !== "swish")
    throw unsupportedError(`${path}: hidden_act ${JSON.stringify(act)} is not supported; tsdpo implements SwiGLU (silu)`);

  let ropeTheta: number;
  let ropeScaling: RopeScaling;
  const params = configJson["rope_parameters"];
  if (params !== undefined && params !== null) {
    if (!isObject(params)) throw inputError(`${path}: key "rope_parameters" must be an object; fix config.json`);
    if (Object.values(params).some(isObject))
      throw unsupportedError(`${path}: per-layer-type rope_parameters are not supported`);
    ropeTheta = new Reader(params, path, "rope_parameters.").posNumber(
      "rope_theta",
      r.posNumber("rope_theta", DEFAULT_ROPE_THETA),
    );
    ropeScaling = ropeScalingFrom(r, "rope_parameters", params);
  } else {
    ropeTheta = r.posNumber("rope_theta", DEFAULT_ROPE_THETA);
    ropeScaling = ropeScalingFrom(r, "rope_scaling", configJson["rope_scaling"]);
  }

  // Biases: Llama's and Qwen3's attention_bias switches on q, k, v AND o_proj biases (tsdpo has no o bias);
  // Qwen2 always has q/k/v biases and never an o_proj bias; Mistral has none.
  if ((family === "llama" || family === "qwen3") && r.bool("attention_bias", false))
    throw unsupportedError(
      `${path}: attention_bias true (biases on q/k/v/o projections) is not supported for model_type ${family}`,
    );
  if (family === "llama" && r.bool("mlp_bias", false))
    throw unsupportedError(`${path}: mlp_bias true is not supported`);

  let slidingWindow: number | null = null;
  if (family === "mistral") slidingWindow = r.nullablePosInt("sliding_window", d.slidingWindow);
  else if (family === "qwen2" || family === "qwen3") slidingWindow = qwenSlidingWindow(r, L, family);

  return {
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
    qkNorm: family === "qwen3",
    maxSeqLen: r.posInt("max_position_embeddings", d.maxPos),
    slidingWindow,
  };
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

/** A config.json object that transformers loads into the same architecture. */
export function hfConfigFromLlama(cfg: LlamaConfig, opts: HfExportOptions): Record<string, unknown> {
  const { family } = cfg;
  const want = { qkvBias: family === "qwen2", qkNorm: family === "qwen3" };
  if (cfg.qkvBias !== want.qkvBias || cfg.qkNorm !== want.qkNorm)
    throw unsupportedError(
      `cannot write a transformers config for model_type ${family} with q/k/v biases ${cfg.qkvBias ? "on" : "off"} ` +
        `and q/k norms ${cfg.qkNorm ? "on" : "off"}: ${family} has biases ${want.qkvBias ? "on" : "off"} and norms ` +
        `${want.qkNorm ? "on" : "off"}`,
    );
  if (family === "llama" && cfg.slidingWindow !== null)
    throw unsupportedError(`cannot write a transformers llama config with a sliding window; use model_type mistral`);

  let ropeScaling: Record<string, unknown> | null;
  const s = cfg.ropeScaling;
  switch (s.type) {
    case "none": ropeScaling = null; break;
    case "linear": ropeScaling = { rope_type: "linear", factor: s.factor }; break;
    case "llama3":
      ropeScaling = {
        rope_type: "llama3",
        factor: s.factor,
        low_freq_factor: s.lowFreqFactor,
        high_freq_factor: s.highFreqFactor,
        original_max_position_embeddings: s.originalMaxPositionEmbeddings,
      };
      break;
  }

  const out: Record<string, unknown> = {
    architectures: [ARCHITECTURES[family]],
    model_type: family,
    vocab_size: cfg.V,
    hidden_size: cfg.C,
    intermediate_size: cfg.FF,
    num_hidden_layers: cfg.L,
    num_attention_heads: cfg.NH,
    num_key_value_heads: cfg.NKV,
    head_dim: cfg.HS,
    hidden_act: "silu",
    max_position_embeddings: cfg.maxSeqLen,
    rms_norm_eps: cfg.rmsEps,
    rope_theta: cfg.ropeTheta,
    rope_scaling: ropeScaling,
    tie_word_embeddings: cfg.tiedEmbeddings,
    attention_dropout: 0.0,
    initializer_range: 0.02,
    use_cache: true,
    bos_token_id: opts.bosTokenId,
    eos_token_id: opts.eosTokenId,
    torch_dtype: opts.torchDtype,
  };
  switch (family) {
    case "llama":
      Object.assign(out, { attention_bias: false, mlp_bias: false, pretraining_tp: 1 });
      break;
    case "mistral":
      out["sliding_window"] = cfg.slidingWindow;
      break;
    case "qwen2":
    case "qwen3":
      if (family === "qwen3") out["attention_bias"] = false;
      // max_window_layers 0 makes every layer slide; with use_sliding_window false it is ignored.
      Object.assign(
        out,
        cfg.slidingWindow === null
          ? { use_sliding_window: false, sliding_window: null, max_window_layers: cfg.L }
          : { use_sliding_window: true, sliding_window: cfg.slidingWindow, max_window_layers: 0 },
      );
      break;
  }
  return out;
}
