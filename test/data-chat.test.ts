// Conversations through the chat template (src/data/normalize.ts, src/tokenizer/chat.ts): a preference at any
// assistant turn, a `tools` column or config value handed to the template, and chat_template_kwargs in every render.
//
// The log-prob check runs the shipped stories260K with a real Jinja template (ChatML, written out below) on the
// backend under test, in both layouts: an implicit row whose two conversations first differ at turn 2 of 3 must
// score exactly as the same conversation cut there by hand ({prompt: the first turns, chosen, rejected}).

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { templateKwargsFor } from "../src/cli/templatekwargs.js";
import { chatRendererFor, dataOptionsFromConfig, loadPreferenceData, loadPreferences, tokenizePairs } from "../src/data/index.js";
import type { ChatMessage } from "../src/data/index.js";
import { loadModel } from "../src/io/load.js";
import { runLoadOptions } from "../src/report/samples.js";
import { promptText } from "../src/sample/sideBySide.js";
import { renderChat } from "../src/tokenizer/chat.js";
import { loadTokenizer } from "../src/tokenizer/index.js";
import { applyOverrides, readConfigFile, resolveTrainConfig, trainKeyList } from "../src/train/config.js";
import { pairLogps } from "../src/train/logps.js";
import { rejectsWith, scratchFiles, triples } from "./data-helpers.js";
import { fixture, storiesGguf, testBackend } from "./helpers.js";

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

// ---------------------------------------------------------------------------------------------------------------
// chat_template_kwargs

/**
 * ChatML with two variables a config may set: Qwen3's enable_thinking (false: an empty think block opens every
 * assistant turn, the generation prompt's included, so it belongs to the prompt) and a header on every render. The
 * prompt and each whole conversation must render both alike, or the answer would not extend the prompt's text.
 */
const NO_THINK = "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}";
const KWARGS_TEMPLATE =
  "{% if header is defined %}[{{ header }}]\n{% endif %}" +
  "{% for m in messages %}<|im_start|>{{ m.role }}\n{% if m.role == 'assistant' %}" + NO_THINK + "{% endif %}" +
  "{{ m.content }}<|im_end|>\n{% endfor %}" +
  "{% if add_generation_prompt %}<|im_start|>assistant\n" + NO_THINK + "{% endif %}";

/** Qwen3's tokenizer with `template` as its chat_template.jinja (found before tokenizer_config.json's). */
function qwen3With(template: string): ReturnType<typeof loadTokenizer> {
  const dir = join(tmpFile.dir, `qwen3-${template.length}`);
  mkdirSync(dir);
  symlinkSync(fixture("tokenizers", "qwen3", "tokenizer.json"), join(dir, "tokenizer.json"));
  writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify({ eos_token: "<|im_end|>" }));
  writeFileSync(join(dir, "chat_template.jinja"), template);
  return loadTokenizer(dir);
}

