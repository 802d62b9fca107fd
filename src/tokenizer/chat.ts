// Chat templates: the Jinja source a model ships (tokenizer.chat_template in GGUF, chat_template in
// tokenizer_config.json / chat_template.jinja) rendered with @huggingface/jinja, the engine transformers.js uses.
// The variables are the ones transformers passes: messages, add_generation_prompt, bos_token, eos_token, tools
// when there are any, and the extra variables of the config key chat_template_kwargs (transformers'
// apply_chat_template(**kwargs), e.g. Qwen3's enable_thinking); raise_exception, range and strftime_now are the
// engine's globals, set up here as its Template.render does.
//
// A template's raise_exception is its refusal of one conversation (Gemma 2's template refuses a system message,
// most refuse roles that do not alternate), not a fault of the template: it becomes a TemplateRefusal, which the
// data loader reports as a problem of the row (file, line, field) and skip_invalid can skip.
//
// A template is code from a model repository or a --chat-template file, and the engine runs it without limits:
// `range(2**31)` builds a list of 2^31 numbers, nested loops can run for hours and a doubling `set` in a loop
// fills the memory, and a synchronous render cannot be interrupted. So rendering is bounded (see LIMITS), and a
// template that exceeds a bound fails with a config error like any other broken template. The bounds are far above
// what real templates need (Qwen3's, among the longest, takes about 65 steps per message and writes a few hundred
// characters more than the messages hold) and stop a runaway template within about a third of a second.

import { Environment, Interpreter, Template } from "@huggingface/jinja";
import { TemplateRefusal, configError } from "../errors.js";

export interface ChatMessage {
  role: string;
  content: string;
}

export interface RenderChatOptions {
  /** Append the header that opens the assistant's turn (the prompt side of a preference pair). */
  addGenerationPrompt: boolean;
  bosToken?: string;
  eosToken?: string;
  /** Where the template came from (a file, or "--chat-template"), named in error messages. */
  source?: string;
  /**
   * Function definitions for the template's `tools` variable (JSON-schema specs, as transformers' apply_chat_template
   * takes them: {"type": "function", "function": {"name", "description", "parameters"}}). Absent: `tools` is left
   * undefined, so a conversation without tools renders exactly as it did before tools existed. (transformers sets
   * it to None instead; the two differ only for a template that tests `tools is defined`.)
   */
  tools?: readonly ToolSpec[];
  /**
   * Extra template variables (config key chat_template_kwargs, checked by checkTemplateKwargs): each name becomes a
   * variable of every render, as transformers' apply_chat_template(**kwargs) passes them. Absent or {}: the template
   * sees only the standard variables.
   */
  kwargs?: ChatTemplateKwargs;
}

/** One tool definition: a JSON object, passed to the template as is. */
export type ToolSpec = { readonly [key: string]: unknown };

/** Extra variables for every render of a chat template: names to JSON values (null, booleans, numbers, strings, lists, objects). */
export type ChatTemplateKwargs = { readonly [name: string]: unknown };

/**
 * The names renderChat sets itself. A kwarg of one of these names would replace what the template must see
 * (transformers refuses messages, tools and add_generation_prompt as kwargs too; bos_token and eos_token decide
 * where tsdpo finds BOS and EOS in the rendered text), so checkTemplateKwargs refuses them.
 */
export const STANDARD_TEMPLATE_VARIABLES: readonly string[] = [
  "messages", "add_generation_prompt", "bos_token", "eos_token", "tools", "raise_exception", "range", "strftime_now",
  "true", "false", "none", "True", "False", "None",
];

/** Nesting of a kwarg's value beyond this is refused: real ones are flags and short lists, and a deep nest would
 *  overflow the stack of every recursive walk after this one (JSON.stringify, the engine's conversion). */
const MAX_KWARG_DEPTH = 32;

/**
 * Checks chat_template_kwargs: an object whose values are JSON values, none named like a variable renderChat sets.
 * Returns a copy. `fail` makes the error (the caller names the config file or option and the key).
 */
