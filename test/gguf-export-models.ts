// The models and texts that tie tsdpo's GGUF export to llama.cpp. Shared by test/gguf-export.test.ts,
// test/gemma-export.test.ts, test/families-export.test.ts, test/fused-gguf-export.test.ts, test/gguf-vocab.test.ts,
// bench/architectures.mjs and tools/llama-ref/check-export.mjs (which imports the
// compiled dist/test/gguf-export-models.js): the script exports each model, runs the file in llama.cpp and commits
// the numbers with the file's sha256; the tests export the same models, check the sha256 (so the committed numbers
// belong to exactly these bytes) and compare. Also here: llama.cpp's fp16 GeGLU / GELU (ggmlGegluForward) and the
// fit of its rounding boundaries (fitGeluRoundings), which the Gemma and GPT-2 comparisons need, and the GGUF
// rewriting (rewriteGguf, preVariantFiles) that makes files tsdpo's exporter would not write.
//
// Everything here is deterministic: weights are perturbed with an integer-only PRNG (no Math.sin/exp, whose last
// bits could change between engines), so the exported bytes are the same on every machine and Node version.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { exportGguf } from "../src/export/gguf.js";
import { exportHf } from "../src/export/hf.js";
import type { Backend, Buf } from "../src/backend/contract.js";
import { f16ToF32, f32ToF16 } from "../src/io/dtype.js";
import { readGguf, readGgufTensor } from "../src/io/gguf.js";
import { type GgufMetaValue, type GgufTensorToWrite, gv, readGgufMetadataTyped, writeGguf } from "../src/io/ggufwriter.js";
import { loadModel, type LoadedModel } from "../src/io/load.js";
import { gemmaLayerIsLocal, type LlamaConfig } from "../src/model/config.js";
import { createActivations, createModel, forward, logitsOf as modelLogits, type Model } from "../src/model/decoder.js";
import { loadHfTokenizer } from "../src/tokenizer/hf.js";
import { fixture, maxAbsDiff, rng, storiesGguf, testBackend } from "./helpers.js";

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

/**
 * A tiny random-weight Gemma (2 or 3) carrying stories260K's tokenizer (V 512, so CHECK_TEXT tokenises and greedy
 * decoding gives words): C 64, NH 4, NKV 2, HS 16, FF 128, tied embeddings, with local (sliding-window) and global
 * layers and windows shorter than CHECK_TEXT. The config is exactly what io/ggufconfig.ts gemmaFromGguf reads back
 * from the export (float32-rounded eps, llama.cpp's attention scale 1/√HS, soft-caps 0 where Gemma 3 has none), so
 * the loaded-back config deep-equals it.
 *
 * - gemma2-tiny: 4 layers alternating local (window 6) / global, starting local; one RoPE base (10000) for both.
 *   Soft-caps 3 (attention) and 4 (logits) instead of Gemma 2's 50 and 30, which would never bend these values: here
 *   raw scores reach ±6.3 and raw logits ±5.4 (capped to ±3.5), so both caps bite (test/gemma-export.test.ts checks
 *   that dropping either moves the logits).
 * - gemma3-tiny: 6 layers with sliding_window_pattern 3 (local, local, global, ...), window 5, q/k norms, local
 *   RoPE base 10000 unscaled, global base 1e6 with linear scaling factor 2, no soft-caps.
 *
 * Weights (integer PRNG, seeded per family): norms are deviations from 0 (Gemma multiplies by 1 + w) uniform in
 * ±0.1, everything else uniform in ±0.25. The embeddings' scale sets the logits' (tied output layer: logit v is
 * e_v · (1 + w_out)·x̂ with x̂ of RMS 1): at ±0.25 the logits have RMS ~1.1 and on CHECK_TEXT each position's most
 * likely token has p 0.01–0.04 (gemma2, whose cap flattens the top) or 0.02–0.13 (gemma3) against 1/512 for a flat
 * row, not one-hot either; greedy decoding's top-2 margins are ≥ 0.045 (gemma2) and ≥ 0.11 (gemma3), far above
 * llama.cpp's deviations. Greedy text from BOS repeats one token, as random models with
 * tied embeddings do (the input embedding leans the output towards itself); the positions still run past the windows.
 */
