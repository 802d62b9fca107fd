// Real architectures (the config.json values of the published models) with deterministic random weights, for
// benchmarks: no download, the same numbers in every run and in any language (arange → sin, as the PyTorch
// fixtures do).

import type { LlamaConfig } from "./config.js";
import { type FloatCtor, type Model, createModel } from "./llama.js";

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
  // karpathy/tinyllamas stories260K (the shipped model's shape)
  stories260k: {
    family: "llama", V: 512, C: 64, L: 5, NH: 8, NKV: 4, HS: 8, FF: 172, ropeTheta: 10000, ropeScaling: { type: "none" },
    rmsEps: 1e-5, tiedEmbeddings: false, qkvBias: false, qkNorm: false, maxSeqLen: 512, slidingWindow: null,
  },
};

/** A preset model; parameter tensor k gets 0.02·sin(0.37·i + 1.3·k), norm weights 1 + 0.1·sin(…). */
export function presetModel(name: string, ctor: FloatCtor = Float32Array): Model {
  const cfg = PRESETS[name];
  if (!cfg) throw new Error(`unknown preset ${name}; known: ${Object.keys(PRESETS).join(", ")}`);
  const model = createModel(cfg, ctor);
  model.entries.forEach((e, k) => {
    const isNorm = /norm$/.test(e.name);
    const v = model.params.subarray(e.offset, e.offset + e.size);
    for (let i = 0; i < e.size; i++) {
      const s = Math.sin(0.37 * i + 1.3 * k);
      v[i] = isNorm ? 1 + 0.1 * s : 0.02 * s;
    }
  });
  return model;
}
