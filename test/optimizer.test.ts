// The optimizer step and the learning-rate schedules, against values worked out by hand: gradient clipping
// (torch.nn.utils.clip_grad_norm_), AdamW's weight-decay groups (no decay on norms and biases, as Hugging Face's
// Trainer groups them), and transformers' get_scheduler for constant, linear and cosine with warmup. Trainer runs
// compare two runs that clip and schedule the same way, and Adam's update hides the gradient's scale, so these
// settings are pinned here, one function at a time.

import { test } from "node:test";
import assert from "node:assert/strict";
import { jsBackend } from "../src/backend/js/kernels.js";
import type { LlamaConfig } from "../src/model/config.js";
import { createModel } from "../src/model/decoder.js";
import { lrAt, warmupSteps } from "../src/train/schedule.js";
import { modelDecayRanges, optimizerStep, type Optimizer } from "../src/train/train.js";
import { testBackend } from "./helpers.js";

const be = testBackend();

function optimizer(n: number, over: Partial<Optimizer> = {}): Optimizer {
  return {
    m: new Float32Array(n), v: new Float32Array(n), decayRanges: [{ offset: 0, size: n, decay: true }],
    beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 1, ...over,
  };
}

test("clipping: a gradient of norm 5 with max_grad_norm 1 is scaled to norm 1 and the step reports 5", () => {
  for (const backend of [jsBackend, be]) {
    const grads = Float32Array.of(3, 0, -4, 0); // norm 5
    const params = new Float32Array(4);
    const norm = optimizerStep(backend, optimizer(4), params, grads, 1e-3, 1);
    assert.equal(norm, 5, `${backend.name}: the reported norm is the norm before clipping`);
    const coef = 1 / (5 + 1e-6); // torch: max_norm / (total_norm + 1e-6)
    assert.deepEqual(Array.from(grads), [3 * coef, 0, -4 * coef, 0].map(Math.fround), `${backend.name}: clipped in place`);
    const after = Math.hypot(...grads);
    assert.ok(Math.abs(after - 1) < 1e-6, `${backend.name}: clipped norm ${after}`);
  }
});

test("clipping leaves a gradient under the limit, and every gradient when max_grad_norm is 0", () => {
  for (const [maxGradNorm, g] of [[1, [0.3, -0.4]], [0, [30, -40]]] as const) {
    const grads = Float32Array.from(g);
    const norm = optimizerStep(be, optimizer(2, { maxGradNorm }), new Float32Array(2), grads, 1e-3, 1);
    assert.ok(Math.abs(norm - Math.hypot(...g)) < 1e-6 * Math.hypot(...g));
    assert.deepEqual(Array.from(grads), g.map(Math.fround), `max_grad_norm ${maxGradNorm}: untouched`);
  }
});

test("a non-finite gradient norm is reported and changes nothing", () => {
  const grads = Float32Array.of(1, Infinity), params = Float32Array.of(0.5, 0.25), o = optimizer(2);
  const norm = optimizerStep(be, o, params, grads, 1e-3, 1);
  assert.equal(norm, Infinity);
  assert.deepEqual(Array.from(params), [0.5, 0.25]);
  assert.deepEqual(Array.from(o.m), [0, 0]);
});

test("weight decay applies to weight matrices and embeddings, never to norms or biases", () => {
  // A Qwen2-style model has both kinds: q/k/v biases and RMSNorm weights. With a zero gradient, AdamW's moments stay
  // zero and its update is 0/(0 + ε) = 0, so after one step a decayed tensor is exactly p·(1 − lr·wd) and an
  // undecayed one is unchanged.
  const cfg: LlamaConfig = {
    family: "qwen2", V: 11, C: 8, L: 2, NH: 2, NKV: 1, HS: 4, FF: 12, ropeTheta: 1e6, ropeScaling: { type: "none" },
    rmsEps: 1e-6, tiedEmbeddings: false, qkvBias: true, qkNorm: false, maxSeqLen: 16, slidingWindow: null,
  };
  const model = createModel(cfg);
  model.params.forEach((_, i) => (model.params[i] = 0.5 + (i % 7) / 8));
  const before = Float32Array.from(model.params);
  const ranges = modelDecayRanges(model);
  const noDecay = model.entries.filter((_, i) => !ranges[i]!.decay).map((e) => e.name);
  assert.deepEqual(noDecay.sort(), [
    "out_norm", "layers.0.attn_norm", "layers.0.bk", "layers.0.bq", "layers.0.bv", "layers.0.ffn_norm",
    "layers.1.attn_norm", "layers.1.bk", "layers.1.bq", "layers.1.bv", "layers.1.ffn_norm",
  ].sort());
  const lr = 0.1, wd = 0.25;
  optimizerStep(be, optimizer(model.params.length, { decayRanges: ranges, weightDecay: wd }), model.params,
    new Float32Array(model.params.length), lr, 1);
  for (const [i, e] of model.entries.entries()) {
    const got = model.params.subarray(e.offset, e.offset + e.size), was = before.subarray(e.offset, e.offset + e.size);
    const want = ranges[i]!.decay ? Array.from(was, (p) => Math.fround(p * (1 - lr * wd))) : Array.from(was);
    assert.deepEqual(Array.from(got), want, `${e.name} (${ranges[i]!.decay ? "decayed" : "not decayed"})`);
  }
});

test("schedules: constant, linear and cosine with warmup, as transformers' get_scheduler, by hand", () => {
  const peak = 1e-3, warmup = 4, total = 20;
  // warmup: peak · step / warmup, the same for every type; lrAt(0) = 0, as transformers does
  for (const type of ["constant", "linear", "cosine"] as const) {
    assert.equal(lrAt(type, peak, 0, warmup, total), 0);
    assert.equal(lrAt(type, peak, 1, warmup, total), 2.5e-4);
    assert.equal(lrAt(type, peak, 2, warmup, total), 5e-4);
    assert.equal(lrAt(type, peak, 4, warmup, total), 1e-3);
  }
  assert.equal(lrAt("constant", peak, 19, warmup, total), 1e-3);
  // linear: peak · (total − step) / (total − warmup)
  assert.equal(lrAt("linear", peak, 12, warmup, total), 5e-4);
  assert.equal(lrAt("linear", peak, 16, warmup, total), 2.5e-4);
  assert.equal(lrAt("linear", peak, 20, warmup, total), 0);
  assert.equal(lrAt("linear", peak, 25, warmup, total), 0);
  // cosine: peak · ½(1 + cos(π · (step − warmup) / (total − warmup)))
  const close = (a: number, b: number): void => assert.ok(Math.abs(a - b) < 1e-18, `${a} vs ${b}`);
  close(lrAt("cosine", peak, 8, warmup, total), 1e-3 * 0.5 * (1 + Math.SQRT1_2)); // a quarter of the way: cos(π/4)
  close(lrAt("cosine", peak, 12, warmup, total), 5e-4); // half way
  close(lrAt("cosine", peak, 16, warmup, total), 1e-3 * 0.5 * (1 - Math.SQRT1_2));
  close(lrAt("cosine", peak, 20, warmup, total), 0);
  // no warmup: the first step already runs at the peak
  assert.equal(lrAt("linear", peak, 0, 0, 10), 1e-3);
  assert.equal(lrAt("linear", peak, 5, 0, 10), 5e-4);
  // warmup steps from the config: explicit steps win; a ratio rounds up
  assert.equal(warmupSteps(0, 0.1, 95), 10);
  assert.equal(warmupSteps(3, 0.5, 100), 3);
  assert.equal(warmupSteps(0, 0, 100), 0);
});
