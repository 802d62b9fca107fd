// "Will it fit?" before anything large is allocated. tsdpo allocates every big buffer once, at sizes known from the
// model's config, the storage of its weights, the LoRA settings and the largest micro-batch, so the planner adds
// them up (the same layout functions the allocations use: activationLayout, paramSpecs) instead of guessing:
//
//   peak = the process as it is now (Node, the addon, the tokenised data: measured)
//        + weights (float32 arena, frozen blocks, a GGUF's file buffer) + trainable parameters, gradients and AdamW
//          moments + the frozen reference copy (full fine-tuning) + activations of the largest micro-batch + the
//          kernels' scratch (GEMM packing, the LM head's logit tile)
//
// and predicts a step's time from its FLOPs (every matrix product of the reference forward, policy forward and
// backward, with the recomputation under gradient checkpointing) over a GEMM rate measured on synthetic products
// of the step's shapes, in well under a second. `tsdpo train` prints the plan and refuses a run that cannot fit
// (naming the settings that would), `tsdpo plan` prints it alone, and the run report shows it beside the measured
// peak.

import { readFileSync } from "node:fs";
import type { Backend } from "../backend/contract.js";
import { type LlamaConfig, layerAttention, numel, paramSpecs } from "../model/config.js";
import { activationLayout, loraActivationFloats } from "../model/decoder.js";
import { ropeLongAfter, rotaryDim } from "../model/rope.js";
import { type LoraTarget, loraModules } from "../model/lora.js";
import { BLOCK, GGML_TYPE_ID, type QuantType, rowBytes } from "../quant/ggml.js";
import { typeForRows } from "../model/quantise.js";
import { packedShape } from "../data/pack.js";
import type { TokenizedPair } from "../data/types.js";
import { configError } from "../errors.js";
import type { ModelHeader } from "../io/load.js";
import { loraTargetsFromPeft } from "../io/peft.js";
import { referenceUsed } from "./reference.js";
import type { TrainConfig } from "./config.js";

/** How each parameter is held in memory: "F32" in the float arena, or a block type kept frozen as stored. */
export type Storage = "F32" | QuantType;

export interface PlanSpec {
  cfg: LlamaConfig;
  /** Storage of every parameter (tsdpo names, paramSpecs order); missing names are F32. */
  storage: ReadonlyMap<string, Storage>;
  /** Bytes of a GGUF file held in memory while the model lives (its quantised matrices are views into it); 0 else. */
  fileBuffer: number;
  /** Extra copies the loader makes (GGUF Q/K rows reordered for Llama-family models), bytes. */
  loaderCopies: number;
  /** Frozen blocks are views into fileBuffer (GGUF), not allocations of their own. */
  blocksInFile: boolean;
  /** The largest tensor the loader holds as float32 on its way into the arena (HF), bytes. */
  loaderTransient: number;
  lora: { r: number; dropout: number; targets: readonly LoraTarget[] } | null;
  /** Full fine-tuning's frozen reference copy (null: LoRA's adapters-off reference, precomputed, or none). */
  refCopy: "f32" | "bf16" | "q8_0" | null;
  /** Whether a reference forward runs every step (false when precomputed or reference-free). */
  refForward: boolean;
  /** The activations: rows × tokens of the largest micro-batch, and log-prob rows (answer tokens) of a typical one. */
  rows: number;
  T: number;
  answerTokens: number;
  checkpointing: boolean;
  threads: number;
  backend: string;
}

export interface MemoryPlan {
  /** Bytes per item; `baseline` is the process's resident size when the plan was made. */
  items: Record<string, number>;
  peak: number;
}

export interface TimePlan {
  flops: number;
  gemmGflops: number;
  seconds: number;
}

const F32 = 4;

function storageOf(spec: PlanSpec, name: string): Storage {
  return spec.storage.get(name) ?? "F32";
}

/** Elements in the float32 parameter arena and bytes of frozen blocks, from the storage map. */
export function weightBytes(spec: PlanSpec): { arena: number; blocks: number } {
  let arena = 0, blocks = 0;
  for (const s of paramSpecs(spec.cfg)) {
    const st = storageOf(spec, s.name);
    if (st === "F32") arena += numel(s.shape);
    else blocks += s.shape[0]! * rowBytes(st, s.shape[1]!);
  }
  return { arena: arena * F32, blocks };
}

