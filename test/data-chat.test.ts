// Conversations through the chat template (src/data/normalize.ts, src/tokenizer/chat.ts): a preference at any
// assistant turn, and a `tools` column or config value handed to the template.
//
// The log-prob check runs the shipped stories260K with a real Jinja template (ChatML, written out below) on the
// backend under test, in both layouts: an implicit row whose two conversations first differ at turn 2 of 3 must
// score exactly as the same conversation cut there by hand ({prompt: the first turns, chosen, rejected}).

import { test } from "node:test";
import assert from "node:assert/strict";
import { chatRendererFor, dataOptionsFromConfig, loadPreferences, tokenizePairs } from "../src/data/index.js";
import type { ChatMessage } from "../src/data/index.js";
import { loadModel } from "../src/io/load.js";
import { renderChat } from "../src/tokenizer/chat.js";
import { resolveTrainConfig } from "../src/train/config.js";
import { pairLogps } from "../src/train/logps.js";
import { rejectsWith, scratchFiles, triples } from "./data-helpers.js";
import { storiesGguf, testBackend } from "./helpers.js";

const tmpFile = scratchFiles("data-chat");
const jsonl = (rows: unknown[]): string => rows.map((r) => JSON.stringify(r)).join("\n") + "\n";
const u = (content: string): ChatMessage => ({ role: "user", content });
const a = (content: string): ChatMessage => ({ role: "assistant", content });

const CHATML =
  "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}" +
  "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

const stories = loadModel(storiesGguf);

