// Packing B preference pairs into the tokens of one model forward (ForwardInput in src/model/decoder.ts), in one of
// two layouts, and the completion grid the loss code reads the results through.
//
// Shared prefix (the default): one row per pair, prompt ++ chosen ++ rejected, with branch [P, S = P + Cw]. The
// rejected answer attends to the prompt and to itself, not to the chosen answer, and its positions restart at P:
//
//   index t   0    1    2    3    4    5    6    7
//   ids       BOS  p1   p2   c1   c2   r1   r2   r3        P = 3, S = 5 (chosen c1 c2, rejected r1 r2 r3)
//   pos       0    1    2    3    4    3    4    5
//
// so the prompt is computed once per pair and its activations receive the gradients of both answers. The log-probs
// asked for are the answers' tokens: chosen c_k is predicted at index P−1+k; rejected r_0 at index P−1 too (the
// last prompt token predicts the first token of either answer) and r_k at index S+k−1.
//
// Concatenated (what TRL does, and the reference the shared layout is tested against): 2B rows, prompt ++ chosen for
// pair i in row i and prompt ++ rejected in row B+i, each at positions 0..; answer token k predicted at P−1+k.
//
// Either way the M wanted log-probs come back in one flat array, and `grid` (2B, Tc) lays them out as the losses
// expect: sequence s (chosen of pair s for s < B, rejected of pair s−B after) in row s, its k-th answer token in
// column k, mask 1 where a token is. Tc is the longest answer.

import type { ForwardInput } from "../model/decoder.js";
import type { TokenizedPair } from "./types.js";

export interface PackedPairs extends ForwardInput {
  /** Pairs packed. */
  readonly B: number;
  /** Columns of the completion grid: the longest answer. */
  readonly Tc: number;
  /** (2B, Tc): index into the M log-probs of answer token k of sequence s, or −1 past the answer's end. */
  readonly grid: Int32Array;
  /** (2B, Tc): 1 where grid holds a token. */
  readonly mask: Float32Array;
  readonly promptLengths: Int32Array; // (2B) P of each sequence
  readonly completionLengths: Int32Array; // (2B)
  /** Token positions the forward computes, without padding (the shared prompt counted once when shared). */
  readonly tokens: number;
  readonly shared: boolean;
}

/** Rows and row length of the forward that `pairs` pack into. */
export function packedShape(pairs: readonly TokenizedPair[], shared: boolean): { R: number; T: number } {
  let T = 1;
  for (const p of pairs) {
    const P = p.promptIds.length, cw = p.chosenIds.length, cl = p.rejectedIds.length;
    T = Math.max(T, shared ? P + cw + cl : P + Math.max(cw, cl));
  }
  return { R: shared ? pairs.length : 2 * pairs.length, T };
}

export function packPairs(pairs: readonly TokenizedPair[], shared: boolean, padId = 0): PackedPairs {
  const B = pairs.length;
  if (B === 0) throw new Error("packPairs: no pairs");
  const { R, T } = packedShape(pairs, shared);
  let Tc = 1, M = 0;
  for (const p of pairs) {
    if (p.promptIds.length < 1 || p.chosenIds.length < 1 || p.rejectedIds.length < 1)
      throw new Error(`packPairs: pair ${p.source.index} needs a prompt token and both answers non-empty`);
    Tc = Math.max(Tc, p.chosenIds.length, p.rejectedIds.length);
    M += p.chosenIds.length + p.rejectedIds.length;
  }
  const ids = new Int32Array(R * T).fill(padId);
  const pos = new Int32Array(R * T);
  const branch = shared ? new Int32Array(2 * R) : null;
  const rows = new Int32Array(M);
  const targets = new Int32Array(M);
  const grid = new Int32Array(2 * B * Tc).fill(-1);
  const mask = new Float32Array(2 * B * Tc);
  const promptLengths = new Int32Array(2 * B);
  const completionLengths = new Int32Array(2 * B);
  let m = 0, tokens = 0;
  // answer token k of sequence s is predicted at flat position `at(k)`
  const addAnswer = (s: number, answer: Int32Array, at: (k: number) => number): void => {
    for (let k = 0; k < answer.length; k++) {
      rows[m] = at(k);
      targets[m] = answer[k]!;
      grid[s * Tc + k] = m;
      mask[s * Tc + k] = 1;
      m++;
    }
    completionLengths[s] = answer.length;
  };
  for (let i = 0; i < B; i++) {
    const p = pairs[i]!;
    const P = p.promptIds.length, cw = p.chosenIds.length, cl = p.rejectedIds.length;
    promptLengths[i] = promptLengths[B + i] = P;
    if (shared) {
      const o = i * T, S = P + cw;
      ids.set(p.promptIds, o);
      ids.set(p.chosenIds, o + P);
      ids.set(p.rejectedIds, o + S);
      // padding after the rejected answer gets position 0: nothing real attends to it (it comes last), and a model with
      // learned positions (GPT-2) has no rows past its context for it
      for (let t = 0; t < T; t++) pos[o + t] = t < S ? t : t < S + cl ? t - cw : 0;
      branch![2 * i] = P;
      branch![2 * i + 1] = S;
      addAnswer(i, p.chosenIds, (k) => o + P - 1 + k);
      addAnswer(B + i, p.rejectedIds, (k) => (k === 0 ? o + P - 1 : o + S + k - 1));
      tokens += P + cw + cl;
    } else {
      for (const [r, answer] of [[i, p.chosenIds], [B + i, p.rejectedIds]] as const) {
        const o = r * T;
        ids.set(p.promptIds, o);
        ids.set(answer, o + P);
        for (let t = 0; t < T; t++) pos[o + t] = t < P + answer.length ? t : 0; // padding: position 0, as above
        tokens += P + answer.length;
      }
    }
  }
  if (!shared) {
    // chosen sequences first, then rejected, as TRL concatenates them
    for (let i = 0; i < B; i++) addAnswer(i, pairs[i]!.chosenIds, (k) => i * T + promptLengths[i]! - 1 + k);
    for (let i = 0; i < B; i++) addAnswer(B + i, pairs[i]!.rejectedIds, (k) => (B + i) * T + promptLengths[i]! - 1 + k);
  }
  return {
    ids, pos, branch, rows, targets, R, T, M, B, Tc, grid, mask, promptLengths, completionLengths, tokens, shared,
  };
}

