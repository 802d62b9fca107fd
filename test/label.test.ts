// tsdpo label without a browser: the server through HTTP (as the page talks to it) and the CLI as a user meets it,
// on the shipped stories260K. test/label-browser.test.ts drives the page itself in headless Chromium.
//   - 127.0.0.1 only, and 403 for any request without the URL's token;
//   - a port in use, an empty prompts file, a preference file label did not write, other settings than the items
//     were made with: each one error line, and nothing left behind;
//   - kill -9 at random moments while actions stream in: every action the server acknowledged is in the log, the
//     preference file is the log's replay, and the next start continues from it; a torn last line (an append
//     killed half-way) is dropped with a notice; a kill between the log's fsync and the preference file's rebuild
//     loses nothing either;
//   - --pairs (confirm, swap, skip, rewrite), --k 3 (best and worst), --reference (blind, recorded);
//   - the log's rules (replay), conversational rows for chat prompts, the space before a written answer.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { networkInterfaces, tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { mulberry32 } from "../src/rng.js";
import { labelPaths, preferenceRows, readLog, replay, spacedAnswer } from "../src/label/store.js";
import type { ActionRequest, ItemsFile, LabelItem, LogEntry, PageState } from "../src/label/types.js";
import { type LabelProcess, killStarted, labelCli, startLabel, writePrompts } from "./label-helpers.js";

const work = mkdtempSync(join(tmpdir(), "tsdpo-label-"));
after(() => {
  killStarted();
  rmSync(work, { recursive: true, force: true });
});

let dirs = 0;
function freshDir(prompts = 4): string {
  const dir = join(work, `d${++dirs}`);
  mkdirSync(dir);
  writePrompts(join(dir, "prompts.txt"), prompts);
  return dir;
}

function runLabel(args: string[], cwd: string) {
  return spawnSync(process.execPath, [labelCli, "label", ...args], { cwd, encoding: "utf8", timeout: 60_000 });
}

async function state(s: LabelProcess): Promise<PageState> {
  const r = await fetch(`${s.base}/api/state?token=${s.token}`);
  assert.equal(r.status, 200);
  return (await r.json()) as PageState;
}

async function post(s: LabelProcess, req: ActionRequest | string, token = s.token): Promise<{ status: number; body: { state?: PageState; error?: string } }> {
  const r = await fetch(`${s.base}/api/action?token=${token}`, { method: "POST", headers: { "content-type": "application/json" }, body: typeof req === "string" ? req : JSON.stringify(req) });
  const text = await r.text();
  return { status: r.status, body: r.headers.get("content-type")?.startsWith("application/json") ? JSON.parse(text) : { error: text } };
}

async function stop(s: LabelProcess): Promise<void> {
  s.child.kill("SIGTERM");
  const end = await s.exited;
  assert.equal(end.code, 0, end.stderr);
}

const lines = (path: string): string[] => (existsSync(path) ? readFileSync(path, "utf8").split("\n").filter((l) => l !== "") : []);
const rowsOf = (path: string): unknown[] => lines(path).map((l) => JSON.parse(l));
const itemsOf = (dir: string, name = "prefs"): LabelItem[] => (JSON.parse(readFileSync(join(dir, `${name}.items.json`), "utf8")) as ItemsFile).items;

/** How many decisions stand after `log` (each undo takes one back). */
const standing = (log: readonly LogEntry[]): number => log.reduce((m, e) => (e.action === "undo" ? m - 1 : m + 1), 0);

/**
 * The preference rows a log stands for, replayed here independently of src/label/store.ts: a stack of decisions,
 * undo pops, choices and written answers become rows.
 */
function expectedRows(items: readonly LabelItem[], log: readonly LogEntry[]): unknown[] {
  const stack: LogEntry[] = [];
  for (const e of log) if (e.action === "undo") stack.pop(); else stack.push(e);
  return stack.flatMap((e) => {
    const it = items[e.item - 1]!;
    if (e.action === "choose") return [{ prompt: it.prompt, chosen: it.completions[e.best]!.text, rejected: it.completions[e.worst]!.text }];
    if (e.action === "edit") return [{ prompt: it.prompt, chosen: e.text, rejected: it.completions[e.rejected]!.text }];
    return [];
  });
}

