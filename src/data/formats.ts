// How a file's rows become {prompt, chosen, rejected}: the two general mappings for files that hold two answers and
// a verdict rather than a chosen and a rejected answer, and the named layouts of public datasets built on them.
//
//   generic         the field mapping alone: prompt_field, chosen_field, rejected_field (normalize.ts), or
//                   winner mapping  winner_field names the column that says which answer won; a_field and b_field
//                                   the two answers; winner_values which of its values mean a, b or a tie
//                   score mapping   score_fields names two score columns, one per answer (a_field, b_field); the
//                                   higher score wins, equal scores are a tie
//   chatbot_arena   lmsys/chatbot_arena_conversations: the winner mapping with winner_field=winner,
//                   a_field=conversation_a, b_field=conversation_b, winner_values={"a": ["model_a"], "b":
//                   ["model_b"], "tie": ["tie", "tie (bothbad)"]}; the prompt is the user turn the two conversations
//                   share (rendered with the model's chat template, like every message list)
//   webgpt          openai/webgpt_comparisons: the score mapping with score_fields=["score_0", "score_1"],
//                   a_field=answer_0, b_field=answer_1; the prompt is question.full_text (see webgptAnswer for what
//                   webgpt_quotes adds)
//   hh_rlhf         Anthropic/hh-rlhf: chosen and rejected are whole dialogues of "\n\nHuman:" and "\n\nAssistant:"
//                   turns; the prompt is the dialogue up to the last "\n\nAssistant:" (inferred on purpose)
//   auto (default)  one of the named layouts when the file's columns (the first row's keys, for JSON) match it, else
//                   generic; the data summary says which layout was recognised and how to override it
//
// Decisions:
// - A named layout is a preset of the general keys: any of winner_field, a_field, b_field, winner_values,
//   score_fields and prompt_field given alongside it replaces the preset's value, so a near relative of a published
//   file (another tie label, a renamed column) needs one key, not a conversion.
// - A tie ("tie", "tie (bothbad)", equal scores) is a counted drop ("tie"), not an error: the row is well-formed but
//   says neither answer is preferred, and DPO needs one that is. The verdict is read first, so a tie row with a
//   missing answer is a tie, not an invalid row: nothing of it would be used.
// - A verdict that winner_values does not list is an error of that row (skippable with skip_invalid): guessing which
//   side it means could flip a pair.
// - Chatbot Arena rows with more than one turn are a counted drop ("multi-turn", decided in normalize.ts from the
//   messages, not from the turn column): the two conversations share their user turns but differ from the first
//   assistant answer on, and a pair here holds one final answer per side. Only single-turn rows load until the
//   layout that scores every assistant turn lands.
// - A file whose columns almost match a named layout, or that holds two answers and a verdict under other names,
//   fails at once with the mapping that reads it, filled in with its own column names: every row would fail alike.

import { configError, inputError } from "../errors.js";
import { RowProblem, TOOLS_KEY, describeValue, isHarmlessKey } from "./normalize.js";
import type { NormalizeOptions } from "./normalize.js";
import { listKeys, listNames } from "./read.js";
import type { RawRow } from "./read.js";
import type { DropReason } from "./types.js";

export type DataFormat = "auto" | "generic" | "chatbot_arena" | "webgpt" | "hh_rlhf";
export const DATA_FORMATS: readonly DataFormat[] = ["auto", "generic", "chatbot_arena", "webgpt", "hh_rlhf"];

/** Which values of winner_field mean that answer a won, that b won, or a tie. Compared as text: 1 matches "1". */
export interface WinnerValues {
  a: string[];
  b: string[];
  tie: string[];
}

/** winner_values as a config file holds it (checked by formatConfigProblem; "tie" may be left out). */
export interface WinnerValuesConfig {
  a: (string | number | boolean)[];
  b: (string | number | boolean)[];
  tie?: (string | number | boolean)[];
}

/** winner_values when winner_field is set without it: the spellings of Chatbot Arena and of plain a/b labels. */
export const DEFAULT_WINNER_VALUES: WinnerValues = { a: ["model_a", "a"], b: ["model_b", "b"], tie: ["tie", "tie (bothbad)"] };

/** The layout options, in code names; the config keys are data_format, winner_field, a_field, … (see FormatConfig). */
export interface FormatOptions {
  /** Default "auto". */
  dataFormat?: DataFormat;
  winnerField?: string | null;
  aField?: string | null;
  bField?: string | null;
  winnerValues?: WinnerValues | null;
  scoreFields?: readonly [string, string] | null;
  /** WebGPT: put each answer's quotes in front of it (see webgptAnswer). Default false. */
  webgptQuotes?: boolean;
}

