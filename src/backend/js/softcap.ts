// Soft-capping (Gemma 2): a score or logit s becomes softcap · tanh(s / softcap), smooth and bounded by ±softcap.
// Shared by the js attention and LM-head kernels (kernels.ts, fast.ts); the native ones implement the same formula.

/** softcap · tanh(s / softcap), or s itself when softcap is 0 (no cap). */
export function softcapped(s: number, softcap: number): number {
  return softcap > 0 ? softcap * Math.tanh(s / softcap) : s;
}
