// `tsdpo demo`: the DPO paper's controlled-sentiment experiment (Rafailov et al. 2023, §6.1 and Figure 2) in
// miniature, on the shipped stories260K model. The paper tuned GPT-2 to write positive IMDb reviews, with
// preferences from a sentiment classifier; here stories260K learns to continue TinyStories openings more
// positively, with preferences from the AFINN-165 lexicon.
//
//   1. prompts   story openings shipped in assets/data/tinystories/prompts.txt; a seeded shuffle picks the
//                training prompts and the held-out prompts (which no training pair uses)
//   2. label     K completions per prompt from the reference (temperature 1, seeded), each scored by AFINN-165;
//                sorted by score, the i-th best is paired with the i-th worst (ties skipped), written as ordinary
//                preference JSONL files: demo/preferences.jsonl (training prompts) and demo/preferences_eval.jsonl
//                (held-out prompts)
//   3. train     train() with DPO for each β, the held-out pairs as eval_data, a few checkpoints
//   4. evaluate  on the held-out prompts, for the reference and every checkpoint: mean AFINN reward of fresh
//                samples (new seeds) and the sequence-level KL(π‖π_ref) from the same samples; held-out preference
//                accuracy from the trainer's evaluation
//   5. report    demo/results.json, demo/samples.json, each run's samples.json and report.html, and the demo's
//                report.html with the reward-vs-KL frontier
//
// Folder layout (--out):
//   demo/prompts.json, demo/preferences.jsonl, demo/preferences_eval.jsonl, demo/results.json, demo/samples.json
//   beta-<β>/        one train() run folder per β (config.json, metrics.jsonl, checkpoints/, final/, summary.json,
//                    samples.json, report.html)
//   report.html      the demo report

import { existsSync, mkdirSync, readFileSync, readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Backend } from "../backend/contract.js";
import { selectBackend } from "../backend/select.js";
import { configError, inputError } from "../errors.js";
import { writeFileAtomic } from "../io/atomic.js";
import { loadModel } from "../io/load.js";
import type { Model } from "../model/decoder.js";
import { assetPath, defaultModelPath } from "../paths.js";
import { Rng } from "../rng.js";
import type { Tokenizer } from "../tokenizer/types.js";
import { resolveTrainConfig } from "../train/config.js";
import { createProgress } from "../train/progress.js";
import { train } from "../train/train.js";
import { afinnReward } from "./afinn.js";
import { completionLogps, encodePrompt, meanSe, sampleCompletion } from "./sample.js";

export const demoPromptsPath = (): string => assetPath("data", "tinystories", "prompts.txt");

/** The sizes of a demo run. Defaults are chosen to finish in about 3–5 minutes on 2 cores with the js backend. */
export interface DemoSize {
  /** Story openings used in all; `heldoutPrompts` of them are kept out of training. */
  prompts: number;
  heldoutPrompts: number;
  /** Completions sampled per prompt to build pairs (K); pairs per prompt ≤ K/2. */
  samplesPerPrompt: number;
  /** Length of every completion, in tokens (≈ one or two sentences of a story). */
  maxNewTokens: number;
  /** Fresh samples per held-out prompt when measuring reward and KL. */
  evalSamplesPerPrompt: number;
  epochs: number;
  batchSize: number;
  learningRate: number;
  /** Checkpoints per run that are measured (the last is the final model); they are the frontier's points. */
  evalPoints: number;
}

export const DEMO_SIZES: { full: DemoSize; quick: DemoSize } = {
  // Sized for the js backend on 2 shared cores (~450–750 tokens/s): labelling 35–50 s, the reference's evaluation
  // 8–15 s, per β 60–70 s of training and 20–35 s of evaluation. Measured: one β 127 s (162 s with the machine
  // busy), three β 260 s; with the native backend 20 s and 33 s. Over seeds 1–5 (β 0.1) one epoch at 3e-4 moves
  // the held-out AFINN reward from 1.87 ± 0.09 to 4.99 ± 0.46 (difference 3.12 ± 0.54, s.d. over seeds) at a
  // KL(π‖π_ref) of 6.8 ± 0.6 nats.
  full: {
    prompts: 200, heldoutPrompts: 32, samplesPerPrompt: 4, maxNewTokens: 32, evalSamplesPerPrompt: 4,
    epochs: 1, batchSize: 8, learningRate: 3e-4, evalPoints: 2,
  },
  // Seconds, not minutes: for tests. Too small for the reward to move reliably.
  quick: {
    prompts: 12, heldoutPrompts: 4, samplesPerPrompt: 4, maxNewTokens: 12, evalSamplesPerPrompt: 2,
    epochs: 1, batchSize: 4, learningRate: 5e-4, evalPoints: 1,
  },
};