export function gemmaTiny(family: "gemma2" | "gemma3"): LoadedModel {
  const stories = loadModel(storiesGguf);
  const g2 = family === "gemma2";
  const L = g2 ? 4 : 6, window = g2 ? 6 : 5, pattern = g2 ? 2 : 3;
  const ropeTheta = g2 ? 10000 : 1000000;
  const ropeScaling: LlamaConfig["ropeScaling"] = g2 ? { type: "none" } : { type: "linear", factor: 2 };
  const cfg: LlamaConfig = {
    family, V: 512, C: 64, L, NH: 4, NKV: 2, HS: 16, FF: 128,
    ropeTheta, ropeScaling,
    rmsEps: Math.fround(1e-6), // a GGUF f32 key
    tiedEmbeddings: true, qkvBias: false, qkNorm: !g2, maxSeqLen: 128,
    slidingWindow: window,
    layers: Array.from({ length: L }, (_, l) =>
      gemmaLayerIsLocal(l, pattern)
        ? { window, rope: true, ropeTheta: 10000, ropeScaling: { type: "none" } }
        : { window: null, rope: true, ropeTheta, ropeScaling },
    ),
    norms: "sandwich", normOffset: 1, activation: "gelu_tanh",
    embedScale: Math.sqrt(64), attnScale: 1 / Math.sqrt(16),
    attnSoftcap: g2 ? 3 : 0, finalSoftcap: g2 ? 4 : 0,
  };
  const model = createModel(cfg);
  const r = rng(g2 ? 20250302 : 20250312);
  for (const e of model.entries) {
    const scale = /norm$/.test(e.name) ? 0.2 : 0.5;
    for (let i = 0; i < e.size; i++) model.params[e.offset + i] = scale * (r() - 0.5);
  }
  return { model, tokenizer: stories.tokenizer, path: storiesGguf, format: "gguf", hfConfig: null };
}

/** The families of familyTiny. */
export type TinyFamily = "smollm3" | "granite" | "olmo2";

/**
 * A tiny random-weight SmolLM3, Granite or OLMo 2 carrying stories260K's tokenizer (V 512), shaped like gemmaTiny:
 * C 64, NH 4, NKV 2, HS 16 (NH·HS = C, which llama.cpp's olmo2 requires), FF 128, SwiGLU. The config is exactly
 * what io/ggufconfig.ts reads back from the export (float32 eps; every multiplier a power of two or a small integer,
 * so its GGUF f32 key holds it exactly), so the loaded-back config deep-equals it.
 *
 * - smollm3-tiny: 8 layers, tied embeddings, RoPE base 10000; layers 3 and 7 have no RoPE ((l + 1) % 4 == 0, the
 *   only NoPE pattern llama.cpp's smollm3 can express; it has no key for it).
 * - granite-tiny: 4 layers; embedScale 6, attnScale 0.125 (half the default 1/√16 = 0.25, which would test
 *   nothing), residualScale 0.25, logitScale 4 (Granite 3.0 2B has 12, 1/64 = 1/HS, 0.22 and 8). Untied:
 *   with tied embeddings (tried at ±0.5 and ±0.75) the 6× embedding dominates the residual stream, the output leans
 *   to the input token and greedy decoding from BOS repeats BOS (all positions alike, which would not exercise
 *   attention); llama.cpp's granite reads an output.weight like llama's.
 * - olmo2-tiny: 3 layers, untied lm_head (llama.cpp's olmo2 requires output.weight), RoPE base 500000 as OLMo 2's;
 *   norms after each sublayer only, q/k norms over the whole projection (64 and 32 features).
 *
 * Weights (integer PRNG, seeded per family): norms 1 + u·0.2 with u uniform in [-0.5, 0.5) (these norms multiply by
 * w), everything else uniform in ±0.25 except granite's lm_head, ±0.75 so that its logits, divided by 4, are O(1).
 * Measured on CHECK_TEXT (js): logits RMS 1.16 / 0.87 / 1.15 and |max| 4.6 / 3.4 / 4.2 (smollm3 / granite / olmo2),
 * each position's most likely token at p 0.01–0.1. The seeds were picked among a dozen consecutive ones for greedy
 * decoding from BOS that runs 32 tokens with smallest top-2 margins 0.022 / 0.042 / 0.015, far above llama.cpp's
 * ~1e-5 deviations (many seeds give margins below 0.003, or text that repeats one token).
 */
