// Gradient checkpointing (createActivations(…, checkpointing = true), `gradient_checkpointing: true`): the layers share
// one set of activations and the backward recomputes each layer from its saved input. The recomputation runs the
// same kernels on the same inputs, so log-probs and every gradient (full fine-tuning, LoRA with dropout, q/k norms,
// biases, the shared-prefix layout) must equal the run without it bit for bit, on the backend under test. And it
// must save what it claims: the activation arena shrinks by L − 1 sets of per-layer activations.

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { LlamaConfig } from "../src/model/config.js";
import { type Activations, backward, createActivations, createGradients, forward, forwardPacked, type Model } from "../src/model/decoder.js";
import { LORA_TARGETS, createLora } from "../src/model/lora.js";
import { Rng } from "../src/rng.js";
import { resolveTrainConfig } from "../src/train/config.js";
import { train } from "../src/train/train.js";
import { fixture, randomModel, rng, testBackend } from "./helpers.js";

const be = testBackend();
const tmp = mkdtempSync(join(tmpdir(), "tsdpo-checkpointing-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

// Qwen2/Qwen3-style: q/k norms and q/k/v biases, so every optional kernel of a layer is recomputed.
const cfg: LlamaConfig = {
  family: "qwen3", V: 23, C: 16, L: 3, NH: 4, NKV: 2, HS: 4, FF: 24, ropeTheta: 10000, ropeScaling: { type: "none" },
  rmsEps: 1e-5, tiedEmbeddings: false, qkvBias: true, qkNorm: true, maxSeqLen: 32, slidingWindow: null,
};

const model32 = (seed: number): Model => randomModel(cfg, Float32Array, seed, 0.6);

const R = 2, T = 7;
const r0 = rng(3);
const ids = Int32Array.from({ length: R * T }, () => Math.floor(r0() * cfg.V));
const targets = Int32Array.from({ length: R * T }, () => Math.floor(r0() * cfg.V));
const dlogp = Float32Array.from({ length: R * T }, (_, i) => (i % 3 === 0 ? 0 : r0() - 0.5));

const bits = (a: ArrayLike<number> & { buffer: ArrayBufferLike; byteOffset: number; byteLength: number }): Buffer =>
  Buffer.from(a.buffer, a.byteOffset, a.byteLength);

function arenaFloats(acts: Activations): number {
  // every per-layer view lives in one arena: its length is the buffer's
  return acts.x[0]!.buffer.byteLength / 4;
}

test("full fine-tuning: log-probs and every parameter gradient are bit-identical with checkpointing", () => {
  const model = model32(1);
  const run = (checkpointing: boolean): { logp: Float32Array; grads: Float32Array; floats: number } => {
    const acts = createActivations(model, R, T, checkpointing);
    const logp = Float32Array.from(forward(be, model, acts, ids, targets, R, T));
    const g = createGradients(model);
    backward(be, model, acts, g, dlogp);
    return { logp, grads: g.grads as Float32Array, floats: arenaFloats(acts) };
  };
  const plain = run(false), ckpt = run(true);
  assert.ok(bits(plain.logp).equals(bits(ckpt.logp)), "log-probs");
  assert.ok(bits(plain.grads).equals(bits(ckpt.grads)), "gradients");
  assert.ok(plain.grads.some((x) => x !== 0), "the gradients are not all zero");
  // per-layer activations of one layer (ln1, rstd1, qPre, qRstd, kPre, kRstd, q, k, v, attLse, atty, xMid, ln2,
  // rstd2, gate, up, h) for N = R·T tokens; checkpointing keeps one such set instead of L
  const { C, NH, NKV, HS, FF, L } = cfg;
  const N = R * T;
  const perLayer = N * (C + 1 + NH * HS + NH + NKV * HS + NKV + NH * HS + 2 * NKV * HS + NH + NH * HS + 2 * C + 1 + 3 * FF);
  assert.equal(plain.floats - ckpt.floats, (L - 1) * perLayer);
});

test("LoRA with dropout, on the shared-prefix layout: the recomputation reuses the forward's masks", () => {
  const model = model32(2);
  model.lora = createLora(model, { r: 3, alpha: 6, dropout: 0.3, targets: [...LORA_TARGETS] }, 7);
  const rb = rng(4);
  for (const a of model.lora.adapters) for (let i = 0; i < a.B.length; i++) a.B[i] = 0.5 * (rb() - 0.5);
  // one packed row: a prompt of 3 tokens, then two answers of 2 that both attend to the prompt only
  const P = 3, S = 2, Tp = P + 2 * S;
  const input = {
    ids: ids.subarray(0, Tp), pos: Int32Array.from([0, 1, 2, 3, 4, 3, 4]), branch: Int32Array.from([P, P + S]), // [prompt end, rejected start]
    rows: Int32Array.from([2, 3, 2, 5]), targets: targets.subarray(0, 4), R: 1, T: Tp, M: 4,
  };
  const run = (checkpointing: boolean): { logp: Float32Array; grads: Float32Array; next: number } => {
    const acts = createActivations(model, 1, Tp, checkpointing);
    acts.dropout = new Rng(99);
    const logp = Float32Array.from(forwardPacked(be, model, acts, input));
    model.lora!.grads.fill(0);
    backward(be, model, acts, null, Float32Array.from([1, -0.5, 0.25, 2]));
    return { logp, grads: Float32Array.from(model.lora!.grads), next: acts.dropout.next() };
  };
  const plain = run(false), ckpt = run(true);
  assert.ok(bits(plain.logp).equals(bits(ckpt.logp)), "log-probs");
  assert.ok(bits(plain.grads).equals(bits(ckpt.grads)), "adapter gradients");
  assert.equal(plain.next, ckpt.next, "the recomputation draws no extra random numbers");
});

test("`gradient_checkpointing: true` trains to the same adapters and metrics as without it", async () => {
  const base = {
    data: fixture("train", "pairs.jsonl"), max_length: 48, max_steps: 2, per_device_train_batch_size: 4, save_minutes: 0, learning_rate: 1e-2,
    use_peft: true, lora_dropout: 0.1, lora_target_modules: ["q_proj", "v_proj", "down_proj"], eval_steps: 0,
  };
  const runs = [];
  for (const gradient_checkpointing of [false, true]) {
    const dir = join(tmp, `train-${gradient_checkpointing}`);
    const r = await train(resolveTrainConfig({ ...base, gradient_checkpointing, output_dir: dir }, "test"), null, { quiet: true });
    const { tokens_per_second: _, ...metrics } = r.lastMetrics; // (timing differs, of course)
    runs.push({ metrics, adapter: readFileSync(join(dir, "final", "adapter_model.safetensors")) });
  }
  assert.deepEqual(runs[0]!.metrics, runs[1]!.metrics);
  assert.ok(runs[0]!.adapter.equals(runs[1]!.adapter), "the saved adapters are the same bytes");
});