/** The same settings as the config file and the command line spell them (train's TrainConfig has these keys). */
export interface FormatConfig {
  /** auto (default), generic, chatbot_arena, webgpt or hh_rlhf; see the top of this file. */
  data_format?: string;
  /** The winner mapping: the field that says which answer won (null: no winner mapping). */
  winner_field?: string | null;
  /** The two answers of the winner or score mapping (with a named layout: its own names unless set). */
  a_field?: string | null;
  b_field?: string | null;
  /** {"a": [...], "b": [...], "tie": [...]}: what winner_field's values mean (null: DEFAULT_WINNER_VALUES). */
  winner_values?: unknown;
  /** The score mapping: [score of a, score of b]; the higher wins, equal is a tie (null: no score mapping). */
  score_fields?: readonly string[] | null;
  /** WebGPT: each answer's quotes in front of it (see webgptAnswer). */
  webgpt_quotes?: boolean;
  prompt_field?: string | null;
  chosen_field?: string;
  rejected_field?: string;
}

const NAMES: Record<Exclude<DataFormat, "auto" | "generic">, string> = {
  chatbot_arena: "Chatbot Arena Conversations",
  webgpt: "WebGPT Comparisons",
  hh_rlhf: "Anthropic HH-RLHF",
};

const ARENA = { winner: "winner", a: "conversation_a", b: "conversation_b" } as const;
const ARENA_VALUES: WinnerValues = { a: ["model_a"], b: ["model_b"], tie: ["tie", "tie (bothbad)"] };
const WEBGPT = { scores: ["score_0", "score_1"] as const, a: "answer_0", b: "answer_1", question: "question", quotes: ["quotes_0", "quotes_1"] as const };
const HH_START = "\n\nHuman:";

/**
 * Checks the layout settings on their own (types, combinations), so that a bad config fails before any model or file
 * is read. Returns the problem in config-key words, or null. Used by the training config and by the loader.
 */
export function formatConfigProblem(c: FormatConfig): string | null {
  const fmt = c.data_format ?? "auto";
  if (!(DATA_FORMATS as readonly string[]).includes(fmt))
    return `"data_format" must be one of ${DATA_FORMATS.map((f) => `"${f}"`).join(", ")}, got ${JSON.stringify(fmt)}`;
  if (c.winner_values != null) {
    const p = winnerValuesProblem(c.winner_values);
    if (p) return p;
  }
  if (c.score_fields != null) {
    const s = c.score_fields;
    if (!Array.isArray(s) || s.length !== 2 || s.some((x) => typeof x !== "string" || x === "") || s[0] === s[1])
      return `"score_fields" must be two different field names, the scores of answer a and of answer b (e.g. ["score_0", "score_1"]), got ${JSON.stringify(s)}`;
  }
  const winner = c.winner_field != null;
  const scores = c.score_fields != null;
  if (winner && scores) return `set either "winner_field" (a column that names the winner) or "score_fields" (two score columns), not both`;
  if (fmt === "hh_rlhf" && (winner || scores || c.a_field != null || c.b_field != null))
    return `"data_format" hh_rlhf reads chosen and rejected dialogues; winner_field, score_fields, a_field and b_field do not apply (use data_format generic for them)`;
  if (fmt === "hh_rlhf" && typeof c.prompt_field === "string")
    return `"data_format" hh_rlhf infers the prompt from the dialogues (up to the last "\\n\\nAssistant:"); to read a prompt field, use data_format generic with prompt_field=${c.prompt_field}`;
  if (fmt === "webgpt" && winner) return `"data_format" webgpt decides by score_0 and score_1; "winner_field" does not apply (score_fields renames the scores)`;
  if (fmt === "chatbot_arena" && scores) return `"data_format" chatbot_arena decides by the winner column; "score_fields" does not apply (winner_field renames it)`;
  const mapped = winner || scores || fmt === "chatbot_arena" || fmt === "webgpt";
  if (!mapped && (c.a_field != null || c.b_field != null))
    return `"a_field" and "b_field" name the two answers of the winner or score mapping; set "winner_field" or "score_fields" too (or data_format chatbot_arena or webgpt)`;
  if ((winner || scores) && (c.a_field == null || c.b_field == null) && fmt !== "chatbot_arena" && fmt !== "webgpt")
    return `${winner ? `"winner_field"` : `"score_fields"`} needs "a_field" and "b_field", the fields that hold the two answers (e.g. a_field=response_a, b_field=response_b)`;
  if ((mapped || fmt === "hh_rlhf") && ((c.chosen_field ?? "chosen") !== "chosen" || (c.rejected_field ?? "rejected") !== "rejected"))
    return `"chosen_field" and "rejected_field" do not apply to ${winner || scores ? (winner ? "the winner mapping" : "the score mapping") : `data_format ${fmt}`}, which decides per row which answer is chosen; ${fmt === "hh_rlhf" ? "use data_format generic to rename them" : "a_field and b_field name the answers"}`;
  if (c.winner_values != null && !winner && fmt !== "chatbot_arena" && fmt !== "auto")
    return `"winner_values" says what the values of winner_field mean; set "winner_field" too (or data_format chatbot_arena)`;
  if (c.webgpt_quotes === true && fmt !== "webgpt" && fmt !== "auto")
    return `"webgpt_quotes" applies to WebGPT Comparisons only; set data_format to webgpt (or auto), or remove webgpt_quotes`;
  if (fmt === "webgpt" && c.prompt_field === null)
    return `"data_format" webgpt takes the prompt from question.full_text; prompt_field null (infer it) does not apply`;
  return null;
}

