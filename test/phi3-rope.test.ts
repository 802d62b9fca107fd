// Phi-4-mini's RoPE: partial RoPE (partial_rotary_factor) and LongRoPE (rope_scaling longrope) through the config
// reader and writer, the KV cache, and packed training batches. The values against PyTorch are in
// torch-fixtures.test.ts (phi3-longrope, phi3-shortrope); the kernels' in kernels.test.ts and native.test.ts.
//
// Which factors a forward uses: transformers picks LongRoPE's long factors when max(position_ids) + 1 exceeds
// original_max_position_embeddings, for every token of that forward, and its Phi3ForCausalLM drops the KV cache
// and recomputes it when generation first crosses that length. tsdpo does the same: a training forward decides on
// its longest sequence (max position + 1; a packed pair's longer answer, as TRL's padded concatenated batch of the
// two), and the KV cache re-runs its tokens when it crosses.

import { test } from "node:test";
import assert from "node:assert/strict";
import { jsBackend as be } from "../src/backend/js/kernels.js";
import { TsdpoError } from "../src/errors.js";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { exportGguf } from "../src/export/gguf.js";
import { exportHf } from "../src/export/hf.js";
import { hfConfigFromLlama, llamaConfigFromHf } from "../src/io/hfconfig.js";
import { loadModel } from "../src/io/load.js";
import type { LlamaConfig } from "../src/model/config.js";
import {
  createActivations, createKvCache, createKvRow, createModel, decode, decodeRows, forward, forwardPacked, logitsOf, type Model,
} from "../src/model/decoder.js";
import { assertAllClose, randomModel, storiesGguf } from "./helpers.js";

const opts = { bosTokenId: 1, eosTokenId: 2, torchDtype: "float32" } as const;
const factors = (n: number, a: number, b: number): number[] => Array.from({ length: n }, (_, i) => Math.round((a + (b - a) * (i / (n - 1)) ** 2) * 1e4) / 1e4);

// Phi-4-mini's config.json (microsoft/Phi-4-mini-instruct) with its keys and sizes; the 48 factors per list are
// made up here (the real ones are not available offline), rising like the real ones from about 1 to tens.
const phi4mini = {
  architectures: ["Phi3ForCausalLM"], model_type: "phi3", vocab_size: 200064, hidden_size: 3072, intermediate_size: 8192,
  num_hidden_layers: 32, num_attention_heads: 24, num_key_value_heads: 8, hidden_act: "silu", max_position_embeddings: 131072,
  original_max_position_embeddings: 4096, partial_rotary_factor: 0.75, rope_theta: 10000.0, rms_norm_eps: 1e-5,
  rope_scaling: { type: "longrope", short_factor: factors(48, 1, 3), long_factor: factors(48, 1, 40) },
  sliding_window: 262144, tie_word_embeddings: true, attention_bias: false, bos_token_id: 199999, eos_token_id: 199999,
  resid_pdrop: 0.0, embd_pdrop: 0.0, attention_dropout: 0.0, initializer_range: 0.02, use_cache: true, torch_dtype: "bfloat16",
};

