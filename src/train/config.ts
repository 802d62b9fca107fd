// The training config: one flat object with TRL's DPOConfig names where TRL has one, a default and a "why" for
// every key. A config file is JSON; `--key=value` overrides on the command line are parsed with the key's type.
// Unknown keys and wrong types are errors that name the key and the file. The resolved config is written into
// the run folder and every checkpoint.

import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { defaultBackendName } from "../backend/select.js";
import { configError, describeJsonError, inputError } from "../errors.js";
import { LOSS_KEYS, PAIR_LOSS_TYPES, type LossConfig, lossConfigFromJson, lossConfigToJson, needsReference } from "../loss/config.js";
import { defaultDataPath, defaultModelPath, hubIdHint } from "../paths.js";
import { startingPoint } from "../io/resolve.js";
import { closest } from "../suggest.js";
import { DATA_FORMATS, formatConfigProblem } from "../data/formats.js";
import type { WinnerValuesConfig } from "../data/formats.js";
import { parseTools } from "../data/normalize.js";
import type { ToolSpec } from "../data/types.js";
import { type ChatTemplateKwargs, checkTemplateKwargs } from "../tokenizer/chat.js";

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
   * Field names for datasets that name them differently (e.g. "response_j"). prompt_field unset (default): use
   * "prompt" where a row has it, else infer the prompt from the answers' shared prefix (HH-RLHF) unless the row has
   * another key that could be the prompt (then loading stops and says so); null: infer it on purpose.
   */
  prompt_field?: string | null;
  chosen_field: string;
  rejected_field: string;
  /**
   * The layout of the rows (src/data/formats.ts). "auto": recognise Chatbot Arena, WebGPT or HH-RLHF from the
   * columns (the data summary says so), else the field mapping; a named one forces that layout; "generic" forces the
   * field mapping, so that recognition can be overridden.
   */
  data_format: "auto" | "generic" | "chatbot_arena" | "webgpt" | "hh_rlhf";
  /** The winner mapping, for files with two answers and a verdict instead of chosen/rejected: the verdict's field. */
  winner_field: string | null;
  /** The two answers of the winner or score mapping (named layouts bring their own unless these are set). */
  a_field: string | null;
  b_field: string | null;
  /** What winner_field's values mean: {"a": [...], "b": [...], "tie": [...]}; ties are dropped and counted. null: the
   *  default lists ("model_a"/"a", "model_b"/"b", "tie"/"tie (bothbad)"), or Chatbot Arena's own. */
  winner_values: WinnerValuesConfig | null;
  /** The score mapping: [score of a_field, score of b_field]; the higher score wins, equal scores are a tie. */
  score_fields: string[] | null;
  /** WebGPT: put each answer's quotes in front of it as the model had them (they become part of the answer). */
  webgpt_quotes: boolean;
  /** Function definitions for the chat template's `tools` (TRL's DPOConfig.tools); a row's own "tools" wins. */
  tools: ToolSpec[] | null;
  /**
   * Extra variables for every render of the chat template: the prompts and answers of conversational rows (train and
   * eval pairs), and what `tsdpo eval`, `logprobs`, `sample` and the report render for a run made with them.
   * transformers' apply_chat_template(**kwargs); e.g. {"enable_thinking": false} for Qwen3, whose template then puts
   * the empty think block into the prompt. null: none.
   */
  chat_template_kwargs: ChatTemplateKwargs | null;
  /** Malformed rows are counted and reported in invalid_rows.jsonl instead of stopping the run. */
  skip_invalid: boolean;
  /** KTO on a file of preference pairs: each pair becomes a desirable row (chosen) and an undesirable one (rejected),
   *  as TRL's unpair_preference_dataset. Without it an unpaired loss reads {prompt, completion, label} rows. */
  unpair: boolean;
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
  /**
   * Data parallelism in one process: sum the step's gradient in the groups, and the order, of this many MPI ranks
   * (src/train/distributed.ts), so that a run reproduces an `mpirun -np N` run bit for bit. 1: off. Under mpirun the
   * world size comes from the launcher.
   */
  emulate_world_size: number;
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
  /** Also evaluate before the first step (TRL's eval_on_start), so that the run's start is on the eval curves. */
  eval_on_start: boolean;
  /** Checkpoint every N steps (and at the end); 0 = only the final weights. */
  save_steps: number;
  /** Also checkpoint when this many minutes have passed since the last one (0 = off): tsdpo's own key, on by
   *  default, so that a long run killed without warning (power, OOM killer) loses at most this much work. */
  save_minutes: number;
  /** Keep only the newest N step checkpoints (null = all, TRL's default). tsdpo defaults to 3 because time-based
   *  checkpoints are on by default; best/ and final/ are never removed. */
  save_total_limit: number | null;
  /** The eval metric that ranks checkpoints, as TRL: "loss" (eval_loss) or e.g. "rewards/accuracies" (the eval_
   *  prefix is optional). null: "loss" when load_best_model_at_end is on. */
  metric_for_best_model: string | null;
  /** Whether a larger metric is better. null: false for a loss, true for anything else (TRL's rule). */
  greater_is_better: boolean | null;
  /** Keep the weights of the best evaluation (by metric_for_best_model) in best/ and end the run with them in
   *  final/, so that a run that overfits late does not end worse than its best held-out point. Needs eval pairs. */
  load_best_model_at_end: boolean;
  /** Compute the reference log-probs once before training (cached on disk) instead of a frozen copy. */
  precompute_ref_log_probs: boolean;
  /** Pack each pair as prompt ++ chosen ++ rejected so the prompt is computed once for both answers (tsdpo's own
   *  option; false gives TRL's concatenated batch of 2B rows, the same numbers up to float rounding). */
  shared_prefix: boolean;
  /** A different reference model; null = the starting policy. */
  ref_model: string | null;
  /**
   * LoRA's reference as base + a frozen adapter (TRL's "ref" adapter): a PEFT adapter folder, or true for the
   * adapter being continued (`adapter`). null (unset): true when `adapter` is set and no ref_model is given (the SFT
   * adapter DPO continues is where the policy starts, so it is the reference TRL users expect), else false;
   * false: the base with the adapters switched off.
   */
  ref_adapter: string | boolean | null;
  /** TR-DPO (Gorbatovski et al. 2024): every ref_model_sync_steps optimizer steps, ref ← α·policy + (1−α)·ref on the
   *  parameters (for LoRA, on a separate copy of the adapter's A and B). */
  sync_ref_model: boolean;
  /** α of the TR-DPO update; 1 is a hard copy. TRL's default 0.6. */
  ref_model_mixup_alpha: number;
  /** Optimizer steps between TR-DPO updates. TRL's default 512. */
  ref_model_sync_steps: number;
  /** π_ref uniform, so log π_ref = 0 for every sequence (TRL ≤ 0.26's reference_free, torchtune's): no reference is
   *  loaded or run, and the rewards are β·log π. */
  reference_free: boolean;
  /** Storage of the frozen reference copy in full fine-tuning: f32, or bf16 / q8_0 blocks (half or a quarter of
   *  the memory, at the log-prob error README quotes). LoRA's reference is the base itself, so this does not apply. */
  ref_dtype: "f32" | "bf16" | "q8_0";
  /** Kernel backend. Without the key: the environment variable TSDPO_BACKEND, else auto (src/backend/select.ts). */
  backend: "auto" | "js" | "native";
  /** LoRA instead of full fine-tuning (TRL's ModelConfig names). The reference is then the same model with its
   *  adapters switched off, unless ref_model or precompute_ref_log_probs says otherwise. */
  use_peft: boolean;
  lora_r: number;
  lora_alpha: number;
  lora_dropout: number;
  /** PEFT's target_modules, in the model's own module names: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj,
   *  down_proj; Phi-3's fused qkv_proj and gate_up_proj with o_proj, down_proj; GPT-2's c_attn, c_proj (attn.c_proj,
   *  mlp.c_proj) and c_fc; or "all-linear". null: the attention projections, whatever the family calls them. */
  lora_target_modules: string[] | null;
  /** Continue training an existing PEFT adapter (implies use_peft; its r, alpha and targets win). */
  adapter: string | null;
  /** Full fine-tuning of a quantised GGUF: start from float32 weights dequantised from its blocks. Without it, a
   *  quantised base is refused for full fine-tuning (LoRA trains on it as stored). */
  dequantize: boolean;
  /** Keep only each layer's input in the forward and recompute the layer in the backward: less activation memory
   *  for about one more forward's worth of time (TRL's `gradient_checkpointing`). Same gradients. */
  gradient_checkpointing: boolean;
  /** Start even when the fit planner predicts more memory than the machine has. */
  force: boolean;
  /** The preference loss and its options (TRL's flat keys: loss_type, beta, label_smoothing, …). */
  loss: LossConfig;
}