function winnerValuesProblem(v: unknown): string | null {
  const example = `e.g. {"a": ["model_a"], "b": ["model_b"], "tie": ["tie", "tie (bothbad)"]}`;
  if (v === null || typeof v !== "object" || Array.isArray(v)) return `"winner_values" must be an object of value lists, ${example}; got ${describeValue(v)}`;
  const o = v as Record<string, unknown>;
  const extra = Object.keys(o).filter((k) => k !== "a" && k !== "b" && k !== "tie");
  if (extra.length > 0) return `"winner_values" has ${listNames(extra)}; its keys are "a", "b" and "tie" (${example})`;
  const seen = new Map<string, string>();
  for (const side of ["a", "b", "tie"] as const) {
    const list = o[side];
    if (list === undefined && side === "tie") continue;
    if (!Array.isArray(list) || list.length === 0 || list.some((x) => typeof x !== "string" && typeof x !== "number" && typeof x !== "boolean"))
      return `"winner_values"."${side}" must be a non-empty list of values (text, numbers or booleans)${side === "tie" ? " or left out" : ""}, ${example}; got ${describeValue(list)}`;
    for (const x of list as unknown[]) {
      const s = String(x);
      const other = seen.get(s);
      if (other !== undefined && other !== side) return `"winner_values" lists ${JSON.stringify(s)} under both "${other}" and "${side}"; each value must mean one thing`;
      seen.set(s, side);
    }
  }
  return null;
}

/** winner_values as given (already checked) → lists of text. */
export function toWinnerValues(v: unknown): WinnerValues | null {
  if (v == null) return null;
  const o = v as Record<string, unknown[] | undefined>;
  return { a: (o.a ?? []).map(String), b: (o.b ?? []).map(String), tie: (o.tie ?? []).map(String) };
}

// ---------------------------------------------------------------------------------------------------------------
// Layouts

/** A row after the layout: a row for normalizeRow with its options, or a drop decided by the verdict. */
export type MappedRow =
  | { kind: "row"; row: RawRow; options: NormalizeOptions }
  | { kind: "drop"; reason: DropReason; detail: string };

export interface Layout {
  /** The layout the rows are read with. */
  readonly format: Exclude<DataFormat, "auto">;
  /** "pairs": chosen/rejected as the field mapping says (normalize.ts does everything); else a verdict decides. */
  readonly kind: "pairs" | "winner" | "scores";
  /** The data summary's line when the layout was recognised rather than set, else null. */
  readonly note: string | null;
  /** Columns the layout needs, each with the key that renames it and what it holds, for messages. */
  readonly required: readonly { column: string; key: string; what: string }[];
  /** Parquet: the columns to read besides the mapped ones (given all of the file's columns). */
  moreColumns(all: readonly string[]): string[];
  /** The layout's settings in config-key words, for messages: "data_format chatbot_arena (winner_field=winner, …)". */
  readonly described: string;
  map(row: RawRow): MappedRow;
}

/**
 * The layout for a file with these columns (Parquet, CSV, TSV) or first-row keys (JSON), and the first row's value
 * when there is one. Throws a TsdpoError when the columns almost match a named layout (`at` names the file, or the
 * file and line of the first row). Never reads the file.
 */
export function chooseLayout(at: string, keys: readonly string[] | null, o: NormalizeOptions & FormatOptions, first?: unknown): Layout {
  const fmt = o.dataFormat ?? "auto";
  let layout: Layout;
  switch (fmt) {
    case "chatbot_arena":
      layout = arenaLayout(o, null);
      break;
    case "webgpt":
      layout = webgptLayout(at, o, null);
      break;
    case "hh_rlhf":
      layout = hhLayout(o, null);
      break;
    case "generic":
      layout = genericLayout(o);
      break;
    case "auto":
      layout = o.winnerField != null || o.scoreFields != null ? genericLayout(o) : recognise(at, keys, o, first);
      break;
  }
  if (o.webgptQuotes && layout.format !== "webgpt")
    throw configError(
      `${at}: webgpt_quotes is set, but the file is read as ${layout.described}, not WebGPT Comparisons` +
        `${keys ? ` (columns: ${listNames(keys)})` : ""}; remove webgpt_quotes, or set data_format to webgpt if the file is WebGPT's`,
    );
  if (o.winnerValues != null && layout.kind !== "winner")
    throw configError(
      `${at}: winner_values is set, but the file is read as ${layout.described}, which has no winner column` +
        `${keys ? ` (columns: ${listNames(keys)})` : ""}; set winner_field (with a_field and b_field) or data_format chatbot_arena`,
    );
  return layout;
}