/**
 * Σ (IN + OUT) over one layer's adapters: A is (r, IN) and B (OUT, r), so r times this per layer. A fused module
 * (Phi-3's qkv_proj) is one adapter, its A counted once.
 */
function loraWidth(cfg: LlamaConfig, targets: readonly LoraTarget[]): number {
  return loraModules(cfg, targets).reduce((a, m) => a + m.IN + m.OUT, 0);
}

/** Trainable parameter count: the adapters' A and B, or every float parameter. */
export function trainableCount(spec: PlanSpec): number {
  if (!spec.lora) return paramSpecs(spec.cfg).reduce((a, s) => a + numel(s.shape), 0);
  return spec.cfg.L * spec.lora.r * loraWidth(spec.cfg, spec.lora.targets);
}

/** Bytes of full fine-tuning's frozen reference copy in its dtype (quantisedCopy keeps norms in float32). */
function refCopyBytes(spec: PlanSpec): number {
  if (!spec.refCopy) return 0;
  let bytes = 0;
  for (const s of paramSpecs(spec.cfg)) {
    const n = numel(s.shape);
    if (spec.refCopy === "f32" || s.shape.length !== 2) {
      bytes += n * F32;
      continue;
    }
    const type = typeForRows(spec.refCopy === "bf16" ? "BF16" : "Q8_0", s.shape[1]!);
    bytes += type ? s.shape[0]! * rowBytes(type, s.shape[1]!) : n * F32;
  }
  // tied embeddings: the copy holds the table once, as the model does
  return bytes;
}

/** The kernels' own scratch: GEMM packing buffers, the LM head's logit tile and gathered rows (native's sizes). */
function scratchBytes(spec: PlanSpec): number {
  const { C } = spec.cfg;
  if (spec.backend !== "native") return 0;
  const kc = 512, sharedSpan = 2304, privateSpan = 1536;
  const gemm = 2 * kc * sharedSpan + spec.threads * kc * privateSpan;
  const headRows = Math.min(spec.answerTokens, Math.max(64, (1 << 21) / 4096));
  const head = headRows * (2 * C + 4096);
  return (gemm + head) * F32;
}

/**
 * Distinct RoPE tables the model keeps for sequences of T tokens (layerRopeTables: one per distinct base and scaling
 * among RoPE layers, two for LongRoPE when T reaches its long factors).
 */
function ropeTableCount(cfg: LlamaConfig, T: number): number {
  const keys = new Map<string, number>();
  for (let l = 0; l < cfg.L; l++) {
    const a = layerAttention(cfg, l);
    if (a.rope) keys.set(JSON.stringify([a.ropeTheta, a.ropeScaling]), T > ropeLongAfter(a.ropeScaling) ? 2 : 1);
  }
  return [...keys.values()].reduce((x, y) => x + y, 0);
}

export function planMemory(spec: PlanSpec, baselineBytes: number): MemoryPlan {
  const { cfg } = spec;
  const w = weightBytes(spec);
  const n = trainableCount(spec);
  const N = spec.rows * spec.T;
  const acts = activationLayout(cfg, spec.rows, spec.T, spec.checkpointing).reduce((a, [, k]) => a + k, 0);
  const loraActs = spec.lora
    ? loraActivationFloats(cfg, spec.rows, spec.T, spec.lora.r, spec.lora.dropout, Array.from({ length: cfg.L }, () => loraModules(cfg, spec.lora!.targets).map((m) => m.IN)).flat())
    : 0;
  const items: Record<string, number> = {
    baseline: baselineBytes,
    weights_float32: w.arena,
    weights_blocks: spec.blocksInFile ? 0 : w.blocks,
    file_buffer: spec.fileBuffer,
    loader_copies: spec.loaderCopies,
    loader_transient: spec.loaderTransient,
    trainable: spec.lora ? n * F32 : 0, // full fine-tuning trains the float arena itself
    gradients: n * F32,
    optimizer: 2 * n * F32,
    reference: refCopyBytes(spec),
    activations: (acts + loraActs) * F32 + 4 * N * 4 + ropeTableCount(cfg, spec.T) * spec.T * rotaryDim(cfg) * F32,
    scratch: scratchBytes(spec),
  };
  return { items, peak: Object.values(items).reduce((a, b) => a + b, 0) };
}

/**
 * FLOPs of one micro-batch (reference forward, policy forward and backward, the recomputation under checkpointing),
 * in the three parts the time model rates differently: the dense products (projections and LM head), attention's
 * score and value products, and the LoRA branches.
 */
