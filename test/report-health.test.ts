// The report's verdict (src/report/health.ts and its section in report.html). Each synthetic run folder is written
// in the format train() writes (config.json from the real config resolver, metrics.jsonl rows with train.ts's keys
// in its order) and shaped to trip exactly one warning; one is shaped to trip none. Every test checks both the
// warnings runHealth returns and the text that lands in report.html. Thresholds are tested at their edges through the
// exported constants, so moving a threshold or flipping a comparison turns a test red.

import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import type { DemoResults } from "../src/demo/demo.js";
import {
  CHOSEN_FALL_MIN_NATS, CLIP_STEP_SHARE, LENGTH_BIAS_RATIO, LN2, LN2_BAND, MIN_TREND_STEPS, OVERFIT_ACC_DROP, OVERFIT_LOSS_RISE,
  checkChosenRewards, checkClipping, checkLengthBias, checkLossAtLn2, checkOverfitting, lastQuarter, movingAverage, runHealth, smoothingWindow,
  type WarningId,
} from "../src/report/health.js";
import { type MetricsRow, type RunData, readRun, renderDemoReport, renderRunReport, trainingCharts, writeRunReport } from "../src/report/report.js";
import { mulberry32 } from "../src/rng.js";
import { resolveTrainConfig, trainConfigToJson } from "../src/train/config.js";

const work = mkdtempSync(join(tmpdir(), "tsdpo-health-"));
after(() => rmSync(work, { recursive: true, force: true }));

// ---------------------------------------------------------------------------------------------------------------
// Synthetic runs

/** A training metric as a function of the run's progress t ∈ (0, 1] and a noise draw u ∈ [−0.5, 0.5). */
type Curve = (t: number, u: number, step: number) => number;

interface RunShape {
  steps: number;
  loss: Curve;
  chosen: Curve;
  rejected: Curve;
  accuracy: Curve;
  gradNorm: Curve;
  /** Mean completion tokens of chosen and rejected answers; null: the log has no length keys (as train.ts today). */
  lengths: [Curve, Curve] | null;
  /** One value per evaluation, at every `evalEvery` steps. */
  evalLoss: number[];
  evalAcc: number[];
  evalEvery: number;
  /** Settings given to the config resolver on top of the defaults below. */
  config: Record<string, unknown>;
}

const healthy: RunShape = {
  steps: 40,
  loss: (t, u) => LN2 - 0.25 * t + 0.03 * u,
  chosen: (t, u) => 0.3 * t + 0.02 * u,
  rejected: (t, u) => -0.6 * t + 0.02 * u,
  accuracy: (t, u) => Math.min(1, Math.max(0, 0.5 + 0.3 * t + 0.2 * u)),
  gradNorm: (_t, u) => 0.6 + 0.2 * u,
  lengths: [(_t, u) => 30 + 6 * u, (_t, u) => 30 - 6 * u],
  evalLoss: [0.68, 0.64, 0.61, 0.59],
  evalAcc: [0.55, 0.6, 0.625, 0.65],
  evalEvery: 10,
  config: {},
};

/** Writes config.json and metrics.jsonl as train() does; returns the folder. */
function writeRun(name: string, shape: RunShape): string {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  const cfg = resolveTrainConfig(
    { data: "pairs.jsonl", eval_size: 16, num_train_epochs: 3, learning_rate: 5e-4, eval_steps: shape.evalEvery, backend: "js", ...shape.config },
    `health test ${name}`,
  );
  writeFileSync(join(dir, "config.json"), JSON.stringify(trainConfigToJson(cfg), null, 2) + "\n");
  const rand = mulberry32(name.length * 7919 + name.charCodeAt(0));
  const lines: string[] = [];
  for (let step = 1; step <= shape.steps; step++) {
    const t = step / shape.steps;
    const at = (c: Curve): number => c(t, rand() - 0.5, step);
    const chosen = at(shape.chosen);
    const rejected = at(shape.rejected);
    const row: MetricsRow = {
      "rewards/chosen": chosen, "rewards/rejected": rejected, "rewards/accuracies": at(shape.accuracy), "rewards/margins": chosen - rejected,
      "logps/chosen": -40 + chosen / 0.1, "logps/rejected": -42 + rejected / 0.1, "logits/chosen": -0.02, "logits/rejected": -0.03, loss: at(shape.loss),
    };
    if (shape.lengths) [row["lengths/chosen"], row["lengths/rejected"]] = [at(shape.lengths[0]), at(shape.lengths[1])];
    Object.assign(row, { grad_norm: at(shape.gradNorm), learning_rate: 5e-4 * (1 - t), epoch: 3 * t, step, num_tokens: 800 * step, tokens_per_second: 500 });
    lines.push(JSON.stringify(row));
    if (step % shape.evalEvery === 0) {
      const k = step / shape.evalEvery - 1;
      const acc = shape.evalAcc[k]!;
      const ev: MetricsRow = {
        "eval_rewards/chosen": 0.1, "eval_rewards/rejected": 0.1 - acc + 0.5, "eval_rewards/accuracies": acc, "eval_rewards/margins": acc - 0.5,
        "eval_logps/chosen": -40, "eval_logps/rejected": -42, "eval_logits/chosen": -0.02, "eval_logits/rejected": -0.03, eval_loss: shape.evalLoss[k]!,
        epoch: 3 * t, step,
      };
      lines.push(JSON.stringify(ev));
    }
  }
  writeFileSync(join(dir, "metrics.jsonl"), lines.join("\n") + "\n");
  return dir;
}

