// Validating one row and normalising it to {prompt, chosen, rejected} text (see PreferencePair in types.ts).
//
// Accepted shapes (field names are the defaults; promptField/chosenField/rejectedField rename them):
//
//   standard                 {"prompt": str, "chosen": str, "rejected": str}
//   implicit                 {"chosen": str, "rejected": str}            prompt inferred, see inferTextPrompt
//   conversational           {"prompt": [msg…], "chosen": [msg…], "rejected": [msg…]}
//   conversational-implicit  {"chosen": [msg…], "rejected": [msg…]}      full conversations, shared leading
//                                                                          messages are the prompt
//   where msg = {"role": str, "content": str}. A message-list row may also carry "tools" (TRL's column: a list of
//   JSON-schema function definitions, or that list as a JSON string), which the chat template gets as `tools`;
//   NormalizeOptions.tools (config key tools) stands in for rows without it.
//
// Message lists become text through the model's chat template, as TRL does: prompt = render(prompt messages,
// add_generation_prompt) and answer = render(prompt + answer messages) with that prompt text removed from its
// start. If the template does not render the prompt as a prefix of the full conversation, the row is an error:
// silently splitting elsewhere would train on the wrong tokens.
//
// Decisions:
// - An empty string for prompt, chosen or rejected is an error (almost always a missing value written as ""). An
//   answer that is only whitespace is kept with a warning: with EOS appended it teaches the model to stop right
//   after the prompt, which is what HH-RLHF's four such rows mean.
// - chosen identical to rejected is not an error but a counted drop ("identical"): public datasets contain such
//   rows and they carry no DPO signal (the policy and reference log-ratios cancel exactly).
// - Two full dialogues may differ at any turn, as in TRL: the prompt is everything before the first message (or, in
//   text rows, the first turn) where they differ, rendered exactly as the full conversation renders it, and each
//   answer is the rest of its own dialogue, further turns included. HH-RLHF's harmless-base test split has five rows
//   whose answers hold a second "Assistant:" turn; they load as such pairs. When the first differing message is not
//   an assistant answer (a user turn), the prompt ends with the shared assistant turn before it and no generation
//   prompt, and the answers start with the differing turn (the template's own text for it).
// - Message lists whose answers go on with the same user turns on both sides (Chatbot Arena's multi-turn rows: the
//   same user messages, two models answering each) are a counted drop, "multi-turn": those rows wait for the layout
//   that scores every assistant turn on its own, not the whole rest of the conversation as one answer.
// - The prompt is inferred only when nothing in the row could be it. With prompt_field unset and no "prompt" key, a
//   row with another key that could hold a prompt ("question", "instruction", "system", …) fails to load: a renamed
//   prompt column must not be silently replaced by a guess from the answers' shared start. Keys that cannot be the
//   prompt are left alone, see isHarmlessKey and couldBePrompt. prompt_field null says "infer it" on purpose.
// - A row without either answer but with "messages" (or another SFT/KTO shape) is the wrong kind of file, not a bad
//   row: it fails loading even with skipInvalid, saying what the file is and what a preference row looks like.
// - These two are TsdpoErrors (not RowProblems) for that reason: every row of such a file has the same problem, and
//   skipping them all would only end in "no usable pairs".

import { TemplateRefusal, TsdpoError, configError, inputError } from "../errors.js";
import type { Tokenizer } from "../tokenizer/types.js";
import { listKeys, listNames } from "./read.js";
import type { RawRow } from "./read.js";
import type { ChatMessage, ChatRenderer, DropReason, PairShape, PreferencePair, ToolSpec } from "./types.js";
import { where } from "./types.js";

export interface NormalizeOptions {
  /**
   * Key of the prompt (config key prompt_field).
   * - undefined (unset): "prompt"; when a row has no such key, the prompt is inferred from chosen/rejected, unless
   *   the row has another key that could be the prompt: then loading fails and asks for prompt_field.
   * - a string: that key, required in every row.
   * - null: always infer, on purpose (for files whose answers repeat the prompt, or whose other keys are not it).
   */
  promptField?: string | null;
  /** Key of the preferred answer (default "chosen"; e.g. "response_j"). */
  chosenField?: string;
  /** Key of the dispreferred answer (default "rejected"; e.g. "response_k"). */
  rejectedField?: string;
  /** Chat-template renderer; required only if the file holds message lists (see chatRendererFor). */
  chat?: ChatRenderer;
  /**
   * Tool definitions for every message-list row's chat template (config key tools), as TRL's DPOConfig.tools. A
   * row's own "tools" value, when not null, replaces them for that row.
   */
  tools?: readonly ToolSpec[];
  /**
   * The marker after which the final assistant answer starts in implicit-prompt text rows (HH-RLHF's format).
   * Default "\n\nAssistant:".
   */
  assistantMarker?: string;
}

