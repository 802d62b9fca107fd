// LoRA: adapter gradients by finite differences in float64 (with and without dropout), a fresh adapter is the
// identity, adapters off is the base model, merging gives the same function, and generation sees the adapters.

import { test } from "node:test";
import assert from "node:assert/strict";
import { jsBackend as be } from "../src/backend/js/kernels.js";
import type { LlamaConfig } from "../src/model/config.js";
import { backward, cloneModel, createActivations, createKvCache, decode, forward, logitsOf, type Model } from "../src/model/decoder.js";
import { LORA_TARGETS, createLora, mergeLora } from "../src/model/lora.js";
import { Rng } from "../src/rng.js";
import { assertAllClose, assertParamGradients, randomModel, rng } from "./helpers.js";

const cfg: LlamaConfig = {
  family: "qwen3", V: 11, C: 8, L: 2, NH: 4, NKV: 2, HS: 4, FF: 12, ropeTheta: 10000, ropeScaling: { type: "none" },
  rmsEps: 1e-5, tiedEmbeddings: true, qkvBias: false, qkNorm: true, maxSeqLen: 32, slidingWindow: null,
};

const model64 = (seed: number): Model => randomModel(cfg, Float64Array, seed);

function randomizeB(model: Model, seed: number): void {
  const r = rng(seed);
  for (const a of model.lora!.adapters) for (let i = 0; i < a.B.length; i++) a.B[i] = 0.5 * (r() - 0.5);
}

const R = 2, T = 5;
const ids = Int32Array.from([1, 4, 7, 2, 9, 3, 3, 8, 0, 5]);
const targets = Int32Array.from([4, 7, 2, 9, 0, 3, 8, 0, 5, 0]);
const mask = Float64Array.from([0, 1, 1, 1, 0, 0, 0, 1, 1, 0]);

for (const dropout of [0, 0.3]) {
  test(`LoRA A and B gradients match finite differences, all seven targets, dropout ${dropout}`, () => {
    const model = model64(1);
    model.lora = createLora(model, { r: 3, alpha: 6, dropout, targets: [...LORA_TARGETS] }, 7);
    randomizeB(model, 2);
    const acts = createActivations(model, R, T);
    const S = (): number => {
      acts.dropout = dropout > 0 ? new Rng(99) : null; // the same masks at every evaluation
      const logp = forward(be, model, acts, ids, targets, R, T);
      let s = 0;
      for (let i = 0; i < R * T; i++) s += mask[i]! * logp[i]!;
      return s;
    };
    S();
    const baseBefore = Float64Array.from(model.params);
    model.lora!.grads.fill(0);
    backward(be, model, acts, null, mask);
    assert.deepEqual(Array.from(model.params), Array.from(baseBefore), "frozen base weights are untouched");
    const r = rng(5);
    for (const a of model.lora!.adapters)
      for (const [name, off, len] of [["A", a.offsetA, a.A.length], ["B", a.offsetB, a.B.length]] as const) {
        const picks = [0, 1, 2].map(() => ({ j: off + Math.floor(r() * len), what: `layer ${a.layer} ${a.targets.join("+")}.${name}` }));
        assertParamGradients(model.lora!.params, model.lora!.grads, S, picks);
      }
  });
}

test("a fresh adapter (B = 0) leaves the model unchanged; adapters off is the base model", () => {
  const base = model64(3);
  const model = cloneModel(base);
  model.lora = createLora(model, { r: 4, alpha: 8, dropout: 0, targets: ["wq", "wk", "wv", "wo"] }, 1);
  const a0 = createActivations(base, R, T), a1 = createActivations(model, R, T);
  const want = Float64Array.from(forward(be, base, a0, ids, targets, R, T));
  assertAllClose(forward(be, model, a1, ids, targets, R, T), want, 0, 0, "fresh adapter");
  randomizeB(model, 4);
  const changed = Float64Array.from(forward(be, model, a1, ids, targets, R, T));
  assert.ok(changed.some((x, i) => Math.abs(x - want[i]!) > 1e-3), "a trained adapter changes the outputs");
  model.lora!.enabled = false;
  assertAllClose(forward(be, model, a1, ids, targets, R, T), want, 0, 0, "adapters off");
});

test("merging B·A into the base weights computes the same function", () => {
  const model = model64(5);
  model.lora = createLora(model, { r: 2, alpha: 5, dropout: 0, targets: ["wq", "wv", "w_up", "w_down"] }, 3);
  randomizeB(model, 6);
  const acts = createActivations(model, R, T);
  const want = Float64Array.from(forward(be, model, acts, ids, targets, R, T));
  const merged = cloneModel(model);
  mergeLora(merged, model.lora!);
  const am = createActivations(merged, R, T);
  assertAllClose(forward(be, merged, am, ids, targets, R, T), want, 1e-12, 0, "merged");
});

test("generation with adapters: KV-cache decode equals the training forward", () => {
  const model = model64(8);
  model.lora = createLora(model, { r: 2, alpha: 4, dropout: 0, targets: [...LORA_TARGETS] }, 9);
  randomizeB(model, 10);
  const acts = createActivations(model, 1, T);
  forward(be, model, acts, ids.subarray(0, T), targets.subarray(0, T), 1, T);
  const cache = createKvCache(model, 8, 2);
  const logits = decode(be, model, cache, Array.from(ids.subarray(0, T)));
  assertAllClose(logits, logitsOf(be, model, acts).subarray((T - 1) * cfg.V, T * cfg.V), 1e-12, 0, "last position");
});
