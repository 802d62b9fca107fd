// The shared-prefix layout (src/data/pack.ts): each pair's prompt computed once for both answers. It must equal
// TRL's concatenated batch: the same per-token log-probs and the same parameter gradients, on every architecture
// feature (biases, q/k norm, RoPE scaling, the sliding window, whose positions restart for the rejected answer).

import { test } from "node:test";
import assert from "node:assert/strict";
import { jsBackend as be } from "../src/backend/js/kernels.js";
import type { Backend } from "../src/backend/contract.js";
import { packPairs } from "../src/data/pack.js";
import type { TokenizedPair } from "../src/data/types.js";
import type { LlamaConfig } from "../src/model/config.js";
import { backward, createGradients, type Model } from "../src/model/decoder.js";
import { activationsForPairs, forwardPairs } from "../src/train/logps.js";
import { assertAllClose, maxAbsDiff, randomModel, rng, testBackend } from "./helpers.js";

const pair = (index: number, prompt: number[], chosen: number[], rejected: number[]): TokenizedPair => ({
  source: { file: "test", format: "jsonl", index, line: index + 1 },
  promptIds: Int32Array.from(prompt), chosenIds: Int32Array.from(chosen), rejectedIds: Int32Array.from(rejected),
  truncated: false,
});

test("packPairs lays out prompt ++ chosen ++ rejected with restarting positions, and the log-probs each answer needs", () => {
  // the diagram at the top of src/data/pack.ts: BOS p1 p2 | c1 c2 | r1 r2 r3
  const pk = packPairs([pair(0, [1, 11, 12], [21, 22], [31, 32, 33]), pair(1, [1], [41], [51])], true, 0);
  assert.equal(pk.R, 2);
  assert.equal(pk.T, 8);
  assert.deepEqual(Array.from(pk.ids.subarray(0, 8)), [1, 11, 12, 21, 22, 31, 32, 33]);
  assert.deepEqual(Array.from(pk.pos.subarray(0, 8)), [0, 1, 2, 3, 4, 3, 4, 5]);
  assert.deepEqual(Array.from(pk.ids.subarray(8, 11)), [1, 41, 51]);
  assert.deepEqual(Array.from(pk.pos.subarray(8, 11)), [0, 1, 1]);
  assert.deepEqual(Array.from(pk.branch!), [3, 5, 1, 2]);
  // grid row s, column k → (row of the position that predicts it, the token)
  const asked = (s: number): [number, number][] =>
    Array.from({ length: pk.Tc }, (_, k) => pk.grid[s * pk.Tc + k]!).filter((m) => m >= 0).map((m) => [pk.rows[m]!, pk.targets[m]!]);
  assert.deepEqual(asked(0), [[2, 21], [3, 22]]); // chosen of pair 0
  assert.deepEqual(asked(2), [[2, 31], [5, 32], [6, 33]]); // rejected of pair 0: the first from the prompt's end
  assert.deepEqual(asked(1), [[8, 41]]);
  assert.deepEqual(asked(3), [[8, 51]]);
  assert.deepEqual(Array.from(pk.completionLengths), [2, 1, 3, 1]);
  assert.equal(pk.tokens, 8 + 3);
  const cat = packPairs([pair(0, [1, 11, 12], [21, 22], [31, 32, 33])], false, 0);
  assert.equal(cat.R, 2);
  assert.equal(cat.T, 6);
  assert.equal(cat.branch, null);
  assert.equal(cat.tokens, 5 + 6);
});

const base: LlamaConfig = {
  family: "llama", V: 23, C: 8, L: 2, NH: 4, NKV: 2, HS: 4, FF: 12, ropeTheta: 10000, ropeScaling: { type: "none" },
  rmsEps: 1e-5, tiedEmbeddings: false, qkvBias: false, qkNorm: false, maxSeqLen: 64, slidingWindow: null,
};
const variants: [string, LlamaConfig][] = [
  ["llama untied + llama3 rope", { ...base, ropeScaling: { type: "llama3", factor: 4, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 16 } }],
  ["qwen2 tied + qkv bias", { ...base, family: "qwen2", tiedEmbeddings: true, qkvBias: true, ropeTheta: 1e6 }],
  ["qwen3 q/k norm + HS ≠ C/NH", { ...base, family: "qwen3", tiedEmbeddings: true, qkNorm: true, HS: 6 }],
  ["mistral sliding window 4", { ...base, family: "mistral", slidingWindow: 4 }],
];



