// Samples for a plain run's report: a few prompts from the run's eval data (else its training data), each continued
// once by the tuned policy (final/) and once by the reference, with the same seed, so the report shows what the
// training changed. Written to samples.json in the run folder, which later reports reuse. Done only when it is
// cheap: the model must be small (its weights at most `maxWeightBytes` on disk), since the js backend generates
// one token at a time.

import { existsSync, readdirSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { selectBackend } from "../backend/select.js";
import { type LoadOptions, loadPreferences, splitPreferences } from "../data/load.js";
import { pairEncoder } from "../data/tokenize.js";
import type { PreferencePair } from "../data/types.js";
import { writeFileAtomic } from "../io/atomic.js";
import { loadModel } from "../io/load.js";
import { loadModelForUse } from "../io/resolve.js";
import { configError } from "../errors.js";
import { defaultDataPath, defaultModelPath } from "../paths.js";
import { Rng } from "../rng.js";
import { sampleCompletion } from "../demo/sample.js";
import { checkTemplateKwargs } from "../tokenizer/chat.js";
import type { Tokenizer } from "../tokenizer/types.js";
import type { SamplesDoc } from "./report.js";

export interface RunSampleOptions {
  prompts: number;
  maxNewTokens: number;
  seed: number;
  /** Above this many bytes of weights, sampling is skipped (≈ 20M float32 parameters). */
  maxWeightBytes: number;
}

export const defaultRunSampleOptions: RunSampleOptions = { prompts: 3, maxNewTokens: 48, seed: 0, maxWeightBytes: 80e6 };

/**
 * How training read its data, from the run's saved config (`where` names it in messages): the field mapping, and the
 * extra chat-template variables, so that a conversational prompt is sampled as training rendered it. Malformed rows
 * are skipped: the report only needs a few prompts.
 */
export function runLoadOptions(config: Record<string, unknown>, tok: Tokenizer, where: string): LoadOptions {
  const str = (k: string): string | undefined => (typeof config[k] === "string" ? (config[k] as string) : undefined);
  const kwargs = config.chat_template_kwargs;
  return {
    // null (infer the prompt on purpose) must stay null, as training read it
    promptField: config.prompt_field === null ? null : str("prompt_field"), chosenField: str("chosen_field"), rejectedField: str("rejected_field"),
    skipInvalid: true, tokenizer: tok,
    ...(kwargs != null ? { chatTemplateKwargs: checkTemplateKwargs(kwargs, (reason) => configError(`${where}: "chat_template_kwargs" ${reason}`)) } : {}),
  };
}

/** Bytes of a model's weights on disk: a GGUF file, or the safetensors files of a folder. */
function weightBytes(path: string): number {
  if (!statSync(path).isDirectory()) return statSync(path).size;
  return readdirSync(path).filter((f) => f.endsWith(".safetensors") && f !== "optimizer.safetensors").reduce((a, f) => a + statSync(join(path, f)).size, 0);
}

/**
 * samples.json for a run folder that has final weights and none yet. Returns the document, or a note saying why
 * there is none (the report prints it).
 */
export async function ensureRunSamples(runDir: string, config: Record<string, unknown> | null, o: RunSampleOptions = defaultRunSampleOptions): Promise<SamplesDoc | { note: string }> {
  const finalDir = join(runDir, "final");
  if (!existsSync(finalDir)) return { note: "No samples yet: the run has no final weights (final/) so far." };
  if (!config) return { note: "No samples: the run folder has no config.json naming its model and data." };
  const refPath = resolve(typeof config.ref_model === "string" ? config.ref_model : typeof config.model === "string" ? config.model : defaultModelPath);
  const bytes = weightBytes(refPath);
  if (bytes > o.maxWeightBytes)
    return { note: `No samples: the model's weights are ${(bytes / 1e6).toFixed(0)} MB, too large to sample cheaply while writing the report; compare the models with \`tsdpo sample --model ${runDir} --reference ${refPath} --prompts <file>\`.` };

  // final/ is a Hugging Face folder, or for LoRA runs an adapter folder on top of the starting model.
  const policy = loadModelForUse(finalDir, null, typeof config.model === "string" ? resolve(config.model) : defaultModelPath);
  const ref = loadModel(refPath);
  const tok = ref.tokenizer;

  // Prompts: the eval data as train() saw it, else the training data.
  const str = (k: string): string | undefined => (typeof config[k] === "string" ? (config[k] as string) : undefined);
  const loadOpts = runLoadOptions(config, tok, join(runDir, "config.json"));
  const dataPath = resolve(str("data") ?? defaultDataPath);
  let pairs: PreferencePair[];
  let source: string;
  const evalData = str("eval_data");
  const evalSize = typeof config.eval_size === "number" ? config.eval_size : 0;
  const seed = typeof config.seed === "number" ? config.seed : 42;
  if (evalData) {
    pairs = (await loadPreferences(resolve(evalData), loadOpts)).pairs;
    source = `prompts from the eval data ${evalData}`;
  } else {
    const file = await loadPreferences(dataPath, loadOpts);
    if (evalSize > 0) {
      const split = evalSize < 1 ? { kind: "fraction" as const, fraction: evalSize, seed } : { kind: "count" as const, count: evalSize, seed };
      pairs = (await splitPreferences(file, split, loadOpts)).eval;
      source = `prompts held out of ${dataPath}`;
    } else {
      pairs = file.pairs;
      source = `prompts from the training data ${dataPath} (the run held none out)`;
    }
  }
  const prompts = [...new Set(pairs.map((p) => p.prompt))].slice(0, o.prompts);
  if (prompts.length === 0) return { note: `No samples: no usable prompt in ${evalData ?? dataPath}.` };

  const be = selectBackend(typeof config.backend === "string" ? config.backend : "auto");
  const enc = pairEncoder(tok);
  const room = Math.max(1, ref.model.cfg.maxSeqLen - o.maxNewTokens);
  const rows = prompts.map((prompt, i) => {
    let { ids, bos } = enc.prompt(prompt);
    // Keep the end of a long prompt (the part the answer follows), and BOS in front, as training truncates.
    if (ids.length > room) ids = bos ? [ids[0]!, ...ids.slice(ids.length - room + 1)] : ids.slice(ids.length - room);
    const gen = (m: typeof ref): string => sampleCompletion(be, m.model, tok, ids, o.maxNewTokens, new Rng(o.seed + i)).text;
    return { prompt, reference: gen(ref), policy: gen(policy) };
  });
  const doc: SamplesDoc = { source, reward: null, temperature: 1, max_new_tokens: o.maxNewTokens, rows };
  writeFileAtomic(join(runDir, "samples.json"), JSON.stringify(doc, null, 1) + "\n");
  return doc;
}
