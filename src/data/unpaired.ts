// Unpaired preference data, which KTO trains on (TRL's unpaired preference format): each row is one prompt, one
// completion and a label, true when the completion is desirable (a thumbs up) and false when it is not.
//
//   file of {prompt, completion, label} rows ─► UnpairedExample (normalize.ts) ─► TokenizedUnpaired
//   file of preference pairs + unpair: true ─► the pair pipeline (load.ts) ─► each pair as two TokenizedUnpaired rows,
//                                                chosen desirable and rejected undesirable (TRL's unpair_preference_dataset)
//
// KTO's reference point z0 is estimated from mismatched pairs: a row's prompt with another row's completion. A
// TokenizedUnpaired is therefore a TokenizedPair, so that the pair machinery (packing with one shared prompt, the
// reference pass, the cache of reference log-probs) serves it unchanged: chosenIds holds the row's own completion and
// rejectedIds the mismatched one. Which completion that is:
//   - kto_kl "running": a partner fixed here when the data loads, the next row in a seeded cycle through all rows (a
//     derangement: never the row itself), so it does not depend on the batch and a batch of one works;
//   - kto_kl "batch": the trainer replaces it per micro-batch with the previous row's completion (rotateKlCompletions,
//     TRL's rotation), and a micro-batch of one row keeps the fixed partner, having no other row;
//   - apo_zero_unpaired, which has no z0: the first token of the row's own completion, a placeholder nothing reads
//     (the slot cannot be empty), so the mismatched forward costs one token per row.

import { configError, inputError } from "../errors.js";
import type { Tokenizer } from "../tokenizer/types.js";
import { chatRendererFor, normalizeUnpairedRow, UNPAIRED_ROW_EXAMPLE, type UnpairedExample } from "./normalize.js";
import { renderChat } from "../tokenizer/chat.js";
import { type DataStats, type PreparedData, type PrepareOptions, capLimits, formatDataStats, itemStats, loadPreferenceData, readNormalized } from "./load.js";
import { shuffledIndices, splitTrainEval } from "./split.js";
import { pairEncoder, resolveTokenizeOptions, tokenizeAnswers } from "./tokenize.js";
import { dropAt } from "./types.js";
import type { DroppedPair, TokenizedPair } from "./types.js";

/** One unpaired row as ids, in the pair layout (see the top of this file). */
export interface TokenizedUnpaired extends TokenizedPair {
  /** chosenIds is this row's completion: true when it is desirable. */
  readonly label: boolean;
}

export function isUnpairedRow(p: TokenizedPair): p is TokenizedUnpaired {
  return typeof (p as TokenizedUnpaired).label === "boolean";
}

/** (B) 1 for a desirable row, 0 for an undesirable one. */
export function labelsOf(rows: readonly TokenizedPair[]): Uint8Array {
  return Uint8Array.from(rows, (r) => {
    if (!isUnpairedRow(r)) throw new Error("internal: an unpaired loss got a preference pair without a label");
    return r.label ? 1 : 0;
  });
}

/**
 * TRL's mismatched pairs for kto_kl "batch": row i is paired with the completion of row i − 1, row 0 with the last
 * row's ((x₁, y_B), (x₂, y₁), …, (x_B, y_{B−1})), so the mismatched completions are the batch's own. A single row has
 * no other row to pair with and keeps its fixed partner.
 */
export function rotateKlCompletions(rows: readonly TokenizedPair[]): TokenizedPair[] {
  const B = rows.length;
  if (B < 2) return [...rows];
  return rows.map((r, i) => ({ ...r, rejectedIds: rows[(i + B - 1) % B]!.chosenIds }));
}

/**
 * What the trainer sizes its buffers for under kto_kl "batch": any row's mismatched slot may then hold any row's
 * completion, so each is sized for the longest.
 */
export function klSizingRows(rows: readonly TokenizedPair[]): TokenizedPair[] {
  let longest = rows[0]?.chosenIds ?? new Int32Array(1);
  for (const r of rows) if (r.chosenIds.length > longest.length) longest = r.chosenIds;
  return rows.map((r) => ({ ...r, rejectedIds: longest }));
}

export interface UnpairedOptions extends PrepareOptions {
  /** The file holds preference pairs: each becomes a desirable (chosen) and an undesirable (rejected) row. */
  unpair: boolean;
  /** Whether the loss estimates z0 from mismatched pairs (kto), so that rows need real partners (else placeholders). */
  kl: boolean;
  /** Seeds the fixed partners (the training config's seed). */
  seed: number;
  /** desirable_weight and undesirable_weight, for the note when they do not balance the counts (KTO Eq. 8). */
  weights?: { desirable: number; undesirable: number };
}

/**
 * loadPreferenceData's counterpart for unpaired losses: the same options, split and accounting, with rows in place of
 * pairs. Refuses (for kto) a training set whose rows all have one label: see checkBothLabels.
 */
