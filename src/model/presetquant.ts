// A preset's frozen matrices made directly in their stored block format, for benchmarks of a quantised or
// half-precision base at 1–3B scale: a float32 copy of the model never exists, so building the llama3.2-3b preset
// in Q4_K takes the 1.8 GB of its blocks and a few seconds, not 12.8 GB and minutes of re-encoding.
//
// - F16 and BF16: each row is the float preset's row (presetValues, the same formula and tensor index k as
//   presetModel) rounded to halves, so a bf16 preset is exactly the float preset rounded to bf16.
// - The quantised types: valid random blocks from a seeded RNG (xoshiro128**, one stream per tensor, so the bytes
//   are the same in every run). The quants are uniform random bits; every block's scales are the same constants,
//   chosen so that the dequantised values have the float preset's spread: a standard deviation of 0.02/√2 ≈ 0.0141
//   (that of 0.02·sin), centred on zero within half a quantisation step, within about ±0.025. Scales are normal
//   halves, never NaN or ±inf.
//   Speed does not depend on the values, and the products that read the blocks are checked against ggml elsewhere
//   (test/quant.test.ts); these weights only have to be valid and of a realistic size.
//
// Matrices whose rows the blocks do not tile take llama.cpp's fallback type (typeForRows), or stay float32 in the
// arena with presetModel's values; norms and biases are float32 in the arena with presetModel's values.

import { BLOCK, type QuantType, quantizeRow, rowBytes } from "../quant/ggml.js";
import { Rng } from "../rng.js";
import { type LlamaConfig, isBlockMatrix, paramSpecs } from "./config.js";
import { type Model, createModel } from "./decoder.js";
import { fillPresetArena, presetValues } from "./presets.js";
import { typeForRows } from "./quantise.js";
import { type QuantWeight, quantWeight } from "./weights.js";

/** A model of shape `cfg` whose matrices are preset blocks of type `want` (or its fallbacks); see the top. */
export function blockPresetModel(cfg: LlamaConfig, want: QuantType): Model {
  const quant = new Map<string, QuantWeight>();
  paramSpecs(cfg).forEach((s, k) => {
    if (!isBlockMatrix(s.name, s.shape)) return;
    const [rows, cols] = s.shape as [number, number];
    const type = typeForRows(want, cols);
    if (type) quant.set(s.name, quantWeight(type, presetBlocks(type, k, rows, cols), rows, cols));
  });
  const model = createModel(cfg, Float32Array, quant);
  fillPresetArena(model);
  return model;
}

/** The (rows, cols) matrix that is preset tensor k, as `type` blocks. */
export function presetBlocks(type: QuantType, k: number, rows: number, cols: number): Uint8Array {
  const rb = rowBytes(type, cols);
  const bytes = new Uint8Array(rows * rb);
  if (type === "F16" || type === "BF16") {
    const row = new Float32Array(cols);
    for (let r = 0; r < rows; r++) {
      presetValues(row, k, r * cols, cols);
      quantizeRow(type, row, 0, cols, bytes, r * rb);
    }
  } else randomBlocks(type, bytes, new Rng(Math.imul(k + 1, 0x9e3779b1)));
  return bytes;
}

/** Every byte random, then each block's scale fields set to HEADER[type]. */
function randomBlocks(type: Exclude<QuantType, "F16" | "BF16">, bytes: Uint8Array, rng: Rng): void {
  // Four bytes a draw through a 32-bit view (little-endian, as every platform Node ships for); the array is fresh,
  // so its offset is aligned.
  const words = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >>> 2);
  for (let i = 0; i < words.length; i++) words[i] = rng.nextU32();
  for (let i = 4 * words.length; i < bytes.length; i++) bytes[i] = rng.nextU32() & 255;
  const { at, head } = HEADER[type];
  const size = BLOCK[type].bytes;
  for (let o = at; o < bytes.length; o += size) for (let j = 0; j < head.length; j++) bytes[o + j] = head[j]!;
}

// ---------------------------------------------------------------------------------------------------------------
// The scale fields. With q uniform over n levels, the step D between levels that gives the standard deviation SIGMA
// is SIGMA / √((n² − 1)/12). The offset is the format's own in Q4_0, Q5_0, Q8_0 and Q6_K (n/2 steps: the mean is
// half a step below zero) and (n − 1)/2 steps, given as the min, in Q4_1, Q5_1, Q4_K and Q5_K (mean zero). The K-quants' step is d·scale: the 6-bit (Q4_K, Q5_K) or 8-bit
// (Q6_K) sub-block scale S is fixed so that d stays a normal half (≥ 2^-14).

const SIGMA = 0.02 / Math.SQRT2;
const step = (levels: number): number => SIGMA / Math.sqrt((levels * levels - 1) / 12);

function half(x: number): number[] {
  const b = new Uint8Array(2);
  quantizeRow("F16", Float32Array.of(x), 0, 1, b, 0);
  return [b[0]!, b[1]!];
}

/** Q4_K/Q5_K's 12 scale bytes for eight sub-blocks of scale `sc` and min `mn` (6 bits each; ggml's packing). */
function packScalesK(sc: number, mn: number): number[] {
  const b = new Array<number>(12);
  for (let j = 0; j < 4; j++) {
    b[j] = (sc & 63) | ((sc >> 4) << 6); // sub-block j's scale, and the top 2 bits of sub-block j + 4's
    b[j + 4] = (mn & 63) | ((mn >> 4) << 6);
    b[j + 8] = (sc & 15) | ((mn & 15) << 4); // sub-block j + 4's low 4 bits
  }
  return b;
}

function kHeader(levels: number, S: number): number[] {
  const d = step(levels) / S;
  return [...half(d), ...half(((levels - 1) / 2) * d), ...packScalesK(S, S)];
}

/** Bytes `head` go at offset `at` of every block. */
const HEADER: Record<Exclude<QuantType, "F16" | "BF16">, { at: number; head: Uint8Array }> = {
  Q8_0: { at: 0, head: Uint8Array.from(half(step(256))) }, // x = d·q, q in −128..127
  Q4_0: { at: 0, head: Uint8Array.from(half(step(16))) }, // x = d·(q − 8)
  Q5_0: { at: 0, head: Uint8Array.from(half(step(32))) }, // x = d·(q − 16)
  Q4_1: { at: 0, head: Uint8Array.from([...half(step(16)), ...half(-7.5 * step(16))]) }, // x = d·q + m
  Q5_1: { at: 0, head: Uint8Array.from([...half(step(32)), ...half(-15.5 * step(32))]) },
  Q4_K: { at: 0, head: Uint8Array.from(kHeader(16, 32)) }, // x = d·S·q − dmin·S, q in 0..15
  Q5_K: { at: 0, head: Uint8Array.from(kHeader(32, 16)) }, // q in 0..31
  Q6_K: { at: 192, head: Uint8Array.from([...new Array<number>(16).fill(8), ...half(step(64) / 8)]) }, // x = d·S·(q − 32)
};
