// The label studio's data, shared by the server (store.ts, server.ts) and the page (client.ts, which imports these
// types only, so nothing of node reaches the browser).
//
//   <out>.items.json   the items, written once (atomically) before the page opens: each prompt, its k completions
//                      and the order the page shows them in. A restart reads it back and never samples again.
//   <out>.log.jsonl    every action, one JSON line each, appended and fsynced before the page hears "saved".
//   <out>              the preference file, rebuilt from the items and the log (atomically) after every action.

import type { ChatMessage } from "../tokenizer/chat.js";

export interface LabelCompletion {
  text: string;
  /** Where it came from: "policy" or "reference" (sampled), "chosen" or "rejected" (the file given to --pairs). */
  from: string;
  /** Why generation stopped; "length" when --max-new-tokens cut it off (the page says so). Absent for --pairs. */
  stop?: "eos" | "length" | "context";
}

export interface LabelItem {
  /** 1-based, as the page shows it. */
  item: number;
  /** The prompt as given: text, or chat messages (the preference file keeps them as messages). */
  prompt: string | ChatMessage[];
  /** "file:line" of the prompt or pair. */
  source: string;
  completions: LabelCompletion[];
  /** The order the page shows them in, drawn at random once per item: position p shows completions[order[p]]. */
  order: number[];
}

export interface ItemsFile {
  tsdpo_label: 1;
  /** What made the items (mode, files and their sha256, models, k, seed, ...): a restart must give the same. */
  settings: Record<string, unknown>;
  items: LabelItem[];
}

/** A decision about the current item. Completion indices (best, worst, rejected) index item.completions. */
export type Decision =
  | { action: "choose"; item: number; shown: number[]; best: number; worst: number }
  | { action: "tie"; item: number; shown: number[] }
  | { action: "skip"; item: number; shown: number[] }
  /** A better answer written by the person: `text` becomes chosen, completion `rejected` the rejected answer. */
  | { action: "edit"; item: number; shown: number[]; rejected: number; text: string };

/** One line of the log: a decision, or the undo of the newest decision still standing (line `undoes`). */
export type LogEntry = { n: number; time: string } & (Decision | { action: "undo"; item: number; undoes: number });

/** What the page asks for. Sides are 1-based positions on the page; `item` is the item the page is showing. */
export type ActionRequest =
  | { action: "choose"; item: number; best: number; worst?: number }
  | { action: "tie"; item: number }
  | { action: "skip"; item: number }
  | { action: "edit"; item: number; side: number; text: string }
  | { action: "undo"; item: number | null };

export interface PageAnswer {
  /** 1-based position on the page (the key that chooses it). */
  side: number;
  text: string;
  /** A remark shown with the answer ("cut off at 128 tokens", "the file's choice"), or null. */
  note: string | null;
}

export interface PageState {
  mode: "sample" | "pairs";
  k: number;
  total: number;
  /** Items decided (pairs + ties + skips). The current item is decided + 1. */
  decided: number;
  pairs: number;
  ties: number;
  skips: number;
  edits: number;
  /** The current item; null when every item is decided. */
  current: { item: number; source: string; prompt: string; answers: PageAnswer[] } | null;
  canUndo: boolean;
  /** The preference file, for the page's last words. */
  out: string;
  /** What the last request saved ("item 4: answer 1 chosen; log line 4"), for the status line; null on load. */
  saved: string | null;
}
