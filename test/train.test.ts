// The trainer's equivalences, each proved with numbers on the shipped stories260K (float32, on the backend under
// test of test/helpers.ts) and the 16 hand-written pairs of test/fixtures/train/pairs.jsonl (prompts and answers of
// different lengths, so every batch is padded):
//   1. gradient accumulation: 1 pair × 8 micro-batches = 8 pairs × 1 (and uneven micro-batches 3 + 2 = 5 × 1)
//   2. one concatenated (2B, T) forward = a separate forward of each sequence alone, whatever shares the batch
//   3. precomputed reference log-probs = a frozen reference run alongside; the cache is keyed by content and read
//   4. DPO at step 0: policy = reference, so loss = ln 2 and every reward is 0, for any β
//
// Why some comparisons are exact: the js kernels compute each row of a batch with the same float operations in the
// same order whatever the other rows hold and however far the row is padded (a dot product always runs over k in
// order in a double accumulator; attention at position t reads positions ≤ t only), so a sequence's log-probs are
// bitwise the same alone, in any batch, and as a precomputed reference. Gradients are different: a micro-batch's
// parameter gradient is a sum over its rows, and the order of that sum changes with the split, so accumulation is
// compared with a tolerance.
//
// On the native backend the exact comparisons become tolerances (NATIVE_LOGP_TOL below): its matrix products go
// through OpenBLAS, whose order of summation for one row may depend on how many rows the call has, so a sequence's
// log-probs can differ in the last bits between batch layouts. Within one layout the native backend is deterministic,
// so the claims that compare one layout with itself (step 0 without a precomputed reference) stay exact there too.

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { longestSequence, loadPreferencePairs } from "../src/data/index.js";
import type { TokenizedPair } from "../src/data/index.js";
import { loadModel } from "../src/io/load.js";
import { createActivations, forward, logitsOf } from "../src/model/decoder.js";
import { defaultLossConfig } from "../src/loss/config.js";
import { initialLossState } from "../src/loss/losses.js";
import { resolveTrainConfig } from "../src/train/config.js";
import { activationsForPairs, forwardPairs, pairLogps, rowSums } from "../src/train/logps.js";
import { packPairs } from "../src/data/pack.js";
import { type Engine, microBatch, train } from "../src/train/train.js";
import { fixture, maxAbsDiff, repoRoot, storiesGguf, testBackend, testBackendName } from "./helpers.js";

const tmp = mkdtempSync(join(tmpdir(), "tsdpo-train-"));
after(() => rmSync(tmp, { recursive: true, force: true }));
const pairsFile = fixture("train", "pairs.jsonl");
const cli = join(repoRoot, "dist", "src", "cli", "main.js");

/** Settings shared by every run here; each test adds what it is about. */
const BASE = {
  model: storiesGguf, data: pairsFile, backend: testBackendName, max_length: 48, learning_rate: 1e-3,
  lr_scheduler_type: "constant", seed: 7, max_grad_norm: 1.0,
};

type Row = Record<string, number>;
let runCount = 0;

function readMetrics(dir: string): Row[] {
  return readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as Row);
}

/** A training run in this process; returns its folder, metrics rows and final parameter arena. */
async function runInProcess(settings: Record<string, unknown>): Promise<{ dir: string; metrics: Row[]; params: Float32Array }> {
  const dir = join(tmp, `run-${runCount++}`);
  const cfg = resolveTrainConfig({ ...BASE, ...settings, output_dir: dir }, "test config");
  await train(cfg, null, { quiet: true });
  return { dir, metrics: readMetrics(dir), params: loadModel(join(dir, "final")).model.params as Float32Array };
}

/** A training run through the built CLI (for its log lines); fails the test unless it exits 0. */
function runCli(settings: Record<string, unknown>, env: Record<string, string>): { dir: string; metrics: Row[]; stderr: string } {
  const dir = join(tmp, `run-${runCount++}`);
  const config = join(tmp, `config-${runCount}.json`);
  writeFileSync(config, JSON.stringify({ ...BASE, ...settings }));
  const r = spawnSync(process.execPath, [cli, "train", config, `--output_dir=${dir}`], {
    encoding: "utf8", env: { ...process.env, ...env }, timeout: 120_000,
  });
  assert.equal(r.status, 0, `tsdpo train failed:\n${r.stderr}`);
  return { dir, metrics: readMetrics(dir), stderr: r.stderr };
}

