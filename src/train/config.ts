// The training config: one flat object with TRL's DPOConfig names where TRL has one, a default and a "why" for
// every key. A config file is JSON; `--key=value` overrides on the command line are parsed with the key's type.
// Unknown keys and wrong types are errors that name the key and the file. The resolved config is written into
// the run folder and every checkpoint.

import { readFileSync } from "node:fs";
import { defaultBackendName } from "../backend/select.js";
import { configError, describeJsonError, inputError } from "../errors.js";
import { LOSS_KEYS, type LossConfig, lossConfigFromJson, lossConfigToJson } from "../loss/config.js";

export interface TrainConfig {
  /** Policy and reference start: a .gguf file or HF folder. Default: the shipped stories260K. */
  model: string | null;
  /** Preference file (JSONL/JSON/Parquet, .gz ok). Default: the shipped HH-RLHF harmless-base test pairs. */
  data: string | null;
  /** A separate eval file; when null, eval_size pairs are held out of `data`. */
  eval_data: string | null;
  /** Held-out eval pairs: a count (≥ 1) or a fraction (< 1) of `data`. 0 = no eval. */
  eval_size: number;
  /**
   * Field names for datasets that name them differently (e.g. "response_j"). prompt_field null (default): use
   * "prompt" where a row has it, else infer the prompt from the answers' shared prefix (HH-RLHF).
   */
  prompt_field: string | null;
  chosen_field: string;
  rejected_field: string;
  /** Malformed rows are counted and reported in invalid_rows.jsonl instead of stopping the run. */
  skip_invalid: boolean;
  /** Cap on prompt + longer answer (tokens). TRL default 1024; smaller models have shorter contexts. */
  max_length: number | null;
  /** Cap on the prompt (tokens, BOS included). TRL default 512. */
  max_prompt_length: number | null;
  /** Cap on each answer (tokens, EOS included). */
  max_completion_length: number | null;
  /** Which end of an over-long prompt survives ("keep_end" keeps the turn being answered, as TRL). */
  truncation_mode: "keep_end" | "keep_start";
  /** Where the run folder goes. null: runs/<date-time>. */
  output_dir: string | null;
  /** Seeds the data order and the held-out split, so two runs with one seed are identical. */
  seed: number;
  /** Pairs per micro-batch (each pair is two sequences through the model). */
  per_device_train_batch_size: number;
  per_device_eval_batch_size: number;
  /** Micro-batches summed before an optimizer step; the step's loss is the mean over all its pairs. */
  gradient_accumulation_steps: number;
  /** Passes over the training pairs (ignored when max_steps > 0). */
  num_train_epochs: number;
  /** Optimizer steps to run; -1 = num_train_epochs worth. */
  max_steps: number;
  /** Peak learning rate. TRL's DPO default is 1e-6 for billion-parameter models; tiny models want more. */
  learning_rate: number;
  lr_scheduler_type: "constant" | "linear" | "cosine";
  /** Linear warmup from 0, as steps, or as a share of all steps when warmup_steps is 0. */
  warmup_steps: number;
  warmup_ratio: number;
  /** AdamW's decoupled weight decay; not applied to norm weights and biases (as HF Trainer). */
  weight_decay: number;
  adam_beta1: number;
  adam_beta2: number;
  adam_epsilon: number;
  /** Global gradient-norm clip; 0 = off. */
  max_grad_norm: number;
  /** Log metrics every N optimizer steps. */
  logging_steps: number;
  /** Evaluate every N steps (and at the end); 0 = only at the end. */
  eval_steps: number;
  /** Checkpoint every N steps (and at the end); 0 = only the final weights. */
  save_steps: number;
  /** Compute the reference log-probs once before training (cached on disk) instead of a frozen copy. */
  precompute_ref_log_probs: boolean;
  /** Pack each pair as prompt ++ chosen ++ rejected so the prompt is computed once for both answers (tsdpo's own
   *  option; false gives TRL's concatenated batch of 2B rows, the same numbers up to float rounding). */
  shared_prefix: boolean;
  /** A different reference model; null = the starting policy. */
  ref_model: string | null;
  /** Kernel backend. Without the key: the environment variable TSDPO_BACKEND, else auto (src/backend/select.ts). */
  backend: "auto" | "js" | "native";
  /** LoRA instead of full fine-tuning (TRL's ModelConfig names). The reference is then the same model with its
   *  adapters switched off, unless ref_model or precompute_ref_log_probs says otherwise. */
  use_peft: boolean;
  lora_r: number;
  lora_alpha: number;
  lora_dropout: number;
  /** PEFT module names: any of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj. */
  lora_target_modules: string[];
  /** Continue training an existing PEFT adapter (implies use_peft; its r, alpha and targets win). */
  adapter: string | null;
  /** The preference loss and its options (TRL's flat keys: loss_type, beta, label_smoothing, …). */
  loss: LossConfig;
}