/** Pairs of unequal prompt and answer lengths, so rows pad differently in the two layouts. */
function randomPairs(V: number, seed: number, lengths: [number, number, number][]): TokenizedPair[] {
  const r = rng(seed);
  const ids = (n: number): number[] => Array.from({ length: n }, () => Math.floor(r() * V));
  return lengths.map(([P, cw, cl], i) => pair(i, ids(P), ids(cw), ids(cl)));
}

/** Per-token log-probs on the completion grid and the parameter gradients of Σ w·logp, in one layout. */
function run(be: Backend, model: Model, pairs: TokenizedPair[], shared: boolean, w: Float64Array): { logp: Float64Array; grads: Float64Array } {
  const acts = activationsForPairs(model, pairs, pairs.length, shared);
  const pk = packPairs(pairs, shared, 0);
  const g = forwardPairs(be, model, acts, pk);
  const dlogp = new model.ctor(pk.M);
  for (let s = 0; s < pk.grid.length; s++) if (pk.grid[s]! >= 0) dlogp[pk.grid[s]!] = w[s]!;
  const grads = createGradients(model);
  backward(be, model, acts, grads, dlogp);
  return { logp: g.logp, grads: Float64Array.from(grads.grads) };
}

const lengths: [number, number, number][] = [[3, 4, 2], [1, 2, 5], [6, 1, 1]];

for (const [name, cfg] of variants) {
  test(`shared prefix = concatenated batch, log-probs and every parameter gradient (float64): ${name}`, () => {
    const model = randomModel(cfg, Float64Array, 5);
    const pairs = randomPairs(cfg.V, 9, lengths);
    const Tc = 5;
    const w = Float64Array.from({ length: 2 * pairs.length * Tc }, (_, i) => Math.sin(1 + i));
    const cat = run(be, model, pairs, false, w);
    const shared = run(be, model, pairs, true, w);
    assertAllClose(shared.logp, cat.logp, 1e-12, 0, "per-token log-probs");
    assert.ok(maxAbsDiff(cat.grads, new Float64Array(cat.grads.length)) > 1e-3, "the gradient is not trivially zero");
    assertAllClose(shared.grads, cat.grads, 1e-11, 1e-9, "parameter gradients");
  });
}

const under = testBackend(); // the float64 tests above run on the js reference; native is float32 only
test(`${under.name} backend: shared prefix = concatenated batch to float32 precision (stories260K shape)`, () => {
  const cfg: LlamaConfig = { ...base, V: 512, C: 64, L: 5, NH: 8, NKV: 4, HS: 8, FF: 172, maxSeqLen: 512 };
  const model = randomModel(cfg, Float32Array, 3);
  const pairs = randomPairs(cfg.V, 4, [[20, 31, 17], [7, 12, 40], [33, 5, 9]]);
  const Tc = 40;
  const w = Float64Array.from({ length: 2 * pairs.length * Tc }, (_, i) => Math.sin(1 + i) * 0.1);
  const cat = run(under, model, pairs, false, w);
  const shared = run(under, model, pairs, true, w);
  assertAllClose(shared.logp, cat.logp, 1e-4, 1e-5, "per-token log-probs");
  assertAllClose(shared.grads, cat.grads, 1e-4, 1e-3, "parameter gradients");
});

test("padding gets position 0, so no position exceeds the longest sequence (models with learned positions index by it)", () => {
  // a short pair next to a long one: the short row's padding would otherwise count on past its own sequence
  const pairs = [pair(0, [1, 2, 3], [4], [5]), pair(1, [1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12], [13, 14, 15, 16, 17, 18, 19])];
  for (const shared of [true, false]) {
    const pk = packPairs(pairs, shared);
    const longest = Math.max(...pairs.map((p) => p.promptIds.length + Math.max(p.chosenIds.length, p.rejectedIds.length)));
    assert.ok(Math.max(...pk.pos.subarray(0, pk.R * pk.T)) < longest, `shared ${shared}: a position reaches ${Math.max(...pk.pos)}`);
    // the short pair's row (shared: prompt ++ chosen ++ rejected = 5 tokens) is padding from then on
    const used = shared ? 5 : 4;
    assert.deepEqual([...pk.pos.subarray(used, pk.T)], new Array(pk.T - used).fill(0), `shared ${shared}: padding positions`);
  }
});
