// The DPO training loop: the one file that sequences a run, top to bottom.
//
//   prepare   load the policy, the data (split, tokenised, truncated), the reference (frozen copy or cached
//             log-probs), allocate every buffer once
//   loop      for each optimizer step: for each micro-batch: reference log-probs, policy forward over the 2B
//             concatenated rows, loss (loss/), d loss / d log-probs, backward; then clip, check for non-finite
//             values, AdamW, log metrics, evaluate, checkpoint
//   finish    final weights (a Hugging Face folder), eval metrics, the run summary
//
// Determinism: the data order comes from a seeded RNG whose state is checkpointed with the order itself, and every
// kernel is deterministic, so a run resumed from a checkpoint (even after kill -9) ends with the same bits as an
// uninterrupted one.

import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join, resolve } from "node:path";
import type { Backend, Buf } from "../backend/contract.js";
import { selectBackend } from "../backend/select.js";
import { fromGrid, packPairs } from "../data/pack.js";
import { dataOptionsFromConfig, formatPreferenceData, loadPreferenceData, writeInvalidReport, writeWarningsReport } from "../data/load.js";
import { klSizingRows, labelsOf, loadUnpairedData, rotateKlCompletions } from "../data/unpaired.js";
import type { RowIssue, TokenizedPair } from "../data/types.js";
import { TsdpoError, configError } from "../errors.js";
import { appendFileLogged, writeFileAtomic } from "../io/atomic.js";
import { type LoadedModel, type ModelHeader, loadModel, readModelHeader } from "../io/load.js";
import { modelFingerprint } from "../io/fingerprint.js";
import { loadPeftAdapter, loraTargetsFromPeft } from "../io/peft.js";
import { type Lora, createLora } from "../model/lora.js";
import { quantisedCopy } from "../model/quantise.js";
import { isUnpaired, klInBatch, needsReference, usesKl, type LossConfig } from "../loss/config.js";
import { type LossOutput, type LossState, type PairBatch, computeLoss, initialLossState } from "../loss/losses.js";
import { groupMeans, lossMetrics } from "../loss/metrics.js";
import { reduceLogps, reduceLogpsBackward, wpoLogWeights } from "../loss/reduce.js";
import {
  type Activations, type Gradients, type Model, cloneModel, createGradients, backward,
} from "../model/decoder.js";
import { defaultDataPath, defaultModelPath } from "../paths.js";
import { Rng } from "../rng.js";
import {
  type TrainerState, REF_ADAPTER_DIR, REF_MODEL_DIR, checkpointDirName, latestCheckpoint, pruneCheckpoints, removeStaleCheckpointTemps, readOptimizer, writeCheckpoint,
} from "./checkpoint.js";
import { acquireRunLock } from "./lock.js";
import { type World, addInRankOrder, allgather, allgatherJson, joinWorld, orderedSum } from "./distributed.js";
import { type TrainConfig, bestModelMetric, trainConfigToJson } from "./config.js";
import { readMetricsRows, runSummary } from "./summary.js";
import { activationsForPairs, forwardPairs, rowSums } from "./logps.js";
import { checkPlan, runPlanSpec } from "./plan.js";
import { createProgress, etaSeconds } from "./progress.js";
import { type RefLogps, mixReference, precomputedRefLogps, referenceUsed, resolveRefAdapter } from "./reference.js";
import { lrAt, warmupSteps } from "./schedule.js";
import { writeRunReport } from "../report/report.js";
import { ggufExportRefusal } from "../export/gguf.js";


export interface TrainOptions {
  /** Continue the run in this folder from its newest checkpoint. */
  resume?: boolean;
  /** No progress output (tests). */
  quiet?: boolean;
  /** Where progress and summaries go. */
  log?: (line: string) => void;
  /** Lines to print first, once the inputs are checked (so that a run that cannot start prints one error alone). */
  notes?: string[];
}

export interface TrainResult {
  /** Set when SIGINT or SIGTERM stopped the run early (a checkpoint was written at the step it stopped after). */
  stopped?: NodeJS.Signals;
  runDir: string;
  steps: number;
  finalDir: string;
  lastMetrics: Record<string, number>;
  evalMetrics: Record<string, number> | null;
}

// ---------------------------------------------------------------------------------------------------------------
// Data

interface PreparedRun {
  train: TokenizedPair[];
  eval: TokenizedPair[];
  summary: string[];
  /** Malformed rows skipped under skip_invalid, and warnings about kept rows; the caller writes them once the run
   *  folder exists (invalid_rows.jsonl, data_warnings.jsonl). */
  invalid: RowIssue[];
  warnings: RowIssue[];
  /** A few held-out prompts (training prompts when none are held out), for `tsdpo sample` after the run. */
  prompts: string[];
}

/** What the buffers are sized for: the pairs, but under kto_kl "batch" any row's mismatched slot may hold any completion. */
function sizingPairs(cfg: TrainConfig, pairs: TokenizedPair[]): TokenizedPair[] {
  return klInBatch(cfg.loss) ? klSizingRows(pairs) : pairs;
}

/** Reads nothing from and writes nothing into runDir (it may not exist yet); runDir only names the reports. */
/** runDir null: a plan, which writes no reports, so the summary names none. */
async function prepareData(cfg: TrainConfig, model: Pick<ModelHeader, "tokenizer" | "cfg">, runDir: string | null): Promise<PreparedRun> {
  // Sequences longer than the model's context cannot be scored: the loader caps max_length there.
  const path = resolve(cfg.data ?? defaultDataPath);
  const options = dataOptionsFromConfig(cfg, model.cfg.maxSeqLen);
  const d = isUnpaired(cfg.loss)
    ? await loadUnpairedData(path, model.tokenizer, {
      ...options, unpair: cfg.unpair, kl: usesKl(cfg.loss), seed: cfg.seed,
      weights: { desirable: cfg.loss.desirable_weight, undesirable: cfg.loss.undesirable_weight },
    })
    : await loadPreferenceData(path, model.tokenizer, options);
  const summary = formatPreferenceData(d, {
    invalidReport: d.invalid.length && runDir ? join(runDir, "invalid_rows.jsonl") : undefined,
    warningsReport: d.warnings.length && runDir ? join(runDir, "data_warnings.jsonl") : undefined,
  }).split("\n");
  return { train: d.pairs, eval: d.eval, summary, invalid: d.invalid, warnings: d.warnings, prompts: d.prompts };
}

