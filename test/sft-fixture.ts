// The SFT fixture's inputs, made by tsdpo's own data path: two conversations rendered with a ChatML template and
// tokenised with stories260K's tokenizer (its 512 ids are the vocabulary of the fixture's model), with the mask of
// each setting. tools/sft-inputs.mjs writes them to test/fixtures/torch/sft-inputs.json, from which
// tools/sft_fixture.py computes the float64 PyTorch reference (test/fixtures/torch/sft.safetensors keeps the inputs it
// was made from); test/sft.test.ts checks that this module still makes the same inputs and that a tsdpo step on them
// gives the reference's loss and gradients. No tests here: this module is shared by the test and the tool.

import { chatRendererFor } from "../src/data/normalize.js";
import { type SftExample, type SftRowOptions, normalizeSftRow, tokenizeSft } from "../src/data/sft.js";
import { pairEncoder } from "../src/data/tokenize.js";
import type { ChatMessage } from "../src/data/types.js";
import { renderChat } from "../src/tokenizer/chat.js";
import type { Tokenizer } from "../src/tokenizer/types.js";

/** ChatML, as Qwen's and SmolLM's templates write it. */
export const CHATML =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/** Two conversations: two assistant turns in the first, a system message in the second. */
export const CONVERSATIONS: ChatMessage[][] = [
  [
    { role: "user", content: "Lily had a cat." },
    { role: "assistant", content: "She loved it." },
    { role: "user", content: "What did the cat do?" },
    { role: "assistant", content: "It ran to the park." },
  ],
  [
    { role: "system", content: "Be kind." },
    { role: "user", content: "Tom had a red ball." },
    { role: "assistant", content: "He threw it to his dog." },
  ],
];

/**
 * all: {"messages"} rows, every token counts (assistant_only_loss false, TRL's default);
 * assistant_only: the same rows with assistant_only_loss;
 * completion_only: each conversation as {"prompt": all but the last message, "completion": [the last]}, with
 * completion_only_loss at its default (on for prompt-completion rows).
 */
export const SETTINGS = ["all", "assistant_only", "completion_only"] as const;
export type Setting = (typeof SETTINGS)[number];

export function settingExample(tok: Tokenizer, conversation: ChatMessage[], setting: Setting, index: number): SftExample {
  const opts: SftRowOptions = {
    chat: chatRendererFor(renderChat, tok, CHATML), textField: "text", completionOnlyLoss: null, assistantOnlyLoss: setting === "assistant_only",
  };
  const value = setting === "completion_only" ? { prompt: conversation.slice(0, -1), completion: conversation.slice(-1) } : { messages: conversation };
  return normalizeSftRow({ pos: { file: "sft-fixture", format: "jsonl", line: index + 1, index }, value }, opts);
}

export interface SftFixtureInputs {
  ids: number[][];
  trained: Record<Setting, number[][]>;
}

/** The ids of both conversations (the same in every setting) and each setting's mask. */
export function sftFixtureInputs(tok: Tokenizer): SftFixtureInputs {
  const enc = pairEncoder(tok);
  const per = SETTINGS.map((s) => CONVERSATIONS.map((c, i) => {
    const t = tokenizeSft(settingExample(tok, c, s, i), enc, tok, null, "keep_start");
    if (t.kind !== "seq") throw new Error(`sft fixture: ${s} conversation ${i} has nothing to train`);
    return t.seq;
  }));
  const ids = per[0]!.map((q) => [...q.ids]);
  per.forEach((seqs, k) =>
    seqs.forEach((q, i) => {
      if (q.ids.join() !== ids[i]!.join()) throw new Error(`sft fixture: ${SETTINGS[k]} tokenises conversation ${i} differently`);
    }),
  );
  return { ids, trained: Object.fromEntries(SETTINGS.map((s, k) => [s, per[k]!.map((q) => [...q.trained])])) as Record<Setting, number[][]> };
}
