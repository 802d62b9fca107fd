// The label studio's page script: it runs in the browser (page.ts inlines the compiled file into the page), talks to
// server.ts, and holds no state that matters: every decision is the server's once it answers, and the page moves on
// only then. Keyboard alone does everything: 1–9 choose (with k > 2: the best, then the worst), t tie, s skip,
// u undo, e then a number rewrites that answer (Ctrl+Enter saves, Esc cancels). Buttons do the same by mouse.
//
// Nothing of node is imported here: the types below vanish when compiled.

import type { ActionRequest, PageAnswer, PageState } from "./types.js";

type Mode = { kind: "choose" } | { kind: "worst"; best: number } | { kind: "pick-edit" } | { kind: "edit"; side: number };

const query = `?token=${encodeURIComponent(new URLSearchParams(location.search).get("token") ?? "")}`;
const el = <T extends HTMLElement = HTMLElement>(id: string): T => document.getElementById(id) as T;

let state: PageState | null = null;
let mode: Mode = { kind: "choose" };
let busy = false;

function setStatus(text: string, kind: "ok" | "error" | "info"): void {
  const s = el("status");
  s.textContent = text;
  s.className = kind;
}

function make<K extends keyof HTMLElementTagNameMap>(tag: K, props: Partial<HTMLElementTagNameMap[K]> = {}, ...children: (Node | string)[]): HTMLElementTagNameMap[K] {
  const e = Object.assign(document.createElement(tag), props);
  e.append(...children);
  return e;
}

const kbd = (key: string): HTMLElement => make("kbd", { textContent: key });

/** What the server's non-JSON answers mean for this page. */
function httpProblem(status: number): string {
  return status === 403
    ? "not accepted: the server no longer knows this page's token (it was restarted?). Open the URL it printed last."
    : `the server answered ${status}`;
}

async function load(): Promise<void> {
  try {
    const r = await fetch(`/api/state${query}`);
    if (r.status === 503) return void setTimeout(load, 500); // the items are a moment away
    if (!r.ok) return setStatus(httpProblem(r.status), "error");
    show((await r.json()) as PageState);
    if (state!.decided > 0 && state!.current) setStatus(`continuing at item ${state!.current.item}: ${state!.decided} of ${state!.total} decided before`, "info");
  } catch {
    setStatus("cannot reach the server: is tsdpo label still running?", "error");
  }
}

