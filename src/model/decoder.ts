// The decoder every supported family runs (Llama 2/3, Mistral, Qwen2, Qwen3, SmolLM, Gemma 2, Gemma 3): parameters,
// activations, forward and backward as straight lists of kernel calls. A family is a set of options in its config
// (model/config.ts decoderOptions, and per-layer attention), read where the computation branches, never a copy of
// the forward. It knows shapes and the order of kernels, not DPO and not file formats. The training forward returns
// per-token log-probs of given next tokens; the backward takes d(log-probs) and accumulates parameter gradients.
//
// Memory follows llm.c: parameters, gradients and activations are each one allocation carved into named views,
// sized once for (maxRows, maxT); a step with R ≤ maxRows rows of T ≤ maxT tokens uses a prefix of each view.

import type { Backend, Buf } from "../backend/contract.js";
import { type LlamaConfig, type ParamSpec, decoderOptions, layerAttention, numel, paramSpecs } from "./config.js";
import { softcapped } from "../backend/js/softcap.js";
import { ropeLongAfter, ropeTables, rotaryDim } from "./rope.js";
import type { Rng } from "../rng.js";
import type { Lora, LoraAdapter, LoraPart, LoraTarget } from "./lora.js";
import {
  type QuantWeight, type Weight, dequantRows, embeddingForwardW, isQuant, lmHeadLogprobBackwardW, lmHeadLogprobForwardW, matmulBackwardW,
  matmulForwardW,
} from "./weights.js";

export type FloatCtor = Float32ArrayConstructor | Float64ArrayConstructor;

/** W is Weight for a model's parameters (a matrix may be frozen in a quantised format) and Buf for its gradients. */
export interface LayerParams<W extends Weight = Weight> {
  attnNorm: Buf | null; // (C)   null with norms "post" (OLMo 2)
  attnNormB: Buf | null; // (C)   a LayerNorm's bias (GPT-2)
  wq: W; // (NH·HS, C)
  wk: W; // (NKV·HS, C)
  wv: W; // (NKV·HS, C)
  bq: Buf | null; // (NH·HS)   Qwen2
  bk: Buf | null; // (NKV·HS)
  bv: Buf | null; // (NKV·HS)
  qNorm: Buf | null; // (HS), or (NH·HS) over the whole projection (OLMo 2)   Qwen3, Gemma 3
  kNorm: Buf | null; // (HS), or (NKV·HS)
  wo: W; // (C, NH·HS)
  bo: Buf | null; // (C)   GPT-2
  attnPostNorm: Buf | null; // (C)   Gemma's norm of the attention output
  ffnNorm: Buf | null; // (C)
  ffnNormB: Buf | null; // (C)
  wGate: W | null; // (FF, C)   null for a plain MLP (GPT-2)
  wUp: W; // (FF, C)
  bUp: Buf | null; // (FF)   GPT-2
  wDown: W; // (C, FF)
  bDown: Buf | null; // (C)   GPT-2
  ffnPostNorm: Buf | null; // (C)   Gemma's norm of the MLP output
}

export interface ParamViews<W extends Weight = Weight> {
  tokEmbd: W; // (V, C)
  posEmbd: Buf | null; // (maxSeqLen, C)   learned positions (GPT-2)
  layers: LayerParams<W>[];
  outNorm: Buf; // (C)
  outNormB: Buf | null; // (C)
  lmHead: W; // (V, C); the same view as tokEmbd when embeddings are tied
}

export interface ParamEntry extends ParamSpec {
  offset: number; // into the arena
  size: number;
}

export interface Model {
  cfg: LlamaConfig;
  ctor: FloatCtor;
  entries: ParamEntry[]; // arena layout, in paramSpecs order (quantised tensors are not in the arena)
  params: Buf; // the parameter arena
  /** Frozen matrices kept in their stored block format (a quantised GGUF), by tsdpo name; empty for most models. */
  quant: Map<string, QuantWeight>;
  p: ParamViews; // named views into params, and the quantised matrices
  /** LoRA adapters (attach before creating activations or a KV cache), or null for a plain model. */
  lora: Lora | null;
}

export interface Gradients {
  grads: Buf; // arena with the same layout as Model.params
  g: ParamViews<Buf>;
}

/** The arena's layout: every parameter except those named in `quantised`, which live in Model.quant. */
function arenaLayout(cfg: LlamaConfig, quantised: ReadonlySet<string>): ParamEntry[] {
  let offset = 0;
  return paramSpecs(cfg).filter((s) => !quantised.has(s.name)).map((s) => {
    const size = numel(s.shape);
    const e = { ...s, offset, size };
    offset += size;
    return e;
  });
}

export function paramCount(cfg: LlamaConfig): number {
  return paramSpecs(cfg).reduce((a, s) => a + numel(s.shape), 0);
}

/** Named views over an arena laid out as `entries`, and over the quantised matrices (parameters only). */
export function viewsOf(cfg: LlamaConfig, entries: ParamEntry[], arena: Buf): ParamViews<Buf>;
export function viewsOf(cfg: LlamaConfig, entries: ParamEntry[], arena: Buf, quant: ReadonlyMap<string, QuantWeight>): ParamViews;
export function viewsOf(cfg: LlamaConfig, entries: ParamEntry[], arena: Buf, quant?: ReadonlyMap<string, QuantWeight>): ParamViews {
  const byName = new Map<string, Weight>(entries.map((e) => [e.name, arena.subarray(e.offset, e.offset + e.size)]));
  for (const [name, w] of quant ?? []) byName.set(name, w);
  const weight = (name: string): Weight => {
    const v = byName.get(name);
    if (!v) throw new Error(`internal: no parameter ${name}`);
    return v;
  };
  const get = (name: string): Buf => {
    const v = weight(name);
    if (isQuant(v)) throw new Error(`internal: ${name} cannot be quantised`);
    return v;
  };
  const opt = (name: string): Buf | null => (byName.has(name) ? get(name) : null);
  const layers: LayerParams[] = [];
  for (let l = 0; l < cfg.L; l++) {
    const p = `layers.${l}.`;
    layers.push({
      attnNorm: opt(p + "attn_norm"), attnNormB: opt(p + "attn_norm_b"),
      wq: weight(p + "wq"), wk: weight(p + "wk"), wv: weight(p + "wv"),
      bq: opt(p + "bq"), bk: opt(p + "bk"), bv: opt(p + "bv"),
      qNorm: opt(p + "q_norm"), kNorm: opt(p + "k_norm"),
      wo: weight(p + "wo"), bo: opt(p + "bo"), attnPostNorm: opt(p + "attn_post_norm"),
      ffnNorm: opt(p + "ffn_norm"), ffnNormB: opt(p + "ffn_norm_b"),
      wGate: byName.has(p + "w_gate") ? weight(p + "w_gate") : null, wUp: weight(p + "w_up"), bUp: opt(p + "b_up"),
      wDown: weight(p + "w_down"), bDown: opt(p + "b_down"), ffnPostNorm: opt(p + "ffn_post_norm"),
    });
  }
  const tokEmbd = weight("tok_embd");
  return {
    tokEmbd, posEmbd: opt("pos_embd"), layers, outNorm: get("out_norm"), outNormB: opt("out_norm_b"),
    lmHead: cfg.tiedEmbeddings ? tokEmbd : weight("lm_head"),
  };
}

/**
 * A model with a zeroed arena. `quant` holds the matrices that stay in their stored block format (frozen): they get
 * no place in the arena, so a quantised model never holds a float32 copy of them.
 */
export function createModel(cfg: LlamaConfig, ctor: FloatCtor = Float32Array, quant: Map<string, QuantWeight> = new Map()): Model {
  validateConfig(cfg);
  if (quant.size > 0 && ctor !== Float32Array) throw new Error("internal: quantised weights run in float32");
  const entries = arenaLayout(cfg, new Set(quant.keys()));
  const total = entries.reduce((a, e) => a + e.size, 0);
  const params = new ctor(total);
  return { cfg, ctor, entries, params, quant, p: viewsOf(cfg, entries, params, quant), lora: null };
}

/** A copy with its own parameter arena (the frozen DPO reference); quantised matrices, frozen anyway, are shared. */
export function cloneModel(model: Model): Model {
  const copy = createModel(model.cfg, model.ctor, model.quant);
  copy.params.set(model.params);
  return copy;
}

