// LoRA (Hu et al. 2021): each targeted projection W (OUT × IN) gains a low-rank update, y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ with
// A (r × IN), B (OUT × r), s = alpha / r. A starts random (PEFT's kaiming-uniform bound 1/sqrt(IN)), B at zero, so a
// fresh adapter changes nothing. The base weights stay frozen: no gradient, no optimizer state. Switching the
// adapters off gives back the base model exactly, which is how DPO's reference is computed without a second copy.
//
// All adapter tensors live in one arena (and their gradients in another), laid out in (layer, target) order with
// A before B.

import type { Buf } from "../backend/contract.js";
import type { LlamaConfig } from "./config.js";
import type { FloatCtor, Model } from "./decoder.js";
import { Rng } from "../rng.js";
import { inputError } from "../errors.js";
import { type Weight, isQuant } from "./weights.js";

/** The projections LoRA can target, by tsdpo's parameter names (PEFT's q_proj, k_proj, …). */
export const LORA_TARGETS = ["wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down"] as const;
export type LoraTarget = (typeof LORA_TARGETS)[number];
export const DEFAULT_LORA_TARGETS: readonly LoraTarget[] = ["wq", "wk", "wv", "wo"];

export interface LoraConfig {
  r: number;
  alpha: number;
  dropout: number; // probability of zeroing an input element of the LoRA branch during training
  targets: LoraTarget[];
}

export interface LoraAdapter {
  layer: number;
  target: LoraTarget;
  IN: number;
  OUT: number;
  A: Buf; // (r, IN)
  B: Buf; // (OUT, r)
  dA: Buf; // (r, IN)
  dB: Buf; // (OUT, r)
  offsetA: number; // into the arena
  offsetB: number;
}

export interface Lora {
  cfg: LoraConfig;
  scale: number; // alpha / r
  params: Buf; // the adapter arena
  grads: Buf; // same layout
  adapters: LoraAdapter[];
  /** byLayer[l][target] */
  byLayer: Partial<Record<LoraTarget, LoraAdapter>>[];
  /** false = the base model (DPO's reference) */
  enabled: boolean;
}

/** (OUT, IN) of a targeted projection. */
export function targetShape(cfg: LlamaConfig, t: LoraTarget): [number, number] {
  const q = cfg.NH * cfg.HS;
  const kv = cfg.NKV * cfg.HS;
  switch (t) {
    case "wq": return [q, cfg.C];
    case "wk": return [kv, cfg.C];
    case "wv": return [kv, cfg.C];
    case "wo": return [cfg.C, q];
    case "w_gate": return [cfg.FF, cfg.C];
    case "w_up": return [cfg.FF, cfg.C];
    case "w_down": return [cfg.C, cfg.FF];
  }
}

/** Allocates adapters for every layer and target; A random (seeded), B zero. */
export function createLora(model: Model, cfg: LoraConfig, seed: number): Lora {
  const ctor: FloatCtor = model.ctor;
  if (model.cfg.family === "gpt2" || model.cfg.family === "phi3")
    throw inputError(
      `LoRA on ${model.cfg.family === "gpt2" ? "GPT-2 is not supported yet (its q, k and v share one c_attn module in PEFT)" : "Phi-3 is not supported yet (PEFT adapts its fused qkv_proj and gate_up_proj as single modules)"}; use full fine-tuning (use_peft false)`,
    );
  if (cfg.targets.includes("w_gate") && model.cfg.mlp === "plain")
    throw inputError(`lora target gate_proj: this ${model.cfg.family} model has no gated MLP (no gate_proj); leave it out of lora_target_modules`);
  const layout: { layer: number; target: LoraTarget; IN: number; OUT: number; offsetA: number; offsetB: number }[] = [];
  let off = 0;
  for (let l = 0; l < model.cfg.L; l++)
    for (const t of LORA_TARGETS) {
      if (!cfg.targets.includes(t)) continue;
      const [OUT, IN] = targetShape(model.cfg, t);
      layout.push({ layer: l, target: t, IN, OUT, offsetA: off, offsetB: off + cfg.r * IN });
      off += cfg.r * IN + OUT * cfg.r;
    }
  const params = new ctor(off);
  const grads = new ctor(off);
  const rng = new Rng(seed);
  const adapters: LoraAdapter[] = layout.map((e) => {
    const A = params.subarray(e.offsetA, e.offsetA + cfg.r * e.IN);
    const bound = 1 / Math.sqrt(e.IN); // kaiming_uniform(a=√5), as PEFT initialises lora_A
    for (let i = 0; i < A.length; i++) A[i] = (2 * rng.next() - 1) * bound;
    return {
      ...e,
      A,
      B: params.subarray(e.offsetB, e.offsetB + e.OUT * cfg.r),
      dA: grads.subarray(e.offsetA, e.offsetA + cfg.r * e.IN),
      dB: grads.subarray(e.offsetB, e.offsetB + e.OUT * cfg.r),
    };
  });
  const byLayer: Lora["byLayer"] = Array.from({ length: model.cfg.L }, () => ({}));
  for (const a of adapters) byLayer[a.layer]![a.target] = a;
  return { cfg: { ...cfg, targets: [...cfg.targets] }, scale: cfg.alpha / cfg.r, params, grads, adapters, byLayer, enabled: true };
}

/** W += s·B·A for every adapter: the merged model computes what base + adapters computed. */
export function mergeLora(model: Model, lora: Lora): void {
  for (const a of lora.adapters) {
    const W = baseWeight(model, a.layer, a.target);
    // The merge is onto float weights: a quantised base is dequantised first (export does it, tensor by tensor).
    if (isQuant(W)) throw new Error(`internal: merging LoRA into a quantised ${a.target}; dequantise the model first`);
    const r = lora.cfg.r;
    for (let o = 0; o < a.OUT; o++)
      for (let i = 0; i < a.IN; i++) {
        let s = 0;
        for (let k = 0; k < r; k++) s += a.B[o * r + k]! * a.A[k * a.IN + i]!;
        W[o * a.IN + i] += lora.scale * s;
      }
  }
}

export function baseWeight(model: Model, layer: number, t: LoraTarget): Weight {
  const w = model.p.layers[layer]!;
  switch (t) {
    case "wq": return w.wq;
    case "wk": return w.wk;
    case "wv": return w.wv;
    case "wo": return w.wo;
    case "w_gate":
      if (!w.wGate) throw new Error("internal: LoRA on w_gate of a model without a gated MLP");
      return w.wGate;
    case "w_up": return w.wUp;
    case "w_down": return w.wDown;
  }
}
