// Sequence log-probabilities of preference pairs: one forward over a packed batch (src/data/pack.ts: by default
// each pair's prompt once, shared by its two answers), then sums over the completion grid. Used by
// `tsdpo logprobs`, the reference pass, evaluation and training.

import type { Backend } from "../backend/contract.js";
import { type PackedPairs, packPairs, packedShape, toGrid } from "../data/pack.js";
import type { TokenizedPair } from "../data/types.js";
import { type Activations, type Model, createActivations, forwardPacked } from "../model/decoder.js";

/** Per-token results of one packed forward, laid out on the completion grid (2B, Tc). */
export interface GridLogps {
  logp: Float64Array; // log p of each answer token
  logitSum: Float64Array; // Σ_v logits at the position predicting it
  logSumSq: Float64Array | null; // log Σ_v p² there (WPO), when asked for
}

/** The model forward over a packed batch; per-token results on the completion grid. */
export function forwardPairs(be: Backend, model: Model, acts: Activations, pk: PackedPairs, wantLogSumSq = false): GridLogps {
  acts.wantLogSumSq = wantLogSumSq;
  const logp = forwardPacked(be, model, acts, pk);
  acts.wantLogSumSq = false;
  const n = 2 * pk.B * pk.Tc;
  const out: GridLogps = { logp: new Float64Array(n), logitSum: new Float64Array(n), logSumSq: wantLogSumSq ? new Float64Array(n) : null };
  toGrid(out.logp, logp, pk);
  toGrid(out.logitSum, acts.logitSum, pk);
  if (out.logSumSq) toGrid(out.logSumSq, acts.logSumSq, pk);
  return out;
}

/** Σ_t logp and Σ_t (Σ_v logits)/V per sequence (row of the grid). Outputs are (2B). */
export function rowSums(g: GridLogps, pk: PackedPairs, V: number, logps: Float64Array, logitMeanSums: Float64Array): void {
  const Tc = pk.Tc;
  for (let s = 0; s < 2 * pk.B; s++) {
    let lp = 0, ls = 0;
    for (let k = 0; k < Tc; k++) {
      if (!pk.mask[s * Tc + k]) continue;
      lp += g.logp[s * Tc + k]!;
      ls += g.logitSum[s * Tc + k]!;
    }
    logps[s] = lp;
    logitMeanSums[s] = ls / V;
  }
}

export interface PairLogpsRow {
  index: number; // the row's 0-based index in its source file
  chosen_logps: number;
  rejected_logps: number;
  chosen_tokens: number;
  rejected_tokens: number;
}

/** Activations big enough for any `batchSize` consecutive pairs of `pairs` in the given layout. */
/**
 * Activations for batches of `batchSize` pairs. `checkpointing`: gradient checkpointing for a training forward, or
 * (forward-only uses, which never run a backward) the same single set of layer activations.
 */
export function activationsForPairs(
  model: Model, pairs: readonly TokenizedPair[], batchSize: number, shared: boolean, checkpointing = false,
): Activations {
  const B = Math.max(1, Math.min(batchSize, pairs.length));
  const { T } = packedShape(pairs, shared);
  return createActivations(model, shared ? B : 2 * B, T, checkpointing);
}

/**
 * Runs the model over `pairs`, `batchSize` pairs per forward, with activations sized once; `use` gets each packed
 * batch, its per-token results on the completion grid, and the index of its first pair.
 */
export function forEachPairBatch(
  be: Backend, model: Model, pairs: readonly TokenizedPair[], batchSize: number,
  use: (pk: PackedPairs, g: GridLogps, start: number) => void, shared = true,
): void {
  if (pairs.length === 0) return;
  const B = Math.min(batchSize, pairs.length);
  const acts = activationsForPairs(model, pairs, B, shared, true); // forward only: one set of layer activations
  for (let s = 0; s < pairs.length; s += B) {
    const pk = packPairs(pairs.slice(s, s + B), shared);
    use(pk, forwardPairs(be, model, acts, pk), s);
  }
}

/** Log-probs of every pair, `batchSize` pairs per forward. */
export function pairLogps(
  be: Backend, model: Model, pairs: readonly TokenizedPair[], batchSize = 4, shared = true, onProgress?: (pairsDone: number) => void,
): PairLogpsRow[] {
  const rows: PairLogpsRow[] = [];
  const logps = new Float64Array(2 * batchSize);
  const logitMeans = new Float64Array(2 * batchSize);
  forEachPairBatch(be, model, pairs, batchSize, (pk, g, s) => {
    rowSums(g, pk, model.cfg.V, logps, logitMeans);
    const b = pk.B;
    for (let i = 0; i < b; i++)
      rows.push({
        index: pairs[s + i]!.source.index,
        chosen_logps: logps[i]!,
        rejected_logps: logps[b + i]!,
        chosen_tokens: pk.completionLengths[i]!,
        rejected_tokens: pk.completionLengths[b + i]!,
      });
    onProgress?.(rows.length);
  }, shared);
  return rows;
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
