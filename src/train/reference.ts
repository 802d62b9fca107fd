// The reference policy π_ref of DPO. Either a frozen model run alongside the policy, or its sequence log-probs
// computed once before training and cached on disk. The cache key hashes everything the numbers depend on: the
// reference model's files, every pair's token ids (so the data, the tokenizer, the chat template and the
// truncation settings), and the LD-DPO reduction. A later run with the same key reuses the file.

import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import type { Backend, Buf } from "../backend/contract.js";
import type { TokenizedPair } from "../data/types.js";
import { writeFileAtomic } from "../io/atomic.js";
import { modelFingerprint } from "../io/fingerprint.js";
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS } from "../io/peft.js";

export { modelFingerprint };
import { needsReference } from "../loss/config.js";
import { reduceLogps } from "../loss/reduce.js";
import type { Model } from "../model/decoder.js";
import type { TrainConfig } from "./config.js";
import { type World, allgather } from "./distributed.js";
import { forEachPairBatch } from "./logps.js";

/** Whether the run computes reference log-probs at all (reference_free: log π_ref = 0, nothing is run). */
export function referenceUsed(cfg: Pick<TrainConfig, "loss" | "reference_free">): boolean {
  return needsReference(cfg.loss) && !cfg.reference_free;
}

/**
 * ref_adapter resolved: the adapter folder whose frozen copy sits on the base as LoRA's reference, or null (the base
 * with adapters off, or full fine-tuning's frozen copy). `defaulted`: unset in the config and made the adapter
 * being continued, which changed with this key (the trainer says so once, on a fresh run).
 */
export function resolveRefAdapter(
  cfg: Pick<TrainConfig, "loss" | "reference_free" | "ref_adapter" | "adapter" | "ref_model">,
): { dir: string | null; defaulted: boolean } {
  if (typeof cfg.ref_adapter === "string") return { dir: cfg.ref_adapter, defaulted: false };
  if (cfg.ref_adapter === true) return { dir: cfg.adapter, defaulted: false };
  if (cfg.ref_adapter === false || cfg.adapter === null || cfg.ref_model !== null || !referenceUsed(cfg)) return { dir: null, defaulted: false };
  return { dir: cfg.adapter, defaulted: true };
}

/** sha256 of an adapter folder's config and weights: part of the cache key when the reference carries one. */
export function adapterFingerprint(dir: string): string {
  const h = createHash("sha256");
  for (const f of [ADAPTER_CONFIG, ADAPTER_WEIGHTS]) {
    h.update(f);
    h.update(readFileSync(join(dir, f)));
  }
  return h.digest("hex");
}

/**
 * TR-DPO's soft update (Gorbatovski et al. 2024, Eq. 2; TRL's SyncRefModelCallback), element by element on two
 * arenas of one layout: ref ← α·policy + (1−α)·ref, with α = 1 a hard copy. Computed in float64 and rounded once, so
 * a test can rebuild it from the saved arrays bit for bit.
 */
export function mixReference(ref: Buf, policy: Buf, alpha: number): void {
  if (ref.length !== policy.length) throw new Error(`internal: TR-DPO mixes arenas of ${ref.length} and ${policy.length} elements`);
  if (alpha === 1) {
    ref.set(policy);
    return;
  }
  const keep = 1 - alpha;
  for (let i = 0; i < ref.length; i++) ref[i] = alpha * policy[i]! + keep * ref[i]!;
}

export interface RefLogps {
  chosen: Float64Array; // (n) reference Σ log-probs of each pair's chosen answer (LD-reduced when ld_alpha)
  rejected: Float64Array; // (n)
}

export function cacheDir(): string {
  return process.env.TSDPO_CACHE_DIR ?? join(homedir(), ".cache", "tsdpo");
}

export function refCacheKey(modelHash: string, pairs: readonly TokenizedPair[], ldAlpha: number | null, shared: boolean): string {
  const h = createHash("sha256");
  // the layout changes float rounding, so it is part of the key: a cached value equals a fresh one bit for bit
  h.update(`tsdpo-ref-logps-v2\0${modelHash}\0${ldAlpha}\0${shared ? "shared" : "concatenated"}\0${pairs.length}\0`);
  for (const p of pairs) {
    for (const a of [p.promptIds, p.chosenIds, p.rejectedIds]) {
      h.update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
      h.update("|");
    }
  }
  return h.digest("hex").slice(0, 32);
}

