// The preference-loss family. Every expected value below is worked out from the paper / TRL formula with the
// numbers of the batch written in, using only Math (sp, sig, logsig are defined here, not imported), so a test
// fails if the implementation's formula is wrong rather than merely changed. Gradients are checked against
// central finite differences in float64.

import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { assertAllClose, rng } from "./helpers.js";
import { TsdpoError } from "../src/errors.js";
import {
  computeLoss,
  defaultLossConfig,
  initialLossState,
  lossConfigFromJson,
  lossConfigToJson,
  lossMetrics,
  logSumSquaredProbs,
  needsReference,
  PAIR_LOSS_TYPES,
  reduceLogps,
  reduceLogpsBackward,
  wpoLogWeights,
  type DpoLossConfig,
  type LossConfig,
  type LossOutput,
  type LossState,
  type PairBatch,
  type PairLossType,
} from "../src/loss/index.js";

// Independent scalar helpers for the expected values.
const sp = (x: number): number => Math.log1p(Math.exp(x)); // softplus; −log σ(x) = sp(−x)
const sig = (x: number): number => 1 / (1 + Math.exp(-x));
const logsig = (x: number): number => -sp(-x);

function batchOf(p: {
  pc: number[];
  pr: number[];
  rc?: number[] | null;
  rr?: number[] | null;
  lc: number[];
  lr: number[];
  plain?: number[];
  wpo?: [number[], number[]];
}): PairBatch {
  return {
    policyChosenLogps: Float64Array.from(p.pc),
    policyRejectedLogps: Float64Array.from(p.pr),
    refChosenLogps: p.rc ? Float64Array.from(p.rc) : null,
    refRejectedLogps: p.rr ? Float64Array.from(p.rr) : null,
    chosenLengths: Int32Array.from(p.lc),
    rejectedLengths: Int32Array.from(p.lr),
    policyChosenPlainLogps: p.plain ? Float64Array.from(p.plain) : null,
    wpo: p.wpo ? { chosenLogWeights: Float64Array.from(p.wpo[0]), rejectedLogWeights: Float64Array.from(p.wpo[1]) } : null,
  };
}

function dpo(over: Partial<DpoLossConfig> & { loss_type?: PairLossType[] } = {}): DpoLossConfig {
  const loss_type = over.loss_type ?? ["sigmoid"];
  return { ...defaultLossConfig(), loss_weights: loss_type.map(() => 1), ...over, loss_type };
}

// The hand batch, B = 2:
//   pair 0: π_c −10, π_r −12, ρ_c −11, ρ_r −11, ℓ_c 4, ℓ_r 5  →  r_c = 1,  r_r = −1, h = 2
//   pair 1: π_c −20, π_r −15, ρ_c −19, ρ_r −17, ℓ_c 10, ℓ_r 2 →  r_c = −1, r_r = 2,  h = −3
// With β = 0.5 the logistic argument z = βh is 1 and −1.5.
const HAND = batchOf({ pc: [-10, -20], pr: [-12, -15], rc: [-11, -19], rr: [-11, -17], lc: [4, 10], lr: [5, 2] });

function expectLosses(out: LossOutput, perPair: number[], what: string): void {
  assertAllClose(out.losses, perPair, 1e-12, 1e-12, `${what} losses`);
  const mean = perPair.reduce((a, b) => a + b, 0) / perPair.length;
  assert.ok(Math.abs(out.loss - mean) <= 1e-12 * Math.max(1, Math.abs(mean)), `${what}: loss ${out.loss} != ${mean}`);
}

/** Central differences of the mean loss with respect to every policy input, against the analytic gradient. */
function checkGradient(cfg: LossConfig, batch: PairBatch, state: LossState = initialLossState(), what = ""): void {
  const out = computeLoss(cfg, batch, state);
  assert.ok(Number.isFinite(out.loss), `${what}: loss is ${out.loss}`);
  const h = 1e-5;
  const fields: [Float64Array, Float64Array][] = [
    [batch.policyChosenLogps, out.dPolicyChosenLogps],
    [batch.policyRejectedLogps, out.dPolicyRejectedLogps],
  ];
  if (batch.policyChosenPlainLogps) {
    assert.ok(out.dPolicyChosenPlainLogps, `${what}: plain gradient missing`);
    fields.push([batch.policyChosenPlainLogps, out.dPolicyChosenPlainLogps]);
  } else assert.equal(out.dPolicyChosenPlainLogps, null);
  for (const [x, analytic] of fields) {
    const fd = new Float64Array(x.length);
    for (let i = 0; i < x.length; i++) {
      const x0 = x[i]!;
      x[i] = x0 + h;
      const up = computeLoss(cfg, batch, state).loss;
      x[i] = x0 - h;
      const down = computeLoss(cfg, batch, state).loss;
      x[i] = x0;
      fd[i] = (up - down) / (2 * h);
    }
    assertAllClose(analytic, fd, 2e-8, 1e-6, `${what} gradient`);
  }
}

function randomBatch(seed: number, B: number, opts: { plain?: boolean; wpo?: boolean } = {}): PairBatch {
  const r = rng(seed);
  const u = (a: number, b: number): number => a + (b - a) * r();
  const pc: number[] = [], pr: number[] = [], rc: number[] = [], rr: number[] = [], lc: number[] = [], lr: number[] = [];
  const plain: number[] = [], wc: number[] = [], wr: number[] = [];
  for (let i = 0; i < B; i++) {
    lc.push(1 + Math.floor(u(0, 12)));
    lr.push(1 + Math.floor(u(0, 12)));
    pc.push(-u(0.3, 2.5) * lc[i]!);
    pr.push(-u(0.3, 2.5) * lr[i]!);
    rc.push(pc[i]! + u(-3, 3));
    rr.push(pr[i]! + u(-3, 3));
    plain.push(pc[i]! + u(-2, 0));
    wc.push(u(-1, 0.3));
    wr.push(u(-1, 0.3));
  }
  return batchOf({ pc, pr, rc, rr, lc, lr, plain: opts.plain ? plain : undefined, wpo: opts.wpo ? [wc, wr] : undefined });
}

