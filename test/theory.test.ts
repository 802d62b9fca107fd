// The theory DPO rests on (Rafailov et al. 2023, arXiv:2305.18290), checked numerically against tsdpo's own loss
// (computeLoss and its d loss / d log-probs) and model backward:
//
//   - Bandit optimum (§4, Eq. 4 and Eq. 7): on a contextual bandit with a known reward r(x,y) and preferences from
//     Bradley–Terry with r, DPO from π_ref converges to π*(y|x) = π_ref(y|x)·exp(r(x,y)/β)/Z(x).
//   - Implicit reward (§5, Eq. 5 and Theorem 1): r̂(x,y) = β·log(π/π_ref) equals r(x,y) − β·log Z(x).
//   - Gradient identity (§4, "What does the DPO update do?"): ∇L = −β·E[σ(r̂_l − r̂_w)·(∇log π(y_w|x) − ∇log π(y_l|x))],
//     on stories260K, the shipped pretrained model.
//   - The dropped weighting (same paragraph): without the σ(r̂_l − r̂_w) factor the update never stops and the
//     policy degenerates.
//
// The bandit policy is tabular, π_θ(·|x) = softmax(θ[x,:]); tsdpo's loss sees its log-probs as one-token sequences
// and we chain d loss / d log π through the log-softmax by hand: ∂log π(j|x)/∂θ[x,k] = δ_jk − π(k|x).
//
// Two versions of "the preferences", each for what it can show:
//   - exact: the expected DPO loss over every (x, y_w, y_l), weighted by its probability. Its minimiser is exactly
//     π*, so the only error left is the optimiser's residual and the assertion can be tight.
//   - sampled: N pairs drawn from Bradley–Terry with a seeded generator, as the issue describes; DPO then converges
//     to the empirical minimiser, which differs from π* by sampling noise whose size we derive (the inverse Fisher
//     information of the Bradley–Terry likelihood) and assert against.

import { test } from "node:test";
import assert from "node:assert/strict";
import { jsBackend as be } from "../src/backend/js/kernels.js";
import type { Buf } from "../src/backend/contract.js";
import type { PreferenceBatch } from "../src/data/batch.js";
import { buildBatch } from "../src/data/batch.js";
import { tokenizePairs } from "../src/data/tokenize.js";
import type { PreferencePair } from "../src/data/types.js";
import { loadModel } from "../src/io/load.js";
import { type DpoLossConfig, type PairBatch, computeLoss, defaultLossConfig } from "../src/loss/index.js";
import { reduceLogps, reduceLogpsBackward } from "../src/loss/reduce.js";
import { type Model, backward, cloneModel, createActivations, createGradients, forward } from "../src/model/decoder.js";
import { assertAllClose, maxAbsDiff, rng, storiesGguf } from "./helpers.js";

// ---------------------------------------------------------------------------------------------------------------
// The bandit: X contexts, Y actions. Context 0 is built so that its best action (r = 1.0) is rare under π_ref
// (0.05): the unweighted update then collapses onto action 1 instead, which is what "degenerates" looks like here.

const X = 3;
const Y = 4;
const BETA = 0.5;
const RHO = [0.5, 0.3, 0.2]; // context distribution ρ(x); not uniform, so per-context weighting is exercised
const REWARD = [
  [1.0, 0.6, -0.5, -1.0],
  [-0.3, 0.8, 0.0, 0.5],
  [0.4, -0.6, 1.2, -0.2],
];
const PI_REF = [
  [0.05, 0.5, 0.2, 0.25],
  [0.4, 0.1, 0.3, 0.2],
  [0.15, 0.45, 0.1, 0.3],
];
const LOG_REF = Float64Array.from(PI_REF.flat(), Math.log); // (X·Y)
const R_FLAT = Float64Array.from(REWARD.flat()); // (X·Y)

const sigma = (z: number): number => 1 / (1 + Math.exp(-z)); // independent of src/loss/math.ts on purpose

/** Row-wise log-softmax of a (X, Y) table. */
function logSoftmax(theta: ArrayLike<number>): Float64Array {
  const out = new Float64Array(X * Y);
  for (let x = 0; x < X; x++) {
    let m = -Infinity;
    for (let y = 0; y < Y; y++) m = Math.max(m, theta[x * Y + y]!);
    let s = 0;
    for (let y = 0; y < Y; y++) s += Math.exp(theta[x * Y + y]! - m);
    const lse = m + Math.log(s);
    for (let y = 0; y < Y; y++) out[x * Y + y] = theta[x * Y + y]! - lse;
  }
  return out;
}

/** log π*(y|x) = log π_ref(y|x) + r(x,y)/β − log Z(x) (Eq. 4), for any β. */
function optimalLogPolicy(beta: number): Float64Array {
  return logSoftmax(LOG_REF.map((l, i) => l + R_FLAT[i]! / beta));
}

/** KL(p ‖ q) per context, from log-probs. */
function kl(logP: Float64Array, logQ: Float64Array): Float64Array {
  const out = new Float64Array(X);
  for (let x = 0; x < X; x++)
    for (let y = 0; y < Y; y++) {
      const i = x * Y + y;
      out[x] += Math.exp(logP[i]!) * (logP[i]! - logQ[i]!);
    }
  return out;
}

/** Distinct (x, y_w, y_l) with weights that sum to 1: the preference distribution the loss averages over. */
interface Triples {
  x: Int32Array; // (B)
  w: Int32Array; // (B) chosen action
  l: Int32Array; // (B) rejected action
  weight: Float64Array; // (B)
}