type Scalar = string | number | boolean | null | string[] | object; // object: winner_values
type Rest = Omit<TrainConfig, "loss">;

export const DEFAULT_TRAIN_CONFIG: Rest = {
  model: null,
  data: null,
  eval_data: null,
  eval_size: 0,
  prompt_field: undefined, // absent: "prompt" when rows have it; an explicit null infers it on purpose
  chosen_field: "chosen",
  rejected_field: "rejected",
  data_format: "auto", // published files load as they are; a named format or "generic" overrides the guess
  winner_field: null,
  a_field: null,
  b_field: null,
  winner_values: null,
  score_fields: null,
  webgpt_quotes: false, // the quotes make each answer much longer and are scored with it; opt in
  tools: null, // most preference data has no tools; a row's own "tools" column needs no config
  chat_template_kwargs: null, // the template's own defaults, as transformers without kwargs
  skip_invalid: false,
  unpair: false, // a KTO file is unpaired already; pairs are converted only when asked
  max_length: 1024,
  max_prompt_length: 512,
  max_completion_length: null,
  truncation_mode: "keep_end",
  output_dir: null,
  seed: 42,
  per_device_train_batch_size: 8,
  per_device_eval_batch_size: 8,
  gradient_accumulation_steps: 1,
  emulate_world_size: 1,
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
  eval_on_start: false,
  save_steps: 0,
  save_minutes: 10,
  save_total_limit: 3,
  metric_for_best_model: null,
  greater_is_better: null,
  load_best_model_at_end: false,
  precompute_ref_log_probs: false,
  shared_prefix: true,
  ref_model: null,
  ref_adapter: null, // resolved by train(): continuing an adapter makes it the reference (with a notice)
  sync_ref_model: false,
  ref_model_mixup_alpha: 0.6, // TRL's DPOConfig
  ref_model_sync_steps: 512, // TRL's DPOConfig
  reference_free: false,
  ref_dtype: "f32",
  backend: "auto",
  use_peft: false,
  lora_r: 16,
  lora_alpha: 32,
  lora_dropout: 0.05,
  lora_target_modules: null, // q, k, v, o: q_proj … o_proj, or Phi-3's qkv_proj + o_proj, GPT-2's c_attn + attn.c_proj
  adapter: null,
  dequantize: false,
  gradient_checkpointing: false,
  force: false,
};

