// PEFT LoRA adapters on disk, as the PEFT library writes and reads them:
//   adapter_config.json        {"peft_type": "LORA", "r", "lora_alpha", "lora_dropout", "target_modules", …}
//   adapter_model.safetensors  base_model.model.<module>.lora_A.weight  (r, IN)
//                              base_model.model.<module>.lora_B.weight  (OUT, r)
// where <module> is the module's path in the HF model: model.layers.{l}.self_attn.q_proj (Llama family),
// model.layers.{l}.self_attn.qkv_proj (Phi-3), transformer.h.{l}.attn.c_attn (GPT2LMHeadModel). PEFT adapts a fused
// module (Phi-3's qkv_proj and gate_up_proj, GPT-2's c_attn) like any other, so its adapter is one A and one B whose
// OUT is the fused output: q | k | v rows, gate | up rows (tsdpo's LoraAdapter with several parts, model/lora.ts).
// GPT-2's modules are Conv1D, weights stored [in, out]: PEFT still makes lora_A (r, in) and lora_B (out, r) (its
// in/out features come from the Conv1D weight's shape) and records fan_in_fan_out: true, which only transposes B·A
// when it merges the update into the Conv1D weight.
// tsdpo also records the base model's fingerprint (sha256 of its files) in the safetensors metadata, so an
// adapter loaded onto a different base is refused by name.

import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { inputError, unsupportedError } from "../errors.js";
import { type LlamaConfig, decoderOptions } from "../model/config.js";
import { type Lora, type LoraAdapter, type LoraTarget, LORA_TARGETS, allLoraTargets, createLora } from "../model/lora.js";
import type { Model } from "../model/decoder.js";
import { writeFileAtomic } from "./atomic.js";
import { readJsonFile } from "./load.js";
import { readSafetensors, writeSafetensors } from "./safetensors.js";

export const ADAPTER_CONFIG = "adapter_config.json";
export const ADAPTER_WEIGHTS = "adapter_model.safetensors";

/** A module of a decoder layer that PEFT can adapt. */
interface PeftModule {
  name: string; // its own name, as target_modules lists it: q_proj, qkv_proj, c_attn, …
  parent: string; // the layer's submodule that holds it: self_attn, mlp, attn
  targets: LoraTarget[]; // tsdpo's projections in it; a fused module's output rows stack them in this order
}

const LLAMA_MODULES: PeftModule[] = [
  { name: "q_proj", parent: "self_attn", targets: ["wq"] },
  { name: "k_proj", parent: "self_attn", targets: ["wk"] },
  { name: "v_proj", parent: "self_attn", targets: ["wv"] },
  { name: "o_proj", parent: "self_attn", targets: ["wo"] },
  { name: "gate_proj", parent: "mlp", targets: ["w_gate"] },
  { name: "up_proj", parent: "mlp", targets: ["w_up"] },
  { name: "down_proj", parent: "mlp", targets: ["w_down"] },
];
// Phi3Attention / Phi3MLP (io/phi3.ts splits these weights the same way)
const PHI3_MODULES: PeftModule[] = [
  { name: "qkv_proj", parent: "self_attn", targets: ["wq", "wk", "wv"] },
  { name: "o_proj", parent: "self_attn", targets: ["wo"] },
  { name: "gate_up_proj", parent: "mlp", targets: ["w_gate", "w_up"] },
  { name: "down_proj", parent: "mlp", targets: ["w_down"] },
];
// GPT2Attention / GPT2MLP (io/gpt2.ts): two modules are called c_proj
const GPT2_MODULES: PeftModule[] = [
  { name: "c_attn", parent: "attn", targets: ["wq", "wk", "wv"] },
  { name: "c_proj", parent: "attn", targets: ["wo"] },
  { name: "c_fc", parent: "mlp", targets: ["w_up"] },
  { name: "c_proj", parent: "mlp", targets: ["w_down"] },
];

/** The adaptable modules of `cfg`'s family and the path of layer l (PEFT's keys, without base_model.model.). */
interface PeftLayout {
  label: string;
  layer: (l: number) => string;
  modules: PeftModule[];
  fanInFanOut: boolean; // Conv1D weights (GPT-2)
}

function peftLayout(cfg: LlamaConfig): PeftLayout {
  switch (cfg.family) {
    case "phi3":
      return { label: "Phi-3", layer: (l) => `model.layers.${l}`, modules: PHI3_MODULES, fanInFanOut: false };
    case "gpt2":
      return { label: "GPT-2", layer: (l) => `transformer.h.${l}`, modules: GPT2_MODULES, fanInFanOut: true };
    default: {
      const gated = decoderOptions(cfg).mlp === "gated";
      return { label: cfg.family, layer: (l) => `model.layers.${l}`, modules: LLAMA_MODULES.filter((m) => gated || m.name !== "gate_proj"), fanInFanOut: false };
    }
  }
}

const modulePath = (lay: PeftLayout, l: number, m: PeftModule): string => `${lay.layer(l)}.${m.parent}.${m.name}`;

