#!/usr/bin/env node
// SFT before DPO, and KTO, on the shipped HH-RLHF pairs (README's table), for seeds 1, 2 and 3. Per seed:
//   1. the split train uses: configs/default.json holds out 300 pairs by the seed (eval_size 300; the same function and
//      seed as `tsdpo train --seed S`); the held-out pairs are written out, and the training pairs' prompt + chosen
//      answer as SFT rows {"prompt", "completion"}, with HH-RLHF's prompt inferred as train infers it
//   2. sft    `tsdpo sft` on those rows (stories260K, max_length 96, one epoch, SFT_ARGS below)
//   3. dpo    `tsdpo train configs/default.json --seed S` from the base model (README's HH table run)
//   4. sftdpo the same from the SFT run (`--model <sft run>`: its final weights are policy and reference)
//   5. kto    `tsdpo train configs/default.json --seed S --loss_type kto --unpair`: each training pair as a desirable
//      and an undesirable row (the held-out pairs are held out before unpairing)
// Records each run's held-out numbers from summary.json (the final weights' evaluation: with load_best_model_at_end the
// best one), and for every run the implicit-reward preference accuracy of its final weights against its own starting
// model on the held-out pairs, truncated as train truncates them (what `tsdpo eval` computes, with train's
// max_prompt_length too): for DPO runs the same number as their eval_rewards/accuracies, and KTO's preference accuracy
// (its own evaluation has no pairs to rank). Then mean, sample sd and standard errors over the seeds, and whether KTO's
// mean accuracy clears 0.5 + 2 standard errors (the larger of the seeds' sd/√3 and the binomial √(¼/n) of the n
// held-out pairs of all seeds, which is what a coin would score).
//
//   node bench/sft-dpo.mjs [--backend native] [--out bench/results/sft-dpo.json] [--smoke] [--dist dist]
//
// --smoke: 2 optimizer steps per run and 20 held-out pairs, to check the script itself in seconds; its numbers mean
// nothing. A full run is 4 trainings per seed: about 4 × 20 s per seed on the native backend of a 2-core machine.

import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { environment, option, report, root, round, stats } from "./common.mjs";

const backend = option("backend", "native");
const dist = join(root, option("dist", "dist")); // the build to run (npm run build writes dist/)
const cli = join(dist, "src", "cli", "main.js");
const smoke = process.argv.includes("--smoke");
const SEEDS = [1, 2, 3];
const config = join(root, "configs", "default.json");
const defaults = JSON.parse(readFileSync(config, "utf8"));
const heldOut = smoke ? 20 : defaults.eval_size;
const SFT_ARGS = ["--learning_rate", "1e-4", "--lr_scheduler_type", "linear", "--per_device_train_batch_size", "8", "--max_length", String(defaults.max_length)];
const SMOKE = smoke ? ["--max_steps", "2", "--eval_steps", "1"] : [];

const lib = async (p) => import(pathToFileURL(join(dist, "src", ...p.split("/"))).href);
const { dataOptionsFromConfig, loadPreferenceData, loadPreferences } = await lib("data/load.js");
const { splitTrainEval } = await lib("data/split.js");
const { loadModelForUse, readRunConfig } = await lib("io/resolve.js");
const { pairLogps, preferenceAccuracy } = await lib("train/logps.js");
const { selectBackend } = await lib("backend/select.js");

function run(args, what) {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [cli, ...args, "--backend", backend], { encoding: "utf8", cwd: root, maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`${what} failed (exit ${r.status}):\n${r.stderr}`);
  return { stdout: r.stdout, seconds: round((performance.now() - t0) / 1000, 1) };
}

function summaryOf(dir) {
  return JSON.parse(readFileSync(join(dir, "summary.json"), "utf8"));
}

/** Preference accuracy of a run's final weights against its starting model on the held-out pairs, truncated as train does. */
async function evalRun(dir, pairs) {
  const saved = readRunConfig(dir);
  const policy = loadModelForUse(dir);
  const ref = loadModelForUse(String(saved.model));
  const limits = { max_length: defaults.max_length, max_prompt_length: defaults.max_prompt_length };
  const d = await loadPreferenceData(pairs, policy.tokenizer, dataOptionsFromConfig(limits, policy.model.cfg.maxSeqLen));
  const be = selectBackend(backend);
  const r = preferenceAccuracy(pairLogps(be, policy.model, d.pairs), pairLogps(be, ref.model, d.pairs), saved.loss.beta);
  return { accuracy: r.accuracy, mean_margin: r.meanMargin, pairs: r.n };
}

