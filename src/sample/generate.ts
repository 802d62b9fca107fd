// Text generation with a KV cache: greedy (temperature 0) or sampled with temperature, top-k and top-p (nucleus),
// from a seeded RNG. Stops at EOS (or any of the tokenizer's stop ids) or after maxNewTokens.

import type { Backend, Buf } from "../backend/contract.js";
import { type KvCache, type Model, createKvCache, createKvRow, decode, decodeRows } from "../model/decoder.js";
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

/** One request to generateBatch: a prompt and the RNG its tokens are drawn from (as generate's `rng`). */
export interface BatchRequest {
  promptIds: readonly number[];
  rng: Rng;
}

/**
 * generate() for many prompts at once, through the KV cache. Up to `rows` sequences are live together: each
 * prompt is prefilled alone in its row, then the live rows decode one token each in a single pass (decodeRows),
 * and a finished row takes the next waiting prompt. Each request draws only from its own RNG and every kernel
 * computes a row independently of the others, so request i's tokens are exactly what
 * generate(be, model, promptIds_i, stopIds, opts, rng_i) gives, whatever `rows` is. `onDone` sees each result as it
 * finishes (in finishing order), so a caller can record it before the rest are done.
 */
export function generateBatch(
  be: Backend,
  model: Model,
  requests: readonly BatchRequest[],
  stopIds: readonly number[],
  opts: Omit<SampleOptions, "seed">,
  rows = 16,
  onDone?: (i: number, g: Generation) => void,
): Generation[] {
  const results: (Generation | undefined)[] = new Array(requests.length);
  const finish = (i: number, g: Generation): void => {
    results[i] = g;
    onDone?.(i, g);
  };
  const maxSeqLen = model.cfg.maxSeqLen;
  let longest = 0;
  for (const r of requests) {
    if (r.promptIds.length === 0) throw new Error("internal: generate needs at least one prompt token (BOS)");
    if (r.promptIds.length < maxSeqLen) longest = Math.max(longest, r.promptIds.length);
  }
  const capacity = Math.min(maxSeqLen, longest + opts.maxNewTokens);
  const nRows = Math.max(1, Math.min(rows, requests.length));
  const scratch = createKvCache(model, Math.max(1, capacity), Math.max(64, nRows));
  const caches: KvCache[] = [scratch, ...Array.from({ length: nRows - 1 }, () => createKvRow(model, scratch))];
  // A live row: which request, its tokens so far, and its own limit (generate's maxT for that prompt).
  interface Live { req: number; cache: KvCache; ids: number[]; maxT: number }
  let next = 0;
  const free: KvCache[] = [...caches].reverse();
  const live: Live[] = [];
  const logits = new model.ctor(nRows * model.cfg.V);

  // Draws row `r`'s next token from `rowLogits` and applies generate()'s stopping rules in its order; true = finished.
  const step = (r: Live, rowLogits: Buf): boolean => {
    const tok = sampleToken(rowLogits, opts, requests[r.req]!.rng);
    r.ids.push(tok);
    if (stopIds.includes(tok)) return finish(r.req, { ids: r.ids, stop: "eos" }), true;
    if (r.cache.len >= r.maxT) return finish(r.req, { ids: r.ids, stop: r.ids.length < opts.maxNewTokens ? "context" : "length" }), true;
    if (r.ids.length >= opts.maxNewTokens) return finish(r.req, { ids: r.ids, stop: "length" }), true;
    return false;
  };
  // Fills free rows with waiting requests: prefill alone, then the first token.
  const admit = (): void => {
    while (free.length > 0 && next < requests.length) {
      const i = next++;
      const { promptIds } = requests[i]!;
      if (promptIds.length >= maxSeqLen) {
        finish(i, { ids: [], stop: "context" });
        continue;
      }
      const cache = free.pop()!;
      cache.len = 0;
      const row: Live = { req: i, cache, ids: [], maxT: Math.min(maxSeqLen, promptIds.length + opts.maxNewTokens) };
      const first = decode(be, model, cache, promptIds);
      if (opts.maxNewTokens <= 0 || step(row, first)) {
        if (opts.maxNewTokens <= 0) finish(i, { ids: [], stop: "length" });
        free.push(cache);
        continue;
      }
      live.push(row);
    }
  };
  admit();
  while (live.length > 0) {
    decodeRows(be, model, live.map((r) => r.cache), live.map((r) => r.ids[r.ids.length - 1]!), logits);
    const V = model.cfg.V;
    const still: Live[] = [];
    live.forEach((r, k) => {
      if (step(r, logits.subarray(k * V, (k + 1) * V))) free.push(r.cache);
      else still.push(r);
    });
    live.splice(0, live.length, ...still);
    admit();
  }
  return results as Generation[];
}
