// The report's verdict on a run: a few numbers that say whether it worked (held-out values from start to end and
// at their best) and warnings for the failure patterns of DPO that the metrics log can show. Every check is a pure
// function of the run folder's contents (RunData), so tests drive it with hand-made metrics and no browser.
//
//   chosen_rewards_falling  the policy makes the preferred answers less likely than the reference did
//   loss_at_ln2             the training loss never left ln 2, the loss of the untrained model: nothing is learnt
//   eval_loss_above_ln2     the held-out loss ends above ln 2: worse on held-out pairs than not training at all
//   overfitting             held-out accuracy falls (or held-out loss rises) while the training batches improve
//   length_bias             chosen answers are systematically longer than rejected ones
//   clipping                the gradient norm is above max_grad_norm on most steps
//
// Each warning names the settings that address it. A check that cannot run (too few steps, a metric the log does
// not have, a loss whose untrained value is not ln 2) says so in `notes` instead of passing silently.
//
// Training rows are per-batch means, so one row is noise: the checks judge means over several rows (the last
// quarter of the run, or a moving average), never the last batch.

import type { MetricsRow, RunData } from "./report.js";

// ---------------------------------------------------------------------------------------------------------------
// Thresholds

/** Sigmoid DPO's loss when policy = reference (every implicit reward 0): −log σ(0) = ln 2, whatever β is. */
export const LN2 = Math.LN2;
/**
 * How close to ln 2 a loss counts as "at ln 2". Near h = 0 the sigmoid loss is ln 2 − β·h/2, so 0.01 is a mean
 * β-scaled margin of 0.02: chosen and rejected are still scored about alike.
 */
export const LN2_BAND = 0.01;
/** Fewest logged training steps for a judgement "over the run": a quarter of them is then 2 rows, the fewest with a spread. */
export const MIN_TREND_STEPS = 8;
/** Fewest evaluations for "held-out got worse": a start, a best and a later value. */
export const MIN_EVAL_POINTS = 3;
/** How many standard errors below 0 the last quarter's mean chosen reward must be to count as falling, not noise. */
export const FALL_Z = 2;
/**
 * The chosen answers' log-ratio log π/π_ref (rewards/chosen ÷ β) must have fallen by at least this many nats per
 * answer: e^−0.5 ≈ 0.6, the chosen answers have become at most 0.6× as likely as under the reference. Smaller
 * moves are drift, not a trend worth a warning.
 */
export const CHOSEN_FALL_MIN_NATS = 0.5;
/**
 * ... and by at least this share of the margin gained: DPO only fixes the difference, so some fall of the chosen
 * reward is normal when the rejected one falls much faster; a fall of a quarter of the margin or more means a real
 * part of the "improvement" is the preferred answers becoming less likely.
 */
export const CHOSEN_FALL_SHARE = 0.25;
/**
 * Held-out accuracy below its best by at least this much counts as falling. 5 points is about the standard error
 * of an accuracy on 100 held-out pairs; with far fewer pairs, single pairs flipping can reach it.
 */
export const OVERFIT_ACC_DROP = 0.05;
/** Held-out loss above its best by at least this much (nats per pair, 7% of ln 2) counts as rising. */
export const OVERFIT_LOSS_RISE = 0.05;
/** Mean chosen length over mean rejected length from which the data counts as length-biased (20% longer). */
export const LENGTH_BIAS_RATIO = 1.2;
/** ... and the share of logged steps on which chosen was longer: "systematic" rather than a few long pairs. */
export const LENGTH_BIAS_STEP_SHARE = 0.7;
/** Share of logged steps with grad_norm above max_grad_norm from which clipping shapes training instead of catching outliers. */
export const CLIP_STEP_SHARE = 0.5;

/**
 * Mean completion tokens per pair of the step's chosen and rejected answers. train.ts does not log them yet; the
 * length check runs when metrics.jsonl has them and says so when it does not.
 */
export const LENGTH_KEYS = { chosen: "lengths/chosen", rejected: "lengths/rejected" } as const;

// ---------------------------------------------------------------------------------------------------------------
// Result types

export type WarningId = "chosen_rewards_falling" | "loss_at_ln2" | "eval_loss_above_ln2" | "overfitting" | "length_bias" | "clipping";