/** data_format auto: a named layout when the columns match one, an error when they almost do, else generic. */
function recognise(at: string, keys: readonly string[] | null, o: NormalizeOptions & FormatOptions, first: unknown): Layout {
  const cf = o.chosenField ?? "chosen";
  const rf = o.rejectedField ?? "rejected";
  // Renamed answer fields say how to read the file: the field mapping, not a guess.
  if (keys === null || cf !== "chosen" || rf !== "rejected") return genericLayout(o);
  const has = (k: string): boolean => keys.includes(k);
  const pairs = has(cf) && has(rf);
  if (!pairs && has(ARENA.winner) && has(ARENA.a) && has(ARENA.b))
    return arenaLayout(o, `recognised as ${NAMES.chatbot_arena} (${ARENA.winner}/${ARENA.a}/${ARENA.b}); set data_format to override`);
  if (!pairs && has(WEBGPT.question) && has(WEBGPT.a) && has(WEBGPT.b) && has(WEBGPT.scores[0]) && has(WEBGPT.scores[1]))
    return webgptLayout(at, o, `recognised as ${NAMES.webgpt} (question/answer_0/answer_1/score_0/score_1); set data_format to override`);
  if (
    pairs && keys.length === 2 && o.promptField === undefined &&
    first !== null && typeof first === "object" && typeof (first as Record<string, unknown>).chosen === "string" &&
    ((first as Record<string, unknown>).chosen as string).startsWith(HH_START)
  )
    return hhLayout(o, `recognised as ${NAMES.hh_rlhf} (chosen/rejected dialogues of "\\n\\nHuman:" and "\\n\\nAssistant:" turns; the prompt is the dialogue up to the last "\\n\\nAssistant:"); set data_format to override`);
  if (!pairs) {
    const advice = nearMiss(keys);
    if (advice !== null) throw inputError(`${at}: ${advice}`);
  }
  return genericLayout(o);
}

/**
 * What to say about a file that has no chosen/rejected but almost matches a named layout, or holds two answers and a
 * verdict under other names: the mapping that reads it, with its own column names. null when nothing fits.
 */
export function nearMiss(keys: readonly string[]): string | null {
  const has = (k: string): boolean => keys.includes(k);
  const cols = `the columns are ${listNames(keys)}`;
  const arena = [ARENA.winner, ARENA.a, ARENA.b];
  const arenaMissing = arena.filter((k) => !has(k));
  if (arenaMissing.length === 1) {
    const winner = has(ARENA.winner) ? ARENA.winner : (verdictColumn(keys) ?? "<the column that says which answer won>");
    return (
      `almost ${NAMES.chatbot_arena} (${arena.join(", ")}) but has no ${JSON.stringify(arenaMissing[0])} (${cols}); read it with ` +
      `the winner mapping: winner_field=${winner}, a_field=${has(ARENA.a) ? ARENA.a : "<answer a's column>"}, ` +
      `b_field=${has(ARENA.b) ? ARENA.b : "<answer b's column>"}, prompt_field=null, and winner_values for its verdicts`
    );
  }
  const web = [WEBGPT.question, WEBGPT.a, WEBGPT.b, ...WEBGPT.scores];
  const webMissing = web.filter((k) => !has(k));
  // Only with a score column: question and two answers beside a verdict column are the winner mapping's (below).
  if (webMissing.length > 0 && webMissing.length <= 2 && (has(WEBGPT.scores[0]) || has(WEBGPT.scores[1]))) {
    const or = (k: string, alt: string): string => (has(k) ? k : alt);
    return (
      `almost ${NAMES.webgpt} (${web.join(", ")}) but has no ${listNames(webMissing)} (${cols}); read it with the score ` +
      `mapping: score_fields=["${or(WEBGPT.scores[0], "<answer a's score>")}", "${or(WEBGPT.scores[1], "<answer b's score>")}"], ` +
      `a_field=${or(WEBGPT.a, "<answer a's column>")}, b_field=${or(WEBGPT.b, "<answer b's column>")}, prompt_field=<the question's column>`
    );
  }
  const pair = answerPair(keys);
  if (pair === null) return null;
  const verdict = verdictColumn(keys);
  if (verdict !== null)
    return (
      `holds two answers (${pair[0]}, ${pair[1]}) and a verdict (${verdict}) rather than "chosen" and "rejected" (${cols}); read it ` +
      `with the winner mapping: winner_field=${verdict}, a_field=${pair[0]}, b_field=${pair[1]}, and winner_values for what its ` +
      `values mean (default ${JSON.stringify(DEFAULT_WINNER_VALUES)})`
    );
  const scores = scorePair(keys);
  if (scores !== null)
    return (
      `holds two answers (${pair[0]}, ${pair[1]}) and their scores (${scores[0]}, ${scores[1]}) rather than "chosen" and "rejected" ` +
      `(${cols}); read it with the score mapping: score_fields=["${scores[0]}", "${scores[1]}"], a_field=${pair[0]}, b_field=${pair[1]}`
    );
  return null;
}

