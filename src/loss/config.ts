// The loss configuration: a discriminated union on `kind`, with TRL's option names (DPOConfig / CPOConfig /
// ORPOConfig) so a TRL recipe carries over key for key. The JSON form is TRL's flat form: `loss_type` picks the
// kind ("simpo" and "orpo" are their own trainers in TRL and do not combine with the DPO family), everything
// else is a typed option. Unknown keys and wrong types are config errors naming the key.

import { configError } from "../errors.js";

/** Losses of TRL's DPOTrainer (plus `sigmoid_norm`), combinable with `loss_weights`. */
export const PAIR_LOSS_TYPES = [
  "sigmoid", // DPO, Rafailov et al. 2023 Eq. 7; with label_smoothing > 0 it is cDPO (Mitchell 2023)
  "robust", // rDPO, Chowdhury et al. 2024 (arXiv:2403.00409)
  "hinge", // SLiC / RSO hinge on the implicit reward margin
  "ipo", // IPO, Azar et al. 2023 Eq. 17, on per-token-averaged log-ratios like TRL
  "sigmoid_norm", // length-normalised DPO (Tülu 3): DPO on per-token-averaged log-ratios
  "exo_pair", // EXO, Ji et al. 2024 Eq. 16 with K = 2
  "nca_pair", // NCA, Chen et al. 2024
  "bco_pair", // BCO, Jung et al. 2024, with a running reward mean δ
  "sppo_hard", // SPPO, Wu et al. 2024 Eq. 4.7 with hard probabilities
  "aot", // AOT paired, Melnyk et al. 2024: sorted log-ratio margins across the batch
  "aot_pair", // AOT unpaired (TRL ≥ 1.0 calls it "aot_unpaired"): chosen and rejected log-ratios sorted apart
  "apo_zero", // APO-zero, D'Oosterlinck et al. 2024 Eq. 7
  "apo_down", // APO-down, same paper Eq. 8
  "discopop", // DiscoPOP / LRML, Chris Lu et al. 2024 Eq. 5
  "sft", // NLL of the chosen completions, per token over the batch
] as const;
export type PairLossType = (typeof PAIR_LOSS_TYPES)[number];

/** Names accepted in JSON for a loss type, mapped to tsdpo's name. */
const PAIR_LOSS_ALIASES: Readonly<Record<string, PairLossType>> = { aot_unpaired: "aot_pair" };

export const F_DIVERGENCE_TYPES = ["reverse_kl", "forward_kl", "js_divergence", "alpha_divergence"] as const;
export type FDivergenceType = (typeof F_DIVERGENCE_TYPES)[number];

/** DPO family (TRL's DPOTrainer). Every term in `loss_type` sees the same options. */
export interface DpoLossConfig {
  kind: "dpo";
  /** Terms summed as Σ_k loss_weights[k] · mean_i(term_k(i)) (TRL's multi-loss, e.g. MPO). */
  loss_type: PairLossType[];
  /** One weight per term; TRL's default is 1.0 each. */
  loss_weights: number[];
  /** β: strength of the KL anchor to the reference; for IPO it is τ. TRL default 0.1. */
  beta: number;
  /** ε: flip probability for cDPO (sigmoid), robust, aot, aot_pair; EXO's ε (0 means TRL's 1e-3). */
  label_smoothing: number;
  /** DiscoPOP temperature τ; the paper recommends 0.05. */
  discopop_tau: number;
  /** Which f-divergence turns log-ratios into scores (f-DPO, Wang et al. 2023); reverse_kl is plain DPO. */
  f_divergence_type: FDivergenceType;
  /** α of the α-divergence; TRL ≥ 1.0 default 0.5 (α → 1 is reverse KL, α = 0 is forward KL). */
  f_alpha_divergence_coef: number;
  /** RPO (Pang et al. 2024): adds rpo_alpha · NLL(chosen). null = off. Same as appending "sft" with that weight. */
  rpo_alpha: number | null;
  /** WPO (Zhou et al. 2024 Eq. 2): weight each pair by the policy's own length-normalised probabilities. */
  use_weighting: boolean;
  /** LD-DPO (Liu et al. 2024): weight of tokens past the shared length; null = plain sums. Applied by reduceLogps. */
  ld_alpha: number | null;
}