export interface HealthWarning {
  id: WarningId;
  /** What is wrong, in one line. */
  title: string;
  /** The numbers behind it. */
  evidence: string;
  /** What to change. */
  advice: string;
  /** The config keys the advice names. */
  settings: string[];
}

export interface Point {
  step: number;
  value: number;
}

export interface HealthRow {
  key: string;
  split: "held-out" | "training";
  better: "lower" | "higher";
  start: Point | null;
  /** Held-out: the last evaluation. Training: the mean of the last quarter's rows (at `step`, the last of them). */
  end: Point | null;
  /** Rows averaged into `end` (1 for held-out values). */
  endRows: number;
  /** The best evaluation; null for training rows, whose best batch is noise. */
  best: Point | null;
}

export interface RunHealth {
  rows: HealthRow[];
  warnings: HealthWarning[];
  /** Checks that could not run, and why. */
  notes: string[];
}

/** A check's outcome: a warning, nothing to report (null), or why it could not run. */
export type CheckResult = HealthWarning | { skipped: string } | null;

// ---------------------------------------------------------------------------------------------------------------
// Small statistics

/** The finite values of `key`, with their steps, in file order. */
export function pointsOf(rows: readonly MetricsRow[], key: string): Point[] {
  const out: Point[] = [];
  for (const r of rows) {
    const x = r.step;
    const y = r[key];
    if (typeof x === "number" && typeof y === "number" && Number.isFinite(y)) out.push({ step: x, value: y });
  }
  return out;
}

const mean = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

/** Standard error of the mean (sample standard deviation / √n); 0 for fewer than 2 values. */
function stdErr(xs: readonly number[]): number {
  if (xs.length < 2) return 0;
  const m = mean(xs);
  return Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1) / xs.length);
}

/** The last quarter of a run's rows (at least 2, or all when fewer). */
export function lastQuarter<T>(xs: readonly T[]): T[] {
  return xs.slice(xs.length - Math.min(xs.length, Math.max(2, Math.ceil(xs.length / 4))));
}

/**
 * Window of the moving average for n points: odd, at least 5, and about n/20 so a run of any length shows about
 * twenty independent stretches. Batch means are independent from step to step, so the window cuts their noise by
 * √window.
 */
export function smoothingWindow(n: number): number {
  return Math.max(5, 2 * Math.floor(n / 40) + 1);
}

/**
 * Centred moving average: each value is the mean of the `window` values around it, the window shrinking at the
 * ends so that it stays centred (a trailing mean or an EMA would lag the curve by half a window).
 */
export function movingAverage(values: readonly number[], window: number): number[] {
  const half = Math.floor(window / 2);
  const prefix = [0];
  for (const v of values) prefix.push(prefix.at(-1)! + v);
  return values.map((_, i) => {
    const h = Math.min(half, i, values.length - 1 - i);
    return (prefix[i + h + 1]! - prefix[i - h]!) / (2 * h + 1);
  });
}

const f = (x: number, d = 3): string => (Math.abs(x) >= 1e4 || (x !== 0 && Math.abs(x) < 1e-3) ? x.toExponential(2) : x.toFixed(d));

// ---------------------------------------------------------------------------------------------------------------
// What the config says

/** A setting's current value, for advice: " (now 3)", or "" when the run's config does not have the key. */
function now(run: RunData, key: string): string {
  const cfg = run.config ?? {};
  const loss = (cfg.loss ?? {}) as Record<string, unknown>;
  const v = key in cfg ? cfg[key] : loss[key];
  return v === undefined ? "" : v === null ? " (now not set)" : ` (now ${JSON.stringify(v)})`;
}

function lossSection(run: RunData): Record<string, unknown> | null {
  const l = run.config?.loss;
  return l !== null && typeof l === "object" && !Array.isArray(l) ? (l as Record<string, unknown>) : null;
}

const lossTypes = (loss: Record<string, unknown>): string[] => (Array.isArray(loss.loss_type) ? loss.loss_type.map(String) : [String(loss.loss_type ?? "sigmoid")]);

/** The loss types whose value at policy = reference (h = 0) is ln 2: sigmoid (also with label smoothing), robust, sigmoid_norm. */
const LN2_LOSSES = ["sigmoid", "robust", "sigmoid_norm"];

