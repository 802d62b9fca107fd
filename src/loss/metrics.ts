// TRL's logged metrics for a preference step, names kept character for character (they came from
// eric-mitchell/direct-preference-optimization and every DPO dashboard expects them).

import type { LossOutput } from "./losses.js";

/**
 * Batch means of the per-sequence logits (mean over the vocabulary, then over completion tokens), which only
 * the trainer can compute. TRL logs them as logits/chosen and logits/rejected.
 */
export interface LogitMeans {
  /** null: the batch has no such completion (an unpaired batch without desirable or without undesirable rows). */
  chosen: number | null;
  rejected: number | null;
}

/**
 * Σ values / Σ weights over the chosen and over the rejected completions of a batch of 2B rows (chosen rows 0..B−1,
 * rejected rows B..2B−1), or, for unpaired rows (labels given), over the desirable and over the undesirable rows
 * among 0..B−1 (rows B.. then hold the mismatched completions, which no metric counts). null for an empty group.
 * The trainer's logits/* (values: per-row sums of mean logits, weights: tokens) and lengths/* (values: tokens,
 * weights: 1) come from here.
 */
export function groupMeans(values: ArrayLike<number>, weights: ArrayLike<number>, labels: Uint8Array | null): LogitMeans {
  const B = values.length / 2;
  let vc = 0, wc = 0, vr = 0, wr = 0;
  for (let r = 0; r < 2 * B; r++) {
    const chosen = labels ? r < B && labels[r] === 1 : r < B;
    const rejected = labels ? r < B && labels[r] === 0 : r >= B;
    if (chosen) (vc += values[r]!), (wc += weights[r]!);
    if (rejected) (vr += values[r]!), (wr += weights[r]!);
  }
  return { chosen: wc > 0 ? vc / wc : null, rejected: wr > 0 ? vr / wr : null };
}

/**
 * The metrics of one micro-batch (for unpaired losses see unpairedMetrics): rewards/chosen, rewards/rejected, rewards/accuracies (share of pairs with
 * chosen reward strictly greater than rejected, as TRL's `>`; a tie counts as wrong), rewards/margins,
 * logps/chosen, logps/rejected, logits/chosen and logits/rejected (only when `logits` is given — never made
 * up), loss, then the loss's own extras (nll_loss, log_odds_ratio, log_odds_chosen). Averaging over gradient
 * accumulation steps is the trainer's job.
 */
export function lossMetrics(out: LossOutput, logits: LogitMeans | null = null): Record<string, number> {
  if (out.unpaired) return unpairedMetrics(out, out.unpaired.labels, out.unpaired.kl, logits);
  const B = out.losses.length;
  let rc = 0;
  let rr = 0;
  let acc = 0;
  let lc = 0;
  let lr = 0;
  for (let i = 0; i < B; i++) {
    rc += out.chosenRewards[i]!;
    rr += out.rejectedRewards[i]!;
    if (out.chosenRewards[i]! > out.rejectedRewards[i]!) acc++;
    lc += out.chosenLogps[i]!;
    lr += out.rejectedLogps[i]!;
  }
  const m: Record<string, number> = {
    "rewards/chosen": rc / B,
    "rewards/rejected": rr / B,
    "rewards/accuracies": acc / B,
    "rewards/margins": (rc - rr) / B,
    "logps/chosen": lc / B,
    "logps/rejected": lr / B,
  };
  if (logits?.chosen != null) m["logits/chosen"] = logits.chosen;
  if (logits?.rejected != null) m["logits/rejected"] = logits.rejected;
  m["loss"] = out.loss;
  for (const [k, v] of Object.entries(out.extraMetrics)) m[k] = v;
  return m;
}

/**
 * TRL KTOTrainer's metrics: kl (the reference point z0 the batch used), rewards/chosen and logps/chosen averaged over
 * the desirable rows, rewards/rejected and logps/rejected over the undesirable ones, rewards/margins when the batch
 * has both, logits/* as given, loss. A group the batch lacks is left out, not logged as 0 (TRL does the same), so
 * averages over micro-batches must count each metric's own batches.
 */
function unpairedMetrics(out: LossOutput, labels: Uint8Array, kl: number, logits: LogitMeans | null): Record<string, number> {
  let rc = 0, rr = 0, lc = 0, lr = 0, nc = 0, nr = 0;
  for (let i = 0; i < labels.length; i++) {
    if (labels[i]) (rc += out.chosenRewards[i]!), (lc += out.chosenLogps[i]!), nc++;
    else (rr += out.chosenRewards[i]!), (lr += out.chosenLogps[i]!), nr++;
  }
  const m: Record<string, number> = { kl };
  if (nc > 0) (m["rewards/chosen"] = rc / nc), (m["logps/chosen"] = lc / nc);
  if (nr > 0) (m["rewards/rejected"] = rr / nr), (m["logps/rejected"] = lr / nr);
  if (nc > 0 && nr > 0) m["rewards/margins"] = rc / nc - rr / nr;
  if (logits?.chosen != null) m["logits/chosen"] = logits.chosen;
  if (logits?.rejected != null) m["logits/rejected"] = logits.rejected;
  m["loss"] = out.loss;
  return m;
}
