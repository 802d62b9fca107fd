// The preference-loss family: pure functions from per-sequence log-probs to per-pair losses, the gradient of the
// mean loss with respect to the policy log-probs, and the implicit rewards. No model code.
//
// Semantics follow TRL (huggingface/trl): DPOTrainer._compute_loss for the DPO family (TRL ≥ 1.0, where the
// f-divergence "scores" replace the log-ratios in the margin-based losses), CPOTrainer for SimPO and
// ORPOTrainer for ORPO. Where TRL versions differ, the comment on the loss says which one we follow and why.
//
// Notation, per pair i of B: π_c, π_r policy log-probs of chosen / rejected (sums over completion tokens unless
// stated); ρ_c, ρ_r reference log-probs; r_c = π_c − ρ_c, r_r = π_r − ρ_r the log-ratios; S(r) the f-divergence
// score of a log-ratio (S(r) = r for reverse KL, plain DPO); h = S(r_c) − S(r_r) the margin; ℓ_c, ℓ_r
// completion lengths in tokens; σ the logistic function.
//
// Why the outputs are allocated per call: they are O(B) numbers per step (a few hundred bytes), against a
// model arena of O(L·B·T·C); the "allocate once" rule is about the latter.

import { inputError } from "../errors.js";
import {
  assertNever, type DpoLossConfig, type KtoLossConfig, type LossConfig, type OrpoLossConfig, type PairLossType, type SimpoLossConfig,
} from "./config.js";
import { log1mexp, logSigmoid, sigmoid } from "./math.js";

/** B preference pairs, as the loss sees them. */
export interface PairBatch {
  policyChosenLogps: Float64Array; // (B) Σ completion-token log-probs under the policy (LD-weighted if ld_alpha)
  policyRejectedLogps: Float64Array; // (B)
  refChosenLogps: Float64Array | null; // (B) same reduction under the reference; null for reference-free losses
  refRejectedLogps: Float64Array | null; // (B)
  chosenLengths: Int32Array; // (B) completion tokens of chosen (all of them, also under ld_alpha)
  rejectedLengths: Int32Array; // (B)
  /**
   * (B) plain Σ log-probs of chosen, for the NLL terms (sft, rpo_alpha, cpo_alpha, ORPO) when
   * policyChosenLogps is LD-weighted. null (or absent) means "same as policyChosenLogps"; its gradient then
   * lands in dPolicyChosenLogps.
   */
  policyChosenPlainLogps?: Float64Array | null;
  /**
   * WPO per-sequence log-weights from wpoLogWeights (reduce.ts); required iff use_weighting. Pair i is
   * weighted by exp(chosen[i] + rejected[i]), a constant in the gradient.
   */
  wpo?: { chosenLogWeights: Float64Array; rejectedLogWeights: Float64Array } | null;
  /**
   * (B) Unpaired losses (KTO) only, 1 = desirable, 0 = undesirable. Row i is then one labelled completion: its own
   * answer in the chosen slots, and in the rejected slots the mismatched completion (another row's answer to row i's
   * prompt) whose log-ratio estimates the KL reference point. The pair machinery packs both with one shared prompt.
   */
  labels?: Uint8Array | null;
}

/**
 * Running state that outlives a step. Only bco_pair has one: the running mean δ of the implicit rewards
 * (TRL's RunningMoments, one update per micro-batch with that batch's mean reward). Checkpoint it with the run.
 */
export interface LossState {
  bcoRewardMean: number;
  bcoCount: number;
  /** KTO with kto_kl "running": the moving average of the mismatched pairs' mean log-ratio (Adam-style, bias
   *  corrected by the count of updates). Absent until the first KTO step. */
  ktoKl?: { average: number; updates: number };
}

export function initialLossState(): LossState {
  return { bcoRewardMean: 0, bcoCount: 0 };
}

export interface LossOutput {
  losses: Float64Array; // (B) per-pair loss; `loss` is their mean
  loss: number; // what the trainer reports and backpropagates
  dPolicyChosenLogps: Float64Array; // (B) d loss / d policyChosenLogps
  dPolicyRejectedLogps: Float64Array; // (B) d loss / d policyRejectedLogps
  /** (B) d loss / d policyChosenPlainLogps when the batch supplied that field, else null (folded in above). */
  dPolicyChosenPlainLogps: Float64Array | null;
  chosenRewards: Float64Array; // (B) β·r_c for the DPO family, β·π_c/ℓ_c for SimPO and ORPO (TRL's rewards/chosen)
  rejectedRewards: Float64Array; // (B)
  chosenLogps: Float64Array; // (B) what TRL logs as logps/chosen: sums, or per-token means for SimPO / ORPO
  rejectedLogps: Float64Array; // (B)
  /** Loss-specific scalars under TRL's names (nll_loss, log_odds_ratio, log_odds_chosen). */
  extraMetrics: Record<string, number>;
  /** The state to pass to the next call. The input state is not modified. */
  state: LossState;
  /**
   * Unpaired losses only: the rows' labels (1 desirable) and the KL reference point z0 used. The chosen* fields then
   * hold each row's own reward and log-prob whatever its label, the rejected* fields those of its mismatched
   * completion; lossMetrics averages the rows by label, as TRL's rewards/chosen and rewards/rejected.
   */
  unpaired?: { labels: Uint8Array; kl: number };
}

