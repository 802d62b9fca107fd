#!/usr/bin/env node
// One data-parallel DPO step on a preset (random weights, the shapes of its config.json), timed phase by phase:
// the micro-batches' forward and backward, the rank-order gradient sum (src/backend/native/mpi.cc) and AdamW. Run
// by bench/mpi-scaling.mjs two ways for the same global batch: `mpirun -np 2` with one thread per rank (each rank
// one micro-batch of --pairs pairs, then the sum), and one process with two threads (both micro-batches in turn, no
// sum). Prints one JSON line (rank 0).
//
//   mpirun --allow-run-as-root -np 2 -x TSDPO_THREADS=1 node bench/mpi-step.mjs --preset smollm-135m --micro 1
//   TSDPO_THREADS=2 node bench/mpi-step.mjs --preset smollm-135m --micro 2

import { join } from "node:path";
import { option, root, round } from "./common.mjs";

const dist = join(root, "dist");
const { selectBackend } = await import(join(dist, "src/backend/select.js"));
const { cloneModel, createGradients } = await import(join(dist, "src/model/decoder.js"));
const { presetModel } = await import(join(dist, "src/model/presets.js"));
const { activationsForPairs } = await import(join(dist, "src/train/logps.js"));
const { benchPairs } = await import(join(dist, "src/train/bench.js"));
const { microBatch, modelDecayRanges, optimizerStep } = await import(join(dist, "src/train/train.js"));
const { defaultLossConfig } = await import(join(dist, "src/loss/config.js"));
const { initialLossState } = await import(join(dist, "src/loss/losses.js"));
const { joinWorld, orderedSum } = await import(join(dist, "src/train/distributed.js"));

const preset = option("preset", "smollm-135m");
const micro = Number(option("micro", "1")); // micro-batches per rank per step
const pairsPer = Number(option("pairs", "2"));
const steps = Number(option("steps", "5"));
const warmup = Number(option("warmup", "1"));
const be = selectBackend("native");
const world = joinWorld("native");

const policy = presetModel(preset);
const ref = cloneModel(policy);
const pairs = benchPairs(policy.cfg.V, pairsPer, 64, 64);
const acts = activationsForPairs(policy, pairs, pairs.length, true, false);
const engine = {
  be, policy, acts, grads: createGradients(policy), ref: { model: ref, acts, adaptersOff: false },
  refLogps: null, referenceFree: false, loss: defaultLossConfig(), sharedPrefix: true, dropoutSeed: null, timings: null,
};
const grads = engine.grads.grads;
const n = policy.params.length;
const opt = { m: new Float32Array(n), v: new Float32Array(n), decayRanges: modelDecayRanges(policy), beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 1 };
const index = pairs.map((_, i) => i);
const rows = [];
for (let s = 0; s < warmup + steps; s++) {
  const t0 = performance.now();
  for (let k = 0; k < micro; k++) microBatch(engine, pairs, index, "train", initialLossState(), 1 / (micro * world.size), k);
  const t1 = performance.now();
  orderedSum(world, grads);
  const t2 = performance.now();
  optimizerStep(be, opt, policy.params, grads, 1e-6, s + 1);
  grads.fill(0);
  const t3 = performance.now();
  if (s >= warmup) rows.push({ compute: t1 - t0, allreduce: t2 - t1, optimizer: t3 - t2, step: t3 - t0 });
}
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
if (world.rank === 0)
  process.stdout.write(JSON.stringify({
    preset, ranks: world.size, threads_per_rank: Number(process.env.TSDPO_THREADS ?? 0) || null, micro_batches_per_rank: micro, pairs_per_micro_batch: pairsPer,
    trainable_parameters: n, allreduce_bytes: 4 * n,
    median_ms: Object.fromEntries(["compute", "allreduce", "optimizer", "step"].map((k) => [k, round(median(rows.map((r) => r[k])), 1)])),
    steps_ms: rows.map((r) => round(r.step, 1)),
  }) + "\n");
