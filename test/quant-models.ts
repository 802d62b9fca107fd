// The models the quantisation checks run on, built the same way by the fixture generator
// (tools/llama-ref/gen-quantized.mjs, which quantises them with llama.cpp's own quantiser) and by the tests (which
// quantise them with tsdpo's): stories260K as shipped, whose widths (64, 172) exercise llama.cpp's fallback types,
// and "wide", a random-weight model on stories260K's tokenizer whose widths are multiples of 256, so that the
// K-quants are really used. Its weights come from tsdpo's integer RNG, so every machine builds the same bits.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import type { Backend } from "../src/backend/contract.js";
import { readGguf } from "../src/io/gguf.js";
import { type LoadedModel, loadModel } from "../src/io/load.js";
import { GGML_TYPE_ID, type QuantType, rowBytes } from "../src/quant/ggml.js";
import { type Model, createActivations, createModel, forward, logitsOf } from "../src/model/decoder.js";
import { Rng } from "../src/rng.js";

import { fixture, storiesGguf } from "./helpers.js";

export const storiesPath = storiesGguf;

/**
 * C 256, FF 512, 4 layers (use_more_bits picks layers 2 and 3), NH = NKV = 4 of 64, V 512, untied output. `shape`
 * changes L, FF or NKV (tools/llama-ref/gen-roundtrip.mjs starts from a smaller one, so that its committed Q4_K_M
 * file stays small); the defaults build the same bits as before it existed.
 */
export function wideModel(shape: Partial<Record<"L" | "FF" | "NKV", number>> = {}): LoadedModel {
  const stories = loadModel(storiesPath);
  const cfg = { ...stories.model.cfg, C: 256, FF: 512, L: 4, NH: 4, NKV: 4, HS: 64, tiedEmbeddings: false, ...shape };
  const model = createModel(cfg);
  const rng = new Rng(20261202);
  for (const e of model.entries) {
    const view = model.params.subarray(e.offset, e.offset + e.size);
    if (e.shape.length === 1) view.fill(1); // norms
    // uniform in ±√(3/fan_in)·… scaled so activations stay O(1) through four layers
    else {
      const scale = 1.7 / Math.sqrt(e.shape[1]!);
      for (let i = 0; i < view.length; i++) view[i] = Math.fround((rng.next() * 2 - 1) * scale);
    }
  }
  return { ...stories, model };
}

/**
 * Allowed max |Δlogit| against llama.cpp: the measured maximum (printed by the last test of quant-llamacpp.test.ts)
 * with 25% headroom. The difference is llama.cpp's, not the weights': it rounds the activations to 8 bits for every dot
 * product with a quantised matrix (Q8_0 for the 32-block types, Q8_K for the K-quants) where tsdpo keeps them in
 * float32, and the same blocks dequantised by tsdpo give bit-identical weights (test/quant.test.ts against ggml).
 * Measured on node-llama-cpp 3.22.1's CPU backend: stories260K (logits up to ±21) 0.205 for Q8_0 and Q6_K (the same
 * file: every row falls back to Q8_0) and 0.218 for Q4_K_M; wide (logits up to ±3.9) 0.068 for Q8_0, 0.108 for Q4_K_M
 * and 0.130 for Q6_K. tsdpo's quantised logits are closer to llama.cpp's than its float32 ones are (0.29 and 0.27).
 */
export const LLAMACPP_TOLERANCE: Record<string, number> = {
  "stories260K Q8_0": 0.26, "stories260K Q4_K_M": 0.28, "stories260K Q6_K": 0.26,
  "wide Q8_0": 0.09, "wide Q4_K_M": 0.14, "wide Q6_K": 0.17,
  // test/quant-roundtrip.test.ts, along llama.cpp's 32-step greedy paths of two prompts: the HH-tuned stories260K's
  // Q8_0 file (logits up to ±21.5) 0.236 from BOS and 0.288 after a 36-token HH prompt. The round trip's Q4_K_M
  // export (a wide model, logits up to ±13.7) measured 0.109, within "wide Q4_K_M" above, which it uses.
  "hh-stories260K Q8_0": 0.36,
};

