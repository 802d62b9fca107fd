// `tsdpo iterate`'s settings: its own keys (below, with defaults and why), and every `tsdpo train` key, which each
// round's DPO step receives. Read from a JSON file (paths relative to the file's folder) with --key=value
// overrides (paths relative to the current folder), as `tsdpo train` reads its config.

import { resolve } from "node:path";
import { configError, inputError } from "../errors.js";
import { existsSync } from "node:fs";
import { closest } from "../suggest.js";
import { hubIdHint, defaultModelPath } from "../paths.js";
import { demoPromptsPath } from "../demo/demo.js";
import { type TrainConfig, resolveTrainConfig, trainOptionTypes } from "../train/config.js";

export interface IterateConfig {
  /** The starting policy, and π_ref (the shipped stories260K by default). */
  model: string;
  /** Prompts to sample: one per line, or JSON Lines with a "prompt" field (a preference file's prompts). */
  prompts: string;
  /** Held-out prompts for the per-round measurements; null: the last heldout_share of prompts (seeded shuffle). */
  eval_prompts: string | null;
  heldout_share: number;
  /** The judge: "afinn", "length", "json", {"regex": …}, {"json": schema}, "module:<path>", "reward:<folder>", "llm:<model>". */
  judge: unknown;
  rounds: number;
  /** Completions per prompt per round (k ≥ 2: a pair needs two). */
  k: number;
  /** best_vs_worst: one pair per prompt, the best- and worst-scored completions; all: every pair whose scores differ by more than pair_margin. */
  pair_rule: "best_vs_worst" | "all";
  pair_margin: number;
  /** none: every round trains against the original model (default); round: against the previous round's policy. */
  ref_update: "none" | "round";
  /** Sampling of the training completions. The held-out measurements always sample at temperature 1 with no top-k/top-p. */
  max_new_tokens: number;
  temperature: number;
  top_k: number;
  top_p: number;
  /** Completions per held-out prompt for each measurement. */
  eval_samples: number;
  /** Sequences the batched sampler decodes together. */
  sample_rows: number;
  output_dir: string;
  seed: number;
  /** The train keys given (model, data, output_dir and ref_model are set per round). */
  train: Record<string, unknown>;
}

export const ITERATE_DEFAULTS: Omit<IterateConfig, "model" | "prompts" | "output_dir" | "train"> = {
  eval_prompts: null,
  heldout_share: 0.15, // the demo's share of held-out story openings
  judge: "afinn",
  rounds: 3,
  k: 4, // two pairs' worth per prompt under "all", a clear best and worst under best_vs_worst
  pair_rule: "best_vs_worst",
  pair_margin: 0,
  ref_update: "none",
  max_new_tokens: 32,
  temperature: 1, // samples from π itself: the online-DPO setting
  top_k: 0,
  top_p: 1,
  eval_samples: 4,
  sample_rows: 16,
  seed: 42,
};

const ITERATE_KEYS = ["model", "prompts", "output_dir", ...Object.keys(ITERATE_DEFAULTS)];
const PATH_KEYS = ["model", "prompts", "eval_prompts"] as const;

/** The CLI's option types for iterate: its own keys plus train's. */
export function iterateOptionTypes(): Record<string, "string" | "boolean"> {
  const out = { ...trainOptionTypes() };
  for (const k of ITERATE_KEYS) out[k] = "string";
  return out;
}

/** Resolves the path keys of a config file's object against the file's folder (the judge's module path too). */
export function resolveIteratePaths(obj: Record<string, unknown>, baseDir: string, where: string): Record<string, unknown> {
  const out = { ...obj };
  for (const key of PATH_KEYS) {
    const v = out[key];
    if (typeof v !== "string" || v === "") continue;
    const abs = resolve(baseDir, v);
    if (!existsSync(abs)) throw inputError(`${where}: "${key}": ${JSON.stringify(v)} (${abs}) does not exist${hubIdHint(v)}`);
    out[key] = abs;
  }
  if (typeof out.judge === "string") {
    const m = /^(module|reward|llm):(.+)$/.exec(out.judge);
    if (m) out.judge = `${m[1]}:${resolve(baseDir, m[2]!)}`;
  } else if (out.judge !== null && typeof out.judge === "object" && typeof (out.judge as Record<string, unknown>).llm === "string") {
    const j = { ...(out.judge as Record<string, unknown>) };
    j.llm = resolve(baseDir, j.llm as string);
    if (typeof j.template === "string") j.template = resolve(baseDir, j.template);
    out.judge = j;
  }
  for (const key of ["data", "eval_data", "ref_model", "adapter"]) if (typeof out[key] === "string") out[key] = resolve(baseDir, out[key] as string);
  if (typeof out.output_dir === "string") out.output_dir = resolve(out.output_dir as string);
  return out;
}

function num(o: Record<string, unknown>, key: string, where: string, ok: (n: number) => boolean, want: string): number {
  const v = o[key] ?? (ITERATE_DEFAULTS as Record<string, unknown>)[key];
  if (typeof v !== "number" || !ok(v)) throw configError(`${where}: "${key}" must be ${want}, got ${JSON.stringify(v)}`);
  return v;
}

