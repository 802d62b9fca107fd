// SmolLM3, Granite and OLMo 2 through tsdpo's exporters, on the tiny random-weight check models of
// test/gguf-export-models.ts (familyTiny: smollm3-tiny with NoPE layers 3 and 7, granite-tiny with its four
// multipliers, olmo2-tiny with post-norms and whole-projection q/k norms):
// - llama.cpp parity: test/gguf-export.test.ts compares every SwiGLU check model, these included, with the numbers
//   tools/llama-ref/check-export.mjs committed for the exact exported bytes (logits to 1e-4, greedy ids). Here: the
//   greedy margins are far above that tolerance, and the committed numbers tell apart what the export could get
//   wrong (RoPE on the NoPE layers, each Granite multiplier, the Q/K row order of each architecture);
// - GGUF -> tsdpo -> GGUF: the architecture's keys, the same config and weights bit for bit (these norms are stored
//   as they are, unlike Gemma's 1 + w), bit-identical logits, and the same bytes on re-export;
// - HF -> tsdpo -> HF: config.json says smollm3 (no_rope_layers), granite (embedding_multiplier,
//   attention_multiplier, residual_multiplier, logits_scaling) or olmo2, the logits are bit-identical, a second
//   export is byte-identical, and the HF-sourced model exports to the same GGUF model;
// - refusals: what llama.cpp's architectures cannot express (a smollm3 whose NoPE layers are not every 4th, an olmo2
//   with NH·HS ≠ C or tied embeddings) is refused with the reason, and nothing is written.

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TsdpoError } from "../src/errors.js";
import { exportGguf } from "../src/export/gguf.js";
import { exportHf } from "../src/export/hf.js";
import { readGguf, readGgufTensor } from "../src/io/gguf.js";
import { readGgufMetadataTyped } from "../src/io/ggufwriter.js";
import { loadModel, type LoadedModel } from "../src/io/load.js";
import { ggufToHfQkRows, hfToGgufQkRows } from "../src/io/names.js";
import type { LlamaConfig } from "../src/model/config.js";
import { createModel, type Model } from "../src/model/decoder.js";
import { floatWeight } from "../src/model/weights.js";
import { assertHfRoundTrip, CHECK_FIXTURE, checkIds, checkLogits, familyTiny, GREEDY_TOKENS, type TinyFamily } from "./gguf-export-models.js";
import { maxAbsDiff, testBackend } from "./helpers.js";

const be = testBackend();
const FAMILIES: readonly { name: string; family: TinyFamily }[] = [
  { name: "smollm3-tiny", family: "smollm3" },
  { name: "granite-tiny", family: "granite" },
  { name: "olmo2-tiny", family: "olmo2" },
];
/** The tolerance test/gguf-export.test.ts holds tsdpo's logits to against llama.cpp's on these models. */
const LLAMACPP_TOLERANCE = 1e-4;

