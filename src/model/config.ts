// The architecture description every Llama-family model reduces to. io/ turns config.json or GGUF metadata into
// this; model/ never sees a file format.
//
// Shape letters used across tsdpo: B pairs, T time, C channels, V vocabulary, L layers, NH heads, NKV KV heads,
// HS head size, FF MLP width. The concatenated DPO batch is 2B rows (chosen rows first, then rejected).

export type RopeScaling =
  | { type: "none" }
  | { type: "linear"; factor: number }
  | {
      type: "llama3";
      factor: number;
      lowFreqFactor: number;
      highFreqFactor: number;
      originalMaxPositionEmbeddings: number;
    }
  | {
      /**
       * LongRoPE (Phi-3-mini-128k, Phi-3.5, Phi-4-mini; HF rope_type "longrope"): frequency i is divided by
       * shortFactor[i] for sequences of at most originalMaxPositionEmbeddings tokens and by longFactor[i] for longer
       * ones (one RD/2 list each), and cos and sin are multiplied by attentionFactor (resolved from the config when
       * it is read: attention_factor, or HF's √(1 + ln s / ln originalMaxPositionEmbeddings) with s the context
       * extension max_position_embeddings / originalMaxPositionEmbeddings, or 1 when s ≤ 1).
       */
      type: "longrope";
      shortFactor: number[];
      longFactor: number[];
      originalMaxPositionEmbeddings: number;
      attentionFactor: number;
    };

export type ModelFamily = "llama" | "mistral" | "qwen2" | "qwen3" | "gemma2" | "gemma3" | "smollm3" | "granite" | "olmo2" | "gpt2" | "phi3";

export interface LlamaConfig {
  family: ModelFamily; // which HF model_type / GGUF architecture to write on export
  V: number; // vocab_size
  C: number; // hidden_size
  L: number; // num_hidden_layers
  NH: number; // num_attention_heads
  NKV: number; // num_key_value_heads
  HS: number; // head_dim (C / NH unless the config says otherwise, as Qwen3 does)
  FF: number; // intermediate_size
  ropeTheta: number;
  ropeScaling: RopeScaling;
  /**
   * Partial RoPE (Phi-4-mini's partial_rotary_factor): only the first ropeDim (even, ≤ HS) features of each head
   * rotate, the rest pass through, and the frequencies are those of a ropeDim-wide head. Absent: HS, the whole head.
   */
  ropeDim?: number;
  rmsEps: number;
  tiedEmbeddings: boolean; // lm_head shares token_embd
  qkvBias: boolean; // Qwen2: q/k/v projections have biases
  qkNorm: boolean; // Qwen3: per-head RMSNorm on q and k before RoPE
  maxSeqLen: number; // max_position_embeddings (the longest context the model claims)
  slidingWindow: number | null; // Mistral; null = full causal attention
  /**
   * Per-layer attention, for models whose layers differ (alternating local and global layers, layers without RoPE,
   * a separate RoPE base for local layers). Absent: every layer is `slidingWindow`, `ropeTheta`, `ropeScaling`, with
   * RoPE. Read it through layerAttention().
   */
  layers?: LayerAttention[];
  // Options that other families set (Gemma 2 and 3, Granite, OLMo 2). Each is absent on a plain Llama-family config
  // and read through decoderOptions(), which fills in the Llama value.
  /**
   * Where the RMSNorms sit around each sublayer: before it ("pre", Llama), before and after its output ("sandwich",
   * Gemma 2/3), or after its output only ("post", OLMo 2), always before the output joins the residual stream.
   */
  norms?: "pre" | "sandwich" | "post";
  /** q/k norms (qkNorm) over each head's HS features ("head", Qwen3, Gemma 3) or the whole projection (OLMo 2). */
  qkNormScope?: "head" | "projection";
  /** Each sublayer's output is multiplied by this before it joins the residual stream (Granite). */
  residualScale?: number;
  /** Output logits are divided by this (Granite's logits_scaling). */
  logitScale?: number;
  /** RMSNorm ("rms") or LayerNorm with a bias ("layer", GPT-2). */
  normKind?: "rms" | "layer";
  /** Rotary positions ("rope") or a learned position embedding added to the token embedding ("learned", GPT-2). */
  positions?: "rope" | "learned";
  /** A gated MLP, down(act(gate)·up) ("gated"), or down(act(up)) ("plain", GPT-2). */
  mlp?: "gated" | "plain";
  /** Biases on the attention output and the MLP's projections as well (GPT-2; q/k/v biases are qkvBias). */
  linearBiases?: boolean;
  /** 1: every RMSNorm multiplies by (1 + w), its weight stored as a deviation from 1 (Gemma); 0: by w. */
  normOffset?: 0 | 1;
  /** The MLP's gate: SwiGLU ("silu") or GeGLU with tanh-GELU ("gelu_tanh", Gemma). */
  activation?: "silu" | "gelu_tanh";
  /** The embeddings are multiplied by this before the first layer (Gemma: √C). */
  embedScale?: number;
  /** Attention scores are q·k times this (default 1/√HS; Gemma: query_pre_attn_scalar^−½). */
  attnScale?: number;
  /** Attention scores are soft-capped to ±attnSoftcap before the softmax (Gemma 2); 0: no cap. */
  attnSoftcap?: number;
  /** Output logits are soft-capped to ±finalSoftcap (Gemma 2); 0: no cap. */
  finalSoftcap?: number;
}