/** Computes the configured loss. Exhaustive over the config kinds; a new kind fails to compile here. */
export function computeLoss(cfg: LossConfig, batch: PairBatch, state: LossState = initialLossState()): LossOutput {
  switch (cfg.kind) {
    case "dpo":
      return dpoFamilyLoss(cfg, batch, state);
    case "simpo":
      return simpoLoss(cfg, batch, state);
    case "orpo":
      return orpoLoss(cfg, batch, state);
    case "kto":
      return ktoLoss(cfg, batch, state);
    default:
      return assertNever(cfg);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// DPO family: each term is one function in PAIR_LOSSES. A term writes its unweighted per-pair values into
// `term` and accumulates the vector-Jacobian product Σ_i coef[i] · ∂term[i]/∂x into the g* buffers, where x is
// the quantity the term reads: the scores S(r) (gScore*), the policy log-probs directly (gPolicy*, also used for
// raw log-ratios since ∂r/∂π = 1), or the plain chosen sums for NLL terms (gNll). Writing the VJP rather than a
// diagonal derivative is what lets batch-coupled terms (sft, aot sorting) be ordinary entries.

export interface TermContext {
  readonly B: number;
  readonly beta: number;
  readonly labelSmoothing: number;
  readonly discopopTau: number;
  readonly policyC: Float64Array; // (B) π_c
  readonly policyR: Float64Array; // (B) π_r
  readonly refC: Float64Array; // (B) ρ_c (zeros when only sft runs)
  readonly refR: Float64Array; // (B)
  readonly rawC: Float64Array; // (B) r_c = π_c − ρ_c
  readonly rawR: Float64Array; // (B)
  readonly scoreC: Float64Array; // (B) S(r_c)
  readonly scoreR: Float64Array; // (B) S(r_r)
  readonly lenC: Int32Array; // (B)
  readonly lenR: Int32Array; // (B)
  readonly nllC: Float64Array; // (B) plain Σ log-probs of chosen
  readonly coef: Float64Array; // (B) weight of term[i] in the mean loss
  readonly term: Float64Array; // (B) out: the term's per-pair value
  readonly gScoreC: Float64Array; // (B) accumulated
  readonly gScoreR: Float64Array;
  readonly gPolicyC: Float64Array;
  readonly gPolicyR: Float64Array;
  readonly gNll: Float64Array;
  readonly state: LossState; // mutable copy owned by this call
  readonly extras: Record<string, number>;
}

export type PairTerm = (c: TermContext) => void;

/** One entry per loss type: adding a loss is one function and one line here. */
export const PAIR_LOSSES: { readonly [K in PairLossType]: PairTerm } = {
  sigmoid: sigmoidTerm,
  robust: robustTerm,
  hinge: hingeTerm,
  ipo: ipoTerm,
  sigmoid_norm: sigmoidNormTerm,
  exo_pair: exoPairTerm,
  nca_pair: ncaPairTerm,
  bco_pair: bcoPairTerm,
  sppo_hard: sppoHardTerm,
  aot: aotTerm,
  aot_pair: aotPairTerm,
  apo_zero: apoZeroTerm,
  apo_down: apoDownTerm,
  discopop: discopopTerm,
  sft: sftTerm,
};

/** Applies f(h), f'(h) to the score margin h = S(r_c) − S(r_r). */
function onMargin(c: TermContext, f: (h: number) => number, df: (h: number) => number): void {
  for (let i = 0; i < c.B; i++) {
    const h = c.scoreC[i]! - c.scoreR[i]!;
    c.term[i] = f(h);
    const g = c.coef[i]! * df(h);
    c.gScoreC[i] += g;
    c.gScoreR[i] -= g;
  }
}

/** Applies f, f' to the per-token margin a = S(r_c)/max(ℓ_c,1) − S(r_r)/max(ℓ_r,1) (TRL's clamp). */
function onAveragedMargin(c: TermContext, f: (a: number) => number, df: (a: number) => number): void {
  for (let i = 0; i < c.B; i++) {
    const lc = Math.max(c.lenC[i]!, 1);
    const lr = Math.max(c.lenR[i]!, 1);
    const a = c.scoreC[i]! / lc - c.scoreR[i]! / lr;
    c.term[i] = f(a);
    const g = c.coef[i]! * df(a);
    c.gScoreC[i] += g / lc;
    c.gScoreR[i] -= g / lr;
  }
}

/** −(1−ε) log σ(z) − ε log σ(−z): the label-smoothed logistic loss of cDPO, SimPO and AOT. */
function smoothedLogistic(z: number, eps: number): number {
  return -(1 - eps) * logSigmoid(z) - eps * logSigmoid(-z);
}
function dSmoothedLogistic(z: number, eps: number): number {
  return -(1 - eps) * sigmoid(-z) + eps * sigmoid(z);
}

/**
 * DPO, Rafailov et al. 2023 (arXiv:2305.18290) Eq. 7: −log σ(β h). With label_smoothing ε > 0 it is
 * conservative DPO (cDPO, Mitchell 2023, "A note on DPO with noisy preferences", Eq. 3):
 * −(1−ε) log σ(β h) − ε log σ(−β h). TRL ≤ 0.2x applied ε here; TRL ≥ 1.0 ignores ε for "sigmoid" — we keep
 * cDPO because it is the only place a user can ask for it, and ε = 0 (the default) is identical in both.
 */
function sigmoidTerm(c: TermContext): void {
  const { beta: b, labelSmoothing: eps } = c;
  onMargin(c, (h) => smoothedLogistic(b * h, eps), (h) => b * dSmoothedLogistic(b * h, eps));
}

/**
 * Robust DPO (rDPO), Chowdhury et al. 2024 (arXiv:2403.00409): the unbiased loss under label flips with
 * probability ε, [−(1−ε) log σ(β h) + ε log σ(−β h)] / (1 − 2ε). Can go negative by design.
 */
function robustTerm(c: TermContext): void {
  const { beta: b, labelSmoothing: eps } = c;
  const k = 1 / (1 - 2 * eps);
  onMargin(
    c,
    (h) => k * (-(1 - eps) * logSigmoid(b * h) + eps * logSigmoid(-b * h)),
    (h) => k * b * (-(1 - eps) * sigmoid(-b * h) - eps * sigmoid(b * h)),
  );
}

/** Hinge (SLiC, arXiv:2305.10425; RSO, arXiv:2309.06657): max(0, 1 − β h). Gradient 0 at the kink, like relu. */
function hingeTerm(c: TermContext): void {
  const b = c.beta;
  onMargin(c, (h) => Math.max(0, 1 - b * h), (h) => (1 - b * h > 0 ? -b : 0));
}

/**
 * IPO, Azar et al. 2023 (arXiv:2310.12036) Eq. 17 with τ = β: (a − 1/(2β))², where TRL (confirmed with the
 * IPO authors) takes a on per-token averages: a = S(r_c)/ℓ_c − S(r_r)/ℓ_r. At a = 0 the loss is 1/(4β²).
 */
function ipoTerm(c: TermContext): void {
  const t = 1 / (2 * c.beta);
  onAveragedMargin(c, (a) => (a - t) * (a - t), (a) => 2 * (a - t));
}

/**
 * Length-normalised DPO (TRL "sigmoid_norm"; the length-normalised DPO of Tülu 3, arXiv:2411.15124):
 * −log σ(β a) with a = S(r_c)/ℓ_c − S(r_r)/ℓ_r. No label smoothing, as in TRL.
 */
function sigmoidNormTerm(c: TermContext): void {
  const b = c.beta;
  onAveragedMargin(c, (a) => -logSigmoid(b * a), (a) => -b * sigmoid(-b * a));
}

/**
 * EXO-pref, Ji et al. 2024 (arXiv:2402.00856) Eq. 16 with K = 2: KL(p_θ ‖ p_ε) between the model's pair
 * distribution p_θ = (σ(z), σ(−z)), z = β h, and the smoothed labels (1−ε, ε):
 *   σ(z)(log σ(z) − log(1−ε)) + σ(−z)(log σ(−z) − log ε).
 * ε = label_smoothing; 0 becomes 1e-3, TRL's documented default for EXO (ε = 0 would make log ε = −∞).
 * d/dz = σ(z)σ(−z)·(z − log((1−ε)/ε)), since log σ(z) − log σ(−z) = z.
 */
function exoPairTerm(c: TermContext): void {
  const b = c.beta;
  const eps = c.labelSmoothing > 0 ? c.labelSmoothing : 1e-3;
  const l1 = Math.log1p(-eps);
  const l0 = Math.log(eps);
  onMargin(
    c,
    (h) => sigmoid(b * h) * (logSigmoid(b * h) - l1) + sigmoid(-b * h) * (logSigmoid(-b * h) - l0),
    (h) => b * sigmoid(b * h) * sigmoid(-b * h) * (b * h - (l1 - l0)),
  );
}

/**
 * NCA, Chen et al. 2024 (arXiv:2402.05369), pairwise: with u = β S(r),
 *   −log σ(u_c) − ½ log σ(−u_c) − ½ log σ(−u_r).
 * Optimises absolute likelihoods: both rewards are pushed against 0, not only their difference.
 */
function ncaPairTerm(c: TermContext): void {
  const b = c.beta;
  for (let i = 0; i < c.B; i++) {
    const uc = b * c.scoreC[i]!;
    const ur = b * c.scoreR[i]!;
    c.term[i] = -logSigmoid(uc) - 0.5 * logSigmoid(-uc) - 0.5 * logSigmoid(-ur);
    c.gScoreC[i] += c.coef[i]! * b * (-sigmoid(-uc) + 0.5 * sigmoid(uc));
    c.gScoreR[i] += c.coef[i]! * b * 0.5 * sigmoid(ur);
  }
}

/**
 * BCO on pairs, Jung et al. 2024 (arXiv:2404.04656): a binary classifier with logit u − δ, u = β S(r):
 *   −log σ(u_c − δ) − log σ(−(u_r − δ)),
 * where δ is the running mean of the batch-mean reward mean(u_c ∪ u_r) (TRL's RunningMoments, updated with this
 * batch before use, and detached). TRL ≤ 0.2x has δ; TRL ≥ 1.0 dropped it (δ = 0). We keep it, with the state
 * explicit: c.state is updated in place and returned to the caller.
 */
function bcoPairTerm(c: TermContext): void {
  const b = c.beta;
  let m = 0;
  for (let i = 0; i < c.B; i++) m += b * c.scoreC[i]! + b * c.scoreR[i]!;
  m /= 2 * c.B;
  const s = c.state;
  s.bcoCount += 1;
  s.bcoRewardMean += (m - s.bcoRewardMean) / s.bcoCount;
  const delta = s.bcoRewardMean;
  for (let i = 0; i < c.B; i++) {
    const xc = b * c.scoreC[i]! - delta;
    const xr = b * c.scoreR[i]! - delta;
    c.term[i] = -logSigmoid(xc) - logSigmoid(-xr);
    c.gScoreC[i] += c.coef[i]! * b * -sigmoid(-xc);
    c.gScoreR[i] += c.coef[i]! * b * sigmoid(xr);
  }
}

/**
 * SPPO with hard probabilities, Wu et al. 2024 (arXiv:2405.00675), Eq. 4.7 with P = 1 for the winner, 0 for
 * the loser: (S(r_c) − 1/(2β))² + (S(r_r) + 1/(2β))².
 */
function sppoHardTerm(c: TermContext): void {
  const t = 0.5 / c.beta;
  for (let i = 0; i < c.B; i++) {
    const a = c.scoreC[i]! - t;
    const d = c.scoreR[i]! + t;
    c.term[i] = a * a + d * d;
    c.gScoreC[i] += c.coef[i]! * 2 * a;
    c.gScoreR[i] += c.coef[i]! * 2 * d;
  }
}

/** Indices 0..n-1 ordered by v ascending; ties by index, so the order is deterministic. */
function argsort(v: Float64Array): Int32Array {
  const idx = Int32Array.from({ length: v.length }, (_, i) => i);
  idx.sort((a, b) => v[a]! - v[b]! || a - b);
  return idx;
}

/**
 * AOT, paired, Melnyk et al. 2024 (arXiv:2406.05882): first-order stochastic dominance of the policy's
 * log-ratio margins over the reference's, through their sorted quantiles across the batch:
 * d_k = sort(π_c − π_r)_k − sort(ρ_c − ρ_r)_k, loss_k = −(1−ε) log σ(β d_k) − ε log σ(−β d_k).
 * Uses raw log-probs (no f-divergence), as TRL. Entry k of `losses` is the k-th quantile, not pair k; TRL
 * multiplies it by pair k's WPO weight all the same, and so do we. The gradient flows through the sort's
 * permutation (piecewise linear, like torch.sort).
 */
function aotTerm(c: TermContext): void {
  const { B, beta: b, labelSmoothing: eps } = c;
  const x = new Float64Array(B);
  const y = new Float64Array(B);
  for (let i = 0; i < B; i++) {
    x[i] = c.policyC[i]! - c.policyR[i]!;
    y[i] = c.refC[i]! - c.refR[i]!;
  }
  const px = argsort(x);
  const py = argsort(y);
  for (let k = 0; k < B; k++) {
    const z = b * (x[px[k]!]! - y[py[k]!]!);
    c.term[k] = smoothedLogistic(z, eps);
    const g = c.coef[k]! * b * dSmoothedLogistic(z, eps);
    c.gPolicyC[px[k]!] += g;
    c.gPolicyR[px[k]!] -= g;
  }
}

/**
 * AOT, unpaired (TRL ≤ 0.2x "aot_pair", TRL ≥ 1.0 "aot_unpaired"), same paper: chosen and rejected log-ratios
 * sorted separately, d_k = sort(r_c)_k − sort(r_r)_k, then the smoothed logistic loss as in aotTerm.
 */
function aotPairTerm(c: TermContext): void {
  const { B, beta: b, labelSmoothing: eps } = c;
  const pc = argsort(c.rawC);
  const pr = argsort(c.rawR);
  for (let k = 0; k < B; k++) {
    const z = b * (c.rawC[pc[k]!]! - c.rawR[pr[k]!]!);
    c.term[k] = smoothedLogistic(z, eps);
    const g = c.coef[k]! * b * dSmoothedLogistic(z, eps);
    c.gPolicyC[pc[k]!] += g;
    c.gPolicyR[pr[k]!] -= g;
  }
}

/**
 * APO-zero, D'Oosterlinck et al. 2024 (arXiv:2408.06266) Eq. 7: 1 − σ(β r_c) + σ(β r_r) on raw log-ratios —
 * raise the chosen likelihood, lower the rejected one (for when the chosen answers beat the model).
 */
function apoZeroTerm(c: TermContext): void {
  const b = c.beta;
  for (let i = 0; i < c.B; i++) {
    const sc = sigmoid(b * c.rawC[i]!);
    const sr = sigmoid(b * c.rawR[i]!);
    c.term[i] = 1 - sc + sr;
    c.gPolicyC[i] += c.coef[i]! * -b * sc * (1 - sc);
    c.gPolicyR[i] += c.coef[i]! * b * sr * (1 - sr);
  }
}

/**
 * APO-down, same paper Eq. 8: σ(β r_c) + 1 − σ(β h) — lower both likelihoods, the rejected more (for when the
 * model already beats the chosen answers). r_c is raw, h is the score margin, as in TRL ≥ 1.0.
 */
function apoDownTerm(c: TermContext): void {
  const b = c.beta;
  for (let i = 0; i < c.B; i++) {
    const sc = sigmoid(b * c.rawC[i]!);
    const sh = sigmoid(b * (c.scoreC[i]! - c.scoreR[i]!));
    c.term[i] = sc + 1 - sh;
    c.gPolicyC[i] += c.coef[i]! * b * sc * (1 - sc);
    const g = c.coef[i]! * -b * sh * (1 - sh);
    c.gScoreC[i] += g;
    c.gScoreR[i] -= g;
  }
}

/**
 * DiscoPOP (log-ratio modulated loss), Chris Lu et al. 2024 (arXiv:2406.08414) Eq. 5, with z = β h and
 * m = σ(z/τ): (1 − m)·(−log σ(z)) + m·e^{−z}. A logistic loss for negative margins blending into an exponential
 * one for positive margins; τ = discopop_tau.
 */
function discopopTerm(c: TermContext): void {
  const { beta: b, discopopTau: tau } = c;
  onMargin(
    c,
    (h) => {
      const z = b * h;
      const m = sigmoid(z / tau);
      return (1 - m) * -logSigmoid(z) + m * Math.exp(-z);
    },
    (h) => {
      const z = b * h;
      const m = sigmoid(z / tau);
      const dm = (m * (1 - m)) / tau;
      const e = Math.exp(-z);
      return b * (-(1 - m) * sigmoid(-z) + logSigmoid(z) * dm - m * e + e * dm);
    },
  );
}

/**
 * SFT term: the NLL of the chosen completions averaged over all their tokens in the batch,
 * −Σ_i π_c,i / Σ_i ℓ_c,i (TRL's F.cross_entropy over the chosen completion tokens; a token-weighted mean, not
 * a mean of per-sequence means). The same value is repeated for every pair, as TRL expands it.
 */
function sftTerm(c: TermContext): void {
  const nll = batchNll(c.nllC, c.lenC);
  let coefSum = 0;
  for (let i = 0; i < c.B; i++) {
    c.term[i] = nll.value;
    coefSum += c.coef[i]!;
  }
  for (let i = 0; i < c.B; i++) c.gNll[i] += coefSum * nll.dSum;
  c.extras["nll_loss"] = nll.value;
}

/** −Σ π / Σ ℓ and its derivative with respect to every π_i (the same for all i). */
function batchNll(sums: Float64Array, lengths: Int32Array): { value: number; dSum: number } {
  let s = 0;
  let n = 0;
  for (let i = 0; i < sums.length; i++) {
    s += sums[i]!;
    n += lengths[i]!;
  }
  n = Math.max(n, 1);
  return { value: -s / n, dSum: -1 / n };
}

/** f-divergence score S(r) and S'(r), TRL ≥ 1.0 (f-DPO, Wang et al. 2023, arXiv:2309.16240: S(r) = f′(e^r) up to a constant). */
function fScores(
  outS: Float64Array,
  outDS: Float64Array,
  r: Float64Array,
  type: DpoLossConfig["f_divergence_type"],
  alpha: number,
): void {
  for (let i = 0; i < r.length; i++) {
    const x = r[i]!;
    switch (type) {
      case "reverse_kl": // f'(u) = log u + 1, constant dropped
        outS[i] = x;
        outDS[i] = 1;
        break;
      case "forward_kl": // f'(u) = 1 − 1/u, constant dropped
        outS[i] = -Math.exp(-x);
        outDS[i] = Math.exp(-x);
        break;
      case "js_divergence": // f'(u) = log(2u/(1+u)), log 2 dropped: log σ(r)
        outS[i] = logSigmoid(x);
        outDS[i] = sigmoid(-x);
        break;
      case "alpha_divergence": {
        // f'(u) = (u^(α−1) − 1)/(α − 1), constant dropped: e^{(α−1) r}/(α − 1); α → 1 is reverse KL.
        if (Math.abs(alpha - 1) < 1e-6) {
          outS[i] = x;
          outDS[i] = 1;
          break;
        }
        // TRL clamps the exponent at 80 (float32 safety); the clamp has zero gradient beyond it, like torch.clamp.
        const t = (alpha - 1) * x;
        const e = Math.exp(Math.min(t, 80));
        outS[i] = e / (alpha - 1);
        outDS[i] = t <= 80 ? e : 0;
        break;
      }
      default:
        assertNever(type);
    }
  }
}

function dpoFamilyLoss(cfg: DpoLossConfig, batch: PairBatch, state: LossState): LossOutput {
  if (cfg.loss_weights.length !== cfg.loss_type.length)
    throw new Error(`loss config: ${cfg.loss_weights.length} loss_weights for ${cfg.loss_type.length} loss types`);
  const terms: { type: PairLossType; weight: number }[] = cfg.loss_type.map((type, k) => ({ type, weight: cfg.loss_weights[k]! }));
  // RPO (arXiv:2404.19733) as TRL ≤ 0.2x adds it: rpo_alpha · NLL(chosen), per token over the batch.
  if (cfg.rpo_alpha !== null && cfg.rpo_alpha !== 0) terms.push({ type: "sft", weight: cfg.rpo_alpha });
  const needsRef = terms.some((t) => t.type !== "sft");
  const B = checkBatch(batch, needsRef ? `loss_type ${JSON.stringify(cfg.loss_type)}` : null);
  if (cfg.use_weighting && !batch.wpo)
    throw new Error("use_weighting is set but the batch has no wpo log-weights; compute them with wpoLogWeights");
  if (batch.wpo) checkLen(B, "wpo", batch.wpo.chosenLogWeights, batch.wpo.rejectedLogWeights);

  const zeros = new Float64Array(B);
  const refC = batch.refChosenLogps ?? zeros;
  const refR = batch.refRejectedLogps ?? zeros;
  const rawC = new Float64Array(B);
  const rawR = new Float64Array(B);
  for (let i = 0; i < B; i++) {
    rawC[i] = batch.policyChosenLogps[i]! - refC[i]!;
    rawR[i] = batch.policyRejectedLogps[i]! - refR[i]!;
  }
  const scoreC = new Float64Array(B);
  const scoreR = new Float64Array(B);
  const dScoreC = new Float64Array(B);
  const dScoreR = new Float64Array(B);
  fScores(scoreC, dScoreC, rawC, cfg.f_divergence_type, cfg.f_alpha_divergence_coef);
  fScores(scoreR, dScoreR, rawR, cfg.f_divergence_type, cfg.f_alpha_divergence_coef);

  // WPO pair weights, constants in the gradient (TRL detaches them).
  const pairWeight = new Float64Array(B).fill(1);
  if (cfg.use_weighting && batch.wpo)
    for (let i = 0; i < B; i++) pairWeight[i] = Math.exp(batch.wpo.chosenLogWeights[i]! + batch.wpo.rejectedLogWeights[i]!);

  const ctx: TermContext = {
    B,
    beta: cfg.beta,
    labelSmoothing: cfg.label_smoothing,
    discopopTau: cfg.discopop_tau,
    policyC: batch.policyChosenLogps,
    policyR: batch.policyRejectedLogps,
    refC,
    refR,
    rawC,
    rawR,
    scoreC,
    scoreR,
    lenC: batch.chosenLengths,
    lenR: batch.rejectedLengths,
    nllC: batch.policyChosenPlainLogps ?? batch.policyChosenLogps,
    coef: new Float64Array(B),
    term: new Float64Array(B),
    gScoreC: new Float64Array(B),
    gScoreR: new Float64Array(B),
    gPolicyC: new Float64Array(B),
    gPolicyR: new Float64Array(B),
    gNll: new Float64Array(B),
    state: { ...state },
    extras: {},
  };
  const losses = new Float64Array(B);
  for (const { type, weight } of terms) {
    for (let i = 0; i < B; i++) ctx.coef[i] = (weight * pairWeight[i]!) / B;
    ctx.term.fill(0);
    PAIR_LOSSES[type](ctx);
    for (let i = 0; i < B; i++) losses[i] += weight * pairWeight[i]! * ctx.term[i]!;
  }

  const dC = new Float64Array(B);
  const dR = new Float64Array(B);
  for (let i = 0; i < B; i++) {
    dC[i] = ctx.gPolicyC[i]! + ctx.gScoreC[i]! * dScoreC[i]!;
    dR[i] = ctx.gPolicyR[i]! + ctx.gScoreR[i]! * dScoreR[i]!;
  }
  const dPlain = foldNll(dC, ctx.gNll, batch);

  // TRL's implicit reward β·r (raw log-ratio, not the f-score); reference 0 when only sft runs.
  const chosenRewards = new Float64Array(B);
  const rejectedRewards = new Float64Array(B);
  for (let i = 0; i < B; i++) {
    chosenRewards[i] = cfg.beta * rawC[i]!;
    rejectedRewards[i] = cfg.beta * rawR[i]!;
  }
  return {
    losses,
    loss: mean(losses),
    dPolicyChosenLogps: dC,
    dPolicyRejectedLogps: dR,
    dPolicyChosenPlainLogps: dPlain,
    chosenRewards,
    rejectedRewards,
    chosenLogps: Float64Array.from(batch.policyChosenLogps),
    rejectedLogps: Float64Array.from(batch.policyRejectedLogps),
    extraMetrics: ctx.extras,
    state: ctx.state,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Reference-free losses (TRL's CPOTrainer and ORPOTrainer): they read per-token averages π/ℓ.

/**
 * SimPO, Meng et al. 2024 (arXiv:2405.14734), as TRL's CPOTrainer: with per-token averages a = π/ℓ,
 *   −(1−ε) log σ(β(a_c − a_r) − γ) − ε log σ(−(β(a_c − a_r) − γ))   [+ cpo_alpha · NLL(chosen), CPO-SimPO]
 * (TRL writes the margin as γ/β inside β(·)). Rewards are β·a, logps/* are the averages.
 */
function simpoLoss(cfg: SimpoLossConfig, batch: PairBatch, state: LossState): LossOutput {
  const B = checkBatch(batch, null);
  const { beta: b, simpo_gamma: gamma, label_smoothing: eps, cpo_alpha: alpha } = cfg;
  const nllSums = batch.policyChosenPlainLogps ?? batch.policyChosenLogps;
  const nll = batchNll(nllSums, batch.chosenLengths);
  const avgC = new Float64Array(B);
  const avgR = new Float64Array(B);
  const losses = new Float64Array(B);
  const dC = new Float64Array(B);
  const dR = new Float64Array(B);
  const gNll = new Float64Array(B);
  for (let i = 0; i < B; i++) {
    const lc = batch.chosenLengths[i]!;
    const lr = batch.rejectedLengths[i]!;
    avgC[i] = batch.policyChosenLogps[i]! / lc;
    avgR[i] = batch.policyRejectedLogps[i]! / lr;
    const z = b * (avgC[i]! - avgR[i]! - gamma / b);
    losses[i] = smoothedLogistic(z, eps) + alpha * nll.value;
    const g = (b * dSmoothedLogistic(z, eps)) / B;
    dC[i] = g / lc;
    dR[i] = -g / lr;
    gNll[i] = alpha * nll.dSum;
  }
  const dPlain = foldNll(dC, gNll, batch);
  return {
    losses,
    loss: mean(losses),
    dPolicyChosenLogps: dC,
    dPolicyRejectedLogps: dR,
    dPolicyChosenPlainLogps: dPlain,
    chosenRewards: avgC.map((a) => b * a),
    rejectedRewards: avgR.map((a) => b * a),
    chosenLogps: avgC,
    rejectedLogps: avgR,
    extraMetrics: { nll_loss: nll.value },
    state: { ...state },
  };
}

/**
 * ORPO, Hong et al. 2024 (arXiv:2403.07691): L = NLL(chosen) + λ·L_OR with L_OR = −log σ(log odds ratio),
 * log odds ratio = log[odds(a_c)/odds(a_r)], odds(a) = e^a/(1 − e^a), a = π/ℓ the per-token average:
 *   lo = (a_c − a_r) − (log(1 − e^{a_c}) − log(1 − e^{a_r})).
 * λ is TRL's `beta`; NLL is the token-weighted chosen cross-entropy, as TRL's ORPOTrainer. The per-pair loss
 * is NLL − λ·log σ(lo_i), so its mean is TRL's loss. ∂lo/∂a_c = 1/(1 − e^{a_c}), ∂lo/∂a_r = −1/(1 − e^{a_r}).
 */
function orpoLoss(cfg: OrpoLossConfig, batch: PairBatch, state: LossState): LossOutput {
  const B = checkBatch(batch, null);
  const lam = cfg.beta;
  const nllSums = batch.policyChosenPlainLogps ?? batch.policyChosenLogps;
  const nll = batchNll(nllSums, batch.chosenLengths);
  const avgC = new Float64Array(B);
  const avgR = new Float64Array(B);
  const losses = new Float64Array(B);
  const dC = new Float64Array(B);
  const dR = new Float64Array(B);
  const gNll = new Float64Array(B).fill(nll.dSum);
  let sumRatio = 0;
  let sumLogOdds = 0;
  for (let i = 0; i < B; i++) {
    const lc = batch.chosenLengths[i]!;
    const lr = batch.rejectedLengths[i]!;
    const ac = batch.policyChosenLogps[i]! / lc;
    const ar = batch.policyRejectedLogps[i]! / lr;
    avgC[i] = ac;
    avgR[i] = ar;
    const lo = ac - ar - (log1mexp(ac) - log1mexp(ar));
    const ratio = logSigmoid(lo);
    sumRatio += ratio;
    sumLogOdds += lo;
    losses[i] = nll.value - lam * ratio;
    const g = (-lam * sigmoid(-lo)) / B; // d(mean loss)/d lo_i
    dC[i] = (g * (-1 / Math.expm1(ac))) / lc; // 1/(1 − e^a) = −1/expm1(a)
    dR[i] = (g * (1 / Math.expm1(ar))) / lr;
  }
  const dPlain = foldNll(dC, gNll, batch);
  return {
    losses,
    loss: mean(losses),
    dPolicyChosenLogps: dC,
    dPolicyRejectedLogps: dR,
    dPolicyChosenPlainLogps: dPlain,
    chosenRewards: avgC.map((a) => lam * a),
    rejectedRewards: avgR.map((a) => lam * a),
    chosenLogps: avgC,
    rejectedLogps: avgR,
    extraMetrics: { nll_loss: nll.value, log_odds_ratio: sumRatio / B, log_odds_chosen: sumLogOdds / B },
    state: { ...state },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Unpaired losses (TRL's KTOTrainer): one labelled completion per row, batch.labels says which.

/**
 * KTO, Ethayarajh et al. 2024 (arXiv:2402.01306) Eq. 7, as TRL's KTOTrainer computes it. Row i has the log-ratio
 * r_i = π_i − ρ_i of its own completion; the KL reference point z0 comes from the mismatched completions in the
 * rejected slots, k_i = π'_i − ρ'_i:
 *   "batch"    z0 = max(0, mean_i k_i)                       (TRL: the batch mean, detached, clamped at 0)
 *   "running"  a ← d·a + (1 − d)·mean_i k_i, n ← n + 1,  z0 = max(0, a / (1 − dⁿ))   (d = kto_kl_decay; the state
 *              is updated with this batch before use, like bco_pair's δ; the clamp is on the average, not per batch)
 * and the per-row losses
 *   desirable    λ_D · (1 − σ(β(r_i − z0)))        undesirable   λ_U · (1 − σ(β(z0 − r_i)))
 * averaged over all B rows (TRL's mean over the concatenated desirable and undesirable losses). z0 is a constant
 * in the gradient, so d/dπ'_i = 0. loss_type "apo_zero_unpaired" (D'Oosterlinck et al. 2024, TRL's unpaired
 * APO-zero) has no z0: λ_D · (1 − σ(β r_i)) and λ_U · σ(β r_i). Rewards are β·r_i, as TRL logs them.
 */
function ktoLoss(cfg: KtoLossConfig, batch: PairBatch, state: LossState): LossOutput {
  const B = checkBatch(batch, `loss_type "${cfg.loss_type}"`);
  const labels = batch.labels;
  if (!labels) throw new Error(`loss batch: loss_type "${cfg.loss_type}" needs the rows' labels (batch.labels)`);
  checkLen(B, "labels", labels);
  const b = cfg.beta;
  const r = new Float64Array(B);
  const k = new Float64Array(B);
  let klMean = 0;
  for (let i = 0; i < B; i++) {
    r[i] = batch.policyChosenLogps[i]! - batch.refChosenLogps![i]!;
    k[i] = batch.policyRejectedLogps[i]! - batch.refRejectedLogps![i]!;
    klMean += k[i]! / B;
  }
  const next: LossState = { ...state };
  let z0 = 0;
  if (cfg.loss_type === "kto") {
    if (cfg.kto_kl === "batch") z0 = Math.max(0, klMean);
    else {
      const prev = state.ktoKl ?? { average: 0, updates: 0 };
      const d = cfg.kto_kl_decay;
      const kl = { average: d * prev.average + (1 - d) * klMean, updates: prev.updates + 1 };
      next.ktoKl = kl;
      z0 = Math.max(0, kl.average / (1 - d ** kl.updates));
    }
  }
  const losses = new Float64Array(B);
  const dC = new Float64Array(B);
  for (let i = 0; i < B; i++) {
    // Both losses are w·(1 − σ(s·β(r − z0))) with s = +1 (desirable) or −1; APO's undesirable σ(βr) is the same
    // form with s = −1 and z0 = 0, since 1 − σ(−x) = σ(x).
    const s = labels[i] ? 1 : -1;
    const w = labels[i] ? cfg.desirable_weight : cfg.undesirable_weight;
    const sg = sigmoid(s * b * (r[i]! - z0));
    losses[i] = w * (1 - sg);
    dC[i] = (-w * s * b * sg * (1 - sg)) / B;
  }
  return {
    losses,
    loss: mean(losses),
    dPolicyChosenLogps: dC,
    dPolicyRejectedLogps: new Float64Array(B),
    dPolicyChosenPlainLogps: null,
    chosenRewards: r.map((x) => b * x),
    rejectedRewards: k.map((x) => b * x),
    chosenLogps: Float64Array.from(batch.policyChosenLogps),
    rejectedLogps: Float64Array.from(batch.policyRejectedLogps),
    extraMetrics: {},
    state: next,
    unpaired: { labels: Uint8Array.from(labels), kl: z0 },
  };
}

// ---------------------------------------------------------------------------------------------------------------

/** NLL gradient: into dPolicyChosenLogps when the batch has no separate plain sums, else returned on its own. */
function foldNll(dC: Float64Array, gNll: Float64Array, batch: PairBatch): Float64Array | null {
  if (batch.policyChosenPlainLogps) return gNll;
  for (let i = 0; i < dC.length; i++) dC[i] += gNll[i]!;
  return null;
}

function mean(a: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]!;
  return s / a.length;
}

function checkLen(B: number, what: string, ...arrays: ArrayLike<number>[]): void {
  for (const a of arrays) if (a.length !== B) throw new Error(`loss batch: ${what} has ${a.length} entries, expected B=${B}`);
}

/**
 * Shape checks are trainer bugs (plain Error); an empty completion is the user's data (TsdpoError), e.g. a
 * prompt that filled max_length so truncation left no completion token.
 */
function checkBatch(batch: PairBatch, refNeededFor: string | null): number {
  const B = batch.policyChosenLogps.length;
  if (B === 0) throw new Error("loss batch: B = 0 pairs");
  checkLen(B, "policy log-probs", batch.policyChosenLogps, batch.policyRejectedLogps);
  checkLen(B, "lengths", batch.chosenLengths, batch.rejectedLengths);
  if (batch.policyChosenPlainLogps) checkLen(B, "policyChosenPlainLogps", batch.policyChosenPlainLogps);
  if (refNeededFor !== null) {
    if (!batch.refChosenLogps || !batch.refRejectedLogps)
      throw new Error(`loss batch: ${refNeededFor} needs reference log-probs but the batch has none`);
    checkLen(B, "reference log-probs", batch.refChosenLogps, batch.refRejectedLogps);
  }
  for (let i = 0; i < B; i++)
    if (!(batch.chosenLengths[i]! >= 1) || !(batch.rejectedLengths[i]! >= 1))
      throw inputError(
        `preference pair ${i} of this batch has an empty ${batch.chosenLengths[i]! >= 1 ? "rejected" : "chosen"} completion ` +
          `after truncation; raise max_length or shorten the prompt so every completion keeps at least one token`,
      );
  return B;
}
