// `tsdpo bench`: the speed of one full DPO training step on a preset architecture (real config.json shapes,
// deterministic weights, src/model/presets.ts). A step is exactly what the trainer runs: the reference forward,
// the policy forward, the sigmoid loss (β 0.1), the backward, gradient clipping and AdamW (train.ts's microBatch
// and optimizerStep), timed phase by phase.
//
// The tokens are a formula, so tools/bench_torch.py builds the very same batch: token i of sequence kind s
// (prompt 0, chosen 1, rejected 2) is (i·2654435761 + s·40503 + 17) mod V. With the same weights both sides must
// report the same first-step log-probs (`check`), which the comparison harness verifies.

import type { Backend } from "../backend/contract.js";
import type { TokenizedPair } from "../data/types.js";
import { defaultLossConfig } from "../loss/config.js";
import { initialLossState } from "../loss/losses.js";
import { cloneModel, createGradients } from "../model/decoder.js";
import { allLoraTargets, createLora } from "../model/lora.js";
import { blockPresetModel } from "../model/presetquant.js";
import { PRESETS, presetModel } from "../model/presets.js";
import type { QuantType } from "../quant/ggml.js";
import { activationsForPairs } from "./logps.js";
import { packedShape } from "../data/pack.js";
import { paramSpecs } from "../model/config.js";
import { typeForRows } from "../model/quantise.js";
import { type PlanSpec, type Storage, calibrate, planMemory, planTime } from "./plan.js";
import { type Engine, type StepTimings, microBatch, modelDecayRanges, optimizerStep } from "./train.js";

export interface BenchOptions {
  preset: string;
  promptLen: number;
  completionLen: number;
  pairs: number;
  steps: number;
  warmup: number;
  /** Pack each pair's prompt once (the default); false runs TRL's concatenated batch, for comparison. */
  sharedPrefix: boolean;
  /**
   * The frozen base's storage: "f32", or a GGML block type its matrices are made in (LoRA only): bf16 is the float
   * preset rounded, the quantised types are random blocks of the same spread (src/model/presetquant.ts).
   */
  baseDtype?: "f32" | BenchBaseDtype;
  /** LoRA rank on every projection of the model (alpha 2r, no dropout); null: full fine-tuning. */
  loraR?: number | null;
  /** Gradient checkpointing: one set of layer activations, each layer recomputed in the backward (as train's). */
  gradientCheckpointing?: boolean;
}

export const BENCH_BASE_DTYPES = ["bf16", "q8_0", "q4_k", "q6_k", "q5_0"] as const;
export type BenchBaseDtype = (typeof BENCH_BASE_DTYPES)[number];
const BASE_TYPE: Record<BenchBaseDtype, QuantType> = { bf16: "BF16", q8_0: "Q8_0", q4_k: "Q4_K", q6_k: "Q6_K", q5_0: "Q5_0" };

export interface BenchResult {
  preset: string;
  backend: string;
  ms_per_step: number; // median over the timed steps
  steps_ms: number[];
  tokens_per_second: number; // tokens as TRL counts them (2·pairs·(prompt+completion)) per second of step
  peak_rss_mb: number; // the whole process's peak, read after the steps
  activation_arena_bytes: number; // the layers' saved activations and backward scratch (LoRA's branch buffers aside)
  step_gflops: number; // the step's matrix-product FLOPs (plan.ts stepFlops) per second of the median step
  /** The fit planner's prediction for this step (src/train/plan.ts), made before the model was built, and the ratios. */
  plan: {
    predicted_peak_mb: number; predicted_ms_per_step: number; calibrated_gemm_gflops: number; step_gflop: number;
    peak_over_predicted: number; ms_over_predicted: number; items_mb: Record<string, number>;
  };
  gemm_gflops: number; // the backend's matmul at the MLP's up projection over the step's tokens (most of its FLOPs)
  gemm_gflops_lm_head: number; // and at the LM head's shape (answer tokens × vocabulary), its largest single product
  fma_peak_gflops: number | null; // this machine's float32 FMA peak, measured here (native only)
  gemm_share_of_peak: number | null;
  share: StepTimings; // fraction of the step in each phase (median step's split)
  check: { chosen_logps: number; rejected_logps: number; loss: number };
  config: {
    prompt_len: number; completion_len: number; pairs: number; steps: number; shared_prefix: boolean; threads: number | null;
    base_dtype: string; lora_r: number | null; gradient_checkpointing: boolean;
  };
  env: Record<string, string | number | null>;
}

/** The deterministic benchmark token of sequence kind s (0 prompt, 1 chosen, 2 rejected) at index i. */
export function benchToken(i: number, s: number, V: number): number {
  return (i * 2654435761 + s * 40503 + 17) % V;
}