export const DEFAULT_ASSISTANT_MARKER = "\n\nAssistant:";
/** The turn marker before each human turn in HH-RLHF's dialogues; it goes with DEFAULT_ASSISTANT_MARKER. */
const HH_USER_MARKER = "\n\nHuman:";

/** A malformed row: which field, what is wrong and how to fix it. Callers add the position. */
export class RowProblem extends Error {
  constructor(
    readonly field: string,
    readonly reason: string,
  ) {
    super(`${field}: ${reason}`);
    this.name = "RowProblem";
  }
}

export interface RowWarning {
  field: string;
  reason: string;
}

export type NormalizeResult =
  | { kind: "pair"; pair: PreferencePair; warnings: RowWarning[] }
  | { kind: "drop"; reason: DropReason; detail: string };

/** The signature of tokenizer/chat.ts's renderChat, so callers can hand it in without data/ importing it. */
export type RenderChatFn = (
  template: string,
  messages: { role: string; content: string }[],
  opts: {
    addGenerationPrompt: boolean;
    bosToken?: string;
    eosToken?: string;
    tools?: readonly ToolSpec[];
    kwargs?: { readonly [name: string]: unknown };
  },
) => string;

/**
 * Binds a template renderer to a tokenizer's chat template and special-token strings, and to the extra template
 * variables of every render (config key chat_template_kwargs, already checked). Returns undefined when there is no
 * template; loading then fails only if the file actually holds message lists.
 */
export function chatRendererFor(
  render: RenderChatFn,
  tokenizer: Tokenizer,
  template: string | null = tokenizer.chatTemplate,
  kwargs?: { readonly [name: string]: unknown },
): ChatRenderer | undefined {
  if (template === null || template === "") return undefined;
  const bosToken = tokenizer.bosId !== null ? tokenizer.idToToken(tokenizer.bosId) : undefined;
  const eosToken = tokenizer.eosId !== null ? tokenizer.idToToken(tokenizer.eosId) : undefined;
  return (messages, addGenerationPrompt, tools) =>
    render(
      template,
      messages.map((m) => ({ role: m.role, content: m.content })),
      // no tools or kwargs key at all without them, so such rows render exactly as before
      { addGenerationPrompt, bosToken, eosToken, ...(tools !== undefined ? { tools } : {}), ...(kwargs !== undefined ? { kwargs } : {}) },
    );
}

/**
 * Validates a row and normalises it. Throws RowProblem for a malformed row (the caller decides between failing and
 * skipping), and a TsdpoError where no row of the file could succeed: message lists without a chat renderer
 * (config), a prompt that would be inferred while another key could be it (config), a row of another kind of
 * dataset such as SFT "messages" (input).
 */