/**
 * A float32 copy with every weight in the arena, quantised matrices dequantised: what a LoRA merge and an export
 * write (the merge is onto the dequantised base). A model without quantised weights is cloned as is.
 */
export function floatCopy(be: Backend, model: Model): Model {
  const copy = createModel(model.cfg, model.ctor);
  const byName = new Map(model.entries.map((e) => [e.name, e]));
  for (const e of copy.entries) {
    const src = byName.get(e.name);
    const q = model.quant.get(e.name);
    if (src) copy.params.set(model.params.subarray(src.offset, src.offset + src.size), e.offset);
    else if (q) dequantRows(be, copy.params.subarray(e.offset, e.offset + e.size) as Float32Array, q, 0, q.rows);
    else throw new Error(`internal: ${e.name} is neither in the arena nor quantised`);
  }
  return copy;
}

export function createGradients(model: Model): Gradients {
  // Full fine-tuning needs every weight in float32: a quantised model trains LoRA adapters (or is dequantised first).
  if (model.quant.size > 0) throw new Error("internal: a model with quantised weights has no full gradient arena");
  const grads = new model.ctor(model.params.length);
  return { grads, g: viewsOf(model.cfg, model.entries, grads) };
}

/** The parameter tensor called `name` (tsdpo's names, see paramSpecs). */
export function paramView(model: Model, name: string): Buf {
  const e = model.entries.find((x) => x.name === name);
  if (!e) throw new Error(`internal: no float parameter ${name}${model.quant.has(name) ? " (it is quantised)" : ""}`);
  return model.params.subarray(e.offset, e.offset + e.size);
}

function validateConfig(cfg: LlamaConfig): void {
  const bad = (what: string): never => {
    throw new Error(`internal: invalid model config: ${what}`);
  };
  for (const k of ["V", "C", "L", "NH", "NKV", "HS", "FF"] as const)
    if (!Number.isInteger(cfg[k]) || cfg[k] <= 0) bad(`${k} = ${cfg[k]}`);
  if (cfg.NH % cfg.NKV !== 0) bad(`NH ${cfg.NH} is not a multiple of NKV ${cfg.NKV}`);
  if (cfg.HS % 2 !== 0) bad(`HS ${cfg.HS} is odd; RoPE needs pairs`);
  const RD = rotaryDim(cfg);
  if (!Number.isInteger(RD) || RD < 2 || RD % 2 !== 0 || RD > cfg.HS) bad(`ropeDim ${RD} must be even, at least 2 and at most HS ${cfg.HS}`);
  const o = decoderOptions(cfg);
  // combinations no supported family has, which the kernels' wiring does not cover
  if (o.normKind === "layer" && (o.norms !== "pre" || cfg.qkNorm)) bad("LayerNorm is wired as a pre-norm only, without q/k norms");
  if (o.mlp === "plain" && o.activation !== "gelu_tanh") bad("a plain MLP is GELU's (activation gelu_tanh)");
}

// ---------------------------------------------------------------------------------------------------------------
// Activations

export interface LayerActs {
  ln1: Buf | null; // (R,T,C)   attention RMSNorm output (null without pre-norms: the layer reads x itself)
  rstd1: Buf | null; // (R,T)
  mean1: Buf | null; // (R,T)   a LayerNorm's means (GPT-2)
  qPre: Buf | null; // (R,T,NH·HS)  q before its RMSNorm (Qwen3)
  qRstd: Buf | null; // (R,T,NH)
  kPre: Buf | null; // (R,T,NKV·HS)
  kRstd: Buf | null; // (R,T,NKV)
  q: Buf; // (R,T,NH·HS)  after norm and RoPE
  k: Buf; // (R,T,NKV·HS)
  v: Buf; // (R,T,NKV·HS)
  attLse: Buf; // (R,NH,T)  attention log-normalisers (the probabilities are recomputed in backward)
  atty: Buf; // (R,T,NH·HS) attention output before o_proj
  attOut: Buf | null; // (R,T,C)  o_proj output before its post-norm (sandwich norms)
  attRstd: Buf | null; // (R,T)
  xMid: Buf; // (R,T,C)   residual after attention
  ln2: Buf | null; // (R,T,C)
  rstd2: Buf | null; // (R,T)
  mean2: Buf | null; // (R,T)
  gate: Buf | null; // (R,T,FF)   null for a plain MLP, whose activation reads up
  up: Buf; // (R,T,FF)
  h: Buf; // (R,T,FF)  act(gate)·up
  mlpOut: Buf | null; // (R,T,C)  down_proj output before its post-norm (sandwich norms)
  mlpRstd: Buf | null; // (R,T)
}

export interface Activations {
  maxRows: number;
  maxT: number;
  R: number; // rows and length of the last forward
  T: number;
  ids: Int32Array; // (R,T)
  pos: Int32Array; // (R,T)  RoPE position of each token
  branch: Int32Array | null; // (R,2) [P, S] per packed preference row (see Backend.attentionForward), or null
  branchBuf: Int32Array; // (maxRows,2) storage that branch views
  M: number; // log-probs wanted by the last forward
  rows: Int32Array; // (M)  flat index (r·T + t) of the position predicting targets[m]
  targets: Int32Array; // (M)
  x: Buf[]; // L+1 of (R,T,C): the residual stream entering each layer, and after the last
  layers: LayerActs[];
  lnf: Buf; // (R,T,C)
  rstdf: Buf; // (R,T)
  meanf: Buf | null; // (R,T)
  lse: Buf; // (M)  logsumexp of the logits
  logitSum: Buf; // (M)  Σ_v logits, for TRL's logits/* metrics
  logSumSq: Buf; // (M)  log Σ_v p², for WPO (filled when wantLogSumSq)
  logp: Buf; // (M)   log p(targets | prefix)
  entropy: Buf; // (M)  entropy of each next-token distribution, for TRL's `entropy`
  argmax: Int32Array; // (M)  the most likely next token (the first on a tie), for `mean_token_accuracy`
  /** Set by a caller that needs logSumSq from the next forward. */
  wantLogSumSq: boolean;
  tmp: Buf; // (R,T,C)  projection output before it joins the residual
  // backward scratch, reused by every layer
  dx: Buf; // (R,T,C)  gradient of the residual stream
  dln: Buf; // (R,T,C)
  dq: Buf; // (R,T,NH·HS)
  dk: Buf; // (R,T,NKV·HS)
  dv: Buf; // (R,T,NKV·HS)
  dqPre: Buf; // (R,T,NH·HS)
  dkPre: Buf; // (R,T,NKV·HS)
  datty: Buf; // (R,T,NH·HS)
  dgate: Buf | null; // (R,T,FF)
  dup: Buf; // (R,T,FF)
  dh: Buf; // (R,T,FF)
  /** Per layer, its RoPE tables (maxT, RD/2) (layers with the same base and scaling share one), or null: no RoPE. */
  rope: (RopeTable | null)[];
  /** The longest sequence of the last forward, max(pos) + 1: it picks LongRoPE's short or long tables (ropeAt). */
  seqLen: number;
  /** LoRA branch buffers when the model had adapters at creation, else null. */
  lora: LoraActs | null;
  /** Set by the trainer for a training forward when LoRA dropout is on; null = no dropout (eval, reference). */
  dropout: Rng | null;
  /**
   * Gradient checkpointing: every entry of `layers` is the same single set of views, so only the residual stream
   * x[0..L] survives the forward, and the backward recomputes each layer from its input x[l] just before it needs
   * that layer's activations. The recomputation runs the same kernels on the same inputs, so it gives the same bits.
   */
  checkpointing: boolean;
}

export interface LoraActs {
  u: Map<string, Buf>; // per adapter (loraKey): (R,T,r) s·(x·Aᵀ), saved for backward; shared by a fused adapter's parts
  drop: Map<string, Buf>; // per adapter when dropout > 0: (R,T,IN) the input mask, 0 or 1/(1−p); one for all its parts
  xDrop: Buf; // (R,T,maxIN) the dropped input of the current projection
  out: Buf; // (R,T,maxOUT) the branch output before it joins the projection's
  du: Buf; // (R,T,r)
  dx: Buf; // (R,T,maxIN)
}

// By layer and first projection, not by object: a reference model's own copy of the adapters finds the same buffers.
const loraKey = (a: LoraAdapter): string => `${a.layer}.${a.targets[0]}`;

