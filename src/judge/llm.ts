// An LLM as a pairwise judge: a local GGUF file or Hugging Face causal-LM folder is shown the prompt and two answers
// and asked which is better; its preference is read from the log-probs of the two answer labels, not from text it
// generates.
//
// One order (a shown as A, b as B):
//   text   = the template with {{prompt}}, {{answer_a}} and {{answer_b}} filled in, as the user message of the
//            model's chat template (rendered with the generation prompt, so the label is the assistant's first
//            token), or as the whole text when the model has no chat template; BOS as the data loader adds it;
//   labels = "A" and "B", each required to be exactly one token after the text: encode(text + label) =
//            encode(text) ++ [label id]. After a text that ends in a non-space character they are first tried as
//            " A" / " B" (most tokenizers join a word to the space before it), then glued on as "A" / "B" (tiny
//            vocabularies such as stories260K's have "A" but no "▁A"); after whitespace (a chat template's
//            assistant header ends in a newline) only as "A" / "B". Neither: a one-line refusal;
//   P(A)   = softmax over {A, B} of their log-probs at the position after the text = σ(logp(A) − logp(B)).
// Both orders are asked, and P(a ≻ b) is the mean of P(A | a first) and P(B | b first), which cancels a preference
// for a position (most small judges prefer the first answer). The two orders agree when both put a ahead, or both put
// b ahead (or both call it even); lastDetail() reports both orders' log-probs, their probabilities and the agreement.
//
// The log-probs come from one prefill through the KV cache (model/decoder.ts decode) and a float64 log-softmax of
// its last logits; test/judges-model.test.ts recomputes them through the training forward (demo/sample.ts
// completionLogps) on stories260K.

import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import type { Backend, Buf } from "../backend/contract.js";
import { selectBackend } from "../backend/select.js";
import { pairEncoder } from "../data/tokenize.js";
import { configError, inputError } from "../errors.js";
import { type LoadedModel, loadModel } from "../io/load.js";
import { type FloatCtor, type KvCache, createKvCache, decode } from "../model/decoder.js";
import { renderChat } from "../tokenizer/chat.js";
import type { Tokenizer } from "../tokenizer/types.js";
import { type Judge, type JudgeContext, located } from "./types.js";

/** The placeholders a pairwise template must hold, each replaced literally (once per occurrence). */
export const JUDGE_PLACEHOLDERS = ["prompt", "answer_a", "answer_b"] as const;

/** The default pairwise template (the user message under a chat template). */
export const DEFAULT_JUDGE_TEMPLATE = `Below are a request and two answers to it, A and B. Decide which answer serves the request better: more helpful, more correct, clearer.

Request:
{{prompt}}

Answer A:
{{answer_a}}

Answer B:
{{answer_b}}

Reply with one letter, A or B.
Better answer:`;

const PLACEHOLDER_RE = /\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/g;

/**
 * Checks a template's placeholders: every {{name}} must be one of JUDGE_PLACEHOLDERS (an unknown one is named with
 * its line) and each of them must appear. `source` names the file in errors.
 */
export function checkJudgeTemplate(template: string, source: string): void {
  for (const m of template.matchAll(PLACEHOLDER_RE))
    if (!(JUDGE_PLACEHOLDERS as readonly string[]).includes(m[1]!)) {
      const line = template.slice(0, m.index).split("\n").length;
      throw configError(
        `${source}:${line}: unknown placeholder {{${m[1]}}} in the judge template; the placeholders are ` +
          `${JUDGE_PLACEHOLDERS.map((p) => `{{${p}}}`).join(", ")}`,
      );
    }
  const found = new Set([...template.matchAll(PLACEHOLDER_RE)].map((m) => m[1]!));
  const missing = JUDGE_PLACEHOLDERS.filter((p) => !found.has(p));
  if (missing.length > 0)
    throw configError(
      `${source}: the judge template has no ${missing.map((p) => `{{${p}}}`).join(" or ")} placeholder; a pairwise ` +
        `template must show the prompt and both answers through {{prompt}}, {{answer_a}} and {{answer_b}}`,
    );
}

/** The template with its placeholders filled in one pass (text inside the answers is never substituted again). */
export function fillJudgeTemplate(template: string, prompt: string, a: string, b: string): string {
  const values: Record<string, string> = { prompt, answer_a: a, answer_b: b };
  return template.replace(PLACEHOLDER_RE, (_, name: string) => values[name]!);
}

/** The text before the label for one order: the filled template, through the chat template when there is one. */
export function judgeText(tok: Tokenizer, filled: string, source = "LLM judge"): string {
  if (tok.chatTemplate === null || tok.chatTemplate === "") return filled;
  const name = (id: number | null): string | undefined => (id === null ? undefined : tok.idToToken(id));
  return renderChat(tok.chatTemplate, [{ role: "user", content: filled }], {
    addGenerationPrompt: true, bosToken: name(tok.bosId), eosToken: name(tok.eosId), source: `${source} (chat template)`,
  });
}

/** Token ids of a judge text: chat output with its special tokens, plain text as text; BOS as the data loader adds it. */
function encodeJudgeText(tok: Tokenizer, text: string, chat: boolean): number[] {
  if (chat) return pairEncoder(tok).prompt(text).ids;
  return [...(tok.addBos && tok.bosId !== null ? [tok.bosId] : []), ...tok.encode(text)];
}

export interface JudgeInput {
  /** BOS and the judge text. */
  ids: number[];
  /** The one-token ids of labels A and B after it. */
  labelA: number;
  labelB: number;
}

/**
 * The ids of one order's judge text and of its two labels (see the header). A label that is not exactly one token
 * after the text is refused with one line naming the tokenizer's split.
 */