export function familyTiny(family: TinyFamily): LoadedModel {
  const stories = loadModel(storiesGguf);
  const base = {
    V: 512, C: 64, NH: 4, NKV: 2, HS: 16, FF: 128, ropeScaling: { type: "none" } as const,
    rmsEps: Math.fround(1e-6), qkvBias: false, maxSeqLen: 128, slidingWindow: null,
  };
  let cfg: LlamaConfig, seed: number, head = 0.25;
  switch (family) {
    case "smollm3":
      cfg = {
        ...base, family, L: 8, ropeTheta: 10000, tiedEmbeddings: true, qkNorm: false,
        layers: Array.from({ length: 8 }, (_, l) => ({ window: null, rope: (l + 1) % 4 !== 0, ropeTheta: 10000, ropeScaling: { type: "none" } })),
      };
      seed = 20250718;
      break;
    case "granite":
      cfg = {
        ...base, family, L: 4, ropeTheta: 10000, tiedEmbeddings: false, qkNorm: false,
        embedScale: 6, attnScale: 0.125, residualScale: 0.25, logitScale: 4,
      };
      seed = 20241024;
      head = 0.75;
      break;
    case "olmo2":
      cfg = {
        ...base, family, L: 3, ropeTheta: 500000, tiedEmbeddings: false, qkNorm: true,
        norms: "post", qkNormScope: "projection",
      };
      seed = 20241133;
      break;
  }
  const model = createModel(cfg);
  const r = rng(seed);
  for (const e of model.entries) {
    const norm = /norm$/.test(e.name), half = e.name === "lm_head" ? head : 0.25;
    for (let i = 0; i < e.size; i++) model.params[e.offset + i] = norm ? 1 + 0.2 * (r() - 0.5) : 2 * half * (r() - 0.5);
  }
  return { model, tokenizer: stories.tokenizer, path: storiesGguf, format: "gguf", hfConfig: null };
}

/** The families of fusedTiny: written to GGUF with fused projections (io/gguflayout.ts). */
export type FusedFamily = "gpt2" | "phi3";

/**
 * A tiny random-weight GPT-2 or Phi-3 carrying stories260K's tokenizer (V 512), shaped like familyTiny: C 64, NH 4,
 * HS 16 (NH·HS = C, which both llama.cpp architectures require). The config is exactly what io/ggufconfig.ts reads
 * back from the export (float32 eps), so the loaded-back config deep-equals it.
 *
 * - gpt2-tiny: 3 layers, NKV = NH, FF 256 (4·C, as GPT-2), learned positions for a 128-token context, LayerNorms with
 *   biases, biases on every projection, tanh-GELU MLP, tied output; attn_qkv and its bias fused in the GGUF.
 * - phi3-tiny: 3 layers, NKV 2 (grouped-query, so q, k and v have different row counts in attn_qkv), FF 128, RoPE
 *   base 10000 (NEOX in llama.cpp), untied output as Phi-3's; gate and up fused into ffn_up (2·FF rows).
 *
 * Weights (integer PRNG, seeded per family): norm weights 1 + u·0.2 with u uniform in [-0.5, 0.5), biases (GPT-2's,
 * LayerNorm biases included) uniform in ±0.05, position embeddings in ±0.25, everything else in ±`half` below. The
 * scales and seeds were picked for logits of RMS ~1, not one-hot, and greedy decoding from BOS that runs 32 tokens
 * with top-2 margins far above llama.cpp's deviations (see test/fused-gguf-export.test.ts for the measured values).
 */
