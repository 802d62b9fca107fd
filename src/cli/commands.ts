// The CLI's commands: each declares its options (parsed by ./args.ts, the one parser) and a run function that calls
// the library. The option names and output forms here are a contract other tools rely on; change them with care.

import { existsSync, readdirSync, statSync } from "node:fs";
import { resolve } from "node:path";
import { selectBackend } from "../backend/select.js";
import { configError, inputError } from "../errors.js";
import { exportHf } from "../export/hf.js";
import { exportGguf } from "../export/gguf.js";
import { writePeftAdapter } from "../io/peft.js";
import { loadModelForUse, readRunConfig } from "../io/resolve.js";
import { modelFingerprint } from "../io/fingerprint.js";
import { defaultConfigPath, defaultModelPath } from "../paths.js";
import { applyOverrides, readConfigFile, resolveTrainConfig, trainKeyList, trainOptionTypes } from "../train/config.js";
import { applySftOverrides, resolveSftConfig, sftKeyList, sftOptionTypes } from "../train/sftconfig.js";
import { generate } from "../sample/generate.js";
import { pairLogps, preferenceAccuracy } from "../train/logps.js";
import { type PreparedData, dataOptionsFromConfig, formatPreferenceData, loadPreferenceData } from "../data/load.js";
import type { LoadedModel } from "../io/load.js";
import { createProgress } from "../train/progress.js";
import { sampleCommand } from "./sample.js";
import { labelCommand } from "./label.js";
import { templateKwargsFor } from "./templatekwargs.js";
import { demoCommand } from "./demo.js";
import { iterateCommand } from "./iterate.js";
import { reportCommand } from "./report.js";
import { benchCommand } from "./bench.js";
import type { OptionSpec, Values } from "./args.js";

export interface Command {
  summary: string;
  help: string;
  /** Parsed by src/cli/args.ts: `--key value` or `--key=value`, kebab-case or snake_case. */
  options: OptionSpec;
  run(values: Values, positionals: string[]): Promise<number | void>;
}

const str = (v: Values, key: string): string | undefined => (typeof v[key] === "string" ? (v[key] as string) : undefined);

function num(v: Values, key: string, fallback: number, check: (x: number) => boolean, what: string): number {
  const s = str(v, key);
  if (s === undefined) return fallback;
  const x = Number(s);
  if (s.trim() === "" || !Number.isFinite(x) || !check(x)) throw configError(`--${key} ${s}: expected ${what}`);
  return x;
}

const isInt = (x: number): boolean => Number.isInteger(x);

const backendOption = { backend: { type: "string" }, adapter: { type: "string" } } as const;

/** The data options every command that reads preference pairs takes, with train's config names. */
const dataOptions = {
  prompt_field: { type: "string" }, chosen_field: { type: "string" }, rejected_field: { type: "string" },
  data_format: { type: "string" }, winner_field: { type: "string" }, a_field: { type: "string" }, b_field: { type: "string" },
  winner_values: { type: "string" }, score_fields: { type: "string" }, webgpt_quotes: { type: "boolean" },
  skip_invalid: { type: "boolean" }, chat_template_kwargs: { type: "string" },
} as const;
const dataHelp = `  --prompt-field F, --chosen-field F, --rejected-field F
                       the fields that hold the prompt and the two answers, when a file names them differently
                       (defaults: prompt, chosen, rejected; without a prompt field the prompt is inferred)
  --data-format auto|generic|chatbot_arena|webgpt|hh_rlhf
                       the layout of the rows; auto (default) recognises Chatbot Arena Conversations, WebGPT
                       Comparisons and HH-RLHF from the columns and says so; generic reads the field mapping only
  --winner-field F --a-field A --b-field B [--winner-values '{"a":[...],"b":[...],"tie":[...]}']
                       two answers and a verdict: F says which of A and B won (default values: model_a or a,
                       model_b or b, tie or "tie (bothbad)"); ties are dropped and counted
  --score-fields SA,SB --a-field A --b-field B
                       two answers and their scores: the higher score wins, equal scores are a tie (dropped)
  --webgpt-quotes      WebGPT: put each answer's quotes in front of it, as the model had them
  --skip-invalid       skip malformed rows (counted, and listed on stderr) instead of stopping at the first
  --chat-template-kwargs '{"enable_thinking": false}'
                       extra variables for every chat-template render (default: those of the run that made
                       --model, when it is a tsdpo run folder)`;

