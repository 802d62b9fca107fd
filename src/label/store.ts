// The label studio's files and its one rule of truth: the log.
//
// Every action (choose, tie, skip, edit, undo) is one line of <out>.log.jsonl, appended and fsynced before the page
// is told it was saved (io/atomic.ts appendFileSynced). The preference file is never edited in place: after each
// action it is rebuilt from the items and the whole log and written atomically, so a kill -9 at any moment leaves
// the log with every saved action (at worst plus a torn last line that was never acknowledged, dropped on the next
// start) and the preference file either before or after the last action; the next start rebuilds it anyway.
//
// Items are decided in order. The decisions standing form a stack, items 1..m, and the current item is m + 1: a
// decision is about the current item, and undo takes back the newest decision standing, whose item becomes current
// again. Replaying the log rebuilds that stack, so a restart continues at the first undecided item. A skipped item
// counts as decided (it is kept in the log only, as ties are); undo brings it back.

import { existsSync, readFileSync, statSync, truncateSync } from "node:fs";
import { appendFileSynced, writeFileAtomic } from "../io/atomic.js";
import { TsdpoError, describeValue, inputError } from "../errors.js";
import type { ChatMessage } from "../tokenizer/chat.js";
import type { ActionRequest, Decision, ItemsFile, LabelItem, LogEntry, PageState } from "./types.js";

export interface LabelPaths {
  out: string;
  items: string;
  log: string;
  /** Held while a server runs (src/train/lock.ts): two servers appending to one log would make a log of neither. */
  lock: string;
}

/** The files next to the preference file: prefs.jsonl → prefs.items.json, prefs.log.jsonl, prefs.lock. */
export function labelPaths(out: string): LabelPaths {
  const base = out.replace(/\.jsonl$/i, "");
  return { out, items: `${base}.items.json`, log: `${base}.log.jsonl`, lock: `${base}.lock` };
}

// ---------------------------------------------------------------------------------------------------------------
// The items file

/** One item per line, so that a person can read it and diff it. */
export function writeItems(path: string, file: ItemsFile): void {
  const items = file.items.map((it) => JSON.stringify(it)).join(",\n");
  writeFileAtomic(path, `{"tsdpo_label":1,"settings":${JSON.stringify(file.settings)},"items":[\n${items}\n]}\n`);
}

export function readItems(path: string): ItemsFile {
  let v: unknown;
  try {
    v = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw inputError(`${path}: not a tsdpo label items file (${(e as Error).message}); delete it to sample the items again, or give another --out`);
  }
  const f = v as Partial<ItemsFile>;
  const bad = (what: string): TsdpoError =>
    inputError(`${path}: ${what}; this is not a tsdpo label items file, or it was edited. Delete it to sample the items again, or give another --out`);
  if (f === null || typeof f !== "object" || f.tsdpo_label !== 1 || f.settings === null || typeof f.settings !== "object" || !Array.isArray(f.items))
    throw bad(`expected {"tsdpo_label": 1, "settings": {...}, "items": [...]}`);
  f.items.forEach((it, i) => {
    const k = Array.isArray(it?.completions) ? it.completions.length : -1;
    const ok =
      it !== null && typeof it === "object" && it.item === i + 1 && (typeof it.prompt === "string" || Array.isArray(it.prompt)) &&
      k >= 2 && it.completions.every((c) => typeof c?.text === "string" && typeof c.from === "string") && isPermutation(it.order, k);
    if (!ok) throw bad(`item ${i + 1} is malformed (${describeValue(it, 120)})`);
  });
  return f as ItemsFile;
}

/**
 * Refuses to continue with items made under other settings (another prompts file, model, k, seed, ...): their
 * numbering and completions would not be the ones the log speaks of.
 */
export function checkSettings(path: string, found: Record<string, unknown>, wanted: Record<string, unknown>): void {
  const keys = [...new Set([...Object.keys(found), ...Object.keys(wanted)])];
  const show = (x: unknown): string => (x === undefined ? "absent" : describeValue(x, 80));
  const diffs = keys.filter((k) => JSON.stringify(found[k]) !== JSON.stringify(wanted[k])).map((k) => `${k}: ${show(found[k])} then, ${show(wanted[k])} now`);
  if (diffs.length > 0)
    throw new TsdpoError(
      "config",
      `${path}: these items were made with other settings (${diffs.join("; ")}); run the command as it was run then ` +
        `to continue, or give another --out to start afresh`,
    );
}