/** SimPO (Meng et al. 2024, arXiv:2405.14734), as TRL's CPOTrainer computes it: reference-free, per-token-averaged. */
export interface SimpoLossConfig {
  kind: "simpo";
  /** β of SimPO; CPOConfig's default 0.1 (the paper tunes 2.0–10 — set it explicitly). */
  beta: number;
  /** γ: target reward margin; CPOConfig default 0.5. The margin enters as γ/β inside the sigmoid. */
  simpo_gamma: number;
  /** ε as in cDPO; CPO applies it to SimPO too. */
  label_smoothing: number;
  /** Weight of the chosen NLL (CPO-SimPO). 0 by default because TRL's docs say pure SimPO needs cpo_alpha=0,
   *  although CPOConfig's own default is 1.0. */
  cpo_alpha: number;
}

/** ORPO (Hong et al. 2024, arXiv:2403.07691): NLL(chosen) + λ · odds-ratio term; λ is TRL's `beta`, default 0.1. */
export interface OrpoLossConfig {
  kind: "orpo";
  beta: number;
}

/**
 * KTO (Ethayarajh et al. 2024, arXiv:2402.01306) as TRL's KTOTrainer: unpaired rows, each one completion labelled
 * desirable or undesirable, and a KL reference point z0 estimated from mismatched prompt–completion pairs. Also TRL's
 * unpaired APO-zero (`apo_zero_unpaired`), which has no z0.
 */
export interface KtoLossConfig {
  kind: "kto";
  loss_type: "kto" | "apo_zero_unpaired";
  /** β, as in DPO: the strength of the pull towards the reference. KTOConfig's default 0.1. */
  beta: number;
  /** λ_D and λ_U: weights of the desirable and undesirable rows' losses, to balance unequal counts (KTO Eq. 8 asks
   *  for λ_D·n_D / (λ_U·n_U) in [1, 4/3]). KTOConfig's defaults 1.0 each. */
  desirable_weight: number;
  undesirable_weight: number;
  /**
   * How z0 is estimated from the mismatched pairs (each row's prompt with another row's completion):
   * "batch": the mean of their log-ratios in this micro-batch, as TRL (which rotates the completions by one within
   * the batch), so z0 depends on the rest of the batch and a batch of one has nothing to mismatch;
   * "running": each row's partner is fixed when the data loads, and z0 is a bias-corrected exponential moving
   * average of the micro-batches' means, so a batch of one works. Its state is checkpointed.
   */
  kto_kl: "batch" | "running";
  /** The running average's decay per micro-batch (kto_kl "running"): about 1/(1 − decay) micro-batches count. */
  kto_kl_decay: number;
}

export type LossConfig = DpoLossConfig | SimpoLossConfig | OrpoLossConfig | KtoLossConfig;

export const DPO_DEFAULTS: Readonly<Omit<DpoLossConfig, "loss_type" | "loss_weights">> = {
  kind: "dpo",
  beta: 0.1,
  label_smoothing: 0,
  discopop_tau: 0.05,
  f_divergence_type: "reverse_kl",
  f_alpha_divergence_coef: 0.5,
  rpo_alpha: null,
  use_weighting: false,
  ld_alpha: null,
};
export const SIMPO_DEFAULTS: Readonly<SimpoLossConfig> = {
  kind: "simpo",
  beta: 0.1,
  simpo_gamma: 0.5,
  label_smoothing: 0,
  cpo_alpha: 0,
};
export const ORPO_DEFAULTS: Readonly<OrpoLossConfig> = { kind: "orpo", beta: 0.1 };
export const KTO_DEFAULTS: Readonly<Omit<KtoLossConfig, "loss_type">> = {
  kind: "kto",
  beta: 0.1,
  desirable_weight: 1,
  undesirable_weight: 1,
  kto_kl: "batch", // TRL's estimate
  kto_kl_decay: 0.9, // ~10 micro-batches: with a batch of one, ten mismatched pairs per estimate
};
export const KTO_LOSS_TYPES = ["kto", "apo_zero_unpaired"] as const;

/** Plain DPO with TRL's defaults. */
export function defaultLossConfig(): DpoLossConfig {
  return { ...DPO_DEFAULTS, loss_type: ["sigmoid"], loss_weights: [1] };
}