/**
 * The exact preference distribution: x ~ ρ, y1, y2 ~ π_ref(·|x) independently (pairs sampled from the reference,
 * as the paper's π_SFT), winner by Bradley–Terry: P(x, w ≻ l) = ρ(x)·2·π_ref(w|x)·π_ref(l|x)·σ(r_w − r_l).
 * Ties y1 = y2 are left out (tsdpo's data pipeline drops identical answers too); that only rescales the weights.
 */
function exactTriples(): Triples {
  const xs: number[] = [], ws: number[] = [], ls: number[] = [], ps: number[] = [];
  for (let x = 0; x < X; x++)
    for (let w = 0; w < Y; w++)
      for (let l = 0; l < Y; l++) {
        if (w === l) continue;
        xs.push(x); ws.push(w); ls.push(l);
        ps.push(RHO[x]! * 2 * PI_REF[x]![w]! * PI_REF[x]![l]! * sigma(REWARD[x]![w]! - REWARD[x]![l]!));
      }
  const total = ps.reduce((a, b) => a + b, 0);
  return { x: Int32Array.from(xs), w: Int32Array.from(ws), l: Int32Array.from(ls), weight: Float64Array.from(ps, (p) => p / total) };
}

function sampleIndex(p: readonly number[], u: number): number {
  let c = 0;
  for (let i = 0; i < p.length; i++) if (u < (c += p[i]!)) return i;
  return p.length - 1;
}

/** N Bradley–Terry preference pairs from the same process as exactTriples, ties dropped. Returns (x, w, l) lists. */
function samplePairs(n: number, seed: number): { x: Int32Array; w: Int32Array; l: Int32Array } {
  const r = rng(seed);
  const xs: number[] = [], ws: number[] = [], ls: number[] = [];
  for (let k = 0; k < n; k++) {
    const x = sampleIndex(RHO, r());
    const y1 = sampleIndex(PI_REF[x]!, r());
    const y2 = sampleIndex(PI_REF[x]!, r());
    if (y1 === y2) continue;
    const firstWins = r() < sigma(REWARD[x]![y1]! - REWARD[x]![y2]!);
    xs.push(x); ws.push(firstWins ? y1 : y2); ls.push(firstWins ? y2 : y1);
  }
  return { x: Int32Array.from(xs), w: Int32Array.from(ws), l: Int32Array.from(ls) };
}

/** The empirical distribution of sampled pairs as weighted distinct triples (counts / number of pairs). */
function aggregate(p: { x: Int32Array; w: Int32Array; l: Int32Array }): Triples {
  const counts = new Float64Array(X * Y * Y);
  for (let k = 0; k < p.x.length; k++) counts[(p.x[k]! * Y + p.w[k]!) * Y + p.l[k]!]++;
  const xs: number[] = [], ws: number[] = [], ls: number[] = [], ps: number[] = [];
  for (let x = 0; x < X; x++)
    for (let w = 0; w < Y; w++)
      for (let l = 0; l < Y; l++) {
        const c = counts[(x * Y + w) * Y + l]!;
        if (c === 0) continue;
        xs.push(x); ws.push(w); ls.push(l); ps.push(c / p.x.length);
      }
  return { x: Int32Array.from(xs), w: Int32Array.from(ws), l: Int32Array.from(ls), weight: Float64Array.from(ps) };
}

const DPO: DpoLossConfig = { ...defaultLossConfig(), beta: BETA };

/** The bandit pairs as tsdpo's loss sees them: one-token "sequences" whose log-probs are table entries. */
function pairBatch(logp: Float64Array, t: { x: Int32Array; w: Int32Array; l: Int32Array }): PairBatch {
  const B = t.x.length;
  return {
    policyChosenLogps: Float64Array.from(t.x, (x, i) => logp[x * Y + t.w[i]!]!),
    policyRejectedLogps: Float64Array.from(t.x, (x, i) => logp[x * Y + t.l[i]!]!),
    refChosenLogps: Float64Array.from(t.x, (x, i) => LOG_REF[x * Y + t.w[i]!]!),
    refRejectedLogps: Float64Array.from(t.x, (x, i) => LOG_REF[x * Y + t.l[i]!]!),
    chosenLengths: new Int32Array(B).fill(1),
    rejectedLengths: new Int32Array(B).fill(1),
  };
}

/** d objective / d θ from d objective / d log π (both (X, Y)): dθ[x,k] = dlogp[x,k] − π(k|x)·Σ_j dlogp[x,j]. */
function chainLogSoftmax(dLogp: Float64Array, logp: Float64Array): Float64Array {
  const d = new Float64Array(X * Y);
  for (let x = 0; x < X; x++) {
    let s = 0;
    for (let y = 0; y < Y; y++) s += dLogp[x * Y + y]!;
    for (let y = 0; y < Y; y++) d[x * Y + y] = dLogp[x * Y + y]! - Math.exp(logp[x * Y + y]!) * s;
  }
  return d;
}

/**
 * The weighted DPO loss Σ_i weight_i·ℓ_i and its θ-gradient, with ℓ_i and dℓ_i/dlog π from tsdpo's computeLoss.
 * computeLoss returns the gradient of the batch mean (1/B)Σℓ_i, so dℓ_i/dlog π = B·dPolicy*[i].
 */
