#!/usr/bin/env node
// README's demo figures: `tsdpo demo` (default sizes, β = 0.1) for seeds 1–5, then `tsdpo demo --beta 0.05,0.1,0.5`
// for seed 1 (the reward-vs-KL frontier). Per seed: the held-out reward of the reference's and the tuned policy's
// fresh samples, KL(π‖π_ref) and the held-out preference accuracy, from each run's demo/results.json; over seeds:
// mean and sample standard deviation, and the range of the reward difference.
//
//   node bench/demo-seeds.mjs [--backend native] [--out bench/results/demo-seeds.json]

import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cli, environment, option, report, round, stats } from "./common.mjs";

const backend = option("backend", "native");

function demo(args) {
  const dir = mkdtempSync(join(tmpdir(), "tsdpo-demo-seeds-"));
  try {
    const t0 = performance.now();
    const r = spawnSync(process.execPath, [cli, "demo", "--backend", backend, "--out", dir, ...args], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`tsdpo demo ${args.join(" ")} failed: ${r.stderr}`);
    const res = JSON.parse(readFileSync(join(dir, "demo", "results.json"), "utf8"));
    process.stderr.write(`demo ${args.join(" ")}: ${((performance.now() - t0) / 1000).toFixed(0)} s\n`);
    return res;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const seeds = [1, 2, 3, 4, 5].map((seed) => {
  const res = demo(["--seed", String(seed)]);
  const run = res.runs[0];
  return {
    seed, beta: run.beta, reference_reward: round(res.reference.reward.mean), tuned_reward: round(run.final.reward.mean),
    difference: round(run.final.reward.mean - res.reference.reward.mean), kl: round(run.final.kl.mean),
    eval_accuracy: round(run.final.eval_accuracy),
  };
});
const sweepRes = demo(["--seed", "1", "--beta", "0.05,0.1,0.5"]);
const result = {
  command: "tsdpo demo --seed S (S = 1..5), then tsdpo demo --seed 1 --beta 0.05,0.1,0.5",
  backend, ...environment(),
  seeds,
  over_seeds: {
    reference_reward: stats(seeds.map((s) => s.reference_reward)), tuned_reward: stats(seeds.map((s) => s.tuned_reward)),
    difference: stats(seeds.map((s) => s.difference)), kl: stats(seeds.map((s) => s.kl)),
    eval_accuracy: stats(seeds.map((s) => s.eval_accuracy)),
  },
  beta_sweep: {
    seed: 1, reference_reward: round(sweepRes.reference.reward.mean),
    runs: Object.fromEntries(sweepRes.runs.map((r) => [String(r.beta), { tuned_reward: round(r.final.reward.mean), kl: round(r.final.kl.mean), eval_accuracy: round(r.final.eval_accuracy) }])),
  },
};
report(result, option("out", null));