describe("DPO family: hand-derived values (β = 0.5 unless stated)", () => {
  test("sigmoid (DPO Eq. 7): −log σ(βh) = sp(−z), and its gradient", () => {
    const out = computeLoss(dpo({ beta: 0.5 }), HAND);
    expectLosses(out, [sp(-1), sp(1.5)], "sigmoid"); // ≈ [0.31326, 1.70141]
    // d mean / dπ_c,i = (1/B)·(−β σ(−z_i)); π_r gets the opposite sign.
    assertAllClose(out.dPolicyChosenLogps, [-0.25 * sig(-1), -0.25 * sig(1.5)], 1e-15, 0, "dπ_c");
    assertAllClose(out.dPolicyRejectedLogps, [0.25 * sig(-1), 0.25 * sig(1.5)], 1e-15, 0, "dπ_r");
    assertAllClose(out.chosenRewards, [0.5, -0.5], 1e-15, 0, "β r_c");
    assertAllClose(out.rejectedRewards, [-0.5, 1], 1e-15, 0, "β r_r");
  });

  test("cDPO (label_smoothing ε = 0.1): (1−ε)·sp(−z) + ε·sp(z)", () => {
    const out = computeLoss(dpo({ beta: 0.5, label_smoothing: 0.1 }), HAND);
    expectLosses(out, [0.9 * sp(-1) + 0.1 * sp(1), 0.9 * sp(1.5) + 0.1 * sp(-1.5)], "cDPO");
  });

  test("cDPO with ε = 0 equals DPO −log σ(βh), loss and gradient", () => {
    for (const beta of [0.1, 0.5, 2]) {
      const out = computeLoss(dpo({ beta, label_smoothing: 0 }), HAND);
      expectLosses(out, [sp(-beta * 2), sp(beta * 3)], `cDPO ε=0 β=${beta}`);
      assertAllClose(out.dPolicyChosenLogps, [(-beta * sig(-2 * beta)) / 2, (-beta * sig(3 * beta)) / 2], 1e-15, 0, "dπ_c");
    }
  });

  test("robust (rDPO), ε = 0.1: [(1−ε)·sp(−z) − ε·sp(z)] / (1 − 2ε)", () => {
    const out = computeLoss(dpo({ loss_type: ["robust"], beta: 0.5, label_smoothing: 0.1 }), HAND);
    expectLosses(out, [(0.9 * sp(-1) - 0.1 * sp(1)) / 0.8, (0.9 * sp(1.5) - 0.1 * sp(-1.5)) / 0.8], "robust");
  });

  test("hinge, β = 0.25: max(0, 1 − βh) = [0.5, 1.75]", () => {
    const out = computeLoss(dpo({ loss_type: ["hinge"], beta: 0.25 }), HAND);
    expectLosses(out, [0.5, 1.75], "hinge");
    // Both pairs are on the sloped side: d/dπ_c = −β/B.
    assertAllClose(out.dPolicyChosenLogps, [-0.125, -0.125], 1e-15, 0, "hinge dπ_c");
    const flat = computeLoss(dpo({ loss_type: ["hinge"], beta: 1 }), HAND); // pair 0: 1 − 2 < 0 → 0, zero gradient
    assert.equal(flat.losses[0], 0);
    assert.equal(flat.dPolicyChosenLogps[0], 0);
  });

  test("ipo on per-token averages: a = r_c/ℓ_c − r_r/ℓ_r, (a − 1/(2β))²", () => {
    // pair 0: a = 1/4 + 1/5 = 0.45 → (0.45 − 1)² = 0.3025; pair 1: a = −1/10 − 2/2 = −1.1 → (−2.1)² = 4.41
    const out = computeLoss(dpo({ loss_type: ["ipo"], beta: 0.5 }), HAND);
    expectLosses(out, [0.3025, 4.41], "ipo");
    // d/dπ_c,0 = (1/B)·2(a − 1)/ℓ_c = 0.5·2·(−0.55)/4
    assertAllClose(out.dPolicyChosenLogps, [(0.5 * 2 * -0.55) / 4, (0.5 * 2 * -2.1) / 10], 1e-15, 0, "ipo dπ_c");
  });

  test("IPO at zero margin gives exactly (0 − 1/(2β))² = 1/(4β²), whatever the lengths", () => {
    for (const beta of [0.1, 0.5, 2]) {
      const same = batchOf({ pc: [-7, -3], pr: [-9, -4], rc: [-7, -3], rr: [-9, -4], lc: [3, 1], lr: [8, 2] });
      const out = computeLoss(dpo({ loss_type: ["ipo"], beta }), same);
      expectLosses(out, [1 / (4 * beta * beta), 1 / (4 * beta * beta)], `ipo β=${beta}`);
    }
  });

  test("sigmoid_norm: −log σ(β·a) on the per-token margin a", () => {
    const out = computeLoss(dpo({ loss_type: ["sigmoid_norm"], beta: 0.5 }), HAND);
    expectLosses(out, [sp(-0.5 * 0.45), sp(0.5 * 1.1)], "sigmoid_norm");
  });

  test("exo_pair (EXO Eq. 16), ε = 0.1 and ε = 0 → 1e-3", () => {
    const exo = (z: number, e: number): number => sig(z) * (logsig(z) - Math.log(1 - e)) + sig(-z) * (logsig(-z) - Math.log(e));
    const a = computeLoss(dpo({ loss_type: ["exo_pair"], beta: 0.5, label_smoothing: 0.1 }), HAND);
    expectLosses(a, [exo(1, 0.1), exo(-1.5, 0.1)], "exo ε=0.1");
    const b = computeLoss(dpo({ loss_type: ["exo_pair"], beta: 0.5, label_smoothing: 0 }), HAND);
    expectLosses(b, [exo(1, 1e-3), exo(-1.5, 1e-3)], "exo ε=0");
  });

  test("nca_pair: sp(−u_c) + ½ sp(u_c) + ½ sp(u_r) with u = βr", () => {
    // pair 0: u_c = 0.5, u_r = −0.5; pair 1: u_c = −0.5, u_r = 1
    const out = computeLoss(dpo({ loss_type: ["nca_pair"], beta: 0.5 }), HAND);
    expectLosses(out, [sp(-0.5) + 0.5 * sp(0.5) + 0.5 * sp(-0.5), sp(0.5) + 0.5 * sp(-0.5) + 0.5 * sp(1)], "nca");
  });

  test("bco_pair: δ is the running mean of batch-mean rewards, updated before use; state in and out", () => {
    // rewards u = β r: chosen [0.5, −0.5], rejected [−0.5, 1]; batch mean = 0.5/4 = 0.125
    const cfg = dpo({ loss_type: ["bco_pair"], beta: 0.5 });
    const fresh = computeLoss(cfg, HAND, initialLossState());
    const d0 = 0.125; // first update: mean = batch mean
    expectLosses(fresh, [sp(-(0.5 - d0)) + sp(-0.5 - d0), sp(-(-0.5 - d0)) + sp(1 - d0)], "bco fresh");
    assert.deepEqual(fresh.state, { bcoRewardMean: 0.125, bcoCount: 1 });
    // With a prior state (mean 0.2 over 1 batch): δ = 0.2 + (0.125 − 0.2)/2 = 0.1625
    const prior: LossState = { bcoRewardMean: 0.2, bcoCount: 1 };
    const out = computeLoss(cfg, HAND, prior);
    const d = 0.1625;
    expectLosses(out, [sp(-(0.5 - d)) + sp(-0.5 - d), sp(-(-0.5 - d)) + sp(1 - d)], "bco running");
    assert.deepEqual(out.state, { bcoRewardMean: 0.1625, bcoCount: 2 });
    assert.deepEqual(prior, { bcoRewardMean: 0.2, bcoCount: 1 }, "input state must not be mutated");
    // δ is detached: dπ_c,0 = (1/B)·β·(−σ(−(u_c − δ)))
    assert.ok(Math.abs(out.dPolicyChosenLogps[0]! - 0.25 * -sig(-(0.5 - d))) < 1e-15);
  });

  test("sppo_hard: (r_c − 1/(2β))² + (r_r + 1/(2β))² = [0, 13]", () => {
    // pair 0: (1 − 1)² + (−1 + 1)² = 0; pair 1: (−1 − 1)² + (2 + 1)² = 13
    const out = computeLoss(dpo({ loss_type: ["sppo_hard"], beta: 0.5 }), HAND);
    expectLosses(out, [0, 13], "sppo_hard");
  });

  test("apo_zero (APO Eq. 7): 1 − σ(βr_c) + σ(βr_r)", () => {
    const out = computeLoss(dpo({ loss_type: ["apo_zero"], beta: 0.5 }), HAND);
    expectLosses(out, [1 - sig(0.5) + sig(-0.5), 1 - sig(-0.5) + sig(1)], "apo_zero");
  });

  test("apo_down (APO Eq. 8): σ(βr_c) + 1 − σ(βh)", () => {
    const out = computeLoss(dpo({ loss_type: ["apo_down"], beta: 0.5 }), HAND);
    expectLosses(out, [sig(0.5) + 1 - sig(1), sig(-0.5) + 1 - sig(-1.5)], "apo_down");
  });

  test("discopop (Eq. 5), τ = 0.05: (1 − σ(z/τ))·sp(−z) + σ(z/τ)·e^{−z}", () => {
    const f = (z: number): number => (1 - sig(z / 0.05)) * sp(-z) + sig(z / 0.05) * Math.exp(-z);
    const out = computeLoss(dpo({ loss_type: ["discopop"], beta: 0.5 }), HAND);
    expectLosses(out, [f(1), f(-1.5)], "discopop");
    const tau = computeLoss(dpo({ loss_type: ["discopop"], beta: 0.5, discopop_tau: 2 }), HAND);
    const g = (z: number): number => (1 - sig(z / 2)) * sp(-z) + sig(z / 2) * Math.exp(-z);
    expectLosses(tau, [g(1), g(-1.5)], "discopop τ=2");
  });

  test("sft: −Σπ_c / Σℓ_c = 30/14 for every pair, gradient −1/14 on each chosen", () => {
    const out = computeLoss(dpo({ loss_type: ["sft"] }), HAND);
    expectLosses(out, [30 / 14, 30 / 14], "sft");
    assertAllClose(out.dPolicyChosenLogps, [-1 / 14, -1 / 14], 1e-15, 0, "sft dπ_c");
    assertAllClose(out.dPolicyRejectedLogps, [0, 0], 0, 0, "sft dπ_r");
    assert.equal(out.extraMetrics["nll_loss"], 30 / 14);
    // sft alone needs no reference
    const noRef = batchOf({ pc: [-10, -20], pr: [-12, -15], lc: [4, 10], lr: [5, 2] });
    expectLosses(computeLoss(dpo({ loss_type: ["sft"] }), noRef), [30 / 14, 30 / 14], "sft without reference");
  });

  // AOT needs a batch where sorting matters:
  //   π_c [−5, −9], π_r [−6, −6], ρ_c [−7, −8.5], ρ_r [−5.5, −9]
  //   paired margins x = π_c − π_r = [1, −3], y = ρ_c − ρ_r = [−1.5, 0.5]
  //   r_c = [2, −0.5], r_r = [−0.5, 3]
  const AOT = batchOf({ pc: [-5, -9], pr: [-6, -6], rc: [-7, -8.5], rr: [-5.5, -9], lc: [3, 3], lr: [3, 3] });

  test("aot: d = sort(x) − sort(y) = [−3 + 1.5, 1 − 0.5], label-smoothed logistic (ε = 0.1)", () => {
    const f = (z: number): number => 0.9 * sp(-z) + 0.1 * sp(z);
    const out = computeLoss(dpo({ loss_type: ["aot"], beta: 0.5, label_smoothing: 0.1 }), AOT);
    expectLosses(out, [f(0.5 * -1.5), f(0.5 * 0.5)], "aot");
    // Quantile 0 is pair 1's margin (x = −3): its gradient lands on pair 1.
    const df = (z: number): number => -0.9 * sig(-z) + 0.1 * sig(z);
    assertAllClose(out.dPolicyChosenLogps, [(0.5 * df(0.25)) / 2, (0.5 * df(-0.75)) / 2], 1e-15, 0, "aot dπ_c");
  });

  test("aot_pair (TRL aot_unpaired): d = sort(r_c) − sort(r_r) = [−0.5 + 0.5, 2 − 3]", () => {
    const out = computeLoss(dpo({ loss_type: ["aot_pair"], beta: 0.5 }), AOT);
    expectLosses(out, [sp(-0), sp(0.5)], "aot_pair");
    // quantile 0: chosen of pair 1 (r_c = −0.5) against rejected of pair 0 (r_r = −0.5)
    assertAllClose(out.dPolicyChosenLogps, [(-0.5 * sig(0.5)) / 2, (-0.5 * sig(0)) / 2], 1e-15, 0, "aot_pair dπ_c");
    assertAllClose(out.dPolicyRejectedLogps, [(0.5 * sig(0)) / 2, (0.5 * sig(0.5)) / 2], 1e-15, 0, "aot_pair dπ_r");
  });

  test("policy = reference gives ln 2 for sigmoid DPO (and sigmoid_norm), for several β", () => {
    const pc = [-3.5, -40, -12.25], pr = [-8, -2, -30];
    const same = batchOf({ pc, pr, rc: pc, rr: pr, lc: [2, 20, 7], lr: [5, 1, 9] });
    for (const beta of [0.01, 0.1, 1, 10]) {
      for (const t of ["sigmoid", "sigmoid_norm"] as const) {
        const out = computeLoss(dpo({ loss_type: [t], beta }), same);
        assert.equal(out.loss, Math.LN2, `${t} β=${beta}`);
        // gradient −β/2 per pair, divided by B (and by ℓ_c for sigmoid_norm)
        if (t === "sigmoid") assertAllClose(out.dPolicyChosenLogps, [-beta / 6, -beta / 6, -beta / 6], 0, 1e-15, "dπ_c at h=0");
      }
    }
  });
});