describe("tsdpo label: the server", () => {
  it("listens on 127.0.0.1 only, and answers 403 to any request without the URL's token", async () => {
    const dir = freshDir();
    const s = await startLabel(["--prompts", "prompts.txt", "--out", "prefs.jsonl", "--max-new-tokens", "4"], dir);
    try {
      assert.match(s.url, /^http:\/\/127\.0\.0\.1:\d+\/\?token=[A-Za-z0-9_-]{24}$/);
      for (const path of ["/", "/api/state", "/?token=", `/?token=${s.token.slice(0, -1)}`, `/?token=${s.token}x`, `/?Token=${s.token}`, "/favicon.ico"])
        assert.equal((await fetch(s.base + path)).status, 403, path);
      const denied = await post(s, { action: "choose", item: 1, best: 1 }, "nope");
      assert.equal(denied.status, 403);
      assert.equal(existsSync(join(dir, "prefs.log.jsonl")), false, "a refused request logs nothing");
      const page = await fetch(s.url);
      assert.equal(page.status, 200);
      assert.match(await page.text(), /<title>tsdpo label<\/title>/);
      assert.equal((await state(s)).current?.item, 1);

      // The listening socket: 127.0.0.1 in the kernel's table, nothing on other addresses or IPv6
      const port = Number(new URL(s.base).port);
      const hexPort = port.toString(16).toUpperCase().padStart(4, "0");
      if (existsSync("/proc/net/tcp")) {
        const listening = (file: string): string[] =>
          existsSync(file) ? readFileSync(file, "utf8").split("\n").slice(1).map((l) => l.trim().split(/\s+/)).filter((f) => f[1]?.endsWith(`:${hexPort}`) && f[3] === "0A").map((f) => f[1]!) : [];
        assert.deepEqual(listening("/proc/net/tcp"), [`0100007F:${hexPort}`]);
        assert.deepEqual(listening("/proc/net/tcp6"), []);
      }
      const outside = Object.values(networkInterfaces()).flat().find((a) => a && a.family === "IPv4" && !a.internal);
      if (outside)
        await assert.rejects(fetch(`http://${outside.address}:${port}/?token=${s.token}`), `${outside.address}:${port} must not answer`);
    } finally {
      await stop(s);
    }
  });

  it("a port in use, an empty prompts file: one error line each, and nothing left behind", async () => {
    const dir = freshDir();
    const blocker = createServer();
    await new Promise<void>((res) => blocker.listen(0, "127.0.0.1", res));
    const port = (blocker.address() as { port: number }).port;
    try {
      const r = runLabel(["--prompts", "prompts.txt", "--out", "prefs.jsonl", "--port", String(port)], dir);
      assert.equal(r.status, 2);
      assert.equal(r.stderr, `error: --port ${port}: 127.0.0.1:${port} is already in use (another tsdpo label, or another server); choose another port, or --port 0 for a free one\n`);
    } finally {
      blocker.close();
    }
    writeFileSync(join(dir, "empty.txt"), "");
    writeFileSync(join(dir, "blank.txt"), "\n  \n\n");
    for (const file of ["empty.txt", "blank.txt"]) {
      const r = runLabel(["--prompts", file, "--out", "prefs.jsonl"], dir);
      assert.equal(r.status, 1);
      assert.equal(r.stderr, `error: ${file}: no prompts; write one prompt per line, or JSON Lines such as {"prompt": "Once upon a time"}\n`);
      assert.equal(r.stdout, "", "no URL: the server never started");
    }
    const r = runLabel(["--out", "prefs.jsonl"], dir);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /^error: label: give --prompts <file> .* or --pairs <file> .*\n$/);
    assert.deepEqual(["prefs.jsonl", "prefs.items.json", "prefs.log.jsonl", "prefs.lock"].filter((f) => existsSync(join(dir, f))), []);
  });

  it("refuses a preference file it did not write, other settings than its items', and a second server on the same file", async () => {
    const dir = freshDir();
    writeFileSync(join(dir, "theirs.jsonl"), `{"prompt":"a","chosen":" b","rejected":" c"}\n`);
    const theirs = runLabel(["--prompts", "prompts.txt", "--out", "theirs.jsonl"], dir);
    assert.equal(theirs.status, 2);
    assert.match(theirs.stderr, /^error: --out theirs\.jsonl: the file exists and was not written by tsdpo label \(there is no .*theirs\.items\.json next to it\); give another --out, or delete it\n$/);
    assert.equal(readFileSync(join(dir, "theirs.jsonl"), "utf8"), `{"prompt":"a","chosen":" b","rejected":" c"}\n`);

    const args = ["--prompts", "prompts.txt", "--out", "prefs.jsonl", "--max-new-tokens", "4"];
    const s = await startLabel(args, dir);
    const second = runLabel(args, dir);
    assert.equal(second.status, 2);
    assert.match(second.stderr, new RegExp(`^error: .*prefs\\.jsonl: another tsdpo label is serving this file \\(pid ${s.child.pid} `));
    await stop(s);
    const other = runLabel([...args.slice(0, -1), "5", "--k", "3"], dir);
    assert.equal(other.status, 2);
    assert.match(other.stderr, /^error: .*prefs\.items\.json: these items were made with other settings \(k: 2 then, 3 now; max_new_tokens: 4 then, 5 now\); run the command as it was run then to continue, or give another --out to start afresh\n$/);
  });
});