type Scalar = string | number | boolean | null | string[];
type Rest = Omit<TrainConfig, "loss">;

export const DEFAULT_TRAIN_CONFIG: Rest = {
  model: null,
  data: null,
  eval_data: null,
  eval_size: 0,
  prompt_field: null,
  chosen_field: "chosen",
  rejected_field: "rejected",
  skip_invalid: false,
  max_length: 1024,
  max_prompt_length: 512,
  max_completion_length: null,
  truncation_mode: "keep_end",
  output_dir: null,
  seed: 42,
  per_device_train_batch_size: 8,
  per_device_eval_batch_size: 8,
  gradient_accumulation_steps: 1,
  num_train_epochs: 1,
  max_steps: -1,
  learning_rate: 1e-6,
  lr_scheduler_type: "linear",
  warmup_steps: 0,
  warmup_ratio: 0,
  weight_decay: 0,
  adam_beta1: 0.9,
  adam_beta2: 0.999,
  adam_epsilon: 1e-8,
  max_grad_norm: 1.0,
  logging_steps: 1,
  eval_steps: 0,
  save_steps: 0,
  precompute_ref_log_probs: false,
  shared_prefix: true,
  ref_model: null,
  backend: "auto",
  use_peft: false,
  lora_r: 16,
  lora_alpha: 32,
  lora_dropout: 0.05,
  lora_target_modules: ["q_proj", "k_proj", "v_proj", "o_proj"],
  adapter: null,
};

type Kind = "string?" | "string" | "number" | "number?" | "int" | "int?" | "bool" | "strings" | { oneOf: readonly string[] };
const KINDS: { [K in keyof Rest]: Kind } = {
  model: "string?", data: "string?", eval_data: "string?", eval_size: "number", prompt_field: "string?",
  chosen_field: "string", rejected_field: "string", skip_invalid: "bool", max_length: "int?", max_prompt_length: "int?",
  max_completion_length: "int?", truncation_mode: { oneOf: ["keep_end", "keep_start"] }, output_dir: "string?",
  seed: "int", per_device_train_batch_size: "int", per_device_eval_batch_size: "int", gradient_accumulation_steps: "int",
  num_train_epochs: "number", max_steps: "int", learning_rate: "number",
  lr_scheduler_type: { oneOf: ["constant", "linear", "cosine"] }, warmup_steps: "int", warmup_ratio: "number",
  weight_decay: "number", adam_beta1: "number", adam_beta2: "number", adam_epsilon: "number", max_grad_norm: "number",
  logging_steps: "int", eval_steps: "int", save_steps: "int", precompute_ref_log_probs: "bool", shared_prefix: "bool", ref_model: "string?",
  backend: { oneOf: ["auto", "js", "native"] },
  use_peft: "bool", lora_r: "int", lora_alpha: "number", lora_dropout: "number", lora_target_modules: "strings",
  adapter: "string?",
};

const describe = (v: unknown): string => (typeof v === "string" ? JSON.stringify(v) : v === null ? "null" : Array.isArray(v) ? "a list" : typeof v === "object" ? "an object" : String(v));

