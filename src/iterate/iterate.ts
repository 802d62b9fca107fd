// `tsdpo iterate`: online DPO in rounds. Each round
//   1. samples k completions per prompt from the current policy with the batched sampler,
//   2. has the judge score them (or compare them two by two),
//   3. forms pairs (best_vs_worst, or all with a margin; ties dropped and counted) and
//   4. trains one DPO run on them, from the current policy, against π_ref (the original model, or with
//      ref_update "round" the policy the round started from).
// Before round 1 and after every round, the held-out prompts are measured: mean judge score, win-rate against the
// original model, and KL(π‖π_ref_original), from samples at temperature 1 with no top-k/top-p (so that the mean
// log-ratio is an unbiased estimate of the sequence-level KL).
//
// Nothing is lost. Every completion and every judge answer is appended to a log and fsynced as it arrives; a
// resumed run (the same command again) reads the logs, samples only what is missing (each completion has its own
// seed, so the missing ones come out the same as they would have) and asks the judge only what it has not
// answered. Training resumes from its newest checkpoint, bit for bit. So kill -9 at any moment, then the same
// command, ends with the same weights as an uninterrupted run.
//
// Folder layout (output_dir):
//   iterate.json                   the resolved config (a rerun with another config is refused)
//   prompts.json                   training and held-out prompts
//   round-R/samples.jsonl          {"prompt": i, "j": j, "ids": [...], "text": "...", "stop": "eos"}   (log)
//   round-R/scores.jsonl           {"prompt": i, "j": j, "score": s}  or  {"prompt": i, "a": j, "b": j', "p": P(a ≻ b)}  (log)
//   round-R/pairs.jsonl            the round's preference file: prompt, chosen, rejected, chosen_score, rejected_score
//   round-R/train/                 the round's `tsdpo train` run folder (final/ is the next policy)
//   eval/round-R/...               the held-out samples and scores after round R (R = 0: the original model),
//                                  with compare.jsonl for a comparing judge's verdicts against the reference
//   results.json, report.html      per-round figures and their plots

import { existsSync, mkdirSync, readFileSync, truncateSync } from "node:fs";
import { join } from "node:path";
import type { Backend } from "../backend/contract.js";
import { selectBackend } from "../backend/select.js";
import { configError, inputError } from "../errors.js";
import { appendFileSynced, writeFileAtomic } from "../io/atomic.js";
import { loadModel, type LoadedModel } from "../io/load.js";
import { makeJudge, type Judge } from "../judge/index.js";
import { Rng } from "../rng.js";
import { generateBatch } from "../sample/generate.js";
import { promptText, readPromptsFile, sampleSeed, type SamplePrompt } from "../sample/sideBySide.js";
import { pairEncoder } from "../data/tokenize.js";
import { completionLogps, continuationText, meanSe, stopIdsOf } from "../demo/sample.js";
import { latestCheckpoint } from "../train/checkpoint.js";
import { train } from "../train/train.js";
import { type IterateConfig, roundTrainConfig } from "./config.js";
import { renderIterateReport } from "../report/report.js";

export interface Estimate {
  mean: number;
  se: number;
}

export interface RoundEval {
  round: number;
  /** Mean judge score of the policy's held-out samples (a comparing judge: its mean P(sample ≻ other samples)). */
  score: Estimate;
  /** P(policy sample ≻ the original model's sample with the same seed), ties counted half. */
  win_rate: Estimate;
  /** Mean of log π(y|x) − log π_ref(y|x) over the policy's samples (π_ref: the original model). */
  kl: Estimate;
}

export interface RoundResult {
  round: number;
  samples: number;
  pairs: number;
  ties: number;
  /** Mean judge score of the round's training samples. */
  sample_score: Estimate;
  train: { steps: number; run_dir: string; loss: number | null; accuracy: number | null; margin: number | null };
}

