// Writes test/fixtures/quant/llamacpp-quantized.json: what llama.cpp's own quantiser (llama_model_quantize, from the
// libllama that node-llama-cpp ships) makes of the two models in test/quant-models.ts, and what llama.cpp computes on
// the results. For each model × {Q8_0, Q4_K_M, Q6_K}: every tensor's type and the sha256 of its bytes (tsdpo's
// exporter must reproduce them exactly), per-position logits on two texts and a greedy continuation (tsdpo's forward
// on the same blocks is compared with them). Run from tools/llama-ref after `npm ci` here and `npm run build` at the
// root: node gen-quantized.mjs
//
// The F32 inputs are tsdpo's own GGUF exports of the models (stories260K is also checked against the shipped file).

import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { argmax, buildQuantizer, denseLogits, f32 as float32Of, failer, float32ContextOptions, FTYPE, MODEL_OPTIONS, openLlama, toJson } from "./common.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = join(here, "..", "..");
const fail = failer("gen-quantized");
const f32 = (x) => float32Of(x, fail);

const { readGguf } = await import(join(repoRoot, "dist", "src", "io", "gguf.js"));
const { exportGguf } = await import(join(repoRoot, "dist", "src", "export", "gguf.js"));
const { loadModel } = await import(join(repoRoot, "dist", "src", "io", "load.js"));
const { wideModel, storiesPath } = await import(join(repoRoot, "dist", "test", "quant-models.js"));
const { GGML_TYPE_ID, rowBytes } = await import(join(repoRoot, "dist", "src", "quant", "ggml.js"));
const TYPE_NAME = new Map([[0, "F32"], ...Object.entries(GGML_TYPE_ID).map(([n, id]) => [id, n])]);

const TEXTS = ["Once upon a time, there was a little girl named Lily."];
const GREEDY = 16;

const work = mkdtempSync(join(tmpdir(), "tsdpo-gen-quantized-"));
const quantize = buildQuantizer(work, fail);

/** Each tensor's type and the sha256 of exactly its own bytes (rows × row size, no alignment padding). */
function tensorsOf(path) {
  const f = readGguf(path);
  return [...f.tensors.values()].map((t) => {
    const type = TYPE_NAME.get(t.type);
    if (!type) fail(`${path}: tensor ${t.name} has ggml type ${t.type}, which tsdpo does not read`);
    const rows = t.dims.slice(1).reduce((a, b) => a * b, 1);
    const size = type === "F32" ? 4 * t.dims[0] * rows : rows * rowBytes(type, t.dims[0]);
    const bytes = f.buffer.subarray(f.dataOffset + t.offset, f.dataOffset + t.offset + size);
    return { name: t.name, type, sha256: createHash("sha256").update(bytes).digest("hex") };
  });
}

/** float32 rows as one base64 string (4 bytes a value, little-endian): exact and a third the size of decimal JSON. */
const b64 = (rows) => Buffer.from(Float32Array.from(rows.flat()).buffer).toString("base64");

const { llama, logLines } = await openLlama();
const out = { generator: "tools/llama-ref/gen-quantized.mjs", node_llama_cpp: "3.22.1", texts: TEXTS, models: {} };
for (const [modelName, loaded] of [["stories260K", loadModel(storiesPath)], ["wide", wideModel()]]) {
  const input = join(work, `${modelName}-f32.gguf`);
  exportGguf(loaded, input, { dtype: "F32" });
  out.models[modelName] = {};
  for (const ftype of Object.keys(FTYPE)) {
    const path = join(work, `${modelName}-${ftype}.gguf`);
    quantize(input, path, ftype);
    const model = await llama.loadModel({ modelPath: path, ...MODEL_OPTIONS });
    const V = loaded.model.cfg.V;
    const ctx = await model.createContext(float32ContextOptions(128));
    const seq = ctx.getSequence();
    // every position of a text in one batch; row t is the prediction of ids[t+1]
    const texts = [];
    for (const text of TEXTS) {
      await seq.clearHistory();
      const ids = [model.tokens.bos, ...model.tokenize(text)];
      const res = await seq.controlledEvaluate(ids.map((id) => [id, { generateNext: { logits: true } }]));
      texts.push({ ids, logits_f32_base64: b64(res.map((r) => denseLogits(r.next.logits, V, fail))) });
    }
    // greedy from BOS, one decode at a time, with each step's top-2 margin (where ids may legitimately differ)
    await seq.clearHistory();
    const greedy = [model.tokens.bos];
    const margins = [];
    for (let i = 0; i < GREEDY; i++) {
      const [r] = await seq.controlledEvaluate([[greedy.at(-1), { generateNext: { logits: true } }]]);
      const row = denseLogits(r.next.logits, V, fail);
      const top = argmax(row);
      const second = Math.max(...row.filter((_, j) => j !== top));
      greedy.push(top);
      margins.push(f32(Math.fround(row[top] - second)));
    }
    await ctx.dispose();
    await model.dispose();
    out.models[modelName][ftype] = { tensors: tensorsOf(path), texts, greedy: { ids: greedy, margins } };
  }
}
mkdirSync(join(repoRoot, "test", "fixtures", "quant"), { recursive: true });
writeFileSync(join(repoRoot, "test", "fixtures", "quant", "llamacpp-quantized.json"), toJson(out) + "\n");
console.log(`wrote test/fixtures/quant/llamacpp-quantized.json (${logLines.length} log lines)`);
