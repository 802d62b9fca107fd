// Checkpoints. A checkpoint folder is a Hugging Face model folder (config.json, model.safetensors, tokenizer
// files), or for LoRA runs a PEFT adapter folder (adapter_config.json, adapter_model.safetensors), so
// `--model <checkpoint>` works anywhere, plus the trainer's own state:
//   optimizer.safetensors   AdamW moments exp_avg / exp_avg_sq as flat arenas (same layout as the parameters)
//   trainer_state.json      step, epoch position and data order, RNG state, loss state, metrics counters
//   train_config.json       the resolved training config
//   ref_adapter/, ref_model/  TR-DPO (sync_ref_model) only: the reference as it is now, which the run has mixed
//                           from the policy (a PEFT adapter folder for LoRA, a Hugging Face model folder otherwise),
//                           so that a resumed run goes on from the same reference bits
// Every file is written, fsynced and renamed, and the folder itself is built under a temporary name and renamed
// into place last, so a checkpoint folder either exists complete or not at all, whatever kills the process.

import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import { TsdpoError, inputError } from "../errors.js";
import { exportHf } from "../export/hf.js";
import { fsyncDir, writeFileAtomic } from "../io/atomic.js";
import type { LoadedModel } from "../io/load.js";
import { readSafetensors, writeSafetensors } from "../io/safetensors.js";
import { type PeftWriteOptions, writePeftAdapter } from "../io/peft.js";
import type { Lora } from "../model/lora.js";
import type { Model } from "../model/decoder.js";
import type { LossState } from "../loss/losses.js";
import type { RngState } from "../rng.js";

export interface TrainerState {
  format: "tsdpo-trainer-state";
  version: 1;
  step: number; // optimizer steps done
  epoch: number; // epochs started (0-based index of the current epoch)
  order: number[]; // the current epoch's order of training pairs
  cursor: number; // next position in `order`
  rng: RngState; // after drawing `order`
  lossState: LossState;
  numTokens: number; // cumulative input tokens seen (TRL's num_tokens)
  /** The best evaluation so far by metric_for_best_model (its weights are in best/); absent when nothing ranks them. */
  best?: { step: number; value: number } | null;
  /** Data-parallel ranks (real or emulated) that wrote it; absent: 1. A resume on another count keeps the global batch. */
  world_size?: number;
}

/** Where a checkpoint keeps TR-DPO's current reference. */
export const REF_ADAPTER_DIR = "ref_adapter";
export const REF_MODEL_DIR = "ref_model";

export function checkpointDirName(step: number): string {
  return `step-${step}`;
}

/** Writes `dir` atomically: build in a sibling temp folder, fsync, rename. Replaces an existing `dir`. */
export function writeCheckpoint(
  dir: string,
  loaded: LoadedModel,
  m: Float32Array,
  v: Float32Array,
  state: TrainerState,
  configJson: Record<string, unknown>,
  peft: PeftWriteOptions | null = null,
  /** TR-DPO's moving reference: its adapter (LoRA) or its model (full fine-tuning); null when it never changes. */
  ref: { lora: Lora } | { model: Model } | null = null,
): void {
  const parent = join(dir, "..");
  const tmp = `${dir}.tmp-${process.pid}`;
  try {
    mkdirSync(parent, { recursive: true });
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    // LoRA runs save the adapter (PEFT's format); full fine-tuning saves a Hugging Face model folder.
    if (peft && loaded.model.lora) writePeftAdapter(tmp, loaded.model.lora, peft);
    else exportHf(loaded, tmp);
    if (ref && "lora" in ref) writePeftAdapter(join(tmp, REF_ADAPTER_DIR), ref.lora, peft ?? { baseModel: loaded.path, baseFingerprint: null });
    else if (ref) exportHf({ ...loaded, model: ref.model }, join(tmp, REF_MODEL_DIR));
    writeSafetensors(join(tmp, "optimizer.safetensors"), [
      { name: "exp_avg", shape: [m.length], data: m },
      { name: "exp_avg_sq", shape: [v.length], data: v },
    ], { dtype: "F32", metadata: { format: "tsdpo-optimizer", step: String(state.step) } });
    writeFileAtomic(join(tmp, "trainer_state.json"), JSON.stringify(state) + "\n");
    writeFileAtomic(join(tmp, "train_config.json"), JSON.stringify(configJson, null, 2) + "\n");
    fsyncDir(tmp);
  } catch (e) {
    // Nothing half-written stays behind: the folder under construction goes, and `dir` was never touched.
    rmSync(tmp, { recursive: true, force: true });
    const why = e instanceof TsdpoError ? e.message : `${(e as NodeJS.ErrnoException).code ?? ""} ${(e as Error).message ?? String(e)}`.trim();
    throw new TsdpoError("io", `checkpoint ${dir} could not be written: ${why}`);
  }
  // The new checkpoint is complete: only now does an older folder of the same name (final/, best/) make way for it,
  // by a rename, so that a kill between the two renames leaves it recoverable (removeStaleCheckpointTemps).
  const old = `${dir}.old-${process.pid}`;
  const replacing = existsSync(dir);
  if (replacing) renameSync(dir, old);
  renameSync(tmp, dir);
  fsyncDir(parent);
  if (replacing) rmSync(old, { recursive: true, force: true });
}

