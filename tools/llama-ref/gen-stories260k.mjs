// Writes test/fixtures/stories260k-llamacpp.json: llama.cpp's own token ids, greedy continuation and per-position
// logits for the shipped stories260K model, so tsdpo's forward pass can be checked against an engine it shares no
// code with. Run from tools/llama-ref (see README.md). Everything is evaluated twice in fresh contexts and the run
// fails unless both passes agree bit for bit; the first pass is what gets written.

import { createHash } from "node:crypto";
import { readFileSync, writeFileSync, statSync, readdirSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { argmax, denseLogits as dense, f32 as float32Of, failer, float32ContextOptions, LLAMA_OPTIONS, MODEL_OPTIONS, openLlama, toJson } from "./common.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = join(here, "..", "..");
const modelPath = join(repoRoot, "assets", "models", "stories260K", "stories260K.gguf");
const outPath = join(repoRoot, "test", "fixtures", "stories260k-llamacpp.json");

// Greedy ids from BOS as first seen in llama.cpp and llama2.c for this model; a mismatch means the engine, the model
// file or the settings changed, and the fixture must not be written.
const KNOWN_GREEDY_PREFIX = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267];
const MIN_GENERATED = 64;
const MAX_GENERATED = 100;

const TEXTS = [
  "Once upon a time, there was a little girl named Lily.",
  // digits, currency, words the model never saw, an em dash (a vocabulary piece) and an i-diaeresis (two byte tokens)
  "On 3/14 Zyx paid $42.50 for a na\u00efve quokka \u2014 wow!?",
  "Tom had a red ball. He liked to play with it. One day, the ball rolled away and Tom was sad.",
  // a newline and a double space, which SentencePiece keeps as separate pieces
  "The cat sat on the mat.\nThe dog  ran to the sun.",
];

const CONTEXT_OPTIONS = float32ContextOptions(256);
const fail = failer("gen-stories260k");
const f32 = (x) => float32Of(x, fail);
const denseLogits = (map, V) => dense(map, V, fail);

/** Reads an int and a char* global from an x86-64 ELF shared object without loading it (dynsym + RELATIVE relocs). */
function readElfGlobals(soPath, intNames, strNames) {
  const b = readFileSync(soPath);
  if (b.readUInt32BE(0) !== 0x7f454c46 || b[4] !== 2 || b[5] !== 1) return null; // not ELF64 little-endian
  const num = (o) => Number(b.readBigUInt64LE(o));
  const shoff = num(0x28), shentsize = b.readUInt16LE(0x3a), shnum = b.readUInt16LE(0x3c);
  const phoff = num(0x20), phentsize = b.readUInt16LE(0x36), phnum = b.readUInt16LE(0x38);
  const sections = [];
  for (let i = 0; i < shnum; i++) {
    const o = shoff + i * shentsize;
    sections.push({ type: b.readUInt32LE(o + 4), offset: num(o + 0x18), size: num(o + 0x20), link: b.readUInt32LE(o + 0x28) });
  }
  const loads = [];
  for (let i = 0; i < phnum; i++) {
    const o = phoff + i * phentsize;
    if (b.readUInt32LE(o) === 1) loads.push({ offset: num(o + 8), vaddr: num(o + 0x10), filesz: num(o + 0x20) });
  }
  const fileOffset = (va) => {
    const s = loads.find((l) => va >= l.vaddr && va < l.vaddr + l.filesz);
    return s ? va - s.vaddr + s.offset : -1;
  };
  const cstr = (o) => b.toString("latin1", o, b.indexOf(0, o));
  const dynsym = sections.find((s) => s.type === 11);
  if (!dynsym) return null;
  const strtab = sections[dynsym.link];
  const syms = new Map();
  for (let o = dynsym.offset; o < dynsym.offset + dynsym.size; o += 24) {
    const name = cstr(strtab.offset + b.readUInt32LE(o));
    if (intNames.includes(name) || strNames.includes(name)) syms.set(name, num(o + 8));
  }
  const relative = new Map(); // R_X86_64_RELATIVE: pointer slot -> target address
  for (const s of sections.filter((s) => s.type === 4)) {
    for (let o = s.offset; o < s.offset + s.size; o += 24) {
      if ((b.readBigUInt64LE(o + 8) & 0xffffffffn) === 8n) relative.set(num(o), num(o + 16));
    }
  }
  const out = {};
  for (const n of intNames) out[n] = syms.has(n) ? b.readInt32LE(fileOffset(syms.get(n))) : null;
  for (const n of strNames) {
    const slot = syms.get(n);
    const target = slot === undefined ? undefined : (relative.get(slot) ?? num(fileOffset(slot)));
    out[n] = target === undefined || fileOffset(target) < 0 ? null : cstr(fileOffset(target));
  }
  return out;
}

