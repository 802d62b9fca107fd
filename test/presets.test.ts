// Bench presets (src/model/presets.ts) and their block-made frozen bases (src/model/presetquant.ts):
// - presetValues, the fast sine behind presetModel, gives Math.sin's formula bit for bit, also at the arguments of a
//   3B model's embedding (i up to 4·10^8), where its bracket-and-fall-back test is what keeps it exact;
// - a bf16 preset is the float preset rounded to bf16, bit for bit;
// - a quantised preset has llama.cpp's type per matrix (fallbacks included), no float copy of its matrices, finite
//   values of the float preset's spread, and the same bytes every time;
// - `bench --gradient-checkpointing` reaches the activations (one set of layer activations) and changes no number.

import { test } from "node:test";
import assert from "node:assert/strict";
import { type LlamaConfig, numel, paramSpecs } from "../src/model/config.js";
import { createActivations, forward } from "../src/model/decoder.js";
import { blockPresetModel, presetBlocks } from "../src/model/presetquant.js";
import { PRESETS, presetModel, presetValues } from "../src/model/presets.js";
import { llamaConfigFromHf } from "../src/io/hfconfig.js";
import { GGML_TYPE_ID, type QuantType, quantizeRow, rowBytes } from "../src/quant/ggml.js";
import { benchDpoStep } from "../src/train/bench.js";
import { testBackend } from "./helpers.js";

const be = testBackend();
const f32 = Math.fround;
/** presetModel's formula, written out: element i of preset tensor k. */
const formula = (name: string, k: number, i: number): number =>
  /norm$/.test(name) ? f32(1 + 0.1 * Math.sin(0.37 * i + 1.3 * k)) : f32(0.02 * Math.sin(0.37 * i + 1.3 * k));
const bytesOf = (a: Float32Array): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

test("presetValues is float32(0.02·Math.sin(0.37·i + 1.3·k)) bit for bit, small and large arguments", () => {
  // spans that start and end off the 256-element runs; i0 ≈ 3.9e8 is llama3.2-3b's tok_embd (394M elements)
  for (const [k, i0, n] of [[0, 0, 70_000], [1, 1, 999], [37, 123_457, 50_000], [200, 1_600_003, 30_000], [3, 393_000_001, 60_000]] as const) {
    const got = new Float32Array(n);
    presetValues(got, k, i0, n);
    let bad = 0, first = -1;
    for (let j = 0; j < n; j++)
      if (!Object.is(got[j], formula("m", k, i0 + j))) {
        bad++;
        if (first < 0) first = j;
      }
    assert.equal(bad, 0, `tensor ${k} from ${i0}: ${bad} of ${n} differ, first at ${i0 + first}: ${got[first]} vs ${formula("m", k, i0 + first)}`);
  }
});

test("presetModel fills every tensor with the written-out formula (stories260k)", () => {
  const m = presetModel("stories260k");
  m.entries.forEach((e, k) => {
    const want = Float32Array.from({ length: e.size }, (_, i) => formula(e.name, k, i));
    assert.ok(bytesOf(m.params.subarray(e.offset, e.offset + e.size) as Float32Array).equals(bytesOf(want)), e.name);
  });
});

test("the new presets are the published config.json shapes (as llamaConfigFromHf reads them)", () => {
  // Key values of each model's config.json (sources in src/model/presets.ts), through the project's own reader.
  const llama32 = { model_type: "llama", vocab_size: 128256, rms_norm_eps: 1e-5, rope_theta: 500000, tie_word_embeddings: true,
    max_position_embeddings: 131072, num_key_value_heads: 8, intermediate_size: 8192,
    rope_scaling: { factor: 32, high_freq_factor: 4, low_freq_factor: 1, original_max_position_embeddings: 8192, rope_type: "llama3" } };
  const hf: Record<string, Record<string, unknown>> = {
    "llama3.2-1b": { ...llama32, hidden_size: 2048, num_hidden_layers: 16, num_attention_heads: 32, head_dim: 64 },
    "llama3.2-3b": { ...llama32, hidden_size: 3072, num_hidden_layers: 28, num_attention_heads: 24, head_dim: 128 },
    "qwen2.5-1.5b": { model_type: "qwen2", vocab_size: 151936, hidden_size: 1536, intermediate_size: 8960, num_hidden_layers: 28,
      num_attention_heads: 12, num_key_value_heads: 2, max_position_embeddings: 131072, max_window_layers: 28, rms_norm_eps: 1e-6,
      rope_theta: 1000000, sliding_window: 131072, use_sliding_window: false, tie_word_embeddings: true },
    // the cut Gemma presets: the published config.json with num_hidden_layers 4
    "gemma2-2b": { model_type: "gemma2", vocab_size: 256000, hidden_size: 2304, intermediate_size: 9216, num_hidden_layers: 4,
      num_attention_heads: 8, num_key_value_heads: 4, head_dim: 256, hidden_activation: "gelu_pytorch_tanh", max_position_embeddings: 8192,
      query_pre_attn_scalar: 256, rms_norm_eps: 1e-6, rope_theta: 10000, sliding_window: 4096, attn_logit_softcapping: 50,
      final_logit_softcapping: 30, attention_bias: false },
    "gemma3-1b": { model_type: "gemma3_text", vocab_size: 262144, hidden_size: 1152, intermediate_size: 6912, num_hidden_layers: 4,
      num_attention_heads: 4, num_key_value_heads: 1, head_dim: 256, hidden_activation: "gelu_pytorch_tanh", max_position_embeddings: 32768,
      query_pre_attn_scalar: 256, rms_norm_eps: 1e-6, rope_theta: 1000000, rope_local_base_freq: 10000, rope_scaling: null,
      sliding_window: 512, sliding_window_pattern: 6, attn_logit_softcapping: null, final_logit_softcapping: null },
    "phi3-mini": { model_type: "phi3", vocab_size: 32064, hidden_size: 3072, intermediate_size: 8192, num_hidden_layers: 4,
      num_attention_heads: 32, num_key_value_heads: 32, max_position_embeddings: 4096, original_max_position_embeddings: 4096,
      rms_norm_eps: 1e-5, rope_theta: 10000, rope_scaling: null, sliding_window: 2047, tie_word_embeddings: false, hidden_act: "silu" },
    "gpt2-small": { model_type: "gpt2", vocab_size: 50257, n_embd: 768, n_layer: 12, n_head: 12, n_positions: 1024, n_inner: null,
      activation_function: "gelu_new", layer_norm_epsilon: 1e-5 },
  };
  for (const [name, json] of Object.entries(hf)) assert.deepEqual(PRESETS[name], llamaConfigFromHf(json, `${name} config.json`), name);
});