describe("tsdpo label: nothing is lost", () => {
  it("kill -9 at random moments while actions stream in: every acknowledged action is in the log, and the preference file is its replay", async () => {
    const dir = freshDir(40);
    const args = ["--prompts", "prompts.txt", "--out", "prefs.jsonl", "--max-new-tokens", "3"];
    const rand = mulberry32(19);
    const acked: { n: number; action: string; item: number | null }[] = [];
    let known = 0; // log lines acknowledged, or found in the log at a start
    let kills = 0;
    for (let round = 0; round < 6; round++) {
      const s = await startLabel(args, dir);
      const log = readLog(join(dir, "prefs.log.jsonl"), () => {});
      for (const a of acked) assert.deepEqual([log[a.n - 1]?.action, log[a.n - 1]?.item], [a.action, a.item], `round ${round}: acknowledged line ${a.n} is in the log`);
      // The one request in flight when the server died may have reached the log without its answer reaching us
      assert.ok(log.length === known || log.length === known + 1, `round ${round}: ${log.length} log lines, ${known} known`);
      known = log.length;
      const items = itemsOf(dir);
      assert.deepEqual(rowsOf(join(dir, "prefs.jsonl")), expectedRows(items, log), "the preference file is the log's replay");
      let st = await state(s);
      assert.equal(st.decided, standing(log), "the server continues where the log ends");
      assert.equal(st.current?.item ?? null, st.decided < items.length ? st.decided + 1 : null);
      let killed = false;
      let timer: NodeJS.Timeout | undefined;
      try {
        while (!killed) {
          const item = st.current?.item ?? null;
          const x = rand();
          const req: ActionRequest =
            item === null || (x < 0.2 && st.canUndo) ? { action: "undo", item }
            : x < 0.6 ? { action: "choose", item, best: 1 + Math.floor(rand() * 2) }
            : x < 0.7 ? { action: "tie", item }
            : x < 0.8 ? { action: "skip", item }
            : { action: "edit", item, side: 2, text: `written in round ${round}` };
          const r = await post(s, req);
          assert.equal(r.status, 200, r.body.error);
          const n = Number(/log line (\d+)/.exec(r.body.state!.saved ?? "")?.[1]);
          assert.equal(n, known + 1);
          known = n;
          acked.push({ n, action: req.action, item: req.action === "undo" ? (st.current?.item ?? items.length + 1) - 1 : item });
          st = r.body.state!;
          // After the round's first acknowledged action, the kill comes at a random moment of the stream
          timer ??= setTimeout(() => {
            killed = true;
            kills++;
            s.child.kill("SIGKILL");
          }, 2 + rand() * 100);
        }
      } catch (e) {
        if (!killed) throw e; // the connection dies with the server: that request was never acknowledged
      } finally {
        clearTimeout(timer);
      }
      await s.exited;
    }
    assert.equal(kills, 6);
    const s = await startLabel(args, dir);
    await stop(s);
    assert.deepEqual(rowsOf(join(dir, "prefs.jsonl")), expectedRows(itemsOf(dir), readLog(join(dir, "prefs.log.jsonl"), () => {})));
  });

  it("a torn last line is dropped with a notice; a kill between the log's fsync and the preference file's rebuild loses nothing", async () => {
    const dir = freshDir();
    const args = ["--prompts", "prompts.txt", "--out", "prefs.jsonl", "--max-new-tokens", "4"];
    let s = await startLabel(args, dir);
    assert.equal((await post(s, { action: "choose", item: 1, best: 1 })).status, 200);
    s.child.kill("SIGKILL");
    await s.exited;
    const logPath = join(dir, "prefs.log.jsonl");
    const before = readFileSync(logPath, "utf8");
    appendFileSync(logPath, `{"n":2,"time":"2026-01-01T00:00:00.000Z","action":"cho`);
    s = await startLabel(args, dir);
    assert.match(s.stderr(), /prefs\.log\.jsonl: dropping a torn last line \(\d+ bytes, an action that was never saved\)/);
    assert.equal(readFileSync(logPath, "utf8"), before, "the torn line is cut off the file");
    assert.equal((await state(s)).current?.item, 2);
    await stop(s);

    // The second write of prefs.jsonl in this process (the first is the rebuild at start) stalls for 5 s
    // (TSDPO_FAULT_INJECT=...:SLOW, src/io/atomic.ts): the action is in the log, the preference file still old
    const slow = await startLabel(args, dir, 60_000, { TSDPO_FAULT_INJECT: "prefs.jsonl:2:SLOW" });
    void post(slow, { action: "choose", item: 2, best: 2 }).catch(() => {});
    while (lines(logPath).length < 2) await new Promise((r) => setTimeout(r, 5));
    assert.equal(lines(join(dir, "prefs.jsonl")).length, 1, "the preference file is not rebuilt yet");
    slow.child.kill("SIGKILL");
    await slow.exited;
    s = await startLabel(args, dir);
    assert.equal((await state(s)).current?.item, 3);
    assert.deepEqual(rowsOf(join(dir, "prefs.jsonl")), expectedRows(itemsOf(dir), readLog(logPath, () => {})));
    assert.equal(lines(join(dir, "prefs.jsonl")).length, 2, "the start rebuilt it from the log");
    await stop(s);
  });
});

