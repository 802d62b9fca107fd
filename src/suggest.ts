// "Did you mean …?" for a mistyped command, option or config key: the closest known name by edit distance, when it
// is close enough that the suggestion is likely what the user meant.

/** The candidate nearest to `word`, or null when none is within max(2, ⌊len/4⌋) edits. Case and -/_ are ignored. */
export function closest(word: string, candidates: readonly string[]): string | null {
  const norm = (s: string): string => s.toLowerCase().replace(/-/g, "_");
  let best: string | null = null;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = editDistance(norm(word), norm(c));
    if (d < bestD) [best, bestD] = [c, d];
  }
  return bestD <= Math.max(2, Math.floor(word.length / 4)) ? best : null;
}

/** Levenshtein distance (insert, delete, substitute: 1 each). */
export function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j]!;
      prev[j] = Math.min(prev[j]! + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = tmp;
    }
  }
  return prev[b.length]!;
}