export function checkTemplateKwargs(v: unknown, fail: (reason: string) => Error): ChatTemplateKwargs {
  const example = `e.g. {"enable_thinking": false}`;
  if (v === null || typeof v !== "object" || Array.isArray(v))
    throw fail(`must be an object of template variables, ${example}; got ${kindOf(v)}`);
  for (const name of Object.keys(v)) {
    if (STANDARD_TEMPLATE_VARIABLES.includes(name))
      throw fail(
        `names "${name}", which tsdpo sets for every render` +
          (name === "tools" ? `; give function definitions with the "tools" key instead` : `; remove it`),
      );
    if (name === "") throw fail(`has an empty name; each key is a template variable, ${example}`);
  }
  // Iterative, so that a value nested 100,000 deep (JSON.parse reads it fine) is refused rather than a stack overflow.
  const todo: [unknown, string, number][] = Object.entries(v).map(([k, x]) => [x, k, 1]);
  while (todo.length > 0) {
    const [x, at, depth] = todo.pop()!;
    if (depth > MAX_KWARG_DEPTH) throw fail(`"${at.slice(0, 200)}…" is nested deeper than ${MAX_KWARG_DEPTH} levels`);
    if (x === null || typeof x === "string" || typeof x === "boolean") continue;
    if (typeof x === "number") {
      if (!Number.isFinite(x)) throw fail(`"${at}" is ${x}, not a JSON number`);
      continue;
    }
    if (Array.isArray(x)) {
      x.forEach((y, i) => todo.push([y, `${at}[${i}]`, depth + 1]));
      continue;
    }
    if (typeof x === "object" && Object.getPrototypeOf(x) === Object.prototype) {
      for (const [k, y] of Object.entries(x)) todo.push([y, `${at}.${k}`, depth + 1]);
      continue;
    }
    throw fail(`"${at}" is ${kindOf(x)}, not a JSON value (null, true/false, a number, a string, a list or an object)`);
  }
  return JSON.parse(JSON.stringify(v)) as ChatTemplateKwargs;
}

function kindOf(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "a list";
  if (typeof v === "object") return Object.getPrototypeOf(v) === Object.prototype ? "an object" : `a ${v.constructor?.name ?? "non-JSON"} object`;
  if (typeof v === "string") return `the string ${JSON.stringify(v.slice(0, 60))}`;
  return `${typeof v} ${String(v)}`;
}

const LIMITS = {
  /**
   * Work units per render, plus perMessageSteps for each message: one per expression or statement evaluated, one
   * per loop iteration (an empty loop body evaluates nothing) and one per item range() builds.
   */
  steps: 50_000,
  perMessageSteps: 1_000,
  /** Items in one list (range(), list concatenation, a string split into characters). */
  items: 100_000,
  /** Characters in one string value (the output included), plus perInputChar for each character of the input. */
  chars: 1_000_000,
  perInputChar: 16,
  /** Width of `indent(n)` and `tojson(indent=n)`: the engine builds the padding before anything can check it. */
  pad: 4_096,
};

/** A bound of LIMITS exceeded; turned into a config error that names the bound. */
class RenderLimit extends Error {}

/** The template's own raise_exception(message); turned into a TemplateRefusal. */
class TemplateRaised extends Error {}

/** The work one render may do, and has done. */
class Budget {
  spent = 0;
  constructor(readonly steps: number, readonly chars: number) {}
  charge(n: number): void {
    this.spent += n;
    if (this.spent > this.steps)
      throw new RenderLimit(
        `rendering stopped after ${this.steps} steps (a loop over a huge range, or nested loops that would run for ` +
          `a very long time)`,
      );
  }
}