/** Whether the trainer must produce reference log-probs for this config. */
export function needsReference(cfg: LossConfig): boolean {
  switch (cfg.kind) {
    case "dpo":
      return cfg.loss_type.some((t) => t !== "sft");
    case "simpo":
    case "orpo":
      return false;
    case "kto":
      return true;
    default:
      return assertNever(cfg);
  }
}

/** Whether the loss trains on unpaired rows (prompt, completion, label) rather than preference pairs. */
export function isUnpaired(cfg: LossConfig): cfg is KtoLossConfig {
  return cfg.kind === "kto";
}

/** Whether an unpaired loss estimates the KL reference point z0, so that every row needs a mismatched partner. */
export function usesKl(cfg: LossConfig): boolean {
  return cfg.kind === "kto" && cfg.loss_type === "kto";
}

/** KTO with TRL's estimate of z0, from the rest of the micro-batch (kto_kl "batch"). */
export function klInBatch(cfg: LossConfig): boolean {
  return usesKl(cfg) && (cfg as KtoLossConfig).kto_kl === "batch";
}

export function assertNever(x: never): never {
  throw new Error(`unhandled loss config ${JSON.stringify(x)}`);
}

// ---------------------------------------------------------------------------------------------------------------
// JSON parsing

const DPO_KEYS = [
  "loss_type",
  "loss_weights",
  "beta",
  "label_smoothing",
  "discopop_tau",
  "f_divergence_type",
  "f_alpha_divergence_coef",
  "rpo_alpha",
  "use_weighting",
  "ld_alpha",
] as const;
const SIMPO_KEYS = ["loss_type", "beta", "simpo_gamma", "label_smoothing", "cpo_alpha"] as const;
const ORPO_KEYS = ["loss_type", "beta"] as const;
const KTO_KEYS = ["loss_type", "beta", "desirable_weight", "undesirable_weight", "kto_kl", "kto_kl_decay"] as const;
const APO_UNPAIRED_KEYS = ["loss_type", "beta", "desirable_weight", "undesirable_weight"] as const;
/** Every key any loss accepts: a training config passes these through to lossConfigFromJson. */
export const LOSS_KEYS: readonly string[] = [...new Set<string>([...DPO_KEYS, ...SIMPO_KEYS, ...ORPO_KEYS, ...KTO_KEYS])];

const ALL_LOSS_NAMES = [...PAIR_LOSS_TYPES, ...Object.keys(PAIR_LOSS_ALIASES), "simpo", "orpo", ...KTO_LOSS_TYPES];

/**
 * Parses the loss section of a config file. `where` names the file and section for error messages, e.g.
 * `"run.json: loss"`. Accepts TRL's spelling: `loss_type` is a string or a list of strings. A missing key takes
 * its default. The result is fully resolved (every option present), so it can be written back with
 * lossConfigToJson and read again unchanged.
 */
