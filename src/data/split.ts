// Holding out an evaluation set: a fraction or a count of the rows picked by a seeded shuffle, or a separate file.
//
// The split is made on the normalised pairs, before tokenisation, so the same seed selects the same evaluation
// rows whatever model, tokenizer or truncation limits are used later. Both parts keep file order; shuffling for
// training is the training loop's business.

import { configError } from "../errors.js";
import { mulberry32 } from "../rng.js";

export type EvalSplit =
  | { kind: "none" }
  | { kind: "fraction"; fraction: number; seed: number }
  | { kind: "count"; count: number; seed: number }
  | { kind: "file"; path: string };

/** A permutation of 0..n-1 by Fisher–Yates with mulberry32(seed). */
export function shuffledIndices(n: number, seed: number): Int32Array {
  const idx = new Int32Array(n);
  for (let i = 0; i < n; i++) idx[i] = i;
  const r = mulberry32(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    const t = idx[i]!;
    idx[i] = idx[j]!;
    idx[j] = t;
  }
  return idx;
}

/** How many of n rows a fraction/count split holds out. */
export function evalSize(n: number, split: { kind: "fraction"; fraction: number } | { kind: "count"; count: number }): number {
  let k: number;
  if (split.kind === "fraction") {
    const f = split.fraction;
    if (!(f > 0 && f < 1)) throw configError(`eval_size: a fraction of the pairs must be between 0 and 1 (exclusive), got ${f}; give a count (≥ 1) or a fraction below 1`);
    k = Math.max(1, Math.round(f * n)); // a positive fraction always holds out something
  } else {
    k = split.count;
    if (!Number.isInteger(k) || k < 1) throw configError(`eval_size: a count of pairs must be a whole number ≥ 1, got ${k}; give a count (≥ 1) or a fraction below 1`);
  }
  if (k >= n)
    throw configError(
      `eval_size: holding out ${k} of ${n} pairs${split.kind === "fraction" ? ` (fraction ${split.fraction})` : ""} leaves none to train on; ` +
        `lower eval_size or give a separate eval file (eval_data)`,
    );
  return k;
}

/** Splits items (in file order) into train and eval parts; "none" puts everything in train. */
export function splitTrainEval<T>(items: readonly T[], split: Exclude<EvalSplit, { kind: "file" }>): { train: T[]; eval: T[] } {
  if (split.kind === "none") return { train: [...items], eval: [] };
  const n = items.length;
  const k = evalSize(n, split);
  if (!Number.isInteger(split.seed)) throw configError(`seed: must be a whole number, got ${split.seed}`);
  const held = new Uint8Array(n);
  const perm = shuffledIndices(n, split.seed);
  for (let i = 0; i < k; i++) held[perm[i]!] = 1;
  const train: T[] = [];
  const evalPart: T[] = [];
  for (let i = 0; i < n; i++) (held[i] ? evalPart : train).push(items[i]!);
  return { train, eval: evalPart };
}
