// Supervised fine-tuning (`tsdpo sft`): the recipe, read top to bottom as train.ts is, on the same machinery:
// checkpoints (the same folders and trainer state, so a resume ends with the bytes of an uninterrupted run), metrics,
// progress, evaluation, best/, the report, LoRA and exports.
//
//   prepare   the model (LoRA adapters when asked), the SFT rows (masked, truncated, packed: data/sft.ts), every
//             buffer once
//   loop      for each optimizer step: the trained tokens of its rows are counted first; for each micro-batch:
//             forward over its rows, the NLL of the trained tokens over the step's count (loss/sft.ts), the
//             predicted tokens' entropy and accuracy, backward; then clip, check, AdamW, log, evaluate, checkpoint
//   finish    final weights, the run summary, the report
//
// The metrics are TRL SFTTrainer's: loss (the mean NLL per trained token), mean_token_accuracy (the share of trained
// tokens that are the model's most likely next token), entropy (of the next-token distribution at those positions,
// mean per token) and num_tokens (input tokens seen, cumulative). Micro-batches are averaged by their trained tokens.
// A run folder of this trainer is a starting model for `tsdpo train` (its final/, or base + adapter under LoRA).

import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join, resolve } from "node:path";
import type { Backend, Buf } from "../backend/contract.js";
import { selectBackend } from "../backend/select.js";
import { dataOptionsFromConfig, writeInvalidReport } from "../data/load.js";
import { packSft } from "../data/pack.js";
import { type TokenizedSft, loadSftData, trainedTokens } from "../data/sft.js";
import { TsdpoError, configError } from "../errors.js";
import { appendFileLogged, writeFileAtomic } from "../io/atomic.js";
import { modelFingerprint } from "../io/fingerprint.js";
import { type LoadedModel, loadModel, readModelHeader } from "../io/load.js";
import { loadPeftAdapter, loraTargetsFromPeft } from "../io/peft.js";
import { initialLossState } from "../loss/losses.js";
import { nllLoss } from "../loss/sft.js";
import { type Activations, type Gradients, type Model, backward, createActivations, createGradients, forwardPacked } from "../model/decoder.js";
import { createLora } from "../model/lora.js";
import { defaultDataPath, defaultModelPath } from "../paths.js";
import { writeRunReport } from "../report/report.js";
import { Rng } from "../rng.js";
import { type TrainerState, checkpointDirName, latestCheckpoint, pruneCheckpoints, readOptimizer, removeStaleCheckpointTemps, writeCheckpoint } from "./checkpoint.js";
import { bestModelMetric } from "./config.js";
import { acquireRunLock } from "./lock.js";
import { checkPlan } from "./plan.js";
import { createProgress } from "./progress.js";
import { lrAt, warmupSteps } from "./schedule.js";
import { type SftConfig, sftConfigToJson } from "./sftconfig.js";
import { readMetricsRows, runSummary } from "./summary.js";
import { MetricMean, type Optimizer, type TrainOptions, type TrainResult, modelDecayRanges, optimizerStep } from "./train.js";

/** Rows of one or two sequences (data/sft.ts): the unit of a batch. */
type Row = readonly TokenizedSft[];

export interface SftEngine {
  be: Backend;
  policy: Model;
  acts: Activations;
  grads: Gradients | null; // null with LoRA: the adapters hold their own gradients
  /** Seeds LoRA dropout per micro-batch (null: no dropout), as train.ts's. */
  dropoutSeed: ((micro: number) => number) | null;
}

export interface SftMicroResult {
  /** This micro-batch's mean NLL per trained token. */
  loss: number;
  metrics: Record<string, number>;
  /** Input tokens (TRL's num_tokens) and trained tokens (the metrics' weight). */
  tokens: number;
  trained: number;
}

/**
 * Forward (and, with stepTokens, backward) of one micro-batch of rows. stepTokens: the trained tokens of the whole
 * optimizer step this micro-batch belongs to, so that the step's gradient is that of its mean NLL per token; null for
 * evaluation (no backward).
 */