/** Metric rows without the wall-clock one. */
const numbers = (rows: Row[]): Row[] => rows.map(({ tokens_per_second: _t, ...rest }) => rest);

// Exact on js, to float32 rounding on native (see the top of this file).
const bitExact = testBackend().name === "js";
/**
 * Native: how far one sequence's summed completion log-prob may move between batch layouts. Measured on the 16
 * pairs here (sums of −35 to −95 over up to 30 answer tokens) in every layout of test 2: at most 2.2e-5, three
 * float32 ulps of such a sum; the bound is 1e-4. A token too many or too few moves a sum by its log-prob (−2.6 per
 * token on average here), a neighbouring row or padding seen by attention by far more than the bound.
 */
const NATIVE_LOGP_TOL = 1e-4;

/** A log-prob sum computed in two layouts: the same bits on js, within NATIVE_LOGP_TOL on native. */
function sameLogp(got: number, want: number, what: string): void {
  if (bitExact) assert.equal(got, want, what);
  else assert.ok(Math.abs(got - want) <= NATIVE_LOGP_TOL, `${what}: ${got} vs ${want} (native tolerance ${NATIVE_LOGP_TOL})`);
}

/**
 * A DPO metric whose reference log-probs came from another layout than the policy's: equal on js; on native within
 * `slack`·NATIVE_LOGP_TOL, where slack bounds how the metric moves per unit of log-prob error (the loss: 2β, as
 * h = (π_c − r_c) − (π_r − r_r) moves by at most 2·NATIVE_LOGP_TOL and |d loss / d h| ≤ β; a reward: β).
 */
function sameMetric(got: number, want: number, slack: number, what: string): void {
  if (bitExact) assert.equal(got, want, what);
  else assert.ok(Math.abs(got - want) <= slack * NATIVE_LOGP_TOL, `${what}: ${got} vs ${want} (native tolerance ${slack * NATIVE_LOGP_TOL})`);
}

/**
 * Native only: two runs whose reference log-probs come from different layouts (precomputed in batches of 8, or a
 * frozen copy alongside the policy in batches of 4), so step 1's gradients differ by rounding and the weights after
 * it a little. Measured on stories260K (OpenBLAS 0.3.21, AVX2): metrics within 1.0e-5·(1 + |x|), the final weights
 * within 1.3e-4 on 41 of 292800 coordinates and within 1e-6 on all others. The bounds:
 *   - metrics: 1e-4·(1 + |x|), ten times the measured; counts, steps and the learning rate exactly. Not step 1's
 *     rewards/accuracies: there policy = reference and each reward is rounding noise, so the share of positive
 *     margins is noise too (it was 0.5 against 0).
 *   - weights: AdamW's first steps are about lr·sign(g), so a coordinate whose gradient is rounding noise can step
 *     the other way: about 2·lr per step, which is the bound on the largest difference. What must not happen is
 *     that many coordinates move differently: at most 0.1% of them (seven times the measured share) may differ
 *     by more than 1e-6. A reference that is wrong changes the gradient everywhere.
 */
function nativeSameRun(dirA: string, dirB: string, a: Row[], b: Row[], lr: number): void {
  const [x, y] = [numbers(a), numbers(b)];
  assert.deepEqual(x.map((r) => Object.keys(r)), y.map((r) => Object.keys(r)));
  x.forEach((row, s) => {
    for (const k of Object.keys(row)) {
      if (s === 0 && k === "rewards/accuracies") continue;
      const [p, q] = [row[k]!, y[s]![k]!];
      if (["step", "epoch", "num_tokens", "learning_rate"].includes(k)) assert.equal(p, q, `step ${s + 1} ${k}`);
      else assert.ok(Math.abs(p - q) <= 1e-4 * (1 + Math.abs(q)), `step ${s + 1} ${k}: ${p} vs ${q}`);
    }
  });
  const [wa, wb] = [loadModel(join(dirA, "final")).model.params, loadModel(join(dirB, "final")).model.params];
  let moved = 0;
  for (let i = 0; i < wa.length; i++) if (Math.abs(wa[i]! - wb[i]!) > 1e-6) moved++;
  const diff = maxAbsDiff(wa, wb);
  assert.ok(diff <= 2 * lr * x.length, `final weights differ by up to ${diff}, more than 2·lr per step`);
  assert.ok(moved <= 1e-3 * wa.length, `${moved} of ${wa.length} final weights differ by more than 1e-6`);
}