/**
 * The activation arena's views, in order, with their lengths in elements: what createActivations allocates (the fit
 * planner, src/train/plan.ts, adds these up without allocating them).
 */
export function activationLayout(cfg: LlamaConfig, maxRows: number, maxT: number, checkpointing: boolean): [string, number][] {
  const { C, L, NH, NKV, HS, FF, qkNorm } = cfg;
  const { norms, normKind, mlp } = decoderOptions(cfg);
  const preNorm = norms !== "post", postNorm = norms !== "pre";
  const layerNorm = normKind === "layer", gated = mlp === "gated";
  const N = maxRows * maxT;
  const sizes: [string, number][] = [];
  const want = (name: string, n: number): void => void sizes.push([name, n]);
  for (let l = 0; l <= L; l++) want(`x${l}`, N * C);
  const layerSets = checkpointing ? 1 : L;
  for (let l = 0; l < layerSets; l++) {
    if (preNorm) { want(`ln1.${l}`, N * C); want(`rstd1.${l}`, N); if (layerNorm) want(`mean1.${l}`, N); }
    if (qkNorm) { want(`qPre.${l}`, N * NH * HS); want(`qRstd.${l}`, N * NH); want(`kPre.${l}`, N * NKV * HS); want(`kRstd.${l}`, N * NKV); }
    want(`q.${l}`, N * NH * HS); want(`k.${l}`, N * NKV * HS); want(`v.${l}`, N * NKV * HS);
    want(`attLse.${l}`, N * NH); want(`atty.${l}`, N * NH * HS);
    if (postNorm) { want(`attOut.${l}`, N * C); want(`attRstd.${l}`, N); }
    want(`xMid.${l}`, N * C);
    if (preNorm) { want(`ln2.${l}`, N * C); want(`rstd2.${l}`, N); if (layerNorm) want(`mean2.${l}`, N); }
    if (gated) want(`gate.${l}`, N * FF);
    want(`up.${l}`, N * FF); want(`h.${l}`, N * FF);
    if (postNorm) { want(`mlpOut.${l}`, N * C); want(`mlpRstd.${l}`, N); }
  }
  want("lnf", N * C); want("rstdf", N); if (layerNorm) want("meanf", N); want("lse", N); want("logitSum", N); want("logSumSq", N); want("logp", N); want("entropy", N);
  want("tmp", N * C); want("dx", N * C); want("dln", N * C); want("dq", N * NH * HS); want("dk", N * NKV * HS);
  want("dv", N * NKV * HS); want("dqPre", N * NH * HS); want("dkPre", N * NKV * HS); want("datty", N * NH * HS);
  if (gated) want("dgate", N * FF);
  want("dup", N * FF); want("dh", N * FF);
  return sizes;
}

/** Elements of createActivations's LoRA buffers for adapters of rank r (dropout p) on `adapters` (their IN widths). */
export function loraActivationFloats(cfg: LlamaConfig, maxRows: number, maxT: number, r: number, dropout: number, adapterIns: readonly number[]): number {
  const N = maxRows * maxT, maxIO = Math.max(cfg.C, cfg.NH * cfg.HS, cfg.FF);
  const perAdapter = adapterIns.reduce((a, IN) => a + N * r + (dropout > 0 ? N * IN : 0), 0);
  return perAdapter + (dropout > 0 ? 2 * N * maxIO : 0) + N * maxIO + N * r;
}

export interface RopeTable {
  cos: Buf; // (maxT, RD/2)
  sin: Buf;
  /**
   * LongRoPE's long-factor tables, for a sequence of more than `longAfter` tokens; null when the scaling has none or
   * no sequence of maxT tokens reaches them.
   */
  long: { cos: Buf; sin: Buf } | null;
  longAfter: number;
}

/**
 * The tables a sequence of seqLen tokens rotates with. LongRoPE follows transformers: the long factors when the
 * forward's longest sequence (max position + 1) exceeds original_max_position_embeddings, the short ones otherwise,
 * for every token of that forward.
 */
export function ropeAt(t: RopeTable, seqLen: number): { cos: Buf; sin: Buf } {
  return t.long && seqLen > t.longAfter ? t.long : t;
}

/** Each layer's RoPE tables for positions < maxT; layers with equal settings share one pair, RoPE-less layers get null. */
export function layerRopeTables(cfg: LlamaConfig, maxT: number, ctor: FloatCtor): (RopeTable | null)[] {
  const made = new Map<string, RopeTable>();
  return Array.from({ length: cfg.L }, (_, l) => {
    const a = layerAttention(cfg, l);
    if (!a.rope) return null;
    const key = JSON.stringify([a.ropeTheta, a.ropeScaling]);
    let t = made.get(key);
    if (!t) {
      const rc = { HS: cfg.HS, ropeDim: cfg.ropeDim, ropeTheta: a.ropeTheta, ropeScaling: a.ropeScaling };
      const longAfter = ropeLongAfter(a.ropeScaling);
      made.set(key, (t = { ...ropeTables(rc, maxT, ctor), long: maxT > longAfter ? ropeTables(rc, maxT, ctor, true) : null, longAfter }));
    }
    return t;
  });
}

/**
 * Carves every activation out of one allocation sized for maxRows sequences of maxT tokens. With `checkpointing`
 * (gradient checkpointing, or a forward that is never differentiated) the L layers share one set of per-layer
 * activations and only the residual stream is kept per layer (see Activations.checkpointing).
 */
