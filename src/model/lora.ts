// LoRA (Hu et al. 2021): each targeted projection W (OUT × IN) gains a low-rank update, y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ with
// A (r × IN), B (OUT × r), s = alpha / r. A starts random (PEFT's kaiming-uniform bound 1/sqrt(IN)), B at zero, so a
// fresh adapter changes nothing. The base weights stay frozen: no gradient, no optimizer state. Switching the
// adapters off gives back the base model exactly, which is how DPO's reference is computed without a second copy.
//
// An adapter belongs to one module as PEFT sees the model. Where a family fuses projections that read the same input
// into one module (Phi-3's qkv_proj and gate_up_proj, GPT-2's c_attn; tsdpo keeps their weights split, io/phi3.ts and
// io/gpt2.ts), the module gets ONE adapter: one A (r, IN) shared by its projections, and one B whose rows stack their
// outputs (q | k | v, gate | up). Each projection's share, a LoraPart, is the shared A and its own rows of B, so
// the fused weight's update s·B·A is, row block by row block, each projection's s·B_part·A.
//
// All adapter tensors live in one arena (and their gradients in another), laid out in (layer, module) order with
// A before B.

import type { Buf } from "../backend/contract.js";
import { type LlamaConfig, decoderOptions } from "./config.js";
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

/** One module's adapter: A and B, and the projections whose outputs B's rows stack (one unless the module is fused). */
export interface LoraAdapter {
  layer: number;
  targets: LoraTarget[]; // in B's row order
  parts: LoraPart[]; // one per target, same order
  IN: number;
  OUT: number; // rows of B: Σ of the parts' OUT
  A: Buf; // (r, IN)
  B: Buf; // (OUT, r)
  dA: Buf; // (r, IN)
  dB: Buf; // (OUT, r)
  offsetA: number; // into the arena
  offsetB: number;
}

/** One projection's share of an adapter: the adapter's A (shared by every part) and its own block of B's rows. */
export interface LoraPart {
  adapter: LoraAdapter;
  target: LoraTarget;
  /** Position in adapter.parts: the training forward computes the shared s·(x·Aᵀ) at part 0 (see decoder.ts). */
  index: number;
  OUT: number;
  A: Buf; // (r, IN)   adapter.A
  dA: Buf; // (r, IN)  adapter.dA; every part's backward adds to it
  B: Buf; // (OUT, r)  rows of adapter.B
  dB: Buf; // (OUT, r)
}

