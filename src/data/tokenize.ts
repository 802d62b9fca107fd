// Text pairs to token ids, with TRL-style truncation.
//
// Token layout of one sequence (chosen shown; rejected is the same with its own answer):
//
//   [BOS] enc(prompt) | enc(chosen, continuation) [EOS]
//   └──── promptIds ──┘└──────── chosenIds ──────────┘
//
// - The prompt and the answer are encoded separately, so the boundary is exactly where the answer starts; the answer
//   is encoded as a continuation (no SentencePiece dummy space), so the concatenation tokenises the text as written.
// - BOS once: it is prepended when the tokenizer asks for it (addBos) or when the prompt text itself starts with the
//   BOS string, as rendered chat templates often do; that string is then removed from the text, never doubled.
// - EOS once: appended to each answer unless the answer already ends (ignoring trailing whitespace) with the EOS
//   string or another stop token's string such as "<|im_end|>"; then that token ends it and anything after is cut.
// - All text goes through encodeWithSpecials, so special-token strings such as "<|im_start|>" become their ids. Chat
//   templates emit them as text, many string datasets are pre-templated, and Hugging Face tokenizers (hence TRL)
//   parse them in any text. The flip side, as in TRL: a literal "</s>" typed in a prompt also becomes EOS.
//
// Truncation (all lengths in tokens, BOS and EOS included; L = the longer of the two answers):
//   1. maxPromptLength: a longer prompt is cut to maxPromptLength tokens. truncationMode "keep_end" (TRL's default)
//      keeps the end of the prompt, the part nearest the answer, and keeps BOS in front when there is one (TRL cuts
//      BOS away with the rest; a model trained with BOS should never see a sequence without it). "keep_start" keeps
//      the prompt's first maxPromptLength tokens.
//   2. maxCompletionLength: each answer keeps its first maxCompletionLength tokens.
//   3. maxLength: if P + L > maxLength, each answer keeps its first maxLength − P tokens (the shorter one may be
//      untouched). If the prompt leaves no room (P >= maxLength) the pair is dropped: "no-room-for-completion".
//      (TRL ≤ 0.11 cut answers to maxLength − maxPromptLength even when the prompt was shorter; the actual P keeps
//      more of the answer. Newer TRL cuts each whole sequence separately, keeping its first maxLength tokens for
//      keep_start and its last ones for keep_end; the latter can leave chosen and rejected with different prompts
//      and answers without their start, which tsdpo avoids.)
//   A cut answer loses its EOS, as in TRL: the model is not taught to stop where the text was cut.
//   With overlong: "drop", a pair that any step would shorten is dropped ("overlong") instead.
//   Chosen and rejected always share the same prompt tokens, so their log-ratios compare answers to one context.
//   If the answers' ids end up identical the pair is dropped ("identical" / "identical-after-truncation").

import { configError } from "../errors.js";
import type { Tokenizer } from "../tokenizer/types.js";
import type { DropReason, DroppedPair, PreferencePair, TokenizedPair } from "./types.js";
import { dropAt } from "./types.js";

export type TruncationMode = "keep_start" | "keep_end";

export interface TokenizeOptions {
  /** Cap on prompt + longer answer, in tokens. null/undefined: no cap. */
  maxLength?: number | null;
  /** Cap on the prompt, in tokens (BOS included). Must be below maxLength. */
  maxPromptLength?: number | null;
  /** Cap on each answer, in tokens (EOS included). */
  maxCompletionLength?: number | null;
  /** Which end of an over-long prompt survives; default "keep_end", as in TRL. */
  truncationMode?: TruncationMode;
  /** "truncate" (default) shortens over-long pairs; "drop" discards them with reason "overlong". */
  overlong?: "truncate" | "drop";
}

interface Limits {
  maxLength: number | null;
  maxPromptLength: number | null;
  maxCompletionLength: number | null;
  truncationMode: TruncationMode;
  overlong: "truncate" | "drop";
}

