// PEFT LoRA adapters on disk, as the PEFT library writes and reads them:
//   adapter_config.json        {"peft_type": "LORA", "r", "lora_alpha", "lora_dropout", "target_modules", …}
//   adapter_model.safetensors  base_model.model.model.layers.{l}.self_attn.q_proj.lora_A.weight  (r, IN)
//                              base_model.model.model.layers.{l}.self_attn.q_proj.lora_B.weight  (OUT, r)
// tsdpo also records the base model's fingerprint (sha256 of its files) in the safetensors metadata, so an
// adapter loaded onto a different base is refused by name.

import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { inputError, unsupportedError } from "../errors.js";
import { type Lora, type LoraTarget, LORA_TARGETS, createLora, targetShape } from "../model/lora.js";
import type { Model } from "../model/decoder.js";
import { writeFileAtomic } from "./atomic.js";
import { readJsonFile } from "./load.js";
import { hfTensorName } from "./names.js";
import { readSafetensors, writeSafetensors } from "./safetensors.js";

export const ADAPTER_CONFIG = "adapter_config.json";
export const ADAPTER_WEIGHTS = "adapter_model.safetensors";

const PEFT_MODULE: Record<LoraTarget, string> = {
  wq: "q_proj", wk: "k_proj", wv: "v_proj", wo: "o_proj", w_gate: "gate_proj", w_up: "up_proj", w_down: "down_proj",
};
const FROM_PEFT_MODULE = new Map(Object.entries(PEFT_MODULE).map(([k, v]) => [v, k as LoraTarget]));

/** PEFT module names ("q_proj", …) to tsdpo targets; unknown names are a config error naming them. */
export function loraTargetsFromPeft(names: readonly string[], where: string): LoraTarget[] {
  const out: LoraTarget[] = [];
  for (const n of names) {
    const t = FROM_PEFT_MODULE.get(n) ?? ((LORA_TARGETS as readonly string[]).includes(n) ? (n as LoraTarget) : null);
    if (!t)
      throw inputError(`${where}: target module "${n}" is not a projection tsdpo can adapt; use any of ${Object.values(PEFT_MODULE).join(", ")}`);
    if (!out.includes(t)) out.push(t);
  }
  return out;
}

export const peftModuleName = (t: LoraTarget): string => PEFT_MODULE[t];

/** The PEFT tensor name of an adapter matrix: the HF weight name under base_model.model, with lora_A/lora_B. */
function peftTensorName(layer: number, t: LoraTarget, which: "A" | "B"): string {
  const hf = hfTensorName(`layers.${layer}.${t}`, "llama"); // model.layers.{l}.self_attn.q_proj.weight (the projections are named alike in every family)
  return `base_model.model.${hf.replace(/\.weight$/, `.lora_${which}.weight`)}`;
}

export interface PeftWriteOptions {
  baseModel: string; // base_model_name_or_path
  baseFingerprint: string | null;
}

export function writePeftAdapter(dir: string, lora: Lora, opts: PeftWriteOptions): void {
  mkdirSync(dir, { recursive: true });
  const config = {
    peft_type: "LORA",
    task_type: "CAUSAL_LM",
    base_model_name_or_path: opts.baseModel,
    r: lora.cfg.r,
    lora_alpha: lora.cfg.alpha,
    lora_dropout: lora.cfg.dropout,
    target_modules: lora.cfg.targets.map((t) => PEFT_MODULE[t]),
    bias: "none",
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    use_rslora: false,
    use_dora: false,
    modules_to_save: null,
    layers_to_transform: null,
    layers_pattern: null,
    rank_pattern: {},
    alpha_pattern: {},
    revision: null,
  };
  writeSafetensors(
    join(dir, ADAPTER_WEIGHTS),
    lora.adapters.flatMap((a) => [
      { name: peftTensorName(a.layer, a.target, "A"), shape: [lora.cfg.r, a.IN], data: Float32Array.from(a.A) },
      { name: peftTensorName(a.layer, a.target, "B"), shape: [a.OUT, lora.cfg.r], data: Float32Array.from(a.B) },
    ]),
    { dtype: "F32", metadata: { format: "pt", ...(opts.baseFingerprint ? { tsdpo_base_fingerprint: opts.baseFingerprint } : {}) } },
  );
  writeFileAtomic(join(dir, ADAPTER_CONFIG), JSON.stringify(config, null, 2) + "\n");
}

export function isPeftAdapter(dir: string): boolean {
  return existsSync(join(dir, ADAPTER_CONFIG));
}

export interface PeftAdapterInfo {
  baseModel: string | null;
  r: number;
  alpha: number;
  dropout: number;
  targets: LoraTarget[];
}

