// The data pipeline end to end: read a preference file, validate and normalise its rows, tokenise and truncate,
// and account for every row (usable, invalid, dropped) in DataStats.
//
//   loadPreferences   file ─► PreferencePair[] + invalid rows + drops + warnings       (no tokenizer needed)
//   splitPreferences  held-out eval pairs by fraction / count / separate file
//   prepareDataset    file ─► TokenizedPair[] + DataStats                              (load + tokenizePairs)
//   writeInvalidReport the invalid rows as JSON Lines, for the user to fix
//
// Malformed rows fail loading with a TsdpoError "<file>:<line>: <field>: <what is wrong>; <how to fix>" unless
// skipInvalid is set; then they are collected (count + report) and loading goes on.

import { mkdirSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { TsdpoError, inputError } from "../errors.js";
import type { Tokenizer } from "../tokenizer/types.js";
import { RowProblem, normalizeRow } from "./normalize.js";
import type { NormalizeOptions } from "./normalize.js";
import { readRows } from "./read.js";
import { splitTrainEval } from "./split.js";
import type { EvalSplit } from "./split.js";
import { tokenizePairs } from "./tokenize.js";
import type { TokenizeOptions, TokenizedSet } from "./tokenize.js";
import { DROP_REASONS, dropAt, issueAt, where } from "./types.js";
import type { DropReason, DroppedPair, FileFormat, PreferencePair, RowIssue, TokenizedPair } from "./types.js";

export interface LoadOptions extends NormalizeOptions {
  /** Skip malformed rows, collecting them in `invalid`, instead of failing at the first one. Default false. */
  skipInvalid?: boolean;
}

export interface LoadedFile {
  readonly file: string;
  readonly format: FileFormat;
  /** Rows read: non-blank lines (JSONL), array items (JSON), Parquet rows. = pairs + invalid + drops. */
  readonly rows: number;
  readonly pairs: PreferencePair[];
  /** Malformed rows (only with skipInvalid; otherwise the first one throws). */
  readonly invalid: RowIssue[];
  /** Well-formed rows that were not kept (so far only "identical"). */
  readonly drops: DroppedPair[];
  /** Kept rows with something worth a look (whitespace-only answers, prompt repeated inside the answers). */
  readonly warnings: RowIssue[];
}

export async function loadPreferences(path: string, options: LoadOptions = {}): Promise<LoadedFile> {
  const cf = options.chosenField ?? "chosen";
  const rf = options.rejectedField ?? "rejected";
  const pf = options.promptField === null ? null : (options.promptField ?? "prompt");
  const read = await readRows(path, { columns: [cf, rf, ...(pf === null ? [] : [pf])] });
  if (read.rows.length === 0)
    throw inputError(`${path}: holds no rows; a preference file needs at least one {"prompt", "chosen", "rejected"} row`);
  if (read.columns) {
    // Parquet: a missing column is a property of the file, so say it once with the columns that do exist.
    const needed: [string, string][] = [[cf, "chosen_field"], [rf, "rejected_field"]];
    if (options.promptField !== undefined && pf !== null) needed.push([pf, "prompt_field"]);
    for (const [col, opt] of needed)
      if (!read.columns.includes(col))
        throw inputError(
          `${path}: has no column "${col}" (columns: ${read.columns.map((c) => JSON.stringify(c)).join(", ")}); ` +
            `set ${opt} to the column that holds it`,
        );
  }
  const out: LoadedFile = { file: path, format: read.format, rows: read.rows.length, pairs: [], invalid: [], drops: [], warnings: [] };
  for (const row of read.rows) {
    let r;
    try {
      r = normalizeRow(row, options);
    } catch (e) {
      if (!(e instanceof RowProblem)) throw e;
      if (!options.skipInvalid) throw inputError(`${where(row.pos)}: ${e.field}: ${e.reason}`);
      out.invalid.push(issueAt(row.pos, e.field, e.reason));
      continue;
    }
    if (r.kind === "drop") out.drops.push(dropAt(row.pos, r.reason, r.detail));
    else {
      out.pairs.push(r.pair);
      for (const w of r.warnings) out.warnings.push(issueAt(row.pos, w.field, w.reason));
    }
  }
  return out;
}

export interface SplitPreferences {
  train: PreferencePair[];
  eval: PreferencePair[];
  /** The eval file as loaded, for its own stats (kind "file" only). */
  evalFile: LoadedFile | null;
  /** Eval pairs whose prompt, chosen and rejected text also occur as a training pair (duplicates leak). */
  overlap: number;
}

/** Holds out eval pairs from a loaded file, or loads them from split.path (with the same options). */
export async function splitPreferences(loaded: LoadedFile, split: EvalSplit, options: LoadOptions = {}): Promise<SplitPreferences> {
  let train: PreferencePair[];
  let evalPairs: PreferencePair[];
  let evalFile: LoadedFile | null = null;
  if (split.kind === "file") {
    evalFile = await loadPreferences(split.path, options);
    train = [...loaded.pairs];
    evalPairs = evalFile.pairs;
  } else {
    ({ train, eval: evalPairs } = splitTrainEval(loaded.pairs, split));
  }
  const key = (p: PreferencePair): string => JSON.stringify([p.prompt, p.chosen, p.rejected]);
  const seen = new Set(train.map(key));
  const overlap = evalPairs.filter((p) => seen.has(key(p))).length;
  return { train, eval: evalPairs, evalFile, overlap };
}

export interface DataStats {
  readonly file: string;
  readonly format: FileFormat;
  /** Rows read from the file. rows = usable + invalid + dropped. */
  readonly rows: number;
  /** Malformed rows skipped (skipInvalid); details in the invalid report. */
  readonly invalid: number;
  /** Well-formed rows not used, for a reason in droppedByReason. */
  readonly dropped: number;
  readonly droppedByReason: Readonly<Record<DropReason, number>>;
  /** Pairs ready for training. */
  readonly usable: number;
  /** Usable pairs that truncation shortened. */
  readonly truncated: number;
  readonly warnings: number;
  /** Every drop with its position, reason and detail. */
  readonly drops: readonly DroppedPair[];
}

/** Combines the load-stage and (optional) tokenisation-stage accounting. */
export function dataStats(loaded: LoadedFile, tokenized?: TokenizedSet): DataStats {
  const drops = [...loaded.drops, ...(tokenized?.drops ?? [])];
  const droppedByReason = Object.fromEntries(DROP_REASONS.map((r) => [r, 0])) as Record<DropReason, number>;
  for (const d of drops) droppedByReason[d.reason]++;
  return {
    file: loaded.file,
    format: loaded.format,
    rows: loaded.rows,
    invalid: loaded.invalid.length,
    dropped: drops.length,
    droppedByReason,
    usable: tokenized ? tokenized.pairs.length : loaded.pairs.length,
    truncated: tokenized?.truncated ?? 0,
    warnings: loaded.warnings.length,
    drops,
  };
}

/** A short human summary, with up to `examples` dropped rows listed by position. */
export function formatDataStats(s: DataStats, examples = 3): string {
  const reasons = DROP_REASONS.filter((r) => s.droppedByReason[r] > 0).map((r) => `${r} ${s.droppedByReason[r]}`);
  const lines = [
    `${s.file} (${s.format}): ${s.rows} rows -> ${s.usable} usable pairs (${s.truncated} truncated); ` +
      `${s.invalid} invalid; ${s.dropped} dropped${reasons.length ? ` (${reasons.join(", ")})` : ""}; ${s.warnings} warnings`,
  ];
  for (const d of s.drops.slice(0, examples)) lines.push(`  dropped ${d.where}: ${d.reason}: ${d.detail}`);
  if (s.drops.length > examples) lines.push(`  … and ${s.drops.length - examples} more dropped`);
  return lines.join("\n");
}

export interface PrepareOptions extends LoadOptions, TokenizeOptions {}

export interface PreparedData {
  pairs: TokenizedPair[];
  stats: DataStats;
  invalid: RowIssue[];
  warnings: RowIssue[];
}

/** Load + tokenise + truncate. Fails if no pair survives, naming the counts that explain why. */
export async function prepareDataset(path: string, tokenizer: Tokenizer, options: PrepareOptions = {}): Promise<PreparedData> {
  const loaded = await loadPreferences(path, options);
  const tokenized = tokenizePairs(loaded.pairs, tokenizer, options);
  const stats = dataStats(loaded, tokenized);
  if (stats.usable === 0)
    throw inputError(`${path}: no usable pairs remain (${formatDataStats(stats, 1)}); fix the rows or loosen maxLength/maxPromptLength`);
  return { pairs: tokenized.pairs, stats, invalid: loaded.invalid, warnings: loaded.warnings };
}

/** The name src/cli uses for prepareDataset. */
export const loadPreferencePairs = prepareDataset;

/** Writes the invalid-row report as JSON Lines: one {file, line, index, where, field, reason} object per row. */
export function writeInvalidReport(path: string, report: readonly RowIssue[]): void {
  const text = report
    .map((r) => JSON.stringify({ file: r.file, line: r.line, index: r.index, where: r.where, field: r.field, reason: r.reason }) + "\n")
    .join("");
  try {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, text);
  } catch (e) {
    throw new TsdpoError("io", `${path}: cannot write the invalid-row report (${(e as NodeJS.ErrnoException).code ?? String(e)}); check the folder exists and is writable`);
  }
}