function isPermutation(order: unknown, k: number): boolean {
  return Array.isArray(order) && order.length === k && order.every((x) => Number.isInteger(x) && x >= 0 && x < k) && new Set(order).size === k;
}

// ---------------------------------------------------------------------------------------------------------------
// The log

/**
 * The log's entries. A last line without its newline is an append that never finished (so the page never heard
 * "saved"): it is cut off the file, and `say` is told. Any other line that does not parse is damage (or an edit)
 * that the replay must not guess around: an error naming the line.
 */
export function readLog(path: string, say: (line: string) => void): LogEntry[] {
  if (!existsSync(path)) return [];
  const text = readFileSync(path, "utf8");
  const end = text.lastIndexOf("\n") + 1;
  if (end < text.length) {
    say(`${path}: dropping a torn last line (${text.length - end} bytes, an action that was never saved): ${describeValue(text.slice(end), 80)}`);
    truncateSync(path, Buffer.byteLength(text.slice(0, end), "utf8"));
  }
  const lines = text.slice(0, end).split("\n").slice(0, -1);
  return lines.map((line, i) => {
    try {
      return JSON.parse(line) as LogEntry;
    } catch (e) {
      throw inputError(`${path}:${i + 1}: not a JSON line (${(e as Error).message}); the log was damaged or edited: repair or remove that line`);
    }
  });
}

/** Why a decision does not fit its item, or null. Used on the log's lines and on the page's requests alike. */
function decisionProblem(d: Decision, it: LabelItem): string | null {
  const k = it.completions.length;
  const index = (x: unknown): boolean => Number.isInteger(x) && (x as number) >= 0 && (x as number) < k;
  if (!isPermutation(d.shown, k)) return `"shown" must list the item's ${k} completions in the order shown`;
  switch (d.action) {
    case "choose":
      if (!(index(d.best) && index(d.worst) && d.best !== d.worst)) return `"best" and "worst" must be two different completions of 0..${k - 1}`;
      return emptyProblem(it, d.shown, [d.best, d.worst]);
    case "tie":
    case "skip":
      return null;
    case "edit":
      if (!index(d.rejected)) return `"rejected" must be a completion of 0..${k - 1}`;
      if (typeof d.text !== "string" || d.text.trim() === "") return "the written answer is empty";
      if (d.text === it.completions[d.rejected]!.text) return "the written answer is the same as the answer it replaces";
      return emptyProblem(it, d.shown, [d.rejected]);
    default:
      return `unknown action ${describeValue((d as { action: unknown }).action)}`;
  }
}

/** A preference file cannot hold an empty answer (train refuses it): such an answer can be tied, skipped or rewritten. */
function emptyProblem(it: LabelItem, shown: readonly number[], used: readonly number[]): string | null {
  const empty = used.find((c) => it.completions[c]!.text === "");
  return empty === undefined ? null : `answer ${shown.indexOf(empty) + 1} is empty, and a preference file cannot hold an empty answer: mark a tie, skip, or write an answer with e`;
}

type Standing = Decision & { n: number };

/** The decisions still standing after `entries`, in item order; any line that breaks the rules is an error. */
export function replay(items: readonly LabelItem[], entries: readonly LogEntry[], logPath: string): Standing[] {
  const stack: Standing[] = [];
  entries.forEach((e, i) => {
    const fail = (what: string): never => {
      throw inputError(`${logPath}:${i + 1}: ${what} (${describeValue(e, 160)}); the log was damaged or edited: repair or remove the lines from there on`);
    };
    if (e === null || typeof e !== "object" || e.n !== i + 1) fail(`expected action number ${i + 1}`);
    if (e.action === "undo") {
      const top = stack.at(-1);
      if (!top || top.n !== e.undoes || top.item !== e.item) fail(`undo of line ${e.undoes}, but the newest decision standing is ${top ? `line ${top.n}` : "none"}`);
      stack.pop();
      return;
    }
    const it = items[stack.length];
    if (e.item !== stack.length + 1 || !it) fail(`a decision about item ${e.item}, but the item to decide is ${stack.length + 1} of ${items.length}`);
    const problem = decisionProblem(e, it!);
    if (problem) fail(problem);
    const { time: _time, ...d } = e;
    stack.push(d as Standing);
  });
  return stack;
}