/**
 * Whether the untrained model's loss is ln 2 for this run's loss config; otherwise why not. An added NLL term
 * (rpo_alpha), WPO weights or weights other than one single 1 move the starting value away from ln 2.
 */
export function ln2Baseline(run: RunData): true | string {
  const loss = lossSection(run);
  if (!loss) return "the run has no config.json, so its loss (and whether it starts at ln 2) is unknown";
  const types = lossTypes(loss);
  const weights = Array.isArray(loss.loss_weights) ? loss.loss_weights : [1];
  if (types.length !== 1 || !LN2_LOSSES.includes(types[0]!) || weights[0] !== 1)
    return `loss_type ${JSON.stringify(loss.loss_type)} does not start at ln 2 (only ${LN2_LOSSES.join(", ")} alone do)`;
  if (typeof loss.rpo_alpha === "number" && loss.rpo_alpha !== 0) return `rpo_alpha ${loss.rpo_alpha} adds an NLL term, so the loss does not start at ln 2`;
  if (loss.use_weighting === true) return "use_weighting (WPO) scales each pair's loss, so the loss does not start at ln 2";
  return true;
}

/**
 * β when the implicit rewards are β·log π/π_ref (the DPO family with a reference); otherwise why not: SimPO's and
 * ORPO's rewards are scaled log-probabilities of the policy alone, negative from the start.
 */
function logRatioBeta(run: RunData): number | string {
  const loss = lossSection(run);
  if (!loss) return "the run has no config.json, so what its rewards measure is unknown";
  const types = lossTypes(loss);
  if (types.includes("simpo") || types.includes("orpo") || types.every((t) => t === "sft"))
    return `loss_type ${JSON.stringify(loss.loss_type)} has no reference, so its rewards are not log-ratios against one`;
  return typeof loss.beta === "number" && loss.beta > 0 ? loss.beta : "the config has no β";
}

// ---------------------------------------------------------------------------------------------------------------
// The checks

const tooFew = (what: string, n: number): { skipped: string } => ({
  skipped: `${what}: not judged, ${n} logged training step${n === 1 ? "" : "s"} (needs ${MIN_TREND_STEPS})`,
});

/** Chosen rewards falling: the last quarter's mean rewards/chosen clearly below 0 (the reference's level). */
export function checkChosenRewards(run: RunData): CheckResult {
  const what = "Falling chosen rewards";
  const beta = logRatioBeta(run);
  if (typeof beta === "string") return { skipped: `${what}: not checked, ${beta}` };
  const chosen = pointsOf(run.train, "rewards/chosen");
  if (chosen.length < MIN_TREND_STEPS) return tooFew(what, chosen.length);
  const q = lastQuarter(chosen).map((p) => p.value);
  const m = mean(q);
  const se = stdErr(q);
  const margins = lastQuarter(pointsOf(run.train, "rewards/margins")).map((p) => p.value);
  const margin = margins.length > 0 ? mean(margins) : 0;
  const fall = -m;
  if (!(fall > FALL_Z * se && fall / beta >= CHOSEN_FALL_MIN_NATS && fall >= CHOSEN_FALL_SHARE * Math.max(0, margin))) return null;
  return {
    id: "chosen_rewards_falling",
    title: "Chosen rewards are falling: the preferred answers have become less likely than under the reference",
    evidence:
      `rewards/chosen averaged ${f(m)} ± ${f(se)} over the last ${q.length} logged steps (log π/π_ref = ${f(m / beta, 2)} nats per chosen answer at β = ${beta}), ` +
      `against a margin of ${f(margin)}: part of the margin was won by pushing the chosen answers down, only more slowly than the rejected ones.`,
    advice:
      `Add an NLL term on the chosen answers with rpo_alpha${now(run, "rpo_alpha")} (the RPO paper uses 1.0), or use loss_type "apo_zero" ` +
      `(it raises chosen and lowers rejected answers separately), or lower learning_rate${now(run, "learning_rate")}.`,
    settings: ["rpo_alpha", "loss_type", "learning_rate"],
  };
}

