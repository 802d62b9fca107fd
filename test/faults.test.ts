// Nothing is lost under faults, through the real CLI (dist/src/cli/main.js) on the shipped stories260K:
//   - SIGINT / SIGTERM: a checkpoint at the end of the current step, its path printed, exit 130 / 143; the resumed run
//     ends with the same bits as an uninterrupted one. A second Ctrl-C exits at once, leaving no checkpoint behind.
//   - --resume on a folder with no checkpoint refuses with the reason; it never starts over silently.
//   - two trainers on one folder: the second is refused by the lock, which names the holder's pid; a dead holder's
//     lock is taken over with a notice.
//   - a write that fails during a checkpoint (ENOSPC, injected in src/io/atomic.ts): one error line that says what
//     happened, the previous checkpoint intact and loadable, nothing half-written, and a resume that ends as an
//     uninterrupted run does.
//   - save_total_limit keeps only the newest step checkpoints.

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { loadModel } from "../src/io/load.js";
import { LOCK_FILE } from "../src/train/lock.js";
import { fixture, repoRoot, storiesGguf, testBackendName } from "./helpers.js";

const cli = join(repoRoot, "dist", "src", "cli", "main.js");
const tmp = mkdtempSync(join(tmpdir(), "tsdpo-faults-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** A config of many short steps on the test pairs; save_minutes 0 so that only the signal (or save_steps) saves. */
function config(name: string, extra: Record<string, unknown> = {}): string {
  const path = join(tmp, `${name}.json`);
  writeFileSync(path, JSON.stringify({
    model: storiesGguf, data: fixture("train", "pairs.jsonl"), backend: testBackendName, max_length: 48,
    per_device_train_batch_size: 2, learning_rate: 1e-3, max_steps: 40, save_steps: 0, save_minutes: 0,
    output_dir: join(tmp, name), ...extra,
  }));
  return path;
}

interface Run { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

function run(args: string[], env: NodeJS.ProcessEnv = {}): Run {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: "utf8", env: { ...process.env, ...env }, timeout: 120_000 });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

/** Starts a trainer in the background; `stderr` accumulates, `exited` resolves with its end. */
function start(args: string[], env: NodeJS.ProcessEnv = {}): { child: ChildProcess; stderr: () => string; exited: Promise<Run> } {
  const child = spawn(process.execPath, [cli, ...args], { env: { ...process.env, ...env } });
  let out = "", err = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (err += d));
  const exited = new Promise<Run>((res) => child.on("close", (code, signal) => res({ code, signal, stdout: out, stderr: err })));
  return { child, stderr: () => err, exited };
}

async function until(what: string, ok: () => boolean, ms = 60_000): Promise<void> {
  const t0 = Date.now();
  while (!ok()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Steps logged in a run's metrics.jsonl so far. */
function stepsLogged(runDir: string): number {
  const p = join(runDir, "metrics.jsonl");
  if (!existsSync(p)) return 0;
  return readFileSync(p, "utf8").split("\n").filter((l) => l.startsWith("{") && l.includes('"loss"')).length;
}

const weights = (dir: string): Buffer => readFileSync(join(dir, "model.safetensors"));
const show = (r: Run): string => `\n--- exit ${r.code} ${r.signal ?? ""} --- stderr ---\n${r.stderr}`;

/** Every path under dir (relative), to look for leftovers. */
function listing(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      out.push(relative(dir, p));
      if (statSync(p).isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out;
}

let reference: Buffer | null = null;
/** The final weights of the 40-step run without any fault. */
function uninterrupted(): Buffer {
  if (!reference) {
    const r = run(["train", config("reference"), "--quiet"]);
    assert.equal(r.code, 0, show(r));
    reference = weights(join(tmp, "reference", "final"));
  }
  return reference;
}

for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
  test(`${signal}: a checkpoint at the end of the current step, its path printed, exit ${code}; resume ends bit-identical`, async () => {
    const name = `sig-${signal}`;
    const runDir = join(tmp, name);
    const t = start(["train", config(name)]);
    await until("step 3", () => stepsLogged(runDir) >= 3);
    t.child.kill(signal);
    const r = await t.exited;
    assert.equal(r.code, code, show(r));
    const m = new RegExp(`${signal}: stopped after step (\\d+) of 40; checkpoint (\\S+)`).exec(r.stderr);
    assert.ok(m, `says where the checkpoint is${show(r)}`);
    const step = Number(m[1]);
    assert.ok(step >= 3 && step < 40, `stopped early (step ${step})`);
    assert.equal(m[2], join(runDir, "checkpoints", `step-${step}`));
    const state = JSON.parse(readFileSync(join(m[2]!, "trainer_state.json"), "utf8"));
    assert.equal(state.step, step, "the checkpoint is the step it names");
    assert.ok(loadModel(m[2]!).model.params.length > 0, "and it loads");
    assert.match(r.stderr, new RegExp(`continue with: tsdpo train --resume ${runDir}`));
    assert.ok(!existsSync(join(runDir, LOCK_FILE)), "the lock is released");
    const resumed = run(["train", "--resume", runDir, "--quiet"]);
    assert.equal(resumed.code, 0, show(resumed));
    assert.ok(weights(join(runDir, "final")).equals(uninterrupted()), "resumed run = uninterrupted run, bit for bit");
  });
}

test("a second Ctrl-C exits at once: no checkpoint is finished, and resume cleans up after it", async () => {
  const name = "sig-twice";
  const runDir = join(tmp, name);
  // The stop checkpoint's trainer_state.json write stalls 5 s (a slow disk): the second Ctrl-C lands during it.
  const t = start(["train", config(name)], { TSDPO_FAULT_INJECT: "trainer_state.json:1:SLOW" });
  await until("step 3", () => stepsLogged(runDir) >= 3);
  t.child.kill("SIGINT");
  await until("the first SIGINT to be taken", () => t.stderr().includes("SIGINT: stopping after this step"));
  await new Promise((r) => setTimeout(r, 300)); // into the stalled write
  const t0 = Date.now();
  t.child.kill("SIGINT");
  const r = await t.exited;
  assert.ok(Date.now() - t0 < 2500, `exited ${Date.now() - t0} ms after the second Ctrl-C, not after the stalled write`);
  assert.ok(r.signal === "SIGINT" || r.code === 130, show(r));
  assert.doesNotMatch(r.stderr, /stopped after step/, "the checkpoint was not finished");
  const ckpts = existsSync(join(runDir, "checkpoints")) ? readdirSync(join(runDir, "checkpoints")) : [];
  assert.ok(ckpts.every((n) => n.includes(".tmp-")), `only an unfinished temp folder may be left: ${ckpts}`);
  // No checkpoint finished, so there is nothing to resume: refused, with the reason.
  const resumed = run(["train", "--resume", runDir]);
  assert.equal(resumed.code, 1, show(resumed));
  assert.match(resumed.stderr, /^error: train --resume .*: there is no checkpoint to resume from/m);
});

test("--resume on a folder whose run was killed before its first checkpoint refuses, and starts nothing", async () => {
  const name = "killed-early";
  const runDir = join(tmp, name);
  const t = start(["train", config(name)]);
  await until("step 2", () => stepsLogged(runDir) >= 2);
  t.child.kill("SIGKILL");
  await t.exited;
  const before = readFileSync(join(runDir, "metrics.jsonl"), "utf8");
  const r = run(["train", "--resume", runDir]);
  assert.equal(r.code, 1, show(r));
  assert.match(r.stderr, /there is no checkpoint to resume from .*save_steps 0, save_minutes 0/);
  assert.equal(readFileSync(join(runDir, "metrics.jsonl"), "utf8"), before, "nothing was started over");
});

test("two trainers on one run folder: the second is refused by a lock naming the first's pid; a dead holder's lock is taken over", async () => {
  const name = "locked";
  const runDir = join(tmp, name);
  const cfg = config(name, { max_steps: 400, save_steps: 2 });
  const first = start(["train", cfg, "--quiet"]);
  await until("a checkpoint", () => existsSync(join(runDir, "checkpoints")) && readdirSync(join(runDir, "checkpoints")).some((n) => /^step-\d+$/.test(n)));
  const second = run(["train", "--resume", runDir]);
  assert.equal(second.code, 2, show(second));
  assert.match(second.stderr, new RegExp(`^error: ${runDir}: another tsdpo train is using this run folder \\(pid ${first.child.pid} `, "m"));
  const lock = JSON.parse(readFileSync(join(runDir, LOCK_FILE), "utf8"));
  assert.equal(lock.pid, first.child.pid);
  // kill -9 leaves the lock behind; the next trainer takes it over and says so
  first.child.kill("SIGKILL");
  await first.exited;
  assert.ok(existsSync(join(runDir, LOCK_FILE)), "a killed holder leaves its lock");
  const resumed = start(["train", "--resume", runDir]);
  await until("the takeover notice", () => resumed.stderr().includes("taking over the lock of pid"));
  assert.match(resumed.stderr(), new RegExp(`taking over the lock of pid ${first.child.pid}, which is no longer running`));
  resumed.child.kill("SIGKILL");
  await resumed.exited;
});

test("a full disk during a checkpoint: one error line, the previous checkpoint intact, nothing half-written, resume as if nothing happened", () => {
  const name = "enospc";
  const runDir = join(tmp, name);
  // checkpoints at steps 10, 20, 30, 40; the second one's optimizer state hits a full disk half-way
  const cfg = config(name, { save_steps: 10 });
  const r = run(["train", cfg], { TSDPO_FAULT_INJECT: "optimizer.safetensors:2:ENOSPC" });
  assert.equal(r.code, 1, show(r));
  assert.match(r.stderr, /^error: [^\n]+\n$/m);
  const line = r.stderr.split("\n").find((l) => l.startsWith("error: "))!;
  for (const part of [
    `checkpoint ${join(runDir, "checkpoints", "step-20")} could not be written`, "no space left on device", "free some disk space",
    "training stopped at step 20", `The previous checkpoint ${join(runDir, "checkpoints", "step-10")} is intact`,
  ])
    assert.ok(line.includes(part), `error line lacks ${JSON.stringify(part)}${show(r)}`);
  assert.doesNotMatch(r.stderr, /^\s+at /m, "no stack");
  const left = listing(runDir);
  assert.deepEqual(left.filter((p) => /\.tmp-|\.old-/.test(p)), [], "nothing half-written");
  assert.ok(!left.includes(join("checkpoints", "step-20")));
  assert.ok(!existsSync(join(runDir, LOCK_FILE)), "the lock is released on error");
  const state = JSON.parse(readFileSync(join(runDir, "checkpoints", "step-10", "trainer_state.json"), "utf8"));
  assert.equal(state.step, 10);
  assert.ok(loadModel(join(runDir, "checkpoints", "step-10")).model.params.length > 0);
  const resumed = run(["train", "--resume", runDir, "--quiet"]);
  assert.equal(resumed.code, 0, show(resumed));
  assert.ok(weights(join(runDir, "final")).equals(uninterrupted()), "the resumed run ends as the uninterrupted one");
});

test("a failed write of metrics.jsonl or of final/ is one error line too", () => {
  // the 5th line of metrics.jsonl; the first file written into final/ while it is being built (final.tmp-<pid>)
  for (const [part, says] of [["metrics.jsonl:5", "metrics.jsonl: could not append to the file"], ["final.tmp-:1", "final could not be written"]] as const) {
    const name = `fail-${part.replace(/\W/g, "-")}`;
    const r = run(["train", config(name, { max_steps: 6 })], { TSDPO_FAULT_INJECT: `${part}:EIO` });
    assert.equal(r.code, 1, show(r));
    assert.ok(r.stderr.includes(says), `${says}${show(r)}`);
    assert.doesNotMatch(r.stderr, /^\s+at |internal error/m);
    assert.deepEqual(listing(join(tmp, name)).filter((p) => /\.tmp-|\.old-/.test(p)), []);
  }
});

test("save_total_limit keeps the newest step checkpoints only; save_minutes is on by default", () => {
  const name = "limit";
  const r = run(["train", config(name, { max_steps: 12, save_steps: 2, save_total_limit: 2 }), "--quiet"]);
  assert.equal(r.code, 0, show(r));
  assert.deepEqual(readdirSync(join(tmp, name, "checkpoints")).sort(), ["step-10", "step-12"]);
  const list = run(["train", "--list-keys"]).stdout;
  assert.match(list, /^  save_minutes +10 /m);
  assert.match(list, /^  save_total_limit +3 /m);
});