/**
 * The round trip of issue 14, made by tools/llama-ref/gen-roundtrip.mjs and repeated by test/quant-roundtrip.test.ts:
 * LoRA DPO on a Q4_K_M file made by llama.cpp's own quantiser (ROUNDTRIP_BASE: a small wideModel SFT-trained by
 * tsdpo on the shipped TinyStories openings, so its logits have real margins), exported with --dtype q4_k_m. Every
 * projection gets an adapter and the learning rate is large, so that every adapted matrix is exported with other
 * blocks than the base's. Dropout 0 and the js backend (forced by `backend`, whatever TSDPO_BACKEND says) make the
 * run, and so the exported bytes, the same on every machine: the native kernels sum in another order, and the same
 * run on them exported all 14 adapted matrices with other blocks (another sha256).
 */
export const ROUNDTRIP_BASE = fixture("quant", "wide-sft-Q4_K_M.gguf");
export const ROUNDTRIP_LORA_CONFIG = {
  model: ROUNDTRIP_BASE, data: fixture("train", "pairs.jsonl"), max_length: 48, max_prompt_length: 32,
  use_peft: true, lora_r: 8, lora_alpha: 16, lora_dropout: 0,
  lora_target_modules: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
  learning_rate: 1e-2, lr_scheduler_type: "constant", max_steps: 4, per_device_train_batch_size: 2, beta: 0.1, seed: 42,
  save_minutes: 0, backend: "js",
} as const;

const TYPE_NAME = new Map<number, string>([[0, "F32"], ...Object.entries(GGML_TYPE_ID).map(([n, id]) => [id, n] as [number, string])]);

/** Each tensor of a GGUF: its type name and the sha256 of exactly its own bytes (rows × row size, no padding). */
export function tensorDigests(path: string): { name: string; type: string; sha256: string }[] {
  const f = readGguf(path);
  return [...f.tensors.values()].map((t) => {
    const type = TYPE_NAME.get(t.type);
    if (!type) throw new Error(`${path}: tensor ${t.name} has ggml type ${t.type}, which tsdpo does not read`);
    const rows = t.dims.slice(1).reduce((a, b) => a * b, 1);
    const size = type === "F32" ? 4 * t.dims[0]! * rows : rows * rowBytes(type as QuantType, t.dims[0]!);
    const bytes = f.buffer.subarray(f.dataOffset + t.offset, f.dataOffset + t.offset + size);
    return { name: t.name, type, sha256: createHash("sha256").update(bytes).digest("hex") };
  });
}

/**
 * tsdpo's logits on `texts` (each with llama.cpp's ids and its float32 logits as base64, as gen-quantized.mjs writes
 * them) against llama.cpp's: the largest |Δlogit| and the largest |logit| llama.cpp produced.
 */
export function logitsAgainstLlamaCpp(
  be: Backend, model: Model, texts: readonly { ids: number[]; logits_f32_base64: string }[],
): { worst: number; maxLogit: number } {
  let worst = 0, maxLogit = 0;
  for (const t of texts) {
    const ids = Int32Array.from(t.ids);
    const acts = createActivations(model, 1, ids.length);
    forward(be, model, acts, ids, ids, 1, ids.length);
    const ours = logitsOf(be, model, acts);
    const theirs = new Float32Array(Buffer.from(t.logits_f32_base64, "base64").buffer.slice(0));
    assert.equal(theirs.length, ids.length * model.cfg.V);
    for (let i = 0; i < theirs.length; i++) {
      worst = Math.max(worst, Math.abs(ours[i]! - theirs[i]!));
      maxLogit = Math.max(maxLogit, Math.abs(theirs[i]!));
    }
  }
  return { worst, maxLogit };
}