/** The HTML between <h2 id="health"> and the next <h2>. */
function healthSection(html: string): string {
  const start = html.indexOf(`<h2 id="health">`);
  assert.ok(start >= 0, "the report has a health section");
  const end = html.indexOf("<h2", start + 4);
  return html.slice(start, end < 0 ? undefined : end);
}

const text = (html: string): string => html.replace(/<[^>]+>/g, "").replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");

// ---------------------------------------------------------------------------------------------------------------
// One run per warning

const cases: { name: string; shape: RunShape; id: WarningId; settings: string[]; says: RegExp }[] = [
  {
    name: "chosen-falling",
    // Both rewards fall; the margin grows, but 40% of it is the chosen answers losing likelihood.
    shape: { ...healthy, chosen: (t, u) => -1.0 * t + 0.02 * u, rejected: (t, u) => -2.5 * t + 0.02 * u },
    id: "chosen_rewards_falling", settings: ["rpo_alpha", "loss_type", "learning_rate"], says: /rewards\/chosen averaged -0\.8/,
  },
  {
    name: "stuck-at-ln2",
    shape: {
      ...healthy,
      loss: (_t, u) => LN2 + 0.004 * u, chosen: (_t, u) => 0.001 * u, rejected: (_t, u) => 0.001 * u, accuracy: (_t, u) => 0.5 + 0.2 * u,
      gradNorm: () => 0.05, evalLoss: [LN2 + 2e-4, LN2 - 3e-4, LN2 + 1e-4, LN2], evalAcc: [0.5, 0.5, 0.5, 0.5],
    },
    id: "loss_at_ln2", settings: ["learning_rate", "beta"], says: /stayed within \S+ of ln 2 = 0\.6931/,
  },
  {
    name: "eval-above-ln2",
    // Worse than the untrained model from the first evaluation on, but not getting worse: not overfitting.
    shape: { ...healthy, evalLoss: [0.71, 0.72, 0.72, 0.72] },
    id: "eval_loss_above_ln2", settings: ["num_train_epochs", "learning_rate", "load_best_model_at_end", "metric_for_best_model"], says: /eval_loss was 0\.7200 at step 40/,
  },
  {
    name: "overfit-accuracy",
    // Held-out accuracy peaks at step 20 and falls 10 points; held-out loss rises only 0.04 (below OVERFIT_LOSS_RISE).
    shape: { ...healthy, evalAcc: [0.55, 0.7, 0.65, 0.6], evalLoss: [0.66, 0.6, 0.62, 0.64] },
    id: "overfitting", settings: ["num_train_epochs", "learning_rate", "load_best_model_at_end", "metric_for_best_model"],
    says: /held-out reward accuracy fell from 0\.700 \(step 20\) to 0\.600 \(step 40\)/i,
  },
  {
    name: "overfit-loss",
    shape: { ...healthy, evalLoss: [0.65, 0.55, 0.6, 0.66] },
    id: "overfitting", settings: ["num_train_epochs", "learning_rate", "load_best_model_at_end", "metric_for_best_model"],
    says: /held-out loss rose from 0\.5500 \(step 20\) to 0\.6600 \(step 40\)/i,
  },
  {
    name: "length-bias",
    shape: { ...healthy, lengths: [(_t, u) => 42 + 6 * u, (_t, u) => 30 + 6 * u] },
    id: "length_bias", settings: ["ld_alpha", "loss_type"], says: /Chosen answers averaged 4\d\.\d tokens against [23]\d\.\d for rejected ones \(×1\.[3-5]\d\), longer on 100% of 40/,
  },
  {
    name: "clipping",
    // 30 of 40 steps above the clip of 1.0.
    shape: { ...healthy, gradNorm: (_t, u, step) => (step % 4 === 0 ? 0.6 : 1.5) + 0.2 * u },
    id: "clipping", settings: ["learning_rate", "max_grad_norm"], says: /above max_grad_norm = 1 on 30 of 40 logged steps/,
  },
];

