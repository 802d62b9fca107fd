// Writes the fixtures of test/quant-roundtrip.test.ts, the two round trips of issue 14 between tsdpo and llama.cpp:
//
// 1. The HH-tuned stories260K at Q8_0. tsdpo trains stories260K with the shipped configs/default.json (DPO on the
//    shipped HH-RLHF pairs; js backend, so every machine computes the same bits), exports the run as an F32 GGUF, and
//    llama.cpp's own llama_model_quantize makes it Q8_0: test/fixtures/quant/hh-stories260K-Q8_0.gguf. llama.cpp's
//    greedy continuations (32 tokens, one decode at a time) of two prompts on that file, with every step's top-2
//    margin and logits, go to test/fixtures/quant/roundtrip-hh-llamacpp.json, and so do llama.cpp's greedy ids and
//    logits on its own float32 dequantisation of the file (llama_model_quantize to all-F32): llama.cpp rounds the
//    activations to 8 bits for quantised dot products, so only that float32 run can agree with tsdpo to ~1e-5.
// 2. LoRA DPO on a Q4_K_M file made by llama.cpp, exported with --dtype q4_k_m. The base is wideModel({L: 2, FF: 256,
//    NKV: 2}) of test/quant-models.ts (every width a multiple of 256, so the K-quants are used), first SFT-trained by
//    tsdpo (js) on the shipped TinyStories openings so that its logits have real margins, exported as F32 and made
//    Q4_K_M by llama_model_quantize: test/fixtures/quant/wide-sft-Q4_K_M.gguf. Then `tsdpo train` runs
//    ROUNDTRIP_LORA_CONFIG (test/quant-models.ts) on that file and `tsdpo export --format gguf --dtype q4_k_m` writes
//    the run; llama.cpp loads the export, and its sha256, tensor types, llama.cpp's greedy ids, margins and logits
//    (also on its float32 dequantisation, as above; and llama.cpp's greedy ids on the base, to show the adapters
//    changed something) go to
//    test/fixtures/quant/roundtrip-lora-llamacpp.json. The export itself is not committed: the test makes it again
//    and requires the same sha256.
//
//   cd ../.. && npx tsc -p . && cd tools/llama-ref   # the script runs tsdpo's compiled CLI and library from dist/
//   node gen-roundtrip.mjs                           # ~11 min on one core (the HH training is most of it)
//
// Needs llama.cpp's headers for quantize.c (see common.mjs, LLAMA_SRC). Every llama.cpp evaluation runs twice in fresh
// contexts and the script fails unless both agree bit for bit.

import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { argmax, buildQuantizer, denseLogits, f32 as float32Of, failer, float32ContextOptions, MODEL_OPTIONS, openLlama, toJson } from "./common.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = join(here, "..", "..");
const fail = failer("gen-roundtrip");
const f32 = (x) => float32Of(x, fail);
const quantDir = join(repoRoot, "test", "fixtures", "quant");
const cli = join(repoRoot, "dist", "src", "cli", "main.js");

const { exportGguf } = await import(join(repoRoot, "dist", "src", "export", "gguf.js"));
const { ROUNDTRIP_BASE, ROUNDTRIP_LORA_CONFIG, tensorDigests, wideModel } = await import(join(repoRoot, "dist", "test", "quant-models.js"));

const GREEDY = 32;
const HH_PROMPTS = ["", "\n\nHuman: My friend is sad. What can I do?\n\nAssistant:"];
const LORA_PROMPTS = ["Once upon a time", "Lily had a cat."];
const HH_FILE = join(quantDir, "hh-stories260K-Q8_0.gguf");

const work = mkdtempSync(join(tmpdir(), "tsdpo-gen-roundtrip-"));
const quantize = buildQuantizer(work, fail);
const sha256 = (path) => createHash("sha256").update(readFileSync(path)).digest("hex");
const typeCounts = (path) => {
  const n = {};
  for (const t of tensorDigests(path)) n[t.type] = (n[t.type] ?? 0) + 1;
  return n;
};
const rel = (p) => relative(repoRoot, p);