/** --winner-values as JSON; --score-fields as JSON or "a,b". */
function parseJsonOption(v: Values, key: string, example: string): unknown {
  const s = str(v, key);
  if (s === undefined) return undefined;
  try {
    return JSON.parse(s);
  } catch {
    if (key === "score_fields") return s.split(",").map((x) => x.trim());
    throw configError(`--${key.replace(/_/g, "-")} ${s}: not JSON; give it as ${example}`);
  }
}

/** Loads a preference file for `model` through the one loader train uses, with the command's data options. */
async function loadDataFor(v: Values, path: string, model: LoadedModel, maxLength: number | null, modelPath?: string): Promise<PreparedData> {
  const promptField = str(v, "prompt_field");
  const d = await loadPreferenceData(resolve(path), model.tokenizer, dataOptionsFromConfig({
    // --prompt-field null: infer the prompt from the answers on purpose, as prompt_field: null in a config
    ...(promptField !== undefined ? { prompt_field: promptField === "null" ? null : promptField } : {}),
    ...(str(v, "chosen_field") !== undefined ? { chosen_field: str(v, "chosen_field") } : {}),
    ...(str(v, "rejected_field") !== undefined ? { rejected_field: str(v, "rejected_field") } : {}),
    // The data layout (src/data/formats.ts checks the combination and names the keys that conflict).
    data_format: str(v, "data_format"),
    winner_field: str(v, "winner_field") ?? null,
    a_field: str(v, "a_field") ?? null,
    b_field: str(v, "b_field") ?? null,
    winner_values: parseJsonOption(v, "winner_values", `'{"a": ["model_a"], "b": ["model_b"], "tie": ["tie"]}'`) ?? null,
    score_fields: (parseJsonOption(v, "score_fields", `score_0,score_1`) as string[] | undefined) ?? null,
    webgpt_quotes: v.webgpt_quotes === true,
    skip_invalid: v.skip_invalid === true,
    chat_template_kwargs: templateKwargsFor(v, modelPath),
    max_length: maxLength,
  }, model.model.cfg.maxSeqLen));
  // What was skipped, truncated or flagged goes to stderr, so that stdout stays the command's result.
  if (d.stats.invalid + d.stats.dropped + d.stats.warnings + d.stats.truncated > 0 || d.stats.recognised !== null)
    process.stderr.write(formatPreferenceData(d) + "\n");
  return d;
}

const modelHelp = `  --model <path>       a .gguf file, a Hugging Face folder, a LoRA adapter folder or a run folder
                       (default: the shipped stories260K)
  --adapter <folder>   a PEFT LoRA adapter to put on the model`;

