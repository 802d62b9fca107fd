// Opt-in (TSDPO_SLOW=1, `npm run test:slow`): the README's main job. DPO on stories260K with the shipped HH-RLHF
// pairs, 300 held out, must raise held-out preference accuracy clearly above chance. At step 0 the policy is the
// reference, every implicit reward is 0 and the accuracy is 0 (ties count as wrong), so "above chance" means above
// 0.5 by a margin the seeds in README support. About 4 minutes per run with the native backend on 2 cores, about 30 with the js backend.

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readConfigFile, resolveTrainConfig } from "../src/train/config.js";
import { train } from "../src/train/train.js";
import { repoRoot, slow } from "./helpers.js";

// Both passes of `npm run test:slow` run these, so the js backend's training is held to the same floors as the
// native one's: about 30 minutes a run on js, a minute on native.
const skip = !slow ? "set TSDPO_SLOW=1" : false;

// Measured (README): with the default seed 42 full DPO ends at 0.620 and LoRA at 0.590 held-out accuracy; seeds 1–3
// (each a different held-out 300) give 0.582 ± 0.034 and 0.561 ± 0.017. A run is deterministic for a seed and a
// backend, so the floors sit about one standard error (0.028 for 300 pairs) below the measured values, leaving room
// for the js and native backends' rounding to take different paths, not for a regression.
for (const [name, floor, extra] of [
  ["full DPO", 0.59, {}],
  ["LoRA DPO", 0.56, { use_peft: true, lora_r: 8, lora_alpha: 16, lora_dropout: 0, learning_rate: 0.003 }],
] as const) {
  test(`${name} on HH-RLHF (configs/default.json) lifts held-out preference accuracy to at least ${floor}`, { skip }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "tsdpo-slow-"));
    try {
      const file = join(repoRoot, "configs", "default.json");
      const base = readConfigFile(file);
      const cfg = resolveTrainConfig({
        ...base, ...extra,
        model: join(repoRoot, String(base.model)), data: join(repoRoot, String(base.data)), output_dir: dir,
      }, file);
      const result = await train(cfg, dir, { quiet: true });
      const evals = readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n")
        .map((l) => JSON.parse(l) as Record<string, number>).filter((m) => "eval_rewards/accuracies" in m);
      const final = evals.at(-1)!;
      console.log(`${name}: held-out accuracy ${final["eval_rewards/accuracies"]} at step ${final.step}, margin ${final["eval_rewards/margins"]}`);
      assert.equal(result.evalMetrics?.["eval_rewards/accuracies"], final["eval_rewards/accuracies"]);
      assert.ok(final["eval_rewards/accuracies"]! >= floor, `held-out accuracy ${final["eval_rewards/accuracies"]} < ${floor}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