describe("tsdpo label: a full disk", () => {
  const args = ["--prompts", "prompts.txt", "--out", "prefs.jsonl", "--max-new-tokens", "4"];

  it("an append to the log that fails is not acknowledged, leaves no half line, and the action can be sent again", async () => {
    const dir = freshDir();
    const s = await startLabel(args, dir, 60_000, { TSDPO_FAULT_INJECT: "prefs.log.jsonl:2:ENOSPC" });
    assert.equal((await post(s, { action: "choose", item: 1, best: 1 })).status, 200);
    const full = await post(s, { action: "choose", item: 2, best: 2 });
    assert.equal(full.status, 500);
    assert.match(full.body.error!, /^not saved: .*prefs\.log\.jsonl: could not append to the log \(ENOSPC: no space left on device.*; free some disk space$/);
    assert.equal(full.body.state!.current?.item, 2, "the page stays on the item");
    assert.equal(lines(join(dir, "prefs.log.jsonl")).length, 1);
    assert.ok(readFileSync(join(dir, "prefs.log.jsonl"), "utf8").endsWith("}\n"), "no half line is left");
    assert.equal((await post(s, { action: "choose", item: 2, best: 2 })).status, 200);
    await stop(s);
    const again = await startLabel(args, dir);
    assert.equal((await state(again)).current?.item, 3);
    await stop(again);
    assert.equal(lines(join(dir, "prefs.jsonl")).length, 2);
  });

  it("a preference file that cannot be rebuilt: the action is saved in the log, and the next action rebuilds the file", async () => {
    const dir = freshDir();
    // write 1 is the rebuild at start, write 2 the one after the first action
    const s = await startLabel(args, dir, 60_000, { TSDPO_FAULT_INJECT: "prefs.jsonl:2:ENOSPC" });
    const first = await post(s, { action: "choose", item: 1, best: 1 });
    assert.equal(first.status, 200);
    assert.match(first.body.state!.saved!, /^item 1: answer 1 chosen; saved \(log line 1\), but the preference file was not rebuilt \(.*ENOSPC.*\); the next action or start rebuilds it$/);
    assert.equal(lines(join(dir, "prefs.jsonl")).length, 0);
    assert.equal((await post(s, { action: "skip", item: 2 })).status, 200);
    assert.equal(lines(join(dir, "prefs.jsonl")).length, 1);
    await stop(s);
  });
});

describe("tsdpo label: modes", () => {
  it("--pairs reviews a preference file: confirm, swap, skip, rewrite; the file's choice is marked", async () => {
    const dir = freshDir();
    const pairs = [
      { prompt: "Once upon a time", chosen: " there was a happy dog.", rejected: " there was a sad dog." },
      { prompt: "The sun", chosen: " was cold.", rejected: " was warm." },
      { prompt: "Tom said", chosen: " hello.", rejected: " bye." },
      { prompt: "Lily had", chosen: " a hat.", rejected: " a cat." },
    ];
    writeFileSync(join(dir, "pairs.jsonl"), pairs.map((p) => JSON.stringify(p)).join("\n") + "\n");
    const s = await startLabel(["--pairs", "pairs.jsonl", "--out", "reviewed.jsonl"], dir);
    const sideOf = (st: PageState, text: string): number => st.current!.answers.find((a) => a.text === text)!.side;
    let st = await state(s);
    assert.equal(st.mode, "pairs");
    assert.equal(st.current!.answers.find((a) => a.note === "the file's choice")?.text, pairs[0]!.chosen);
    st = (await post(s, { action: "choose", item: 1, best: sideOf(st, pairs[0]!.chosen) })).body.state!; // confirm
    st = (await post(s, { action: "choose", item: 2, best: sideOf(st, pairs[1]!.rejected) })).body.state!; // swap
    st = (await post(s, { action: "skip", item: 3 })).body.state!;
    st = (await post(s, { action: "edit", item: 4, side: sideOf(st, pairs[3]!.rejected), text: "a red hat." })).body.state!;
    assert.equal(st.current, null);
    assert.equal(st.pairs, 3);
    await stop(s);
    assert.deepEqual(rowsOf(join(dir, "reviewed.jsonl")), [
      pairs[0],
      { prompt: "The sun", chosen: " was warm.", rejected: " was cold." },
      { prompt: "Lily had", chosen: " a red hat.", rejected: " a cat." },
    ]);
    const bad = runLabel(["--pairs", "pairs.jsonl", "--out", "again.jsonl", "--k", "3"], dir);
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /^error: label --pairs reviews the file's own pairs; --k only apply to --prompts\n$/);
  });

  it("--k 3 marks the best and the worst; --reference gives half the answers, recorded but not shown", async () => {
    const dir = freshDir(2);
    const s = await startLabel(["--prompts", "prompts.txt", "--out", "prefs.jsonl", "--k", "3", "--max-new-tokens", "4"], dir);
    let st = await state(s);
    assert.equal(st.current!.answers.length, 3);
    const noWorst = await post(s, { action: "choose", item: 1, best: 2 });
    assert.equal(noWorst.status, 400);
    assert.match(noWorst.body.error!, /with 3 answers, mark the best and the worst/);
    const same = await post(s, { action: "choose", item: 1, best: 2, worst: 2 });
    assert.equal(same.status, 400);
    const a = st.current!.answers;
    st = (await post(s, { action: "choose", item: 1, best: 2, worst: 3 })).body.state!;
    assert.match(st.saved!, /^item 1: answer 2 best, 3 worst; saved \(log line 1\)$/);
    const stale = await post(s, { action: "tie", item: 1 });
    assert.equal(stale.status, 409, "a request about an item the server has moved past is refused");
    await stop(s);
    assert.deepEqual(rowsOf(join(dir, "prefs.jsonl")), [{ prompt: itemsOf(dir)[0]!.prompt, chosen: a[1]!.text, rejected: a[2]!.text }]);

    const dir2 = freshDir(2);
    const stories = join(labelCli, "..", "..", "..", "..", "assets", "models", "stories260K", "stories260K.gguf");
    const r = await startLabel(["--prompts", "prompts.txt", "--out", "prefs.jsonl", "--reference", stories, "--max-new-tokens", "4"], dir2);
    await stop(r);
    for (const it of itemsOf(dir2)) assert.deepEqual(it.completions.map((c) => c.from), ["policy", "reference"]);
  });
});

describe("tsdpo label: the log's rules", () => {
  const items: LabelItem[] = [1, 2, 3].map((i) => ({
    item: i, prompt: `p${i}`, source: `x:${i}`, completions: [{ text: ` a${i}`, from: "policy" }, { text: ` b${i}`, from: "policy" }], order: [1, 0],
  }));
  const t = "2026-01-01T00:00:00.000Z";

  it("replays decisions in item order, undo pops the newest; a line that breaks the rules names its line", () => {
    const log: LogEntry[] = [
      { n: 1, time: t, action: "choose", item: 1, shown: [1, 0], best: 1, worst: 0 },
      { n: 2, time: t, action: "tie", item: 2, shown: [1, 0] },
      { n: 3, time: t, action: "undo", item: 2, undoes: 2 },
      { n: 4, time: t, action: "edit", item: 2, shown: [1, 0], rejected: 0, text: " mine" },
    ];
    assert.deepEqual(replay(items, log, "L").map((d) => d.item), [1, 2]);
    assert.deepEqual(preferenceRows(items, replay(items, log, "L")), [
      { prompt: "p1", chosen: " b1", rejected: " a1" },
      { prompt: "p2", chosen: " mine", rejected: " a2" },
    ]);
    const bad = (entries: LogEntry[], re: RegExp): void => assert.throws(() => replay(items, entries, "L"), re);
    bad([{ ...log[0]!, item: 2 } as LogEntry], /L:1: a decision about item 2, but the item to decide is 1 of 3/);
    bad([log[0]!, { n: 2, time: t, action: "undo", item: 1, undoes: 7 }], /L:2: undo of line 7, but the newest decision standing is line 1/);
    bad([log[0]!, { ...log[1]!, n: 5 } as LogEntry], /L:2: expected action number 2/);
    bad([{ ...log[0]!, best: 1, worst: 1 } as LogEntry], /L:1: "best" and "worst" must be two different completions/);
    bad([{ n: 1, time: t, action: "edit", item: 1, shown: [1, 0], rejected: 0, text: " a1" }], /L:1: the written answer is the same as the answer it replaces/);
  });

  it("reads a log, drops a torn last line, refuses a damaged one", () => {
    const path = join(work, "rules.log.jsonl");
    const good = `{"n":1,"time":"${t}","action":"skip","item":1,"shown":[1,0]}\n`;
    writeFileSync(path, good + `{"n":2,"ti`);
    const said: string[] = [];
    assert.equal(readLog(path, (l) => said.push(l)).length, 1);
    assert.equal(readFileSync(path, "utf8"), good);
    assert.equal(said.length, 1);
    writeFileSync(path, `{"n":1,"ti\n` + good);
    assert.throws(() => readLog(path, () => {}), /rules\.log\.jsonl:1: not a JSON line .* repair or remove that line/);
  });

  it("chat prompts give conversational rows; a written answer to a text prompt gets the space a continuation carries", () => {
    const chat: LabelItem = { ...items[0]!, prompt: [{ role: "user", content: "Hi" }] };
    assert.deepEqual(preferenceRows([chat], [{ action: "choose", item: 1, shown: [1, 0], best: 0, worst: 1 }]), [
      { prompt: [{ role: "user", content: "Hi" }], chosen: [{ role: "assistant", content: " a1" }], rejected: [{ role: "assistant", content: " b1" }] },
    ]);
    assert.equal(spacedAnswer("Once upon a time", "there was"), " there was");
    assert.equal(spacedAnswer("Once upon a time", ", there was"), ", there was");
    assert.equal(spacedAnswer("Once upon a time ", "there was"), "there was");
    assert.equal(spacedAnswer([{ role: "user", content: "Hi" }], "Hello"), "Hello");
    assert.deepEqual(labelPaths("/a/prefs.jsonl"), { out: "/a/prefs.jsonl", items: "/a/prefs.items.json", log: "/a/prefs.log.jsonl", lock: "/a/prefs.lock" });
  });
});