const generateCommand: Command = {
  summary: "generate text from a prompt (greedy or sampled, with a KV cache)",
  help: `usage: tsdpo generate [--model <file.gguf|hf-folder>] --prompt <text> [--max-new-tokens N] [--temperature T]
                      [--top-k K] [--top-p P] [--seed S] [--json]
${modelHelp}
  --prompt <text>      the prompt; BOS is added when the model expects it ("" starts from BOS alone)
  --max-new-tokens N   at most N new tokens (default 128); generation also stops at EOS
  --temperature T      0 = greedy (default), otherwise sample from softmax(logits / T)
  --top-k K            sample among the K most likely tokens (0 = all, default)
  --top-p P            nucleus sampling: the smallest set of tokens with probability ≥ P (default 1)
  --seed S             random seed for sampling (default 0)
  --json               print {"ids":[...],"text":"..."} with the new tokens and their text (plus "prompt_ids")
  --backend js|native|auto`,
  options: {
    model: { type: "string" }, prompt: { type: "string" }, "max-new-tokens": { type: "string" },
    temperature: { type: "string" }, "top-k": { type: "string" }, "top-p": { type: "string" },
    seed: { type: "string" }, json: { type: "boolean" }, ...backendOption,
  },
  async run(v) {
    const prompt = str(v, "prompt");
    if (prompt === undefined) throw configError(`generate: --prompt is required (use --prompt "" to start from BOS)`);
    const opts = {
      maxNewTokens: num(v, "max-new-tokens", 128, (x) => isInt(x) && x >= 1, "a whole number ≥ 1"),
      temperature: num(v, "temperature", 0, (x) => x >= 0, "a number ≥ 0"),
      topK: num(v, "top-k", 0, (x) => isInt(x) && x >= 0, "a whole number ≥ 0"),
      topP: num(v, "top-p", 1, (x) => x > 0 && x <= 1, "a number in (0, 1]"),
      seed: num(v, "seed", 0, isInt, "a whole number"),
    };
    const be = selectBackend(str(v, "backend"));
    const { model, tokenizer } = loadModelForUse(str(v, "model") ?? defaultModelPath, str(v, "adapter"), defaultModelPath);
    const promptIds = [...(tokenizer.addBos && tokenizer.bosId !== null ? [tokenizer.bosId] : []), ...tokenizer.encode(prompt)];
    if (promptIds.length === 0) throw configError(`generate: the prompt is empty and the model has no BOS token to start from`);
    const stopIds = [...(tokenizer.eosId !== null ? [tokenizer.eosId] : []), ...tokenizer.stopIds];
    const out = generate(be, model, promptIds, stopIds, opts);
    const text = tokenizer.decode(out.ids);
    if (v.json) process.stdout.write(JSON.stringify({ ids: out.ids, text, prompt_ids: promptIds, stop: out.stop }) + "\n");
    else process.stdout.write(prompt + text + "\n");
  },
};

const logprobsCommand: Command = {
  summary: "sum of completion-token log-probs of chosen and rejected for each row of a preference file",
  help: `usage: tsdpo logprobs [--model <file.gguf|hf-folder>] --data <file> [--json]
${modelHelp}
  --data <file>        preference rows {"prompt","chosen","rejected"} (JSONL, JSON, Parquet, CSV, TSV, optionally .gz);
                       conversational rows are rendered with the model's chat template
${dataHelp}
  --json               one JSON line per row (the default output; kept for symmetry with other commands):
                       {"index":i,"chosen_logps":x,"rejected_logps":y,"chosen_tokens":n,"rejected_tokens":m}
  --backend js|native|auto
The sums run over completion tokens only (the completion and the EOS that ends it), as DPO uses them.`,
  options: { model: { type: "string" }, data: { type: "string" }, json: { type: "boolean" }, ...backendOption, ...dataOptions },
  async run(v) {
    const data = str(v, "data");
    if (!data) throw configError("logprobs: --data <file> is required");
    const be = selectBackend(str(v, "backend"));
    const loaded = loadModelForUse(str(v, "model") ?? defaultModelPath, str(v, "adapter"), defaultModelPath);
    const pairs = await loadDataFor(v, data, loaded, null, str(v, "model"));
    const rows = pairLogps(be, loaded.model, pairs.pairs);
    for (const r of rows) process.stdout.write(JSON.stringify(r) + "\n");
  },
};