function dpoLossAndGrad(theta: Float64Array, t: Triples): { loss: number; dTheta: Float64Array } {
  const logp = logSoftmax(theta);
  const B = t.x.length;
  const out = computeLoss(DPO, pairBatch(logp, t));
  const dLogp = new Float64Array(X * Y);
  let loss = 0;
  for (let i = 0; i < B; i++) {
    loss += t.weight[i]! * out.losses[i]!;
    dLogp[t.x[i]! * Y + t.w[i]!] += B * t.weight[i]! * out.dPolicyChosenLogps[i]!;
    dLogp[t.x[i]! * Y + t.l[i]!] += B * t.weight[i]! * out.dPolicyRejectedLogps[i]!;
  }
  return { loss, dTheta: chainLogSoftmax(dLogp, logp) };
}

/** "Unlikelihood": descend −β·E[log π(y_w|x) − log π(y_l|x)], i.e. the DPO gradient with σ(r̂_l − r̂_w) dropped. */
function unlikelihoodGrad(theta: Float64Array, t: Triples): Float64Array {
  const logp = logSoftmax(theta);
  const dLogp = new Float64Array(X * Y);
  for (let i = 0; i < t.x.length; i++) {
    dLogp[t.x[i]! * Y + t.w[i]!] -= BETA * t.weight[i]!;
    dLogp[t.x[i]! * Y + t.l[i]!] += BETA * t.weight[i]!;
  }
  return chainLogSoftmax(dLogp, logp);
}

/**
 * Step size from the smoothness of the loss: each pair's Hessian in θ is β²σ(z)σ(−z)(e_w − e_l)(e_w − e_l)ᵀ with
 * σσ ≤ 1/4 and ‖e_w − e_l‖² = 2, so context x's block is bounded by β²·m(x)/2, m(x) = Σ of its weights. Plain GD
 * with lr = 1/L, L the largest such bound, decreases the loss every step. The unlikelihood run reuses it.
 */
function stepSize(t: Triples): number {
  const m = new Float64Array(X);
  for (let i = 0; i < t.x.length; i++) m[t.x[i]!] += t.weight[i]!;
  return 1 / ((BETA * BETA * Math.max(...m)) / 2);
}

const maxAbs = (a: ArrayLike<number>): number => maxAbsDiff(a, new Float64Array(a.length));

/** Full-batch gradient descent on the weighted DPO loss from θ = log π_ref (π_0 = π_ref). */
function runDpo(t: Triples, steps: number, onStep?: (theta: Float64Array) => void): { theta: Float64Array; loss: number; gradMax: number } {
  const theta = Float64Array.from(LOG_REF);
  const lr = stepSize(t);
  let last = dpoLossAndGrad(theta, t);
  for (let s = 0; s < steps; s++) {
    for (let i = 0; i < theta.length; i++) theta[i] -= lr * last.dTheta[i]!;
    last = dpoLossAndGrad(theta, t);
    onStep?.(theta);
  }
  return { theta, loss: last.loss, gradMax: maxAbs(last.dTheta) };
}

/**
 * Per-context Hessian of the expected loss at π* (= the Fisher information of the Bradley–Terry likelihood there,
 * because the model is well specified): H_x = Σ weight·β²·σ(r_w − r_l)σ(r_l − r_w)·(e_w − e_l)(e_w − e_l)ᵀ,
 * since at π* the DPO logit β(h_w − h_l) equals r_w − r_l. Returned as (H_x + 11ᵀ)⁻¹: H_x is singular only along 1
 * (a shift of θ[x,:] leaves π unchanged), and for any J with J·1 = 0, J(H + 11ᵀ)⁻¹Jᵀ = J H⁺ Jᵀ.
 */
function fisherInverses(t: Triples): Float64Array[] {
  const H = Array.from({ length: X }, () => new Float64Array(Y * Y).fill(1));
  for (let i = 0; i < t.x.length; i++) {
    const x = t.x[i]!, w = t.w[i]!, l = t.l[i]!;
    const z = REWARD[x]![w]! - REWARD[x]![l]!;
    const c = t.weight[i]! * BETA * BETA * sigma(z) * sigma(-z);
    const h = H[x]!;
    h[w * Y + w] += c; h[l * Y + l] += c; h[w * Y + l] -= c; h[l * Y + w] -= c;
  }
  return H.map(invert);
}

/** Inverse of a small dense (Y, Y) matrix by Gauss–Jordan with partial pivoting. */
function invert(a: Float64Array): Float64Array {
  const n = Y;
  const m = Float64Array.from(a);
  const inv = new Float64Array(n * n);
  for (let i = 0; i < n; i++) inv[i * n + i] = 1;
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(m[r * n + c]!) > Math.abs(m[p * n + c]!)) p = r;
    for (let k = 0; k < n; k++) {
      [m[c * n + k], m[p * n + k]] = [m[p * n + k]!, m[c * n + k]!];
      [inv[c * n + k], inv[p * n + k]] = [inv[p * n + k]!, inv[c * n + k]!];
    }
    const d = m[c * n + c]!;
    for (let k = 0; k < n; k++) { m[c * n + k] /= d; inv[c * n + k] /= d; }
    for (let r = 0; r < n; r++) {
      if (r === c) continue;
      const f = m[r * n + c]!;
      for (let k = 0; k < n; k++) { m[r * n + k] -= f * m[c * n + k]!; inv[r * n + k] -= f * inv[c * n + k]!; }
    }
  }
  return inv;
}

/** vᵀ A v for a (Y, Y) matrix. */
function quad(a: Float64Array, v: Float64Array): number {
  let s = 0;
  for (let i = 0; i < Y; i++) for (let j = 0; j < Y; j++) s += v[i]! * a[i * Y + j]! * v[j]!;
  return s;
}