// ---------------------------------------------------------------------------------------------------------------
// 1. Gradient accumulation

/**
 * Runs the same training twice with a different split of each optimizer step into micro-batches and compares loss
 * and grad_norm per step and the final weights.
 *
 * Tolerances. The step loss and the pre-clip gradient norm are float64 reductions of float32 per-row numbers; the
 * split changes only the order in which float32 gradient contributions are summed (relative error ~1e-7 per sum), so
 * both agree to 1e-6 relative. The weights go through AdamW, whose first update is g/(|g| + ε): for |g| ≫ ε that is
 * sign(g), which flips on a rounding error for a gradient that is zero up to cancellation. adam_epsilon 1e-3 (instead
 * of 1e-8) makes the update smooth in g below 1e-3 without changing what is tested, and then the weights may differ
 * by the float32 rounding of w − lr·u (0.5 ulp of |w| ≤ 4.43, i.e. 2.4e-7) per step plus lr·|δu| ≲ lr·1e-4: 1e-6 in
 * all. A mistake in the accumulation (a micro-batch dropped or counted twice, wrong weights for unequal
 * micro-batches, gradients not zeroed between steps) moves weights by a sizable fraction of lr·steps = 2e-3.
 */
async function compareAccumulation(a: Record<string, unknown>, b: Record<string, unknown>, common: Record<string, unknown>): Promise<void> {
  const x = await runInProcess({ ...common, ...a, adam_epsilon: 1e-3 });
  const y = await runInProcess({ ...common, ...b, adam_epsilon: 1e-3 });
  assert.equal(x.metrics.length, common.max_steps);
  assert.equal(y.metrics.length, common.max_steps);
  for (let s = 0; s < x.metrics.length; s++) {
    const [mx, my] = [x.metrics[s]!, y.metrics[s]!];
    assert.equal(mx.num_tokens, my.num_tokens, `step ${s + 1}: the same pairs must be drawn`);
    assert.ok(Math.abs(mx.loss! - my.loss!) <= 1e-6 * mx.loss!, `step ${s + 1}: loss ${mx.loss} vs ${my.loss}`);
    assert.ok(Math.abs(mx.grad_norm! / my.grad_norm! - 1) <= 1e-6, `step ${s + 1}: grad_norm ${mx.grad_norm} vs ${my.grad_norm}`);
    for (const k of ["rewards/margins", "logps/chosen", "logps/rejected"])
      assert.ok(Math.abs(mx[k]! - my[k]!) <= 1e-6 * (1 + Math.abs(mx[k]!)), `step ${s + 1}: ${k} ${mx[k]} vs ${my[k]}`);
  }
  const start = loadModel(storiesGguf).model.params;
  const moved = maxAbsDiff(x.params, start);
  const diff = maxAbsDiff(x.params, y.params);
  assert.ok(moved > 1e-3, `training must move the weights (max change ${moved})`);
  assert.ok(diff <= 1e-6, `final weights differ by ${diff} (training moved them by up to ${moved})`);
}

test("gradient accumulation: 1 pair × 8 micro-batches gives the weights of 8 pairs × 1", async () => {
  // 16 pairs, 2 steps: one epoch, each step's 8 pairs the same in both runs (the order depends on the seed only).
  await compareAccumulation(
    { per_device_train_batch_size: 8, gradient_accumulation_steps: 1 },
    { per_device_train_batch_size: 1, gradient_accumulation_steps: 8 },
    { max_steps: 2 },
  );
});

test("gradient accumulation: unequal micro-batches (2 + 1 pairs) are weighted by size, = 3 pairs at once", async () => {
  // 3 pairs and 3 or 4 pairs per step: every step takes the whole epoch, split 2 + 1 or run as one batch of 3.
  // Weighting each micro-batch by 1/accumulation instead of b/3 would change the loss, the gradient and the weights.
  const three = join(tmp, "three.jsonl");
  writeFileSync(three, readFileSync(pairsFile, "utf8").trim().split("\n").slice(1, 4).join("\n") + "\n");
  await compareAccumulation(
    { per_device_train_batch_size: 3, gradient_accumulation_steps: 1 },
    { per_device_train_batch_size: 2, gradient_accumulation_steps: 2 },
    { max_steps: 2, data: three },
  );
});

// ---------------------------------------------------------------------------------------------------------------
// 2. Concatenated versus separate forward

