// Side-by-side samples: for each prompt, n completions from the tuned policy next to n from the reference, the
// quickest way to see what preference training changed.
//
// Seeds: sample j of prompt i draws from an RNG seeded with sampleSeed(seed, i, j), for the policy and the
// reference alike. So the same seed gives the same samples, the two columns differ only where the models do (with
// the model given as its own reference the columns are identical), and adding prompts or samples does not change
// the ones already there.
//
// Prompts are encoded as training encodes them (data/tokenize.ts pairEncoder): BOS once, special-token strings
// parsed. Chat prompts (a list of {role, content}) are rendered with each model's chat template and the assistant
// header, with the run's chat_template_kwargs. A completion is the text the new tokens add to the prompt, stop token
// dropped.

import { readFileSync } from "node:fs";
import type { Backend } from "../backend/contract.js";
import { configError, inputError, TsdpoError } from "../errors.js";
import { pairEncoder } from "../data/tokenize.js";
import type { Model } from "../model/decoder.js";
import { Rng } from "../rng.js";
import { renderChat, type ChatMessage, type ChatTemplateKwargs } from "../tokenizer/chat.js";
import type { Tokenizer } from "../tokenizer/types.js";
import { generate } from "./generate.js";

export interface SamplePrompt {
  /** The prompt as given: a string, or chat messages. */
  prompt: string | ChatMessage[];
  /** "file:line", for messages. */
  source: string;
}

export interface SideBySideOptions {
  n: number; // completions per prompt and model
  maxNewTokens: number;
  temperature: number; // 0 = greedy (then all n samples are the same)
  topK: number; // 0 = no limit
  topP: number; // 1 = no limit
  seed: number;
  /** Extra variables for every chat-template render (config key chat_template_kwargs); absent: none. */
  chatTemplateKwargs?: ChatTemplateKwargs | null;
}

export const defaultSideBySideOptions: SideBySideOptions = {
  n: 4,
  maxNewTokens: 128,
  // below 1 so that small models stay coherent, above 0 so that n samples show the spread of each model
  temperature: 0.8,
  topK: 0,
  topP: 1,
  seed: 0,
};

export interface SideBySideRow {
  prompt: string | ChatMessage[];
  policy: string[];
  reference: string[];
}

export interface SamplingModel {
  model: Model;
  tokenizer: Tokenizer;
}

/**
 * Reads a prompts file: JSON Lines with a "prompt" field (a string, or a list of {role, content} messages) when the
 * name ends in .jsonl/.ndjson/.json or the first non-blank line starts with "{"; otherwise one prompt per line.
 * Blank lines are skipped.
 */
export function readPromptsFile(path: string): SamplePrompt[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new TsdpoError("io", `${path}: cannot read the prompts file (${(e as NodeJS.ErrnoException).code ?? String(e)}); check the path`);
  }
  const lines = text.replace(/^\uFEFF/, "").split(/\r?\n/);
  const firstLine = lines.find((l) => l.trim() !== "");
  const jsonl = /\.(jsonl|ndjson|json)$/i.test(path) || (firstLine !== undefined && firstLine.trimStart().startsWith("{"));
  const out: SamplePrompt[] = [];
  lines.forEach((line, i) => {
    if (line.trim() === "") return;
    const source = `${path}:${i + 1}`;
    out.push({ prompt: jsonl ? jsonPrompt(line, source) : line, source });
  });
  if (out.length === 0)
    throw inputError(`${path}: no prompts; write one prompt per line, or JSON Lines such as {"prompt": "Once upon a time"}`);
  return out;
}

function jsonPrompt(line: string, source: string): string | ChatMessage[] {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch (e) {
    throw inputError(`${source}: not valid JSON (${(e as Error).message}); each line must be an object like {"prompt": "..."}`);
  }
  if (v === null || typeof v !== "object" || Array.isArray(v))
    throw inputError(`${source}: expected an object like {"prompt": "..."}, got ${JSON.stringify(v).slice(0, 60)}`);
  const p = (v as Record<string, unknown>).prompt;
  if (typeof p === "string") return p;
  if (Array.isArray(p) && p.length > 0) {
    p.forEach((m, k) => {
      const ok = m !== null && typeof m === "object" && typeof (m as ChatMessage).role === "string" && typeof (m as ChatMessage).content === "string";
      if (!ok) throw inputError(`${source}: prompt[${k}] must be a message {"role": "...", "content": "..."}`);
    });
    return p.map((m: ChatMessage) => ({ role: m.role, content: m.content }));
  }
  throw inputError(
    `${source}: field "prompt" is ${p === undefined ? "missing" : `not a string or a list of messages (${JSON.stringify(p).slice(0, 60)})`}; ` +
      `write {"prompt": "text"} or {"prompt": [{"role": "user", "content": "..."}]}`,
  );
}

/** The prompt text a model sees: the string itself, or the chat messages rendered with its template. */
export function promptText(tok: Tokenizer, p: SamplePrompt, kwargs?: ChatTemplateKwargs | null): string {
  if (typeof p.prompt === "string") return p.prompt;
  if (tok.chatTemplate === null || tok.chatTemplate === "")
    throw configError(
      `${p.source}: the prompt is a list of chat messages but the model has no chat template; give the prompt as ` +
        `plain text, or use a model that ships a chat template`,
    );
  const name = (id: number | null): string | undefined => (id === null ? undefined : tok.idToToken(id));
  return renderChat(tok.chatTemplate, p.prompt, {
    addGenerationPrompt: true,
    bosToken: name(tok.bosId),
    eosToken: name(tok.eosId),
    source: `${p.source} (chat template)`,
    ...(kwargs != null ? { kwargs } : {}),
  });
}