export function lossConfigFromJson(obj: unknown, where: string): LossConfig {
  if (obj === null || typeof obj !== "object" || Array.isArray(obj))
    throw configError(`${where}: expected an object like {"loss_type": "sigmoid", "beta": 0.1}, got ${describe(obj)}`);
  const o = obj as Record<string, unknown>;
  const types = parseLossTypes(o.loss_type, where);
  const single = types.length === 1 ? types[0]! : null;

  const kto = types.find((t): t is KtoLossConfig["loss_type"] => (KTO_LOSS_TYPES as readonly string[]).includes(t));
  if (kto !== undefined) {
    if (single === null)
      throw configError(
        `${where}.loss_type: "${kto}" trains on unpaired rows and cannot be combined with other losses ` +
          `(got ${JSON.stringify(o.loss_type)}); use it alone`,
      );
    checkKeys(o, kto === "kto" ? KTO_KEYS : APO_UNPAIRED_KEYS, where, kto);
    const klMode = o.kto_kl ?? KTO_DEFAULTS.kto_kl;
    if (klMode !== "batch" && klMode !== "running")
      throw configError(`${where}.kto_kl: expected "batch" (TRL's in-batch estimate) or "running" (a moving average that works with a batch of one), got ${describe(klMode)}`);
    return {
      kind: "kto",
      loss_type: kto,
      beta: num(o, "beta", where, KTO_DEFAULTS.beta, positive),
      desirable_weight: num(o, "desirable_weight", where, KTO_DEFAULTS.desirable_weight, positive),
      undesirable_weight: num(o, "undesirable_weight", where, KTO_DEFAULTS.undesirable_weight, positive),
      kto_kl: klMode,
      kto_kl_decay: num(o, "kto_kl_decay", where, KTO_DEFAULTS.kto_kl_decay, unitIntervalOpen),
    };
  }

  if (single === "simpo" || single === "orpo" || types.includes("simpo") || types.includes("orpo")) {
    if (single === null)
      throw configError(
        `${where}.loss_type: "simpo" and "orpo" are reference-free trainers of their own and cannot be combined ` +
          `with other losses (got ${JSON.stringify(o.loss_type)}); use one of them alone` +
          `${types.includes("simpo") ? ' (for CPO-SimPO set "cpo_alpha")' : ""}`,
      );
    if (single === "simpo") {
      checkKeys(o, SIMPO_KEYS, where, "simpo");
      const cfg: SimpoLossConfig = {
        kind: "simpo",
        beta: num(o, "beta", where, SIMPO_DEFAULTS.beta, positive),
        simpo_gamma: num(o, "simpo_gamma", where, SIMPO_DEFAULTS.simpo_gamma, finite),
        label_smoothing: num(o, "label_smoothing", where, SIMPO_DEFAULTS.label_smoothing, probabilityBelowHalf),
        cpo_alpha: num(o, "cpo_alpha", where, SIMPO_DEFAULTS.cpo_alpha, nonNegative),
      };
      return cfg;
    }
    checkKeys(o, ORPO_KEYS, where, "orpo");
    return { kind: "orpo", beta: num(o, "beta", where, ORPO_DEFAULTS.beta, positive) };
  }

  checkKeys(o, DPO_KEYS, where, "the DPO family");
  const pairTypes = types as PairLossType[];
  let weights: number[];
  if (o.loss_weights === undefined || o.loss_weights === null) weights = pairTypes.map(() => 1);
  else {
    if (!Array.isArray(o.loss_weights) || o.loss_weights.some((w) => typeof w !== "number" || !Number.isFinite(w)))
      throw configError(`${where}.loss_weights: expected a list of finite numbers, got ${describe(o.loss_weights)}`);
    weights = (o.loss_weights as number[]).slice();
    if (weights.length !== pairTypes.length)
      throw configError(
        `${where}.loss_weights: has ${weights.length} weights but loss_type has ${pairTypes.length} entries ` +
          `(${JSON.stringify(pairTypes)}); give one weight per loss type`,
      );
  }
  const fdiv = o.f_divergence_type ?? DPO_DEFAULTS.f_divergence_type;
  if (typeof fdiv !== "string" || !(F_DIVERGENCE_TYPES as readonly string[]).includes(fdiv))
    throw configError(`${where}.f_divergence_type: expected one of ${F_DIVERGENCE_TYPES.join(", ")}, got ${describe(fdiv)}`);
  const useWeighting = o.use_weighting ?? DPO_DEFAULTS.use_weighting;
  if (typeof useWeighting !== "boolean")
    throw configError(`${where}.use_weighting: expected true or false, got ${describe(useWeighting)}`);

  const cfg: DpoLossConfig = {
    kind: "dpo",
    loss_type: pairTypes,
    loss_weights: weights,
    beta: num(o, "beta", where, DPO_DEFAULTS.beta, positive),
    label_smoothing: num(o, "label_smoothing", where, DPO_DEFAULTS.label_smoothing, probabilityBelowHalf),
    discopop_tau: num(o, "discopop_tau", where, DPO_DEFAULTS.discopop_tau, positive),
    f_divergence_type: fdiv as FDivergenceType,
    f_alpha_divergence_coef: num(o, "f_alpha_divergence_coef", where, DPO_DEFAULTS.f_alpha_divergence_coef, finite),
    rpo_alpha: nullableNum(o, "rpo_alpha", where, nonNegative),
    use_weighting: useWeighting,
    ld_alpha: nullableNum(o, "ld_alpha", where, unitInterval),
  };
  return cfg;
}