// ---------------------------------------------------------------------------------------------------------------
// The preference file

const asMessages = (text: string): ChatMessage[] => [{ role: "assistant", content: text }];

/**
 * The rows `tsdpo train` reads: {prompt, chosen, rejected} for each choice and each written answer standing, in
 * item order. A chat prompt stays a list of messages, its answers become assistant messages (conversational rows,
 * rendered with the model's chat template when training); a text prompt gives text answers that continue it.
 */
export function preferenceRows(items: readonly LabelItem[], decisions: readonly Decision[]): Record<string, unknown>[] {
  const rows: Record<string, unknown>[] = [];
  for (const d of decisions) {
    if (d.action !== "choose" && d.action !== "edit") continue;
    const it = items[d.item - 1]!;
    const chosen = d.action === "choose" ? it.completions[d.best]!.text : d.text;
    const rejected = it.completions[d.action === "choose" ? d.worst : d.rejected]!.text;
    rows.push(typeof it.prompt === "string" ? { prompt: it.prompt, chosen, rejected } : { prompt: it.prompt, chosen: asMessages(chosen), rejected: asMessages(rejected) });
  }
  return rows;
}

// ---------------------------------------------------------------------------------------------------------------
// The session: the items, the log, and what the page asks

/** A request the page should not have sent (400), or one about an item it is no longer showing (409). */
export class RequestError extends Error {
  constructor(
    readonly status: 400 | 409,
    message: string,
  ) {
    super(message);
  }
}

export const promptDisplay = (p: string | ChatMessage[]): string => (typeof p === "string" ? p : p.map((m) => `[${m.role}] ${m.content}`).join("\n"));

/**
 * A written answer continues a text prompt as typed. When the prompt ends inside a word's text ("Once upon a time")
 * and the answer starts with a letter or digit, the person means a new word: it gets the space that every sampled
 * continuation of such a prompt carries (" there was"), or training would read "timethere".
 */
export function spacedAnswer(prompt: string | ChatMessage[], text: string): string {
  return typeof prompt === "string" && /\S$/.test(prompt) && /^[\p{L}\p{N}]/u.test(text) ? " " + text : text;
}

export class LabelSession {
  private readonly decisions: Standing[];
  private lines: number;

  private constructor(
    readonly items: readonly LabelItem[],
    readonly paths: LabelPaths,
    readonly mode: "sample" | "pairs",
    entries: readonly LogEntry[],
  ) {
    this.decisions = replay(items, entries, paths.log);
    this.lines = entries.length;
  }

  /** Replays the log (see readLog for a torn last line) and rebuilds the preference file from it. */
  static open(items: readonly LabelItem[], paths: LabelPaths, mode: "sample" | "pairs", say: (line: string) => void): LabelSession {
    const s = new LabelSession(items, paths, mode, readLog(paths.log, say));
    s.writePreferences();
    return s;
  }

  /** 0-based index of the current item (= the number of items decided); items.length when all are decided. */
  get position(): number {
    return this.decisions.length;
  }

  private writePreferences(): void {
    const rows = preferenceRows(this.items, this.decisions);
    writeFileAtomic(this.paths.out, rows.map((r) => JSON.stringify(r) + "\n").join(""));
  }