export function fusedTiny(family: FusedFamily, seed = FUSED_TINY_WEIGHTS[family].seed): LoadedModel {
  const stories = loadModel(storiesGguf);
  const gpt2 = family === "gpt2";
  const cfg: LlamaConfig = gpt2
    ? {
        family, V: 512, C: 64, L: 3, NH: 4, NKV: 4, HS: 16, FF: 256, ropeTheta: 10000, ropeScaling: { type: "none" },
        rmsEps: Math.fround(1e-5), tiedEmbeddings: true, qkvBias: true, qkNorm: false, maxSeqLen: 128, slidingWindow: null,
        normKind: "layer", positions: "learned", mlp: "plain", linearBiases: true, activation: "gelu_tanh",
      }
    : {
        family, V: 512, C: 64, L: 3, NH: 4, NKV: 2, HS: 16, FF: 128, ropeTheta: 10000, ropeScaling: { type: "none" },
        rmsEps: Math.fround(1e-5), tiedEmbeddings: false, qkvBias: false, qkNorm: false, maxSeqLen: 128, slidingWindow: null,
      };
  const { half } = FUSED_TINY_WEIGHTS[family];
  const model = createModel(cfg);
  const r = rng(seed);
  for (const e of model.entries) {
    const norm = /norm$/.test(e.name), bias = e.shape.length === 1 && !norm;
    const h = bias ? 0.05 : e.name === "pos_embd" ? 0.25 : half;
    for (let i = 0; i < e.size; i++) model.params[e.offset + i] = norm ? 1 + 0.2 * (r() - 0.5) : 2 * h * (r() - 0.5);
  }
  return { model, tokenizer: stories.tokenizer, path: storiesGguf, format: "gguf", hfConfig: null };
}
/**
 * phi3-tiny's shape with partial RoPE as Phi-4-mini has it (partial_rotary_factor 0.75 there): here 8 of each head's
 * 16 features rotate, the other 8 pass through; llama.cpp reads it as phi3.rope.dimension_count 8. Its own seed
 * (picked as fusedTiny's were): with phi3-tiny's weights greedy decoding ends at EOS after 23 tokens.
 */
export function phi3PartialRopeTiny(): LoadedModel {
  const base = fusedTiny("phi3", 20251016);
  const model = createModel({ ...base.model.cfg, ropeDim: 8 });
  model.params.set(base.model.params);
  return { ...base, model };
}

const FUSED_TINY_WEIGHTS: Record<FusedFamily, { seed: number; half: number }> = {
  gpt2: { seed: 20250861, half: 0.25 },
  phi3: { seed: 20250914, half: 0.25 },
};

/**
 * llama.cpp's GeGLU on the CPU, for tests that compare with it: ggml builds with GGML_GELU_FP16, so
 * ggml_vec_geglu_f32 (ggml/src/ggml-cpu/vec.h) computes gelu(x)·g for x in (−10, 10) as table[fp16(x)]·g, where
 * the table (ggml-cpu.c, ggml_cpu_init) holds fp16(ggml_gelu_f32(h)) for every half h; x ≤ −10 gives 0 and x ≥ 10
 * gives x·g. So the gate is rounded to half precision (relative 2^-11) and so is its GELU: llama.cpp's Gemma MLP
 * carries ~1e-3 relative error that tsdpo's float32 kernel does not. This reproduces it (round to nearest even, as
 * F16C's _cvtss_sh does; ggml_gelu_f32 in float32 steps with tanhf as Math.tanh rounded to float32). `flip` (see
 * fitGeluRoundings) lists gate indices to round to the other fp16 neighbour instead.
 */
export function ggmlGegluForward(out: Buf, gate: Buf, up: Buf, n: number, flip?: ReadonlySet<number>): void {
  const table = ggmlGeluTable();
  for (let i = 0; i < n; i++) {
    const x = gate[i]!, g = up[i]!;
    if (x <= -10) out[i] = 0;
    else if (x >= 10) out[i] = Math.fround(x * g);
    else {
      const h = f32ToF16(x);
      out[i] = Math.fround(table[flip?.has(i) ? otherF16Neighbour(x, h) : h]! * g);
    }
  }
}

let geluTable: Float32Array | null = null;
/** ggml_table_gelu_f16 as float32 values: fp16(ggml_gelu_f32(h)) for each of the 65536 halves h. */
function ggmlGeluTable(): Float32Array {
  if (geluTable) return geluTable;
  const f = Math.fround;
  const SQRT_2_OVER_PI = f(0.79788456080286535587989211986876), GELU_COEF_A = f(0.044715);
  geluTable = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const x = f16ToF32(h);
    // 0.5f*x*(1.0f + tanhf(SQRT_2_OVER_PI*x*(1.0f + GELU_COEF_A*x*x)))
    const inner = f(f(SQRT_2_OVER_PI * x) * f(1 + f(f(GELU_COEF_A * x) * x)));
    geluTable[h] = f16ToF32(f32ToF16(f(f(0.5 * x) * f(1 + f(Math.tanh(inner))))));
  }
  return geluTable;
}

