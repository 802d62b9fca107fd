#!/usr/bin/env node
// README's online-DPO figures: `tsdpo iterate` on the shipped stories260K and story openings with the AFINN judge,
// 3 rounds, for seeds 1–3 (configs/iterate-afinn.json). Per seed and round: the held-out judge score, the win-rate
// against the original model and KL(π‖π_ref), from each run's results.json; over seeds: their means. The issue's
// check: the held-out win-rate rises from round 1 to round 3 on average over the seeds.
//
//   node scripts/build-ts.js && node bench/iterate-seeds.mjs [--backend native] [--out bench/results/iterate-seeds.json]

import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cli, environment, option, report, root, round } from "./common.mjs";

const backend = option("backend", "native");
const config = join(root, "configs", "iterate-afinn.json");

function iterate(seed) {
  const dir = mkdtempSync(join(tmpdir(), "tsdpo-iterate-seeds-"));
  try {
    const t0 = performance.now();
    const r = spawnSync(process.execPath, [process.env.TSDPO_CLI ?? cli, "iterate", config, "--seed", String(seed), "--backend", backend, "--output_dir", dir, "--quiet"], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`tsdpo iterate --seed ${seed} failed: ${r.stderr}`);
    process.stderr.write(`seed ${seed}: ${((performance.now() - t0) / 1000).toFixed(0)} s\n`);
    return JSON.parse(readFileSync(join(dir, "results.json"), "utf8"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const seeds = [1, 2, 3].map((seed) => {
  const res = iterate(seed);
  return {
    seed,
    rounds: res.eval.map((e) => ({
      round: e.round, score: round(e.score.mean), score_se: round(e.score.se), win_rate: round(e.win_rate.mean),
      win_rate_se: round(e.win_rate.se), kl: round(e.kl.mean),
      pairs: res.rounds[e.round - 1]?.pairs ?? null, ties: res.rounds[e.round - 1]?.ties ?? null,
    })),
  };
});
const R = seeds[0].rounds.length;
const mean = (f) => round(seeds.reduce((s, x) => s + f(x), 0) / seeds.length);
const byRound = Array.from({ length: R }, (_, r) => ({
  round: r, score: mean((x) => x.rounds[r].score), win_rate: mean((x) => x.rounds[r].win_rate), kl: mean((x) => x.rounds[r].kl),
}));
report({
  what: "tsdpo iterate, AFINN judge, stories260K, 3 rounds (configs/iterate-afinn.json), held-out prompts",
  backend, config: JSON.parse(readFileSync(config, "utf8")), environment: environment(), seeds, mean: byRound,
  win_rate_rises_round1_to_round3: byRound[3].win_rate > byRound[1].win_rate,
}, option("out", null));
