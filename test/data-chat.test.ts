// Conversations through the chat template (src/data/normalize.ts, src/tokenizer/chat.ts): a preference at any
// assistant turn, and a `tools` column or config value handed to the template.
//
// The log-prob check runs the shipped stories260K with a real Jinja template (ChatML, written out below) on the
// backend under test, in both layouts: an implicit row whose two conversations first differ at turn 2 of 3 must
// score exactly as the same conversation cut there by hand ({prompt: the first turns, chosen, rejected}).

import { test } from "node:test";
import assert from "node:assert/strict";
import { chatRendererFor, loadPreferences, tokenizePairs } from "../src/data/index.js";
import type { ChatMessage } from "../src/data/index.js";
import { loadModel } from "../src/io/load.js";
import { renderChat } from "../src/tokenizer/chat.js";
import { pairLogps } from "../src/train/logps.js";
import { scratchFiles, triples } from "./data-helpers.js";
import { storiesGguf, testBackend } from "./helpers.js";

const tmpFile = scratchFiles("data-chat");
const jsonl = (rows: unknown[]): string => rows.map((r) => JSON.stringify(r)).join("\n") + "\n";
const u = (content: string): ChatMessage => ({ role: "user", content });
const a = (content: string): ChatMessage => ({ role: "assistant", content });

const CHATML =
  "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}" +
  "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

test("a preference at turn 2 of 3 scores as the conversation cut there by hand, shared prefix and concatenated", async () => {
  const { model, tokenizer } = loadModel(storiesGguf);
  const chat = chatRendererFor(renderChat, tokenizer, CHATML)!;
  const first = [u("Tom has a red ball."), a("That is nice."), u("Where did he find it?")];
  const chosen = [a("In the park."), u("Was it big?"), a("Yes, very big.")];
  const rejected = [a("On the moon."), u("Did he keep it?"), a("No.")];
  const path = tmpFile("turn2.jsonl", jsonl([
    { chosen: [...first, ...chosen], rejected: [...first, ...rejected] }, // implicit: differ at turn 2
    { prompt: first, chosen, rejected }, // the same, cut by hand
  ]));
  const loaded = await loadPreferences(path, { chat });
  assert.deepEqual(loaded.drops, []);
  const want = [
    "<|im_start|>user\nTom has a red ball.<|im_end|>\n<|im_start|>assistant\nThat is nice.<|im_end|>\n" +
      "<|im_start|>user\nWhere did he find it?<|im_end|>\n<|im_start|>assistant\n",
    "In the park.<|im_end|>\n<|im_start|>user\nWas it big?<|im_end|>\n<|im_start|>assistant\nYes, very big.<|im_end|>\n",
    "On the moon.<|im_end|>\n<|im_start|>user\nDid he keep it?<|im_end|>\n<|im_start|>assistant\nNo.<|im_end|>\n",
  ];
  assert.deepEqual(triples(loaded.pairs), [want, want]);
  assert.deepEqual(loaded.pairs.map((p) => p.shape), ["conversational-implicit", "conversational"]);

  const tokenized = tokenizePairs(loaded.pairs, tokenizer);
  assert.equal(tokenized.pairs.length, 2);
  const be = testBackend();
  const byLayout = [true, false].map((shared) => pairLogps(be, model, tokenized.pairs, 1, shared));
  for (const [implicit, cut] of byLayout) {
    assert.ok(implicit!.chosen_tokens > 20 && implicit!.rejected_tokens > 20, "the answers hold turn 3");
    assert.deepEqual([implicit!.chosen_logps, implicit!.rejected_logps], [cut!.chosen_logps, cut!.rejected_logps]);
    assert.deepEqual([implicit!.chosen_tokens, implicit!.rejected_tokens], [cut!.chosen_tokens, cut!.rejected_tokens]);
  }
  // The two layouts branch at the same place: the rejected answer sees the prompt, not the chosen one.
  const [shared, cat] = byLayout;
  for (let i = 0; i < 2; i++)
    for (const k of ["chosen_logps", "rejected_logps"] as const)
      assert.ok(Math.abs(shared![i]![k] - cat![i]![k]) < 1e-3, `${k} of pair ${i}: shared ${shared![i]![k]} vs concatenated ${cat![i]![k]}`);
});