export interface DemoOptions {
  out: string;
  seed: number;
  betas: number[];
  quick: boolean;
  /** Overrides the size's prompt count (the default's held-out share, 16%, is kept; at least 2). */
  prompts: number | null;
  backend: string;
  /** Model to tune (default: the shipped stories260K). */
  model: string | null;
  quiet: boolean;
  log: (line: string) => void;
  /** Library callers (tests, experiments) may change any size; the CLI does not expose these. */
  size?: Partial<DemoSize>;
}

export interface Estimate {
  mean: number;
  se: number;
}

export interface DemoPoint {
  step: number;
  reward: Estimate;
  kl: Estimate;
}

export interface DemoRun {
  beta: number;
  run_dir: string;
  steps: number;
  points: DemoPoint[];
  /** The final policy (the last point), with the trainer's held-out evaluation. */
  final: { reward: Estimate; kl: Estimate; eval_accuracy: number | null; eval_loss: number | null; eval_margin: number | null };
  train_seconds: number;
  eval_seconds: number;
}

export interface DemoResults {
  format: "tsdpo-demo";
  version: 1;
  seed: number;
  quick: boolean;
  model: string;
  size: DemoSize;
  data: {
    prompts_file: string;
    train_prompts: number;
    heldout_prompts: number;
    train_pairs: number;
    eval_pairs: number;
    tied_skipped: number;
    label_reward: Estimate;
  };
  reference: { reward: Estimate; kl: Estimate };
  runs: DemoRun[];
  seconds: { label: number; reference_eval: number; total: number };
}

/** One evaluated sample: held-out prompt index, text, AFINN reward and log π − log π_ref. */
export interface EvalSample {
  prompt: number;
  text: string;
  reward: number;
  logratio: number;
}

export interface DemoSamples {
  prompts: string[];
  reference: EvalSample[];
  /** By β (as written in results), the final policy's samples. */
  policies: Record<string, EvalSample[]>;
}

/** The shipped story openings, one per line. */
export function readDemoPrompts(path = demoPromptsPath()): string[] {
  const lines = readFileSync(path, "utf8").split("\n").map((l) => l.trim()).filter((l) => l !== "");
  if (lines.length === 0) throw inputError(`${path}: no prompts (one story opening per line)`);
  return lines;
}

export function betaDirName(beta: number): string {
  return `beta-${beta}`;
}

const fmt = (e: Estimate, d = 2): string => `${e.mean.toFixed(d)} ± ${e.se.toFixed(d)}`;
const seconds = (t0: number): number => (Date.now() - t0) / 1000;

interface Labelled {
  prompt: string;
  samples: { text: string; score: number }[];
}

/** Pairs from one prompt's scored samples: i-th best with i-th worst; equal scores give no pair. */
export function pairsFromSamples(samples: readonly { text: string; score: number }[]): { chosen: string; rejected: string; chosen_score: number; rejected_score: number }[] {
  const sorted = [...samples].sort((a, b) => b.score - a.score);
  const out = [];
  for (let i = 0; i < Math.floor(sorted.length / 2); i++) {
    const hi = sorted[i]!;
    const lo = sorted[sorted.length - 1 - i]!;
    if (hi.score > lo.score && hi.text !== lo.text) out.push({ chosen: hi.text, rejected: lo.text, chosen_score: hi.score, rejected_score: lo.score });
  }
  return out;
}

/**
 * Samples `n` completions per prompt from `model` and scores them under `model` and `ref`. The RNG is seeded per
 * (seed, prompt), so every policy is measured on the same random stream: the comparison between policies does not
 * also carry the noise of different draws.
 */
