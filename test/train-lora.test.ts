// LoRA DPO through the trainer: step 0 is policy = reference (loss ln 2, zero rewards), only the adapters change,
// the reference really is the base model (adapters off), and a resumed LoRA run with dropout ends bit-identical.

import { test } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel } from "../src/io/load.js";
import { loadModelForUse } from "../src/io/resolve.js";
import { loadPreferencePairs } from "../src/data/load.js";
import { pairLogps, preferenceAccuracy } from "../src/train/logps.js";
import { createActivations, forward } from "../src/model/decoder.js";
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

test("LoRA DPO's reference is the base model: after training, rewards/chosen = β·(log π − log π_base) with the base loaded on its own", async () => {
  // Step 0 cannot tell (B = 0 makes policy = base whatever the reference is), so train for real: the rows of steps 2
  // and 3 are computed with the adapter as saved after steps 1 and 2. Every pair is in every step (batch 4 > 3 pairs),
  // and dropout is off, so each logged reward is β·mean over the pairs of (log π_adapter − log π_ref), and a trainer
  // that left the adapters on for the reference would log 0.
  const root = mkdtempSync(join(tmpdir(), "tsdpo-lora-"));
  try {
    const dir = join(root, "run");
    const beta = 0.5;
    await run(dir, { beta, max_steps: 3, save_steps: 1, lora_dropout: 0, per_device_train_batch_size: 4, learning_rate: 2e-2 });
    const base = loadModel(storiesGguf);
    const pairs = (await loadPreferencePairs(data, base.tokenizer, { maxLength: 64 })).pairs;
    assert.equal(pairs.length, 3);
    const baseRows = pairLogps(be, base.model, pairs);
    const rows = metrics(dir);
    for (const step of [2, 3]) {
      const policy = loadModelForUse(join(dir, "checkpoints", `step-${step - 1}`)).model;
      assert.ok(policy.lora, `checkpoints/step-${step - 1} is an adapter`);
      const want = preferenceAccuracy(pairLogps(be, policy, pairs), baseRows, beta);
      const m = rows.find((r) => r.step === step)!;
      assert.ok(Math.abs(want.chosen) > 1e-3, `step ${step}: the adapter has moved the policy (reward ${want.chosen})`);
      const tol = testBackendName === "js" ? 1e-9 : 1e-5;
      assert.ok(Math.abs(m["rewards/chosen"]! - want.chosen) <= tol * (1 + Math.abs(want.chosen)),
        `step ${step}: logged rewards/chosen ${m["rewards/chosen"]}, β·(log π − log π_base) = ${want.chosen}`);
      assert.ok(Math.abs(m["rewards/rejected"]! - want.rejected) <= tol * (1 + Math.abs(want.rejected)),
        `step ${step}: logged rewards/rejected ${m["rewards/rejected"]}, recomputed ${want.rejected}`);
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
