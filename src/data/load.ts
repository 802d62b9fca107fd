// The data pipeline end to end: read a preference file, validate and normalise its rows, tokenise and truncate,
// and account for every row (usable, invalid, dropped) in DataStats.
//
//   loadPreferenceData  THE entry point for every command (train, eval, logprobs, sample, iterate): file + model
//                       tokenizer ─► tokenised pairs (+ held-out pairs) + DataStats + invalid rows + warnings. It
//                       builds the chat renderer from the tokenizer, so conversational files work everywhere.
//                       prepareDataset and loadPreferencePairs are older names of it.
//   dataOptionsFromConfig  the config keys (prompt_field, chosen_field, …, data_format, winner_field, …, eval_size,
//                       seed) ─► its options
//   formats.ts          the layout of a file's rows: the field mapping, the winner and score mappings, and the named
//                       layouts of public datasets (chatbot_arena, webgpt, hh_rlhf), recognised from the columns
//   loadPreferences     file ─► PreferencePair[] + invalid rows + drops + warnings       (text only, no limits)
//   splitPreferences    held-out eval pairs by fraction / count / separate file
//   formatPreferenceData / formatDataStats / formatIssues   the human summary
//   writeInvalidReport / writeWarningsReport   the invalid rows / the warnings as JSON Lines
//
// Malformed rows fail loading with a TsdpoError "<file>:<line>: <field>: <what is wrong>; <how to fix>" unless
// skipInvalid is set; then they are collected (count + report) and loading goes on. Messages name options by their
// config keys (prompt_field, max_length, eval_size), never by the camelCase names used in code.

import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { TsdpoError, configError, inputError } from "../errors.js";
import { type ChatTemplateKwargs, checkTemplateKwargs, renderChat } from "../tokenizer/chat.js";
import type { Tokenizer } from "../tokenizer/types.js";
import { RowProblem, chatRendererFor, describeMapping, nonPreferenceKind, normalizeRow, parseTools, PREFERENCE_ROW_EXAMPLE } from "./normalize.js";
import type { NormalizeOptions } from "./normalize.js";
import { candidateColumns, chooseLayout, formatConfigProblem, toWinnerValues } from "./formats.js";
import type { DataFormat, FormatConfig, FormatOptions, Layout } from "./formats.js";
import { listNames, readRows, type RawRow } from "./read.js";
import { splitTrainEval } from "./split.js";
import type { EvalSplit } from "./split.js";
import { tokenizePairs } from "./tokenize.js";
import type { TokenizeOptions, TokenizedSet, TruncationMode } from "./tokenize.js";
import { DROP_REASONS, dropAt, issueAt, where } from "./types.js";
import type { DropReason, DroppedPair, FileFormat, PreferencePair, RowIssue, TokenizedPair, ToolSpec } from "./types.js";

export interface LoadOptions extends NormalizeOptions, FormatOptions {
  /** Skip malformed rows, collecting them in `invalid`, instead of failing at the first one. Default false. */
  skipInvalid?: boolean;
  /**
   * The model's tokenizer: message-list rows are rendered with its chat template (chatRendererFor + renderChat),
   * so no caller has to build the renderer. An explicit `chat` wins (tests pass their own).
   */
  tokenizer?: Tokenizer;
  /**
   * Extra variables for every render of the tokenizer's chat template, prompt and answers alike (config key
   * chat_template_kwargs, e.g. {"enable_thinking": false} for Qwen3). Checked by dataOptionsFromConfig.
   */
  chatTemplateKwargs?: ChatTemplateKwargs;
}

export interface LoadedFile {
  readonly file: string;
  readonly format: FileFormat;
  /** Rows read: non-blank lines (JSONL), array items (JSON), Parquet rows, CSV/TSV records after the header. = pairs + invalid + drops. */
  readonly rows: number;
  readonly pairs: PreferencePair[];
  /** Malformed rows (only with skipInvalid; otherwise the first one throws). */
  readonly invalid: RowIssue[];
  /** Well-formed rows that were not kept, with the reason (identical answers, ties, multi-turn, …). */
  readonly drops: DroppedPair[];
  /** Kept rows with something worth a look (whitespace-only answers, prompt repeated inside the answers). */
  readonly warnings: RowIssue[];
  /** The layout the rows were read with (formats.ts): generic, or a named one, set or recognised. */
  readonly dataFormat: Exclude<DataFormat, "auto">;
  /** When the layout was recognised from the columns: the summary's line saying so and how to override it. */
  readonly recognised: string | null;
}