test("a packed forward (concatenated or shared prefix) gives each sequence's log-probs exactly as its own forward, whatever shares the batch", async () => {
  const be = testBackend();
  const { model, tokenizer } = loadModel(storiesGguf);
  const { pairs } = await loadPreferencePairs(pairsFile, tokenizer, { maxLength: 64 });
  assert.equal(pairs.length, 16);

  // The reference: one sequence per forward, laid out here without the batch builder. The log-prob of an answer
  // token at sequence position t comes from position t − 1.
  const single = createActivations(model, 1, 64);
  const alone = (prompt: Int32Array, answer: Int32Array): number => {
    const ids = Int32Array.from([...prompt, ...answer]);
    const n = ids.length;
    const targets = new Int32Array(n);
    targets.set(ids.subarray(1));
    const logp = forward(be, model, single, ids, targets, 1, n);
    let s = 0;
    for (let t = prompt.length - 1; t < n - 1; t++) s += logp[t]!;
    return s;
  };
  const want = pairs.map((p) => ({ chosen: alone(p.promptIds, p.chosenIds), rejected: alone(p.promptIds, p.rejectedIds) }));
  for (const w of want) assert.ok(w.chosen < 0 && w.rejected < 0 && w.chosen !== w.rejected);

  // Packed: TRL's concatenation (chosen rows 0..B-1, rejected rows B..2B-1) and the shared-prefix layout (one row
  // per pair, prompt ++ chosen ++ rejected), both right-padded with `padId` to the longest row.
  const acts = createActivations(model, 2 * 16, 3 * 64);
  const batched = (idx: readonly number[], padId: number, shared: boolean): { chosen: number; rejected: number }[] => {
    const chunk: TokenizedPair[] = idx.map((i) => pairs[i]!);
    const pk = packPairs(chunk, shared, padId);
    const g = forwardPairs(be, model, acts, pk);
    const logps = new Float64Array(2 * chunk.length);
    rowSums(g, pk, model.cfg.V, logps, new Float64Array(2 * chunk.length));
    return idx.map((_, j) => ({ chosen: logps[j]!, rejected: logps[chunk.length + j]! }));
  };
  const eos = tokenizer.eosId!;
  const groupings: [number[], number][] = [
    [[...Array(16).keys()], eos], // all 16 pairs: 32 rows, padded to the longest of all
    [[8, 11], eos], // pair 8 has the longest prompt, pair 11 the longest answer
    [[3, 0, 12, 5], 7], // another neighbourhood and another pad token
    [[12], eos], // alone, but through the batch builder
  ];
  let padded = 0;
  // The js kernels sum every dot product in one fixed order whatever the batch, and a masked key adds an exact 0,
  // so every layout gives the same bits as the sequence alone.
  for (const shared of [false, true])
    for (const [idx, padId] of groupings) {
      const got = batched(idx, padId, shared);
      const layout = shared ? "shared prefix" : "concatenated";
      idx.forEach((i, j) => {
        sameLogp(got[j]!.chosen, want[i]!.chosen, `pair ${i} chosen in ${layout} batch [${idx}]`);
        sameLogp(got[j]!.rejected, want[i]!.rejected, `pair ${i} rejected in ${layout} batch [${idx}]`);
        const T = longestSequence(idx.map((k) => pairs[k]!));
        if (!shared && pairs[i]!.promptIds.length + pairs[i]!.chosenIds.length < T) padded++;
      });
    }
  assert.ok(padded >= 10, `the groupings must pad many rows (padded ${padded})`);

  // pairLogps (what `tsdpo logprobs` and eval use) in chunks of 5 and of 1: the same numbers again.
  for (const bs of [5, 1]) {
    const rows = pairLogps(be, model, pairs, bs);
    rows.forEach((r, i) => {
      sameLogp(r.chosen_logps, want[i]!.chosen, `pairLogps batch ${bs}, pair ${i} chosen`);
      sameLogp(r.rejected_logps, want[i]!.rejected, `pairLogps batch ${bs}, pair ${i} rejected`);
      assert.equal(r.chosen_tokens, pairs[i]!.chosenIds.length);
    });
  }
});