/** Reference log-probs by forward passes of `ref` over the pairs, `batchSize` pairs at a time. */
export function computeRefLogps(
  be: Backend, ref: Model, pairs: readonly TokenizedPair[], batchSize: number, ldAlpha: number | null, shared = true,
): RefLogps {
  const n = pairs.length;
  const out: RefLogps = { chosen: new Float64Array(n), rejected: new Float64Array(n) };
  forEachPairBatch(be, ref, pairs, batchSize, (pk, g, s) => {
    const b = pk.B;
    const sums = new Float64Array(2 * b);
    reduceLogps(sums, new Int32Array(2 * b), g.logp, pk.mask, b, pk.Tc, ldAlpha);
    for (let i = 0; i < b; i++) {
      out.chosen[s + i] = sums[i]!;
      out.rejected[s + i] = sums[b + i]!;
    }
  }, shared);
  return out;
}

/**
 * computeRefLogps on an MPI job: batch b (of `batchSize` pairs, as computeRefLogps forms them) is computed by rank
 * b mod W, and the ranks' results are gathered. Every kernel computes a pair independently of the others in its
 * batch, so each number is the one a single process computes, and the cache file is the same.
 */
function shardedRefLogps(world: World, be: Backend, ref: Model, pairs: readonly TokenizedPair[], batchSize: number, ldAlpha: number | null, shared: boolean): RefLogps {
  const n = pairs.length;
  const mine = new Float64Array(2 * n);
  const owner = (s: number): number => (s / batchSize) % world.size;
  for (let s = 0; s < n; s += batchSize) {
    if (owner(s) !== world.rank) continue;
    const part = computeRefLogps(be, ref, pairs.slice(s, s + batchSize), batchSize, ldAlpha, shared);
    mine.set(part.chosen, s);
    mine.set(part.rejected, n + s);
  }
  const all = allgather(world, mine);
  const out: RefLogps = { chosen: new Float64Array(n), rejected: new Float64Array(n) };
  for (let s = 0; s < n; s += batchSize) {
    const from = all.subarray(owner(s) * 2 * n, (owner(s) + 1) * 2 * n);
    for (let i = s; i < Math.min(n, s + batchSize); i++) {
      out.chosen[i] = from[i]!;
      out.rejected[i] = from[n + i]!;
    }
  }
  return out;
}

/** Cached computeRefLogps. Returns the numbers and whether they came from the cache. */
export function precomputedRefLogps(
  be: Backend, ref: Model, refPath: string, pairs: readonly TokenizedPair[], batchSize: number, ldAlpha: number | null,
  shared = true, refAdapter: string | null = null, world: World | null = null,
): { logps: RefLogps; cached: boolean; file: string } {
  // base + a frozen adapter is another reference than the base: the adapter's bytes are part of the key
  const refHash = modelFingerprint(refPath) + (refAdapter !== null ? `+${adapterFingerprint(refAdapter)}` : "");
  const key = refCacheKey(refHash, pairs, ldAlpha, shared);
  const dir = cacheDir();
  const file = join(dir, `ref-logps-${key}.json`);
  if (existsSync(file)) {
    try {
      const j = JSON.parse(readFileSync(file, "utf8")) as { key: string; chosen: number[]; rejected: number[] };
      if (j.key === key && j.chosen.length === pairs.length && j.rejected.length === pairs.length)
        return { logps: { chosen: Float64Array.from(j.chosen), rejected: Float64Array.from(j.rejected) }, cached: true, file };
    } catch {
      // unreadable cache entry: recompute and overwrite it
    }
  }
  const logps = world && world.size > 1 ? shardedRefLogps(world, be, ref, pairs, batchSize, ldAlpha, shared) : computeRefLogps(be, ref, pairs, batchSize, ldAlpha, shared);
  if (world && world.rank !== 0) return { logps, cached: false, file }; // rank 0 alone writes the cache
  mkdirSync(dir, { recursive: true });
  // JSON numbers round-trip doubles exactly, so cached and fresh values are identical.
  writeFileAtomic(file, JSON.stringify({ key, chosen: Array.from(logps.chosen), rejected: Array.from(logps.rejected) }) + "\n");
  return { logps, cached: false, file };
}