test("a Phi-4-mini config.json loads: 96 of 128 features rotate, LongRoPE with its 48 factors, original 4096, attention factor sqrt(1 + ln 32 / ln 4096)", () => {
  const cfg = llamaConfigFromHf(phi4mini, "phi4/config.json");
  assert.equal(cfg.HS, 128);
  assert.equal(cfg.ropeDim, 96);
  assert.deepEqual(cfg.ropeScaling, {
    type: "longrope", shortFactor: phi4mini.rope_scaling.short_factor, longFactor: phi4mini.rope_scaling.long_factor,
    originalMaxPositionEmbeddings: 4096, attentionFactor: Math.sqrt(1 + Math.log(32) / Math.log(4096)),
  });
  assert.ok(Math.abs((cfg.ropeScaling as { attentionFactor: number }).attentionFactor - 1.1902380714238083) < 1e-15);
  // transformers 5's form: rope_parameters with the factor and original_max_position_embeddings inside
  const { rope_scaling, rope_theta, partial_rotary_factor, original_max_position_embeddings, ...rest } = phi4mini;
  const v5 = { ...rest, rope_parameters: { rope_type: "longrope", rope_theta, partial_rotary_factor, original_max_position_embeddings, short_factor: rope_scaling.short_factor, long_factor: rope_scaling.long_factor } };
  assert.deepEqual(llamaConfigFromHf(v5, "c"), cfg);
  // early Phi-3 checkpoints call it "su"; Phi3Config reads that as longrope
  assert.deepEqual(llamaConfigFromHf({ ...phi4mini, rope_scaling: { ...rope_scaling, type: "su" } }, "c"), cfg);
  // Phi3Config's default original_max_position_embeddings is 4096
  assert.deepEqual(llamaConfigFromHf({ ...phi4mini, original_max_position_embeddings: undefined }, "c"), cfg);
  // an explicit attention_factor wins; a factor that agrees with max / original is accepted
  assert.equal((llamaConfigFromHf({ ...phi4mini, rope_scaling: { ...rope_scaling, attention_factor: 1.5 } }, "c").ropeScaling as { attentionFactor: number }).attentionFactor, 1.5);
  assert.deepEqual(llamaConfigFromHf({ ...phi4mini, rope_scaling: { ...rope_scaling, factor: 32 } }, "c"), cfg);
});

test("HF export writes partial_rotary_factor, rope_scaling longrope and original_max_position_embeddings back, and reads back to the same config", () => {
  const cfg = llamaConfigFromHf(phi4mini, "c");
  const json = JSON.parse(JSON.stringify(hfConfigFromLlama(cfg, opts)));
  assert.equal(json.partial_rotary_factor, 0.75);
  assert.equal(json.original_max_position_embeddings, 4096);
  assert.equal(json.max_position_embeddings, 131072);
  // exactly Phi-4-mini's three keys: transformers 4's Phi3Config refuses any other rope_scaling
  assert.deepEqual(json.rope_scaling, { type: "longrope", short_factor: phi4mini.rope_scaling.short_factor, long_factor: phi4mini.rope_scaling.long_factor });
  assert.deepEqual(llamaConfigFromHf(json, "out/config.json"), cfg);
  // a non-default attention factor is written as attention_factor
  const odd: LlamaConfig = { ...cfg, ropeScaling: { ...(cfg.ropeScaling as Extract<LlamaConfig["ropeScaling"], { type: "longrope" }>), attentionFactor: 1.25 } };
  const oddJson = JSON.parse(JSON.stringify(hfConfigFromLlama(odd, opts)));
  assert.equal(oddJson.rope_scaling.attention_factor, 1.25);
  assert.deepEqual(llamaConfigFromHf(oddJson, "c"), odd);
  // a factor whose RD / HS does not multiply back to RD in floating point: 32 of 96 (32/96 · 96 = 31.999…) is
  // written nudged up, so that int(96 · f) is 32 again, as transformers computes it
  const third: LlamaConfig = { ...cfg, C: 96 * 24, HS: 96, ropeDim: 32, ropeScaling: { type: "none" } };
  const thirdJson = JSON.parse(JSON.stringify(hfConfigFromLlama(third, opts)));
  assert.equal(Math.trunc(96 * thirdJson.partial_rotary_factor), 32);
  assert.equal(llamaConfigFromHf(thirdJson, "c").ropeDim, 32);
  // the families without partial RoPE or LongRoPE in transformers refuse to write them
  assert.throws(() => hfConfigFromLlama({ ...cfg, family: "llama", slidingWindow: null }, opts), /cannot write a transformers llama config with partial RoPE/);
  assert.throws(() => hfConfigFromLlama({ ...cfg, family: "llama", slidingWindow: null, ropeDim: undefined }, opts), /cannot write a transformers llama config with LongRoPE/);
});

