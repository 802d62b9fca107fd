// The fit planner (src/train/plan.ts) adds up the buffers a run allocates without allocating them. These tests pin
// its arithmetic against the buffers themselves: the parameter arena and frozen blocks of real models (float32,
// quantised, bf16 halves), the LoRA arena, gradients, AdamW moments, the reference copy in each ref_dtype and the
// activation arenas (with and without checkpointing, with LoRA dropout). And the planner's refusal: the CLI refuses
// a run over the memory available and names the settings that would fit.

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TokenizedPair } from "../src/data/types.js";
import { loadModel, readModelHeader } from "../src/io/load.js";
import { type Activations, cloneModel, createGradients, createModel, type Model } from "../src/model/decoder.js";
import { createLora, LORA_TARGETS, type LoraTarget } from "../src/model/lora.js";
import { quantisedCopy } from "../src/model/quantise.js";
import { activationsForPairs } from "../src/train/logps.js";
import { type PlanSpec, type Storage, planMemory, stepFlops, trainableCount } from "../src/train/plan.js";
import { exportGguf } from "../src/export/gguf.js";
import { repoRoot, storiesGguf } from "./helpers.js";

const tmp = mkdtempSync(join(tmpdir(), "tsdpo-plan-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

const stories = loadModel(storiesGguf).model;

function pairs(n: number, P: number, cw: number, cl: number): TokenizedPair[] {
  const ids = (k: number, len: number): Int32Array => Int32Array.from({ length: len }, (_, i) => (7 * i + k) % 500);
  return Array.from({ length: n }, (_, k) => ({
    source: { file: "t", format: "jsonl", index: k, line: k + 1 }, promptIds: ids(k, P), chosenIds: ids(k + 1, cw), rejectedIds: ids(k + 2, cl), truncated: false,
  }));
}

function storageOf(model: Model): Map<string, Storage> {
  return new Map([...model.quant.entries()].map(([name, w]) => [name, w.type]));
}

function spec(model: Model, acts: Activations, over: Partial<PlanSpec>): PlanSpec {
  return {
    cfg: model.cfg, storage: storageOf(model), fileBuffer: 0, loaderCopies: 0, blocksInFile: false, loaderTransient: 0, lora: null, refCopy: null,
    refForward: true, rows: acts.maxRows, T: acts.maxT, answerTokens: 10, checkpointing: acts.checkpointing, threads: 2, backend: "js", ...over,
  };
}

/** Bytes createActivations allocated: the arena, the int32 index arrays, the RoPE tables and the LoRA buffers. */
function activationBytes(acts: Activations): number {
  let b = acts.x[0]!.buffer.byteLength + acts.ids.byteLength + acts.pos.byteLength + acts.rows.byteLength + acts.targets.byteLength;
  for (const t of new Set(acts.rope)) if (t) b += t.cos.byteLength + t.sin.byteLength; // shared tables once
  if (acts.lora) {
    b += [...acts.lora.u.values(), ...acts.lora.drop.values()].reduce((a, x) => a + x.byteLength, 0);
    b += acts.lora.xDrop.byteLength + acts.lora.out.byteLength + acts.lora.du.byteLength + acts.lora.dx.byteLength;
  }
  return b;
}

const quantBytes = (m: Model): number => [...m.quant.values()].reduce((a, w) => a + w.data.byteLength, 0);

test("full fine-tuning: the plan's weights, gradients, moments, reference copy and activations are the allocations", () => {
  const ps = pairs(3, 9, 5, 7);
  for (const checkpointing of [false, true]) {
    const acts = activationsForPairs(stories, ps, 3, true, checkpointing);
    for (const refCopy of ["f32", "bf16", "q8_0"] as const) {
      const s = spec(stories, acts, { refCopy });
      const p = planMemory(s, 0).items;
      assert.equal(p.weights_float32, stories.params.byteLength);
      assert.equal(p.weights_blocks, 0);
      assert.equal(p.gradients, createGradients(stories).grads.byteLength);
      assert.equal(p.optimizer, 2 * stories.params.byteLength, "AdamW m and v, float32 like the arena");
      const ref = refCopy === "f32" ? cloneModel(stories) : quantisedCopy(stories, refCopy === "bf16" ? "BF16" : "Q8_0");
      assert.equal(p.reference, ref.params.byteLength + quantBytes(ref), `reference copy in ${refCopy}`);
      assert.equal(p.activations, activationBytes(acts), `activations, checkpointing ${checkpointing}`);
    }
  }
});

test("LoRA on a quantised base: frozen blocks, adapter arena and gradients, and LoRA's activation buffers", () => {
  for (const [type, targets, dropout] of [["Q8_0", LORA_TARGETS, 0.1], ["Q5_0", ["wq", "wv"], 0]] as const) {
    const model = quantisedCopy(stories, type);
    model.lora = createLora(model, { r: 4, alpha: 8, dropout, targets: [...targets] as LoraTarget[] }, 1);
    const acts = activationsForPairs(model, pairs(2, 6, 4, 3), 2, true, false);
    const s = spec(model, acts, { lora: { r: 4, dropout, targets: [...targets] as LoraTarget[] } });
    const p = planMemory(s, 0).items;
    assert.equal(p.weights_float32, model.params.byteLength, "norms (and rows the blocks cannot tile) stay float32");
    assert.equal(p.weights_blocks, quantBytes(model));
    assert.equal(trainableCount(s), model.lora.params.length);
    assert.equal(p.trainable, model.lora.params.byteLength);
    assert.equal(p.gradients, model.lora.grads.byteLength);
    assert.equal(p.reference, 0, "LoRA's reference is the base with the adapters off");
    assert.equal(p.activations, activationBytes(acts), `${type} activations with LoRA (dropout ${dropout})`);
  }
});

test("LoRA on fused modules (Phi-3's qkv_proj and gate_up_proj, GPT-2's c_attn): one A per module in the arena and the activations", () => {
  for (const family of ["phi3", "gpt2"] as const) {
    const cfg = family === "phi3" ? { ...stories.cfg, family } : { ...stories.cfg, family, NKV: stories.cfg.NH, normKind: "layer" as const, positions: "learned" as const, mlp: "plain" as const, linearBiases: true, activation: "gelu_tanh" as const };
    const model = createModel(cfg);
    const targets: LoraTarget[] = family === "phi3" ? [...LORA_TARGETS] : ["wq", "wk", "wv", "wo", "w_up", "w_down"];
    for (const dropout of [0, 0.1]) {
      model.lora = createLora(model, { r: 4, alpha: 8, dropout, targets }, 1);
      const acts = activationsForPairs(model, pairs(2, 6, 4, 3), 2, true, false);
      const s = spec(model, acts, { lora: { r: 4, dropout, targets } });
      assert.equal(trainableCount(s), model.lora.params.length, `${family}: A counted once per fused module`);
      assert.equal(planMemory(s, 0).items.activations, activationBytes(acts), `${family} activations with LoRA (dropout ${dropout})`);
    }
  }
});

test("the header reader gives each tensor the storage the loader gives it (GGUF blocks, HF halves, dequantize)", () => {
  const q8 = join(tmp, "stories-q8.gguf");
  exportGguf(loadModel(storiesGguf), q8, { dtype: "Q8_0" });
  for (const opts of [{}, { dequantize: true }]) {
    const loaded = loadModel(q8, Float32Array, opts).model;
    const header = readModelHeader(q8, opts);
    assert.deepEqual([...header.storage.entries()].filter(([, t]) => t !== "F32"), [...storageOf(loaded).entries()]);
    const s = { ...spec(loaded, activationsForPairs(loaded, pairs(1, 3, 2, 2), 1, true), {}), storage: header.storage };
    assert.equal(planMemory(s, 0).items.weights_float32, loaded.params.byteLength, `arena, ${JSON.stringify(opts)}`);
  }
});

test("step FLOPs: the reference forward, checkpointing's recomputation and full fine-tuning's weight gradients add up", () => {
  const acts = activationsForPairs(stories, pairs(2, 8, 4, 4), 2, true);
  const { C, NH, NKV, HS, FF, V, L } = stories.cfg;
  const base = spec(stories, acts, { refForward: false, lora: { r: 2, dropout: 0, targets: [] } });
  const N = base.rows * base.T, M = base.answerTokens;
  const proj = C * NH * HS + 2 * C * NKV * HS + NH * HS * C + 3 * C * FF, attn = 2 * NH * HS * base.T * base.T * base.rows;
  const forward = L * (2 * N * proj + attn) + 2 * M * C * V;
  // LoRA without targets: forward + dinp backward (attention ×2.5, the head's logits twice) and nothing else
  assert.equal(stepFlops(base), forward + L * (2 * N * proj + 2.5 * attn) + 4 * M * C * V);
  assert.equal(stepFlops({ ...base, refForward: true }) - stepFlops(base), forward);
  assert.equal(stepFlops({ ...base, checkpointing: true }) - stepFlops(base), L * (2 * N * (proj - C * FF) + attn));
  const full = spec(stories, acts, { refForward: false });
  assert.equal(stepFlops(full) - stepFlops(base), L * 2 * N * proj + 2 * M * C * V, "dW of every product");
});

test("a run over the memory available is refused, naming the settings that would fit; --force lets it through", () => {
  const cli = join(repoRoot, "dist", "src", "cli", "main.js");
  const data = join(tmp, "pairs.jsonl");
  // long rows, so that 8 pairs per micro-batch need far more activation memory than 1 (tens of MB on stories260K,
  // well above the run-to-run noise of the process's own size)
  const story = Array.from({ length: 300 }, (_, i) => ["the", "cat", "sat", "on", "a", "mat", "and", "smiled"][i % 8]).join(" ");
  writeFileSync(data, Array.from({ length: 8 }, (_, i) => JSON.stringify({ prompt: `${story} ${i}`, chosen: " there was a happy cat.", rejected: " there was a sad dog." })).join("\n") + "\n");
  const config = join(tmp, "run.json");
  writeFileSync(config, JSON.stringify({ model: storiesGguf, data, per_device_train_batch_size: 8 }));
  const plan = (extra: string[], env: NodeJS.ProcessEnv = process.env) => spawnSync(process.execPath, [cli, "plan", config, ...extra], { encoding: "utf8", env });
  const peakOf = (r: ReturnType<typeof plan>): number => {
    assert.equal(r.status, 0, `plan failed: ${r.stdout}${r.stderr}`);
    return Number(/predicted peak memory (\d+) MB/.exec(r.stdout)?.[1]);
  };
  const p8 = peakOf(plan([])), p1 = peakOf(plan(["--per_device_train_batch_size", "1", "--per_device_eval_batch_size", "1"]));
  assert.ok(p8 - p1 >= 30, `batch 8 (${p8} MB) against batch 1 (${p1} MB)`);
  const env = { ...process.env, TSDPO_MEMORY_AVAILABLE: `${Math.round((p8 + p1) / 2)}MB` };
  const refused = plan([], env);
  assert.equal(refused.status, 2, `expected a refusal: ${refused.stdout}${refused.stderr}`);
  assert.match(refused.stderr, /needs about \d+ MB at its peak but \d+ MB is available \(TSDPO_MEMORY_AVAILABLE\)/);
  assert.match(refused.stderr, /These would fit: .*per_device_train_batch_size: 1 and per_device_eval_batch_size: 1 \(gradient_accumulation_steps × 8 keeps the batch\)/);
  assert.match(refused.stderr, /Add --force to start anyway/);
  const forced = plan(["--force"], env);
  assert.equal(forced.status, 0, `--force: ${forced.stdout}${forced.stderr}`);
});

test("a run's summary.json and report put the planner's prediction beside the measured peak and micro-batch time", async () => {
  const { train } = await import("../src/train/train.js");
  const { resolveTrainConfig } = await import("../src/train/config.js");
  const { readFileSync } = await import("node:fs");
  const dir = join(tmp, "run");
  const data = join(repoRoot, "test", "fixtures", "train", "pairs.jsonl");
  await train(resolveTrainConfig({ model: storiesGguf, data, max_length: 48, max_steps: 2, per_device_train_batch_size: 4, save_minutes: 0, output_dir: dir }, "test"), null, { quiet: true });
  const m = JSON.parse(readFileSync(join(dir, "summary.json"), "utf8")).memory;
  assert.ok(m.predicted_peak_mb > 0 && m.measured_peak_mb > 0 && m.predicted_step_seconds > 0 && m.measured_step_seconds > 0, JSON.stringify(m));
  assert.ok(m.plan.activations > 0 && m.plan.weights_float32 > 0, "the items are kept");
  const html = readFileSync(join(dir, "report.html"), "utf8");
  assert.ok(html.includes(`${m.measured_peak_mb} MB measured (peak RSS); the planner predicted ${m.predicted_peak_mb} MB`), "report row");
});