/**
 * Asymptotic standard deviations of the empirical minimiser over n pairs (Cov θ̂ ≈ H⁺/n, the delta method):
 * log π(y|x), gradient e_y − π*(·|x); and the centred implicit reward β(h_y − mean_k h_k), gradient β(e_y − 1/Y).
 */
function samplingSd(t: Triples, n: number, logStar: Float64Array): { logp: Float64Array; reward: Float64Array } {
  const inv = fisherInverses(t);
  const logp = new Float64Array(X * Y);
  const reward = new Float64Array(X * Y);
  for (let x = 0; x < X; x++)
    for (let y = 0; y < Y; y++) {
      const j = new Float64Array(Y);
      const c = new Float64Array(Y);
      for (let k = 0; k < Y; k++) {
        j[k] = (k === y ? 1 : 0) - Math.exp(logStar[x * Y + k]!);
        c[k] = BETA * ((k === y ? 1 : 0) - 1 / Y);
      }
      logp[x * Y + y] = Math.sqrt(quad(inv[x]!, j) / n);
      reward[x * Y + y] = Math.sqrt(quad(inv[x]!, c) / n);
    }
  return { logp, reward };
}

/**
 * The optimiser's remaining distance to the minimiser in log-prob space, by one Newton step J·H⁺·∇L per context
 * (with H at π*, which is where the iterate is): the loss is smooth and strictly convex modulo the shift, so near
 * the optimum this is the distance to first order.
 */
function newtonResidual(t: Triples, theta: Float64Array): number {
  const inv = fisherInverses(t);
  const logp = logSoftmax(theta);
  const g = dpoLossAndGrad(theta, t).dTheta;
  let worst = 0;
  for (let x = 0; x < X; x++) {
    const step = new Float64Array(Y);
    for (let i = 0; i < Y; i++) for (let k = 0; k < Y; k++) step[i] += inv[x]![i * Y + k]! * g[x * Y + k]!;
    let meanP = 0;
    for (let k = 0; k < Y; k++) meanP += Math.exp(logp[x * Y + k]!) * step[k]!;
    for (let y = 0; y < Y; y++) worst = Math.max(worst, Math.abs(step[y]! - meanP));
  }
  return worst;
}

/** r̂(x,y) = β·log(π/π_ref), and its per-context centred version. */
function implicitReward(logp: Float64Array): { raw: Float64Array; centred: Float64Array } {
  const raw = logp.map((l, i) => BETA * (l - LOG_REF[i]!));
  return { raw, centred: centreRows(raw) };
}

function centreRows(a: Float64Array): Float64Array {
  const out = new Float64Array(a.length);
  for (let x = 0; x < X; x++) {
    let m = 0;
    for (let y = 0; y < Y; y++) m += a[x * Y + y]! / Y;
    for (let y = 0; y < Y; y++) out[x * Y + y] = a[x * Y + y]! - m;
  }
  return out;
}

// Converged DPO runs, shared by the bandit tests (a few hundred milliseconds each).
const STEPS = 4000;
const exact = exactTriples();
let exactRun: ReturnType<typeof runDpo> | null = null;
const exactDpo = (): ReturnType<typeof runDpo> => (exactRun ??= runDpo(exact, STEPS));
const N_SAMPLES = 200_000;
const SEED = 20230529;
const sampled = samplePairs(N_SAMPLES, SEED);
const sampledTriples = aggregate(sampled);
let sampledRun: ReturnType<typeof runDpo> | null = null;
const sampledDpo = (): ReturnType<typeof runDpo> => (sampledRun ??= runDpo(sampledTriples, STEPS));

// ---------------------------------------------------------------------------------------------------------------
// 1. Bandit optimum

test("bandit, exact expected loss: DPO from π_ref converges to π_ref·exp(r/β)/Z", () => {
  const run = exactDpo();
  const logp = logSoftmax(run.theta);
  const logStar = optimalLogPolicy(BETA);
  // Convergence first: the Newton estimate of the remaining distance is what bounds the error at this point.
  const residual = newtonResidual(exact, run.theta);
  assert.ok(residual < 1e-13, `optimiser residual ${residual} (max |∇θ| ${run.gradMax}) after ${STEPS} steps`);
  // Tolerance 1e-12: the residual bound above (1e-13) plus float64 rounding in log-probs of size ≤ 5 (~1e-15),
  // with a 10x margin. A wrong β scaling or a wrong sign in the loss lands O(0.1–1) away (see the checks below).
  assertAllClose(logp, logStar, 1e-12, 0, "log π after DPO vs log π*");
  // The loss at π* is the Bradley–Terry entropy Σ weight·(−log σ(r_w − r_l)), since β(h_w − h_l) = r_w − r_l there.
  let entropy = 0;
  for (let i = 0; i < exact.x.length; i++)
    entropy -= exact.weight[i]! * Math.log(sigma(REWARD[exact.x[i]!]![exact.w[i]!]! - REWARD[exact.x[i]!]![exact.l[i]!]!));
  assert.ok(Math.abs(run.loss - entropy) < 1e-12, `loss ${run.loss} vs Bradley–Terry entropy ${entropy}`);
  // The target is far from the start and from the optimum of another β, so the tolerance discriminates.
  assert.ok(maxAbsDiff(LOG_REF, logStar) > 1, "π* must differ from π_ref");
  assert.ok(maxAbsDiff(optimalLogPolicy(2 * BETA), logStar) > 0.5, "π* must depend on β");
  console.log(`bandit exact: ${exact.x.length} triples, lr ${stepSize(exact).toFixed(2)}, ${STEPS} steps: max|∇θ| ${run.gradMax.toExponential(2)}, ` +
    `Newton residual ${residual.toExponential(2)}, max|log π − log π*| ${maxAbsDiff(logp, logStar).toExponential(2)}, loss − entropy ${(run.loss - entropy).toExponential(2)}`);
});

