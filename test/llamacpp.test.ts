// stories260K against llama.cpp (node-llama-cpp 3.22.1, F32 KV cache, flash attention off; the committed numbers
// come from tools/llama-ref/gen-stories260k.mjs): per-position logits on four texts, greedy decoding from BOS, and
// the same numbers after a round trip through a Hugging Face export.

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { exportHf } from "../src/export/hf.js";
import { loadModel, type LoadedModel } from "../src/io/load.js";
import { createActivations, forward, logitsOf } from "../src/model/decoder.js";
import { generate } from "../src/sample/generate.js";
import { fixture, maxAbsDiff, storiesGguf, testBackend } from "./helpers.js";

const be = testBackend();

interface LlamaCppFixture {
  vocabSize: number;
  greedy: { ids: number[]; text: string; stepMargin: number[] };
  texts: { text: string; ids: number[]; logits: number[][] }[];
}
const ref = JSON.parse(readFileSync(fixture("stories260k-llamacpp.json"), "utf8")) as LlamaCppFixture;
const gguf = loadModel(storiesGguf);

function checkLogits(loaded: LoadedModel, label: string): void {
  const { model } = loaded;
  for (const { text, ids, logits } of ref.texts) {
    const T = ids.length;
    const acts = createActivations(model, 1, T);
    const idArr = Int32Array.from(ids);
    const targets = Int32Array.from(ids.slice(1).concat([0]));
    forward(be, model, acts, idArr, targets, 1, T);
    const got = logitsOf(be, model, acts).subarray(0, T * model.cfg.V);
    const diff = maxAbsDiff(got, logits.flat());
    assert.ok(diff <= 1e-4, `${label}: "${text.slice(0, 30)}…" max |logit diff| ${diff} > 1e-4`);
  }
}

test("stories260K tokenizer gives llama.cpp's ids for the reference texts", () => {
  const tok = gguf.tokenizer;
  for (const { text, ids } of ref.texts) assert.deepEqual([tok.bosId!, ...tok.encode(text)], ids, text);
});

test("stories260K per-position logits match llama.cpp to 1e-4 on four texts", () => {
  assert.equal(gguf.model.cfg.V, ref.vocabSize);
  checkLogits(gguf, "gguf");
});

test("greedy decoding from BOS reproduces llama.cpp's 100 ids", () => {
  const prompt = [ref.greedy.ids[0]!];
  const n = ref.greedy.ids.length - 1;
  assert.ok(n >= 60);
  const out = generate(be, gguf.model, prompt, [], { maxNewTokens: n, temperature: 0, topK: 0, topP: 1, seed: 0 });
  assert.deepEqual([...prompt, ...out.ids], ref.greedy.ids);
  assert.equal(gguf.tokenizer.decode(out.ids), ref.greedy.text.replace(/^\s+/, ""));
});

test("the exported Hugging Face folder loads back and gives llama.cpp's logits", () => {
  const dir = mkdtempSync(join(tmpdir(), "tsdpo-hf-"));
  try {
    exportHf(gguf, dir);
    const hf = loadModel(dir);
    assert.equal(hf.format, "hf");
    assert.deepEqual(hf.model.cfg, { ...gguf.model.cfg });
    assert.deepEqual(Array.from(hf.model.params), Array.from(gguf.model.params));
    checkLogits(hf, "hf export");
    for (const { text, ids } of ref.texts) assert.deepEqual([hf.tokenizer.bosId!, ...hf.tokenizer.encode(text)], ids, `hf tokenizer: ${text}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
