// PEFT adapters: tsdpo writes the names, shapes and config PEFT's LoraModel uses, reads them back exactly, and
// refuses adapters that do not fit the base model with a message that says which tensor and why.

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TsdpoError } from "../src/errors.js";
import { loadModel } from "../src/io/load.js";
import { loadPeftAdapter, writePeftAdapter } from "../src/io/peft.js";
import { readSafetensors, writeSafetensors } from "../src/io/safetensors.js";
import { cloneModel, createActivations, forward } from "../src/model/decoder.js";
import { createLora } from "../src/model/lora.js";
import { assertAllClose, rng, storiesGguf, testBackend } from "./helpers.js";

const be = testBackend();

const base = loadModel(storiesGguf).model;

function trainedLookingAdapterDir(fingerprint: string | null = "base-fp"): { dir: string; cleanup: () => void; model: ReturnType<typeof cloneModel> } {
  const dir = mkdtempSync(join(tmpdir(), "tsdpo-peft-"));
  const m = cloneModel(base);
  const lora = createLora(m, { r: 4, alpha: 8, dropout: 0.05, targets: ["wq", "wk", "wv", "wo", "w_down"] }, 3);
  const r = rng(1);
  for (const a of lora.adapters) for (let i = 0; i < a.B.length; i++) a.B[i] = 0.1 * (r() - 0.5);
  m.lora = lora;
  writePeftAdapter(dir, lora, { baseModel: "stories260K.gguf", baseFingerprint: fingerprint });
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }), model: m };
}

function expectError(fn: () => unknown, ...parts: string[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof TsdpoError, `not a TsdpoError: ${e}`);
    for (const p of parts) assert.ok(e.message.includes(p), `message lacks "${p}": ${e.message}`);
    return true;
  });
}

test("adapter files follow PEFT's names, shapes and config keys", () => {
  const { dir, cleanup } = trainedLookingAdapterDir();
  try {
    const cfg = JSON.parse(readFileSync(join(dir, "adapter_config.json"), "utf8"));
    assert.equal(cfg.peft_type, "LORA");
    assert.equal(cfg.task_type, "CAUSAL_LM");
    assert.equal(cfg.r, 4);
    assert.equal(cfg.lora_alpha, 8);
    assert.deepEqual(cfg.target_modules, ["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"]);
    const st = readSafetensors(join(dir, "adapter_model.safetensors"));
    assert.equal(st.tensors.size, 5 * 5 * 2); // 5 layers × 5 modules × (A, B)
    // stories260K: C=64, NKV·HS=32, FF=172
    assert.deepEqual(st.tensors.get("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight")!.shape, [4, 64]);
    assert.deepEqual(st.tensors.get("base_model.model.model.layers.0.self_attn.k_proj.lora_B.weight")!.shape, [32, 4]);
    assert.deepEqual(st.tensors.get("base_model.model.model.layers.4.mlp.down_proj.lora_A.weight")!.shape, [4, 172]);
    assert.deepEqual(st.tensors.get("base_model.model.model.layers.4.mlp.down_proj.lora_B.weight")!.shape, [64, 4]);
  } finally {
    cleanup();
  }
});