/** Two columns that differ only in an a/b, A/B or 0/1 or 1/2 ending, and could hold answers (not scores, ids, models). */
function answerPair(keys: readonly string[]): [string, string] | null {
  const found: [string, string][] = [];
  for (const k of keys) {
    const m = /^(.*?)(a|A|0|1)$/.exec(k);
    if (!m) continue;
    const next = { a: "b", A: "B", "0": "1", "1": "2" }[m[2] as "a" | "A" | "0" | "1"];
    const other = m[1] + next;
    if (keys.includes(other) && !isHarmlessKey(k) && !isHarmlessKey(other)) found.push([k, other]);
  }
  const answerLike = found.find(([k]) => /answer|response|completion|output|conversation|reply|generation|text/i.test(k));
  return answerLike ?? found[0] ?? null;
}

function scorePair(keys: readonly string[]): [string, string] | null {
  for (const k of keys) {
    const m = /^(.*(?:score|rating|reward).*?)(a|A|0|1)$/i.exec(k);
    if (!m) continue;
    const other = m[1] + { a: "b", A: "B", "0": "1", "1": "2" }[m[2] as "a" | "A" | "0" | "1"];
    if (keys.includes(other)) return [k, other];
  }
  return null;
}

function verdictColumn(keys: readonly string[]): string | null {
  return keys.find((k) => /^(winner|winner_.*|.*_winner|preference|preferred|choice|better|verdict)$/i.test(k)) ?? null;
}

// --- the layouts --------------------------------------------------------------------------------------------------

function genericLayout(o: NormalizeOptions & FormatOptions): Layout {
  if (o.winnerField != null)
    return winnerLayout("generic", null, o, {
      winner: o.winnerField, a: o.aField!, b: o.bField!, values: o.winnerValues ?? DEFAULT_WINNER_VALUES, prompt: o.promptField,
    });
  if (o.scoreFields != null)
    return scoreLayout("generic", null, o, { scores: o.scoreFields, a: o.aField!, b: o.bField!, prompt: o.promptField });
  return {
    format: "generic",
    kind: "pairs",
    note: null,
    required: [],
    moreColumns: (all) => guardColumns(all, o.promptField),
    described: "data_format generic",
    map: (row) => ({ kind: "row", row, options: o }),
  };
}

function hhLayout(o: NormalizeOptions & FormatOptions, note: string | null): Layout {
  const normalize: NormalizeOptions = { ...o, promptField: null };
  const cf = o.chosenField ?? "chosen";
  const rf = o.rejectedField ?? "rejected";
  return {
    format: "hh_rlhf",
    kind: "pairs",
    note,
    required: [
      { column: cf, key: "chosen_field", what: "the preferred dialogue" },
      { column: rf, key: "rejected_field", what: "the other dialogue" },
    ],
    moreColumns: () => [],
    described: "data_format hh_rlhf (chosen and rejected dialogues, prompt inferred)",
    map: (row) => ({ kind: "row", row, options: normalize }),
  };
}

function arenaLayout(o: NormalizeOptions & FormatOptions, note: string | null): Layout {
  return winnerLayout("chatbot_arena", note, o, {
    winner: o.winnerField ?? ARENA.winner,
    a: o.aField ?? ARENA.a,
    b: o.bField ?? ARENA.b,
    values: o.winnerValues ?? ARENA_VALUES,
    // The two conversations share their user turns: the prompt is those, inferred on purpose (the file's other text
    // columns, judge and model names, are not the prompt).
    prompt: o.promptField === undefined ? null : o.promptField,
  });
}

interface WinnerSpec {
  winner: string;
  a: string;
  b: string;
  values: WinnerValues;
  prompt: string | null | undefined;
}