export function stepFlopParts(spec: PlanSpec): { dense: number; attention: number; lora: number } {
  const { cfg } = spec;
  const { C, NH, NKV, HS, FF, V, L } = cfg;
  const N = spec.rows * spec.T, M = spec.answerTokens;
  const proj = C * NH * HS + 2 * C * NKV * HS + NH * HS * C + 3 * C * FF; // Σ IN·OUT of a layer's seven projections
  const attn = 2 * NH * HS * spec.T * spec.T * spec.rows; // QKᵀ and PV over a causal T×T half, per layer
  const full = !spec.lora;
  const forwards = spec.refForward ? 2 : 1;
  // forward: every product and the head; backward: dinp of every product (and dW when full), the head's logits
  // again, and attention at ≈ 2.5× its forward; checkpointing recomputes each layer up to its MLP's down projection
  const dense = forwards * (L * 2 * N * proj + 2 * M * C * V) + L * 2 * N * proj * (full ? 2 : 1) + 2 * M * C * V * (full ? 3 : 2) +
    (spec.checkpointing ? L * 2 * N * (proj - C * FF) : 0);
  const attention = L * attn * (forwards + 2.5 + (spec.checkpointing ? 1 : 0));
  const lora = spec.lora ? 3 * L * 2 * N * spec.lora.r * loraWidth(cfg, spec.lora.targets) : 0;
  return { dense, attention, lora };
}

/** FLOPs of one micro-batch: the matrix products (attention's included) that dominate it. */
export function stepFlops(spec: PlanSpec): number {
  const p = stepFlopParts(spec);
  return p.dense + p.attention + p.lora;
}

/** The matrices' dominant frozen storage (by bytes), which sets the product the GEMM rate is measured on. */
export function dominantStorage(spec: PlanSpec): Storage {
  const by = new Map<Storage, number>();
  for (const s of paramSpecs(spec.cfg)) if (s.shape.length === 2) by.set(storageOf(spec, s.name), (by.get(storageOf(spec, s.name)) ?? 0) + numel(s.shape));
  return [...by.entries()].sort((a, b) => b[1] - a[1])[0]?.[0] ?? "F32";
}

/**
 * GFLOP/s of the backend's product at the step's own MLP shape (up to 512 of its token rows, C → FF), with the
 * weight stored as `storage`: synthetic blocks whose scales are a fixed small half (the values do not matter to the
 * rate). The full shape matters: a GEMM's rate grows with its size, and a smaller stand-in measured half the rate
 * of a 1B model's real products. Median of 5 timed calls after a warm-up: about a second for a 3B model.
 */
export function calibrateGemm(be: Backend, cfg: LlamaConfig, rows: number, storage: Storage): number {
  const N = Math.max(1, Math.min(rows, 512)), IC = cfg.C, OC = cfg.FF;
  const inp = new Float32Array(N * IC).map((_, i) => ((i % 13) - 6) * 0.01);
  const out = new Float32Array(N * OC);
  let run: () => void;
  if (storage === "F32" || !be.matmulForwardQuant || IC % BLOCK[storage].elems !== 0) {
    const w = new Float32Array(OC * IC).map((_, i) => ((i % 7) - 3) * 0.01);
    run = () => be.matmulForward(out, inp, w, null, N, IC, OC);
  } else {
    const blocks = syntheticBlocks(storage, OC, IC);
    run = () => be.matmulForwardQuant!(out, inp, blocks, GGML_TYPE_ID[storage], 0, null, N, IC, OC);
  }
  return (2 * N * IC * OC) / (timeIt(run) * 1e9);
}

/** rows × cols of `type` blocks with pseudo-random quants and every scale field a small finite half. */
function syntheticBlocks(type: QuantType, rows: number, cols: number): Uint8Array {
  const bytes = new Uint8Array(rows * rowBytes(type, cols));
  let x = 0x9e3779b9;
  for (let i = 0; i < bytes.length; i++) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    bytes[i] = x & 255;
  }
  const half = [0x00, 0x14]; // 2^-10·… : a small positive half (little-endian 0x1400)
  const { bytes: bb } = BLOCK[type];
  const halves: Record<QuantType, number[]> = {
    F16: [], BF16: [], Q8_0: [0], Q4_0: [0], Q5_0: [0], Q4_1: [0, 2], Q5_1: [0, 2], Q4_K: [0, 2], Q5_K: [0, 2], Q6_K: [208],
  };
  if (type === "F16" || type === "BF16") {
    for (let i = 0; i < bytes.length; i += 2) bytes[i + 1] = type === "F16" ? 0x20 + (bytes[i + 1]! & 0x0f) : 0x3c; // finite, |x| < 1
    return bytes;
  }
  for (let b = 0; b < bytes.length; b += bb) for (const o of halves[type]) bytes.set(half, b + o);
  return bytes;
}