export function benchPairs(V: number, pairs: number, promptLen: number, completionLen: number): TokenizedPair[] {
  const seq = (s: number, n: number): Int32Array => Int32Array.from({ length: n }, (_, i) => benchToken(i, s, V));
  return Array.from({ length: pairs }, (_, k): TokenizedPair => ({
    source: { file: "bench", format: "jsonl", index: k, line: k + 1 },
    promptIds: seq(0, promptLen), chosenIds: seq(1, completionLen), rejectedIds: seq(2, completionLen), truncated: false,
  }));
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 ? s[(n - 1) >> 1]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
}

/** GFLOP/s of be.matmulForward for (N, IC) · (OC, IC)ᵀ, median of `reps` timed calls after one warm-up. */
export function measureGemm(be: Backend, N: number, IC: number, OC: number, reps = 5): number {
  const a = new Float32Array(N * IC), w = new Float32Array(OC * IC);
  for (let i = 0; i < a.length; i++) a[i] = (i % 13) * 0.01 - 0.06;
  for (let i = 0; i < w.length; i++) w[i] = (i % 7) * 0.01 - 0.03;
  const out = new Float32Array(N * OC);
  be.matmulForward(out, a, w, null, N, IC, OC);
  const times: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    be.matmulForward(out, a, w, null, N, IC, OC);
    times.push(performance.now() - t0);
  }
  return (2 * N * IC * OC) / (median(times) * 1e6);
}

