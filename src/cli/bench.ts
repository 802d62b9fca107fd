// `tsdpo bench`: one DPO training step on a preset architecture, timed (src/train/bench.ts).

import { selectBackend } from "../backend/select.js";
import { type NativeInfo, loadNative } from "../backend/native/index.js";
import { availableParallelism, cpus, loadavg } from "node:os";
import { configError } from "../errors.js";
import { PRESETS } from "../model/presets.js";
import { BENCH_BASE_DTYPES, type BenchBaseDtype, benchDpoStep } from "../train/bench.js";
import type { Command } from "./commands.js";

type Values = Record<string, string | boolean | undefined>;

function intOption(v: Values, key: string, fallback: number, min: number): number {
  const s = v[key];
  if (typeof s !== "string") return fallback;
  const x = Number(s);
  if (s.trim() === "" || !Number.isInteger(x) || x < min) throw configError(`--${key} ${s}: expected a whole number ≥ ${min}`);
  return x;
}

/** What the figure depends on, recorded next to it. */
function benchEnvironment(info: NativeInfo | null): Record<string, string | number | null> {
  const e = process.env;
  return {
    node: process.version, cpu: cpus()[0]?.model ?? null, cores: availableParallelism(), date: new Date().toISOString(),
    threads: info?.threads ?? null, thread_pool: info?.threadPool ?? null, simd: info?.simd ?? null, gemm: info?.gemm ?? null,
    OMP_WAIT_POLICY: e.OMP_WAIT_POLICY ?? null, OMP_NUM_THREADS: e.OMP_NUM_THREADS ?? null, load_average_1m: Math.round(loadavg()[0]! * 100) / 100,
  };
}

function baseDtypeOption(v: Record<string, string | boolean | undefined>): "f32" | BenchBaseDtype {
  const s = typeof v["base-dtype"] === "string" ? v["base-dtype"].toLowerCase() : "f32";
  if (s !== "f32" && !(BENCH_BASE_DTYPES as readonly string[]).includes(s))
    throw configError(`--base-dtype ${s}: expected f32 or one of ${BENCH_BASE_DTYPES.join(", ")}`);
  if (s !== "f32" && typeof v["lora-r"] !== "string") throw configError(`--base-dtype ${s}: a ${s} base is frozen; give --lora-r too`);
  return s as "f32" | BenchBaseDtype;
}

