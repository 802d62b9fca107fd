// GGUF export (src/export/gguf.ts), checked against independent answers:
// - stories260K -> GGUF reproduces every tensor of the llama2.c-derived original byte for byte (names, dims,
//   interleaved Q/K rows) and every metadata key with its type, and tsdpo's loader gives back the same model;
// - the llama.cpp logits fixture still matches after GGUF and after HF -> GGUF round trips;
// - llama.cpp's own results on exported files (committed by tools/llama-ref/check-export.mjs, tied to the exact
//   bytes by sha256): a DPO-perturbed stories260K, the same weights with Llama-3 RoPE (rope_freqs tensor), and tiny
//   SmolLM3 (NoPE layers), Granite (multipliers), OLMo 2 (post-norms) and Phi-3 (fused attn_qkv and ffn_up) models,
//   all to 1e-4 with llama.cpp's greedy ids (families-export.test.ts and fused-gguf-export.test.ts check what they
//   exercise); the fixture's Gemma 2 / Gemma 3 check models are compared in gemma-export.test.ts, its GPT-2 in
//   fused-gguf-export.test.ts (both allow for llama.cpp's fp16 GELU);
// - when node-llama-cpp is installed under tools/llama-ref, the same live: llama.cpp loads the export, its logits
//   equal tsdpo's to 1e-4 and it generates tsdpo's greedy text.

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { TsdpoError } from "../src/errors.js";
import { exportGguf, ropeFreqFactors } from "../src/export/gguf.js";
import { exportHf } from "../src/export/hf.js";
import { GgmlType, readGguf, readGgufTensor, tensorByteSize } from "../src/io/gguf.js";
import { readGgufMetadataTyped } from "../src/io/ggufwriter.js";
import { loadModel, type LoadedModel } from "../src/io/load.js";
import { llama3ScalingFromFactors } from "../src/io/ggufconfig.js";
import { ropeTables } from "../src/model/rope.js";
import type { LlamaConfig } from "../src/model/config.js";
import { createActivations, createModel, forward, logitsOf as modelLogits, type Model } from "../src/model/decoder.js";
import { createLora } from "../src/model/lora.js";
import { generate } from "../src/sample/generate.js";
import { loadHfTokenizer } from "../src/tokenizer/hf.js";
import { CHECK_FIXTURE, CHECK_TEXT, checkModels, GREEDY_TOKENS, perturbedStories } from "./gguf-export-models.js";
import { fixture, maxAbsDiff, repoRoot, rng, storiesGguf, testBackend } from "./helpers.js";
import { floatWeight } from "../src/model/weights.js";

const be = testBackend();