const tmp = mkdtempSync(join(tmpdir(), "tsdpo-families-export-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

const sha256 = (path: string): string => createHash("sha256").update(readFileSync(path)).digest("hex");

const logitsOf = checkLogits;
const ids = checkIds;

/** `model`'s weights under a changed config (same layout). */
function withConfig(model: Model, change: Partial<LlamaConfig>): Model {
  const m = createModel({ ...model.cfg, ...change });
  m.params.set(model.params);
  return m;
}

// ---------------------------------------------------------------------------------------------------------------
// llama.cpp's committed numbers: margins and teeth (the parity itself is in gguf-export.test.ts)

interface CheckFixture {
  checks: { name: string; sha256: string; ids: number[]; greedy: number[]; logits: number[][] }[];
}
const llamaCpp = JSON.parse(readFileSync(CHECK_FIXTURE, "utf8")) as CheckFixture;

for (const { name, family } of FAMILIES) {
  test(`${name}: llama.cpp's committed numbers (sha256-tied) tell apart what the GGUF export could get wrong; greedy margins far above the tolerance`, (t) => {
    const ref = llamaCpp.checks.find((c) => c.name === name);
    assert.ok(ref, `no llama.cpp numbers for ${name}; run tools/llama-ref/check-export.mjs`);
    const src = familyTiny(family);
    const path = join(tmp, `${name}.gguf`);
    exportGguf(src, path);
    assert.equal(sha256(path), ref.sha256, `${name}: the exported bytes changed since llama.cpp's numbers were recorded; rerun tools/llama-ref/check-export.mjs`);
    assert.deepEqual(ids(src), ref.ids, "token ids of CHECK_TEXT");
    const theirs = ref.logits.flat();
    const plain = maxAbsDiff(logitsOf(src.model, ref.ids), theirs);
    assert.ok(plain <= LLAMACPP_TOLERANCE, `max |tsdpo − llama.cpp| ${plain}`);

    // each way of getting the model wrong moves the logits far from llama.cpp's
    const wrong: [string, Model][] = [];
    const cfg = src.model.cfg;
    if (family === "smollm3") {
      wrong.push(["RoPE on every layer", withConfig(src.model, { layers: cfg.layers!.map((a) => ({ ...a, rope: true })) })]);
      for (const l of [3, 7]) wrong.push([`RoPE on layer ${l}`, withConfig(src.model, { layers: cfg.layers!.map((a, i) => (i === l ? { ...a, rope: true } : a)) })]);
      wrong.push(["NoPE on layer 2 as well", withConfig(src.model, { layers: cfg.layers!.map((a, i) => (i === 2 ? { ...a, rope: false } : a)) })]);
    }
    if (family === "granite")
      for (const k of ["embedScale", "attnScale", "residualScale", "logitScale"] as const)
        wrong.push([`${k} at Llama's value`, withConfig(src.model, { [k]: k === "attnScale" ? 1 / Math.sqrt(cfg.HS) : 1 })]);
    // Q/K rows in the other order: what llama.cpp computes had the exporter permuted olmo2's rows (which it reads
    // as they are, NEOX), or not permuted granite's and smollm3's (which it reads as interleaved)
    const swapped = withConfig(src.model, {});
    const reorder = family === "olmo2" ? hfToGgufQkRows : ggufToHfQkRows;
    for (const layer of swapped.p.layers)
      for (const [w, heads] of [[layer.wq, cfg.NH], [layer.wk, cfg.NKV]] as const) {
        const data = floatWeight(w);
        data.set(reorder(Float32Array.from(data), heads, cfg.HS, cfg.C));
      }
    wrong.push(["Q/K rows in the other RoPE layout", swapped]);
    const moved = wrong.map(([what, m]) => [what, maxAbsDiff(logitsOf(m, ref.ids), theirs)] as const);
    t.diagnostic(`max |tsdpo − llama.cpp| ${plain.toExponential(2)} (${be.name}); with ${moved.map(([w, d]) => `${w} ${d.toFixed(3)}`).join(", ")}`);
    // measured (js): smollm3 RoPE everywhere 1.18, on layer 3 1.16, on layer 7 0.60, NoPE on layer 2 as well 2.25;
    // granite embedScale 3.9, attnScale 0.52, residualScale 3.3, logitScale 10.1; the other Q/K layout 5.1
    // (smollm3), 0.54 (granite), 4.0 (olmo2)
    for (const [what, d] of moved) assert.ok(d > 0.1, `${what}: only ${d} from llama.cpp's logits, so the fixture would not notice`);

    // the greedy ids are robust: each step's top-2 margin dwarfs the tolerance
    const V = cfg.V;
    const steps = logitsOf(src.model, ref.greedy);
    let margin = Infinity;
    for (let s = 0; s + 1 < ref.greedy.length; s++) {
      const row = Array.from(steps.subarray(s * V, (s + 1) * V));
      const order = row.map((_, v) => v).sort((a, b) => row[b]! - row[a]!);
      assert.equal(order[0], ref.greedy[s + 1], `greedy step ${s}`);
      margin = Math.min(margin, row[order[0]!]! - row[order[1]!]!);
    }
    let spread = 0;
    for (const x of theirs) spread = Math.max(spread, Math.abs(x));
    t.diagnostic(`greedy: ${ref.greedy.length - 1} tokens, ${new Set(ref.greedy.slice(1)).size} distinct, smallest top-2 margin ${margin.toFixed(4)}; logits up to ±${spread.toFixed(2)}`);
    assert.equal(ref.greedy.length - 1, GREEDY_TOKENS, "greedy decoding stopped early");
    assert.ok(margin > 100 * LLAMACPP_TOLERANCE, `greedy top-2 margin ${margin} is too close to the tolerance`);
    assert.ok(spread > 2 && spread < 10, `logits up to ±${spread}: not O(1)`);
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Round trips

const ARCH_KEYS: Record<TinyFamily, [string, number][]> = {
  smollm3: [], // llama.cpp's smollm3 has no key for its NoPE layers (every 4th)
  granite: [["granite.embedding_scale", 6], ["granite.attention.scale", 0.125], ["granite.residual_scale", 0.25], ["granite.logit_scale", 4]],
  olmo2: [], // post-norms and whole-projection q/k norms are the architecture
};

for (const { name, family } of FAMILIES) {
  test(`${name}: GGUF -> tsdpo -> GGUF gives the same config and weights, bit-identical logits and the same bytes`, () => {
    const src = familyTiny(family);
    const first = join(tmp, `${name}-rt1.gguf`);
    const r = exportGguf(src, first);
    assert.deepEqual(r.notes, []);
    const meta = new Map(readGgufMetadataTyped(first));
    assert.deepEqual(meta.get("general.architecture"), { type: "string", value: family });
    for (const [k, v] of ARCH_KEYS[family]) assert.deepEqual(meta.get(k), { type: "f32", value: v }, k);
    assert.deepEqual([...meta.keys()].filter((k) => /scale|no_rope|sliding/.test(k)), ARCH_KEYS[family].map(([k]) => k));
    const f = readGguf(first);
    assert.equal(f.tensors.has("output.weight"), !src.model.cfg.tiedEmbeddings, "output.weight");
    assert.equal(f.tensors.has("blk.0.attn_norm.weight"), family !== "olmo2", "pre-norms");
    assert.equal(f.tensors.has("blk.0.post_ffw_norm.weight"), family === "olmo2", "post-norms");
    if (family === "olmo2") {
      assert.deepEqual(f.tensors.get("blk.0.attn_q_norm.weight")!.dims, [64]);
      assert.deepEqual(f.tensors.get("blk.0.attn_k_norm.weight")!.dims, [32]);
    }
    // llama.cpp runs smollm3 and granite with interleaved RoPE (their rows permuted as llama's), olmo2 with NEOX
    const wq = floatWeight(src.model.p.layers[1]!.wq);
    const q = readGgufTensor(f, "blk.1.attn_q.weight");
    assert.equal(q.every((x, i) => x === wq[i]), family === "olmo2", "attn_q row order");

    const back = loadModel(first);
    assert.deepEqual(back.model.cfg, src.model.cfg);
    assert.ok(back.model.params.every((x, i) => x === src.model.params[i]), "weights changed through the GGUF");
    const a = logitsOf(src.model, ids(src)), b = logitsOf(back.model, ids(back));
    assert.ok(a.every((x, i) => x === b[i]), `logits differ by ${maxAbsDiff(a, b)}`);
    const second = join(tmp, `${name}-rt2.gguf`);
    exportGguf(back, second);
    assert.equal(sha256(second), sha256(first), "re-exporting the loaded GGUF changed its bytes");
  });

  test(`${name}: HF -> tsdpo -> HF writes ${family}'s config.json and gives bit-identical logits`, () => {
    const src = familyTiny(family);
    const dir1 = join(tmp, `${name}-hf1`);
    exportHf(src, dir1);
    const config = JSON.parse(readFileSync(join(dir1, "config.json"), "utf8")) as Record<string, unknown>;
    assert.equal(config["model_type"], family);
    assert.deepEqual(config["architectures"], [{ smollm3: "SmolLM3ForCausalLM", granite: "GraniteForCausalLM", olmo2: "Olmo2ForCausalLM" }[family]]);
    assert.equal(config["hidden_act"], "silu");
    assert.equal(config["tie_word_embeddings"], src.model.cfg.tiedEmbeddings);
    assert.equal(config["rope_theta"], src.model.cfg.ropeTheta);
    assert.equal(config["rms_norm_eps"], Math.fround(1e-6));
    if (family === "smollm3") {
      assert.deepEqual(config["no_rope_layers"], [1, 1, 1, 0, 1, 1, 1, 0]);
      assert.equal(config["use_sliding_window"], false);
    } else assert.equal("no_rope_layers" in config, false);
    const multipliers = { embedding_multiplier: 6, attention_multiplier: 0.125, residual_multiplier: 0.25, logits_scaling: 4 };
    for (const [k, v] of Object.entries(multipliers)) assert.equal(config[k], family === "granite" ? v : undefined, k);
    // and the HF-sourced model to GGUF (its tokenizer.json converted): the same model comes back
    const { fromHf } = assertHfRoundTrip(src, dir1, tmp, name);
    assert.ok(fromHf.model.params.every((x, i) => x === src.model.params[i]), "weights changed through HF -> GGUF");
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Refusals

test("GGUF export refuses what llama.cpp's smollm3 and olmo2 cannot express, saying why, and writes nothing", () => {
  const refused = (loaded: LoadedModel, file: string, why: RegExp): void => {
    const path = join(tmp, file);
    assert.throws(
      () => exportGguf(loaded, path),
      (e: unknown) => e instanceof TsdpoError && e.kind === "unsupported" && why.test(e.message),
    );
    assert.equal(existsSync(path), false, `${file} was written`);
  };
  const smol = familyTiny("smollm3");
  const cfg = smol.model.cfg;
  const smolMessage = /^GGUF export: llama\.cpp's smollm3 architecture cannot express this model: llama\.cpp's smollm3 skips RoPE on every 4th layer and no other$/;
  // NoPE on layers 1 and 5 (every 4th, but not where llama.cpp puts them), on layer 3 only, on none
  for (const [what, noPe] of [["1, 5", [1, 5]], ["3", [3]], ["none", []]] as const) {
    const m = withConfig(smol.model, { layers: cfg.layers!.map((a, l) => ({ ...a, rope: !(noPe as readonly number[]).includes(l) })) });
    refused({ ...smol, model: m }, `smollm3-nope-${what}.gguf`, smolMessage);
  }
  // OLMo 2 with a head size that makes NH·HS = 4·8 = 32 ≠ C = 64: llama.cpp sizes attn_q_norm by C
  const olmo = familyTiny("olmo2");
  const narrow = createModel({ ...olmo.model.cfg, HS: 8 });
  refused({ ...olmo, model: narrow }, "olmo2-narrow.gguf", /llama\.cpp's olmo2 architecture cannot express this model: .*NH·HS must equal C/);
  // and with tied embeddings: llama.cpp's olmo2 will not load a file without output.weight (checked live when this
  // refusal was added: "check_tensor_dims: tensor 'output.weight' not found")
  const tied = createModel({ ...olmo.model.cfg, tiedEmbeddings: true });
  refused({ ...olmo, model: tied }, "olmo2-tied.gguf", /llama\.cpp's olmo2 architecture cannot express this model: llama\.cpp's olmo2 requires an output\.weight tensor/);
  // and either refusal goes away with the layout llama.cpp has
  exportGguf(smol, join(tmp, "smollm3-ok.gguf"));
  exportGguf(olmo, join(tmp, "olmo2-ok.gguf"));
});