function oneOf<T extends string>(o: Record<string, unknown>, key: string, where: string, values: readonly T[]): T {
  const v = o[key] ?? (ITERATE_DEFAULTS as Record<string, unknown>)[key];
  if (typeof v !== "string" || !(values as readonly string[]).includes(v))
    throw configError(`${where}: "${key}" must be ${values.map((x) => `"${x}"`).join(" or ")}, got ${JSON.stringify(v)}`);
  return v as T;
}

const int = (n: number): boolean => Number.isInteger(n);

/** Checks every key; train keys are checked by train's own resolver (with this run's per-round keys filled in). */
export function resolveIterateConfig(obj: Record<string, unknown>, where: string): IterateConfig {
  const train: Record<string, unknown> = {};
  const trainKeys = new Set(Object.keys(trainOptionTypes()));
  for (const [key, v] of Object.entries(obj)) {
    if (ITERATE_KEYS.includes(key)) continue;
    if (trainKeys.has(key) || key === "loss") {
      if (key === "data") throw configError(`${where}: "data" is made by each round (its pairs); give the prompts to sample as "prompts"`);
      train[key] = v;
      continue;
    }
    const hint = closest(key, [...ITERATE_KEYS, ...trainKeys]);
    throw configError(`${where}: unknown key "${key}"${hint ? ` (did you mean "${hint}"?)` : ""}; \`tsdpo iterate --help\` lists iterate's keys, \`tsdpo train --list-keys\` the training keys`);
  }
  if (train.use_peft === true)
    throw configError(`${where}: "use_peft": iterate trains the full model for now (each round continues the previous round's weights); leave use_peft out`);
  const str = (key: string, dflt: string | null): string | null => {
    const v = obj[key] ?? dflt;
    if (v !== null && (typeof v !== "string" || v === "")) throw configError(`${where}: "${key}" must be a path, got ${JSON.stringify(v)}`);
    return v as string | null;
  };
  const cfg: IterateConfig = {
    model: resolve(str("model", defaultModelPath)!),
    prompts: resolve(str("prompts", demoPromptsPath())!),
    eval_prompts: str("eval_prompts", null),
    heldout_share: num(obj, "heldout_share", where, (n) => n > 0 && n < 1, "a fraction between 0 and 1"),
    judge: obj.judge ?? ITERATE_DEFAULTS.judge,
    rounds: num(obj, "rounds", where, (n) => int(n) && n >= 1, "a whole number ≥ 1"),
    k: kOf(obj, where),
    pair_rule: oneOf(obj, "pair_rule", where, ["best_vs_worst", "all"] as const),
    pair_margin: num(obj, "pair_margin", where, (n) => n >= 0 && Number.isFinite(n), "a number ≥ 0"),
    ref_update: oneOf(obj, "ref_update", where, ["none", "round"] as const),
    max_new_tokens: num(obj, "max_new_tokens", where, (n) => int(n) && n >= 1, "a whole number ≥ 1"),
    temperature: num(obj, "temperature", where, (n) => n > 0 && Number.isFinite(n), "a number > 0 (sampled completions; 0 would make all k the same)"),
    top_k: num(obj, "top_k", where, (n) => int(n) && n >= 0, "a whole number ≥ 0 (0 = no limit)"),
    top_p: num(obj, "top_p", where, (n) => n > 0 && n <= 1, "a number in (0, 1]"),
    eval_samples: num(obj, "eval_samples", where, (n) => int(n) && n >= 1, "a whole number ≥ 1"),
    sample_rows: num(obj, "sample_rows", where, (n) => int(n) && n >= 1 && n <= 256, "a whole number from 1 to 256"),
    output_dir: resolve(str("output_dir", "runs/iterate")!),
    seed: num(obj, "seed", where, (n) => int(n) && n >= 0, "a whole number ≥ 0"),
    train,
  };
  if (cfg.eval_prompts !== null) cfg.eval_prompts = resolve(cfg.eval_prompts);
  // The train keys are checked now, not at round 1's end of sampling.
  roundTrainConfig(cfg, { round: 1, model: cfg.model, data: cfg.prompts, outputDir: resolve(cfg.output_dir, "round-1", "train") }, where);
  return cfg;
}

/** The DPO step's config for one round. */
export function roundTrainConfig(cfg: IterateConfig, r: { round: number; model: string; data: string; outputDir: string }, where: string): TrainConfig {
  const obj: Record<string, unknown> = {
    // Completions were cut at max_new_tokens: capping answers there keeps the data pipeline from appending an EOS
    // to a cut one, so the policy is not taught to stop where sampling ran out of budget (the demo does the same).
    max_completion_length: cfg.max_new_tokens,
    seed: cfg.seed,
    ...cfg.train,
    model: r.model,
    data: r.data,
    output_dir: r.outputDir,
  };
  // ref_update none: the original model is π_ref in every round; round: the previous policy, which is what train
  // uses when no ref_model is given (the model it starts from).
  if (cfg.ref_update === "none" && r.round > 1) obj.ref_model = cfg.model;
  return resolveTrainConfig(obj, `${where} (round ${r.round}'s training)`);
}


/** k < 2 cannot make a pair: an input error (exit 1), named as such. */
function kOf(o: Record<string, unknown>, where: string): number {
  const v = o.k ?? ITERATE_DEFAULTS.k;
  if (typeof v !== "number" || !int(v) || v < 2)
    throw inputError(`${where}: "k" is ${JSON.stringify(v)}; it must be a whole number ≥ 2 (a pair needs two completions of a prompt)`);
  return v;
}
