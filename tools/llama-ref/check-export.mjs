// Writes test/fixtures/gguf-export-llamacpp.json: what llama.cpp computes on GGUF files written by tsdpo's exporter,
// so the default test suite can check the export against llama.cpp without node-llama-cpp installed.
//
//   cd /work/main && npx tsc -p .            # the script runs tsdpo's compiled exporter from dist/
//   cd tools/llama-ref && node check-export.mjs
//
// For each model of dist/test/gguf-export-models.js it exports a GGUF with tsdpo, records the file's sha256, loads
// the file in llama.cpp (F32 KV cache, flash attention off, one thread, the haswell CPU backend pinned: see
// openLlama in common.mjs) and records
//   - check models (a perturbed stories260K, the same weights with Llama-3 RoPE scaling, tiny random Gemma 2 and
//     Gemma 3 models with local/global layers, tiny random SmolLM3, Granite and OLMo 2 models, and tiny random GPT-2
//     and Phi-3 models with fused attn_qkv / ffn_up): llama.cpp's token ids for CHECK_TEXT, its logits at every
//     position, and greedy ids from BOS. It prints how far tsdpo's logits are; for Gemma and GPT-2 also with
//     llama.cpp's fp16 GELU emulated (test/gemma-export.test.ts explains why that is needed);
//   - vocabulary models (Mistral-7B's, Qwen3's and GPT-2's tokenizer.json converted): llama.cpp's ids for each
//     text, with special-token parsing off and on; and GPT-2's vocabulary under each pre-tokenizer name of
//     PRE_VARIANTS (the families' names and their fallbacks): llama.cpp's ids for each text.
// test/gguf-export.test.ts and test/gemma-export.test.ts re-export the same models, require the same sha256, and
// compare.
// Logits are evaluated twice in fresh contexts and the run fails unless both passes agree bit for bit.

import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { argmax, denseLogits, f32 as float32Of, failer, float32ContextOptions, LLAMA_OPTIONS, MODEL_OPTIONS, openLlama, toJson } from "./common.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = join(here, "..", "..");
// TSDPO_DIST: another compile folder than dist/ (e.g. `npx tsc -p . --outDir dist-x`, to leave dist/ alone)
const dist = process.env.TSDPO_DIST ? resolve(repoRoot, process.env.TSDPO_DIST) : join(repoRoot, "dist");
const { exportGguf } = await import(join(dist, "src", "export", "gguf.js"));
const { loadModel } = await import(join(dist, "src", "io", "load.js"));
const { jsBackend } = await import(join(dist, "src", "backend", "js", "kernels.js"));
const { createActivations, forward, logitsOf } = await import(join(dist, "src", "model", "decoder.js"));
const shared = await import(join(dist, "test", "gguf-export-models.js"));
const outPath = shared.CHECK_FIXTURE;

const CONTEXT_OPTIONS = float32ContextOptions(128);
const fail = failer("check-export");
const f32 = (x) => float32Of(x, fail);
const dense = (map, V) => denseLogits(map, V, fail);

const sha256 = (path) => createHash("sha256").update(readFileSync(path)).digest("hex");

async function evaluate(model, ids, V) {
  const context = await model.createContext(CONTEXT_OPTIONS);
  const seq = context.getSequence();
  const res = await seq.controlledEvaluate(ids.map((id) => [id, { generateNext: { logits: true } }]));
  const logits = res.map((r, t) => {
    if (r === undefined) fail(`no logits at position ${t}`);
    return dense(r.next.logits, V);
  });
  await seq.clearHistory();
  const greedy = [model.tokens.bos];
  while (greedy.length - 1 < shared.GREEDY_TOKENS) {
    const [r] = await seq.controlledEvaluate([[greedy.at(-1), { generateNext: { token: true, logits: true } }]]);
    const row = dense(r.next.logits, V);
    if (r.next.token !== argmax(row)) fail(`greedy sampler chose ${r.next.token}, the argmax is ${argmax(row)}`);
    greedy.push(r.next.token);
    if (r.next.token === model.tokens.eos) break;
  }
  await context.dispose();
  return { logits, greedy };
}

/** tsdpo's logits for the same ids, only to print how close the engines are (the test does the real check). */
function tsdpoLogits(loaded, ids) {
  const T = ids.length;
  const acts = createActivations(loaded.model, 1, T);
  forward(jsBackend, loaded.model, acts, Int32Array.from(ids), Int32Array.from(ids.slice(1).concat([0])), 1, T);
  return logitsOf(jsBackend, loaded.model, acts);
}