test("bandit, sampled Bradley–Terry pairs: DPO converges to π* within the derived sampling error", () => {
  const pairs = sampled.x.length;
  // The aggregation is only a speed-up: computeLoss on all sampled pairs as one batch gives the same loss and
  // θ-gradient as the weighted distinct triples (at an arbitrary θ; float64 sums of ~1.3e5 terms of O(1), hence 1e-12).
  const theta = Float64Array.from(LOG_REF, (l, i) => l + 0.3 * Math.sin(i + 1));
  const full = computeLoss(DPO, pairBatch(logSoftmax(theta), sampled));
  const dLogp = new Float64Array(X * Y);
  for (let i = 0; i < pairs; i++) {
    dLogp[sampled.x[i]! * Y + sampled.w[i]!] += full.dPolicyChosenLogps[i]!;
    dLogp[sampled.x[i]! * Y + sampled.l[i]!] += full.dPolicyRejectedLogps[i]!;
  }
  const agg = dpoLossAndGrad(theta, sampledTriples);
  assert.ok(Math.abs(full.loss - agg.loss) < 1e-12, `full-batch loss ${full.loss} vs aggregated ${agg.loss}`);
  assertAllClose(chainLogSoftmax(dLogp, logSoftmax(theta)), agg.dTheta, 1e-12, 0, "full-batch vs aggregated θ-gradient");

  const run = sampledDpo();
  assert.ok(newtonResidual(sampledTriples, run.theta) < 1e-10, "optimiser converged to the empirical minimiser");
  const logp = logSoftmax(run.theta);
  const logStar = optimalLogPolicy(BETA);
  const sd = samplingSd(exact, pairs, logStar);
  // Tolerance: 4 standard deviations per entry, from the asymptotic normality of the Bradley–Terry MLE
  // (Cov ≈ H⁺/n, H the Fisher information above). By a union bound over the 12 entries, a correct DPO fails this
  // for at most 12·6.3e-5 < 0.1% of seeds; the seed is fixed, so the run is deterministic.
  let worstZ = 0;
  for (let i = 0; i < X * Y; i++) worstZ = Math.max(worstZ, Math.abs(logp[i]! - logStar[i]!) / sd.logp[i]!);
  assert.ok(worstZ < 4, `max |log π − log π*| / sd = ${worstZ} (sd ${Math.min(...sd.logp).toFixed(4)}..${Math.max(...sd.logp).toFixed(4)})`);
  // Power: π_ref and the optimum for 2β sit many standard deviations away, so the band is not vacuous.
  const z = (a: Float64Array): number => Math.max(...a.map((v, i) => Math.abs(v - logStar[i]!) / sd.logp[i]!));
  assert.ok(z(LOG_REF) > 20, `π_ref is only ${z(LOG_REF)} sd from π*`);
  assert.ok(z(optimalLogPolicy(2 * BETA)) > 20, `π*(2β) is only ${z(optimalLogPolicy(2 * BETA))} sd from π*`);
  console.log(`bandit sampled: ${pairs} pairs (seed ${SEED}), sd ${Math.min(...sd.logp).toFixed(4)}..${Math.max(...sd.logp).toFixed(4)}, ` +
    `max|log π − log π*| ${maxAbsDiff(logp, logStar).toFixed(4)}, max z ${worstZ.toFixed(2)}; z of π_ref ${z(LOG_REF).toFixed(0)}, of π*(2β) ${z(optimalLogPolicy(2 * BETA)).toFixed(0)}`);
});

// ---------------------------------------------------------------------------------------------------------------
// 3. Implicit reward

test("bandit: the implicit reward β·log(π/π_ref) recovers r up to the per-context constant −β·log Z(x)", () => {
  const logStar = optimalLogPolicy(BETA);
  // Exact expectation: after convergence r̂ = r − β log Z(x) entry by entry. Tolerance β·1e-12 from the log-prob
  // tolerance of the optimum test (r̂ is β times a log-prob difference with a fixed reference), doubled for centring.
  const exactHat = implicitReward(logSoftmax(exactDpo().theta));
  assertAllClose(exactHat.centred, centreRows(R_FLAT), 2 * BETA * 1e-12, 0, "centred r̂ vs centred r (exact)");
  for (let x = 0; x < X; x++) {
    let z = 0;
    for (let y = 0; y < Y; y++) z += PI_REF[x]![y]! * Math.exp(REWARD[x]![y]! / BETA);
    const c = -BETA * Math.log(z);
    for (let y = 0; y < Y; y++) {
      const d = exactHat.raw[x * Y + y]! - REWARD[x]![y]!;
      assert.ok(Math.abs(d - c) < 2 * BETA * 1e-12, `r̂ − r at (${x},${y}) is ${d}, expected −β log Z = ${c}`);
    }
  }
  // The rewards are not recoverable beyond that: the per-context offsets differ (a per-context offset f(x) leaves the Bradley–Terry preferences unchanged, Lemma 1).
  const offsets = Array.from({ length: X }, (_, x) => exactHat.raw[x * Y]! - REWARD[x]![0]!);
  assert.ok(Math.max(...offsets) - Math.min(...offsets) > 0.1, `offsets ${offsets}`);

  // Sampled pairs: the centred r̂ within 4 derived standard deviations (same argument as the optimum test).
  const sampledHat = implicitReward(logSoftmax(sampledDpo().theta));
  const sd = samplingSd(exact, sampled.x.length, logStar).reward;
  const rc = centreRows(R_FLAT);
  let worstZ = 0;
  for (let i = 0; i < X * Y; i++) worstZ = Math.max(worstZ, Math.abs(sampledHat.centred[i]! - rc[i]!) / sd[i]!);
  assert.ok(worstZ < 4, `max |centred r̂ − centred r| / sd = ${worstZ}`);
  console.log(`implicit reward: exact max|centred r̂ − centred r| ${maxAbsDiff(exactHat.centred, centreRows(R_FLAT)).toExponential(2)}, ` +
    `offsets −β log Z ${offsets.map((o) => o.toFixed(4))}; sampled max|diff| ${maxAbsDiff(sampledHat.centred, rc).toFixed(4)}, max z ${worstZ.toFixed(2)}`);
});