// ---------------------------------------------------------------------------------------------------------------
// One micro-batch: forward, loss, backward

export interface Engine {
  be: Backend;
  policy: Model;
  acts: Activations;
  grads: Gradients | null; // null with LoRA: the base weights are frozen and the adapters hold their own gradients
  /** Seeds LoRA dropout per micro-batch (null: no dropout); a function of the step so a resumed run redraws the same masks. */
  dropoutSeed: ((micro: number) => number) | null;
  /** frozen reference, or null when precomputed / not needed; adaptersOff: the policy itself with LoRA switched off.
   *  With a reference adapter (ref_adapter, TR-DPO on LoRA) `model` is the base's weights with that adapter on. */
  ref: { model: Model; acts: Activations; adaptersOff: boolean } | null;
  refLogps: { train: RefLogps; eval: RefLogps } | null;
  /** reference_free: log π_ref = 0 for every sequence (π_ref uniform); neither of the two above is set. */
  referenceFree: boolean;
  loss: LossConfig;
  /** Pack each pair's prompt once for both answers (src/data/pack.ts); false: TRL's concatenated 2B rows. */
  sharedPrefix: boolean;
  /** When set, each phase's wall time is added here (ms): `tsdpo bench` reads it. */
  timings: StepTimings | null;
}

export interface StepTimings {
  policy_fwd: number;
  ref_fwd: number;
  backward: number;
  optimizer: number;
}

export interface MicroResult {
  out: LossOutput;
  metrics: Record<string, number>;
  tokens: number;
}

/**
 * Forward (and, when `weight` > 0, backward) of one micro-batch of pairs. `weight` scales this micro-batch's mean
 * loss inside the optimizer step: b / (pairs in the step), so the step minimises the mean over all its pairs
 * however they are split into micro-batches.
 */
export function microBatch(
  e: Engine, pairs: readonly TokenizedPair[], pairIndex: readonly number[], split: "train" | "eval", state: LossState, weight: number,
  microIndex = 0,
): MicroResult {
  const { be, policy, loss } = e;
  const B = pairs.length;
  // Unpaired rows (KTO) come in the pair layout (data/unpaired.ts); TRL's estimate of KTO's reference point pairs
  // each prompt with the previous row's completion.
  const labels = isUnpaired(loss) ? labelsOf(pairs) : null;
  const pk = packPairs(klInBatch(loss) ? rotateKlCompletions(pairs) : pairs, e.sharedPrefix);
  const R = 2 * B;
  const Tc = pk.Tc;
  const ldAlpha = loss.kind === "dpo" ? loss.ld_alpha : null;
  const lengths = new Int32Array(R);
  const refSums = new Float64Array(R);
  const clock = e.timings ? performance.now() : 0;

  // Reference first: it shares no buffers with the policy's saved activations.
  const useRef = needsReference(loss);
  if (useRef) {
    if (e.ref) {
      if (e.ref.adaptersOff) policy.lora!.enabled = false;
      const g = forwardPairs(be, e.ref.model, e.ref.acts, pk);
      if (e.ref.adaptersOff) policy.lora!.enabled = true;
      reduceLogps(refSums, lengths, g.logp, pk.mask, B, Tc, ldAlpha);
    } else if (e.refLogps) {
      const pre = e.refLogps[split];
      for (let i = 0; i < B; i++) {
        refSums[i] = pre.chosen[pairIndex[i]!]!;
        refSums[B + i] = pre.rejected[pairIndex[i]!]!;
      }
    } else if (!e.referenceFree) throw new Error("internal: the loss needs a reference and the engine has none");
    // reference_free: refSums stays 0, log π_ref of a uniform reference
  }
  const afterRef = e.timings ? performance.now() : 0;

  const wpoOn = loss.kind === "dpo" && loss.use_weighting;
  e.acts.dropout = weight > 0 && e.dropoutSeed ? new Rng(e.dropoutSeed(microIndex)) : null;
  const g = forwardPairs(be, policy, e.acts, pk, wpoOn);
  e.acts.dropout = null;
  const policySums = new Float64Array(R);
  reduceLogps(policySums, lengths, g.logp, pk.mask, B, Tc, ldAlpha);
  const rowLogps = new Float64Array(R);
  const logitMeans = new Float64Array(R);
  rowSums(g, pk, policy.cfg.V, rowLogps, logitMeans);
  // (M) of each predicted answer token's distribution, for TRL's `entropy`: the fused LM head computed it alongside
  // the log-probs (copied, as a later forward reuses the activations)
  const entropy = Float64Array.from(e.acts.entropy.subarray(0, pk.M));
  const plain = ldAlpha !== null ? rowLogps : null; // plain sums for the NLL terms
  let wpo: PairBatch["wpo"] = null;
  if (wpoOn) {
    const w = new Float64Array(R);
    wpoLogWeights(w, g.logp, g.logSumSq!, pk.mask, B, Tc);
    wpo = { chosenLogWeights: w.subarray(0, B), rejectedLogWeights: w.subarray(B, R) };
  }
  const pairBatch: PairBatch = {
    policyChosenLogps: policySums.subarray(0, B),
    policyRejectedLogps: policySums.subarray(B, R),
    refChosenLogps: useRef ? refSums.subarray(0, B) : null,
    refRejectedLogps: useRef ? refSums.subarray(B, R) : null,
    chosenLengths: lengths.subarray(0, B),
    rejectedLengths: lengths.subarray(B, R),
    policyChosenPlainLogps: plain ? plain.subarray(0, B) : null,
    wpo,
    labels,
  };
  const out = computeLoss(loss, pairBatch, state);
  const afterPolicy = e.timings ? performance.now() : 0;

  if (weight > 0) {
    const dgrid = new Float64Array(R * Tc);
    const dc = out.dPolicyChosenLogps.map((x) => x * weight);
    const dr = out.dPolicyRejectedLogps.map((x) => x * weight);
    reduceLogpsBackward(dgrid, dc, dr, pk.mask, lengths, B, Tc, ldAlpha);
    if (out.dPolicyChosenPlainLogps)
      reduceLogpsBackward(dgrid, out.dPolicyChosenPlainLogps.map((x) => x * weight), null, pk.mask, lengths, B, Tc, null);
    const dlogp = new policy.ctor(pk.M);
    fromGrid(dlogp, dgrid, pk);
    backward(be, policy, e.acts, e.grads, dlogp);
  }
  if (e.timings) {
    e.timings.ref_fwd += afterRef - clock;
    e.timings.policy_fwd += afterPolicy - afterRef;
    e.timings.backward += performance.now() - afterPolicy;
  }

  // TRL's logits/chosen: mean logit over completion positions and the vocabulary (unpaired: of the desirable rows).
  const metrics = lossMetrics(out, groupMeans(logitMeans, pk.completionLengths, labels));
  // Mean answer length in tokens (after truncation, EOS included): the report's length-bias check reads these.
  const answerLengths = groupMeans(pk.completionLengths, new Int32Array(R).fill(1), labels);
  if (answerLengths.chosen !== null) metrics["lengths/chosen"] = answerLengths.chosen;
  if (answerLengths.rejected !== null) metrics["lengths/rejected"] = answerLengths.rejected;
  // Counted as TRL counts its inputs: prompt + answer for each of the two sequences, whatever the packing (unpaired:
  // each row's own sequence, not its mismatched one); the entropy over the same sequences' answer tokens.
  const counted = labels ? B : R;
  let tokens = 0, entropySum = 0, answerTokens = 0;
  for (let r = 0; r < counted; r++) {
    tokens += pk.promptLengths[r]! + pk.completionLengths[r]!;
    for (let k = 0; k < pk.completionLengths[r]!; k++) entropySum += entropy[pk.grid[r * Tc + k]!]!;
    answerTokens += pk.completionLengths[r]!;
  }
  metrics["entropy"] = entropySum / answerTokens;
  return { out, metrics, tokens };
}