describe("f-divergence scores (TRL ≥ 1.0) in the sigmoid loss, β = 0.5", () => {
  // pair 0: r_c = 1, r_r = −1; pair 1: r_c = −1, r_r = 2
  const cases: [DpoLossConfig["f_divergence_type"], number, (r: number) => number][] = [
    ["reverse_kl", 0.5, (r) => r],
    ["forward_kl", 0.5, (r) => -Math.exp(-r)], // h_0 = e − 1/e
    ["js_divergence", 0.5, (r) => logsig(r)], // h_0 = log σ(1) − log σ(−1) = 1 exactly
    ["alpha_divergence", 0.5, (r) => Math.exp(-0.5 * r) / -0.5],
    ["alpha_divergence", 0.25, (r) => Math.exp(-0.75 * r) / -0.75],
    ["alpha_divergence", 1, (r) => r], // α = 1 is the reverse-KL limit
  ];
  for (const [type, alpha, S] of cases)
    test(`${type}${type === "alpha_divergence" ? ` α=${alpha}` : ""}`, () => {
      const cfg = dpo({ beta: 0.5, f_divergence_type: type, f_alpha_divergence_coef: alpha });
      const out = computeLoss(cfg, HAND);
      expectLosses(out, [sp(-0.5 * (S(1) - S(-1))), sp(-0.5 * (S(-1) - S(2)))], type);
      // rewards stay β·r (TRL logs the raw log-ratio, not the score)
      assertAllClose(out.chosenRewards, [0.5, -0.5], 1e-15, 0, "rewards");
      if (type === "js_divergence") assert.ok(Math.abs(out.losses[0]! - sp(-0.5)) < 1e-15);
    });

  test("alpha_divergence clamps (α−1)·r at 80 like TRL, with zero gradient beyond", () => {
    // α = 3, r_c = 50 → t = 100 > 80: S = e^80/2, dS = 0; pair margin then only moves through r_r.
    const b = batchOf({ pc: [-10], pr: [-10], rc: [-60], rr: [-10], lc: [1], lr: [1] });
    const out = computeLoss(dpo({ loss_type: ["sppo_hard"], beta: 0.5, f_divergence_type: "alpha_divergence", f_alpha_divergence_coef: 3 }), b);
    assert.equal(out.dPolicyChosenLogps[0], 0);
    const Sc = Math.exp(80) / 2, Sr = 1 / 2; // S(0) = e^0/(α−1)
    assert.ok(Math.abs(out.loss / ((Sc - 1) ** 2 + (Sr + 1) ** 2) - 1) < 1e-12);
  });
});