const exportCommand: Command = {
  summary: "export a model or a run as a Hugging Face folder, a PEFT adapter or a GGUF file",
  help: `usage: tsdpo export [<run-folder|model>] [--model <path>] [--adapter <peft-folder>] [--format hf|peft|gguf] --out <path>
                    [--dtype f32|f16|bf16|q8_0|q4_k_m] [--max-shard-size <size>] [--force]
  <run-folder|model>   what to export: a run folder (its final/), a checkpoint, a .gguf or an HF folder
  --model <path>       the same, as an option
  --adapter <folder>   a PEFT LoRA adapter to put on the model (merged into the weights for hf and gguf)
  --out <path>         the folder (hf, peft) or file (gguf) to write
  --format F           hf (default), peft or gguf:
      hf     config.json, model.safetensors (sharded with model.safetensors.index.json above --max-shard-size),
             tokenizer.json, tokenizer_config.json and generation_config.json, loadable by Hugging Face transformers;
             a LoRA adapter is merged into the weights first
      peft   adapter_config.json + adapter_model.safetensors, as PEFT writes them (the model must carry a LoRA adapter)
      gguf   one GGUF v3 file with the metadata and tokenizer llama.cpp and ollama need; LoRA is merged first
  --dtype D            f32 (default), f16 or bf16 (bf16: hf only) for the weights written; for gguf also q8_0 or
                       q4_k_m, the tensor types chosen as llama.cpp's quantiser chooses them (no importance matrix).
                       A LoRA on a quantised base is merged onto the dequantised base weights.
  --max-shard-size S   hf: largest safetensors shard, e.g. 500MB or 2GB (default 5GB, as transformers)
  --force              overwrite --out when it already exists (without it, export refuses)`,
  options: {
    model: { type: "string" }, adapter: { type: "string" }, format: { type: "string" }, out: { type: "string" },
    dtype: { type: "string" }, "max-shard-size": { type: "string" }, force: { type: "boolean" },
  },
  async run(v, positionals) {
    const input = str(v, "model") ?? positionals[0];
    if (!input) throw configError("export: give the model to export (--model <path> or a positional path)");
    const out = str(v, "out");
    if (!out) throw configError("export: --out <path> is required");
    const format = str(v, "format") ?? "hf";
    const dtypeName = (str(v, "dtype") ?? "f32").toLowerCase();
    const dtypes = { f32: "F32", f16: "F16", bf16: "BF16", q8_0: "Q8_0", q4_k_m: "Q4_K_M" } as const;
    if (!(dtypeName in dtypes)) throw configError(`export: --dtype ${dtypeName}: expected f32, f16, bf16, q8_0 or q4_k_m`);
    if ((dtypeName === "q8_0" || dtypeName === "q4_k_m") && format !== "gguf")
      throw configError(`export: --dtype ${dtypeName} is a GGUF quantisation; use it with --format gguf (hf writes f32, f16 or bf16)`);
    const maxShardBytes = parseByteSize(str(v, "max-shard-size") ?? "5GB");
    // Nothing is overwritten by accident: an existing file, or a folder with anything in it, needs --force.
    if (existsSync(out) && !(statSync(out).isDirectory() && readdirSync(out).length === 0) && v.force !== true)
      throw configError(`export: ${out} already exists; choose another --out, or add --force to overwrite it`);
    switch (format) {
      case "hf": {
        const loaded = loadModelForUse(input, str(v, "adapter"), defaultModelPath);
        const files = exportHf(loaded, out, { dtype: dtypes[dtypeName as "f32" | "f16" | "bf16"], maxShardBytes });
        process.stdout.write(`wrote ${out}: ${files.join(", ")}\n`);
        return;
      }
      case "peft": {
        const loaded = loadModelForUse(input, str(v, "adapter"), defaultModelPath);
        const lora = loaded.model.lora;
        if (!lora) throw configError(`export --format peft: ${input} has no LoRA adapter (train with use_peft, or pass --adapter)`);
        writePeftAdapter(out, lora, { baseModel: loaded.path, baseFingerprint: modelFingerprint(loaded.path) });
        process.stdout.write(`wrote ${out}: adapter_config.json, adapter_model.safetensors\n`);
        return;
      }
      case "gguf": {
        if (dtypeName === "bf16") throw configError("export --format gguf: --dtype bf16 is not supported; use f32 or f16");
        const loaded = loadModelForUse(input, str(v, "adapter"), defaultModelPath);
        const r = exportGguf(loaded, out, { dtype: dtypes[dtypeName as "f32" | "f16" | "q8_0" | "q4_k_m"] });
        for (const note of r.notes) process.stderr.write(`note: ${note}\n`);
        process.stdout.write(`wrote ${out}: ${r.tensors} tensors, ${r.bytes} bytes\n`);
        return;
      }
      default:
        throw configError(`export: --format ${format}: expected hf, peft or gguf`);
    }
  },
};

export function parseByteSize(s: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KiB|MiB|GiB)?\s*$/i.exec(s);
  if (!m) throw configError(`--max-shard-size ${s}: expected a size like 500MB or 2GB`);
  const unit = (m[2] ?? "B").toUpperCase();
  const mult: Record<string, number> = { B: 1, KB: 1e3, MB: 1e6, GB: 1e9, KIB: 1024, MIB: 1024 ** 2, GIB: 1024 ** 3 };
  const bytes = Math.floor(Number(m[1]) * mult[unit]!);
  if (bytes < 1) throw configError(`--max-shard-size ${s}: must be at least 1 byte`);
  return bytes;
}