function winnerLayout(format: Layout["format"], note: string | null, o: NormalizeOptions & FormatOptions, s: WinnerSpec): Layout {
  const described =
    `${format === "generic" ? "the winner mapping" : `data_format ${format}`} (winner_field=${s.winner}, a_field=${s.a}, ` +
    `b_field=${s.b}, winner_values=${JSON.stringify(s.values)})`;
  const normalize: NormalizeOptions = { ...o, promptField: s.prompt };
  const lookup = new Map<string, "a" | "b" | "tie">();
  for (const side of ["a", "b", "tie"] as const) for (const v of s.values[side]) lookup.set(v, side);
  return {
    format,
    kind: "winner",
    note,
    required: [
      { column: s.winner, key: "winner_field", what: "which answer won" },
      { column: s.a, key: "a_field", what: "answer a" },
      { column: s.b, key: "b_field", what: "answer b" },
      ...(typeof s.prompt === "string" ? [{ column: s.prompt, key: "prompt_field", what: "the prompt" }] : []),
    ],
    moreColumns: (all) => [s.winner, s.a, s.b, ...guardColumns(all, s.prompt)],
    described,
    map(row) {
      const obj = objectOf(row);
      if (obj === null) return { kind: "row", row, options: normalize }; // normalizeRow reports a bad line or a non-object
      const w = obj[s.winner];
      if (w === undefined) throw missing(obj, s.winner, "winner_field", "which answer won", described);
      if (w === null || typeof w === "object")
        throw new RowProblem(s.winner, `is ${describeValue(w)}; it must say which answer won, one of the values in winner_values (now ${JSON.stringify(s.values)})`);
      const side = lookup.get(String(w));
      if (side === undefined)
        throw new RowProblem(
          s.winner,
          `is ${JSON.stringify(w)}, which winner_values does not list (now ${JSON.stringify(s.values)}); add it to the "a", "b" or "tie" list of winner_values, or fix the row`,
        );
      if (side === "tie")
        return { kind: "drop", reason: "tie", detail: `${s.winner} is ${JSON.stringify(w)}, a tie: neither answer is preferred, so DPO has no pair to learn from` };
      return answersRow(row, obj, side, s.a, s.b, [s.winner], normalize, described);
    },
  };
}

interface ScoreSpec {
  scores: readonly [string, string];
  a: string;
  b: string;
  prompt: string | null | undefined;
}

function scoreLayout(format: Layout["format"], note: string | null, o: NormalizeOptions & FormatOptions, s: ScoreSpec): Layout {
  const described = `the score mapping (score_fields=${JSON.stringify(s.scores)}, a_field=${s.a}, b_field=${s.b})`;
  const normalize: NormalizeOptions = { ...o, promptField: s.prompt };
  return {
    format,
    kind: "scores",
    note,
    required: [
      { column: s.scores[0], key: "score_fields", what: "answer a's score" },
      { column: s.scores[1], key: "score_fields", what: "answer b's score" },
      { column: s.a, key: "a_field", what: "answer a" },
      { column: s.b, key: "b_field", what: "answer b" },
      ...(typeof s.prompt === "string" ? [{ column: s.prompt, key: "prompt_field", what: "the prompt" }] : []),
    ],
    moreColumns: (all) => [...s.scores, s.a, s.b, ...guardColumns(all, s.prompt)],
    described,
    map(row) {
      const obj = objectOf(row);
      if (obj === null) return { kind: "row", row, options: normalize };
      const v = scoreVerdict(obj, s.scores, described);
      if (v.side === "tie") return { kind: "drop", reason: "tie", detail: v.detail };
      return answersRow(row, obj, v.side, s.a, s.b, s.scores, normalize, described);
    },
  };
}

/** a, b or a tie from two scores; a missing or non-numeric score is an error of the row. */
function scoreVerdict(obj: Record<string, unknown>, scores: readonly [string, string], described: string): { side: "a" | "b" } | { side: "tie"; detail: string } {
  const [sa, sb] = scores.map((f, i) => {
    const v = obj[f];
    if (v === undefined) throw missing(obj, f, "score_fields", `answer ${i === 0 ? "a" : "b"}'s score`, described);
    // CSV cells are text: "0.5" is a score there.
    const x = typeof v === "number" ? v : typeof v === "string" && v.trim() !== "" ? Number(v) : NaN;
    if (!Number.isFinite(x)) throw new RowProblem(f, `is ${describeValue(v)}; it must be a number, the score of answer ${i === 0 ? "a" : "b"} (the higher score wins)`);
    return x;
  }) as [number, number];
  if (sa === sb) return { side: "tie", detail: `${scores[0]} and ${scores[1]} are both ${sa}, a tie: neither answer is preferred, so DPO has no pair to learn from` };
  return { side: sa > sb ? "a" : "b" };
}