describe("reference-free losses", () => {
  test("simpo (CPO trainer): sp(−(β(a_c − a_r) − γ)) on per-token averages, β = 2, γ = 1", () => {
    // a_c = [−10/4, −20/10] = [−2.5, −2], a_r = [−12/5, −15/2] = [−2.4, −7.5]
    // z = 2·(a_c − a_r) − 1 = [−1.2, 10]
    const cfg: LossConfig = { kind: "simpo", beta: 2, simpo_gamma: 1, label_smoothing: 0, cpo_alpha: 0 };
    const out = computeLoss(cfg, HAND);
    expectLosses(out, [sp(1.2), sp(-10)], "simpo"); // mean ≈ 0.7316639
    assertAllClose(out.chosenRewards, [-5, -4], 1e-15, 0, "β·a_c");
    assertAllClose(out.chosenLogps, [-2.5, -2], 1e-15, 0, "logps are per-token means");
    // d/dπ_c,0 = (1/B)·β·(−σ(−z_0))/ℓ_c = 0.5·2·(−σ(1.2))/4
    assertAllClose(out.dPolicyChosenLogps, [(-sig(1.2)) / 4, (-sig(-10)) / 10], 1e-15, 0, "simpo dπ_c");
    // CPO-SimPO: + cpo_alpha · NLL = 0.5 · 30/14 per pair
    const cpo = computeLoss({ ...cfg, cpo_alpha: 0.5 }, HAND);
    expectLosses(cpo, [sp(1.2) + 0.5 * (30 / 14), sp(-10) + 0.5 * (30 / 14)], "cpo-simpo");
  });

  test("orpo: NLL − λ·log σ(log odds ratio), λ = 0.1", () => {
    const lo = (ac: number, ar: number): number => ac - ar - (Math.log(1 - Math.exp(ac)) - Math.log(1 - Math.exp(ar)));
    const l0 = lo(-2.5, -2.4); // ≈ −0.1094495
    const l1 = lo(-2, -7.5); // ≈ 5.6448602
    const out = computeLoss({ kind: "orpo", beta: 0.1 }, HAND);
    expectLosses(out, [30 / 14 - 0.1 * logsig(l0), 30 / 14 - 0.1 * logsig(l1)], "orpo"); // mean ≈ 2.1805020
    assert.ok(Math.abs(out.extraMetrics["log_odds_ratio"]! - (logsig(l0) + logsig(l1)) / 2) < 1e-15);
    assert.ok(Math.abs(out.extraMetrics["log_odds_chosen"]! - (l0 + l1) / 2) < 1e-14);
    assert.equal(out.extraMetrics["nll_loss"], 30 / 14);
    assertAllClose(out.chosenRewards, [-0.25, -0.2], 1e-15, 0, "λ·a_c");
  });
});