export async function loadPreferences(path: string, options: LoadOptions = {}): Promise<LoadedFile> {
  const problem = formatConfigProblem(formatConfigOf(options));
  if (problem !== null) throw configError(problem);
  const read = await readRows(path, {
    columns: candidateColumns(options),
    // Parquet reads only the columns the layout needs; when the prompt may be inferred, also those that could be the
    // prompt under another name, so that normalizeRow can refuse to guess it (see isHarmlessKey). The layout is
    // chosen again below, with the first row, for the HH-RLHF check.
    moreColumns: (all) => chooseLayout(path, all, options).moreColumns(all),
  });
  if (read.rows.length === 0)
    throw inputError(`${path}: holds no rows; a preference file needs at least one {"prompt", "chosen", "rejected"} row`);
  const first = read.rows.find((r) => r.parseError === undefined && r.value !== null && typeof r.value === "object" && !Array.isArray(r.value));
  const keys = read.columns ?? (first ? Object.keys(first.value as object) : null);
  const layout = chooseLayout(read.columns || !first ? path : where(first.pos), keys, options, first?.value);
  if (read.columns) checkColumns(path, read.format, read.columns, layout, options);
  const normOpts: NormalizeOptions =
    options.chat !== undefined || options.tokenizer === undefined
      ? {}
      : { chat: chatRendererFor(renderChat, options.tokenizer, undefined, options.chatTemplateKwargs) };
  const out: LoadedFile = {
    file: path, format: read.format, rows: read.rows.length, pairs: [], invalid: [], drops: [], warnings: [],
    dataFormat: layout.format, recognised: layout.note,
  };
  for (const row of read.rows) {
    let r;
    try {
      const m = layout.map(row);
      r = m.kind === "drop" ? m : normalizeRow(m.row, { ...m.options, ...normOpts });
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

/**
 * Parquet, CSV, TSV: a missing column is a property of the file, so say it once with the columns that do exist
 * (JSON rows are checked one by one, as their keys may differ).
 */
function checkColumns(path: string, format: FileFormat, cols: readonly string[], layout: Layout, options: LoadOptions): void {
  const header = format === "parquet" ? "" : " header";
  if (layout.kind !== "pairs" || layout.format === "hh_rlhf") {
    for (const { column, key, what } of layout.required)
      if (!cols.includes(column))
        throw inputError(
          `${path}:${header} has no column ${JSON.stringify(column)} (columns: ${listNames(cols)}); ` +
            `set ${key} to the column that holds ${what} (now: ${layout.described})`,
        );
    return;
  }
  const cf = options.chosenField ?? "chosen";
  const rf = options.rejectedField ?? "rejected";
  const pf = options.promptField === null ? null : (options.promptField ?? "prompt");
  const inferred = options.promptField === null || (options.promptField === undefined && !cols.includes("prompt"));
  const now = `(now: ${describeMapping(options, inferred)})`;
  const kind = !cols.includes(cf) && !cols.includes(rf) ? nonPreferenceKind(cols) : null;
  if (kind !== null)
    throw inputError(
      `${path}: this is ${kind}, not preference pairs: the file has columns ${listNames(cols)} but no ${JSON.stringify(cf)} ` +
        `and ${JSON.stringify(rf)} answers. DPO learns from two answers to one prompt, one preferred over the other; a ` +
        `preference row looks like ${PREFERENCE_ROW_EXAMPLE}. Convert the file to such rows, or, if both answers are ` +
        `there under other names, set chosen_field and rejected_field ${now}`,
    );
  const needed: [string, string][] = [[cf, "chosen_field"], [rf, "rejected_field"]];
  if (options.promptField !== undefined && pf !== null) needed.push([pf, "prompt_field"]);
  for (const [col, opt] of needed)
    if (!cols.includes(col))
      throw inputError(
        `${path}:${header} has no column ${JSON.stringify(col)} (columns: ${listNames(cols)}); ` +
          `set ${opt} to the column that holds it ${now}`,
      );
}

/** The layout options in config-key words, for formatConfigProblem. */
function formatConfigOf(o: LoadOptions): FormatConfig {
  return {
    data_format: o.dataFormat, winner_field: o.winnerField, a_field: o.aField, b_field: o.bField, winner_values: o.winnerValues,
    score_fields: o.scoreFields, webgpt_quotes: o.webgptQuotes, prompt_field: o.promptField, chosen_field: o.chosenField,
    rejected_field: o.rejectedField,
  };
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
  /** The layout the rows were read with (generic, chatbot_arena, webgpt, hh_rlhf). */
  readonly dataFormat: Exclude<DataFormat, "auto">;
  /** Set when the layout was recognised from the columns rather than set: the summary's line about it. */
  readonly recognised: string | null;
  /** What `usable` counts: preference pairs (absent), unpaired rows (unpaired.ts) or SFT sequences (sft.ts). */
  readonly unit?: "rows" | "sequences";
}

/**
 * The rows of one file of another kind than pairs (unpaired.ts, sft.ts), each normalised by `normalize`: a malformed
 * row fails loading with "<file>:<line>: <field>: <reason>", or under skipInvalid is collected, as loadPreferences
 * does. `empty` is what to say of a file without rows; `checkColumns` sees a Parquet, CSV or TSV file's columns first.
 */
export async function readNormalized<T>(
  path: string, columns: readonly string[], empty: string, normalize: (row: RawRow) => T, skipInvalid: boolean,
  checkColumns: (columns: readonly string[]) => void = () => {},
): Promise<{ items: T[]; loaded: LoadedFile }> {
  const read = await readRows(path, { columns });
  if (read.rows.length === 0) throw inputError(`${path}: holds no rows; ${empty}`);
  if (read.columns) checkColumns(read.columns);
  const items: T[] = [];
  const invalid: RowIssue[] = [];
  for (const row of read.rows) {
    try {
      items.push(normalize(row));
    } catch (e) {
      if (!(e instanceof RowProblem)) throw e;
      if (!skipInvalid) throw inputError(`${where(row.pos)}: ${e.field}: ${e.reason}`);
      invalid.push(issueAt(row.pos, e.field, e.reason));
    }
  }
  const loaded: LoadedFile = {
    file: path, format: read.format, rows: read.rows.length, pairs: [], invalid, drops: [], warnings: [], dataFormat: "generic", recognised: null,
  };
  return { items, loaded };
}

/** DataStats of such a file: `usable` items (unpaired rows, SFT sequences) of its rows, after these drops. */
export function itemStats(loaded: LoadedFile, usable: number, drops: DroppedPair[], truncated: number, unit: "rows" | "sequences"): DataStats {
  return { ...dataStats(loaded, { pairs: new Array(usable), drops, truncated }), unit };
}

/** Combines the load-stage and (optional) tokenisation-stage accounting. *//** Combines the load-stage and (optional) tokenisation-stage accounting. */
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
    dataFormat: loaded.dataFormat,
    recognised: loaded.recognised,
  };
}

/** A short human summary, with up to `examples` dropped rows listed by position. */
export function formatDataStats(s: DataStats, examples = 3): string {
  const reasons = DROP_REASONS.filter((r) => s.droppedByReason[r] > 0).map((r) => `${r} ${s.droppedByReason[r]}`);
  const lines = [
    `${s.file} (${s.format}): ${s.rows} rows -> ${s.usable} usable ${s.unit ?? "pairs"} (${s.truncated} truncated); ` +
      `${s.invalid} invalid; ${s.dropped} dropped${reasons.length ? ` (${reasons.join(", ")})` : ""}; ${s.warnings} warnings`,
  ];
  if (s.recognised) lines.push(`  ${s.recognised}`);
  for (const d of s.drops.slice(0, examples)) lines.push(`  dropped ${d.where}: ${d.reason}: ${d.detail}`);
  if (s.drops.length > examples) lines.push(`  … and ${s.drops.length - examples} more dropped`);
  return lines.join("\n");
}

/** Options of loadPreferenceData: field mapping, skipInvalid, tokenizer limits, model context, held-out split. */
export interface PrepareOptions extends LoadOptions, TokenizeOptions {
  /**
   * The model's context length in tokens (model.cfg.maxSeqLen): a sequence longer than it cannot be scored, so
   * maxLength is capped at it (and is it when maxLength is unset). A maxPromptLength that the cap leaves at or above
   * maxLength is dropped: it could not keep a single answer token anyway (those pairs are dropped as
   * no-room-for-completion either way).
   */
  contextLength?: number | null;
  /** Held-out evaluation pairs: { kind: "none" } (default), a fraction or count of the file, or another file. */
  split?: EvalSplit;
}

export interface PreparedData {
  /** The pairs to use (to train on, to score): every usable pair of the file except those held out. */
  pairs: TokenizedPair[];
  /** Held-out pairs (options.split), tokenised with the same limits; [] without a split. */
  eval: TokenizedPair[];
  /** The data file; with a fraction/count split its held-out pairs count as usable too. */
  stats: DataStats;
  /** The separate eval file (split kind "file"), else null. */
  evalStats: DataStats | null;
  /** Malformed rows skipped under skipInvalid, of the data file and then of the eval file. */
  invalid: RowIssue[];
  /** Warnings about kept rows, of the data file and then of the eval file. */
  warnings: RowIssue[];
  /** The split that was made. */
  split: EvalSplit;
  /** Held-out pairs that tokenisation dropped. */
  evalDropped: number;
  /** Eval pairs whose prompt, chosen and rejected text also occur as a training pair. */
  overlap: number;
  /** The limits actually applied (after the contextLength cap), e.g. for the run's record. */
  limits: TokenizeOptions;
  /** Up to 16 distinct prompts as text, held-out ones when there are any: what `tsdpo sample` is pointed at after a run. */
  prompts: string[];
  /** Further lines for the summary (unpaired.ts: how the rows were made and counted). */
  notes?: string[];
  /** What `pairs` and `eval` hold: preference pairs (absent), or unpaired rows (unpaired.ts). */
  unit?: "rows";
}

/**
 * The one loader every command uses: reads the file (and the eval file), validates and normalises the rows with the
 * field mapping, renders message lists with the tokenizer's chat template, holds out eval pairs, tokenises and
 * truncates both parts with the same limits, and accounts for every row. Fails if no pair is left to use, naming
 * the counts that explain why.
 */
export async function loadPreferenceData(path: string, tokenizer: Tokenizer, options: PrepareOptions = {}): Promise<PreparedData> {
  const loadOpts: LoadOptions = { ...options, tokenizer };
  const file = await loadPreferences(path, loadOpts);
  const split = options.split ?? { kind: "none" };
  const parts = await splitPreferences(file, split, loadOpts);
  const limits = capLimits(options);
  const main = tokenizePairs(parts.train, tokenizer, limits);
  const held = tokenizePairs(parts.eval, tokenizer, limits);
  const stats = dataStats(
    file,
    split.kind === "file"
      ? main
      : { pairs: [...main.pairs, ...held.pairs], drops: [...main.drops, ...held.drops], truncated: main.truncated + held.truncated },
  );
  const evalStats = parts.evalFile ? dataStats(parts.evalFile, held) : null;
  if (main.pairs.length === 0) {
    const ctx = options.contextLength ?? null;
    throw inputError(
      `${path}: no usable pairs remain (${formatDataStats(stats, 1)}${split.kind === "none" ? "" : `; ${held.pairs.length} held out for eval`}); ` +
        `fix the rows, or loosen max_length / max_prompt_length` +
        (ctx !== null && limits.maxLength === ctx ? ` (max_length is capped at the model's context length, ${ctx} tokens)` : ""),
    );
  }
  return {
    pairs: main.pairs,
    eval: held.pairs,
    stats,
    evalStats,
    invalid: [...file.invalid, ...(parts.evalFile?.invalid ?? [])],
    warnings: [...file.warnings, ...(parts.evalFile?.warnings ?? [])],
    split,
    evalDropped: held.drops.length,
    overlap: parts.overlap,
    limits,
    prompts: [...new Set((parts.eval.length > 0 ? parts.eval : parts.train).map((p) => p.prompt))].slice(0, 16),
  };
}

/** Older names of loadPreferenceData (src/cli and tests use them). */
export const prepareDataset = loadPreferenceData;
export const loadPreferencePairs = loadPreferenceData;

/** The truncation limits with max_length capped at the model's context (see PrepareOptions.contextLength). */
export function capLimits(o: PrepareOptions): TokenizeOptions {
  const limits: TokenizeOptions = {
    maxLength: o.maxLength ?? null,
    maxPromptLength: o.maxPromptLength ?? null,
    maxCompletionLength: o.maxCompletionLength ?? null,
    truncationMode: o.truncationMode ?? "keep_end",
    overlong: o.overlong ?? "truncate",
  };
  const ctx = o.contextLength ?? null;
  if (ctx !== null && (limits.maxLength === null || limits.maxLength! > ctx)) {
    limits.maxLength = ctx;
    if (limits.maxPromptLength !== null && limits.maxPromptLength! >= ctx) limits.maxPromptLength = null;
  }
  return limits;
}

/**
 * The data settings as the config and the command line spell them (train's TrainConfig has these keys; the CLI's
 * --prompt-field etc. map onto them). prompt_field: undefined = unset (use "prompt", infer only when nothing else
 * could be the prompt), null = infer on purpose, a string = that key. Keep the two apart: a config that turns
 * "unset" into null switches the check for a renamed prompt off.
 */
export interface DataConfig extends FormatConfig {
  prompt_field?: string | null;
  chosen_field?: string;
  rejected_field?: string;
  skip_invalid?: boolean;
  max_length?: number | null;
  max_prompt_length?: number | null;
  max_completion_length?: number | null;
  truncation_mode?: TruncationMode;
  /** A separate eval file (resolved against the working directory); excludes eval_size. */
  eval_data?: string | null;
  /** Held-out eval pairs: 0 none, < 1 a fraction, ≥ 1 a count. */
  eval_size?: number;
  /** Seeds the held-out split (default 42, as the training config). */
  seed?: number;
  /** Tool definitions for the chat template of every message-list row without its own "tools" (TRL's DPOConfig.tools). */
  tools?: readonly ToolSpec[] | null;
  /** Extra variables for every chat-template render, e.g. {"enable_thinking": false} (null: none). */
  chat_template_kwargs?: ChatTemplateKwargs | null;
}

/** Maps config keys to loadPreferenceData's options; contextLength is the model's (model.cfg.maxSeqLen). */
export function dataOptionsFromConfig(c: DataConfig, contextLength: number | null = null): PrepareOptions {
  const problem = formatConfigProblem(c);
  if (problem !== null) throw configError(problem);
  const evalSize = c.eval_size ?? 0;
  const seed = c.seed ?? 42;
  if (c.eval_data != null && evalSize > 0)
    throw configError(`set either eval_data (a file) or eval_size (held out of data), not both (now: eval_data=${c.eval_data}, eval_size=${evalSize})`);
  const split: EvalSplit =
    c.eval_data != null
      ? { kind: "file", path: resolve(c.eval_data) }
      : evalSize === 0
        ? { kind: "none" }
        : evalSize < 1
          ? { kind: "fraction", fraction: evalSize, seed }
          : { kind: "count", count: evalSize, seed };
  return {
    promptField: c.prompt_field,
    chosenField: c.chosen_field,
    rejectedField: c.rejected_field,
    // The layout keys only when set, so that the options of a plain config stay the plain mapping's.
    ...(c.data_format !== undefined && c.data_format !== "auto" ? { dataFormat: c.data_format as DataFormat } : {}),
    ...(c.winner_field != null ? { winnerField: c.winner_field } : {}),
    ...(c.a_field != null ? { aField: c.a_field } : {}),
    ...(c.b_field != null ? { bField: c.b_field } : {}),
    ...(c.winner_values != null ? { winnerValues: toWinnerValues(c.winner_values) } : {}),
    ...(c.score_fields != null ? { scoreFields: [c.score_fields[0]!, c.score_fields[1]!] as const } : {}),
    ...(c.webgpt_quotes === true ? { webgptQuotes: true } : {}),
    ...(c.tools != null ? { tools: parseTools(c.tools, (reason) => configError(`"tools" ${reason}`)) } : {}),
    ...(c.chat_template_kwargs != null
      ? { chatTemplateKwargs: checkTemplateKwargs(c.chat_template_kwargs, (reason) => configError(`"chat_template_kwargs" ${reason}`)) }
      : {}),
    skipInvalid: c.skip_invalid ?? false,
    maxLength: c.max_length ?? null,
    maxPromptLength: c.max_prompt_length ?? null,
    maxCompletionLength: c.max_completion_length ?? null,
    truncationMode: c.truncation_mode ?? "keep_end",
    contextLength,
    split,
  };
}

/**
 * The summary a command prints after loading: the file's stats (and the eval file's), the split, and the first few
 * invalid rows and warnings with where to find the rest.
 */
export function formatPreferenceData(
  d: PreparedData,
  o: { examples?: number; invalidReport?: string; warningsReport?: string } = {},
): string {
  const n = o.examples ?? 3;
  const lines = [formatDataStats(d.stats, n)];
  if (d.evalStats) lines.push(formatDataStats(d.evalStats, n));
  if (d.split.kind !== "none")
    lines.push(
      `train ${d.unit ?? "pairs"}: ${d.pairs.length}, eval ${d.unit ?? "pairs"}: ${d.eval.length}` +
        (d.evalDropped ? ` (${d.evalDropped} eval ${d.stats.unit ?? "pairs"} dropped)` : "") +
        (d.overlap ? `; ${d.overlap} eval pairs also occur in the training data, so eval metrics overstate generalisation` : ""),
    );
  const invalid = formatIssues("invalid", d.invalid, n, o.invalidReport);
  if (invalid) lines.push(invalid);
  const warnings = formatIssues("warning", d.warnings, n, o.warningsReport);
  if (warnings) lines.push(warnings);
  for (const note of d.notes ?? []) lines.push(note);
  return lines.join("\n");
}

/**
 * The first `examples` issues in human form, one per line: "  warning data.jsonl:87: chosen: is only whitespace…",
 * then "  … and N more warnings (all in <report>)". "" when there are none.
 */
export function formatIssues(label: "warning" | "invalid", issues: readonly RowIssue[], examples = 3, report?: string): string {
  if (issues.length === 0) return "";
  const lines = issues.slice(0, examples).map((w) => `  ${label} ${w.where}: ${w.field}: ${w.reason}`);
  const noun = label === "warning" ? "warnings" : "invalid rows";
  if (issues.length > examples) lines.push(`  … and ${issues.length - examples} more ${noun}${report ? ` (all ${issues.length} in ${report})` : ""}`);
  else if (report) lines.push(`  (${issues.length === 1 ? (label === "warning" ? "the warning" : "the invalid row") : `all ${issues.length} ${noun}`} in ${report})`);
  return lines.join("\n");
}

/** formatIssues for warnings: the first few warnings about kept rows, for the data summary. */
export function formatWarnings(warnings: readonly RowIssue[], examples = 3, report?: string): string {
  return formatIssues("warning", warnings, examples, report);
}

/** Writes the invalid-row report as JSON Lines: one {file, line, index, where, field, reason} object per row. */
export function writeInvalidReport(path: string, report: readonly RowIssue[]): void {
  writeIssues(path, report, "invalid-row report");
}

/**
 * Writes the warnings about kept rows as JSON Lines, one {file, line, index, where, field, reason} object per
 * warning, like writeInvalidReport (train writes data_warnings.jsonl into the run folder).
 */
export function writeWarningsReport(path: string, warnings: readonly RowIssue[]): void {
  writeIssues(path, warnings, "warnings report");
}

function writeIssues(path: string, issues: readonly RowIssue[], what: string): void {
  const text = issues
    .map((r) => JSON.stringify({ file: r.file, line: r.line, index: r.index, where: r.where, field: r.field, reason: r.reason }) + "\n")
    .join("");
  try {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, text);
  } catch (e) {
    throw new TsdpoError("io", `${path}: cannot write the ${what} (${(e as NodeJS.ErrnoException).code ?? String(e)}); check the folder exists and is writable`);
  }
}