type Kind = "path|bool?" | "string?" | "string" | "number" | "number?" | "int" | "int?" | "bool" | "bool?" | "strings" | "strings?" | "object?" | "tools?" | "kwargs?" | { oneOf: readonly string[] };
const KINDS: { [K in keyof Rest]-?: Kind } = {
  model: "string?", data: "string?", eval_data: "string?", eval_size: "number", prompt_field: "string?",
  chosen_field: "string", rejected_field: "string",
  data_format: { oneOf: DATA_FORMATS }, winner_field: "string?", a_field: "string?", b_field: "string?", winner_values: "object?",
  score_fields: "strings?", webgpt_quotes: "bool", tools: "tools?", chat_template_kwargs: "kwargs?", skip_invalid: "bool", unpair: "bool", max_length: "int?", max_prompt_length: "int?",
  max_completion_length: "int?", truncation_mode: { oneOf: ["keep_end", "keep_start"] }, output_dir: "string?",
  seed: "int", per_device_train_batch_size: "int", per_device_eval_batch_size: "int", gradient_accumulation_steps: "int", emulate_world_size: "int",
  num_train_epochs: "number", max_steps: "int", learning_rate: "number",
  lr_scheduler_type: { oneOf: ["constant", "linear", "cosine"] }, warmup_steps: "int", warmup_ratio: "number",
  weight_decay: "number", adam_beta1: "number", adam_beta2: "number", adam_epsilon: "number", max_grad_norm: "number",
  logging_steps: "int", eval_steps: "int", eval_on_start: "bool", save_steps: "int", save_minutes: "number", save_total_limit: "int?",
  metric_for_best_model: "string?", greater_is_better: "bool?", load_best_model_at_end: "bool", precompute_ref_log_probs: "bool", shared_prefix: "bool", ref_model: "string?",
  ref_adapter: "path|bool?", sync_ref_model: "bool", ref_model_mixup_alpha: "number", ref_model_sync_steps: "int", reference_free: "bool",
  ref_dtype: { oneOf: ["f32", "bf16", "q8_0"] },
  backend: { oneOf: ["auto", "js", "native"] },
  use_peft: "bool", lora_r: "int", lora_alpha: "number", lora_dropout: "number", lora_target_modules: "strings?",
  adapter: "string?", dequantize: "bool", gradient_checkpointing: "bool", force: "bool",
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
  // Data-layout values whose shape src/data/formats.ts checks (formatConfigProblem, from checkRanges).
  if (kind === "object?") {
    if (v !== null && (typeof v !== "object" || Array.isArray(v))) bad('an object or null, e.g. {"a": ["model_a"], "b": ["model_b"], "tie": ["tie"]}');
    return v === null ? null : (JSON.parse(JSON.stringify(v)) as Record<string, unknown>);
  }
  if (kind === "tools?") return v === null ? null : parseTools(v, (reason) => configError(`${where}: "${key}" ${reason}`));
  if (kind === "kwargs?") return v === null ? null : checkTemplateKwargs(v, (reason) => configError(`${where}: "${key}" ${reason}`));
  if (kind === "path|bool?") {
    if (v === null || typeof v === "boolean" || (typeof v === "string" && v !== "")) return v;
    return bad("a PEFT adapter folder, true (the adapter being continued), false (the base) or null");
  }
  if (kind === "strings?" && v === null) return null;
  if (kind === "strings" || kind === "strings?") {
    if (!Array.isArray(v) || v.length === 0 || v.some((x) => typeof x !== "string" || x === ""))
      bad(`a non-empty list of strings${kind === "strings?" ? " or null" : ""}, e.g. ${key === "score_fields" ? '["score_0", "score_1"]' : '["q_proj", "v_proj"]'}`);
    return [...(v as string[])];
  }
  const nullable = kind.endsWith("?");
  if (v === null) return nullable ? null : bad(kind === "string" ? "a string" : kind === "bool" ? "true or false" : "a number");
  switch (kind) {
    case "string":
    case "string?":
      return typeof v === "string" && v !== "" ? v : bad("a non-empty string" + (nullable ? " or null" : ""));
    case "bool":
    case "bool?":
      return typeof v === "boolean" ? v : bad("true or false" + (nullable ? " or null" : ""));
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
  const layout = formatConfigProblem(c);
  if (layout !== null) throw configError(`${where}: ${layout}`);
  req(c.per_device_train_batch_size >= 1, "per_device_train_batch_size", "≥ 1");
  req(c.per_device_eval_batch_size >= 1, "per_device_eval_batch_size", "≥ 1");
  req(c.gradient_accumulation_steps >= 1, "gradient_accumulation_steps", "≥ 1");
  req(c.emulate_world_size >= 1, "emulate_world_size", "≥ 1");
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
  req(c.save_minutes >= 0, "save_minutes", "≥ 0 (0 = off)");
  req(c.save_total_limit === null || c.save_total_limit >= 1, "save_total_limit", "≥ 1 or null");
  req(c.max_length === null || c.max_length >= 2, "max_length", "≥ 2 or null");
  req(c.lora_r >= 1, "lora_r", "≥ 1");
  req(c.lora_alpha > 0, "lora_alpha", "> 0");
  req(c.lora_dropout >= 0 && c.lora_dropout < 1, "lora_dropout", "in [0, 1)");
  req(c.max_prompt_length === null || c.max_prompt_length >= 1, "max_prompt_length", "≥ 1 or null");
  if (c.max_length !== null && c.max_prompt_length !== null && c.max_prompt_length >= c.max_length)
    throw configError(`${where}: "max_prompt_length" (${c.max_prompt_length}) must be below "max_length" (${c.max_length}) so answers keep at least one token`);
  if (c.metric_for_best_model !== null) {
    const name = c.metric_for_best_model.replace(/^eval_/, "");
    if (!BEST_MODEL_METRICS.includes(name)) {
      const hint = closest(name, BEST_MODEL_METRICS);
      throw configError(
        `${where}: "metric_for_best_model" ${JSON.stringify(c.metric_for_best_model)} is not an eval metric` +
          `${hint ? ` (did you mean "${hint}"?)` : ""}; choose one of ${BEST_MODEL_METRICS.join(", ")}`,
      );
    }
  }
  if (c.load_best_model_at_end && c.eval_data === null && c.eval_size === 0)
    throw configError(`${where}: "load_best_model_at_end" needs held-out pairs to rank the checkpoints; set "eval_size" or "eval_data"`);
  if (c.eval_data !== null && c.eval_size > 0)
    throw configError(`${where}: set either "eval_data" (a file) or "eval_size" (held out of data), not both`);
  checkReferenceKeys(c, where);
  checkUnpairedKeys(c, where);
}

/** The unpaired losses' constraints on the data and batch keys. */
function checkUnpairedKeys(c: TrainConfig, where: string): void {
  const l = c.loss;
  if (l.kind !== "kto") {
    if (c.unpair) throw configError(`${where}: "unpair" turns preference pairs into the unpaired rows of loss_type kto or apo_zero_unpaired; loss_type ${JSON.stringify(l.kind === "dpo" ? l.loss_type : l.kind)} trains on the pairs themselves, so remove it`);
    return;
  }
  if (l.loss_type !== "kto" || l.kto_kl !== "batch") return;
  if (c.per_device_train_batch_size < 2)
    throw configError(
      `${where}: kto_kl "batch" estimates KTO's reference point from the other rows of the micro-batch, and ` +
        `per_device_train_batch_size ${c.per_device_train_batch_size} leaves none (TRL refuses this too); raise it to 2 or more, ` +
        `or set kto_kl: "running", whose estimate does not depend on the batch`,
    );
  if (c.precompute_ref_log_probs)
    throw configError(
      `${where}: precompute_ref_log_probs caches each row's reference log-probs once, but kto_kl "batch" pairs each prompt ` +
        `with the completion before it in the micro-batch, which changes with every shuffle; set kto_kl: "running" (its ` +
        `mismatched pairs are fixed, so they cache) or remove precompute_ref_log_probs`,
    );
}

/** The reference keys together: each refusal names the key and says why the combination cannot work. */
function checkReferenceKeys(c: TrainConfig, where: string): void {
  const no = (msg: string): never => {
    throw configError(`${where}: ${msg}`);
  };
  const lossName = c.loss.kind === "dpo" ? JSON.stringify(c.loss.loss_type) : `"${c.loss.kind}"`;
  const refUsed = needsReference(c.loss);
  if (c.reference_free) {
    if (!refUsed) no(`"reference_free": loss_type ${lossName} uses no reference already; remove the key`);
    if (c.ref_model !== null) no(`"reference_free" takes log π_ref = 0 with no reference model, so "ref_model" cannot be set as well; remove one`);
    if (c.precompute_ref_log_probs) no(`"reference_free" runs no reference, so there is nothing for "precompute_ref_log_probs" to cache; remove one`);
    if (c.ref_adapter !== null && c.ref_adapter !== false) no(`"reference_free" runs no reference, so "ref_adapter" cannot be set as well; remove one`);
    if (c.sync_ref_model) no(`"reference_free" has no reference parameters for "sync_ref_model" to update; remove one`);
  }
  if (c.ref_adapter !== null && c.ref_adapter !== false) {
    if (!refUsed) no(`"ref_adapter": loss_type ${lossName} uses no reference; remove the key`);
    if (c.ref_model !== null) no(`"ref_adapter" puts an adapter on the base model as the reference, but "ref_model" names another reference model; remove one`);
    if (c.ref_adapter === true && c.adapter === null)
      no(`"ref_adapter": true means the adapter being continued, but "adapter" is not set; give ref_adapter an adapter folder, or set adapter`);
    if (typeof c.ref_adapter === "string" && !existsSync(join(c.ref_adapter, "adapter_config.json")))
      no(`"ref_adapter": ${JSON.stringify(c.ref_adapter)} ${existsSync(c.ref_adapter) ? "is not a PEFT adapter folder (it has no adapter_config.json)" : "does not exist"}; give the folder of a LoRA adapter (a run's final/ or a checkpoint)`);
  }
  req(c.ref_model_mixup_alpha > 0 && c.ref_model_mixup_alpha <= 1, "ref_model_mixup_alpha", "in (0, 1] (1 copies the policy into the reference)");
  req(c.ref_model_sync_steps >= 1, "ref_model_sync_steps", "≥ 1");
  if (c.sync_ref_model) {
    if (!refUsed) no(`"sync_ref_model": loss_type ${lossName} uses no reference to update; remove the key`);
    if (c.precompute_ref_log_probs)
      no(`"sync_ref_model" changes the reference every ref_model_sync_steps steps, so log-probs cached from the starting reference ("precompute_ref_log_probs") would be stale; remove one`);
    if ((c.use_peft || c.adapter !== null) && c.ref_model !== null)
      no(`"sync_ref_model" with LoRA mixes adapters (the reference is the base + its own copy of A and B), so "ref_model" cannot be set as well; remove one`);
    if (!c.use_peft && c.adapter === null && c.ref_dtype !== "f32")
      no(`"sync_ref_model" mixes the policy's float32 parameters into the reference, which needs "ref_dtype": "f32" (got "${c.ref_dtype}")`);
  }

  function req(ok: boolean, key: keyof TrainConfig, what: string): void {
    if (!ok) no(`"${key}" must be ${what}, got ${describe(c[key])}`);
  }
}

const TRAINER_KEYS = Object.keys(DEFAULT_TRAIN_CONFIG) as (keyof Rest)[];

/** Eval metrics every loss logs, which metric_for_best_model may name (without the eval_ prefix). */
const BEST_MODEL_METRICS: readonly string[] = [
  "loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected",
];

/** The eval metric and direction that rank checkpoints (TRL's rule for the defaults), or null when nothing ranks them. */
export function bestModelMetric(
  cfg: Pick<TrainConfig, "metric_for_best_model" | "load_best_model_at_end" | "greater_is_better">,
): { key: string; greaterIsBetter: boolean } | null {
  if (cfg.metric_for_best_model === null && !cfg.load_best_model_at_end) return null;
  const name = (cfg.metric_for_best_model ?? "loss").replace(/^eval_/, "");
  return { key: `eval_${name}`, greaterIsBetter: cfg.greater_is_better ?? !name.endsWith("loss") };
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
  // Absolute paths, defaults included, so that the saved config means the same files from any folder.
  cfg.model = resolve(cfg.model ?? defaultModelPath);
  // A run folder (an SFT run before DPO, say) starts from its final/ weights; a LoRA run's adapter goes on its base.
  const start = startingPoint(cfg.model);
  if (start.adapter !== null && cfg.adapter !== null && resolve(cfg.adapter) !== start.adapter)
    throw configError(`${where}: "model" ${cfg.model} is a LoRA run whose adapter is ${start.adapter}, and "adapter" names another (${cfg.adapter}); give the base as model, or drop adapter`);
  cfg.model = start.model;
  if (start.adapter !== null) cfg.adapter = start.adapter;
  cfg.data = resolve(cfg.data ?? defaultDataPath);
  for (const key of ["eval_data", "ref_model", "adapter", "output_dir"] as const) if (cfg[key] !== null) cfg[key] = resolve(cfg[key]);
  if (typeof cfg.ref_adapter === "string") cfg.ref_adapter = resolve(cfg.ref_adapter);
  checkRanges(cfg, where);
  return cfg;
}

/** The JSON written into run folders: every trainer key, then the loss section. */
export function trainConfigToJson(cfg: TrainConfig): Record<string, unknown> {
  const { loss, ...rest } = cfg;
  return { ...rest, loss: lossConfigToJson(loss) };
}

// ---------------------------------------------------------------------------------------------------------------
// Paths. A path in a config file is relative to that file's folder, so a config works from wherever it is run; a
// path on the command line is relative to the current folder, as in any shell command. output_dir is the one
// exception: it is where output goes, so it is always relative to the current folder (otherwise the shipped
// configs/default.json would write its run into the installed package). The resolved config, written into the run
// folder, holds absolute paths, so `eval --model <run>` and `train --resume` work from any folder.

/** Keys naming files or folders that must exist before a run starts. */
const INPUT_PATH_KEYS = ["model", "data", "eval_data", "ref_model", "adapter", "ref_adapter"] as const;

/**
 * Resolves the path keys of `obj` against `baseDir` (output_dir against the current folder) and checks that inputs
 * exist. `origin` says where the paths came from, for messages: the config file, or "the command line".
 */
function resolvePathKeys(obj: Record<string, unknown>, baseDir: string, where: string, origin: "file" | "command line"): Record<string, unknown> {
  const out = { ...obj };
  const rule = origin === "file" ? "a path in a config file is relative to the file's folder" : "a path on the command line is relative to the current folder";
  for (const key of INPUT_PATH_KEYS) {
    const v = out[key];
    if (typeof v !== "string" || v === "") continue; // wrong types are reported by resolveTrainConfig
    const abs = resolve(baseDir, v);
    if (!existsSync(abs))
      throw inputError(`${where}: "${key}": ${JSON.stringify(v)}${abs !== v ? ` (${abs})` : ""} does not exist (${rule})${hubIdHint(v)}`);
    out[key] = abs;
  }
  if (typeof out.output_dir === "string" && out.output_dir !== "") out.output_dir = resolve(out.output_dir);
  return out;
}

/** Reads a config file; its paths come back absolute, resolved against the file's folder. */
export function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? String(e);
    throw inputError(`${path}: cannot read the config file (${code}); a config is a JSON file of settings (settings on the command line are --key value; a run folder for --resume holds its config.json)`);
  }
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch (e) {
    throw configError(`${path}: not valid JSON (${describeJsonError(text, e)})`);
  }
  if (obj === null || typeof obj !== "object" || Array.isArray(obj))
    throw configError(`${path}: a training config is a JSON object of settings`);
  return resolvePathKeys(obj as Record<string, unknown>, dirname(resolve(path)), path, "file");
}