export function normalizeRow(row: RawRow, options: NormalizeOptions = {}): NormalizeResult {
  const cells = row.pos.format === "csv" || row.pos.format === "tsv";
  if (row.parseError !== undefined)
    throw new RowProblem(
      "row",
      cells
        ? row.parseError
        : `is not valid JSON (${row.parseError}); each line must be one JSON object such as ` +
            `{"prompt": "...", "chosen": "...", "rejected": "..."}`,
    );
  const v = row.value;
  if (v === null || typeof v !== "object" || Array.isArray(v))
    throw new RowProblem(
      "row",
      `is ${describe(v)}, not a JSON object; each row must be an object with "chosen" and "rejected" ` +
        `(and usually "prompt") fields`,
    );
  const obj = v as Record<string, unknown>;
  const cf = options.chosenField ?? "chosen";
  const rf = options.rejectedField ?? "rejected";
  const pf = options.promptField === null ? null : (options.promptField ?? "prompt");

  const chosen = obj[cf];
  const rejected = obj[rf];
  const prompt: unknown = pf === null ? undefined : obj[pf];
  const now = (): string => `(now: ${describeMapping(options, prompt === undefined)})`;
  if (chosen === undefined && rejected === undefined) {
    const kind = nonPreferenceKind(Object.keys(obj));
    if (kind !== null)
      throw inputError(
        `${where(row.pos)}: this is ${kind}, not preference pairs: the row has ${listKeys(obj)} but no ${JSON.stringify(cf)} ` +
          `and ${JSON.stringify(rf)} answers. DPO learns from two answers to one prompt, one preferred over the other; a ` +
          `preference row looks like ${PREFERENCE_ROW_EXAMPLE}. Convert the file to such rows, or, if both answers are ` +
          `there under other names, set chosen_field and rejected_field ${now()}`,
      );
  }
  if (chosen === undefined)
    throw new RowProblem(cf, `is missing (the row has keys ${listKeys(obj)}); add it, or set chosen_field to the key that holds the preferred answer ${now()}`);
  if (rejected === undefined)
    throw new RowProblem(rf, `is missing (the row has keys ${listKeys(obj)}); add it, or set rejected_field to the key that holds the dispreferred answer ${now()}`);
  if (prompt === undefined && pf !== null && options.promptField !== undefined)
    throw new RowProblem(
      pf,
      `is missing (the row has keys ${listKeys(obj)}); add it, or set prompt_field to the key that holds the prompt, ` +
        `or to null to infer the prompt from the answers' shared start ${now()}`,
    );
  if (prompt === undefined && options.promptField === undefined) {
    // The prompt would be guessed: only when no key of the row could be the prompt under another name.
    const unused = Object.keys(obj).filter((k) => k !== cf && k !== rf && k !== TOOLS_KEY && !isHarmlessKey(k) && couldBePrompt(obj[k]));
    if (unused.length > 0)
      throw configError(
        `${where(row.pos)}: the prompt would be inferred from the answers' shared start, but the row also has ` +
          `${listNames(unused)}; ` +
          (unused.length === 1 ? `set prompt_field=${unused[0]}` : `set prompt_field to the one that holds the prompt (e.g. prompt_field=${unused[0]})`) +
          `, or set prompt_field=null to infer the prompt on purpose ${now()}`,
      );
  }

  checkAnswerType(cf, chosen);
  checkAnswerType(rf, rejected);
  if (prompt !== undefined && typeof prompt !== "string" && !Array.isArray(prompt))
    throw new RowProblem(pf!, `is ${describe(prompt)}; it must be a string or a list of {"role", "content"} messages`);

  const cIsText = typeof chosen === "string";
  const rIsText = typeof rejected === "string";
  if (cIsText !== rIsText)
    throw new RowProblem(
      cIsText ? rf : cf,
      `is a list of messages but ${cIsText ? cf : rf} is a string; give prompt, chosen and rejected all as strings or all as message lists`,
    );
  if (prompt !== undefined && (typeof prompt === "string") !== cIsText)
    throw new RowProblem(
      pf!,
      `is ${typeof prompt === "string" ? "a string" : "a list of messages"} but ${cf} is ${cIsText ? "a string" : "a list of messages"}; ` +
        `give prompt, chosen and rejected all as strings or all as message lists`,
    );

  // The row's tool definitions (TRL's "tools" column), else the configured ones; they reach the model only through
  // the chat template, so plain-text rows cannot use them.
  const rawTools = obj[TOOLS_KEY];
  const rowTools = rawTools === undefined || rawTools === "" ? null : rawTools; // "": an empty CSV cell
  const tools = rowTools !== null ? parseTools(rowTools, (reason) => new RowProblem(TOOLS_KEY, reason)) : options.tools;
  if (cIsText && rowTools !== null)
    throw new RowProblem(
      TOOLS_KEY,
      `is set but ${cf} and ${rf} are plain strings; tool definitions reach the model only through the chat ` +
        `template, which renders message lists, so give the conversations as {"role", "content"} messages or remove "tools"`,
    );
  if (cIsText && options.tools !== undefined)
    throw configError(
      `${where(row.pos)}: tools is set, but ${cf} and ${rf} are plain strings; tool definitions reach the model only ` +
        `through the chat template, which renders message lists, so unset tools for this file or give its rows as messages`,
    );

  const warnings: RowWarning[] = [];
  let out: { prompt: string; chosen: string; rejected: string; shape: PairShape };
  if (cIsText) {
    const c = chosen as string;
    const r = rejected as string;
    if (c === "") throw emptyAnswer(cf, cells);
    if (r === "") throw emptyAnswer(rf, cells);
    if (prompt === undefined) {
      if (c === r) return identical();
      // Dialogues that go on after differing keep their further turns in the answers (see inferTextPrompt).
      out = { ...inferTextPrompt(c, r, cf, rf, options.assistantMarker ?? DEFAULT_ASSISTANT_MARKER), shape: "implicit" };
    } else {
      if (prompt === "")
        throw new RowProblem(
          pf!,
          cells
            ? `is an empty cell; give the prompt text, or set prompt_field to null to infer it from chosen and rejected`
            : `is an empty string; give the prompt text, or remove the field (or set prompt_field to null) to infer it from chosen and rejected`,
        );
      out = { prompt: prompt as string, chosen: c, rejected: r, shape: "standard" };
      if (c.startsWith(out.prompt) && r.startsWith(out.prompt))
        warnings.push({
          field: cf,
          reason:
            `both answers begin with the prompt text, so the prompt appears twice in each sequence; if the file ` +
            `stores whole conversations, set prompt_field to null to infer the prompt instead`,
        });
    }
  } else {
    const chat = options.chat;
    if (chat === undefined)
      throw configError(
        `${where(row.pos)}: ${cf}: is a list of chat messages, which needs the model's chat template to become text; ` +
          `use a model that ships a chat template (tokenizer.chat_template), or convert the rows to plain strings`,
      );
    const c = checkMessages(cf, chosen as unknown[]);
    const r = checkMessages(rf, rejected as unknown[]);
    if (prompt === undefined) {
      const k = sharedMessages(c, r);
      if (k === c.length && k === r.length) return identical();
      if (k === 0)
        throw new RowProblem(cf, `shares no leading messages with ${rf}, so there is no prompt; add a "${pf ?? "prompt"}" field with the conversation so far`);
      if (k === c.length || k === r.length) {
        const short = k === c.length ? cf : rf;
        throw new RowProblem(short, `is the shared conversation with no answer of its own (the other answer continues it); each must end with its own assistant message`);
      }
      if (c[k]!.role !== r[k]!.role)
        throw new RowProblem(
          `${cf}[${k}].role`,
          `is "${c[k]!.role}" but ${rf}[${k}].role is "${r[k]!.role}": after their shared start the two conversations ` +
            `must go on with the same speaker; fix the row or add a "${pf ?? "prompt"}" field`,
        );
      // Answers that go on with the same user turns on both sides wait for the layout that scores every assistant
      // turn on its own (Chatbot Arena's multi-turn rows); with different user turns the preference is over the whole
      // rest of each conversation, which is one answer per side.
      const userTurns = (msgs: ChatMessage[]): string[] => msgs.filter((m) => m.role === "user").map((m) => m.content);
      const cu = userTurns(c.slice(k));
      const ru = userTurns(r.slice(k));
      if (cu.length > 0 && cu.length === ru.length && cu.every((u, i) => u === ru[i])) {
        const turns = userTurns(c).length;
        return {
          kind: "drop",
          reason: "multi-turn",
          detail:
            `${cf} and ${rf} share their ${turns} user turns but differ from message ${k} (an assistant answer) on, so ` +
            `the preference is over whole ${turns}-turn conversations; such rows wait for the layout that scores ` +
            `every assistant turn on its own (rows whose later user turns differ, or that differ in their last answer, load)`,
        };
      }
      const promptMsgs = c.slice(0, k);
      // the prompt's messages are the start of both answers' lists; chosen's name stands for them
      out = { ...renderPair(chat, promptMsgs, c.slice(k), r.slice(k), cf, cf, rf, tools), shape: "conversational-implicit" };
    } else {
      const p = checkMessages(pf!, prompt as unknown[], false);
      out = { ...renderPair(chat, p, c, r, pf!, cf, rf, tools), shape: "conversational" };
    }
  }
  if (out.chosen === out.rejected) return identical();
  if (out.chosen.trim() === "") warnings.push(blankWarning(cf));
  if (out.rejected.trim() === "") warnings.push(blankWarning(rf));
  return { kind: "pair", pair: { source: row.pos, ...out }, warnings };
}