export function judgeInput(tok: Tokenizer, text: string, source = "LLM judge"): JudgeInput {
  const chat = tok.chatTemplate !== null && tok.chatTemplate !== "";
  const ids = encodeJudgeText(tok, text, chat);
  // the id `label` adds as exactly one token after the text, or a description of how it splits
  const single = (label: string): number | string => {
    const withLabel = encodeJudgeText(tok, text + label, chat);
    if (withLabel.length === ids.length + 1 && ids.every((id, i) => withLabel[i] === id)) return withLabel[ids.length]!;
    return `${JSON.stringify(label)} as ${JSON.stringify(withLabel.slice(Math.max(0, ids.length - 1)).map((id) => tok.idToToken(id)))}`;
  };
  const spaces = /\s$/.test(text) || text === "" ? [""] : [" ", ""];
  const tried: string[] = [];
  for (const sp of spaces) {
    const a = single(sp + "A"), b = single(sp + "B");
    if (typeof a === "number" && typeof b === "number" && a !== b) return { ids, labelA: a, labelB: b };
    for (const x of [a, b]) if (typeof x === "string") tried.push(x);
  }
  throw configError(
    `${source}: the labels A and B are not one token each after the judge prompt for this tokenizer (the prompt's ` +
      `last token and the label: ${tried.join("; ")}); end the template so that a label stands alone (e.g. "Better answer:"), or use another judge model`,
  );
}

export interface LlmJudgeModel {
  loaded: LoadedModel;
  be: Backend;
  cache: KvCache | null;
}

/** log p(labelA) and log p(labelB) after `input.ids` (float64 log-softmax of the last position's logits). */
export function labelLogps(jm: LlmJudgeModel, input: JudgeInput): [number, number] {
  const { model } = jm.loaded;
  const T = input.ids.length;
  if (!jm.cache || jm.cache.maxT < T) jm.cache = createKvCache(model, Math.max(T, jm.cache?.maxT ?? 0));
  jm.cache.len = 0;
  const logits: Buf = decode(jm.be, model, jm.cache, input.ids); // (V)
  let max = -Infinity;
  for (let v = 0; v < model.cfg.V; v++) max = Math.max(max, logits[v]!);
  let sum = 0;
  for (let v = 0; v < model.cfg.V; v++) sum += Math.exp(logits[v]! - max);
  const lse = max + Math.log(sum);
  return [logits[input.labelA]! - lse, logits[input.labelB]! - lse];
}

/** σ(x) without overflow. */
const sigmoid = (x: number): number => (x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x)));

/** Reads a template file (relative to baseDir) and checks its placeholders. */
export function readJudgeTemplate(path: string, baseDir: string): string {
  const file = resolve(baseDir, path);
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    throw inputError(`${file}: cannot read the judge template file`);
  }
  checkJudgeTemplate(text, file);
  return text;
}


/**
 * The `compare` judge of a causal LM (a .gguf file or an HF folder, `path` relative to ctx.baseDir) on ctx.backend,
 * in float32; `opts.template` is a template file (relative to ctx.baseDir) that replaces DEFAULT_JUDGE_TEMPLATE.
 * `ctor` (tests) runs it in float64 on the js backend.
 */
export function loadLlmJudge(path: string, ctx: JudgeContext, opts: { template?: string; ctor?: FloatCtor } = {}): Judge {
  const template = opts.template !== undefined ? located(ctx, () => readJudgeTemplate(opts.template!, ctx.baseDir)) : DEFAULT_JUDGE_TEMPLATE;
  const modelPath = resolve(ctx.baseDir, path);
  const jm: LlmJudgeModel = located(ctx, () => ({ loaded: loadModel(modelPath, opts.ctor ?? Float32Array), be: selectBackend(ctx.backend), cache: null }));
  const tok = jm.loaded.tokenizer;
  const source = `${ctx.where} (${path})`;
  let last: Record<string, number | boolean> | null = null;
  let warned = false;
  const order = (prompt: string, first: string, second: string): [number, number] => {
    const input = judgeInput(tok, judgeText(tok, fillJudgeTemplate(template, prompt, first, second), source), source);
    const ctxLen = jm.loaded.model.cfg.maxSeqLen;
    if (input.ids.length >= ctxLen && !warned) {
      warned = true; // RoPE runs on past the trained context, but the judgement is then worth less; said once
      process.stderr.write(`${source}: a judge prompt of ${input.ids.length} tokens is longer than the model's context of ${ctxLen}; its preferences there are unreliable\n`);
    }
    return labelLogps(jm, input);
  };
  return {
    name: `llm:${path}`,
    async compare(prompt: string, a: string, b: string): Promise<number> {
      const [abA, abB] = order(prompt, a, b); // a is answer A
      const [baA, baB] = order(prompt, b, a); // a is answer B
      const pAb = sigmoid(abA - abB); // P(a ≻ b) with a shown first
      const pBa = sigmoid(baB - baA); // P(a ≻ b) with a shown second
      const p = (pAb + pBa) / 2;
      if (!Number.isFinite(p)) throw new Error(`LLM judge ${modelPath}: non-finite label log-probs (${abA}, ${abB}, ${baA}, ${baB})`);
      last = {
        p_ab: pAb, p_ba: pBa, agree: Math.sign(pAb - 0.5) === Math.sign(pBa - 0.5),
        logp_ab_A: abA, logp_ab_B: abB, logp_ba_A: baA, logp_ba_B: baB,
      };
      return p;
    },
    lastDetail: () => last,
    close(): void {
      jm.cache = null;
    },
  };
}