// The engine's .d.ts files import each other without extensions, which NodeNext resolution does not follow, so
// Interpreter and Environment arrive untyped. These are the parts used here: an AST node has a `type` tag, a
// runtime value a `type` tag and a `value`.
interface AnyNode {
  type: string;
  [field: string]: unknown;
}
interface RuntimeValue {
  type: string;
  value: unknown;
}
interface JinjaEnvironment {
  set(name: string, value: unknown): unknown;
}
interface JinjaInterpreter {
  evaluate(node: AnyNode | undefined, environment: JinjaEnvironment): RuntimeValue;
  run(program: unknown): RuntimeValue;
}
const EnvironmentClass = Environment as unknown as new () => JinjaEnvironment;
const InterpreterClass = Interpreter as unknown as new (env: JinjaEnvironment) => JinjaInterpreter;

const WIDTH_FILTERS = new Set(["indent", "tojson"]);

/**
 * The engine's Interpreter, charging every evaluation and loop iteration to a Budget and checking the size of every
 * value it produces. Loops and filters are the engine's own; the nodes whose values need a check (what a for loop
 * iterates over, the width argument of indent and tojson) are recognised when their parent is evaluated.
 */
class BoundedInterpreter extends InterpreterClass {
  private readonly loopIterables = new WeakSet<object>();
  private readonly widthArgs = new WeakSet<object>();

  constructor(env: JinjaEnvironment, private readonly budget: Budget) {
    super(env);
  }

  override evaluate(node: AnyNode | undefined, environment: JinjaEnvironment): RuntimeValue {
    this.budget.charge(1);
    if (node?.type === "For") this.noteIterable(node);
    else if (node?.type === "FilterExpression") this.noteWidthArgs(node);
    const v = super.evaluate(node, environment);
    const value = v.value;
    if (typeof value === "string" && value.length > this.budget.chars)
      throw new RenderLimit(`a string grew to ${value.length} characters (the limit is ${this.budget.chars})`);
    if (Array.isArray(value) && value.length > LIMITS.items)
      throw new RenderLimit(`a list grew to ${value.length} items (the limit is ${LIMITS.items})`);
    if (node !== undefined && this.loopIterables.has(node))
      this.budget.charge(Array.isArray(value) ? value.length : value instanceof Map ? value.size : 0);
    if (node !== undefined && this.widthArgs.has(node) && typeof value === "number" && Math.abs(value) > LIMITS.pad)
      throw new RenderLimit(`an indent width of ${value} (the limit is ${LIMITS.pad})`);
    return v;
  }

  private noteIterable(node: AnyNode): void {
    const it = node["iterable"] as AnyNode;
    this.loopIterables.add(it.type === "SelectExpression" ? (it["lhs"] as object) : it);
  }

  private noteWidthArgs(node: AnyNode): void {
    const filter = node["filter"] as AnyNode;
    if (filter.type !== "CallExpression") return;
    const callee = filter["callee"] as AnyNode;
    if (callee.type !== "Identifier" || !WIDTH_FILTERS.has(callee["value"] as string)) return;
    for (const arg of filter["args"] as AnyNode[])
      this.widthArgs.add(arg.type === "KeywordArgumentExpression" ? (arg["value"] as object) : arg);
  }
}

/** Python's range, as the engine's, but charged to the budget and refusing a list longer than LIMITS.items. */
function boundedRange(budget: Budget) {
  return (start: number, stop?: number, step = 1): number[] => {
    if (stop === undefined) [start, stop] = [0, start];
    for (const x of [start, stop, step])
      if (typeof x !== "number" || !Number.isFinite(x)) throw new Error(`range() arguments must be numbers, got ${String(x)}`);
    if (step === 0) throw new Error("range() step must not be zero");
    const n = Math.max(0, Math.ceil((stop - start) / step));
    if (n > LIMITS.items) throw new RenderLimit(`range() of ${n} items (the limit is ${LIMITS.items})`);
    budget.charge(n);
    const out: number[] = [];
    for (let i = 0; i < n; i++) out.push(start + i * step);
    return out;
  };
}