/** One unpaired (KTO) row as text: the prompt, one answer continuing it, and whether the answer is desirable. */
export interface UnpairedExample {
  readonly source: RawRow["pos"];
  readonly prompt: string;
  readonly completion: string;
  readonly label: boolean;
}

/** What an unpaired (KTO) row looks like, for messages. */
export const UNPAIRED_ROW_EXAMPLE =
  `{"prompt": "...", "completion": "...", "label": true} (label true: a good answer, false: a bad one; prompt and ` +
  `completion may also be lists of {"role", "content"} messages)`;

/**
 * Validates an unpaired row {prompt, completion, label} (TRL's unpaired preference format, which KTO trains on) and
 * renders message lists with the chat template, as normalizeRow does for pairs. Throws RowProblem for a malformed
 * row (a label that is not a boolean among them: in CSV and TSV cells the text true or false), and a TsdpoError for a
 * row of preference pairs (the file needs `unpair: true`) or message lists without a chat template.
 */
export function normalizeUnpairedRow(row: RawRow, options: Pick<NormalizeOptions, "chat" | "tools"> = {}): UnpairedExample {
  const cells = row.pos.format === "csv" || row.pos.format === "tsv";
  if (row.parseError !== undefined)
    throw new RowProblem("row", cells ? row.parseError : `is not valid JSON (${row.parseError}); each line must be one JSON object such as ${UNPAIRED_ROW_EXAMPLE}`);
  const v = row.value;
  if (v === null || typeof v !== "object" || Array.isArray(v))
    throw new RowProblem("row", `is ${describe(v)}, not a JSON object; each row must be an object like ${UNPAIRED_ROW_EXAMPLE}`);
  const obj = v as Record<string, unknown>;
  if (obj.completion === undefined && obj.chosen !== undefined && obj.rejected !== undefined)
    throw configError(
      `${where(row.pos)}: this is a file of preference pairs (the row has "chosen" and "rejected"), but loss_type kto ` +
        `trains on unpaired rows ${UNPAIRED_ROW_EXAMPLE}; set unpair: true to use each pair as a desirable row (chosen) ` +
        `and an undesirable one (rejected)`,
    );
  for (const key of ["prompt", "completion", "label"])
    if (obj[key] === undefined) throw new RowProblem(key, `is missing (the row has keys ${listKeys(obj)}); an unpaired row looks like ${UNPAIRED_ROW_EXAMPLE}`);
  const label = parseLabel(obj.label, cells);
  const { prompt, completion } = obj;
  if (typeof prompt !== "string" && !Array.isArray(prompt))
    throw new RowProblem("prompt", `is ${describe(prompt)}; it must be a string or a list of {"role", "content"} messages`);
  checkAnswerType("completion", completion);
  if ((typeof prompt === "string") !== (typeof completion === "string"))
    throw new RowProblem(
      "completion",
      `is ${typeof completion === "string" ? "a string" : "a list of messages"} but prompt is ${typeof prompt === "string" ? "a string" : "a list of messages"}; give both as strings or both as message lists`,
    );
  if (typeof prompt === "string") {
    if (prompt === "") throw new RowProblem("prompt", `is an empty ${cells ? "cell" : "string"}; give the prompt text`);
    if (completion === "") throw emptyAnswer("completion", cells);
    return { source: row.pos, prompt, completion: completion as string, label };
  }
  if (options.chat === undefined)
    throw configError(
      `${where(row.pos)}: completion: is a list of chat messages, which needs the model's chat template to become text; ` +
        `use a model that ships a chat template (tokenizer.chat_template), or convert the rows to plain strings`,
    );
  const rawTools = obj[TOOLS_KEY];
  const tools = rawTools !== undefined && rawTools !== "" && rawTools !== null ? parseTools(rawTools, (reason) => new RowProblem(TOOLS_KEY, reason)) : options.tools;
  const p = checkMessages("prompt", prompt, false);
  const c = checkMessages("completion", completion as unknown[]);
  const r = renderAnswers(options.chat, p, [{ msgs: c, field: "completion" }], "prompt", tools);
  return { source: row.pos, prompt: r.prompt, completion: r.answers[0]!, label };
}