/** murmur3's 32-bit finaliser: a bijection that spreads every input bit over the output. */
function fmix32(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

/** The seed of sample `sampleIndex` of prompt `promptIndex`: distinct streams from one user seed. */
export function sampleSeed(seed: number, promptIndex: number, sampleIndex: number): number {
  return fmix32((fmix32((fmix32(seed >>> 0) + promptIndex) >>> 0) + sampleIndex) >>> 0);
}

/** Generates opts.n completions of one prompt. */
function completions(be: Backend, m: SamplingModel, p: SamplePrompt, promptIndex: number, opts: SideBySideOptions): string[] {
  const { ids } = pairEncoder(m.tokenizer).prompt(promptText(m.tokenizer, p, opts.chatTemplateKwargs));
  if (ids.length === 0) throw inputError(`${p.source}: the prompt is empty and the model has no BOS token to start from`);
  if (ids.length >= m.model.cfg.maxSeqLen)
    throw inputError(`${p.source}: the prompt is ${ids.length} tokens but the model's context is ${m.model.cfg.maxSeqLen}; shorten it`);
  const stops = [...(m.tokenizer.eosId !== null ? [m.tokenizer.eosId] : []), ...m.tokenizer.stopIds];
  const head = m.tokenizer.decode(ids);
  const out: string[] = [];
  for (let j = 0; j < opts.n; j++) {
    const g = generate(be, m.model, ids, stops, opts, new Rng(sampleSeed(opts.seed, promptIndex, j)));
    // Decoding prompt + completion together keeps the space a SentencePiece decoder drops at the start of a text
    const whole = m.tokenizer.decode([...ids, ...g.ids]);
    out.push(whole.startsWith(head) ? whole.slice(head.length) : m.tokenizer.decode(g.ids));
  }
  return out;
}

export function sideBySide(
  be: Backend,
  policy: SamplingModel,
  reference: SamplingModel,
  prompts: readonly SamplePrompt[],
  opts: SideBySideOptions = defaultSideBySideOptions,
): SideBySideRow[] {
  if (!Number.isInteger(opts.n) || opts.n < 1) throw configError(`n must be a whole number ≥ 1, got ${opts.n}`);
  return prompts.map((p, i) => ({
    prompt: p.prompt,
    policy: completions(be, policy, p, i, opts),
    reference: completions(be, reference, p, i, opts),
  }));
}

// ---------------------------------------------------------------------------------------------------------------
// Text layout

const chars = (s: string): string[] => [...s];

/** Word-wraps text into lines of at most `width` characters; newlines are kept, over-long words are cut. */
export function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  for (const para of text.replace(/\r/g, "").replace(/\t/g, "    ").split("\n")) {
    let line: string[] = [];
    let start = true; // indentation at the start of a paragraph is kept; spaces at a wrap point are not
    for (const word of para.split(/(?<= )/)) {
      let w = chars(word);
      const visible = chars(word.trimEnd()).length;
      if (line.length > 0 && line.length + visible > width) {
        lines.push(line.join("").trimEnd());
        line = [];
        start = false;
      }
      if (line.length === 0 && visible === 0 && !start) continue;
      while (w.length > width) {
        lines.push(w.slice(0, width).join(""));
        w = w.slice(width);
        start = false;
      }
      line.push(...w);
    }
    lines.push(line.join("").trimEnd());
  }
  return lines;
}

const EMPTY = "(empty completion)";

const showPrompt = (p: string | ChatMessage[]): string =>
  typeof p === "string" ? p : p.map((m) => `[${m.role}] ${m.content}`).join("\n");

/**
 * Each prompt, then for every sample index the policy's completion on the left and the reference's on the right,
 * wrapped to columns of (width − 3) / 2 characters.
 */
export function formatSideBySide(rows: readonly SideBySideRow[], width = 100): string {
  const col = Math.max(20, Math.floor((width - 3) / 2));
  const total = 2 * col + 3;
  const out: string[] = [];
  const cell = (s: string): string => s + " ".repeat(Math.max(0, col - chars(s).length));
  rows.forEach((r, i) => {
    const title = `══ prompt ${i + 1}/${rows.length} `;
    out.push(title + "═".repeat(Math.max(0, total - chars(title).length)));
    out.push(...wrap(showPrompt(r.prompt), total));
    const n = Math.max(r.policy.length, r.reference.length);
    for (let j = 0; j < n; j++) {
      const label = `── sample ${j + 1}/${n} `;
      out.push(cell(label + "─".repeat(Math.max(0, col - chars(label).length))) + "─┬─" + "─".repeat(col));
      out.push(cell("policy") + " │ " + "reference");
      const left = wrap(r.policy[j] || EMPTY, col);
      const right = wrap(r.reference[j] || EMPTY, col);
      for (let k = 0; k < Math.max(left.length, right.length); k++) out.push((cell(left[k] ?? "") + " │ " + (right[k] ?? "")).trimEnd());
    }
    out.push("");
  });
  return out.join("\n");
}