/** The half next to half h, upwards or downwards in value. */
const f16Step = (h: number, up: boolean): number => ((h & 0x7fff) === 0 ? (up ? 0x0001 : 0x8001) : up === !(h & 0x8000) ? h + 1 : h - 1);
/** The fp16 neighbour of x that round-to-nearest (which gave h) did not choose. */
const otherF16Neighbour = (x: number, h: number): number => f16Step(h, x > f16ToF32(h));

/**
 * How far x lies from the point where its rounding to fp16 changes (the midpoint between its two fp16 neighbours),
 * in float32 units in the last place of x. Below a few dozen, float32 noise decides the rounding.
 */
export function ulpsFromF16Midpoint(x: number): number {
  if (!(Math.abs(x) < 10)) return Infinity; // ggml does not round these
  const h = f32ToF16(x), v = f16ToF32(h);
  if (v === x) return Infinity; // exactly a half: nothing to decide
  const mid = (v + f16ToF32(otherF16Neighbour(x, h))) / 2;
  const ulp = 2 ** (Math.max(Math.floor(Math.log2(Math.abs(x))), -126) - 23);
  return Math.abs(x - mid) / ulp;
}

/** One gate whose fp16 rounding llama.cpp took the other way: layer, position t, MLP unit j, and its ulps. */
export interface GeluFlip { layer: number; t: number; j: number; ulps: number }

const ones = (n: number): Float32Array => new Float32Array(n).fill(1);

/**
 * tsdpo's logits (T·V) for `ids` on `be`, with llama.cpp's fp16 GeGLU (or GPT-2's fp16 GELU) (ggmlGegluForward) and the gates of `flips`
 * rounded to their other fp16 neighbour; also every gate within `maxUlps` of an fp16 midpoint (the candidates).
 */
export function ggmlGeluLogits(
  be: Backend, model: Model, ids: readonly number[], flips: readonly GeluFlip[] = [], maxUlps = 0,
): { logits: Buf; candidates: GeluFlip[] } {
  const T = ids.length, FF = model.cfg.FF;
  const candidates: GeluFlip[] = [];
  let layer = 0;
  const mlp = (out: Buf, gate: Buf, up: Buf | null, n: number): void => {
    const flip = new Set(flips.filter((f) => f.layer === layer).map((f) => f.t * FF + f.j));
    ggmlGegluForward(out, gate, up ?? ones(n), n, flip);
    for (let i = 0; i < n && maxUlps > 0; i++) {
      const ulps = ulpsFromF16Midpoint(gate[i]!);
      if (ulps <= maxUlps && !flip.has(i)) candidates.push({ layer, t: Math.floor(i / FF), j: i % FF, ulps });
    }
    layer++;
  };
  // Gemma's GeGLU, and GPT-2's plain GELU: ggml_vec_gelu_f32 is the same table lookup without the product
  // (x ≤ −10 gives 0, x ≥ 10 gives x), i.e. the GeGLU with up = 1
  const hooked: Backend = {
    ...be,
    gegluForward: (out, gate, up, n) => mlp(out, gate, up, n),
    geluForward: (out, inp, n) => mlp(out, inp, null, n),
  };
  const acts = createActivations(model, 1, T);
  forward(hooked, model, acts, Int32Array.from(ids), Int32Array.from([...ids.slice(1), 0]), 1, T);
  return { logits: modelLogits(hooked, model, acts).slice(0, T * model.cfg.V), candidates };
}

/**
 * llama.cpp's logits (`ref`, T·V) explained by tsdpo's forward with ggml's fp16 GeGLU (GPT-2: GELU), up to the
 * rounding of gates that sit on an fp16 rounding boundary. A gate within a few float32 ulps of the midpoint between
 * two halves rounds one way in tsdpo and possibly the other in llama.cpp, whose float32 sums differ in order; one such
 * flip moves the logits by up to ~5e-4. Position by position (a flip at t changes nothing before t), while position
 * t is off by more than `target`, the candidate gate at t (within `maxUlps` of a midpoint) whose flip most reduces
 * the error there is flipped, if it at least halves it; when no single flip does, the best pair of candidates at t
 * (two boundary gates at one position whose effects partly cancel: GPT-2's 768 gates per position make that
 * likelier than Gemma's); at most `maxFlips` in all. Returns the flips and the per-position max |Δlogit| that remains.
 */
