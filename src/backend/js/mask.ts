// Which keys a query may see in causal attention over packed preference rows (see attentionForward in
// src/backend/contract.ts). Shared by every js attention kernel; the native kernels implement the same rule.

/**
 * The keys query i may see, as two index ranges [a0, a1) and [b0, b1) (b1 = i + 1), for a row whose branch is
 * [P, S] (S ≥ T: no branch). A query in the first part (i < S) is plain causal. A query in the rejected branch
 * (i ≥ S) sees the prompt 0..P−1 and its own branch S..i, never the chosen answer P..S−1; its position is
 * i − (S − P), which is what the sliding window measures distance in. Every kernel derives its mask from this.
 */
export function attentionVisible(i: number, P: number, S: number, window: number): [number, number, number, number] {
  if (i < S) return [window > 0 ? Math.max(0, i - window + 1) : 0, i + 1, i + 1, i + 1];
  const pos = i - (S - P);
  const a0 = window > 0 ? Math.max(0, pos - window + 1) : 0;
  return [Math.min(a0, P), P, window > 0 ? Math.max(S, i - window + 1) : S, i + 1];
}

/** [P, S] of row r; no branch reads as S = T. */
export function branchOf(branch: Int32Array | null, r: number, T: number): [number, number] {
  return branch ? [branch[2 * r]!, branch[2 * r + 1]!] : [T, T];
}

