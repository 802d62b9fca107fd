// The reference policy π_ref of DPO. Either a frozen model run alongside the policy, or its sequence log-probs
// computed once before training and cached on disk. The cache key hashes everything the numbers depend on: the
// reference model's files, every pair's token ids (so the data, the tokenizer, the chat template and the
// truncation settings), and the LD-DPO reduction. A later run with the same key reuses the file.

import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import type { Backend } from "../backend/contract.js";
import type { TokenizedPair } from "../data/types.js";
import { writeFileAtomic } from "../io/atomic.js";
import { modelFingerprint } from "../io/fingerprint.js";

export { modelFingerprint };
import { reduceLogps } from "../loss/reduce.js";
import type { Model } from "../model/llama.js";
import { forEachPairBatch } from "./logps.js";

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

/** Cached computeRefLogps. Returns the numbers and whether they came from the cache. */
export function precomputedRefLogps(
  be: Backend, ref: Model, refPath: string, pairs: readonly TokenizedPair[], batchSize: number, ldAlpha: number | null,
  shared = true,
): { logps: RefLogps; cached: boolean; file: string } {
  const key = refCacheKey(modelFingerprint(refPath), pairs, ldAlpha, shared);
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
  const logps = computeRefLogps(be, ref, pairs, batchSize, ldAlpha, shared);
  mkdirSync(dir, { recursive: true });
  // JSON numbers round-trip doubles exactly, so cached and fresh values are identical.
  writeFileAtomic(file, JSON.stringify({ key, chosen: Array.from(logps.chosen), rejected: Array.from(logps.rejected) }) + "\n");
  return { logps, cached: false, file };
}
