// The family options of the one decoder (LlamaConfig.norms, normOffset, activation, embedScale, attnScale,
// attnSoftcap, finalSoftcap, qkNormScope, residualScale, logitScale, per-layer attention), as Gemma 2, Gemma 3,
// OLMo 2, Granite and SmolLM3 set them, checked at model level: every parameter's gradient against central finite
// differences in float64 (so the backward follows each option, soft-caps biting), the KV-cache decode against the
// training forward (generation sees the same model), and gradient checkpointing against keeping every activation
// (the recomputation of a sandwich layer must reach its post-norms). The PyTorch fixtures (torch-fixtures.test.ts)
// check the same options against Hugging Face's definitions; this file checks tsdpo against itself by calculus.

import { test } from "node:test";
import assert from "node:assert/strict";
import { jsBackend as be } from "../src/backend/js/kernels.js";
import type { LayerAttention, LlamaConfig } from "../src/model/config.js";
import { backward, createActivations, createGradients, createKvCache, decode, forward, logitsOf, type Model } from "../src/model/decoder.js";
import { assertAllClose, assertParamGradients, randomModel, rng, weightedLogpGradients } from "./helpers.js";

const local = (window: number, ropeTheta = 10000): LayerAttention => ({ window, rope: true, ropeTheta, ropeScaling: { type: "none" } });
const global = (ropeTheta: number, factor = 1): LayerAttention => ({
  window: null, rope: true, ropeTheta, ropeScaling: factor === 1 ? { type: "none" } : { type: "linear", factor },
});

// Small caps so that tanh is far from linear on these random weights (the real ones are 50 and 30).
const gemma2: LlamaConfig = {
  family: "gemma2", V: 17, C: 8, L: 3, NH: 2, NKV: 1, HS: 4, FF: 12, ropeTheta: 10000, ropeScaling: { type: "none" },
  rmsEps: 1e-6, tiedEmbeddings: true, qkvBias: false, qkNorm: false, maxSeqLen: 32, slidingWindow: 3,
  layers: [local(3), global(10000), local(3)],
  norms: "sandwich", normOffset: 1, activation: "gelu_tanh", embedScale: Math.sqrt(8), attnScale: 1 / Math.sqrt(6),
  attnSoftcap: 0.7, finalSoftcap: 1.5,
};
const gemma3: LlamaConfig = {
  ...gemma2, family: "gemma3", qkNorm: true, attnSoftcap: 0, finalSoftcap: 0, attnScale: 0.4,
  layers: [local(3), global(1e6, 4), local(3)],
};
const llamaBase: LlamaConfig = {
  family: "llama", V: 17, C: 8, L: 3, NH: 2, NKV: 1, HS: 4, FF: 12, ropeTheta: 10000, ropeScaling: { type: "none" },
  rmsEps: 1e-6, tiedEmbeddings: false, qkvBias: false, qkNorm: false, maxSeqLen: 32, slidingWindow: null,
};
// OLMo 2: norms after each sublayer only, q/k norms over the whole projection
const olmo2: LlamaConfig = { ...llamaBase, family: "olmo2", norms: "post", qkNorm: true, qkNormScope: "projection" };
// Granite: embedding, attention, residual and logit multipliers
const granite: LlamaConfig = { ...llamaBase, family: "granite", tiedEmbeddings: true, embedScale: 3, attnScale: 0.3, residualScale: 0.4, logitScale: 2.5 };
// SmolLM3: a layer without RoPE
const noRope = (rope: boolean): LayerAttention => ({ window: null, rope, ropeTheta: 10000, ropeScaling: { type: "none" } });
const smollm3: LlamaConfig = { ...llamaBase, family: "smollm3", tiedEmbeddings: true, layers: [noRope(true), noRope(false), noRope(true)] };
// GPT-2: learned positions, LayerNorms with biases, a plain GELU MLP, biases everywhere
const gpt2: LlamaConfig = {
  ...llamaBase, family: "gpt2", NKV: 2, tiedEmbeddings: true, qkvBias: true, normKind: "layer", positions: "learned", mlp: "plain",
  linearBiases: true, activation: "gelu_tanh",
};

const R = 2, T = 7;
const r0 = rng(21);
const ids = Int32Array.from({ length: R * T }, () => Math.floor(r0() * gemma2.V));
const targets = Int32Array.from({ length: R * T }, () => Math.floor(r0() * gemma2.V));
const dlogp = Float64Array.from({ length: R * T }, () => r0() - 0.5);

// Deviation-from-one norms near 0 where norms multiply by 1 + w (as Gemma stores them), other weights as randomModel
// draws them.
function gemmaModel(cfg: LlamaConfig, seed: number): Model {
  const model = randomModel(cfg, Float64Array, seed, 1.2);
  if (cfg.family === "gemma2" || cfg.family === "gemma3") for (const e of model.entries) if (/norm/.test(e.name)) for (let i = 0; i < e.size; i++) model.params[e.offset + i]! -= 1;
  return model;
}