/** The matrices of a model as name → (type or "f32"), in paramSpecs order. */
function matrixTypes(cfg: LlamaConfig, want: QuantType): Record<string, string> {
  const m = blockPresetModel(cfg, want);
  const out: Record<string, string> = {};
  for (const s of paramSpecs(cfg)) if (s.shape.length === 2) out[s.name] = m.quant.get(s.name)?.type ?? "f32";
  return out;
}

test("a bf16 preset is the float preset rounded to bf16, bit for bit (stories260k); norms stay float32", () => {
  const cfg = PRESETS.stories260k!;
  const float = presetModel("stories260k");
  const half = blockPresetModel(cfg, "BF16");
  const specs = paramSpecs(cfg);
  for (const s of specs) {
    const f = float.entries.find((e) => e.name === s.name)!;
    const src = float.params.subarray(f.offset, f.offset + f.size) as Float32Array;
    if (s.shape.length === 2) {
      const q = half.quant.get(s.name);
      assert.equal(q?.type, "BF16", `${s.name} is BF16 (a half has no block to misfit: w_down's 172 columns too)`);
      const want = new Uint8Array(2 * src.length);
      quantizeRow("BF16", src, 0, src.length, want, 0);
      assert.ok(Buffer.from(q!.data).equals(Buffer.from(want)), `${s.name}: bf16 bytes`);
    } else {
      const e = half.entries.find((x) => x.name === s.name)!;
      assert.ok(bytesOf(half.params.subarray(e.offset, e.offset + e.size) as Float32Array).equals(bytesOf(src)), `${s.name}: float32`);
    }
  }
  // only the norms are in the arena
  assert.equal(half.params.length, specs.filter((s) => s.shape.length === 1).reduce((a, s) => a + numel(s.shape), 0));
});

// Widths chosen for every fallback: C = 256 fits the K-quants' 256-element blocks, FF = 288 only 32-element ones
// (w_down falls back), NH·HS = 144 not even those (wo stays float32); q/k/v biases are 1-D and stay float32.
const odd: LlamaConfig = {
  family: "qwen2", V: 96, C: 256, L: 2, NH: 2, NKV: 1, HS: 72, FF: 288, ropeTheta: 10000, ropeScaling: { type: "none" },
  rmsEps: 1e-6, tiedEmbeddings: false, qkvBias: true, qkNorm: false, maxSeqLen: 64, slidingWindow: null,
};

test("block-made quantised presets have llama.cpp's type per matrix, fallbacks included", () => {
  const expect = (main: string, down: string): Record<string, string> => {
    const t: Record<string, string> = { tok_embd: main };
    for (let l = 0; l < odd.L; l++)
      Object.assign(t, { [`layers.${l}.wq`]: main, [`layers.${l}.wk`]: main, [`layers.${l}.wv`]: main, [`layers.${l}.wo`]: "f32",
        [`layers.${l}.w_gate`]: main, [`layers.${l}.w_up`]: main, [`layers.${l}.w_down`]: down });
    return { ...t, lm_head: main };
  };
  assert.deepEqual(matrixTypes(odd, "Q4_K"), expect("Q4_K", "Q5_0"));
  assert.deepEqual(matrixTypes(odd, "Q5_K"), expect("Q5_K", "Q5_1"));
  assert.deepEqual(matrixTypes(odd, "Q6_K"), expect("Q6_K", "Q8_0"));
  for (const t of ["Q8_0", "Q5_0", "Q4_0", "Q4_1", "Q5_1"] as const) assert.deepEqual(matrixTypes(odd, t), expect(t, t));
  // stories260k: 64 columns are not 256, 172 not even 32
  const stories = matrixTypes(PRESETS.stories260k!, "Q4_K");
  assert.equal(stories["layers.0.wq"], "Q5_0");
  assert.equal(stories["layers.0.w_down"], "f32");
});