/**
 * Floats the step's elementwise kernels read and write (norms, residual adds, SwiGLU, RoPE, the LoRA branch's adds,
 * the LM head's and attention's softmax passes), which run at memory speed rather than at the GEMM's rate.
 */
export function stepElementwiseFloats(spec: PlanSpec): number {
  const { C, NH, NKV, HS, FF, L } = spec.cfg;
  const N = spec.rows * spec.T;
  // forward per token and layer: two RMSNorms (2C each), two residual adds (3C), SwiGLU (3FF), RoPE on q and k, the
  // attention output; the backward moves about 2.5 times as much (gradients of each, accumulations, zeroing)
  const layerFwd = 10 * C + 3 * FF + 3 * (NH + NKV) * HS;
  const fwd = L * N * layerFwd;
  const bwd = 2.5 * fwd;
  const recompute = spec.checkpointing ? fwd : 0;
  // softmax over the vocabulary: the head's logit tiles are written and read again per pass (forward, the
  // reference's, and the backward's recomputation)
  const head = 2 * spec.answerTokens * spec.cfg.V * (spec.refForward ? 3 : 2);
  return fwd * (spec.refForward ? 2 : 1) + bwd + recompute + head;
}

/** Floats per second of an elementwise kernel (addForward over 4M floats): the memory-speed half of the time model. */
export function calibrateElementwise(be: Backend): number {
  const n = 1 << 22;
  const a = new Float32Array(n).fill(0.5), b = new Float32Array(n).fill(0.25), out = new Float32Array(n);
  return (3 * n) / timeIt(() => be.addForward(out, a, b, n));
}

/** Median seconds of fn over 5 calls after a warm-up. */
function timeIt(fn: () => void): number {
  fn();
  const ts: number[] = [];
  for (let k = 0; k < 5; k++) {
    const t0 = performance.now();
    fn();
    ts.push(performance.now() - t0);
  }
  ts.sort((a, b) => a - b);
  return ts[2]! / 1000;
}

/** The rates the time model uses, measured on this machine at the step's shapes (a fraction of a second). */
export interface Rates {
  gemmGflops: number; // the MLP product with the base's storage
  /** One adapter's branch on a (C → FF) projection over the micro-batch, forward and backward; width = C + FF. */
  lora: { fwd: number; bwd: number; width: number };
  attentionSeconds: { fwd: number; bwd: number }; // one row of T tokens, one layer, all heads
  elementwiseFloatsPerSecond: number;
}

export function calibrate(be: Backend, spec: PlanSpec): Rates {
  const { C, NH, NKV, HS } = spec.cfg;
  // one adapter on the MLP's up projection (C → FF) over the micro-batch's rows, its forward and backward products as
  // linearForward / linearBackward run them; rank-r products are small and memory-bound, far from the GEMM's rate
  let lora = { fwd: 0, bwd: 0, width: 1 };
  if (spec.lora) {
    const r = spec.lora.r, FF = spec.cfg.FF, n = spec.rows * spec.T;
    const x = new Float32Array(n * C).fill(0.01), A = new Float32Array(r * C).fill(0.02), B = new Float32Array(FF * r).fill(0.02);
    const u = new Float32Array(n * r), tmp = new Float32Array(n * FF), out = new Float32Array(n * FF), du = new Float32Array(n * r);
    const dA = new Float32Array(r * C), dB = new Float32Array(FF * r), dx = new Float32Array(n * C);
    const fwd = timeIt(() => {
      be.matmulForward(u, x, A, null, n, C, r);
      be.scale(u, 2, n * r);
      be.matmulForward(tmp, u, B, null, n, r, FF);
      be.accumulate(out, tmp, n * FF);
    });
    const bwd = timeIt(() => {
      be.matmulBackward(du, dB, null, out, u, B, n, r, FF);
      be.scale(du, 2, n * r);
      be.matmulBackward(dx, dA, null, du, x, A, n, C, r);
    });
    lora = { fwd, bwd, width: C + FF };
  }
  const T = spec.T, q = new Float32Array(T * NH * HS).map((_, i) => ((i % 11) - 5) * 0.05);
  const k = new Float32Array(T * NKV * HS).map((_, i) => ((i % 7) - 3) * 0.05), v = k.slice();
  const out = new Float32Array(T * NH * HS), lse = new Float32Array(T * NH), dout = q.slice();
  const dq = new Float32Array(q.length), dk = new Float32Array(k.length), dv = new Float32Array(v.length);
  const fwd = timeIt(() => be.attentionForward(out, lse, q, k, v, null, 1, T, NH, NKV, HS, 0, 1 / Math.sqrt(HS), 0));
  const bwd = timeIt(() => be.attentionBackward(dq, dk, dv, dout, q, k, v, out, lse, null, 1, T, NH, NKV, HS, 0, 1 / Math.sqrt(HS), 0));
  return {
    gemmGflops: calibrateGemm(be, spec.cfg, spec.rows * spec.T, dominantStorage(spec)), lora,
    attentionSeconds: { fwd, bwd }, elementwiseFloatsPerSecond: calibrateElementwise(be),
  };
}