/** A run stopped by a signal exits as a shell expects of that signal (128 + its number), after its checkpoint. */
const exitCodeOf = (r: { stopped?: NodeJS.Signals }): number => (r.stopped === "SIGINT" ? 130 : r.stopped === "SIGTERM" ? 143 : 0);

/**
 * The saved config of a run folder for `tsdpo <command> --resume <dir>`: refused with settings beside it (a resume
 * takes the run's own), outside a run folder, and for a run the other command wrote (SFT or preference).
 */
function savedRunConfig(command: "train" | "sft", dir: string, extra: string[]): { saved: Record<string, unknown>; where: string } {
  if (extra.length) throw configError(`${command} --resume takes the run's saved config; remove ${extra.join(" ")}`);
  const where = resolve(dir, "config.json");
  if (!existsSync(where) || !existsSync(resolve(dir, "metrics.jsonl")))
    throw inputError(`${command} --resume ${dir}: not a tsdpo run folder (it has no config.json and metrics.jsonl from \`tsdpo ${command}\`)`);
  const saved = readConfigFile(where);
  const isSft = saved.trainer === "sft";
  if (isSft !== (command === "sft"))
    throw configError(`${command} --resume ${dir}: this is ${isSft ? "an SFT run" : "a preference run"}; continue it with \`tsdpo ${isSft ? "sft" : "train"} --resume ${dir}\``);
  return { saved, where };
}

const trainCommand: Command = {
  summary: "train with DPO (or a sibling loss) from a config file, or resume a run",
  help: `usage: tsdpo train [<config.json>] [--key value ...]
       tsdpo train --resume <run-folder>
       tsdpo train --list-keys
  <config.json>   training settings as a JSON object. Without a file, tsdpo runs the shipped configs/default.json
                  (stories260K on the shipped HH-RLHF pairs, 300 held out; about a minute on native). Keys that
                  a file leaves out take TRL's defaults (learning_rate 1e-6, max_length 1024, no held-out set…).
                  Paths in a file are relative to the file's folder; paths on the command line to the current one.
  --key value     one setting, e.g. --beta 0.1 --learning_rate 5e-4 --loss_type ipo --output_dir runs/a
                  (also --key=value; --max-steps and --max_steps are the same)
  --list-keys     every setting with its default and meaning
  --resume <dir>  continue a run from its newest checkpoint (after a crash or kill -9), with its saved config
  --quiet         no progress output
Ctrl-C (or SIGTERM) stops after the current step with a checkpoint (a second Ctrl-C exits at once); checkpoints
are also written every save_minutes (default 10) and save_steps, keeping the newest save_total_limit (default 3).
The run folder gets config.json (resolved, absolute paths), metrics.jsonl, checkpoints/step-N/, final/,
summary.json and report.html.`,
  options: {
    ...Object.fromEntries(Object.entries(trainOptionTypes()).map(([k, type]) => [k, { type }])),
    resume: { type: "string" }, quiet: { type: "boolean" }, list_keys: { type: "boolean" },
  },
  async run(v, positionals) {
    const { train } = await import("../train/train.js");
    if (v.list_keys) {
      process.stdout.write(trainKeyList());
      return;
    }
    const quiet = v.quiet === true;
    const settings = Object.fromEntries(Object.entries(v).filter(([k]) => k !== "quiet" && k !== "resume" && k !== "list_keys"));
    const dir = str(v, "resume");
    if (dir !== undefined) {
      const { saved, where } = savedRunConfig("train", dir, [...positionals, ...Object.keys(settings).map((k) => `--${k}`)]);
      return exitCodeOf(await train(resolveTrainConfig(saved, where), resolve(dir), { resume: true, quiet }));
    }
    if (positionals.length > 1)
      throw configError(`train: give one config file, got ${positionals.length} (${positionals.join(", ")}); settings go as --key value`);
    const file = positionals[0] ?? defaultConfigPath;
    const where = (positionals[0] ?? "configs/default.json") + (Object.keys(settings).length ? " with the command line's settings" : "");
    const cfg = resolveTrainConfig(applyOverrides(readConfigFile(file), settings), where);
    const notes = positionals.length === 0 ? [`config: ${file} (the shipped default; \`tsdpo train my.json\` runs your own)`] : [];
    return exitCodeOf(await train(cfg, null, { quiet, notes }));
  },
};

