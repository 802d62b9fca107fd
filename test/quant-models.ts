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
import { type Model, createActivations, createModel, forward, logitsOf } from "../src/model/llama.js";
import { Rng } from "../src/rng.js";

import { storiesGguf } from "./helpers.js";

export const storiesPath = storiesGguf;

/** C 256, FF 512, 4 layers (use_more_bits picks layers 2 and 3), NH = NKV = 4 of 64, V 512, untied output. */
export function wideModel(): LoadedModel {
  const stories = loadModel(storiesPath);
  const cfg = { ...stories.model.cfg, C: 256, FF: 512, L: 4, NH: 4, NKV: 4, HS: 64, tiedEmbeddings: false };
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