export function readPeftConfig(dir: string): PeftAdapterInfo {
  const path = join(dir, ADAPTER_CONFIG);
  if (!existsSync(path)) throw inputError(`${dir}: no ${ADAPTER_CONFIG}; a PEFT adapter folder holds adapter_config.json and adapter_model.safetensors`);
  const j = readJsonFile(path) as Record<string, unknown>;
  if (j === null || typeof j !== "object") throw inputError(`${path}: expected a JSON object`);
  if (j.peft_type !== "LORA") throw unsupportedError(`${path}: peft_type is ${JSON.stringify(j.peft_type)}; tsdpo loads LORA adapters`);
  for (const flag of ["use_dora", "use_rslora"] as const)
    if (j[flag] === true) throw unsupportedError(`${path}: ${flag} is true; tsdpo loads plain LoRA adapters`);
  const num = (key: string): number => {
    const v = j[key];
    if (typeof v !== "number" || !Number.isFinite(v)) throw inputError(`${path}: "${key}" must be a number, got ${JSON.stringify(v)}`);
    return v;
  };
  const r = num("r");
  if (!Number.isInteger(r) || r < 1) throw inputError(`${path}: "r" must be a whole number ≥ 1, got ${r}`);
  let modules = j.target_modules;
  if (typeof modules === "string") modules = [modules];
  if (!Array.isArray(modules) || modules.some((m) => typeof m !== "string") || modules.length === 0)
    throw inputError(`${path}: "target_modules" must be a non-empty list of module names such as ["q_proj", "v_proj"]`);
  const rank = j.rank_pattern, alpha = j.alpha_pattern;
  if ((rank && typeof rank === "object" && Object.keys(rank).length) || (alpha && typeof alpha === "object" && Object.keys(alpha).length))
    throw unsupportedError(`${path}: per-module rank_pattern/alpha_pattern is not supported`);
  return {
    baseModel: typeof j.base_model_name_or_path === "string" ? j.base_model_name_or_path : null,
    r,
    alpha: num("lora_alpha"),
    dropout: typeof j.lora_dropout === "number" ? j.lora_dropout : 0,
    targets: loraTargetsFromPeft(modules as string[], path),
  };
}

/**
 * Loads a PEFT adapter onto `model` (sets model.lora). Checks that every targeted module of every layer has both
 * matrices with the right shapes, that no tensor is left over, and, when the adapter records it, that the base
 * model is the one it was trained on.
 */
export function loadPeftAdapter(dir: string, model: Model, baseFingerprint: string | null): Lora {
  const info = readPeftConfig(dir);
  const path = join(dir, ADAPTER_WEIGHTS);
  if (!existsSync(path)) throw inputError(`${dir}: no ${ADAPTER_WEIGHTS}`);
  const st = readSafetensors(path);
  const recorded = st.metadata.tsdpo_base_fingerprint;
  if (recorded && baseFingerprint && recorded !== baseFingerprint)
    throw inputError(
      `${dir}: this adapter was trained on a different base model (fingerprint ${recorded.slice(0, 12)}…, ` +
        `base ${info.baseModel ?? "unknown"}); the model given has fingerprint ${baseFingerprint.slice(0, 12)}…`,
    );
  const lora = createLora(model, { r: info.r, alpha: info.alpha, dropout: info.dropout, targets: info.targets }, 0);
  const used = new Set<string>();
  for (const a of lora.adapters) {
    for (const which of ["A", "B"] as const) {
      const name = peftTensorName(a.layer, a.target, which);
      const t = st.tensors.get(name);
      if (!t)
        throw inputError(
          `${path}: tensor ${name} is missing: adapter_config.json targets ${peftModuleName(a.target)} but the weights have no ` +
            `lora_${which} for layer ${a.layer}`,
        );
      const [OUT, IN] = targetShape(model.cfg, a.target);
      const want = which === "A" ? [info.r, IN] : [OUT, info.r];
      if (t.shape.length !== 2 || t.shape[0] !== want[0] || t.shape[1] !== want[1])
        throw inputError(
          `${path}: tensor ${name} has shape [${t.shape.join(", ")}] but r=${info.r} on this base model needs [${want.join(", ")}]; ` +
            `the adapter's rank or its base model does not match`,
        );
      (which === "A" ? a.A : a.B).set(t.data as Float32Array);
      used.add(name);
    }
  }
  for (const name of st.tensors.keys())
    if (!used.has(name)) {
      const m = /layers\.(\d+)\..*\.(\w+_proj)\.lora_[AB]/.exec(name);
      throw inputError(
        m && Number(m[1]) >= model.cfg.L
          ? `${path}: tensor ${name} is for layer ${m[1]} but the base model has ${model.cfg.L} layers; wrong base model`
          : `${path}: tensor ${name} does not belong to a module listed in target_modules (${info.targets.map(peftModuleName).join(", ")})`,
      );
    }
  model.lora = lora;
  return lora;
}