/** dst (2B, Tc) ← the M values of src laid out on the grid; 0 where there is no token. */
export function toGrid(dst: Float64Array | Float32Array, src: ArrayLike<number>, pk: PackedPairs): void {
  const n = 2 * pk.B * pk.Tc;
  for (let g = 0; g < n; g++) {
    const m = pk.grid[g]!;
    dst[g] = m < 0 ? 0 : src[m]!;
  }
}

/** dst (M) ← the grid's values at each log-prob's place (the transpose of toGrid for gradients). */
export function fromGrid(dst: Float64Array | Float32Array, src: ArrayLike<number>, pk: PackedPairs): void {
  const n = 2 * pk.B * pk.Tc;
  for (let g = 0; g < n; g++) {
    const m = pk.grid[g]!;
    if (m >= 0) dst[m] = src[g]!;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// SFT rows (src/data/sft.ts): one sequence per row, or two when packed. The second sequence of a row uses the branch
// of the shared-prefix layout with an empty prompt, [P, S] = [0, S] with S the first sequence's length: it attends to
// itself alone and its positions restart at 0, so it is computed exactly as in a row of its own. A row of one
// sequence has [T, T] (no branch).
//
//   index t   0    1    2    3    4    5    6
//   ids       BOS  a1   a2   BOS  b1   b2   pad       branch [0, 3]
//   pos       0    1    2    0    1    2    0
//
// The log-probs asked for are those of the trained tokens: token t of a sequence starting at o, predicted at o + t − 1.

/** One SFT sequence as packSft reads it (TokenizedSft in src/data/sft.ts). */
export interface SftSequence {
  readonly ids: Int32Array; // (n)
  readonly trained: Uint8Array; // (n) 1 where the loss counts token t
}

export interface PackedSft extends ForwardInput {
  /** Token positions the forward computes, without padding: TRL's num_tokens counts these. */
  readonly tokens: number;
}

export function packSft(rows: readonly (readonly SftSequence[])[], padId = 0): PackedSft {
  const R = rows.length;
  if (R === 0) throw new Error("packSft: no rows");
  let T = 1, M = 0, tokens = 0, branched = false;
  for (const row of rows) {
    if (row.length < 1 || row.length > 2) throw new Error(`packSft: a row holds ${row.length} sequences; the attention mask keeps at most two apart`);
    let len = 0;
    for (const s of row) {
      len += s.ids.length;
      for (let t = 1; t < s.ids.length; t++) M += s.trained[t]!;
    }
    T = Math.max(T, len);
    tokens += len;
    branched ||= row.length === 2;
  }
  const ids = new Int32Array(R * T).fill(padId);
  const pos = new Int32Array(R * T); // padding: position 0, as above
  const branch = branched ? new Int32Array(2 * R) : null;
  const flat = new Int32Array(M);
  const targets = new Int32Array(M);
  let m = 0;
  rows.forEach((row, r) => {
    let o = r * T;
    if (branch) [branch[2 * r], branch[2 * r + 1]] = row.length === 2 ? [0, row[0]!.ids.length] : [T, T];
    for (const s of row) {
      ids.set(s.ids, o);
      for (let t = 0; t < s.ids.length; t++) {
        pos[o + t] = t;
        if (t >= 1 && s.trained[t]) {
          flat[m] = o + t - 1;
          targets[m] = s.ids[t]!;
          m++;
        }
      }
      o += s.ids.length;
    }
  });
  return { ids, pos, branch, rows: flat, targets, R, T, M, tokens };
}
