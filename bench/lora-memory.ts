// Peak memory of one DPO step, full fine-tuning versus LoRA, on the same model: a cut-down copy of the training
// step (policy forward + backward over chosen and rejected, reference forward, DPO loss, AdamW). Each mode runs in
// its own process so its peak RSS is its own.
//
//   node dist/bench/lora-memory.js [--preset smollm-135m] [--T 64] [--r 16]     # runs both, prints JSON
//
// Full: policy + gradients + AdamW moments (4 copies of the weights) + a frozen reference copy (a fifth).
// LoRA: one copy of the weights (the reference is the same model with adapters off) + small adapter state.

import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { jsBackend as be } from "../src/backend/js/kernels.js";
import { computeLoss, defaultLossConfig } from "../src/loss/index.js";
import { backward, cloneModel, createActivations, createGradients, forward, type Model } from "../src/model/decoder.js";
import { DEFAULT_LORA_TARGETS, createLora } from "../src/model/lora.js";
import { presetModel } from "../src/model/presets.js";

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : fallback;
}

function oneStep(mode: "full" | "lora", preset: string, T: number, r: number): Record<string, number | string> {
  const t0 = Date.now();
  const policy: Model = presetModel(preset);
  const ref: Model = mode === "full" ? cloneModel(policy) : policy;
  if (mode === "lora") policy.lora = createLora(policy, { r, alpha: 2 * r, dropout: 0, targets: [...DEFAULT_LORA_TARGETS] }, 0);
  const grads = mode === "full" ? createGradients(policy) : null;
  const trainable = mode === "full" ? policy.params : policy.lora!.params;
  const g = mode === "full" ? grads!.grads : policy.lora!.grads;
  const m = new Float32Array(trainable.length), v = new Float32Array(trainable.length);
  const B = 1, R = 2 * B;
  const acts = createActivations(policy, R, T);
  const ids = new Int32Array(R * T), targets = new Int32Array(R * T), mask = new Float32Array(R * T);
  for (let i = 0; i < R * T; i++) {
    ids[i] = (i * 7919) % policy.cfg.V;
    targets[i] = (i * 104729 + 1) % policy.cfg.V;
    mask[i] = i % T >= T / 2 ? 1 : 0; // second half of each row is the completion
  }
  const sums = (logp: ArrayLike<number>): Float64Array => {
    const s = new Float64Array(R);
    for (let row = 0; row < R; row++) for (let t = 0; t < T; t++) s[row] += mask[row * T + t]! * logp[row * T + t]!;
    return s;
  };
  if (policy.lora) policy.lora.enabled = false;
  const refSums = sums(forward(be, ref, acts, ids, targets, R, T));
  if (policy.lora) policy.lora.enabled = true;
  const polSums = sums(forward(be, policy, acts, ids, targets, R, T));
  const len = Int32Array.from([T / 2]);
  const out = computeLoss(defaultLossConfig(), {
    policyChosenLogps: polSums.subarray(0, 1), policyRejectedLogps: polSums.subarray(1, 2),
    refChosenLogps: refSums.subarray(0, 1), refRejectedLogps: refSums.subarray(1, 2), chosenLengths: len, rejectedLengths: len,
  });
  const dlogp = new Float32Array(R * T);
  for (let t = 0; t < T; t++) {
    dlogp[t] = mask[t]! * out.dPolicyChosenLogps[0]!;
    dlogp[T + t] = mask[T + t]! * out.dPolicyRejectedLogps[0]!;
  }
  backward(be, policy, acts, grads, dlogp);
  be.adamwStep(trainable, g, m, v, trainable.length, 1e-4, 0.9, 0.999, 1e-8, 0, 1);
  return {
    mode, preset, T, loss: out.loss, trainable_params: trainable.length,
    peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024), seconds: (Date.now() - t0) / 1000,
  };
}

const mode = arg("mode", "both");
const preset = arg("preset", "smollm-135m");
const T = Number(arg("T", "32"));
const r = Number(arg("r", "16"));
if (mode === "full" || mode === "lora") {
  process.stdout.write(JSON.stringify(oneStep(mode, preset, T, r)) + "\n");
} else {
  const self = fileURLToPath(import.meta.url);
  const run = (m: string): Record<string, number> => {
    const p = spawnSync(process.execPath, [self, "--mode", m, "--preset", preset, "--T", String(T), "--r", String(r)], { encoding: "utf8" });
    if (p.status !== 0) throw new Error(`${m} run failed: ${p.stderr}`);
    return JSON.parse(p.stdout) as Record<string, number>;
  };
  const full = run("full");
  const lora = run("lora");
  process.stdout.write(JSON.stringify({ preset, T, full, lora, rss_ratio_full_over_lora: full.peak_rss_mb! / lora.peak_rss_mb! }) + "\n");
}