export async function loadUnpairedData(path: string, tokenizer: Tokenizer, options: UnpairedOptions): Promise<PreparedData> {
  const d = options.unpair ? await unpairedFromPairs(path, tokenizer, options) : await loadUnpairedFile(path, tokenizer, options);
  if (options.kl) checkBothLabels(path, d.pairs as TokenizedUnpaired[]);
  const train = withPartners(d.pairs as TokenizedUnpaired[], options.kl, options.seed);
  const held = withPartners(d.eval as TokenizedUnpaired[], options.kl, options.seed + 1);
  const note = options.weights ? weightNote(train, options.weights) : null;
  return { ...d, pairs: train, eval: held, notes: [...(d.notes ?? []), ...(note ? [note] : [])] };
}

/**
 * TRL KTOTrainer's advice when the labels are unbalanced: KTO's Eq. 8 wants λ_D·n_D / (λ_U·n_U) in [1, 4/3], so it
 * names the range of either weight that puts it there (rounded as TRL rounds them); null when the weights are in range.
 */
export function weightNote(rows: readonly TokenizedUnpaired[], w: { desirable: number; undesirable: number }): string | null {
  const nd = Math.max(rows.filter((r) => r.label).length, 1);
  const nu = Math.max(rows.length - nd, 1);
  if (nd === nu) return null;
  const r2 = (x: number): number => Math.round(x * 100) / 100;
  const d = [r2((nu * w.undesirable) / nd), r2(((nu * w.undesirable) / nd) * 1.33)];
  const u = [r2((nd * w.desirable) / nu / 1.33), r2((nd * w.desirable) / nu)];
  if ((w.desirable >= d[0]! && w.desirable <= d[1]!) || (w.undesirable >= u[0]! && w.undesirable <= u[1]!)) return null;
  return (
    `note: ${nd} desirable and ${nu} undesirable rows with desirable_weight ${w.desirable} and undesirable_weight ${w.undesirable}: ` +
    `KTO (Eq. 8) wants desirable_weight·${nd} / (undesirable_weight·${nu}) between 1 and 4/3; set EITHER desirable_weight in ` +
    `[${d[0]}, ${d[1]}] or undesirable_weight in [${u[0]}, ${u[1]}] (not both)`
  );
}

/** A training set of one label gives KTO nothing to tell apart; the message says what the KL then means. */
function checkBothLabels(path: string, rows: readonly TokenizedUnpaired[]): void {
  const good = rows.filter((r) => r.label).length;
  if (good > 0 && good < rows.length) return;
  const kind = good > 0 ? "desirable (label true)" : "undesirable (label false)";
  throw inputError(
    `${path}: all ${rows.length} training rows are ${kind}. KTO scores each row's reward β·log(π/π_ref) against ` +
      `the reference point z0, the KL estimate from mismatched prompt–completion pairs; with one label only it just ` +
      `pushes every reward ${good > 0 ? "above" : "below"} z0, which moves with the policy, so nothing marks what to ` +
      `${good > 0 ? "avoid" : "prefer"} (for good answers alone that is supervised fine-tuning with extra steps). Add ` +
      `${good > 0 ? "undesirable rows (label false)" : "desirable rows (label true)"}, or ` +
      (good > 0 ? `use \`tsdpo sft\` on these rows, or loss_type apo_zero_unpaired, which has no z0` : `use loss_type apo_zero_unpaired, which has no z0`),
  );
}

/**
 * Each row's mismatched completion: with kl, the next row's in a cycle through the rows in seeded order (never its
 * own, unless there is a single row); without, a one-token placeholder.
 */
function withPartners(rows: readonly TokenizedUnpaired[], kl: boolean, seed: number): TokenizedUnpaired[] {
  if (!kl) return rows.map((r) => ({ ...r, rejectedIds: r.chosenIds.subarray(0, 1) }));
  const n = rows.length;
  const order = shuffledIndices(n, seed);
  const out = rows.slice();
  for (let k = 0; k < n; k++) out[order[k]!] = { ...rows[order[k]!]!, rejectedIds: rows[order[(k + 1) % n]!]!.chosenIds };
  return out;
}

/** Each pair of the pair pipeline as its two rows, chosen (desirable) then rejected (undesirable). */
async function unpairedFromPairs(path: string, tokenizer: Tokenizer, options: UnpairedOptions): Promise<PreparedData> {
  const d = await loadPreferenceData(path, tokenizer, options);
  const rows = (pairs: readonly TokenizedPair[]): TokenizedUnpaired[] =>
    pairs.flatMap((p) => [
      { ...p, label: true },
      { ...p, chosenIds: p.rejectedIds, label: false },
    ]);
  const note = `unpair: ${d.pairs.length + d.eval.length} pairs -> ${2 * (d.pairs.length + d.eval.length)} unpaired rows, chosen desirable and rejected undesirable`;
  return { ...d, pairs: rows(d.pairs), eval: rows(d.eval), unit: "rows", notes: [note, countLine(rows(d.pairs))] };
}

