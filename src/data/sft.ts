// Supervised fine-tuning data, in TRL SFTTrainer's vocabulary:
//
//   language modeling         {"text": str}                          (the field is dataset_text_field)
//   prompt-completion         {"prompt": str, "completion": str}
//   conversational            {"messages": [msg…]}                   rendered with the model's chat template
//   conversational p-c        {"prompt": [msg…], "completion": [msg…]}
//
// Each row becomes one token sequence and a per-token mask of the tokens the loss counts, with TRL's keys:
//   completion_only_loss  prompt-completion rows: only the completion counts. Unset (null) means on for such rows,
//                         as TRL's default; it does not apply to text or messages rows.
//   assistant_only_loss   conversations: only the assistant's turns count, each from the end of the template's
//                         generation prompt to the end of that turn as the template writes it (its end-of-turn marker
//                         included): what TRL's {% generation %} markers delimit. Off by default, so every token
//                         counts. A conversation without an assistant turn then has nothing to train: a row error.
//
// Tokenisation as the preference pipeline's (tokenize.ts): the sequence is encoded in pieces cut where the counted
// tokens start and stop (between prompt and completion, around each assistant turn), BOS once at the start, and
// exactly one end token at the end (EOS appended unless the text ends with an end-token string). The pieces are the
// same whichever mask is on, so the ids do not depend on the mask settings. Truncation: a sequence longer than
// max_length keeps its first max_length tokens (truncation_mode keep_start, TRL SFT's default) or BOS and its last
// ones (keep_end); a sequence left with no counted token is dropped ("nothing-to-train").
//
// packing: true puts the sequences two to a row of at most max_length tokens, best fit in decreasing length (TRL's
// "bfd" strategy, with at most two sequences per row: the attention kernels keep two sequences of a row apart, the
// second one seeing neither the first nor its positions, see src/data/pack.ts packSft).

import { configError, inputError } from "../errors.js";
import { renderChat } from "../tokenizer/chat.js";
import type { Tokenizer } from "../tokenizer/types.js";
import { type DataStats, capLimits, formatDataStats, formatIssues, itemStats, type PrepareOptions, readNormalized } from "./load.js";
import { checkMessages, chatRendererFor, describeValue, parseTools, RowProblem, runTemplate, TOOLS_KEY } from "./normalize.js";
import { listKeys, type RawRow } from "./read.js";
import { splitTrainEval } from "./split.js";
import { pairEncoder, type PairEncoder } from "./tokenize.js";
import { dropAt, where } from "./types.js";
import type { ChatMessage, ChatRenderer, DroppedPair, RowIssue, SourcePos, ToolSpec } from "./types.js";

export type SftShape = "text" | "prompt-completion" | "conversational" | "conversational prompt-completion";

/** One row as text: consecutive pieces of one sequence and whether each piece's tokens count in the loss. */
export interface SftExample {
  readonly source: SourcePos;
  readonly pieces: readonly string[];
  readonly trained: readonly boolean[];
  readonly shape: SftShape;
}

/** One SFT sequence as ids. Token 0 is never predicted, so trained[0] is 0. */
export interface TokenizedSft {
  readonly source: SourcePos;
  readonly ids: Int32Array; // (n)
  readonly trained: Uint8Array; // (n) 1 where the loss counts the prediction of this token from the ones before it
  readonly truncated: boolean;
}

export interface SftMasks {
  /** null: on for prompt-completion rows (TRL's default). */
  completionOnlyLoss: boolean | null;
  assistantOnlyLoss: boolean;
}

export interface SftRowOptions extends SftMasks {
  chat?: ChatRenderer;
  tools?: readonly ToolSpec[];
  /** The field of language-modeling rows (TRL's dataset_text_field). */
  textField: string;
}

/** What an SFT row looks like, for messages. */
export const SFT_ROW_EXAMPLE =
  `{"prompt": "...", "completion": "..."}, {"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]} or {"text": "..."}`;