export interface IterateResults {
  format: "tsdpo-iterate";
  version: 1;
  judge: string;
  config: Record<string, unknown>;
  prompts: { train: number; heldout: number };
  eval: RoundEval[];
  rounds: RoundResult[];
  /** For a comparing LLM judge: how often both orders agreed, over all its verdicts. */
  judge_agreement: number | null;
}

export interface IterateOptions {
  quiet?: boolean;
  log?: (line: string) => void;
}

/** One completion as logged. */
interface SampleRow {
  prompt: number;
  j: number;
  ids: number[];
  text: string;
  stop: string;
}

/** Reads a JSON Lines log, dropping a torn last line (a kill during its write) by truncating the file to the whole lines. */
export function readLog<T>(path: string): T[] {
  if (!existsSync(path)) return [];
  const text = readFileSync(path, "utf8");
  const out: T[] = [];
  let good = 0;
  for (let start = 0; start < text.length; ) {
    const end = text.indexOf("\n", start);
    if (end < 0) break; // no newline: torn
    const line = text.slice(start, end);
    try {
      out.push(JSON.parse(line) as T);
    } catch {
      break; // torn mid-line (only the last line can be)
    }
    start = end + 1;
    good = start;
  }
  if (good < Buffer.byteLength(text)) truncateSync(path, Buffer.byteLength(text.slice(0, good)));
  return out;
}

const fmt = (e: Estimate, d = 3): string => `${e.mean.toFixed(d)} ± ${e.se.toFixed(d)}`;

/** Training and held-out prompts: eval_prompts when given, else a seeded shuffle's last heldout_share. */
function splitPrompts(cfg: IterateConfig): { train: SamplePrompt[]; heldout: SamplePrompt[] } {
  const all = readPromptsFile(cfg.prompts);
  if (cfg.eval_prompts !== null) return { train: all, heldout: readPromptsFile(cfg.eval_prompts) };
  if (all.length < 4) throw inputError(`${cfg.prompts}: ${all.length} prompts; with no eval_prompts, at least 4 are needed to hold some out`);
  const order = new Rng(cfg.seed).shuffle(all.map((_, i) => i));
  const n = Math.max(2, Math.round(all.length * cfg.heldout_share));
  return { train: order.slice(n).sort((a, b) => a - b).map((i) => all[i]!), heldout: order.slice(0, n).sort((a, b) => a - b).map((i) => all[i]!) };
}

interface Sampler {
  be: Backend;
  loaded: LoadedModel;
}

/**
 * Samples k completions of each prompt into `path` (a log), skipping those already there. Completion (i, j) draws
 * from its own seed, so what a resumed run samples equals what the killed run would have.
 */
function sampleInto(
  s: Sampler, prompts: readonly SamplePrompt[], k: number, seed: number, opts: { maxNewTokens: number; temperature: number; topK: number; topP: number },
  rows: number, path: string, cfg: IterateConfig, say: (l: string) => void, what: string,
): SampleRow[] {
  const have = readLog<SampleRow>(path);
  const done = new Set(have.map((r) => `${r.prompt}/${r.j}`));
  const tok = s.loaded.tokenizer;
  const enc = pairEncoder(tok);
  const kwargs = (cfg.train.chat_template_kwargs ?? null) as Parameters<typeof promptText>[2];
  const encoded = prompts.map((p) => {
    const { ids } = enc.prompt(promptText(tok, p, kwargs));
    if (ids.length === 0) throw inputError(`${p.source}: the prompt is empty and the model has no BOS token to start from`);
    if (ids.length >= s.loaded.model.cfg.maxSeqLen)
      throw inputError(`${p.source}: the prompt is ${ids.length} tokens but the model's context is ${s.loaded.model.cfg.maxSeqLen}; shorten it`);
    return ids;
  });
  const todo: { prompt: number; j: number }[] = [];
  prompts.forEach((_, i) => {
    for (let j = 0; j < k; j++) if (!done.has(`${i}/${j}`)) todo.push({ prompt: i, j });
  });
  if (todo.length === 0) return sortRows(have);
  say(`${what}: sampling ${todo.length} completions${have.length ? ` (${have.length} already logged)` : ""}…`);
  const got = [...have];
  generateBatch(
    s.be, s.loaded.model,
    todo.map((t) => ({ promptIds: encoded[t.prompt]!, rng: new Rng(sampleSeed(seed, t.prompt, t.j)) })),
    stopIdsOf(tok), opts, rows,
    (n, g) => {
      const t = todo[n]!;
      const row: SampleRow = { prompt: t.prompt, j: t.j, ids: g.ids, text: continuationText(tok, encoded[t.prompt]!, g.ids), stop: g.stop };
      appendFileSynced(path, JSON.stringify(row) + "\n");
      got.push(row);
    },
  );
  return sortRows(got);
}