  /** Logs (fsynced) and applies one request, rebuilds the preference file, and says what was saved. */
  apply(req: ActionRequest): string {
    if (req === null || typeof req !== "object") throw new RequestError(400, "expected a JSON object with an action");
    const current = this.items[this.position];
    if ((req.item ?? null) !== (current?.item ?? null))
      throw new RequestError(409, `the page showed item ${req.item ?? "(none)"}, but the item to decide is ${current?.item ?? "(none: all are decided)"}; reloaded`);
    let entry: LogEntry;
    let said: string;
    const n = this.lines + 1;
    const time = new Date().toISOString();
    if (req.action === "undo") {
      const top = this.decisions.at(-1);
      if (!top) throw new RequestError(400, "nothing to undo");
      entry = { n, time, action: "undo", item: top.item, undoes: top.n };
      said = `undid item ${top.item} (${this.describe(top)})`;
    } else {
      const it = current;
      if (!it) throw new RequestError(400, "every item is decided; press u to undo the last decision");
      const d = this.decisionOf(req, it);
      const problem = decisionProblem(d, it);
      if (problem) throw new RequestError(400, problem);
      entry = { n, time, ...d };
      said = `item ${it.item}: ${this.describe(d)}`;
    }
    appendFileSynced(this.paths.log, JSON.stringify(entry) + "\n");
    this.lines = n;
    if (entry.action === "undo") this.decisions.pop();
    else {
      const { time: _time, ...d } = entry;
      this.decisions.push(d as Standing);
    }
    try {
      this.writePreferences();
    } catch (e) {
      // The log holds the action, which is what counts; the file is rebuilt at the next action or start.
      if (!(e instanceof TsdpoError)) throw e;
      return `${said}; saved (log line ${n}), but the preference file was not rebuilt (${e.message}); the next action or start rebuilds it`;
    }
    return `${said}; saved (log line ${n})`;
  }

  /** A request, in the page's sides, as a decision in completion indices. */
  private decisionOf(req: Exclude<ActionRequest, { action: "undo" }>, it: LabelItem): Decision {
    const k = it.completions.length;
    const side = (s: unknown, what: string): number => {
      if (!Number.isInteger(s) || (s as number) < 1 || (s as number) > k) throw new RequestError(400, `${what} must be an answer 1..${k}, got ${describeValue(s)}`);
      return it.order[(s as number) - 1]!;
    };
    const shown = [...it.order];
    switch (req.action) {
      case "choose": {
        if (k > 2 && req.worst === undefined) throw new RequestError(400, `with ${k} answers, mark the best and the worst`);
        const best = side(req.best, "best");
        const worst = req.worst === undefined ? it.order.find((c) => c !== best)! : side(req.worst, "worst");
        return { action: "choose", item: it.item, shown, best, worst };
      }
      case "tie":
      case "skip":
        return { action: req.action, item: it.item, shown };
      case "edit": {
        if (typeof req.text !== "string") throw new RequestError(400, "the written answer must be text");
        return { action: "edit", item: it.item, shown, rejected: side(req.side, "the answer rewritten"), text: spacedAnswer(it.prompt, req.text) };
      }
      default:
        throw new RequestError(400, `unknown action ${describeValue((req as { action: unknown }).action)}`);
    }
  }

  /** A decision in the page's words: sides as the page showed them. */
  private describe(d: Decision): string {
    const side = (c: number): number => d.shown.indexOf(c) + 1;
    switch (d.action) {
      case "choose":
        return this.items[d.item - 1]!.completions.length > 2 ? `answer ${side(d.best)} best, ${side(d.worst)} worst` : `answer ${side(d.best)} chosen`;
      case "tie":
        return "a tie";
      case "skip":
        return "skipped";
      case "edit":
        return `your answer chosen over answer ${side(d.rejected)}`;
    }
  }

  state(saved: string | null): PageState {
    const count = (a: Decision["action"]): number => this.decisions.filter((d) => d.action === a).length;
    const it = this.items[this.position];
    return {
      mode: this.mode,
      k: this.items[0]?.completions.length ?? 2,
      total: this.items.length,
      decided: this.position,
      pairs: count("choose") + count("edit"),
      ties: count("tie"),
      skips: count("skip"),
      edits: count("edit"),
      current: it
        ? {
            item: it.item,
            source: it.source,
            prompt: promptDisplay(it.prompt),
            answers: it.order.map((c, p) => ({ side: p + 1, text: it.completions[c]!.text, note: noteOf(it, c, this.mode) })),
          }
        : null,
      canUndo: this.decisions.length > 0,
      out: this.paths.out,
      saved,
    };
  }
}

function noteOf(it: LabelItem, c: number, mode: "sample" | "pairs"): string | null {
  const comp = it.completions[c]!;
  if (mode === "pairs") return comp.from === "chosen" ? "the file's choice" : null;
  if (comp.text === "") return "empty: the model stopped at once";
  return comp.stop === "length" ? "cut off at --max-new-tokens" : null;
}

/** Whether `path` holds anything (a preference file not made by label must not be overwritten). */
export function nonEmptyFile(path: string): boolean {
  return existsSync(path) && statSync(path).size > 0;
}