function maxAbsDiffRows(a, b) {
  let m = 0;
  for (let t = 0; t < a.length; t++) for (let i = 0; i < a[t].length; i++) m = Math.max(m, Math.abs(a[t][i] - b[t][i]));
  return m;
}

/** One full pass in a fresh context: greedy continuation from BOS (one token per decode, reusing the KV cache), the
 *  same ids re-evaluated as one batch, and every text evaluated as one batch with logits at all positions. */
async function evaluatePass(model, V) {
  const context = await model.createContext(CONTEXT_OPTIONS);
  const sequence = context.getSequence();
  const bos = model.tokens.bos;
  const eos = model.tokens.eos;

  const ids = [bos];
  const stepLogits = [];
  while (ids.length - 1 < MAX_GENERATED) {
    const [res] = await sequence.controlledEvaluate([[ids.at(-1), { generateNext: { token: true, logits: true } }]]);
    const row = denseLogits(res?.next.logits, V);
    const tok = res.next.token;
    if (tok !== argmax(row)) fail(`greedy sampler chose ${tok} but the argmax of its logits is ${argmax(row)}`);
    stepLogits.push(row);
    ids.push(tok);
    if (tok === eos) break;
  }

  await sequence.clearHistory();
  const batchRows = await evaluateAll(sequence, ids, V);

  const texts = [];
  for (const text of TEXTS) {
    await sequence.clearHistory();
    const textIds = [bos, ...model.tokenize(text)];
    if (textIds.length > CONTEXT_OPTIONS.batchSize) fail(`text has ${textIds.length} tokens, more than the batch`);
    texts.push({ text, ids: textIds, logits: await evaluateAll(sequence, textIds, V) });
  }
  await context.dispose();
  // batchRows[t] predicts ids[t+1], as stepLogits[t] does, so the two are comparable row by row
  return { ids, stepLogits, batchRows: batchRows.slice(0, stepLogits.length), texts };
}

async function evaluateAll(sequence, ids, V) {
  const res = await sequence.controlledEvaluate(ids.map((id) => [id, { generateNext: { logits: true } }]));
  if (res.length !== ids.length) fail(`asked for ${ids.length} logit rows, got ${res.length}`);
  return res.map((r, t) => {
    if (r === undefined) fail(`no logits at position ${t}`);
    return denseLogits(r.next.logits, V);
  });
}

const { llama, logLines } = await openLlama();
const model = await llama.loadModel({ modelPath, ...MODEL_OPTIONS });
const V = model.fileInfo.metadata.tokenizer?.ggml?.tokens?.length;
if (V !== 512) fail(`expected vocabulary 512 in ${modelPath}, got ${V}`);

const first = await evaluatePass(model, V);
const second = await evaluatePass(model, V);

const prefix = first.ids.slice(0, KNOWN_GREEDY_PREFIX.length);
if (prefix.join(",") !== KNOWN_GREEDY_PREFIX.join(","))
  fail(`greedy ids start ${prefix.join(",")} but the known prefix is ${KNOWN_GREEDY_PREFIX.join(",")}`);
if (first.ids.length - 1 < MIN_GENERATED) fail(`greedy run stopped after ${first.ids.length - 1} tokens (EOS)`);
if (first.ids.join(",") !== second.ids.join(",")) fail("greedy ids differ between two passes");

const rerunTextDiff = Math.max(...first.texts.map((t, i) => maxAbsDiffRows(t.logits, second.texts[i].logits)));
const rerunGreedyDiff = maxAbsDiffRows(first.stepLogits, second.stepLogits);
if (rerunTextDiff !== 0 || rerunGreedyDiff !== 0)
  fail(`llama.cpp was not deterministic: max |diff| ${rerunTextDiff} (texts), ${rerunGreedyDiff} (greedy)`);
for (const t of first.texts) {
  if (t.ids.length < 16 || t.ids.length > 41) fail(`"${t.text}" has ${t.ids.length} tokens, want 15-40 plus BOS`);
}

const nlcVersion = JSON.parse(readFileSync(join(here, "node_modules", "node-llama-cpp", "package.json"), "utf8")).version;
const binDir = join(here, "node_modules", "@node-llama-cpp", "linux-x64");
const binSub = join(binDir, "bins", readdirSync(join(binDir, "bins"))[0]);
const buildInfo = readElfGlobals(join(binSub, "libllama-common.so"), ["LLAMA_BUILD_NUMBER"], ["LLAMA_COMMIT", "LLAMA_COMPILER", "LLAMA_BUILD_TARGET"]);
const backendLine = logLines.find((l) => l.includes("loaded CPU backend from"));
const modelBytes = readFileSync(modelPath);

