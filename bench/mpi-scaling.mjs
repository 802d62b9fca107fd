#!/usr/bin/env node
// README's "Scaling out" numbers.
//   1. Measured on this machine, for the same global batch (2 micro-batches of 2 pairs, prompt 64 + answers 64 + 64
//      tokens, full fine-tuning of the smollm-135m preset): `mpirun -np 2` with one thread per rank against one
//      process with two threads (bench/mpi-step.mjs), and the all-reduce's share of the 2-rank step. Beside it, the
//      paper model's prediction for that case: the ring all-reduce's 2·(W−1)/W of the 4·P-byte gradient per rank,
//      here through shared memory at the one-thread copy bandwidth measured below.
//   2. The paper model for clusters: per-node compute of one micro-batch of 8 pairs (FLOPs from src/train/plan.ts's
//      stepFlops, at the GFLOP/s the 1-rank step measured here), against a ring all-reduce of 4·P bytes,
//      T = 2·(N−1)/N · 4P / bandwidth + 2·(N−1)·latency, with no overlap (tsdpo sums after the backward):
//      efficiency = compute / (compute + all-reduce), for 2, 8 and 32 nodes on 10, 25 and 100 Gb/s links.
//
//   node scripts/build-ts.js && node bench/mpi-scaling.mjs [--out bench/results/mpi-scaling.json]

import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { environment, option, report, root, round } from "./common.mjs";

const dist = join(root, "dist");
const { PRESETS } = await import(join(dist, "src/model/presets.js"));
const { allLoraTargets } = await import(join(dist, "src/model/lora.js"));
const { stepFlops, trainableCount } = await import(join(dist, "src/train/plan.js"));

const step = join(root, "bench", "mpi-step.mjs");
const args = ["--preset", "smollm-135m", "--pairs", "2", "--steps", option("steps", "4"), "--warmup", "1"];
function run(cmd, argv, env) {
  const r = spawnSync(cmd, argv, { encoding: "utf8", env: { ...process.env, ...env } });
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(" ")} failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").at(-1));
}
// In turns, so that a burst of load on a shared machine does not land on one side only; medians over the turns.
const one = [], two = [];
for (let k = 0; k < 3; k++) {
  one.push(run(process.execPath, [step, ...args, "--micro", "2"], { TSDPO_THREADS: "2" }));
  two.push(run("mpirun", ["--allow-run-as-root", "--oversubscribe", "-np", "2", "-x", "TSDPO_THREADS=1", process.execPath, step, ...args, "--micro", "1"], { TSDPO_THREADS: "1" }));
}
const med = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const pick = (rs, k) => med(rs.map((r) => r.median_ms[k]));
const bytes = one[0].allreduce_bytes;

// Shared-memory copy bandwidth, one thread: the medium the local rank-order sum moves its bytes through.
const src = new Float32Array(bytes / 4).fill(1), dst = new Float32Array(bytes / 4);
const copies = [];
for (let k = 0; k < 5; k++) {
  const t0 = performance.now();
  dst.set(src);
  copies.push(performance.now() - t0);
}
const copyGBs = bytes / (med(copies) / 1000) / 1e9;
const W = 2;
// The ring formula with shared memory as the link: 2·(W−1)/W of the buffer through one copy at the copy bandwidth.
const predictedLocalMs = ((2 * (W - 1)) / W) * bytes / (copyGBs * 1e9) * 1000;
const twoStep = pick(two, "step");

// The paper model. The node: this machine, at the rate the 1-rank step reached on its micro-batches.
const shape = (cfg, pairs) => ({ cfg, rows: pairs, T: 64 + 2 * 64, answerTokens: 2 * pairs * 64, refForward: true, checkpointing: false });
const benchFlops = 2 * stepFlops({ ...shape(PRESETS["smollm-135m"], 2), lora: null });
const gflops = benchFlops / (pick(one, "compute") / 1000) / 1e9;
const models = [
  { name: "SmolLM-135M (full)", preset: "smollm-135m", lora: null },
  { name: "Qwen2.5-0.5B (full)", preset: "qwen2.5-0.5b", lora: null },
  { name: "Llama-3.2-3B (LoRA r 16, every projection)", preset: "llama3.2-3b", lora: 16 },
];
const latency = 50e-6; // seconds per message step on Ethernet
const table = models.map((m) => {
  const cfg = PRESETS[m.preset];
  const spec = { ...shape(cfg, 8), lora: m.lora ? { r: m.lora, dropout: 0, targets: allLoraTargets(cfg) } : null, storage: new Map(), threads: 2, backend: "native" };
  const params = m.lora ? trainableCount(spec) : cfg ? trainableCount({ ...spec, lora: null }) : 0;
  const computeS = stepFlops(spec) / (gflops * 1e9);
  const rows = [];
  for (const nodes of [2, 8, 32])
    for (const gbits of [10, 25, 100]) {
      const allreduceS = ((2 * (nodes - 1)) / nodes) * (4 * params) / (gbits * 1e9 / 8) + 2 * (nodes - 1) * latency;
      rows.push({ nodes, link_gbits: gbits, allreduce_s: round(allreduceS, 4), efficiency: round(computeS / (computeS + allreduceS), 3) });
    }
  return { model: m.name, preset: m.preset, trainable_parameters: params, allreduce_mb: round((4 * params) / 1e6, 1), compute_s_per_micro_batch: round(computeS, 2), rows };
});

report({
  what: "data-parallel DPO step, smollm-135m preset, full fine-tuning: 2 ranks × 1 thread (mpirun) vs 1 process × 2 threads, same global batch; and the paper model for clusters",
  environment: environment(),
  measured: {
    one_rank_two_threads: { step_ms: pick(one, "step"), compute_ms: pick(one, "compute"), optimizer_ms: pick(one, "optimizer") },
    two_ranks_one_thread: { step_ms: twoStep, compute_ms: pick(two, "compute"), allreduce_ms: pick(two, "allreduce"), optimizer_ms: pick(two, "optimizer") },
    speed_ratio_two_ranks_over_one: round(pick(one, "step") / twoStep, 3),
    allreduce_share_measured: round(pick(two, "allreduce") / twoStep, 3),
    allreduce_bytes: bytes,
    copy_gb_per_s: round(copyGBs, 2),
    allreduce_ms_predicted: round(predictedLocalMs, 1),
    allreduce_share_predicted: round(predictedLocalMs / twoStep, 3),
    runs: { one, two },
  },
  model: { node_gflops: round(gflops, 1), latency_s: latency, pairs_per_node_step: 8, tokens: "prompt 64, answers 64 + 64", models: table },
}, option("out", null));