/** Validates one row and cuts it into pieces with their mask (see the top of this file). */
export function normalizeSftRow(row: RawRow, o: SftRowOptions): SftExample {
  const cells = row.pos.format === "csv" || row.pos.format === "tsv";
  if (row.parseError !== undefined)
    throw new RowProblem("row", cells ? row.parseError : `is not valid JSON (${row.parseError}); each line must be one JSON object such as ${SFT_ROW_EXAMPLE}`);
  const v = row.value;
  if (v === null || typeof v !== "object" || Array.isArray(v)) throw new RowProblem("row", `is ${describeValue(v)}, not a JSON object; SFT rows look like ${SFT_ROW_EXAMPLE}`);
  const obj = v as Record<string, unknown>;
  const has = (k: string): boolean => obj[k] !== undefined && obj[k] !== null;
  const at = where(row.pos);
  if (has("messages")) {
    if (has("prompt") || has("completion")) throw new RowProblem("messages", `is given with "prompt"/"completion" in the same row; give a conversation or a prompt and completion, not both`);
    if (o.completionOnlyLoss === true)
      throw configError(`${at}: completion_only_loss is for prompt-completion rows, and this row is a conversation ("messages"); unset it, or use assistant_only_loss to train on the assistant's turns only`);
    if (!Array.isArray(obj.messages)) throw new RowProblem("messages", `is ${describeValue(obj.messages)}; it must be a list of {"role", "content"} messages`);
    const msgs = checkMessages("messages", obj.messages, false);
    return conversation(row.pos, msgs, null, rowTools(obj, o), o, "conversational");
  }
  if (has("chosen") && has("rejected"))
    throw configError(
      `${at}: this is a file of preference pairs ("chosen" and "rejected"); SFT trains on one answer per row, ${SFT_ROW_EXAMPLE}. ` +
        `To fine-tune on the chosen answers, write them as {"prompt", "completion"} rows (tsdpo's loader infers HH-RLHF's prompts: see bench/sft-dpo.mjs)`,
    );
  if (has("prompt") || has("completion")) {
    for (const k of ["prompt", "completion"])
      if (!has(k)) throw new RowProblem(k, `is missing (the row has keys ${listKeys(obj)}); a prompt-completion row needs both`);
    const { prompt, completion } = obj;
    const text = typeof prompt === "string";
    if (text !== (typeof completion === "string") || (!text && (!Array.isArray(prompt) || !Array.isArray(completion))))
      throw new RowProblem("completion", `is ${describeValue(completion)} and prompt is ${describeValue(prompt)}; give both as strings or both as lists of {"role", "content"} messages`);
    const completionOnly = o.completionOnlyLoss ?? true;
    if (text) {
      if (o.assistantOnlyLoss)
        throw configError(`${at}: assistant_only_loss is for conversations (message lists), and this row's prompt and completion are strings; unset it (completion_only_loss already trains on the completion alone)`);
      if (prompt === "") throw new RowProblem("prompt", `is an empty ${cells ? "cell" : "string"}; give the prompt text, or use a {"text": ...} row`);
      if (completion === "") throw new RowProblem("completion", `is an empty ${cells ? "cell" : "string"}; an empty completion has nothing to train`);
      return { source: row.pos, pieces: [prompt as string, completion as string], trained: [!completionOnly, true], shape: "prompt-completion" };
    }
    const p = checkMessages("prompt", prompt as unknown[], false);
    const c = checkMessages("completion", completion as unknown[], false);
    return conversation(row.pos, [...p, ...c], p.length, rowTools(obj, o), o, "conversational prompt-completion");
  }
  if (has(o.textField)) {
    const t = obj[o.textField];
    if (typeof t !== "string") throw new RowProblem(o.textField, `is ${describeValue(t)}; it must be the text to train on`);
    if (t === "") throw new RowProblem(o.textField, `is an empty ${cells ? "cell" : "string"}; it has nothing to train`);
    if (o.completionOnlyLoss === true) throw configError(`${at}: completion_only_loss is for prompt-completion rows, and this row is plain text ("${o.textField}"); unset it`);
    if (o.assistantOnlyLoss) throw configError(`${at}: assistant_only_loss is for conversations (message lists), and this row is plain text ("${o.textField}"); unset it`);
    return { source: row.pos, pieces: [t], trained: [true], shape: "text" };
  }
  throw new RowProblem("row", `has none of "messages", "prompt" and "completion", or "${o.textField}" (keys: ${listKeys(obj)}); SFT rows look like ${SFT_ROW_EXAMPLE}`);
}