function checkValue(key: string, kind: Kind, v: unknown, where: string): Scalar {
  const bad = (want: string): never => {
    throw configError(`${where}: "${key}" must be ${want}, got ${describe(v)}`);
  };
  if (typeof kind === "object") {
    if (typeof v !== "string" || !kind.oneOf.includes(v)) bad(`one of ${kind.oneOf.map((s) => `"${s}"`).join(", ")}`);
    return v as string;
  }
  if (kind === "strings") {
    if (!Array.isArray(v) || v.length === 0 || v.some((x) => typeof x !== "string" || x === ""))
      bad('a non-empty list of strings, e.g. ["q_proj", "v_proj"]');
    return [...(v as string[])];
  }
  const nullable = kind.endsWith("?");
  if (v === null) return nullable ? null : bad(kind === "string" ? "a string" : kind === "bool" ? "true or false" : "a number");
  switch (kind) {
    case "string":
    case "string?":
      return typeof v === "string" && v !== "" ? v : bad("a non-empty string" + (nullable ? " or null" : ""));
    case "bool":
      return typeof v === "boolean" ? v : bad("true or false");
    case "number":
    case "number?":
      return typeof v === "number" && Number.isFinite(v) ? v : bad("a finite number" + (nullable ? " or null" : ""));
    case "int":
    case "int?":
      return typeof v === "number" && Number.isInteger(v) ? v : bad("a whole number" + (nullable ? " or null" : ""));
  }
}

/** Range checks that need more than the type. */
function checkRanges(c: TrainConfig, where: string): void {
  const req = (ok: boolean, key: keyof TrainConfig, what: string): void => {
    if (!ok) throw configError(`${where}: "${key}" must be ${what}, got ${describe(c[key])}`);
  };
  req(c.eval_size >= 0, "eval_size", "≥ 0 (a count, or a fraction below 1)");
  req(c.per_device_train_batch_size >= 1, "per_device_train_batch_size", "≥ 1");
  req(c.per_device_eval_batch_size >= 1, "per_device_eval_batch_size", "≥ 1");
  req(c.gradient_accumulation_steps >= 1, "gradient_accumulation_steps", "≥ 1");
  req(c.num_train_epochs > 0 || c.max_steps > 0, "num_train_epochs", "> 0 (or set max_steps)");
  req(c.max_steps === -1 || c.max_steps >= 1, "max_steps", "-1 or ≥ 1");
  req(c.learning_rate >= 0, "learning_rate", "≥ 0");
  req(c.warmup_steps >= 0, "warmup_steps", "≥ 0");
  req(c.warmup_ratio >= 0 && c.warmup_ratio <= 1, "warmup_ratio", "in [0, 1]");
  req(c.weight_decay >= 0, "weight_decay", "≥ 0");
  req(c.adam_beta1 >= 0 && c.adam_beta1 < 1, "adam_beta1", "in [0, 1)");
  req(c.adam_beta2 >= 0 && c.adam_beta2 < 1, "adam_beta2", "in [0, 1)");
  req(c.adam_epsilon > 0, "adam_epsilon", "> 0");
  req(c.max_grad_norm >= 0, "max_grad_norm", "≥ 0 (0 = no clipping)");
  req(c.logging_steps >= 1, "logging_steps", "≥ 1");
  req(c.eval_steps >= 0, "eval_steps", "≥ 0");
  req(c.save_steps >= 0, "save_steps", "≥ 0");
  req(c.max_length === null || c.max_length >= 2, "max_length", "≥ 2 or null");
  req(c.lora_r >= 1, "lora_r", "≥ 1");
  req(c.lora_alpha > 0, "lora_alpha", "> 0");
  req(c.lora_dropout >= 0 && c.lora_dropout < 1, "lora_dropout", "in [0, 1)");
  req(c.max_prompt_length === null || c.max_prompt_length >= 1, "max_prompt_length", "≥ 1 or null");
  if (c.max_length !== null && c.max_prompt_length !== null && c.max_prompt_length >= c.max_length)
    throw configError(`${where}: "max_prompt_length" (${c.max_prompt_length}) must be below "max_length" (${c.max_length}) so answers keep at least one token`);
  if (c.eval_data !== null && c.eval_size > 0)
    throw configError(`${where}: set either "eval_data" (a file) or "eval_size" (held out of data), not both`);
}

const TRAINER_KEYS = Object.keys(DEFAULT_TRAIN_CONFIG) as (keyof Rest)[];

function closest(key: string, candidates: readonly string[]): string | null {
  let best: string | null = null;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = editDistance(key, c);
    if (d < bestD) [best, bestD] = [c, d];
  }
  return bestD <= Math.max(2, Math.floor(key.length / 4)) ? best : null;
}

function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j]!;
      prev[j] = Math.min(prev[j]! + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = tmp;
    }
  }
  return prev[b.length]!;
}

/**
 * Resolves a config object (from a file, already merged with overrides): every trainer key typed and range-checked,
 * the loss keys handed to the loss parser. `where` names the source for messages.
 */