/** How target_modules can name a module unambiguously: its name, or parent.name where two share the name (GPT-2's c_proj). */
const shortName = (lay: PeftLayout, m: PeftModule): string =>
  lay.modules.filter((x) => x.name === m.name).length > 1 ? `${m.parent}.${m.name}` : m.name;

const ATTENTION: readonly LoraTarget[] = ["wq", "wk", "wv", "wo"];

/**
 * tsdpo's targets for PEFT's target_modules on a model of `cfg`, by PEFT's rules: an entry of a list names a module by
 * its name or a dotted tail of its path ("c_proj" is both of GPT-2's, "attn.c_proj" the attention's), a string is a
 * regular expression over the whole path, and "all-linear" is every projection. tsdpo's own names (wq, …) are
 * accepted too. null (the training config's default): the attention projections, q, k, v and o, however the family
 * groups them into modules. A name of another family's module gets an error that says what this model calls it.
 */
export function loraTargetsFromPeft(spec: readonly string[] | string | null, cfg: LlamaConfig, where: string): LoraTarget[] {
  const lay = peftLayout(cfg);
  const picked = new Set<LoraTarget>();
  const pick = (m: PeftModule): void => m.targets.forEach((t) => picked.add(t));
  const allLinear = (s: string): boolean => s.toLowerCase() === "all-linear";
  if (spec === null) lay.modules.filter((m) => m.targets.every((t) => ATTENTION.includes(t))).forEach(pick);
  else if (typeof spec === "string" && !allLinear(spec)) {
    let re: RegExp;
    try {
      re = new RegExp(`^(?:${spec})$`);
    } catch (e) {
      throw inputError(`${where}: target_modules ${JSON.stringify(spec)} is not a valid regular expression (${(e as Error).message})`);
    }
    for (const m of lay.modules) for (let l = 0; l < cfg.L; l++) if (re.test(modulePath(lay, l, m))) pick(m);
    if (picked.size === 0)
      throw inputError(`${where}: target_modules ${JSON.stringify(spec)} matches no module of this ${lay.label} model (such as ${modulePath(lay, 0, lay.modules[0]!)})`);
  } else
    for (const n of typeof spec === "string" ? [spec] : spec) {
      if (allLinear(n)) {
        allLoraTargets(cfg).forEach((t) => picked.add(t));
        continue;
      }
      if ((LORA_TARGETS as readonly string[]).includes(n)) {
        picked.add(n as LoraTarget);
        continue;
      }
      const hits = lay.modules.filter((m) => Array.from({ length: cfg.L }, (_, l) => modulePath(lay, l, m)).some((p) => p === n || p.endsWith(`.${n}`)));
      if (!hits.length)
        throw inputError(
          `${where}: target module "${n}" is not a projection tsdpo can adapt on this ${lay.label} model${otherFamilyHint(n, lay)}; ` +
            `its modules are ${[...new Set(lay.modules.map((m) => shortName(lay, m)))].join(", ")} (or "all-linear" for all)`,
        );
      hits.forEach(pick);
    }
  return LORA_TARGETS.filter((t) => picked.has(t));
}

/** For a module name of another family's layout: what this model calls those projections (q_proj on Phi-3: qkv_proj). */
function otherFamilyHint(n: string, lay: PeftLayout): string {
  const theirs = [LLAMA_MODULES, PHI3_MODULES, GPT2_MODULES].flat().filter((m) => m.name === n || `${m.parent}.${m.name}` === n);
  const targets = new Set(theirs.flatMap((m) => m.targets));
  if (!targets.size) return "";
  const ours = lay.modules.filter((m) => m.targets.some((t) => targets.has(t)));
  if (!ours.length) return targets.has("w_gate") ? " (it has no gated MLP)" : "";
  const use = `use ${ours.map((m) => `"${shortName(lay, m)}"`).join(", ")}`;
  const fused = ours.filter((m) => m.targets.length > 1 && !theirs.some((t) => t.targets.length === m.targets.length));
  if (fused.length)
    return ` (it computes ${fused.map((m) => `${andList(m.targets.map(projectionLetter))} in one fused module, ${m.name},`).join(" and ")} which PEFT ` +
      `adapts as a single module with one shared A: ${use})`;
  return theirs.some((m) => m.targets.length > 1) ? ` (it keeps these projections apart: ${use})` : ` (${use})`;
}

const andList = (xs: string[]): string => (xs.length < 2 ? xs.join("") : `${xs.slice(0, -1).join(", ")} and ${xs[xs.length - 1]}`);
const projectionLetter = (t: LoraTarget): string => ({ wq: "q", wk: "k", wv: "v", wo: "o", w_gate: "gate", w_up: "up", w_down: "down" })[t];

/** The module an adapter belongs to (its targets are exactly a module's, as createLora groups them). */
function moduleOf(lay: PeftLayout, a: LoraAdapter): PeftModule {
  const m = lay.modules.find((x) => x.targets.join() === a.targets.join());
  if (!m) throw new Error(`internal: no ${lay.label} PEFT module holds exactly ${a.targets.join(", ")}`);
  return m;
}

/** The PEFT tensor name of an adapter matrix. */
function peftTensorName(lay: PeftLayout, a: LoraAdapter, which: "A" | "B"): string {
  return `base_model.model.${modulePath(lay, a.layer, moduleOf(lay, a))}.lora_${which}.weight`;
}

