// Scalar helpers for the loss family, written so they stay finite for the large |x| that summed sequence
// log-probs produce (a 500-token completion easily has log p ≈ -1500).

/** σ(x) = 1 / (1 + e^-x), without overflowing e^-x for very negative x. */
export function sigmoid(x: number): number {
  if (x >= 0) return 1 / (1 + Math.exp(-x));
  const e = Math.exp(x);
  return e / (1 + e);
}

/** log σ(x) = -softplus(-x); d/dx log σ(x) = σ(-x). */
export function logSigmoid(x: number): number {
  return x >= 0 ? -Math.log1p(Math.exp(-x)) : x - Math.log1p(Math.exp(x));
}

/**
 * log(1 - e^a) for a < 0 (the log of "not this sequence" when a is a per-token-average log-prob).
 * Two branches as in Mächler, "Accurately computing log(1 - exp(-|a|))" (2012): expm1 near 0, log1p far away.
 */
export function log1mexp(a: number): number {
  return a > -Math.LN2 ? Math.log(-Math.expm1(a)) : Math.log1p(-Math.exp(a));
}
