// Sampling completions and scoring them under a model: what the demo needs to label data and to measure a policy.
//
// Samples are drawn at temperature 1 with no top-k/top-p, i.e. exactly from π, because the KL estimate below is
// an average over y ~ π and is unbiased only then.
//
// Sequence-level KL(π‖π_ref) for one prompt x is E_{y~π}[log π(y|x) − log π_ref(y|x)]; averaged over prompts and
// estimated by the sample mean of the per-sample log-ratio. y is a whole completion as generated: up to and
// including EOS when the model stopped, else its first maxNewTokens tokens (the KL is then that of the
// distributions over such prefixes, which is what the rewards are measured on). Both log-probabilities come from
// the training forward pass with a completion mask, the same computation DPO's loss uses.

import type { Backend } from "../backend/contract.js";
import { type Model, createActivations, forwardPacked } from "../model/decoder.js";
import { Rng } from "../rng.js";
import { generate } from "../sample/generate.js";
import type { Tokenizer } from "../tokenizer/types.js";

export interface Completion {
  /** Generated token ids (EOS included when the model stopped). */
  ids: number[];
  /** Their text as it continues the prompt (leading space kept; special tokens dropped). */
  text: string;
  stop: "eos" | "length" | "context";
}

/** BOS (when the model uses one) and the prompt's tokens. */
export function encodePrompt(tok: Tokenizer, prompt: string): number[] {
  return [...(tok.addBos && tok.bosId !== null ? [tok.bosId] : []), ...tok.encode(prompt)];
}

export function stopIdsOf(tok: Tokenizer): number[] {
  return [...(tok.eosId !== null ? [tok.eosId] : []), ...tok.stopIds];
}

/**
 * The text of `ids` as a continuation of `promptIds`. Decoding the new ids alone would lose the space that a
 * SentencePiece token carries at the start of a word (decoders strip it at the start of a text), so the text is
 * the decoded whole minus the decoded prompt.
 */
export function continuationText(tok: Tokenizer, promptIds: readonly number[], ids: readonly number[]): string {
  const body = promptIds.filter((id) => id !== tok.bosId);
  const head = tok.decode(body);
  const whole = tok.decode([...body, ...ids]);
  return whole.startsWith(head) ? whole.slice(head.length) : tok.decode(ids);
}

/** One completion sampled from `model` (temperature 1, full vocabulary), drawing from `rng`. */
export function sampleCompletion(be: Backend, model: Model, tok: Tokenizer, promptIds: readonly number[], maxNewTokens: number, rng: Rng): Completion {
  const g = generate(be, model, promptIds, stopIdsOf(tok), { maxNewTokens, temperature: 1, topK: 0, topP: 1, seed: 0 }, rng);
  return { ids: g.ids, text: continuationText(tok, promptIds, g.ids), stop: g.stop };
}

export interface ScoredRow {
  promptIds: readonly number[];
  completionIds: readonly number[];
}

/**
 * Σ_t log p(y_t | x, y_<t) over each row's completion tokens, `batchRows` rows per forward. Rows are packed as
 * prompt ++ completion, right-padded, and only the positions that predict a completion token reach the LM head.
 */
export function completionLogps(be: Backend, model: Model, rows: readonly ScoredRow[], batchRows = 16): Float64Array {
  const out = new Float64Array(rows.length);
  if (rows.length === 0) return out;
  const R = Math.min(batchRows, rows.length);
  const maxT = Math.max(...rows.map((r) => r.promptIds.length + r.completionIds.length));
  const acts = createActivations(model, R, maxT);
  for (let s = 0; s < rows.length; s += R) {
    const chunk = rows.slice(s, s + R);
    const T = Math.max(...chunk.map((r) => r.promptIds.length + r.completionIds.length));
    const ids = new Int32Array(chunk.length * T);
    const pos = Int32Array.from({ length: chunk.length * T }, (_, n) => n % T);
    const wanted: number[] = [], targets: number[] = [], owner: number[] = [];
    chunk.forEach((row, r) => {
      const P = row.promptIds.length;
      if (P < 1) throw new Error("internal: completionLogps needs at least one prompt token");
      ids.set(row.promptIds, r * T);
      ids.set(row.completionIds, r * T + P);
      row.completionIds.forEach((id, k) => {
        wanted.push(r * T + P - 1 + k); // the position before token k predicts it
        targets.push(id);
        owner.push(r);
      });
    });
    const logp = forwardPacked(be, model, acts, {
      ids, pos, branch: null, rows: Int32Array.from(wanted), targets: Int32Array.from(targets), R: chunk.length, T, M: wanted.length,
    });
    for (let m = 0; m < owner.length; m++) out[s + owner[m]!] += logp[m]!;
  }
  return out;
}

/** Mean and standard error of the mean. */
export function meanSe(xs: readonly number[]): { mean: number; se: number } {
  const n = xs.length;
  if (n === 0) return { mean: NaN, se: NaN };
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  if (n === 1) return { mean, se: 0 };
  const v = xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1);
  return { mean, se: Math.sqrt(v / n) };
}