/** A file of {prompt, completion, label} rows, through the steps of loadPreferenceData. */
async function loadUnpairedFile(path: string, tokenizer: Tokenizer, options: UnpairedOptions): Promise<PreparedData> {
  const split = options.split ?? { kind: "none" };
  const main = await readUnpaired(path, tokenizer, options);
  let train = main.examples;
  let heldText: UnpairedExample[] = [];
  let evalFile: Awaited<ReturnType<typeof readUnpaired>> | null = null;
  if (split.kind === "file") {
    evalFile = await readUnpaired(split.path, tokenizer, options);
    heldText = evalFile.examples;
  } else ({ train, eval: heldText } = splitTrainEval(main.examples, split));
  const limits = capLimits(options);
  const resolved = resolveTokenizeOptions(limits);
  const enc = pairEncoder(tokenizer);
  const tokenize = (examples: readonly UnpairedExample[]): { rows: TokenizedUnpaired[]; drops: DroppedPair[]; truncated: number } => {
    const out = { rows: [] as TokenizedUnpaired[], drops: [] as DroppedPair[], truncated: 0 };
    for (const e of examples) {
      const t = tokenizeAnswers(e.prompt, [e.completion], enc, resolved, e.source.file);
      if (t.kind === "drop") {
        out.drops.push(dropAt(e.source, t.reason, t.detail));
        continue;
      }
      const ids = Int32Array.from(t.answers[0]!);
      out.rows.push({ source: e.source, promptIds: Int32Array.from(t.prompt), chosenIds: ids, rejectedIds: ids, truncated: t.truncated, label: e.label });
      if (t.truncated) out.truncated++;
    }
    return out;
  };
  const trainRows = tokenize(train);
  const heldRows = tokenize(heldText);
  const statsOf = (f: Awaited<ReturnType<typeof readUnpaired>>, rows: number, drops: DroppedPair[], truncated: number): DataStats =>
    itemStats(f.loaded, rows, drops, truncated, "rows");
  const stats = split.kind === "file"
    ? statsOf(main, trainRows.rows.length, trainRows.drops, trainRows.truncated)
    : statsOf(main, trainRows.rows.length + heldRows.rows.length, [...trainRows.drops, ...heldRows.drops], trainRows.truncated + heldRows.truncated);
  if (trainRows.rows.length === 0)
    throw inputError(`${path}: no usable rows remain (${formatDataStats(stats, 1)}); fix the rows, or loosen max_length / max_prompt_length`);
  return {
    pairs: trainRows.rows,
    eval: heldRows.rows,
    stats,
    evalStats: evalFile ? statsOf(evalFile, heldRows.rows.length, heldRows.drops, heldRows.truncated) : null,
    invalid: [...main.loaded.invalid, ...(evalFile?.loaded.invalid ?? [])],
    warnings: [],
    split,
    evalDropped: heldRows.drops.length,
    overlap: 0,
    limits,
    prompts: [...new Set((heldText.length > 0 ? heldText : train).map((e) => e.prompt))].slice(0, 16),
    notes: [countLine(trainRows.rows)],
    unit: "rows",
  };
}

function countLine(rows: readonly TokenizedUnpaired[]): string {
  const good = rows.filter((r) => r.label).length;
  return `unpaired rows for training: ${good} desirable, ${rows.length - good} undesirable`;
}

/** Reads and normalises the rows of one file; malformed rows fail loading, or are collected under skip_invalid. */
async function readUnpaired(path: string, tokenizer: Tokenizer, options: UnpairedOptions) {
  const chat = chatRendererFor(renderChat, tokenizer, undefined, options.chatTemplateKwargs);
  const r = await readNormalized(
    path, ["prompt", "completion", "label", "tools"], `an unpaired file needs rows like ${UNPAIRED_ROW_EXAMPLE}`,
    (row) => normalizeUnpairedRow(row, { chat, tools: options.tools }), options.skipInvalid ?? false,
    (columns) => {
      for (const col of ["prompt", "completion", "label"])
        if (!columns.includes(col)) {
          if (col === "completion" && columns.includes("chosen") && columns.includes("rejected"))
            throw configError(`${path}: holds preference pairs (columns "chosen" and "rejected"), but loss_type kto trains on unpaired rows; set unpair: true to use each pair as a desirable and an undesirable row`);
          throw inputError(`${path}: has no column ${JSON.stringify(col)} (columns: ${columns.join(", ")}); an unpaired row looks like ${UNPAIRED_ROW_EXAMPLE}`);
        }
    },
  );
  return { examples: r.items, loaded: r.loaded };
}