function evaluatePolicy(be: Backend, model: Model, ref: Model, tok: Tokenizer, prompts: readonly string[], n: number, maxNewTokens: number, seed: number, onPrompt?: (i: number) => void): { samples: EvalSample[]; reward: Estimate; kl: Estimate } {
  const samples: EvalSample[] = [];
  const rows: { promptIds: number[]; completionIds: number[] }[] = [];
  prompts.forEach((prompt, i) => {
    const rng = new Rng((seed * 1_000_003 + i * 7919) >>> 0);
    const promptIds = encodePrompt(tok, prompt);
    for (let k = 0; k < n; k++) {
      const c = sampleCompletion(be, model, tok, promptIds, maxNewTokens, rng);
      samples.push({ prompt: i, text: c.text, reward: afinnReward(c.text), logratio: 0 });
      rows.push({ promptIds, completionIds: c.ids });
    }
    onPrompt?.(i);
  });
  const lp = completionLogps(be, model, rows);
  const lr = model === ref ? lp : completionLogps(be, ref, rows);
  samples.forEach((s, j) => (s.logratio = lp[j]! - lr[j]!));
  return { samples, reward: meanSe(samples.map((s) => s.reward)), kl: meanSe(samples.map((s) => s.logratio)) };
}

export async function runDemo(o: DemoOptions): Promise<DemoResults> {
  const t0 = Date.now();
  const say = o.quiet ? (_: string) => {} : o.log;
  for (const b of o.betas) if (!(b > 0 && Number.isFinite(b))) throw configError(`demo: --beta ${b}: every β must be a number > 0`);
  if (new Set(o.betas).size !== o.betas.length) throw configError(`demo: --beta ${o.betas.join(",")}: a β is listed twice`);
  const size: DemoSize = { ...(o.quick ? DEMO_SIZES.quick : DEMO_SIZES.full), ...o.size };
  const all = readDemoPrompts();
  if (o.prompts !== null) {
    if (!Number.isInteger(o.prompts) || o.prompts < 4) throw configError(`demo: --prompts ${o.prompts}: expected a whole number ≥ 4`);
    if (o.prompts > all.length) throw configError(`demo: --prompts ${o.prompts}: only ${all.length} story openings ship in ${demoPromptsPath()}`);
    size.prompts = o.prompts;
    size.heldoutPrompts = Math.max(2, Math.round((o.prompts * DEMO_SIZES.full.heldoutPrompts) / DEMO_SIZES.full.prompts));
  }
  const out = resolve(o.out);
  if (existsSync(out) && readdirSync(out).length > 0)
    throw configError(`demo: ${out} is not empty; give --out a new folder (the demo never overwrites a run)`);
  const demoDir = join(out, "demo");
  mkdirSync(demoDir, { recursive: true });

  const be = selectBackend(o.backend);
  const modelPath = resolve(o.model ?? defaultModelPath);
  const { model: ref, tokenizer: tok } = loadModel(modelPath);

  // 1. prompts
  const order = new Rng(o.seed).shuffle(all.map((_, i) => i)).slice(0, size.prompts);
  const heldout = order.slice(0, size.heldoutPrompts).map((i) => all[i]!);
  const trainPrompts = order.slice(size.heldoutPrompts).map((i) => all[i]!);
  writeFileAtomic(join(demoDir, "prompts.json"), JSON.stringify({ train: trainPrompts, heldout }, null, 2) + "\n");
  say(`tsdpo demo: ${modelPath}, ${trainPrompts.length} training prompts, ${heldout.length} held-out prompts, β ${o.betas.join(", ")}`);

  // 2. label: K samples per prompt from the reference, AFINN scores, pairs
  const tLabel = Date.now();
  const labelRng = new Rng((o.seed ^ 0x5eed1abe) >>> 0);
  const labelled: Labelled[] = [];
  const promptsToLabel = [...trainPrompts, ...heldout];
  const progress = createProgress("label", promptsToLabel.length, 0, process.stderr, o.quiet);
  for (const [i, p] of promptsToLabel.entries()) {
    const promptIds = encodePrompt(tok, p);
    const samples = [];
    for (let k = 0; k < size.samplesPerPrompt; k++) {
      const c = sampleCompletion(be, ref, tok, promptIds, size.maxNewTokens, labelRng);
      samples.push({ text: c.text, score: afinnReward(c.text) });
    }
    labelled.push({ prompt: p, samples });
    if ((i + 1) % 10 === 0 || i + 1 === promptsToLabel.length) progress.update(i + 1, `prompts sampled (${size.samplesPerPrompt} each)`);
  }
  progress.done();
  let tied = 0;
  const toRows = (items: Labelled[]): string => {
    let text = "";
    for (const l of items) {
      const pairs = pairsFromSamples(l.samples);
      tied += Math.floor(l.samples.length / 2) - pairs.length;
      for (const pr of pairs) text += JSON.stringify({ prompt: l.prompt, ...pr }) + "\n";
    }
    return text;
  };
  const trainRows = toRows(labelled.slice(0, trainPrompts.length));
  const evalRows = toRows(labelled.slice(trainPrompts.length));
  const prefPath = join(demoDir, "preferences.jsonl");
  const evalPrefPath = join(demoDir, "preferences_eval.jsonl");
  writeFileAtomic(prefPath, trainRows);
  writeFileAtomic(evalPrefPath, evalRows);
  const nTrain = trainRows.split("\n").length - 1;
  const nEval = evalRows.split("\n").length - 1;
  if (nTrain === 0 || nEval === 0)
    throw configError(`demo: every sampled pair tied on AFINN score (${nTrain} training / ${nEval} held-out pairs); use more --prompts`);
  const labelReward = meanSe(labelled.flatMap((l) => l.samples.map((s) => s.score)));
  const labelSeconds = seconds(tLabel);
  say(`labelled ${labelled.length * size.samplesPerPrompt} reference samples in ${labelSeconds.toFixed(0)} s: mean AFINN ${fmt(labelReward)}; ` +
    `${nTrain} training pairs in ${prefPath}, ${nEval} held-out pairs, ${tied} tied pairs skipped`);

  // 4 (reference). The reference measured on the held-out prompts: its KL to itself is 0 by construction.
  const evalSeed = (o.seed + 1_000_000) >>> 0; // not the labelling stream: fresh samples
  say(`measuring the reference on the held-out prompts (${heldout.length} × ${size.evalSamplesPerPrompt} samples)…`);
  const tRef = Date.now();
  const refEval = evaluatePolicy(be, ref, ref, tok, heldout, size.evalSamplesPerPrompt, size.maxNewTokens, evalSeed);
  const refSeconds = seconds(tRef);
  say(`reference on held-out prompts: AFINN reward ${fmt(refEval.reward)} (${refEval.samples.length} samples, ${refSeconds.toFixed(0)} s)`);

  const samplesOut: DemoSamples = { prompts: heldout, reference: refEval.samples, policies: {} };
  const runs: DemoRun[] = [];
  for (const beta of o.betas) {
    // 3. train
    const runDir = join(out, betaDirName(beta));
    const steps = Math.ceil(nTrain / size.batchSize) * size.epochs;
    const saveSteps = Math.max(1, Math.ceil(steps / size.evalPoints));
    const cfg = resolveTrainConfig({
      model: modelPath, data: prefPath, eval_data: evalPrefPath, output_dir: runDir, seed: o.seed,
      per_device_train_batch_size: size.batchSize, per_device_eval_batch_size: 16, num_train_epochs: size.epochs,
      learning_rate: size.learningRate, lr_scheduler_type: "linear", warmup_ratio: 0.1, max_grad_norm: 1.0,
      // Completions were cut at maxNewTokens: capping answers there drops the EOS the data pipeline would append
      // to a cut one, so the policy is not taught to stop where sampling merely ran out of budget.
      max_completion_length: size.maxNewTokens, logging_steps: 1, eval_steps: Math.max(1, Math.ceil(steps / 4)),
      save_steps: saveSteps, backend: o.backend, loss_type: "sigmoid", beta,
    }, "tsdpo demo");
    say(`training β=${beta}: ${steps} steps (${size.epochs} epochs of ${nTrain} pairs, batch ${size.batchSize}) → ${runDir}`);
    const tTrain = Date.now();
    const result = await train(cfg, runDir, { quiet: o.quiet, log: o.log });
    const trainSeconds = seconds(tTrain);

    // 4. evaluate every checkpoint (the frontier's points) and the final policy
    const tEval = Date.now();
    const ckptDir = join(runDir, "checkpoints");
    const ckpts = existsSync(ckptDir)
      ? readdirSync(ckptDir).map((d) => /^step-(\d+)$/.exec(d)).filter((m): m is RegExpExecArray => m !== null).map((m) => Number(m[1])).sort((a, b) => a - b)
      : [];
    say(`measuring β=${beta}'s checkpoints (${ckpts.join(", ")}) on the held-out prompts…`);
    const points: DemoPoint[] = [{ step: 0, reward: refEval.reward, kl: refEval.kl }];
    let finalEval = refEval;
    for (const step of ckpts) {
      const dir = step === result.steps ? result.finalDir : join(ckptDir, `step-${step}`);
      const policy = loadModel(dir).model;
      const ev = evaluatePolicy(be, policy, ref, tok, heldout, size.evalSamplesPerPrompt, size.maxNewTokens, evalSeed);
      points.push({ step, reward: ev.reward, kl: ev.kl });
      say(`  β=${beta} step ${step}: AFINN reward ${fmt(ev.reward)}, KL ${fmt(ev.kl)}`);
      if (step === result.steps) finalEval = ev;
    }
    if (ckpts.at(-1) !== result.steps) {
      const ev = evaluatePolicy(be, loadModel(result.finalDir).model, ref, tok, heldout, size.evalSamplesPerPrompt, size.maxNewTokens, evalSeed);
      points.push({ step: result.steps, reward: ev.reward, kl: ev.kl });
      finalEval = ev;
    }
    const evalSeconds = seconds(tEval);
    const em = result.evalMetrics;
    const run: DemoRun = {
      beta, run_dir: runDir, steps: result.steps, points,
      final: {
        reward: finalEval.reward, kl: finalEval.kl,
        eval_accuracy: em?.["eval_rewards/accuracies"] ?? null, eval_loss: em?.eval_loss ?? null, eval_margin: em?.["eval_rewards/margins"] ?? null,
      },
      train_seconds: trainSeconds, eval_seconds: evalSeconds,
    };
    runs.push(run);
    samplesOut.policies[String(beta)] = finalEval.samples;
    writeRunSamples(runDir, heldout, refEval.samples, finalEval.samples, size);
  }

  const results: DemoResults = {
    format: "tsdpo-demo", version: 1, seed: o.seed, quick: o.quick, model: modelPath, size,
    data: {
      prompts_file: demoPromptsPath(), train_prompts: trainPrompts.length, heldout_prompts: heldout.length,
      train_pairs: nTrain, eval_pairs: nEval, tied_skipped: tied, label_reward: labelReward,
    },
    reference: { reward: refEval.reward, kl: refEval.kl },
    runs,
    seconds: { label: labelSeconds, reference_eval: refSeconds, total: seconds(t0) },
  };
  writeFileAtomic(join(demoDir, "results.json"), JSON.stringify(results, null, 2) + "\n");
  writeFileAtomic(join(demoDir, "samples.json"), JSON.stringify(samplesOut, null, 1) + "\n");
  return results;
}

