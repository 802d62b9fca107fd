// Per-layer attention (LlamaConfig.layers, layerAttention): each layer its own sliding window or global attention,
// its own RoPE base and scaling, or no RoPE at all. Checked by: the per-layer form of the model-wide settings gives
// the same bits; a window at least as long as the sequence is global attention; the gradients of a mixed model match
// finite differences in float64 (so the backward follows each layer's settings); and the KV-cache decode, which
// generation uses, gives the training forward's logits position by position.

import { test } from "node:test";
import assert from "node:assert/strict";
import { jsBackend as be } from "../src/backend/js/kernels.js";
import type { LayerAttention, LlamaConfig } from "../src/model/config.js";
import { createActivations, createKvCache, decode, forward, logitsOf, type Model } from "../src/model/decoder.js";
import { assertAllClose, assertParamGradients, randomModel, rng, weightedLogpGradients } from "./helpers.js";

const base: LlamaConfig = {
  family: "llama", V: 13, C: 8, L: 3, NH: 2, NKV: 1, HS: 4, FF: 12, ropeTheta: 10000, ropeScaling: { type: "none" },
  rmsEps: 1e-5, tiedEmbeddings: false, qkvBias: false, qkNorm: false, maxSeqLen: 32, slidingWindow: null,
};
// local (window 3) with its own base; global without RoPE; global with a scaled base: the three kinds at once
const mixed: LayerAttention[] = [
  { window: 3, rope: true, ropeTheta: 10000, ropeScaling: { type: "none" } },
  { window: null, rope: false, ropeTheta: 10000, ropeScaling: { type: "none" } },
  { window: null, rope: true, ropeTheta: 1e6, ropeScaling: { type: "linear", factor: 2 } },
];

const modelWith = (cfg: LlamaConfig, seed: number): Model => randomModel(cfg, Float64Array, seed);

const R = 2, T = 7;
const r0 = rng(11);
const ids = Int32Array.from({ length: R * T }, () => Math.floor(r0() * base.V));
const targets = Int32Array.from({ length: R * T }, () => Math.floor(r0() * base.V));
const dlogp = Float64Array.from({ length: R * T }, () => r0() - 0.5);

function logps(model: Model): Float64Array {
  const acts = createActivations(model, R, T);
  return Float64Array.from(forward(be, model, acts, ids, targets, R, T));
}

test("the per-layer form of the model-wide settings computes the same bits; a window ≥ T is global attention", () => {
  const wide = { ...base, slidingWindow: 5, ropeTheta: 5000 };
  const perLayer: LlamaConfig = { ...wide, layers: Array.from({ length: 3 }, () => ({ window: 5, rope: true, ropeTheta: 5000, ropeScaling: { type: "none" as const } })) };
  assert.deepEqual(logps(modelWith(perLayer, 1)), logps(modelWith(wide, 1)));
  const longWindow: LlamaConfig = { ...base, layers: mixed.map((m) => ({ ...m, window: m.window === null ? T : null })) };
  const global: LlamaConfig = { ...base, layers: mixed.map((m) => ({ ...m, window: null })) };
  assert.deepEqual(logps(modelWith(longWindow, 2)), logps(modelWith(global, 2)));
  // and the settings matter: each of the three kinds changes the output
  const plain = logps(modelWith(base, 3));
  for (let l = 0; l < 3; l++) {
    const one: LlamaConfig = { ...base, layers: Array.from({ length: 3 }, (_, k) => (k === l ? mixed[l]! : { window: null, rope: true, ropeTheta: 10000, ropeScaling: { type: "none" as const } })) };
    assert.ok(logps(modelWith(one, 3)).some((x, i) => Math.abs(x - plain[i]!) > 1e-6), `layer ${l}'s setting changes nothing`);
  }
});

test("a mixed model's gradients match finite differences in float64", () => {
  const model = modelWith({ ...base, layers: mixed }, 4);
  const { S, grads: g } = weightedLogpGradients(be, model, ids, targets, dlogp, R, T);
  const r = rng(5);
  for (const e of model.entries) {
    if (!/^layers\.\d\.(wq|wk|wv|attn_norm)$/.test(e.name)) continue;
    const picks = [0, 1, 2].map(() => ({ j: e.offset + Math.floor(r() * e.size), what: e.name }));
    assertParamGradients(model.params, g.grads, S, picks);
  }
});

test("KV-cache decoding of a mixed model gives the training forward's logits at every position", () => {
  const model = modelWith({ ...base, layers: mixed }, 6);
  const acts = createActivations(model, 1, T);
  forward(be, model, acts, ids.subarray(0, T), targets.subarray(0, T), 1, T);
  const all = logitsOf(be, model, acts);
  const cache = createKvCache(model, 16, 2);
  for (let t = 0; t < T; t++) {
    const logits = decode(be, model, cache, [ids[t]!]);
    assertAllClose(logits, all.subarray(t * base.V, (t + 1) * base.V), 1e-12, 0, `position ${t}`);
  }
});
