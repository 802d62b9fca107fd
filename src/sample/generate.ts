// Text generation with a KV cache: greedy (temperature 0) or sampled with temperature, top-k and top-p (nucleus),
// from a seeded RNG. Stops at EOS (or any of the tokenizer's stop ids) or after maxNewTokens.

import type { Backend, Buf } from "../backend/contract.js";
import { type Model, createKvCache, decode } from "../model/decoder.js";
import { Rng } from "../rng.js";

export interface SampleOptions {
  maxNewTokens: number;
  temperature: number; // 0 = greedy
  topK: number; // 0 = no limit
  topP: number; // 1 = no limit
  seed: number;
}

export const defaultSampleOptions: SampleOptions = { maxNewTokens: 128, temperature: 0, topK: 0, topP: 1, seed: 0 };

export interface Generation {
  ids: number[]; // the new tokens (a stop token, if hit, is included)
  stop: "eos" | "length" | "context";
}

/** Index of the largest logit; ties go to the lowest id, as llama.cpp's greedy sampler does. */
export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
  return best;
}

/**
 * Draws a token: softmax(logits / temperature) restricted to the top-k tokens and then to the smallest set whose
 * probability reaches top-p (renormalised), as in Holtzman et al. 2020 and Hugging Face's logits warpers.
 */
export function sampleToken(logits: ArrayLike<number>, opts: Pick<SampleOptions, "temperature" | "topK" | "topP">, rng: Rng): number {
  if (opts.temperature <= 0) return argmax(logits);
  const V = logits.length;
  const k = opts.topK > 0 ? Math.min(opts.topK, V) : V;
  // Only the first k of the order are ever read: with top-k, select them in O(V log k) instead of sorting V.
  const order = k < V ? topKOrder(logits, k) : Array.from({ length: V }, (_, i) => i).sort(byLogitDesc(logits));
  const max = logits[order[0]!]!;
  const probs: number[] = [];
  let z = 0;
  for (let i = 0; i < k; i++) {
    const p = Math.exp((logits[order[i]!]! - max) / opts.temperature);
    probs.push(p);
    z += p;
  }
  let keep = k;
  if (opts.topP < 1) {
    let cum = 0;
    for (let i = 0; i < k; i++) {
      cum += probs[i]! / z;
      if (cum >= opts.topP) {
        keep = i + 1;
        break;
      }
    }
  }
  let total = 0;
  for (let i = 0; i < keep; i++) total += probs[i]!;
  let u = rng.next() * total;
  for (let i = 0; i < keep; i++) {
    u -= probs[i]!;
    if (u < 0) return order[i]!;
  }
  return order[keep - 1]!;
}

/** Descending logit, then ascending id: a strict total order, so any exact selection gives the same first k. */
function byLogitDesc(logits: ArrayLike<number>): (a: number, b: number) => number {
  return (a, b) => logits[b]! - logits[a]! || a - b;
}

/** The k first ids in byLogitDesc order, selected with a size-k heap whose root is the worst kept id. */
export function topKOrder(logits: ArrayLike<number>, k: number): number[] {
  const cmp = byLogitDesc(logits); // cmp(a, b) > 0: b ranks before a
  const heap: number[] = [];
  const sift = (i: number): void => {
    for (;;) {
      const l = 2 * i + 1, r = l + 1;
      let w = i; // the worst of i and its children goes up
      if (l < heap.length && cmp(heap[l]!, heap[w]!) > 0) w = l;
      if (r < heap.length && cmp(heap[r]!, heap[w]!) > 0) w = r;
      if (w === i) return;
      [heap[i], heap[w]] = [heap[w]!, heap[i]!];
      i = w;
    }
  };
  for (let id = 0; id < logits.length; id++) {
    if (heap.length < k) {
      heap.push(id);
      for (let i = heap.length - 1; i > 0; ) {
        const p = (i - 1) >> 1;
        if (cmp(heap[i]!, heap[p]!) <= 0) break;
        [heap[i], heap[p]] = [heap[p]!, heap[i]!];
        i = p;
      }
    } else if (cmp(id, heap[0]!) < 0) {
      heap[0] = id;
      sift(0);
    }
  }
  return heap.sort(cmp);
}

export function generate(
  be: Backend,
  model: Model,
  promptIds: readonly number[],
  stopIds: readonly number[],
  opts: SampleOptions,
  rng: Rng = new Rng(opts.seed),
): Generation {
  const maxT = Math.min(model.cfg.maxSeqLen, promptIds.length + opts.maxNewTokens);
  if (promptIds.length === 0) throw new Error("internal: generate needs at least one prompt token (BOS)");
  if (promptIds.length >= model.cfg.maxSeqLen)
    return { ids: [], stop: "context" };
  const cache = createKvCache(model, maxT);
  let logits: Buf = decode(be, model, cache, promptIds);
  const ids: number[] = [];
  while (ids.length < opts.maxNewTokens) {
    const next = sampleToken(logits, opts, rng);
    ids.push(next);
    if (stopIds.includes(next)) return { ids, stop: "eos" };
    if (cache.len >= maxT) return { ids, stop: ids.length < opts.maxNewTokens ? "context" : "length" };
    logits = decode(be, model, cache, [next]);
  }
  return { ids, stop: "length" };
}
