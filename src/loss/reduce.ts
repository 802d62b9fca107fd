// From per-token log-probs to the per-sequence numbers the losses take, and back.
//
// Layout: the concatenated batch has 2B rows, chosen rows 0..B-1 then rejected rows B..2B-1 (row B+i is the
// rejected completion of pair i), as TRL concatenates them. `perTokenLogps[r*T + t]` is log π(token t of row r),
// already shifted so it lines up with `mask`; `mask[r*T + t]` is 1 for completion tokens and 0 for prompt and
// padding. These kernels never read anything else.

type Num = ArrayLike<number>;
type FloatArray = Float32Array | Float64Array;

/**
 * Per-row completion log-prob sums, optionally with LD-DPO's length desensitisation (Liu et al. 2024,
 * arXiv:2409.06411; TRL `ld_alpha`): within pair i the first ℓ_s = min(len(chosen_i), len(rejected_i)) completion
 * tokens (the "public" length both answers share) count fully and the tokens beyond it count ld_alpha times:
 *   logps[r] = Σ_{t ≤ ℓ_s} log p_t + ld_alpha · Σ_{t > ℓ_s} log p_t
 * With ldAlpha = null (or 1) this is the plain sum Σ_t mask·log p_t. The same reduction must be applied to the
 * reference log-probs, as TRL does.
 */
export function reduceLogps(
  outLogps: Float64Array, // (2B) weighted sum of completion log-probs per row
  outLengths: Int32Array, // (2B) completion tokens per row
  perTokenLogps: Num, // (2B, T)
  mask: Num, // (2B, T)
  B: number,
  T: number,
  ldAlpha: number | null,
): void {
  checkShapes(outLogps.length, outLengths.length, perTokenLogps.length, mask.length, B, T);
  for (let r = 0; r < 2 * B; r++) {
    let n = 0;
    for (let t = 0; t < T; t++) if (mask[r * T + t]) n++;
    outLengths[r] = n;
  }
  for (let r = 0; r < 2 * B; r++) {
    const i = r % B;
    const shared = ldAlpha === null ? Infinity : Math.min(outLengths[i]!, outLengths[B + i]!);
    const tail = ldAlpha ?? 1;
    let sumShared = 0;
    let sumTail = 0;
    let pos = 0;
    for (let t = 0; t < T; t++) {
      if (!mask[r * T + t]) continue;
      pos++;
      if (pos <= shared) sumShared += perTokenLogps[r * T + t]!;
      else sumTail += perTokenLogps[r * T + t]!;
    }
    outLogps[r] = sumShared + tail * sumTail;
  }
}

/**
 * Backward of reduceLogps: dPerTokenLogps[r, t] += dLogps[r] · (mask · LD weight of token t). Accumulates (+=)
 * so the trainer can add a second call, e.g. the plain-sum gradient of an NLL term when ld_alpha is set:
 *   reduceLogpsBackward(d, dChosen, dRejected, mask, lengths, B, T, cfg.ld_alpha)
 *   reduceLogpsBackward(d, dChosenPlain, null, mask, lengths, B, T, null)
 */
export function reduceLogpsBackward(
  dPerTokenLogps: FloatArray, // (2B, T) accumulated
  dChosenLogps: Num, // (B) d loss / d logps of chosen rows
  dRejectedLogps: Num | null, // (B) d loss / d logps of rejected rows, null = 0
  mask: Num, // (2B, T)
  lengths: Int32Array, // (2B) from reduceLogps
  B: number,
  T: number,
  ldAlpha: number | null,
): void {
  if (dPerTokenLogps.length !== 2 * B * T || mask.length !== 2 * B * T || lengths.length !== 2 * B)
    throw new Error(`reduceLogpsBackward: shapes do not match B=${B}, T=${T}`);
  if (dChosenLogps.length !== B || (dRejectedLogps !== null && dRejectedLogps.length !== B))
    throw new Error(`reduceLogpsBackward: sequence gradients must have B=${B} entries`);
  const tail = ldAlpha ?? 1;
  for (let r = 0; r < 2 * B; r++) {
    const i = r % B;
    const g = r < B ? dChosenLogps[i]! : dRejectedLogps === null ? 0 : dRejectedLogps[i]!;
    if (g === 0) continue;
    const shared = ldAlpha === null ? Infinity : Math.min(lengths[i]!, lengths[B + i]!);
    let pos = 0;
    for (let t = 0; t < T; t++) {
      if (!mask[r * T + t]) continue;
      pos++;
      dPerTokenLogps[r * T + t] += pos <= shared ? g : g * tail;
    }
  }
}

/**
 * log Σ_v p_v² for one position's logits, = logsumexp(2z) − 2·logsumexp(z). WPO (Zhou et al. 2024, Eq. 2, as TRL
 * ≥ 1.0 computes it) divides each token's probability by this "self-agreement" of the distribution, so a weight
 * of 1 means the token is as likely as a typical draw from the policy itself.
 */
export function logSumSquaredProbs(
  logits: Num, // (…, V) one row read from `offset`
  offset: number,
  V: number,
): number {
  let m = -Infinity;
  for (let v = 0; v < V; v++) m = Math.max(m, logits[offset + v]!);
  let s1 = 0;
  let s2 = 0;
  for (let v = 0; v < V; v++) {
    const e = Math.exp(logits[offset + v]! - m);
    s1 += e;
    s2 += e * e;
  }
  // logsumexp(2z) - 2 logsumexp(z) = (2m + log s2) - 2(m + log s1)
  return Math.log(s2) - 2 * Math.log(s1);
}

/**
 * Per-row WPO log-weights: logW[r] = (1/len_r) Σ_t mask · (log p_t − log Σ_v p_v²), with len clamped to ≥ 1 as
 * TRL does. The pair weight is exp(logW[i] + logW[B+i]) and is a constant in the gradient (TRL computes it
 * under no_grad). The two inputs are what the trainer has anyway: the per-token log-probs and, from the
 * logits, logSumSquaredProbs per position. Feed out[0..B) and out[B..2B) into PairBatch.wpo.
 */
export function wpoLogWeights(
  out: Float64Array, // (2B)
  perTokenLogps: Num, // (2B, T)
  perTokenLogSumSq: Num, // (2B, T) logSumSquaredProbs at each position
  mask: Num, // (2B, T)
  B: number,
  T: number,
): void {
  if (out.length !== 2 * B || perTokenLogps.length !== 2 * B * T || perTokenLogSumSq.length !== 2 * B * T || mask.length !== 2 * B * T)
    throw new Error(`wpoLogWeights: shapes do not match B=${B}, T=${T}`);
  for (let r = 0; r < 2 * B; r++) {
    let s = 0;
    let n = 0;
    for (let t = 0; t < T; t++) {
      if (!mask[r * T + t]) continue;
      s += perTokenLogps[r * T + t]! - perTokenLogSumSq[r * T + t]!;
      n++;
    }
    out[r] = s / Math.max(n, 1);
  }
}

function checkShapes(nLogps: number, nLengths: number, nTok: number, nMask: number, B: number, T: number): void {
  if (nLogps !== 2 * B || nLengths !== 2 * B || nTok !== 2 * B * T || nMask !== 2 * B * T)
    throw new Error(
      `reduceLogps: expected outputs of 2B=${2 * B} and inputs of 2B·T=${2 * B * T}, got ${nLogps}, ${nLengths}, ${nTok}, ${nMask}`,
    );
}