test("block-made quantised presets: no float copy, finite values of the preset's spread, the same bytes twice", () => {
  const sigma = 0.02 / Math.SQRT2; // the standard deviation of 0.02·sin
  for (const want of ["Q4_K", "Q5_K", "Q6_K", "Q8_0", "Q5_0", "Q4_0", "Q4_1", "Q5_1"] as const) {
    const m = blockPresetModel(odd, want);
    const again = blockPresetModel(odd, want);
    const specs = paramSpecs(odd);
    // the arena holds the 1-D tensors and wo (too narrow for any block), nothing else
    const inArena = specs.filter((s) => s.shape.length === 1 || /\.wo$/.test(s.name));
    assert.deepEqual(m.entries.map((e) => e.name), inArena.map((s) => s.name), `${want}: arena tensors`);
    assert.equal(m.params.length, inArena.reduce((a, s) => a + numel(s.shape), 0), `${want}: arena size`);
    // and they have presetModel's values, tensor k counted over every parameter (quantised or not)
    for (const e of m.entries) {
      const k = specs.findIndex((s) => s.name === e.name);
      const v = m.params.subarray(e.offset, e.offset + e.size);
      for (let i = 0; i < e.size; i += 7) assert.ok(Object.is(v[i], formula(e.name, k, i)), `${want}: ${e.name}[${i}]`);
    }
    const streams = new Set<string>();
    for (const [name, q] of m.quant) {
      assert.ok(Buffer.from(q.data).equals(Buffer.from(again.quant.get(name)!.data)), `${want}: ${name} is deterministic`);
      streams.add(Buffer.from(q.data.subarray(0, 64)).toString("hex"));
      const x = new Float32Array(q.rows * q.cols);
      be.dequantizeRows(x, q.data, GGML_TYPE_ID[q.type], 0, q.rows, q.cols);
      let sum = 0, sq = 0, max = 0;
      for (const v of x) {
        assert.ok(Number.isFinite(v), `${want}: ${name} has a non-finite value`);
        sum += v;
        sq += v * v;
        max = Math.max(max, Math.abs(v));
      }
      const mean = sum / x.length, sd = Math.sqrt(sq / x.length - mean * mean);
      const what = `${want}: ${name} (${q.type}) mean ${mean.toFixed(5)} sd ${sd.toFixed(5)} max ${max.toFixed(4)}`;
      assert.ok(sd > 0.9 * sigma && sd < 1.1 * sigma, what);
      // (Q4_0's levels are −8..7 steps: its mean is half a step, 0.11σ, below zero)
      assert.ok(Math.abs(mean) < 0.15 * sigma && max < 0.03, what);
    }
    assert.equal(streams.size, m.quant.size, `${want}: each tensor has its own random stream`);
  }
});

test("presetBlocks makes rows of exactly rowBytes, and a quantised preset runs a forward to finite log-probs", () => {
  assert.equal(presetBlocks("Q4_K", 3, 5, 512).length, 5 * rowBytes("Q4_K", 512));
  assert.equal(presetBlocks("Q6_K", 3, 5, 512).length, 5 * rowBytes("Q6_K", 512));
  const m = blockPresetModel(odd, "Q4_K");
  const T = 6;
  const acts = createActivations(m, 1, T);
  const ids = Int32Array.from({ length: T }, (_, i) => (i * 37) % odd.V);
  const logp = forward(be, m, acts, ids, Int32Array.from({ length: T }, (_, i) => (i * 11 + 5) % odd.V), 1, T);
  for (const v of logp) assert.ok(Number.isFinite(v) && v < 0, `log-prob ${v}`);
});

test("bench --gradient-checkpointing: one set of layer activations, the same numbers, recorded in the config", () => {
  const run = (gradientCheckpointing: boolean) => benchDpoStep(be, {
    preset: "stories260k", promptLen: 12, completionLen: 6, pairs: 1, steps: 1, warmup: 0, sharedPrefix: true,
    loraR: 4, baseDtype: "q4_k", gradientCheckpointing,
  }, { fmaPeak: null, threads: null, env: {} });
  const off = run(false), on = run(true);
  assert.deepEqual([off.config.gradient_checkpointing, on.config.gradient_checkpointing], [false, true]);
  assert.deepEqual(on.check, off.check, "checkpointing recomputes the same bits");
  // stories260k's 5 layers: the checkpointed arena keeps 1 set of per-layer activations instead of 5
  assert.ok(on.activation_arena_bytes < 0.6 * off.activation_arena_bytes, `${on.activation_arena_bytes} vs ${off.activation_arena_bytes} bytes`);
  assert.ok(Number.isFinite(on.check.chosen_logps) && Math.abs(on.check.loss - Math.LN2) < 1e-6);
});