/** Loss stuck at ln 2: the moving average of the training loss never leaves ln 2 ± LN2_BAND. */
export function checkLossAtLn2(run: RunData): CheckResult {
  const what = "Loss stuck at ln 2";
  const base = ln2Baseline(run);
  if (base !== true) return { skipped: `${what}: not checked, ${base}` };
  const loss = pointsOf(run.train, "loss");
  if (loss.length < MIN_TREND_STEPS) return tooFew(what, loss.length);
  const w = smoothingWindow(loss.length);
  const dev = Math.max(...movingAverage(loss.map((p) => p.value), w).map((v) => Math.abs(v - LN2)));
  if (dev >= LN2_BAND) return null;
  const acc = pointsOf(run.train, "rewards/accuracies").map((p) => p.value);
  return {
    id: "loss_at_ln2",
    title: "The training loss stayed at ln 2, the loss of the untrained model: nothing is being learnt",
    evidence:
      `Over all ${loss.length} logged steps the training loss (moving average over ${w} steps) stayed within ${f(dev, 4)} of ln 2 = ${f(LN2, 4)}` +
      (acc.length > 0 ? `; reward accuracy averaged ${f(mean(acc))}.` : "."),
    advice:
      `Raise learning_rate${now(run, "learning_rate")} (TRL's 1e-6 is for billion-parameter models; warmup_steps/warmup_ratio also hold it low at first). ` +
      `Check beta${now(run, "beta")}: the loss moves by about β·margin/2, so a very small β keeps it at ln 2. ` +
      `Check the data: identical or swapped chosen/rejected fields (chosen_field, rejected_field), or truncation ` +
      `(max_length, max_prompt_length, max_completion_length) cutting both answers to the same tokens.`,
    settings: ["learning_rate", "beta", "chosen_field", "rejected_field", "max_length", "max_completion_length"],
  };
}

/** The advice for held-out results that got worse: stop earlier or keep the best evaluation's weights. */
function overfitAdvice(run: RunData, bestStep: number | null): Pick<HealthWarning, "advice" | "settings"> {
  const best = bestStep !== null ? ` (held-out was best at step ${bestStep})` : "";
  const keeps = run.config?.load_best_model_at_end === true;
  return {
    advice:
      `Train less: fewer num_train_epochs${now(run, "num_train_epochs")} or a smaller max_steps${now(run, "max_steps")}, or a lower learning_rate${now(run, "learning_rate")}. ` +
      (keeps
        ? `load_best_model_at_end is on, so final/ holds the best evaluation's weights by metric_for_best_model${now(run, "metric_for_best_model")}${best}.`
        : `Or keep the best evaluation's weights${best}: evaluate often (eval_steps${now(run, "eval_steps")}) and set load_best_model_at_end with metric_for_best_model "eval_loss".`),
    settings: ["num_train_epochs", "max_steps", "learning_rate", "eval_steps", "load_best_model_at_end", "metric_for_best_model"],
  };
}

const NO_EVAL = "the run has no evaluation rows (set eval_size or eval_data to hold out pairs)";

/** Held-out loss above ln 2 at the end: worse on held-out pairs than the untrained model. */
export function checkEvalLossAboveLn2(run: RunData): CheckResult {
  const what = "Held-out loss against ln 2";
  const base = ln2Baseline(run);
  if (base !== true) return { skipped: `${what}: not checked, ${base}` };
  const ev = pointsOf(run.eval, "eval_loss");
  if (ev.length === 0) return { skipped: `${what}: not checked, ${NO_EVAL}` };
  const last = ev.at(-1)!;
  if (last.value <= LN2 + LN2_BAND) return null;
  const best = ev.reduce((a, b) => (b.value < a.value ? b : a));
  return {
    id: "eval_loss_above_ln2",
    title: "The held-out loss ended above ln 2: on held-out pairs the model is worse than not training at all",
    evidence:
      `eval_loss was ${f(last.value, 4)} at step ${last.step}; the untrained model (policy = reference) scores ln 2 = ${f(LN2, 4)} on any pairs. ` +
      `Its best was ${f(best.value, 4)} at step ${best.step}.`,
    ...overfitAdvice(run, best.value < last.value ? best.step : null),
  };
}

/**
 * Overfitting: since the best evaluation, held-out accuracy fell by OVERFIT_ACC_DROP (or held-out loss rose by
 * OVERFIT_LOSS_RISE) while the training batches got better (higher accuracy, or lower loss) than before it.
 */