test("bad LongRoPE and partial RoPE settings are one-line errors naming the key", () => {
  const bad = (patch: Record<string, unknown>, re: RegExp): void =>
    assert.throws(() => llamaConfigFromHf({ ...phi4mini, ...patch }, "phi4/config.json"), (e: unknown) => e instanceof TsdpoError && re.test(e.message) && !e.message.includes("\n"));
  const rs = phi4mini.rope_scaling;
  bad({ rope_scaling: { ...rs, short_factor: rs.short_factor.slice(1) } }, /^phi4\/config\.json: key "rope_scaling\.short_factor" must be a list of 48 positive numbers/);
  bad({ rope_scaling: { ...rs, long_factor: [...rs.long_factor.slice(1), 0] } }, /key "rope_scaling\.long_factor" must be a list of 48 positive numbers/);
  bad({ rope_scaling: { type: "longrope", short_factor: rs.short_factor } }, /"rope_scaling\.long_factor" must be a list/);
  bad({ rope_scaling: { ...rs, factor: 8 } }, /"rope_scaling\.factor" 8 differs from max_position_embeddings \/ original_max_position_embeddings = 32.*add "attention_factor"/);
  bad({ rope_scaling: { ...rs, original_max_position_embeddings: 8192 } }, /original_max_position_embeddings is 4096 at the top level but 8192 in "rope_scaling"/);
  // 128 · 0.7 = 89.6 → 89 rotary features: odd
  bad({ partial_rotary_factor: 0.7 }, /partial_rotary_factor 0\.7 gives 89 rotary features of head size 128/);
  bad({ partial_rotary_factor: 1.5 }, /partial_rotary_factor 1\.5/);
  // a config built in code with an impossible rotary width is refused when the model is made
  for (const ropeDim of [7, 10, 0]) assert.throws(() => createModel({ ...tiny, ropeDim }), new RegExp(`ropeDim ${ropeDim} must be even, at least 2 and at most HS 8`));
  // LongRoPE is read for Phi-3 only
  assert.throws(() => llamaConfigFromHf({ ...phi4mini, model_type: "llama", partial_rotary_factor: undefined }, "c"), /type "longrope" is supported for model_type phi3 only/);
});