async function seedRuns(seed, work) {
  // 1. the split: train's own (dataOptionsFromConfig: a count of eval_size pairs, seeded by the run's seed)
  const loaded = await loadPreferences(join(root, defaults.data.replace(/^\.\.\//, "")));
  const split = splitTrainEval(loaded.pairs, { kind: "count", count: heldOut, seed });
  const sftRows = join(work, "sft-rows.jsonl");
  writeFileSync(sftRows, split.train.map((p) => JSON.stringify({ prompt: p.prompt, completion: p.chosen })).join("\n") + "\n");
  const heldPairs = join(work, "held-out.jsonl");
  writeFileSync(heldPairs, split.eval.map((p) => JSON.stringify({ prompt: p.prompt, chosen: p.chosen, rejected: p.rejected })).join("\n") + "\n");
  const sftConfig = join(work, "sft.json");
  writeFileSync(sftConfig, JSON.stringify({ model: join(root, defaults.model.replace(/^\.\.\//, "")), data: sftRows, seed, save_minutes: 0 }));

  const dirs = { sft: join(work, "sft"), dpo: join(work, "dpo"), sftdpo: join(work, "sftdpo"), kto: join(work, "kto") };
  const common = ["--seed", String(seed), "--eval_size", String(heldOut), ...SMOKE];
  const seconds = {};
  seconds.sft = run(["sft", sftConfig, ...SFT_ARGS, "--output_dir", dirs.sft, ...SMOKE], `sft seed ${seed}`).seconds;
  seconds.dpo = run(["train", config, ...common, "--output_dir", dirs.dpo], `dpo seed ${seed}`).seconds;
  seconds.sftdpo = run(["train", config, ...common, "--model", dirs.sft, "--output_dir", dirs.sftdpo], `sft+dpo seed ${seed}`).seconds;
  seconds.kto = run(["train", config, ...common, "--loss_type", "kto", "--unpair", "--output_dir", dirs.kto], `kto seed ${seed}`).seconds;

  const out = { seed };
  const sftEval = summaryOf(dirs.sft).eval;
  out.sft = { seconds: seconds.sft, train_loss: round(summaryOf(dirs.sft).train.loss), mean_token_accuracy: round(summaryOf(dirs.sft).train.mean_token_accuracy), ...(sftEval ? { eval_loss: round(sftEval.eval_loss) } : {}) };
  for (const k of ["dpo", "sftdpo", "kto"]) {
    const s = summaryOf(dirs[k]).eval;
    const e = await evalRun(dirs[k], heldPairs);
    out[k] = {
      seconds: seconds[k], step: s.step, eval_loss: round(s.eval_loss),
      ...(s["eval_rewards/accuracies"] !== undefined ? { eval_accuracy: round(s["eval_rewards/accuracies"]) } : {}),
      heldout_accuracy: round(e.accuracy), heldout_margin: round(e.mean_margin), heldout_pairs: e.pairs,
    };
  }
  process.stderr.write(`seed ${seed}: ${JSON.stringify(out)}\n`);
  return out;
}

const runs = [];
for (const seed of SEEDS) {
  const work = mkdtempSync(join(tmpdir(), `tsdpo-sft-dpo-${seed}-`));
  try {
    runs.push(await seedRuns(seed, work));
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

const over = (k, field) => stats(runs.map((r) => r[k][field]));
const kto = over("kto", "heldout_accuracy");
const n = runs.reduce((a, r) => a + r.kto.heldout_pairs, 0);
const se = Math.max(kto.sd / Math.sqrt(SEEDS.length), Math.sqrt(0.25 / n));
report({
  command: `node bench/sft-dpo.mjs --backend ${backend}${smoke ? " --smoke" : ""}`,
  smoke, backend, ...environment(),
  sft_args: SFT_ARGS.join(" "), dpo_config: "configs/default.json", kto_args: "--loss_type kto --unpair",
  runs,
  seeds_1_3: {
    dpo: { eval_accuracy: over("dpo", "eval_accuracy"), eval_loss: over("dpo", "eval_loss"), heldout_accuracy: over("dpo", "heldout_accuracy") },
    sftdpo: { eval_accuracy: over("sftdpo", "eval_accuracy"), eval_loss: over("sftdpo", "eval_loss"), heldout_accuracy: over("sftdpo", "heldout_accuracy") },
    kto: { heldout_accuracy: kto, eval_loss: over("kto", "eval_loss"), standard_error: round(se), threshold: round(0.5 + 2 * se), clears: kto.mean > 0.5 + 2 * se },
  },
}, option("out", null));