/** The row for normalizeRow with the winning answer as chosen; the verdict columns are left out of it. */
function answersRow(
  row: RawRow,
  obj: Record<string, unknown>,
  side: "a" | "b",
  a: string,
  b: string,
  verdict: readonly string[],
  normalize: NormalizeOptions,
  described: string,
): MappedRow {
  if (obj[a] === undefined) throw missing(obj, a, "a_field", "answer a", described);
  if (obj[b] === undefined) throw missing(obj, b, "b_field", "answer b", described);
  // Without the verdict, so that the check for a renamed prompt does not take "model_a" for a prompt.
  const value = Object.fromEntries(Object.entries(obj).filter(([k]) => !verdict.includes(k)));
  const [cf, rf] = side === "a" ? [a, b] : [b, a];
  return { kind: "row", row: { pos: row.pos, value }, options: { ...normalize, chosenField: cf, rejectedField: rf } };
}

function webgptLayout(at: string, o: NormalizeOptions & FormatOptions, note: string | null): Layout {
  if (o.promptField === null)
    throw configError(`${at}: WebGPT Comparisons take the prompt from question.full_text; prompt_field null (infer it) does not apply, so remove it (or set data_format generic)`);
  const scores = o.scoreFields ?? WEBGPT.scores;
  const a = o.aField ?? WEBGPT.a;
  const b = o.bField ?? WEBGPT.b;
  const quotes = o.webgptQuotes === true;
  // The prompt: question.full_text, unless prompt_field names a column that holds it.
  const pf = typeof o.promptField === "string" ? o.promptField : null;
  const promptKey = pf ?? `${WEBGPT.question}.full_text`;
  const described =
    `data_format webgpt (score_fields=${JSON.stringify(scores)}, a_field=${a}, b_field=${b}, prompt ${pf ?? "question.full_text"}` +
    `${quotes ? ", webgpt_quotes" : ""})`;
  const normalize: NormalizeOptions = { ...o, promptField: promptKey };
  return {
    format: "webgpt",
    kind: "scores",
    note,
    required: [
      { column: scores[0], key: "score_fields", what: "answer a's score" },
      { column: scores[1], key: "score_fields", what: "answer b's score" },
      { column: a, key: "a_field", what: "answer a" },
      { column: b, key: "b_field", what: "answer b" },
      { column: pf ?? WEBGPT.question, key: "prompt_field", what: "the question" },
      ...(quotes ? WEBGPT.quotes.map((q) => ({ column: q, key: "webgpt_quotes", what: "the quotes of an answer" })) : []),
    ],
    moreColumns: () => [...scores, a, b, pf ?? WEBGPT.question, ...(quotes ? WEBGPT.quotes : [])],
    described,
    map(row) {
      const obj = objectOf(row);
      if (obj === null) return { kind: "row", row, options: normalize };
      const v = scoreVerdict(obj, scores, described);
      if (v.side === "tie") return { kind: "drop", reason: "tie", detail: v.detail };
      let prompt: unknown;
      if (pf !== null) {
        prompt = obj[pf];
        if (prompt === undefined) throw missing(obj, pf, "prompt_field", "the question", described);
      } else {
        const q = obj[WEBGPT.question];
        if (q === undefined) throw missing(obj, WEBGPT.question, "prompt_field", "the question", described);
        if (q === null || typeof q !== "object" || Array.isArray(q))
          throw new RowProblem(
            WEBGPT.question,
            `is ${describeValue(q)}; WebGPT's question is an object {"full_text", "dataset", "id"}${typeof q === "string" ? `; if this column holds the question text itself, set prompt_field=${WEBGPT.question}` : ""}`,
          );
        prompt = (q as Record<string, unknown>).full_text;
        if (typeof prompt !== "string")
          throw new RowProblem(promptKey, `is ${describeValue(prompt)}; it must be the question's text, which is the prompt`);
        if (prompt === "") throw new RowProblem(promptKey, `is an empty string; the question is the prompt, so fill it in or remove the row`);
      }
      if (obj[a] === undefined) throw missing(obj, a, "a_field", "answer a", described);
      if (obj[b] === undefined) throw missing(obj, b, "b_field", "answer b", described);
      const answer = (field: string, i: 0 | 1): unknown => {
        const text = obj[field];
        // Anything but a non-empty string is left for normalizeRow to report in its own words.
        if (!quotes || typeof text !== "string" || text === "") return text;
        return webgptAnswer(WEBGPT.quotes[i], obj[WEBGPT.quotes[i]], text);
      };
      const value = { [promptKey]: prompt, [a]: answer(a, 0), [b]: answer(b, 1) };
      const [cf, rf] = v.side === "a" ? [a, b] : [b, a];
      return { kind: "row", row: { pos: row.pos, value }, options: { ...normalize, chosenField: cf, rejectedField: rf } };
    },
  };
}