/** The family options of a config with the Llama values filled in where it leaves them out. */
export interface DecoderOptions {
  norms: "pre" | "sandwich" | "post";
  normKind: "rms" | "layer";
  positions: "rope" | "learned";
  mlp: "gated" | "plain";
  linearBiases: boolean;
  qkNormScope: "head" | "projection";
  residualScale: number;
  logitScale: number;
  normOffset: 0 | 1;
  activation: "silu" | "gelu_tanh";
  embedScale: number;
  attnScale: number;
  attnSoftcap: number;
  finalSoftcap: number;
}

export function decoderOptions(cfg: LlamaConfig): DecoderOptions {
  return {
    norms: cfg.norms ?? "pre",
    normKind: cfg.normKind ?? "rms",
    positions: cfg.positions ?? "rope",
    mlp: cfg.mlp ?? "gated",
    linearBiases: cfg.linearBiases ?? false,
    qkNormScope: cfg.qkNormScope ?? "head",
    residualScale: cfg.residualScale ?? 1,
    logitScale: cfg.logitScale ?? 1,
    normOffset: cfg.normOffset ?? 0,
    activation: cfg.activation ?? "silu",
    embedScale: cfg.embedScale ?? 1,
    attnScale: cfg.attnScale ?? 1 / Math.sqrt(cfg.HS),
    attnSoftcap: cfg.attnSoftcap ?? 0,
    finalSoftcap: cfg.finalSoftcap ?? 0,
  };
}

/** One layer's attention: causal over a sliding window of `window` tokens (null: the whole prefix), and its RoPE. */
export interface LayerAttention {
  window: number | null;
  /** false: the layer applies no rotary embedding at all (its q and k are used as projected). */
  rope: boolean;
  ropeTheta: number;
  ropeScaling: RopeScaling;
}

/** Layer l's attention: from cfg.layers when the model has per-layer settings, else the model-wide ones. */
export function layerAttention(cfg: LlamaConfig, l: number): LayerAttention {
  const per = cfg.layers?.[l];
  if (per) return per;
  // a model with learned positions (GPT-2) rotates nothing
  return { window: cfg.slidingWindow, rope: cfg.positions !== "learned", ropeTheta: cfg.ropeTheta, ropeScaling: cfg.ropeScaling };
}

/**
 * Whether layer l is local (sliding window) in a Gemma model whose every `pattern`-th layer is global: Gemma 2
 * alternates (pattern 2, layer 0 local), Gemma 3 has five local layers to one global (pattern 6). Hugging Face's
 * layer_types and llama.cpp's sliding_window_pattern both follow this rule.
 */
export const gemmaLayerIsLocal = (l: number, pattern: number): boolean => (l + 1) % pattern !== 0;

/** The smallest sliding_window_pattern whose rule gives `cfg`'s local and global layers, or null when none does. */
export function gemmaWindowPattern(cfg: LlamaConfig): number | null {
  for (let p = 1; p <= cfg.L + 1; p++)
    if (Array.from({ length: cfg.L }, (_, l) => layerAttention(cfg, l)).every((a, l) => (a.window !== null) === gemmaLayerIsLocal(l, p))) return p;
  return null;
}

/**
 * One parameter tensor of the model. Names are tsdpo's own (io/ maps them to Hugging Face and GGUF names). Shapes
 * are row-major, matrices [out][in] like nn.Linear.weight.
 */
export interface ParamSpec {
  name: string;
  shape: number[];
}