export function fitGeluRoundings(
  be: Backend, model: Model, ids: readonly number[], ref: ArrayLike<number>, { maxUlps = 32, maxFlips = 4, target = 2e-5 } = {},
): { flips: GeluFlip[]; perPosition: number[] } {
  const V = model.cfg.V;
  const perPosition = (logits: Buf): number[] =>
    ids.map((_, t) => {
      let m = 0;
      for (let v = 0; v < V; v++) m = Math.max(m, Math.abs(logits[t * V + v]! - ref[t * V + v]!));
      return m;
    });
  const flips: GeluFlip[] = [];
  let cur = ggmlGeluLogits(be, model, ids, flips, maxUlps);
  let err = perPosition(cur.logits);
  for (let t = 0; t < ids.length; t++) {
    while (err[t]! > target && flips.length < maxFlips) {
      const here = cur.candidates.filter((c) => c.t === t);
      const tries: GeluFlip[][] = here.map((c) => [c]);
      let best: { add: GeluFlip[]; run: typeof cur; err: number[] } | null = null;
      for (const pairs of [false, true]) {
        if (pairs) {
          if (best || flips.length + 2 > maxFlips) break;
          tries.length = 0;
          here.forEach((a, i) => here.slice(i + 1).forEach((b) => tries.push([a, b])));
        }
        for (const add of tries) {
          const run = ggmlGeluLogits(be, model, ids, [...flips, ...add], maxUlps);
          const e = perPosition(run.logits);
          if (e[t]! <= err[t]! / 2 && (!best || e[t]! < best.err[t]!)) best = { add, run, err: e };
        }
      }
      if (!best) break;
      flips.push(...best.add);
      cur = best.run;
      err = best.err;
    }
  }
  return { flips, perPosition: err };
}

export interface CheckModel {
  name: string;
  loaded: LoadedModel;
}

/** The models whose llama.cpp logits are committed. Build them fresh each time: the loaded models are mutable. */
export function checkModels(): CheckModel[] {
  const perturbed = perturbedStories();
  return [
    { name: "stories260K-perturbed", loaded: perturbed },
    { name: "stories260K-perturbed-llama3-rope", loaded: withLlama3Rope(perturbed) },
    { name: "gemma2-tiny", loaded: gemmaTiny("gemma2") },
    { name: "gemma3-tiny", loaded: gemmaTiny("gemma3") },
    { name: "smollm3-tiny", loaded: familyTiny("smollm3") },
    { name: "granite-tiny", loaded: familyTiny("granite") },
    { name: "olmo2-tiny", loaded: familyTiny("olmo2") },
    { name: "gpt2-tiny", loaded: fusedTiny("gpt2") },
    { name: "phi3-tiny", loaded: fusedTiny("phi3") },
    { name: "phi3-partial-rope-tiny", loaded: phi3PartialRopeTiny() },
  ];
}

/**
 * Tiny models (zero weights) carrying a real Hugging Face vocabulary, so that the converted tokenizer.json can be
 * run by llama.cpp's own tokenizer: Mistral-7B's SentencePiece-style BPE, and Qwen3's and GPT-2's byte-level BPE.
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
    { name: "gpt2-vocab", loaded: gpt2VocabModel() },
  ];
}

/** GPT-2's own 50,257-token vocabulary (test/fixtures/tokenizers/gpt2) on a zero-weight gpt2 model: "gpt-2", no BOS. */
export function gpt2VocabModel(): LoadedModel {
  const folder = fixture("tokenizers", "gpt2");
  const cfg: LlamaConfig = {
    family: "gpt2", V: 50257, C: 8, L: 1, NH: 2, NKV: 2, HS: 4, FF: 32, ropeTheta: 10000, ropeScaling: { type: "none" },
    rmsEps: Math.fround(1e-5), tiedEmbeddings: true, qkvBias: true, qkNorm: false, maxSeqLen: 1024, slidingWindow: null,
    normKind: "layer", positions: "learned", mlp: "plain", linearBiases: true, activation: "gelu_tanh",
  };
  return { model: createModel(cfg), tokenizer: loadHfTokenizer(folder), path: folder, format: "hf", hfConfig: null };
}

/**
 * The llama.cpp pre-tokenizer names tried on GPT-2's vocabulary: each family's (export/ggufvocab.ts FAMILY_BPE_PRE)
 * and the fallbacks that share a regex with one of them. They tokenise the same text differently (digits whole, in
 * threes, one by one; Llama 3's and Qwen2's letters and contractions), so llama.cpp's ids for each name, recorded by
 * tools/llama-ref/check-export.mjs, show that it accepts the name and splits as tsdpo's tokenizer does for it.
 */