/**
 * Seconds of one micro-batch: the dense products at the calibrated GEMM rate, the LoRA branches at the rank-r rate,
 * attention from its own timing (per row and layer, forward for each forward pass and the recomputation, backward
 * once), and the elementwise traffic at memory speed.
 */
export function planTime(spec: PlanSpec, rates: Rates): TimePlan {
  const { L } = spec.cfg;
  const parts = stepFlopParts(spec);
  // attention runs in each forward (the reference's, the policy's, the recomputation) and once backward
  const forwards = (spec.refForward ? 2 : 1) + (spec.checkpointing ? 1 : 0);
  let loraSeconds = 0;
  if (spec.lora) {
    // adapters run in the policy's forward (and its recomputation), not in the reference's (adapters off)
    const widths = (L * loraWidth(spec.cfg, spec.lora.targets)) / rates.lora.width;
    loraSeconds = widths * ((spec.checkpointing ? 2 : 1) * rates.lora.fwd + rates.lora.bwd);
  }
  const seconds =
    parts.dense / (rates.gemmGflops * 1e9) + loraSeconds +
    L * spec.rows * (forwards * rates.attentionSeconds.fwd + rates.attentionSeconds.bwd) +
    stepElementwiseFloats(spec) / rates.elementwiseFloatsPerSecond;
  return { flops: parts.dense + parts.attention + parts.lora, gemmGflops: rates.gemmGflops, seconds };
}

/** min(MemAvailable, the cgroup's limit): what this process may still use, in bytes, and where it was read. */
export function availableMemory(): { bytes: number; source: string } | null {
  // Planning for another machine (or testing the refusal): TSDPO_MEMORY_AVAILABLE=16GB (or MB, or plain bytes).
  const forced = process.env.TSDPO_MEMORY_AVAILABLE;
  if (forced) {
    const m = /^\s*(\d+(?:\.\d+)?)\s*(GB|MB|G|M)?\s*$/i.exec(forced);
    if (!m) throw configError(`environment variable TSDPO_MEMORY_AVAILABLE=${forced}: expected a size such as 16GB, 900MB or a number of bytes`);
    const unit = (m[2] ?? "").toUpperCase();
    const bytes = Number(m[1]) * (unit.startsWith("G") ? 2 ** 30 : unit.startsWith("M") ? 2 ** 20 : 1);
    return { bytes, source: "TSDPO_MEMORY_AVAILABLE" };
  }
  const read = (p: string): string | null => {
    try {
      return readFileSync(p, "utf8");
    } catch {
      return null;
    }
  };
  let best: { bytes: number; source: string } | null = null;
  const meminfo = read("/proc/meminfo");
  const m = meminfo ? /^MemAvailable:\s+(\d+) kB/m.exec(meminfo) : null;
  if (m) best = { bytes: Number(m[1]) * 1024, source: "MemAvailable" };
  for (const p of ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]) {
    const t = read(p)?.trim();
    if (!t || t === "max") continue;
    const v = Number(t);
    if (Number.isFinite(v) && v > 0 && v < 2 ** 60 && (!best || v < best.bytes)) best = { bytes: v, source: `cgroup limit (${p})` };
  }
  return best;
}

