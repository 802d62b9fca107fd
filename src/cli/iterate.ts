// `tsdpo iterate`: online DPO in rounds (src/iterate/iterate.ts).

import { dirname, resolve } from "node:path";
import { readFileSync } from "node:fs";
import { configError, inputError } from "../errors.js";
import { applyOverrides } from "../train/config.js";
import { ITERATE_DEFAULTS, iterateOptionTypes, resolveIterateConfig, resolveIteratePaths } from "../iterate/config.js";
import type { Command } from "./commands.js";

const keyList = Object.entries(ITERATE_DEFAULTS).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(", ");

export const iterateCommand: Command = {
  summary: "online DPO in rounds: sample the policy, judge, pair, train, measure; resumes after any kill",
  help: `usage: tsdpo iterate [<config.json>] [--key value ...]
  Each round samples k completions per prompt from the current policy (batched, through the KV cache), scores them
  with the judge, pairs the best against the worst (pair_rule best_vs_worst) or every two whose scores differ by more
  than pair_margin (pair_rule all), and trains one DPO run on the pairs. Before round 1 and after each round it
  measures the held-out prompts: judge score, win-rate against the original model and KL(π‖π_ref), from samples at
  temperature 1. Running the same command again resumes a killed run where it stopped, with the same results.
  keys:   model, prompts (one per line, or JSON Lines with "prompt"), eval_prompts, output_dir, and
          ${keyList}
  judge:  "afinn" | "length" | "json" | {"regex": [{"pattern": "...", "weight": 1}]} | {"json": <JSON Schema>}
          | "module:<file.mjs|.ts>" (exports score(prompt, completion) or compare(prompt, a, b), sync or async)
          | "reward:<HF *ForSequenceClassification folder>" | "llm:<model>" or {"llm": "<model>", "template": "<file>"}
  Every \`tsdpo train\` key (beta, learning_rate, loss_type, per_device_train_batch_size, …) goes to each round's
  DPO step. Without a file: the shipped stories260K, the shipped story openings and the AFINN judge.
  The folder gets iterate.json, round-R/{samples,scores,pairs}.jsonl and round-R/train/, eval/round-R/,
  results.json and report.html.`,
  options: { ...Object.fromEntries(Object.entries(iterateOptionTypes()).map(([k, type]) => [k, { type }])), quiet: { type: "boolean" } },
  async run(v, positionals) {
    const { runIterate } = await import("../iterate/iterate.js");
    if (positionals.length > 1) throw configError(`iterate: give one config file, got ${positionals.length} (${positionals.join(", ")}); settings go as --key value`);
    let base: Record<string, unknown> = {};
    const file = positionals[0];
    if (file !== undefined) {
      let text: string;
      try {
        text = readFileSync(file, "utf8");
      } catch (e) {
        throw inputError(`${file}: cannot read the config file (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
      }
      let obj: unknown;
      try {
        obj = JSON.parse(text);
      } catch (e) {
        throw configError(`${file}: not valid JSON (${(e as Error).message})`);
      }
      if (obj === null || typeof obj !== "object" || Array.isArray(obj)) throw configError(`${file}: an iterate config is a JSON object of settings`);
      base = resolveIteratePaths(obj as Record<string, unknown>, dirname(resolve(file)), file);
    }
    const settings = Object.fromEntries(Object.entries(v).filter(([k]) => k !== "quiet"));
    // Train's override parser types train keys; iterate's own keys are parsed as JSON when they parse.
    const own: Record<string, unknown> = {};
    const trainSettings: typeof settings = {};
    const iterateKeys = new Set(["model", "prompts", "eval_prompts", "output_dir", ...Object.keys(ITERATE_DEFAULTS)]);
    for (const [k, raw] of Object.entries(settings)) {
      if (raw === undefined) continue;
      if (!iterateKeys.has(k)) {
        trainSettings[k] = raw;
        continue;
      }
      let value: unknown = raw;
      if (typeof raw === "string")
        try {
          value = JSON.parse(raw);
        } catch {
          // a plain string
        }
      own[k] = value;
    }
    const merged = { ...applyOverrides(base, trainSettings), ...resolveIteratePaths(own, process.cwd(), "the command line") };
    const where = (file ?? "tsdpo iterate") + (Object.keys(settings).length ? " with the command line's settings" : "");
    const cfg = resolveIterateConfig(merged, where);
    await runIterate(cfg, { quiet: v.quiet === true });
  },
};