/** Deletes all but the newest `keep` step-N checkpoints (save_total_limit); best/ and final/ live elsewhere. */
export function pruneCheckpoints(runDir: string, keep: number): string[] {
  const root = join(runDir, "checkpoints");
  if (!existsSync(root)) return [];
  const steps = readdirSync(root)
    .map((name) => /^step-(\d+)$/.exec(name))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]))
    .sort((a, b) => b - a);
  const removed: string[] = [];
  for (const step of steps.slice(keep)) {
    const dir = join(root, checkpointDirName(step));
    rmSync(dir, { recursive: true, force: true });
    removed.push(dir);
  }
  if (removed.length) fsyncDir(root);
  return removed;
}

/**
 * Deletes the temp folders of checkpoint writes that a killed process left in runDir (final.tmp-<pid>) and
 * runDir/checkpoints (step-N.tmp-<pid>): each is as large as a checkpoint and none will ever be completed.
 */
export function removeStaleCheckpointTemps(runDir: string): void {
  for (const dir of [runDir, join(runDir, "checkpoints")]) {
    if (!existsSync(dir)) continue;
    for (const name of readdirSync(dir)) {
      if (/\.tmp-\d+$/.test(name)) rmSync(join(dir, name), { recursive: true, force: true });
      // X.old-<pid>: the previous X, moved aside while a new X was renamed in. Keep it only if X never arrived.
      const old = /^(.+)\.old-\d+$/.exec(name);
      if (old) {
        if (existsSync(join(dir, old[1]!))) rmSync(join(dir, name), { recursive: true, force: true });
        else renameSync(join(dir, name), join(dir, old[1]!));
      }
    }
  }
}

/** The newest complete checkpoint folder under runDir/checkpoints, or null. Temp folders are ignored. */
export function latestCheckpoint(runDir: string): { dir: string; step: number } | null {
  const root = join(runDir, "checkpoints");
  if (!existsSync(root)) return null;
  let best: { dir: string; step: number } | null = null;
  for (const name of readdirSync(root)) {
    const m = /^step-(\d+)$/.exec(name);
    if (!m) continue;
    const step = Number(m[1]);
    if (!best || step > best.step) best = { dir: join(root, name), step };
  }
  return best;
}

export function readOptimizer(dir: string, n: number): { m: Float32Array; v: Float32Array } {
  const path = join(dir, "optimizer.safetensors");
  const st = readSafetensors(path);
  const m = st.tensors.get("exp_avg");
  const v = st.tensors.get("exp_avg_sq");
  if (!m || !v || m.data.length !== n || v.data.length !== n)
    throw inputError(`${path}: optimizer state does not match the model (${n} parameters); the checkpoint is from another model`);
  return { m: m.data as Float32Array, v: v.data as Float32Array };
}
