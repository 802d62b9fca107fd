// tsdpo sample: completions of the tuned policy next to the reference's, per prompt (src/sample/sideBySide.ts).

import { selectBackend } from "../backend/select.js";
import { configError } from "../errors.js";
import { loadModelForUse } from "../io/resolve.js";
import { defaultModelPath } from "../paths.js";
import { defaultSideBySideOptions, formatSideBySide, readPromptsFile, sideBySide } from "../sample/sideBySide.js";
import type { Command } from "./commands.js";
import { templateKwargsFor } from "./templatekwargs.js";

type Values = Record<string, string | boolean | undefined>;

function num(v: Values, key: string, fallback: number, ok: (x: number) => boolean, what: string): number {
  const s = v[key];
  if (typeof s !== "string") return fallback;
  const x = Number(s);
  if (s.trim() === "" || !Number.isFinite(x) || !ok(x)) throw configError(`sample: --${key} ${s}: expected ${what}`);
  return x;
}

const d = defaultSideBySideOptions;

export const sampleCommand: Command = {
  summary: "completions of a tuned model next to its reference's, for each prompt of a file",
  help: `usage: tsdpo sample --model <policy> --reference <model> --prompts <file> [--n N] [--temperature T]
                    [--max-new-tokens N] [--top-k K] [--top-p P] [--seed S] [--json]
  --model <path>       the tuned policy (a .gguf, an HF folder, a run folder or checkpoint; --adapter adds a LoRA)
  --reference <path>   the model to compare with, e.g. the one training started from
  --prompts <file>     one prompt per line, or JSON Lines with a "prompt" field: a string, or chat messages
                       [{"role": "user", "content": "..."}] rendered with each model's chat template
  --n N                completions per prompt and model (default ${d.n})
  --temperature T      sampling temperature (default ${d.temperature}; 0 = greedy, then all N are the same)
  --max-new-tokens N   at most N new tokens per completion (default ${d.maxNewTokens}); EOS also stops
  --top-k K, --top-p P as for generate (defaults: no limit)
  --seed S             seed (default ${d.seed}): the same seed gives the same samples, and sample j of a prompt uses
                       the same random stream for the policy and the reference
  --json               one JSON line per prompt: {"prompt": ..., "policy": [...], "reference": [...]}
  --adapter <folder>   a PEFT LoRA adapter to put on the policy
  --chat-template-kwargs '{"enable_thinking": false}'
                       extra variables for the chat template of message prompts (default: those the run that
                       made --model trained with, when it is a tsdpo run folder)
  --backend js|native|auto`,
  options: {
    model: { type: "string" }, reference: { type: "string" }, prompts: { type: "string" }, n: { type: "string" },
    temperature: { type: "string" }, "max-new-tokens": { type: "string" }, "top-k": { type: "string" },
    "top-p": { type: "string" }, seed: { type: "string" }, json: { type: "boolean" }, adapter: { type: "string" },
    backend: { type: "string" }, chat_template_kwargs: { type: "string" },
  },
  async run(v) {
    const str = (k: string): string | undefined => (typeof v[k] === "string" ? (v[k] as string) : undefined);
    const modelPath = str("model");
    const refPath = str("reference");
    const promptsPath = str("prompts");
    if (!modelPath || !refPath || !promptsPath)
      throw configError("sample: --model, --reference and --prompts are required (see tsdpo sample --help)");
    const opts = {
      n: num(v, "n", d.n, (x) => Number.isInteger(x) && x >= 1, "a whole number ≥ 1"),
      temperature: num(v, "temperature", d.temperature, (x) => x >= 0, "a number ≥ 0"),
      maxNewTokens: num(v, "max-new-tokens", d.maxNewTokens, (x) => Number.isInteger(x) && x >= 1, "a whole number ≥ 1"),
      topK: num(v, "top-k", d.topK, (x) => Number.isInteger(x) && x >= 0, "a whole number ≥ 0"),
      topP: num(v, "top-p", d.topP, (x) => x > 0 && x <= 1, "a number in (0, 1]"),
      seed: num(v, "seed", d.seed, Number.isInteger, "a whole number"),
      chatTemplateKwargs: templateKwargsFor(v, modelPath),
    };
    const prompts = readPromptsFile(promptsPath);
    const be = selectBackend(str("backend"));
    const policy = loadModelForUse(modelPath, str("adapter"), defaultModelPath);
    const reference = loadModelForUse(refPath, null, defaultModelPath);
    const rows = sideBySide(be, policy, reference, prompts, opts);
    if (v.json) {
      for (const r of rows) process.stdout.write(JSON.stringify({ prompt: r.prompt, policy: r.policy, reference: r.reference }) + "\n");
      return;
    }
    const width = Math.min(200, Math.max(60, process.stdout.columns ?? 100));
    process.stdout.write(`policy: ${modelPath}   reference: ${refPath}   seed ${opts.seed}, temperature ${opts.temperature}\n\n`);
    process.stdout.write(formatSideBySide(rows, width));
  },
};
