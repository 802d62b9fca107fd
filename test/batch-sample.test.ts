// The batched sampler (generateBatch, decodeRows): request i's tokens equal generate()'s for the same prompt and
// seed, token for token, on every decoder variant the KV cache has (RoPE + GQA, windows and soft-caps, q/k norms
// over the projection, learned positions with LayerNorm, LoRA adapters, quantised matrices), for any number of
// rows, with rows finishing at different times and refilled. Also each row's logits against decode() alone.

import { test } from "node:test";
import assert from "node:assert/strict";
import { loadModel } from "../src/io/load.js";
import type { LlamaConfig } from "../src/model/config.js";
import { type Model, createKvCache, createKvRow, decode, decodeRows } from "../src/model/decoder.js";
import { createLora } from "../src/model/lora.js";
import { Rng } from "../src/rng.js";
import { type SampleOptions, generate, generateBatch } from "../src/sample/generate.js";
import { familyTiny, gemmaTiny } from "./gguf-export-models.js";
import { randomModel, rng, storiesGguf, testBackend } from "./helpers.js";
import { fixture } from "./helpers.js";

const be = testBackend();
const stories = loadModel(storiesGguf);

const gpt2: LlamaConfig = {
  family: "gpt2", V: 512, C: 32, L: 2, NH: 4, NKV: 4, HS: 8, FF: 80, ropeTheta: 10000, ropeScaling: { type: "none" },
  rmsEps: 1e-5, tiedEmbeddings: true, qkvBias: true, qkNorm: false, maxSeqLen: 40, slidingWindow: null,
  normKind: "layer", positions: "learned", mlp: "plain", linearBiases: true, activation: "gelu_tanh",
};

/** stories260K with LoRA on every projection, B non-zero so the adapters change the logits. */
function withLora(): Model {
  const m = loadModel(storiesGguf).model;
  m.lora = createLora(m, { r: 4, alpha: 8, dropout: 0, targets: ["wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down"] }, 3);
  const r = rng(11);
  for (const a of m.lora.adapters) for (let i = 0; i < a.B.length; i++) a.B[i] = 0.2 * (r() - 0.5);
  return m;
}

const models: { name: string; model: () => Model }[] = [
  { name: "stories260K (llama, GQA, RoPE)", model: () => stories.model },
  { name: "gemma2-tiny (windows 6, soft-caps)", model: () => gemmaTiny("gemma2").model },
  { name: "olmo2-tiny (q/k norm over the projection)", model: () => familyTiny("olmo2").model },
  { name: "gpt2-tiny (learned positions, LayerNorm, 40 positions)", model: () => randomModel(gpt2, Float32Array, 17, 0.5) },
  { name: "stories260K + LoRA", model: withLora },
  { name: "Q4_K_M wide model (quantised matrices)", model: () => loadModel(fixture("quant", "wide-sft-Q4_K_M.gguf")).model },
];

/** Prompts of different lengths from stories' tokenizer; one long enough to run into a 40-position context. */
function prompts(): number[][] {
  const tok = stories.tokenizer;
  const texts = ["Once upon a time", "Lily", "The big red dog ran to the park and saw a cat", "Tom and Sue", "One day, a little bird", "He"];
  const out = texts.map((t) => [tok.bosId!, ...tok.encode(t)]);
  out.push([tok.bosId!, ...tok.encode("The sun was hot. The children played in the water all day and then they went home to eat")]);
  return out;
}

const settings: { name: string; opts: Omit<SampleOptions, "seed"> }[] = [
  { name: "temperature 1", opts: { maxNewTokens: 24, temperature: 1, topK: 0, topP: 1 } },
  { name: "temperature 0.8, top-k 20, top-p 0.9", opts: { maxNewTokens: 24, temperature: 0.8, topK: 20, topP: 0.9 } },
  { name: "greedy", opts: { maxNewTokens: 12, temperature: 0, topK: 0, topP: 1 } },
];

for (const { name, model: make } of models) {
  test(`generateBatch equals generate token for token: ${name}`, () => {
    const model = make();
    const ps = prompts();
    for (const { name: how, opts } of settings) {
      const seeds = ps.map((_, i) => 1000 + 17 * i);
      // EOS (2) and the 5th token request 0 draws without stops: rows stop at different times, free rows are refilled
      const stop = [2, generate(be, model, ps[0]!, [], { ...opts, seed: seeds[0]! }, new Rng(seeds[0]!)).ids[4]!];
      const expected = ps.map((p, i) => generate(be, model, p, stop, { ...opts, seed: seeds[i]! }, new Rng(seeds[i]!)));
      for (const rows of [1, 3, 16]) {
        const done: number[] = [];
        const got = generateBatch(be, model, ps.map((p, i) => ({ promptIds: p, rng: new Rng(seeds[i]!) })), stop, opts, rows, (i) => done.push(i));
        assert.deepEqual(got, expected, `${how}, ${rows} rows`);
        assert.deepEqual([...done].sort((a, b) => a - b), ps.map((_, i) => i), "onDone sees every request once");
      }
      // the runs are not all alike: different lengths and stop reasons, so refilling was exercised
      assert.ok(new Set(expected.map((g) => g.ids.length)).size > 1, `${how}: rows of different lengths`);
    }
  });
}

test("decodeRows: each row's logits equal decode() of that sequence alone", () => {
  const model = gemmaTiny("gemma3").model; // qk norms per head, local and global layers, linear RoPE scaling
  const ps = prompts().slice(0, 4);
  const scratch = createKvCache(model, 64, 64);
  const rows = [scratch, ...ps.slice(1).map(() => createKvRow(model, scratch))];
  ps.forEach((p, i) => decode(be, model, rows[i]!, p));
  const next = [5, 77, 300, 9];
  const out = new model.ctor(ps.length * model.cfg.V);
  decodeRows(be, model, rows, next, out);
  ps.forEach((p, i) => {
    const alone = createKvCache(model, 64);
    decode(be, model, alone, p);
    const want = decode(be, model, alone, [next[i]!]);
    assert.deepEqual(out.subarray(i * model.cfg.V, (i + 1) * model.cfg.V), want, `row ${i}`);
    assert.equal(rows[i]!.len, p.length + 1);
  });
});

test("generateBatch: a prompt that fills the context stops at once, as generate does", () => {
  const model = randomModel(gpt2, Float32Array, 17, 0.5);
  const long = Array.from({ length: 40 }, (_, i) => (i * 7) % 500);
  const short = [1, 2, 3];
  const opts = { maxNewTokens: 50, temperature: 1, topK: 0, topP: 1 };
  const got = generateBatch(be, model, [{ promptIds: long, rng: new Rng(1) }, { promptIds: short, rng: new Rng(2) }], [], opts, 2);
  assert.deepEqual(got[0], { ids: [], stop: "context" });
  assert.deepEqual(got[1], generate(be, model, short, [], { ...opts, seed: 2 }, new Rng(2)));
  assert.equal(got[1]!.stop, "context");
  // 37 tokens decoded after the 3-token prompt fill the 40 positions; the 38th is drawn from the last logits
  assert.equal(got[1]!.ids.length, 38);
});