/** Checks option values; wrong ones are config errors naming the option. */
export function resolveTokenizeOptions(o: TokenizeOptions): Limits {
  const posInt = (name: string, v: number | null | undefined): number | null => {
    if (v === null || v === undefined) return null;
    if (!Number.isInteger(v) || v < 1) throw configError(`${name}: must be a positive integer or null, got ${JSON.stringify(v)}`);
    return v;
  };
  const maxLength = posInt("max_length", o.maxLength);
  const maxPromptLength = posInt("max_prompt_length", o.maxPromptLength);
  const maxCompletionLength = posInt("max_completion_length", o.maxCompletionLength);
  if (maxLength !== null && maxPromptLength !== null && maxPromptLength >= maxLength)
    throw configError(
      `max_prompt_length: ${maxPromptLength} leaves no room for an answer within max_length ${maxLength}; set it below max_length (e.g. half of it)`,
    );
  const truncationMode = o.truncationMode ?? "keep_end";
  if (truncationMode !== "keep_end" && truncationMode !== "keep_start")
    throw configError(`truncation_mode: must be "keep_end" or "keep_start", got ${JSON.stringify(truncationMode)}`);
  const overlong = o.overlong ?? "truncate";
  if (overlong !== "truncate" && overlong !== "drop")
    throw configError(`overlong: must be "truncate" or "drop", got ${JSON.stringify(overlong)}`);
  return { maxLength, maxPromptLength, maxCompletionLength, truncationMode, overlong };
}

export interface PairEncoder {
  /** BOS (when used) + prompt ids, and whether ids[0] is that BOS. */
  prompt(text: string): { ids: number[]; bos: boolean };
  /** Answer ids ending in exactly one end token (EOS appended unless the text ends with an end-token string). */
  completion(text: string): number[];
  /**
   * One sequence given as consecutive texts (an SFT row: prompt and completion, or a conversation cut where the
   * assistant's turns start and end), one id array per text: the first encoded as prompt() encodes it, the others as
   * continuations, and the last ended as completion() ends an answer. Prompt + completion give prompt() and
   * completion()'s ids exactly.
   */
  segments(texts: readonly string[]): number[][];
}

export function pairEncoder(tok: Tokenizer): PairEncoder {
  const name = (id: number | null): string | null => {
    if (id === null) return null;
    const s = tok.idToToken(id);
    return s.length >= 2 ? s : null; // a one-character "special" would match ordinary text
  };
  const bosStr = name(tok.bosId);
  const endIds = new Set<number>([...(tok.eosId === null ? [] : [tok.eosId]), ...tok.stopIds]);
  const endStrs = [...endIds].map(name).filter((s): s is string => s !== null);
  const start = (text: string): { ids: number[]; bos: boolean } => {
    let rest = text;
    let bos = tok.addBos;
    if (bosStr !== null && rest.startsWith(bosStr)) {
      rest = rest.slice(bosStr.length);
      bos = true;
    }
    bos &&= tok.bosId !== null;
    const ids: number[] = bos ? [tok.bosId!] : [];
    for (const id of tok.encodeWithSpecials(rest, { continuation: false })) ids.push(id);
    return { ids, bos };
  };
  /** The text to encode for an ending piece (cut after its end-token string), and whether it ends itself. */
  const ending = (text: string): { text: string; ended: boolean } => {
    const trimmed = text.trimEnd();
    const ended = endStrs.some((s) => trimmed.endsWith(s));
    return { text: ended ? trimmed : text, ended };
  };
  // Append EOS unless the text's own end token came out as an end id (a tokenizer that does not treat that string as
  // special spells it out, and then the sequence still needs its EOS).
  const end = (ids: number[], ended: boolean): number[] => {
    const last = ids[ids.length - 1];
    if (!(ended && last !== undefined && endIds.has(last)) && tok.eosId !== null) ids.push(tok.eosId);
    return ids;
  };
  return {
    prompt: start,
    completion(text) {
      const e = ending(text);
      return end(tok.encodeWithSpecials(e.text, { continuation: true }), e.ended);
    },
    segments(texts) {
      const last = texts.length - 1;
      return texts.map((t, i) => {
        const e = i === last ? ending(t) : { text: t, ended: false };
        const ids = i === 0 ? start(e.text).ids : tok.encodeWithSpecials(e.text, { continuation: true });
        return i === last ? end(ids, e.ended) : ids;
      });
    },
  };
}

export type TokenizeResult =
  | { kind: "pair"; pair: TokenizedPair }
  | { kind: "drop"; reason: DropReason; detail: string };