export function benchDpoStep(
  be: Backend, o: BenchOptions,
  extras: { fmaPeak: (() => number) | null; threads: number | null; env: Record<string, string | number | null> },
): BenchResult {
  if (!PRESETS[o.preset]) throw new Error(`unknown preset ${o.preset}`);
  const loraR = o.loraR ?? null;
  const baseDtype = o.baseDtype ?? "f32";
  const checkpointing = o.gradientCheckpointing ?? false;
  if (baseDtype !== "f32" && loraR === null) throw new Error(`a ${baseDtype} base is frozen: bench it with a LoRA rank`);
  // The fit planner's prediction, made as train makes it: before the model exists, from its config, the base's
  // storage and the batch's shape, over a GEMM rate calibrated here on the step's shapes.
  const cfg = PRESETS[o.preset]!;
  const storage = new Map<string, Storage>();
  if (baseDtype !== "f32")
    for (const sp of paramSpecs(cfg)) if (sp.shape.length === 2) storage.set(sp.name, typeForRows(BASE_TYPE[baseDtype], sp.shape[1]!) ?? "F32");
  const benchPairsShape = packedShape(benchPairs(cfg.V, o.pairs, o.promptLen, o.completionLen), o.sharedPrefix);
  const spec: PlanSpec = {
    cfg, storage, fileBuffer: 0, loaderCopies: 0, blocksInFile: false, loaderTransient: 0,
    lora: loraR !== null ? { r: loraR, dropout: 0, targets: allLoraTargets(cfg) } : null,
    refCopy: loraR !== null ? null : "f32", refForward: true, rows: benchPairsShape.R, T: benchPairsShape.T,
    answerTokens: 2 * o.pairs * o.completionLen, checkpointing, threads: extras.threads ?? 1, backend: be.name,
  };
  const predictedMemory = planMemory(spec, process.memoryUsage().rss);
  const predictedTime = planTime(spec, calibrate(be, spec));
  // a bf16 or quantised base is made block by block: no float32 copy of its matrices ever exists
  const policy = baseDtype === "f32" ? presetModel(o.preset) : blockPresetModel(PRESETS[o.preset]!, BASE_TYPE[baseDtype]);
  if (loraR !== null)
    policy.lora = createLora(policy, { r: loraR, alpha: 2 * loraR, dropout: 0, targets: allLoraTargets(cfg) }, 0);
  // LoRA's reference is the base with the adapters off; full fine-tuning keeps a frozen copy
  const ref = loraR !== null ? policy : cloneModel(policy);
  const { V, C, FF } = policy.cfg;
  const pairs = benchPairs(V, o.pairs, o.promptLen, o.completionLen);
  const acts = activationsForPairs(policy, pairs, pairs.length, o.sharedPrefix, checkpointing);
  const loss = defaultLossConfig(); // sigmoid DPO, β 0.1
  const timings: StepTimings = { policy_fwd: 0, ref_fwd: 0, backward: 0, optimizer: 0 };
  const engine: Engine = {
    be, policy, acts, grads: loraR !== null ? null : createGradients(policy),
    // the reference runs first and shares the policy's activations, as in the trainer
    ref: { model: ref, acts, adaptersOff: loraR !== null },
    refLogps: null, referenceFree: false, loss, sharedPrefix: o.sharedPrefix, dropoutSeed: null, timings,
  };
  const trainable = policy.lora ? policy.lora.params : policy.params;
  const grads = policy.lora ? policy.lora.grads : engine.grads!.grads;
  const n = trainable.length;
  const optimizer = {
    m: new Float32Array(n), v: new Float32Array(n),
    decayRanges: policy.lora ? [{ offset: 0, size: n, decay: true }] : modelDecayRanges(policy),
    beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 1,
  };
  const index = pairs.map((_, i) => i);
  const steps: { ms: number; split: StepTimings }[] = [];
  let check: BenchResult["check"] | null = null;
  for (let s = 0; s < o.warmup + o.steps; s++) {
    for (const k of Object.keys(timings) as (keyof StepTimings)[]) timings[k] = 0;
    const t0 = performance.now();
    const r = microBatch(engine, pairs, index, "train", initialLossState(), 1);
    check ??= { chosen_logps: r.out.chosenLogps[0]!, rejected_logps: r.out.rejectedLogps[0]!, loss: r.out.loss };
    const t1 = performance.now();
    optimizerStep(be, optimizer, trainable, grads, 1e-6, s + 1);
    grads.fill(0);
    const t2 = performance.now();
    timings.optimizer = t2 - t1;
    if (s >= o.warmup) steps.push({ ms: t2 - t0, split: { ...timings } });
  }
  const ms = steps.map((x) => x.ms);
  const mid = median(ms);
  const medianStep = steps.reduce((best, x) => (Math.abs(x.ms - mid) < Math.abs(best.ms - mid) ? x : best));
  const share = Object.fromEntries(
    Object.entries(medianStep.split).map(([k, v]) => [k, Math.round((v / medianStep.ms) * 1000) / 1000]),
  ) as unknown as StepTimings;
  const tokens = 2 * o.pairs * (o.promptLen + o.completionLen);
  const peakRss = process.resourceUsage().maxRSS / 1024;
  // GEMM rates at the step's own shapes: the MLP's up projection over every token (the MLP holds most of the
  // step's FLOPs) and its largest single product, the LM head over the answer tokens (completion rows × vocabulary). The peak and the products are measured in turns, three
  // times, and the medians reported, so a burst of load on a shared machine does not land on one side only.
  const rows = o.sharedPrefix ? o.pairs * (o.promptLen + 2 * o.completionLen) : tokens;
  const headRows = 2 * o.pairs * o.completionLen;
  const peaks: number[] = [], heads: number[] = [], mlps: number[] = [];
  for (let k = 0; k < 3; k++) {
    if (extras.fmaPeak) peaks.push(extras.fmaPeak());
    heads.push(measureGemm(be, headRows, C, V, 3));
    mlps.push(measureGemm(be, rows, C, FF, 7));
  }
  const gemm = median(mlps);
  const fma = peaks.length ? median(peaks) : null;
  return {
    preset: o.preset, backend: be.name,
    ms_per_step: round(mid, 1), steps_ms: ms.map((x) => round(x, 1)),
    tokens_per_second: round(tokens / (mid / 1000), 1), peak_rss_mb: round(peakRss, 0),
    activation_arena_bytes: acts.x[0]!.buffer.byteLength, // every per-layer view lives in that one allocation
    step_gflops: round(predictedTime.flops / (mid * 1e6), 1),
    plan: {
      predicted_peak_mb: round(predictedMemory.peak / 2 ** 20, 0), predicted_ms_per_step: round(predictedTime.seconds * 1000, 1),
      calibrated_gemm_gflops: round(predictedTime.gemmGflops, 1), step_gflop: round(predictedTime.flops / 1e9, 2),
      peak_over_predicted: round(peakRss / (predictedMemory.peak / 2 ** 20), 3), ms_over_predicted: round(mid / (predictedTime.seconds * 1000), 3),
      items_mb: Object.fromEntries(Object.entries(predictedMemory.items).map(([k, v]) => [k, round(v / 2 ** 20, 1)])),
    },
    gemm_gflops: round(gemm, 1), gemm_gflops_lm_head: round(median(heads), 1), fma_peak_gflops: fma === null ? null : round(fma, 1),
    gemm_share_of_peak: fma === null ? null : round(gemm / fma, 3),
    share, check: check!,
    config: {
      prompt_len: o.promptLen, completion_len: o.completionLen, pairs: o.pairs, steps: o.steps, shared_prefix: o.sharedPrefix,
      threads: extras.threads, base_dtype: baseDtype, lora_r: loraR, gradient_checkpointing: checkpointing,
    },
    env: extras.env,
  };
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