const tmp = mkdtempSync(join(tmpdir(), "tsdpo-gguf-export-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

interface StoriesFixture {
  texts: { text: string; ids: number[]; logits: number[][] }[];
}
const storiesRef = JSON.parse(readFileSync(fixture("stories260k-llamacpp.json"), "utf8")) as StoriesFixture;

function logitsOf(model: Model, ids: readonly number[]): Float32Array | Float64Array {
  const T = ids.length;
  const acts = createActivations(model, 1, T);
  forward(be, model, acts, Int32Array.from(ids), Int32Array.from([...ids.slice(1), 0]), 1, T);
  return modelLogits(be, model, acts).slice(0, T * model.cfg.V);
}

function checkStoriesLogits(loaded: LoadedModel, label: string): void {
  for (const { text, ids, logits } of storiesRef.texts) {
    assert.deepEqual([loaded.tokenizer.bosId!, ...loaded.tokenizer.encode(text)], ids, `${label}: ids of ${text}`);
    const diff = maxAbsDiff(logitsOf(loaded.model, ids), logits.flat());
    assert.ok(diff <= 1e-4, `${label}: "${text.slice(0, 30)}…" max |logit diff| ${diff} > 1e-4`);
  }
}

const sha256 = (path: string): string => createHash("sha256").update(readFileSync(path)).digest("hex");
const bytesOf = (path: string, name: string): Buffer => {
  const f = readGguf(path);
  const t = f.tensors.get(name)!;
  return f.buffer.subarray(f.dataOffset + t.offset, f.dataOffset + t.offset + tensorByteSize(t));
};

test("stories260K -> GGUF: every tensor and metadata key of the original, the same model loaded back, llama.cpp's logits", () => {
  const src = loadModel(storiesGguf);
  const path = join(tmp, "stories.gguf");
  const r = exportGguf(src, path);
  assert.deepEqual(r.notes, []);
  const orig = readGguf(storiesGguf);
  const out = readGguf(path);
  assert.equal(out.version, 3);
  // llama2.c wrote this file with interleaved Q/K rows: the export must permute back to exactly those bytes
  assert.deepEqual([...out.tensors.keys()].sort(), [...orig.tensors.keys()].sort());
  for (const t of orig.tensors.values()) {
    assert.deepEqual(out.tensors.get(t.name)!.dims, t.dims, t.name);
    assert.equal(out.tensors.get(t.name)!.type, GgmlType.F32);
    assert.ok(bytesOf(path, t.name).equals(bytesOf(storiesGguf, t.name)), `${t.name}: bytes differ from the original`);
  }
  // every key of the original with its type and value (the tokenizer is copied; hyperparameters are rebuilt)
  const written = new Map(readGgufMetadataTyped(path));
  for (const [k, v] of readGgufMetadataTyped(storiesGguf)) assert.deepEqual(written.get(k), v, k);
  assert.deepEqual(written.get("general.alignment"), { type: "u32", value: 32 });
  assert.deepEqual(written.get("general.file_type"), { type: "u32", value: 0 });
  assert.deepEqual(written.get("llama.rope.freq_base"), { type: "f32", value: 10000 });
  assert.equal(written.get("llama.attention.key_length"), undefined); // HS = C/NH

  const back = loadModel(path);
  assert.deepEqual(back.model.cfg, src.model.cfg);
  assert.ok(back.model.params.every((x, i) => x === src.model.params[i]), "parameters differ");
  checkStoriesLogits(back, "GGUF export");
});

test("HF-sourced: stories260K -> HF folder -> GGUF loads back as the same model, tokenizer ids and llama.cpp logits", () => {
  const src = loadModel(storiesGguf);
  const hfDir = join(tmp, "stories-hf");
  exportHf(src, hfDir);
  const hf = loadModel(hfDir);
  assert.equal(hf.format, "hf");
  const path = join(tmp, "stories-from-hf.gguf");
  exportGguf(hf, path);
  const back = loadModel(path);
  assert.deepEqual(back.model.cfg, src.model.cfg);
  assert.ok(back.model.params.every((x, i) => x === src.model.params[i]), "parameters differ");
  const orig = readGguf(storiesGguf);
  const out = readGguf(path);
  for (const k of ["tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id"])
    assert.deepEqual(out.metadata.get(k), orig.metadata.get(k), k);
  assert.equal(out.metadata.get("general.name"), "stories-hf");
  checkStoriesLogits(back, "HF -> GGUF export");
  // the texts of the golden tables and some with byte fallback tokenise as the original vocabulary does
  for (const text of ["Zyx 🦙 naïve — ok", "  two  spaces\n\nand </s> <s> text", "Lily's dog's ball"])
    assert.deepEqual(back.tokenizer.encode(text), src.tokenizer.encode(text), text);
});

test("F16 export: matrices in F16 within half-precision rounding, 1-D tensors exact in F32, file_type 1", () => {
  const src = loadModel(storiesGguf);
  const path = join(tmp, "stories-f16.gguf");
  const r = exportGguf(src, path, { dtype: "F16" });
  const f = readGguf(path);
  assert.equal(f.metadata.get("general.file_type"), 1);
  assert.equal(f.tensors.get("blk.0.attn_q.weight")!.type, GgmlType.F16);
  assert.equal(f.tensors.get("token_embd.weight")!.type, GgmlType.F16);
  assert.equal(f.tensors.get("blk.0.attn_norm.weight")!.type, GgmlType.F32);
  assert.ok(r.bytes < readFileSync(storiesGguf).length * 0.6);
  const back = loadModel(path, Float32Array, { halvesAsFloat: true }); // the values as float32 (frozen use keeps halves)
  assert.deepEqual(back.model.cfg, src.model.cfg);
  let changed = 0;
  for (const e of src.model.entries) {
    const a = src.model.params.subarray(e.offset, e.offset + e.size);
    const b = back.model.params.subarray(e.offset, e.offset + e.size);
    for (let i = 0; i < a.length; i++) {
      if (e.shape.length === 1) assert.equal(b[i], a[i], `${e.name}[${i}]`);
      // round to nearest: at most half a unit in the last place, 2^-11 relative (and 2^-25 absolute for subnormals)
      else assert.ok(Math.abs(b[i]! - a[i]!) <= Math.abs(a[i]!) * 2 ** -11 + 2 ** -25, `${e.name}[${i}]: ${b[i]} vs ${a[i]}`);
      if (b[i] !== a[i]) changed++;
    }
  }
  assert.ok(changed > 0.9 * (src.model.params.length - 5 * 64 * 2 - 64), `only ${changed} values changed: was it F16 at all?`);
});

/** A small model of another family, with deterministic weights and the stories260K tokenizer (V = 512). */
function familyModel(cfg: Partial<LlamaConfig>, hfDir: string): LoadedModel {
  const full: LlamaConfig = {
    family: "llama", V: 512, C: 24, L: 2, NH: 4, NKV: 2, HS: 6, FF: 40, ropeTheta: 10000, ropeScaling: { type: "none" },
    rmsEps: 1e-6, tiedEmbeddings: false, qkvBias: false, qkNorm: false, maxSeqLen: 128, slidingWindow: null, ...cfg,
  };
  const model = createModel(full);
  const r = rng(7);
  for (let i = 0; i < model.params.length; i++) model.params[i] = (r() - 0.5) * 0.5;
  return { model, tokenizer: loadHfTokenizer(hfDir), path: hfDir, format: "hf", hfConfig: null };
}

test("qwen2, qwen3, mistral and llama with biases: architectures, keys and an exact round trip", () => {
  const hfDir = join(tmp, "fam-hf");
  exportHf(loadModel(storiesGguf), hfDir);
  const cases: [string, Partial<LlamaConfig>, string][] = [
    ["qwen2", { family: "qwen2", qkvBias: true, tiedEmbeddings: true, ropeTheta: 1e6 }, "qwen2"],
    // Qwen3: head size 8 although C/NH = 6, so key_length/value_length must be written
    ["qwen3", { family: "qwen3", qkNorm: true, HS: 8, ropeTheta: 1e6, rmsEps: 1e-6 }, "qwen3"],
    ["mistral", { family: "mistral", slidingWindow: 64, ropeScaling: { type: "linear", factor: 2 } }, "llama"],
    ["llama-bias", { family: "llama", qkvBias: true }, "llama"],
  ];
  for (const [name, cfg, arch] of cases) {
    const loaded = familyModel(cfg, hfDir);
    const path = join(tmp, `${name}.gguf`);
    const r = exportGguf(loaded, path);
    const meta = new Map(readGgufMetadataTyped(path));
    assert.deepEqual(meta.get("general.architecture"), { type: "string", value: arch }, name);
    const c = loaded.model.cfg;
    const headKeys = c.C / c.NH !== c.HS;
    assert.deepEqual(meta.get(`${arch}.attention.key_length`), headKeys ? { type: "u32", value: c.HS } : undefined, name);
    assert.deepEqual(meta.get(`${arch}.rope.dimension_count`), { type: "u32", value: c.HS }, name);
    const f = readGguf(path);
    assert.equal(f.tensors.has("output.weight"), !c.tiedEmbeddings, `${name}: output.weight`);
    // qwen GGUFs keep HF's rotate-half rows; llama/mistral ones are interleaved (checked on stories260K above)
    const q = readGgufTensor(f, "blk.1.attn_q.weight");
    const wq = floatWeight(loaded.model.p.layers[1]!.wq);
    assert.equal(q.every((x, i) => x === wq[i]), arch !== "llama", `${name}: attn_q row order`);
    const back = loadModel(path);
    const want: LlamaConfig = { ...c, family: arch === "llama" ? "llama" : c.family, slidingWindow: null, rmsEps: Math.fround(c.rmsEps) };
    assert.deepEqual(back.model.cfg, want, name);
    assert.ok(back.model.params.every((x, i) => x === loaded.model.params[i]), `${name}: parameters differ`);
    if (name === "mistral") {
      assert.deepEqual(meta.get("llama.rope.scaling.type"), { type: "string", value: "linear" });
      assert.match(r.notes.join("\n"), /sliding window \(64 tokens\) is not in the GGUF/);
    }
  }
});

test("Llama-3 RoPE scaling becomes llama.cpp's rope_freqs tensor: 1 for short wavelengths, factor for long, interpolated between", () => {
  const cfg = { HS: 8, ropeTheta: 10000, ropeScaling: { type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 1024 } } as const;
  // wavelengths 2π·10000^(2i/8): 6.28 and 62.8 are below 1024/4 (kept), 6283 above 1024/1 (divided by 8); 628.3 is
  // in between, where HF interpolates with smooth = (1024/628.3 − 1)/(4 − 1) and the divisor is 1/((1−s)/8 + s)
  const smooth = (1024 / (2 * Math.PI * 100) - 1) / 3;
  const want = [1, 1, 1 / ((1 - smooth) / 8 + smooth), 8];
  const got = ropeFreqFactors(cfg);
  for (let i = 0; i < 4; i++) assert.ok(Math.abs(got[i]! - want[i]!) <= 1e-6 * want[i]!, `factor ${i}: ${got[i]} vs ${want[i]}`);
  const loaded = checkModels()[1]!.loaded;
  const path = join(tmp, "llama3.gguf");
  exportGguf(loaded, path);
  const f = readGguf(path);
  assert.deepEqual(f.tensors.get("rope_freqs.weight")!.dims, [4]);
  assert.deepEqual(readGgufTensor(f, "rope_freqs.weight"), got);
  assert.equal(f.metadata.get("llama.rope.scaling.type"), undefined);
  // and the loader reads the scaling back from the tensor: the same config, so the same RoPE tables as the HF folder's
  const back = loadModel(path).model.cfg;
  assert.deepEqual(back.ropeScaling, loaded.model.cfg.ropeScaling);
  assert.deepEqual(ropeTables(back, 64, Float64Array), ropeTables(loaded.model.cfg, 64, Float64Array));
});

test("Llama 3.2's rope_freqs as llama.cpp's converter computes it (float32 frequencies) reads back as its llama3 scaling", () => {
  // convert_hf_to_gguf.py: freqs = 1 / base^(arange(0, dim, 2, float32) / dim) in float32, then per frequency 1, factor,
  // or 1/((1 − s)/factor + s), stored as F32. Llama-3.2-1B/3B: head 64/128, θ 500000, factor 32, low 1, high 4, 8192.
  for (const HS of [64, 128]) {
    const theta = 500000, factor = 32, low = 1, high = 4, orig = 8192;
    const f32 = Math.fround;
    const factors = Float32Array.from({ length: HS / 2 }, (_, i) => {
      const freq = f32(1 / f32(theta ** f32(f32(2 * i) / HS)));
      const wavelen = (2 * Math.PI) / freq;
      if (wavelen < orig / high) return 1;
      if (wavelen > orig / low) return factor;
      const smooth = (orig / wavelen - low) / (high - low);
      return 1 / ((1 - smooth) / factor + smooth);
    });
    assert.deepEqual(llama3ScalingFromFactors(factors, HS, theta), {
      type: "llama3", factor, lowFreqFactor: low, highFreqFactor: high, originalMaxPositionEmbeddings: orig,
    });
    // other divisors (here: one band value moved by 1%) are not Llama 3's, and stay refused
    const i = factors.findIndex((x) => x > 1 && x < factor);
    factors[i] = factors[i]! * 1.01;
    assert.equal(llama3ScalingFromFactors(factors, HS, theta), null);
  }
});

interface CheckFixture {
  checks: { name: string; sha256: string; ids: number[]; greedy: number[]; logits: number[][] }[];
}
const llamaCpp = JSON.parse(readFileSync(CHECK_FIXTURE, "utf8")) as CheckFixture;

test("llama.cpp's committed logits and greedy ids for exported DPO-perturbed models match tsdpo (sha256-tied files)", (t) => {
  const original = loadModel(storiesGguf);
  const logits = new Map<string, Float32Array | Float64Array>();
  // Gemma's check models are compared in gemma-export.test.ts and GPT-2's in fused-gguf-export.test.ts, which
  // account for llama.cpp's fp16 GELU
  for (const { name, loaded } of checkModels().filter((c) => c.loaded.model.cfg.activation !== "gelu_tanh")) {
    const ref = llamaCpp.checks.find((c) => c.name === name);
    assert.ok(ref, `no llama.cpp numbers for ${name}; run tools/llama-ref/check-export.mjs`);
    const path = join(tmp, `${name}.gguf`);
    exportGguf(loaded, path);
    assert.equal(sha256(path), ref.sha256, `${name}: the exported bytes changed since llama.cpp's numbers were recorded; rerun tools/llama-ref/check-export.mjs`);
    const tsdpo = loadModel(path); // the GGUF read back (the llama3 one through its rope_freqs tensor)
    const tok = tsdpo.tokenizer;
    assert.deepEqual([tok.bosId!, ...tok.encode(CHECK_TEXT)], ref.ids, `${name}: token ids`);
    const mine = logitsOf(tsdpo.model, ref.ids);
    const diff = maxAbsDiff(mine, ref.logits.flat());
    t.diagnostic(`${name}: max |tsdpo − llama.cpp| ${diff.toExponential(2)} (${be.name})`);
    assert.ok(diff <= 1e-4, `${name}: max |tsdpo − llama.cpp| logit ${diff} > 1e-4`);
    logits.set(name, mine);
    const eos = tok.eosId!;
    const out = generate(be, tsdpo.model, [tok.bosId!], [eos], { maxNewTokens: GREEDY_TOKENS, temperature: 0, topK: 0, topP: 1, seed: 0 });
    assert.deepEqual([tok.bosId!, ...out.ids], ref.greedy, `${name}: greedy ids`);
  }
  // the checks have teeth: the perturbed model is not the shipped one, and the rope_freqs tensor changes the output
  const [plain, scaled] = [...logits.values()];
  assert.ok(maxAbsDiff(plain!, logitsOf(original.model, llamaCpp.checks[0]!.ids)) > 0.1, "perturbation too small");
  const V = 512;
  assert.ok(maxAbsDiff(plain!.subarray(0, V), scaled!.subarray(0, V)) < 1e-5, "position 0 has no rotation");
  assert.ok(maxAbsDiff(plain!, scaled!) > 0.05, "Llama-3 scaling made no difference");
});

test("a model with LoRA adapters on is exported merged: the GGUF computes what base + adapters computed", () => {
  const loaded = loadModel(storiesGguf);
  const lora = createLora(loaded.model, { r: 2, alpha: 4, dropout: 0, targets: ["wq", "wv", "w_down"] }, 3);
  const r = rng(11);
  for (const a of lora.adapters) for (let i = 0; i < a.B.length; i++) a.B[i] = (r() - 0.5) * 0.2;
  loaded.model.lora = lora;
  const ids = storiesRef.texts[0]!.ids;
  const withAdapters = logitsOf(loaded.model, ids);
  const path = join(tmp, "lora.gguf");
  exportGguf(loaded, path);
  const back = loadModel(path);
  assert.equal(back.model.lora, null);
  const merged = logitsOf(back.model, ids);
  assert.ok(maxAbsDiff(merged, withAdapters) < 1e-4, `merged export differs by ${maxAbsDiff(merged, withAdapters)}`);
  loaded.model.lora.enabled = false;
  assert.ok(maxAbsDiff(logitsOf(loaded.model, ids), withAdapters) > 1e-3, "the adapters changed nothing");
});

test("non-finite weights and values beyond F16's range are refused, and nothing is written", () => {
  const loaded = loadModel(storiesGguf);
  floatWeight(loaded.model.p.layers[2]!.wv)[5] = 70000;
  const f16 = join(tmp, "overflow.gguf");
  assert.throws(
    () => exportGguf(loaded, f16, { dtype: "F16" }),
    (e: unknown) => e instanceof TsdpoError && e.kind === "unsupported" && /blk\.2\.attn_v\.weight holds 70000 at index 5, beyond F16's range .* --dtype f32/.test(e.message),
  );
  assert.equal(existsSync(f16), false);
  exportGguf(loaded, f16, { dtype: "F32" }); // fine in F32
  loaded.model.p.outNorm[3] = NaN;
  const nan = join(tmp, "nan.gguf");
  assert.throws(() => exportGguf(loaded, nan), /output_norm\.weight holds NaN at index 3; a model with non-finite weights cannot be exported/);
  assert.equal(existsSync(nan), false);
});

test("tsdpo export --format gguf writes a loadable file; --dtype f16 halves it; bf16 is refused", () => {
  const cli = join(repoRoot, "dist", "src", "cli", "main.js");
  const run = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: "utf8", timeout: 60_000 });
  const out = join(tmp, "cli.gguf");
  const a = run("export", storiesGguf, "--format", "gguf", "--out", out);
  assert.equal(a.status, 0, a.stderr);
  assert.match(a.stdout, /wrote .*cli\.gguf: 48 tensors, 1185472 bytes/);
  const lib = join(tmp, "cli-ref.gguf");
  exportGguf(loadModel(storiesGguf), lib);
  assert.equal(sha256(out), sha256(lib), "the CLI wrote different bytes from exportGguf");
  const out16 = join(tmp, "cli16.gguf");
  const b = run("export", "--model", storiesGguf, "--format", "gguf", "--dtype", "f16", "--out", out16);
  assert.equal(b.status, 0, b.stderr);
  assert.equal(readGguf(out16).metadata.get("general.file_type"), 1);
  const c = run("export", storiesGguf, "--format", "gguf", "--dtype", "bf16", "--out", join(tmp, "x.gguf"));
  assert.equal(c.status, 2);
  assert.match(c.stderr, /--dtype bf16 is not supported; use f32 or f16/);
});