export const mb = (bytes: number): string => `${Math.round(bytes / 2 ** 20)} MB`;

const ITEM_LABEL: Record<string, string> = {
  baseline: "this process now (Node, addon, data)",
  weights_float32: "weights, float32",
  weights_blocks: "weights, frozen blocks",
  file_buffer: "GGUF file (holds its frozen blocks)",
  loader_copies: "loader copies (Q/K rows)",
  loader_transient: "largest tensor while loading",
  trainable: "trainable (LoRA A, B)",
  gradients: "gradients",
  optimizer: "AdamW moments",
  reference: "reference copy",
  activations: "activations",
  scratch: "kernel scratch",
};

/** The plan as the lines `tsdpo train` and `tsdpo plan` print. */
export function formatPlan(spec: PlanSpec, mem: MemoryPlan, time: TimePlan | null, avail: { bytes: number; source: string } | null): string[] {
  const blockTypes = [...new Set([...spec.storage.values()].filter((s) => s !== "F32"))].join(", ");
  const parts = Object.entries(mem.items).filter(([, v]) => v > 0).map(([k, v]) => `${ITEM_LABEL[k] ?? k} ${mb(v)}${k === "weights_blocks" && blockTypes ? ` (${blockTypes})` : ""}`);
  const lines = [
    `plan: ${spec.lora ? `LoRA r ${spec.lora.r}` : "full fine-tuning"}, ${trainableCount(spec).toLocaleString("en-US")} trainable parameters, ` +
      `micro-batch ${spec.rows} × ${spec.T} tokens${spec.checkpointing ? ", gradient checkpointing" : ""}`,
    `plan: predicted peak memory ${mb(mem.peak)} = ${parts.join(" + ")}`,
  ];
  if (avail) lines.push(`plan: memory available ${mb(avail.bytes)} (${avail.source})`);
  if (time)
    lines.push(`plan: predicted ${time.seconds < 10 ? time.seconds.toFixed(2) : time.seconds.toFixed(0)} s per micro-batch (${(time.flops / 1e9).toFixed(0)} GFLOP at the ${time.gemmGflops.toFixed(0)} GFLOP/s measured on this step's shapes)`);
  return lines;
}

/** Variations of a spec the user can ask for in settings, for "what would fit". */
export interface Alternative {
  setting: string;
  spec: PlanSpec;
}

export function alternatives(spec: PlanSpec, opts: { batch: number; evalBatch: number; maxLength: number | null }): Alternative[] {
  const out: Alternative[] = [];
  if (!spec.checkpointing) out.push({ setting: "gradient_checkpointing: true", spec: { ...spec, checkpointing: true } });
  if (!spec.lora)
    out.push({ setting: "use_peft: true (LoRA r 16 on q, k, v, o)", spec: { ...spec, lora: { r: 16, dropout: 0.05, targets: ["wq", "wk", "wv", "wo"] }, refCopy: null } });
  else if ([...spec.storage.values()].every((v) => v === "F32" || v === "F16" || v === "BF16")) {
    const q4 = new Map<string, Storage>();
    for (const s of paramSpecs(spec.cfg)) if (s.shape.length === 2) q4.set(s.name, typeForRows("Q4_K", s.shape[1]!) ?? "F32");
    out.push({ setting: "a Q4_K_M GGUF of the model as the base", spec: { ...spec, storage: q4, fileBuffer: 0, loaderCopies: 0, blocksInFile: false, loaderTransient: 0 } });
  }
  const micro = Math.max(opts.batch, opts.evalBatch);
  if (micro > 1)
    out.push({
      setting: `per_device_train_batch_size: 1 and per_device_eval_batch_size: 1 (gradient_accumulation_steps × ${opts.batch} keeps the batch)`,
      spec: { ...spec, rows: spec.rows / micro, answerTokens: spec.answerTokens / opts.batch },
    });
  if (spec.T >= 256) {
    const half = Math.floor((opts.maxLength ?? spec.T) / 2);
    out.push({ setting: `max_length: ${half}`, spec: { ...spec, T: Math.ceil(spec.T / 2), answerTokens: spec.answerTokens / 2 } });
  }
  return out;
}