/** The JSON form of a resolved config (TRL's flat keys), for the run folder and checkpoints. */
export function lossConfigToJson(cfg: LossConfig): Record<string, unknown> {
  switch (cfg.kind) {
    case "dpo": {
      const { kind: _kind, ...rest } = cfg;
      return { ...rest, loss_type: [...cfg.loss_type], loss_weights: [...cfg.loss_weights] };
    }
    case "simpo": {
      const { kind: _kind, ...rest } = cfg;
      return { loss_type: "simpo", ...rest };
    }
    case "orpo":
      return { loss_type: "orpo", beta: cfg.beta };
    case "kto": {
      const { kind: _kind, ...rest } = cfg;
      if (cfg.loss_type === "kto") return rest;
      const { kto_kl: _kl, kto_kl_decay: _decay, ...apo } = rest;
      return apo;
    }
    default:
      return assertNever(cfg);
  }
}

function parseLossTypes(v: unknown, where: string): (PairLossType | "simpo" | "orpo" | KtoLossConfig["loss_type"])[] {
  if (v === undefined || v === null) return ["sigmoid"];
  const list = typeof v === "string" ? [v] : v;
  if (!Array.isArray(list) || list.length === 0 || list.some((t) => typeof t !== "string"))
    throw configError(
      `${where}.loss_type: expected a loss name or a non-empty list of names, got ${describe(v)}; ` +
        `known: ${ALL_LOSS_NAMES.join(", ")}`,
    );
  return (list as string[]).map((t) => {
    if (t === "simpo" || t === "orpo" || t === "kto" || t === "apo_zero_unpaired") return t;
    const name = PAIR_LOSS_ALIASES[t] ?? t;
    if (!(PAIR_LOSS_TYPES as readonly string[]).includes(name)) {
      // "dpo" is the name people reach for first; TRL (and tsdpo) call the DPO paper's loss "sigmoid".
      const hint = t.toLowerCase() === "dpo" ? `; DPO's loss (the paper's) is "sigmoid", the default` : "";
      throw configError(`${where}.loss_type: unknown loss "${t}"${hint}; known: ${ALL_LOSS_NAMES.join(", ")}`);
    }
    return name as PairLossType;
  });
}

function checkKeys(o: Record<string, unknown>, allowed: readonly string[], where: string, what: string): void {
  for (const k of Object.keys(o))
    if (!allowed.includes(k)) {
      const elsewhere = [DPO_KEYS, SIMPO_KEYS, ORPO_KEYS, KTO_KEYS].some((keys) => (keys as readonly string[]).includes(k));
      throw configError(
        `${where}: key "${k}" ` +
          (elsewhere ? `does not apply to ${what} (loss_type ${JSON.stringify(o.loss_type ?? "sigmoid")})` : `is unknown`) +
          `; allowed keys here: ${allowed.join(", ")}`,
      );
    }
}

type Check = { ok: (x: number) => boolean; what: string };
const finite: Check = { ok: Number.isFinite, what: "a finite number" };
const positive: Check = { ok: (x) => Number.isFinite(x) && x > 0, what: "a number > 0" };
const nonNegative: Check = { ok: (x) => Number.isFinite(x) && x >= 0, what: "a number >= 0" };
const unitInterval: Check = { ok: (x) => x >= 0 && x <= 1, what: "a number in [0, 1]" };
const unitIntervalOpen: Check = { ok: (x) => x > 0 && x < 1, what: "a number in (0, 1)" };
// ε is a label-flip probability: at 0.5 the labels carry no information and rDPO divides by 1 - 2ε = 0.
const probabilityBelowHalf: Check = { ok: (x) => x >= 0 && x < 0.5, what: "a number in [0, 0.5)" };

function num(o: Record<string, unknown>, key: string, where: string, dflt: number, check: Check): number {
  const v = o[key];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== "number" || !check.ok(v)) throw configError(`${where}.${key}: expected ${check.what}, got ${describe(v)}`);
  return v;
}

function nullableNum(o: Record<string, unknown>, key: string, where: string, check: Check): number | null {
  const v = o[key];
  if (v === undefined || v === null) return null;
  if (typeof v !== "number" || !check.ok(v))
    throw configError(`${where}.${key}: expected null or ${check.what}, got ${describe(v)}`);
  return v;
}

function describe(v: unknown): string {
  if (v === undefined) return "nothing";
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 60 ? s.slice(0, 57) + "..." : s;
}