export function checkOverfitting(run: RunData): CheckResult {
  const what = "Overfitting";
  const acc = pointsOf(run.eval, "eval_rewards/accuracies");
  const loss = pointsOf(run.eval, "eval_loss");
  if (Math.max(acc.length, loss.length) < MIN_EVAL_POINTS)
    return { skipped: `${what}: not judged, ${run.eval.length === 0 ? NO_EVAL : `${run.eval.length} evaluations (needs ${MIN_EVAL_POINTS}; set eval_steps)`}` };
  /** Mean of a training metric over the rows up to and after a step. */
  const trainBeforeAfter = (key: string, step: number): [number, number] | null => {
    const pts = pointsOf(run.train, key);
    const before = pts.filter((p) => p.step <= step).map((p) => p.value);
    const after = pts.filter((p) => p.step > step).map((p) => p.value);
    return before.length > 0 && after.length > 0 ? [mean(before), mean(after)] : null;
  };
  const found: string[] = [];
  let bestStep: number | null = null;
  if (acc.length >= MIN_EVAL_POINTS) {
    const best = acc.reduce((a, b) => (b.value > a.value ? b : a));
    const last = acc.at(-1)!;
    const tr = trainBeforeAfter("rewards/accuracies", best.step);
    if (best.value - last.value >= OVERFIT_ACC_DROP && tr && tr[1] > tr[0]) {
      found.push(
        `held-out reward accuracy fell from ${f(best.value)} (step ${best.step}) to ${f(last.value)} (step ${last.step}) ` +
          `while the training batches' accuracy rose from a mean of ${f(tr[0])} before step ${best.step} to ${f(tr[1])} after it`,
      );
      bestStep = best.step;
    }
  }
  if (loss.length >= MIN_EVAL_POINTS) {
    const best = loss.reduce((a, b) => (b.value < a.value ? b : a));
    const last = loss.at(-1)!;
    const tr = trainBeforeAfter("loss", best.step);
    if (last.value - best.value >= OVERFIT_LOSS_RISE && tr && tr[1] < tr[0]) {
      found.push(
        `held-out loss rose from ${f(best.value, 4)} (step ${best.step}) to ${f(last.value, 4)} (step ${last.step}) ` +
          `while the training loss fell from a mean of ${f(tr[0], 4)} before step ${best.step} to ${f(tr[1], 4)} after it`,
      );
      bestStep ??= best.step;
    }
  }
  if (found.length === 0) return null;
  return {
    id: "overfitting",
    title: "Overfitting: held-out results got worse while the training batches kept improving",
    evidence: found.map((s) => s[0]!.toUpperCase() + s.slice(1)).join(". ") + ".",
    ...overfitAdvice(run, bestStep),
  };
}

/** Length bias: chosen answers longer than rejected ones, by LENGTH_BIAS_RATIO on average and on most steps. */
export function checkLengthBias(run: RunData): CheckResult {
  const what = "Length bias";
  const rows = run.train.filter((r) => typeof r[LENGTH_KEYS.chosen] === "number" && typeof r[LENGTH_KEYS.rejected] === "number");
  if (rows.length === 0)
    return {
      skipped:
        `${what}: not checked, metrics.jsonl has no "${LENGTH_KEYS.chosen}" and "${LENGTH_KEYS.rejected}" (mean completion tokens per pair); ` +
        `logps/chosen and logps/rejected cannot stand in for them, because a summed log-prob mixes length with how likely each token is`,
    };
  if (rows.length < MIN_TREND_STEPS) return tooFew(what, rows.length);
  const c = rows.map((r) => r[LENGTH_KEYS.chosen]!);
  const r = rows.map((r) => r[LENGTH_KEYS.rejected]!);
  const ratio = mean(c) / mean(r);
  const share = c.filter((x, i) => x > r[i]!).length / rows.length;
  if (!(ratio >= LENGTH_BIAS_RATIO && share >= LENGTH_BIAS_STEP_SHARE)) return null;
  return {
    id: "length_bias",
    title: "Length bias: the chosen answers are systematically longer than the rejected ones",
    evidence:
      `Chosen answers averaged ${f(mean(c), 1)} tokens against ${f(mean(r), 1)} for rejected ones (×${f(ratio, 2)}), longer on ${f(100 * share, 0)}% of ` +
      `${rows.length} logged steps. DPO sums log-probs over tokens, so "longer" is an easy preference for the policy to learn instead of "better".`,
    advice:
      `Set ld_alpha${now(run, "ld_alpha")} (LD-DPO, e.g. 0.5: tokens past the shorter answer's length count with that weight), or use a length-normalised ` +
      `loss: loss_type "sigmoid_norm" or "simpo". Or balance the data (drop pairs whose chosen answer is much longer; max_completion_length${now(run, "max_completion_length")}).`,
    settings: ["ld_alpha", "loss_type", "max_completion_length"],
  };
}

