// The whole model in float64: gradients of S = Σ mask·logp against central finite differences for every kind of
// parameter tensor, on tiny configs that switch on each architecture feature; and the KV-cache decode path
// against the training forward.

import { test } from "node:test";
import { jsBackend as be } from "../src/backend/js/kernels.js";
import type { LlamaConfig } from "../src/model/config.js";
import { createActivations, createKvCache, decode, forward, logitsOf } from "../src/model/decoder.js";
import { assertAllClose, assertParamGradients, randomModel, rng, weightedLogpGradients } from "./helpers.js";

const base: LlamaConfig = {
  family: "llama", V: 13, C: 8, L: 2, NH: 4, NKV: 2, HS: 4, FF: 12, ropeTheta: 10000, ropeScaling: { type: "none" },
  rmsEps: 1e-5, tiedEmbeddings: false, qkvBias: false, qkNorm: false, maxSeqLen: 64, slidingWindow: null,
};
const variants: [string, LlamaConfig][] = [
  ["llama untied + llama3 rope", { ...base, ropeScaling: { type: "llama3", factor: 4, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 16 } }],
  ["qwen2 tied + qkv bias", { ...base, family: "qwen2", tiedEmbeddings: true, qkvBias: true, ropeTheta: 1e6 }],
  ["qwen3 q/k norm + HS ≠ C/NH + linear rope", { ...base, family: "qwen3", tiedEmbeddings: true, qkNorm: true, HS: 6, ropeScaling: { type: "linear", factor: 2 } }],
  ["mistral sliding window", { ...base, family: "mistral", slidingWindow: 3 }],
];

function batch(cfg: LlamaConfig, R: number, T: number, seed: number): { ids: Int32Array; targets: Int32Array; mask: Float64Array } {
  const r = rng(seed);
  const ids = new Int32Array(R * T), targets = new Int32Array(R * T), mask = new Float64Array(R * T);
  for (let i = 0; i < R * T; i++) ids[i] = Math.floor(r() * cfg.V);
  for (let row = 0; row < R; row++)
    for (let t = 0; t < T; t++) {
      targets[row * T + t] = t + 1 < T ? ids[row * T + t + 1]! : 0;
      mask[row * T + t] = t >= 1 + row && t < T - 1 ? 1 : 0; // prompt of 1+row tokens, last position unused
    }
  return { ids, targets, mask };
}

for (const [name, cfg] of variants) {
  test(`model gradients match finite differences: ${name}`, () => {
    const model = randomModel(cfg, Float64Array, 42);
    const R = 2, T = 6;
    const { ids, targets, mask } = batch(cfg, R, T, 7);
    const { S, grads } = weightedLogpGradients(be, model, ids, targets, Float64Array.from(mask), R, T);
    const r = rng(3);
    for (const e of model.entries) {
      // a handful of entries per tensor keeps this fast; every tensor is covered
      const picks = new Set<number>([0, e.size - 1]);
      while (picks.size < Math.min(5, e.size)) picks.add(Math.floor(r() * e.size));
      assertParamGradients(model.params, grads.grads, S, [...picks].map((i) => ({ j: e.offset + i, what: `${e.name}[${i}]` })));
    }
  });
}

test("padding invariance: right padding does not change the log-probs of earlier positions", () => {
  const cfg = variants[2]![1];
  const model = randomModel(cfg, Float64Array, 5);
  const { ids, targets } = batch(cfg, 1, 8, 9);
  const acts = createActivations(model, 2, 8);
  const full = Float64Array.from(forward(be, model, acts, ids, targets, 1, 8));
  const padded = Int32Array.from(ids);
  padded.fill(0, 5);
  const logp = forward(be, model, acts, padded, targets, 1, 8);
  assertAllClose(logp.subarray(0, 4), full.subarray(0, 4), 0, 0, "positions before the padding");
});

for (const [name, cfg] of variants) {
  test(`KV-cache decode reproduces the training forward's logits: ${name}`, () => {
    const model = randomModel(cfg, Float64Array, 11);
    const T = 9;
    const { ids, targets } = batch(cfg, 1, T, 13);
    const acts = createActivations(model, 1, T);
    forward(be, model, acts, ids, targets, 1, T);
    const cache = createKvCache(model, 16, 4); // chunk 4 forces a prompt split over several calls
    const prompt = Array.from(ids.subarray(0, 6));
    let logits = decode(be, model, cache, prompt);
    assertAllClose(logits, logitsOf(be, model, acts).subarray(5 * cfg.V, 6 * cfg.V), 1e-12, 0, "after the prompt");
    for (let t = 6; t < T; t++) {
      logits = decode(be, model, cache, [ids[t]!]);
      assertAllClose(logits, logitsOf(be, model, acts).subarray(t * cfg.V, (t + 1) * cfg.V), 1e-12, 0, `position ${t}`);
    }
  });
}