function rowTools(obj: Record<string, unknown>, o: SftRowOptions): readonly ToolSpec[] | undefined {
  const raw = obj[TOOLS_KEY];
  return raw !== undefined && raw !== null && raw !== "" ? parseTools(raw, (reason) => new RowProblem(TOOLS_KEY, reason)) : o.tools;
}

/**
 * A conversation rendered once whole, cut where each assistant turn starts and ends (and, for a prompt-completion
 * row, where the completion starts). A turn's span is found by rendering the conversation up to it with the generation
 * prompt and up to its end without: both must be prefixes of the whole rendering, or the template is not one whose
 * turns can be told apart (a row error).
 */
function conversation(
  pos: SourcePos, msgs: ChatMessage[], promptCount: number | null, tools: readonly ToolSpec[] | undefined, o: SftRowOptions, shape: SftShape,
): SftExample {
  const chat = o.chat;
  const field = promptCount === null ? "messages" : "completion";
  if (!chat)
    throw configError(
      `${where(pos)}: ${field}: is a list of chat messages, which needs the model's chat template to become text; use a model that ` +
        `ships a chat template (tokenizer.chat_template), or convert the rows to strings`,
    );
  const full = runTemplate(chat, msgs, false, field, tools);
  const prefix = (upto: number, gen: boolean, what: string): number => {
    const text = runTemplate(chat, msgs.slice(0, upto), gen, field, tools);
    if (!full.startsWith(text)) {
      let d = 0;
      while (d < text.length && text[d] === full[d]) d++;
      throw new RowProblem(
        `${field}`,
        `the chat template renders ${what} so that it is not the start of the whole conversation (they differ at character ${d}: ` +
          `${JSON.stringify(text.slice(d, d + 24))} against ${JSON.stringify(full.slice(d, d + 24))}), so the tokens of each turn ` +
          `cannot be told apart; give the rows as strings, or use a template that renders a conversation turn by turn`,
      );
    }
    return text.length;
  };
  const assistant: [number, number][] = [];
  msgs.forEach((m, k) => {
    if (m.role === "assistant") assistant.push([k === 0 ? 0 : prefix(k, true, `the conversation before message ${k}`), prefix(k + 1, false, `the conversation up to message ${k}`)]);
  });
  const completionStart = promptCount === null ? 0 : prefix(promptCount, true, "the prompt");
  if (promptCount !== null && completionStart === full.length) throw new RowProblem("completion", `renders to no text after the prompt; the chat template dropped it`);
  if (o.assistantOnlyLoss && assistant.length === 0)
    throw new RowProblem(
      field,
      `has no assistant turn (roles: ${msgs.map((m) => m.role).join(", ")}), and assistant_only_loss is on, so none of its tokens ` +
        `would be trained; add the assistant's answer, skip such rows with skip_invalid, or set assistant_only_loss to false to train on every token`,
    );
  const cuts = [...new Set([0, completionStart, ...assistant.flat(), full.length])].filter((c) => c <= full.length).sort((a, b) => a - b);
  const completionOnly = promptCount !== null && (o.completionOnlyLoss ?? true);
  const pieces: string[] = [];
  const trained: boolean[] = [];
  for (let i = 0; i + 1 < cuts.length; i++) {
    const [a, b] = [cuts[i]!, cuts[i + 1]!];
    if (a === b) continue;
    const inAssistant = assistant.some(([s, e]) => a >= s && b <= e);
    pieces.push(full.slice(a, b));
    trained.push((!completionOnly || a >= completionStart) && (!o.assistantOnlyLoss || inAssistant));
  }
  return { source: pos, pieces, trained, shape };
}

/** Ids and mask of one row, truncated to maxLength (null: no limit); null when no counted token is left. */
export function tokenizeSft(
  e: SftExample, enc: PairEncoder, tok: Tokenizer, maxLength: number | null, mode: "keep_start" | "keep_end",
): { kind: "seq"; seq: TokenizedSft } | { kind: "drop"; detail: string } {
  const parts = enc.segments(e.pieces);
  let ids: number[] = [];
  let trained: number[] = [];
  parts.forEach((p, i) => {
    ids = ids.concat(p);
    trained = trained.concat(p.map(() => (e.trained[i] ? 1 : 0)));
  });
  trained[0] = 0;
  const n = ids.length;
  let truncated = false;
  if (maxLength !== null && n > maxLength) {
    truncated = true;
    if (mode === "keep_start") {
      ids = ids.slice(0, maxLength);
      trained = trained.slice(0, maxLength);
    } else {
      const bos = tok.bosId !== null && ids[0] === tok.bosId ? 1 : 0; // BOS stays in front, as in tokenize.ts
      ids = [...ids.slice(0, bos), ...ids.slice(n - (maxLength - bos))];
      trained = [...trained.slice(0, bos), ...trained.slice(n - (maxLength - bos))];
      trained[0] = 0;
    }
  }
  if (!trained.some((t) => t === 1))
    return { kind: "drop", detail: truncated ? `no counted token is left in the first ${maxLength} of its ${n} tokens (max_length, truncation_mode ${mode})` : `no token of its ${n} is counted by the loss` };
  return { kind: "seq", seq: { source: e.source, ids: Int32Array.from(ids), trained: Uint8Array.from(trained), truncated } };
}