/** `tsdpo <args>` from dist/ on the js backend; its output goes to <work>/<log>.log. */
function tsdpo(log, args) {
  const r = spawnSync(process.execPath, [cli, ...args], { cwd: repoRoot, encoding: "utf8", env: { ...process.env, TSDPO_BACKEND: "js" } });
  writeFileSync(join(work, `${log}.log`), `${r.stdout}\n${r.stderr}`);
  if (r.status !== 0) fail(`tsdpo ${args.join(" ")} failed (exit ${r.status}):\n${r.stderr}`);
}

const firstMetrics = (run) => JSON.parse(readFileSync(join(run, "metrics.jsonl"), "utf8").split("\n")[0]);
const lastMetrics = (run) => JSON.parse(readFileSync(join(run, "metrics.jsonl"), "utf8").trim().split("\n").at(-1));

// ---- 1. HH-tuned stories260K, Q8_0 by llama.cpp ----
console.log("training stories260K with configs/default.json (js backend, ~8 min)");
const hhRun = join(work, "hh");
tsdpo("hh-train", ["train", join(repoRoot, "configs", "default.json"), "--output_dir", hhRun]);
tsdpo("hh-export", ["export", hhRun, "--format", "gguf", "--dtype", "f32", "--out", join(work, "hh-F32.gguf")]);
quantize(join(work, "hh-F32.gguf"), HH_FILE, "Q8_0");

// ---- 2. the wide base: SFT by tsdpo, Q4_K_M by llama.cpp; LoRA DPO and the q4_k_m export by tsdpo ----
console.log("SFT of the small wide model on the TinyStories openings (js backend)");
const openings = readFileSync(join(repoRoot, "assets", "data", "tinystories", "prompts.txt"), "utf8").trim().split("\n");
// sft trains on the chosen answer only; the rejected one (the same words reversed) is there because the file is a
// preference file
writeFileSync(join(work, "sft.jsonl"), openings.map((line) => {
  const w = line.split(" ");
  return JSON.stringify({ prompt: w.slice(0, 2).join(" "), chosen: " " + w.slice(2).join(" "), rejected: " " + w.slice(2).reverse().join(" ") });
}).join("\n") + "\n");
exportGguf(wideModel({ L: 2, FF: 256, NKV: 2 }), join(work, "wide-init-F32.gguf"), { dtype: "F32" });
const sftConfig = {
  model: join(work, "wide-init-F32.gguf"), data: join(work, "sft.jsonl"), loss_type: "sft", learning_rate: 3e-3,
  lr_scheduler_type: "linear", per_device_train_batch_size: 8, max_steps: 150, max_length: 48, max_prompt_length: 16,
  seed: 42, save_minutes: 0, backend: "js",
};
writeFileSync(join(work, "sft.json"), JSON.stringify(sftConfig, null, 2));
const sftRun = join(work, "sft");
tsdpo("sft-train", ["train", join(work, "sft.json"), "--output_dir", sftRun]);
tsdpo("sft-export", ["export", sftRun, "--format", "gguf", "--dtype", "f32", "--out", join(work, "wide-sft-F32.gguf")]);
quantize(join(work, "wide-sft-F32.gguf"), ROUNDTRIP_BASE, "Q4_K_M");

console.log("LoRA DPO on the llama.cpp-made Q4_K_M file, then export --dtype q4_k_m");
writeFileSync(join(work, "lora.json"), JSON.stringify(ROUNDTRIP_LORA_CONFIG, null, 2));
const loraRun = join(work, "lora");
tsdpo("lora-train", ["train", join(work, "lora.json"), "--output_dir", loraRun]);
const exported = join(work, "lora-Q4_K_M.gguf");
tsdpo("lora-export", ["export", loraRun, "--format", "gguf", "--dtype", "q4_k_m", "--out", exported]);

// ---- llama.cpp on the three files ----
const { llama, logLines } = await openLlama();