describe("run health: one synthetic run per warning", () => {
  it("a healthy run: every check runs and none warns; the report says so", async () => {
    const dir = writeRun("healthy", healthy);
    const h = runHealth(readRun(dir));
    assert.deepEqual(h.warnings, []);
    assert.deepEqual(h.notes, [], "every check had what it needs");
    const row = (key: string) => h.rows.find((r) => r.key === key)!;
    assert.deepEqual([row("eval_loss").start, row("eval_loss").end, row("eval_loss").best], [{ step: 10, value: 0.68 }, { step: 40, value: 0.59 }, { step: 40, value: 0.59 }]);
    assert.deepEqual(row("eval_rewards/accuracies").best, { step: 40, value: 0.65 });

    const html = readFileSync(await writeRunReport(dir, { sample: false }), "utf8");
    const section = healthSection(html);
    assert.match(text(section), /No warnings\./);
    assert.doesNotMatch(section, /data-warning=/);
    assert.ok(html.indexOf(`<h2 id="health">`) < html.indexOf("<h2>Training</h2>"), "the health section comes before the charts");
  });

  for (const c of cases)
    it(`${c.name}: warns ${c.id} and nothing else, naming ${c.settings.join(", ")}`, async () => {
      const dir = writeRun(c.name, c.shape);
      const h = runHealth(readRun(dir));
      assert.deepEqual(h.warnings.map((w) => w.id), [c.id]);
      assert.deepEqual(h.notes, []);
      const w = h.warnings[0]!;
      for (const s of c.settings) {
        assert.ok(w.settings.includes(s), `${c.id} lists ${s}`);
        assert.match(w.advice, new RegExp(`\\b${s}\\b`), `the advice names ${s}`);
      }
      assert.match(w.evidence, c.says);

      const html = readFileSync(await writeRunReport(dir, { sample: false }), "utf8");
      const section = healthSection(html);
      assert.match(text(section), /1 warning\./);
      assert.match(section, new RegExp(`data-warning="${c.id}"`));
      assert.ok(text(section).includes(w.title), "the warning's title in report.html");
      assert.ok(text(section).includes(w.evidence), "its numbers");
      for (const s of c.settings) assert.ok(section.includes(`<code>${s}</code>`), `${s} set as code in report.html`);
    });
});

// ---------------------------------------------------------------------------------------------------------------
// Thresholds at their edges

/** A RunData built in memory: training rows from per-step values, a config with the given settings. */
function memRun(train: MetricsRow[], evalRows: MetricsRow[] = [], config: Record<string, unknown> = { max_grad_norm: 1, loss: { loss_type: ["sigmoid"], loss_weights: [1], beta: 0.1, rpo_alpha: null, use_weighting: false } }): RunData {
  return { dir: work, label: "mem", config, train, eval: evalRows, summary: null, samples: null, samplesNote: null };
}
const steps = (n: number, row: (i: number) => MetricsRow): MetricsRow[] => Array.from({ length: n }, (_, i) => ({ step: i + 1, ...row(i) }));
const id = (r: ReturnType<typeof checkClipping>): string | null => (r === null ? null : "skipped" in r ? `skipped: ${r.skipped}` : r.id);