/**
 * The plan of a `tsdpo train` run from what is known before any weights are read: the model's header (its config
 * and each tensor's storage), the tokenised pairs, and the settings. Mirrors train.ts's choices: the activations of
 * the larger of the train and eval micro-batches over the longest packed row, full fine-tuning's frozen reference
 * copy in ref_dtype, a ref_model loaded beside the policy.
 */
export function runPlanSpec(
  cfg: TrainConfig, header: ModelHeader, pairs: readonly TokenizedPair[], trainPairs: readonly TokenizedPair[], backend: string, threads: number,
  refHeader: ModelHeader | null,
): PlanSpec {
  const usePeft = cfg.use_peft || cfg.adapter !== null;
  const maxB = Math.max(1, Math.min(Math.max(cfg.per_device_train_batch_size, cfg.per_device_eval_batch_size), pairs.length));
  const { T } = packedShape(pairs.length ? pairs : [], cfg.shared_prefix);
  const rows = cfg.shared_prefix ? maxB : 2 * maxB;
  const meanAnswers = trainPairs.length ? trainPairs.reduce((a, p) => a + p.chosenIds.length + p.rejectedIds.length, 0) / trainPairs.length : T;
  const reference = referenceUsed(cfg);
  const separateRef = reference && refHeader !== null;
  let refExtra = 0;
  if (separateRef) {
    const refSpec = { ...emptySpec(refHeader.cfg), storage: refHeader.storage, blocksInFile: refHeader.blocksInFile };
    const w = weightBytes(refSpec);
    refExtra = w.arena + (refHeader.blocksInFile ? 0 : w.blocks) + refHeader.fileBuffer + refHeader.loaderCopies;
  }
  return {
    cfg: header.cfg, storage: header.storage, fileBuffer: header.fileBuffer + refExtra, loaderCopies: header.loaderCopies,
    blocksInFile: header.blocksInFile, loaderTransient: header.loaderTransient,
    lora: usePeft
      ? { r: cfg.lora_r, dropout: cfg.lora_dropout, targets: loraTargetsFromPeft(cfg.lora_target_modules, header.cfg, "training config: lora_target_modules") }
      : null,
    refCopy: reference && !usePeft && !separateRef ? cfg.ref_dtype : null,
    refForward: reference && !cfg.precompute_ref_log_probs,
    rows, T, answerTokens: Math.min(rows * T, cfg.per_device_train_batch_size * meanAnswers),
    checkpointing: cfg.gradient_checkpointing, threads, backend,
  };
}

function emptySpec(cfg: LlamaConfig): PlanSpec {
  return {
    cfg, storage: new Map(), fileBuffer: 0, loaderCopies: 0, blocksInFile: false, loaderTransient: 0, lora: null, refCopy: null,
    refForward: false, rows: 1, T: 1, answerTokens: 1, checkpointing: false, threads: 1, backend: "js",
  };
}

/**
 * Prints the plan; when the predicted peak exceeds the memory available, throws the refusal that names the settings
 * that would fit (unless `force`). The GEMM is calibrated only for a plan that goes ahead, so a refusal is immediate.
 */
export function checkPlan(
  be: Backend, spec: PlanSpec,
  opts: { force: boolean; batch: number; evalBatch: number; maxLength: number | null; say: (line: string) => void; withTime: boolean; print?: (line: string) => void },
): { memory: MemoryPlan; time: TimePlan | null; available: { bytes: number; source: string } | null } {
  const baseline = process.memoryUsage().rss;
  const memory = planMemory(spec, baseline);
  const available = availableMemory();
  if (available && memory.peak > available.bytes && !opts.force) {
    for (const line of formatPlan(spec, memory, null, available)) opts.say(line);
    const fits = alternatives(spec, opts).map((a) => ({ a, peak: planMemory(a.spec, baseline).peak })).filter((x) => x.peak <= available.bytes);
    const what = fits.length
      ? `These would fit: ${fits.map((x) => `${x.a.setting} (${mb(x.peak)})`).join("; ")}.`
      : "No single change of gradient_checkpointing, LoRA, a quantised base, the micro-batch or max_length brings it under; combine them, or use a smaller model.";
    throw configError(
      `the run needs about ${mb(memory.peak)} at its peak but ${mb(available.bytes)} is available (${available.source}). ${what} ` +
        `Add --force to start anyway`,
    );
  }
  const time = opts.withTime ? planTime(spec, calibrate(be, spec)) : null;
  for (const line of formatPlan(spec, memory, time, available)) (opts.print ?? opts.say)(line);
  return { memory, time, available };
}