export function resolveTrainConfig(obj: unknown, where: string): TrainConfig {
  if (obj === null || typeof obj !== "object" || Array.isArray(obj))
    throw configError(`${where}: a training config is a JSON object of settings, got ${describe(obj)}`);
  const o = obj as Record<string, unknown>;
  const lossObj: Record<string, unknown> = {};
  const rest: Record<string, Scalar> = { ...DEFAULT_TRAIN_CONFIG };
  for (const [key, v] of Object.entries(o)) {
    if (key === "loss" && v !== null && typeof v === "object" && !Array.isArray(v)) {
      Object.assign(lossObj, v); // a nested "loss" section, as written back into run folders
      continue;
    }
    if ((TRAINER_KEYS as string[]).includes(key)) rest[key] = checkValue(key, KINDS[key as keyof Rest], v, where);
    else if (LOSS_KEYS.includes(key)) lossObj[key] = v;
    else {
      const hint = closest(key, [...TRAINER_KEYS, ...LOSS_KEYS]);
      throw configError(`${where}: unknown key "${key}"${hint ? ` (did you mean "${hint}"?)` : ""}; README lists the training options`);
    }
  }
  // Resolved here, not when the backend is selected, so that the run folder's config.json (and a resume) has it.
  if (!("backend" in o)) rest.backend = defaultBackendName();
  const cfg = { ...(rest as unknown as Rest), loss: lossConfigFromJson(lossObj, `${where}: loss`) };
  // A max_length below the default prompt cap (512) would otherwise leave no room for answers: when only
  // max_length was given, the prompt cap follows it at half, the ratio of TRL's defaults.
  if (!("max_prompt_length" in o) && cfg.max_length !== null && cfg.max_prompt_length !== null && cfg.max_prompt_length >= cfg.max_length)
    cfg.max_prompt_length = Math.floor(cfg.max_length / 2);
  checkRanges(cfg, where);
  return cfg;
}

/** The JSON written into run folders: every trainer key, then the loss section. */
export function trainConfigToJson(cfg: TrainConfig): Record<string, unknown> {
  const { loss, ...rest } = cfg;
  return { ...rest, loss: lossConfigToJson(loss) };
}

/** Reads a config file. */
export function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? String(e);
    throw inputError(`${path}: cannot read the config file (${code}); a config is a JSON file of settings (settings on the command line are --key=value; a run folder for --resume holds its config.json)`);
  }
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch (e) {
    throw configError(`${path}: not valid JSON (${describeJsonError(text, e)})`);
  }
  if (obj === null || typeof obj !== "object" || Array.isArray(obj))
    throw configError(`${path}: a training config is a JSON object of settings`);
  return obj as Record<string, unknown>;
}

/**
 * Applies `--key=value` overrides. The value is parsed as JSON when it parses (numbers, true/false, null, lists),
 * else taken as a string, so `--data=pairs.jsonl` and `--beta=0.5` both work; the resolver then checks its type.
 * A bare `--key` means `--key=true` (`--skip_invalid`), and dashes in a key are underscores (`--skip-invalid`), as
 * command-line flags are usually spelled.
 */
export function applyOverrides(base: Record<string, unknown>, overrides: readonly string[]): Record<string, unknown> {
  const out = { ...base };
  for (const o of overrides) {
    const m = /^--([A-Za-z_][\w.-]*)(?:=(.*))?$/s.exec(o);
    if (!m) throw configError(`override "${o}": expected --key=value, e.g. --beta=0.1`);
    let value: unknown = m[2] ?? true;
    if (m[2] !== undefined)
      try {
        value = JSON.parse(m[2]);
      } catch {
        // a plain string
      }
    const key = m[1]!.replace(/-/g, "_");
    // Checked here, so that the message names the override rather than the config file it is merged into.
    if (!(TRAINER_KEYS as string[]).includes(key) && !LOSS_KEYS.includes(key)) {
      const hint = closest(key, [...TRAINER_KEYS, ...LOSS_KEYS]);
      throw configError(`override "${o}": unknown key "${key}"${hint ? ` (did you mean "--${hint}"?)` : ""}; README lists the training options`);
    }
    if ((TRAINER_KEYS as string[]).includes(key)) checkValue(key, KINDS[key as keyof Rest], value, `override "${o}"`);
    out[key] = value;
  }
  return out;
}