// ---------------------------------------------------------------------------------------------------------------
// 4. The dropped weighting

test("bandit: unweighted unlikelihood training degenerates, DPO settles at π* with KL(π*‖π_ref)", () => {
  const logStar = optimalLogPolicy(BETA);
  const klStar = kl(logStar, LOG_REF);
  const lr = stepSize(exact);

  // The unweighted θ-gradient is −β Σ weight·(e_w − e_l): ∇log π(y_w) − ∇log π(y_l) = e_w − e_l for a softmax,
  // whatever θ is. It is a nonzero constant, so the update never stops and θ moves along a straight line.
  const theta = Float64Array.from(LOG_REF);
  const g0 = unlikelihoodGrad(theta, exact);
  const klRefPi: number[] = []; // KL(π_ref ‖ π_t), context 0
  const klPiRef: number[] = []; // KL(π_t ‖ π_ref), context 0
  const worstLogp: number[] = []; // log π_t of context 0's most dispreferred action
  const top = Array.from({ length: X }, (_, x) => argmax(Array.from({ length: Y }, (_, y) => -g0[x * Y + y]!)));
  const bottom = Array.from({ length: X }, (_, x) => argmax(Array.from({ length: Y }, (_, y) => g0[x * Y + y]!)));
  let gradDrift = 0;
  for (let s = 0; s < STEPS; s++) {
    const g = unlikelihoodGrad(theta, exact);
    gradDrift = Math.max(gradDrift, maxAbsDiff(g, g0));
    for (let i = 0; i < theta.length; i++) theta[i] -= lr * g[i]!;
    const logp = logSoftmax(theta);
    klRefPi.push(kl(LOG_REF, logp)[0]!);
    klPiRef.push(kl(logp, LOG_REF)[0]!);
    worstLogp.push(logp[bottom[0]!]!);
  }
  const logp = logSoftmax(theta);
  // Rounding only: the gradient at step 4000 is the gradient at step 0 (1e-15 is float64 rounding of O(0.1) sums).
  assert.ok(gradDrift < 1e-15, `unlikelihood gradient changed by ${gradDrift}`);
  assert.ok(maxAbs(g0) > 0.01, "and it is not zero");
  // Collapse: each context puts all its mass on one action (to within e^{-lr·steps·gap}; 1e-9 is far above that).
  for (let x = 0; x < X; x++) assert.ok(Math.exp(logp[x * Y + top[x]!]!) > 1 - 1e-9, `context ${x} did not collapse`);
  // In context 0 that action is not even the best one: the net-win direction favours frequent actions, and
  // action 0 (r = 1.0, π_ref = 0.05) loses to action 1 (r = 0.6). DPO's π* keeps action 0's mass.
  assert.equal(top[0], 1);
  assert.ok(Math.exp(logStar[0]!) > 0.1, `π*(0|0) = ${Math.exp(logStar[0]!)}`);
  // Divergence without bound: the dispreferred log-prob falls linearly at exactly lr·(g_bottom − g_top) per step
  // (the log-normaliser follows θ_top once it dominates), so it passes any bound given enough steps. Tolerance
  // 1e-9 per 1000 steps: the remaining curvature of log-sum-exp is e^{-lr·t·gap} with t ≥ 3000, i.e. negligible.
  const slope = lr * (g0[bottom[0]!]! - g0[top[0]!]!);
  const measured = (worstLogp[STEPS - 1]! - worstLogp[STEPS - 1001]!) / 1000;
  assert.ok(Math.abs(measured + slope) < 1e-9, `log π slope ${measured} vs predicted ${-slope}`);
  assert.ok(worstLogp[STEPS - 1]! < -100, `log π(worst) = ${worstLogp[STEPS - 1]}`);
  // KL(π_ref ‖ π_t) grows monotonically and without bound (it contains −π_ref(y)·log π_t(y) for every y).
  for (let s = 1; s < STEPS; s++) assert.ok(klRefPi[s]! > klRefPi[s - 1]!, `KL(π_ref‖π) fell at step ${s}`);
  assert.ok(klRefPi[STEPS - 1]! > 50, `KL(π_ref‖π) = ${klRefPi[STEPS - 1]}`);
  // KL(π_t ‖ π_ref) is bounded on a finite action set; it converges to that of a point mass, −log π_ref(top),
  // more than the KL-regularised optimum spends in that context.
  assert.ok(Math.abs(klPiRef[STEPS - 1]! + Math.log(PI_REF[0]![top[0]!]!)) < 1e-9, `KL(π‖π_ref) = ${klPiRef[STEPS - 1]}`);
  assert.ok(klPiRef[STEPS - 1]! > klStar[0]! + 0.1, `unlikelihood KL ${klPiRef[STEPS - 1]} vs KL* ${klStar[0]}`);
  // And it is worse at the objective DPO solves, J(π) = E_π[r] − β·KL(π‖π_ref), maximised by π* (J* = β log Z).
  const objective = (lp: Float64Array): number => {
    const k = kl(lp, LOG_REF);
    let j = 0;
    for (let x = 0; x < X; x++) {
      let er = 0;
      for (let y = 0; y < Y; y++) er += Math.exp(lp[x * Y + y]!) * REWARD[x]![y]!;
      j += RHO[x]! * (er - BETA * k[x]!);
    }
    return j;
  };
  assert.ok(objective(logStar) - objective(logp) > 0.1, `J(π*) ${objective(logStar)} vs J(unlikelihood) ${objective(logp)}`);

  // DPO with the same step size and number of steps: the weight σ(r̂_l − r̂_w) shrinks each pair's push as its
  // implicit reward margin reaches r_w − r_l, the θ-gradient vanishes, and the KL settles at KL(π*‖π_ref).
  let klMax = 0;
  const run = runDpo(exact, STEPS, (th) => void (klMax = Math.max(klMax, ...kl(logSoftmax(th), LOG_REF))));
  const dpoKl = kl(logSoftmax(run.theta), LOG_REF);
  // 1e-11: KL is a smooth function of log π with derivative O(1) (|log π/π_ref| + 1 ≤ 6 here), and log π is
  // within 1e-12 of π* (optimum test).
  assertAllClose(dpoKl, klStar, 1e-11, 0, "KL(π_DPO‖π_ref) vs KL(π*‖π_ref)");
  assert.ok(run.gradMax < 1e-12, `DPO θ-gradient ${run.gradMax} did not vanish`);
  console.log(
    `unlikelihood after ${STEPS} steps: log π(worst|x0) ${worstLogp[STEPS - 1]!.toFixed(1)}, KL(π_ref‖π) ${klRefPi[STEPS - 1]!.toFixed(1)}, ` +
      `KL(π‖π_ref) ${klPiRef[STEPS - 1]!.toFixed(4)}, J ${objective(logp).toFixed(4)}; ` +
      `DPO: KL ${Array.from(dpoKl, (v) => v.toFixed(4))} (KL* ${Array.from(klStar, (v) => v.toFixed(4))}, peak ${klMax.toFixed(4)}), J* ${objective(logStar).toFixed(4)}`,
  );
});