const fixture = {
  about:
    "llama.cpp reference numbers for assets/models/stories260K/stories260K.gguf, written by tools/llama-ref/gen-stories260k.mjs. " +
    "ids include BOS at position 0. texts[i].logits[t] is the float32 logit vector (length vocabSize) llama.cpp computes at position t, " +
    "i.e. the prediction of ids[t+1]; every position of a text was evaluated in one batch. greedy.ids were generated one decode at a time " +
    "with the KV cache; greedy.stepTopLogit[k] and greedy.stepMargin[k] (top logit minus runner-up) belong to the step that produced ids[k+1]. " +
    "Numbers are the shortest decimals that round-trip to llama.cpp's float32 values.",
  provenance: {
    generator: "tools/llama-ref/gen-stories260k.mjs",
    nodeLlamaCpp: nlcVersion,
    llamaCpp: {
      repo: llama.llamaCppRelease.repo,
      release: llama.llamaCppRelease.release,
      commit: buildInfo?.LLAMA_COMMIT ?? null,
      buildNumber: buildInfo?.LLAMA_BUILD_NUMBER ?? null,
      compiler: buildInfo?.LLAMA_COMPILER ?? null,
      buildTarget: buildInfo?.LLAMA_BUILD_TARGET ?? null,
      binary: `@node-llama-cpp/linux-x64@${nlcVersion} (${llama.buildType})`,
      cpuBackend: backendLine ? backendLine.replace(/^.*\//, "") : null,
      systemInfo: llama.systemInfo.trim(),
      // llama.cpp's own account of the context it built; an F16 cache would report half this KV buffer size
      engineLog: [...new Set(logLines.filter((l) => /llama_context: +(n_ctx|n_batch|n_ubatch|causal_attn|flash_attn) |KV buffer size|kv_unified|type_k|type_v/.test(l)))],
    },
    model: {
      path: relative(repoRoot, modelPath),
      bytes: statSync(modelPath).size,
      sha256: createHash("sha256").update(modelBytes).digest("hex"),
    },
    llamaOptions: LLAMA_OPTIONS,
    modelOptions: MODEL_OPTIONS,
    contextOptions: CONTEXT_OPTIONS,
    evaluation:
      "LlamaContextSequence.controlledEvaluate with generateNext.logits on every position; greedy takes generateNext.token " +
      "with no sampling options and checks it equals the argmax of the returned logits",
    nodeVersion: process.version,
    platform: `${process.platform}-${process.arch}`,
    date: new Date().toISOString(),
    checks: {
      knownGreedyPrefix: KNOWN_GREEDY_PREFIX,
      rerunMaxAbsDiff: Math.max(rerunTextDiff, rerunGreedyDiff), // the run fails above unless this is 0
      // same ids, one-token-at-a-time decode vs one batch: how far llama.cpp's two code paths drift in float32
      incrementalVsBatchMaxAbsDiff: maxAbsDiffRows(first.stepLogits, first.batchRows),
    },
  },
  vocabSize: V,
  bos: model.tokens.bos,
  eos: model.tokens.eos,
  greedy: {
    ids: first.ids,
    text: model.detokenize(first.ids.slice(1)),
    stepTopLogit: first.stepLogits.map((r) => f32(r[argmax(r)])),
    stepMargin: first.stepLogits.map((r) => {
      const top = argmax(r);
      let second = -Infinity;
      for (let i = 0; i < r.length; i++) if (i !== top && r[i] > second) second = r[i];
      return r[top] - second; // exact in float64, as both are float32
    }),
  },
  texts: first.texts.map((t) => ({ text: t.text, ids: t.ids, logits: t.logits.map((row) => row.map(f32)) })),
};

const json = toJson(fixture) + "\n";
// the written file must give back exactly the float32 logits llama.cpp produced
const back = JSON.parse(json);
for (let i = 0; i < first.texts.length; i++)
  for (let t = 0; t < first.texts[i].logits.length; t++)
    for (let v = 0; v < V; v++)
      if (Math.fround(back.texts[i].logits[t][v]) !== first.texts[i].logits[t][v]) fail(`round trip lost text ${i} pos ${t} token ${v}`);
writeFileSync(outPath, json);
console.log(
  `wrote ${relative(repoRoot, outPath)} (${(json.length / 1024).toFixed(0)} KiB): greedy ${first.ids.length - 1} tokens, ` +
    `texts ${first.texts.map((t) => t.ids.length).join("/")} tokens, rerun max |diff| 0, ` +
    `incremental vs batch max |diff| ${fixture.provenance.checks.incrementalVsBatchMaxAbsDiff}`,
);
await model.dispose();
await llama.dispose();
