// The models and texts that tie tsdpo's GGUF export to llama.cpp. Shared by test/gguf-export.test.ts and
// tools/llama-ref/check-export.mjs (which imports the compiled dist/test/gguf-export-models.js): the script exports
// each model, runs the file in llama.cpp and commits the numbers with the file's sha256; the test exports the same
// models, checks the sha256 (so the committed numbers belong to exactly these bytes) and compares.
//
// Everything here is deterministic: weights are perturbed with an integer-only PRNG (no Math.sin/exp, whose last
// bits could change between engines), so the exported bytes are the same on every machine and Node version.

import { readFileSync } from "node:fs";
import { loadModel, type LoadedModel } from "../src/io/load.js";
import type { LlamaConfig } from "../src/model/config.js";
import { createModel } from "../src/model/llama.js";
import { loadHfTokenizer } from "../src/tokenizer/hf.js";
import { fixture, rng, storiesGguf } from "./helpers.js";

export const CHECK_FIXTURE = fixture("gguf-export-llamacpp.json");

/** Text whose per-position logits llama.cpp and tsdpo must agree on (BOS is prepended). */
export const CHECK_TEXT = "One day, a little dog named Max found a shiny red ball.";
/** Greedy tokens generated from BOS in both engines. */
export const GREEDY_TOKENS = 32;

/**
 * stories260K with every weight moved as a DPO run would move it: multiplied by 1 + u·0.2 and shifted by
 * v·0.01 (u, v uniform in [-0.5, 0.5)), so the model still writes stories but no longer equals the shipped file.
 */
export function perturbedStories(): LoadedModel {
  const loaded = loadModel(storiesGguf);
  const r = rng(20240917); // mulberry32, as test/helpers.ts defines it
  const p = loaded.model.params;
  for (let i = 0; i < p.length; i++) p[i] = p[i]! * (1 + 0.2 * (r() - 0.5)) + 0.01 * (r() - 0.5);
  return loaded;
}

/** The same weights as a Llama-3.1-style model: llama3 RoPE scaling that reaches all three frequency bands of HS=8. */
export function withLlama3Rope(base: LoadedModel): LoadedModel {
  const cfg: LlamaConfig = {
    ...base.model.cfg,
    // inverse frequencies 1, 0.1, 0.01, 0.001 have wavelengths 6.3, 63, 628, 6283: with these settings the first
    // two are kept (< 1024/4), the third is interpolated and the fourth divided by 8 (> 1024/1)
    ropeScaling: { type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 1024 },
  };
  const model = createModel(cfg, base.model.ctor);
  model.params.set(base.model.params);
  return { ...base, model };
}

export interface CheckModel {
  name: string;
  loaded: LoadedModel;
  /** Whether tsdpo's GGUF loader reads the exported file back (not for llama3 RoPE; see export/gguf.ts). */
  loadsBack: boolean;
}

/** The models whose llama.cpp logits are committed. Build them fresh each time: the loaded models are mutable. */
export function checkModels(): CheckModel[] {
  const perturbed = perturbedStories();
  return [
    { name: "stories260K-perturbed", loaded: perturbed, loadsBack: true },
    { name: "stories260K-perturbed-llama3-rope", loaded: withLlama3Rope(perturbed), loadsBack: false },
  ];
}

/**
 * Tiny models (zero weights) carrying a real Hugging Face vocabulary, so that the converted tokenizer.json can be
 * run by llama.cpp's own tokenizer: Mistral-7B's SentencePiece-style BPE and Qwen3's byte-level BPE.
 */
export function vocabModels(): { name: string; loaded: LoadedModel }[] {
  const tiny = (family: LlamaConfig["family"], V: number, qwen: boolean): LlamaConfig => ({
    family, V, C: 8, L: 1, NH: 2, NKV: 1, HS: 4, FF: 16, ropeTheta: qwen ? 1000000 : 10000, ropeScaling: { type: "none" },
    rmsEps: 1e-6, tiedEmbeddings: qwen, qkvBias: false, qkNorm: qwen, maxSeqLen: 4096, slidingWindow: null,
  });
  const make = (name: string, folder: string, cfg: LlamaConfig) => ({
    name,
    loaded: { model: createModel(cfg), tokenizer: loadHfTokenizer(folder), path: folder, format: "hf" as const, hfConfig: null },
  });
  return [
    make("mistral-7b-vocab", fixture("tokenizers", "mistral-7b"), tiny("mistral", 32000, false)),
    // 151936 embedding rows, as Qwen3's config says, for 151669 token ids: the export pads the rest
    make("qwen3-vocab", fixture("tokenizers", "qwen3"), tiny("qwen3", 151936, true)),
  ];
}

/** llama.cpp's test-tokenizer-0 inputs (shipped with the llama-spm golden table) plus texts they lack. */
export function vocabTexts(): string[] {
  const raw = readFileSync(fixture("vocab", "ggml-vocab-llama-spm.gguf.inp"), "utf8");
  const golden = raw.split("\n__ggml_vocab_test__\n");
  golden.pop(); // the file ends with a separator
  return [
    ...golden,
    "Hello <s> world</s>! <|im_start|>user\nhi<|im_end|>",
    "<unk> and <|endoftext|>a",
    "日本語のテキスト 🦙🦙 ∀x∈ℝ",
    "tabs\tand\nnewlines\r\n\n  indented",
    "'s 'S 'LL I'M don't",
    "\u2581 literal marks \u2581\u2581",
    "Numbers 1234567 and 3.14159, code: x+=1; y = f(x)**2",
  ];
}