/** Python's strftime for the directives the engine knows (%Y %m %d %b %B %H %M %%), on the current local time. */
function strftimeNow(format: string): string {
  const d = new Date();
  const pad2 = (n: number): string => String(n).padStart(2, "0");
  return String(format).replace(/%[YmdbBHM%]/g, (t) => {
    switch (t) {
      case "%Y": return String(d.getFullYear());
      case "%m": return pad2(d.getMonth() + 1);
      case "%d": return pad2(d.getDate());
      case "%b": return new Intl.DateTimeFormat(undefined, { month: "short" }).format(d);
      case "%B": return new Intl.DateTimeFormat(undefined, { month: "long" }).format(d);
      case "%H": return pad2(d.getHours());
      case "%M": return pad2(d.getMinutes());
      default: return "%";
    }
  });
}

const cache = new Map<string, Template>();

export function renderChat(template: string, messages: ChatMessage[], opts: RenderChatOptions): string {
  const where = opts.source ?? "chat template";
  let t = cache.get(template);
  if (!t) {
    try {
      t = new Template(template);
    } catch (e) {
      throw configError(`${where}: the chat template does not parse (${(e as Error).message}); fix or replace it`);
    }
    if (cache.size > 16) cache.clear();
    cache.set(template, t);
  }
  let inputChars = 0;
  for (const m of messages) inputChars += String(m.content).length + String(m.role).length;
  if (opts.tools !== undefined) inputChars += JSON.stringify(opts.tools).length; // a template prints them, often as JSON
  if (opts.kwargs !== undefined) inputChars += JSON.stringify(opts.kwargs).length; // and these too, possibly
  const budget = new Budget(
    LIMITS.steps + LIMITS.perMessageSteps * messages.length,
    LIMITS.chars + LIMITS.perInputChar * inputChars,
  );
  const env = new EnvironmentClass();
  // The globals of the engine's own setupGlobals (not exported), with range bounded.
  for (const [k, v] of [["false", false], ["true", true], ["none", null], ["False", false], ["True", true], ["None", null]] as const)
    env.set(k, v);
  env.set("raise_exception", (msg: string) => {
    throw new TemplateRaised(String(msg));
  });
  env.set("range", boundedRange(budget));
  env.set("strftime_now", strftimeNow);
  // Before the standard variables, so that these win should a caller pass a kwarg of the same name anyway.
  for (const [name, value] of Object.entries(opts.kwargs ?? {})) env.set(name, value);
  env.set("messages", messages);
  env.set("add_generation_prompt", opts.addGenerationPrompt);
  env.set("bos_token", opts.bosToken ?? "");
  env.set("eos_token", opts.eosToken ?? "");
  if (opts.tools !== undefined) env.set("tools", opts.tools);
  try {
    const out = new BoundedInterpreter(env, budget).run(t.parsed).value;
    return String(out);
  } catch (e) {
    if (e instanceof RenderLimit)
      throw configError(
        `${where}: the chat template is too expensive to render: ${e.message}. Real chat templates stay far below ` +
          `this; fix or replace the template`,
      );
    const roles = messages.map((m) => m.role).join(", ");
    if (e instanceof TemplateRaised) {
      const hint = refusalHint(messages);
      throw new TemplateRefusal(`${where}: the chat template refuses a conversation with roles [${roles}]: ${e.message}. ${hint}`, e.message, hint);
    }
    throw configError(
      `${where}: the chat template failed on a conversation with roles [${roles}]: ${e instanceof Error ? e.message : String(e)}. ` +
        `Check that the roles and their order suit this model's template, or supply another template`,
    );
  }
}

/** What to do about a conversation the template refused; a system message is the one case with a known cause. */
function refusalHint(messages: readonly ChatMessage[]): string {
  if (messages.some((m) => m.role === "system"))
    return (
      `This template may have no system role (Gemma 2's refuses one; Gemma 3's folds it into the first user turn): ` +
      `put the system text at the start of the first user message`
    );
  return `Check that the roles and their order suit this model's template (most want user and assistant turns in turn)`;
}