describe("combinations and weighting", () => {
  test("loss_weights: [sigmoid, bco_pair, sft] with [0.8, 0.2, 1.0] equals the weighted sum of the parts", () => {
    const b = randomBatch(11, 5);
    const state: LossState = { bcoRewardMean: -0.3, bcoCount: 4 };
    const w = [0.8, 0.2, 1.0];
    const types: PairLossType[] = ["sigmoid", "bco_pair", "sft"];
    const combo = computeLoss(dpo({ loss_type: types, loss_weights: w, beta: 0.2 }), b, state);
    const parts = types.map((t) => computeLoss(dpo({ loss_type: [t], beta: 0.2 }), b, state));
    const sum = (f: (o: LossOutput) => Float64Array): number[] =>
      Array.from({ length: 5 }, (_, i) => parts.reduce((acc, o, k) => acc + w[k]! * f(o)[i]!, 0));
    assertAllClose(combo.losses, sum((o) => o.losses), 1e-13, 0, "losses");
    assertAllClose(combo.dPolicyChosenLogps, sum((o) => o.dPolicyChosenLogps), 1e-15, 0, "dπ_c");
    assertAllClose(combo.dPolicyRejectedLogps, sum((o) => o.dPolicyRejectedLogps), 1e-15, 0, "dπ_r");
    assert.ok(Math.abs(combo.loss - parts.reduce((a, o, k) => a + w[k]! * o.loss, 0)) < 1e-13);
    assert.deepEqual(combo.state, parts[1]!.state);
  });

  test("rpo_alpha adds rpo_alpha · NLL(chosen), the same as loss_type [sigmoid, sft] with weights [1, α]", () => {
    const b = randomBatch(12, 4);
    const rpo = computeLoss(dpo({ rpo_alpha: 0.3 }), b);
    const list = computeLoss(dpo({ loss_type: ["sigmoid", "sft"], loss_weights: [1, 0.3] }), b);
    assertAllClose(rpo.losses, list.losses, 1e-15, 0, "losses");
    assertAllClose(rpo.dPolicyChosenLogps, list.dPolicyChosenLogps, 1e-15, 0, "dπ_c");
    // and explicitly: sigmoid part + 0.3·(−Σπ_c/Σℓ_c)
    const plainDpo = computeLoss(dpo(), b);
    let s = 0, n = 0;
    for (let i = 0; i < 4; i++) (s += b.policyChosenLogps[i]!), (n += b.chosenLengths[i]!);
    assert.ok(Math.abs(rpo.loss - (plainDpo.loss + 0.3 * (-s / n))) < 1e-14);
  });

  test("WPO (use_weighting): pair i's loss is multiplied by exp(w_c,i + w_r,i), a constant in the gradient", () => {
    const b = batchOf({ ...{ pc: [-10, -20], pr: [-12, -15], rc: [-11, -19], rr: [-11, -17], lc: [4, 10], lr: [5, 2] }, wpo: [[-0.2, -0.1], [-0.3, 0.4]] });
    const out = computeLoss(dpo({ beta: 0.5, use_weighting: true }), b);
    expectLosses(out, [Math.exp(-0.5) * sp(-1), Math.exp(0.3) * sp(1.5)], "wpo");
    assertAllClose(out.dPolicyChosenLogps, [Math.exp(-0.5) * -0.25 * sig(-1), Math.exp(0.3) * -0.25 * sig(1.5)], 1e-15, 0, "wpo dπ_c");
    // weights present but use_weighting off: ignored
    expectLosses(computeLoss(dpo({ beta: 0.5 }), b), [sp(-1), sp(1.5)], "wpo off");
    assert.throws(() => computeLoss(dpo({ use_weighting: true }), HAND), /wpo/);
  });

  test("reference-needing losses refuse a batch without reference log-probs", () => {
    const noRef = batchOf({ pc: [-1], pr: [-2], lc: [1], lr: [1] });
    assert.throws(() => computeLoss(dpo(), noRef), /reference/);
    assert.equal(needsReference(dpo()), true);
    assert.equal(needsReference(dpo({ loss_type: ["sft"] })), false);
    assert.equal(needsReference({ kind: "orpo", beta: 0.1 }), false);
  });

  test("an empty completion is a user-facing input error naming the pair", () => {
    const b = batchOf({ pc: [-1, -2], pr: [-2, 0], rc: [-1, -2], rr: [-2, 0], lc: [1, 3], lr: [1, 0] });
    assert.throws(
      () => computeLoss(dpo(), b),
      (e: unknown) => e instanceof TsdpoError && e.kind === "input" && /pair 1/.test(e.message) && /rejected/.test(e.message),
    );
  });
});