/** Tokens the loss counts in a sequence. */
export function trainedTokens(s: TokenizedSft): number {
  let k = 0;
  for (let t = 1; t < s.trained.length; t++) k += s.trained[t]!;
  return k;
}

// ---------------------------------------------------------------------------------------------------------------
// Packing

/**
 * Rows of one or two sequences with at most maxLength tokens in all: best fit in decreasing length (TRL's "bfd"),
 * each sequence, longest first, joining the open row whose free room it fills best, or opening a row. Deterministic:
 * ties go by the sequences' order. Returns the rows in the order they were opened.
 */
export function packSequences(seqs: readonly TokenizedSft[], maxLength: number): TokenizedSft[][] {
  const order = seqs.map((s, i) => i).sort((a, b) => seqs[b]!.ids.length - seqs[a]!.ids.length || a - b);
  const rows: TokenizedSft[][] = [];
  // open rows (holding one sequence) by used length, descending, as they are opened: a sequence fits best into the
  // fullest row it fits into, the first in this list with used ≤ maxLength − its length
  const open: { used: number; row: number }[] = [];
  for (const i of order) {
    const s = seqs[i]!;
    const room = maxLength - s.ids.length;
    let lo = 0, hi = open.length; // first index with used ≤ room
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (open[mid]!.used <= room) hi = mid;
      else lo = mid + 1;
    }
    if (lo < open.length) {
      rows[open[lo]!.row]!.push(s);
      open.splice(lo, 1);
    } else {
      open.push({ used: s.ids.length, row: rows.length });
      rows.push([s]);
    }
  }
  return rows;
}

// ---------------------------------------------------------------------------------------------------------------
// Loading

export interface SftDataOptions extends PrepareOptions, SftMasks {
  textField: string;
  /** Pack the sequences two to a row of at most maxLength tokens (needs maxLength). */
  packing: boolean;
}

export interface SftData {
  /** Rows of one sequence, or of one or two when packed: the unit of per_device_train_batch_size. */
  train: TokenizedSft[][];
  eval: TokenizedSft[][];
  summary: string[];
  invalid: RowIssue[];
  /** Up to 16 distinct prompts (held-out ones when there are any), for `tsdpo sample` after the run. */
  prompts: string[];
}

/**
 * The SFT counterpart of loadPreferenceData: reads the file (and eval file), validates and cuts the rows, holds out
 * eval rows, tokenises and truncates both parts, packs them if asked, and accounts for every row.
 */