test("the step's `entropy` is the mean entropy of the next-token distributions over the chosen and rejected answer tokens, from the full logits", async () => {
  const be = testBackend();
  const { model, tokenizer } = loadModel(storiesGguf);
  const { pairs } = await loadPreferencePairs(pairsFile, tokenizer, { maxLength: 64 });
  const idx = [8, 11, 3];
  // by hand: each answer alone, its logits in full, H = −Σ p·log p at the positions that predict answer tokens
  const single = createActivations(model, 1, 64);
  let sum = 0, count = 0;
  for (const i of idx)
    for (const answer of [pairs[i]!.chosenIds, pairs[i]!.rejectedIds]) {
      const ids = Int32Array.from([...pairs[i]!.promptIds, ...answer]);
      const n = ids.length, P = pairs[i]!.promptIds.length, V = model.cfg.V;
      forward(be, model, single, ids, new Int32Array(n), 1, n);
      const logits = logitsOf(be, model, single);
      for (let t = P - 1; t < n - 1; t++) {
        const z = Array.from(logits.subarray(t * V, t * V + V));
        const mx = Math.max(...z);
        const lse = mx + Math.log(z.reduce((a, v) => a + Math.exp(v - mx), 0));
        sum -= z.reduce((a, v) => a + Math.exp(v - lse) * (v - lse), 0);
        count++;
      }
    }
  for (const sharedPrefix of [false, true]) {
    const chunk = idx.map((i) => pairs[i]!);
    const engine: Engine = {
      be, policy: model, acts: activationsForPairs(model, chunk, chunk.length, sharedPrefix, false), grads: null,
      ref: null, refLogps: null, referenceFree: true, loss: defaultLossConfig(), sharedPrefix, dropoutSeed: null, timings: null,
    };
    const r = microBatch(engine, chunk, chunk.map((_, j) => j), "eval", initialLossState(), 0);
    const got = r.metrics["entropy"]!;
    assert.ok(Math.abs(got - sum / count) < 1e-5 * (sum / count), `entropy ${got} vs ${sum / count} by hand (shared prefix ${sharedPrefix})`);
  }
});

// ---------------------------------------------------------------------------------------------------------------
// 3. Precomputed reference = on-the-fly reference

test("precomputed reference log-probs: same losses and weights as a frozen reference; the cache is keyed and read", () => {
  const cacheDir = join(tmp, "cache");
  const env = { TSDPO_CACHE_DIR: cacheDir };
  const common = { max_length: 48, per_device_train_batch_size: 4, max_steps: 2 };
  const logLine = (stderr: string): { how: string; file: string } => {
    const m = /^reference log-probs: (computed|from cache) (\S+)$/m.exec(stderr);
    assert.ok(m, `no "reference log-probs" line in:\n${stderr}`);
    return { how: m[1]!, file: m[2]! };
  };
  const finalBytes = (dir: string): Buffer => readFileSync(join(dir, "final", "model.safetensors"));

  const fly = runCli({ ...common, precompute_ref_log_probs: false }, env);
  assert.doesNotMatch(fly.stderr, /reference log-probs/);
  const pre = runCli({ ...common, precompute_ref_log_probs: true }, env);
  const first = logLine(pre.stderr);
  assert.equal(first.how, "computed");
  assert.ok(first.file.startsWith(cacheDir), first.file);
  // Exact: the reference sums are the same bits in both modes (see the top of this file), so is everything after.
  // On native the reference sums differ by rounding (another batch layout), and so does everything after, a little.
  if (bitExact) {
    assert.deepEqual(numbers(pre.metrics), numbers(fly.metrics));
    assert.ok(finalBytes(pre.dir).equals(finalBytes(fly.dir)), "final weights differ between precomputed and frozen reference");
  } else nativeSameRun(pre.dir, fly.dir, pre.metrics, fly.metrics, BASE.learning_rate);
  sameMetric(pre.metrics[0]!.loss!, Math.LN2, 2 * 0.1, "step 1 loss with the precomputed reference");

  // A second run with the same data and model reads the file instead of recomputing it.
  const before = statSync(first.file).mtimeMs;
  const bytes = readFileSync(first.file);
  const again = runCli({ ...common, precompute_ref_log_probs: true }, env);
  assert.deepEqual(logLine(again.stderr), { how: "from cache", file: first.file });
  assert.equal(statSync(first.file).mtimeMs, before, "the cache file was rewritten");
  assert.ok(readFileSync(first.file).equals(bytes));
  // Exact on every backend: the same cached numbers as `pre` (and on js `pre` equals `fly` exactly, above).
  assert.deepEqual(numbers(again.metrics), numbers(pre.metrics));

  // Proof that the numbers in the file are the ones used: add δ = 1 to every cached chosen log-prob. At step 0 the
  // policy is the reference, so every pair now has h = (π_c − r_c − δ) − (π_r − r_r) = −δ, loss = −log σ(−β·δ)
  // = log(1 + e^{β·δ}), rewards/chosen = −β·δ and rewards/rejected = 0.
  const cached = JSON.parse(bytes.toString("utf8")) as { key: string; chosen: number[]; rejected: number[] };
  writeFileSync(first.file, JSON.stringify({ ...cached, chosen: cached.chosen.map((x) => x + 1) }));
  const tampered = runCli({ ...common, max_steps: 1, precompute_ref_log_probs: true }, env);
  assert.equal(logLine(tampered.stderr).how, "from cache");
  const beta = 0.1; // the default
  const m0 = tampered.metrics[0]!;
  // 1e-12: float64 rounding of the loss arithmetic; on native plus the layouts' log-prob rounding (sameMetric).
  const slack = bitExact ? 0 : NATIVE_LOGP_TOL;
  assert.ok(Math.abs(m0.loss! - Math.log1p(Math.exp(beta))) < 1e-12 + 2 * beta * slack, `loss ${m0.loss} vs ${Math.log1p(Math.exp(beta))}`);
  assert.ok(Math.abs(m0["rewards/chosen"]! + beta) < 1e-12 + beta * slack, `rewards/chosen ${m0["rewards/chosen"]}`);
  sameMetric(m0["rewards/rejected"]!, 0, beta, "rewards/rejected");
  writeFileSync(first.file, bytes);

  // A different max_length truncates other tokens, so the key (a hash of every pair's ids) changes: a new file.
  const shorter = runCli({ ...common, max_steps: 1, max_length: 40, precompute_ref_log_probs: true }, env);
  const other = logLine(shorter.stderr);
  assert.equal(other.how, "computed");
  assert.notEqual(other.file, first.file);
  sameMetric(shorter.metrics[0]!.loss!, Math.LN2, 2 * 0.1, "step 1 loss, max_length 40");
  assert.ok(readdirSync(cacheDir).includes(other.file.slice(cacheDir.length + 1)));
});