export function tokenizePair(pair: PreferencePair, enc: PairEncoder, limits: Limits): TokenizeResult {
  const t = tokenizeAnswers(pair.prompt, [pair.chosen, pair.rejected], enc, limits, pair.source.file);
  if (t.kind === "drop") return t;
  const [chosen, rejected] = t.answers as [number[], number[]];
  if (sameIds(chosen, rejected))
    return t.truncated
      ? { kind: "drop", reason: "identical-after-truncation", detail: `the answers only differ after their first ${chosen.length} tokens, which truncation removed (${t.lengths})` }
      : { kind: "drop", reason: "identical", detail: `chosen and rejected tokenise to the same ${chosen.length} ids` };
  return {
    kind: "pair",
    pair: {
      source: pair.source,
      promptIds: Int32Array.from(t.prompt),
      chosenIds: Int32Array.from(chosen),
      rejectedIds: Int32Array.from(rejected),
      truncated: t.truncated,
    },
  };
}

/**
 * A prompt and its answers (two for a pair, one for an unpaired row) as ids, truncated by the rules at the top of
 * this file: every answer shares the one truncated prompt, and max_length counts the prompt and the longest answer.
 */
export function tokenizeAnswers(
  promptText: string, answerTexts: readonly string[], enc: PairEncoder, limits: Limits, file: string,
): { kind: "ok"; prompt: number[]; answers: number[][]; truncated: boolean; lengths: string } | { kind: "drop"; reason: DropReason; detail: string } {
  const p = enc.prompt(promptText);
  let prompt = p.ids;
  let answers = answerTexts.map((a) => enc.completion(a));
  if (prompt.length === 0) throw new Error(`tokenizer produced no ids for the non-empty prompt of ${file}`);
  const { maxLength: M, maxPromptLength: MP, maxCompletionLength: MC, truncationMode } = limits;
  const lengths = (): string => `prompt ${prompt.length} + ${answers.length === 1 ? "answer" : "answers"} ${answers.map((a) => a.length).join("/")} tokens`;
  const longest = (): number => Math.max(...answers.map((a) => a.length));

  if (limits.overlong === "drop") {
    const L = longest();
    const over: string[] = [];
    if (MP !== null && prompt.length > MP) over.push(`max_prompt_length ${MP}`);
    if (MC !== null && L > MC) over.push(`max_completion_length ${MC}`);
    if (M !== null && prompt.length + L > M) over.push(`max_length ${M}`);
    if (over.length > 0) return { kind: "drop", reason: "overlong", detail: `${lengths()} exceed ${over.join(" and ")} (overlong: "drop")` };
  }

  let truncated = false;
  if (MP !== null && prompt.length > MP) {
    truncated = true;
    if (truncationMode === "keep_start") prompt = prompt.slice(0, MP);
    else if (p.bos) prompt = [prompt[0]!, ...prompt.slice(prompt.length - (MP - 1))];
    else prompt = prompt.slice(prompt.length - MP);
  }
  const cut = (n: number): void => {
    answers = answers.map((a) => {
      if (a.length <= n) return a;
      truncated = true;
      return a.slice(0, n);
    });
  };
  if (MC !== null) cut(MC);
  if (M !== null && prompt.length + longest() > M) {
    const room = M - prompt.length;
    if (room < 1)
      return {
        kind: "drop",
        reason: "no-room-for-completion",
        detail: `the prompt alone is ${prompt.length} tokens and max_length is ${M}; set max_prompt_length below max_length so that answers keep some tokens`,
      };
    cut(room);
  }
  return { kind: "ok", prompt, answers, truncated, lengths: lengths() };
}

function sameIds(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export interface TokenizedSet {
  pairs: TokenizedPair[];
  drops: DroppedPair[];
  /** Kept pairs that truncation shortened. */
  truncated: number;
}

/** Tokenises and truncates every pair; pairs that cannot be used are returned as drops with their reason. */
export function tokenizePairs(pairs: readonly PreferencePair[], tok: Tokenizer, options: TokenizeOptions = {}): TokenizedSet {
  const limits = resolveTokenizeOptions(options);
  const enc = pairEncoder(tok);
  const out: TokenizedSet = { pairs: [], drops: [], truncated: 0 };
  for (const pair of pairs) {
    const r = tokenizePair(pair, enc, limits);
    if (r.kind === "drop") out.drops.push(dropAt(pair.source, r.reason, r.detail));
    else {
      out.pairs.push(r.pair);
      if (r.pair.truncated) out.truncated++;
    }
  }
  return out;
}