const sftCommand: Command = {
  summary: "supervised fine-tuning (SFT) from a config file, or resume an SFT run",
  help: `usage: tsdpo sft <config.json> [--key value ...]
       tsdpo sft --resume <run-folder>
       tsdpo sft --list-keys
  <config.json>   settings as a JSON object, with TRL SFTConfig's names; the data holds {"prompt", "completion"} rows,
                  {"messages"} conversations (through the model's chat template) or {"text"} rows
  --key value     one setting, e.g. --packing --assistant_only_loss --learning_rate 2e-5 --output_dir runs/sft
  --list-keys     every setting with its default and meaning
  --resume <dir>  continue a run from its newest checkpoint, with its saved config
  --quiet         no progress output
The loss counts the completion of prompt-completion rows (completion_only_loss, on by default for them) and every
token of a conversation, or only the assistant's turns with assistant_only_loss. The run folder is a train run's
(config.json, metrics.jsonl with loss, mean_token_accuracy, entropy, num_tokens, checkpoints/, final/, report.html),
and a starting model for DPO: tsdpo train --model <run-folder>.`,
  options: {
    ...Object.fromEntries(Object.entries(sftOptionTypes()).map(([k, type]) => [k, { type }])),
    resume: { type: "string" }, quiet: { type: "boolean" }, list_keys: { type: "boolean" },
  },
  async run(v, positionals) {
    const { sft } = await import("../train/sft.js");
    if (v.list_keys) {
      process.stdout.write(sftKeyList());
      return;
    }
    const quiet = v.quiet === true;
    const settings = Object.fromEntries(Object.entries(v).filter(([k]) => k !== "quiet" && k !== "resume" && k !== "list_keys"));
    const dir = str(v, "resume");
    if (dir !== undefined) {
      const { saved, where } = savedRunConfig("sft", dir, [...positionals, ...Object.keys(settings).map((k) => `--${k}`)]);
      return exitCodeOf(await sft(resolveSftConfig(saved, where), resolve(dir), { resume: true, quiet }));
    }
    if (positionals.length !== 1)
      throw configError(`sft: give one config file${positionals.length ? `, got ${positionals.length} (${positionals.join(", ")})` : " (settings go as --key value; --list-keys lists them)"}`);
    const where = positionals[0]! + (Object.keys(settings).length ? " with the command line's settings" : "");
    const cfg = resolveSftConfig(applySftOverrides(readConfigFile(positionals[0]!), settings), where);
    return exitCodeOf(await sft(cfg, null, { quiet }));
  },
};

const planCommand: Command = {
  summary: "will a training run fit? its predicted peak memory and time per micro-batch, without training",
  help: `usage: tsdpo plan [<config.json>] [--key value ...]
  The same config and settings as \`tsdpo train\`. Reads the model's header (not its weights) and the data, then
  prints what train prints before its first step: the predicted peak memory, item by item (weights by storage,
  trainable parameters, gradients, AdamW moments, the reference copy, activations of the largest micro-batch, the
  kernels' scratch), the memory available (min of MemAvailable and the cgroup limit), and the predicted time per
  micro-batch from the step's FLOPs and a GEMM rate measured here on the step's shapes. If the run would not fit,
  it says so and names the settings that would (as train refuses; --force makes train start anyway).`,
  options: Object.fromEntries(Object.entries(trainOptionTypes()).map(([k, type]) => [k, { type }])),
  async run(v, positionals) {
    const { planTrain } = await import("../train/train.js");
    if (positionals.length > 1)
      throw configError(`plan: give one config file, got ${positionals.length} (${positionals.join(", ")}); settings go as --key value`);
    const file = positionals[0] ?? defaultConfigPath;
    const where = (positionals[0] ?? "configs/default.json") + (Object.keys(v).length ? " with the command line's settings" : "");
    const cfg = resolveTrainConfig(applyOverrides(readConfigFile(file), v), where);
    await planTrain(cfg, (line) => process.stdout.write(line + "\n"));
  },
};