describe("run health: thresholds", () => {
  it("clipping: half the steps clipped is not 'most'; one more is", () => {
    const n = 20;
    const clipped = (k: number): RunData => memRun(steps(n, (i) => ({ loss: 0.5, grad_norm: i < k ? 1.01 : 1.0 })));
    const atEdge = Math.floor(CLIP_STEP_SHARE * n);
    assert.equal(id(checkClipping(clipped(atEdge))), null, `${atEdge} of ${n}, and a norm equal to max_grad_norm is not clipped`);
    assert.equal(id(checkClipping(clipped(atEdge + 1))), "clipping");
    assert.match(id(checkClipping(memRun(steps(n, () => ({ grad_norm: 5 })), [], { max_grad_norm: 0 })))!, /skipped: .*clipping is off/);
  });

  it("loss at ln 2: a moving average inside ln 2 ± LN2_BAND warns, one just outside does not", () => {
    const run = (offset: number): RunData => memRun(steps(MIN_TREND_STEPS * 2, () => ({ loss: LN2 - offset })));
    assert.equal(id(checkLossAtLn2(run(0.9 * LN2_BAND))), "loss_at_ln2");
    assert.equal(id(checkLossAtLn2(run(1.1 * LN2_BAND))), null);
    // Another loss starts elsewhere, so the check does not apply; it says so rather than passing.
    const ipo = memRun(steps(16, () => ({ loss: LN2 })), [], { max_grad_norm: 1, loss: { loss_type: ["ipo"], loss_weights: [1], beta: 0.1 } });
    assert.match(id(checkLossAtLn2(ipo))!, /skipped: .*"ipo".*does not start at ln 2/);
    const rpo = memRun(steps(16, () => ({ loss: LN2 })), [], { loss: { loss_type: ["sigmoid"], loss_weights: [1], beta: 0.1, rpo_alpha: 1 } });
    assert.match(id(checkLossAtLn2(rpo))!, /skipped: .*rpo_alpha 1 adds an NLL term/);
    const short = memRun(steps(MIN_TREND_STEPS - 1, () => ({ loss: LN2 })));
    assert.match(id(checkLossAtLn2(short))!, new RegExp(`skipped: .*${MIN_TREND_STEPS - 1} logged training steps \\(needs ${MIN_TREND_STEPS}\\)`));
  });

  it("length bias: needs both the ratio and most steps", () => {
    const run = (c: number, r: number, longerOn = 1): RunData =>
      memRun(steps(20, (i) => (i < 20 * longerOn ? { "lengths/chosen": c, "lengths/rejected": r } : { "lengths/chosen": r, "lengths/rejected": c })));
    assert.equal(id(checkLengthBias(run(30 * LENGTH_BIAS_RATIO * 1.01, 30))), "length_bias");
    assert.equal(id(checkLengthBias(run(30 * LENGTH_BIAS_RATIO * 0.99, 30))), null);
    // Chosen much longer on 60% of steps and shorter on the rest: the mean ratio is high but not systematic.
    assert.equal(id(checkLengthBias(run(90, 30, 0.6))), null);
    assert.match(id(checkLengthBias(memRun(steps(20, () => ({ loss: 0.5 })))))!, /skipped: .*"lengths\/chosen" and "lengths\/rejected"/);
  });

  it("overfitting: a held-out fall of OVERFIT_ACC_DROP counts, a smaller one does not; training must improve too", () => {
    const train = steps(30, (i) => ({ loss: 0.7 - i / 100, "rewards/accuracies": 0.5 + i / 100 }));
    const ev = (accs: number[], losses = [0.6, 0.6, 0.6]): MetricsRow[] => accs.map((a, k) => ({ step: 10 * (k + 1), "eval_rewards/accuracies": a, eval_loss: losses[k]! }));
    assert.equal(id(checkOverfitting(memRun(train, ev([0.6, 0.7, 0.7 - OVERFIT_ACC_DROP - 1e-9])))), "overfitting");
    assert.equal(id(checkOverfitting(memRun(train, ev([0.6, 0.7, 0.7 - OVERFIT_ACC_DROP + 1e-3])))), null);
    assert.equal(id(checkOverfitting(memRun(train, ev([0.6, 0.6, 0.6], [0.6, 0.5, 0.5 + OVERFIT_LOSS_RISE + 1e-9])))), "overfitting");
    assert.equal(id(checkOverfitting(memRun(train, ev([0.6, 0.6, 0.6], [0.6, 0.5, 0.5 + OVERFIT_LOSS_RISE - 1e-3])))), null);
    // The same held-out fall while the training batches also got worse is not overfitting (something else broke).
    const worse = steps(30, (i) => ({ loss: 0.5 + i / 100, "rewards/accuracies": 0.8 - i / 100 }));
    assert.equal(id(checkOverfitting(memRun(worse, ev([0.6, 0.7, 0.5], [0.6, 0.5, 0.7])))), null);
    assert.match(id(checkOverfitting(memRun(train, ev([0.6, 0.7]))))!, /skipped: .*2 evaluations \(needs 3/);
  });

  it("chosen rewards: a small significant fall is drift; a fall of CHOSEN_FALL_MIN_NATS per answer warns", () => {
    const run = (nats: number): RunData =>
      memRun(steps(20, (i) => ({ "rewards/chosen": -0.1 * nats * (i + 1) / 20, "rewards/margins": 0.1 * nats * (i + 1) / 20 })));
    // The last quarter (steps 16–20) averages 0.9 of the final fall.
    assert.equal(id(checkChosenRewards(run(CHOSEN_FALL_MIN_NATS / 0.8))), "chosen_rewards_falling");
    assert.equal(id(checkChosenRewards(run(CHOSEN_FALL_MIN_NATS / 0.95))), null);
    // Batches swinging ±2 around −0.2: far enough below 0 in nats, but within two standard errors of 0.
    const noisy = memRun(steps(24, (i) => ({ "rewards/chosen": -0.2 + (i % 2 === 0 ? 2 : -2), "rewards/margins": 0 })));
    assert.equal(id(checkChosenRewards(noisy)), null);
    assert.equal(id(checkChosenRewards(memRun(steps(24, () => ({ "rewards/chosen": -0.2, "rewards/margins": 0 }))))), "chosen_rewards_falling", "the same mean without the noise");
    // A fall small against the margin is the normal DPO picture (rejected falling much faster).
    const small = memRun(steps(20, () => ({ "rewards/chosen": -1, "rewards/margins": 5 })));
    assert.equal(id(checkChosenRewards(small)), null);
    const simpo = memRun(steps(20, () => ({ "rewards/chosen": -3 })), [], { loss: { loss_type: "simpo", beta: 2 } });
    assert.match(id(checkChosenRewards(simpo))!, /skipped: .*no reference/);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// What the report shows

describe("run report: summary and charts", () => {
  it("the summary leads with held-out values, not the last batch's accuracy", () => {
    // The case in issue 12: the last batch scores 1.000, the held-out pairs 0.604.
    const dir = writeRun("last-batch", { ...healthy, accuracy: (_t, _u, step) => (step % 2 === 0 ? 1 : 0.75), evalAcc: [0.55, 0.58, 0.6, 0.604] });
    const run = readRun(dir);
    assert.equal(run.train.at(-1)!["rewards/accuracies"], 1);
    const html = renderRunReport(run);
    const summary = text(html.slice(html.indexOf("<h2>Summary</h2>"), html.indexOf(`<h2 id="health">`)));
    assert.match(summary, /^Summary.*steps logged40held-out reward accuracy \(step 40\)0\.604/s, "held-out accuracy is the first value after the step count");
    assert.match(summary, /training reward accuracy, mean of the last 10 logged steps0\.875/);
    assert.doesNotMatch(summary, /1\.000/);
  });

  it("moving averages by hand, and the window and the last quarter", () => {
    assert.deepEqual(movingAverage([0, 0, 0, 10, 0, 0, 0], 3), [0, 0, 10 / 3, 10 / 3, 10 / 3, 0, 0]);
    assert.deepEqual(movingAverage([0, 0, 0, 10, 0, 0, 0], 5), [0, 0, 2, 2, 2, 0, 0]);
    assert.deepEqual(movingAverage([4, 8], 5), [4, 8], "the window shrinks to stay centred at the ends");
    assert.deepEqual([20, 100, 1000].map(smoothingWindow), [5, 5, 51]);
    assert.deepEqual(lastQuarter([1, 2, 3, 4, 5, 6, 7, 8, 9]), [7, 8, 9]);
    assert.deepEqual(lastQuarter([1, 2, 3]), [2, 3]);
  });

  it("noisy series get a moving average; loss charts a line at ln 2, the grad-norm chart one at max_grad_norm; steps are whole numbers", () => {
    const run = readRun(writeRun("charts", { ...healthy, config: { max_grad_norm: 2.5 } }));
    const charts = trainingCharts([run]);
    const chart = (id: string) => charts.find((c) => c.id === id)!;
    const loss = chart("loss");
    assert.deepEqual(loss.series.map((s) => [s.label, !!s.faded]), [["loss, per step", true], ["loss", false]]);
    const raw = run.train.map((r) => r.loss!);
    assert.deepEqual(loss.series[0]!.points.map((p) => p[1]), raw);
    assert.deepEqual(loss.series[1]!.points.map((p) => p[1]), movingAverage(raw, smoothingWindow(raw.length)));
    assert.match(loss.caption!, /moving average over 5 steps/);
    assert.deepEqual(loss.hlines, [{ y: LN2, label: "ln 2: the untrained model" }]);
    assert.deepEqual(chart("eval_loss").hlines, [{ y: LN2, label: "ln 2: the untrained model" }]);
    assert.deepEqual(chart("grad_norm").hlines!.map((h) => h.y), [2.5]);
    assert.equal(chart("rewards").series.filter((s) => !s.faded).length, 3, "chosen, rejected, margin each smoothed");
    assert.equal(chart("learning_rate").series.length, 1, "a schedule is not noise");
    assert.ok(charts.every((c) => c.integerX), "every training chart's x is a step");
    // A loss that does not start at ln 2 gets no ln 2 line; no clipping, no clip line.
    const ipo = readRun(writeRun("charts-ipo", { ...healthy, config: { loss_type: "ipo", max_grad_norm: 0 } }));
    const ipoCharts = trainingCharts([ipo]);
    assert.deepEqual(ipoCharts.find((c) => c.id === "loss")!.hlines, []);
    assert.deepEqual(ipoCharts.find((c) => c.id === "grad_norm")!.hlines, []);
    // Short series stay raw.
    const short = readRun(writeRun("charts-short", { ...healthy, steps: 10, evalEvery: 5, evalLoss: [0.68, 0.65], evalAcc: [0.5, 0.6] }));
    assert.deepEqual(trainingCharts([short]).find((c) => c.id === "loss")!.series.map((s) => s.label), ["loss"]);
  });
});

describe("demo report: health per β and error bars on the frontier", () => {
  it("each β run gets its own health block; the frontier carries the standard errors of reward and KL", () => {
    const good = readRun(writeRun("beta-0.1", healthy), "β=0.1");
    const bad = readRun(writeRun("beta-0.5", cases.find((c) => c.id === "clipping")!.shape), "β=0.5");
    const est = (mean: number, se: number): { mean: number; se: number } => ({ mean, se });
    const run = (beta: number, dir: string, kl: number) => ({
      beta, run_dir: dir, steps: 40,
      points: [{ step: 0, reward: est(2, 0.2), kl: est(0, 0) }, { step: 40, reward: est(4, 0.3), kl: est(kl, 0.4) }],
      final: { reward: est(4, 0.3), kl: est(kl, 0.4), eval_accuracy: 0.65, eval_loss: 0.59, eval_margin: 0.15 }, train_seconds: 1, eval_seconds: 1,
    });
    const results: DemoResults = {
      format: "tsdpo-demo", version: 1, seed: 1, quick: true, model: "stories260K.gguf",
      size: { prompts: 12, heldoutPrompts: 4, samplesPerPrompt: 4, maxNewTokens: 12, evalSamplesPerPrompt: 2, epochs: 1, batchSize: 4, learningRate: 5e-4, evalPoints: 1 },
      data: { prompts_file: "prompts.txt", train_prompts: 8, heldout_prompts: 4, train_pairs: 10, eval_pairs: 4, tied_skipped: 2, label_reward: est(1, 0.1) },
      reference: { reward: est(2, 0.2), kl: est(0, 0) },
      runs: [run(0.1, good.dir, 1.5), run(0.5, bad.dir, 0.7)],
      seconds: { label: 1, reference_eval: 1, total: 3 },
    };
    const html = renderDemoReport(work, results, null, [good, bad]);
    const section = healthSection(html);
    const blocks = section.split("<h3>").slice(1);
    assert.deepEqual(blocks.map((b) => text(b.slice(0, b.indexOf("</h3>")))), ["β=0.1", "β=0.5"]);
    assert.match(text(blocks[0]!), /No warnings\./);
    assert.match(text(blocks[1]!), /1 warning\./);
    assert.match(blocks[1]!, /data-warning="clipping"/);
    assert.ok(html.indexOf(`<h2 id="health">`) < html.indexOf("<h2>Reward vs KL frontier</h2>"), "near the top, after the result table");

    const data = JSON.parse(/<script type="application\/json" id="report-data">([\s\S]*?)<\/script>/.exec(html)![1]!) as {
      charts: { id: string; series: { label: string; err?: number[]; xerr?: number[] }[] }[];
    };
    const frontier = data.charts.find((c) => c.id === "frontier")!;
    assert.deepEqual(frontier.series.map((s) => [s.label, s.err, s.xerr]), [
      ["β = 0.1", [0.2, 0.3], [0, 0.4]],
      ["β = 0.5", [0.2, 0.3], [0, 0.4]],
      ["reference", [0.2], [0]],
    ]);
  });
});