/** How the command line's parser should treat each training key: booleans may stand alone (`--skip_invalid`). */
export function trainOptionTypes(): Record<string, "string" | "boolean"> {
  const out: Record<string, "string" | "boolean"> = {};
  for (const key of TRAINER_KEYS) out[key] = KINDS[key] === "bool" ? "boolean" : "string";
  for (const key of LOSS_KEYS) out[key] = key === "use_weighting" ? "boolean" : "string";
  return out;
}

/**
 * Applies command-line settings (parsed by src/cli/args.ts: `--key value` or `--key=value`) on top of `base`. A
 * string value is parsed as JSON when it parses (numbers, true/false, null, lists), else kept as a string, so
 * `--data pairs.jsonl` and `--beta 0.5` both work; each value is type-checked here, so that the message names the
 * option rather than the file it is merged into. Paths are relative to the current folder.
 */
export function applyOverrides(base: Record<string, unknown>, settings: Readonly<Record<string, string | boolean | undefined>>): Record<string, unknown> {
  const given: Record<string, unknown> = {};
  for (const [key, raw] of Object.entries(settings)) {
    if (raw === undefined) continue;
    let value: unknown = raw;
    if (typeof raw === "string")
      try {
        value = JSON.parse(raw);
      } catch {
        // a plain string
      }
    const where = `--${key} ${typeof raw === "string" ? raw : String(raw)}`;
    if (!(TRAINER_KEYS as string[]).includes(key) && !LOSS_KEYS.includes(key)) {
      const hint = closest(key, [...TRAINER_KEYS, ...LOSS_KEYS]);
      throw configError(`--${key}: unknown setting${hint ? ` (did you mean --${hint}?)` : ""}; \`tsdpo train --list-keys\` lists them`);
    }
    if ((TRAINER_KEYS as string[]).includes(key)) checkValue(key, KINDS[key as keyof Rest], value, where);
    // A path typed as a number-like JSON value (a file called 1) is still a path.
    given[key] = key === "ref_adapter" && (typeof value === "boolean" || value === null) ? value // not paths
      : (INPUT_PATH_KEYS as readonly string[]).includes(key) || key === "output_dir" ? String(raw) : value;
  }
  return { ...base, ...resolvePathKeys(given, process.cwd(), "command line", "command line") };
}