/** Clipping on most steps: grad_norm (before clipping) above max_grad_norm on more than CLIP_STEP_SHARE of logged steps. */
export function checkClipping(run: RunData): CheckResult {
  const what = "Gradient clipping";
  const clip = run.config?.max_grad_norm;
  if (typeof clip !== "number") return { skipped: `${what}: not checked, the run's config has no max_grad_norm` };
  if (clip <= 0) return { skipped: `${what}: not checked, clipping is off (max_grad_norm 0)` };
  const norms = pointsOf(run.train, "grad_norm");
  if (norms.length < MIN_TREND_STEPS) return tooFew(what, norms.length);
  const clipped = norms.filter((p) => p.value > clip).length;
  if (clipped / norms.length <= CLIP_STEP_SHARE) return null;
  const med = [...norms.map((p) => p.value)].sort((a, b) => a - b)[Math.floor(norms.length / 2)]!;
  return {
    id: "clipping",
    title: "Gradient clipping is active on most steps",
    evidence:
      `grad_norm was above max_grad_norm = ${clip} on ${clipped} of ${norms.length} logged steps (median norm ${f(med)}). With every step clipped to ` +
      `the same norm, large and small gradients weigh alike in AdamW's moments: the clip shapes training instead of catching outliers.`,
    advice: `Lower learning_rate${now(run, "learning_rate")}, or raise max_grad_norm${now(run, "max_grad_norm")} above the typical norm.`,
    settings: ["learning_rate", "max_grad_norm"],
  };
}

/** Every check, in the order the report lists their warnings. */
export const HEALTH_CHECKS: readonly ((run: RunData) => CheckResult)[] = [
  checkEvalLossAboveLn2, checkOverfitting, checkLossAtLn2, checkChosenRewards, checkLengthBias, checkClipping,
];

// ---------------------------------------------------------------------------------------------------------------
// The verdict

/** Start, end and best held-out values, and the training values the summary used to quote, as means. */
export function healthRows(run: RunData): HealthRow[] {
  const held = (key: string, better: "lower" | "higher"): HealthRow => {
    const pts = pointsOf(run.eval, key);
    const best = pts.length === 0 ? null : pts.reduce((a, b) => ((better === "lower" ? b.value < a.value : b.value > a.value) ? b : a));
    return { key, split: "held-out", better, start: pts[0] ?? null, end: pts.at(-1) ?? null, endRows: pts.length > 0 ? 1 : 0, best };
  };
  const trained = (key: string, better: "lower" | "higher"): HealthRow => {
    const pts = pointsOf(run.train, key);
    const q = lastQuarter(pts);
    const end = q.length > 0 ? { step: q.at(-1)!.step, value: mean(q.map((p) => p.value)) } : null;
    return { key, split: "training", better, start: pts[0] ?? null, end, endRows: q.length, best: null };
  };
  return [
    held("eval_loss", "lower"),
    held("eval_rewards/accuracies", "higher"),
    held("eval_rewards/margins", "higher"),
    trained("loss", "lower"),
    trained("rewards/accuracies", "higher"),
    trained("rewards/margins", "higher"),
    trained("rewards/chosen", "higher"),
  ].filter((r) => r.end !== null);
}

export function runHealth(run: RunData): RunHealth {
  const warnings: HealthWarning[] = [];
  const notes: string[] = [];
  for (const check of HEALTH_CHECKS) {
    const r = check(run);
    if (r === null) continue;
    if ("skipped" in r) notes.push(r.skipped);
    else warnings.push(r);
  }
  return { rows: healthRows(run), warnings, notes };
}