/** A row's label: true or false (in CSV and TSV, whose cells are text, the words true and false). */
function parseLabel(v: unknown, cells: boolean): boolean {
  if (typeof v === "boolean") return v;
  if (cells && typeof v === "string" && /^\s*(true|false)\s*$/i.test(v)) return v.trim().toLowerCase() === "true";
  const hint =
    v === 1 || v === 0 || v === "1" || v === "0" ? `; for ${JSON.stringify(v)} write ${v === 1 || v === "1" ? "true" : "false"}`
    : typeof v === "string" && /^\s*(true|false)\s*$/i.test(v) ? `; write it without quotes, as the JSON boolean ${v.trim().toLowerCase()}`
    : "";
  throw new RowProblem("label", `is ${describe(v)}, not a boolean; it must be true (a desirable answer) or false (an undesirable one)${hint}`);
}

/**
 * The implicit prompt of two full texts: their longest common prefix, cut back to just after the last assistant
 * marker it contains, so that each answer is the whole final assistant turn (for HH-RLHF, " I'm sorry…" starting
 * with the space after "Assistant:"). Cutting at the marker rather than at the first differing character matters
 * when both answers start alike ("\n\nAssistant: I think…" / "\n\nAssistant: I don't…"): the shared "I" belongs to
 * the answers, not the prompt.
 *
 * Dialogues that differ before their last turn are cut the same way: the prompt ends at the turn where they first
 * differ and each answer holds the rest of its dialogue, further turns and markers included (TRL's extract_prompt
 * keeps them too). When that turn is a Human turn after a shared Assistant one (HH's own "\n\nHuman:" marker, with
 * the default assistant marker), the cut is at the start of that "\n\nHuman:": the shared assistant turn is
 * prompt, as in a message list that first differs at a user message.
 *
 * Without a marker in the common prefix, the cut goes back to the start of the last whitespace run in it, so no
 * word is split and the answer keeps its leading space (as TRL's extract_prompt does). No whitespace: error.
 */