// ---------------------------------------------------------------------------------------------------------------
// `tsdpo train --list-keys`: every key, its default and what it does (README's table says the same at more length).

export const KEY_HELP: { [K in keyof Rest]-?: string } = {
  model: "starting policy and reference: a .gguf file or a Hugging Face folder (default: the shipped stories260K)",
  data: "preference file: JSONL, JSON, Parquet, CSV or TSV, optionally .gz (default: the shipped HH-RLHF pairs)",
  eval_data: "a separate file of held-out pairs",
  eval_size: "held-out pairs taken from data: a count (≥ 1) or a fraction (< 1); 0 = no evaluation",
  prompt_field: "the field holding the prompt (unset: \"prompt\"; null: infer it from the answers' shared start)",
  chosen_field: "the field holding the preferred answer",
  rejected_field: "the field holding the dispreferred answer",
  data_format: "auto (recognise chatbot_arena, webgpt, hh_rlhf from the columns), one of those, or generic (the field mapping)",
  winner_field: "the field saying which answer won (with a_field, b_field, winner_values); ties are dropped",
  a_field: "answer a of winner_field or score_fields",
  b_field: "answer b of winner_field or score_fields",
  winner_values: "what winner_field's values mean: {\"a\": [...], \"b\": [...], \"tie\": [...]} (null: model_a/a, model_b/b, tie)",
  score_fields: "two score fields [a's, b's]: the higher score wins, equal is a tie (dropped)",
  webgpt_quotes: "WebGPT: put each answer's quotes in front of it, as the model had them",
  tools: "function definitions (JSON-schema list) for the chat template of rows without their own \"tools\"",
  chat_template_kwargs: "extra chat-template variables for every render, e.g. {\"enable_thinking\": false} (Qwen3)",
  skip_invalid: "count and report malformed rows (invalid_rows.jsonl) instead of stopping",
  unpair: "KTO on preference pairs: each pair becomes a desirable (chosen) and an undesirable (rejected) row",
  max_length: "cap on prompt + answer, in tokens (also capped at the model's context)",
  max_prompt_length: "cap on the prompt, in tokens",
  max_completion_length: "cap on each answer, in tokens (null: no cap of its own)",
  truncation_mode: "which end of a long prompt survives: keep_end or keep_start",
  output_dir: "the run folder (null: runs/<date-time>); relative to the current folder",
  seed: "data order, held-out split and LoRA initialisation",
  per_device_train_batch_size: "pairs per micro-batch",
  per_device_eval_batch_size: "pairs per evaluation batch",
  gradient_accumulation_steps: "micro-batches per optimizer step",
  emulate_world_size: "sum each step's gradient as this many MPI ranks would, in one process (the bit-exact reference of an mpirun job; 1: off)",
  num_train_epochs: "passes over the training pairs (max_steps > 0 wins)",
  max_steps: "optimizer steps (-1: num_train_epochs worth)",
  learning_rate: "peak learning rate (TRL's 1e-6 suits billion-parameter models; small ones want more)",
  lr_scheduler_type: "constant, linear or cosine decay after warmup",
  warmup_steps: "linear warmup, in steps",
  warmup_ratio: "linear warmup as a share of all steps (when warmup_steps is 0)",
  weight_decay: "AdamW's decoupled weight decay (not on norms and biases)",
  adam_beta1: "AdamW β1",
  adam_beta2: "AdamW β2",
  adam_epsilon: "AdamW ε",
  max_grad_norm: "global gradient-norm clip (0 = off)",
  logging_steps: "write metrics every N steps",
  eval_steps: "evaluate every N steps (0 = only at the end)",
  eval_on_start: "also evaluate before the first step, so that the start is on the curves",
  save_steps: "checkpoint every N steps (0 = only the final weights)",
  save_minutes: "also checkpoint after this many minutes since the last one (0 = off)",
  save_total_limit: "keep only the newest N step checkpoints (null = all; best/ and final/ stay)",
  metric_for_best_model: "the eval metric that ranks checkpoints: loss, rewards/accuracies, rewards/margins, …",
  greater_is_better: "whether a larger metric_for_best_model is better (null: false for loss, else true)",
  load_best_model_at_end: "end with the best evaluation's weights in final/ (they are kept in best/)",
  precompute_ref_log_probs: "compute the reference log-probs once (cached) instead of keeping a frozen copy",
  shared_prefix: "pack prompt ++ chosen ++ rejected so the prompt is computed once (false: TRL's 2B rows)",
  ref_model: "a different reference model (null: the starting policy)",
  ref_adapter: "LoRA reference = base + this frozen PEFT adapter; true: the one being continued (unset: true when adapter is set)",
  sync_ref_model: "TR-DPO: every ref_model_sync_steps steps, ref ← α·policy + (1−α)·ref (LoRA: on A and B)",
  ref_model_mixup_alpha: "TR-DPO's α (1: copy the policy into the reference)",
  ref_model_sync_steps: "TR-DPO: optimizer steps between reference updates",
  reference_free: "log π_ref = 0 for every sequence: no reference is loaded or run",
  ref_dtype: "full fine-tuning: keep the frozen reference as f32, bf16 or q8_0 (less memory)",
  backend: "auto, js or native (without the key: $TSDPO_BACKEND, else auto)",
  use_peft: "LoRA instead of full fine-tuning",
  lora_r: "LoRA rank",
  lora_alpha: "LoRA α (the update is scaled by α / r)",
  lora_dropout: "dropout on the LoRA input",
  lora_target_modules: "PEFT module names that get adapters (q_proj … down_proj; Phi-3 qkv_proj, o_proj, gate_up_proj, down_proj; GPT-2 c_attn, c_proj, c_fc; all-linear); null: q, k, v, o",
  adapter: "a PEFT adapter folder to continue training (implies use_peft)",
  dequantize: "full fine-tuning of a quantised GGUF: train float32 weights dequantised from it",
  gradient_checkpointing: "keep only each layer's input; recompute the layer in the backward (less memory, ~1 more forward of time)",
  force: "start even if the fit planner predicts more memory than is available",
};

