// The SFT config (`tsdpo sft`): the training keys that mean the same for supervised fine-tuning as for preference
// training (model, data, schedule, optimizer, evaluation, checkpoints, LoRA, …), resolved and checked by the training
// config's own parser, plus TRL SFTConfig's keys of its own. TRL SFTConfig's defaults where they differ from
// DPOConfig's: learning_rate 2e-5, truncation_mode keep_start. Keys of preference training (the loss, the reference,
// the pair fields) are errors that say so. The resolved config, with "trainer": "sft", is what a run folder keeps.

import { configError } from "../errors.js";
import { closest } from "../suggest.js";
import { LOSS_KEYS } from "../loss/config.js";
import { DEFAULT_TRAIN_CONFIG, KEY_HELP, type TrainConfig, applyOverrides, resolveTrainConfig, trainOptionTypes } from "./config.js";

/** Training keys SFT shares with preference training, with the same meaning and checks. */
export const SFT_SHARED_KEYS = [
  "model", "data", "eval_data", "eval_size", "tools", "chat_template_kwargs", "skip_invalid", "max_length", "truncation_mode",
  "output_dir", "seed", "per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
  "num_train_epochs", "max_steps", "learning_rate", "lr_scheduler_type", "warmup_steps", "warmup_ratio", "weight_decay",
  "adam_beta1", "adam_beta2", "adam_epsilon", "max_grad_norm", "logging_steps", "eval_steps", "eval_on_start", "save_steps",
  "save_minutes", "save_total_limit", "metric_for_best_model", "greater_is_better", "load_best_model_at_end", "backend",
  "use_peft", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "adapter", "dequantize", "gradient_checkpointing",
  "force",
] as const satisfies readonly (keyof TrainConfig)[];

export interface SftConfig extends Pick<TrainConfig, (typeof SFT_SHARED_KEYS)[number]> {
  /** Pack the sequences two to a row of max_length tokens (TRL's packing, best fit decreasing), so fewer padding
   *  positions are computed. Rows hold at most two sequences: the attention mask keeps two apart. */
  packing: boolean;
  /** Prompt-completion rows: the loss counts only the completion. null: on for such rows (TRL's default). */
  completion_only_loss: boolean | null;
  /** Conversations: the loss counts only the assistant's turns. Off by default, so every token counts (TRL's). */
  assistant_only_loss: boolean;
  /** The field of language-modeling rows (TRL's dataset_text_field). */
  dataset_text_field: string;
}

export const SFT_DEFAULTS = { packing: false, completion_only_loss: null, assistant_only_loss: false, dataset_text_field: "text" } as const;
const SFT_KEYS = Object.keys(SFT_DEFAULTS) as (keyof typeof SFT_DEFAULTS)[];
/** TRL SFTConfig's defaults for shared keys where they differ from tsdpo train's (DPOConfig's). */
const SFT_SHARED_DEFAULTS = { learning_rate: 2e-5, truncation_mode: "keep_start" } as const;
/** The eval metrics an SFT run logs, which metric_for_best_model may name. */
const SFT_METRICS = ["loss", "mean_token_accuracy", "entropy"];

const describe = (v: unknown): string => (v === undefined ? "nothing" : JSON.stringify(v) ?? String(v));

/** Resolves a config object (from a file, merged with overrides, or a run folder's config.json). */
export function resolveSftConfig(obj: unknown, where: string): SftConfig {
  if (obj === null || typeof obj !== "object" || Array.isArray(obj)) throw configError(`${where}: an SFT config is a JSON object of settings, got ${describe(obj)}`);
  const { trainer, ...o } = obj as Record<string, unknown>;
  if (trainer !== undefined && trainer !== "sft")
    throw configError(`${where}: "trainer" is ${describe(trainer)}; this is \`tsdpo sft\`'s config (a preference run's config goes to \`tsdpo train\`)`);
  const shared: Record<string, unknown> = { ...SFT_SHARED_DEFAULTS };
  const own: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) {
    if ((SFT_KEYS as string[]).includes(k)) own[k] = v;
    else if ((SFT_SHARED_KEYS as readonly string[]).includes(k)) shared[k] = v;
    else if (k in DEFAULT_TRAIN_CONFIG || LOSS_KEYS.includes(k) || k === "loss")
      throw configError(`${where}: "${k}" is a key of preference training (\`tsdpo train\`); SFT has no ${k === "loss" || LOSS_KEYS.includes(k) ? "preference loss" : "use for it"}, so remove it`);
    else {
      const hint = closest(k, [...SFT_SHARED_KEYS, ...SFT_KEYS]);
      throw configError(`${where}: unknown key "${k}"${hint ? ` (did you mean "${hint}"?)` : ""}; \`tsdpo sft --list-keys\` lists the SFT settings`);
    }
  }
  // metric_for_best_model names an SFT metric, which the preference parser does not know: checked here
  const metric = shared.metric_for_best_model;
  delete shared.metric_for_best_model;
  if (metric !== undefined && metric !== null) {
    if (typeof metric !== "string" || !SFT_METRICS.includes(metric.replace(/^eval_/, "")))
      throw configError(`${where}: "metric_for_best_model" ${describe(metric)} is not an SFT eval metric; choose one of ${SFT_METRICS.join(", ")}`);
  }
  const base = resolveTrainConfig(shared, where);
  const cfg = Object.fromEntries(SFT_SHARED_KEYS.map((k) => [k, base[k]])) as Pick<TrainConfig, (typeof SFT_SHARED_KEYS)[number]>;
  cfg.metric_for_best_model = (metric as string | null | undefined) ?? null;
  const bool = (k: string, nullable: boolean): boolean | null => {
    const v = own[k] ?? (SFT_DEFAULTS as Record<string, unknown>)[k];
    if (typeof v === "boolean" || (nullable && v === null)) return v as boolean | null;
    throw configError(`${where}: "${k}" must be true or false${nullable ? " or null" : ""}, got ${describe(v)}`);
  };
  const field = own.dataset_text_field ?? SFT_DEFAULTS.dataset_text_field;
  if (typeof field !== "string" || field === "") throw configError(`${where}: "dataset_text_field" must be a non-empty string, got ${describe(field)}`);
  const out: SftConfig = {
    ...cfg,
    packing: bool("packing", false)!,
    completion_only_loss: bool("completion_only_loss", true),
    assistant_only_loss: bool("assistant_only_loss", false)!,
    dataset_text_field: field,
  };
  if (out.packing && out.max_length === null) throw configError(`${where}: "packing" fills rows of max_length tokens, so "max_length" cannot be null`);
  return out;
}