// ---------------------------------------------------------------------------------------------------------------
// Metric averaging (weighted by pairs; each metric over the micro-batches that logged it, as an unpaired batch without
// undesirable rows has no rewards/rejected)

export class MetricMean {
  private sums = new Map<string, { sum: number; weight: number }>();
  add(m: Record<string, number>, w: number): void {
    for (const [k, v] of Object.entries(m)) {
      const s = this.sums.get(k) ?? { sum: 0, weight: 0 };
      s.sum += v * w;
      s.weight += w;
      this.sums.set(k, s);
    }
  }
  mean(prefix = ""): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [k, s] of this.sums) out[prefix + k] = s.sum / s.weight;
    return out;
  }
}

/** A step's numbers for the progress line: the loss, then the reward accuracy, or KTO's kl (it has no accuracy). */
function stepLine(m: Record<string, number>, prefix = ""): string {
  const acc = m[`${prefix}rewards/accuracies`];
  const kl = m[`${prefix}kl`];
  const extra = acc !== undefined ? ` ${prefix ? `${prefix}rewards/accuracies ${acc.toFixed(3)}` : `acc ${acc.toFixed(2)}`}`
    : kl !== undefined ? ` ${prefix}kl ${kl.toFixed(prefix ? 3 : 2)}` : "";
  return `${prefix}loss ${m[`${prefix}loss`]!.toFixed(4)}${extra}`;
}

/**
 * Metrics over the held-out pairs, batch by batch. On an MPI job batch b is evaluated by rank b mod W and the
 * batches' metrics are gathered, then averaged in batch order on every rank: the numbers one process gets.
 */
function evaluate(
  e: Engine, pairs: readonly TokenizedPair[], batchSize: number, state: LossState, world: World, onBatch?: (pairsDone: number) => void,
): Record<string, number> {
  const s = { ...state }; // eval must not move the loss's running state
  let batches: { b: number; metrics: Record<string, number>; pairs: number }[] = [];
  for (let i = 0, b = 0; i < pairs.length; i += batchSize, b++) {
    if (b % world.size !== world.rank) continue;
    const chunk = pairs.slice(i, i + batchSize);
    const idx = chunk.map((_, j) => i + j);
    const r = microBatch(e, chunk, idx, "eval", s, 0);
    batches.push({ b, metrics: r.metrics, pairs: chunk.length });
    onBatch?.(i + chunk.length);
  }
  if (world.size > 1) batches = allgatherJson(world, batches).flat().sort((x, y) => x.b - y.b);
  const mean = new MetricMean();
  for (const r of batches) mean.add(r.metrics, r.pairs);
  return mean.mean("eval_");
}

/** One micro-batch's share of a step, as the ranks exchange them. */
interface MicroRecord {
  mb: number; // its index in the step
  loss: number; // its loss × its share of the step's pairs
  metrics: Record<string, number>;
  pairs: number;
  tokens: number;
}


/** AdamW's state and hyper-parameters over one trainable arena. */
export interface Optimizer {
  m: Float32Array;
  v: Float32Array;
  /** Contiguous ranges of the arena and whether weight decay applies to each. */
  decayRanges: { offset: number; size: number; decay: boolean }[];
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  maxGradNorm: number;
}

/** Decay ranges for a full model's arena: norm weights and biases get no weight decay. */
export function modelDecayRanges(model: Model): Optimizer["decayRanges"] {
  return model.entries.map((en) => ({ offset: en.offset, size: en.size, decay: decays(en.name) }));
}

/**
 * The gradient norm and, when it is finite, clipping (torch.nn.utils.clip_grad_norm_) and one AdamW step at
 * `lr` (step counted from 1). Returns the norm before clipping; a non-finite norm leaves everything untouched.
 */
export function optimizerStep(be: Backend, o: Optimizer, params: Buf, grads: Buf, lr: number, step: number): number {
  const norm = Math.sqrt(be.sumSquares(grads, grads.length));
  if (!Number.isFinite(norm)) return norm;
  if (o.maxGradNorm > 0) {
    const coef = o.maxGradNorm / (norm + 1e-6); // torch.nn.utils.clip_grad_norm_
    if (coef < 1) be.scale(grads, coef, grads.length);
  }
  for (const d of o.decayRanges)
    be.adamwStep(
      params.subarray(d.offset, d.offset + d.size), grads.subarray(d.offset, d.offset + d.size),
      o.m.subarray(d.offset, d.offset + d.size), o.v.subarray(d.offset, d.offset + d.size), d.size,
      lr, o.beta1, o.beta2, o.eps, d.decay ? o.weightDecay : 0, step,
    );
  return norm;
}

/** Norm weights and biases get no weight decay, as Hugging Face's Trainer groups them. */
function decays(name: string): boolean {
  return !/(norm|^layers\.\d+\.b[qkv])$/.test(name);
}

// ---------------------------------------------------------------------------------------------------------------
// The run