test("chat_template_kwargs reach every render of the data path: prompts, answers and the eval file", async () => {
  const tok = qwen3With(KWARGS_TEMPLATE);
  const row = { prompt: [u("Hi")], chosen: [a("Hello.")], rejected: [a("Go away.")] };
  const data = tmpFile("kwargs.jsonl", jsonl([row]));
  const evalData = tmpFile("kwargs-eval.jsonl", jsonl([{ chosen: [u("Bye"), a("Bye!")], rejected: [u("Bye"), a("No.")] }]));
  const options = (kwargs: Record<string, unknown> | undefined) =>
    dataOptionsFromConfig(resolveTrainConfig({ eval_data: evalData, ...(kwargs ? { chat_template_kwargs: kwargs } : {}) }, "test config"));

  const plain = await loadPreferenceData(data, tok, options(undefined));
  const thinking = await loadPreferenceData(data, tok, options({ enable_thinking: false, header: "2026-01-01" }));
  const ids = (text: string): number[] => tok.encodeWithSpecials(text);
  const think = "<think>\n\n</think>\n\n";
  assert.deepEqual([...plain.pairs[0]!.promptIds], ids("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"));
  assert.deepEqual([...thinking.pairs[0]!.promptIds], ids(`[2026-01-01]\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n${think}`));
  // the answers are the same tokens either way: the header and the think block went to the prompt
  assert.deepEqual([...thinking.pairs[0]!.chosenIds], [...plain.pairs[0]!.chosenIds]);
  assert.deepEqual([...thinking.pairs[0]!.chosenIds], [...tok.encode("Hello."), tok.eosId!]);
  assert.deepEqual([...thinking.eval[0]!.promptIds], ids(`[2026-01-01]\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n${think}`));
  assert.equal(thinking.prompts[0], `[2026-01-01]\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n${think}`);

  // tsdpo sample renders message prompts with them too
  const prompt = { prompt: [u("Hi")], source: "prompts.jsonl:1" };
  assert.equal(promptText(tok, prompt, { enable_thinking: false }), `<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n${think}`);
  assert.equal(promptText(tok, prompt), "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  // and so do the report's samples, from the run's saved config
  const saved = { learning_rate: 1e-6, loss: {}, chat_template_kwargs: { enable_thinking: false } };
  const fromRun = await loadPreferences(data, runLoadOptions(saved, tok, "run/config.json"));
  assert.equal(fromRun.pairs[0]!.prompt, `<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n${think}`);
  assert.throws(() => runLoadOptions({ chat_template_kwargs: 1 }, tok, "run/config.json"), /^TsdpoError: run\/config\.json: "chat_template_kwargs" must be an object/);
});

test("chat_template_kwargs with Qwen3's own template: enable_thinking false moves the empty think block into the prompt", async () => {
  const tok = loadTokenizer(fixture("tokenizers", "qwen3"));
  const path = tmpFile("qwen3.jsonl", jsonl([{ prompt: [u("What is 2+2?")], chosen: [a("4")], rejected: [a("5")] }]));
  const load = async (kwargs: Record<string, unknown> | null) => (await loadPreferences(path, { tokenizer: tok, ...(kwargs ? { chatTemplateKwargs: kwargs } : {}) })).pairs;
  const head = "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n";
  // Without the kwarg Qwen3's template writes the empty think block into the answer, where DPO would score it.
  assert.deepEqual(triples(await load(null)), [[head, "<think>\n\n</think>\n\n4<|im_end|>\n", "<think>\n\n</think>\n\n5<|im_end|>\n"]]);
  assert.deepEqual(triples(await load({ enable_thinking: false })), [[head + "<think>\n\n</think>\n\n", "4<|im_end|>\n", "5<|im_end|>\n"]]);
});

test("chat_template_kwargs: the config key is checked, and errors name the file (or option) and the key", () => {
  const bad = (v: unknown, message: RegExp): void =>
    assert.throws(() => resolveTrainConfig({ chat_template_kwargs: v }, "cfg.json"), (e: unknown) => {
      assert.match(String(e), message);
      assert.equal((e as { kind?: string }).kind, "config");
      return true;
    });
  bad("enable_thinking=false", /^TsdpoError: cfg\.json: "chat_template_kwargs" must be an object of template variables, e\.g\. \{"enable_thinking": false\}; got the string "enable_thinking=false"$/);
  bad([{ enable_thinking: false }], /cfg\.json: "chat_template_kwargs" must be an object .*; got a list$/);
  bad({ messages: [] }, /cfg\.json: "chat_template_kwargs" names "messages", which tsdpo sets for every render; remove it$/);
  bad({ tools: [] }, /cfg\.json: "chat_template_kwargs" names "tools", .*; give function definitions with the "tools" key instead$/);
  bad({ ok: true, when: { at: [1, Number.NaN] } }, /cfg\.json: "chat_template_kwargs" "when\.at\[1\]" is NaN, not a JSON number$/);
  bad({ f: () => 1 }, /cfg\.json: "chat_template_kwargs" "f" is function .*, not a JSON value/);
  let deep: unknown = 1;
  for (let i = 0; i < 100_000; i++) deep = [deep];
  bad({ deep }, /cfg\.json: "chat_template_kwargs" "deep\[0\]\[0\]\[0\].*" is nested deeper than 32 levels$/);

  // null and absent are "none"; an object is copied, so that changing the caller's object changes nothing
  assert.equal(resolveTrainConfig({}, "cfg.json").chat_template_kwargs, null);
  assert.equal(dataOptionsFromConfig(resolveTrainConfig({ chat_template_kwargs: null }, "cfg.json")).chatTemplateKwargs, undefined);
  const given = { enable_thinking: false, depth: { n: 2 } };
  const cfg = resolveTrainConfig({ chat_template_kwargs: given }, "cfg.json");
  given.depth.n = 3;
  assert.deepEqual(dataOptionsFromConfig(cfg).chatTemplateKwargs, { enable_thinking: false, depth: { n: 2 } });
  assert.throws(() => dataOptionsFromConfig({ chat_template_kwargs: "x" as never }), /^TsdpoError: "chat_template_kwargs" must be an object/);

  // from a config file: the message names the file; on the command line, the option as typed
  const file = tmpFile("cfg.json", JSON.stringify({ chat_template_kwargs: { bos_token: "<s>" } }));
  assert.throws(() => resolveTrainConfig(readConfigFile(file), file), new RegExp(`^TsdpoError: ${file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: "chat_template_kwargs" names "bos_token"`));
  assert.deepEqual(resolveTrainConfig(applyOverrides({}, { chat_template_kwargs: '{"enable_thinking": false}' }), "cli").chat_template_kwargs, { enable_thinking: false });
  assert.throws(() => applyOverrides({}, { chat_template_kwargs: "enable_thinking" }), /^TsdpoError: --chat_template_kwargs enable_thinking: "chat_template_kwargs" must be an object/);
  assert.match(trainKeyList(), /^  chat_template_kwargs +null +extra chat-template variables/m);
});

test("chat_template_kwargs for eval, logprobs and sample: --chat-template-kwargs, else the run's own", () => {
  const run = join(tmpFile.dir, "run");
  mkdirSync(run);
  writeFileSync(join(run, "config.json"), JSON.stringify({ learning_rate: 1e-6, loss: {}, chat_template_kwargs: { enable_thinking: false } }));
  assert.deepEqual(templateKwargsFor({}, run), { enable_thinking: false });
  assert.deepEqual(templateKwargsFor({ chat_template_kwargs: '{"enable_thinking": true}' }, run), { enable_thinking: true });
  assert.equal(templateKwargsFor({}, storiesGguf), null);
  assert.equal(templateKwargsFor({}, undefined), null);
  assert.throws(() => templateKwargsFor({ chat_template_kwargs: "{nope" }, run), /^TsdpoError: --chat-template-kwargs \{nope: not JSON/);
  assert.throws(() => templateKwargsFor({ chat_template_kwargs: "[1]" }, run), /^TsdpoError: --chat-template-kwargs \[1\]: must be an object/);
  writeFileSync(join(run, "config.json"), JSON.stringify({ learning_rate: 1e-6, loss: {}, chat_template_kwargs: { messages: 1 } }));
  assert.throws(() => templateKwargsFor({}, run), /: the run's "chat_template_kwargs" names "messages"/);
});