/** float32 rows as one base64 string (4 bytes a value, little-endian). */
const b64 = (rows) => Buffer.from(Float32Array.from(rows.flat()).buffer).toString("base64");

/**
 * llama.cpp on `path` for each prompt: BOS + the prompt in one batch, then one token per decode with the KV cache (as
 * tsdpo's generate does), for GREEDY steps. Each step takes the argmax, or with `follow` the given run's next id.
 * Returns per prompt the ids, each step's top-2 margin (top logit minus runner-up) and logits (row k chose ids[k]).
 * Twice, in fresh contexts; the two passes must be bit-identical.
 */
async function evaluate(path, prompts, follow = null) {
  const model = await llama.loadModel({ modelPath: path, ...MODEL_OPTIONS });
  const V = model.fileInfo.metadata.tokenizer.ggml.tokens.length;
  const passes = [];
  for (let pass = 0; pass < 2; pass++) {
    const ctx = await model.createContext(float32ContextOptions(128));
    const seq = ctx.getSequence();
    const runs = [];
    for (const [i, text] of prompts.entries()) {
      await seq.clearHistory();
      const promptIds = [model.tokens.bos, ...model.tokenize(text)];
      const ids = [], margins = [], rows = [];
      let res = (await seq.controlledEvaluate(promptIds.map((id, j) => (j === promptIds.length - 1 ? [id, { generateNext: { logits: true } }] : id)))).at(-1);
      for (let k = 0; k < GREEDY; k++) {
        const row = denseLogits(res.next.logits, V, fail).map(f32);
        const top = argmax(row);
        const second = Math.max(...row.filter((_, j) => j !== top));
        const next = follow ? follow[i].ids[k] : top;
        ids.push(next);
        margins.push(f32(Math.fround(row[top] - second)));
        rows.push(row);
        if (k + 1 < GREEDY) [res] = await seq.controlledEvaluate([[next, { generateNext: { logits: true } }]]);
      }
      runs.push({ text, prompt_ids: promptIds, ids, margins, text_out: model.detokenize(ids), rows });
    }
    await ctx.dispose();
    passes.push(runs);
  }
  await model.dispose();
  if (JSON.stringify(passes[0]) !== JSON.stringify(passes[1])) fail(`${path}: llama.cpp's two passes differ`);
  return passes[0];
}

/**
 * llama.cpp's greedy runs on the quantised file `path`, and on llama.cpp's own float32 dequantisation of it (every
 * tensor through ggml's to_float): there llama.cpp computes in float32 throughout, as tsdpo does on the blocks, while
 * on the quantised file it also rounds the activations to 8 bits for its quantised dot products.
 */
async function runsOn(path, prompts) {
  const deq = join(work, basename(path, ".gguf") + "-dequantized-F32.gguf");
  quantize(path, deq, "F32");
  if (Object.keys(typeCounts(deq)).join() !== "F32") fail(`${deq}: not all float32 (${JSON.stringify(typeCounts(deq))})`);
  const quantised = await evaluate(path, prompts);
  const greedyF32 = await evaluate(deq, prompts);
  const alongF32 = await evaluate(deq, prompts, quantised);
  return quantised.map((q, i) => ({
    text: q.text, prompt_ids: q.prompt_ids, ids: q.ids, margins: q.margins, text_out: q.text_out, logits_f32_base64: b64(q.rows),
    dequantized: { ids: greedyF32[i].ids, margins: greedyF32[i].margins, logits_along_ids_f32_base64: b64(alongF32[i].rows) },
  }));
}