/**
 * webgpt_quotes: an answer with the quotes the WebGPT model collected for it, in front of it as the model had them
 * in context when it wrote the answer:
 *
 *   "\n\nQuotes:\n[1] <title>\n<extract>\n\n[2] <title>\n<extract>\n\nAnswer: <answer>"     ("(none)" for no quotes)
 *
 * Numbered from 1 in the file's order, because the answers cite them that way ("… [1][2]"). Each answer has its own
 * quotes, so they cannot be part of the shared prompt: they are part of each answer's text, and so of its log-prob.
 * That is DPO with x = the question and y = (quotes, answer), which is what the raters compared. The exact prefix
 * WebGPT used exists only as GPT-2 token ids (tokens_0/tokens_1), which tsdpo does not decode; this rendering is
 * tsdpo's own. A title is "<page title> (<domain>)" as the file has it.
 */
export function webgptAnswer(field: string, quotes: unknown, answer: string): string {
  const items = quoteList(field, quotes);
  const block = items.length === 0 ? "(none)" : items.map((q, i) => `[${i + 1}] ${q.title}\n${q.extract}`).join("\n\n");
  return `\n\nQuotes:\n${block}\n\nAnswer: ${answer}`;
}

/** {title: [...], extract: [...]} (the published layout) or [{title, extract}, …] → a list of quotes. */
function quoteList(field: string, v: unknown): { title: string; extract: string }[] {
  if (v === undefined)
    throw new RowProblem(field, `is missing; webgpt_quotes puts each answer's quotes in front of it, so the row needs ${field} (or set webgpt_quotes to false)`);
  const text = (x: unknown, at: string): string => {
    if (typeof x !== "string") throw new RowProblem(at, `is ${describeValue(x)}; a quote's title and extract must be text`);
    return x;
  };
  if (Array.isArray(v))
    return v.map((q, i) => {
      if (q === null || typeof q !== "object" || Array.isArray(q)) throw new RowProblem(`${field}[${i}]`, `is ${describeValue(q)}; a quote is {"title", "extract"}`);
      const r = q as Record<string, unknown>;
      return { title: text(r.title, `${field}[${i}].title`), extract: text(r.extract, `${field}[${i}].extract`) };
    });
  if (v === null || typeof v !== "object")
    throw new RowProblem(field, `is ${describeValue(v)}; WebGPT's quotes are {"title": [...], "extract": [...]}`);
  const { title, extract } = v as Record<string, unknown>;
  if (!Array.isArray(title) || !Array.isArray(extract))
    throw new RowProblem(field, `has title ${describeValue(title)} and extract ${describeValue(extract)}; WebGPT's quotes are {"title": [...], "extract": [...]}, one title per extract`);
  if (title.length !== extract.length)
    throw new RowProblem(field, `has ${title.length} titles but ${extract.length} extracts; each quote is one title and one extract`);
  return title.map((t, i) => ({ title: text(t, `${field}.title[${i}]`), extract: text(extract[i], `${field}.extract[${i}]`) }));
}

// --- helpers --------------------------------------------------------------------------------------------------------

function objectOf(row: RawRow): Record<string, unknown> | null {
  if (row.parseError !== undefined) return null;
  const v = row.value;
  return v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
}

function missing(obj: Record<string, unknown>, field: string, key: string, what: string, described: string): RowProblem {
  return new RowProblem(field, `is missing (the row has keys ${listKeys(obj)}); add it, or set ${key} to the key that holds ${what} (now: ${described})`);
}

/**
 * Parquet: when the prompt may be inferred, the columns that could be the prompt under another name (normalizeRow
 * refuses to guess the prompt while one of them is there; see isHarmlessKey). Same rule as the plain mapping.
 */
function guardColumns(all: readonly string[], promptField: string | null | undefined): string[] {
  if (promptField !== undefined) return typeof promptField === "string" ? [promptField] : [];
  return all.includes("prompt") ? [] : all.filter((c) => !isHarmlessKey(c));
}

/** Every column a layout could read, for readRows (JSON: tells a one-row file from an object that wraps rows). */
export function candidateColumns(o: NormalizeOptions & FormatOptions): string[] {
  return [
    ...new Set(
      [
        o.chosenField ?? "chosen", o.rejectedField ?? "rejected", o.promptField === null ? undefined : (o.promptField ?? "prompt"),
        o.winnerField, o.aField, o.bField, ...(o.scoreFields ?? []),
        ARENA.winner, ARENA.a, ARENA.b, WEBGPT.question, WEBGPT.a, WEBGPT.b, ...WEBGPT.scores, TOOLS_KEY,
      ].filter((x): x is string => typeof x === "string"),
    ),
  ];
}