export const PRE_VARIANTS = ["gpt-2", "llama-bpe", "qwen2", "stablelm2", "smaug-bpe", "dbrx", "smollm", "refact"] as const;

/** gpt2VocabModel's GGUF export, rewritten once per PRE_VARIANTS name with tokenizer.ggml.pre set to it, in `dir`. */
export function preVariantFiles(dir: string): { pre: string; path: string }[] {
  const base = join(dir, "gpt2-vocab-base.gguf");
  exportGguf(gpt2VocabModel(), base, { dtype: "F32" });
  return PRE_VARIANTS.map((pre) => {
    const path = join(dir, `gpt2-vocab-pre-${pre}.gguf`);
    rewriteGguf(base, path, { meta: (m) => m.map(([k, v]) => [k, k === "tokenizer.ggml.pre" ? gv.str(pre) : v]) });
    return { pre, path };
  });
}

/**
 * The GGUF file `src` written again to `out` with its metadata (typed, in file order) and tensors (read as float32,
 * written F32) passed through the given changes: how the tests make files tsdpo's exporter would not write.
 */
export function rewriteGguf(
  src: string,
  out: string,
  change: { meta?: (m: Array<[string, GgufMetaValue]>) => Array<[string, GgufMetaValue]>; tensors?: (t: GgufTensorToWrite[]) => GgufTensorToWrite[] },
): void {
  const f = readGguf(src);
  const tensors: GgufTensorToWrite[] = [...f.tensors.values()].map((t) => ({ name: t.name, dims: t.dims, type: "F32", data: readGgufTensor(f, t.name) }));
  writeGguf(out, { metadata: (change.meta ?? ((m) => m))(readGgufMetadataTyped(src)), tensors: (change.tensors ?? ((t) => t))(tensors) });
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

/** The logits (T, V) of `model` on `ids` (next-token targets), on the backend under test. */
export function checkLogits(model: Model, ids: readonly number[]): Float32Array | Float64Array {
  const be = testBackend();
  const T = ids.length;
  const acts = createActivations(model, 1, T);
  forward(be, model, acts, Int32Array.from(ids), Int32Array.from([...ids.slice(1), 0]), 1, T);
  return modelLogits(be, model, acts).slice(0, T * model.cfg.V);
}

/** BOS and CHECK_TEXT's ids in `loaded`'s tokenizer. */
export const checkIds = (loaded: LoadedModel): number[] => [loaded.tokenizer.bosId!, ...loaded.tokenizer.encode(CHECK_TEXT)];

/**
 * HF → tsdpo → HF for a model already exported to `dir1`: the folder loads back to the same config, weights and
 * logits (bit for bit), and exporting it again writes the same config.json, model.safetensors and tokenizer.json.
 * Returns the HF-loaded model and that model exported to GGUF (its tokenizer.json converted) and read back, for the
 * caller's own comparison (bit-equal, or within a norm shift's rounding for Gemma).
 */
export function assertHfRoundTrip(src: LoadedModel, dir1: string, tmp: string, name: string): { hf: LoadedModel; fromHf: LoadedModel } {
  const hf = loadModel(dir1);
  assert.equal(hf.format, "hf");
  assert.deepEqual(hf.model.cfg, src.model.cfg);
  assert.ok(hf.model.params.every((x, i) => x === src.model.params[i]), "weights changed through the HF folder");
  const a = checkLogits(src.model, checkIds(src)), b = checkLogits(hf.model, checkIds(hf));
  assert.ok(a.every((x, i) => x === b[i]), `logits differ by ${maxAbsDiff(a, b)}`);
  const dir2 = join(tmp, `${name}-hf2`);
  exportHf(hf, dir2);
  for (const f of ["config.json", "model.safetensors", "tokenizer.json"])
    assert.ok(readFileSync(join(dir2, f)).equals(readFileSync(join(dir1, f))), `${f} differs after HF -> tsdpo -> HF`);
  const gguf = join(tmp, `${name}-from-hf.gguf`);
  exportGguf(hf, gguf);
  const fromHf = loadModel(gguf);
  assert.deepEqual(fromHf.model.cfg, src.model.cfg);
  assert.deepEqual(checkIds(fromHf), checkIds(src));
  return { hf, fromHf };
}