for (const [name, cfg] of [["gemma2", gemma2], ["gemma3", gemma3], ["olmo2", olmo2], ["granite", granite], ["smollm3", smollm3], ["gpt2", gpt2]] as const) {
  test(`${name}: every parameter tensor's gradient matches finite differences in float64`, () => {
    const model = gemmaModel(cfg, 4);
    const { S, grads: g } = weightedLogpGradients(be, model, ids, targets, dlogp, R, T);
    const r = rng(5);
    const names = model.entries.map((e) => e.name);
    const post = cfg.norms === "sandwich" || cfg.norms === "post";
    for (const want of [...(post ? ["attn_post_norm", "ffn_post_norm"] : []), "tok_embd", "out_norm", ...(cfg.qkNorm ? ["q_norm", "k_norm"] : [])])
      assert.ok(names.some((n) => n.endsWith(want)), `${name} has no ${want}`);
    if (cfg.norms === "post") assert.ok(!names.some((n) => /attn_norm|ffn_norm$/.test(n)), `${name} has pre-norms`);
    if (cfg.family === "gpt2")
      for (const want of ["pos_embd", "attn_norm_b", "bo", "b_up", "b_down", "out_norm_b"]) assert.ok(names.some((n) => n.endsWith(want)), `gpt2 has no ${want}`);
    for (const e of model.entries) {
      const picks = [0, 1, 2].map(() => ({ j: e.offset + Math.floor(r() * e.size), what: `${name} ${e.name}` }));
      assertParamGradients(model.params, g.grads, S, picks);
    }
  });

  test(`${name}: KV-cache decoding gives the training forward's (capped) logits at every position`, () => {
    const model = gemmaModel(cfg, 6);
    const acts = createActivations(model, 1, T);
    forward(be, model, acts, ids.subarray(0, T), targets.subarray(0, T), 1, T);
    const all = logitsOf(be, model, acts);
    const cap = cfg.finalSoftcap ?? 0;
    if (cap > 0) assert.ok(all.every((z) => Math.abs(z) < cap), "logits are capped");
    const cache = createKvCache(model, 16, 2);
    for (let t = 0; t < T; t++) {
      const logits = decode(be, model, cache, [ids[t]!]);
      assertAllClose(logits, all.subarray(t * cfg.V, (t + 1) * cfg.V), 1e-12, 0, `${name} position ${t}`);
    }
  });

  test(`${name}: gradient checkpointing gives the same gradients as keeping every activation`, () => {
    const model = gemmaModel(cfg, 8);
    const grads = (checkpointing: boolean): Float64Array => {
      const acts = createActivations(model, R, T, checkpointing);
      forward(be, model, acts, ids, targets, R, T);
      const g = createGradients(model);
      backward(be, model, acts, g, dlogp);
      return g.grads as Float64Array;
    };
    assert.deepEqual(grads(true), grads(false));
  });
}

test("each family option changes the model's output (none is silently ignored)", () => {
  const out = (cfg: LlamaConfig): Float64Array => {
    const model = gemmaModel(cfg, 9);
    return Float64Array.from(forward(be, model, createActivations(model, R, T), ids, targets, R, T));
  };
  const ref = out(gemma2);
  const variants: [string, LlamaConfig][] = [
    ["norms", { ...gemma2, norms: "pre" }], ["normOffset", { ...gemma2, normOffset: 0 }], ["activation", { ...gemma2, activation: "silu" }],
    ["embedScale", { ...gemma2, embedScale: 1 }], ["attnScale", { ...gemma2, attnScale: 0.5 }], ["attnSoftcap", { ...gemma2, attnSoftcap: 0 }],
    ["finalSoftcap", { ...gemma2, finalSoftcap: 0 }],
  ];
  const others: [string, LlamaConfig, LlamaConfig][] = [
    ["norms post", olmo2, { ...olmo2, norms: "sandwich" }], ["qkNormScope", olmo2, { ...olmo2, qkNormScope: "head" }],
    ["residualScale", granite, { ...granite, residualScale: 1 }], ["logitScale", granite, { ...granite, logitScale: 1 }],
    ["no RoPE layer", smollm3, { ...smollm3, layers: undefined }],
    ["LayerNorm", gpt2, { ...gpt2, normKind: "rms" }], ["plain MLP", gpt2, { ...gpt2, mlp: "gated" }],
  ];
  for (const [what, a, b] of others) {
    // same seed; where the layouts differ (post vs sandwich, q/k norm sizes) the weights differ too, which is fine:
    // the point is only that the option is read
    const oa = out(a), ob = out(b);
    assert.ok(oa.some((x, i) => Math.abs(x - ob[i]!) > 1e-6), `${what} changes nothing`);
  }
  for (const [what, cfg] of variants) {
    // "norms: pre" drops two tensors, so compare on a model drawn for that config (same seed, other layout)
    const o = out(cfg);
    assert.ok(o.some((x, i) => Math.abs(x - ref[i]!) > 1e-6), `${what} changes nothing`);
  }
});