const evalCommand: Command = {
  summary: "preference accuracy and mean reward margin of a model against a reference on a preference file",
  help: `usage: tsdpo eval --model <policy> --data <file> [--reference <model>] [--adapter <folder>] [--beta B]
                  [--max-length N] [--json]
  --model <path>       the tuned model (a .gguf, an HF folder, a run folder, or its final/ or a checkpoint folder)
  --adapter <folder>   a PEFT LoRA adapter to put on the policy (the reference stays without it)
  --data <file>        preference pairs (the formats train reads; conversational rows use the chat template)
${dataHelp}
  --reference <path>   π_ref; default: the starting model recorded in a run folder's train_config.json
  --beta B             β of the implicit reward r = β·(log π − log π_ref) (default: the run's beta, else 0.1)
  --max-length N       truncate pairs to N tokens as training does (default: the model's context)
  --json               one JSON object instead of a table
  --backend js|native|auto
Accuracy is the share of pairs whose implicit reward ranks chosen strictly above rejected (a tie counts as wrong).`,
  options: {
    model: { type: "string" }, data: { type: "string" }, reference: { type: "string" }, beta: { type: "string" },
    "max-length": { type: "string" }, json: { type: "boolean" }, ...backendOption, ...dataOptions,
  },
  async run(v) {
    const modelPath = str(v, "model");
    const data = str(v, "data");
    if (!modelPath || !data) throw configError("eval: --model and --data are required");
    const saved = readRunConfig(modelPath);
    const refPath = str(v, "reference") ?? (saved ? String(saved.ref_model ?? saved.model ?? defaultModelPath) : undefined);
    if (!refPath) throw configError(`eval: --reference is required (${modelPath} is not a tsdpo run folder that records its starting model)`);
    const savedBeta = saved && typeof (saved.loss as Record<string, unknown> | undefined)?.beta === "number" ? ((saved.loss as Record<string, unknown>).beta as number) : 0.1;
    const beta = num(v, "beta", savedBeta, (x) => x > 0, "a number > 0");
    const be = selectBackend(str(v, "backend"));
    const policy = loadModelForUse(modelPath, str(v, "adapter"), defaultModelPath);
    const ref = loadModelForUse(refPath, null, defaultModelPath);
    const maxLength = num(v, "max-length", policy.model.cfg.maxSeqLen, (x) => isInt(x) && x >= 2, "a whole number ≥ 2");
    const pairs = await loadDataFor(v, data, policy, maxLength, modelPath);
    const progress = createProgress("eval", 2 * pairs.pairs.length, 0, process.stderr, false, 10_000, "scored");
    const policyRows = pairLogps(be, policy.model, pairs.pairs, 4, true, (done) => progress.update(done, "(policy)"));
    const refRows = pairLogps(be, ref.model, pairs.pairs, 4, true, (done) => progress.update(pairs.pairs.length + done, "(reference)"));
    progress.done();
    const r = preferenceAccuracy(policyRows, refRows, beta);
    const result = { pairs: r.n, accuracy: r.accuracy, mean_margin: r.meanMargin, "rewards/chosen": r.chosen, "rewards/rejected": r.rejected, beta, model: modelPath, reference: refPath };
    if (v.json) process.stdout.write(JSON.stringify(result) + "\n");
    else
      process.stdout.write(
        `pairs ${r.n}\naccuracy ${r.accuracy.toFixed(4)}\nmean margin ${r.meanMargin.toFixed(4)}\n` +
          `rewards/chosen ${r.chosen.toFixed(4)}\nrewards/rejected ${r.rejected.toFixed(4)}\n`,
      );
  },
};

/** In the order a new user meets them: the demo first. */
export const commands: Record<string, Command> = {
  demo: demoCommand,
  train: trainCommand,
  sft: sftCommand,
  iterate: iterateCommand,
  plan: planCommand,
  eval: evalCommand,
  sample: sampleCommand,
  label: labelCommand,
  generate: generateCommand,
  logprobs: logprobsCommand,
  export: exportCommand,
  report: reportCommand,
  bench: benchCommand,
};