const provenance = {
  node_llama_cpp: JSON.parse(readFileSync(join(here, "node_modules", "node-llama-cpp", "package.json"), "utf8")).version,
  llama_cpp_release: llama.llamaCppRelease.release,
  cpu_backend: logLines.find((l) => l.includes("loaded CPU backend from"))?.replace(/^.*\//, "") ?? null,
  quantizer: "llama_model_quantize (tools/llama-ref/quantize.c, one thread, no importance matrix)",
};

const hh = {
  generator: "tools/llama-ref/gen-roundtrip.mjs",
  about:
    "llama.cpp on hh-stories260K-Q8_0.gguf (stories260K trained by tsdpo with configs/default.json on the js backend, " +
    "exported as F32 GGUF, made Q8_0 by llama_model_quantize). greedy[i]: BOS + text as prompt_ids, then 32 greedy " +
    "ids one decode at a time; margins[k] and logits row k belong to the step that chose ids[k]. dequantized: the " +
    "same on llama.cpp's own all-F32 dequantisation of the file (ggml's to_float): its greedy ids and margins, and " +
    "its logits along ids (the quantised file's path).",
  ...provenance,
  file: rel(HH_FILE),
  sha256: sha256(HH_FILE),
  tensor_types: typeCounts(HH_FILE),
  training: { config: "configs/default.json", backend: "js", steps: lastMetrics(hhRun).step },
  greedy: await runsOn(HH_FILE, HH_PROMPTS),
};

const lora = {
  generator: "tools/llama-ref/gen-roundtrip.mjs",
  about:
    "LoRA DPO (ROUNDTRIP_LORA_CONFIG in test/quant-models.ts, js backend) on wide-sft-Q4_K_M.gguf (made by " +
    "llama_model_quantize), exported by `tsdpo export --format gguf --dtype q4_k_m`; export.sha256 is that file's " +
    "sha256, and greedy is llama.cpp's on it (as in roundtrip-hh-llamacpp.json, with dequantized). base_greedy: llama.cpp's greedy ids " +
    "on the base file, for comparison.",
  ...provenance,
  base: {
    file: rel(ROUNDTRIP_BASE), sha256: sha256(ROUNDTRIP_BASE), tensor_types: typeCounts(ROUNDTRIP_BASE),
    sft: { ...sftConfig, model: "wideModel({L: 2, FF: 256, NKV: 2}) exported as F32", data: "assets/data/tinystories/prompts.txt: the first two words as prompt, the rest as chosen" },
    sft_loss: { first: firstMetrics(sftRun).loss, last: lastMetrics(sftRun).loss },
  },
  training: {
    first_loss: firstMetrics(loraRun).loss, last_loss: lastMetrics(loraRun).loss,
    last_rewards_margins: lastMetrics(loraRun)["rewards/margins"],
  },
  export: {
    sha256: sha256(exported), bytes: readFileSync(exported).length,
    tensors: tensorDigests(exported).map((t) => ({ name: t.name, type: t.type })),
  },
  greedy: await runsOn(exported, LORA_PROMPTS),
  base_greedy: (await evaluate(ROUNDTRIP_BASE, LORA_PROMPTS)).map((g) => ({ text: g.text, ids: g.ids, margins: g.margins })),
};

for (const [name, json] of [["roundtrip-hh-llamacpp.json", hh], ["roundtrip-lora-llamacpp.json", lora]]) {
  const out = join(quantDir, name);
  writeFileSync(out, toJson(json) + "\n");
  const back = JSON.parse(readFileSync(out, "utf8"));
  if (JSON.stringify(back) !== JSON.stringify(json)) fail(`${out} does not read back as written`);
}
const minMargin = (g) => Math.min(...g.flatMap((x) => x.margins)).toFixed(3);
console.log(`wrote ${rel(HH_FILE)} (${readFileSync(HH_FILE).length} bytes), ${rel(ROUNDTRIP_BASE)} (${readFileSync(ROUNDTRIP_BASE).length} bytes), ` +
  `roundtrip-hh-llamacpp.json and roundtrip-lora-llamacpp.json; smallest top-2 margin: hh ${minMargin(hh.greedy)}, lora ${minMargin(lora.greedy)}; ` +
  `LoRA loss ${lora.training.first_loss} -> ${lora.training.last_loss}; export sha256 ${lora.export.sha256}`);
for (const g of [...hh.greedy, ...lora.greedy]) console.log(`  ${JSON.stringify(g.text)} -> ${JSON.stringify(g.text_out)}\n    margins ${g.margins.join(" ")}`);
rmSync(work, { recursive: true, force: true });