const LOSS_KEY_HELP: Record<string, string> = {
  loss_type: `the loss, or a list of them: ${[...PAIR_LOSS_TYPES, "simpo", "orpo"].join(", ")} (sigmoid is DPO); kto or apo_zero_unpaired on unpaired rows`,
  loss_weights: "one weight per loss_type entry",
  beta: "β: strength of the pull towards the reference (ORPO's λ)",
  label_smoothing: "ε: assumed label-flip probability (cDPO, robust, EXO)",
  discopop_tau: "DiscoPOP's temperature",
  f_divergence_type: "reverse_kl (DPO), forward_kl, js_divergence or alpha_divergence",
  f_alpha_divergence_coef: "α of the α-divergence",
  rpo_alpha: "RPO: weight of an NLL term on the chosen answers (null = off)",
  use_weighting: "WPO: weight pairs by the policy's own probabilities",
  ld_alpha: "LD-DPO: weight of answer tokens past the shorter answer's length (null = off)",
  simpo_gamma: "SimPO's target margin γ",
  cpo_alpha: "weight of the chosen NLL in CPO/SimPO",
  desirable_weight: "KTO: weight of the desirable rows' losses (λ_D)",
  undesirable_weight: "KTO: weight of the undesirable rows' losses (λ_U)",
  kto_kl: "KTO's reference point z0: batch (TRL's in-batch estimate) or running (a moving average; a batch of 1 works)",
  kto_kl_decay: "KTO kto_kl running: the moving average's decay per micro-batch",
};