export const benchCommand: Command = {
  summary: "time one full DPO training step on a preset architecture (JSON with --json)",
  help: `usage: tsdpo bench [--preset P] [--prompt-len 128] [--completion-len 128]
                   [--pairs 1] [--steps 5] [--warmup 1] [--threads N] [--concatenated] [--lora-r R]
                   [--base-dtype f32|${BENCH_BASE_DTYPES.join("|")}] [--gradient-checkpointing]
                   [--backend auto|native|js] [--json]
  One step = reference forward, policy forward on chosen and rejected, sigmoid DPO loss (β 0.1), backward,
  gradient clipping and AdamW, exactly as \`tsdpo train\` runs it. Weights are deterministic (no download); tokens
  follow a formula shared with tools/bench_torch.py. Reports the median step over --steps timed steps after
  --warmup untimed ones, the share of each phase, peak RSS, and the GEMM rate against this machine's FMA peak,
  both measured on the spot.
  --preset P           architecture (default smollm-135m), a published model's config.json shape:
                       ${Object.keys(PRESETS).join(", ")}
  --prompt-len N       prompt tokens per pair (default 128)
  --completion-len N   tokens of each answer (default 128)
  --pairs N            pairs per step (default 1)
  --threads N          threads for the native backend (default: every core)
  --concatenated       TRL's layout (2 rows of prompt + answer) instead of tsdpo's shared prompt
  --lora-r R           LoRA of rank R on every projection (alpha 2R) instead of full fine-tuning
  --base-dtype D       the frozen base's storage with --lora-r: f32 (default), bf16 (the float weights
                       rounded) or random blocks of ${BENCH_BASE_DTYPES.filter((d) => d !== "bf16").join(", ")} with the same spread, made block by
                       block without a float32 copy (llama.cpp's fallbacks for rows the blocks do not fit)
  --gradient-checkpointing
                       keep one set of layer activations and recompute each layer in the backward
                       (train's gradient_checkpointing: less memory, one more forward)
  --json               one JSON object on stdout`,
  options: {
    preset: { type: "string" }, "prompt-len": { type: "string" }, "completion-len": { type: "string" },
    pairs: { type: "string" }, steps: { type: "string" }, warmup: { type: "string" }, threads: { type: "string" },
    concatenated: { type: "boolean" }, backend: { type: "string" }, json: { type: "boolean" },
    "lora-r": { type: "string" }, "base-dtype": { type: "string" }, "gradient-checkpointing": { type: "boolean" },
  },
  async run(v) {
    const preset = typeof v.preset === "string" ? v.preset : "smollm-135m";
    if (!PRESETS[preset]) throw configError(`--preset ${preset}: expected one of ${Object.keys(PRESETS).join(", ")}`);
    const threads = typeof v.threads === "string" ? intOption(v, "threads", 1, 1) : null;
    if (threads !== null) process.env.TSDPO_THREADS = String(threads); // read when the addon loads
    const be = selectBackend(typeof v.backend === "string" ? v.backend : undefined);
    const native = loadNative();
    if (native.ok && threads !== null) native.setThreads(threads);
    const onNative = be.name === "native" && native.ok;
    const result = benchDpoStep(be, {
      preset,
      promptLen: intOption(v, "prompt-len", 128, 1),
      completionLen: intOption(v, "completion-len", 128, 1),
      pairs: intOption(v, "pairs", 1, 1),
      steps: intOption(v, "steps", 5, 1),
      warmup: intOption(v, "warmup", 1, 0),
      sharedPrefix: v.concatenated !== true,
      loraR: typeof v["lora-r"] === "string" ? intOption(v, "lora-r", 8, 1) : null,
      baseDtype: baseDtypeOption(v),
      gradientCheckpointing: v["gradient-checkpointing"] === true,
    }, {
      fmaPeak: onNative ? () => native.fmaPeakGflops(200) : null,
      threads: onNative ? native.info().threads : null,
      env: benchEnvironment(onNative ? native.info() : null),
    });
    if (v.json) {
      process.stdout.write(JSON.stringify(result) + "\n");
      return 0;
    }
    const pct = (x: number): string => `${(100 * x).toFixed(1)}%`;
    const lines = [
      `${result.preset} on ${result.backend}${result.config.threads ? ` (${result.config.threads} threads)` : ""}: ` +
        `${result.config.pairs} pair(s) × (${result.config.prompt_len} prompt + ${result.config.completion_len} answer tokens), ` +
        `${result.config.shared_prefix ? "shared prompt" : "concatenated"}` +
        (result.config.lora_r !== null ? `, LoRA r ${result.config.lora_r} on a ${result.config.base_dtype} base` : ", full fine-tuning") +
        `, gradient checkpointing ${result.config.gradient_checkpointing ? "on" : "off"}`,
      `  step: ${result.ms_per_step} ms median of ${result.config.steps} (${result.steps_ms.join(", ")})`,
      `  ${result.tokens_per_second} tokens/s, peak RSS ${result.peak_rss_mb} MB, ` +
        `activation arena ${(result.activation_arena_bytes / 2 ** 20).toFixed(1)} MB`,
      `  the fit planner predicted peak ${result.plan.predicted_peak_mb} MB and ${result.plan.predicted_ms_per_step} ms per step ` +
        `(${result.plan.step_gflop} GFLOP at a calibrated ${result.plan.calibrated_gemm_gflops} GFLOP/s); the step ran at ${result.step_gflops} GFLOP/s`,
      `  split: reference fwd ${pct(result.share.ref_fwd)}, policy fwd ${pct(result.share.policy_fwd)}, ` +
        `backward ${pct(result.share.backward)}, optimizer ${pct(result.share.optimizer)}`,
      `  GEMM ${result.gemm_gflops} GFLOP/s at the MLP's shape` +
        (result.fma_peak_gflops !== null ? ` = ${pct(result.gemm_share_of_peak!)} of the FMA peak ${result.fma_peak_gflops} GFLOP/s` : "") +
        `; ${result.gemm_gflops_lm_head} GFLOP/s at the LM head's`,
    ];
    process.stdout.write(lines.join("\n") + "\n");
    return 0;
  },
};