/**
 * `tsdpo plan`: what `tsdpo train` would print before its first step (the data summary and the fit planner's
 * memory and time prediction), without reading the weights or creating a run folder. A run that would not fit is
 * refused with the same error train gives.
 */
export async function planTrain(cfg: TrainConfig, log: (line: string) => void): Promise<void> {
  // the data summary first, then the plan (or the refusal), as the run would print them
  await beforeWeights(cfg, null, log, log, (summary) => summary.forEach((line) => log(line)));
}

/**
 * What a run settles before any weights are read, for `train` and `plan` alike: the backend, the model's header
 * (config, tokenizer, each tensor's storage), the refusal of full fine-tuning on quantised blocks, the tokenised
 * data (its summary to `showData`), and the fit planner's check, which refuses a run that cannot fit. The plan's lines
 * go to `print`; a refusal's to `say` at once. runDir null: a plan, which names no report files.
 */
async function beforeWeights(
  cfg: TrainConfig, runDir: string | null, say: (line: string) => void, print: (line: string) => void,
  showData: (summary: string[]) => void = () => {},
) {
  const be = selectBackend(cfg.backend);
  const modelPath = resolve(cfg.model ?? defaultModelPath);
  const usePeft = cfg.use_peft || cfg.adapter !== null;
  // LoRA reads the frozen base as stored (halves, quantised blocks); full fine-tuning trains float32 weights.
  const loadOptions = { dequantize: cfg.dequantize, halvesAsFloat: !usePeft };
  // The header comes first: the data is tokenised with it and the fit planner sizes the run from it.
  const header = readModelHeader(modelPath, loadOptions);
  // Full fine-tuning updates every weight, which needs them in float32; a quantised base is LoRA's (QLoRA-style).
  const storedBlocks = [...header.storage.values()].filter((t) => t !== "F32");
  if (!usePeft && storedBlocks.length > 0) {
    const types = [...new Set(storedBlocks)].join(", ");
    throw configError(
      `${modelPath}: holds quantised weights (${types}), which full fine-tuning cannot update. Train LoRA adapters on ` +
        `it as it is (use_peft: true, or --use_peft), or set dequantize: true (--dequantize) to train float32 weights ` +
        `that start from the dequantised values`,
    );
  }
  const data = await prepareData(cfg, header, runDir);
  showData(data.summary);
  const refPath = resolve(cfg.ref_model ?? modelPath);
  const plan = checkPlan(
    be,
    runPlanSpec(cfg, header, sizingPairs(cfg, [...data.train, ...data.eval]), data.train, be.name, availableParallelism(), refPath !== modelPath && referenceUsed(cfg) ? readModelHeader(refPath) : null),
    { force: cfg.force, batch: cfg.per_device_train_batch_size, evalBatch: cfg.per_device_eval_batch_size, maxLength: cfg.max_length, say, withTime: true, print },
  );
  return { be, modelPath, usePeft, loadOptions, data, refPath, plan };
}

export async function train(cfg: TrainConfig, runDirOpt: string | null, opts: TrainOptions = {}): Promise<TrainResult> {
  // Under mpirun: MPI starts here (or the one-line reason it cannot), and only rank 0 prints, locks and writes.
  const world = joinWorld(cfg.backend);
  if (world.size > 1 && runDirOpt === null && cfg.output_dir === null)
    throw new TsdpoError("input", `an mpirun job needs output_dir: every rank must name the same run folder (the default is a time stamp, which differs between ranks)`);
  if (world.rank > 0) opts = { ...opts, quiet: true };
  const runDir = resolve(runDirOpt ?? cfg.output_dir ?? join("runs", new Date().toISOString().replace(/[:.]/g, "-")));
  // Resuming an existing folder: another trainer may still be writing (and pruning) its checkpoints, so the folder's
  // lock is taken before its newest checkpoint is even looked up. A new run takes it once its inputs have passed
  // their checks, so that a run which cannot start leaves nothing behind.
  if (opts.resume && existsSync(runDir) && world.rank === 0) {
    const release = acquireRunLock(runDir, opts.quiet ? () => {} : (opts.log ?? ((line: string) => process.stderr.write(line + "\n"))));
    try {
      return await trainIn(cfg, runDir, opts, true);
    } finally {
      release();
    }
  }
  return trainIn(cfg, runDir, opts, world.rank > 0);
}