export function createActivations(model: Model, maxRows: number, maxT: number, checkpointing = false): Activations {
  const { C, NH, HS, FF, L } = model.cfg;
  const N = maxRows * maxT;
  const layerSets = checkpointing ? 1 : L;
  const sizes = activationLayout(model.cfg, maxRows, maxT, checkpointing);
  const total = sizes.reduce((a, [, n]) => a + n, 0);
  const arena = new model.ctor(total);
  const views = new Map<string, Buf>();
  let off = 0;
  for (const [name, n] of sizes) {
    views.set(name, arena.subarray(off, off + n));
    off += n;
  }
  const v = (name: string): Buf => views.get(name)!;
  const o = (name: string): Buf | null => views.get(name) ?? null;
  let lora: LoraActs | null = null;
  if (model.lora) {
    const { r, dropout } = model.lora.cfg;
    const maxIO = Math.max(C, NH * HS, FF);
    lora = {
      u: new Map(model.lora.adapters.map((a) => [loraKey(a), new model.ctor(N * r)])),
      drop: new Map(dropout > 0 ? model.lora.adapters.map((a) => [loraKey(a), new model.ctor(N * a.IN)]) : []),
      xDrop: new model.ctor(dropout > 0 ? N * maxIO : 0), out: new model.ctor(N * maxIO), du: new model.ctor(N * r),
      dx: new model.ctor(dropout > 0 ? N * maxIO : 0),
    };
  }
  return {
    maxRows, maxT, R: 0, T: 0, lora, dropout: null, checkpointing,
    ids: new Int32Array(N), pos: new Int32Array(N), branch: null, branchBuf: new Int32Array(2 * maxRows),
    M: 0, rows: new Int32Array(N), targets: new Int32Array(N),
    x: Array.from({ length: L + 1 }, (_, l) => v(`x${l}`)),
    layers: Array.from({ length: L }, (_, layer) => layer % layerSets).map((l) => ({
      ln1: o(`ln1.${l}`), rstd1: o(`rstd1.${l}`), mean1: o(`mean1.${l}`),
      qPre: o(`qPre.${l}`), qRstd: o(`qRstd.${l}`), kPre: o(`kPre.${l}`), kRstd: o(`kRstd.${l}`),
      q: v(`q.${l}`), k: v(`k.${l}`), v: v(`v.${l}`), attLse: v(`attLse.${l}`), atty: v(`atty.${l}`),
      attOut: o(`attOut.${l}`), attRstd: o(`attRstd.${l}`),
      xMid: v(`xMid.${l}`), ln2: o(`ln2.${l}`), rstd2: o(`rstd2.${l}`), mean2: o(`mean2.${l}`),
      gate: o(`gate.${l}`), up: v(`up.${l}`), h: v(`h.${l}`), mlpOut: o(`mlpOut.${l}`), mlpRstd: o(`mlpRstd.${l}`),
    })),
    lnf: v("lnf"), rstdf: v("rstdf"), meanf: o("meanf"), lse: v("lse"), logitSum: v("logitSum"), logSumSq: v("logSumSq"), logp: v("logp"),
    entropy: v("entropy"), argmax: new Int32Array(N), wantLogSumSq: false,
    tmp: v("tmp"), dx: v("dx"), dln: v("dln"), dq: v("dq"), dk: v("dk"), dv: v("dv"), dqPre: v("dqPre"),
    dkPre: v("dkPre"), datty: v("datty"), dgate: o("dgate"), dup: v("dup"), dh: v("dh"),
    rope: layerRopeTables(model.cfg, maxT, model.ctor), seqLen: 0,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Projections: the base matmul plus, where an adapter targets it and adapters are on, the LoRA branch.

function activePart(model: Model, l: number, t: LoraTarget): LoraPart | null {
  return model.lora && model.lora.enabled ? (model.lora.byLayer[l]![t] ?? null) : null;
}

/**
 * out = inp·Wᵀ + bias [+ s·(drop(inp)·Aᵀ)·B_tᵀ]. The parts of a fused adapter (q, k, v of qkv_proj) read the same
 * input and share A, so as PEFT's one module they share one dropout mask and one u = s·(drop(inp)·Aᵀ): part 0 draws
 * the mask and computes u, and the later parts, which layerForward calls after it, reuse both. `replay` (a
 * checkpointed layer recomputed in the backward) reuses the mask its forward drew instead of drawing a new one, so
 * the recomputation matches the forward exactly.
 */
function linearForward(
  be: Backend, model: Model, acts: Activations, l: number, t: LoraTarget,
  out: Buf, inp: Buf, W: Weight, bias: Buf | null, N: number, IN: number, OUT: number, replay = false,
): void {
  matmulForwardW(be, out, inp, W, bias, N, IN, OUT);
  const part = activePart(model, l, t);
  if (!part) return;
  const la = acts.lora;
  if (!la) throw new Error("internal: LoRA adapters were attached after the activations were created");
  const lora = model.lora!;
  const ad = part.adapter;
  const u = la.u.get(loraKey(ad))!;
  if (part.index === 0) {
    let x = inp;
    const p = lora.cfg.dropout;
    if (p > 0 && replay) {
      const mask = la.drop.get(loraKey(ad))!;
      for (let i = 0; i < N * IN; i++) la.xDrop[i] = inp[i]! * mask[i]!;
      x = la.xDrop;
    } else if (p > 0 && acts.dropout) {
      const mask = la.drop.get(loraKey(ad))!;
      const keep = 1 / (1 - p);
      for (let i = 0; i < N * IN; i++) {
        mask[i] = acts.dropout.next() < p ? 0 : keep;
        la.xDrop[i] = inp[i]! * mask[i]!;
      }
      x = la.xDrop;
    } else if (p > 0) la.drop.get(loraKey(ad))!.fill(1, 0, N * IN);
    loraInput(be, lora, ad, u, x, N, IN);
  }
  loraOutput(be, lora, part, out, u, la.out, N, OUT);
}

/** u = s·(x·Aᵀ) (N, r): the input half of an adapter's branch, which every part of a fused adapter shares. */
function loraInput(be: Backend, lora: Lora, ad: LoraAdapter, u: Buf, x: Buf, N: number, IN: number): void {
  be.matmulForward(u, x, ad.A, null, N, IN, lora.cfg.r);
  be.scale(u, lora.scale, N * lora.cfg.r);
}

/** out += u·B_partᵀ, through tmp (N, OUT): one part's rows of the branch output. */
function loraOutput(be: Backend, lora: Lora, part: LoraPart, out: Buf, u: Buf, tmp: Buf, N: number, OUT: number): void {
  be.matmulForward(tmp, u, part.B, null, N, lora.cfg.r, OUT);
  be.accumulate(out, tmp, N * OUT);
}

/**
 * Backward of linearForward: base gradients (dW null when frozen) and, for an adapter's part, its rows of dB, its
 * share of dA and of dinp. Each part of a fused adapter adds its own share to the shared dA (the kernels accumulate),
 * so dA ends as the sum over q, k and v, the gradient of the one A that PEFT's module holds.
 */
function linearBackward(
  be: Backend, model: Model, acts: Activations, l: number, t: LoraTarget,
  dinp: Buf, dW: Buf | null, dbias: Buf | null, dout: Buf, inp: Buf, W: Weight, N: number, IN: number, OUT: number,
): void {
  matmulBackwardW(be, dinp, dW, dbias, dout, inp, W, N, IN, OUT);
  const part = activePart(model, l, t);
  if (!part) return;
  const la = acts.lora!;
  const lora = model.lora!;
  const ad = part.adapter;
  const r = lora.cfg.r;
  const u = la.u.get(loraKey(ad))!;
  la.du.fill(0, 0, N * r);
  be.matmulBackward(la.du, part.dB, null, dout, u, part.B, N, r, OUT); // du = dout·B_part, dB_part += doutᵀ·u
  be.scale(la.du, lora.scale, N * r); // u carried s, so d(x·Aᵀ) = s·du
  if (lora.cfg.dropout > 0) {
    const mask = la.drop.get(loraKey(ad))!;
    for (let i = 0; i < N * IN; i++) la.xDrop[i] = inp[i]! * mask[i]!;
    la.dx.fill(0, 0, N * IN);
    be.matmulBackward(la.dx, ad.dA, null, la.du, la.xDrop, ad.A, N, IN, r);
    for (let i = 0; i < N * IN; i++) dinp[i] += la.dx[i]! * mask[i]!;
  } else {
    be.matmulBackward(dinp, ad.dA, null, la.du, inp, ad.A, N, IN, r);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Training forward / backward

/**
 * The tokens of one forward: R rows of T tokens, and which next-token log-probs to compute.
 * - ids, pos: (R,T) token ids and their RoPE positions;
 * - branch: (R,2) or null; with it, each row packs one preference pair as prompt ++ chosen ++ rejected and the
 *   rejected answer attends to the prompt but not to the chosen answer (see Backend.attentionForward), so the
 *   prompt is computed once for both answers and receives the gradients of both;
 * - rows, targets: (M) log p(targets[m] | the tokens up to and including flat position rows[m]).
 */
export interface ForwardInput {
  ids: Int32Array;
  pos: Int32Array;
  branch: Int32Array | null;
  rows: Int32Array;
  targets: Int32Array;
  R: number;
  T: number;
  M: number;
}

/**
 * Runs R sequences of T tokens at positions 0..T−1. ids and targets are (R,T) row-major; targets[r,t] is the token
 * whose log-prob is wanted at position t (normally ids[r,t+1]; anything valid where the caller will mask it out).
 * Returns acts.logp, (R,T), valid until the next forward.
 */
export function forward(be: Backend, model: Model, acts: Activations, ids: Int32Array, targets: Int32Array, R: number, T: number): Buf {
  checkFits(acts, R, T, R * T);
  const N = R * T;
  for (let n = 0; n < N; n++) {
    acts.pos[n] = n % T;
    acts.rows[n] = n;
  }
  return forwardPacked(be, model, acts, {
    ids, pos: acts.pos, branch: null, rows: acts.rows, targets, R, T, M: N,
  });
}

function checkFits(acts: Activations, R: number, T: number, M: number): void {
  if (R > acts.maxRows || T > acts.maxT || M > R * T)
    throw new Error(`internal: batch (${R}, ${T}, M=${M}) exceeds activations (${acts.maxRows}, ${acts.maxT})`);
}

/** The general training forward (see ForwardInput). Returns acts.logp, (M), valid until the next forward. */
export function forwardPacked(be: Backend, model: Model, acts: Activations, input: ForwardInput): Buf {
  const { cfg, p } = model;
  const { C, V } = cfg;
  const { R, T, M } = input;
  checkFits(acts, R, T, M);
  const N = R * T;
  for (let i = 0; i < N; i++) {
    const id = input.ids[i]!;
    if (!(id >= 0 && id < V)) throw new Error(`internal: token id out of range at ${i}: ${id} (V=${V})`);
    const ps = input.pos[i]!;
    if (!(ps >= 0 && ps < acts.maxT)) throw new Error(`internal: position ${ps} at ${i} is outside 0..${acts.maxT - 1}`);
    if (p.posEmbd && ps >= cfg.maxSeqLen) throw new Error(`position ${ps} is beyond the model's ${cfg.maxSeqLen} learned positions`);
  }
  for (let m = 0; m < M; m++) {
    const row = input.rows[m]!, tg = input.targets[m]!;
    if (!(row >= 0 && row < N) || !(tg >= 0 && tg < V)) throw new Error(`internal: log-prob ${m} asks row ${row} / token ${tg} (N=${N}, V=${V})`);
  }
  acts.R = R;
  acts.T = T;
  acts.M = M;
  let maxPos = 0;
  for (let i = 0; i < N; i++) maxPos = Math.max(maxPos, input.pos[i]!);
  acts.seqLen = maxPos + 1;
  if (input.ids !== acts.ids) acts.ids.set(input.ids.subarray(0, N));
  if (input.pos !== acts.pos) acts.pos.set(input.pos.subarray(0, N));
  if (input.rows !== acts.rows) acts.rows.set(input.rows.subarray(0, M));
  if (input.targets !== acts.targets) acts.targets.set(input.targets.subarray(0, M));
  if (input.branch) {
    acts.branchBuf.set(input.branch.subarray(0, 2 * R));
    acts.branch = acts.branchBuf.subarray(0, 2 * R);
  } else acts.branch = null;

  const opts = decoderOptions(cfg);
  embeddingForwardW(be, acts.x[0]!, acts.ids, p.tokEmbd, N, C);
  if (opts.embedScale !== 1) be.scale(acts.x[0]!, opts.embedScale, N * C);
  if (p.posEmbd) {
    // learned positions (GPT-2): x[0] += pos_embd[pos] (acts.tmp is free until the first layer)
    be.embeddingForward(acts.tmp, acts.pos, p.posEmbd, N, C);
    be.accumulate(acts.x[0]!, acts.tmp, N * C);
  }
  for (let l = 0; l < cfg.L; l++) layerForward(be, model, acts, l, false);
  normForward(be, acts.lnf, acts.meanf, acts.rstdf, acts.x[cfg.L]!, p.outNorm, p.outNormB, N, C, cfg.rmsEps, opts.normOffset);
  if (opts.logitScale !== 1) be.scale(acts.lnf, 1 / opts.logitScale, N * C); // logits / s = (lnf / s)·Wᵀ
  lmHeadLogprobForwardW(
    be, acts.logp, acts.lse, acts.logitSum, acts.wantLogSumSq ? acts.logSumSq : null,
    acts.lnf, acts.rows, acts.targets, p.lmHead, M, C, V, opts.finalSoftcap, acts.entropy, acts.argmax,
  );
  return acts.logp.subarray(0, M);
}

/** A pre-norm or the final norm: RMSNorm, or LayerNorm with its bias and saved means (normKind "layer"). */
function normForward(
  be: Backend, out: Buf, mean: Buf | null, rstd: Buf, inp: Buf, w: Buf, b: Buf | null, N: number, C: number, eps: number, offset: number,
): void {
  if (mean) be.layernormForward(out, mean, rstd, inp, w, b, N, C, eps);
  else be.rmsnormForward(out, rstd, inp, w, N, C, eps, offset);
}

function normBackward(
  be: Backend, dinp: Buf, dw: Buf | null, db: Buf | null, dout: Buf, inp: Buf, w: Buf, mean: Buf | null, rstd: Buf,
  N: number, C: number, offset: number,
): void {
  if (mean) be.layernormBackward(dinp, dw, db, dout, inp, w, mean, rstd, N, C);
  else be.rmsnormBackward(dinp, dw, dout, inp, w, rstd, N, C, offset);
}

/**
 * Layer l of the forward, from the residual stream x[l] to x[l + 1]. `replay` is the backward's recomputation of a
 * checkpointed layer: the same kernels on the same input (dropout masks reused), stopping once the activations the
 * backward reads are back.
 */
function layerForward(be: Backend, model: Model, acts: Activations, l: number, replay: boolean): void {
  const { cfg, p } = model;
  const { C, NH, NKV, HS, FF, rmsEps } = cfg;
  const { normOffset: off, attnScale, attnSoftcap, activation, qkNormScope, residualScale } = decoderOptions(cfg);
  const { R, T } = acts;
  const N = R * T;
  const window = layerAttention(cfg, l).window ?? 0;
  const rope = acts.rope[l]!;
  const w = p.layers[l]!;
  const a = acts.layers[l]!;
  const x = acts.x[l]!;
  // Without pre-norms (OLMo 2) each sublayer reads the residual stream itself.
  const attnIn = a.ln1 ?? x;
  if (a.ln1) normForward(be, a.ln1, a.mean1, a.rstd1!, x, w.attnNorm!, w.attnNormB, N, C, cfg.rmsEps, off);
  if (cfg.qkNorm) {
    linearForward(be, model, acts, l, "wq", a.qPre!, attnIn, w.wq, w.bq, N, C, NH * HS, replay);
    linearForward(be, model, acts, l, "wk", a.kPre!, attnIn, w.wk, w.bk, N, C, NKV * HS, replay);
    const whole = qkNormScope === "projection"; // one norm over all heads' features, or one per head
    be.rmsnormForward(a.q, a.qRstd!, a.qPre!, w.qNorm!, whole ? N : N * NH, whole ? NH * HS : HS, rmsEps, off);
    be.rmsnormForward(a.k, a.kRstd!, a.kPre!, w.kNorm!, whole ? N : N * NKV, whole ? NKV * HS : HS, rmsEps, off);
  } else {
    linearForward(be, model, acts, l, "wq", a.q, attnIn, w.wq, w.bq, N, C, NH * HS, replay);
    linearForward(be, model, acts, l, "wk", a.k, attnIn, w.wk, w.bk, N, C, NKV * HS, replay);
  }
  linearForward(be, model, acts, l, "wv", a.v, attnIn, w.wv, w.bv, N, C, NKV * HS, replay);
  if (rope) {
    const { cos, sin } = ropeAt(rope, acts.seqLen), RD = rotaryDim(cfg);
    be.ropeForward(a.q, cos, sin, acts.pos, N, NH, HS, RD);
    be.ropeForward(a.k, cos, sin, acts.pos, N, NKV, HS, RD);
  }
  be.attentionForward(a.atty, a.attLse, a.q, a.k, a.v, acts.branch, R, T, NH, NKV, HS, window, attnScale, attnSoftcap);
  // Post-norms (Gemma, OLMo 2): the projection's output is normalised before it joins the residual stream, scaled
  // by residualScale (Granite) on the way.
  if (a.attOut) {
    linearForward(be, model, acts, l, "wo", a.attOut, a.atty, w.wo, w.bo, N, NH * HS, C, replay);
    be.rmsnormForward(acts.tmp, a.attRstd!, a.attOut, w.attnPostNorm!, N, C, rmsEps, off);
  } else linearForward(be, model, acts, l, "wo", acts.tmp, a.atty, w.wo, w.bo, N, NH * HS, C, replay);
  if (residualScale !== 1) be.scale(acts.tmp, residualScale, N * C);
  be.addForward(a.xMid, x, acts.tmp, N * C);
  const mlpIn = a.ln2 ?? a.xMid;
  if (a.ln2) normForward(be, a.ln2, a.mean2, a.rstd2!, a.xMid, w.ffnNorm!, w.ffnNormB, N, C, cfg.rmsEps, off);
  if (a.gate) {
    linearForward(be, model, acts, l, "w_gate", a.gate, mlpIn, w.wGate!, null, N, C, FF, replay);
    linearForward(be, model, acts, l, "w_up", a.up, mlpIn, w.wUp, w.bUp, N, C, FF, replay);
    if (activation === "gelu_tanh") be.gegluForward(a.h, a.gate, a.up, N * FF);
    else be.swigluForward(a.h, a.gate, a.up, N * FF);
  } else {
    // plain MLP (GPT-2): h = gelu(up)
    linearForward(be, model, acts, l, "w_up", a.up, mlpIn, w.wUp, w.bUp, N, C, FF, replay);
    be.geluForward(a.h, a.up, N * FF);
  }
  if (a.mlpOut) {
    linearForward(be, model, acts, l, "w_down", a.mlpOut, a.h, w.wDown, w.bDown, N, FF, C, replay);
    be.rmsnormForward(acts.tmp, a.mlpRstd!, a.mlpOut, w.ffnPostNorm!, N, C, rmsEps, off);
  } else {
    if (replay) return; // the backward needs nothing past h, and x[l + 1] was kept
    linearForward(be, model, acts, l, "w_down", acts.tmp, a.h, w.wDown, w.bDown, N, FF, C);
  }
  if (replay) return; // x[l + 1] was kept
  if (residualScale !== 1) be.scale(acts.tmp, residualScale, N * C);
  be.addForward(acts.x[l + 1]!, a.xMid, acts.tmp, N * C);
}

/**
 * The full (R·T, V) logits of the last forward, computed on request from the saved final norm (tests and tools
 * compare them with llama.cpp and PyTorch; training never builds them).
 */
export function logitsOf(be: Backend, model: Model, acts: Activations): Buf {
  const N = acts.R * acts.T;
  const out = new model.ctor(N * model.cfg.V);
  matmulForwardW(be, out, acts.lnf, model.p.lmHead, null, N, model.cfg.C, model.cfg.V);
  capLogits(out, decoderOptions(model.cfg).finalSoftcap);
  return out;
}

/** Gemma 2's final-logit soft-cap, in place (the fused LM head applies the same cap inside its kernel). */
function capLogits(logits: Buf, softcap: number): void {
  if (softcap > 0) for (let i = 0; i < logits.length; i++) logits[i] = softcapped(logits[i]!, softcap);
}

/**
 * Backward of the last forward from dlogp (M) = d objective / d logp. Accumulates into grads (+=) and, when
 * adapters are on, into model.lora.grads; the caller zeroes them once per optimizer step, which makes gradient
 * accumulation over micro-batches a plain repeat.
 */
export function backward(be: Backend, model: Model, acts: Activations, grads: Gradients | null, dlogp: Buf): void {
  const { cfg, p } = model;
  const g = grads ? grads.g : null; // null: the base weights are frozen (LoRA); adapter gradients go to model.lora
  const { C, NH, NKV, HS, FF, V } = cfg;
  const { normOffset: off, attnScale, attnSoftcap, activation, embedScale, finalSoftcap, qkNormScope, residualScale, logitScale } = decoderOptions(cfg);
  const { R, T } = acts;
  const N = R * T;
  const zero = (b: Buf, n: number): void => void b.fill(0, 0, n);
  // The gradient reaching a sublayer's output: dx itself, or residualScale·dx in acts.dln (free at both uses).
  const branchGrad = (): Buf => {
    if (residualScale === 1) return acts.dx;
    acts.dln.set(acts.dx.subarray(0, N * C));
    be.scale(acts.dln, residualScale, N * C);
    return acts.dln;
  };

  zero(acts.dln, N * C);
  lmHeadLogprobBackwardW(be, acts.dln, g ? g.lmHead : null, dlogp, acts.lnf, acts.rows, acts.targets, p.lmHead, acts.lse, acts.M, C, V, finalSoftcap);
  if (logitScale !== 1) be.scale(acts.dln, 1 / logitScale, N * C);
  zero(acts.dx, N * C);
  normBackward(be, acts.dx, g ? g.outNorm : null, g ? g.outNormB : null, acts.dln, acts.x[cfg.L]!, p.outNorm, acts.meanf, acts.rstdf, N, C, off);

  for (let l = cfg.L - 1; l >= 0; l--) {
    const w = p.layers[l]!;
    const dw = g ? g.layers[l]! : null;
    const a = acts.layers[l]!;
    if (acts.checkpointing) layerForward(be, model, acts, l, true);
    // x[l+1] = xMid + r·down(h), or xMid + r·postnorm(down(h)): dx flows unchanged to xMid and, times r, into the
    // MLP branch (acts.tmp, free in the backward, holds the gradient of down's output under a post-norm).
    let dDown = branchGrad();
    if (a.mlpOut) {
      zero(acts.tmp, N * C);
      be.rmsnormBackward(acts.tmp, dw ? dw.ffnPostNorm : null, dDown, a.mlpOut, w.ffnPostNorm!, a.mlpRstd!, N, C, off);
      dDown = acts.tmp;
    }
    zero(acts.dh, N * FF);
    linearBackward(be, model, acts, l, "w_down", acts.dh, dw ? dw.wDown : null, dw ? dw.bDown : null, dDown, a.h, w.wDown, N, FF, C);
    zero(acts.dup, N * FF);
    const mlpIn = a.ln2 ?? a.xMid;
    if (a.gate) {
      zero(acts.dgate!, N * FF);
      if (activation === "gelu_tanh") be.gegluBackward(acts.dgate!, acts.dup, acts.dh, a.gate, a.up, N * FF);
      else be.swigluBackward(acts.dgate!, acts.dup, acts.dh, a.gate, a.up, N * FF);
      zero(acts.dln, N * C);
      linearBackward(be, model, acts, l, "w_gate", acts.dln, dw ? dw.wGate : null, null, acts.dgate!, mlpIn, w.wGate!, N, C, FF);
    } else {
      be.geluBackward(acts.dup, acts.dh, a.up, N * FF);
      zero(acts.dln, N * C);
    }
    linearBackward(be, model, acts, l, "w_up", acts.dln, dw ? dw.wUp : null, dw ? dw.bUp : null, acts.dup, mlpIn, w.wUp, N, C, FF);
    if (a.ln2) normBackward(be, acts.dx, dw ? dw.ffnNorm : null, dw ? dw.ffnNormB : null, acts.dln, a.xMid, w.ffnNorm!, a.mean2, a.rstd2!, N, C, off);
    else be.accumulate(acts.dx, acts.dln, N * C);
    // xMid = x + r·o(atty), or x + r·postnorm(o(atty))
    let dO = branchGrad();
    if (a.attOut) {
      zero(acts.tmp, N * C);
      be.rmsnormBackward(acts.tmp, dw ? dw.attnPostNorm : null, dO, a.attOut, w.attnPostNorm!, a.attRstd!, N, C, off);
      dO = acts.tmp;
    }
    zero(acts.datty, N * NH * HS);
    linearBackward(be, model, acts, l, "wo", acts.datty, dw ? dw.wo : null, dw ? dw.bo : null, dO, a.atty, w.wo, N, NH * HS, C);
    zero(acts.dq, N * NH * HS);
    zero(acts.dk, N * NKV * HS);
    zero(acts.dv, N * NKV * HS);
    const window = layerAttention(cfg, l).window ?? 0;
    be.attentionBackward(acts.dq, acts.dk, acts.dv, acts.datty, a.q, a.k, a.v, a.atty, a.attLse, acts.branch, R, T, NH, NKV, HS, window, attnScale, attnSoftcap);
    const rope = acts.rope[l];
    if (rope) {
      const { cos, sin } = ropeAt(rope, acts.seqLen), RD = rotaryDim(cfg);
      be.ropeBackward(acts.dq, cos, sin, acts.pos, N, NH, HS, RD);
      be.ropeBackward(acts.dk, cos, sin, acts.pos, N, NKV, HS, RD);
    }
    let dqProj = acts.dq;
    let dkProj = acts.dk;
    if (cfg.qkNorm) {
      zero(acts.dqPre, N * NH * HS);
      zero(acts.dkPre, N * NKV * HS);
      const whole = qkNormScope === "projection";
      be.rmsnormBackward(acts.dqPre, dw ? dw.qNorm : null, acts.dq, a.qPre!, w.qNorm!, a.qRstd!, whole ? N : N * NH, whole ? NH * HS : HS, off);
      be.rmsnormBackward(acts.dkPre, dw ? dw.kNorm : null, acts.dk, a.kPre!, w.kNorm!, a.kRstd!, whole ? N : N * NKV, whole ? NKV * HS : HS, off);
      dqProj = acts.dqPre;
      dkProj = acts.dkPre;
    }
    zero(acts.dln, N * C);
    const attnIn = a.ln1 ?? acts.x[l]!;
    linearBackward(be, model, acts, l, "wq", acts.dln, dw ? dw.wq : null, dw ? dw.bq : null, dqProj, attnIn, w.wq, N, C, NH * HS);
    linearBackward(be, model, acts, l, "wk", acts.dln, dw ? dw.wk : null, dw ? dw.bk : null, dkProj, attnIn, w.wk, N, C, NKV * HS);
    linearBackward(be, model, acts, l, "wv", acts.dln, dw ? dw.wv : null, dw ? dw.bv : null, acts.dv, attnIn, w.wv, N, C, NKV * HS);
    if (a.ln1) normBackward(be, acts.dx, dw ? dw.attnNorm : null, dw ? dw.attnNormB : null, acts.dln, acts.x[l]!, w.attnNorm!, a.mean1, a.rstd1!, N, C, off);
    else be.accumulate(acts.dx, acts.dln, N * C);
  }
  if (!g) return;
  if (g.posEmbd) be.embeddingBackward(g.posEmbd, acts.dx, acts.pos, N, C); // x[0] = … + pos_embd[pos]
  if (embedScale !== 1) be.scale(acts.dx, embedScale, N * C); // x[0] = embedScale · table[ids]
  be.embeddingBackward(g.tokEmbd, acts.dx, acts.ids, N, C);
}

// ---------------------------------------------------------------------------------------------------------------
// Inference with a KV cache (generation). One sequence; no activations are kept for backward.

export interface KvCache {
  maxT: number;
  len: number; // positions filled
  k: Buf[]; // L of (maxT, NKV·HS), after RoPE
  v: Buf[]; // L of (maxT, NKV·HS)
  // scratch for up to `chunk` new tokens at a time
  chunk: number;
  x: Buf; // (chunk, C)
  ln: Buf; // (chunk, C)
  rstd: Buf; // (chunk·NH)
  mean: Buf | null; // (chunk)   a LayerNorm's means (GPT-2)
  q: Buf; // (chunk, NH·HS)
  kNew: Buf; // (chunk, NKV·HS)
  vNew: Buf; // (chunk, NKV·HS)
  qkTmp: Buf; // (chunk, NH·HS) pre-norm q or k (Qwen3)
  atty: Buf; // (chunk, NH·HS)
  tmp: Buf; // (chunk, C)
  gate: Buf; // (chunk, FF)
  up: Buf; // (chunk, FF)
  logits: Buf; // (V)
  rope: (RopeTable | null)[]; // per layer, as Activations.rope
  /**
   * The sequence length the cached keys' RoPE tables were picked for (ropeAt): LongRoPE rotates a sequence by its
   * length, so when appending tokens moves it across original_max_position_embeddings, ropeSwitch re-runs the
   * cached tokens with the other tables, as transformers' Phi3ForCausalLM.prepare_inputs_for_generation drops its
   * cache at that point.
   */
  ropeLen: number;
  /** (maxT) the tokens in the cache, kept only when a table switch may need them again (LongRoPE), else null. */
  hist: Int32Array | null;
  ids: Int32Array; // (chunk)
  pos: Int32Array; // (chunk) positions of the chunk's tokens
  loraU: Buf | null; // (chunk, r) when the model has adapters
  loraOut: Buf | null; // (chunk, max(C, NH·HS, FF))
}

export function createKvCache(model: Model, maxT: number, chunk = 64): KvCache {
  const { C, L, NH, NKV, HS, FF, V } = model.cfg;
  const m = model.ctor;
  const rope = layerRopeTables(model.cfg, maxT, m);
  return {
    maxT, len: 0, chunk, rope, ropeLen: 0, hist: rope.some((t) => t?.long) ? new Int32Array(maxT) : null,
    k: Array.from({ length: L }, () => new m(maxT * NKV * HS)),
    v: Array.from({ length: L }, () => new m(maxT * NKV * HS)),
    x: new m(chunk * C), ln: new m(chunk * C), rstd: new m(chunk * NH), q: new m(chunk * NH * HS),
    mean: decoderOptions(model.cfg).normKind === "layer" ? new m(chunk) : null,
    kNew: new m(chunk * NKV * HS), vNew: new m(chunk * NKV * HS), qkTmp: new m(chunk * NH * HS),
    atty: new m(chunk * NH * HS), tmp: new m(chunk * C), gate: new m(chunk * FF), up: new m(chunk * FF),
    logits: new m(V), ids: new Int32Array(chunk), pos: new Int32Array(chunk),
    loraU: model.lora ? new m(chunk * model.lora.cfg.r) : null,
    loraOut: model.lora ? new m(chunk * Math.max(C, NH * HS, FF)) : null,
  };
}

/**
 * Appends `tokens` to the cache and returns the logits (V) after the last of them (a view into the cache,
 * valid until the next call). Long inputs are processed `chunk` tokens at a time.
 */
export function decode(be: Backend, model: Model, cache: KvCache, tokens: readonly number[]): Buf {
  if (tokens.length === 0) throw new Error("internal: decode needs at least one token");
  if (cache.len + tokens.length > cache.maxT)
    throw new Error(`context full: ${cache.len} + ${tokens.length} tokens exceed the cache of ${cache.maxT}`);
  ropeSwitch(be, model, cache, cache.len + tokens.length);
  for (let s = 0; s < tokens.length; s += cache.chunk)
    decodeSegments(be, model, cache, [{ cache, tokens: tokens.slice(s, s + cache.chunk) }], cache.logits);
  return cache.logits;
}

/**
 * Before a cache grows to newLen tokens: when a layer's RoPE tables for newLen differ from those its cached keys
 * were rotated with (LongRoPE crossing original_max_position_embeddings, either way), re-runs the cached tokens with
 * the new tables, so every key of the sequence is rotated as a full forward of newLen tokens rotates it.
 */
function ropeSwitch(be: Backend, model: Model, cache: KvCache, newLen: number): void {
  const switches = cache.rope.some((t) => t && ropeAt(t, newLen) !== ropeAt(t, cache.ropeLen));
  cache.ropeLen = newLen;
  if (!switches || cache.len === 0) return;
  if (!cache.hist) throw new Error("internal: a RoPE table switch without the cache's token history");
  const past = Array.from(cache.hist.subarray(0, cache.len));
  cache.len = 0;
  for (let s = 0; s < past.length; s += cache.chunk)
    decodeSegments(be, model, cache, [{ cache, tokens: past.slice(s, s + cache.chunk) }], cache.logits);
}

/**
 * A cache for one more sequence that shares `scratch`'s work buffers (and its logits) and owns only its keys and
 * values: the rows of a batched sampler. Use the caches of one group one at a time (decode) or together
 * (decodeRows), never from two places at once.
 */
export function createKvRow(model: Model, scratch: KvCache): KvCache {
  const kv = model.cfg.NKV * model.cfg.HS;
  const m = model.ctor;
  return {
    ...scratch, len: 0, ropeLen: 0, hist: scratch.hist ? new Int32Array(scratch.maxT) : null,
    k: Array.from({ length: model.cfg.L }, () => new m(scratch.maxT * kv)),
    v: Array.from({ length: model.cfg.L }, () => new m(scratch.maxT * kv)),
  };
}

/**
 * One token for each of `caches` (rows made by createKvRow around one scratch, at most `chunk` of them), decoded
 * together: the projections and the LM head run once over all rows, attention runs per row against its own cache.
 * Row i's logits go to out[i·V ..]. Every kernel here computes a row independently of the others, so a row's
 * logits equal what decode() gives for that sequence alone (test/batch-sample.test.ts holds both backends to it).
 */
export function decodeRows(be: Backend, model: Model, caches: readonly KvCache[], tokens: readonly number[], out: Buf): void {
  const scratch = caches[0];
  if (!scratch || caches.length !== tokens.length) throw new Error("internal: decodeRows needs one token per cache");
  if (caches.length > scratch.chunk) throw new Error(`internal: ${caches.length} rows exceed the scratch's ${scratch.chunk}`);
  for (const c of caches) {
    if (c.x !== scratch.x) throw new Error("internal: decodeRows' caches must share one scratch (createKvRow)");
    if (c.len + 1 > c.maxT) throw new Error(`context full: ${c.len} + 1 tokens exceed the cache of ${c.maxT}`);
  }
  for (const c of caches) ropeSwitch(be, model, c, c.len + 1);
  decodeSegments(be, model, scratch, caches.map((cache, i) => ({ cache, tokens: [tokens[i]!] })), out);
}

/** linearForward for generation: no dropout, scratch from the cache; u is recomputed for each part (any call order). */
function decodeLinear(
  be: Backend, model: Model, cache: KvCache, l: number, t: LoraTarget,
  out: Buf, inp: Buf, W: Weight, bias: Buf | null, T: number, IN: number, OUT: number,
): void {
  matmulForwardW(be, out, inp, W, bias, T, IN, OUT);
  const part = activePart(model, l, t);
  if (!part) return;
  if (!cache.loraU || !cache.loraOut) throw new Error("internal: LoRA adapters were attached after the KV cache was created");
  loraInput(be, model.lora!, part.adapter, cache.loraU, inp, T, IN);
  loraOutput(be, model.lora!, part, out, cache.loraU, cache.loraOut, T, OUT);
}

/** Tokens to append to one sequence's cache. */
interface DecodeSegment {
  cache: KvCache;
  tokens: readonly number[];
}

/**
 * The decoder over new tokens of one or more sequences, with `scratch`'s work buffers: each segment's tokens sit
 * at its cache's next positions and attend to that cache only. Writes the logits after each segment's last token
 * to out[s·V ..] and advances every cache.
 */
function decodeSegments(be: Backend, model: Model, scratch: KvCache, segs: readonly DecodeSegment[], out: Buf): void {
  const { cfg, p } = model;
  const { C, NH, NKV, HS, FF, V, rmsEps } = cfg;
  const { normOffset: off, attnScale, attnSoftcap, activation, embedScale, finalSoftcap, qkNormScope, residualScale, logitScale } = decoderOptions(cfg);
  const cache = scratch;
  let T = 0;
  for (const seg of segs) {
    const pos0 = seg.cache.len;
    if (p.posEmbd && pos0 + seg.tokens.length > cfg.maxSeqLen) throw new Error(`context full: the model has ${cfg.maxSeqLen} learned positions`);
    for (let t = 0; t < seg.tokens.length; t++, T++) {
      const id = seg.tokens[t]!;
      if (!(Number.isInteger(id) && id >= 0 && id < V)) throw new Error(`token id ${id} is outside the vocabulary (V=${V})`);
      cache.ids[T] = id;
      cache.pos[T] = pos0 + t;
    }
    seg.cache.hist?.set(seg.tokens, pos0);
  }
  const kv = NKV * HS;
  const whole = qkNormScope === "projection";
  // A sublayer's output joins the residual stream: post-normed (into ln, free by then) and scaled as in layerForward.
  const join = (out: Buf, postNorm: Buf | null): void => {
    let y = out;
    if (postNorm) {
      be.rmsnormForward(cache.ln, cache.rstd, out, postNorm, T, C, rmsEps, off);
      y = cache.ln;
    }
    if (residualScale !== 1) be.scale(y, residualScale, T * C);
    be.accumulate(cache.x, y, T * C);
  };
  embeddingForwardW(be, cache.x, cache.ids, p.tokEmbd, T, C);
  if (embedScale !== 1) be.scale(cache.x, embedScale, T * C);
  if (p.posEmbd) {
    be.embeddingForward(cache.tmp, cache.pos, p.posEmbd, T, C);
    be.accumulate(cache.x, cache.tmp, T * C);
  }
  const mean = cache.mean ? cache.mean.subarray(0, T) : null; // null: RMSNorm
  for (let l = 0; l < cfg.L; l++) {
    const w = p.layers[l]!;
    if (w.attnNorm) normForward(be, cache.ln, mean, cache.rstd, cache.x, w.attnNorm, w.attnNormB, T, C, cfg.rmsEps, off);
    const attnIn = w.attnNorm ? cache.ln : cache.x;
    // New keys and values go to scratch first, then to each sequence's own cache rows.
    if (cfg.qkNorm) {
      decodeLinear(be, model, cache, l, "wq", cache.qkTmp, attnIn, w.wq, w.bq, T, C, NH * HS);
      be.rmsnormForward(cache.q, cache.rstd, cache.qkTmp, w.qNorm!, whole ? T : T * NH, whole ? NH * HS : HS, rmsEps, off);
      decodeLinear(be, model, cache, l, "wk", cache.qkTmp, attnIn, w.wk, w.bk, T, C, kv);
      be.rmsnormForward(cache.kNew, cache.rstd, cache.qkTmp, w.kNorm!, whole ? T : T * NKV, whole ? kv : HS, rmsEps, off);
    } else {
      decodeLinear(be, model, cache, l, "wq", cache.q, attnIn, w.wq, w.bq, T, C, NH * HS);
      decodeLinear(be, model, cache, l, "wk", cache.kNew, attnIn, w.wk, w.bk, T, C, kv);
    }
    decodeLinear(be, model, cache, l, "wv", cache.vNew, attnIn, w.wv, w.bv, T, C, kv);
    const rope = cache.rope[l], RD = rotaryDim(cfg);
    if (rope && !rope.long) {
      be.ropeForward(cache.q, rope.cos, rope.sin, cache.pos, T, NH, HS, RD);
      be.ropeForward(cache.kNew, rope.cos, rope.sin, cache.pos, T, NKV, HS, RD);
    } else if (rope) {
      // LongRoPE: each sequence rotates with the tables of its own length (ropeSwitch keeps its cache to them)
      for (let s = 0, t0 = 0; s < segs.length; t0 += segs[s]!.tokens.length, s++) {
        const Ts = segs[s]!.tokens.length, { cos, sin } = ropeAt(rope, segs[s]!.cache.ropeLen), pos = cache.pos.subarray(t0, t0 + Ts);
        be.ropeForward(cache.q.subarray(t0 * NH * HS, (t0 + Ts) * NH * HS), cos, sin, pos, Ts, NH, HS, RD);
        be.ropeForward(cache.kNew.subarray(t0 * kv, (t0 + Ts) * kv), cos, sin, pos, Ts, NKV, HS, RD);
      }
    }
    const window = layerAttention(cfg, l).window ?? 0;
    for (let s = 0, t0 = 0; s < segs.length; t0 += segs[s]!.tokens.length, s++) {
      const seg = segs[s]!, Ts = seg.tokens.length, pos0 = seg.cache.len;
      seg.cache.k[l]!.set(cache.kNew.subarray(t0 * kv, (t0 + Ts) * kv), pos0 * kv);
      seg.cache.v[l]!.set(cache.vNew.subarray(t0 * kv, (t0 + Ts) * kv), pos0 * kv);
      const qs = NH * HS;
      be.attentionDecode(cache.atty.subarray(t0 * qs, (t0 + Ts) * qs), cache.q.subarray(t0 * qs, (t0 + Ts) * qs),
        seg.cache.k[l]!, seg.cache.v[l]!, Ts, pos0, NH, NKV, HS, window, attnScale, attnSoftcap);
    }
    decodeLinear(be, model, cache, l, "wo", cache.tmp, cache.atty, w.wo, w.bo, T, NH * HS, C);
    join(cache.tmp, w.attnPostNorm);
    if (w.ffnNorm) normForward(be, cache.ln, mean, cache.rstd, cache.x, w.ffnNorm, w.ffnNormB, T, C, cfg.rmsEps, off);
    const mlpIn = w.ffnNorm ? cache.ln : cache.x;
    decodeLinear(be, model, cache, l, "w_up", cache.up, mlpIn, w.wUp, w.bUp, T, C, FF);
    if (w.wGate) {
      decodeLinear(be, model, cache, l, "w_gate", cache.gate, mlpIn, w.wGate, null, T, C, FF);
      if (activation === "gelu_tanh") be.gegluForward(cache.gate, cache.gate, cache.up, T * FF);
      else be.swigluForward(cache.gate, cache.gate, cache.up, T * FF);
    } else be.geluForward(cache.gate, cache.up, T * FF); // plain MLP: gelu(up), into the gate scratch
    decodeLinear(be, model, cache, l, "w_down", cache.tmp, cache.gate, w.wDown, w.bDown, T, FF, C);
    join(cache.tmp, w.ffnPostNorm);
  }
  // Only each segment's last position needs logits (to choose its next token): gather those rows, then one LM head.
  const S = segs.length;
  for (let s = 0, t = 0; s < S; s++) {
    t += segs[s]!.tokens.length;
    cache.tmp.set(cache.x.subarray((t - 1) * C, t * C), s * C);
  }
  normForward(be, cache.ln, mean ? mean.subarray(0, S) : null, cache.rstd, cache.tmp, p.outNorm, p.outNormB, S, C, cfg.rmsEps, off);
  if (logitScale !== 1) be.scale(cache.ln, 1 / logitScale, S * C);
  const logits = out.subarray(0, S * V);
  matmulForwardW(be, logits, cache.ln, p.lmHead, null, S, C, V);
  capLogits(logits, finalSoftcap);
  for (const seg of segs) seg.cache.len += seg.tokens.length;
}