export function inferTextPrompt(
  chosen: string,
  rejected: string,
  cf = "chosen",
  rf = "rejected",
  marker = DEFAULT_ASSISTANT_MARKER,
): { prompt: string; chosen: string; rejected: string } {
  let n = 0;
  const max = Math.min(chosen.length, rejected.length);
  while (n < max && chosen.charCodeAt(n) === rejected.charCodeAt(n)) n++;
  const common = chosen.slice(0, n);
  let cut: number;
  const m = marker === "" ? -1 : common.lastIndexOf(marker);
  const u = marker === DEFAULT_ASSISTANT_MARKER ? common.lastIndexOf(HH_USER_MARKER) : -1;
  if (m >= 0 && u > m) {
    cut = u;
  } else if (m >= 0) {
    cut = m + marker.length;
  } else {
    cut = -1;
    for (let i = n - 1; i >= 0; i--) {
      if (/\s/.test(common[i]!)) {
        cut = i;
        while (cut > 0 && /\s/.test(common[cut - 1]!)) cut--;
        break;
      }
    }
    if (cut <= 0)
      throw new RowProblem(
        cf,
        `shares no beginning with ${rf} that ends at ${JSON.stringify(marker)} or at a space, so the prompt ` +
          `cannot be inferred; add a "prompt" field`,
      );
  }
  const out = { prompt: chosen.slice(0, cut), chosen: chosen.slice(cut), rejected: rejected.slice(cut) };
  if (out.chosen === "") throw emptyAfterPrompt(cf, rf);
  if (out.rejected === "") throw emptyAfterPrompt(rf, cf);
  return out;
}

/** pf, cf, rf: the fields holding the prompt's messages and the two answers, named when the template fails on them. */
function renderPair(
  chat: ChatRenderer,
  prompt: ChatMessage[],
  chosen: ChatMessage[],
  rejected: ChatMessage[],
  pf: string,
  cf: string,
  rf: string,
  tools: readonly ToolSpec[] | undefined,
): { prompt: string; chosen: string; rejected: string } {
  const r = renderAnswers(chat, prompt, [{ msgs: chosen, field: cf }, { msgs: rejected, field: rf }], pf, tools);
  return { prompt: r.prompt, chosen: r.answers[0]!, rejected: r.answers[1]! };
}

/** The prompt's text and each answer's text after it (one answer for an unpaired row, two for a pair). */
function renderAnswers(
  chat: ChatRenderer,
  prompt: ChatMessage[],
  answers: readonly { msgs: ChatMessage[]; field: string }[],
  pf: string,
  tools: readonly ToolSpec[] | undefined,
): { prompt: string; answers: string[] } {
  // The generation prompt opens an assistant turn, so the prompt has it when an answer starts with one (always,
  // unless the two conversations first differ at a user turn: then the prompt ends with the assistant's turn before
  // it, as the full conversation renders it, and each answer opens its own user turn).
  const gen = answers.some((a) => a.msgs[0]!.role === "assistant");
  const p = runTemplate(chat, prompt, gen, pf, tools);
  const answer = (msgs: ChatMessage[], field: string): string => {
    const full = runTemplate(chat, [...prompt, ...msgs], false, field, tools);
    if (!full.startsWith(p)) {
      let d = 0;
      while (d < p.length && p[d] === full[d]) d++;
      throw new RowProblem(
        field,
        `the chat template renders the conversation with this answer so that it does not start with the rendered ` +
          `prompt (they differ at character ${d}: prompt has ${JSON.stringify(p.slice(d, d + 24))}, conversation has ` +
          `${JSON.stringify(full.slice(d, d + 24))}); tsdpo needs the answer to extend the prompt text, so use a ` +
          `template whose generation prompt is a prefix of the rendered answer, or give the rows as plain strings`,
      );
    }
    const text = full.slice(p.length);
    if (text === "") throw new RowProblem(field, `renders to no text after the prompt; the chat template dropped the answer`);
    return text;
  };
  return { prompt: p, answers: answers.map((a) => answer(a.msgs, a.field)) };
}

/** The chat template on `msgs`; a refusal or failure is a RowProblem naming `field` (a broken template fails the file). */
export function runTemplate(chat: ChatRenderer, msgs: ChatMessage[], gen: boolean, field: string, tools: readonly ToolSpec[] | undefined): string {
  try {
    return chat(msgs, gen, tools);
  } catch (e) {
    // The template's raise_exception refuses this conversation (Gemma 2's template and a system message): a problem
    // of the row, which skip_invalid may skip, not of the template.
    if (e instanceof TemplateRefusal)
      throw new RowProblem(
        field,
        `the model's chat template refuses the conversation with roles [${msgs.map((m) => m.role).join(", ")}]: ` +
          `${e.reason}. ${e.hint}, or skip such rows with skip_invalid`,
      );
    if (e instanceof TsdpoError && e.kind === "config") throw e; // a broken template fails every row alike
    throw new RowProblem(field, `the chat template failed on this conversation (${(e as Error).message})`);
  }
}