describe("gradients against central finite differences (float64)", () => {
  for (const t of PAIR_LOSS_TYPES)
    test(`${t}`, () => {
      const b = randomBatch(100 + PAIR_LOSS_TYPES.indexOf(t), 5);
      // bco_pair's δ is detached (TRL): freeze it for the finite differences with a state so heavy that this
      // batch cannot move the running mean.
      const state: LossState = t === "bco_pair" ? { bcoRewardMean: 0.05, bcoCount: 1e13 } : initialLossState();
      checkGradient(dpo({ loss_type: [t], beta: 0.3, label_smoothing: 0.1 }), b, state, t);
      checkGradient(dpo({ loss_type: [t], beta: 0.7, use_weighting: true }), randomBatch(200 + PAIR_LOSS_TYPES.indexOf(t), 4, { wpo: true, plain: true }), state, `${t} wpo+plain`);
    });

  for (const f of ["forward_kl", "js_divergence", "alpha_divergence"] as const)
    test(`f_divergence_type ${f} through every score-based loss`, () => {
      for (const t of ["sigmoid", "robust", "hinge", "ipo", "sigmoid_norm", "exo_pair", "nca_pair", "sppo_hard", "apo_down", "discopop"] as const)
        checkGradient(dpo({ loss_type: [t], beta: 0.4, f_divergence_type: f, f_alpha_divergence_coef: 0.3, label_smoothing: 0.05 }), randomBatch(300, 4), initialLossState(), `${f}/${t}`);
      checkGradient(dpo({ loss_type: ["bco_pair"], beta: 0.4, f_divergence_type: f }), randomBatch(301, 4), { bcoRewardMean: 0, bcoCount: 1e13 }, `${f}/bco_pair`);
    });

  test("weighted combination with rpo_alpha", () => {
    checkGradient(dpo({ loss_type: ["sigmoid", "ipo", "aot", "sft"], loss_weights: [0.8, 0.1, 0.5, 1.5], rpo_alpha: 0.2, beta: 0.25 }), randomBatch(400, 6), initialLossState(), "combo");
    checkGradient(dpo({ loss_type: ["sigmoid", "sft"], loss_weights: [1, 0.5] }), randomBatch(401, 3, { plain: true }), initialLossState(), "combo plain");
  });

  test("simpo and orpo, with and without separate plain sums", () => {
    for (const plain of [false, true]) {
      checkGradient({ kind: "simpo", beta: 2, simpo_gamma: 0.5, label_smoothing: 0.1, cpo_alpha: 0.7 }, randomBatch(500, 5, { plain }), initialLossState(), "simpo");
      checkGradient({ kind: "orpo", beta: 0.1 }, randomBatch(501, 5, { plain }), initialLossState(), "orpo");
    }
  });
});