/** target_modules as PEFT's config would list the modules `lora` adapts: each by its name, or parent.name where needed. */
function targetModuleNames(lay: PeftLayout, lora: Lora): string[] {
  const adapted = lay.modules.filter((m) => m.targets.every((t) => lora.cfg.targets.includes(t)));
  const names = adapted.map((m) => (adapted.filter((x) => x.name === m.name).length === lay.modules.filter((x) => x.name === m.name).length ? m.name : `${m.parent}.${m.name}`));
  return [...new Set(names)];
}

export interface PeftWriteOptions {
  baseModel: string; // base_model_name_or_path
  baseFingerprint: string | null;
}

export function writePeftAdapter(dir: string, lora: Lora, opts: PeftWriteOptions): void {
  const lay = peftLayout(lora.base);
  mkdirSync(dir, { recursive: true });
  const config = {
    peft_type: "LORA",
    task_type: "CAUSAL_LM",
    base_model_name_or_path: opts.baseModel,
    r: lora.cfg.r,
    lora_alpha: lora.cfg.alpha,
    lora_dropout: lora.cfg.dropout,
    target_modules: targetModuleNames(lay, lora),
    bias: "none",
    fan_in_fan_out: lay.fanInFanOut,
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
      { name: peftTensorName(lay, a, "A"), shape: [lora.cfg.r, a.IN], data: Float32Array.from(a.A) },
      { name: peftTensorName(lay, a, "B"), shape: [a.OUT, lora.cfg.r], data: Float32Array.from(a.B) },
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
  /** target_modules as written: module names, or one regular expression (PEFT's string form) */
  targetModules: string[] | string;
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
  const modules = j.target_modules;
  if (!(typeof modules === "string" && modules !== "") && (!Array.isArray(modules) || modules.some((m) => typeof m !== "string") || modules.length === 0))
    throw inputError(`${path}: "target_modules" must be a non-empty list of module names such as ["q_proj", "v_proj"]`);
  const rank = j.rank_pattern, alpha = j.alpha_pattern;
  if ((rank && typeof rank === "object" && Object.keys(rank).length) || (alpha && typeof alpha === "object" && Object.keys(alpha).length))
    throw unsupportedError(`${path}: per-module rank_pattern/alpha_pattern is not supported`);
  return {
    baseModel: typeof j.base_model_name_or_path === "string" ? j.base_model_name_or_path : null,
    r,
    alpha: num("lora_alpha"),
    dropout: typeof j.lora_dropout === "number" ? j.lora_dropout : 0,
    targetModules: modules as string[] | string,
  };
}

/**
 * Loads a PEFT adapter onto `model` (sets model.lora). Checks that every targeted module of every layer has both
 * matrices with the right shapes, that no tensor is left over, and, when the adapter records it, that the base
 * model is the one it was trained on. fan_in_fan_out is not read: PEFT sets it from the module type (Conv1D or
 * Linear), and the saved A and B have the same shapes either way.
 */
export function loadPeftAdapter(dir: string, model: Model, baseFingerprint: string | null): Lora {
  const info = readPeftConfig(dir);
  const lay = peftLayout(model.cfg);
  const path = join(dir, ADAPTER_WEIGHTS);
  if (!existsSync(path)) throw inputError(`${dir}: no ${ADAPTER_WEIGHTS}`);
  const st = readSafetensors(path);
  const recorded = st.metadata.tsdpo_base_fingerprint;
  if (recorded && baseFingerprint && recorded !== baseFingerprint)
    throw inputError(
      `${dir}: this adapter was trained on a different base model (fingerprint ${recorded.slice(0, 12)}…, ` +
        `base ${info.baseModel ?? "unknown"}); the model given has fingerprint ${baseFingerprint.slice(0, 12)}…`,
    );
  const targets = loraTargetsFromPeft(info.targetModules, model.cfg, `${join(dir, ADAPTER_CONFIG)}: target_modules`);
  const lora = createLora(model, { r: info.r, alpha: info.alpha, dropout: info.dropout, targets }, 0);
  const used = new Set<string>();
  for (const a of lora.adapters) {
    for (const which of ["A", "B"] as const) {
      const name = peftTensorName(lay, a, which);
      const t = st.tensors.get(name);
      if (!t)
        throw inputError(
          `${path}: tensor ${name} is missing: adapter_config.json targets ${moduleOf(lay, a).name} but the weights have no ` +
            `lora_${which} for layer ${a.layer}`,
        );
      const want = which === "A" ? [info.r, a.IN] : [a.OUT, info.r];
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
      const m = /\.(?:layers|h)\.(\d+)\./.exec(name);
      throw inputError(
        m && Number(m[1]) >= model.cfg.L
          ? `${path}: tensor ${name} is for layer ${m[1]} but the base model has ${model.cfg.L} layers; wrong base model`
          : `${path}: tensor ${name} does not belong to a module listed in target_modules (${targetModuleNames(lay, lora).join(", ")})`,
      );
    }
  model.lora = lora;
  return lora;
}