/** The key of a row's tool definitions, as in TRL's datasets. */
export const TOOLS_KEY = "tools";

/**
 * Tool definitions as the chat template gets them: a list of JSON objects (one per function, usually
 * {"type": "function", "function": {"name", "description", "parameters"}}), or that list as a JSON string, as Hugging
 * Face datasets store a column whose rows differ in shape (TRL parses it the same way). What each object holds is the
 * template's business; anything else is an error made by `fail` (a row's problem, or the config's).
 */
export function parseTools(v: unknown, fail: (reason: string) => Error): ToolSpec[] {
  const example = `e.g. [{"type": "function", "function": {"name": "get_weather", "description": "...", "parameters": {...}}}]`;
  let list = v;
  if (typeof v === "string") {
    try {
      list = JSON.parse(v);
    } catch (e) {
      throw fail(`is a string that is not JSON (${(e as Error).message}); give a list of function definitions, ${example}`);
    }
  }
  if (!Array.isArray(list)) throw fail(`is ${describe(list)}; it must be a list of function definitions, ${example}`);
  list.forEach((t, i) => {
    if (t === null || typeof t !== "object" || Array.isArray(t))
      throw fail(`item ${i} is ${describe(t)}, not an object; each tool is a JSON-schema function definition, ${example}`);
  });
  return list as ToolSpec[];
}

function checkAnswerType(field: string, v: unknown): void {
  if (typeof v !== "string" && !Array.isArray(v))
    throw new RowProblem(field, `is ${describe(v)}; it must be a string (the answer) or a list of {"role", "content"} messages`);
}

/** Checks a message list; an answer list must end with a non-empty assistant message. */
export function checkMessages(field: string, list: unknown[], isAnswer = true): ChatMessage[] {
  if (list.length === 0)
    throw new RowProblem(field, isAnswer ? `is an empty list of messages; it must hold the assistant's answer` : `is an empty list of messages; give the conversation so far, or remove the field to infer it`);
  const out: ChatMessage[] = [];
  for (let i = 0; i < list.length; i++) {
    const m = list[i];
    const at = `${field}[${i}]`;
    if (m === null || typeof m !== "object" || Array.isArray(m))
      throw new RowProblem(at, `is ${describe(m)}, not a message; each message must be an object {"role": ..., "content": ...}`);
    const { role, content } = m as Record<string, unknown>;
    if (role === undefined || role === null)
      throw new RowProblem(`${at}.role`, `is missing; each message needs a "role" ("system", "user" or "assistant") and a "content" string`);
    if (typeof role !== "string" || role === "")
      throw new RowProblem(`${at}.role`, `is ${describe(role)}; it must be a non-empty string such as "user" or "assistant"`);
    if (content === undefined || content === null)
      throw new RowProblem(`${at}.content`, `is missing; each message needs a "content" string`);
    if (typeof content !== "string")
      throw new RowProblem(
        `${at}.content`,
        `is ${describe(content)}; tsdpo takes message content as a string (content parts such as images are not supported), so join the text parts`,
      );
    out.push({ role, content });
  }
  if (isAnswer) {
    const last = out[out.length - 1]!;
    if (last.role !== "assistant")
      throw new RowProblem(`${field}[${out.length - 1}].role`, `is "${last.role}", but an answer must end with a message whose role is "assistant"`);
    if (last.content === "") throw emptyAnswer(`${field}[${out.length - 1}].content`);
  }
  return out;
}

function sharedMessages(a: ChatMessage[], b: ChatMessage[]): number {
  let k = 0;
  while (k < a.length && k < b.length && a[k]!.role === b[k]!.role && a[k]!.content === b[k]!.content) k++;
  return k;
}

function identical(): NormalizeResult {
  return { kind: "drop", reason: "identical", detail: "chosen and rejected are the same text, which gives DPO no signal" };
}

function emptyAnswer(field: string, cell = false): RowProblem {
  return new RowProblem(field, `is an empty ${cell ? "cell" : "string"}; an empty answer cannot be scored, so fill it in or remove the row`);
}

function emptyAfterPrompt(field: string, other: string): RowProblem {
  return new RowProblem(
    field,
    `has no text after the prompt shared with ${other} (it is a prefix of ${other}), so it has no answer; fix the row or add a "prompt" field`,
  );
}

function blankWarning(field: string): RowWarning {
  return { field, reason: `is only whitespace after the prompt; kept: the pair teaches the model to end (EOS) right after the prompt` };
}

/** "a string", "null", "a number (3)", … for messages about a value of the wrong kind. */
export function describeValue(v: unknown): string {
  return describe(v);
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "a list";
  switch (typeof v) {
    case "string":
      return v === "" ? "an empty string" : "a string";
    case "number":
    case "bigint":
      return `a number (${String(v)})`;
    case "boolean":
      return `${v}, a boolean`;
    case "object":
      return "an object";
    default:
      return typeof v;
  }
}

