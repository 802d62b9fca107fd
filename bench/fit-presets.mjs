#!/usr/bin/env node
// README's "Will it fit?" table: `tsdpo bench` LoRA DPO steps (r 16 on all seven projections, one pair of 128 + 128
// tokens) on the 1–3B presets, with a bf16 or q4_k base, gradient checkpointing off and on. Each cell is its own
// process (peak RSS is a process's), run one after another, never beside anything else; each records the fit
// planner's prediction made before the model was built, so the table gives predicted against measured peak RSS and
// ms/step. Also times a refusal end to end: `tsdpo plan` (the same check `tsdpo train` makes before reading any
// weights) of the shipped model and HH data with micro-batches of 64 pairs, told that 200 MB is available.
//
//   node bench/fit-presets.mjs [--presets llama3.2-1b,qwen2.5-1.5b,llama3.2-3b] [--steps 1] [--out bench/results/fit-presets.json]

import { spawnSync } from "node:child_process";
import { loadavg } from "node:os";
import { cli, environment, option, report, round } from "./common.mjs";

const presets = option("presets", "llama3.2-1b,qwen2.5-1.5b,llama3.2-3b").split(",");
const steps = option("steps", "1");
const cells = [];
const loadBefore = loadavg();
for (const preset of presets)
  for (const base of ["bf16", "q4_k"])
    for (const ckpt of [false, true]) {
      const args = [cli, "bench", "--preset", preset, "--base-dtype", base, "--lora-r", "16", "--steps", steps, "--warmup", "1", "--json"];
      if (ckpt) args.push("--gradient-checkpointing");
      const t0 = performance.now();
      const r = spawnSync(process.execPath, args, { encoding: "utf8", maxBuffer: 1 << 24 });
      if (r.status !== 0) throw new Error(`${args.slice(1).join(" ")} failed: ${r.stderr}`);
      const j = JSON.parse(r.stdout);
      const cell = {
        preset, base, gradient_checkpointing: ckpt,
        ms_per_step: j.ms_per_step, peak_rss_mb: j.peak_rss_mb, step_gflops: j.step_gflops,
        predicted_peak_mb: j.plan.predicted_peak_mb, predicted_ms_per_step: j.plan.predicted_ms_per_step,
        peak_over_predicted: j.plan.peak_over_predicted, ms_over_predicted: j.plan.ms_over_predicted,
        plan_items_mb: j.plan.items_mb, wall_seconds: round((performance.now() - t0) / 1000, 1),
        check_loss: j.check.loss, loadavg_1m: loadavg()[0],
      };
      cells.push(cell);
      process.stderr.write(`${preset} ${base} ckpt ${ckpt}: ${cell.ms_per_step} ms (predicted ${cell.predicted_ms_per_step}), ` +
        `peak ${cell.peak_rss_mb} MB (predicted ${cell.predicted_peak_mb})\n`);
    }

// The refusal, timed from the command's start to its exit (Node's start-up, the header, tokenising 2,312 HH rows).
const refusal = (() => {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [cli, "plan", "--model", "assets/models/stories260K/stories260K.gguf", "--per_device_train_batch_size", "64",
    "--max_length", "1024", "--eval_size", "0", "--load_best_model_at_end", "false"], {
    encoding: "utf8", env: { ...process.env, TSDPO_MEMORY_AVAILABLE: "200MB" },
  });
  return { seconds: round((performance.now() - t0) / 1000, 2), status: r.status, message: r.stderr.trim().split("\n").at(-1) };
})();

report({
  command: `tsdpo bench --preset <preset> --base-dtype <bf16|q4_k> --lora-r 16 [--gradient-checkpointing] --steps ${steps} --warmup 1`,
  ...environment(), loadavg_before: loadBefore, loadavg_after: loadavg(),
  cells,
  max_abs_peak_error: round(Math.max(...cells.map((c) => Math.abs(c.peak_over_predicted - 1))), 3),
  max_abs_time_error: round(Math.max(...cells.map((c) => Math.abs(c.ms_over_predicted - 1))), 3),
  refusal,
}, option("out", null));
