#!/usr/bin/env node
// README's HH-RLHF table: configs/default.json trained with seeds 42, 1, 2 and 3 (each seed also holds out a
// different 300 pairs), full DPO and LoRA DPO (r 8, alpha 16, no dropout, learning rate 1e-3, q/k/v/o), on one
// backend. Records the held-out preference accuracy and loss of each run's final weights (summary.json's eval row:
// with load_best_model_at_end, the best evaluation's), the step they come from, the last evaluation's values, and the
// mean and sample standard deviation over seeds 1–3.
//
//   node bench/hh-seeds.mjs [--backend native] [--out bench/results/hh-seeds.json]

import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cli, environment, option, report, root, round, stats } from "./common.mjs";

const backend = option("backend", "native");
const MODES = {
  full: [],
  lora: ["--use_peft", "--lora_r", "8", "--lora_alpha", "16", "--lora_dropout", "0", "--learning_rate", "0.001"],
};

function trainOnce(mode, seed) {
  const dir = mkdtempSync(join(tmpdir(), "tsdpo-hh-"));
  try {
    const t0 = performance.now();
    const args = [cli, "train", join(root, "configs", "default.json"), "--seed", String(seed), "--output_dir", join(dir, "run"),
      "--backend", backend, ...MODES[mode]];
    const r = spawnSync(process.execPath, args, { encoding: "utf8", cwd: root });
    if (r.status !== 0) throw new Error(`${mode} seed ${seed} failed: ${r.stderr}`);
    const rows = readFileSync(join(dir, "run", "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    const last = rows.filter((x) => "eval_loss" in x).at(-1);
    const final = JSON.parse(readFileSync(join(dir, "run", "summary.json"), "utf8")).eval;
    const seconds = Math.round((performance.now() - t0) / 100) / 10;
    process.stderr.write(`${mode} seed ${seed}: accuracy ${final["eval_rewards/accuracies"]} (step ${final.step}), loss ${final.eval_loss} in ${seconds} s\n`);
    return {
      seed, eval_accuracy: final["eval_rewards/accuracies"], eval_loss: final.eval_loss, step: final.step,
      last_eval_accuracy: last["eval_rewards/accuracies"], last_eval_loss: last.eval_loss, last_step: last.step, seconds,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const result = {
  command: "tsdpo train configs/default.json --seed S (full, and LoRA with " + MODES.lora.join(" ") + "), S = 42, 1, 2, 3",
  backend, ...environment(),
  modes: {},
};
for (const mode of Object.keys(MODES)) {
  const runs = [42, 1, 2, 3].map((seed) => trainOnce(mode, seed));
  const seeds13 = stats(runs.filter((r) => r.seed !== 42).map((r) => r.eval_accuracy));
  const loss13 = stats(runs.filter((r) => r.seed !== 42).map((r) => r.eval_loss));
  result.modes[mode] = {
    runs: Object.fromEntries(runs.map((r) => [String(r.seed), { ...r, eval_loss: round(r.eval_loss), last_eval_loss: round(r.last_eval_loss) }])),
    seeds_1_3: seeds13, eval_loss_seeds_1_3: loss13,
  };
}
report(result, option("out", null));
