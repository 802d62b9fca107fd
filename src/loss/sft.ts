// Supervised fine-tuning's loss, as TRL's SFTTrainer gets it from Hugging Face's causal-LM cross-entropy with
// num_items_in_batch: the negative log-likelihood of the trained tokens, summed over a micro-batch and divided by the
// number of trained tokens in the whole optimizer step, so that a step minimises the mean over all its tokens however
// they are split into micro-batches (and a long sequence weighs more than a short one, as in TRL).

/**
 * One micro-batch of an optimizer step whose micro-batches hold `stepTokens` trained tokens in all:
 *   loss  = −Σ_m logp[m] / M           this micro-batch's own mean NLL per token, what its metrics report
 *   dlogp = −1 / stepTokens            d (step loss) / d logp[m], the same for every token
 * with step loss = −Σ_{all micro-batches} Σ_m logp[m] / stepTokens. Evaluation passes its own M as stepTokens.
 */
export function nllLoss(logp: ArrayLike<number> /* (M) */, stepTokens: number): { loss: number; dlogp: number } {
  const M = logp.length;
  if (M === 0 || !(stepTokens >= M)) throw new Error(`nllLoss: ${M} tokens in a micro-batch of a step with ${stepTokens}`);
  let s = 0;
  for (let m = 0; m < M; m++) s += logp[m]!;
  return { loss: -s / M, dlogp: -1 / stepTokens };
}