// ---------------------------------------------------------------------------------------------------------------
// 4. DPO at step 0

test("step 0: loss is exactly ln 2 and every reward 0 for any β; the gradient scales with β", async () => {
  // sigmoid DPO at h = 0: loss = −log σ(0) = ln 2 and d loss / d h = −β/2, so the backward is the same linear map
  // applied to β/2: for β a power of two every float operation scales exactly, so grad_norm / β is the same bits.
  const common = { max_steps: 1, max_length: 48, per_device_train_batch_size: 4 };
  const perBeta: number[] = [];
  for (const beta of [0.125, 0.5, 2]) {
    const { metrics } = await runInProcess({ ...common, beta });
    const m = metrics[0]!;
    assert.equal(m.loss, Math.LN2, `β ${beta}`);
    for (const k of ["rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"]) assert.equal(m[k], 0, `β ${beta}: ${k}`);
    assert.ok(m.grad_norm! > 0);
    perBeta.push(m.grad_norm! / beta);
  }
  assert.equal(perBeta[1], perBeta[0]);
  assert.equal(perBeta[2], perBeta[0]);

  // With β = 0.1 and a precomputed reference (computed 8 pairs at a time, trained 4 at a time, so padded
  // differently): still exactly ln 2, because the log-probs do not depend on the batch (on native: to rounding).
  const saved = process.env.TSDPO_CACHE_DIR;
  process.env.TSDPO_CACHE_DIR = join(tmp, "cache-step0");
  try {
    const { metrics } = await runInProcess({ ...common, beta: 0.1, precompute_ref_log_probs: true });
    sameMetric(metrics[0]!.loss!, Math.LN2, 2 * 0.1, "loss with a precomputed reference");
    sameMetric(metrics[0]!["rewards/margins"]!, 0, 2 * 0.1, "rewards/margins with a precomputed reference");
    assert.ok(Math.abs(metrics[0]!.grad_norm! / 0.1 / perBeta[0]! - 1) < 1e-6);
  } finally {
    if (saved === undefined) delete process.env.TSDPO_CACHE_DIR;
    else process.env.TSDPO_CACHE_DIR = saved;
  }
});