/** The JSON a run folder keeps: every key, and "trainer": "sft" (so that other commands know the run). */
export function sftConfigToJson(cfg: SftConfig): Record<string, unknown> {
  return { trainer: "sft", ...cfg };
}

/**
 * The command line's option types: train's (its preference keys too, so that resolveSftConfig can say why one does
 * not apply rather than the parser calling it unknown), and SFT's own.
 */
export function sftOptionTypes(): Record<string, "string" | "boolean"> {
  return { ...trainOptionTypes(), packing: "boolean", assistant_only_loss: "boolean", completion_only_loss: "string", dataset_text_field: "string" };
}

/** `--key value` settings over a config object, typed as train's; SFT's own keys are parsed as JSON when they parse. */
export function applySftOverrides(base: Record<string, unknown>, settings: Readonly<Record<string, string | boolean | undefined>>): Record<string, unknown> {
  const own: Record<string, unknown> = {};
  const rest: Record<string, string | boolean | undefined> = {};
  for (const [k, v] of Object.entries(settings)) {
    if (v === undefined) continue;
    if (!(SFT_KEYS as string[]).includes(k)) {
      rest[k] = v;
      continue;
    }
    let value: unknown = v;
    if (typeof v === "string" && k !== "dataset_text_field")
      try {
        value = JSON.parse(v);
      } catch {
        // a plain string: resolveSftConfig names the key and the value
      }
    own[k] = value;
  }
  return { ...applyOverrides(base, rest), ...own };
}

const SFT_HELP: Record<keyof typeof SFT_DEFAULTS, string> = {
  packing: "pack sequences two to a row of max_length tokens (best fit decreasing; attention stays inside each sequence)",
  completion_only_loss: "prompt-completion rows: count only the completion's tokens (null: on for such rows)",
  assistant_only_loss: "conversations: count only the assistant's turns (off: every token counts)",
  dataset_text_field: "the field of plain-text rows",
};

/** Shared keys whose help in train's list speaks of pairs or the reference. */
const SFT_SHARED_HELP: Partial<Record<(typeof SFT_SHARED_KEYS)[number], string>> = {
  model: "starting model: a .gguf file, a Hugging Face folder or a run folder (default: the shipped stories260K)",
  data: "SFT rows {prompt, completion}, {messages} or {text}: JSONL, JSON, Parquet, CSV or TSV, optionally .gz",
  eval_data: "a separate file of held-out rows",
  eval_size: "held-out rows taken from data: a count (≥ 1) or a fraction (< 1); 0 = no evaluation",
  max_length: "cap on each sequence, in tokens (also capped at the model's context); the row length when packing",
  truncation_mode: "which end of a long sequence survives: keep_start (TRL SFT's default) or keep_end",
  per_device_train_batch_size: "rows per micro-batch (a packed row holds up to two sequences)",
  per_device_eval_batch_size: "rows per evaluation batch",
  num_train_epochs: "passes over the training rows (max_steps > 0 wins)",
  learning_rate: "peak learning rate (TRL SFT's default 2e-5)",
  metric_for_best_model: "the eval metric that ranks checkpoints: loss, mean_token_accuracy or entropy",
};

/** The lines `tsdpo sft --list-keys` prints. */
export function sftKeyList(): string {
  const show = (v: unknown): string => (typeof v === "number" && v !== 0 && Math.abs(v) < 1e-3 ? v.toExponential() : JSON.stringify(v));
  const rows: [string, string, string][] = [
    ...SFT_SHARED_KEYS.map((k): [string, string, string] => [
      k, show(k in SFT_SHARED_DEFAULTS ? SFT_SHARED_DEFAULTS[k as keyof typeof SFT_SHARED_DEFAULTS] : DEFAULT_TRAIN_CONFIG[k]), SFT_SHARED_HELP[k] ?? KEY_HELP[k],
    ]),
    ...SFT_KEYS.map((k): [string, string, string] => [k, show(SFT_DEFAULTS[k]), SFT_HELP[k]]),
  ];
  const w0 = Math.max(...rows.map((r) => r[0].length));
  const w1 = Math.min(24, Math.max(...rows.map((r) => r[1].length)));
  return (
    `SFT settings (TRL SFTConfig's names; in a JSON config file, or on the command line as --key value):\n` +
    rows.map(([k, d, h]) => `  ${k.padEnd(w0)}  ${d.padEnd(w1)}  ${h}`).join("\n") + "\n"
  );
}
