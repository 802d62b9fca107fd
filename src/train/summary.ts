// The lines a run ends with: where it started and ended on the held-out pairs, its best evaluation, how long it
// took, and the commands to run next on it.

import { existsSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { fmtTime } from "./progress.js";

export type MetricsRow = Record<string, number>;

/** metrics.jsonl as rows; a last line cut short by a crash is skipped. */
export function readMetricsRows(path: string): MetricsRow[] {
  if (!existsSync(path)) return [];
  const rows: MetricsRow[] = [];
  for (const line of readFileSync(path, "utf8").split("\n")) {
    if (!line) continue;
    try {
      rows.push(JSON.parse(line) as MetricsRow);
    } catch {
      // the torn last line of a killed run
    }
  }
  return rows;
}

export interface SummaryInfo {
  runDir: string;
  finalDir: string;
  seconds: number;
  /** The metric that ranked evaluations, when one did. */
  best: { metric: string; step: number; value: number; final_is_best: boolean } | null;
  modelPath: string;
  dataPath: string;
  report: string;
  /** Whether the model's family exports to GGUF (the "next" commands suggest it only then). */
  ggufExport?: boolean;
  /** The "next" commands in place of a preference run's, given the function that shortens paths and the run folder. */
  next?: (here: (p: string) => string, run: string) => string[];
}

/** Held-out metrics in the table, with the direction in which each is better. */
const EVAL_KEYS: [string, "min" | "max"][] = [
  ["eval_loss", "min"],
  ["eval_rewards/accuracies", "max"],
  ["eval_rewards/margins", "max"],
  ["eval_rewards/chosen", "max"],
  ["eval_rewards/rejected", "min"],
  ["eval_mean_token_accuracy", "max"], // SFT
];
const TRAIN_KEYS = ["loss", "rewards/accuracies", "rewards/margins", "mean_token_accuracy"];

const fmt = (x: number | undefined): string => (x === undefined ? "—" : x.toFixed(4));

/** The end-of-run summary: a start → end table with the best held-out values, then the next commands. */
export function runSummary(rows: readonly MetricsRow[], info: SummaryInfo): string {
  const train = rows.filter((r) => "loss" in r);
  const evals = rows.filter((r) => "eval_loss" in r);
  const steps = train.at(-1)?.step ?? 0;
  const here = (p: string): string => {
    const rel = relative(process.cwd(), p);
    return rel && !rel.startsWith("..") ? rel : p;
  };
  const lines = [`done: ${steps} steps in ${fmtTime(info.seconds)}`];
  const table: string[][] = [["", "start", "end", "best"]];
  if (evals.length > 0) {
    const first = evals[0]!;
    const last = evals.at(-1)!;
    table.push(["held-out (eval)", `step ${first.step}`, `step ${last.step}`, info.best ? `step ${info.best.step}` : "(step)"]);
    const bestRow = info.best ? evals.find((r) => r.step === info.best!.step) : undefined;
    for (const [key, dir] of EVAL_KEYS) {
      if (!(key in last)) continue;
      let bestCell: string;
      if (bestRow) bestCell = fmt(bestRow[key]);
      else {
        const pick = evals.reduce((a, b) => ((dir === "min" ? b[key]! < a[key]! : b[key]! > a[key]!) ? b : a));
        bestCell = `${fmt(pick[key])} (${pick.step})`;
      }
      table.push([key, fmt(first[key]), fmt(last[key]), bestCell]);
    }
  }
  if (train.length > 0) {
    table.push(["training (last batch)", `step ${train[0]!.step}`, `step ${train.at(-1)!.step}`, ""]);
    for (const key of TRAIN_KEYS) if (key in train[0]!) table.push([key, fmt(train[0]![key]), fmt(train.at(-1)![key]), ""]);
  }
  const widths = table[0]!.map((_, c) => Math.max(...table.map((r) => r[c]!.length)));
  for (const r of table) lines.push("  " + r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join("  ").trimEnd());
  if (evals.length === 0) lines.push("  no held-out pairs (set eval_size or eval_data to measure the run on pairs it did not train on)");
  if (info.best)
    lines.push(
      info.best.final_is_best
        ? `final/ holds the best evaluation's weights (step ${info.best.step}, ${info.best.metric} ${info.best.value.toFixed(4)}); best/ keeps them too`
        : `best evaluation: step ${info.best.step} (${info.best.metric} ${info.best.value.toFixed(4)}), weights in best/; final/ holds the last step's`,
    );
  const run = here(info.runDir);
  const prompts = join(info.runDir, "prompts.jsonl");
  if (info.next) {
    lines.push(`final weights: ${here(info.finalDir)}`, `report: ${here(info.report)}`, "next:", ...info.next(here, run));
    return lines.join("\n");
  }
  lines.push(
    `final weights: ${here(info.finalDir)}`,
    `report: ${here(info.report)}`,
    "next:",
    ...(existsSync(prompts)
      ? [`  tsdpo sample --model ${run} --reference ${here(info.modelPath)} --prompts ${here(prompts)}   # tuned next to the reference`]
      : []),
    `  tsdpo eval --model ${run} --data ${here(info.dataPath)}   # preference accuracy against the starting model`,
    info.ggufExport === false
      ? `  tsdpo export ${run} --format hf --out ${here(join(info.runDir, "hf"))}   # a Hugging Face folder`
      : `  tsdpo export ${run} --format gguf --out ${here(join(info.runDir, "model.gguf"))}   # for llama.cpp and ollama`,
  );
  return lines.join("\n");
}
