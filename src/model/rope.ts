// Rotary position tables from the config: inverse frequencies (with linear, Llama-3 or LongRoPE scaling, as Hugging
// Face transformers' rope utilities define them) and the cos/sin tables the kernels read.
//
// Partial RoPE (ropeDim < HS, Phi-4-mini) rotates the first RD = ropeDim features of each head, and its frequencies
// are those of an RD-wide head: inv_freq[i] = theta^(−2i/RD), i < RD/2 (modeling_rope_utils computes dim =
// int(head_dim · partial_rotary_factor) and uses it in place of the head size).

import type { LlamaConfig } from "./config.js";

export type RopeConfig = Pick<LlamaConfig, "HS" | "ropeTheta" | "ropeScaling" | "ropeDim">;

/** The rotary width RD: the features per head that rotate (HS unless the model has partial RoPE). */
export const rotaryDim = (cfg: Pick<LlamaConfig, "HS" | "ropeDim">): number => cfg.ropeDim ?? cfg.HS;

/**
 * inv_freq[i] = theta^(−2i/RD), i < RD/2, then scaled. `long` picks LongRoPE's long factors (sequences longer than
 * its original_max_position_embeddings); other scalings ignore it.
 */
export function ropeInvFreq(cfg: RopeConfig, long = false): Float64Array {
  const RD = rotaryDim(cfg);
  const half = RD >> 1;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / cfg.ropeTheta ** ((2 * i) / RD);
  const s = cfg.ropeScaling;
  switch (s.type) {
    case "none":
      break;
    case "linear":
      for (let i = 0; i < half; i++) inv[i]! /= s.factor;
      break;
    case "llama3": {
      // Llama 3.1: long wavelengths are slowed by `factor`, short ones kept, and the band between is interpolated.
      const lowFreqWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
      const highFreqWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
      for (let i = 0; i < half; i++) {
        const f = inv[i]!;
        const wavelen = (2 * Math.PI) / f;
        if (wavelen < highFreqWavelen) continue;
        if (wavelen > lowFreqWavelen) {
          inv[i] = f / s.factor;
          continue;
        }
        const smooth = (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
        inv[i] = (1 - smooth) * (f / s.factor) + smooth * f;
      }
      break;
    }
    case "longrope": {
      // HF _compute_longrope_parameters: inv_freq = 1 / (ext_factors · base^(2i/RD)), one factor per frequency.
      const factors = long ? s.longFactor : s.shortFactor;
      if (factors.length !== half) throw new Error(`internal: longrope has ${factors.length} factors for ${half} frequencies`);
      for (let i = 0; i < half; i++) inv[i]! /= factors[i]!;
      break;
    }
    default: {
      const never: never = s;
      throw new Error(`unhandled rope scaling ${JSON.stringify(never)}`);
    }
  }
  return inv;
}

/**
 * LongRoPE's default attention factor (HF _compute_longrope_parameters, when rope_scaling has no attention_factor):
 * with s = maxPositionEmbeddings / originalMaxPositionEmbeddings, √(1 + ln s / ln original) for s > 1, else 1.
 */
export function longropeAttentionFactor(maxPositionEmbeddings: number, originalMaxPositionEmbeddings: number): number {
  const s = maxPositionEmbeddings / originalMaxPositionEmbeddings;
  return s <= 1 ? 1 : Math.sqrt(1 + Math.log(s) / Math.log(originalMaxPositionEmbeddings));
}

/**
 * When the long tables apply: LongRoPE switches to its long factors for a sequence longer than this many tokens
 * (HF: max(position_ids) + 1 > original_max_position_embeddings); Infinity for every other scaling.
 */
export const ropeLongAfter = (s: LlamaConfig["ropeScaling"]): number => (s.type === "longrope" ? s.originalMaxPositionEmbeddings : Infinity);

/** llama.cpp's rope_freqs divisors for Llama-3 scaling: unscaled / scaled inverse frequency, per frequency. */
export function ropeFreqFactors(cfg: RopeConfig): Float32Array {
  const plain = ropeInvFreq({ ...cfg, ropeScaling: { type: "none" } });
  const scaled = ropeInvFreq(cfg);
  return Float32Array.from(plain, (f, i) => f / scaled[i]!);
}

/**
 * cos/sin tables of shape (maxT, RD/2): angle = pos · inv_freq[i], both times LongRoPE's attention factor (HF
 * multiplies cos and sin by attention_scaling; it is 1 for every other scaling). `long`: LongRoPE's long factors.
 */
export function ropeTables(
  cfg: RopeConfig,
  maxT: number,
  ctor: Float32ArrayConstructor | Float64ArrayConstructor,
  long = false,
): { cos: Float32Array | Float64Array; sin: Float32Array | Float64Array } {
  const inv = ropeInvFreq(cfg, long);
  const half = inv.length;
  const m = cfg.ropeScaling.type === "longrope" ? cfg.ropeScaling.attentionFactor : 1;
  const cos = new ctor(maxT * half);
  const sin = new ctor(maxT * half);
  for (let p = 0; p < maxT; p++)
    for (let i = 0; i < half; i++) {
      const a = p * inv[i]!;
      cos[p * half + i] = m * Math.cos(a);
      sin[p * half + i] = m * Math.sin(a);
    }
  return { cos, sin };
}