/** What a preference row looks like, for messages about files that hold something else. */
export const PREFERENCE_ROW_EXAMPLE =
  `{"prompt": "...", "chosen": "...", "rejected": "..."} (or "chosen" and "rejected" as lists of ` +
  `{"role", "content"} messages that end with the two assistant answers)`;

/**
 * The current field mapping in the user's words (config keys), for messages: "prompt_field unset → inferred,
 * chosen_field=answer_good, rejected_field=answer_bad". inferred: whether the row at hand has no prompt key.
 */
export function describeMapping(options: Pick<NormalizeOptions, "promptField" | "chosenField" | "rejectedField">, inferred: boolean): string {
  const p =
    options.promptField === undefined
      ? `prompt_field unset → ${inferred ? "inferred" : "prompt"}`
      : options.promptField === null
        ? "prompt_field=null → inferred"
        : `prompt_field=${options.promptField}`;
  const c = options.chosenField === undefined ? "chosen_field unset → chosen" : `chosen_field=${options.chosenField}`;
  const r = options.rejectedField === undefined ? "rejected_field unset → rejected" : `rejected_field=${options.rejectedField}`;
  return `${p}, ${c}, ${r}`;
}

/**
 * Keys that never hold the prompt, so a row may carry them while the prompt is inferred from its answers. They name
 * where a row came from (ids, source, dataset, split, model, date, metadata) or a judgement of the answers (scores,
 * ratings, rewards, labels, ranks, margins), by their meaning never text the model conditions on. Public datasets
 * with an implicit prompt carry exactly these: trl-lib/ultrafeedback_binarized (score_chosen, score_rejected),
 * argilla/dpo-mix-7k (dataset, chosen_rating, rejected_rating), Skywork-Reward-Preference (source), tsdpo's demo
 * (chosen_score, rejected_score); pandas' unnamed index column ("" in a CSV header, "Unnamed: 0" once re-read) too.
 * The list is short on purpose: any other key that could hold text stops loading with a message, and
 * prompt_field=null silences it; a longer list would let a renamed prompt slip through.
 */
export function isHarmlessKey(key: string): boolean {
  const k = key.toLowerCase().replace(/[-\s]+/g, "_");
  return (
    HARMLESS_KEYS.has(k) ||
    /^unnamed:_?\d+$/.test(k) ||
    /^[a-z]?id$/.test(k) || // qid, pid
    /(^|_)(id|ids|idx|uuid)$/.test(k) || // prompt_id, post_id
    /(^|_)(score|scores|rating|ratings|reward|rewards|rank|ranks|margin|label|labels|model|models|source|date)$/.test(k) ||
    /^(score|scores|rating|ratings|reward|rewards|rank|label|model)_/.test(k) // score_chosen
  );
}

const HARMLESS_KEYS = new Set([
  "", "id", "idx", "index", "uid", "uuid", "source", "dataset", "split", "subset", "domain", "category", "language",
  "lang", "license", "url", "date", "timestamp", "created_at", "metadata", "meta", "model", "label", "labels", "score",
  "rating", "reward", "margin", "tags",
]);

/**
 * Whether a value could be a prompt: text or a message list. Numbers, booleans, null, objects, empty text and text
 * that spells a number or a boolean (every CSV cell is text: "4.5", "true") cannot, so such keys never stop loading.
 */
export function couldBePrompt(v: unknown): boolean {
  if (Array.isArray(v)) return v.length > 0;
  if (typeof v !== "string") return false;
  return v.trim() !== "" && !/^\s*([-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|true|false|nan|null|none)\s*$/i.test(v);
}

/**
 * What a file holds when its rows have neither answer but the keys of another kind of dataset; null when they do
 * not look like one. Keys alone decide, so Parquet and CSV files are recognised from their columns.
 */
export function nonPreferenceKind(keys: readonly string[]): string | null {
  const has = (k: string): boolean => keys.includes(k);
  const chat = ["messages", "conversations", "conversation"].find(has);
  if (chat !== undefined) return `an SFT/chat dataset (one conversation per row, in ${JSON.stringify(chat)})`;
  if (has("completion") && has("label")) return `an unpaired preference (KTO) dataset (one completion per row, labelled good or bad)`;
  if (has("prompt") && has("completion")) return `an SFT prompt-completion dataset (one answer per prompt)`;
  if (has("instruction") && has("output")) return `an SFT instruction dataset (one "output" per "instruction")`;
  if (has("text") && keys.filter((k) => !isHarmlessKey(k)).length === 1) return `a plain-text dataset (one "text" per row)`;
  return null;
}
