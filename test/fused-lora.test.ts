// LoRA on fused modules (Phi-3's qkv_proj and gate_up_proj, GPT-2's c_attn) in PEFT's format. PEFT adapts a fused
// module as one module: one A shared by q, k and v (gate and up) and one B over the fused output. tsdpo keeps the
// weights split, so its adapter is one A with several row blocks of B (model/lora.ts). Checked here:
// - a PEFT adapter made by hand from PEFT's rules (tools/peft_fixtures.py) loads and computes PyTorch's float64 logits
//   of base + adapter (merged as PEFT merges, transposed for GPT-2's Conv1D), with and without the KV cache;
// - tsdpo writes what PEFT writes for the same model: tensor names, shapes, target_modules, fan_in_fan_out;
// - the shared-A forward equals the fused projection computed by hand, x·Wᵀ + s·(x·Aᵀ)·Bᵀ on the fused output, split;
// - A's and B's gradients match finite differences (dA is the sum over the parts), with dropout and checkpointing;
// - merging gives the same model, also through an HF export; the PEFT files round-trip bit for bit;
// - target names: the family's own, "all-linear", and an error that says what a Phi-3 calls q_proj;
// - LoRA DPO trains on tiny Phi-3 and GPT-2 models.

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jsBackend } from "../src/backend/js/kernels.js";
import type { Buf } from "../src/backend/contract.js";
import { TsdpoError } from "../src/errors.js";
import { exportHf } from "../src/export/hf.js";
import { llamaConfigFromHf } from "../src/io/hfconfig.js";
import { fusedHfLayout } from "../src/io/hflayout.js";
import { type LoadedModel, loadModel } from "../src/io/load.js";
import { loadPeftAdapter, loraTargetsFromPeft, writePeftAdapter } from "../src/io/peft.js";
import { loadModelForUse } from "../src/io/resolve.js";
import { readSafetensors } from "../src/io/safetensors.js";
import type { LlamaConfig } from "../src/model/config.js";
import {
  type Model, backward, cloneModel, createActivations, createKvCache, createModel, decode, forward, logitsOf, paramView,
} from "../src/model/decoder.js";
import { type LoraTarget, createLora, mergeLora } from "../src/model/lora.js";
import { Rng } from "../src/rng.js";
import { resolveTrainConfig } from "../src/train/config.js";
import { train } from "../src/train/train.js";
import { assertAllClose, assertParamGradients, fixture, randomModel, rng, storiesGguf, testBackend, testBackendName } from "./helpers.js";