async function trainIn(cfg: TrainConfig, runDir: string, opts: TrainOptions, lockHeld: boolean): Promise<TrainResult> {
  const world = joinWorld(cfg.backend);
  const lead = world.rank === 0; // the rank that writes the run folder
  const log = opts.log ?? ((line: string) => process.stderr.write(line + "\n"));
  const say = opts.quiet ? (_: string) => {} : log;
  const resumeFrom = opts.resume ? latestCheckpoint(runDir) : null;
  if (!opts.resume && (existsSync(join(runDir, "checkpoints")) || existsSync(join(runDir, "final"))))
    throw configError(`${runDir}: already holds a run; continue it with \`tsdpo train --resume ${runDir}\` or choose another output_dir`);
  // Starting over silently would throw away whatever the user meant to continue: say why there is nothing to resume.
  if (opts.resume && !resumeFrom)
    throw new TsdpoError(
      "input",
      `train --resume ${runDir}: there is no checkpoint to resume from (${join(runDir, "checkpoints")} holds no step-N folder): ` +
        `the run stopped before its first checkpoint (save_steps ${cfg.save_steps}, save_minutes ${cfg.save_minutes}). ` +
        `Start it again with \`tsdpo train\` and a new output_dir, or delete the folder`,
    );

  // Everything the user's input can break (backend, models, data, the fit) is checked before the run folder is
  // created, so a run that cannot start leaves nothing behind.
  const planLines: string[] = []; // printed after the data summary; a refusal prints them at once
  const { be, modelPath, usePeft, loadOptions, data, refPath, plan } = await beforeWeights(cfg, runDir, say, (line) => planLines.push(line));
  const base = loadModel(modelPath, Float32Array, loadOptions);
  // Full fine-tuning trains a copy of the weights (the checkpoint's when resuming); LoRA trains adapters on the
  // loaded base, which stays frozen and also serves as the reference with the adapters switched off.
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
  // The reference is the untouched starting model (or ref_model), also when resuming; with LoRA, the base with the
  // adapters off or (ref_adapter) the base with a frozen adapter of its own. TR-DPO moves it: a resumed run takes
  // it from the checkpoint.
  const refAdapter = resolveRefAdapter(cfg);
  // The saved config (and so a resume) holds the resolved value: the notice below is printed once per run.
  cfg = { ...cfg, ref_adapter: refAdapter.dir === null ? cfg.ref_adapter ?? false : cfg.ref_adapter ?? true };
  const refNote = refAdapter.defaulted && !resumeFrom
    ? [`note: the reference is the base + a frozen copy of the adapter being continued (${refAdapter.dir}), TRL's "ref" adapter; ` +
      `before ref_adapter existed it was the bare base. Set ref_adapter: false (--ref_adapter false) for that`]
    : [];
  const refLora = usePeft && refPath === modelPath && referenceUsed(cfg) && (refAdapter.dir !== null || cfg.sync_ref_model);
  const refIsAdaptersOff = usePeft && refPath === modelPath && !refLora;
  let refModel: Model | null = !referenceUsed(cfg)
    ? null
    : refPath !== modelPath ? loadModel(refPath).model
    : refIsAdaptersOff ? base.model
    : refLora ? { ...base.model, lora: null } // the base's weights, shared; its own adapter is attached below
    // full fine-tuning: a frozen copy, in less memory when ref_dtype asks (dequantised a panel at a time, weights.ts)
    : cfg.ref_dtype !== "f32" ? quantisedCopy(base.model, cfg.ref_dtype === "bf16" ? "BF16" : "Q8_0")
    : resumeFrom ? base.model : cloneModel(base.model);
  if (refModel && refLora) {
    const policyLora = policy.lora!;
    if (cfg.sync_ref_model && resumeFrom) loadPeftAdapter(join(resumeFrom.dir, REF_ADAPTER_DIR), refModel, baseFingerprint);
    else if (refAdapter.dir !== null) loadPeftAdapter(refAdapter.dir, refModel, baseFingerprint);
    else {
      // TR-DPO from the bare base: the policy's starting A with B = 0, so B·A = 0 (the base exactly) and the first
      // update mixes like parameters; for a fresh adapter this is a copy of the policy's start, as TRL's deep copy.
      const copy = createLora(refModel, policyLora.cfg, 0);
      copy.params.set(policyLora.params);
      for (const a of copy.adapters) a.B.fill(0);
      refModel.lora = copy;
    }
    const rl = refModel.lora!;
    rl.enabled = true;
    if (cfg.sync_ref_model && (rl.params.length !== policyLora.params.length || rl.cfg.r !== policyLora.cfg.r || rl.cfg.targets.join() !== policyLora.cfg.targets.join()))
      throw configError(
        `sync_ref_model mixes the reference adapter's A and B with the policy's, which needs the same rank and target modules: ` +
          `ref_adapter ${refAdapter.dir} has r=${rl.cfg.r} on ${rl.cfg.targets.join(", ")}, the policy r=${policyLora.cfg.r} on ${policyLora.cfg.targets.join(", ")}`,
      );
  } else if (refModel && cfg.sync_ref_model) {
    if (refModel.params.length !== policy.params.length || refModel.quant.size > 0 || JSON.stringify(refModel.cfg) !== JSON.stringify(policy.cfg))
      throw configError(`sync_ref_model mixes the policy's parameters into the reference, so ref_model ${refPath} must have the policy's architecture and float32 weights`);
    if (resumeFrom) {
      const saved = loadModel(join(resumeFrom.dir, REF_MODEL_DIR)).model;
      if (saved.params.length !== refModel.params.length) throw new TsdpoError("input", `${resumeFrom.dir}: ${REF_MODEL_DIR} does not match the reference model`);
      refModel.params.set(saved.params);
    }
  }

  mkdirSync(runDir, { recursive: true });
  // From here on the run folder is ours alone (lock.ts), and Ctrl-C or SIGTERM stop it cleanly at a step's end.
  const releaseLock = lockHeld ? () => {} : acquireRunLock(runDir, say);
  const stop: { signal: NodeJS.Signals | null } = { signal: null };
  const onSignal = (signal: NodeJS.Signals): void => {
    stop.signal = signal;
    log(`${signal}: stopping after this step with a checkpoint (Ctrl-C again exits at once, without it)`);
    // The next signal gets the default action (exit at once): a second Ctrl-C must not wait for a checkpoint.
    process.removeListener("SIGINT", onSignal);
    process.removeListener("SIGTERM", onSignal);
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    const configJson = trainConfigToJson(cfg);
    if (lead) {
      writeFileAtomic(join(runDir, "config.json"), JSON.stringify(configJson, null, 2) + "\n");
      if (data.invalid.length > 0) writeInvalidReport(join(runDir, "invalid_rows.jsonl"), data.invalid);
      if (data.warnings.length > 0) writeWarningsReport(join(runDir, "data_warnings.jsonl"), data.warnings);
      writeFileAtomic(join(runDir, "prompts.jsonl"), data.prompts.map((p) => JSON.stringify({ prompt: p }) + "\n").join(""));
    }
    for (const line of [...(opts.notes ?? []), ...refNote, ...data.summary, ...planLines]) say(line);

    const B = cfg.per_device_train_batch_size;
    const evalB = cfg.per_device_eval_batch_size;
    const maxB = Math.max(B, evalB);
    const sharedPrefix = cfg.shared_prefix;
    const allPairs = sizingPairs(cfg, [...data.train, ...data.eval]);
    const acts = activationsForPairs(policy, allPairs, maxB, sharedPrefix, cfg.gradient_checkpointing);
    const grads = usePeft ? null : createGradients(policy);
    // What the optimizer updates: the whole parameter arena, or the adapter arena.
    const trainable: Buf = usePeft ? policy.lora!.params : policy.params;
    const trainableGrads: Buf = usePeft ? policy.lora!.grads : grads!.grads;
    const n = trainable.length;
    let m: Float32Array = new Float32Array(n), v: Float32Array = new Float32Array(n);

    let ref: Engine["ref"] = null;
    let refLogps: Engine["refLogps"] = null;
    if (refModel) {
      const ldAlpha = cfg.loss.kind === "dpo" ? cfg.loss.ld_alpha : null;
      if (cfg.precompute_ref_log_probs) {
        if (refIsAdaptersOff) policy.lora!.enabled = false;
        const t = precomputedRefLogps(be, refModel, refPath, data.train, evalB, ldAlpha, sharedPrefix, refAdapter.dir, world);
        const ev = precomputedRefLogps(be, refModel, refPath, data.eval, evalB, ldAlpha, sharedPrefix, refAdapter.dir, world);
        if (refIsAdaptersOff) policy.lora!.enabled = true;
        say(`reference log-probs: ${t.cached ? "from cache" : "computed"} ${t.file}`);
        refLogps = { train: t.logps, eval: ev.logps };
      } else {
        // A reference adapter of another rank or on other projections needs LoRA scratch of its own.
        const sameLora = !refModel.lora || refModel.lora === policy.lora ||
          (refModel.lora.cfg.r === policy.lora?.cfg.r && refModel.lora.cfg.targets.join() === policy.lora.cfg.targets.join());
        const sameShape = JSON.stringify(refModel.cfg) === JSON.stringify(policy.cfg) && sameLora;
        ref = {
          model: refModel,
          acts: sameShape ? acts : activationsForPairs(refModel, allPairs, maxB, sharedPrefix, true),
          adaptersOff: refIsAdaptersOff,
        };
      }
    }
    const engine: Engine = {
      be, policy, acts, grads, ref, refLogps, referenceFree: cfg.reference_free && needsReference(cfg.loss), loss: cfg.loss, sharedPrefix,
      dropoutSeed: null, timings: null,
    };

    // Data parallelism (distributed.ts): W ranks, real (mpirun) or emulated (emulate_world_size) in this process. An
    // optimizer step takes B·GA·W pairs; rank r computes micro-batches r·GA … r·GA + GA − 1 of them.
    if (world.size > 1 && cfg.emulate_world_size > 1)
      throw configError(`emulate_world_size ${cfg.emulate_world_size} under an mpirun job of ${world.size} ranks: emulation is for one process; leave it out`);
    const W = world.size > 1 ? world.size : cfg.emulate_world_size;
    let GA = cfg.gradient_accumulation_steps;
    // A checkpoint written by N ranks resumed on M keeps the global batch B·GA·N: GA changes, or the resume is refused.
    const savedState = resumeFrom ? (JSON.parse(readFileSync(join(resumeFrom.dir, "trainer_state.json"), "utf8")) as TrainerState) : null;
    const savedW = savedState ? savedState.world_size ?? 1 : W;
    if (savedW !== W) {
      const global = B * GA * savedW;
      if (global % (B * W) !== 0)
        throw configError(`${resumeFrom!.dir} was written by ${savedW} ranks with a global batch of ${global} pairs (${B} × ${GA} × ${savedW}); ${W} ranks of ${B} pairs cannot make it up (gradient_accumulation_steps would be ${global / (B * W)}); resume with a world size that divides ${global / B}`);
      GA = global / (B * W);
      say(`note: resuming a ${savedW}-rank run on ${W}: gradient_accumulation_steps ${cfg.gradient_accumulation_steps} → ${GA}, so each step still takes ${global} pairs`);
    }
    if (W > 1 && ((cfg.loss.kind === "dpo" && cfg.loss.loss_type.includes("bco_pair")) || (cfg.loss.kind === "kto" && cfg.loss.kto_kl === "running")))
      throw configError(`${cfg.loss.kind === "kto" ? "kto_kl running" : "loss_type bco_pair"} keeps a running estimate updated micro-batch by micro-batch, which data-parallel ranks would each update apart; use one process`);
    const myRanks = world.size > 1 ? [world.rank] : Array.from({ length: W }, (_, r) => r);
    const rankSum: Buf | null = W > 1 && world.size === 1 ? new Float32Array(trainableGrads.length) : null;

    // Schedule
    const pairsPerStep = B * GA * W;
    const stepsPerEpoch = Math.ceil(data.train.length / pairsPerStep);
    const totalSteps = cfg.max_steps > 0 ? cfg.max_steps : Math.ceil(stepsPerEpoch * cfg.num_train_epochs);
    const warmup = warmupSteps(cfg.warmup_steps, cfg.warmup_ratio, totalSteps);

    // State (fresh or from the checkpoint)
    const rng = new Rng(cfg.seed);
    let state: TrainerState = {
      format: "tsdpo-trainer-state", version: 1, step: 0, epoch: 0,
      order: rng.shuffle(Array.from({ length: data.train.length }, (_, i) => i)), cursor: 0,
      rng: rng.state(), lossState: initialLossState(), numTokens: 0, world_size: W,
    };
    const metricsPath = join(runDir, "metrics.jsonl");
    if (resumeFrom) {
      state = savedState!;
      state.world_size = W;
      ({ m, v } = readOptimizer(resumeFrom.dir, n));
      if (lead) removeStaleCheckpointTemps(runDir);
      // Drop metrics logged after the checkpoint; they will be logged again. So is a line cut short by a crash.
      if (existsSync(metricsPath)) {
        const kept = readFileSync(metricsPath, "utf8").split("\n").filter((l) => {
          try {
            return (JSON.parse(l) as { step: number }).step <= state.step;
          } catch {
            return false;
          }
        });
        if (lead) writeFileAtomic(metricsPath, kept.map((l) => l + "\n").join(""));
      }
      say(`resuming ${runDir} from ${resumeFrom.dir} (step ${state.step} of ${totalSteps})`);
    } else if (lead) writeFileAtomic(metricsPath, "");
    const drawRng = new Rng(state.rng);

    const optimizer: Optimizer = {
      m, v,
      decayRanges: usePeft ? [{ offset: 0, size: n, decay: true }] /* LoRA matrices are weights */ : modelDecayRanges(policy),
      beta1: cfg.adam_beta1, beta2: cfg.adam_beta2, eps: cfg.adam_epsilon, weightDecay: cfg.weight_decay, maxGradNorm: cfg.max_grad_norm,
    };
    const progress = createProgress("train", totalSteps, state.step, process.stderr, opts.quiet);
    const startedAt = Date.now();

    // The ETA counts evaluations too (etaSeconds in progress.ts): time per step and per evaluated pair, measured as the run goes.
    const clock = { trainSeconds: 0, trainSteps: 0, evalSeconds: 0, evalPairs: 0 };
    const eta = (step: number, evalPairsPending: number): number | undefined =>
      etaSeconds({ ...clock, step, totalSteps, evalSize: data.eval.length, evalSteps: cfg.eval_steps, pairsPerStep, evalPairsPending });
    const best = bestModelMetric(cfg);
    const bestDir = join(runDir, "best");
    if (state.best === undefined) state.best = null;
    let window = new MetricMean();
    let windowTokens = 0;
    let windowStart = Date.now();
    let lastMetrics: Record<string, number> = {};
    let evalMetrics: Record<string, number> | null = null;
    let lastCheckpoint: string | null = resumeFrom?.dir ?? null;

    const writeMetrics = (row: Record<string, number>): void => {
      if (lead) appendFileLogged(metricsPath, JSON.stringify(row) + "\n");
    };
    let lastSave = Date.now();
    // TR-DPO's reference moves, so checkpoints carry it; otherwise it is rebuilt from the config's paths.
    const syncedRef: { lora: Lora } | { model: Model } | null = !cfg.sync_ref_model || !refModel ? null : refModel.lora ? { lora: refModel.lora } : { model: refModel };
    const checkpoint = (dir: string): void => {
      if (!lead) return; // every rank holds the same weights: rank 0 writes them
      try {
        writeCheckpoint(dir, loaded, m, v, state, configJson, usePeft ? { baseModel: modelPath, baseFingerprint } : null, syncedRef);
      } catch (e) {
        if (!(e instanceof TsdpoError)) throw e;
        throw new TsdpoError(
          "io",
          `${e.message}; training stopped at step ${state.step}. ` +
            (lastCheckpoint ? `The previous checkpoint ${lastCheckpoint} is intact: free the space and continue with \`tsdpo train --resume ${runDir}\`` : "No earlier checkpoint exists"),
        );
      }
      lastSave = Date.now();
    };
    /** A step checkpoint, then the oldest ones beyond save_total_limit (only once the new one is complete). */
    const stepCheckpoint = (): string => {
      const dir = join(runDir, "checkpoints", checkpointDirName(state.step));
      checkpoint(dir);
      lastCheckpoint = dir;
      if (cfg.save_total_limit !== null && lead) pruneCheckpoints(runDir, cfg.save_total_limit);
      return dir;
    };
    /** Evaluates on the held-out pairs, logs the row, and keeps best/ up to date when a metric ranks checkpoints. */
    const runEval = (epochFloat: number): Record<string, number> => {
      const t0 = performance.now();
      const row: Record<string, number> = {
        ...evaluate(engine, data.eval, evalB, state.lossState, world, (done) =>
          progress.status(`eval ${done}/${data.eval.length}`, eta(state.step, data.eval.length - done))),
        epoch: epochFloat, step: state.step,
      };
      clock.evalSeconds += (performance.now() - t0) / 1000;
      clock.evalPairs += data.eval.length;
      writeMetrics(row);
      progress.log(`step ${state.step}: ${stepLine(row, "eval_")}`);
      if (best) {
        const value = row[best.key];
        if (value === undefined) throw configError(`metric_for_best_model: this loss does not log ${best.key}`);
        const prev = state.best;
        if (!prev || (best.greaterIsBetter ? value > prev.value : value < prev.value)) {
          state.best = { step: state.step, value };
          checkpoint(bestDir);
        }
      }
      return row;
    };

    if (cfg.eval_on_start && !resumeFrom && data.eval.length > 0) evalMetrics = runEval(0);

    const microSeconds: number[] = [];
    while (state.step < totalSteps) {
      const stepStart = performance.now();
      trainableGrads.fill(0);
      if (policy.lora && policy.lora.cfg.dropout > 0) {
        const step = state.step;
        engine.dropoutSeed = (micro) => (cfg.seed * 1000003 + step * 4099 + micro) >>> 0;
      }
      // Draw this step's pairs: up to B·accum from the current epoch; a new epoch reshuffles.
      if (state.cursor >= state.order.length) {
        state.epoch++;
        state.order = drawRng.shuffle(Array.from({ length: data.train.length }, (_, i) => i));
        state.cursor = 0;
        state.rng = drawRng.state();
      }
      const take = state.order.slice(state.cursor, state.cursor + pairsPerStep);
      state.cursor += take.length;
      const micros = Math.ceil(take.length / B);
      // Each rank sums its own micro-batches from zero; emulated ranks' sums are then added in rank order, as the MPI
      // binding adds real ranks' sums. At an epoch's end the last ranks may have fewer micro-batches, or none.
      let records: MicroRecord[] = [];
      for (const rank of myRanks) {
        if (rank > 0 && rankSum) trainableGrads.fill(0);
        for (let mb = rank * GA; mb < Math.min(micros, (rank + 1) * GA); mb++) {
          const idx = take.slice(mb * B, mb * B + B);
          const microStart = performance.now();
          const r = microBatch(engine, idx.map((i) => data.train[i]!), idx, "train", state.lossState, idx.length / take.length, mb);
          if (idx.length === B) microSeconds.push((performance.now() - microStart) / 1000); // full micro-batches, as planned
          state.lossState = r.out.state;
          records.push({ mb, loss: (r.out.loss * idx.length) / take.length, metrics: r.metrics, pairs: idx.length, tokens: r.tokens });
        }
        if (rankSum) {
          if (rank === 0) rankSum.set(trainableGrads);
          else addInRankOrder(rankSum, trainableGrads);
        }
      }
      if (rankSum) trainableGrads.set(rankSum);
      if (world.size > 1) {
        orderedSum(world, trainableGrads);
        records = allgatherJson(world, records).flat();
      }
      // The step's loss and metrics over all ranks' pairs, in micro-batch order: the same numbers however many ranks.
      records.sort((a, b) => a.mb - b.mb);
      let stepLoss = 0;
      for (const rec of records) {
        stepLoss += rec.loss;
        window.add(rec.metrics, rec.pairs);
        windowTokens += rec.tokens;
        state.numTokens += rec.tokens;
      }
      const lr = lrAt(cfg.lr_scheduler_type, cfg.learning_rate, state.step, warmup, totalSteps);
      // a non-finite loss must stop the run before the update, whatever the norm
      const norm = Number.isFinite(stepLoss) ? optimizerStep(be, optimizer, trainable, trainableGrads, lr, state.step + 1) : NaN;
      if (!Number.isFinite(stepLoss) || !Number.isFinite(norm))
        throw new TsdpoError(
          "numeric",
          `step ${state.step + 1}: the ${Number.isFinite(stepLoss) ? "gradient norm" : "loss"} is not finite ` +
            `(loss ${stepLoss}, grad_norm ${norm}); training stopped before applying it. ` +
            (lastCheckpoint ? `The last good checkpoint is ${lastCheckpoint}. ` : "No checkpoint was written yet. ") +
            // Clipping bounds the gradient, not AdamW's step (about learning_rate per weight), so suggest it only when off.
            `Lower learning_rate (now ${cfg.learning_rate})${cfg.max_grad_norm > 0 ? "" : ", or set max_grad_norm"}.`,
        );
      state.step++;
      // TR-DPO, after the optimizer step as TRL's SyncRefModelCallback.on_step_end (so this step's evaluation and
      // checkpoint see the updated reference): the parameters mix, LoRA's A and B each on their own (not B·A).
      if (syncedRef && state.step % cfg.ref_model_sync_steps === 0) {
        if ("lora" in syncedRef) mixReference(syncedRef.lora.params, policy.lora!.params, cfg.ref_model_mixup_alpha);
        else mixReference(syncedRef.model.params, policy.params, cfg.ref_model_mixup_alpha);
      }
      clock.trainSeconds += (performance.now() - stepStart) / 1000;
      clock.trainSteps++;

      const epochFloat = state.step / stepsPerEpoch;
      if (state.step % cfg.logging_steps === 0 || state.step === totalSteps) {
        const seconds = (Date.now() - windowStart) / 1000;
        lastMetrics = {
          ...window.mean(), grad_norm: norm, learning_rate: lr, epoch: epochFloat, step: state.step,
          num_tokens: state.numTokens, tokens_per_second: seconds > 0 ? windowTokens / seconds : 0,
        };
        writeMetrics(lastMetrics);
        progress.update(state.step, stepLine(lastMetrics), eta(state.step, 0));
        window = new MetricMean();
        windowTokens = 0;
        windowStart = Date.now();
      }
      const isLast = state.step === totalSteps;
      if (data.eval.length > 0 && ((cfg.eval_steps > 0 && state.step % cfg.eval_steps === 0) || isLast)) evalMetrics = runEval(epochFloat);
      const due = (cfg.save_steps > 0 && state.step % cfg.save_steps === 0) || (cfg.save_minutes > 0 && Date.now() - lastSave >= cfg.save_minutes * 60_000);
      if (due || isLast) stepCheckpoint();

      // Let signal handlers run: they only can between steps, as a step never yields to the event loop.
      await new Promise((r) => setImmediate(r));
      // On an MPI job a signal may reach some ranks only: they agree after every step, and all stop together.
      if (world.size > 1 && !stop.signal && allgather(world, Float64Array.of(0)).some((x) => x > 0)) stop.signal = "SIGTERM";
      else if (world.size > 1 && stop.signal) allgather(world, Float64Array.of(1));
      if (stop.signal && !isLast) {
        progress.done();
        const dir = lastCheckpoint === join(runDir, "checkpoints", checkpointDirName(state.step)) ? lastCheckpoint : stepCheckpoint();
        say(`${stop.signal}: stopped after step ${state.step} of ${totalSteps}; checkpoint ${dir}\ncontinue with: tsdpo train --resume ${runDir}`);
        return { runDir, steps: state.step, finalDir: dir, lastMetrics, evalMetrics, stopped: stop.signal };
      }
    }
    progress.done();

    // load_best_model_at_end: the run ends with the best evaluation's weights, as TRL's Trainer does.
    const endedOnBest = cfg.load_best_model_at_end && state.best && state.best.step !== state.step ? state.best : null;
    if (endedOnBest && world.mpi) world.mpi.barrier(); // rank 0 has finished writing best/ before anyone reads it
    if (endedOnBest) {
      if (usePeft) loadPeftAdapter(bestDir, policy, baseFingerprint);
      else policy.params.set(loadModel(bestDir).model.params);
      say(`load_best_model_at_end: final/ holds the weights of step ${endedOnBest.step} (${best!.key} ${endedOnBest.value.toFixed(4)}), the best evaluation`);
    }
    const finalDir = join(runDir, "final");
    checkpoint(finalDir);
    if (!lead) return { runDir, steps: state.step, finalDir, lastMetrics, evalMetrics };
    // A run resumed from its last step logs nothing new: its final metrics are the last rows already logged.
    if (Object.keys(lastMetrics).length === 0 || evalMetrics === null) {
      const rows = readMetricsRows(metricsPath);
      if (Object.keys(lastMetrics).length === 0) lastMetrics = rows.filter((r) => "loss" in r).at(-1) ?? {};
      if (evalMetrics === null) evalMetrics = rows.filter((r) => "eval_loss" in r).at(-1) ?? null;
    }
    const allRows = readMetricsRows(metricsPath);
    const bestRow = state.best ? allRows.find((r) => "eval_loss" in r && r.step === state.best!.step) ?? null : null;
    if (endedOnBest && bestRow) evalMetrics = bestRow; // the final weights are the best evaluation's
    const summary = {
      steps: state.step, train: lastMetrics, eval: evalMetrics, data: data.summary,
      best: best && state.best ? { metric: best.key, step: state.best.step, value: state.best.value, final_is_best: cfg.load_best_model_at_end } : null,
      best_eval: bestRow,
      seconds: (Date.now() - startedAt) / 1000,
      // the fit planner's prediction (plan.ts) beside the measurement; the report shows both
      memory: {
        predicted_peak_mb: Math.round(plan.memory.peak / 2 ** 20), measured_peak_mb: Math.round(process.resourceUsage().maxRSS / 1024),
        predicted_step_seconds: plan.time ? plan.time.seconds : null,
        measured_step_seconds: microSeconds.length ? [...microSeconds].sort((a, b) => a - b)[microSeconds.length >> 1]! : null,
        plan: plan.memory.items,
      },
    };
    writeFileAtomic(join(runDir, "summary.json"), JSON.stringify(summary, null, 2) + "\n");
    const report = await writeRunReport(runDir);
    say(runSummary(allRows, {
      runDir, finalDir, seconds: summary.seconds, best: summary.best, modelPath, dataPath: cfg.data ?? defaultDataPath, report,
      ggufExport: ggufExportRefusal(policy.cfg) === null, // e.g. not for Phi-3.5's LongRoPE yet (export/gguf.ts)
    }));
    return { runDir, steps: state.step, finalDir, lastMetrics, evalMetrics };
  } finally {
    process.removeListener("SIGINT", onSignal);
    process.removeListener("SIGTERM", onSignal);
    releaseLock();
  }
}