test("a Phi-4-mini-shaped model (partial RoPE, LongRoPE, tied embeddings) exported to an HF folder loads back with the same config and logits", () => {
  const dir = mkdtempSync(join(tmpdir(), "tsdpo-phi4-"));
  try {
    const stories = loadModel(storiesGguf); // borrowed for its tokenizer (V 512)
    const c: LlamaConfig = { ...tiny, V: 512, tiedEmbeddings: true, maxSeqLen: 128 };
    c.ropeScaling = { ...(tiny.ropeScaling as Extract<LlamaConfig["ropeScaling"], { type: "longrope" }>), attentionFactor: Math.sqrt(1 + Math.log(16) / Math.log(8)) };
    const loaded = { ...stories, model: randomModel(c, Float32Array, 9, 0.8), format: "gguf" as const };
    exportHf(loaded, dir);
    const json = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
    assert.deepEqual([json.partial_rotary_factor, json.original_max_position_embeddings, json.rope_scaling.type, json.tie_word_embeddings], [0.75, 8, "longrope", true]);
    const back = loadModel(dir);
    assert.deepEqual(back.model.cfg, c);
    const T = 12, at = (m: Model): Float32Array => {
      const acts = createActivations(m, 1, T);
      forward(be, m, acts, Int32Array.from(ids.slice(0, T)), new Int32Array(T), 1, T);
      return Float32Array.from(logitsOf(be, m, acts));
    };
    assert.deepEqual(at(back.model), at(loaded.model));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("GGUF export refuses partial RoPE outside phi3 (phi3's is fused-gguf-export.test.ts's) and LongRoPE instead of dropping them", () => {
  const stories = loadModel(storiesGguf);
  const c = stories.model.cfg;
  const withCfg = (patch: Partial<LlamaConfig>) => ({ ...stories, model: { ...stories.model, cfg: { ...c, ...patch } } });
  assert.throws(() => exportGguf(withCfg({ ropeDim: c.HS - 2 }), "/nonexistent/never.gguf"), /GGUF export: partial RoPE \(rotary width 6 of head size 8, partial_rotary_factor\) is supported for phi3 only/);
  const longrope: LlamaConfig["ropeScaling"] = { type: "longrope", shortFactor: [1, 1, 1, 1], longFactor: [2, 2, 2, 2], originalMaxPositionEmbeddings: 64, attentionFactor: 1.2 };
  assert.throws(() => exportGguf(withCfg({ ropeScaling: longrope }), "/nonexistent/never.gguf"), /GGUF export: LongRoPE scaling/);
});

// A tiny Phi-4-mini-shaped model: 6 of 8 features rotate, long factors past 8 tokens.
const tiny: LlamaConfig = {
  family: "phi3", V: 29, C: 16, L: 2, NH: 2, NKV: 1, HS: 8, ropeDim: 6, FF: 24, ropeTheta: 10000,
  ropeScaling: { type: "longrope", shortFactor: [1, 1.4, 2.5], longFactor: [1.9, 6, 17], originalMaxPositionEmbeddings: 8, attentionFactor: Math.SQRT2 },
  rmsEps: 1e-5, tiedEmbeddings: false, qkvBias: false, qkNorm: false, maxSeqLen: 64, slidingWindow: null,
};
const ids = [3, 17, 5, 22, 9, 1, 14, 27, 8, 11, 20, 6, 2, 19];

/** The logits (V) at the last position of a plain forward over `prefix`. */
function lastLogits(model: Model, prefix: number[]): Float64Array {
  const T = prefix.length;
  const acts = createActivations(model, 1, T);
  forward(be, model, acts, Int32Array.from(prefix), new Int32Array(T), 1, T);
  return Float64Array.from(logitsOf(be, model, acts).subarray((T - 1) * tiny.V, T * tiny.V));
}

test("the KV cache switches to the long factors when the sequence passes original_max_position_embeddings, as a full forward of each length does", () => {
  const model = randomModel(tiny, Float64Array, 5, 0.9);
  // the factors bite: a sequence of 9 and one of 8 give different logits on the first 8 positions
  const at8 = createActivations(model, 1, 9);
  forward(be, model, at8, Int32Array.from(ids.slice(0, 9)), new Int32Array(9), 1, 9);
  const nine = Float64Array.from(logitsOf(be, model, at8).subarray(0, 8 * tiny.V));
  forward(be, model, at8, Int32Array.from(ids.slice(0, 8)), new Int32Array(8), 1, 8);
  const eight = Float64Array.from(logitsOf(be, model, at8).subarray(0, 8 * tiny.V));
  assert.ok(Math.max(...nine.map((x, i) => Math.abs(x - eight[i]!))) > 1e-2, "the long factors change the logits");
  // while 8 tokens (= original_max_position_embeddings) still rotate with the short ones: transformers switches when
  // max(position_ids) + 1 > original, strictly; the first 7 positions of 8 and of 7 tokens agree exactly
  forward(be, model, at8, Int32Array.from(ids.slice(0, 7)), new Int32Array(7), 1, 7);
  assert.deepEqual(Float64Array.from(logitsOf(be, model, at8).subarray(0, 7 * tiny.V)), eight.subarray(0, 7 * tiny.V));
  // one token at a time from a 3-token prompt, across the switch at 9; and a prompt already past it
  for (const [prompt, maxT] of [[3, 14], [10, 14], [3, 8]] as const) {
    const cache = createKvCache(model, maxT, 4); // chunks of 4: the re-run goes through several
    assert.equal(cache.hist !== null, maxT > 8, "the token history is kept only when the long tables can be reached");
    let logits = decode(be, model, cache, ids.slice(0, prompt));
    for (let n: number = prompt; ; n++) {
      assertAllClose(logits, lastLogits(model, ids.slice(0, n)), 1e-12, 0, `decode of ${n} tokens (prompt ${prompt}, cache ${maxT})`);
      if (n === maxT) break;
      logits = decode(be, model, cache, [ids[n]!]);
    }
  }
  // rows of a batched sampler cross one at a time: each equals its own full forward
  const scratch = createKvCache(model, 14, 4);
  const rows = [createKvRow(model, scratch), createKvRow(model, scratch)];
  decode(be, model, rows[0]!, ids.slice(0, 7));
  decode(be, model, rows[1]!, ids.slice(2, 5));
  const out = new Float64Array(2 * tiny.V);
  for (let step = 0; step < 4; step++) {
    decodeRows(be, model, rows, [ids[7 + step]!, ids[5 + step]!], out);
    assertAllClose(out.subarray(0, tiny.V), lastLogits(model, ids.slice(0, 8 + step)), 1e-12, 0, `row 0 at ${8 + step} tokens`);
    assertAllClose(out.subarray(tiny.V), lastLogits(model, ids.slice(2, 6 + step)), 1e-12, 0, `row 1 at ${4 + step} tokens`);
  }
});

test("a packed pair takes the factors of its longer answer, as the padded two-row batch of chosen and rejected does", () => {
  const model = randomModel(tiny, Float64Array, 6, 0.9);
  const P = 3, Cw = 4, Cl = 7; // prompt + chosen = 7 <= 8 < prompt + rejected = 10
  const prompt = ids.slice(0, P), chosen = ids.slice(P, P + Cw), rejected = ids.slice(4, 4 + Cl);
  const T = P + Cw + Cl;
  const packed = {
    ids: Int32Array.from([...prompt, ...chosen, ...rejected]),
    pos: Int32Array.from([...Array(P + Cw).keys(), ...Array.from({ length: Cl }, (_, i) => P + i)]),
    branch: Int32Array.from([P, P + Cw]), rows: Int32Array.from(Array(T).keys()), targets: new Int32Array(T), R: 1, T, M: T,
  };
  const acts = createActivations(model, 1, T);
  forwardPacked(be, model, acts, packed);
  assert.equal(acts.seqLen, P + Cl);
  const got = Float64Array.from(logitsOf(be, model, acts));
  // TRL's concatenated batch: both sequences padded to the longer one, so max(position_ids) + 1 = P + Cl
  const T2 = P + Cl, pad = 0;
  const two = createActivations(model, 2, T2);
  const padded = [...prompt, ...chosen, ...Array(Cl - Cw).fill(pad), ...prompt, ...rejected];
  forward(be, model, two, Int32Array.from(padded), new Int32Array(2 * T2), 2, T2);
  const want = logitsOf(be, model, two);
  const V = tiny.V;
  assertAllClose(got.subarray(0, (P + Cw) * V), want.subarray(0, (P + Cw) * V), 1e-12, 0, "prompt and chosen");
  assertAllClose(got.subarray((P + Cw) * V, T * V), want.subarray((T2 + P) * V, 2 * T2 * V), 1e-12, 0, "rejected");
  // alone, the chosen sequence is short enough for the short factors, and its logits differ
  const alone = createActivations(model, 1, P + Cw);
  forward(be, model, alone, Int32Array.from([...prompt, ...chosen]), new Int32Array(P + Cw), 1, P + Cw);
  const short = logitsOf(be, model, alone);
  assert.ok(Math.max(...Array.from(short, (x, i) => Math.abs(x - got[i]!))) > 1e-2, "the chosen answer alone rotates with the short factors");
});