/** The run folder's samples.json (the run report's sample table): the first sample per held-out prompt. */
function writeRunSamples(runDir: string, prompts: readonly string[], ref: readonly EvalSample[], pol: readonly EvalSample[], size: DemoSize): void {
  const first = (xs: readonly EvalSample[], i: number): EvalSample | undefined => xs.find((s) => s.prompt === i);
  const rows = prompts.map((prompt, i) => ({
    prompt,
    reference: first(ref, i)?.text ?? "",
    policy: first(pol, i)?.text ?? "",
    reference_reward: first(ref, i)?.reward ?? null,
    policy_reward: first(pol, i)?.reward ?? null,
  }));
  const doc = {
    source: "tsdpo demo: held-out story openings", reward: "AFINN-165 sum", temperature: 1, max_new_tokens: size.maxNewTokens, rows,
  };
  writeFileAtomic(join(runDir, "samples.json"), JSON.stringify(doc, null, 1) + "\n");
}

/** The closing summary table (plain text). */
export function summaryTable(r: DemoResults): string {
  const head = ["policy", "AFINN reward (held-out)", "KL(π‖π_ref) nats", "held-out pref. acc.", "steps"];
  const rows: string[][] = [["reference", fmt(r.reference.reward), "0", "—", "0"]];
  for (const run of r.runs)
    rows.push([
      `DPO β=${run.beta}`, fmt(run.final.reward), fmt(run.final.kl),
      run.final.eval_accuracy === null ? "—" : run.final.eval_accuracy.toFixed(3), String(run.steps),
    ]);
  const w = head.map((h, j) => Math.max(h.length, ...rows.map((row) => row[j]!.length)));
  const line = (cells: string[]): string => cells.map((c, j) => (j === 0 ? c.padEnd(w[j]!) : c.padStart(w[j]!))).join("  ");
  return [line(head), line(w.map((n) => "-".repeat(n))), ...rows.map(line)].join("\n");
}