const sortRows = (rows: SampleRow[]): SampleRow[] => [...rows].sort((a, b) => a.prompt - b.prompt || a.j - b.j);

interface ScoreRow {
  prompt: number;
  j?: number;
  score?: number;
  a?: number;
  b?: number;
  p?: number;
  detail?: Record<string, unknown>;
}

/**
 * Each sample's score, asking the judge only what `path` (a log) does not hold yet. A scoring judge scores each
 * completion; a comparing judge compares every two completions of a prompt, and a completion's score is its mean
 * P(it ≻ the other). Returns scores by row (in `rows` order).
 */
async function scoreInto(judge: Judge, prompts: readonly SamplePrompt[], texts: readonly string[], rows: readonly SampleRow[], path: string, say: (l: string) => void): Promise<number[]> {
  const logged = readLog<ScoreRow>(path);
  const byKey = new Map<string, ScoreRow>();
  for (const r of logged) byKey.set(r.j !== undefined ? `${r.prompt}/${r.j}` : `${r.prompt}/${r.a}/${r.b}`, r);
  const record = (key: string, row: ScoreRow): void => {
    appendFileSynced(path, JSON.stringify(row) + "\n");
    byKey.set(key, row);
  };
  let asked = 0;
  if (judge.score) {
    for (const r of rows) {
      const key = `${r.prompt}/${r.j}`;
      if (byKey.has(key)) continue;
      const score = await judge.score(texts[r.prompt]!, r.text);
      const detail = judge.lastDetail?.() ?? null;
      record(key, { prompt: r.prompt, j: r.j, score, ...(detail ? { detail } : {}) });
      asked++;
    }
    if (asked) say(`  judged ${asked} completions${logged.length ? ` (${logged.length} already logged)` : ""}`);
    return rows.map((r) => byKey.get(`${r.prompt}/${r.j}`)!.score!);
  }
  if (!judge.compare) throw configError(`judge ${judge.name} has neither score nor compare`);
  const byPrompt = new Map<number, SampleRow[]>();
  for (const r of rows) byPrompt.set(r.prompt, [...(byPrompt.get(r.prompt) ?? []), r]);
  const wins = new Map<string, number[]>();
  const win = (key: string, p: number): void => {
    const ps = wins.get(key);
    if (ps) ps.push(p);
    else wins.set(key, [p]);
  };
  for (const [i, rs] of byPrompt) {
    for (let x = 0; x < rs.length; x++)
      for (let y = x + 1; y < rs.length; y++) {
        const a = rs[x]!, b = rs[y]!;
        const key = `${i}/${a.j}/${b.j}`;
        if (!byKey.has(key)) {
          const p = await judge.compare(texts[i]!, a.text, b.text);
          const detail = judge.lastDetail?.() ?? null;
          record(key, { prompt: i, a: a.j, b: b.j, p, ...(detail ? { detail } : {}) });
          asked++;
        }
        const p = byKey.get(key)!.p!;
        win(`${i}/${a.j}`, p);
        win(`${i}/${b.j}`, 1 - p);
      }
  }
  if (asked) say(`  judged ${asked} comparisons${logged.length ? ` (${logged.length} already logged)` : ""}`);
  return rows.map((r) => {
    const ps = wins.get(`${r.prompt}/${r.j}`) ?? [];
    return ps.length ? ps.reduce((s, v) => s + v, 0) / ps.length : 0.5;
  });
}

