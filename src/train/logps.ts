// Sequence log-probabilities of preference pairs: one concatenated forward over the 2B rows of a batch (chosen
// rows first), then masked sums per row. Used by `tsdpo logprobs`, the reference pass and evaluation.

import type { Backend, Buf } from "../backend/contract.js";
import { type PreferenceBatch, allocBatch, fillBatch, longestSequence } from "../data/batch.js";
import type { TokenizedPair } from "../data/types.js";
import { type Activations, type Model, createActivations, forward } from "../model/llama.js";

/** Σ_t mask·logp and Σ_t mask·(Σ_v logits)/V per row of the last forward. Outputs are (2B). */
export function rowSums(acts: Activations, batch: PreferenceBatch, V: number, logps: Float64Array, logitMeanSums: Float64Array): void {
  const { T } = batch;
  const R = 2 * batch.B;
  for (let r = 0; r < R; r++) {
    let s = 0;
    let l = 0;
    for (let t = 0; t < T; t++) {
      const m = batch.mask[r * T + t]!;
      if (m === 0) continue;
      s += m * acts.logp[r * T + t]!;
      l += m * acts.logitSum[r * T + t]!;
    }
    logps[r] = s;
    logitMeanSums[r] = l / V;
  }
}

export interface PairLogpsRow {
  index: number; // the row's 0-based index in its source file
  chosen_logps: number;
  rejected_logps: number;
  chosen_tokens: number;
  rejected_tokens: number;
}

/**
 * Runs the model over `pairs`, `batchSize` pairs per forward, with activations sized once; `use` gets each batch,
 * its per-token log-probs (2b, T) and the index of its first pair.
 */
export function forEachPairBatch(
  be: Backend, model: Model, pairs: readonly TokenizedPair[], batchSize: number,
  use: (batch: PreferenceBatch, logp: Buf, acts: Activations, start: number) => void,
): void {
  if (pairs.length === 0) return;
  const B = Math.min(batchSize, pairs.length);
  const acts = createActivations(model, 2 * B, longestSequence(pairs));
  for (let s = 0; s < pairs.length; s += B) {
    const chunk = pairs.slice(s, s + B);
    const batch = allocBatch(chunk.length, longestSequence(chunk));
    fillBatch(batch, chunk, 0);
    use(batch, forwardBatch(be, model, acts, batch), acts, s);
  }
}

/** Log-probs of every pair, `batchSize` pairs per forward. */
export function pairLogps(be: Backend, model: Model, pairs: readonly TokenizedPair[], batchSize = 4): PairLogpsRow[] {
  const rows: PairLogpsRow[] = [];
  const logps = new Float64Array(2 * batchSize);
  const logitMeans = new Float64Array(2 * batchSize);
  forEachPairBatch(be, model, pairs, batchSize, (batch, _logp, acts, s) => {
    rowSums(acts, batch, model.cfg.V, logps, logitMeans);
    const b = batch.B;
    for (let i = 0; i < b; i++)
      rows.push({
        index: pairs[s + i]!.source.index,
        chosen_logps: logps[i]!,
        rejected_logps: logps[b + i]!,
        chosen_tokens: batch.completionLengths[i]!,
        rejected_tokens: batch.completionLengths[b + i]!,
      });
  });
  return rows;
}

/** The model forward over a preference batch's 2B rows; returns per-token log-probs (2B, T). */
export function forwardBatch(be: Backend, model: Model, acts: Activations, batch: PreferenceBatch): Buf {
  return forward(be, model, acts, batch.ids, batch.targets, 2 * batch.B, batch.T);
}

/** Implicit-reward preference accuracy of a policy against a reference, from their per-pair log-probs. */
export function preferenceAccuracy(policy: readonly PairLogpsRow[], ref: readonly PairLogpsRow[], beta: number): {
  n: number; accuracy: number; meanMargin: number; chosen: number; rejected: number;
} {
  let correct = 0, margin = 0, chosen = 0, rejected = 0;
  for (let i = 0; i < policy.length; i++) {
    const rc = beta * (policy[i]!.chosen_logps - ref[i]!.chosen_logps);
    const rr = beta * (policy[i]!.rejected_logps - ref[i]!.rejected_logps);
    if (rc > rr) correct++;
    margin += rc - rr;
    chosen += rc;
    rejected += rr;
  }
  const n = policy.length;
  return { n, accuracy: correct / n, meanMargin: margin / n, chosen: chosen / n, rejected: rejected / n };
}
