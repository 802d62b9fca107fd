// tsdpo label in a real browser: headless Chromium (Debian package `chromium`) driven by puppeteer-core (npm, no
// browser download) through the built CLI on the shipped stories260K, following issue 19's script:
//   12 sampled prompts; items 1–4 chosen with the keyboard (1), item 5 with the mouse (answer 2), a tie on 6, a skip
//   on 7, item 8 chosen (1), undone and chosen again (2), on item 9 an answer of one's own written with e;
//   then the server is killed with SIGKILL and started again: the page opens at item 10, and 10–12 are decided by
//   keyboard. The preference file holds exactly 10 pairs in item order (1–5, 8 as 2, 9 with the written answer as
//   chosen, 10–12), each one's chosen/rejected the answers shown on the sides picked; the log holds every action,
//   with the order each item's answers were shown in; and `tsdpo logprobs` (train's loader) reads the file.
// Without Chromium the test is skipped with the reason (TSDPO_REQUIRE_CHROMIUM=1, set by CI, makes that a failure).

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import type { Browser, Page } from "puppeteer-core";
import type { ItemsFile, LogEntry } from "../src/label/types.js";
import { killStarted, labelCli, startLabel, writePrompts } from "./label-helpers.js";

const chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser", process.env.TSDPO_CHROMIUM ?? ""].find((p) => p !== "" && existsSync(p)) ?? null;
const required = process.env.TSDPO_REQUIRE_CHROMIUM === "1";
const noChromium = chromium || required ? false : "headless Chromium not found (install the Debian package: apt-get install -y chromium, or set TSDPO_CHROMIUM to a Chromium binary)";

/** The answer of one's own written on item 9. */
const written = "The cat found a red ball and shared it with her friend.";

const work = mkdtempSync(join(tmpdir(), "tsdpo-label-browser-"));
after(() => {
  killStarted();
  rmSync(work, { recursive: true, force: true });
});

interface Shown {
  item: string;
  prompt: string;
  answers: string[];
}