export async function loadSftData(path: string, tokenizer: Tokenizer, o: SftDataOptions): Promise<SftData> {
  const split = o.split ?? { kind: "none" };
  const main = await readSft(path, tokenizer, o);
  let trainEx = main.examples;
  let heldEx: SftExample[] = [];
  let evalFile: Awaited<ReturnType<typeof readSft>> | null = null;
  if (split.kind === "file") {
    evalFile = await readSft(split.path, tokenizer, o);
    heldEx = evalFile.examples;
  } else ({ train: trainEx, eval: heldEx } = splitTrainEval(main.examples, split));
  const maxLength = capLimits(o).maxLength ?? null;
  if (o.packing && maxLength === null) throw configError(`packing: true packs sequences into rows of max_length tokens, so max_length must be set`);
  const enc = pairEncoder(tokenizer);
  const mode = o.truncationMode ?? "keep_start";
  const tokenize = (examples: readonly SftExample[]) => {
    const out = { seqs: [] as TokenizedSft[], drops: [] as DroppedPair[], truncated: 0 };
    for (const e of examples) {
      const t = tokenizeSft(e, enc, tokenizer, maxLength, mode);
      if (t.kind === "drop") out.drops.push(dropAt(e.source, "nothing-to-train", t.detail));
      else {
        out.seqs.push(t.seq);
        if (t.seq.truncated) out.truncated++;
      }
    }
    return out;
  };
  const tr = tokenize(trainEx);
  const ev = tokenize(heldEx);
  const statsOf = (f: Awaited<ReturnType<typeof readSft>>, seqs: number, drops: DroppedPair[], truncated: number): DataStats =>
    itemStats(f.loaded, seqs, drops, truncated, "sequences");
  const stats = split.kind === "file"
    ? statsOf(main, tr.seqs.length, tr.drops, tr.truncated)
    : statsOf(main, tr.seqs.length + ev.seqs.length, [...tr.drops, ...ev.drops], tr.truncated + ev.truncated);
  if (tr.seqs.length === 0) throw inputError(`${path}: no usable sequences remain (${formatDataStats(stats, 1)}); fix the rows, or loosen max_length`);
  const rows = (seqs: TokenizedSft[]): TokenizedSft[][] => (o.packing ? packSequences(seqs, maxLength!) : seqs.map((s) => [s]));
  const train = rows(tr.seqs);
  const held = rows(ev.seqs);
  const shapes = [...new Set(main.examples.map((e) => e.shape))].join(", ");
  const counted = tr.seqs.reduce((a, s) => a + trainedTokens(s), 0);
  const total = tr.seqs.reduce((a, s) => a + s.ids.length, 0);
  const summary = [formatDataStats(stats, 3)];
  if (evalFile) summary.push(formatDataStats(statsOf(evalFile, ev.seqs.length, ev.drops, ev.truncated), 3));
  summary.push(
    `sft: ${shapes} rows; the loss counts ${counted} of ${total} training tokens (${masksLine(o, main.examples)})` +
      (split.kind !== "none" ? `; ${tr.seqs.length} training and ${ev.seqs.length} eval sequences` : "") +
      (o.packing ? `; packed into ${train.length} rows of at most ${maxLength} tokens${held.length ? ` (${held.length} eval rows)` : ""}` : ""),
  );
  const invalid = [...main.invalid, ...(evalFile?.invalid ?? [])];
  const inv = formatIssues("invalid", invalid, 3);
  if (inv) summary.push(inv);
  return { train, eval: held, summary, invalid, prompts: [...new Set((heldEx.length ? heldEx : trainEx).map(promptOf))].filter((p) => p !== "").slice(0, 16) };
}

function masksLine(o: SftMasks, examples: readonly SftExample[]): string {
  const pc = examples.some((e) => e.shape === "prompt-completion" || e.shape === "conversational prompt-completion");
  const conv = examples.some((e) => e.shape.startsWith("conversational"));
  const parts: string[] = [];
  if (pc) parts.push(`completion_only_loss ${o.completionOnlyLoss ?? true}${o.completionOnlyLoss === null ? " (default for prompt-completion rows)" : ""}`);
  if (conv) parts.push(`assistant_only_loss ${o.assistantOnlyLoss}`);
  return parts.length ? parts.join(", ") : "every token";
}

/** The text before the first counted piece: what the row's sequence was conditioned on. */
function promptOf(e: SftExample): string {
  const k = e.trained.indexOf(true);
  return e.pieces.slice(0, Math.max(0, k)).join("");
}

async function readSft(path: string, tokenizer: Tokenizer, o: SftDataOptions) {
  const rowOptions: SftRowOptions = {
    chat: chatRendererFor(renderChat, tokenizer, undefined, o.chatTemplateKwargs), textField: o.textField,
    completionOnlyLoss: o.completionOnlyLoss, assistantOnlyLoss: o.assistantOnlyLoss, ...(o.tools !== undefined ? { tools: o.tools } : {}),
  };
  const r = await readNormalized(
    path, ["messages", "prompt", "completion", o.textField, TOOLS_KEY], `SFT rows look like ${SFT_ROW_EXAMPLE}`,
    (row) => normalizeSftRow(row, rowOptions), o.skipInvalid ?? false,
  );
  return { examples: r.items, invalid: r.loaded.invalid, loaded: r.loaded };
}