function argmax(a: readonly number[]): number {
  let b = 0;
  for (let i = 1; i < a.length; i++) if (a[i]! > a[b]!) b = i;
  return b;
}

// ---------------------------------------------------------------------------------------------------------------
// 2. Gradient identity on stories260K

/** Story openings with a happy and a sad continuation; which one is "chosen" does not matter for the identity. */
const STORY_PAIRS: { prompt: string; chosen: string; rejected: string }[] = [
  { prompt: "Once upon a time, there was a little girl named Lily.", chosen: " She loved to play in the park with her dog.", rejected: " She was sad." },
  { prompt: "Tom had a big red ball.", chosen: " He shared it with his friend and they laughed.", rejected: " It broke and he cried all day." },
  { prompt: "The cat sat by the window.", chosen: " It was happy.", rejected: " It saw a bird and wanted to catch it, but the bird flew away." },
];

/** Σ_t mask·logp per row, computed here rather than by reduceLogps. */
function rowSums(logp: ArrayLike<number>, mask: ArrayLike<number>, R: number, T: number): Float64Array {
  const out = new Float64Array(R);
  for (let r = 0; r < R; r++) for (let t = 0; t < T; t++) out[r] += mask[r * T + t]! * logp[r * T + t]!;
  return out;
}

/**
 * tsdpo's gradient path, as the trainer runs it: forward → reduceLogps → computeLoss → reduceLogpsBackward →
 * backward. With withGrad false, only the loss.
 */
function tsdpoGradient(
  policy: Model, refSums: Float64Array, batch: PreferenceBatch, cfg: DpoLossConfig, withGrad = true,
): { loss: number; grads: Buf | null; logp: Float64Array } {
  const { B, T } = batch;
  const R = 2 * B;
  const acts = createActivations(policy, R, T);
  const logp = forward(be, policy, acts, batch.ids, batch.targets, R, T);
  const sums = new Float64Array(R);
  const lengths = new Int32Array(R);
  reduceLogps(sums, lengths, logp, batch.mask, B, T, null);
  const out = computeLoss(cfg, {
    policyChosenLogps: sums.subarray(0, B), policyRejectedLogps: sums.subarray(B, R),
    refChosenLogps: refSums.subarray(0, B), refRejectedLogps: refSums.subarray(B, R),
    chosenLengths: lengths.subarray(0, B), rejectedLengths: lengths.subarray(B, R),
  });
  if (!withGrad) return { loss: out.loss, grads: null, logp: Float64Array.from(logp) };
  const dlogp = new Float64Array(R * T);
  reduceLogpsBackward(dlogp, out.dPolicyChosenLogps, out.dPolicyRejectedLogps, batch.mask, lengths, B, T, null);
  const g = createGradients(policy);
  backward(be, policy, acts, g, dlogp);
  return { loss: out.loss, grads: g.grads, logp: Float64Array.from(logp) };
}