export function sftMicroBatch(e: SftEngine, rows: readonly Row[], stepTokens: number | null, microIndex = 0): SftMicroResult {
  const { be, policy } = e;
  const pk = packSft(rows);
  e.acts.dropout = stepTokens !== null && e.dropoutSeed ? new Rng(e.dropoutSeed(microIndex)) : null;
  const logp = forwardPacked(be, policy, e.acts, pk); // (M) log-probs of the trained tokens
  e.acts.dropout = null;
  const out = nllLoss(logp, stepTokens ?? pk.M);
  // the fused LM head's entropy and most likely token at each trained position
  const { entropy, argmax, targets } = e.acts;
  let h = 0, hits = 0;
  for (let m = 0; m < pk.M; m++) (h += entropy[m]!), (hits += argmax[m] === targets[m] ? 1 : 0);
  if (stepTokens !== null) backward(be, policy, e.acts, e.grads, new policy.ctor(pk.M).fill(out.dlogp));
  return { loss: out.loss, metrics: { loss: out.loss, mean_token_accuracy: hits / pk.M, entropy: h / pk.M }, tokens: pk.tokens, trained: pk.M };
}

function evaluate(e: SftEngine, rows: readonly Row[], batch: number, onBatch?: (done: number) => void): Record<string, number> {
  const mean = new MetricMean();
  for (let i = 0; i < rows.length; i += batch) {
    const r = sftMicroBatch(e, rows.slice(i, i + batch), null);
    mean.add(r.metrics, r.trained);
    onBatch?.(Math.min(rows.length, i + batch));
  }
  return mean.mean("eval_");
}

const rowLength = (r: Row): number => r.reduce((a, s) => a + s.ids.length, 0);
const rowTrained = (r: Row): number => r.reduce((a, s) => a + trainedTokens(s), 0);

export async function sft(cfg: SftConfig, runDirOpt: string | null, opts: TrainOptions = {}): Promise<TrainResult> {
  const runDir = resolve(runDirOpt ?? cfg.output_dir ?? join("runs", new Date().toISOString().replace(/[:.]/g, "-")));
  const log = opts.log ?? ((line: string) => process.stderr.write(line + "\n"));
  const say = opts.quiet ? (_: string) => {} : log;
  // Resuming: the folder's lock before its newest checkpoint is looked up (see train.ts).
  const resumeLock = opts.resume && existsSync(runDir) ? acquireRunLock(runDir, say) : null;
  try {
    return await sftIn(cfg, runDir, opts, say, log, resumeLock !== null);
  } finally {
    resumeLock?.();
  }
}

