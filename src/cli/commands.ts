// The CLI's commands: each declares its options (for node:util parseArgs, strict) and a run function that calls
// the library. The option names and output forms here are a contract other tools rely on; change them with care.

import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { selectBackend } from "../backend/select.js";
import { configError, inputError } from "../errors.js";
import { exportHf } from "../export/hf.js";
import { exportGguf } from "../export/gguf.js";
import { writePeftAdapter } from "../io/peft.js";
import { loadModelForUse, readRunConfig } from "../io/resolve.js";
import { modelFingerprint } from "../io/fingerprint.js";
import { defaultModelPath } from "../paths.js";
import { generate } from "../sample/generate.js";
import { pairLogps, preferenceAccuracy } from "../train/logps.js";
import { loadPreferencePairs } from "../data/load.js";
import { sampleCommand } from "./sample.js";
import { demoCommand } from "./demo.js";
import { reportCommand } from "./report.js";
import { benchCommand } from "./bench.js";

type Values = Record<string, string | boolean | undefined>;
type OptionSpec = Record<string, { type: "string" | "boolean"; short?: string }>;

export interface Command {
  summary: string;
  help: string;
  options: OptionSpec;
  /** Commands that take free-form `--key=value` overrides parse argv themselves. */
  rawArgs?: boolean;
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
  help: `usage: tsdpo logprobs [--model <file.gguf|hf-folder>] --data <file.jsonl> [--json]
${modelHelp}
  --data <file>        preference rows {"prompt","chosen","rejected"} (JSONL, JSON, Parquet, optionally .gz)
  --json               one JSON line per row (the default output; kept for symmetry with other commands):
                       {"index":i,"chosen_logps":x,"rejected_logps":y,"chosen_tokens":n,"rejected_tokens":m}
  --backend js|native|auto
The sums run over completion tokens only (the completion and the EOS that ends it), as DPO uses them.`,
  options: { model: { type: "string" }, data: { type: "string" }, json: { type: "boolean" }, ...backendOption },
  async run(v) {
    const data = str(v, "data");
    if (!data) throw configError("logprobs: --data <file> is required");
    const be = selectBackend(str(v, "backend"));
    const loaded = loadModelForUse(str(v, "model") ?? defaultModelPath, str(v, "adapter"), defaultModelPath);
    const pairs = await loadPreferencePairs(resolve(data), loaded.tokenizer, { maxLength: loaded.model.cfg.maxSeqLen });
    const rows = pairLogps(be, loaded.model, pairs.pairs);
    for (const r of rows) process.stdout.write(JSON.stringify(r) + "\n");
  },
};

