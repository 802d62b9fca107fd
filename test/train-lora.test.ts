// LoRA DPO through the trainer: step 0 is policy = reference (loss ln 2, zero rewards), only the adapters change,
// the reference really is the base model (adapters off), and a resumed LoRA run with dropout ends bit-identical.

import { test } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel } from "../src/io/load.js";
import { loadModelForUse } from "../src/io/resolve.js";
import { createActivations, forward } from "../src/model/llama.js";
import { resolveTrainConfig } from "../src/train/config.js";
import { train } from "../src/train/train.js";
import { fixture, storiesGguf, testBackend, testBackendName } from "./helpers.js";

const be = testBackend();

const data = fixture("data", "standard.jsonl");

async function run(dir: string, extra: Record<string, unknown> = {}, resume = false): Promise<void> {
  const cfg = resolveTrainConfig({
    model: storiesGguf, data, max_length: 64, per_device_train_batch_size: 2, learning_rate: 5e-3, max_steps: 4,
    use_peft: true, lora_r: 4, lora_alpha: 8, lora_dropout: 0.1, lora_target_modules: ["q_proj", "v_proj", "down_proj"],
    backend: testBackendName, ...extra,
  }, "test");
  await train(cfg, dir, { quiet: true, resume });
}

const metrics = (dir: string): Record<string, number>[] =>
  readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, number>);

test("LoRA DPO: step 0 has loss ln 2 and zero rewards, for several β", async () => {
  const root = mkdtempSync(join(tmpdir(), "tsdpo-lora-"));
  try {
    for (const beta of [0.05, 0.5]) {
      const dir = join(root, `b${beta}`);
      await run(dir, { beta, max_steps: 1 });
      const m = metrics(dir)[0]!;
      assert.equal(m.loss, Math.LN2);
      assert.equal(m["rewards/chosen"], 0);
      assert.equal(m["rewards/rejected"], 0);
      assert.ok(m.grad_norm! > 0, "adapters still get a gradient through B·A (B starts at zero, dB does not)");
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("LoRA DPO trains only the adapters: the final folder is a PEFT adapter and the base is the reference", async () => {
  const root = mkdtempSync(join(tmpdir(), "tsdpo-lora-"));
  try {
    const dir = join(root, "run");
    await run(dir);
    const tuned = loadModelForUse(dir);
    const base = loadModel(storiesGguf).model;
    assert.ok(tuned.model.lora, "the run's final/ loads as base + adapter");
    assert.deepEqual(Array.from(tuned.model.params), Array.from(base.params), "base weights unchanged");
    const ids = Int32Array.from([1, 403, 407, 261, 378, 432]), targets = Int32Array.from([403, 407, 261, 378, 432, 383]);
    const a = createActivations(tuned.model, 1, 6);
    const withAdapters = Float32Array.from(forward(be, tuned.model, a, ids, targets, 1, 6));
    tuned.model.lora!.enabled = false;
    const off = Float32Array.from(forward(be, tuned.model, a, ids, targets, 1, 6));
    const plain = forward(be, base, createActivations(base, 1, 6), ids, targets, 1, 6);
    assert.deepEqual(Array.from(off), Array.from(plain), "adapters off = the base model, exactly");
    assert.ok(withAdapters.some((x, i) => x !== plain[i]), "the trained adapters change the model");
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("a LoRA run with dropout resumed from a checkpoint ends bit-identical to an uninterrupted one", async () => {
  const root = mkdtempSync(join(tmpdir(), "tsdpo-lora-"));
  try {
    const full = join(root, "full");
    await run(full, { max_steps: 6, save_steps: 2, gradient_accumulation_steps: 2 });
    const cut = join(root, "cut");
    cpSync(full, cut, { recursive: true });
    for (const d of ["final", "checkpoints/step-4", "checkpoints/step-6"]) rmSync(join(cut, d), { recursive: true });
    const cfg = resolveTrainConfig(JSON.parse(readFileSync(join(cut, "config.json"), "utf8")), "saved");
    await train(cfg, cut, { quiet: true, resume: true });
    assert.deepEqual(readFileSync(join(cut, "final", "adapter_model.safetensors")), readFileSync(join(full, "final", "adapter_model.safetensors")));
    assert.deepEqual(metrics(cut).map((m) => m.step), [1, 2, 3, 4, 5, 6]);
    assert.deepEqual(metrics(cut).map((m) => m.loss), metrics(full).map((m) => m.loss));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
