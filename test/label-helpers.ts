// `tsdpo label` as a child process, for test/label.test.ts and test/label-browser.test.ts. The CLI is found next to
// this compiled file (dist/test/ → dist/src/cli/main.js), so the tests run the build they were compiled with.

import { type ChildProcess, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const labelCli = join(dirname(fileURLToPath(import.meta.url)), "..", "src", "cli", "main.js");

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface LabelProcess {
  child: ChildProcess;
  /** The URL it printed, with its token. */
  url: string;
  base: string;
  token: string;
  stdout(): string;
  stderr(): string;
  exited: Promise<Exit>;
}

const started = new Set<ChildProcess>();

/** SIGKILLs every server a test started and did not see end (a failed assertion must not leave one running). */
export function killStarted(): void {
  for (const c of started) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
}

/** Runs `tsdpo label ...args` in `cwd` and waits until the page is ready (items sampled or read back). */
export async function startLabel(args: string[], cwd: string, timeoutMs = 60_000, env: NodeJS.ProcessEnv = {}): Promise<LabelProcess> {
  const child = spawn(process.execPath, [labelCli, "label", ...args], { cwd, env: { ...process.env, ...env } });
  started.add(child);
  let out = "", err = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (err += d));
  const exited = new Promise<Exit>((res) => child.on("close", (code, signal) => res({ code, signal, stdout: out, stderr: err })));
  let done = false;
  void exited.then(() => (done = true));
  const t0 = Date.now();
  while (!/(starting at|continuing at|items are decided)/.test(out)) {
    if (done) throw new Error(`tsdpo label exited before it was ready:\n${out}\n${err}`);
    if (Date.now() - t0 > timeoutMs) {
      child.kill("SIGKILL");
      throw new Error(`tsdpo label was not ready after ${timeoutMs} ms:\n${out}\n${err}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  const m = /open (http:\/\/127\.0\.0\.1:(\d+)\/\?token=([A-Za-z0-9_-]+))/.exec(out);
  if (!m) throw new Error(`no URL in tsdpo label's output:\n${out}`);
  return { child, url: m[1]!, base: `http://127.0.0.1:${m[2]}`, token: m[3]!, stdout: () => out, stderr: () => err, exited };
}

/** Twelve different story openings, one per line. */
export function writePrompts(path: string, n = 12): string[] {
  const animals = ["cat", "dog", "bird", "fish", "frog", "bear", "duck", "lion", "mouse", "horse", "bunny", "owl", "fox", "pig", "cow", "sheep"];
  const prompts = Array.from({ length: n }, (_, i) => `Once upon a time, there was a little ${animals[i % animals.length]}${i >= animals.length ? ` number ${i}` : ""}`);
  writeFileSync(path, prompts.join("\n") + "\n");
  return prompts;
}
