// Opt-in (TSDPO_SLOW=1, `npm run test:slow`): the README's main job. DPO on stories260K with the shipped HH-RLHF
// pairs, 300 held out, must raise held-out preference accuracy clearly above chance. At step 0 the policy is the
// reference, every implicit reward is 0 and the accuracy is 0 (ties count as wrong), so "above chance" means above
// 0.5 by a margin the seeds in README support. Under a minute per run with the native backend on 2 cores (README), about 7x that on js.

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readConfigFile, resolveTrainConfig } from "../src/train/config.js";
import { train } from "../src/train/train.js";
import { runHealth } from "../src/report/health.js";
import { readRun } from "../src/report/report.js";
import { repoRoot, slow } from "./helpers.js";

// Both passes of `npm run test:slow` run these, so the js backend's training is held to the same floors as the
// native one's.
const skip = !slow ? "set TSDPO_SLOW=1" : false;

// Measured (README, bench/results/hh-seeds.json, on the 2,012 training pairs): with the default seed 42 the final
// weights of full DPO reach 0.607 and LoRA 0.567 held-out accuracy; seeds 1–3 (each a different held-out 300) give
// 0.603 ± 0.006 and 0.578 ± 0.027.
// A run is deterministic for a seed and a backend, so the floors sit about one standard error (0.028 for 300 pairs)
// below the measured values, leaving room for the js and native backends' rounding to take different paths, not for
// a regression.
for (const [name, floor, extra] of [
  ["full DPO", 0.58, {}],
  ["LoRA DPO", 0.54, { use_peft: true, lora_r: 8, lora_alpha: 16, lora_dropout: 0, learning_rate: 0.001 }],
] as const) {
  test(`${name} on HH-RLHF (configs/default.json) lifts held-out preference accuracy to at least ${floor}`, { skip }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "tsdpo-slow-"));
    try {
      const file = join(repoRoot, "configs", "default.json");
      const base = readConfigFile(file);
      const cfg = resolveTrainConfig({ ...base, ...extra, output_dir: dir }, file); // readConfigFile made the paths absolute
      const result = await train(cfg, dir, { quiet: true });
      // The final weights' evaluation: with load_best_model_at_end, the best one's.
      const summary = JSON.parse(readFileSync(join(dir, "summary.json"), "utf8")) as { eval: Record<string, number> };
      const final = summary.eval;
      console.log(`${name}: held-out accuracy ${final["eval_rewards/accuracies"]} and loss ${final.eval_loss} at step ${final.step}`);
      assert.deepEqual(result.evalMetrics, final);
      assert.ok(final["eval_rewards/accuracies"]! >= floor, `held-out accuracy ${final["eval_rewards/accuracies"]} < ${floor}`);
      // The shipped config must not end worse than it started: the untrained policy's held-out loss is ln 2.
      assert.ok(final.eval_loss! < Math.LN2, `held-out loss ${final.eval_loss} ≥ ln 2 (worse than the starting model)`);
      // The shipped config as it ships is the run a new user makes first: its report must not warn about it. (The
      // LoRA variant's chosen rewards fall slightly, which the report rightly points out.)
      if (name === "full DPO")
        assert.deepEqual(runHealth(readRun(dir)).warnings.map((w) => w.title), [], "health warnings on the shipped config");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