test("issue 19's script in headless Chromium: keyboard and mouse, tie, skip, undo, a written answer, SIGKILL and restart at item 10", { skip: noChromium, timeout: 120_000 }, async () => {
  assert.ok(chromium, "TSDPO_REQUIRE_CHROMIUM=1 but no Chromium was found (apt-get install -y chromium)");
  const puppeteer = (await import("puppeteer-core")).default;
  const prompts = writePrompts(join(work, "prompts.txt"));
  const out = join(work, "prefs.jsonl");
  const args = ["--prompts", "prompts.txt", "--out", "prefs.jsonl", "--max-new-tokens", "6", "--port", "0"];
  let server = await startLabel(args, work);
  let browser: Browser | null = null;
  const expected: { prompt: string; chosen: string; rejected: string }[] = [];
  const seen = new Map<number, string[]>(); // the answers each item showed, in page order
  try {
    browser = await puppeteer.launch({
      executablePath: chromium!,
      headless: true,
      args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions", "--disable-background-networking"],
      userDataDir: mkdtempSync(join(work, "profile-")),
    });
    const page: Page = await browser.newPage();
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(`pageerror: ${(e as Error).message}`));
    page.on("console", (m) => m.type() === "error" && errors.push(`console.error: ${m.text()}`));

    const shown = (): Promise<Shown> =>
      page.evaluate(() => ({
        item: document.body.dataset.item ?? "",
        prompt: document.getElementById("prompt")!.textContent ?? "",
        answers: [...document.querySelectorAll(".answer .text")].map((e) => e.textContent ?? ""),
      }));
    /** Waits until the page shows `item` ("done" at the end) with no request in flight. */
    const at = async (item: number | "done"): Promise<void> => {
      try {
        await page.waitForFunction((want) => document.body.dataset.item === want && document.body.dataset.busy === undefined, { timeout: 10_000 }, String(item));
      } catch (e) {
        const now = await page.evaluate(() => `item ${document.body.dataset.item}, status "${document.getElementById("status")?.textContent}"`);
        throw new Error(`the page did not reach item ${item} (it shows ${now}; ${errors.join("; ") || "no page errors"}): ${(e as Error).message}`);
      }
    };
    const status = (): Promise<string> => page.$eval("#status", (e) => e.textContent ?? "");
    const progress = (): Promise<string> => page.$eval("#progress", (e) => e.textContent ?? "");

    const decideByKey = async (item: number, key: "1" | "2"): Promise<void> => {
      const s = await shown();
      assert.equal(s.item, String(item));
      assert.equal(s.prompt, prompts[item - 1]);
      assert.equal(s.answers.length, 2);
      seen.set(item, s.answers);
      await page.keyboard.press(key);
      await at(item + 1 > 12 ? "done" : item + 1);
      const [c, r] = key === "1" ? [0, 1] : [1, 0];
      expected.push({ prompt: s.prompt, chosen: s.answers[c]!, rejected: s.answers[r]! });
    };

    await page.goto(server.url);
    await at(1);
    // items 1–4: answer 1, by keyboard
    for (let i = 1; i <= 4; i++) await decideByKey(i, "1");
    // item 5: answer 2, by mouse
    const s5 = await shown();
    seen.set(5, s5.answers);
    await page.click("#choose-2");
    await at(6);
    expected.push({ prompt: s5.prompt, chosen: s5.answers[1]!, rejected: s5.answers[0]! });
    // item 6: a tie; item 7: skipped
    seen.set(6, (await shown()).answers);
    await page.keyboard.press("t");
    await at(7);
    seen.set(7, (await shown()).answers);
    await page.keyboard.press("s");
    await at(8);
    // item 8: answer 1, undone, then answer 2
    const s8 = await shown();
    seen.set(8, s8.answers);
    await page.keyboard.press("1");
    await at(9);
    await page.keyboard.press("u");
    await at(8);
    assert.match(await status(), /undid item 8 \(answer 1 chosen\)/);
    assert.deepEqual((await shown()).answers, s8.answers, "after undo, item 8 shows its answers in the same order");
    await page.keyboard.press("2");
    await at(9);
    expected.push({ prompt: s8.prompt, chosen: s8.answers[1]!, rejected: s8.answers[0]! });
    // item 9: e, then 1: rewrite answer 1; the editor opens with answer 1's text selected, typing replaces it
    const s9 = await shown();
    seen.set(9, s9.answers);
    await page.keyboard.press("e");
    await page.waitForFunction(() => document.body.dataset.mode === "pick-edit");
    await page.keyboard.press("1");
    await page.waitForFunction(() => document.body.dataset.mode === "edit" && document.activeElement?.id === "editor-text");
    assert.equal(await page.$eval("#editor-text", (e) => (e as HTMLTextAreaElement).value), s9.answers[0]);
    await page.keyboard.type(written);
    await page.keyboard.down("Control");
    await page.keyboard.press("Enter");
    await page.keyboard.up("Control");
    await at(10);
    // A text prompt ending in a word: the written answer gets the space a continuation carries
    expected.push({ prompt: s9.prompt, chosen: " " + written, rejected: s9.answers[0]! });
    assert.match(await status(), /item 9: your answer chosen over answer 1; saved \(log line 11\)/);
    assert.match(await progress(), /Item 10 of 12 · done 9\/12 · 7 pairs \(1 written\) · 1 ties · 1 skipped/);
    assert.equal(readFileSync(out, "utf8").trim().split("\n").length, 7, "the preference file is rebuilt after each action");

    // kill -9, and the same command again: the page opens at item 10
    server.child.kill("SIGKILL");
    assert.equal((await server.exited).signal, "SIGKILL");
    server = await startLabel(args, work);
    assert.match(server.stdout(), /12 items, 9 decided: continuing at item 10/);
    await page.goto(server.url);
    await at(10);
    assert.match(await progress(), /done 9\/12 · 7 pairs/);
    await decideByKey(10, "1");
    await decideByKey(11, "2");
    await decideByKey(12, "1");
    assert.ok(await page.$eval("#finished", (e) => !(e as HTMLElement).hidden), "the page says every item is decided");
    assert.deepEqual(errors, [], "no script errors or console errors in the page");
  } finally {
    await browser?.close();
    server.child.kill("SIGTERM");
  }
  const end = await server.exited;
  assert.equal(end.code, 0, `Ctrl-C/SIGTERM stops cleanly: ${end.stderr}`);
  assert.match(end.stdout, /stopped: 12 of 12 items decided, 10 pairs in /);

  // The preference file: exactly the 10 pairs, in item order, each as the page showed it
  const rows = readFileSync(out, "utf8").trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(rows.length, 10);
  assert.deepEqual(rows, expected);
  assert.deepEqual(rows.map((r) => prompts.indexOf(r.prompt) + 1), [1, 2, 3, 4, 5, 8, 9, 10, 11, 12]);

  // The log: every action, in order, with the order each item's answers were shown in
  const log = readFileSync(join(work, "prefs.log.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as LogEntry);
  assert.deepEqual(
    log.map((e) => `${e.action} ${e.item}`),
    ["choose 1", "choose 2", "choose 3", "choose 4", "choose 5", "tie 6", "skip 7", "choose 8", "undo 8", "choose 8", "edit 9", "choose 10", "choose 11", "choose 12"],
  );
  assert.deepEqual(log.map((e) => e.n), Array.from({ length: 14 }, (_, i) => i + 1));
  const items = (JSON.parse(readFileSync(join(work, "prefs.items.json"), "utf8")) as ItemsFile).items;
  for (const e of log) {
    if (e.action === "undo") continue;
    const it = items[e.item - 1]!;
    assert.deepEqual(e.shown.map((c) => it.completions[c]!.text), seen.get(e.item), `item ${e.item}: the log records the order shown`);
  }
  const edit = log.find((e) => e.action === "edit");
  assert.ok(edit && edit.action === "edit" && edit.text === " " + written);

  // A standard preference file: train's loader reads all 10 pairs (logprobs loads data exactly as train does)
  const lp = spawnSync(process.execPath, [labelCli, "logprobs", "--data", out], { encoding: "utf8", timeout: 60_000 });
  assert.equal(lp.status, 0, lp.stderr);
  assert.equal(lp.stdout.trim().split("\n").length, 10);
});