// ---------------------------------------------------------------------------------------------------------------
// Live llama.cpp (opt-in: needs `npm install` in tools/llama-ref, see its README)

const nlcEntry = join(repoRoot, "tools", "llama-ref", "node_modules", "node-llama-cpp", "dist", "index.js");
const live = existsSync(nlcEntry);

test(
  "llama.cpp (node-llama-cpp) loads the exported GGUF: logits equal tsdpo's to 1e-4 and it generates tsdpo's greedy text",
  { skip: live ? false : "node-llama-cpp is not installed under tools/llama-ref (cd tools/llama-ref && npm install --omit=optional)" },
  async () => {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const nlc: any = await import(pathToFileURL(nlcEntry).href);
    const llama = await nlc.getLlama({ gpu: false, build: "never", logLevel: nlc.LlamaLogLevel.error });
    try {
      const loaded = perturbedStories();
      const path = join(tmp, "live.gguf");
      exportGguf(loaded, path);
      const model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
      const context = await model.createContext({
        contextSize: 128, batchSize: 128, sequences: 1, flashAttention: false, threads: { ideal: 1, min: 1 },
        experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32",
      });
      const seq = context.getSequence();
      const V = loaded.model.cfg.V;
      for (const text of [CHECK_TEXT, ...storiesRef.texts.map((t) => t.text)]) {
        const ids: number[] = [model.tokens.bos, ...model.tokenize(text)];
        assert.deepEqual(ids, [loaded.tokenizer.bosId!, ...loaded.tokenizer.encode(text)], `ids of ${text}`);
        await seq.clearHistory();
        const res = await seq.controlledEvaluate(ids.map((id) => [id, { generateNext: { logits: true } }]));
        const theirs = new Float32Array(ids.length * V);
        res.forEach((r: { next: { logits: Map<number, number> } }, t: number) => {
          for (const [tok, x] of r.next.logits) theirs[t * V + tok] = x;
        });
        const diff = maxAbsDiff(logitsOf(loaded.model, ids), theirs);
        assert.ok(diff <= 1e-4, `"${text.slice(0, 30)}…": max |tsdpo − llama.cpp| ${diff}`);
      }
      await seq.clearHistory();
      const greedy = [model.tokens.bos];
      for (let i = 0; i < GREEDY_TOKENS; i++) {
        const [r] = await seq.controlledEvaluate([[greedy.at(-1), { generateNext: { token: true } }]]);
        greedy.push(r.next.token);
        if (r.next.token === model.tokens.eos) break;
      }
      const tok = loaded.tokenizer;
      const mine = generate(be, loaded.model, [tok.bosId!], [tok.eosId!], { maxNewTokens: GREEDY_TOKENS, temperature: 0, topK: 0, topP: 1, seed: 0 });
      assert.deepEqual(greedy, [tok.bosId!, ...mine.ids]);
      assert.equal(model.detokenize(greedy.slice(1)).trim(), tok.decode(mine.ids).trim());
      assert.ok(mine.ids.length >= 16);
      await context.dispose();
      await model.dispose();
    } finally {
      await llama.dispose();
    }
  },
);