/** Parameter tensors in arena order. */
export function paramSpecs(cfg: LlamaConfig): ParamSpec[] {
  const { V, C, L, NH, NKV, HS, FF } = cfg;
  const { norms, qkNormScope, normKind, positions, mlp, linearBiases } = decoderOptions(cfg);
  const preNorm = norms !== "post", postNorm = norms !== "pre";
  // A LayerNorm has a bias beside its weight, named <norm>_b.
  const norm = (name: string): ParamSpec[] => [{ name, shape: [C] }, ...(normKind === "layer" ? [{ name: name + "_b", shape: [C] }] : [])];
  const specs: ParamSpec[] = [{ name: "tok_embd", shape: [V, C] }];
  if (positions === "learned") specs.push({ name: "pos_embd", shape: [cfg.maxSeqLen, C] });
  for (let l = 0; l < L; l++) {
    const p = `layers.${l}.`;
    if (preNorm) specs.push(...norm(p + "attn_norm"));
    specs.push({ name: p + "wq", shape: [NH * HS, C] });
    specs.push({ name: p + "wk", shape: [NKV * HS, C] });
    specs.push({ name: p + "wv", shape: [NKV * HS, C] });
    if (cfg.qkvBias) {
      specs.push({ name: p + "bq", shape: [NH * HS] });
      specs.push({ name: p + "bk", shape: [NKV * HS] });
      specs.push({ name: p + "bv", shape: [NKV * HS] });
    }
    if (cfg.qkNorm) {
      const whole = qkNormScope === "projection";
      specs.push({ name: p + "q_norm", shape: [whole ? NH * HS : HS] });
      specs.push({ name: p + "k_norm", shape: [whole ? NKV * HS : HS] });
    }
    specs.push({ name: p + "wo", shape: [C, NH * HS] });
    if (linearBiases) specs.push({ name: p + "bo", shape: [C] });
    if (postNorm) specs.push(...norm(p + "attn_post_norm"));
    if (preNorm) specs.push(...norm(p + "ffn_norm"));
    if (mlp === "gated") specs.push({ name: p + "w_gate", shape: [FF, C] });
    specs.push({ name: p + "w_up", shape: [FF, C] });
    if (linearBiases) specs.push({ name: p + "b_up", shape: [FF] });
    specs.push({ name: p + "w_down", shape: [C, FF] });
    if (linearBiases) specs.push({ name: p + "b_down", shape: [C] });
    if (postNorm) specs.push(...norm(p + "ffn_post_norm"));
  }
  specs.push(...norm("out_norm"));
  if (!cfg.tiedEmbeddings) specs.push({ name: "lm_head", shape: [V, C] });
  return specs;
}

export const numel = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

/**
 * Whether parameter `name` of `shape` is a matrix the decoder multiplies by, and so may stay in frozen blocks (F16,
 * BF16 or quantised): every 2-D parameter except GPT-2's position table, which is added to the embeddings row by row.
 */
export const isBlockMatrix = (name: string, shape: readonly number[]): boolean => shape.length === 2 && name !== "pos_embd";

/**
 * The kind of an architecture tsdpo does not train, by its HF model_type or GGUF general.architecture (the two
 * spell most names alike, with or without `_`), so that the refusal says what the model is rather than only that
 * its name is unknown. null: not a known mixture-of-experts, state-space or hybrid architecture.
 */
export function unsupportedArchitectureKind(name: string): string | null {
  const n = name.toLowerCase().replace(/[-_]/g, "");
  const moe = ["mixtral", "qwen2moe", "qwen3moe", "deepseekv2", "deepseekv3", "deepseek2", "dbrx", "olmoe", "granitemoe", "phimoe", "jetmoe", "arctic", "gptoss", "llama4", "grok", "minimax", "ernie45moe", "hunyuanmoe", "glm4moe", "bailingmoe"];
  const ssm = ["mamba", "mamba2", "rwkv", "rwkv5", "rwkv6", "rwkv7", "xlstm"];
  const hybrid = ["jamba", "zamba", "zamba2", "falconh1", "granitemoehybrid", "nemotronh", "bamba", "lfm2", "plamo2", "recurrentgemma", "minimaxm1"];
  if (hybrid.includes(n)) return "a hybrid attention/state-space model";
  if (ssm.includes(n)) return "a state-space (recurrent) model";
  if (moe.includes(n) || /moe$/.test(n)) return "a mixture-of-experts model";
  return null;
}