export interface Pair {
  prompt: number;
  chosen: number; // j
  rejected: number;
  chosen_score: number;
  rejected_score: number;
}

/**
 * Pairs from one prompt's scored completions. best_vs_worst: the highest against the lowest score (the first in j
 * order among equals); all: every two whose scores differ by more than `margin`, the higher chosen. A candidate
 * pair whose scores are equal (or within the margin), or whose texts are identical, is a tie: dropped and counted.
 */
export function formPairs(scored: readonly { j: number; score: number; text: string }[], rule: "best_vs_worst" | "all", margin: number, prompt = 0): { pairs: Pair[]; ties: number } {
  const pairs: Pair[] = [];
  let ties = 0;
  const consider = (hi: (typeof scored)[number], lo: (typeof scored)[number]): void => {
    if (hi.score - lo.score > margin && hi.text !== lo.text)
      pairs.push({ prompt, chosen: hi.j, rejected: lo.j, chosen_score: hi.score, rejected_score: lo.score });
    else ties++;
  };
  if (rule === "best_vs_worst") {
    let best = scored[0]!, worst = scored[0]!;
    for (const s of scored) {
      if (s.score > best.score) best = s;
      if (s.score < worst.score) worst = s;
    }
    consider(best, worst);
  } else
    for (let x = 0; x < scored.length; x++)
      for (let y = x + 1; y < scored.length; y++) {
        const a = scored[x]!, b = scored[y]!;
        consider(a.score >= b.score ? a : b, a.score >= b.score ? b : a);
      }
  return { pairs, ties };
}

/** The value of the chat messages' or string prompt as a preference file holds it. */
function prefRow(p: SamplePrompt, chosen: string, rejected: string, extra: Record<string, unknown>): string {
  if (typeof p.prompt === "string") return JSON.stringify({ prompt: p.prompt, chosen, rejected, ...extra });
  const a = (content: string): { role: string; content: string }[] => [{ role: "assistant", content }];
  return JSON.stringify({ prompt: p.prompt, chosen: a(chosen), rejected: a(rejected), ...extra });
}