describe("reduce.ts: LD-DPO reduction, WPO weights", () => {
  // B = 2, T = 4, rows [c0, c1, r0, r1]; the 7s / 5s / 9s sit on masked positions and must not count.
  const T = 4;
  const mask = Uint8Array.from([1, 1, 1, 0, /* c1 */ 0, 1, 0, 0, /* r0 */ 1, 1, 0, 0, /* r1 */ 0, 1, 1, 1]);
  const tok = Float64Array.from([-1, -2, -3, 7, /* c1 */ 5, -4, 5, 5, /* r0 */ -0.5, -0.25, 9, 9, /* r1 */ 5, -1, -1, -1]);

  test("reduceLogps: plain sums, and ld_alpha = 0.25 with shared lengths min(3,2) = 2 and min(1,3) = 1", () => {
    const logps = new Float64Array(4);
    const lengths = new Int32Array(4);
    reduceLogps(logps, lengths, tok, mask, 2, T, null);
    assert.deepEqual(Array.from(lengths), [3, 1, 2, 3]);
    assert.deepEqual(Array.from(logps), [-6, -4, -0.75, -3]);
    reduceLogps(logps, lengths, tok, mask, 2, T, 0.25);
    // c0: −1 − 2 + 0.25·(−3); c1: −4 (shared 1); r0: −0.75 (all shared); r1: −1 + 0.25·(−1 − 1)
    assert.deepEqual(Array.from(logps), [-3.75, -4, -0.75, -1.5]);
    reduceLogps(logps, lengths, tok, mask, 2, T, 1);
    assert.deepEqual(Array.from(logps), [-6, -4, -0.75, -3], "ld_alpha = 1 is the plain sum");
  });

  test("reduceLogpsBackward accumulates dLogps · token weight into the masked tokens", () => {
    const lengths = Int32Array.from([3, 1, 2, 3]);
    const d = new Float64Array(8 * 2).fill(0.5); // accumulate on top of 0.5
    reduceLogpsBackward(d, [1, 2], [3, 4], mask, lengths, 2, T, 0.25);
    const expected = [1, 1, 0.25, 0, /* c1 */ 0, 2, 0, 0, /* r0 */ 3, 3, 0, 0, /* r1 */ 0, 4, 1, 1].map((x) => x + 0.5);
    assert.deepEqual(Array.from(d), expected);
    const e = new Float64Array(16);
    reduceLogpsBackward(e, [1, 2], null, mask, lengths, 2, T, null);
    assert.deepEqual(Array.from(e), [1, 1, 1, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  });

  test("per-token end to end: LD-DPO sigmoid + sft through reduceLogps, gradient by finite differences", () => {
    const B = 3, T2 = 6, alpha = 0.4;
    const r = rng(9);
    const m = new Uint8Array(2 * B * T2);
    const lens = [4, 2, 6, 3, 5, 1];
    for (let row = 0; row < 2 * B; row++) for (let t = 6 - lens[row]!; t < T2; t++) m[row * T2 + t] = 1; // left prompt
    const pol = Float64Array.from({ length: 2 * B * T2 }, () => -0.2 - 2 * r());
    const ref = Float64Array.from(pol, (x) => x + (r() - 0.5));
    const cfg = dpo({ loss_type: ["sigmoid", "sft"], loss_weights: [1, 0.5], ld_alpha: alpha, beta: 0.3 });
    const run = (p: Float64Array): { out: LossOutput; lengths: Int32Array } => {
      const lp = new Float64Array(2 * B), plain = new Float64Array(2 * B), rl = new Float64Array(2 * B), lengths = new Int32Array(2 * B);
      reduceLogps(lp, lengths, p, m, B, T2, alpha);
      reduceLogps(plain, lengths, p, m, B, T2, null);
      reduceLogps(rl, lengths, ref, m, B, T2, alpha);
      const batch: PairBatch = {
        policyChosenLogps: lp.slice(0, B), policyRejectedLogps: lp.slice(B),
        refChosenLogps: rl.slice(0, B), refRejectedLogps: rl.slice(B),
        chosenLengths: lengths.slice(0, B), rejectedLengths: lengths.slice(B),
        policyChosenPlainLogps: plain.slice(0, B),
      };
      return { out: computeLoss(cfg, batch), lengths };
    };
    const { out, lengths } = run(pol);
    const dTok = new Float64Array(2 * B * T2);
    reduceLogpsBackward(dTok, out.dPolicyChosenLogps, out.dPolicyRejectedLogps, m, lengths, B, T2, alpha);
    reduceLogpsBackward(dTok, out.dPolicyChosenPlainLogps!, null, m, lengths, B, T2, null);
    const fd = new Float64Array(dTok.length);
    for (let k = 0; k < pol.length; k++) {
      const x0 = pol[k]!;
      pol[k] = x0 + 1e-5;
      const up = run(pol).out.loss;
      pol[k] = x0 - 1e-5;
      const down = run(pol).out.loss;
      pol[k] = x0;
      fd[k] = (up - down) / 2e-5;
    }
    assertAllClose(dTok, fd, 2e-9, 1e-6, "per-token gradient");
  });

  test("logSumSquaredProbs = log Σ p²: [0,0] → log ½, [ln 3, 0] → log(9/16 + 1/16), read at an offset", () => {
    assert.ok(Math.abs(logSumSquaredProbs([0, 0], 0, 2) - Math.log(0.5)) < 1e-15);
    assert.ok(Math.abs(logSumSquaredProbs([99, Math.log(3), 0], 1, 2) - Math.log(0.625)) < 1e-15);
    assert.ok(Math.abs(logSumSquaredProbs([1000, 1000, 1000, 1000], 0, 4) - Math.log(0.25)) < 1e-15, "no overflow");
  });

  test("wpoLogWeights: mean over completion tokens of log p − log Σp²", () => {
    const out = new Float64Array(2);
    // chosen: tokens 0,1: (−1 + 0.5) + (−2 + 0.5) over 2 = −1; rejected: tokens 1,2: (−3 + 1) + (−1 + 1) over 2 = −1
    wpoLogWeights(out, [-1, -2, 0, 0, -3, -1], [-0.5, -0.5, 0, 0, -1, -1], [1, 1, 0, 0, 1, 1], 1, 3);
    assert.deepEqual(Array.from(out), [-1, -1]);
  });
});

describe("metrics", () => {
  test("TRL names; accuracy uses strict >, a tie counts as wrong", () => {
    // β = 0.5; pair 2 has r_c = r_r = 0 → rewards tie
    const b = batchOf({ pc: [-10, -20, -3], pr: [-12, -15, -4], rc: [-11, -19, -3], rr: [-11, -17, -4], lc: [4, 10, 1], lr: [5, 2, 1] });
    const out = computeLoss(dpo({ beta: 0.5 }), b);
    const m = lossMetrics(out, { chosen: 1.25, rejected: -0.5 });
    assert.deepEqual(Object.keys(m), [
      "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
      "logps/chosen", "logps/rejected", "logits/chosen", "logits/rejected", "loss",
    ]);
    // rewards c = [0.5, −0.5, 0], r = [−0.5, 1, 0]
    assert.equal(m["rewards/chosen"], 0);
    assert.ok(Math.abs(m["rewards/rejected"]! - 0.5 / 3) < 1e-15);
    assert.equal(m["rewards/accuracies"], 1 / 3);
    assert.ok(Math.abs(m["rewards/margins"]! - (1 - 1.5 + 0) / 3) < 1e-15);
    assert.equal(m["logps/chosen"], -11);
    assert.equal(m["logps/rejected"], -31 / 3);
    assert.equal(m["logits/chosen"], 1.25);
    assert.equal(m["loss"], (sp(-1) + sp(1.5) + Math.LN2) / 3);
    assert.ok(!("logits/chosen" in lossMetrics(out)), "logit means are not invented when the trainer gives none");
    const orpo = lossMetrics(computeLoss({ kind: "orpo", beta: 0.1 }, HAND));
    assert.ok("nll_loss" in orpo && "log_odds_ratio" in orpo && "log_odds_chosen" in orpo);
  });
});

describe("config", () => {
  const where = "run.json: loss";
  const fails = (obj: unknown, ...patterns: RegExp[]): void => {
    assert.throws(
      () => lossConfigFromJson(obj, where),
      (e: unknown) => {
        assert.ok(e instanceof TsdpoError, `not a TsdpoError: ${String(e)}`);
        assert.equal(e.kind, "config");
        assert.ok(e.message.startsWith(where), e.message);
        for (const p of patterns) assert.match(e.message, p);
        return true;
      },
    );
  };

  test("defaults are TRL's", () => {
    const cfg = lossConfigFromJson({}, where);
    assert.deepEqual(cfg, {
      kind: "dpo", loss_type: ["sigmoid"], loss_weights: [1], beta: 0.1, label_smoothing: 0, discopop_tau: 0.05,
      f_divergence_type: "reverse_kl", f_alpha_divergence_coef: 0.5, rpo_alpha: null, use_weighting: false, ld_alpha: null,
    });
    assert.deepEqual(cfg, defaultLossConfig());
    assert.deepEqual(lossConfigFromJson({ loss_type: "simpo" }, where), { kind: "simpo", beta: 0.1, simpo_gamma: 0.5, label_smoothing: 0, cpo_alpha: 0 });
    assert.deepEqual(lossConfigFromJson({ loss_type: "orpo" }, where), { kind: "orpo", beta: 0.1 });
  });

  test("TRL forms: a string or a list, loss_weights, the aot_unpaired alias", () => {
    const c = lossConfigFromJson({ loss_type: ["sigmoid", "bco_pair", "sft"], loss_weights: [0.8, 0.2, 1.0], beta: 0.05 }, where);
    assert.ok(c.kind === "dpo");
    assert.deepEqual(c.loss_type, ["sigmoid", "bco_pair", "sft"]);
    assert.deepEqual(c.loss_weights, [0.8, 0.2, 1.0]);
    assert.equal(c.beta, 0.05);
    const a = lossConfigFromJson({ loss_type: "aot_unpaired" }, where);
    assert.ok(a.kind === "dpo" && a.loss_type[0] === "aot_pair");
  });

  test("round trip through lossConfigToJson", () => {
    for (const j of [
      { loss_type: ["ipo", "sft"], loss_weights: [1, 0.1], beta: 0.3, ld_alpha: 0.5, use_weighting: true, f_divergence_type: "js_divergence" },
      { loss_type: "simpo", beta: 2.5, simpo_gamma: 1.4, cpo_alpha: 1 },
      { loss_type: "orpo", beta: 0.2 },
    ]) {
      const cfg = lossConfigFromJson(j, where);
      assert.deepEqual(lossConfigFromJson(JSON.parse(JSON.stringify(lossConfigToJson(cfg))), where), cfg);
    }
  });

  test("errors name the key and say what is expected", () => {
    fails([1, 2], /expected an object/);
    fails({ betta: 0.1 }, /"betta"/, /unknown/, /allowed keys/);
    fails({ beta: "0.1" }, /loss\.beta/, /> 0/);
    fails({ beta: 0 }, /loss\.beta/);
    fails({ beta: -1 }, /loss\.beta/);
    fails({ loss_type: "dpo" }, /unknown loss "dpo"/, /sigmoid/);
    fails({ loss_type: [] }, /loss_type/);
    fails({ loss_type: 3 }, /loss_type/);
    fails({ loss_type: ["sigmoid", "simpo"] }, /cannot be combined/);
    fails({ loss_type: ["sigmoid", "sft"], loss_weights: [1] }, /loss_weights/, /2 entries/);
    fails({ loss_weights: ["1"] }, /loss_weights/);
    fails({ simpo_gamma: 0.5 }, /"simpo_gamma"/, /does not apply/);
    fails({ loss_type: "simpo", rpo_alpha: 0.5 }, /"rpo_alpha"/, /does not apply/);
    fails({ loss_type: "orpo", label_smoothing: 0.1 }, /"label_smoothing"/);
    fails({ f_divergence_type: "kl" }, /f_divergence_type/, /reverse_kl/);
    fails({ use_weighting: "yes" }, /use_weighting/, /true or false/);
    fails({ ld_alpha: 2 }, /ld_alpha/, /\[0, 1\]/);
    fails({ label_smoothing: 0.5 }, /label_smoothing/, /0\.5\)/);
    fails({ rpo_alpha: -0.1 }, /rpo_alpha/);
    fails({ discopop_tau: 0 }, /discopop_tau/);
    fails({ f_alpha_divergence_coef: Infinity }, /f_alpha_divergence_coef/);
  });
});