async function sftIn(cfg: SftConfig, runDir: string, opts: TrainOptions, say: (l: string) => void, log: (l: string) => void, lockHeld: boolean): Promise<TrainResult> {
  const resumeFrom = opts.resume ? latestCheckpoint(runDir) : null;
  if (!opts.resume && (existsSync(join(runDir, "checkpoints")) || existsSync(join(runDir, "final"))))
    throw configError(`${runDir}: already holds a run; continue it with \`tsdpo sft --resume ${runDir}\` or choose another output_dir`);
  if (opts.resume && !resumeFrom)
    throw new TsdpoError(
      "input",
      `sft --resume ${runDir}: there is no checkpoint to resume from (${join(runDir, "checkpoints")} holds no step-N folder): the run stopped ` +
        `before its first checkpoint (save_steps ${cfg.save_steps}, save_minutes ${cfg.save_minutes}). Start it again with a new output_dir, or delete the folder`,
    );

  // Inputs first (backend, model header, data, the fit), so that a run that cannot start leaves nothing behind.
  const be = selectBackend(cfg.backend);
  const modelPath = resolve(cfg.model ?? defaultModelPath);
  const usePeft = cfg.use_peft || cfg.adapter !== null;
  const loadOptions = { dequantize: cfg.dequantize, halvesAsFloat: !usePeft };
  const header = readModelHeader(modelPath, loadOptions);
  const blocks = [...new Set([...header.storage.values()].filter((t) => t !== "F32"))];
  if (!usePeft && blocks.length > 0)
    throw configError(
      `${modelPath}: holds quantised weights (${blocks.join(", ")}), which full fine-tuning cannot update. Train LoRA adapters on it as it ` +
        `is (use_peft: true, or --use_peft), or set dequantize: true (--dequantize) to train float32 weights that start from the dequantised values`,
    );
  const dataPath = resolve(cfg.data ?? defaultDataPath);
  const data = await loadSftData(dataPath, header.tokenizer, {
    ...dataOptionsFromConfig(cfg, header.cfg.maxSeqLen), textField: cfg.dataset_text_field, completionOnlyLoss: cfg.completion_only_loss,
    assistantOnlyLoss: cfg.assistant_only_loss, packing: cfg.packing,
  });
  const B = cfg.per_device_train_batch_size;
  const evalB = cfg.per_device_eval_batch_size;
  const maxB = Math.max(1, Math.min(Math.max(B, evalB), data.train.length + data.eval.length));
  const T = Math.max(...[...data.train, ...data.eval].map(rowLength));
  const meanTrained = data.train.reduce((a, r) => a + rowTrained(r), 0) / data.train.length;
  const planLines: string[] = [];
  checkPlan(be, {
    cfg: header.cfg, storage: header.storage, fileBuffer: header.fileBuffer, loaderCopies: header.loaderCopies, blocksInFile: header.blocksInFile,
    loaderTransient: header.loaderTransient,
    lora: usePeft ? { r: cfg.lora_r, dropout: cfg.lora_dropout, targets: loraTargetsFromPeft(cfg.lora_target_modules, header.cfg, "training config: lora_target_modules") } : null,
    refCopy: null, refForward: false, rows: maxB, T, answerTokens: Math.min(maxB * T, Math.ceil(B * meanTrained)),
    checkpointing: cfg.gradient_checkpointing, threads: availableParallelism(), backend: be.name,
  }, { force: cfg.force, batch: B, evalBatch: evalB, maxLength: cfg.max_length, say, withTime: false, print: (l) => planLines.push(l) });

  const base = loadModel(modelPath, Float32Array, loadOptions);
  // Full fine-tuning trains the weights (the checkpoint's when resuming); LoRA trains adapters on the frozen base.
  const loaded: LoadedModel = resumeFrom && !usePeft ? { ...loadModel(resumeFrom.dir), path: modelPath, format: base.format } : base;
  const policy = loaded.model;
  const baseFingerprint = usePeft ? modelFingerprint(modelPath) : null;
  if (usePeft) {
    if (resumeFrom) loadPeftAdapter(resumeFrom.dir, policy, baseFingerprint);
    else if (cfg.adapter !== null) loadPeftAdapter(resolve(cfg.adapter), policy, baseFingerprint);
    else
      policy.lora = createLora(policy, {
        r: cfg.lora_r, alpha: cfg.lora_alpha, dropout: cfg.lora_dropout,
        targets: loraTargetsFromPeft(cfg.lora_target_modules, policy.cfg, "training config: lora_target_modules"),
      }, cfg.seed);
  }

  mkdirSync(runDir, { recursive: true });
  const releaseLock = lockHeld ? () => {} : acquireRunLock(runDir, say);
  const stop: { signal: NodeJS.Signals | null } = { signal: null };
  const onSignal = (signal: NodeJS.Signals): void => {
    stop.signal = signal;
    log(`${signal}: stopping after this step with a checkpoint (Ctrl-C again exits at once, without it)`);
    process.removeListener("SIGINT", onSignal);
    process.removeListener("SIGTERM", onSignal);
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    const configJson = sftConfigToJson(cfg);
    writeFileAtomic(join(runDir, "config.json"), JSON.stringify(configJson, null, 2) + "\n");
    if (data.invalid.length > 0) writeInvalidReport(join(runDir, "invalid_rows.jsonl"), data.invalid);
    writeFileAtomic(join(runDir, "prompts.jsonl"), data.prompts.map((p) => JSON.stringify({ prompt: p }) + "\n").join(""));
    for (const line of [...(opts.notes ?? []), ...data.summary, ...planLines]) say(line);

    const acts = createActivations(policy, maxB, T, cfg.gradient_checkpointing);
    const grads = usePeft ? null : createGradients(policy);
    const trainable: Buf = usePeft ? policy.lora!.params : policy.params;
    const trainableGrads: Buf = usePeft ? policy.lora!.grads : grads!.grads;
    const n = trainable.length;
    let m: Float32Array = new Float32Array(n), v: Float32Array = new Float32Array(n);
    const engine: SftEngine = { be, policy, acts, grads, dropoutSeed: null };
    const trainedOf = data.train.map(rowTrained); // trained tokens of each training row

    // Schedule
    const rowsPerStep = B * cfg.gradient_accumulation_steps;
    const stepsPerEpoch = Math.ceil(data.train.length / rowsPerStep);
    const totalSteps = cfg.max_steps > 0 ? cfg.max_steps : Math.ceil(stepsPerEpoch * cfg.num_train_epochs);
    const warmup = warmupSteps(cfg.warmup_steps, cfg.warmup_ratio, totalSteps);

    // State (fresh or from the checkpoint)
    const rng = new Rng(cfg.seed);
    let state: TrainerState = {
      format: "tsdpo-trainer-state", version: 1, step: 0, epoch: 0,
      order: rng.shuffle(Array.from({ length: data.train.length }, (_, i) => i)), cursor: 0,
      rng: rng.state(), lossState: initialLossState(), numTokens: 0, best: null,
    };
    const metricsPath = join(runDir, "metrics.jsonl");
    if (resumeFrom) {
      state = JSON.parse(readFileSync(join(resumeFrom.dir, "trainer_state.json"), "utf8")) as TrainerState;
      ({ m, v } = readOptimizer(resumeFrom.dir, n));
      removeStaleCheckpointTemps(runDir);
      // metrics logged after the checkpoint are logged again; so is a line cut short by a crash
      const kept = readMetricsRows(metricsPath).filter((r) => r.step! <= state.step);
      writeFileAtomic(metricsPath, kept.map((r) => JSON.stringify(r) + "\n").join(""));
      say(`resuming ${runDir} from ${resumeFrom.dir} (step ${state.step} of ${totalSteps})`);
    } else writeFileAtomic(metricsPath, "");
    const drawRng = new Rng(state.rng);
    const optimizer: Optimizer = {
      m, v,
      decayRanges: usePeft ? [{ offset: 0, size: n, decay: true }] : modelDecayRanges(policy),
      beta1: cfg.adam_beta1, beta2: cfg.adam_beta2, eps: cfg.adam_epsilon, weightDecay: cfg.weight_decay, maxGradNorm: cfg.max_grad_norm,
    };
    const progress = createProgress("sft", totalSteps, state.step, process.stderr, opts.quiet);
    const startedAt = Date.now();
    const best = bestModelMetric(cfg);
    const bestDir = join(runDir, "best");
    let window = new MetricMean();
    let windowTokens = 0;
    let windowStart = Date.now();
    let lastMetrics: Record<string, number> = {};
    let evalMetrics: Record<string, number> | null = null;
    let lastCheckpoint: string | null = resumeFrom?.dir ?? null;
    let lastSave = Date.now();
    const writeMetrics = (row: Record<string, number>): void => appendFileLogged(metricsPath, JSON.stringify(row) + "\n");
    const checkpoint = (dir: string): void => {
      try {
        writeCheckpoint(dir, loaded, m, v, state, configJson, usePeft ? { baseModel: modelPath, baseFingerprint } : null);
      } catch (e) {
        if (!(e instanceof TsdpoError)) throw e;
        throw new TsdpoError(
          "io",
          `${e.message}; training stopped at step ${state.step}. ` +
            (lastCheckpoint ? `The previous checkpoint ${lastCheckpoint} is intact: free the space and continue with \`tsdpo sft --resume ${runDir}\`` : "No earlier checkpoint exists"),
        );
      }
      lastSave = Date.now();
    };
    const stepCheckpoint = (): string => {
      const dir = join(runDir, "checkpoints", checkpointDirName(state.step));
      checkpoint(dir);
      lastCheckpoint = dir;
      if (cfg.save_total_limit !== null) pruneCheckpoints(runDir, cfg.save_total_limit);
      return dir;
    };
    const runEval = (epochFloat: number): Record<string, number> => {
      const row: Record<string, number> = {
        ...evaluate(engine, data.eval, evalB, (done) => progress.status(`eval ${done}/${data.eval.length}`)), epoch: epochFloat, step: state.step,
      };
      writeMetrics(row);
      progress.log(`step ${state.step}: eval_loss ${row.eval_loss!.toFixed(4)} eval_mean_token_accuracy ${row.eval_mean_token_accuracy!.toFixed(3)}`);
      if (best) {
        const value = row[best.key]!;
        if (!state.best || (best.greaterIsBetter ? value > state.best.value : value < state.best.value)) {
          state.best = { step: state.step, value };
          checkpoint(bestDir);
        }
      }
      return row;
    };

    if (cfg.eval_on_start && !resumeFrom && data.eval.length > 0) evalMetrics = runEval(0);

    while (state.step < totalSteps) {
      trainableGrads.fill(0);
      if (policy.lora && policy.lora.cfg.dropout > 0) {
        const step = state.step;
        engine.dropoutSeed = (micro) => (cfg.seed * 1000003 + step * 4099 + micro) >>> 0;
      }
      // This step's rows: up to B·accum from the current epoch; a new epoch reshuffles.
      if (state.cursor >= state.order.length) {
        state.epoch++;
        state.order = drawRng.shuffle(Array.from({ length: data.train.length }, (_, i) => i));
        state.cursor = 0;
        state.rng = drawRng.state();
      }
      const take = state.order.slice(state.cursor, state.cursor + rowsPerStep);
      state.cursor += take.length;
      // The step's loss is the mean NLL over all its trained tokens, so each micro-batch's gradient is scaled by them.
      const stepTokens = take.reduce((a, i) => a + trainedOf[i]!, 0);
      let stepLoss = 0;
      for (let s = 0; s < take.length; s += B) {
        const r = sftMicroBatch(engine, take.slice(s, s + B).map((i) => data.train[i]!), stepTokens, s / B);
        stepLoss += (r.loss * r.trained) / stepTokens;
        window.add(r.metrics, r.trained);
        windowTokens += r.tokens;
        state.numTokens += r.tokens;
      }
      const lr = lrAt(cfg.lr_scheduler_type, cfg.learning_rate, state.step, warmup, totalSteps);
      const norm = Number.isFinite(stepLoss) ? optimizerStep(be, optimizer, trainable, trainableGrads, lr, state.step + 1) : NaN;
      if (!Number.isFinite(stepLoss) || !Number.isFinite(norm))
        throw new TsdpoError(
          "numeric",
          `step ${state.step + 1}: the ${Number.isFinite(stepLoss) ? "gradient norm" : "loss"} is not finite (loss ${stepLoss}, grad_norm ${norm}); ` +
            `training stopped before applying it. ${lastCheckpoint ? `The last good checkpoint is ${lastCheckpoint}. ` : "No checkpoint was written yet. "}` +
            `Lower learning_rate (now ${cfg.learning_rate})${cfg.max_grad_norm > 0 ? "" : ", or set max_grad_norm"}.`,
        );
      state.step++;

      const epochFloat = state.step / stepsPerEpoch;
      if (state.step % cfg.logging_steps === 0 || state.step === totalSteps) {
        const seconds = (Date.now() - windowStart) / 1000;
        lastMetrics = {
          ...window.mean(), grad_norm: norm, learning_rate: lr, epoch: epochFloat, step: state.step,
          num_tokens: state.numTokens, tokens_per_second: seconds > 0 ? windowTokens / seconds : 0,
        };
        writeMetrics(lastMetrics);
        progress.update(state.step, `loss ${lastMetrics.loss!.toFixed(4)} acc ${lastMetrics.mean_token_accuracy!.toFixed(2)}`);
        window = new MetricMean();
        windowTokens = 0;
        windowStart = Date.now();
      }
      const isLast = state.step === totalSteps;
      if (data.eval.length > 0 && ((cfg.eval_steps > 0 && state.step % cfg.eval_steps === 0) || isLast)) evalMetrics = runEval(epochFloat);
      const due = (cfg.save_steps > 0 && state.step % cfg.save_steps === 0) || (cfg.save_minutes > 0 && Date.now() - lastSave >= cfg.save_minutes * 60_000);
      if (due || isLast) stepCheckpoint();

      // Signal handlers run only between steps.
      await new Promise((r) => setImmediate(r));
      if (stop.signal && !isLast) {
        progress.done();
        const dir = lastCheckpoint === join(runDir, "checkpoints", checkpointDirName(state.step)) ? lastCheckpoint : stepCheckpoint();
        say(`${stop.signal}: stopped after step ${state.step} of ${totalSteps}; checkpoint ${dir}\ncontinue with: tsdpo sft --resume ${runDir}`);
        return { runDir, steps: state.step, finalDir: dir, lastMetrics, evalMetrics, stopped: stop.signal };
      }
    }
    progress.done();

    const endedOnBest = cfg.load_best_model_at_end && state.best && state.best.step !== state.step ? state.best : null;
    if (endedOnBest) {
      if (usePeft) loadPeftAdapter(bestDir, policy, baseFingerprint);
      else policy.params.set(loadModel(bestDir).model.params);
      say(`load_best_model_at_end: final/ holds the weights of step ${endedOnBest.step} (${best!.key} ${endedOnBest.value.toFixed(4)}), the best evaluation`);
    }
    const finalDir = join(runDir, "final");
    checkpoint(finalDir);
    const allRows = readMetricsRows(metricsPath);
    if (Object.keys(lastMetrics).length === 0) lastMetrics = allRows.filter((r) => "loss" in r).at(-1) ?? {};
    if (evalMetrics === null) evalMetrics = allRows.filter((r) => "eval_loss" in r).at(-1) ?? null;
    const bestRow = state.best ? allRows.find((r) => "eval_loss" in r && r.step === state.best!.step) ?? null : null;
    if (endedOnBest && bestRow) evalMetrics = bestRow;
    const summary = {
      trainer: "sft", steps: state.step, train: lastMetrics, eval: evalMetrics, data: data.summary,
      best: best && state.best ? { metric: best.key, step: state.best.step, value: state.best.value, final_is_best: cfg.load_best_model_at_end } : null,
      best_eval: bestRow, seconds: (Date.now() - startedAt) / 1000,
    };
    writeFileAtomic(join(runDir, "summary.json"), JSON.stringify(summary, null, 2) + "\n");
    const report = await writeRunReport(runDir);
    say(runSummary(allRows, {
      runDir, finalDir, seconds: summary.seconds, best: summary.best, modelPath, dataPath, report,
      next: (here, run) => [
        `  tsdpo sample --model ${run} --reference ${here(modelPath)} --prompts ${here(join(runDir, "prompts.jsonl"))}   # tuned next to the start`,
        `  tsdpo train --model ${run} --data <preference pairs>   # DPO from this run${usePeft ? " (its adapter on the base it was trained on)" : ""}`,
        `  tsdpo export ${run} --format hf --out ${here(join(runDir, "hf"))}   # a Hugging Face folder`,
      ],
    }));
    return { runDir, steps: state.step, finalDir, lastMetrics, evalMetrics };
  } finally {
    process.removeListener("SIGINT", onSignal);
    process.removeListener("SIGTERM", onSignal);
    releaseLock();
  }
}