const exportCommand: Command = {
  summary: "export a model or a run as a Hugging Face folder, a PEFT adapter or a GGUF file",
  help: `usage: tsdpo export [<run-folder|model>] [--model <path>] [--adapter <peft-folder>] --format hf|peft|gguf --out <path>
                    [--dtype f32|f16|bf16] [--max-shard-size <bytes, e.g. 2GB>]
  hf     config.json, model.safetensors (sharded with model.safetensors.index.json above --max-shard-size),
         tokenizer.json, tokenizer_config.json and generation_config.json, loadable by Hugging Face transformers;
         a LoRA adapter is merged into the weights first
  peft   adapter_config.json + adapter_model.safetensors, as PEFT writes them (the model must carry a LoRA adapter)
  gguf   one GGUF v3 file (--dtype f32 or f16) with the metadata and tokenizer llama.cpp needs; LoRA is merged first`,
  options: {
    model: { type: "string" }, adapter: { type: "string" }, format: { type: "string" }, out: { type: "string" },
    dtype: { type: "string" }, "max-shard-size": { type: "string" },
  },
  async run(v, positionals) {
    const input = str(v, "model") ?? positionals[0];
    if (!input) throw configError("export: give the model to export (--model <path> or a positional path)");
    const out = str(v, "out");
    if (!out) throw configError("export: --out <path> is required");
    const format = str(v, "format") ?? "hf";
    const dtypeName = (str(v, "dtype") ?? "f32").toLowerCase();
    const dtypes = { f32: "F32", f16: "F16", bf16: "BF16" } as const;
    if (!(dtypeName in dtypes)) throw configError(`export: --dtype ${dtypeName}: expected f32, f16 or bf16`);
    const maxShardBytes = parseByteSize(str(v, "max-shard-size") ?? "5GB");
    switch (format) {
      case "hf": {
        const loaded = loadModelForUse(input, str(v, "adapter"), defaultModelPath);
        const files = exportHf(loaded, out, { dtype: dtypes[dtypeName as keyof typeof dtypes], maxShardBytes });
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
        const r = exportGguf(loaded, out, { dtype: dtypeName === "f16" ? "F16" : "F32" });
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

const trainCommand: Command = {
  summary: "train with DPO (or a sibling loss) from a config file, or resume a run",
  help: `usage: tsdpo train [<config.json>] [--key=value ...]
       tsdpo train --resume <run-folder>
  <config.json>   training settings (README lists every key; configs/default.json is the shipped default).
                  Without a file, the defaults train the shipped stories260K on the shipped HH-RLHF pairs.
  --key=value     override one setting, e.g. --beta=0.1 --learning_rate=5e-4 --loss_type=ipo --output_dir=runs/a
  --resume <dir>  continue a run from its newest checkpoint (after a crash or kill -9), with its saved config
  --quiet         no progress output
The run folder gets config.json (resolved), metrics.jsonl, checkpoints/step-N/, final/ and summary.json.`,
  options: {},
  rawArgs: true,
  async run(_v, argv) {
    const { readConfigFile, applyOverrides, resolveTrainConfig } = await import("../train/config.js");
    const { train } = await import("../train/train.js");
    const quiet = argv.includes("--quiet");
    const args = argv.filter((a) => a !== "--quiet");
    const r = args.indexOf("--resume");
    if (r >= 0) {
      const dir = args[r + 1];
      if (!dir || dir.startsWith("--")) throw configError("train: --resume needs the run folder, e.g. --resume runs/my-run");
      const rest = args.filter((_, i) => i !== r && i !== r + 1);
      if (rest.length) throw configError(`train --resume takes the run's saved config; remove ${rest.join(" ")}`);
      const where = resolve(dir, "config.json");
      if (!existsSync(where) || !existsSync(resolve(dir, "metrics.jsonl")))
        throw inputError(`train --resume ${dir}: not a tsdpo run folder (it has no config.json and metrics.jsonl from \`tsdpo train\`)`);
      const cfg = resolveTrainConfig(readConfigFile(where), where);
      await train(cfg, resolve(dir), { resume: true, quiet });
      return;
    }
    const file = args[0] && !args[0].startsWith("--") ? args[0] : null;
    const overrides = file ? args.slice(1) : args;
    const base = file ? readConfigFile(file) : {};
    const cfg = resolveTrainConfig(applyOverrides(base, overrides), file ?? "command line");
    await train(cfg, null, { quiet });
  },
};

const evalCommand: Command = {
  summary: "preference accuracy and mean reward margin of a model against a reference on a preference file",
  help: `usage: tsdpo eval --model <policy> --data <file> [--reference <model>] [--beta B] [--max-length N] [--json]
  --model <path>       the tuned model (a .gguf, an HF folder, or a run's final/ or checkpoint folder)
  --data <file>        preference pairs (the formats train reads)
  --reference <path>   π_ref; default: the starting model recorded in a run folder's train_config.json
  --beta B             β of the implicit reward r = β·(log π − log π_ref) (default: the run's beta, else 0.1)
  --max-length N       truncate pairs to N tokens as training does (default: the model's context)
  --json               one JSON object instead of a table
Accuracy is the share of pairs whose implicit reward ranks chosen strictly above rejected (a tie counts as wrong).`,
  options: {
    model: { type: "string" }, data: { type: "string" }, reference: { type: "string" }, beta: { type: "string" },
    "max-length": { type: "string" }, json: { type: "boolean" }, ...backendOption,
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
    const pairs = await loadPreferencePairs(resolve(data), policy.tokenizer, { maxLength });
    const r = preferenceAccuracy(pairLogps(be, policy.model, pairs.pairs), pairLogps(be, ref.model, pairs.pairs), beta);
    const result = { pairs: r.n, accuracy: r.accuracy, mean_margin: r.meanMargin, "rewards/chosen": r.chosen, "rewards/rejected": r.rejected, beta, model: modelPath, reference: refPath };
    if (v.json) process.stdout.write(JSON.stringify(result) + "\n");
    else
      process.stdout.write(
        `pairs ${r.n}\naccuracy ${r.accuracy.toFixed(4)}\nmean margin ${r.meanMargin.toFixed(4)}\n` +
          `rewards/chosen ${r.chosen.toFixed(4)}\nrewards/rejected ${r.rejected.toFixed(4)}\n`,
      );
  },
};

export const commands: Record<string, Command> = {
  eval: evalCommand,
  train: trainCommand,
  generate: generateCommand,
  logprobs: logprobsCommand,
  export: exportCommand,
  sample: sampleCommand,
  demo: demoCommand,
  report: reportCommand,
  bench: benchCommand,
};