export interface Lora {
  cfg: LoraConfig;
  /** The config of the model the adapters belong to (their shapes, and PEFT's module names for its family). */
  base: LlamaConfig;
  scale: number; // alpha / r
  params: Buf; // the adapter arena
  grads: Buf; // same layout
  adapters: LoraAdapter[];
  /** byLayer[l][target]: the part of an adapter that computes that projection */
  byLayer: Partial<Record<LoraTarget, LoraPart>>[];
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

/** Every projection `cfg`'s layers have (PEFT's "all-linear"): the seven, without gate for a plain MLP (GPT-2). */
export function allLoraTargets(cfg: LlamaConfig): LoraTarget[] {
  return LORA_TARGETS.filter((t) => t !== "w_gate" || decoderOptions(cfg).mlp === "gated");
}

/**
 * The projections that one fused module of `cfg`'s family holds, in the order its output rows stack them: Phi-3's
 * qkv_proj and gate_up_proj (gate first, as Phi3MLP's chunk(2)), GPT-2's c_attn (q, k, v, as its split). The
 * decoder's layerForward also calls them in this order, which its shared-u LoRA forward relies on (linearForward).
 */
function fusedModules(cfg: LlamaConfig): readonly (readonly LoraTarget[])[] {
  switch (cfg.family) {
    case "phi3": return [["wq", "wk", "wv"], ["w_gate", "w_up"]];
    case "gpt2": return [["wq", "wk", "wv"]];
    default: return [];
  }
}

/** One layer's adapted modules for `targets`, in arena order: the targets of each (B's row blocks), IN and OUT. */
export function loraModules(cfg: LlamaConfig, targets: readonly LoraTarget[]): { targets: LoraTarget[]; IN: number; OUT: number }[] {
  if (targets.includes("w_gate") && decoderOptions(cfg).mlp === "plain")
    throw inputError(`lora target gate_proj: this ${cfg.family} model has no gated MLP (no gate_proj); leave it out of lora_target_modules`);
  const out: { targets: LoraTarget[]; IN: number; OUT: number }[] = [];
  for (const t of LORA_TARGETS) {
    if (!targets.includes(t)) continue;
    const fused = fusedModules(cfg).find((m) => m.includes(t));
    if (fused && fused[0] !== t) continue; // added with its module's first projection
    const members = fused ? [...fused] : [t];
    const missing = members.filter((m) => !targets.includes(m));
    if (missing.length)
      throw inputError(
        `lora targets ${members.filter((m) => targets.includes(m)).join(", ")} without ${missing.join(", ")}: this ${cfg.family} model computes ` +
          `${members.join(", ")} as one fused projection, which LoRA adapts as one module with a shared A; target all of them`,
      );
    out.push({ targets: members, IN: targetShape(cfg, t)[1], OUT: members.reduce((a, m) => a + targetShape(cfg, m)[0], 0) });
  }
  return out;
}

/** Allocates adapters for every layer and module; A random (seeded), B zero. */
export function createLora(model: Model, cfg: LoraConfig, seed: number): Lora {
  const ctor: FloatCtor = model.ctor;
  const modules = loraModules(model.cfg, cfg.targets);
  const r = cfg.r;
  const layout: { layer: number; targets: LoraTarget[]; IN: number; OUT: number; offsetA: number; offsetB: number }[] = [];
  let off = 0;
  for (let l = 0; l < model.cfg.L; l++)
    for (const m of modules) {
      layout.push({ layer: l, ...m, targets: [...m.targets], offsetA: off, offsetB: off + r * m.IN });
      off += r * m.IN + m.OUT * r;
    }
  const params = new ctor(off);
  const grads = new ctor(off);
  const rng = new Rng(seed);
  const adapters: LoraAdapter[] = layout.map((e) => {
    const A = params.subarray(e.offsetA, e.offsetA + r * e.IN);
    const bound = 1 / Math.sqrt(e.IN); // kaiming_uniform(a=√5), as PEFT initialises lora_A
    for (let i = 0; i < A.length; i++) A[i] = (2 * rng.next() - 1) * bound;
    const a: LoraAdapter = {
      ...e, A, parts: [],
      B: params.subarray(e.offsetB, e.offsetB + e.OUT * r),
      dA: grads.subarray(e.offsetA, e.offsetA + r * e.IN),
      dB: grads.subarray(e.offsetB, e.offsetB + e.OUT * r),
    };
    let row = 0;
    for (const [index, target] of e.targets.entries()) {
      const OUT = targetShape(model.cfg, target)[0];
      a.parts.push({ adapter: a, target, index, OUT, A: a.A, dA: a.dA, B: a.B.subarray(row * r, (row + OUT) * r), dB: a.dB.subarray(row * r, (row + OUT) * r) });
      row += OUT;
    }
    return a;
  });
  const byLayer: Lora["byLayer"] = Array.from({ length: model.cfg.L }, () => ({}));
  for (const a of adapters) for (const p of a.parts) byLayer[a.layer]![p.target] = p;
  return { cfg: { ...cfg, targets: [...cfg.targets] }, base: model.cfg, scale: cfg.alpha / cfg.r, params, grads, adapters, byLayer, enabled: true };
}

/** W += s·B·A for every projection of every adapter: the merged model computes what base + adapters computed. */
export function mergeLora(model: Model, lora: Lora): void {
  const r = lora.cfg.r;
  for (const a of lora.adapters)
    for (const p of a.parts) {
      const W = baseWeight(model, a.layer, p.target);
      // The merge is onto float weights: a quantised base is dequantised first (export does it, tensor by tensor).
      if (isQuant(W)) throw new Error(`internal: merging LoRA into a quantised ${p.target}; dequantise the model first`);
      for (let o = 0; o < p.OUT; o++)
        for (let i = 0; i < a.IN; i++) {
          let s = 0;
          for (let k = 0; k < r; k++) s += p.B[o * r + k]! * a.A[k * a.IN + i]!;
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
