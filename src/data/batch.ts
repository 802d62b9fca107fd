// The padded (2B, T) batch of TRL's concatenated forward, for callers of the plain `forward(ids, targets, R, T)`
// (the trainer packs through pack.ts instead, which also has the shared-prompt layout and skips the LM head at
// prompt positions). B pairs become 2B rows, so chosen and rejected go through the model in a single forward pass:
//
//   rows 0 .. B-1    chosen   sequence of pair i in row i
//   rows B .. 2B-1   rejected sequence of pair i in row B + i
//
// Each row is promptIds ++ answerIds, right-padded with padId to T. Next-token layout, for row r and 0 <= t < T:
//
//   ids[r,t]      token at position t
//   targets[r,t]  = ids[r,t+1], the token position t predicts (padId at t = T-1)
//   mask[r,t]     = 1 iff targets[r,t] is an answer token, i.e. P <= t+1 < P+C, else 0
//
// so summing log p(targets) * mask over a row gives that answer's log-probability, with prompt and padding masked
// out. completionLengths[r] = C = the row's mask sum. Example, P = 3 (BOS p1 p2), C = 2 (a1 EOS), T = 6:
//
//   t        0    1    2    3    4    5
//   ids      BOS  p1   p2   a1   EOS  pad
//   targets  p1   p2   a1   EOS  pad  pad
//   mask     0    0    1    1    0    0
//
// The buffers can be allocated once (allocBatch at the largest T) and refilled every step (fillBatch).

import type { Tokenizer } from "../tokenizer/types.js";
import type { TokenizedPair } from "./types.js";

export interface PreferenceBatch {
  /** Pairs in the batch; the batch has 2B rows. */
  readonly B: number;
  /** Time steps per row. */
  readonly T: number;
  readonly ids: Int32Array; // (2B, T)
  readonly targets: Int32Array; // (2B, T)
  readonly mask: Float32Array; // (2B, T)
  readonly promptLengths: Int32Array; // (2B) P per row, BOS included
  readonly completionLengths: Int32Array; // (2B) C per row = sum of the row's mask
  readonly seqLengths: Int32Array; // (2B) P + C, the unpadded length
}

/** The usual pad id: EOS (it is masked out anyway), or 0 when there is none. */
export function defaultPadId(tok: Tokenizer): number {
  return tok.eosId ?? 0;
}

export function allocBatch(B: number, T: number): PreferenceBatch {
  if (!Number.isInteger(B) || B < 1 || !Number.isInteger(T) || T < 1) throw new Error(`allocBatch: bad shape B=${B} T=${T}`);
  const n = 2 * B * T;
  return {
    B,
    T,
    ids: new Int32Array(n),
    targets: new Int32Array(n),
    mask: new Float32Array(n),
    promptLengths: new Int32Array(2 * B),
    completionLengths: new Int32Array(2 * B),
    seqLengths: new Int32Array(2 * B),
  };
}

/** Longest sequence (prompt + longer answer) among the pairs. */
export function longestSequence(pairs: readonly TokenizedPair[]): number {
  let n = 0;
  for (const p of pairs) n = Math.max(n, p.promptIds.length + Math.max(p.chosenIds.length, p.rejectedIds.length));
  return n;
}

/** Fills a batch in place from exactly batch.B pairs. Every sequence must fit in batch.T. */
export function fillBatch(batch: PreferenceBatch, pairs: readonly TokenizedPair[], padId: number): void {
  const B = batch.B;
  if (pairs.length !== B) throw new Error(`fillBatch: batch holds ${B} pairs but ${pairs.length} were given`);
  for (let i = 0; i < B; i++) {
    const p = pairs[i]!;
    fillRow(batch, i, p.promptIds, p.chosenIds, padId);
    fillRow(batch, B + i, p.promptIds, p.rejectedIds, padId);
  }
}

function fillRow(b: PreferenceBatch, r: number, prompt: Int32Array, answer: Int32Array, padId: number): void {
  const T = b.T;
  const P = prompt.length;
  const n = P + answer.length;
  // P >= 1 guarantees the first answer token has a position that predicts it.
  if (P < 1 || answer.length < 1) throw new Error(`fillBatch: row ${r} has P=${P}, C=${answer.length}; both must be >= 1`);
  if (n > T) throw new Error(`fillBatch: row ${r} needs ${n} positions but T is ${T}`);
  const o = r * T;
  const ids = b.ids;
  ids.set(prompt, o);
  ids.set(answer, o + P);
  ids.fill(padId, o + n, o + T);
  for (let t = 0; t < T; t++) {
    const next = t + 1;
    b.targets[o + t] = next < n ? ids[o + next]! : padId;
    b.mask[o + t] = next >= P && next < n ? 1 : 0;
  }
  b.promptLengths[r] = P;
  b.completionLengths[r] = answer.length;
  b.seqLengths[r] = n;
}

export interface BuildBatchOptions {
  /** Pad id (masked out, so any valid id works); default 0. Pass defaultPadId(tokenizer) to pad with EOS. */
  padId?: number;
  /** Round T up to a multiple of this (e.g. 8 or 64, so fewer distinct shapes occur). Default 1. */
  padToMultiple?: number;
  /** Fixed T (must fit every sequence); overrides the computed one. */
  T?: number;
}

/** Allocates and fills a batch whose T is the longest row, rounded up to padToMultiple. */
export function buildBatch(pairs: readonly TokenizedPair[], options: BuildBatchOptions = {}): PreferenceBatch {
  if (pairs.length === 0) throw new Error("buildBatch: no pairs");
  const m = options.padToMultiple ?? 1;
  if (!Number.isInteger(m) || m < 1) throw new Error(`buildBatch: padToMultiple must be a positive integer, got ${m}`);
  const longest = longestSequence(pairs);
  const T = options.T ?? Math.ceil(longest / m) * m;
  const batch = allocBatch(pairs.length, T);
  fillBatch(batch, pairs, options.padId ?? 0);
  return batch;
}