test("a preference at turn 2 of 3 scores as the conversation cut there by hand, shared prefix and concatenated", async () => {
  const { model, tokenizer } = stories;
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

test("conversations that go on with different speakers after their shared start are an error naming both roles", async () => {
  const chat = chatRendererFor(renderChat, stories.tokenizer, CHATML)!;
  const path = tmpFile("speakers.jsonl", jsonl([{ chosen: [u("a"), a("b")], rejected: [u("a"), u("c"), a("d")] }]));
  const l = await loadPreferences(path, { chat, skipInvalid: true });
  assert.deepEqual(l.invalid.map((i) => [i.field, i.reason]), [
    ["chosen[1].role", `is "assistant" but rejected[1].role is "user": after their shared start the two conversations must go on with the same speaker; fix the row or add a "prompt" field`],
  ]);
});

// ---------------------------------------------------------------------------------------------------------------
// tools

/**
 * Like Qwen2.5's and Llama 3.1's templates: a system block listing each function's name and description. (As in
 * transformers, a newline right after a block tag is dropped, so each line ends before its {% endfor %}.)
 */
const TOOLS_TEMPLATE =
  "{% if tools %}<|im_start|>system\nYou may call:\n{% for tool in tools %}- {{ tool.function.name }}: " +
  "{{ tool.function.description }}\n{% endfor %}<|im_end|>\n{% endif %}" +
  "{% if tools is defined %}(tools is defined)\n{% endif %}" + // a template that tells "no tools" from "none given"
  CHATML;
const jsonError = (text: string): string => {
  try {
    JSON.parse(text);
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error("parses");
};
const fn = (name: string, description: string) => ({
  type: "function",
  function: { name, description, parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } },
});
const WEATHER = fn("get_weather", "Current weather in a city.");
const TIME = fn("get_time", "Local time in a city.");
const ASK = [u("Weather in Paris?")];
const CALL = [a('{"name": "get_weather", "arguments": {"city": "Paris"}}')];
const GUESS = [a("Sunny.")];

test("a row's tools reach the chat template; rows without tools render exactly as before", async () => {
  const chat = chatRendererFor(renderChat, stories.tokenizer, TOOLS_TEMPLATE)!;
  const path = tmpFile("tools.jsonl", jsonl([
    { prompt: ASK, chosen: CALL, rejected: GUESS, tools: [WEATHER, TIME] },
    { prompt: ASK, chosen: CALL, rejected: GUESS },
    { prompt: ASK, chosen: CALL, rejected: GUESS, tools: JSON.stringify([WEATHER, TIME]) }, // as HF datasets store it
    { chosen: [...ASK, ...CALL], rejected: [...ASK, ...GUESS], tools: [WEATHER, TIME] }, // implicit prompt
    { prompt: ASK, chosen: CALL, rejected: GUESS, tools: null }, // a Parquet row without tools
  ]));
  const withTools =
    "<|im_start|>system\nYou may call:\n- get_weather: Current weather in a city.\n- get_time: Local time in a city.\n<|im_end|>\n" +
    "(tools is defined)\n<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n";
  const without = "<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n";
  const answers = ['{"name": "get_weather", "arguments": {"city": "Paris"}}<|im_end|>\n', "Sunny.<|im_end|>\n"];
  const loaded = await loadPreferences(path, { chat });
  assert.deepEqual(triples(loaded.pairs), [
    [withTools, ...answers],
    [without, ...answers],
    [withTools, ...answers],
    [withTools, ...answers],
    [without, ...answers],
  ]);
  // Without tools, the template renders what it rendered before tools were passed at all.
  assert.equal(renderChat(TOOLS_TEMPLATE, ASK, { addGenerationPrompt: true }), without);
  assert.equal(renderChat(CHATML, ASK, { addGenerationPrompt: true }), without);

  // The config's tools (TRL's DPOConfig.tools) go to every row without its own.
  const configured = await loadPreferences(path, { chat, tools: [TIME] });
  const timeOnly =
    "<|im_start|>system\nYou may call:\n- get_time: Local time in a city.\n<|im_end|>\n(tools is defined)\n" +
    "<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n";
  assert.deepEqual(configured.pairs.map((p) => p.prompt), [withTools, timeOnly, withTools, withTools, timeOnly]);
});

test("tools: the config key and the column are checked, and plain-text rows refuse them", async () => {
  const cfg = resolveTrainConfig({ tools: [WEATHER] }, "test config");
  assert.deepEqual(dataOptionsFromConfig(cfg).tools, [WEATHER]);
  assert.equal(dataOptionsFromConfig(resolveTrainConfig({}, "test config")).tools, undefined);
  assert.throws(() => resolveTrainConfig({ tools: { name: "x" } }, "cfg.json"), /^TsdpoError: cfg\.json: "tools" is an object; it must be a list of function definitions, e\.g\. \[\{"type": "function"/);
  assert.throws(() => resolveTrainConfig({ tools: [WEATHER, "get_time"] }, "cfg.json"), /^TsdpoError: cfg\.json: "tools" item 1 is a string, not an object/);

  const chat = chatRendererFor(renderChat, stories.tokenizer, TOOLS_TEMPLATE)!;
  const bad = tmpFile("tools-bad.jsonl", jsonl([
    { prompt: ASK, chosen: CALL, rejected: GUESS, tools: 3 },
    { prompt: ASK, chosen: CALL, rejected: GUESS, tools: "[{" },
    { prompt: "Weather in Paris?", chosen: " Sunny.", rejected: " Rain.", tools: [WEATHER] },
  ]));
  const l = await loadPreferences(bad, { chat, skipInvalid: true });
  assert.deepEqual(l.invalid.map((i) => [i.line, i.field, i.reason.split(";")[0]]), [
    [1, "tools", "is a number (3)"],
    [2, "tools", `is a string that is not JSON (${jsonError("[{")})`],
    [3, "tools", "is set but chosen and rejected are plain strings"],
  ]);
  const text = tmpFile("tools-text.jsonl", jsonl([{ prompt: "Weather in Paris?", chosen: " Sunny.", rejected: " Rain." }]));
  await rejectsWith(loadPreferences(text, { tools: [WEATHER] }), /tools-text\.jsonl:1: tools is set, but chosen and rejected are plain strings/, "config");
});
