// GPT-2 and Phi-3 through tsdpo's GGUF exporter and loader, on the tiny random-weight check models of
// test/gguf-export-models.ts (fusedTiny), written as llama.cpp's gpt2 and phi3 architectures with their projections
// fused as its converter fuses them (io/gguflayout.ts: q, k and v in attn_qkv, GPT-2's bias too; Phi-3's gate and up
// in ffn_up):
// - llama.cpp parity, from the numbers tools/llama-ref/check-export.mjs committed for the exact exported bytes
//   (sha256): token ids, logits at every position, greedy ids. phi3-tiny to 1e-4 like the other SwiGLU families
//   (gguf-export.test.ts holds it there as well). gpt2-tiny's GELU runs in fp16 in llama.cpp, as Gemma's GeGLU does
//   (gemma-export.test.ts): the plain float32 forward is held to a tolerance from that effect, and with the fp16
//   GELU emulated (up to the rounding direction of a few gates on an fp16 boundary) to 1e-4. The ways the export
//   could go wrong (q/k/v order, gate/up order, RoPE layout, positions, biases) each move the logits far;
// - the file as llama.cpp's converter lays it out (tensor names, stacking order, dims, the architecture's keys), and
//   GGUF -> tsdpo -> GGUF: the same config, weights bit for bit, bit-identical logits, the same bytes on re-export;
//   a phi3 file with separate attn_q / attn_k / attn_v (which llama.cpp also reads) loads to the same model;
// - HF -> tsdpo -> HF -> GGUF: the same model all the way;
// - quantised exports (llama.cpp's type rules for attn_qkv and position_embd), Phi-3's sliding window (written,
//   disabled by llama.cpp, noted), and refusals of what llama.cpp's architectures cannot express;
// - when node-llama-cpp is installed under tools/llama-ref (opt-in), the same parity live, llama.cpp's own quantiser
//   rewriting the exports (files written by llama.cpp, read by tsdpo), and GPT-2's tokenizer in llama.cpp.

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { jsBackend } from "../src/backend/js/kernels.js";
import { TsdpoError } from "../src/errors.js";
import { exportGguf } from "../src/export/gguf.js";
import { exportHf } from "../src/export/hf.js";
import { quantTypeFor } from "../src/export/quanttypes.js";
import { GgmlType, readGguf, readGgufTensor } from "../src/io/gguf.js";
import { gv, readGgufMetadataTyped } from "../src/io/ggufwriter.js";
import { loadModel, type LoadedModel } from "../src/io/load.js";
import { hfToGgufQkRows } from "../src/io/names.js";
import type { LlamaConfig } from "../src/model/config.js";
import { createModel, type Model } from "../src/model/decoder.js";
import { quantisedCopy } from "../src/model/quantise.js";
import { GGML_TYPE_ID } from "../src/quant/ggml.js";
import { generate } from "../src/sample/generate.js";
import { tokenizerFromGguf } from "../src/tokenizer/gguf.js";
import {
  assertHfRoundTrip, CHECK_FIXTURE, CHECK_TEXT, checkIds, checkLogits, familyTiny, fitGeluRoundings, type FusedFamily, fusedTiny,
  ggmlGeluLogits, GREEDY_TOKENS, gpt2VocabModel, phi3PartialRopeTiny, rewriteGguf, vocabTexts,
} from "./gguf-export-models.js";
import { maxAbsDiff, repoRoot, testBackend } from "./helpers.js";

const be = testBackend();
const FAMILIES: readonly { name: string; family: FusedFamily; make: () => LoadedModel }[] = [
  { name: "gpt2-tiny", family: "gpt2", make: () => fusedTiny("gpt2") },
  { name: "phi3-tiny", family: "phi3", make: () => fusedTiny("phi3") },
  { name: "phi3-partial-rope-tiny", family: "phi3", make: phi3PartialRopeTiny },
];

/** phi3-tiny's plain logits, and gpt2-tiny's with llama.cpp's fp16 GELU emulated, against llama.cpp's. */
const LLAMACPP_TOLERANCE = 1e-4;
/**
 * gpt2-tiny's plain float32 logits against llama.cpp's: its CPU GELU rounds the input and the result to fp16
 * (ggml_vec_gelu_f32 under GGML_GELU_FP16, a table lookup), so tsdpo's float32 GELU differs by 2^-11 relative on
 * every MLP unit. Measured: |plain − fp16-emulated| 2.06e-3 on tsdpo itself, and 2.06e-3 from llama.cpp (haswell);
 * 3e-3 leaves room, far below what a broken export costs (≥ 0.1, see the teeth below).
 */
const GPT2_PLAIN_TOLERANCE = 3e-3;
/**
 * The fp16 emulation may flip the rounding of at most this many gates, each within this many float32 ulps of an
 * fp16 midpoint (gemma-export.test.ts explains why). gpt2-tiny has 768 GELU inputs per position (3 layers of 256),
 * six times gemmaTiny's, so more sit near a boundary: measured 8 flips within 15 ulps (two of them at one position,
 * which fitGeluRoundings takes as a pair), leaving 1.09e-5. The emulation runs on the js backend.
 */
const MAX_FLIPS = 12;
const MAX_FLIP_ULPS = 32;