test("an adapter round-trips: every A and B comes back bit for bit, and the model computes the same bits", () => {
  const { dir, cleanup, model: saved } = trainedLookingAdapterDir();
  try {
    const m1 = cloneModel(base);
    const lora = loadPeftAdapter(dir, m1, "base-fp");
    assert.equal(lora.cfg.r, 4);
    assert.equal(lora.scale, 2);
    const original = saved.lora!;
    assert.equal(lora.adapters.length, original.adapters.length);
    assert.equal(lora.adapters.length, 5 * 5, "5 layers × 5 modules");
    for (let l = 0; l < original.byLayer.length; l++)
      for (const [name, a] of Object.entries(original.byLayer[l]!)) {
        const back = lora.byLayer[l]![name as keyof typeof lora.byLayer[number]];
        assert.ok(back, `layer ${l} ${name} is loaded`);
        assert.deepEqual(Array.from(back.A), Array.from(a!.A), `layer ${l} ${name} A`);
        assert.deepEqual(Array.from(back.B), Array.from(a!.B), `layer ${l} ${name} B`);
      }
    // and the file holds what the adapter held
    const st = readSafetensors(join(dir, "adapter_model.safetensors"));
    assertAllClose(lora.byLayer[2]!.wo!.B, st.tensors.get("base_model.model.model.layers.2.self_attn.o_proj.lora_B.weight")!.data as Float32Array, 0, 0, "B");
    const ids = Int32Array.from([1, 403, 407, 261, 378]), targets = Int32Array.from([403, 407, 261, 378, 432]);
    const loaded = Array.from(forward(be, m1, createActivations(m1, 1, 5), ids, targets, 1, 5));
    const before = Array.from(forward(be, saved, createActivations(saved, 1, 5), ids, targets, 1, 5));
    assert.deepEqual(loaded, before, "the loaded adapter gives the saved one's log-probs, bit for bit");
    const plain = forward(be, base, createActivations(base, 1, 5), ids, targets, 1, 5);
    assert.ok(loaded.some((x, i) => Math.abs(x - plain[i]!) > 1e-4), "the adapter changes the model");
  } finally {
    cleanup();
  }
});

test("mismatched adapters give precise errors", () => {
  const { dir, cleanup } = trainedLookingAdapterDir();
  try {
    const st = join(dir, "adapter_model.safetensors");
    const cfgPath = join(dir, "adapter_config.json");
    const cfg = JSON.parse(readFileSync(cfgPath, "utf8"));
    // a different base model
    expectError(() => loadPeftAdapter(dir, cloneModel(base), "other-fp"), "trained on a different base model");
    // wrong rank: the config says 8, the tensors are rank 4
    writeFileSync(cfgPath, JSON.stringify({ ...cfg, r: 8 }));
    expectError(() => loadPeftAdapter(dir, cloneModel(base), null), "q_proj.lora_A.weight has shape [4, 64]", "r=8", "[8, 64]");
    // a target module with no tensors
    writeFileSync(cfgPath, JSON.stringify({ ...cfg, target_modules: [...cfg.target_modules, "up_proj"] }));
    expectError(() => loadPeftAdapter(dir, cloneModel(base), null), "layers.0.mlp.up_proj.lora_A.weight is missing", "targets up_proj");
    // tensors for a module the config does not list
    writeFileSync(cfgPath, JSON.stringify({ ...cfg, target_modules: ["q_proj", "k_proj", "v_proj", "o_proj"] }));
    expectError(() => loadPeftAdapter(dir, cloneModel(base), null), "down_proj.lora_A.weight does not belong to a module listed in target_modules");
    // an unknown module name
    writeFileSync(cfgPath, JSON.stringify({ ...cfg, target_modules: ["query_key_value"] }));
    expectError(() => loadPeftAdapter(dir, cloneModel(base), null), "query_key_value", "is not a projection");
    // a tensor with the wrong shape (an adapter for a wider model)
    writeFileSync(cfgPath, JSON.stringify(cfg));
    const t = readSafetensors(st);
    const tensors = [...t.tensors].map(([name, v]) => ({ name, shape: v.shape, data: v.data as Float32Array }));
    const i = tensors.findIndex((x) => x.name.endsWith("layers.1.self_attn.v_proj.lora_B.weight"));
    tensors[i] = { ...tensors[i]!, shape: [64, 4], data: new Float32Array(256) };
    writeSafetensors(st, tensors, { metadata: t.metadata });
    expectError(() => loadPeftAdapter(dir, cloneModel(base), null), "v_proj.lora_B.weight has shape [64, 4]", "[32, 4]");
    // no config at all
    rmSync(cfgPath);
    expectError(() => loadPeftAdapter(dir, cloneModel(base), null), "no adapter_config.json");
  } finally {
    cleanup();
  }
});
