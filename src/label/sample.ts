// The items a person labels: k completions per prompt, sampled from their own model (and, with --reference, from a
// second one), or the two answers of each pair of an existing preference file (--pairs).
//
// Seeds: completion j of prompt i draws from an RNG seeded with sampleSeed(seed, i, j) (src/sample/sideBySide.ts),
// so the same command samples the same items. An empty completion (EOS at once) cannot go into a preference file,
// so it is drawn again from stream j + 10a (a = 1..7; k is at most 9). The order the page shows an item's
// completions in comes from stream ORDER_STREAM. The items are saved before the page opens, and a restart reads
// them back instead of sampling again.

import type { Backend } from "../backend/contract.js";
import { configError, inputError } from "../errors.js";
import { pairEncoder } from "../data/tokenize.js";
import { type PreferencePair, where } from "../data/types.js";
import { continuationText, stopIdsOf } from "../demo/sample.js";
import { Rng } from "../rng.js";
import { type Generation, generateBatch } from "../sample/generate.js";
import { type SamplePrompt, type SamplingModel, promptText, sampleSeed } from "../sample/sideBySide.js";
import type { ChatTemplateKwargs } from "../tokenizer/chat.js";
import type { LabelCompletion, LabelItem } from "./types.js";

export interface LabelSampling {
  k: number;
  maxNewTokens: number;
  temperature: number;
  seed: number;
  chatTemplateKwargs: ChatTemplateKwargs | null;
}

/** The keys 1–9 choose, so an item has at most 9 completions. */
export const MAX_K = 9;
const RETRIES = 7;
const ORDER_STREAM = 0x4f524452; // "ORDR": far from the completion streams j + 10a < 80
/** Requests decoded together (generateBatch's rows). */
const BATCH = 16;

/** The order the page shows item i's k answers in: position p shows completion order[p]. */
export function displayOrder(seed: number, i: number, k: number): number[] {
  return new Rng(sampleSeed(seed, i, ORDER_STREAM)).shuffle(Array.from({ length: k }, (_, j) => j));
}

interface Job {
  item: number; // 0-based
  j: number;
  attempt: number;
  model: SamplingModel;
  promptIds: number[];
}

/**
 * k completions of each prompt: all from `policy`, or with `reference` alternately from each (j even: policy, odd:
 * reference), so that the page compares the two models blind. `progress(done)` is called after each batch.
 */
export function sampleLabelItems(
  be: Backend,
  policy: SamplingModel,
  reference: SamplingModel | null,
  prompts: readonly SamplePrompt[],
  s: LabelSampling,
  progress: (done: number) => void,
): LabelItem[] {
  if (!Number.isInteger(s.k) || s.k < 2 || s.k > MAX_K) throw configError(`--k ${s.k}: expected a whole number from 2 to ${MAX_K} (the keys 1–${MAX_K} choose)`);
  const models = (j: number): [SamplingModel, string] => (reference && j % 2 === 1 ? [reference, "reference"] : [policy, "policy"]);
  const encoded = new Map<SamplingModel, number[][]>();
  for (const m of new Set([policy, reference ?? policy])) {
    encoded.set(m, prompts.map((p) => {
      const { ids } = pairEncoder(m.tokenizer).prompt(promptText(m.tokenizer, p, s.chatTemplateKwargs));
      if (ids.length === 0) throw inputError(`${p.source}: the prompt is empty and the model has no BOS token to start from`);
      if (ids.length >= m.model.cfg.maxSeqLen)
        throw inputError(`${p.source}: the prompt is ${ids.length} tokens but the model's context is ${m.model.cfg.maxSeqLen}; shorten it`);
      return ids;
    }));
  }
  const out: LabelCompletion[][] = prompts.map(() => new Array<LabelCompletion>(s.k));
  let done = 0;
  let jobs: Job[] = prompts.flatMap((_, item) =>
    Array.from({ length: s.k }, (_, j) => ({ item, j, attempt: 0, model: models(j)[0], promptIds: encoded.get(models(j)[0])![item]! })),
  );
  while (jobs.length > 0) {
    const again: Job[] = [];
    for (const m of new Set(jobs.map((job) => job.model))) {
      const mine = jobs.filter((job) => job.model === m);
      for (let b = 0; b < mine.length; b += BATCH) {
        const batch = mine.slice(b, b + BATCH);
        const requests = batch.map((job) => ({ promptIds: job.promptIds, rng: new Rng(sampleSeed(s.seed, job.item, job.j + 10 * job.attempt)) }));
        const opts = { maxNewTokens: s.maxNewTokens, temperature: s.temperature, topK: 0, topP: 1 };
        generateBatch(be, m.model, requests, stopIdsOf(m.tokenizer), opts, BATCH, (r: number, g: Generation) => {
          const job = batch[r]!;
          const text = continuationText(m.tokenizer, job.promptIds, g.ids);
          if (text === "" && job.attempt < RETRIES) return void again.push({ ...job, attempt: job.attempt + 1 });
          out[job.item]![job.j] = { text, from: models(job.j)[1], stop: g.stop };
          done++;
        });
        progress(done);
      }
    }
    jobs = again;
  }
  return prompts.map((p, i) => ({ item: i + 1, prompt: p.prompt, source: p.source, completions: out[i]!, order: displayOrder(s.seed, i, s.k) }));
}

/** The pairs of a preference file as items to review: chosen first, rejected second, shown in a random order. */
export function pairItems(pairs: readonly PreferencePair[], seed: number): LabelItem[] {
  return pairs.map((p, i) => ({
    item: i + 1,
    prompt: p.prompt,
    source: where(p.source),
    completions: [{ text: p.chosen, from: "chosen" }, { text: p.rejected, from: "rejected" }],
    order: displayOrder(seed, i, 2),
  }));
}