const tmp = mkdtempSync(join(tmpdir(), "tsdpo-fused-gguf-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

const sha256 = (path: string): string => createHash("sha256").update(readFileSync(path)).digest("hex");
const logitsOf = checkLogits;
const ids = checkIds;

/** A parameter's values by tsdpo name (a view into the arena). */
function param(model: Model, name: string): Float32Array | Float64Array {
  const e = model.entries.find((x) => x.name === name);
  assert.ok(e, `no parameter ${name}`);
  return model.params.subarray(e.offset, e.offset + e.size);
}

/** `model`'s weights under a changed config (same layout), changed further by `edit`. */
function variant(model: Model, edit: (m: Model) => void, change: Partial<LlamaConfig> = {}): Model {
  const m = createModel({ ...model.cfg, ...change });
  m.params.set(model.params);
  edit(m);
  return m;
}

/** Swaps the values of two same-sized parameters in every layer. */
const swapEach = (a: string, b: string) => (m: Model): void => {
  for (let l = 0; l < m.cfg.L; l++) {
    const x = param(m, `layers.${l}.${a}`), y = param(m, `layers.${l}.${b}`);
    const keep = x.slice();
    x.set(y);
    y.set(keep);
  }
};

// ---------------------------------------------------------------------------------------------------------------
// llama.cpp parity (committed numbers)

interface CheckFixture {
  checks: { name: string; sha256: string; ids: number[]; greedy: number[]; logits: number[][] }[];
}
const llamaCpp = JSON.parse(readFileSync(CHECK_FIXTURE, "utf8")) as CheckFixture;

for (const { name, family, make } of FAMILIES) {
  test(`${name}: llama.cpp's committed logits and greedy ids on the exported GGUF (sha256-tied)${family === "gpt2" ? ", plain and with its fp16 GELU" : ""}; the checks have teeth`, (t) => {
    const ref = llamaCpp.checks.find((c) => c.name === name);
    assert.ok(ref, `no llama.cpp numbers for ${name}; run tools/llama-ref/check-export.mjs`);
    const src = make();
    const path = join(tmp, `${name}.gguf`);
    exportGguf(src, path);
    assert.equal(sha256(path), ref.sha256, `${name}: the exported bytes changed since llama.cpp's numbers were recorded; rerun tools/llama-ref/check-export.mjs`);
    const loaded = loadModel(path); // what llama.cpp ran: the file's weights
    assert.deepEqual(ids(loaded), ref.ids, "token ids of CHECK_TEXT");
    const theirs = ref.logits.flat();
    const plain = maxAbsDiff(logitsOf(loaded.model, ref.ids), theirs);
    if (family === "phi3") {
      t.diagnostic(`max |tsdpo − llama.cpp| ${plain.toExponential(3)} (${be.name})`);
      assert.ok(plain <= LLAMACPP_TOLERANCE, `max |tsdpo − llama.cpp| ${plain}`);
    } else {
      const emulated = ggmlGeluLogits(jsBackend, loaded.model, ref.ids).logits;
      const fp16Effect = maxAbsDiff(logitsOf(loaded.model, ref.ids), emulated);
      const fit = fitGeluRoundings(jsBackend, loaded.model, ref.ids, theirs, { maxUlps: MAX_FLIP_ULPS, maxFlips: MAX_FLIPS });
      const fitted = Math.max(...fit.perPosition);
      t.diagnostic(
        `max |tsdpo − llama.cpp| plain (${be.name}) ${plain.toExponential(3)}, fp16 GELU emulated (js) ${maxAbsDiff(emulated, theirs).toExponential(3)}, ` +
          `with ${fit.flips.length} boundary gates flipped ${fitted.toExponential(3)} ` +
          `(${fit.flips.map((f) => `layer ${f.layer} t ${f.t} unit ${f.j}: ${f.ulps} ulps`).join("; ")}); fp16 effect on tsdpo ${fp16Effect.toExponential(3)}`,
      );
      assert.ok(plain <= GPT2_PLAIN_TOLERANCE, `plain float32 forward: max |tsdpo − llama.cpp| ${plain} > ${GPT2_PLAIN_TOLERANCE}`);
      assert.ok(fp16Effect > 5e-4, `the fp16 GELU emulation changed tsdpo's logits by only ${fp16Effect}: is the MLP in GELU's curved range?`);
      assert.ok(fitted <= LLAMACPP_TOLERANCE, `with llama.cpp's fp16 GELU: max |tsdpo − llama.cpp| ${fitted} after flipping ${fit.flips.length} boundary gates (per position ${fit.perPosition.map((x) => x.toExponential(1)).join(" ")})`);
    }

    // greedy: tsdpo's generate gives llama.cpp's ids, each step's choice clear of the deviations
    const tok = loaded.tokenizer;
    const out = generate(be, loaded.model, [tok.bosId!], [tok.eosId!], { maxNewTokens: GREEDY_TOKENS, temperature: 0, topK: 0, topP: 1, seed: 0 });
    assert.deepEqual([tok.bosId!, ...out.ids], ref.greedy, "greedy ids");
    const V = loaded.model.cfg.V;
    const steps = logitsOf(loaded.model, ref.greedy);
    let margin = Infinity;
    for (let s = 0; s + 1 < ref.greedy.length; s++) {
      const row = Array.from(steps.subarray(s * V, (s + 1) * V));
      const order = row.map((_, v) => v).sort((a, b) => row[b]! - row[a]!);
      margin = Math.min(margin, row[order[0]!]! - row[order[1]!]!);
    }
    let spread = 0;
    for (const x of theirs) spread = Math.max(spread, Math.abs(x));
    t.diagnostic(`greedy: ${ref.greedy.length - 1} tokens, ${new Set(ref.greedy.slice(1)).size} distinct, smallest top-2 margin ${margin.toFixed(4)}; logits up to ±${spread.toFixed(2)}`);
    assert.equal(ref.greedy.length - 1, GREEDY_TOKENS, "greedy decoding stopped early");
    // measured: 0.0628 (gpt2-tiny), 0.0428 (phi3-tiny), 0.0282 (phi3-partial-rope-tiny)
    assert.ok(margin > 10 * (family === "gpt2" ? GPT2_PLAIN_TOLERANCE : LLAMACPP_TOLERANCE), `greedy top-2 margin ${margin} is too close to the deviations`);
    assert.ok(spread > 2 && spread < 10, `logits up to ±${spread}: not O(1)`);

    // each way of writing the model wrong moves the logits far from llama.cpp's
    const cfg = loaded.model.cfg;
    const wrong: [string, Model][] = [["k and v exchanged in attn_qkv", variant(loaded.model, swapEach("wk", "wv"))]];
    if (family === "phi3") {
      wrong.push(["gate and up exchanged in ffn_up", variant(loaded.model, swapEach("w_gate", "w_up"))]);
      if (cfg.ropeDim !== undefined) wrong.push(["RoPE over the whole head", variant(loaded.model, () => {}, { ropeDim: undefined })]);
      wrong.push(["Q/K rows in llama's interleaved RoPE layout", variant(loaded.model, (m) => {
        for (let l = 0; l < cfg.L; l++)
          for (const [w, heads] of [["wq", cfg.NH], ["wk", cfg.NKV]] as const) {
            const data = param(m, `layers.${l}.${w}`);
            data.set(hfToGgufQkRows(Float32Array.from(data), heads, cfg.HS, cfg.C));
          }
      })]);
    } else {
      wrong.push(["q and k exchanged in attn_qkv", variant(loaded.model, swapEach("wq", "wk"))]);
      wrong.push(["qkv biases exchanged (k and v)", variant(loaded.model, swapEach("bk", "bv"))]);
      wrong.push(["no position embeddings", variant(loaded.model, (m) => param(m, "pos_embd").fill(0))]);
      wrong.push(["no LayerNorm biases", variant(loaded.model, (m) => {
        for (let l = 0; l < cfg.L; l++) for (const n of ["attn_norm_b", "ffn_norm_b"]) param(m, `layers.${l}.${n}`).fill(0);
        param(m, "out_norm_b").fill(0);
      })]);
      wrong.push(["no ffn_up / ffn_down biases", variant(loaded.model, (m) => {
        for (let l = 0; l < cfg.L; l++) for (const n of ["b_up", "b_down"]) param(m, `layers.${l}.${n}`).fill(0);
      })]);
    }
    const moved = wrong.map(([what, m]) => [what, maxAbsDiff(logitsOf(m, ref.ids), theirs)] as const);
    t.diagnostic(`with ${moved.map(([w, d]) => `${w} ${d.toFixed(3)}`).join(", ")}`);
    for (const [what, d] of moved) assert.ok(d > 0.1, `${what}: only ${d} from llama.cpp's logits, so the fixture would not notice`);
  });
}

// ---------------------------------------------------------------------------------------------------------------
// The file, and round trips

const KEYS: Record<FusedFamily, Record<string, unknown>> = {
  // GPT2Model.set_gguf_parameters: no head_count_kv, no RoPE keys, LayerNorm eps
  gpt2: {
    "gpt2.context_length": 128, "gpt2.embedding_length": 64, "gpt2.block_count": 3, "gpt2.feed_forward_length": 256,
    "gpt2.attention.head_count": 4, "gpt2.attention.layer_norm_epsilon": Math.fround(1e-5),
  },
  // Phi3MiniModel.set_gguf_parameters, with sliding_window 0 for a model without one
  phi3: {
    "phi3.context_length": 128, "phi3.embedding_length": 64, "phi3.block_count": 3, "phi3.feed_forward_length": 128,
    "phi3.attention.head_count": 4, "phi3.attention.head_count_kv": 2, "phi3.attention.layer_norm_rms_epsilon": Math.fround(1e-5),
    "phi3.rope.freq_base": 10000, "phi3.rope.dimension_count": 16, "phi3.rope.scaling.original_context_length": 128,
    "phi3.attention.sliding_window": 0,
  },
};

for (const { name, family, make } of FAMILIES) {
  test(`${name}: the GGUF is laid out as llama.cpp's converter writes ${family}, and GGUF -> tsdpo -> GGUF gives the same model, logits and bytes`, () => {
    const src = make();
    const first = join(tmp, `${name}-rt1.gguf`);
    assert.deepEqual(exportGguf(src, first).notes, []);
    const meta = new Map(readGgufMetadataTyped(first));
    assert.deepEqual(meta.get("general.architecture"), gv.str(family));
    const archKeys = Object.fromEntries([...meta].filter(([k]) => k.startsWith(`${family}.`)).map(([k, v]) => [k, v.value]));
    // partial RoPE (Phi-4-mini) is rope.dimension_count below the head size, as convert_hf_to_gguf.py writes it
    assert.deepEqual(archKeys, { ...KEYS[family], ...(src.model.cfg.ropeDim ? { "phi3.rope.dimension_count": src.model.cfg.ropeDim } : {}) });

    const f = readGguf(first);
    const cfg = src.model.cfg;
    const dims = (n: string): number[] | undefined => f.tensors.get(n)?.dims;
    // fused: one attn_qkv holding q, k, v by rows (dims innermost first), no attn_q / attn_k / attn_v
    assert.deepEqual(dims("blk.0.attn_qkv.weight"), [64, (cfg.NH + 2 * cfg.NKV) * cfg.HS]);
    for (const n of ["attn_q", "attn_k", "attn_v"]) assert.equal(f.tensors.has(`blk.0.${n}.weight`), false, n);
    for (let l = 0; l < cfg.L; l++) {
      const qkv = readGgufTensor(f, `blk.${l}.attn_qkv.weight`);
      const want = [...param(src.model, `layers.${l}.wq`), ...param(src.model, `layers.${l}.wk`), ...param(src.model, `layers.${l}.wv`)];
      assert.ok(qkv.every((x, i) => x === want[i]), `blk.${l}.attn_qkv.weight is not q, k, v stacked by rows`);
    }
    if (family === "gpt2") {
      assert.deepEqual(dims("position_embd.weight"), [64, 128]);
      assert.deepEqual(dims("blk.0.attn_qkv.bias"), [192]);
      const bias = readGgufTensor(f, "blk.1.attn_qkv.bias");
      const want = [...param(src.model, "layers.1.bq"), ...param(src.model, "layers.1.bk"), ...param(src.model, "layers.1.bv")];
      assert.ok(bias.every((x, i) => x === want[i]), "attn_qkv.bias is not q, k, v stacked");
      for (const n of ["attn_norm.bias", "attn_output.bias", "ffn_norm.bias", "ffn_up.bias", "ffn_down.bias"]) assert.ok(f.tensors.has(`blk.2.${n}`), n);
      assert.deepEqual(dims("output_norm.bias"), [64]);
      assert.equal(f.tensors.has("output.weight"), false, "GPT-2's output is tied to token_embd");
      assert.equal(f.tensors.has("blk.0.ffn_gate.weight"), false);
    } else {
      // gate over up in one ffn_up of 2·FF rows; no ffn_gate
      assert.deepEqual(dims("blk.0.ffn_up.weight"), [64, 2 * cfg.FF]);
      assert.equal(f.tensors.has("blk.0.ffn_gate.weight"), false);
      const up = readGgufTensor(f, "blk.2.ffn_up.weight");
      const want = [...param(src.model, "layers.2.w_gate"), ...param(src.model, "layers.2.w_up")];
      assert.ok(up.every((x, i) => x === want[i]), "ffn_up is not gate over up");
      assert.ok(f.tensors.has("output.weight"), "Phi-3's output is untied");
      // NEOX RoPE: q and k rows as they are (not permuted as llama's)
    }

    const back = loadModel(first);
    assert.deepEqual(back.model.cfg, src.model.cfg);
    assert.ok(back.model.params.every((x, i) => x === src.model.params[i]), "weights changed through the GGUF");
    const a = logitsOf(src.model, ids(src)), b = logitsOf(back.model, ids(back));
    assert.ok(a.every((x, i) => x === b[i]), `logits differ by ${maxAbsDiff(a, b)}`);
    const second = join(tmp, `${name}-rt2.gguf`);
    exportGguf(back, second);
    assert.equal(sha256(second), sha256(first), "re-exporting the loaded GGUF changed its bytes");
  });

  test(`${name}: HF -> tsdpo -> HF is bit-identical, and the HF-sourced model exports to the same GGUF model`, () => {
    const src = make();
    const dir1 = join(tmp, `${name}-hf1`);
    exportHf(src, dir1);
    const config = JSON.parse(readFileSync(join(dir1, "config.json"), "utf8")) as Record<string, unknown>;
    assert.equal(config["model_type"], family);
    const { fromHf } = assertHfRoundTrip(src, dir1, tmp, name);
    assert.ok(fromHf.model.params.every((x, i) => x === src.model.params[i]), "weights changed through HF -> GGUF");
  });
}

test("a phi3 GGUF with separate attn_q / attn_k / attn_v (llama.cpp reads either) loads to the same model", () => {
  const src = fusedTiny("phi3");
  const fused = join(tmp, "phi3-fused.gguf");
  exportGguf(src, fused);
  const cfg = src.model.cfg;
  const separate = join(tmp, "phi3-separate.gguf");
  rewriteGguf(fused, separate, {
    tensors: (list) => list.flatMap((t) => {
      const m = /^blk\.(\d+)\.attn_qkv\.weight$/.exec(t.name);
      if (!m) return [t];
      const q = cfg.NH * cfg.HS * cfg.C, kv = cfg.NKV * cfg.HS * cfg.C;
      return [
        { ...t, name: `blk.${m[1]}.attn_q.weight`, dims: [cfg.C, cfg.NH * cfg.HS], data: t.data.slice(0, q) },
        { ...t, name: `blk.${m[1]}.attn_k.weight`, dims: [cfg.C, cfg.NKV * cfg.HS], data: t.data.slice(q, q + kv) },
        { ...t, name: `blk.${m[1]}.attn_v.weight`, dims: [cfg.C, cfg.NKV * cfg.HS], data: t.data.slice(q + kv) },
      ];
    }),
  });
  assert.equal(readGguf(separate).tensors.has("blk.0.attn_qkv.weight"), false);
  const back = loadModel(separate);
  assert.deepEqual(back.model.cfg, cfg);
  assert.ok(back.model.params.every((x, i) => x === src.model.params[i]), "weights differ");
});

test("GGUF files tsdpo cannot reproduce are refused on load: a gpt2 with output.weight or split q/k/v, a phi3 with LongRoPE factors", () => {
  const refused = (path: string, re: RegExp): void =>
    assert.throws(() => loadModel(path), (e: unknown) => e instanceof TsdpoError && re.test(e.message), path);
  const gpt2 = join(tmp, "gpt2-base.gguf");
  exportGguf(fusedTiny("gpt2"), gpt2);
  const untied = join(tmp, "gpt2-untied.gguf");
  rewriteGguf(gpt2, untied, { tensors: (l) => [...l, { ...l.find((t) => t.name === "token_embd.weight")!, name: "output.weight" }] });
  refused(untied, /a gpt2 GGUF with an output\.weight tensor is not supported \(GPT-2 ties its output layer to token_embd\)/);
  const split = join(tmp, "gpt2-split.gguf");
  rewriteGguf(gpt2, split, { tensors: (l) => l.map((t) => (t.name === "blk.0.attn_qkv.weight" ? { ...t, name: "blk.0.attn_q.weight" } : t)) });
  refused(split, /tensor blk\.0\.attn_qkv\.weight is missing \(the gpt2 architecture with this config needs it\)/);
  const phi3 = join(tmp, "phi3-base.gguf");
  exportGguf(fusedTiny("phi3"), phi3);
  const longrope = join(tmp, "phi3-longrope.gguf");
  rewriteGguf(phi3, longrope, {
    tensors: (l) => [...l, ...["long", "short"].map((k) => ({ name: `rope_factors_${k}.weight`, dims: [8], type: "F32" as const, data: new Float32Array(8).fill(1) }))],
  });
  refused(longrope, /a phi3 GGUF with LongRoPE factors \(tensor rope_factors_long\.weight\) is not supported yet/);
});

// ---------------------------------------------------------------------------------------------------------------
// Quantised exports, the sliding window, refusals

test("quantised and F16 GGUF exports: attn_qkv gets attn_v's bits, position_embd is never blocks, and the files load close to the float model", (t) => {
  // llama-quant.cpp counts a fused attn_qkv as attn_v (category_is_attn_v): Q6_K in use_more_bits layers of Q4_K_M
  assert.equal(quantTypeFor("q4_k_m", "blk.0.attn_qkv.weight", [3072, 9216], 32, false), "Q6_K");
  assert.equal(quantTypeFor("q4_k_m", "blk.5.attn_qkv.weight", [3072, 9216], 32, false), "Q4_K");
  assert.equal(quantTypeFor("q4_k_m", "blk.5.ffn_up.weight", [3072, 16384], 32, false), "Q4_K");
  assert.equal(quantTypeFor("q4_k_m", "position_embd.weight", [768, 1024], 12, true), "F32");
  assert.equal(quantTypeFor("q8_0", "position_embd.weight", [768, 1024], 12, true), "F32");
  for (const { name, family, make } of FAMILIES) {
    const src = make();
    const path = join(tmp, `${name}-q8.gguf`);
    exportGguf(src, path, { dtype: "Q8_0" });
    const f = readGguf(path);
    assert.equal(f.tensors.get("blk.0.attn_qkv.weight")!.type, GGML_TYPE_ID.Q8_0);
    assert.equal(f.tensors.get("blk.0.ffn_up.weight")!.type, GGML_TYPE_ID.Q8_0);
    if (family === "gpt2") {
      assert.equal(f.tensors.get("position_embd.weight")!.type, GgmlType.F32);
      assert.equal(f.tensors.get("blk.0.attn_qkv.bias")!.type, GgmlType.F32);
    }
    const q = loadModel(path);
    assert.deepEqual(q.model.cfg, src.model.cfg);
    // each part of a fused matrix is a view of its rows' blocks
    for (const m of ["layers.0.wq", "layers.1.wk", "layers.2.wv", family === "phi3" ? "layers.1.w_gate" : "layers.1.w_up", "layers.1.w_up"])
      assert.equal(q.model.quant.get(m)?.type, "Q8_0", `${m} should stay Q8_0 blocks`);
    const mine = logitsOf(q.model, ids(src));
    const deq = loadModel(path, Float32Array, { dequantize: true });
    const blocksVsValues = maxAbsDiff(mine, logitsOf(deq.model, ids(src)));
    const diff = maxAbsDiff(mine, logitsOf(src.model, ids(src)));
    t.diagnostic(`${name} Q8_0: blocks vs their dequantised values ${blocksVsValues.toExponential(2)}; vs the float model ${diff.toExponential(3)}`);
    assert.ok(blocksVsValues <= 1e-4, `${name}: Q8_0 blocks and their float32 values differ by ${blocksVsValues}`);
    // 8-bit weights through 3 layers of a random model: measured 0.063 (gpt2-tiny) and 0.159 (phi3-tiny)
    assert.ok(diff > 1e-3 && diff < 0.3, `${name}: Q8_0 logits differ from the float model's by ${diff}`);
    if (family !== "gpt2") continue;
    // GPT-2's position table is added row by row, not multiplied: it stays float32 in tsdpo however it is stored
    // (an F16 export writes it F16, as llama.cpp's converter does), and a quantised copy keeps it float32 too
    const f16 = join(tmp, `${name}-f16.gguf`);
    exportGguf(src, f16, { dtype: "F16" });
    assert.equal(readGguf(f16).tensors.get("position_embd.weight")!.type, GgmlType.F16);
    const h = loadModel(f16);
    assert.equal(h.model.quant.has("pos_embd"), false);
    assert.equal(h.model.quant.get("layers.0.wq")?.type, "F16");
    const halfDiff = maxAbsDiff(logitsOf(h.model, ids(src)), logitsOf(src.model, ids(src)));
    t.diagnostic(`${name} F16: vs the float model ${halfDiff.toExponential(3)}`);
    assert.ok(halfDiff < 0.02, `${name}: F16 logits differ from the float model's by ${halfDiff}`);
    const copy = quantisedCopy(src.model, "Q8_0");
    assert.equal(copy.quant.has("pos_embd"), false);
    assert.equal(copy.quant.get("layers.0.w_up")?.type, "Q8_0");
  }
});

test("Phi-3's sliding window is written as phi3.attention.sliding_window, which llama.cpp disables: a note says so, and the GGUF loads without it", () => {
  const src = fusedTiny("phi3");
  const windowed: LoadedModel = { ...src, model: variant(src.model, () => {}, { slidingWindow: 6 }) };
  const path = join(tmp, "phi3-window.gguf");
  const r = exportGguf(windowed, path);
  assert.equal(r.notes.length, 1);
  assert.match(r.notes[0]!, /sliding window \(6 tokens\) is written as phi3\.attention\.sliding_window, but llama\.cpp disables Phi's sliding window .* beyond 6 tokens/);
  assert.deepEqual(new Map(readGgufMetadataTyped(path)).get("phi3.attention.sliding_window"), gv.u32(6));
  const back = loadModel(path);
  assert.deepEqual(back.model.cfg, src.model.cfg, "llama.cpp attends to the whole context, and so does tsdpo on the file");
  // CHECK_TEXT runs past the window: the window matters to tsdpo's own model
  assert.ok(maxAbsDiff(logitsOf(windowed.model, ids(src)), logitsOf(back.model, ids(src))) > 0.05);
});

test("GGUF export refuses GPT-2 and Phi-3 models llama.cpp's architectures cannot express, saying why, and writes nothing", () => {
  const refused = (loaded: LoadedModel, file: string, why: RegExp): void => {
    const path = join(tmp, `refused-${file}`);
    assert.throws(() => exportGguf(loaded, path), (e: unknown) => e instanceof TsdpoError && e.kind === "unsupported" && why.test(e.message), file);
    assert.equal(existsSync(path), false, `${file} was written`);
  };
  const gpt2 = fusedTiny("gpt2"), phi3 = fusedTiny("phi3");
  const reshaped = (l: LoadedModel, change: Partial<LlamaConfig>): LoadedModel => ({ ...l, model: createModel({ ...l.model.cfg, ...change }) });
  refused(reshaped(gpt2, { tiedEmbeddings: false }), "gpt2-untied.gguf", /^GGUF export: llama\.cpp's gpt2 architecture cannot express this model: its output layer is not tied to token_embd$/);
  refused(reshaped(gpt2, { NKV: 2 }), "gpt2-gqa.gguf", /gpt2 architecture cannot express this model: its heads \(NH 4, NKV 2, HS 16\)/);
  refused(reshaped(gpt2, { attnSoftcap: 5 }), "gpt2-cap.gguf", /gpt2 architecture cannot express this model: it scales or soft-caps/);
  refused(reshaped(phi3, { HS: 8 }), "phi3-narrow.gguf", /llama\.cpp's phi3 architecture cannot express this model: .*NH·HS must equal C/);
  refused(reshaped(phi3, { qkvBias: true }), "phi3-bias.gguf", /phi3 architecture cannot express this model: it has q\/k\/v biases or q\/k norms/);
  // LongRoPE (Phi-3-mini-128k, Phi-3.5, Phi-4-mini) is not written yet: llama.cpp reads its factors from the
  // rope_factors_long / rope_factors_short tensors. Partial RoPE is written for phi3 only (checked against llama.cpp
  // above); the other families' layouts would need their own check
  const olmo = familyTiny("olmo2");
  refused(reshaped(olmo, { ropeDim: 8 }), "olmo2-partial.gguf", /partial RoPE \(rotary width 8 of head size 16, partial_rotary_factor\) is supported for phi3 only/);
  const longrope: LlamaConfig["ropeScaling"] = { type: "longrope", shortFactor: Array(8).fill(1), longFactor: Array(8).fill(2), originalMaxPositionEmbeddings: 64, attentionFactor: 1.1 };
  refused(reshaped(phi3, { ropeScaling: longrope }), "phi3-longrope.gguf", /LongRoPE/);
  // and the models themselves export
  exportGguf(gpt2, join(tmp, "gpt2-ok.gguf"));
  exportGguf(phi3, join(tmp, "phi3-ok.gguf"));
});

// ---------------------------------------------------------------------------------------------------------------
// Live llama.cpp (opt-in: needs `npm install` in tools/llama-ref, see its README)

const llamaRef = join(repoRoot, "tools", "llama-ref");
const nlcEntry = join(llamaRef, "node_modules", "node-llama-cpp", "dist", "index.js");
const live = existsSync(nlcEntry);

test(
  "llama.cpp (node-llama-cpp) runs the exported gpt2 and phi3 GGUFs (F32, Q8_0, Phi-3 with split q/k/v), its quantiser's rewrites load in tsdpo, and it tokenises GPT-2's vocabulary as tsdpo",
  { skip: live ? false : "node-llama-cpp is not installed under tools/llama-ref (cd tools/llama-ref && npm install --omit=optional)" },
  async (t) => {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const nlc: any = await import(pathToFileURL(nlcEntry).href);
    const llama = await nlc.getLlama({ gpu: false, build: "never", logLevel: nlc.LlamaLogLevel.error });
    const contextOptions = {
      contextSize: 128, batchSize: 128, sequences: 1, flashAttention: false, threads: { ideal: 1, min: 1 },
      experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32",
    };
    /** llama.cpp's logits for `tokens` (T·V) and its greedy ids from BOS. */
    const run = async (path: string, V: number): Promise<{ tokens: number[]; logits: Float32Array; greedy: number[] }> => {
      const model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
      const context = await model.createContext(contextOptions);
      const seq = context.getSequence();
      const tokens: number[] = [model.tokens.bos, ...model.tokenize(CHECK_TEXT)];
      const res = await seq.controlledEvaluate(tokens.map((id) => [id, { generateNext: { logits: true } }]));
      const logits = new Float32Array(tokens.length * V);
      res.forEach((r: { next: { logits: Map<number, number> } }, i: number) => {
        for (const [tok, x] of r.next.logits) logits[i * V + tok] = x;
      });
      await seq.clearHistory();
      const greedy = [model.tokens.bos];
      for (let i = 0; i < GREEDY_TOKENS; i++) {
        const [r] = await seq.controlledEvaluate([[greedy.at(-1), { generateNext: { token: true } }]]);
        greedy.push(r.next.token);
        if (r.next.token === model.tokens.eos) break;
      }
      await context.dispose();
      await model.dispose();
      return { tokens, logits, greedy };
    };
    try {
      for (const { name, family, make } of FAMILIES) {
        const src = make();
        const files: [string, string][] = [];
        for (const dtype of ["F32", "Q8_0"] as const) {
          const path = join(tmp, `live-${name}-${dtype}.gguf`);
          exportGguf(src, path, { dtype });
          files.push([dtype, path]);
        }
        if (family === "phi3") {
          // the separate-q/k/v layout, which llama.cpp's phi3 reads as well
          const path = join(tmp, "live-phi3-separate.gguf");
          const cfg = src.model.cfg, q = cfg.NH * cfg.HS * cfg.C, kv = cfg.NKV * cfg.HS * cfg.C;
          rewriteGguf(files[0]![1], path, {
            tensors: (list) => list.flatMap((x) => {
              const m = /^blk\.(\d+)\.attn_qkv\.weight$/.exec(x.name);
              return !m ? [x] : ([["q", 0, q], ["k", q, q + kv], ["v", q + kv, q + 2 * kv]] as const).map(([w, a, b]) =>
                ({ ...x, name: `blk.${m[1]}.attn_${w}.weight`, dims: [cfg.C, (b - a) / cfg.C], data: x.data.slice(a, b) }));
            }),
          });
          files.push(["F32, split q/k/v", path]);
        }
        for (const [what, path] of files) {
          const loaded = loadModel(path);
          const V = loaded.model.cfg.V;
          const theirs = await run(path, V);
          assert.deepEqual(theirs.tokens, ids(loaded));
          const plain = maxAbsDiff(logitsOf(loaded.model, theirs.tokens), theirs.logits);
          if (what === "Q8_0") {
            // llama.cpp rounds the activations to 8 bits for its Q8_0 dot products (tsdpo keeps them float32)
            t.diagnostic(`${name} Q8_0: max |tsdpo − llama.cpp| ${plain.toExponential(3)}`);
            assert.ok(plain <= 0.3, `${name} Q8_0: ${plain}`);
          } else if (family === "gpt2") {
            const fit = fitGeluRoundings(jsBackend, loaded.model, theirs.tokens, theirs.logits, { maxUlps: MAX_FLIP_ULPS, maxFlips: MAX_FLIPS });
            const fitted = Math.max(...fit.perPosition);
            t.diagnostic(`${name} ${what}: plain ${plain.toExponential(3)}, fp16 GELU with ${fit.flips.length} flips ${fitted.toExponential(3)}`);
            assert.ok(plain <= GPT2_PLAIN_TOLERANCE, `${name}: plain ${plain}`);
            assert.ok(fitted <= LLAMACPP_TOLERANCE, `${name}: with llama.cpp's fp16 GELU ${fitted}`);
          } else {
            t.diagnostic(`${name} ${what}: max |tsdpo − llama.cpp| ${plain.toExponential(3)}`);
            assert.ok(plain <= LLAMACPP_TOLERANCE, `${name} ${what}: ${plain}`);
          }
          // greedy ids where the deviations are far below the margins (0.063 and 0.043): not for Q8_0, whose
          // 8-bit activations in llama.cpp move the logits by more than phi3-tiny's smallest margin
          if (what === "Q8_0") continue;
          const tok = loaded.tokenizer;
          const mine = generate(be, loaded.model, [tok.bosId!], [tok.eosId!], { maxNewTokens: GREEDY_TOKENS, temperature: 0, topK: 0, topP: 1, seed: 0 });
          assert.deepEqual(theirs.greedy, [tok.bosId!, ...mine.ids], `${name} ${what}: greedy ids`);
        }
      }

      // files written by llama.cpp itself: its quantiser (llama_model_quantize, one thread, no imatrix) rewrites the
      // F32 exports as Q8_0 and as F32, and tsdpo reads them: the same tensors as its own export, the same model
      const common = await import(pathToFileURL(join(llamaRef, "common.mjs")).href);
      let quantize: ((input: string, output: string, ftype: string) => void) | null = null;
      try {
        quantize = common.buildQuantizer(tmp, (msg: string) => {
          throw new Error(msg);
        });
      } catch (e) {
        t.diagnostic(`llama.cpp's quantiser could not be built (needs gcc and llama.cpp's headers, LLAMA_SRC): ${(e as Error).message.split("\n")[0]}`);
      }
      for (const { name, make } of quantize ? FAMILIES : []) {
        const src = make();
        const f32 = join(tmp, `llq-${name}.gguf`);
        exportGguf(src, f32);
        const requantized = join(tmp, `llq-${name}-f32.gguf`), q8 = join(tmp, `llq-${name}-q8.gguf`), mineQ8 = join(tmp, `llq-${name}-mine-q8.gguf`);
        quantize!(f32, requantized, "F32");
        quantize!(f32, q8, "Q8_0");
        exportGguf(src, mineQ8, { dtype: "Q8_0" });
        const back = loadModel(requantized);
        assert.deepEqual(back.model.cfg, src.model.cfg);
        assert.ok(back.model.params.every((x, i) => x === src.model.params[i]), `${name}: llama.cpp's F32 rewrite holds other weights`);
        const theirs = readGguf(q8), mine = readGguf(mineQ8);
        assert.deepEqual([...theirs.tensors.keys()].sort(), [...mine.tensors.keys()].sort(), `${name}: tensor names`);
        for (const [n, info] of theirs.tensors) {
          const other = mine.tensors.get(n)!;
          assert.equal(info.type, other.type, `${name} ${n}: llama.cpp's Q8_0 type`);
          const bytes = (g: typeof theirs, i: typeof info, size: number) => g.buffer.subarray(g.dataOffset + i.offset, g.dataOffset + i.offset + size);
          const size = (info.type === GGML_TYPE_ID.Q8_0 ? 34 / 32 : 4) * info.dims.reduce((a, b) => a * b, 1);
          assert.ok(Buffer.from(bytes(theirs, info, size)).equals(Buffer.from(bytes(mine, other, size))), `${name} ${n}: bytes differ from llama.cpp's`);
        }
        const q = loadModel(q8);
        assert.ok(maxAbsDiff(logitsOf(q.model, ids(src)), logitsOf(loadModel(mineQ8).model, ids(src))) === 0, `${name}: llama.cpp's Q8_0 file computes differently`);
        t.diagnostic(`${name}: llama.cpp's F32 and Q8_0 rewrites load; Q8_0 byte-identical to tsdpo's (${theirs.tensors.size} tensors)`);
      }

      // GPT-2's tokenizer: llama.cpp on the converted vocabulary tokenises the hard texts as tsdpo's GGUF tokenizer
      // and as the tokenizer.json it came from (committed as well: gguf-vocab.test.ts)
      const vocabPath = join(tmp, "live-gpt2-vocab.gguf");
      const vocab = gpt2VocabModel();
      exportGguf(vocab, vocabPath);
      const model = await llama.loadModel({ modelPath: vocabPath, vocabOnly: true, gpuLayers: 0 });
      const mine = tokenizerFromGguf(readGguf(vocabPath));
      for (const text of vocabTexts()) {
        const show = JSON.stringify(text).slice(0, 60);
        assert.deepEqual(model.tokenize(text, false), mine.encode(text), `llama.cpp vs tsdpo: ${show}`);
        assert.deepEqual(model.tokenize(text, true), mine.encodeWithSpecials(text), `llama.cpp vs tsdpo, specials: ${show}`);
        assert.deepEqual(mine.encode(text), vocab.tokenizer.encode(text), `tsdpo GGUF vs tokenizer.json: ${show}`);
      }
      assert.equal(model.tokens.bos, 50256);
      assert.equal(mine.addBos, false, "GPT-2 adds no BOS");
      await model.dispose();
    } finally {
      await llama.dispose();
    }
  },
);
