// The families whose HF tensors are fused or transposed (io/hflayout.ts), through tsdpo's files: GPT-2 (Conv1D
// [in, out] weights, q, k and v joined into c_attn) and Phi-3 (qkv_proj, gate_up_proj). An HF folder written by tsdpo
// loads back to the same model bit for bit and says what the family's config says. The values against PyTorch are in
// torch-fixtures.test.ts; LoRA on these families is fused-lora.test.ts's, their GGUF export fused-gguf-export.test.ts's.

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jsBackend as be } from "../src/backend/js/kernels.js";
import { exportGguf } from "../src/export/gguf.js";
import { exportHf } from "../src/export/hf.js";
import { type LoadedModel, loadModel } from "../src/io/load.js";
import { readSafetensorsHeader } from "../src/io/safetensors.js";
import { hfConfigFromLlama, llamaConfigFromHf } from "../src/io/hfconfig.js";
import type { LlamaConfig } from "../src/model/config.js";
import { createActivations, forward, logitsOf } from "../src/model/decoder.js";
import { randomModel, storiesGguf } from "./helpers.js";

const cfg: LlamaConfig = {
  family: "gpt2", V: 512, C: 32, L: 2, NH: 4, NKV: 4, HS: 8, FF: 80, ropeTheta: 10000, ropeScaling: { type: "none" },
  rmsEps: 1e-5, tiedEmbeddings: true, qkvBias: true, qkNorm: false, maxSeqLen: 64, slidingWindow: null,
  normKind: "layer", positions: "learned", mlp: "plain", linearBiases: true, activation: "gelu_tanh",
};

const phi3: LlamaConfig = {
  family: "phi3", V: 512, C: 32, L: 2, NH: 4, NKV: 2, HS: 8, FF: 48, ropeTheta: 10000, ropeScaling: { type: "none" },
  rmsEps: 1e-5, tiedEmbeddings: false, qkvBias: false, qkNorm: false, maxSeqLen: 64, slidingWindow: 5,
};

function tiny(c: LlamaConfig): LoadedModel {
  const stories = loadModel(storiesGguf); // borrowed for its tokenizer (V 512)
  return { ...stories, model: randomModel(c, Float32Array, 17, 0.5), format: "gguf" };
}
const tinyGpt2 = (): LoadedModel => tiny(cfg);

function logits(loaded: LoadedModel, ids: number[]): Float32Array {
  const T = ids.length;
  const acts = createActivations(loaded.model, 1, T);
  forward(be, loaded.model, acts, Int32Array.from(ids), new Int32Array(T), 1, T);
  return Float32Array.from(logitsOf(be, loaded.model, acts));
}

test("GPT2Config round trip: hfConfigFromLlama writes GPT-2's own keys and reads back to the same config", () => {
  const json = JSON.parse(JSON.stringify(hfConfigFromLlama(cfg, { bosTokenId: 50256, eosTokenId: 50256, torchDtype: "float32" })));
  assert.deepEqual(
    [json.model_type, json.architectures[0], json.n_embd, json.n_layer, json.n_head, json.n_positions, json.n_inner, json.activation_function],
    ["gpt2", "GPT2LMHeadModel", 32, 2, 4, 64, 80, "gelu_new"],
  );
  assert.deepEqual(llamaConfigFromHf(json, "out/config.json"), cfg);
  // n_inner null means 4·n_embd, as GPT2Config has it
  assert.equal(llamaConfigFromHf({ ...json, n_inner: null }, "c").FF, 128);
});

test("HF export of GPT-2 writes Conv1D [in, out] tensors with a joined c_attn and loads back bit for bit", () => {
  const dir = mkdtempSync(join(tmpdir(), "tsdpo-gpt2-"));
  try {
    const loaded = tinyGpt2();
    exportHf(loaded, dir);
    const header = readSafetensorsHeader(join(dir, "model.safetensors"));
    assert.deepEqual(header.tensors.get("transformer.h.0.attn.c_attn.weight")!.shape, [32, 96]);
    assert.deepEqual(header.tensors.get("transformer.h.1.mlp.c_fc.weight")!.shape, [32, 80]);
    assert.deepEqual(header.tensors.get("transformer.h.1.mlp.c_proj.weight")!.shape, [80, 32]);
    assert.deepEqual(header.tensors.get("transformer.wpe.weight")!.shape, [64, 32]);
    assert.equal(JSON.parse(readFileSync(join(dir, "config.json"), "utf8")).model_type, "gpt2");
    const back = loadModel(dir);
    assert.deepEqual(back.model.cfg, cfg);
    assert.deepEqual(back.model.params, loaded.model.params, "every parameter back in place, bit for bit");
    const ids = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376];
    assert.deepEqual(logits(back, ids), logits(loaded, ids));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("HF export of Phi-3 stacks q, k, v into qkv_proj and gate, up into gate_up_proj, and loads back bit for bit", () => {
  const dir = mkdtempSync(join(tmpdir(), "tsdpo-phi3-"));
  try {
    const loaded = tiny(phi3);
    exportHf(loaded, dir);
    const header = readSafetensorsHeader(join(dir, "model.safetensors"));
    assert.deepEqual(header.tensors.get("model.layers.0.self_attn.qkv_proj.weight")!.shape, [64, 32]);
    assert.deepEqual(header.tensors.get("model.layers.1.mlp.gate_up_proj.weight")!.shape, [96, 32]);
    assert.equal(header.tensors.has("model.layers.0.self_attn.q_proj.weight"), false);
    const json = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
    assert.deepEqual([json.model_type, json.sliding_window, json.partial_rotary_factor], ["phi3", 5, 1]);
    const back = loadModel(dir);
    assert.deepEqual(back.model.cfg, phi3);
    assert.deepEqual(back.model.params, loaded.model.params, "every parameter back in place, bit for bit");
    const ids = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376];
    assert.deepEqual(logits(back, ids), logits(loaded, ids));
    // partial RoPE (Phi-4-mini) rotates int(8 · 0.75) = 6 features; its tests are in phi3-rope.test.ts
    assert.equal(llamaConfigFromHf({ ...json, partial_rotary_factor: 0.75 }, "c").ropeDim, 6);
    // its GGUF keeps the sliding window as a key llama.cpp disables, and says so (fused-gguf-export.test.ts)
    assert.match(exportGguf(loaded, join(dir, "phi3.gguf")).notes.join("\n"), /sliding window \(5 tokens\) is written as phi3\.attention\.sliding_window/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
