// Rotary position tables from the config: inverse frequencies (with linear or Llama-3 scaling, as Hugging Face
// transformers' rope utilities define them) and the cos/sin tables the kernels read.

import type { LlamaConfig } from "./config.js";

/** inv_freq[i] = theta^(−2i/HS), i < HS/2, then scaled. */
export function ropeInvFreq(cfg: Pick<LlamaConfig, "HS" | "ropeTheta" | "ropeScaling">): Float64Array {
  const half = cfg.HS >> 1;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / cfg.ropeTheta ** ((2 * i) / cfg.HS);
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
    default: {
      const never: never = s;
      throw new Error(`unhandled rope scaling ${JSON.stringify(never)}`);
    }
  }
  return inv;
}

/** llama.cpp's rope_freqs divisors for Llama-3 scaling: unscaled / scaled inverse frequency, per frequency. */
export function ropeFreqFactors(cfg: Pick<LlamaConfig, "HS" | "ropeTheta" | "ropeScaling">): Float32Array {
  const plain = ropeInvFreq({ ...cfg, ropeScaling: { type: "none" } });
  const scaled = ropeInvFreq(cfg);
  return Float32Array.from(plain, (f, i) => f / scaled[i]!);
}

/** cos/sin tables of shape (maxT, HS/2): angle = pos · inv_freq[i]. */
export function ropeTables(
  cfg: Pick<LlamaConfig, "HS" | "ropeTheta" | "ropeScaling">,
  maxT: number,
  ctor: Float32ArrayConstructor | Float64ArrayConstructor,
): { cos: Float32Array | Float64Array; sin: Float32Array | Float64Array } {
  const inv = ropeInvFreq(cfg);
  const half = cfg.HS >> 1;
  const cos = new ctor(maxT * half);
  const sin = new ctor(maxT * half);
  for (let p = 0; p < maxT; p++)
    for (let i = 0; i < half; i++) {
      const a = p * inv[i]!;
      cos[p * half + i] = Math.cos(a);
      sin[p * half + i] = Math.sin(a);
    }
  return { cos, sin };
}