async function send(req: ActionRequest): Promise<void> {
  if (busy) return;
  busy = true;
  document.body.dataset.busy = "1";
  setStatus("saving…", "info");
  try {
    const r = await fetch(`/api/action${query}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(req) });
    if (!(r.headers.get("content-type") ?? "").startsWith("application/json")) {
      setStatus(`not saved: ${httpProblem(r.status)}`, "error");
      return;
    }
    const body = (await r.json()) as { state?: PageState; error?: string };
    // A refused edit keeps the editor and its text open, so nothing typed is lost; anything else starts afresh.
    if (r.ok || mode.kind !== "edit" || r.status === 409) mode = { kind: "choose" };
    if (body.state) show(body.state);
    if (r.ok) setStatus(`✓ ${body.state?.saved ?? "saved"}`, "ok");
    else setStatus(body.error ?? `not saved: ${httpProblem(r.status)}`, "error");
  } catch {
    setStatus("not saved: the server did not answer (it may have stopped). Start the same command again and open the URL it prints; everything marked saved is kept.", "error");
  } finally {
    busy = false;
    delete document.body.dataset.busy;
    render(); // the buttons were drawn disabled while the request was in flight
  }
}

function show(s: PageState): void {
  state = s;
  render();
}

/** The current item's number, or null when every item is decided. */
const itemNo = (): number | null => state?.current?.item ?? null;

function pick(side: number): void {
  const cur = state?.current;
  if (!cur || busy) return;
  if (mode.kind === "pick-edit") return openEditor(side);
  if (mode.kind === "worst") {
    if (side === mode.best) return setStatus(`answer ${side} is marked best; pick another answer as the worst (Esc starts over)`, "error");
    void send({ action: "choose", item: cur.item, best: mode.best, worst: side });
    return;
  }
  if (cur.answers.length === 2) void send({ action: "choose", item: cur.item, best: side });
  else {
    mode = { kind: "worst", best: side };
    render();
  }
}

function openEditor(side: number): void {
  const ans = state?.current?.answers[side - 1];
  if (!ans) return;
  mode = { kind: "edit", side };
  render();
  const box = el<HTMLTextAreaElement>("editor-text");
  box.value = ans.text;
  box.focus();
  box.select();
}

function saveEdit(): void {
  if (mode.kind !== "edit" || !state?.current) return;
  const text = el<HTMLTextAreaElement>("editor-text").value;
  if (text.trim() === "") return setStatus("your answer is empty; write it, or press Esc to cancel", "error");
  void send({ action: "edit", item: state.current.item, side: mode.side, text });
}

function cancel(): void {
  mode = { kind: "choose" };
  render();
}

const simple = (action: "tie" | "skip"): void => {
  const item = itemNo();
  if (item !== null && !busy) void send({ action, item });
};
const undo = (): void => {
  if (state?.canUndo && !busy) void send({ action: "undo", item: itemNo() });
};
const startEdit = (): void => {
  if (!state?.current) return;
  mode = { kind: "pick-edit" };
  render();
};

document.addEventListener("keydown", (ev) => {
  if (mode.kind === "edit") {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
      ev.preventDefault();
      saveEdit();
    } else if (ev.key === "Escape") {
      ev.preventDefault();
      cancel();
    }
    return; // everything else is typing
  }
  if (ev.ctrlKey || ev.metaKey || ev.altKey || !state) return;
  const n = state.current?.answers.length ?? 0;
  const handled = ((): boolean => {
    if (/^[1-9]$/.test(ev.key) && Number(ev.key) <= n) pick(Number(ev.key));
    else if (ev.key === "t") simple("tie");
    else if (ev.key === "s") simple("skip");
    else if (ev.key === "u") undo();
    else if (ev.key === "e") startEdit();
    else if (ev.key === "Escape") cancel();
    else return false;
    return true;
  })();
  if (handled) ev.preventDefault();
});

function answerCard(a: PageAnswer): HTMLElement {
  const m = mode;
  const label =
    m.kind === "pick-edit" ? "Rewrite this"
    : m.kind === "worst" ? (a.side === m.best ? "Best" : "Worst")
    : (state?.k ?? 2) > 2 ? "Best"
    : "Choose";
  const choose = make("button", { id: `choose-${a.side}`, className: "primary", disabled: busy || (m.kind === "worst" && a.side === m.best) }, `${label} `, kbd(String(a.side)));
  choose.addEventListener("click", () => pick(a.side));
  const rewrite = make("button", { id: `edit-${a.side}`, disabled: busy }, "Rewrite");
  rewrite.addEventListener("click", () => openEditor(a.side));
  const card = make(
    "section",
    { className: "answer" + (m.kind === "worst" && a.side === m.best ? " best" : "") + (m.kind === "edit" && a.side === m.side ? " rewriting" : "") },
    make("h2", {}, kbd(String(a.side)), ` Answer ${a.side}`, ...(a.note ? [make("span", { className: "note", textContent: a.note })] : [])),
    make("div", { className: "text" + (a.text === "" ? " empty" : ""), textContent: a.text }),
    make("div", { className: "buttons" }, choose, rewrite),
  );
  card.dataset.side = String(a.side);
  return card;
}

function hint(): (Node | string)[] {
  const s = state!;
  const k = s.current?.answers.length ?? 2;
  const keys = k === 2 ? "1 or 2" : `1–${k}`;
  switch (mode.kind) {
    case "worst":
      return [`Answer ${mode.best} is the best. Now the worst: `, kbd(keys), " · ", kbd("Esc"), " starts over"];
    case "pick-edit":
      return ["Rewrite which answer? ", kbd(keys), " · ", kbd("Esc"), " cancels"];
    case "edit":
      return [`Write a better answer; answer ${mode.side} becomes the rejected one. `, kbd("Ctrl"), "+", kbd("Enter"), " saves · ", kbd("Esc"), " cancels"];
    case "choose":
      return [
        kbd(keys), k === 2 ? " choose · " : " mark the best, then the worst · ", kbd("t"), " tie · ", kbd("s"), " skip · ", kbd("u"), " undo · ",
        kbd("e"), " write a better answer",
      ];
  }
}

function render(): void {
  const s = state;
  if (!s) return;
  const cur = s.current;
  document.body.dataset.item = cur ? String(cur.item) : "done";
  document.body.dataset.mode = mode.kind;
  const where = cur ? `Item ${cur.item} of ${s.total}` : `All ${s.total} items decided`;
  el("progress").textContent = `${where} · done ${s.decided}/${s.total} · ${s.pairs} pairs (${s.edits} written) · ${s.ties} ties · ${s.skips} skipped`;
  const bar = el<HTMLProgressElement>("bar");
  bar.max = Math.max(1, s.total);
  bar.value = s.decided;
  el("item").hidden = !cur;
  el("finished").hidden = cur !== null;
  el("out").textContent = s.out;
  el("hint").replaceChildren(...(cur ? hint() : [kbd("u"), " undoes the last decision"]));
  for (const [id, on] of [["tie", cur], ["skip", cur], ["rewrite", cur], ["undo", s.canUndo]] as const) el<HTMLButtonElement>(`btn-${id}`).disabled = busy || !on;
  if (cur) {
    el("item-title").textContent = `Item ${cur.item}`;
    el("source").textContent = cur.source;
    el("prompt").textContent = cur.prompt;
    el("answers").replaceChildren(...cur.answers.map(answerCard));
  }
  el("editor").hidden = mode.kind !== "edit";
}

el("btn-tie").addEventListener("click", () => simple("tie"));
el("btn-skip").addEventListener("click", () => simple("skip"));
el("btn-undo").addEventListener("click", undo);
el("btn-rewrite").addEventListener("click", startEdit);
el("btn-save").addEventListener("click", saveEdit);
el("btn-cancel").addEventListener("click", cancel);
void load();