// The CPU backend variant the committed numbers were recorded with (LLAMA_CPU_VARIANT to choose another): pinned so
// that a rerun on a machine whose best variant differs (zen4, skylakex, ...) reproduces them bit for bit.
const CPU_VARIANT = process.env.LLAMA_CPU_VARIANT ?? "haswell";
const { llama, cpuBackend } = await openLlama({ cpuVariant: CPU_VARIANT });
const tmp = mkdtempSync(join(tmpdir(), "tsdpo-check-export-"));
const checks = [];
const vocabs = [];
const preVariants = [];
try {
  for (const { name, loaded } of shared.checkModels()) {
    const file = join(tmp, `${name}.gguf`);
    exportGguf(loaded, file, { dtype: "F32" });
    const model = await llama.loadModel({ modelPath: file, ...MODEL_OPTIONS });
    const V = loaded.model.cfg.V;
    const ids = [model.tokens.bos, ...model.tokenize(shared.CHECK_TEXT)];
    const first = await evaluate(model, ids, V);
    const second = await evaluate(model, ids, V);
    for (let t = 0; t < ids.length; t++)
      for (let v = 0; v < V; v++) if (first.logits[t][v] !== second.logits[t][v]) fail(`${name}: llama.cpp was not deterministic`);
    if (first.greedy.join(",") !== second.greedy.join(",")) fail(`${name}: greedy ids differ between passes`);
    const mine = tsdpoLogits(loaded, ids);
    let diff = 0;
    first.logits.flat().forEach((x, i) => (diff = Math.max(diff, Math.abs(x - mine[i]))));
    let gelu = "";
    if (loaded.model.cfg.activation === "gelu_tanh") {
      // Gemma and GPT-2: llama.cpp's CPU GELU works in fp16 (see fitGeluRoundings); with that emulated the gap closes
      const fit = shared.fitGeluRoundings(jsBackend, loadModel(file).model, ids, first.logits.flat(), { maxUlps: 32, maxFlips: 12 });
      gelu = `; with ggml's fp16 GELU ${Math.max(...fit.perPosition)} (${fit.flips.length} gates on an fp16 rounding boundary flipped)`;
    }
    console.log(`${name}: ${ids.length} ids, greedy ${first.greedy.length - 1} tokens, max |llama.cpp - tsdpo| ${diff}${gelu}`);
    checks.push({
      name,
      sha256: sha256(file),
      ids,
      greedy: first.greedy,
      greedyText: model.detokenize(first.greedy.slice(1)),
      logits: first.logits.map((row) => row.map(f32)),
    });
    await model.dispose();
  }
  const texts = shared.vocabTexts();
  for (const { name, loaded } of shared.vocabModels()) {
    const file = join(tmp, `${name}.gguf`);
    exportGguf(loaded, file, { dtype: "F32" });
    const model = await llama.loadModel({ modelPath: file, vocabOnly: true, ...MODEL_OPTIONS });
    vocabs.push({
      name,
      sha256: sha256(file),
      plain: texts.map((t) => model.tokenize(t, false)),
      special: texts.map((t) => model.tokenize(t, true)),
    });
    console.log(`${name}: ${texts.length} texts tokenized`);
    await model.dispose();
  }
  for (const { pre, path } of shared.preVariantFiles(tmp)) {
    const model = await llama.loadModel({ modelPath: path, vocabOnly: true, ...MODEL_OPTIONS });
    preVariants.push({ pre, sha256: sha256(path), plain: texts.map((t) => model.tokenize(t, false)) });
    console.log(`gpt2-vocab with tokenizer.ggml.pre ${pre}: ${texts.length} texts tokenized`);
    await model.dispose();
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}

const nlcVersion = JSON.parse(readFileSync(join(here, "node_modules", "node-llama-cpp", "package.json"), "utf8")).version;
const fixtureJson = {
  about:
    "llama.cpp's results on GGUF files written by tsdpo's exporter (tools/llama-ref/check-export.mjs). checks[i] is a model " +
    "of test/gguf-export-models.ts checkModels(): the sha256 of its F32 export, llama.cpp's ids for CHECK_TEXT (BOS first), " +
    "logits[t] at every position t (float32, shortest round-trip decimals) and greedy ids from BOS. vocabs[i] is a model of " +
    "vocabModels(): llama.cpp's ids for each text of vocabTexts(), without (plain) and with (special) special-token parsing. " +
    "preVariants[i]: llama.cpp's ids (plain) for the same texts on GPT-2's vocabulary with tokenizer.ggml.pre set to each " +
    "name of PRE_VARIANTS (preVariantFiles).",
  provenance: {
    generator: "tools/llama-ref/check-export.mjs",
    nodeLlamaCpp: nlcVersion,
    llamaCpp: { repo: llama.llamaCppRelease.repo, release: llama.llamaCppRelease.release, cpuBackend },
    contextOptions: CONTEXT_OPTIONS,
    modelOptions: MODEL_OPTIONS,
    llamaOptions: LLAMA_OPTIONS,
    nodeVersion: process.version,
    platform: `${process.platform}-${process.arch}`,
    date: new Date().toISOString(),
  },
  checkText: shared.CHECK_TEXT,
  checks,
  vocabs,
  preVariants,
};

const json = toJson(fixtureJson) + "\n";
const back = JSON.parse(json);
checks.forEach((c, i) =>
  c.logits.forEach((row, t) => row.forEach((x, v) => {
    if (back.checks[i].logits[t][v] !== x) fail(`round trip lost ${c.name} pos ${t} token ${v}`);
  })),
);
writeFileSync(outPath, json);
console.log(`wrote ${relative(repoRoot, outPath)} (${(json.length / 1024).toFixed(0)} KiB)`);
await llama.dispose();
