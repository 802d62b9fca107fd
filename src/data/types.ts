// The structures the preference-data pipeline passes along, in the order they appear:
//
//   file ─► RawRow (value + where it came from) ─► PreferencePair (text) ─► TokenizedPair (ids) ─► batch (see batch.ts)
//
// Every row keeps its SourcePos to the end, so any error, drop or warning can name the file and line. Rows that are
// malformed become RowIssue entries (the invalid report), well-formed rows that cannot be used become DroppedPair
// entries with a DropReason, and DataStats counts all of them: nothing leaves the pipeline unaccounted for.

export type FileFormat = "jsonl" | "json" | "parquet" | "csv" | "tsv";

export interface SourcePos {
  /** The path as the user gave it. */
  readonly file: string;
  readonly format: FileFormat;
  /**
   * 1-based line where the row starts (JSONL, JSON; CSV/TSV: the physical line of the record's first cell, so a
   * quoted cell holding line breaks does not shift the rows after it); null for Parquet, which has no lines.
   */
  readonly line: number | null;
  /**
   * 0-based position among the file's rows: array index (JSON), row index (Parquet), non-blank line count (JSONL),
   * record count after the header (CSV/TSV).
   */
  readonly index: number;
}

/** "data.jsonl:12", "data.json:7 (item 2)", "data.parquet (row 5)": the prefix of every message about a row. */
export function where(pos: SourcePos): string {
  switch (pos.format) {
    case "jsonl":
    case "csv":
    case "tsv":
      return `${pos.file}:${pos.line}`;
    case "json":
      return `${pos.file}:${pos.line} (item ${pos.index})`;
    case "parquet":
      return `${pos.file} (row ${pos.index})`;
  }
}

export interface ChatMessage {
  role: string;
  content: string;
}

/** One tool (function) definition for the chat template's `tools` variable: a JSON object, passed as is. */
export type ToolSpec = { readonly [key: string]: unknown };

/**
 * Renders messages to text with the model's chat template, with the row's tool definitions when it has any (absent:
 * the template sees no `tools` at all). normalize.ts takes it as a parameter, so that tests can pass a stand-in;
 * loadPreferences builds the real one from the model's tokenizer (chatRendererFor + renderChat).
 */
export type ChatRenderer = (messages: readonly ChatMessage[], addGenerationPrompt: boolean, tools?: readonly ToolSpec[]) => string;

export type PairShape = "standard" | "implicit" | "conversational" | "conversational-implicit";

/**
 * The one structure every input shape is normalised into. prompt + chosen is exactly the text of the preferred
 * sequence and prompt + rejected that of the other one; the split point is where the answer starts, so the loss
 * counts only the answer's tokens.
 */
export interface PreferencePair {
  readonly source: SourcePos;
  /** Everything the model conditions on (chat template already applied for message lists). Never empty. */
  readonly prompt: string;
  /** The preferred answer, continuing prompt. Never empty; may be whitespace only (see the warnings). */
  readonly chosen: string;
  readonly rejected: string;
  /** Which input shape the row had, for reports. */
  readonly shape: PairShape;
}

/** A pair as token ids. The full chosen sequence is promptIds ++ chosenIds. */
export interface TokenizedPair {
  readonly source: SourcePos;
  /** (P) BOS when the model uses one, then the prompt's tokens. P >= 1. */
  readonly promptIds: Int32Array;
  /** (Cc) the answer's tokens, then EOS unless truncation cut it off. Cc >= 1. */
  readonly chosenIds: Int32Array;
  /** (Cr) as chosenIds. */
  readonly rejectedIds: Int32Array;
  /** Whether truncation shortened the prompt or either answer. */
  readonly truncated: boolean;
}

/** One malformed row (the invalid report) or one warning about a row that was kept. */
export interface RowIssue {
  readonly file: string;
  /** 1-based line (JSONL, JSON, CSV, TSV) or null (Parquet). */
  readonly line: number | null;
  /** 0-based row index within the file. */
  readonly index: number;
  /** Same position as text, e.g. "data.jsonl:12". */
  readonly where: string;
  /** The field at fault as named in the file, e.g. "chosen", "response_j", "prompt[1].role", or "row". */
  readonly field: string;
  /** What is wrong and how to fix it. */
  readonly reason: string;
}

/**
 * Why a well-formed pair was not used.
 * - identical: chosen and rejected are the same text; DPO gets no signal from such a pair (both log-ratios cancel).
 * - tie: the row's verdict says neither answer is preferred (winner_values' "tie" list, e.g. Chatbot Arena's "tie"
 *   and "tie (bothbad)"; equal scores, e.g. WebGPT's 0 and 0); DPO needs a preferred answer.
 * - multi-turn: two conversations that share their user turns but differ from an earlier assistant answer on
 *   (Chatbot Arena rows with more than one turn): they wait for the layout that scores every assistant turn on its
 *   own. (Dialogues that differ before their last turn otherwise load: each answer is the rest of its dialogue.)
 * - overlong: the pair is longer than the limits and the options say to drop rather than truncate.
 * - no-room-for-completion: the (truncated) prompt alone fills maxLength, so no answer token would remain.
 * - identical-after-truncation: the answers differ only after the point where truncation cut them.
 * - nothing-to-train: an SFT sequence with no token left for the loss to count once truncated (src/data/sft.ts).
 */
export type DropReason =
  | "identical"
  | "tie"
  | "multi-turn"
  | "overlong"
  | "no-room-for-completion"
  | "identical-after-truncation"
  | "nothing-to-train";
export const DROP_REASONS: readonly DropReason[] = [
  "identical",
  "tie",
  "multi-turn",
  "overlong",
  "no-room-for-completion",
  "identical-after-truncation",
  "nothing-to-train",
];

export interface DroppedPair {
  readonly file: string;
  readonly line: number | null;
  readonly index: number;
  readonly where: string;
  readonly reason: DropReason;
  /** Human-readable specifics (lengths, limits). Never empty. */
  readonly detail: string;
}

export function issueAt(pos: SourcePos, field: string, reason: string): RowIssue {
  return { file: pos.file, line: pos.line, index: pos.index, where: where(pos), field, reason };
}

export function dropAt(pos: SourcePos, reason: DropReason, detail: string): DroppedPair {
  return { file: pos.file, line: pos.line, index: pos.index, where: where(pos), reason, detail };
}