/** The lines `tsdpo train --list-keys` prints: key, default, meaning. */
export function trainKeyList(): string {
  const loss = lossConfigToJson(lossConfigFromJson({}, "defaults")) as Record<string, unknown>;
  const simpo = lossConfigToJson(lossConfigFromJson({ loss_type: "simpo" }, "defaults")) as Record<string, unknown>;
  const kto = lossConfigToJson(lossConfigFromJson({ loss_type: "kto" }, "defaults")) as Record<string, unknown>;
  const rows: [string, string, string][] = [];
  // 1e-6, not JSON's 0.000001
  const show = (v: unknown): string =>
    v === undefined ? "unset" : typeof v === "number" && v !== 0 && Math.abs(v) < 1e-3 ? v.toExponential() : JSON.stringify(v);
  for (const key of TRAINER_KEYS) rows.push([key, show(DEFAULT_TRAIN_CONFIG[key]), KEY_HELP[key]]);
  for (const key of LOSS_KEYS)
    rows.push([key, key in loss ? show(loss[key]) : key in simpo ? show(simpo[key]) : key in kto ? show(kto[key]) : "", LOSS_KEY_HELP[key] ?? "?"]);
  const w0 = Math.max(...rows.map((r) => r[0].length));
  const w1 = Math.min(24, Math.max(...rows.map((r) => r[1].length)));
  return (
    `training settings (TRL's names; in a JSON config file, or on the command line as --key value):\n` +
    rows.map(([k, d, h]) => `  ${k.padEnd(w0)}  ${d.padEnd(w1)}  ${h}`).join("\n") +
    `\nDefaults shown are TRL's, used for keys a config file leaves out; a bare \`tsdpo train\` runs configs/default.json.\n`
  );
}