test("gradient identity on stories260K: ∇L_DPO = −β·mean σ(r̂_l − r̂_w)·(∇log π(y_w) − ∇log π(y_l))", () => {
  const { model: policy, tokenizer } = loadModel(storiesGguf, Float64Array);
  const pairs: PreferencePair[] = STORY_PAIRS.map((p, i) => ({ ...p, shape: "standard", source: { file: "theory", format: "jsonl", line: i + 1, index: i } }));
  const tokenized = tokenizePairs(pairs, tokenizer);
  assert.equal(tokenized.pairs.length, STORY_PAIRS.length);
  const batch = buildBatch(tokenized.pairs, { padId: tokenizer.eosId ?? 0 });
  const { B, T } = batch;
  const R = 2 * B;
  const beta = 0.5;
  const cfg: DpoLossConfig = { ...defaultLossConfig(), beta };

  // A reference that differs from the policy (seeded uniform noise of ±0.02 on every weight), so the weights
  // σ(r̂_l − r̂_w) are spread out rather than all 1/2, as they are at step 0 of training.
  const ref = cloneModel(policy);
  const r = rng(7);
  for (let i = 0; i < ref.params.length; i++) ref.params[i] += 0.02 * (2 * r() - 1);
  const refActs = createActivations(ref, R, T);
  const refLogp = forward(be, ref, refActs, batch.ids, batch.targets, R, T);
  const refSumsTsdpo = new Float64Array(R);
  reduceLogps(refSumsTsdpo, new Int32Array(R), refLogp, batch.mask, B, T, null);
  const refSums = rowSums(refLogp, batch.mask, R, T);

  const got = tsdpoGradient(policy, refSumsTsdpo, batch, cfg);
  const grads = got.grads!;

  // The right-hand side, from independent pieces: r̂ from our own masked sums, σ from its definition, and
  // ∇log π(y|x) of each sequence on its own: a forward of that row alone, then backward with dlogp = its mask.
  const polSums = rowSums(got.logp, batch.mask, R, T);
  const rhat = polSums.map((s, i) => beta * (s - refSums[i]!));
  const weights = Array.from({ length: B }, (_, i) => sigma(rhat[B + i]! - rhat[i]!));
  const acts = createActivations(policy, 1, T);
  const rowGrads: Buf[] = [];
  for (let row = 0; row < R; row++) {
    const rowIds = batch.ids.subarray(row * T, (row + 1) * T);
    const rowTargets = batch.targets.subarray(row * T, (row + 1) * T);
    forward(be, policy, acts, rowIds, rowTargets, 1, T);
    const g = createGradients(policy);
    backward(be, policy, acts, g, Float64Array.from(batch.mask.subarray(row * T, (row + 1) * T)));
    rowGrads.push(g.grads);
  }
  const want = new Float64Array(policy.params.length);
  const unweighted = new Float64Array(policy.params.length); // the same with σ replaced by 1/2 (policy = reference)
  for (let i = 0; i < B; i++)
    for (let j = 0; j < want.length; j++) {
      const diff = rowGrads[i]![j]! - rowGrads[B + i]![j]!;
      want[j] += (-beta * weights[i]! * diff) / B;
      unweighted[j] += (-beta * 0.5 * diff) / B;
    }

  // The weights must matter for this to test them: some pairs the implicit reward already ranks right (small
  // weight), some it ranks wrong (weight near 1), none at the step-0 value 1/2.
  assert.ok(Math.min(...weights) < 0.3 && Math.max(...weights) > 0.7, `σ weights ${weights}`);
  const scale = maxAbs(want);
  assert.ok(maxAbsDiff(unweighted, want) > 0.1 * scale, "σ-weighted and unweighted gradients must differ");
  // Tolerance 1e-10·max|∇|: float64 model, and both sides are the same linear map of dlogp summed in a different
  // order (batch backward vs per-row backwards combined afterwards); rounding is ~(terms per sum)·ε ≈ 1e3·1e-16.
  for (const e of policy.entries)
    assertAllClose(grads.subarray(e.offset, e.offset + e.size), want.subarray(e.offset, e.offset + e.size), 1e-10 * scale, 0, `∇ ${e.name}`);

  // And tsdpo's gradient is the gradient of the loss it reports: a central difference along a random direction.
  // A unit direction and step h = 1e-4 in float64: truncation h²·|L'''|/6 ≈ 1e-9 for third derivatives of order
  // 1 and rounding ε·|L|/h ≈ 1e-12, against a derivative of ~1e-2, so 1e-6 relative holds with margin.
  const dir = Float64Array.from({ length: policy.params.length }, () => 2 * r() - 1);
  const norm = Math.sqrt(dir.reduce((a, v) => a + v * v, 0));
  for (let j = 0; j < dir.length; j++) dir[j] /= norm;
  const h = 1e-4;
  const base = Float64Array.from(policy.params);
  const lossAt = (s: number): number => {
    for (let j = 0; j < base.length; j++) policy.params[j] = base[j]! + s * dir[j]!;
    return tsdpoGradient(policy, refSumsTsdpo, batch, cfg, false).loss;
  };
  const numeric = (lossAt(h) - lossAt(-h)) / (2 * h);
  policy.params.set(base);
  let analytic = 0;
  for (let j = 0; j < base.length; j++) analytic += grads[j]! * dir[j]!;
  assert.ok(Math.abs(numeric - analytic) < 1e-6 * Math.abs(analytic), `directional derivative ${numeric} vs ⟨∇L, d⟩ ${analytic}`);
  console.log(`gradient identity: B=${B}, T=${T}, σ weights ${weights.map((w) => w.toFixed(3))}, max|∇| ${scale.toExponential(3)}, ` +
    `max diff ${maxAbsDiff(grads, want).toExponential(2)}, directional ${numeric.toExponential(6)} vs ${analytic.toExponential(6)}`);
});