export async function runIterate(cfg: IterateConfig, opts: IterateOptions = {}): Promise<IterateResults> {
  const say = opts.quiet ? (_: string) => {} : (opts.log ?? ((l: string) => process.stderr.write(l + "\n")));
  const out = cfg.output_dir;
  mkdirSync(out, { recursive: true });
  const saved = { ...cfg } as Record<string, unknown>;
  const cfgPath = join(out, "iterate.json");
  if (existsSync(cfgPath)) {
    const before = readFileSync(cfgPath, "utf8");
    if (before !== JSON.stringify(saved, null, 2) + "\n")
      throw configError(`${out} holds an iterate run with other settings (${cfgPath}); rerun it with the same settings to resume it, or give another output_dir`);
    say(`resuming the iterate run in ${out}`);
  } else writeFileAtomic(cfgPath, JSON.stringify(saved, null, 2) + "\n");

  const be = selectBackend(String(cfg.train.backend ?? process.env.TSDPO_BACKEND ?? "auto"));
  const judge = await makeJudge(cfg.judge, { where: `${cfgPath}: judge`, baseDir: out, backend: be.name });
  try {
    const { train: trainPrompts, heldout } = splitPrompts(cfg);
    writeFileAtomic(join(out, "prompts.json"), JSON.stringify({ train: trainPrompts, heldout }, null, 1) + "\n");
    const reference = loadModel(cfg.model);
    const tok = reference.tokenizer;
    const kwargs = (cfg.train.chat_template_kwargs ?? null) as Parameters<typeof promptText>[2];
    const trainTexts = trainPrompts.map((p) => promptText(tok, p, kwargs));
    const heldTexts = heldout.map((p) => promptText(tok, p, kwargs));
    say(`tsdpo iterate: ${cfg.model}, ${trainPrompts.length} prompts × ${cfg.k} completions per round, ${heldout.length} held-out prompts, ` +
      `${cfg.rounds} rounds, judge ${judge.name}, pairs ${cfg.pair_rule}, π_ref ${cfg.ref_update === "none" ? "the original model" : "the previous round's policy"} → ${out}`);

    const evalSeed = sampleSeed(cfg.seed, 2_000_000, 0); // the same draws every round: differences are the policy's
    const evalOpts = { maxNewTokens: cfg.max_new_tokens, temperature: 1, topK: 0, topP: 1 };
    const evals: RoundEval[] = [];
    let refEval: { rows: SampleRow[]; scores: number[] } | null = null;
    const measure = async (round: number, policy: LoadedModel): Promise<void> => {
      const dir = join(out, "eval", `round-${round}`);
      mkdirSync(dir, { recursive: true });
      const rows = sampleInto({ be, loaded: policy }, heldout, cfg.eval_samples, evalSeed, evalOpts, cfg.sample_rows, join(dir, "samples.jsonl"), cfg, say, `held-out after round ${round}`);
      const scores = await scoreInto(judge, heldout, heldTexts, rows, join(dir, "scores.jsonl"), say);
      if (round === 0) refEval = { rows, scores };
      const ref = refEval!;
      // Win-rate against the original model: sample j of prompt i against the reference's sample j of prompt i.
      let wins: number[];
      if (round === 0) wins = rows.map(() => 0.5);
      else if (judge.score) wins = rows.map((r, n) => (scores[n]! > ref.scores[n]! ? 1 : scores[n]! < ref.scores[n]! ? 0 : 0.5));
      else {
        const logPath = join(dir, "compare.jsonl");
        const logged = new Map(readLog<{ prompt: number; j: number; p: number }>(logPath).map((c) => [`${c.prompt}/${c.j}`, c.p]));
        wins = [];
        for (const [n, r] of rows.entries()) {
          let p = logged.get(`${r.prompt}/${r.j}`);
          if (p === undefined) {
            p = await judge.compare!(heldTexts[r.prompt]!, r.text, ref.rows[n]!.text);
            const detail = judge.lastDetail?.() ?? null;
            appendFileSynced(logPath, JSON.stringify({ prompt: r.prompt, j: r.j, p, ...(detail ? { detail } : {}) }) + "\n");
          }
          wins.push(p);
        }
      }
      const enc = pairEncoder(tok);
      const scored = rows.map((r) => ({ promptIds: enc.prompt(heldTexts[r.prompt]!).ids, completionIds: r.ids }));
      const lp = completionLogps(be, policy.model, scored);
      const lr = round === 0 ? lp : completionLogps(be, reference.model, scored);
      const e: RoundEval = { round, score: meanSe(scores), win_rate: meanSe(wins), kl: meanSe(rows.map((_, n) => lp[n]! - lr[n]!)) };
      evals.push(e);
      say(`held-out after round ${round}: judge score ${fmt(e.score)}, win-rate vs the original ${fmt(e.win_rate)}, KL ${fmt(e.kl)} nats`);
    };

    await measure(0, reference);
    const rounds: RoundResult[] = [];
    let policy = reference;
    let policyPath = cfg.model;
    for (let round = 1; round <= cfg.rounds; round++) {
      const dir = join(out, `round-${round}`);
      mkdirSync(dir, { recursive: true });
      const seed = sampleSeed(cfg.seed, 1_000_000 + round, 0);
      const sampleOpts = { maxNewTokens: cfg.max_new_tokens, temperature: cfg.temperature, topK: cfg.top_k, topP: cfg.top_p };
      const rows = sampleInto({ be, loaded: policy }, trainPrompts, cfg.k, seed, sampleOpts, cfg.sample_rows, join(dir, "samples.jsonl"), cfg, say, `round ${round}`);
      const scores = await scoreInto(judge, trainPrompts, trainTexts, rows, join(dir, "scores.jsonl"), say);
      let ties = 0;
      const lines: string[] = [];
      for (let i = 0; i < trainPrompts.length; i++) {
        const mine = rows.flatMap((r, n) => (r.prompt === i ? [{ j: r.j, score: scores[n]!, text: r.text }] : []));
        const f = formPairs(mine, cfg.pair_rule, cfg.pair_margin, i);
        ties += f.ties;
        for (const p of f.pairs)
          lines.push(prefRow(trainPrompts[i]!, mine.find((m) => m.j === p.chosen)!.text, mine.find((m) => m.j === p.rejected)!.text,
            { chosen_score: p.chosen_score, rejected_score: p.rejected_score, source_prompt: i, chosen_j: p.chosen, rejected_j: p.rejected }));
      }
      const pairsPath = join(dir, "pairs.jsonl");
      writeFileAtomic(pairsPath, lines.map((l) => l + "\n").join(""));
      say(`round ${round}: ${lines.length} pairs, ${ties} ties dropped; mean sample score ${fmt(meanSe(scores))}`);
      if (lines.length === 0)
        throw inputError(`round ${round}: every candidate pair tied under judge ${judge.name} (${pairsPath} is empty); use more prompts, a larger k or a smaller pair_margin`);

      const runDir = join(dir, "train");
      const tcfg = roundTrainConfig(cfg, { round, model: policyPath, data: pairsPath, outputDir: runDir }, cfgPath);
      let result;
      if (existsSync(join(runDir, "summary.json"))) {
        result = null; // trained before the kill: its final/ is the policy
      } else {
        const resume = latestCheckpoint(runDir) !== null;
        say(`round ${round}: training on ${lines.length} pairs${resume ? " (resuming)" : ""} → ${runDir}`);
        result = await train(tcfg, runDir, { resume, quiet: opts.quiet ?? false, log: say });
        if (result.stopped) throw configError(`round ${round}: training stopped by ${result.stopped}; run the same command again to resume`);
      }
      const summary = JSON.parse(readFileSync(join(runDir, "summary.json"), "utf8")) as Record<string, unknown>;
      policyPath = join(runDir, "final");
      policy = loadModel(policyPath);
      const last = (result?.lastMetrics ?? (summary.train as Record<string, number> | undefined) ?? {}) as Record<string, number>;
      rounds.push({
        round, samples: rows.length, pairs: lines.length, ties, sample_score: meanSe(scores),
        train: {
          steps: result?.steps ?? Number(summary.steps ?? NaN), run_dir: runDir,
          loss: last.loss ?? null, accuracy: last["rewards/accuracies"] ?? null, margin: last["rewards/margins"] ?? null,
        },
      });
      await measure(round, policy);
      writeResults();
    }

    function collectAgreement(): number | null {
      const agreement: boolean[] = [];
      for (const f of ["scores.jsonl", "compare.jsonl"])
        for (const d of [...Array.from({ length: cfg.rounds }, (_, r) => join(out, `round-${r + 1}`)), ...Array.from({ length: cfg.rounds + 1 }, (_, r) => join(out, "eval", `round-${r}`))])
          for (const row of readLog<{ detail?: { agree?: unknown } }>(join(d, f))) if (typeof row.detail?.agree === "boolean") agreement.push(row.detail.agree);
      return agreement.length ? agreement.filter(Boolean).length / agreement.length : null;
    }
    function writeResults(): IterateResults {
      const res: IterateResults = {
        format: "tsdpo-iterate", version: 1, judge: judge.name, config: saved,
        prompts: { train: trainPrompts.length, heldout: heldout.length }, eval: evals, rounds, judge_agreement: collectAgreement(),
      };
      writeFileAtomic(join(out, "results.json"), JSON.stringify(res, null, 2) + "\n");
      writeFileAtomic(join(out, "report.html"), renderIterateReport(res));
      return res;
    }
    const res = writeResults();
    say(`done: ${join(out, "results.json")}, ${join(out, "report.html")}`);
    return res;
  } finally {
    await judge.close?.();
  }
}
