// TRL's logged metrics for a preference step, names kept character for character (they came from
// eric-mitchell/direct-preference-optimization and every DPO dashboard expects them).

import type { LossOutput } from "./losses.js";

/**
 * Batch means of the per-sequence logits (mean over the vocabulary, then over completion tokens), which only
 * the trainer can compute. TRL logs them as logits/chosen and logits/rejected.
 */
export interface LogitMeans {
  chosen: number;
  rejected: number;
}

/**
 * The metrics of one micro-batch: rewards/chosen, rewards/rejected, rewards/accuracies (share of pairs with
 * chosen reward strictly greater than rejected, as TRL's `>`; a tie counts as wrong), rewards/margins,
 * logps/chosen, logps/rejected, logits/chosen and logits/rejected (only when `logits` is given — never made
 * up), loss, then the loss's own extras (nll_loss, log_odds_ratio, log_odds_chosen). Averaging over gradient
 * accumulation steps is the trainer's job.
 */
export function lossMetrics(out: LossOutput, logits: LogitMeans | null = null): Record<string, number> {
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
  if (logits) {
    m["logits/chosen"] = logits.chosen;
    m["logits/rejected"] = logits.rejected;
  }
  m["loss"] = out.loss;
  for (const [k, v] of Object.entries(out.extraMetrics)) m[k] = v;
  return m;
}