const be = testBackend();
const tmp = mkdtempSync(join(tmpdir(), "tsdpo-fused-lora-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

const gpt2: LlamaConfig = {
  family: "gpt2", V: 29, C: 16, L: 2, NH: 4, NKV: 4, HS: 4, FF: 24, ropeTheta: 10000, ropeScaling: { type: "none" },
  rmsEps: 1e-5, tiedEmbeddings: true, qkvBias: true, qkNorm: false, maxSeqLen: 16, slidingWindow: null,
  normKind: "layer", positions: "learned", mlp: "plain", linearBiases: true, activation: "gelu_tanh",
};
const phi3: LlamaConfig = {
  family: "phi3", V: 29, C: 16, L: 2, NH: 4, NKV: 2, HS: 4, FF: 20, ropeTheta: 10000, ropeScaling: { type: "none" },
  rmsEps: 1e-5, tiedEmbeddings: false, qkvBias: false, qkNorm: false, maxSeqLen: 16, slidingWindow: 4,
};
const configs = { phi3, gpt2 } as const;
const PEFT_TARGETS = { phi3: ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"], gpt2: ["c_attn", "c_proj", "c_fc"] } as const;

/** A float64 model of `cfg` with adapters on every projection, B random (a fresh B is zero and hides A's role). */
function adapted(cfg: LlamaConfig, seed: number, dropout = 0): Model {
  const model = randomModel(cfg, Float64Array, seed, 0.6);
  model.lora = createLora(model, { r: 3, alpha: 5, dropout, targets: loraTargetsFromPeft(["all-linear"], cfg, "test") }, seed + 1);
  const r = rng(seed + 2);
  for (const a of model.lora.adapters) for (let i = 0; i < a.B.length; i++) a.B[i] = 0.6 * (r() - 0.5);
  return model;
}

const R = 2, T = 6;
const ids = Int32Array.from([1, 4, 7, 2, 9, 3, 3, 8, 0, 5, 11, 6]);
const targets = Int32Array.from([4, 7, 2, 9, 3, 0, 8, 0, 5, 11, 6, 0]);
const mask = Float64Array.from([0, 1, 1, 1, 1, 0, 0, 0.5, 1, -1, 1, 0]);

function expectError(fn: () => unknown, ...parts: (string | RegExp)[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof TsdpoError, `not a TsdpoError: ${e}`);
    for (const p of parts) assert.ok(typeof p === "string" ? e.message.includes(p) : p.test(e.message), `message lacks ${p}: ${e.message}`);
    return true;
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Adapters made as PEFT makes them (tools/peft_fixtures.py)

/** The fixture's base model (float32 weights in a ctor arena), its batch and PyTorch's float64 logits with the adapter. */
function peftFixture(name: "phi3" | "gpt2", ctor: Float32ArrayConstructor | Float64ArrayConstructor) {
  const path = fixture("peft", `${name}-reference.safetensors`);
  const st = readSafetensors(path);
  assert.equal(st.metadata.format, "tsdpo-peft-fixture");
  const cfg = llamaConfigFromHf(JSON.parse(st.metadata.config!), path);
  const model = createModel(cfg, ctor);
  const params = fusedHfLayout(cfg)!.fromHf(cfg, (n) => st.tensors.get(n)!.data as Float32Array);
  for (const e of model.entries) model.params.set(params.get(e.name)!, e.offset);
  const rows = JSON.parse(st.metadata.ids!) as number[][];
  return { model, ids: Int32Array.from(rows.flat()), R: rows.length, T: rows[0]!.length, logits: st.tensors.get("logits")!.data as Float64Array, dir: fixture("peft", name) };
}

function allLogits(b: typeof be, model: Model, ids: Int32Array, R: number, T: number): Float64Array {
  const acts = createActivations(model, R, T);
  forward(b, model, acts, ids, new Int32Array(R * T), R, T);
  return Float64Array.from(logitsOf(b, model, acts));
}

for (const name of ["phi3", "gpt2"] as const) {
  test(`${name}: an adapter PEFT would save loads and computes PyTorch's logits of base + adapter`, () => {
    // float64 on the js kernels: the same function as the float64 reference, to rounding
    const f64 = peftFixture(name, Float64Array);
    const lora = loadPeftAdapter(f64.dir, f64.model, null);
    assert.equal(lora.scale, 2);
    assert.equal(lora.adapters.length, 2 * 4, "4 PEFT modules per layer (GPT-2's c_proj is two)");
    assert.deepEqual(lora.adapters.slice(0, 4).map((a) => a.targets.join("+")), name === "phi3" ? ["wq+wk+wv", "wo", "w_gate+w_up", "w_down"] : ["wq+wk+wv", "wo", "w_up", "w_down"]);
    const want = f64.logits;
    assertAllClose(allLogits(jsBackend, f64.model, f64.ids, f64.R, f64.T), want, 1e-9, 0, `${name} float64 logits`);
    f64.model.lora!.enabled = false;
    const base = allLogits(jsBackend, f64.model, f64.ids, f64.R, f64.T);
    assert.ok(base.some((x, i) => Math.abs(x - want[i]!) > 1e-2), "the adapter changes the logits");
    // float32 on the backend under test
    const f32 = peftFixture(name, Float32Array);
    loadPeftAdapter(f32.dir, f32.model, null);
    const scale = want.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
    assertAllClose(allLogits(be, f32.model, f32.ids, f32.R, f32.T), want, 2e-5 * scale, 0, `${name} float32 logits`);
    // generation sees the adapter too: the KV cache's last logits are the forward's
    const cache = createKvCache(f32.model, f32.T, 3);
    const last = decode(be, f32.model, cache, Array.from(f32.ids.subarray(0, f32.T)));
    assertAllClose(last, want.subarray((f32.T - 1) * f32.model.cfg.V, f32.T * f32.model.cfg.V), 2e-5 * scale, 0, `${name} decode`);
  });

  test(`${name}: tsdpo writes the adapter files PEFT writes (tensor names, shapes, target_modules, fan_in_fan_out)`, () => {
    const { model } = peftFixture(name, Float32Array);
    const cfgTargets = loraTargetsFromPeft([...PEFT_TARGETS[name]], model.cfg, "test");
    model.lora = createLora(model, { r: 4, alpha: 8, dropout: 0, targets: cfgTargets }, 1);
    const dir = join(tmp, `written-${name}`);
    writePeftAdapter(dir, model.lora, { baseModel: `tiny-${name}`, baseFingerprint: null });
    const shapes = (d: string): [string, number[]][] =>
      [...readSafetensors(join(d, "adapter_model.safetensors")).tensors].map(([n, t]): [string, number[]] => [n, t.shape]).sort((a, b) => (a[0] < b[0] ? -1 : 1));
    const peft = fixture("peft", name);
    assert.deepEqual(shapes(dir), shapes(peft), "every tensor name and shape as PEFT saves them");
    const mine = JSON.parse(readFileSync(join(dir, "adapter_config.json"), "utf8")), theirs = JSON.parse(readFileSync(join(peft, "adapter_config.json"), "utf8"));
    assert.deepEqual([...mine.target_modules].sort(), [...theirs.target_modules].sort());
    for (const key of ["fan_in_fan_out", "peft_type", "task_type", "r", "lora_alpha", "bias"]) assert.deepEqual(mine[key], theirs[key], key);
    if (name === "phi3") {
      // the check, spelled out: qkv_proj is ONE adapter, A (r, C), B ((NH + 2·NKV)·HS, r) = (4·8 + 2·2·8, 4)
      const t = readSafetensors(join(dir, "adapter_model.safetensors")).tensors;
      assert.deepEqual(t.get("base_model.model.model.layers.1.self_attn.qkv_proj.lora_A.weight")!.shape, [4, 32]);
      assert.deepEqual(t.get("base_model.model.model.layers.1.self_attn.qkv_proj.lora_B.weight")!.shape, [64, 4]);
      assert.deepEqual(t.get("base_model.model.model.layers.0.mlp.gate_up_proj.lora_B.weight")!.shape, [96, 4]);
      assert.equal(t.has("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"), false);
    } else {
      const t = readSafetensors(join(dir, "adapter_model.safetensors")).tensors;
      assert.deepEqual(t.get("base_model.model.transformer.h.0.attn.c_attn.lora_A.weight")!.shape, [4, 32], "Conv1D: A is still (r, in)");
      assert.deepEqual(t.get("base_model.model.transformer.h.0.attn.c_attn.lora_B.weight")!.shape, [96, 4], "and B (out, r)");
      assert.deepEqual(t.get("base_model.model.transformer.h.1.mlp.c_proj.lora_A.weight")!.shape, [4, 80]);
    }
  });
}

test("GPT-2: only one of the two c_proj modules is written as attn.c_proj (PEFT's c_proj would match both)", () => {
  const model = randomModel(gpt2, Float32Array, 3);
  model.lora = createLora(model, { r: 2, alpha: 4, dropout: 0, targets: loraTargetsFromPeft(["c_attn", "attn.c_proj"], gpt2, "test") }, 1);
  assert.deepEqual(model.lora.cfg.targets, ["wq", "wk", "wv", "wo"]);
  const dir = join(tmp, "attn-c-proj");
  writePeftAdapter(dir, model.lora, { baseModel: "x", baseFingerprint: null });
  assert.deepEqual(JSON.parse(readFileSync(join(dir, "adapter_config.json"), "utf8")).target_modules, ["c_attn", "attn.c_proj"]);
  const back = cloneModel(model);
  assert.deepEqual(loadPeftAdapter(dir, back, null).cfg.targets, ["wq", "wk", "wv", "wo"], "and it reads back to the attention's alone");
});

// ---------------------------------------------------------------------------------------------------------------
// The shared-A computation

/** y (N, OUT) = x·Wᵀ + b + s·(x·Aᵀ)·Bᵀ, by loops: the fused module as one nn.Linear with its LoRA. */
function fusedByHand(x: Buf, N: number, IN: number, W: (o: number, i: number) => number, b: Buf | null, OUT: number, A: Buf, B: Buf, r: number, s: number): Float64Array {
  const y = new Float64Array(N * OUT);
  for (let n = 0; n < N; n++) {
    const u = new Float64Array(r);
    for (let k = 0; k < r; k++) for (let i = 0; i < IN; i++) u[k] += x[n * IN + i]! * A[k * IN + i]!;
    for (let o = 0; o < OUT; o++) {
      let v = b ? b[o]! : 0;
      for (let i = 0; i < IN; i++) v += x[n * IN + i]! * W(o, i);
      for (let k = 0; k < r; k++) v += s * u[k]! * B[o * r + k]!;
      y[n * OUT + o] = v;
    }
  }
  return y;
}

const columns = (y: Float64Array, N: number, OUT: number, c0: number, n: number): Float64Array =>
  Float64Array.from({ length: N * n }, (_, j) => y[Math.floor(j / n) * OUT + c0 + (j % n)]!);

test("GPT-2 c_attn: q, k and v equal the fused Conv1D output x·W + b + s·(x·Aᵀ)·Bᵀ, split in three", () => {
  const model = adapted(gpt2, 11);
  const acts = createActivations(model, R, T);
  forward(jsBackend, model, acts, ids, targets, R, T);
  const { C } = gpt2, N = R * T, lora = model.lora!;
  const hf = fusedHfLayout(gpt2)!.toHf(gpt2, (n) => paramView(model, n));
  for (let l = 0; l < gpt2.L; l++) {
    const a = lora.byLayer[l]!.wq!.adapter;
    assert.equal(a.B.length, 3 * C * 3, "one B over the 3C outputs of c_attn");
    const Wc = hf.get(`transformer.h.${l}.attn.c_attn.weight`)!; // [in, out]
    const y = fusedByHand(acts.layers[l]!.ln1!, N, C, (o, i) => Wc[i * 3 * C + o]!, hf.get(`transformer.h.${l}.attn.c_attn.bias`)!, 3 * C, a.A, a.B, 3, lora.scale);
    const { q, k, v } = acts.layers[l]!; // GPT-2 has no RoPE: these are c_attn's outputs as they are
    assertAllClose(q.subarray(0, N * C), columns(y, N, 3 * C, 0, C), 1e-12, 0, `layer ${l} q`);
    assertAllClose(k.subarray(0, N * C), columns(y, N, 3 * C, C, C), 1e-12, 0, `layer ${l} k`);
    assertAllClose(v.subarray(0, N * C), columns(y, N, 3 * C, 2 * C, C), 1e-12, 0, `layer ${l} v`);
  }
});

test("GPT-2 c_attn with dropout: q, k and v see one dropout mask, as PEFT's one module drops its input once", () => {
  const model = adapted(gpt2, 13, 0.4);
  const acts = createActivations(model, R, T);
  acts.dropout = new Rng(7);
  forward(jsBackend, model, acts, ids, targets, R, T);
  const { C } = gpt2, N = R * T, lora = model.lora!;
  const hf = fusedHfLayout(gpt2)!.toHf(gpt2, (n) => paramView(model, n));
  const a = lora.byLayer[1]!.wq!.adapter;
  const mask = acts.lora!.drop.get("1.wq")!; // the adapter's one mask (decoder.ts loraKey)
  assert.ok(mask.subarray(0, N * C).some((m) => m === 0), "some inputs dropped");
  const x = acts.layers[1]!.ln1!;
  const Wc = hf.get("transformer.h.1.attn.c_attn.weight")!, bias = hf.get("transformer.h.1.attn.c_attn.bias")!;
  const base = fusedByHand(x, N, C, (o, i) => Wc[i * 3 * C + o]!, bias, 3 * C, a.A, new Float64Array(a.B.length), 3, lora.scale);
  const branch = fusedByHand(Float64Array.from(x.subarray(0, N * C), (v, i) => v * mask[i]!), N, C, () => 0, null, 3 * C, a.A, a.B, 3, lora.scale);
  const y = base.map((v, i) => v + branch[i]!);
  const { q, k, v } = acts.layers[1]!;
  assertAllClose(q.subarray(0, N * C), columns(y, N, 3 * C, 0, C), 1e-12, 0, "q");
  assertAllClose(k.subarray(0, N * C), columns(y, N, 3 * C, C, C), 1e-12, 0, "k");
  assertAllClose(v.subarray(0, N * C), columns(y, N, 3 * C, 2 * C, C), 1e-12, 0, "v");
});

test("Phi-3 gate_up_proj and qkv_proj: gate, up and v equal the fused output with one shared A, split", () => {
  const model = adapted(phi3, 21);
  const acts = createActivations(model, R, T);
  forward(jsBackend, model, acts, ids, targets, R, T);
  const { C, FF, NH, NKV, HS } = phi3, N = R * T, lora = model.lora!;
  const hf = fusedHfLayout(phi3)!.toHf(phi3, (n) => paramView(model, n));
  for (let l = 0; l < phi3.L; l++) {
    const a = acts.layers[l]!;
    const gu = lora.byLayer[l]!.w_up!.adapter;
    assert.equal(gu, lora.byLayer[l]!.w_gate!.adapter, "gate and up are parts of one adapter");
    const Wgu = hf.get(`model.layers.${l}.mlp.gate_up_proj.weight`)!; // (2FF, C)
    const y = fusedByHand(a.ln2!, N, C, (o, i) => Wgu[o * C + i]!, null, 2 * FF, gu.A, gu.B, 3, lora.scale);
    assertAllClose(a.gate!.subarray(0, N * FF), columns(y, N, 2 * FF, 0, FF), 1e-12, 0, `layer ${l} gate (first half, as Phi3MLP's chunk)`);
    assertAllClose(a.up.subarray(0, N * FF), columns(y, N, 2 * FF, FF, FF), 1e-12, 0, `layer ${l} up`);
    // q and k leave the layer rotated; v is qkv_proj's last block as it is
    const qkv = lora.byLayer[l]!.wv!.adapter, OUT = (NH + 2 * NKV) * HS, kv = NKV * HS;
    const Wqkv = hf.get(`model.layers.${l}.self_attn.qkv_proj.weight`)!;
    const z = fusedByHand(a.ln1!, N, C, (o, i) => Wqkv[o * C + i]!, null, OUT, qkv.A, qkv.B, 3, lora.scale);
    assertAllClose(a.v.subarray(0, N * kv), columns(z, N, OUT, NH * HS + kv, kv), 1e-12, 0, `layer ${l} v`);
  }
});

for (const [name, cfg] of Object.entries(configs))
  for (const [dropout, checkpointing] of [[0, false], [0.3, true]] as const)
    test(`${name}: A and B gradients match finite differences (shared A of the fused modules; dropout ${dropout}, checkpointing ${checkpointing})`, () => {
      const model = adapted(cfg, 31, dropout);
      const acts = createActivations(model, R, T, checkpointing);
      const S = (): number => {
        acts.dropout = dropout > 0 ? new Rng(99) : null; // the same masks at every evaluation
        const logp = forward(jsBackend, model, acts, ids, targets, R, T);
        let s = 0;
        for (let i = 0; i < R * T; i++) s += mask[i]! * logp[i]!;
        return s;
      };
      S();
      const lora = model.lora!;
      lora.grads.fill(0);
      backward(jsBackend, model, acts, null, mask);
      const r = rng(5);
      for (const a of lora.adapters) {
        // A: several entries, since each sums the contributions of every part; B: entries in every part's rows
        const picks = Array.from({ length: a.parts.length + 2 }, () => ({ j: a.offsetA + Math.floor(r() * a.A.length), what: `layer ${a.layer} ${a.targets.join("+")}.A` }));
        let row = 0;
        for (const p of a.parts) {
          picks.push({ j: a.offsetB + row * 3 + Math.floor(r() * p.B.length), what: `layer ${a.layer} ${p.target} rows of B` });
          row += p.OUT;
        }
        assertParamGradients(lora.params, lora.grads, S, picks);
      }
    });

test("the parts of a fused adapter share A: a fused adapter with B's row blocks equals separate adapters with copies of A, and its dA is their sum", () => {
  // Three separate adapters on q, k, v (a Llama-like layout of the same Phi-3 weights) with A copied from the fused
  // one and B cut into its blocks compute the same function; the fused dA is the sum of their dAs.
  const fused = adapted(phi3, 41);
  const split = cloneModel(fused);
  const plain: LlamaConfig = { ...phi3, family: "llama" };
  split.cfg = plain;
  split.lora = createLora(split, { r: 3, alpha: 5, dropout: 0, targets: ["wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down"] }, 0);
  for (let l = 0; l < phi3.L; l++)
    for (const t of ["wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down"] as LoraTarget[]) {
      const from = fused.lora!.byLayer[l]![t]!, to = split.lora.byLayer[l]![t]!;
      to.A.set(from.A);
      to.B.set(from.B);
    }
  split.cfg = phi3; // the same decoder options; only the adapters' grouping differs
  const run = (m: Model): Float64Array => {
    const acts = createActivations(m, R, T);
    const lp = Float64Array.from(forward(jsBackend, m, acts, ids, targets, R, T));
    m.lora!.grads.fill(0);
    backward(jsBackend, m, acts, null, mask);
    return lp;
  };
  assertAllClose(run(split), run(fused), 1e-12, 0, "log-probs");
  for (let l = 0; l < phi3.L; l++) {
    const qkv = fused.lora!.byLayer[l]!.wq!.adapter;
    const sum = new Float64Array(qkv.dA.length);
    for (const t of ["wq", "wk", "wv"] as const) split.lora.byLayer[l]![t]!.dA.forEach((x, i) => (sum[i] += x));
    assertAllClose(qkv.dA, sum, 1e-12, 1e-12, `layer ${l} dA of qkv_proj = dA_q + dA_k + dA_v`);
    for (const t of ["wq", "wk", "wv"] as const) assertAllClose(fused.lora!.byLayer[l]![t]!.dB, split.lora.byLayer[l]![t]!.dB, 1e-12, 1e-12, `layer ${l} ${t} rows of dB`);
  }
});

// ---------------------------------------------------------------------------------------------------------------
// Merge, export and the PEFT files

function tinyLoaded(cfg: LlamaConfig): LoadedModel {
  const stories = loadModel(storiesGguf); // borrowed for its tokenizer (V 512)
  return { ...stories, model: randomModel({ ...cfg, V: 512, maxSeqLen: 64 }, Float32Array, 17, 0.5), format: "gguf" };
}

for (const [name, cfg] of Object.entries(configs)) {
  test(`${name}: merging gives base + adapter's logits, also through an HF export (the fused tensors hold W + s·B·A)`, () => {
    const model = adapted(cfg, 51);
    const want = allLogits(jsBackend, model, ids, R, T);
    const merged = cloneModel(model);
    mergeLora(merged, model.lora!);
    assertAllClose(allLogits(jsBackend, merged, ids, R, T), want, 1e-11, 0, "merged float64");

    const loaded = tinyLoaded(cfg);
    loaded.model.lora = createLora(loaded.model, { r: 2, alpha: 4, dropout: 0, targets: loraTargetsFromPeft(["all-linear"], loaded.model.cfg, "test") }, 3);
    const r = rng(8);
    for (const a of loaded.model.lora.adapters) for (let i = 0; i < a.B.length; i++) a.B[i] = 0.4 * (r() - 0.5);
    const dir = join(tmp, `export-${name}`);
    exportHf(loaded, dir);
    const back = loadModel(dir);
    assert.equal(back.model.lora, null);
    const x = Int32Array.from([1, 403, 407, 261, 378, 432, 383, 286]);
    const withAdapter = allLogits(be, loaded.model, x, 1, 8);
    loaded.model.lora.enabled = false;
    const base = allLogits(be, loaded.model, x, 1, 8);
    assert.ok(base.some((v, i) => Math.abs(v - withAdapter[i]!) > 1e-2), "the adapter matters");
    assertAllClose(allLogits(be, back.model, x, 1, 8), withAdapter, 2e-5, 2e-5, `${name} exported and loaded back`);
  });

  test(`${name}: a written adapter reads back bit for bit and computes the same log-probs`, () => {
    const model = adapted(cfg, 61);
    const m32 = randomModel(cfg, Float32Array, 61, 0.6);
    m32.lora = createLora(m32, { r: 3, alpha: 5, dropout: 0.1, targets: model.lora!.cfg.targets }, 3);
    m32.lora.params.set(model.lora!.params);
    const dir = join(tmp, `roundtrip-${name}`);
    writePeftAdapter(dir, m32.lora, { baseModel: "tiny", baseFingerprint: "fp" });
    const back = randomModel(cfg, Float32Array, 61, 0.6);
    const lora = loadPeftAdapter(dir, back, "fp");
    assert.deepEqual(lora.cfg, m32.lora.cfg);
    assert.deepEqual(Array.from(lora.params), Array.from(m32.lora.params), "the adapter arena, bit for bit");
    const lp = (m: Model): number[] => Array.from(forward(be, m, createActivations(m, R, T), ids, targets, R, T));
    assert.deepEqual(lp(back), lp(m32));
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Target names

test("target modules by the family's own names; null is q, k, v, o; all-linear is every projection", () => {
  const stories = loadModel(storiesGguf).model.cfg;
  const t = (spec: string[] | string | null, cfg: LlamaConfig): string => loraTargetsFromPeft(spec, cfg, "cfg").join(",");
  assert.equal(t(null, phi3), "wq,wk,wv,wo");
  assert.equal(t(null, gpt2), "wq,wk,wv,wo");
  assert.equal(t(null, stories), "wq,wk,wv,wo");
  assert.equal(t(["qkv_proj", "o_proj", "gate_up_proj", "down_proj"], phi3), "wq,wk,wv,wo,w_gate,w_up,w_down");
  assert.equal(t(["all-linear"], phi3), "wq,wk,wv,wo,w_gate,w_up,w_down");
  assert.equal(t(["c_attn", "c_proj", "c_fc"], gpt2), "wq,wk,wv,wo,w_up,w_down");
  assert.equal(t(["all-linear"], gpt2), "wq,wk,wv,wo,w_up,w_down", "GPT-2 has no gate");
  assert.equal(t(["mlp.c_proj"], gpt2), "w_down");
  assert.equal(t(["self_attn.qkv_proj"], phi3), "wq,wk,wv");
  // PEFT's saved form of all-linear (every module's full path) and its regex form
  assert.equal(t(["model.layers.0.self_attn.qkv_proj", "model.layers.1.self_attn.qkv_proj", "model.layers.0.mlp.down_proj"], phi3), "wq,wk,wv,w_down");
  assert.equal(t(".*\\.(c_attn|c_fc)", gpt2), "wq,wk,wv,w_up");
});

test("a module name of another family is refused with what this model calls it", () => {
  const stories = loadModel(storiesGguf).model.cfg;
  expectError(() => loraTargetsFromPeft(["q_proj", "v_proj"], phi3, "training config: lora_target_modules"),
    "training config: lora_target_modules", `"q_proj"`, "Phi-3", `use "qkv_proj"`, "one shared A");
  expectError(() => loraTargetsFromPeft(["gate_proj"], phi3, "cfg"), "gate_up_proj");
  expectError(() => loraTargetsFromPeft(["q_proj"], gpt2, "cfg"), "GPT-2", `use "c_attn"`);
  expectError(() => loraTargetsFromPeft(["o_proj"], gpt2, "cfg"), `use "attn.c_proj"`);
  expectError(() => loraTargetsFromPeft(["gate_proj"], gpt2, "cfg"), "no gated MLP");
  expectError(() => loraTargetsFromPeft(["qkv_proj"], stories, "cfg"), `use "q_proj", "k_proj", "v_proj"`);
  expectError(() => loraTargetsFromPeft(["c_attn"], stories, "cfg"), `use "q_proj", "k_proj", "v_proj"`);
  expectError(() => loraTargetsFromPeft(["query_key_value"], phi3, "cfg"), "query_key_value", "is not a projection", "qkv_proj, o_proj, gate_up_proj, down_proj");
  // tsdpo's own names must keep a fused module whole
  expectError(() => createLora(randomModel(phi3, Float32Array, 1), { r: 2, alpha: 4, dropout: 0, targets: ["wq", "wv"] }, 1), "without wk", "one fused projection");
});

// ---------------------------------------------------------------------------------------------------------------
// Training

for (const [name, cfg] of Object.entries(configs))
  test(`${name}: LoRA DPO trains (step 1 at ln 2, then the loss moves), saves a PEFT adapter and exports merged (${testBackendName})`, async () => {
    const modelDir = join(tmp, `base-${name}`);
    exportHf(tinyLoaded(cfg), modelDir);
    const runDir = join(tmp, `run-${name}`);
    const trainCfg = resolveTrainConfig({
      model: modelDir, data: fixture("data", "standard.jsonl"), max_length: 48, per_device_train_batch_size: 2, learning_rate: 2e-2,
      max_steps: 3, use_peft: true, lora_r: 4, lora_alpha: 8, lora_dropout: 0.1, backend: testBackendName,
      ...(name === "gpt2" ? { lora_target_modules: ["c_attn", "c_proj", "c_fc"] } : {}),
    }, "test");
    await train(trainCfg, runDir, { quiet: true });
    const m = readFileSync(join(runDir, "metrics.jsonl"), "utf8").trim().split("\n").map((line) => JSON.parse(line) as Record<string, number>);
    assert.equal(m[0]!.loss, Math.LN2, "B = 0 at step 1: policy = reference");
    assert.ok(m.some((row) => row.loss !== undefined && Math.abs(row.loss - Math.LN2) > 1e-4), "the adapters learn");
    const saved = JSON.parse(readFileSync(join(runDir, "final", "adapter_config.json"), "utf8"));
    assert.deepEqual(saved.target_modules, name === "phi3" ? ["qkv_proj", "o_proj"] : ["c_attn", "c_proj", "c_fc"]);
    assert.equal(saved.fan_in_fan_out, name === "gpt2");
    const tuned = loadModelForUse(runDir);
    assert.ok(tuned.model.lora, "final/ loads as base + adapter");
    const out = join(tmp, `merged-${name}`);
    exportHf(tuned, out);
    const x = Int32Array.from([1, 403, 407, 261, 378, 432]);
    assertAllClose(allLogits(be, loadModel(out).model, x, 1, 6), allLogits(be, tuned.model, x, 1, 6), 2e-5, 2e-5, "export --format hf of the run");
  });
